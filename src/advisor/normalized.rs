//! pg_stat_statements replaces the string in a typed literal (`interval '30 days'`) with a
//! parameter, leaving `interval $2`, which does not parse. Written as the equivalent cast,
//! `$2::interval`, the statement plans as its callers' did.

/// Types whose literal syntax (`type 'text'`) statements commonly use, longest first.
const TYPE_NAMES: [&str; 14] = [
    "timestamp with time zone",
    "timestamp without time zone",
    "time with time zone",
    "time without time zone",
    "timestamptz",
    "timestamp",
    "interval",
    "numeric",
    "jsonb",
    "json",
    "date",
    "time",
    "uuid",
    "inet",
];

pub fn typed_literals_as_casts(query: &str) -> String {
    let mut out = String::with_capacity(query.len() + 16);
    let mut rest = query;
    while let Some(at) = rest.find('$') {
        let digits = rest[at + 1..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        out.push_str(&rest[..at]);
        let parameter = &rest[at..at + 1 + digits];
        rest = &rest[at + 1 + digits..];
        let before = out.trim_end_matches([' ', '\t', '\n']);
        let typed = (digits > 0 && before.len() < out.len())
            .then(|| {
                TYPE_NAMES.iter().find(|name| {
                    before.len() >= name.len()
                        && before.is_char_boundary(before.len() - name.len())
                        && before[before.len() - name.len()..].eq_ignore_ascii_case(name)
                        && !before[..before.len() - name.len()]
                            .ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '.')
                })
            })
            .flatten();
        match typed {
            Some(name) => {
                let keep = before.len() - name.len();
                out.truncate(keep);
                out.push_str(&format!("{parameter}::{name}"));
            }
            None => out.push_str(parameter),
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::typed_literals_as_casts;

    #[test]
    fn typed_literals_become_casts() {
        assert_eq!(
            typed_literals_as_casts("WHERE created_at >= now() - interval $2 LIMIT $3"),
            "WHERE created_at >= now() - $2::interval LIMIT $3"
        );
        assert_eq!(
            typed_literals_as_casts("SELECT TIMESTAMP WITH TIME ZONE $1, date $12"),
            "SELECT $1::timestamp with time zone, $12::date"
        );
    }

    #[test]
    fn other_parameters_and_lookalikes_stay() {
        for unchanged in [
            "SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)",
            "SELECT my_interval $1",
            "SELECT x.date $1",
            "SELECT $$interval$$, interval$1",
            "SELECT 5 $",
        ] {
            assert_eq!(typed_literals_as_casts(unchanged), unchanged);
        }
    }
}

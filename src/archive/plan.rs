//! The statements an archive run executes, built from names already resolved and quoted; and
//! the small parsing and comparison it needs. Pure functions, tested without a server.

/// Which way rows go: out of the source into the archive, or back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Archive,
    Unarchive,
}

impl Direction {
    pub fn parse(text: &str) -> Option<Direction> {
        match text {
            "archive" => Some(Direction::Archive),
            "unarchive" => Some(Direction::Unarchive),
            _ => None,
        }
    }
}

/// How a pass over a table remembers where it got to between batches, so a batch never rescans
/// what earlier batches already moved (dead rows until vacuum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// Along an index that leads with the time column: `column >= last value moved`.
    Time { column: String, type_name: String },
    /// Along the heap: `ctid > last row moved`, a TID range scan.
    Physical,
}

impl Position {
    /// Where a pass starts.
    pub fn start(&self) -> &'static str {
        match self {
            Position::Time { .. } => "-infinity",
            Position::Physical => "(0,0)",
        }
    }

    fn value(&self) -> &str {
        match self {
            Position::Time { column, .. } => column,
            Position::Physical => "ctid",
        }
    }

    fn after(&self) -> String {
        match self {
            Position::Time { column, type_name } => format!("{column} >= $2::{type_name}"),
            Position::Physical => "ctid > $2::tid".into(),
        }
    }

    fn order(&self) -> String {
        match self {
            Position::Time { column, .. } => format!(" ORDER BY {column}"),
            Position::Physical => String::new(),
        }
    }
}

/// One batch: rows of `from` older than the cutoff and matching the filter, moved to `into`.
/// Every name is already quoted; `filter` has been checked to be one expression.
#[derive(Debug, Clone)]
pub struct Move {
    pub from: String,
    pub into: String,
    /// The columns moved, quoted and comma-separated; the same names on both sides.
    pub columns: String,
    /// `(quoted time column, its type)` when rows are chosen by age.
    pub older_than: Option<(String, String)>,
    pub filter: Option<String>,
    pub position: Position,
    pub direction: Direction,
    /// Schema-qualified guard function to call when other tables reference `from`.
    pub reference_guard: Option<String>,
    /// Lock the rows first, skipping those other sessions hold (`FOR UPDATE SKIP LOCKED`).
    /// Without it the delete takes the row locks itself, one write per row instead of two, and
    /// waits for a row another session holds: the caller bounds that wait with a short
    /// lock_timeout and falls back to this mode.
    pub skip_locked: bool,
}

impl Move {
    fn conditions(&self, with_position: bool) -> String {
        let mut conditions = Vec::new();
        if let Some((column, type_name)) = &self.older_than {
            conditions.push(format!("{column} < $1::{type_name}"));
        }
        if with_position {
            conditions.push(self.position.after());
        }
        if let Some(filter) = &self.filter {
            conditions.push(format!("({filter})"));
        }
        if conditions.is_empty() {
            "true".into()
        } else {
            conditions.join(" AND ")
        }
    }

    /// The batch, one statement: pick up to $3 rows past position $2 (with `skip_locked`, locking
    /// them and skipping rows other sessions hold), delete them, insert exactly what the delete
    /// returned. Parameters: $1 the
    /// cutoff (timestamptz), $2 the position (text), $3 the batch size, $4 `from` (regclass).
    /// Returns rows deleted, rows inserted and the position reached.
    pub fn batch_sql(&self) -> String {
        let Move {
            from,
            into,
            columns,
            ..
        } = self;
        let guard = self
            .reference_guard
            .as_ref()
            .map(|guard| {
                format!(" AND (SELECT {guard}($4::regclass, ARRAY(SELECT row_id FROM picked)))")
            })
            .unwrap_or_default();
        let (stamp_column, stamp, overriding) = match self.direction {
            Direction::Archive => (", archived_at", ", now()", ""),
            Direction::Unarchive => ("", "", " OVERRIDING SYSTEM VALUE"),
        };
        format!(
            "WITH picked AS MATERIALIZED (\
                SELECT ctid AS row_id, {position} AS pos FROM ONLY {from} \
                 WHERE {conditions}{order} LIMIT $3{locking}), \
             moved AS (\
                DELETE FROM ONLY {from} WHERE ctid = ANY (ARRAY(SELECT row_id FROM picked)){guard} \
                RETURNING {columns}), \
             stored AS (\
                INSERT INTO {into} ({columns}{stamp_column}){overriding} \
                SELECT {columns}{stamp} FROM moved RETURNING 1) \
             SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM stored), \
                    (SELECT max(pos)::text FROM picked)",
            position = self.position.value(),
            conditions = self.conditions(true),
            order = self.position.order(),
            locking = if self.skip_locked {
                " FOR UPDATE SKIP LOCKED"
            } else {
                ""
            },
        )
    }

    /// Counts the rows a run still has to move in `from`, locked or not. Parameter $1: the cutoff.
    pub fn remaining_sql(&self) -> String {
        format!(
            "SELECT count(*) FROM ONLY {} WHERE {}",
            self.from,
            self.conditions(false)
        )
    }

    /// Whether `from` has any row to move, stopping at the first. Parameter $1: the cutoff.
    pub fn any_left_sql(&self) -> String {
        format!(
            "SELECT EXISTS (SELECT 1 FROM ONLY {} WHERE {})",
            self.from,
            self.conditions(false)
        )
    }
}

/// The literal bounds of a range partition, from `pg_get_expr(relpartbound, oid)`:
/// `FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2024-02-01 00:00:00+00')` gives
/// `(Some("2024-01-01 00:00:00+00"), Some("2024-02-01 00:00:00+00"))`. MINVALUE, MAXVALUE and
/// multi-column bounds give None for that side; DEFAULT, list and hash bounds give None for both.
pub fn range_bounds(bound: &str) -> (Option<String>, Option<String>) {
    let Some(rest) = bound.strip_prefix("FOR VALUES FROM (") else {
        return (None, None);
    };
    let Some((lower, upper)) = rest.split_once(") TO (") else {
        return (None, None);
    };
    let upper = upper.strip_suffix(')').unwrap_or(upper);
    (single_literal(lower), single_literal(upper))
}

/// `'text'` with doubled quotes inside, as PostgreSQL prints a one-column bound.
fn single_literal(text: &str) -> Option<String> {
    let inner = text.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut value = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            // A lone quote ends the literal: this was more than one column.
            if chars.next() != Some('\'') {
                return None;
            }
        }
        value.push(c);
    }
    Some(value)
}

/// What stops an existing table from serving as the archive of a source with `source` columns:
/// each entry a sentence for the error's detail. Columns are (name, type as format_type prints).
pub fn archive_mismatches(
    source: &[(String, String)],
    archive: &[(String, String)],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, type_name) in source {
        match archive.iter().find(|(n, _)| n == name) {
            None => problems.push(format!("column \"{name}\" is missing")),
            Some((_, t)) if t != type_name => problems.push(format!(
                "column \"{name}\" is {t}, not {type_name} as in the source"
            )),
            Some(_) => {}
        }
    }
    for (name, type_name) in archive {
        if name == "archived_at" {
            if type_name != "timestamp with time zone" {
                problems.push(format!(
                    "column \"archived_at\" is {type_name}, not timestamp with time zone"
                ));
            }
        } else if !source.iter().any(|(n, _)| n == name) {
            problems.push(format!("column \"{name}\" is not in the source"));
        }
    }
    if !archive.iter().any(|(n, _)| n == "archived_at") {
        problems.push("column \"archived_at\" (timestamp with time zone) is missing".into());
    }
    problems
}

#[cfg(test)]
mod pure_tests {
    use super::*;

    fn archive_move(position: Position) -> Move {
        Move {
            from: r#""s"."t""#.into(),
            into: r#""s"."t_archive""#.into(),
            columns: r#""id", "at""#.into(),
            older_than: Some((r#""at""#.into(), "timestamp with time zone".into())),
            filter: Some("status = 'done'".into()),
            position,
            direction: Direction::Archive,
            reference_guard: None,
            skip_locked: true,
        }
    }

    #[test]
    fn a_batch_locks_deletes_and_inserts_in_one_statement() {
        let time = Position::Time {
            column: r#""at""#.into(),
            type_name: "timestamp with time zone".into(),
        };
        let sql = archive_move(time).batch_sql();
        assert!(sql.starts_with("WITH picked AS MATERIALIZED"), "{sql}");
        assert!(sql.contains(
            r#"WHERE "at" < $1::timestamp with time zone AND "at" >= $2::timestamp with time zone AND (status = 'done') ORDER BY "at" LIMIT $3 FOR UPDATE SKIP LOCKED"#
        ), "{sql}");
        assert!(
            sql.contains(r#"DELETE FROM ONLY "s"."t" WHERE ctid = ANY"#),
            "{sql}"
        );
        assert!(sql.contains(
            r#"INSERT INTO "s"."t_archive" ("id", "at", archived_at) SELECT "id", "at", now() FROM moved"#
        ), "{sql}");
        assert_eq!(sql.matches(';').count(), 0);
    }

    #[test]
    fn a_physical_pass_follows_ctid_and_the_guard_sees_the_picked_rows() {
        let mut m = archive_move(Position::Physical);
        m.reference_guard = Some("dbopt.archive_unreferenced".into());
        m.skip_locked = false;
        let sql = m.batch_sql();
        assert!(sql.contains("LIMIT $3), moved AS"), "{sql}");
        assert!(sql.contains("ctid AS row_id, ctid AS pos"), "{sql}");
        assert!(sql.contains("AND ctid > $2::tid AND"), "{sql}");
        assert!(!sql.contains("ORDER BY"), "{sql}");
        assert!(sql.contains(
            "AND (SELECT dbopt.archive_unreferenced($4::regclass, ARRAY(SELECT row_id FROM picked)))"
        ), "{sql}");
        assert_eq!(Position::Physical.start(), "(0,0)");
    }

    #[test]
    fn unarchiving_restores_identity_values_and_adds_no_stamp() {
        let m = Move {
            older_than: None,
            direction: Direction::Unarchive,
            ..archive_move(Position::Physical)
        };
        let sql = m.batch_sql();
        assert!(sql.contains(
            r#"INSERT INTO "s"."t_archive" ("id", "at") OVERRIDING SYSTEM VALUE SELECT "id", "at" FROM moved"#
        ), "{sql}");
        assert_eq!(
            m.remaining_sql(),
            r#"SELECT count(*) FROM ONLY "s"."t" WHERE (status = 'done')"#
        );
        assert_eq!(
            m.any_left_sql(),
            r#"SELECT EXISTS (SELECT 1 FROM ONLY "s"."t" WHERE (status = 'done'))"#
        );
    }

    #[test]
    fn range_bounds_are_read_from_the_catalog_text() {
        assert_eq!(
            range_bounds(
                "FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2024-02-01 00:00:00+00')"
            ),
            (
                Some("2024-01-01 00:00:00+00".into()),
                Some("2024-02-01 00:00:00+00".into())
            )
        );
        assert_eq!(
            range_bounds("FOR VALUES FROM (MINVALUE) TO ('2024-02-01')"),
            (None, Some("2024-02-01".into()))
        );
        assert_eq!(
            range_bounds("FOR VALUES FROM ('a', 1) TO ('b', 2)"),
            (None, None)
        );
        assert_eq!(
            range_bounds("FOR VALUES FROM ('it''s') TO ('z')").0,
            Some("it's".into())
        );
        assert_eq!(range_bounds("DEFAULT"), (None, None));
        assert_eq!(range_bounds("FOR VALUES IN ('a')"), (None, None));
    }

    #[test]
    fn archive_tables_must_have_the_sources_columns_plus_archived_at() {
        let col = |n: &str, t: &str| (n.to_string(), t.to_string());
        let source = vec![col("id", "bigint"), col("at", "timestamp with time zone")];
        let mut archive = source.clone();
        archive.push(col("archived_at", "timestamp with time zone"));
        assert!(archive_mismatches(&source, &archive).is_empty());

        let archive = vec![col("id", "integer"), col("note", "text")];
        assert_eq!(
            archive_mismatches(&source, &archive),
            vec![
                "column \"id\" is integer, not bigint as in the source",
                "column \"at\" is missing",
                "column \"note\" is not in the source",
                "column \"archived_at\" (timestamp with time zone) is missing",
            ]
        );
    }
}

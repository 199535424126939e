//! Naming database objects safely. SQL that dbopt builds names relations and columns only
//! through these quoted forms, and passes values as SPI parameters, never spliced into the text.

use crate::errors::{DboptError, OrRaise};
use pgrx::prelude::*;
pub use pgrx::spi::{quote_identifier, quote_literal, quote_qualified_identifier};

/// A relation resolved from the catalog, so its name is the real one, not what the user typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub oid: pg_sys::Oid,
    pub schema: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_oid: pg_sys::Oid,
    /// The type as `format_type` prints it, e.g. `timestamp with time zone`, `numeric(12,2)`.
    pub type_name: String,
    pub not_null: bool,
}

impl Relation {
    /// Resolves a `regclass` argument. The relation can vanish between parse and call when
    /// another session drops it, hence the check.
    pub fn from_oid(oid: pg_sys::Oid) -> Relation {
        let row = Spi::get_two_with_args::<String, String>(
            "SELECT n.nspname::text, c.relname::text \
               FROM pg_catalog.pg_class c \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              WHERE c.oid = $1",
            &[oid.into()],
        );
        match row {
            Ok((Some(schema), Some(name))) => Relation { oid, schema, name },
            _ => DboptError::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("relation with OID {} does not exist", oid.to_u32()),
            )
            .hint("It may have been dropped by another session.")
            .raise(),
        }
    }

    /// `"schema"."name"`, ready to splice into SQL text.
    pub fn quoted(&self) -> String {
        quote_qualified_identifier(&self.schema, &self.name)
    }

    /// Looks up a user-supplied column name, raising 42703 naming this relation when it is not
    /// one of its columns.
    pub fn column(&self, column: &str) -> Column {
        let found = Spi::connect(|client| {
            let rows = client.select(
                "SELECT a.attname::text, a.atttypid, \
                        pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull \
                   FROM pg_catalog.pg_attribute a \
                  WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 \
                    AND NOT a.attisdropped",
                Some(1),
                &[self.oid.into(), column.into()],
            )?;
            rows.into_iter()
                .next()
                .map(|row| -> Result<Column, pgrx::spi::Error> {
                    Ok(Column {
                        name: row.get(1)?.unwrap_or_default(),
                        type_oid: row.get(2)?.unwrap_or(pg_sys::InvalidOid),
                        type_name: row.get(3)?.unwrap_or_default(),
                        not_null: row.get(4)?.unwrap_or(false),
                    })
                })
                .transpose()
        })
        .or_raise("looking up a column");
        found.unwrap_or_else(|| {
            DboptError::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!(
                    "column \"{column}\" of relation {} does not exist",
                    self.quoted()
                ),
            )
            .hint(format!(
                "Columns of {}: {}.",
                self.quoted(),
                self.column_names().join(", ")
            ))
            .raise()
        })
    }

    /// The quoted, comma-separated columns an INSERT copying rows writes: all but generated
    /// ones, which the receiving table computes itself.
    pub fn insertable_columns(&self) -> String {
        Spi::get_one_with_args::<String>(
            "SELECT string_agg(pg_catalog.quote_ident(attname), ', ' ORDER BY attnum) \
               FROM pg_catalog.pg_attribute \
              WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = ''",
            &[self.oid.into()],
        )
        .or_raise("listing columns")
        .unwrap_or_default()
    }

    pub fn column_names(&self) -> Vec<String> {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT a.attname::text FROM pg_catalog.pg_attribute a \
                      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
                      ORDER BY a.attnum",
                    None,
                    &[self.oid.into()],
                )?
                .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
                .collect::<Result<Vec<_>, _>>()
        })
        .or_raise("listing columns")
    }
}

/// The rows of a catalog query about one relation (`$1`) that returns two text columns, such
/// as (column, type) or (column, sequence).
pub fn text_pairs(query: &str, oid: pg_sys::Oid, doing: &str) -> Vec<(String, String)> {
    Spi::connect(|client| {
        client
            .select(query, None, &[oid.into()])?
            .map(|row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .or_raise(doing)
}

/// Splits a comma-separated list of SQL identifiers as PostgreSQL reads them: unquoted names
/// folded to lower case, `"Quoted"` ones kept exactly (with `""` for a quote).
pub fn parse_identifier_list(text: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut name = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    Some('"') if chars.next_if_eq(&'"').is_some() => name.push('"'),
                    Some('"') => break,
                    Some(c) => name.push(c),
                    None => return Err("a quoted name is not closed".into()),
                }
            }
            if name.is_empty() {
                return Err("a quoted name is empty".into());
            }
        } else {
            while let Some(c) = chars.next_if(|c| c.is_alphanumeric() || *c == '_' || *c == '$') {
                name.extend(c.to_lowercase());
            }
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit() || c == '$') {
                return Err("a name is missing or starts with a digit".into());
            }
        }
        names.push(name);
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.next() {
            None => return Ok(names),
            Some(',') => continue,
            Some(c) => return Err(format!("unexpected \"{c}\"")),
        }
    }
}

#[cfg(test)]
mod pure_tests {
    use super::parse_identifier_list;

    #[test]
    fn identifier_lists_fold_unquoted_names_and_keep_quoted_ones() {
        assert_eq!(parse_identifier_list("user_id"), Ok(vec!["user_id".into()]));
        assert_eq!(
            parse_identifier_list(" User_Id ,\"Region\", \"a\"\"b, c\" "),
            Ok(vec!["user_id".into(), "Region".into(), "a\"b, c".into()])
        );
    }

    #[test]
    fn malformed_identifier_lists_are_refused() {
        for bad in ["", "a,", "a b", "\"open", "1abc", "a; drop table t", "\"\""] {
            assert!(parse_identifier_list(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use super::*;
    use crate::errors::raised_by;

    fn odd_table() -> Relation {
        Spi::run(r#"CREATE SCHEMA "Odd Schema"; CREATE TABLE "Odd Schema"."t""1" (id int, "Created At" timestamptz NOT NULL)"#)
            .unwrap();
        let oid = Spi::get_one::<pg_sys::Oid>(r#"SELECT '"Odd Schema"."t""1"'::regclass::oid"#)
            .unwrap()
            .unwrap();
        Relation::from_oid(oid)
    }

    #[pg_test]
    fn relations_are_named_from_the_catalog_and_quoted() {
        let rel = odd_table();
        assert_eq!(
            (rel.schema.as_str(), rel.name.as_str()),
            ("Odd Schema", "t\"1")
        );
        assert_eq!(rel.quoted(), r#""Odd Schema"."t""1""#);
        let count = Spi::get_one::<i64>(&format!("SELECT count(*) FROM {}", rel.quoted()));
        assert_eq!(count, Ok(Some(0)));
    }

    #[pg_test]
    fn columns_are_found_exactly_or_refused_with_42703() {
        let rel = odd_table();
        let col = rel.column("Created At");
        assert_eq!(col.type_name, "timestamp with time zone");
        assert!(col.not_null);

        let err = raised_by(|| {
            rel.column("created_at");
        })
        .expect("column names are case-sensitive");
        assert_eq!(err.code, PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN);
        assert_eq!(
            err.message,
            r#"column "created_at" of relation "Odd Schema"."t""1" does not exist"#
        );
        assert_eq!(
            err.hint.as_deref(),
            Some(r#"Columns of "Odd Schema"."t""1": id, Created At."#)
        );
    }

    #[pg_test]
    fn a_dropped_relation_is_reported_as_undefined() {
        let err = raised_by(|| {
            Relation::from_oid(pg_sys::Oid::from(4_000_000_000u32));
        })
        .unwrap();
        assert_eq!(err.code, PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE);
    }
}

/// `value` as an SQL string literal, read the same whatever standard_conforming_strings says
/// (as PostgreSQL's quote_literal writes it; plain Rust, so it runs in unit tests).
pub fn literal(value: &str) -> String {
    let quoted = value.replace('\'', "''");
    if quoted.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

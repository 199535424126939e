//! `dbopt.cap_rows` / `dbopt.uncap_rows`: install and remove the per-key row cap trigger
//! (sql/row_caps.sql holds the trigger function and why it is correct under concurrency).
//! Trigger DDL locks the table, so it goes through [`ddl::execute`] and waits at most
//! dbopt.lock_timeout.

use crate::ddl;
use crate::errors::{DboptError, OrRaise};
use crate::ident::{literal, quote_identifier, Relation};
use pgrx::prelude::*;
use pgrx::PgRelation;

const TRIGGER: &str = "dbopt_cap_rows";

/// The trigger that keeps the newest `keep` rows per `key_column` value, newest by
/// `order_column`.
fn trigger_ddl(table: &str, key_column: &str, order_column: &str, keep: i32) -> String {
    format!(
        "CREATE OR REPLACE TRIGGER {TRIGGER} AFTER INSERT ON {table} \
         REFERENCING NEW TABLE AS dbopt_new_rows FOR EACH STATEMENT \
         EXECUTE FUNCTION dbopt.cap_rows_trigger({}, {}, {})",
        literal(key_column),
        literal(order_column),
        literal(&keep.to_string())
    )
}

/// Caps `target` at the newest `keep` rows per value of `key_column`, by `order_column`: every
/// INSERT (and COPY) trims the keys it wrote. Calling it again changes the cap. Returns what was
/// installed, and a warning when no index serves the trim.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn cap_rows(target: PgRelation, key_column: &str, order_column: &str, keep: i32) -> String {
    let oid = target.oid();
    drop(target);
    let table = Relation::from_oid(oid);
    let quoted = table.quoted();
    let kind = Spi::get_one_with_args::<String>(
        "SELECT relkind::text FROM pg_catalog.pg_class WHERE oid = $1",
        &[oid.into()],
    )
    .or_raise("reading pg_class")
    .unwrap_or_default();
    if kind != "r" && kind != "p" {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("{quoted} is not a table"),
        )
        .hint("cap_rows caps the rows of a table; a view's rows are its tables'.")
        .raise();
    }
    let key = table.column(key_column).name;
    let order = table.column(order_column).name;
    if keep < 1 {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("keep for {quoted} must be at least 1, not {keep}"),
        )
        .hint("To stop capping the table, call dbopt.uncap_rows(target).")
        .raise();
    }
    ddl::execute(&trigger_ddl(&quoted, &key, &order, keep), &quoted);
    let mut report = format!(
        "{quoted} keeps the newest {keep} rows per {} by {}",
        quote_identifier(&key),
        quote_identifier(&order)
    );
    if !has_trim_index(oid, &key, &order) {
        report += &format!(
            "; no btree index leads with ({0}, {1}), so every insert reads all of its key's rows: \
             CREATE INDEX ON {quoted} ({0}, {1})",
            quote_identifier(&key),
            quote_identifier(&order)
        );
    }
    report
}

/// Whether a valid btree index starts with (key, order): the trim is then an index scan.
fn has_trim_index(table: pg_sys::Oid, key: &str, order: &str) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (
             SELECT FROM pg_catalog.pg_index i
               JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
               JOIN pg_catalog.pg_am am ON am.oid = c.relam AND am.amname = 'btree'
              WHERE i.indrelid = $1 AND i.indisvalid AND i.indnkeyatts >= 2 AND i.indpred IS NULL
                AND i.indkey[0] = (SELECT attnum FROM pg_catalog.pg_attribute
                                    WHERE attrelid = $1 AND attname = $2)
                AND i.indkey[1] = (SELECT attnum FROM pg_catalog.pg_attribute
                                    WHERE attrelid = $1 AND attname = $3))",
        &[table.into(), key.into(), order.into()],
    )
    .or_raise("looking for an index")
    .unwrap_or(false)
}

/// Removes the cap from `target`. Returns whether there was one.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn uncap_rows(target: PgRelation) -> bool {
    let oid = target.oid();
    drop(target);
    let capped = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND tgname = $2)",
        &[oid.into(), TRIGGER.into()],
    )
    .or_raise("reading pg_trigger")
    .unwrap_or(false);
    if capped {
        let quoted = Relation::from_oid(oid).quoted();
        ddl::execute(&format!("DROP TRIGGER {TRIGGER} ON {quoted}"), &quoted);
    }
    capped
}

#[cfg(test)]
mod tests {
    use super::trigger_ddl;

    #[test]
    fn the_trigger_passes_columns_as_literals_whatever_their_names() {
        assert_eq!(
            trigger_ddl("public.\"Views\"", "user id", "it's", 50),
            "CREATE OR REPLACE TRIGGER dbopt_cap_rows AFTER INSERT ON public.\"Views\" \
             REFERENCING NEW TABLE AS dbopt_new_rows FOR EACH STATEMENT \
             EXECUTE FUNCTION dbopt.cap_rows_trigger('user id', 'it''s', '50')"
        );
    }
}

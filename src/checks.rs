//! Checks on what callers pass, shared by every capability: the kind of a relation, the
//! caller's privileges on it, its indexes, and the SQL expressions (filters) spliced into the
//! statements dbopt builds.

use crate::errors::{DboptError, OrRaise};
use crate::ident::{Column, Relation};
use pgrx::datum::Interval;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::{is_a, PgList};
use std::ffi::CString;

/// `relkind` of a relation: 'r' table, 'p' partitioned table, and so on.
pub fn relkind(oid: pg_sys::Oid) -> String {
    Spi::get_one_with_args::<String>(
        "SELECT (SELECT relkind::text FROM pg_catalog.pg_class WHERE oid = $1)",
        &[oid.into()],
    )
    .or_raise("reading relkind")
    .unwrap_or_default()
}

/// Refuses anything but a table or a partitioned table.
pub fn require_table(rel: &Relation, role: &str) {
    if !matches!(relkind(rel.oid).as_str(), "r" | "p") {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("{role} {} is not a table", rel.quoted()),
        )
        .raise()
    }
}

/// Whether a valid btree index on `oid` has `column` as its first key column, so batches can
/// walk it in time order instead of scanning the heap.
pub fn has_index_leading_with(oid: pg_sys::Oid, column: &str) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (
            SELECT 1 FROM pg_catalog.pg_index i
              JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
              JOIN pg_catalog.pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
              JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
             WHERE i.indrelid = $1 AND i.indisvalid AND i.indpred IS NULL AND a.attname = $2)",
        &[oid.into(), column.into()],
    )
    .or_raise("looking for a time index")
    .unwrap_or(false)
}

/// Raises 42501 naming the table when the caller lacks `privilege` on it.
pub fn require_privilege(rel: &Relation, privilege: &str, why: &str) {
    let granted = Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.has_table_privilege($1, $2)",
        &[rel.oid.into(), privilege.into()],
    )
    .or_raise("checking privileges")
    .unwrap_or(false);
    if !granted {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "permission denied: {why} needs {privilege} on {}",
                rel.quoted()
            ),
        )
        .hint(format!(
            "Ask the owner of {} to GRANT {privilege} to {}.",
            rel.quoted(),
            current_role()
        ))
        .raise()
    }
}

fn current_role() -> String {
    Spi::get_one::<String>("SELECT current_user::text")
        .or_raise("reading current_user")
        .unwrap_or_default()
}

/// Raises 3F000 when `schema` does not exist; `of` names what the caller passed, e.g.
/// `archive_table "cold.orders"`.
pub fn require_schema(schema: &str, of: &str) {
    let exists = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
        &[schema.into()],
    )
    .or_raise("looking up a schema")
    .unwrap_or(false);
    if !exists {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME,
            format!("schema \"{schema}\" of {of} does not exist"),
        )
        .hint(format!(
            "CREATE SCHEMA {} first.",
            crate::ident::quote_identifier(schema)
        ))
        .raise()
    }
}

/// Looks up a time column (42703 when missing) and refuses anything but date, timestamp and
/// timestamptz (42804); `hint` says why the caller's feature needs one.
pub fn require_time_column(rel: &Relation, column: &str, hint: &str) -> Column {
    let column = rel.column(column);
    if !matches!(
        column.type_oid,
        pg_sys::TIMESTAMPTZOID | pg_sys::TIMESTAMPOID | pg_sys::DATEOID
    ) {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!(
                "time_column \"{}\" of {} is {}, not a date or timestamp",
                column.name,
                rel.quoted(),
                column.type_name
            ),
        )
        .hint(hint)
        .raise()
    }
    column
}

/// Whether an interval is below zero (or zero too, with `or_zero`). A NULL is neither.
pub fn interval_below_zero(value: Option<Interval>, or_zero: bool) -> bool {
    let Some(value) = value else { return false };
    let sql = if or_zero {
        "SELECT $1 <= interval '0'"
    } else {
        "SELECT $1 < interval '0'"
    };
    Spi::get_one_with_args::<bool>(sql, &[value.into()])
        .or_raise("comparing an interval")
        .unwrap_or(false)
}

/// Checks that `filter` is one boolean expression over `rel`'s columns and nothing else: it is
/// spliced into the batch statement, so "true; DROP TABLE t" or "true) OR (…" tricks that
/// would close the expression early must fail here, before anything moves.
pub fn check_filter(rel: &Relation, filter: &str) {
    let refuse = |code: PgSqlErrorCode, why: String| -> ! {
        DboptError::new(
            code,
            format!("filter for {} is not a boolean expression over its columns: {why}", rel.quoted()),
        )
        .detail(format!("filter: {filter}"))
        .hint("Pass one SQL condition, e.g. status IN ('completed', 'failed'), with no semicolon or statement around it.")
        .raise()
    };
    if !is_one_expression(filter) {
        refuse(
            PgSqlErrorCode::ERRCODE_SYNTAX_ERROR,
            "it is not a single expression".into(),
        );
    }
    let probe = format!("SELECT 1 FROM ONLY {} WHERE ({filter})", rel.quoted());
    PgTryBuilder::new(|| {
        Spi::connect(|client| client.prepare(probe.as_str(), &[]).map(|_| ()))
            .or_raise("checking the filter")
    })
    .catch_others(|caught| match caught {
        CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => {
            refuse(report.sql_error_code(), report.message().to_owned())
        }
        other => other.rethrow(),
    })
    .execute();
}

/// Whether `text` parses as exactly one expression: `SELECT (text)` must be one statement with
/// one target and no other clause.
fn is_one_expression(text: &str) -> bool {
    with_bare_select_targets(&format!("({text})"), |targets| targets.len() == 1).unwrap_or(false)
}

/// Parses `SELECT <targets>` and, when that is one plain SELECT with nothing but its target list
/// (no FROM, WHERE, set operation, second statement, …), hands the list to `inspect`. `None` when
/// it does not parse or has anything else.
pub fn with_bare_select_targets<T>(
    targets: &str,
    inspect: impl FnOnce(&PgList<pg_sys::ResTarget>) -> T,
) -> Option<T> {
    let sql = CString::new(format!("SELECT {targets}")).ok()?;
    let target_list = PgTryBuilder::new(|| unsafe {
        // SAFETY: raw_parser only allocates in the current memory context; every node read is
        // checked for its tag first.
        let parsed = PgList::<pg_sys::RawStmt>::from_pg(pg_sys::raw_parser(
            sql.as_ptr(),
            pg_sys::RawParseMode::RAW_PARSE_DEFAULT,
        ));
        if parsed.len() != 1 {
            return None;
        }
        let stmt = (*parsed.get_ptr(0).expect("one statement")).stmt;
        if !is_a(stmt, pg_sys::NodeTag::T_SelectStmt) {
            return None;
        }
        let s = &*stmt.cast::<pg_sys::SelectStmt>();
        let bare = s.fromClause.is_null()
            && s.whereClause.is_null()
            && s.groupClause.is_null()
            && s.havingClause.is_null()
            && s.windowClause.is_null()
            && s.sortClause.is_null()
            && s.limitCount.is_null()
            && s.limitOffset.is_null()
            && s.lockingClause.is_null()
            && s.withClause.is_null()
            && s.valuesLists.is_null()
            && s.distinctClause.is_null()
            && s.intoClause.is_null()
            && s.op == pg_sys::SetOperation::SETOP_NONE;
        bare.then_some(s.targetList)
    })
    .catch_others(|_| None)
    .execute()?;
    // SAFETY: the list was made by raw_parser above, in this memory context.
    Some(inspect(&unsafe {
        PgList::<pg_sys::ResTarget>::from_pg(target_list)
    }))
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use super::*;

    #[pg_test]
    fn one_expression_only() {
        assert!(is_one_expression("status IN ('a', 'b') AND id > 3"));
        assert!(is_one_expression("(a) OR (b)"));
        assert!(!is_one_expression("true; DROP TABLE t"));
        assert!(!is_one_expression("true) ; DROP TABLE t; SELECT (1"));
        assert!(!is_one_expression("true) FROM pg_class WHERE (true"));
        assert!(!is_one_expression("true), (false"));
        assert!(!is_one_expression("true) UNION SELECT (false"));
        assert!(!is_one_expression(""));
        assert!(!is_one_expression("status = "));
    }
}

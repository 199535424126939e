//! What an archive run reads from the catalog: keys, columns, indexes, references, partitions;
//! and the checks on what the caller passed.

use crate::errors::{DboptError, OrRaise};
use crate::ident::{quote_identifier, text_pairs, Relation};
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

/// The columns that identify a row: the primary key, else the shortest unique index over plain
/// NOT NULL columns (no expression, no predicate). Quoted names.
pub fn key_columns(oid: pg_sys::Oid) -> Option<Vec<String>> {
    Spi::get_one_with_args::<Vec<String>>(
        "SELECT array_agg(pg_catalog.quote_ident(a.attname::text) ORDER BY k.i)
           FROM (SELECT i.indexrelid, i.indkey
                   FROM pg_catalog.pg_index i
                  WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid
                    AND i.indpred IS NULL AND i.indexprs IS NULL
                    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute n
                                     WHERE n.attrelid = i.indrelid
                                       AND n.attnum = ANY (i.indkey::int2[]) AND NOT n.attnotnull)
                  ORDER BY i.indisprimary DESC, i.indnkeyatts, i.indexrelid
                  LIMIT 1) best
           CROSS JOIN LATERAL unnest(best.indkey::int2[]) WITH ORDINALITY AS k(attnum, i)
           JOIN pg_catalog.pg_attribute a ON a.attrelid = $1 AND a.attnum = k.attnum",
        &[oid.into()],
    )
    .or_raise("finding a key")
}

/// (name, type) of each column, in order.
pub fn columns(oid: pg_sys::Oid) -> Vec<(String, String)> {
    text_pairs(
        "SELECT attname::text, pg_catalog.format_type(atttypid, atttypmod)
           FROM pg_catalog.pg_attribute
          WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        oid,
        "listing columns",
    )
}

/// All columns, quoted and comma-separated (generated ones included: the archive keeps their
/// values as plain columns).
pub fn all_columns(oid: pg_sys::Oid) -> String {
    columns(oid)
        .iter()
        .map(|(name, _)| quote_identifier(name))
        .collect::<Vec<_>>()
        .join(", ")
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

/// Whether any foreign key references `oid`.
pub fn is_referenced(oid: pg_sys::Oid) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                         WHERE contype = 'f' AND confrelid = $1)",
        &[oid.into()],
    )
    .or_raise("looking for foreign keys")
    .unwrap_or(false)
}

/// A partition directly under a partitioned table.
#[derive(Debug, Clone)]
pub struct Partition {
    pub oid: pg_sys::Oid,
    pub name: String,
    pub partitioned: bool,
    /// `pg_get_expr(relpartbound)`: `FOR VALUES …` or `DEFAULT`.
    pub bound: String,
}

pub fn partitions(parent: pg_sys::Oid) -> Vec<Partition> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT c.oid, c.relname::text, c.relkind = 'p',
                        pg_catalog.pg_get_expr(c.relpartbound, c.oid)
                   FROM pg_catalog.pg_inherits i
                   JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = $1
                  ORDER BY c.relname",
                None,
                &[parent.into()],
            )?
            .map(|row| {
                Ok(Partition {
                    oid: row.get(1)?.unwrap_or(pg_sys::InvalidOid),
                    name: row.get(2)?.unwrap_or_default(),
                    partitioned: row.get(3)?.unwrap_or(false),
                    bound: row.get(4)?.unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .or_raise("listing partitions")
}

/// The partition key's only column when `oid` is partitioned by RANGE on one plain column.
pub fn range_key_column(oid: pg_sys::Oid) -> Option<String> {
    Spi::get_one_with_args::<String>(
        "SELECT (SELECT a.attname::text FROM pg_catalog.pg_partitioned_table p
                   JOIN pg_catalog.pg_attribute a
                     ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
                  WHERE p.partrelid = $1 AND p.partstrat = 'r' AND p.partnatts = 1)",
        &[oid.into()],
    )
    .or_raise("reading the partition key")
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
    let Ok(sql) = CString::new(format!("SELECT ({text})")) else {
        return false;
    };
    PgTryBuilder::new(|| unsafe {
        // SAFETY: raw_parser only allocates in the current memory context; every node read is
        // checked for its tag first.
        let parsed = PgList::<pg_sys::RawStmt>::from_pg(pg_sys::raw_parser(
            sql.as_ptr(),
            pg_sys::RawParseMode::RAW_PARSE_DEFAULT,
        ));
        if parsed.len() != 1 {
            return false;
        }
        let stmt = (*parsed.get_ptr(0).expect("one statement")).stmt;
        if !is_a(stmt, pg_sys::NodeTag::T_SelectStmt) {
            return false;
        }
        let select = stmt.cast::<pg_sys::SelectStmt>();
        let s = &*select;
        PgList::<pg_sys::Node>::from_pg(s.targetList).len() == 1
            && s.fromClause.is_null()
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
            && s.op == pg_sys::SetOperation::SETOP_NONE
    })
    .catch_others(|_| false)
    .execute()
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

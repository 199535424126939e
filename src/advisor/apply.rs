//! `dbopt.apply_index()`: CREATE INDEX CONCURRENTLY cannot run inside a function, so the
//! statement is checked here and handed to pg_cron as a job of its own, or to dbopt's background
//! worker, either of which runs it at top level as the caller. sql/advisor.sql records each build
//! in dbopt.index_builds; with pg_cron, `dbopt.finish_index_builds()` (a second job) records the
//! outcome and drops an invalid leftover of a failed build, and the worker's run does both itself.
//!
//! The build job repeats every minute until the finishing job removes it, so the statement is
//! given IF NOT EXISTS: a repeat finds the index and does nothing.

use crate::checks::relkind;
use crate::ddl;
use crate::errors::{DboptError, OrRaise};
use crate::ident::{quote_qualified_identifier, Relation};
use crate::schedule;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::{CStr, CString};

/// `definition` with `IF NOT EXISTS` after `CREATE [UNIQUE] INDEX CONCURRENTLY`; None when it
/// does not start that way (leading comments, a plain CREATE INDEX).
pub fn idempotent(definition: &str) -> Option<String> {
    let mut rest = definition.trim_start();
    let mut prefix = Vec::new();
    for expected in ["create", "unique", "index", "concurrently"] {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        if rest[..end].eq_ignore_ascii_case(expected) {
            prefix.push(expected.to_ascii_uppercase());
            rest = rest[end..].trim_start();
        } else if expected != "unique" {
            return None;
        }
    }
    // What follows is kept byte for byte: it may hold literals (a partial index's predicate).
    let mut after = rest;
    for expected in ["if", "not", "exists"] {
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        if !after[..end].eq_ignore_ascii_case(expected) {
            after = rest;
            break;
        }
        after = after[end..].trim_start();
    }
    Some(format!("{} IF NOT EXISTS {after}", prefix.join(" ")))
}

fn refuse(code: PgSqlErrorCode, message: String, hint: &str) -> ! {
    DboptError::new(code, message).hint(hint).raise()
}

/// Checks `definition` is one CREATE INDEX CONCURRENTLY naming its index, on a table the caller
/// owns, and that pg_cron can run it here. Returns the table, the index's schema and name, and
/// the statement the job runs.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn index_build_plan(
    definition: &str,
) -> TableIterator<
    'static,
    (
        name!(table_oid, pg_sys::Oid),
        name!(index_schema, String),
        name!(index_name, String),
        name!(command, String),
        name!(runner, String),
    ),
> {
    let manual = "Or run it yourself from psql, outside any transaction block.";
    let text = CString::new(definition).unwrap_or_default();
    // SAFETY: the parser's nodes are read at once, in the current memory context; a syntax
    // error is PostgreSQL's own (42601).
    let (relation, index_name, concurrent) = unsafe {
        let raw = pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        let statements = pgrx::PgList::<pg_sys::RawStmt>::from_pg(raw);
        let stmt = match statements.len() {
            1 => (*statements.get_ptr(0).unwrap()).stmt,
            _ => std::ptr::null_mut(),
        };
        if !pgrx::is_a(stmt, pg_sys::NodeTag::T_IndexStmt) {
            refuse(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "dbopt.apply_index runs exactly one CREATE INDEX statement".into(),
                "Pass an index_definition from dbopt.recommend_indexes().",
            )
        }
        let index = &*(stmt as *mut pg_sys::IndexStmt);
        if index.idxname.is_null() {
            refuse(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "dbopt.apply_index needs the index to be named".into(),
                "Add a name after CONCURRENTLY: the build is tracked by it.",
            )
        }
        let named = CStr::from_ptr((*index.relation).relname).to_string_lossy();
        if (*index.relation).schemaname.is_null() {
            refuse(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("the index definition names table \"{named}\" without its schema"),
                "The build runs in a session of its own, whose search_path may differ: write \
                 schema.table, as dbopt.recommend_indexes() does.",
            )
        }
        let oid = pg_sys::RangeVarGetRelidExtended(
            index.relation,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        );
        if oid == pg_sys::InvalidOid {
            refuse(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("table \"{named}\" of the index definition does not exist"),
                "Check the schema and table name.",
            )
        }
        let index_name = CStr::from_ptr(index.idxname).to_string_lossy().into_owned();
        (Relation::from_oid(oid), index_name, index.concurrent)
    };
    if !concurrent {
        refuse(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("dbopt.apply_index builds only with CONCURRENTLY, and \"{index_name}\" is not"),
            "A plain CREATE INDEX blocks writes to the table for the whole build; write \
             CREATE INDEX CONCURRENTLY, or run the plain statement yourself if that is intended.",
        )
    }
    match relkind(relation.oid).as_str() {
        "r" | "m" => {}
        "p" => refuse(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!(
                "{} is partitioned: PostgreSQL cannot build its index concurrently",
                relation.quoted()
            ),
            "Create the index CONCURRENTLY on each partition, then CREATE INDEX ON ONLY the \
             parent and ALTER INDEX ... ATTACH PARTITION each one.",
        ),
        _ => refuse(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("{} is not a table or materialized view", relation.quoted()),
            "Indexes are built on tables and materialized views.",
        ),
    }
    // SAFETY: a catalog lookup for the current user.
    if !unsafe { pg_sys::pg_class_ownercheck(relation.oid, pg_sys::GetUserId()) } {
        refuse(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("must be owner of table {} to index it", relation.quoted()),
            "Ask the table's owner to apply the index.",
        )
    }
    let taken = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
                         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                        WHERE n.nspname = $1 AND c.relname = $2)",
        &[relation.schema.as_str().into(), index_name.as_str().into()],
    )
    .or_raise("looking for the index name")
    .unwrap_or(false);
    if taken {
        refuse(
            PgSqlErrorCode::ERRCODE_DUPLICATE_TABLE,
            format!(
                "relation {} already exists",
                quote_qualified_identifier(&relation.schema, &index_name)
            ),
            "The index may be built already (see dbopt.index_builds), or choose another name.",
        )
    }
    let Some(command) = idempotent(definition) else {
        refuse(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "the index definition must begin with CREATE [UNIQUE] INDEX CONCURRENTLY".into(),
            "Remove any comment before CREATE.",
        )
    };
    let runner = schedule::require_runner("dbopt.apply_index", manual);
    TableIterator::once((
        relation.oid,
        relation.schema,
        index_name,
        command,
        runner.name().to_owned(),
    ))
}

/// Drops the index `index_name` on `table` if it is there and invalid (what a failed
/// CREATE INDEX CONCURRENTLY leaves), waiting at most dbopt.lock_timeout for the table's lock.
/// True when something was dropped.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn drop_invalid_index(table: pg_sys::Oid, index_name: &str) -> bool {
    let leftover = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT i.indexrelid FROM pg_catalog.pg_index i \
           JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
          WHERE i.indrelid = $1 AND c.relname = $2 AND NOT i.indisvalid",
        &[table.into(), index_name.into()],
    )
    .or_raise("looking for an invalid index");
    let Some(index) = leftover else {
        return false;
    };
    let index = Relation::from_oid(index);
    ddl::execute(
        &format!("DROP INDEX IF EXISTS {}", index.quoted()),
        &index.quoted(),
    );
    true
}

#[cfg(test)]
mod tests {
    use super::idempotent;

    #[test]
    fn a_build_is_made_idempotent_whatever_its_case_and_spacing() {
        assert_eq!(
            idempotent("CREATE INDEX CONCURRENTLY t_a_idx ON public.t (a)").as_deref(),
            Some("CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a_idx ON public.t (a)")
        );
        assert_eq!(
            idempotent("create unique index\n  concurrently if not exists u ON t (a)").as_deref(),
            Some("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS u ON t (a)")
        );
        // A predicate's literal keeps its spacing.
        assert_eq!(
            idempotent("CREATE INDEX CONCURRENTLY p ON t (a) WHERE s = 'a  b'").as_deref(),
            Some("CREATE INDEX CONCURRENTLY IF NOT EXISTS p ON t (a) WHERE s = 'a  b'")
        );
    }

    #[test]
    fn only_a_concurrent_create_index_is_accepted() {
        assert_eq!(idempotent("CREATE INDEX t_a_idx ON t (a)"), None);
        assert_eq!(
            idempotent("/* x */ CREATE INDEX CONCURRENTLY i ON t (a)"),
            None
        );
        assert_eq!(idempotent("DROP TABLE t"), None);
    }
}

//! Index advisor (issue 6): `dbopt.recommend_indexes()` plans pg_stat_statements' workload
//! in-process with hypothetical indexes and chooses one set of indexes for all of it.
//!
//! - `workload.rs`: the statements and the tables' statistics, read from the server;
//! - `plan.rs`: generic planning of a normalized statement in a subtransaction, with skip reasons;
//! - `query.rs`: what an analyzed statement asks of each table;
//! - `candidates.rs`: index candidates from those uses;
//! - `hypo.rs` and `size.rs`: hypothetical btrees injected through get_relation_info_hook;
//! - `select.rs`: greedy choice over the workload within the limits;
//! - `recommend.rs`: the above, put together;
//! - `apply.rs`: `dbopt.apply_index()`, a recommended index built by a pg_cron job;
//! - `lints.rs`: `dbopt.query_lints()`, statement shapes no index fixes.

mod apply;
mod candidates;
mod hypo;
mod lints;
mod normalized;
mod plan;
mod query;
mod recommend;
mod select;
mod size;
mod workload;

use crate::errors::DboptError;
use pgrx::prelude::*;
use pgrx::JsonB;

pub use hypo::install as install_planner_hook;

const FEATURE: &str = "dbopt.recommend_indexes";

/// Raises 22023 naming `name` when `value` is below `least`.
fn require_at_least(name: &str, value: i64, least: i64) {
    if value < least {
        let bound = if least == 0 {
            "0 or more".to_owned()
        } else {
            format!("at least {least}")
        };
        DboptError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{name} must be {bound}, not {value}"),
        )
        .raise()
    }
}

/// The rows of `dbopt.recommend_indexes`, which shows the table as a regclass.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn index_recommendations(
    min_calls: default!(i64, 10),
    max_indexes: default!(i32, 10),
    max_total_bytes: default!(Option<i64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(table_oid, pg_sys::Oid),
        name!(index_definition, String),
        name!(columns, Vec<String>),
        name!(estimated_bytes, i64),
        name!(benefit, f64),
        name!(write_penalty, f64),
        name!(queries, JsonB),
    ),
> {
    require_at_least("max_indexes", max_indexes.into(), 1);
    if let Some(budget) = max_total_bytes {
        require_at_least("max_total_bytes", budget, 0);
    }
    require_at_least("min_calls", min_calls, 0);
    let statements = workload::statements(min_calls, FEATURE);
    workload::use_sessions_search_path();
    let limits = select::Limits {
        max_indexes: max_indexes as usize,
        max_total_bytes: max_total_bytes.map(|b| b as u64),
    };
    let rows: Vec<_> = recommend::recommend(statements, &limits)
        .into_iter()
        .map(|r| {
            (
                r.table,
                r.definition,
                r.columns,
                r.bytes,
                r.benefit,
                r.write_penalty,
                JsonB(r.queries),
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// The statements recommend_indexes could not plan, and why.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn advisor_skipped(
    min_calls: default!(i64, 10),
) -> TableIterator<
    'static,
    (
        name!(queryid, i64),
        name!(calls, i64),
        name!(query, String),
        name!(reason, String),
    ),
> {
    let statements = workload::statements(min_calls, "dbopt.advisor_skipped");
    workload::use_sessions_search_path();
    TableIterator::new(
        recommend::skipped(statements)
            .into_iter()
            .map(|(s, reason)| (s.queryid, s.calls, s.query, reason)),
    )
}

/// The rows of `dbopt.query_lints`, which shows the table as a regclass.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn query_lint_rows(
    min_calls: default!(i64, 10),
    large_table_rows: default!(i64, 1_000_000),
    wide_table_columns: default!(i32, 15),
) -> TableIterator<
    'static,
    (
        name!(queryid, i64),
        name!(calls, i64),
        name!(lint, String),
        name!(severity, String),
        name!(table_oid, pg_sys::Oid),
        name!(detail, String),
        name!(suggestion, String),
        name!(query, String),
    ),
> {
    require_at_least("min_calls", min_calls, 0);
    require_at_least("large_table_rows", large_table_rows, 0);
    require_at_least("wide_table_columns", wide_table_columns.into(), 1);
    let statements = workload::statements(min_calls, "dbopt.query_lints");
    workload::use_sessions_search_path();
    let limits = lints::Thresholds {
        large_table_rows,
        wide_table_columns,
    };
    let mut sizes = std::collections::HashMap::new();
    let mut rows = Vec::new();
    for statement in statements {
        // A statement that does not parse is advisor_skipped's to report, not a lint.
        let Ok(shapes) = lints::shapes(&statement) else {
            continue;
        };
        for shape in shapes {
            let table = shape.table();
            let size = sizes
                .entry(table)
                .or_insert_with(|| lints::table_size(table));
            let Some(size) = size else { continue };
            if let Some(lint) = lints::judge(&shape, size, &statement, limits) {
                rows.push((
                    statement.queryid,
                    statement.calls,
                    lint.lint.to_owned(),
                    lint.severity.to_owned(),
                    pg_sys::Oid::from(table),
                    lint.detail,
                    lint.suggestion,
                    statement.query.clone(),
                ));
            }
        }
    }
    TableIterator::new(rows)
}

extension_sql_file!(
    "../../sql/advisor.sql",
    name = "advisor",
    requires = [
        index_recommendations,
        query_lint_rows,
        apply::index_build_plan,
        apply::drop_invalid_index
    ]
);

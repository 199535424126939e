//! What the advisor reads from the server: the statements pg_stat_statements recorded for this
//! database, and for each table its row count, column names, indexes and write activity.

use super::candidates::Predicate;
use crate::errors::OrRaise;
use crate::ident::quote_identifier;
use crate::requirements::{self, Component};
use pgrx::prelude::*;

/// One normalized statement, its calls summed over the roles that ran it (and, with
/// pg_stat_statements.track = all, over its top-level and nested runs).
#[derive(Debug, Clone)]
pub struct Statement {
    pub queryid: i64,
    pub calls: i64,
    /// Rows returned or affected, over all calls.
    pub rows: i64,
    /// Shared buffers hit or read, over all calls.
    pub buffers: i64,
    pub query: String,
}

/// The current database's top-level statements called at least `min_calls` times, most called
/// first. Raises 55000 with a hint when pg_stat_statements is missing or not preloaded.
pub fn statements(min_calls: i64, feature: &str) -> Vec<Statement> {
    let installed = requirements::require(Component::PgStatStatements, feature);
    let sql = format!(
        "SELECT s.queryid, sum(s.calls)::bigint, sum(s.rows)::bigint, \
                sum(s.shared_blks_hit + s.shared_blks_read)::bigint, s.query \
           FROM {}.pg_stat_statements s \
          WHERE s.dbid = (SELECT d.oid FROM pg_catalog.pg_database d \
                           WHERE d.datname = pg_catalog.current_database()) \
            AND s.queryid IS NOT NULL \
          GROUP BY s.queryid, s.query \
         HAVING sum(s.calls) >= $1 \
          ORDER BY 2 DESC, 1",
        quote_identifier(&installed.schema)
    );
    Spi::connect(|client| {
        client
            .select(&sql, None, &[min_calls.into()])?
            .map(|row| {
                Ok(Statement {
                    queryid: row.get::<i64>(1)?.unwrap_or(0),
                    calls: row.get::<i64>(2)?.unwrap_or(0),
                    rows: row.get::<i64>(3)?.unwrap_or(0),
                    buffers: row.get::<i64>(4)?.unwrap_or(0),
                    query: row.get::<String>(5)?.unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .or_raise("reading pg_stat_statements")
}

/// Statements name tables as their sessions found them: through the search_path a session
/// starts with (role and database defaults included), not dbopt's pinned one. Only planning
/// follows; dbopt's own queries name every relation with its schema. The pinned path returns
/// when the function does.
pub fn use_sessions_search_path() {
    Spi::run(
        "SELECT pg_catalog.set_config('search_path', reset_val, true) \
           FROM pg_catalog.pg_settings WHERE name = 'search_path'",
    )
    .or_raise("restoring the session's search_path for planning");
}

#[derive(Debug, Clone, Default)]
pub struct ExistingIndex {
    pub keys: Vec<i16>,
    pub include: Vec<i16>,
    pub predicate: Option<String>,
}

/// A table the advisor may index.
#[derive(Debug, Clone)]
pub struct Table {
    pub schema: String,
    pub name: String,
    pub tuples: f64,
    pub columns: Vec<(i16, String)>,
    /// Its valid, non-expression btree indexes: key and INCLUDE columns, and the predicate of a
    /// partial one as pg_get_expr prints it, outer parentheses removed.
    pub indexes: Vec<ExistingIndex>,
    /// Share of its updates that were HOT (no index entry written), from pg_stat_user_tables.
    pub hot_share: f64,
}

impl Table {
    pub fn column_name(&self, attnum: i16) -> String {
        self.columns
            .iter()
            .find(|(n, _)| *n == attnum)
            .map(|(_, name)| name.clone())
            .unwrap_or_else(|| format!("column {attnum}"))
    }
}

/// An ordinary table or materialized view outside the system schemas; None for anything else.
pub fn table(oid: u32) -> Option<Table> {
    let oid = pg_sys::Oid::from(oid);
    let found = Spi::connect(|client| {
        let mut rows = client.select(
            "SELECT n.nspname::text, c.relname::text, c.reltuples::float8, \
                    coalesce(s.n_tup_hot_upd::float8 / nullif(s.n_tup_upd, 0), 0) \
               FROM pg_catalog.pg_class c \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
               LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = c.oid \
              WHERE c.oid = $1 AND c.relkind IN ('r', 'm') \
                AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
                AND NOT pg_catalog.pg_is_other_temp_schema(n.oid)",
            Some(1),
            &[oid.into()],
        )?;
        let Some(row) = rows.next() else {
            return Ok(None);
        };
        let (schema, name) = (
            row.get::<String>(1)?.unwrap_or_default(),
            row.get::<String>(2)?.unwrap_or_default(),
        );
        // A table never analyzed or vacuumed says -1; the planner then guesses from its pages.
        let tuples = row.get::<f64>(3)?.unwrap_or(0.0).max(0.0);
        let hot_share = row.get::<f64>(4)?.unwrap_or(0.0);
        let columns = client
            .select(
                "SELECT attnum, attname::text FROM pg_catalog.pg_attribute \
                  WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                None,
                &[oid.into()],
            )?
            .map(|r| {
                Ok((
                    r.get::<i16>(1)?.unwrap_or(0),
                    r.get::<String>(2)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()?;
        let indexes = client
            .select(
                "SELECT i.indkey::int2[], i.indnkeyatts::int, \
                        pg_catalog.pg_get_expr(i.indpred, i.indrelid) \
                   FROM pg_catalog.pg_index i \
                   JOIN pg_catalog.pg_class x ON x.oid = i.indexrelid \
                  WHERE i.indrelid = $1 AND i.indisvalid \
                    AND i.indexprs IS NULL AND x.relam = $2",
                None,
                &[oid.into(), pg_sys::BTREE_AM_OID.into()],
            )?
            .map(|r| {
                let all = r.get::<Vec<i16>>(1)?.unwrap_or_default();
                let keys = (r.get::<i32>(2)?.unwrap_or(0) as usize).min(all.len());
                let predicate = r.get::<String>(3)?.map(|p| {
                    let inner = p.strip_prefix('(').and_then(|p| p.strip_suffix(')'));
                    inner.unwrap_or(&p).to_owned()
                });
                Ok(ExistingIndex {
                    keys: all[..keys].to_vec(),
                    include: all[keys..].to_vec(),
                    predicate,
                })
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()?;
        Ok::<_, pgrx::spi::Error>(Some(Table {
            schema,
            name,
            tuples,
            columns,
            indexes,
            hot_share,
        }))
    })
    .or_raise("reading a table's statistics");
    found
}

/// The share of `table`'s rows that `predicate` holds, from pg_stats (null_frac, and the
/// column's most common values); a half where the column was never analyzed or the value is
/// not among its most common ones.
pub fn predicate_share(table: &Table, predicate: &Predicate) -> f64 {
    let column = table.column_name(predicate.column());
    let (test, value) = match predicate {
        Predicate::IsNull(_) => ("null", None),
        Predicate::IsNotNull(_) => ("not null", None),
        Predicate::IsTrue(_) => ("value", Some("t")),
        Predicate::IsFalse(_) => ("value", Some("f")),
        Predicate::Equals(_, value) => ("value", Some(value.as_str())),
    };
    let share = Spi::get_one_with_args::<f64>(
        "SELECT (SELECT CASE $4 \
                   WHEN 'null' THEN s.null_frac \
                   WHEN 'not null' THEN 1 - s.null_frac \
                   ELSE coalesce((SELECT m.f FROM unnest(s.most_common_vals::text::text[], \
                                                        s.most_common_freqs) AS m(v, f) \
                                  WHERE m.v = $5), (1 - s.null_frac) / 2) END \
           FROM pg_catalog.pg_stats s \
          WHERE s.schemaname = $1 AND s.tablename = $2 AND s.attname = $3 AND NOT s.inherited)::float8",
        &[
            table.schema.as_str().into(),
            table.name.as_str().into(),
            column.as_str().into(),
            test.into(),
            value.into(),
        ],
    )
    .or_raise("reading the column's statistics");
    share.unwrap_or(0.5).clamp(0.0, 1.0)
}

/// The rarest of a column's most common values when the column is skewed: its frequency at most
/// 5% and a tenth of the most common one's (status = 'pending' among mostly 'completed').
/// A generic plan prices such a value like any other; the advisor also prices it on its own.
pub fn rare_common_value(table: &Table, column: &str) -> Option<String> {
    Spi::get_one_with_args::<String>(
        "SELECT (SELECT (array_agg(m.v ORDER BY m.f, m.v))[1] \
           FROM pg_catalog.pg_stats s, \
                unnest(s.most_common_vals::text::text[], s.most_common_freqs) AS m(v, f) \
          WHERE s.schemaname = $1 AND s.tablename = $2 AND s.attname = $3 AND NOT s.inherited \
         HAVING min(m.f) <= 0.05 AND max(m.f) >= 10 * min(m.f))",
        &[
            table.schema.as_str().into(),
            table.name.as_str().into(),
            column.into(),
        ],
    )
    .or_raise("reading the column's statistics")
}

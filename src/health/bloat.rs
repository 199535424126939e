//! Table bloat: the pages a table would need for its rows, from pg_stats' column widths, against
//! the pages it has, and how far that estimate can be trusted. Estimates of this kind (pghero's,
//! check_postgres') are often far off with no warning; each one here says why it may be.

use crate::errors::OrRaise;
use pgrx::prelude::*;

/// Bytes of a heap page header, of a tuple header before its null bitmap, and of the line
/// pointer each tuple takes in its page.
const PAGE_HEADER: f64 = 24.0;
const TUPLE_HEADER: f64 = 23.0;
const LINE_POINTER: f64 = 4.0;
const MAXALIGN: f64 = 8.0;
/// Below this many pages, one page more or less is a large share: the estimate says little.
const SMALL_TABLE_PAGES: i64 = 100;
/// Statistics are stale once this share of the rows changed since the last analyze.
const STALE_SHARE: f64 = 0.2;

/// What the catalogs and pg_stats say of one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableShape {
    /// relpages and reltuples, which VACUUM and ANALYZE set together.
    pub pages: i64,
    pub tuples: f64,
    pub block_size: f64,
    pub fillfactor: f64,
    pub columns: i64,
    pub columns_with_stats: i64,
    pub dropped_columns: i64,
    /// Sum over the columns of avg_width × (1 − null_frac).
    pub data_width: f64,
    pub has_nulls: bool,
    pub heap_bytes: i64,
    pub toast_bytes: i64,
    pub changed_since_analyze: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub table_bytes: i64,
    pub expected_bytes: i64,
    pub bloat_bytes: i64,
    pub ratio: f64,
    pub confidence: &'static str,
    pub reasons: Vec<String>,
}

fn align(bytes: f64) -> f64 {
    (bytes / MAXALIGN).ceil() * MAXALIGN
}

pub fn estimate(shape: &TableShape) -> Estimate {
    let bitmap = if shape.has_nulls {
        (shape.columns as f64 / 8.0).ceil()
    } else {
        0.0
    };
    let tuple_bytes = align(TUPLE_HEADER + bitmap) + align(shape.data_width) + LINE_POINTER;
    // INSERT fills a page only to its fillfactor.
    let usable = (shape.block_size - PAGE_HEADER) * shape.fillfactor / 100.0;
    let tuples = shape.tuples.max(0.0);
    let expected_pages = if tuples > 0.0 {
        (tuples * tuple_bytes / usable).ceil()
    } else {
        0.0
    };
    let table_bytes = (shape.pages as f64 * shape.block_size) as i64;
    let expected_bytes = (expected_pages * shape.block_size) as i64;
    let bloat_bytes = (table_bytes - expected_bytes).max(0);
    let ratio = if table_bytes > 0 {
        bloat_bytes as f64 / table_bytes as f64
    } else {
        0.0
    };

    let mut low = Vec::new();
    if shape.tuples < 0.0 {
        low.push("never vacuumed or analyzed: no row count".to_owned());
    }
    if shape.columns_with_stats < shape.columns {
        low.push(format!(
            "no statistics for {} of {} columns (never analyzed, or not readable by this role)",
            shape.columns - shape.columns_with_stats,
            shape.columns
        ));
    }
    if tuples > 0.0 && shape.changed_since_analyze as f64 > STALE_SHARE * tuples {
        low.push(format!(
            "stale statistics: {} rows changed since the last analyze",
            shape.changed_since_analyze
        ));
    }
    if shape.pages < SMALL_TABLE_PAGES {
        low.push(format!(
            "small table ({} pages): a page more or less is a large share",
            shape.pages
        ));
    }
    let small_bytes = SMALL_TABLE_PAGES as f64 * shape.block_size;
    if shape.toast_bytes > shape.heap_bytes && shape.toast_bytes as f64 > small_bytes {
        low.push(
            "TOAST-heavy: most of its data lies out of line, where this estimate does not look"
                .to_owned(),
        );
    }
    let (confidence, reasons) = if !low.is_empty() {
        ("low", low)
    } else if shape.dropped_columns > 0 {
        (
            "medium",
            vec![format!(
                "{} dropped columns still take space in rows written before the drop",
                shape.dropped_columns
            )],
        )
    } else {
        ("high", Vec::new())
    };
    Estimate {
        table_bytes,
        expected_bytes,
        bloat_bytes,
        ratio,
        confidence,
        reasons,
    }
}

/// The estimate for every table and materialized view of the database (system schemas and
/// extensions' tables excepted), for `dbopt.health_bloat`, which grades them.
#[pg_extern(stable)]
#[search_path(pg_catalog, pg_temp)]
fn table_bloat_estimates() -> TableIterator<
    'static,
    (
        name!(table_oid, pg_sys::Oid),
        name!(table_bytes, i64),
        name!(expected_bytes, i64),
        name!(bloat_bytes, i64),
        name!(bloat_ratio, f64),
        name!(confidence, String),
        name!(reasons, Vec<String>),
    ),
> {
    let shapes = Spi::connect(|client| {
        client
            .select(
                "WITH stats AS (
                     SELECT s.schemaname, s.tablename, count(*) AS columns,
                            sum(s.avg_width * (1 - s.null_frac))::float8 AS width,
                            bool_or(s.null_frac > 0) AS has_nulls
                       FROM pg_stats s WHERE NOT s.inherited
                      GROUP BY s.schemaname, s.tablename
                 ),
                 attrs AS (
                     SELECT a.attrelid, count(*) FILTER (WHERE NOT a.attisdropped) AS columns,
                            count(*) FILTER (WHERE a.attisdropped) AS dropped
                       FROM pg_attribute a WHERE a.attnum > 0 GROUP BY a.attrelid
                 )
                 SELECT c.oid, c.relpages::int8, c.reltuples::float8,
                        current_setting('block_size')::float8,
                        coalesce((SELECT o.option_value::float8
                                    FROM pg_options_to_table(c.reloptions) o
                                   WHERE o.option_name = 'fillfactor'), 100),
                        coalesce(a.columns, 0), coalesce(st.columns, 0), coalesce(a.dropped, 0),
                        coalesce(st.width, 0), coalesce(st.has_nulls, false),
                        c.relpages::int8 * current_setting('block_size')::int8,
                        -- The TOAST table alone: measuring the whole table here too
                        -- doubled the section's time.
                        coalesce((SELECT z.own_bytes + z.index_bytes
                                    FROM dbopt.relation_sizes_nowait(c.reltoastrelid) z
                                   WHERE c.reltoastrelid <> 0), 0),
                        coalesce(s.n_mod_since_analyze, 0)
                   FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   LEFT JOIN attrs a ON a.attrelid = c.oid
                   LEFT JOIN stats st ON st.schemaname = n.nspname AND st.tablename = c.relname
                   LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
                  WHERE c.relkind IN ('r', 'm')
                    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                    AND n.nspname !~ '^pg_toast' AND NOT pg_is_other_temp_schema(n.oid)
                    -- An extension's tables are its to look after.
                    AND NOT EXISTS (SELECT FROM pg_depend d
                                     WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                       AND d.deptype = 'e')",
                None,
                &[],
            )?
            .map(|row| {
                Ok((
                    row.get::<pg_sys::Oid>(1)?.unwrap_or_default(),
                    TableShape {
                        pages: row.get(2)?.unwrap_or(0),
                        tuples: row.get(3)?.unwrap_or(-1.0),
                        block_size: row.get(4)?.unwrap_or(8192.0),
                        fillfactor: row.get(5)?.unwrap_or(100.0),
                        columns: row.get(6)?.unwrap_or(0),
                        columns_with_stats: row.get(7)?.unwrap_or(0),
                        dropped_columns: row.get(8)?.unwrap_or(0),
                        data_width: row.get(9)?.unwrap_or(0.0),
                        has_nulls: row.get(10)?.unwrap_or(false),
                        heap_bytes: row.get(11)?.unwrap_or(0),
                        toast_bytes: row.get(12)?.unwrap_or(0),
                        changed_since_analyze: row.get(13)?.unwrap_or(0),
                    },
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .or_raise("reading the tables' statistics");
    TableIterator::new(shapes.into_iter().map(|(oid, shape)| {
        let e = estimate(&shape);
        (
            oid,
            e.table_bytes,
            e.expected_bytes,
            e.bloat_bytes,
            e.ratio,
            e.confidence.to_owned(),
            e.reasons,
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100,000 rows of two int8 columns, freshly analyzed, in the pages they need.
    fn tight() -> TableShape {
        // 23 → 24 header, 16 data, 4 line pointer: 44 bytes; 8168 / 44 = 185.6 per page.
        let pages = (100_000.0_f64 * 44.0 / 8168.0).ceil() as i64;
        TableShape {
            pages,
            tuples: 100_000.0,
            block_size: 8192.0,
            fillfactor: 100.0,
            columns: 2,
            columns_with_stats: 2,
            dropped_columns: 0,
            data_width: 16.0,
            has_nulls: false,
            heap_bytes: pages * 8192,
            toast_bytes: 0,
            changed_since_analyze: 0,
        }
    }

    #[test]
    fn a_table_in_the_pages_its_rows_need_has_no_bloat() {
        let e = estimate(&tight());
        assert_eq!(e.bloat_bytes, 0);
        assert_eq!(e.confidence, "high");
        assert!(e.reasons.is_empty());
    }

    #[test]
    fn half_empty_pages_are_half_bloat() {
        let mut shape = tight();
        shape.pages *= 2;
        shape.heap_bytes *= 2;
        let e = estimate(&shape);
        assert!((e.ratio - 0.5).abs() < 0.01, "{e:?}");
        assert_eq!(e.confidence, "high");
    }

    #[test]
    fn fillfactor_space_is_not_bloat() {
        let mut shape = tight();
        shape.fillfactor = 50.0;
        shape.pages *= 2;
        let e = estimate(&shape);
        assert!(e.ratio < 0.01, "{e:?}");
    }

    #[test]
    fn doubtful_estimates_say_why() {
        let mut stale = tight();
        stale.changed_since_analyze = 50_000;
        let e = estimate(&stale);
        assert_eq!(e.confidence, "low");
        assert!(e.reasons[0].starts_with("stale statistics"), "{e:?}");

        let mut small = tight();
        small.pages = 3;
        small.tuples = 400.0;
        assert_eq!(estimate(&small).confidence, "low");

        let mut toasted = tight();
        toasted.toast_bytes = toasted.heap_bytes * 3;
        assert!(estimate(&toasted).reasons[0].starts_with("TOAST-heavy"));

        let mut unanalyzed = tight();
        unanalyzed.columns_with_stats = 0;
        assert!(estimate(&unanalyzed).reasons[0].starts_with("no statistics for 2 of 2"));

        let mut dropped = tight();
        dropped.dropped_columns = 1;
        assert_eq!(estimate(&dropped).confidence, "medium");
    }
}

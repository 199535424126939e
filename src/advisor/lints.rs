//! `dbopt.query_lints()`: statement shapes that no index fixes, found in pg_stat_statements'
//! workload. Deep OFFSET pagination (every page re-reads the ones before it), count(*) over
//! large tables (it reads every row it counts) and SELECT * on wide tables (every column
//! fetched, TOAST included, index-only scans impossible).
//!
//! The shapes come from the raw parse tree, which still says `*` and `count(*)`; the tables'
//! sizes and the statements' own statistics decide whether a shape is worth a lint.

use super::plan::{in_subtransaction, is_plannable, Skip, Text};
use super::workload::Statement;
use crate::errors::OrRaise;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{is_a, PgList};
use std::collections::HashSet;
use std::ffi::CStr;

/// Buffers read per returned row from which OFFSET pagination is a warning, not a note.
pub const DEEP_OFFSET_BUFFERS_PER_ROW: f64 = 10.0;
/// Average row width (bytes, from pg_stats) from which a table is wide whatever its columns.
pub const WIDE_ROW_BYTES: f64 = 1000.0;

/// A shape found in a statement, before the tables' sizes are known.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Offset {
        table: u32,
        order: Vec<String>,
    },
    /// `filtered`: with WHERE or GROUP BY, so a table-wide estimate will not do.
    CountStar {
        table: u32,
        filtered: bool,
    },
    SelectStar {
        table: u32,
    },
}

impl Shape {
    pub fn table(&self) -> u32 {
        match self {
            Shape::Offset { table, .. }
            | Shape::CountStar { table, .. }
            | Shape::SelectStar { table } => *table,
        }
    }
}

/// What dbopt knows of a table when judging a shape.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSize {
    pub name: String,
    pub rows: f64,
    pub columns: i64,
    pub row_bytes: f64,
}

/// The thresholds the caller chose.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub large_table_rows: i64,
    pub wide_table_columns: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lint {
    pub lint: &'static str,
    pub severity: &'static str,
    pub detail: String,
    pub suggestion: String,
}

/// Whether `shape`, found in a statement with these statistics, deserves a lint, and which.
pub fn judge(
    shape: &Shape,
    table: &TableSize,
    statement: &Statement,
    limits: Thresholds,
) -> Option<Lint> {
    match shape {
        Shape::Offset { order, .. } => {
            let rows = (statement.rows as f64 / statement.calls.max(1) as f64).max(1.0);
            let buffers = statement.buffers as f64 / statement.calls.max(1) as f64;
            let per_row = buffers / rows;
            let keyset = match order.as_slice() {
                [] => format!(
                    "order by a unique, indexed column of {} and page with WHERE column > \
                     $last_seen LIMIT n instead of OFFSET",
                    table.name
                ),
                columns => format!(
                    "keyset pagination: remember the last row's ({cols}) and ask for \
                     WHERE ({cols}) < ($last_seen) ORDER BY {cols} LIMIT n (> for ascending), \
                     served by an index on ({cols})",
                    cols = columns.join(", ")
                ),
            };
            Some(Lint {
                lint: "offset_pagination",
                severity: if per_row >= DEEP_OFFSET_BUFFERS_PER_ROW {
                    "warning"
                } else {
                    "info"
                },
                detail: format!(
                    "OFFSET pagination over {}: each call reads {buffers:.0} buffers for \
                     {rows:.0} rows ({per_row:.1} per row returned), and deeper pages read more",
                    table.name
                ),
                suggestion: keyset,
            })
        }
        Shape::CountStar { filtered, .. } => {
            (table.rows >= limits.large_table_rows as f64).then(|| Lint {
                lint: "count_large_table",
                severity: "warning",
                detail: format!(
                    "count(*) over {} ({:.0} rows by estimate) reads every row it counts",
                    table.name, table.rows
                ),
                suggestion: if *filtered {
                    "keep a maintained count per filter value or group (dbopt.create_rolling_aggregate or a \
                     trigger-kept counter), or let an index on the filter's columns make it an \
                     index-only scan (dbopt.recommend_indexes)"
                        .into()
                } else {
                    format!(
                        "read an estimate (SELECT reltuples FROM pg_class WHERE oid = \
                         '{}'::regclass) or keep a maintained count",
                        table.name.replace('\'', "''")
                    )
                },
            })
        }
        Shape::SelectStar { .. } => {
            let wide = table.columns >= i64::from(limits.wide_table_columns)
                || table.row_bytes >= WIDE_ROW_BYTES;
            wide.then(|| Lint {
                lint: "select_star_wide_table",
                severity: "info",
                detail: format!(
                    "SELECT * on {} ({} columns, about {:.0} bytes per row)",
                    table.name, table.columns, table.row_bytes
                ),
                suggestion: "name the columns the caller uses: fewer bytes per row, long values \
                             left in TOAST, and index-only scans become possible"
                    .into(),
            })
        }
    }
}

/// The shapes in `statement`'s text; None when the text does not parse.
pub fn shapes(statement: &Statement) -> Result<Vec<Shape>, Skip> {
    let text = Text::new(&statement.query)?;
    in_subtransaction(|| {
        // SAFETY: parsing in a subtransaction; the walk only reads the parser's nodes.
        unsafe {
            let raw = pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
            let mut found = Found::default();
            for statement in PgList::<pg_sys::RawStmt>::from_pg(raw).iter_ptr() {
                // Utility statements hold nodes the raw walker does not know, and no shape.
                if is_plannable((*statement).stmt) {
                    visit((*statement).stmt, &mut found);
                }
            }
            Ok(found.shapes)
        }
    })
}

#[derive(Default)]
struct Found {
    shapes: Vec<Shape>,
    /// Names of WITH queries, which a FROM item may name instead of a table.
    ctes: HashSet<String>,
    /// Each enclosing SELECT's tables and whether it counts a part (WHERE) or groups (GROUP
    /// BY), innermost last.
    scopes: Vec<(Vec<(u32, String)>, bool)>,
}

unsafe extern "C-unwind" fn walker(
    node: *mut pg_sys::Node,
    context: *mut std::ffi::c_void,
) -> bool {
    unsafe {
        visit(node, &mut *(context as *mut Found));
    }
    false
}

unsafe fn visit(node: *mut pg_sys::Node, found: &mut Found) {
    unsafe {
        if node.is_null() {
            return;
        }
        let context = found as *mut Found as *mut std::ffi::c_void;
        match (*node).type_ {
            pg_sys::NodeTag::T_SelectStmt => {
                let select = &*(node as *mut pg_sys::SelectStmt);
                if !select.withClause.is_null() {
                    for cte in PgList::<pg_sys::CommonTableExpr>::from_pg((*select.withClause).ctes)
                        .iter_ptr()
                    {
                        found.ctes.insert(c_string((*cte).ctename));
                    }
                }
                let tables = from_tables(select.fromClause, &found.ctes);
                if !select.limitOffset.is_null() {
                    if let Some((table, _)) = tables.first() {
                        found.shapes.push(Shape::Offset {
                            table: *table,
                            order: order_columns(select.sortClause),
                        });
                    }
                }
                for target in PgList::<pg_sys::ResTarget>::from_pg(select.targetList).iter_ptr() {
                    if let Some(qualifier) = star((*target).val) {
                        found.shapes.extend(
                            tables
                                .iter()
                                .filter(|(_, name)| qualifier.as_ref().is_none_or(|q| q == name))
                                .map(|(table, _)| Shape::SelectStar { table: *table }),
                        );
                    }
                }
                found.scopes.push((
                    tables,
                    !select.whereClause.is_null() || !select.groupClause.is_null(),
                ));
                pg_sys::raw_expression_tree_walker(node, Some(walker), context);
                found.scopes.pop();
            }
            pg_sys::NodeTag::T_FuncCall => {
                let call = &*(node as *mut pg_sys::FuncCall);
                let name = PgList::<pg_sys::Node>::from_pg(call.funcname)
                    .iter_ptr()
                    .last()
                    .map(|n| string_value(n));
                if call.agg_star && name.as_deref() == Some("count") {
                    if let Some((tables, filtered)) = found.scopes.last() {
                        if let Some((table, _)) = tables.first() {
                            found.shapes.push(Shape::CountStar {
                                table: *table,
                                filtered: *filtered,
                            });
                        }
                    }
                }
                pg_sys::raw_expression_tree_walker(node, Some(walker), context);
            }
            _ => {
                pg_sys::raw_expression_tree_walker(node, Some(walker), context);
            }
        }
    }
}

/// The tables a FROM list names, resolved with the session's search_path, each with the name
/// a `name.*` may use for it (its alias, else its own name). WITH queries are not tables.
unsafe fn from_tables(from: *mut pg_sys::List, ctes: &HashSet<String>) -> Vec<(u32, String)> {
    unsafe {
        let mut tables = Vec::new();
        let mut pending: Vec<*mut pg_sys::Node> =
            PgList::<pg_sys::Node>::from_pg(from).iter_ptr().collect();
        while let Some(item) = pending.pop() {
            match (*item).type_ {
                pg_sys::NodeTag::T_RangeVar => {
                    let range = item as *mut pg_sys::RangeVar;
                    let name = c_string((*range).relname);
                    if (*range).schemaname.is_null() && ctes.contains(&name) {
                        continue;
                    }
                    let oid = pg_sys::RangeVarGetRelidExtended(
                        range,
                        pg_sys::NoLock as pg_sys::LOCKMODE,
                        pg_sys::RVROption::RVR_MISSING_OK,
                        None,
                        std::ptr::null_mut(),
                    );
                    if oid != pg_sys::InvalidOid {
                        let alias = (*range).alias;
                        let visible = if alias.is_null() {
                            name
                        } else {
                            c_string((*alias).aliasname)
                        };
                        tables.insert(0, (oid.to_u32(), visible));
                    }
                }
                pg_sys::NodeTag::T_JoinExpr => {
                    let join = item as *mut pg_sys::JoinExpr;
                    pending.push((*join).larg);
                    pending.push((*join).rarg);
                }
                _ => {}
            }
        }
        tables
    }
}

/// `*` gives Some(None), `t.*` Some(Some("t")), anything else None.
unsafe fn star(node: *mut pg_sys::Node) -> Option<Option<String>> {
    unsafe {
        if !is_a(node, pg_sys::NodeTag::T_ColumnRef) {
            return None;
        }
        let fields: Vec<_> =
            PgList::<pg_sys::Node>::from_pg((*(node as *mut pg_sys::ColumnRef)).fields)
                .iter_ptr()
                .collect();
        match fields.as_slice() {
            [.., last] if is_a(*last, pg_sys::NodeTag::T_A_Star) => {
                Some((fields.len() >= 2).then(|| string_value(fields[fields.len() - 2])))
            }
            _ => None,
        }
    }
}

/// The plain column names an ORDER BY sorts on, with DESC where it says so.
unsafe fn order_columns(sort: *mut pg_sys::List) -> Vec<String> {
    unsafe {
        PgList::<pg_sys::SortBy>::from_pg(sort)
            .iter_ptr()
            .filter_map(|by| {
                let node = (*by).node;
                if !is_a(node, pg_sys::NodeTag::T_ColumnRef) {
                    return None;
                }
                let fields = (*(node as *mut pg_sys::ColumnRef)).fields;
                let last = PgList::<pg_sys::Node>::from_pg(fields).iter_ptr().last()?;
                is_a(last, pg_sys::NodeTag::T_String).then(|| string_value(last))
            })
            .collect()
    }
}

unsafe fn string_value(node: *mut pg_sys::Node) -> String {
    unsafe {
        if is_a(node, pg_sys::NodeTag::T_String) {
            c_string((*(node as *mut pg_sys::String)).sval)
        } else {
            String::new()
        }
    }
}

unsafe fn c_string(pointer: *const std::ffi::c_char) -> String {
    if pointer.is_null() {
        return String::new();
    }
    unsafe { CStr::from_ptr(pointer) }
        .to_string_lossy()
        .into_owned()
}

/// The row count, column count and average row width of `table`, for judging a shape on it.
pub fn table_size(table: u32) -> Option<TableSize> {
    Spi::connect(|client| {
        let mut rows = client.select(
            "SELECT c.oid::regclass::text, c.reltuples::float8, \
                    (SELECT count(*) FROM pg_catalog.pg_attribute a \
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), \
                    (SELECT coalesce(sum(s.avg_width), 0)::float8 FROM pg_catalog.pg_stats s \
                      WHERE s.schemaname = n.nspname AND s.tablename = c.relname) \
               FROM pg_catalog.pg_class c \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              WHERE c.oid = $1",
            Some(1),
            &[pg_sys::Oid::from(table).into()],
        )?;
        let Some(row) = rows.next() else {
            return Ok(None);
        };
        Ok::<_, pgrx::spi::Error>(Some(TableSize {
            name: row.get::<String>(1)?.unwrap_or_default(),
            rows: row.get::<f64>(2)?.unwrap_or(0.0).max(0.0),
            columns: row.get::<i64>(3)?.unwrap_or(0),
            row_bytes: row.get::<f64>(4)?.unwrap_or(0.0),
        }))
    })
    .or_raise("reading a table's size for query_lints")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(calls: i64, rows: i64, buffers: i64) -> Statement {
        Statement {
            queryid: 1,
            calls,
            rows,
            buffers,
            query: String::new(),
        }
    }

    fn table(rows: f64, columns: i64, row_bytes: f64) -> TableSize {
        TableSize {
            name: "ml_jobs".into(),
            rows,
            columns,
            row_bytes,
        }
    }

    const LIMITS: Thresholds = Thresholds {
        large_table_rows: 1_000_000,
        wide_table_columns: 15,
    };

    #[test]
    fn offset_pagination_is_a_warning_when_each_row_costs_many_buffers() {
        let shape = Shape::Offset {
            table: 1,
            order: vec!["created_at".into()],
        };
        // 100 calls of 50 rows reading 1,050 buffers each: 21 buffers per row returned.
        let deep = judge(
            &shape,
            &table(1e6, 8, 200.0),
            &statement(100, 5000, 105_000),
            LIMITS,
        )
        .unwrap();
        assert_eq!((deep.lint, deep.severity), ("offset_pagination", "warning"));
        assert!(deep
            .suggestion
            .contains("WHERE (created_at) < ($last_seen)"));
        let shallow = judge(
            &shape,
            &table(1e6, 8, 200.0),
            &statement(100, 5000, 2000),
            LIMITS,
        )
        .unwrap();
        assert_eq!(shallow.severity, "info");
    }

    #[test]
    fn offset_without_order_asks_for_one() {
        let shape = Shape::Offset {
            table: 1,
            order: vec![],
        };
        let lint = judge(&shape, &table(10.0, 2, 8.0), &statement(1, 1, 1), LIMITS).unwrap();
        assert!(lint
            .suggestion
            .starts_with("order by a unique, indexed column"));
    }

    #[test]
    fn count_star_only_on_large_tables_and_the_advice_follows_the_filter() {
        let unfiltered = Shape::CountStar {
            table: 1,
            filtered: false,
        };
        assert!(judge(
            &unfiltered,
            &table(999_999.0, 8, 0.0),
            &statement(1, 1, 1),
            LIMITS
        )
        .is_none());
        let lint = judge(
            &unfiltered,
            &table(1e6, 8, 0.0),
            &statement(1, 1, 1),
            LIMITS,
        )
        .unwrap();
        assert!(lint.suggestion.contains("reltuples"));
        let filtered = Shape::CountStar {
            table: 1,
            filtered: true,
        };
        let lint = judge(&filtered, &table(1e6, 8, 0.0), &statement(1, 1, 1), LIMITS).unwrap();
        assert!(lint.suggestion.contains("index-only scan"));
    }

    #[test]
    fn select_star_is_linted_on_many_columns_or_wide_rows_only() {
        let shape = Shape::SelectStar { table: 1 };
        let s = statement(1, 1, 1);
        assert!(judge(&shape, &table(1e6, 14, 999.0), &s, LIMITS).is_none());
        assert!(judge(&shape, &table(10.0, 15, 20.0), &s, LIMITS).is_some());
        assert!(judge(&shape, &table(10.0, 3, 1000.0), &s, LIMITS).is_some());
    }
}

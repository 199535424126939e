//! Database health and upkeep (issue 7): `dbopt.db_health()`, statistics snapshots, the
//! materialized-view refresh manager (`matviews`) and per-key row caps (`row_caps`).
//!
//! `dbopt.index_health()` (sql/index_health.sql) is plain SQL over the catalogs: which indexes
//! are invalid, duplicate, prefix-redundant or unused, compared on what the catalogs hold
//! (keys, operator classes, collations, deparsed expressions and predicates), never on text.
//! Its tests are live-server ones (pgrx-tests/tests/health.rs): an invalid index is only made
//! by a failing CREATE INDEX CONCURRENTLY, which no transaction can run.

mod bloat;
mod matviews;
mod row_caps;
mod sizes;

use pgrx::prelude::*;

extension_sql_file!(
    "../../sql/health.sql",
    name = "health",
    requires = [bloat::table_bloat_estimates, sizes::relation_sizes_nowait]
);
extension_sql_file!(
    "../../sql/matviews.sql",
    name = "matviews",
    requires = ["health"]
);
extension_sql_file!(
    "../../sql/row_caps.sql",
    name = "row_caps",
    requires = ["health"]
);
extension_sql_file!(
    "../../sql/index_health.sql",
    name = "index_health",
    requires = ["health"]
);

//! One materialized-view refresh, for `CALL dbopt.refresh_matviews()` (sql/matviews.sql), which
//! picks the due views, orders them and commits after each. The refresh is DDL as far as locks
//! go (ACCESS EXCLUSIVE plain, EXCLUSIVE concurrently), so it waits at most dbopt.lock_timeout.

use crate::ddl;
use crate::errors::OrRaise;
use crate::ident::Relation;
use pgrx::prelude::*;
use pgrx::PgRelation;

/// Refreshes `view` the way `dbopt.matview_refresh_method` says (CONCURRENTLY when possible)
/// and returns which way that was.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn refresh_matview(view: PgRelation) -> String {
    let oid = view.oid();
    drop(view);
    // Resolved first: a view dropped meanwhile is a 42P01 naming it.
    let quoted = Relation::from_oid(oid).quoted();
    let method = Spi::get_one_with_args::<String>(
        "SELECT method FROM dbopt.matview_refresh_method($1)",
        &[oid.into()],
    )
    .or_raise("choosing how to refresh")
    .unwrap_or_else(|| "plain".to_owned());
    let concurrently = if method == "concurrently" {
        "CONCURRENTLY "
    } else {
        ""
    };
    ddl::execute(
        &format!("REFRESH MATERIALIZED VIEW {concurrently}{quoted}"),
        &quoted,
    );
    method
}

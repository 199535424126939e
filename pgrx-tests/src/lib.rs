//! A harness for testing dbopt against real PostgreSQL servers: what a rolled-back `#[pg_test]`
//! transaction cannot show (procedures that COMMIT, concurrent sessions, pg_cron, CONCURRENTLY,
//! a backend or the whole server killed mid-operation).
//!
//! Each [`Cluster`] is a throwaway server of its own (own data directory, socket directory, no
//! TCP), run by the `postgres` user when the tests run as root, removed when dropped.

mod cluster;
pub mod index_builds;
mod workload;

pub use cluster::{Cluster, ClusterOptions};
pub use postgres;
pub use workload::{Workload, WorkloadReport};

/// The SQLSTATE of a database error, or "" for errors that did not come from the server.
pub fn sqlstate(err: &postgres::Error) -> &str {
    err.code().map(|c| c.code()).unwrap_or("")
}

/// The server's message, detail and hint of an error, for assertions and failure output.
pub fn db_error(err: &postgres::Error) -> (String, Option<String>, Option<String>) {
    match err.as_db_error() {
        Some(db) => (
            db.message().to_owned(),
            db.detail().map(Into::into),
            db.hint().map(Into::into),
        ),
        None => (err.to_string(), None, None),
    }
}

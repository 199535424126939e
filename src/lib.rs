//! dbopt: PostgreSQL upkeep from inside the database.
//!
//! Capabilities live one per module (partitions, archive, advisor, rollups, health, schedule);
//! the small modules beside them are shared by all: error reporting, identifier handling,
//! settings, lock-bounded DDL and detection of the extensions some features need.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

pub mod checks;
pub mod ddl;
pub mod errors;
pub mod gucs;
pub mod ident;
pub mod requirements;
pub mod subxact;
pub mod version;

pub mod advisor;
pub mod archive;
pub mod health;
pub mod partitions;
pub mod rollups;
pub mod schedule;

#[cfg(any(test, feature = "pg_test"))]
pub mod testing;

extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!("../sql/partitions.sql", name = "partitions", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::register();
    advisor::install_planner_hook();
    schedule::worker::register_schedulers();
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        // pg_stat_statements is preloaded (but not created) so tests can see both states of it;
        // pg_cron is deliberately absent so tests can see the "not loaded" diagnosis.
        vec!["shared_preload_libraries = 'pg_stat_statements'"]
    }
}

//! Scheduling (issue 8): `dbopt.schedule()` through pg_cron, and dbopt's own background worker
//! where pg_cron is absent.
//!
//! `tasks` turns a task and its arguments into the one statement a run executes; `cron` reads
//! schedules as pg_cron does (so both runners agree); `jobs` is the SQL surface; `timetable`
//! decides when the worker's jobs are due, `worker` is the worker itself and `toplevel` runs a
//! job's statement the way a client's top-level statement runs. The tables dbopt.jobs and
//! dbopt.job_log and the view dbopt.job_runs are in sql/schedule.sql.

pub mod cron;
mod jobs;
mod tasks;
mod timetable;
mod toplevel;
pub mod worker;

use crate::errors::DboptError;
use crate::gucs::{self, JobRunner};
use crate::requirements::{self, Component, InstalledExtension, Status};
use pgrx::prelude::*;

extension_sql_file!(
    "../../sql/schedule.sql",
    name = "schedule",
    requires = ["health"]
);

/// Who runs a job created now in this database.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Runner {
    /// pg_cron, as installed in this database.
    PgCron(InstalledExtension),
    Worker,
}

impl Runner {
    /// As stored in dbopt.jobs.runner and dbopt.index_builds.runner.
    pub fn name(&self) -> &'static str {
        match self {
            Runner::PgCron(_) => "pg_cron",
            Runner::Worker => "worker",
        }
    }
}

/// The runner for a job `feature` creates now: as dbopt.job_runner says, `auto` meaning pg_cron
/// where it is ready in this database and dbopt's worker otherwise. Raises 55000 when
/// dbopt.job_runner = pg_cron and pg_cron is not ready.
pub fn runner_for(feature: &str) -> Runner {
    match gucs::job_runner() {
        JobRunner::PgCron => Runner::PgCron(requirements::require(Component::PgCron, feature)),
        JobRunner::Worker => Runner::Worker,
        JobRunner::Auto => {
            let observed = requirements::observe(Component::PgCron);
            match requirements::diagnose(Component::PgCron, &observed) {
                Status::Ready(installed) => Runner::PgCron(installed),
                _ => Runner::Worker,
            }
        }
    }
}

/// Why dbopt's worker will not run jobs created in this database, with what to do about it;
/// None when it will.
pub fn worker_unavailable() -> Option<(String, String)> {
    if worker::serves_current_database() {
        return None;
    }
    let database = worker::current_database();
    Some((
        format!("dbopt's background worker does not run jobs in database \"{database}\""),
        format!(
            "Add dbopt to shared_preload_libraries and \"{database}\" to dbopt.worker_databases \
             in postgresql.conf, then restart PostgreSQL."
        ),
    ))
}

/// Raises 55000 when the runner a job `feature` creates now would get cannot run it, saying
/// what is missing; `manual` is another way to get the job done, appended to the hint.
pub fn require_runner(feature: &str, manual: &str) -> Runner {
    let runner = runner_for(feature);
    if matches!(runner, Runner::PgCron(_)) {
        return runner;
    }
    let Some((reason, hint)) = worker_unavailable() else {
        return runner;
    };
    let (message, pg_cron_hint) = if gucs::job_runner() == JobRunner::Worker {
        (
            format!(
                "{feature} is to use dbopt's background worker (dbopt.job_runner), but {reason}"
            ),
            String::new(),
        )
    } else {
        let observed = requirements::observe(Component::PgCron);
        let pg_cron = requirements::diagnose(Component::PgCron, &observed);
        (
            format!(
                "{feature} needs pg_cron or dbopt's background worker: pg_cron is {}, and {reason}",
                pg_cron.describe()
            ),
            format!(
                "For pg_cron: {} ",
                pg_cron
                    .hint(Component::PgCron, &observed)
                    .unwrap_or_default()
            ),
        )
    };
    DboptError::new(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        message,
    )
    .hint(format!("{pg_cron_hint}For the worker: {hint} {manual}"))
    .raise()
}

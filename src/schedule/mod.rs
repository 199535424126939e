//! Scheduling (issue 8): `dbopt.schedule()` through pg_cron, and a background worker where pg_cron
//! is absent.
//!
//! `tasks` turns a task and its arguments into the one statement a run executes; `cron` reads
//! schedules as pg_cron does (so both runners agree); `jobs` is the SQL surface; the table
//! dbopt.jobs and the view dbopt.job_runs are in sql/schedule.sql.

pub mod cron;
mod jobs;
mod tasks;

use pgrx::prelude::*;

extension_sql_file!(
    "../../sql/schedule.sql",
    name = "schedule",
    requires = ["health"]
);

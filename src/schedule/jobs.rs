//! `dbopt.schedule()` / `dbopt.unschedule()`: a job is a row in dbopt.jobs and, where pg_cron
//! is installed in this database, a pg_cron job named `dbopt_job_<id>` running the task's one
//! statement as the scheduling role.

use super::cron;
use super::tasks;
use super::Runner;
use crate::errors::{DboptError, OrRaise};
use pgrx::prelude::*;
use pgrx::JsonB;

fn invalid(message: String, hint: &str) -> ! {
    DboptError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message)
        .hint(hint)
        .raise()
}

/// Registers `task` to run on the `cron` schedule with `args`, and returns the job's id (the
/// existing job's when the caller already has this one).
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn schedule(task: &str, cron: &str, args: default!(JsonB, "'{}'")) -> i64 {
    let schedule = cron.trim();
    let parsed = cron::parse(schedule).unwrap_or_else(|reason| {
        invalid(
            format!("invalid cron schedule \"{schedule}\" for task \"{task}\": {reason}"),
            "Five fields: minute hour day-of-month month day-of-week, e.g. '*/5 * * * *'; \
             or @hourly, @daily, @weekly, @monthly; or '30 seconds'.",
        )
    });
    let command = tasks::command(task, &args.0).unwrap_or_else(|reason| {
        invalid(
            format!("cannot schedule {reason}"),
            &format!("Tasks: {}.", tasks::task_names()),
        )
    });
    check_arguments(task, &args.0);
    // The same schedule asked for again (a deploy script run twice) is the same job.
    let existing = Spi::get_one_with_args::<i64>(
        "SELECT (SELECT job_id FROM dbopt.jobs \
                  WHERE task = $1 AND cron = $2 AND args = $3 AND owner = current_user::regrole \
                  LIMIT 1)",
        &[task.into(), schedule.into(), JsonB(args.0.clone()).into()],
    )
    .or_raise("looking for the same job");
    if let Some(job_id) = existing {
        return job_id;
    }
    let runner = super::runner_for("dbopt.schedule");
    if let Runner::PgCron(pg_cron) = &runner {
        if parsed.interval_seconds().is_some() && !cron::pg_cron_runs_seconds(&pg_cron.version) {
            DboptError::new(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "pg_cron {} cannot run task \"{task}\" every \"{schedule}\": schedules in \
                     seconds need pg_cron 1.5",
                    pg_cron.version
                ),
            )
            .hint(
                "Schedule it in minutes ('* * * * *'), or have dbopt's background worker run it: \
                 SET dbopt.job_runner = 'worker' before dbopt.schedule().",
            )
            .raise();
        }
    }
    let job_id = Spi::get_one_with_args::<i64>(
        "INSERT INTO dbopt.jobs (task, cron, args, command, runner) VALUES ($1, $2, $3, $4, $5) \
         RETURNING job_id",
        &[
            task.into(),
            schedule.into(),
            args.into(),
            command.as_str().into(),
            runner.name().into(),
        ],
    )
    .or_raise("recording the job")
    .unwrap_or_default();
    if matches!(runner, Runner::Worker) {
        // Recorded all the same: the worker may be configured later (a restart), and the job
        // then runs without being scheduled again.
        if let Some((reason, hint)) = super::worker_unavailable() {
            DboptError::new(
                PgSqlErrorCode::ERRCODE_WARNING,
                format!("dbopt job {job_id} will not run yet: {reason}"),
            )
            .hint(hint)
            .warn();
        }
    } else {
        Spi::run_with_args(
            "UPDATE dbopt.jobs SET cron_job_id = cron.schedule($2, $3, $4) WHERE job_id = $1",
            &[
                job_id.into(),
                format!("dbopt_job_{job_id}").into(),
                cron::for_pg_cron(schedule).into(),
                command.into(),
            ],
        )
        .or_raise("creating the pg_cron job");
    }
    job_id
}

/// Argument values that must name something the caller may act on, checked now rather than at
/// the first run: a maintenance parent must exist and be the caller's.
fn check_arguments(task: &str, args: &serde_json::Value) {
    if task != "maintenance" {
        return;
    }
    let Some(parent) = args.get("parent").and_then(|p| p.as_str()) else {
        return;
    };
    let owns = Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE') FROM pg_catalog.pg_class c \
          WHERE c.oid = $1::text::regclass",
        &[parent.into()],
    )
    .or_raise("checking the parent");
    if owns != Some(true) {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("must be owner of table {parent} to schedule its maintenance"),
        )
        .hint("Jobs run as the role that schedules them; schedule it as the table's owner.")
        .raise();
    }
}

/// Removes job `job` (and its pg_cron job). Raises 42704 when the caller has no such job.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn unschedule(job: i64) -> bool {
    let (removed, cron_job_id) = Spi::get_two_with_args::<i64, i64>(
        "WITH gone AS (DELETE FROM dbopt.jobs WHERE job_id = $1 RETURNING cron_job_id) \
         SELECT count(*), max(cron_job_id) FROM gone",
        &[job.into()],
    )
    .or_raise("removing the job");
    if removed != Some(1) {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("dbopt job {job} does not exist"),
        )
        .hint("dbopt.jobs lists the jobs of the current role.")
        .raise();
    }
    if let Some(cron_job_id) = cron_job_id {
        Spi::run_with_args(
            "SELECT cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobid = $1",
            &[cron_job_id.into()],
        )
        .or_raise("removing the pg_cron job");
    }
    true
}

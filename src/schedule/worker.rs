//! dbopt's background worker, for servers without pg_cron: with dbopt in
//! shared_preload_libraries, one scheduler process per database named in
//! dbopt.worker_databases runs the jobs whose runner is 'worker' and the index builds
//! dbopt.apply_index() hands it.
//!
//! The scheduler connects as the bootstrap superuser only to read dbopt.jobs and keep
//! dbopt.job_log. Each run is a process of its own (a dynamic background worker) connected as
//! the job's owner, so a job can do exactly what its owner could do in a session; it runs the
//! job's statement at top level (a CALL may COMMIT, CREATE INDEX CONCURRENTLY may run) and
//! records its outcome. A run whose process ends without recording one (terminated, crashed, or
//! the server restarted) is recorded as failed by the scheduler.

use super::timetable::Timetable;
use super::toplevel;
use crate::errors::{report_of, sqlstate, OrRaise};
use crate::gucs;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::CStr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Set in the postmaster when dbopt is preloaded; every backend inherits it.
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// How often the scheduler looks for new and due jobs.
const POLL: Duration = Duration::from_secs(1);

/// How often it sweeps up runs whose process is gone and prunes dbopt.job_log, in seconds.
const HOUSEKEEPING_EVERY: i64 = 60;

/// Registers a scheduler for each database in dbopt.worker_databases; only while
/// shared_preload_libraries is being loaded, when background workers can be registered.
pub fn register_schedulers() {
    // SAFETY: a flag PostgreSQL sets while it loads shared_preload_libraries.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    PRELOADED.store(true, Ordering::Relaxed);
    for database in gucs::worker_databases() {
        BackgroundWorkerBuilder::new(&format!("dbopt scheduler for database {database}"))
            .set_type("dbopt scheduler")
            .set_library("dbopt")
            .set_function("dbopt_scheduler_main")
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            // A database created after the server started is picked up within this.
            .set_restart_time(Some(Duration::from_secs(10)))
            .set_extra(&database)
            .load();
    }
}

pub fn current_database() -> String {
    // SAFETY: a catalog lookup of the connected database, copied at once.
    unsafe {
        let name = pg_sys::get_database_name(pg_sys::MyDatabaseId);
        if name.is_null() {
            return String::new();
        }
        CStr::from_ptr(name).to_string_lossy().into_owned()
    }
}

/// Whether a scheduler was started for the current database.
pub fn serves_current_database() -> bool {
    PRELOADED.load(Ordering::Relaxed) && gucs::worker_databases().contains(&current_database())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn dbopt_scheduler_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = BackgroundWorker::get_extra().to_owned();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    log!("dbopt scheduler started in database \"{database}\"");
    let mut scheduler = Scheduler::default();
    let mut wait = Duration::ZERO;
    while BackgroundWorker::wait_latch(Some(wait)) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: the standard reload of postgresql.conf, outside any transaction.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        scheduler.tick();
        wait = POLL;
    }
    log!("dbopt scheduler in database \"{database}\" stopped");
}

/// A run handed to a process of its own.
struct Launch {
    run_id: i64,
    role: pg_sys::Oid,
}

#[derive(Default)]
struct Scheduler {
    timetable: Timetable,
    /// Runs whose process was started and has not been seen to end.
    running: Vec<(i64, *mut pg_sys::BackgroundWorkerHandle)>,
    /// When the last housekeeping ran (0: not yet, so the first tick sweeps up what a previous
    /// scheduler left).
    housekept_at: i64,
    /// The last error a tick logged, so a persisting one is logged once.
    last_error: Option<String>,
}

impl Scheduler {
    fn tick(&mut self) {
        self.reap();
        let now = unix_now();
        let housekeeping = now - self.housekept_at >= HOUSEKEEPING_EVERY;
        let tracked: Vec<i64> = self.running.iter().map(|(run, _)| *run).collect();
        let timetable = &mut self.timetable;
        let launches = transaction(&mut self.last_error, "looking for due jobs", || {
            if !dbopt_installed() {
                *timetable = Timetable::default();
                return Vec::new();
            }
            if housekeeping {
                sweep_lost_runs(&tracked);
                prune_job_log();
            }
            let mut launches = claim_due_jobs(timetable, now);
            launches.extend(claim_index_builds());
            launches
        });
        let Some(launches) = launches else {
            return;
        };
        if housekeeping {
            self.housekept_at = now;
        }
        for launch in launches {
            self.launch(launch);
        }
    }

    /// Starts a process for `launch`, or records the run as failed when no slot is free.
    fn launch(&mut self, launch: Launch) {
        // SAFETY: reads of this process's own database and pid.
        let (database, pid) = unsafe { (pg_sys::MyDatabaseId, pg_sys::MyProcPid) };
        let builder = BackgroundWorkerBuilder::new(&format!("dbopt job run {}", launch.run_id))
            .set_type("dbopt job")
            .set_library("dbopt")
            .set_function("dbopt_job_main")
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(None)
            .set_argument(Some(pg_sys::Datum::from(launch.run_id)))
            .set_extra(&format!("{} {}", database.to_u32(), launch.role.to_u32()))
            // The postmaster signals this process when the run starts and ends.
            .set_notify_pid(pid);
        let mut worker: pg_sys::BackgroundWorker = (&builder).into();
        let mut handle = std::ptr::null_mut();
        // SAFETY: `worker` is a complete registration; the handle is allocated in
        // TopMemoryContext (the current context between transactions) and freed in `reap`.
        let started = unsafe { pg_sys::RegisterDynamicBackgroundWorker(&mut worker, &mut handle) };
        if started {
            self.running.push((launch.run_id, handle));
        } else {
            transaction(
                &mut self.last_error,
                "recording a run that could not start",
                || {
                    record_lost_runs(
                        &[launch.run_id],
                        "53000",
                        "no background worker slot was free to run it: raise max_worker_processes",
                    )
                },
            );
        }
    }

    /// Forgets the runs whose process has ended, recording as failed any that did not record
    /// an outcome.
    fn reap(&mut self) {
        let mut ended = Vec::new();
        self.running.retain(|(run_id, handle)| {
            let mut pid = 0;
            // SAFETY: `handle` came from RegisterDynamicBackgroundWorker and is freed only here.
            let status = unsafe { pg_sys::GetBackgroundWorkerPid(*handle, &mut pid) };
            if status != pg_sys::BgwHandleStatus::BGWH_STOPPED {
                return true;
            }
            unsafe { pg_sys::pfree((*handle).cast()) };
            ended.push(*run_id);
            false
        });
        if !ended.is_empty() {
            transaction(&mut self.last_error, "recording ended runs", || {
                record_lost_runs(
                    &ended,
                    "57P01",
                    "the run's process ended before recording an outcome (it was terminated \
                     or failed to start; see the server log)",
                )
            });
        }
    }
}

/// Runs `work` in a transaction of its own and commits it. An error aborts it, is logged (once
/// while it persists, through `last_error`) and gives None: one bad tick does not stop the
/// scheduler.
fn transaction<T>(
    last_error: &mut Option<String>,
    doing: &str,
    work: impl FnOnce() -> T,
) -> Option<T> {
    // SAFETY: called between transactions; the error path aborts what was begun here.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let outcome = PgTryBuilder::new(AssertUnwindSafe(|| {
        let result = work();
        // SAFETY: the snapshot pushed above, and the transaction begun above.
        unsafe {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        }
        Ok(result)
    }))
    .catch_others(Err)
    .execute();
    match outcome {
        Ok(result) => {
            *last_error = None;
            Some(result)
        }
        Err(caught) => {
            // SAFETY: ends the failed transaction, as PostgreSQL's own error recovery does.
            unsafe { pg_sys::AbortCurrentTransaction() };
            let message = format!("dbopt scheduler: {doing}: {}", report_of(&caught).message());
            if last_error.as_ref() != Some(&message) {
                warning!("{message}");
                *last_error = Some(message);
            }
            None
        }
    }
}

fn dbopt_installed() -> bool {
    Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'dbopt')",
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// Records runs still marked running as failed with `sqlstate` and `message`, and the index
/// builds among them.
fn record_lost_runs(runs: &[i64], sqlstate: &str, message: &str) {
    Spi::run_with_args(
        "WITH lost AS (
           UPDATE dbopt.job_log l
              SET outcome = 'failed', ended_at = pg_catalog.clock_timestamp(),
                  sqlstate = $2, message = $3
            WHERE l.run_id = ANY ($1) AND l.outcome = 'running'
           RETURNING l.index_build, l.started_at, l.ended_at)
         SELECT dbopt.record_index_build_outcome(index_build, false, $3, started_at, ended_at)
           FROM lost WHERE index_build IS NOT NULL",
        &[runs.to_vec().into(), sqlstate.into(), message.into()],
    )
    .or_raise("recording lost runs");
}

/// Runs marked running that no process of this scheduler runs and no live process of any
/// scheduler does: their process ended while a previous scheduler (or server) ran.
fn sweep_lost_runs(tracked: &[i64]) {
    let lost: Vec<i64> = Spi::connect(|client| {
        client
            .select(
                "SELECT l.run_id FROM dbopt.job_log l
                  WHERE l.outcome = 'running' AND l.run_id <> ALL ($1)
                    AND NOT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a
                                     WHERE a.pid = l.pid AND a.backend_type = 'dbopt job')
                    AND (l.pid IS NOT NULL
                         OR l.started_at < pg_catalog.now() - interval '1 minute')",
                None,
                &[tracked.to_vec().into()],
            )?
            .map(|row| row.get::<i64>(1).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()
    })
    .or_raise("looking for lost runs");
    if !lost.is_empty() {
        record_lost_runs(
            &lost,
            "57P01",
            "the run was interrupted: its process ended, or the server restarted, before it \
             recorded an outcome",
        );
    }
}

fn prune_job_log() {
    Spi::run_with_args(
        "DELETE FROM dbopt.job_log
          WHERE ended_at < pg_catalog.now() - pg_catalog.make_interval(secs => $1)",
        &[f64::from(gucs::job_log_retention_seconds()).into()],
    )
    .or_raise("pruning dbopt.job_log");
}

/// Records a run for each job due now whose previous run has ended, and returns those to
/// start. A job whose owner cannot log in is recorded as failed at once: its process could
/// not connect as that role.
fn claim_due_jobs(timetable: &mut Timetable, now: i64) -> Vec<Launch> {
    Spi::connect_mut(|client| {
        let jobs = client
            .select(
                "SELECT job_id, cron FROM dbopt.jobs WHERE runner = 'worker' ORDER BY job_id",
                None,
                &[],
            )?
            .map(|row| {
                let id = row.get::<i64>(1)?.unwrap_or_default();
                Ok((id, row.get::<String>(2)?.unwrap_or_default()))
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()?;
        let due = timetable.due(&jobs, now);
        if due.is_empty() {
            return Ok(Vec::new());
        }
        client
            .update(
                "INSERT INTO dbopt.job_log (job_id, task, owner, command, outcome, ended_at,
                                            sqlstate, message)
                 SELECT j.job_id, j.task, j.owner, j.command,
                        CASE WHEN r.rolcanlogin THEN 'running' ELSE 'failed' END,
                        CASE WHEN r.rolcanlogin THEN NULL ELSE pg_catalog.clock_timestamp() END,
                        CASE WHEN r.rolcanlogin THEN NULL ELSE '28000' END,
                        CASE WHEN r.rolcanlogin THEN NULL
                             WHEN r.oid IS NULL
                             THEN 'the role that scheduled the job no longer exists'
                             ELSE pg_catalog.format('role %I cannot log in, and the job runs as it',
                                                    r.rolname) END
                   FROM dbopt.jobs j
                   LEFT JOIN pg_catalog.pg_roles r ON r.oid = j.owner
                  WHERE j.job_id = ANY ($1)
                    AND NOT EXISTS (SELECT FROM dbopt.job_log l
                                     WHERE l.job_id = j.job_id AND l.outcome = 'running')
                 RETURNING run_id, owner::oid, outcome = 'running'",
                None,
                &[due.into()],
            )?
            .filter_map(|row| launch_of(&row).transpose())
            .collect::<Result<Vec<_>, _>>()
    })
    .or_raise("claiming due jobs")
}

/// Claims the oldest queued index build of each role that has none running, and returns its
/// run. One build at a time per role: two concurrent builds wait for each other's snapshots.
fn claim_index_builds() -> Vec<Launch> {
    Spi::connect_mut(|client| {
        client
            .update(
                "WITH claimed AS (
                   UPDATE dbopt.index_builds b
                      SET state = 'running', started_at = pg_catalog.clock_timestamp()
                    WHERE b.id IN (
                          SELECT DISTINCT ON (q.requested_by) q.id FROM dbopt.index_builds q
                           WHERE q.runner = 'worker' AND q.state = 'queued'
                             AND NOT EXISTS (SELECT FROM dbopt.index_builds o
                                              WHERE o.requested_by = q.requested_by
                                                AND o.state IN ('scheduled', 'running'))
                           ORDER BY q.requested_by, q.id)
                   RETURNING b.id, b.requested_by, b.command)
                 INSERT INTO dbopt.job_log (index_build, task, owner, command)
                 SELECT c.id, 'apply_index', r.oid, c.command
                   FROM claimed c JOIN pg_catalog.pg_roles r ON r.rolname = c.requested_by
                 RETURNING run_id, owner::oid, true",
                None,
                &[],
            )?
            .filter_map(|row| launch_of(&row).transpose())
            .collect::<Result<Vec<_>, _>>()
    })
    .or_raise("claiming index builds")
}

/// A (run_id, owner, startable) row as a run to start, or None when not startable.
fn launch_of(row: &pgrx::spi::SpiHeapTupleData) -> Result<Option<Launch>, pgrx::spi::Error> {
    if !row.get::<bool>(3)?.unwrap_or(false) {
        return Ok(None);
    }
    Ok(Some(Launch {
        run_id: row.get::<i64>(1)?.unwrap_or_default(),
        role: row.get::<pg_sys::Oid>(2)?.unwrap_or(pg_sys::InvalidOid),
    }))
}

extern "C-unwind" {
    /// PostgreSQL's SIGTERM handler for backends (pg_sys::die is a wrapper, not a handler).
    fn die(signal: std::ffi::c_int);
}

/// One run: connects as the job's owner, runs its statement at top level and records the
/// outcome. SIGTERM ends the process as it ends a client's backend (the statement is rolled
/// back), and the scheduler records the run as failed.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn dbopt_job_main(arg: pg_sys::Datum) {
    let run_id = arg.value() as i64;
    let mut ids = BackgroundWorker::get_extra()
        .split(' ')
        .map(|id| pg_sys::Oid::from(id.parse::<u32>().unwrap_or_default()));
    let (database, role) = (ids.next(), ids.next());
    // SAFETY: PostgreSQL's own SIGTERM handler for backends, then signals unblocked, as every
    // background worker must.
    unsafe {
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(die));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    BackgroundWorker::connect_worker_to_spi_by_oid(database, role);
    let run = BackgroundWorker::transaction(|| {
        let run = Spi::get_three_with_args::<String, i64, String>(
            "UPDATE dbopt.job_log
                SET pid = pg_catalog.pg_backend_pid(), started_at = pg_catalog.clock_timestamp()
              WHERE run_id = $1 AND outcome = 'running'
             RETURNING command, index_build,
                       CASE WHEN job_id IS NOT NULL THEN 'dbopt job ' || job_id
                            ELSE 'dbopt index build ' || index_build END",
            &[run_id.into()],
        );
        if let Ok((_, _, Some(name))) = &run {
            // What pg_stat_activity shows for this process.
            gucs::set_session(c"application_name", name);
        }
        run
    });
    let Ok((Some(command), index_build, _)) = run else {
        // The run was recorded as failed before this process started (or is not this role's).
        return;
    };
    let failure = toplevel::run(&command).err().map(|caught| {
        let report = report_of(&caught);
        let message = match report.detail() {
            Some(detail) => format!("{}: {detail}", report.message()),
            None => report.message().to_owned(),
        };
        (sqlstate(report.sql_error_code()), message)
    });
    let (sqlstate, message) = failure.clone().unzip();
    BackgroundWorker::transaction(AssertUnwindSafe(|| {
        Spi::run_with_args(
            "UPDATE dbopt.job_log
                SET ended_at = pg_catalog.clock_timestamp(), outcome = $2, sqlstate = $3,
                    message = $4
              WHERE run_id = $1",
            &[
                run_id.into(),
                if failure.is_some() { "failed" } else { "ok" }.into(),
                sqlstate.into(),
                message.clone().into(),
            ],
        )
        .or_raise("recording the run's outcome");
        if let Some(build) = index_build {
            Spi::run_with_args(
                "SELECT dbopt.record_index_build_outcome($1, $2, $3, l.started_at, l.ended_at)
                   FROM dbopt.job_log l WHERE l.run_id = $4",
                &[
                    build.into(),
                    failure.is_none().into(),
                    message.into(),
                    run_id.into(),
                ],
            )
            .or_raise("recording the index build's outcome");
            // This build's invalid leftover, and any an earlier run of this role could not drop
            // (its table was busy, or its process was terminated mid-build).
            Spi::run(
                "SELECT dbopt.drop_index_build_leftover(id) FROM dbopt.index_builds
                  WHERE runner = 'worker' AND leftover = 'pending' ORDER BY id",
            )
            .or_raise("dropping failed builds' leftovers");
        }
    }));
}

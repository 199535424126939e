//! dbopt's settings (`SET dbopt.…`, `ALTER DATABASE … SET dbopt.…`, postgresql.conf).

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};
use std::ffi::CString;

/// Longest wait for a lock by any DDL statement dbopt runs, in milliseconds. At least 1 ms:
/// PostgreSQL reads 0 as "wait forever", which would let dbopt queue ACCESS EXCLUSIVE requests
/// behind a long query and stall every writer queued behind them.
pub static LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// The time zone partition boundaries are computed in, whatever the session's TimeZone.
pub static PARTITION_TIMEZONE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"UTC"));

/// On while dbopt moves rows to or from an archive, so triggers can tell an archive move from a
/// real delete or insert. dbopt sets it for the move's transaction only.
pub static ARCHIVING: GucSetting<bool> = GucSetting::<bool>::new(false);

/// Who runs the jobs `dbopt.schedule()` creates.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PostgresGucEnum)]
pub enum JobRunner {
    /// pg_cron where it is ready in this database, dbopt's background worker otherwise.
    #[name = c"auto"]
    Auto,
    #[name = c"pg_cron"]
    PgCron,
    #[name = c"worker"]
    Worker,
}

pub static JOB_RUNNER: GucSetting<JobRunner> = GucSetting::<JobRunner>::new(JobRunner::Auto);

/// The databases dbopt's background worker runs jobs in (comma-separated; read at server start).
pub static WORKER_DATABASES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// How long the worker keeps its record of finished runs (dbopt.job_log), in seconds.
pub static JOB_LOG_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(30 * 24 * 3600);

pub fn register() {
    GucRegistry::define_int_guc(
        c"dbopt.lock_timeout",
        c"Longest time a DDL statement run by dbopt waits for a lock.",
        c"Applied as lock_timeout around every DDL statement dbopt runs; the caller's own \
          lock_timeout is restored afterwards. Must be at least 1ms.",
        &LOCK_TIMEOUT_MS,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"dbopt.partition_timezone",
        c"Time zone in which dbopt computes time partition boundaries.",
        c"Midnight, Mondays and the 1st of the month are taken in this zone, so neither a \
          session's TimeZone nor a DST change shifts or overlaps partitions.",
        &PARTITION_TIMEZONE,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"dbopt.archiving",
        c"On while dbopt.archive or dbopt.unarchive is moving rows.",
        c"Read it in triggers (current_setting('dbopt.archiving')) to tell rows moved to or from \
          an archive apart from real deletes and inserts.",
        &ARCHIVING,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"dbopt.job_runner",
        c"Who runs the jobs dbopt.schedule() and dbopt.apply_index() create.",
        c"auto: pg_cron when it is installed in this database, else dbopt's background worker; \
          pg_cron or worker: always that one.",
        &JOB_RUNNER,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"dbopt.worker_databases",
        c"Databases in which dbopt's background worker runs scheduled jobs (comma-separated).",
        c"Needs dbopt in shared_preload_libraries; one scheduler process per database. Empty: \
          no worker.",
        &WORKER_DATABASES,
        // PostgreSQL refuses to define a server-start setting once the server runs, which is
        // when a library not preloaded is loaded; there it is inert (no worker), so any
        // context does.
        if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
            GucContext::Postmaster
        } else {
            GucContext::Sighup
        },
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"dbopt.job_log_retention",
        c"How long dbopt's background worker keeps the record of finished runs.",
        c"Runs in dbopt.job_log that ended longer ago than this are deleted once an hour.",
        &JOB_LOG_RETENTION_S,
        60,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    // Makes a misspelt `SET dbopt.lock_timout` an error instead of a silently ignored placeholder.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"dbopt".as_ptr()) };
}

pub fn lock_timeout_ms() -> i32 {
    LOCK_TIMEOUT_MS.get()
}

/// Sets a setting until the end of the current transaction (or subtransaction), straight
/// through the GUC machinery: cheaper than SPI for settings changed around every statement.
pub fn set_local(name: &std::ffi::CStr, value: &str) {
    set(name, value, pgrx::pg_sys::GucAction::GUC_ACTION_LOCAL);
}

/// Sets a setting for the rest of the session, as `SET` does.
pub fn set_session(name: &std::ffi::CStr, value: &str) {
    set(name, value, pgrx::pg_sys::GucAction::GUC_ACTION_SET);
}

fn set(name: &std::ffi::CStr, value: &str, action: pgrx::pg_sys::GucAction::Type) {
    let value = CString::new(value).expect("setting values contain no NUL");
    // SAFETY: both strings outlive the call; errors are raised with ereport (ERROR level).
    unsafe {
        pgrx::pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pgrx::pg_sys::GucContext::PGC_USERSET,
            pgrx::pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            pgrx::pg_sys::PGERROR as i32,
            false,
        );
    }
}

/// Runs `f` with `settings` applied (as [`set_local`]), then puts back the values they had.
/// On error the transaction (or subtransaction) ends, which undoes them anyway.
pub fn with_local<T>(settings: &[(&std::ffi::CStr, &str)], f: impl FnOnce() -> T) -> T {
    let previous: Vec<String> = settings
        .iter()
        .map(|(name, _)| {
            // SAFETY: GetConfigOption returns a pointer into the GUC's current value (or raises
            // for an unknown name), copied before anything can change it.
            unsafe {
                std::ffi::CStr::from_ptr(pgrx::pg_sys::GetConfigOption(name.as_ptr(), false, false))
            }
            .to_string_lossy()
            .into_owned()
        })
        .collect();
    for (name, value) in settings {
        set_local(name, value);
    }
    let result = f();
    for ((name, _), value) in settings.iter().zip(&previous) {
        set_local(name, value);
    }
    result
}

/// Runs `f` with the caller's search_path, for the SQL that evaluates the caller's expressions
/// (filters, measures) and fires the caller's triggers: they were written for it, not for
/// dbopt's pinned path. dbopt's own statements name everything with its schema, so they
/// resolve the same either way.
pub fn in_search_path<T>(callers_path: &str, f: impl FnOnce() -> T) -> T {
    with_local(&[(c"search_path", callers_path)], f)
}

pub fn job_runner() -> JobRunner {
    JOB_RUNNER.get()
}

/// The databases listed in dbopt.worker_databases, each once.
pub fn worker_databases() -> Vec<String> {
    let listed = WORKER_DATABASES
        .get()
        .map(|names| names.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut databases: Vec<String> = Vec::new();
    for name in listed.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !databases.iter().any(|d| d == name) {
            databases.push(name.to_owned());
        }
    }
    databases
}

pub fn job_log_retention_seconds() -> i32 {
    JOB_LOG_RETENTION_S.get()
}

pub fn partition_timezone() -> String {
    PARTITION_TIMEZONE
        .get()
        .map(|zone| zone.to_string_lossy().into_owned())
        .filter(|zone| !zone.trim().is_empty())
        .unwrap_or_else(|| "UTC".into())
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn lock_timeout_defaults_to_one_second_and_takes_units() {
        assert_eq!(super::lock_timeout_ms(), 1000);
        Spi::run("SET dbopt.lock_timeout = '2s'").unwrap();
        assert_eq!(super::lock_timeout_ms(), 2000);
        assert_eq!(
            Spi::get_one::<String>("SHOW dbopt.lock_timeout"),
            Ok(Some("2s".into()))
        );
    }

    #[pg_test(
        error = "0 ms is outside the valid range for parameter \"dbopt.lock_timeout\" (1 .. 2147483647)"
    )]
    fn lock_timeout_cannot_mean_wait_forever() {
        Spi::run("SET dbopt.lock_timeout = 0").unwrap();
    }
}

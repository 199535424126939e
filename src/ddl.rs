//! Every DDL statement dbopt runs goes through [`execute`], so none of them waits for a lock
//! longer than `dbopt.lock_timeout`: an ACCESS EXCLUSIVE request that waits blocks every query
//! queued behind it, which is how maintenance tools stall applications.

use crate::errors::{DboptError, OrRaise};
use crate::gucs;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

/// Runs one DDL statement with `lock_timeout` set to `dbopt.lock_timeout`, then restores the
/// caller's `lock_timeout`. `object` names what the statement changes; a lock timeout is
/// re-raised as SQLSTATE 55P03 naming it.
pub fn execute(sql: &str, object: &str) {
    let timeout_ms = gucs::lock_timeout_ms();
    gucs::with_local(&[(c"lock_timeout", &format!("{timeout_ms}ms"))], || {
        PgTryBuilder::new(|| Spi::run(sql).or_raise("running DDL"))
            .catch_when(
                PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
                |_: CaughtError| lock_timeout_error(sql, object, timeout_ms).raise(),
            )
            .execute()
    });
}

fn lock_timeout_error(sql: &str, object: &str, timeout_ms: i32) -> DboptError {
    DboptError::new(
        PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
        format!("could not lock {object} within dbopt.lock_timeout ({timeout_ms}ms)"),
    )
    .detail(format!("Statement: {sql}"))
    .hint(
        "Another session holds a conflicting lock (see pg_locks and pg_blocking_pids()); \
         retry later or raise dbopt.lock_timeout.",
    )
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use super::*;
    use crate::errors::raised_by;

    /// The session's `lock_timeout` in milliseconds, as the lock manager reads it.
    fn current_lock_timeout_ms() -> i32 {
        // SAFETY: a plain int GUC variable, read on the backend's only thread.
        unsafe { pg_sys::LockTimeout }
    }

    fn lock_timeout_seen_by_ddl() -> String {
        execute(
            "CREATE TEMP TABLE ddl_probe AS SELECT current_setting('lock_timeout') AS seen",
            "ddl_probe",
        );
        let seen = Spi::get_one::<String>("SELECT seen FROM ddl_probe")
            .unwrap()
            .unwrap();
        Spi::run("DROP TABLE ddl_probe").unwrap();
        seen
    }

    #[pg_test]
    fn ddl_waits_at_most_dbopt_lock_timeout_and_restores_the_callers() {
        Spi::run("SET lock_timeout = '7s'").unwrap();
        assert_eq!(lock_timeout_seen_by_ddl(), "1s");
        assert_eq!(current_lock_timeout_ms(), 7000);

        Spi::run("SET dbopt.lock_timeout = '250ms'").unwrap();
        assert_eq!(lock_timeout_seen_by_ddl(), "250ms");
        assert_eq!(current_lock_timeout_ms(), 7000);
        assert_eq!(
            Spi::get_one::<String>("SELECT current_setting('lock_timeout')")
                .unwrap()
                .unwrap(),
            "7s"
        );
    }

    /// A second session holds a lock the DDL needs: dblink (contrib) opens it from inside the test.
    #[pg_test]
    fn a_lock_wait_past_dbopt_lock_timeout_fails_with_55p03_naming_the_object() {
        Spi::run("CREATE EXTENSION IF NOT EXISTS dblink").unwrap();
        Spi::run(
            "SELECT dblink_connect('holder', format('host=%s port=%s dbname=%s',
                    split_part(current_setting('unix_socket_directories'), ',', 1),
                    current_setting('port'), current_database()))",
        )
        .unwrap();
        let holder = |sql: &str| {
            Spi::run_with_args("SELECT dblink_exec('holder', $1)", &[sql.into()]).unwrap()
        };
        holder("CREATE TABLE IF NOT EXISTS ddl_lock_target (id int)");
        holder("BEGIN");
        holder("LOCK ddl_lock_target IN ACCESS SHARE MODE");
        Spi::run("SET dbopt.lock_timeout = '50ms'").unwrap();
        // Without dbopt's lock_timeout the ALTER would wait forever; fail instead of hanging.
        Spi::run("SET statement_timeout = '10s'").unwrap();

        let err = raised_by(|| {
            execute(
                "ALTER TABLE ddl_lock_target ADD COLUMN note text",
                "table ddl_lock_target",
            )
        })
        .expect("the ALTER TABLE must time out while the other session holds its lock");

        holder("ROLLBACK");
        holder("DROP TABLE ddl_lock_target");
        Spi::run("SELECT dblink_disconnect('holder')").unwrap();
        assert_eq!(err.code, PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE);
        assert_eq!(
            err.message,
            "could not lock table ddl_lock_target within dbopt.lock_timeout (50ms)"
        );
        assert!(err.hint.unwrap().contains("pg_blocking_pids()"));
    }
}

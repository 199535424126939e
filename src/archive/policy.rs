//! Archive policies (issue 8): what the scheduled 'archive' task archives. A policy is checked
//! when it is set exactly as a run would check it — by beginning a run in a subtransaction that
//! is then rolled back — so a scheduled run does not fail on input a call would have refused.

use pgrx::datum::Interval;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use std::panic::AssertUnwindSafe;

/// Raises whatever a `CALL dbopt.archive(...)` with these arguments would raise before moving
/// anything, and changes nothing (the archive table a run would create is not created).
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn archive_policy_check(
    callers_path: &str,
    source: pg_sys::Oid,
    archive_table: Option<&str>,
    filter: Option<&str>,
    batch_size: Option<i32>,
    time_column: Option<&str>,
    older_than: Option<Interval>,
    max_runtime: Option<Interval>,
    pause: Option<Interval>,
) {
    // SAFETY: the subtransaction is begun and always rolled back here, with the caller's memory
    // context and resource owner restored; an error caught inside is re-raised only after that.
    unsafe {
        let caller_context = pg_sys::CurrentMemoryContext;
        let caller_owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(caller_context);
        let outcome = PgTryBuilder::new(AssertUnwindSafe(|| {
            // Its NOTICEs would report work that is about to be undone (an archive table
            // created); WARNINGs still reach the caller. The rollback restores the setting.
            crate::gucs::set_local(c"client_min_messages", "warning");
            super::archive_begin(
                "archive",
                callers_path,
                source,
                archive_table,
                filter,
                batch_size,
                time_column,
                older_than,
                max_runtime,
                pause,
            );
            Ok(())
        }))
        .catch_others(Err::<(), CaughtError>)
        .execute();
        pg_sys::RollbackAndReleaseCurrentSubTransaction();
        pg_sys::MemoryContextSwitchTo(caller_context);
        pg_sys::CurrentResourceOwner = caller_owner;
        if let Err(caught) = outcome {
            caught.rethrow()
        }
    }
}

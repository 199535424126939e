//! Archive policies (issue 8): what the scheduled 'archive' task archives. A policy is checked
//! when it is set exactly as a run would check it — by beginning a run in a subtransaction that
//! is then rolled back — so a scheduled run does not fail on input a call would have refused.

use crate::subxact::{self, OnSuccess};
use pgrx::datum::Interval;
use pgrx::prelude::*;

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
    let checked = subxact::run(OnSuccess::Undo, || {
        // Its NOTICEs would report work that is about to be undone (an archive table created);
        // WARNINGs still reach the caller. Undoing the subtransaction restores the setting.
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
    });
    if let Err(caught) = checked {
        caught.rethrow()
    }
}

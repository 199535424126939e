//! Runs one statement as a client's top-level statement runs, for the background worker's job
//! processes: a CALL whose procedure COMMITs, and CREATE INDEX CONCURRENTLY, are refused under SPI
//! and allowed only here. The steps are PostgreSQL's own for a simple query (parse, analyze,
//! plan, then an unnamed portal run with isTopLevel), as pg_cron's background workers do too.

use crate::errors::DboptError;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use std::ffi::CString;
use std::panic::AssertUnwindSafe;

extern "C-unwind" {
    // utils/timeout.h, which pgrx does not bind; TimeoutId is a C enum.
    fn enable_timeout_after(id: std::ffi::c_int, delay_ms: std::ffi::c_int);
    fn disable_timeout(id: std::ffi::c_int, keep_indicator: bool);
}

/// STATEMENT_TIMEOUT's position in PostgreSQL 15's TimeoutId.
const STATEMENT_TIMEOUT: std::ffi::c_int = 3;

/// Runs `sql`, one statement, in a transaction of its own (which the statement may COMMIT and
/// begin again), and commits. An error is returned once that transaction is aborted, so the
/// caller can record it and carry on.
pub fn run(sql: &str) -> Result<(), CaughtError> {
    let text = CString::new(sql).unwrap_or_default();
    // SAFETY: called outside any transaction by a background worker connected to its database.
    // The statement's parse and plan trees live in a context of their own under
    // TopMemoryContext, because a COMMIT inside the statement ends every transaction-lifetime
    // context; it is deleted when the statement is done. An error aborts the transaction, which
    // releases what the statement held.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::debug_query_string = text.as_ptr();
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, text.as_ptr());
        pg_sys::StartTransactionCommand();
        // The owner's statement_timeout holds for the whole statement, as in a session.
        if pg_sys::StatementTimeout > 0 {
            enable_timeout_after(STATEMENT_TIMEOUT, pg_sys::StatementTimeout);
        }
        let trees = pg_sys::AllocSetContextCreateInternal(
            pg_sys::TopMemoryContext,
            c"dbopt job statement".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        let outcome = PgTryBuilder::new(AssertUnwindSafe(|| {
            execute(&text, trees);
            pg_sys::CommitTransactionCommand();
            Ok(())
        }))
        .catch_others(Err)
        .execute();
        disable_timeout(STATEMENT_TIMEOUT, false);
        if outcome.is_err() {
            pg_sys::AbortCurrentTransaction();
            pg_sys::PortalErrorCleanup();
        }
        pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        pg_sys::MemoryContextDelete(trees);
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null());
        pg_sys::debug_query_string = std::ptr::null();
        outcome
    }
}

/// Parses, plans and runs `text` at top level; raises on any error (including a second
/// statement or transaction control, which the job's own transaction handling excludes).
unsafe fn execute(text: &CString, trees: pg_sys::MemoryContext) {
    let transaction_context = pg_sys::MemoryContextSwitchTo(trees);
    let statements =
        pgrx::PgList::<pg_sys::RawStmt>::from_pg(pg_sys::pg_parse_query(text.as_ptr()));
    pg_sys::MemoryContextSwitchTo(transaction_context);
    let statement = match statements.len() {
        1 => statements.get_ptr(0).unwrap(),
        n => DboptError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("a dbopt job runs exactly one statement, not {n}"),
        )
        .raise(),
    };
    if pgrx::is_a((*statement).stmt, pg_sys::NodeTag::T_TransactionStmt) {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "a dbopt job cannot run transaction control statements",
        )
        .raise();
    }
    let tag = pg_sys::CreateCommandTag((*statement).stmt);
    let needs_snapshot = pg_sys::analyze_requires_snapshot(statement);
    if needs_snapshot {
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    pg_sys::MemoryContextSwitchTo(trees);
    let queries = pg_sys::pg_analyze_and_rewrite_fixedparams(
        statement,
        text.as_ptr(),
        std::ptr::null(),
        0,
        std::ptr::null_mut(),
    );
    let plans = pg_sys::pg_plan_queries(
        queries,
        text.as_ptr(),
        pg_sys::CURSOR_OPT_PARALLEL_OK as i32,
        std::ptr::null_mut(),
    );
    if needs_snapshot {
        pg_sys::PopActiveSnapshot();
    }
    pg_sys::check_for_interrupts!();
    let portal = pg_sys::CreatePortal(c"".as_ptr(), true, true);
    (*portal).visible = false;
    pg_sys::PortalDefineQuery(
        portal,
        std::ptr::null(),
        text.as_ptr(),
        tag,
        plans,
        std::ptr::null_mut(),
    );
    pg_sys::PortalStart(portal, std::ptr::null_mut(), 0, std::ptr::null_mut());
    let mut text_format: i16 = 0;
    pg_sys::PortalSetResultFormat(portal, 1, &mut text_format);
    let discard = pg_sys::CreateDestReceiver(pg_sys::CommandDest::DestNone);
    pg_sys::MemoryContextSwitchTo(transaction_context);
    let mut completion = pg_sys::QueryCompletion::default();
    pg_sys::PortalRun(
        portal,
        i64::MAX as std::ffi::c_long,
        true,
        true,
        discard,
        discard,
        &mut completion,
    );
    if let Some(destroy) = (*discard).rDestroy {
        destroy(discard);
    }
    pg_sys::PortalDrop(portal, false);
    pg_sys::CommandCounterIncrement();
}

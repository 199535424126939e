//! Work in a subtransaction of its own, for the places that must try something and then keep or
//! undo it without ending the caller's transaction: the advisor planning with hypothetical
//! indexes, an archive policy checked by beginning a run.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use std::panic::AssertUnwindSafe;

/// What becomes of a subtransaction whose work raised no error (one that did is always undone).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OnSuccess {
    Keep,
    Undo,
}

/// Runs `work` in a subtransaction, kept or undone on success as `on_success` says. An error
/// PostgreSQL raised inside is caught and returned once the subtransaction is gone, with the
/// caller's memory context and resource owner back in place: the caller may re-raise it
/// (`CaughtError::rethrow`) or carry on.
pub fn run<T>(on_success: OnSuccess, work: impl FnOnce() -> T) -> Result<T, CaughtError> {
    // SAFETY: the subtransaction begun here is released or rolled back here, on every path
    // (errors are caught by PgTryBuilder before they could unwind past it), and the caller's
    // memory context and resource owner, which ending it would change, are restored.
    unsafe {
        let caller_context = pg_sys::CurrentMemoryContext;
        let caller_owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(caller_context);
        let outcome = PgTryBuilder::new(AssertUnwindSafe(|| Ok(work())))
            .catch_others(Err)
            .execute();
        pg_sys::MemoryContextSwitchTo(caller_context);
        if outcome.is_ok() && on_success == OnSuccess::Keep {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(caller_context);
        pg_sys::CurrentResourceOwner = caller_owner;
        outcome
    }
}

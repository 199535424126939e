//! Relation sizes that never wait. pg_relation_size and its kin take an ACCESS SHARE lock, so a
//! health check run while a migration holds (or merely waits for) ACCESS EXCLUSIVE on one table
//! would hang behind it. Here such a table is measured from pg_class instead, and says so.

use crate::errors::OrRaise;
use pgrx::prelude::*;
use pgrx::{direct_function_call, IntoDatum};

/// Bytes of `rel`: `what` is 'table' (pg_table_size less TOAST), 'indexes', 'toast' (with its
/// index), 'total' or 'relation' (one relation's main fork, as for an index). When the lock
/// cannot be had at once, relpages × block size from pg_class, negated: a negative size is an
/// estimate, so callers can tell and show its absolute value.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn relation_bytes_nowait(rel: pg_sys::Oid, what: &str) -> i64 {
    let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    // SAFETY: a conditional lock request, released below on the same relation.
    if !unsafe { pg_sys::ConditionalLockRelationOid(rel, lock) } {
        return -estimate(rel, what);
    }
    let size = |func: unsafe fn(pg_sys::FunctionCallInfo) -> pg_sys::Datum, oid: pg_sys::Oid| {
        // SAFETY: PostgreSQL's size functions called with an OID; NULL for a vanished relation.
        unsafe { direct_function_call::<i64>(func, &[oid.into_datum()]) }.unwrap_or(0)
    };
    let toast = || {
        Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT reltoastrelid FROM pg_class WHERE oid = $1",
            &[rel.into()],
        )
        .or_raise("reading pg_class")
        .filter(|t| *t != pg_sys::InvalidOid)
        .map(|t| size(pg_sys::pg_total_relation_size, t))
        .unwrap_or(0)
    };
    let bytes = match what {
        "table" => size(pg_sys::pg_table_size, rel) - toast(),
        "indexes" => size(pg_sys::pg_indexes_size, rel),
        "toast" => toast(),
        "total" => size(pg_sys::pg_total_relation_size, rel),
        _ => {
            let main = "main".into_datum();
            // SAFETY: as above, with the fork's name.
            unsafe {
                direct_function_call::<i64>(pg_sys::pg_relation_size, &[rel.into_datum(), main])
            }
            .unwrap_or(0)
        }
    };
    // SAFETY: releases the lock taken above; the size functions released their own.
    unsafe { pg_sys::UnlockRelationOid(rel, lock) };
    bytes
}

/// The same sizes from pg_class's relpages (as of the last VACUUM or ANALYZE), which reading
/// takes no lock on the relation.
fn estimate(rel: pg_sys::Oid, what: &str) -> i64 {
    Spi::get_one_with_args::<i64>(
        "SELECT (CASE $2
                   WHEN 'table' THEN c.relpages
                   WHEN 'indexes' THEN (SELECT coalesce(sum(x.relpages), 0) FROM pg_index i
                                          JOIN pg_class x ON x.oid = i.indexrelid
                                         WHERE i.indrelid = c.oid)
                   WHEN 'toast' THEN t.relpages
                   WHEN 'total' THEN c.relpages + coalesce(t.relpages, 0)
                                     + (SELECT coalesce(sum(x.relpages), 0) FROM pg_index i
                                          JOIN pg_class x ON x.oid = i.indexrelid
                                         WHERE i.indrelid = c.oid)
                   ELSE c.relpages END)::int8 * current_setting('block_size')::int8
           FROM pg_class c LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
          WHERE c.oid = $1",
        &[rel.into(), what.into()],
    )
    .or_raise("reading pg_class")
    .unwrap_or(0)
}

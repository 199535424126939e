//! Relation sizes that never wait. pg_relation_size and its kin take an ACCESS SHARE lock, so a
//! health check run while a migration holds (or merely waits for) ACCESS EXCLUSIVE on one table
//! would hang behind it. Here such a table is measured from pg_class instead, and says so.

use crate::errors::OrRaise;
use pgrx::prelude::*;
use pgrx::{direct_function_call, IntoDatum};

/// `rel`'s own bytes (all forks, TOAST excepted: for an index, the index), its indexes' and its
/// TOAST table's (with the TOAST index), under one lock taken only if it is free at once; when
/// it is not, the same from pg_class's relpages (as of the last VACUUM or ANALYZE, no lock
/// needed) and `exact` false.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn relation_sizes_nowait(
    rel: pg_sys::Oid,
) -> TableIterator<
    'static,
    (
        name!(own_bytes, i64),
        name!(index_bytes, i64),
        name!(toast_bytes, i64),
        name!(exact, bool),
    ),
> {
    let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    // SAFETY: a conditional lock request, released below on the same relation.
    if !unsafe { pg_sys::ConditionalLockRelationOid(rel, lock) } {
        let (own, indexes, toast) = from_relpages(rel);
        return TableIterator::once((own, indexes, toast, false));
    }
    let size = |func: unsafe fn(pg_sys::FunctionCallInfo) -> pg_sys::Datum, oid: pg_sys::Oid| {
        // SAFETY: PostgreSQL's size functions called with an OID; NULL for a vanished relation.
        unsafe { direct_function_call::<i64>(func, &[oid.into_datum()]) }.unwrap_or(0)
    };
    // From the relation cache, not a catalog query: this runs once per relation, thousands of
    // times in db_health(), and SPI's cost per call was most of the section's time.
    // SAFETY: the relation is locked; RelationIdGetRelation returns NULL when it vanished, and
    // the reference taken is closed right after reading one field.
    let toast_oid = unsafe {
        let relation = pg_sys::RelationIdGetRelation(rel);
        if relation.is_null() {
            pg_sys::InvalidOid
        } else {
            let toast_oid = (*(*relation).rd_rel).reltoastrelid;
            pg_sys::RelationClose(relation);
            toast_oid
        }
    };
    let toast = if toast_oid == pg_sys::InvalidOid {
        0
    } else {
        size(pg_sys::pg_total_relation_size, toast_oid)
    };
    let own = size(pg_sys::pg_table_size, rel) - toast;
    let indexes = size(pg_sys::pg_indexes_size, rel);
    // SAFETY: releases the lock taken above; the size functions released their own.
    unsafe { pg_sys::UnlockRelationOid(rel, lock) };
    TableIterator::once((own, indexes, toast, true))
}

fn from_relpages(rel: pg_sys::Oid) -> (i64, i64, i64) {
    Spi::connect(|client| {
        let row = client
            .select(
                "SELECT c.relpages::int8 * b.size,
                        (SELECT coalesce(sum(x.relpages), 0) FROM pg_index i
                           JOIN pg_class x ON x.oid = i.indexrelid
                          WHERE i.indrelid = c.oid)::int8 * b.size,
                        coalesce(t.relpages, 0)::int8 * b.size
                   FROM pg_class c
                   LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
                  CROSS JOIN (SELECT current_setting('block_size')::int8 AS size) b
                  WHERE c.oid = $1",
                Some(1),
                &[rel.into()],
            )?
            .first();
        Ok::<_, pgrx::spi::Error>((
            row.get::<i64>(1)?.unwrap_or(0),
            row.get::<i64>(2)?.unwrap_or(0),
            row.get::<i64>(3)?.unwrap_or(0),
        ))
    })
    .or_raise("reading pg_class")
}

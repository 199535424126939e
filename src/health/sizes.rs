//! Relation sizes that never wait. pg_relation_size and its kin take an ACCESS SHARE lock, so a
//! health check run while a migration holds (or merely waits for) ACCESS EXCLUSIVE on one table
//! would hang behind it. Here such a table is measured from pg_class instead, and says so.
//!
//! db_health() asks for the same relations from several sections (an index's bytes for index
//! usage, for index problems and within its table's total), so each relation is measured once
//! per statement and remembered until the statement or its command counter moves on.

use crate::errors::OrRaise;
use pgrx::prelude::*;
use pgrx::{direct_function_call, IntoDatum};
use std::cell::RefCell;
use std::collections::HashMap;

/// What is measured of a relation: its own forks, or everything (a TOAST table with its index).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Extent {
    Forks,
    Total,
}

/// (statement start, command id) the remembered sizes belong to, and bytes per relation.
type Measured = (Option<(i64, u32)>, HashMap<(pg_sys::Oid, Extent), i64>);

thread_local! {
    static MEASURED: RefCell<Measured> = RefCell::new((None, HashMap::new()));
}

/// `oid`'s bytes to the given extent, measured once per statement and command.
fn measured_once(oid: pg_sys::Oid, extent: Extent) -> i64 {
    // SAFETY: plain reads of the backend's transaction state.
    let now = unsafe {
        (
            pg_sys::GetCurrentStatementStartTimestamp(),
            pg_sys::GetCurrentCommandId(false),
        )
    };
    let known = MEASURED.with(|m| {
        let mut m = m.borrow_mut();
        if m.0 != Some(now) {
            *m = (Some(now), HashMap::new());
        }
        m.1.get(&(oid, extent)).copied()
    });
    known.unwrap_or_else(|| {
        let bytes = match extent {
            Extent::Forks => forks_bytes(oid),
            // SAFETY: PostgreSQL's size function called with an OID; NULL for a vanished
            // relation.
            Extent::Total => unsafe {
                direct_function_call::<i64>(pg_sys::pg_total_relation_size, &[oid.into_datum()])
            }
            .unwrap_or(0),
        };
        MEASURED.with(|m| m.borrow_mut().1.insert((oid, extent), bytes));
        bytes
    })
}

/// A relation's own bytes over all its forks (main, free space map, visibility map, init).
fn forks_bytes(oid: pg_sys::Oid) -> i64 {
    ["main", "fsm", "vm", "init"]
        .into_iter()
        .map(|fork| {
            // SAFETY: pg_relation_size(regclass, text) with a valid fork name.
            unsafe {
                direct_function_call::<i64>(
                    pg_sys::pg_relation_size,
                    &[oid.into_datum(), fork.into_datum()],
                )
            }
            .unwrap_or(0)
        })
        .sum()
}

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
    // From the relation cache, not a catalog query: this runs for every relation, thousands of
    // times in db_health(), and SPI's cost per call was most of the section's time.
    // SAFETY: the relation is locked; RelationIdGetRelation returns NULL when it vanished; the
    // index list is a copy, freed here, and the relation reference is closed after reading.
    let (toast_oid, index_oids) = unsafe {
        let relation = pg_sys::RelationIdGetRelation(rel);
        if relation.is_null() {
            (pg_sys::InvalidOid, Vec::new())
        } else {
            let toast_oid = (*(*relation).rd_rel).reltoastrelid;
            let list = pg_sys::RelationGetIndexList(relation);
            let mut indexes = Vec::new();
            if !list.is_null() {
                for i in 0..(*list).length as usize {
                    indexes.push((*(*list).elements.add(i)).oid_value);
                }
                pg_sys::list_free(list);
            }
            pg_sys::RelationClose(relation);
            (toast_oid, indexes)
        }
    };
    let own = measured_once(rel, Extent::Forks);
    let indexes = index_oids
        .into_iter()
        .map(|index| measured_once(index, Extent::Forks))
        .sum();
    let toast = if toast_oid == pg_sys::InvalidOid {
        0
    } else {
        measured_once(toast_oid, Extent::Total)
    };
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

//! The INSERT trigger of every rolling aggregate. Most inserts are of rows dated now, after the
//! window the table holds: the next refresh reads those from the source, so the trigger has
//! nothing to do. Deciding that in PL/pgSQL cost a function call with its SET clauses and a query
//! per statement, about a third of a single-row insert. Here it costs one index lookup in
//! dbopt.rolling_aggregates and a pass over the new rows. A statement with any row the window
//! covers goes on to the aggregate's PL/pgSQL trigger function, which does the rest.

use crate::errors::DboptError;
use crate::ident::{quote_identifier, Relation};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::CStr;
use std::num::NonZeroUsize;

/// What the gate reads from the aggregate's row in dbopt.rolling_aggregates.
struct Gate {
    aggregate: pg_sys::Oid,
    source: pg_sys::Oid,
    time_column: String,
    time_zone: String,
    window_end: i64,
    maintain: Option<pg_sys::Oid>,
}

#[pg_trigger]
fn rolling_insert_gate<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    let data = trigger.trigger_data();
    // SAFETY: PostgreSQL called us as a trigger: the relation is open and locked.
    let relation = unsafe { &*data.tg_relation };
    let this_trigger = || {
        format!(
            "trigger {} on {}",
            quote_identifier(trigger.name().unwrap_or_default()),
            Relation::from_oid(relation.rd_id).quoted()
        )
    };
    let id = match trigger.extra_args().ok().as_deref() {
        Some([id]) => id.parse::<i64>().ok(),
        _ => None,
    }
    .unwrap_or_else(|| {
        misuse(format!(
            "{} must name one rolling aggregate by its id",
            this_trigger()
        ))
    });
    if data.tg_newtable.is_null()
        || !matches!(trigger.op(), Ok(PgTriggerOperation::Insert))
        || !matches!(trigger.level(), PgTriggerLevel::Statement)
    {
        misuse(format!(
            "{} must fire AFTER INSERT FOR EACH STATEMENT with REFERENCING NEW TABLE",
            this_trigger()
        ))
    }
    let gate = unsafe { read_gate(trigger.trigger().tgfoid, id) }.unwrap_or_else(|| {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!(
                "{} serves rolling aggregate {id}, which does not exist",
                this_trigger()
            ),
        )
        .hint("dbopt.drop_rolling_aggregate drops an aggregate's triggers with it; drop this one.")
        .raise()
    });
    let aggregate = || Relation::from_oid(gate.aggregate).quoted();
    if gate.source != relation.rd_id {
        misuse(format!(
            "{} serves rolling aggregate {}, which watches {}",
            this_trigger(),
            aggregate(),
            Relation::from_oid(gate.source).quoted()
        ))
    }
    let Some(maintain) = gate.maintain else {
        misuse(format!(
            "rolling aggregate {} has no trigger function",
            aggregate()
        ))
    };
    // SAFETY: the transition table and the relation's descriptor live until the trigger returns.
    if unsafe { covers_a_new_row(data, relation, &gate) } {
        unsafe { forward(maintain, data) };
    }
    Ok(None)
}

fn misuse(message: String) -> ! {
    DboptError::new(
        PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
        message,
    )
    .hint("dbopt.create_rolling_aggregate installs this trigger function; do not use it elsewhere.")
    .raise()
}

/// The aggregate's row, read through the primary key with a fresh snapshot: a refresh that
/// committed before this statement took its lock on the source is seen, as the PL/pgSQL
/// trigger function's queries see it, and refreshes after it wait for this transaction.
unsafe fn read_gate(gate_function: pg_sys::Oid, id: i64) -> Option<Gate> {
    unsafe {
        let schema = pg_sys::get_func_namespace(gate_function);
        let catalog = pg_sys::get_relname_relid(c"rolling_aggregates".as_ptr(), schema);
        let rel = pg_sys::table_open(catalog, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
        pg_sys::ScanKeyInit(
            &mut key,
            1,
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            pg_sys::Oid::from(pg_sys::F_INT8EQ),
            id.into_datum().expect("an int8 is a datum"),
        );
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot());
        let scan = pg_sys::systable_beginscan(
            rel,
            pg_sys::RelationGetPrimaryKeyIndex(rel),
            true,
            snapshot,
            1,
            &mut key,
        );
        let tuple = pg_sys::systable_getnext(scan);
        let gate = (!tuple.is_null()).then(|| {
            let desc = (*rel).rd_att;
            let column = |name: &str| {
                let attno = attribute_number(desc, name).expect("dbopt.rolling_aggregates column");
                pgrx::heap_getattr_raw(tuple, attno, desc)
            };
            let oid = |name: &str| {
                column(name).map(|d| pg_sys::Oid::from_datum(d, false).expect("an oid"))
            };
            Gate {
                aggregate: oid("aggregate").expect("NOT NULL"),
                source: oid("source").expect("NOT NULL"),
                time_column: CStr::from_ptr(
                    column("time_column").expect("NOT NULL").cast_mut_ptr(),
                )
                .to_string_lossy()
                .into_owned(),
                time_zone: String::from_datum(column("time_zone").expect("NOT NULL"), false)
                    .expect("NOT NULL"),
                window_end: column("window_end").expect("NOT NULL").value() as i64,
                maintain: oid("maintain"),
            }
        });
        pg_sys::systable_endscan(scan);
        pg_sys::UnregisterSnapshot(snapshot);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        gate
    }
}

unsafe fn attribute_number(desc: pg_sys::TupleDesc, name: &str) -> Option<NonZeroUsize> {
    unsafe {
        let attributes = (*desc).attrs.as_slice((*desc).natts as usize);
        attributes
            .iter()
            .position(|a| {
                !a.attisdropped
                    && CStr::from_ptr(a.attname.data.as_ptr()).to_bytes() == name.as_bytes()
            })
            .and_then(|i| NonZeroUsize::new(i + 1))
    }
}

/// Whether a new row is dated at or before the window's end, as `time <= window_end` compares
/// in the creator's TimeZone. When a time cannot be placed (a zone PostgreSQL cannot load, a
/// date outside timestamptz's range) the answer is yes: the PL/pgSQL function decides exactly.
unsafe fn covers_a_new_row(
    data: &pg_sys::TriggerData,
    relation: &pg_sys::RelationData,
    gate: &Gate,
) -> bool {
    unsafe {
        let Some(attno) = attribute_number(relation.rd_att, &gate.time_column) else {
            return true;
        };
        let desc = &*relation.rd_att;
        let type_oid = desc.attrs.as_slice(desc.natts as usize)[attno.get() - 1].atttypid;
        let zone = if type_oid == pg_sys::TIMESTAMPTZOID {
            std::ptr::null_mut()
        } else {
            let name = std::ffi::CString::new(gate.time_zone.as_str()).unwrap_or_default();
            let zone = pg_sys::pg_tzset(name.as_ptr());
            if zone.is_null() {
                return true;
            }
            zone
        };
        let store = data.tg_newtable;
        let slot = pg_sys::MakeSingleTupleTableSlot(relation.rd_att, &pg_sys::TTSOpsMinimalTuple);
        // A read pointer of our own, rewound, as a scan of the transition table in a query makes.
        let reader = pg_sys::tuplestore_alloc_read_pointer(store, pg_sys::EXEC_FLAG_REWIND as i32);
        pg_sys::tuplestore_select_read_pointer(store, reader);
        pg_sys::tuplestore_rescan(store);
        let mut covered = false;
        while !covered && pg_sys::tuplestore_gettupleslot(store, true, false, slot) {
            let mut is_null = false;
            let datum = pg_sys::slot_getattr(slot, attno.get() as i32, &mut is_null);
            if is_null {
                continue; // NULL <= window_end is not true: such a row is in no window
            }
            covered = match type_oid {
                pg_sys::TIMESTAMPTZOID => datum.value() as i64 <= gate.window_end,
                pg_sys::TIMESTAMPOID => local_instant(datum.value() as i64, zone)
                    .is_none_or(|instant| instant <= gate.window_end),
                pg_sys::DATEOID => local_midnight(datum.value() as i32)
                    .and_then(|midnight| local_instant(midnight, zone))
                    .is_none_or(|instant| instant <= gate.window_end),
                _ => true,
            };
        }
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        covered
    }
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A date as the timestamp of its midnight; the infinite dates as the infinite timestamps.
fn local_midnight(date: i32) -> Option<i64> {
    match date {
        i32::MIN => Some(i64::MIN),
        i32::MAX => Some(i64::MAX),
        days => (days as i64).checked_mul(MICROS_PER_DAY),
    }
}

/// A timestamp without time zone as the instant it names in `zone`, computed as PostgreSQL's
/// timestamp-to-timestamptz cast does (a time skipped by a DST change is read with the offset
/// before it). None when it falls outside timestamptz's range.
unsafe fn local_instant(local: i64, zone: *mut pg_sys::pg_tz) -> Option<i64> {
    if local == i64::MIN || local == i64::MAX {
        return Some(local);
    }
    unsafe {
        let mut tm: pg_sys::pg_tm = std::mem::zeroed();
        let mut fraction: pg_sys::fsec_t = 0;
        if pg_sys::timestamp2tm(
            local,
            std::ptr::null_mut(),
            &mut tm,
            &mut fraction,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        ) != 0
        {
            return None;
        }
        let seconds_west = pg_sys::DetermineTimeZoneOffset(&mut tm, zone) as i64;
        local.checked_add(seconds_west * 1_000_000)
    }
}

/// Calls the aggregate's PL/pgSQL trigger function as PostgreSQL would have: same trigger data,
/// so it sees this statement's transition table and TG_OP.
unsafe fn forward(maintain: pg_sys::Oid, data: &pg_sys::TriggerData) {
    unsafe {
        let mut function: pg_sys::FmgrInfo = std::mem::zeroed();
        pg_sys::fmgr_info(maintain, &mut function);
        let mut call: pg_sys::FunctionCallInfoBaseData = std::mem::zeroed();
        call.flinfo = &mut function;
        call.context = data as *const pg_sys::TriggerData as *mut pg_sys::Node;
        let entry = function.fn_addr.expect("fmgr_info sets the entry point");
        pg_sys::ffi::pg_guard_ffi_boundary(|| entry(&mut call));
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use crate::testing::sql;
    use pgrx::datum::{Date, Timestamp, TimestampWithTimeZone};

    /// The gate places local times as PostgreSQL's casts do, through the hours that DST changes
    /// skip and repeat, in zones east and west of Greenwich and with half-hour changes.
    #[pg_test]
    fn local_times_become_the_instants_postgresql_casts_them_to() {
        for zone in [
            "America/New_York",
            "Europe/Paris",
            "Australia/Lord_Howe",
            "Asia/Kolkata",
            "<-03>+03",
        ] {
            sql(&format!("SET LOCAL TimeZone = '{zone}'"));
            let name = std::ffi::CString::new(zone).unwrap();
            let tz = unsafe { pg_sys::pg_tzset(name.as_ptr()) };
            assert!(!tz.is_null(), "{zone}");
            let pairs = Spi::connect(|client| {
                client
                    .select(
                        "SELECT l, l::timestamptz, l::date, l::date::timestamptz
                           FROM generate_series('2025-12-31'::timestamp, '2027-01-01', '30 minutes') l
                         UNION ALL SELECT '-infinity', '-infinity', '-infinity', '-infinity'
                         UNION ALL SELECT 'infinity', 'infinity', 'infinity', 'infinity'",
                        None,
                        &[],
                    )?
                    .map(|row| {
                        Ok((
                            pg_sys::Timestamp::from(row.get::<Timestamp>(1)?.unwrap()),
                            pg_sys::TimestampTz::from(row.get::<TimestampWithTimeZone>(2)?.unwrap()),
                            pg_sys::DateADT::from(row.get::<Date>(3)?.unwrap()),
                            pg_sys::TimestampTz::from(row.get::<TimestampWithTimeZone>(4)?.unwrap()),
                        ))
                    })
                    .collect::<Result<Vec<_>, pgrx::spi::Error>>()
            })
            .unwrap();
            for (local, instant, date, midnight) in pairs {
                assert_eq!(
                    unsafe { local_instant(local, tz) },
                    Some(instant),
                    "{zone} {local}"
                );
                let placed = local_midnight(date).and_then(|m| unsafe { local_instant(m, tz) });
                assert_eq!(placed, Some(midnight), "{zone} {date}");
            }
        }
    }
}

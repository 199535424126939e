//! Planning a normalized statement (`$1`, `$2` in place of its constants) in-process, as a generic
//! plan: parse, analyze with parameter types inferred from their use, rewrite, plan with no
//! parameter values. No PREPARE, no EXPLAIN text: PostgreSQL 15 has no EXPLAIN (GENERIC_PLAN),
//! and PREPARE fails on a parameter whose type nothing determines.
//!
//! A statement that cannot be planned (its text cut short by track_activity_query_size, a table
//! since dropped, a parameter of undeterminable type) is reported with PostgreSQL's own message;
//! the attempt runs in a subtransaction, so nothing it took (locks, memory) outlives it.

use super::candidates::TableUse;
use super::hypo::{self, Hypothetical};
use super::normalized::typed_literals_as_casts;
use super::query::{parameter_number, table_uses};
use crate::subxact::{self, OnSuccess};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::{PgList, PgMemoryContexts};
use std::ffi::CString;

/// Why a statement was not planned.
#[derive(Debug, Clone, PartialEq)]
pub enum Skip {
    NotOneStatement,
    NotPlannable,
    NotPermitted,
    Failed(String),
}

impl Skip {
    pub fn reason(&self) -> String {
        match self {
            Skip::NotOneStatement => "not exactly one statement".into(),
            Skip::NotPlannable => "not a SELECT, INSERT, UPDATE or DELETE".into(),
            Skip::NotPermitted => "reads or writes a table this role may not".into(),
            Skip::Failed(message) => format!("planning failed: {message}"),
        }
    }
}

/// What a statement does to the table it writes, if it writes one.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub table: u32,
    pub command: Command,
    /// The columns an UPDATE sets: an index on none of them leaves its updates HOT.
    pub updated: Vec<i16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Insert,
    Update,
    Delete,
}

/// A statement as the advisor sees it: what it asks of each table, and what it writes.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    pub uses: Vec<TableUse>,
    pub write: Option<Write>,
    /// The parameter giving LIMIT, as in `LIMIT $2`.
    pub limit_parameter: Option<i32>,
}

/// A statement's text as the parser gets it, prepared once for its many plannings.
pub struct Text(CString);

impl Text {
    pub fn new(query: &str) -> Result<Text, Skip> {
        CString::new(typed_literals_as_casts(query))
            .map(Text)
            .map_err(|_| Skip::Failed("the text holds a NUL byte".into()))
    }

    pub fn as_ptr(&self) -> *const std::ffi::c_char {
        self.0.as_ptr()
    }
}

/// Plans `text` as it stands: its estimated total cost, and what it asks of its tables.
pub fn analyze(text: &Text) -> Result<(Analysis, f64), Skip> {
    in_subtransaction(|| {
        let mut analysis = Analysis::default();
        // SAFETY: planning in a subtransaction, reading nodes the planner allocated.
        let cost = unsafe { plan(&text.0, Some(&mut analysis), &[]) }?;
        Ok((analysis, cost))
    })
}

/// The estimated total cost of `text` with `indexes` visible to the planner; with `bound`
/// parameter values (number, value as text) the plan is the one those values get, else the
/// generic plan.
pub fn cost_with(
    text: &Text,
    indexes: &[Hypothetical],
    bound: &[(i32, String)],
) -> Result<f64, Skip> {
    // SAFETY: as in `analyze`.
    hypo::with_indexes(indexes, || {
        in_subtransaction(|| unsafe { plan(&text.0, None, bound) })
    })
}

unsafe fn plan(
    text: &CString,
    analysis: Option<&mut Analysis>,
    bound: &[(i32, String)],
) -> Result<f64, Skip> {
    unsafe {
        let raw = pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        if raw.is_null() || (*raw).length != 1 {
            return Err(Skip::NotOneStatement);
        }
        let statement = pg_sys::list_nth(raw, 0) as *mut pg_sys::RawStmt;
        if !is_plannable((*statement).stmt) {
            return Err(Skip::NotPlannable);
        }
        let mut parameter_types: *mut pg_sys::Oid = std::ptr::null_mut();
        let mut parameters: std::ffi::c_int = 0;
        let analyzed = pg_sys::parse_analyze_varparams(
            statement,
            text.as_ptr(),
            &mut parameter_types,
            &mut parameters,
            std::ptr::null_mut(),
        );
        let rewritten = pg_sys::pg_rewrite_query(analyzed);
        if rewritten.is_null() || (*rewritten).length != 1 {
            return Err(Skip::NotPlannable);
        }
        let query = pg_sys::list_nth(rewritten, 0) as *mut pg_sys::Query;
        if (*query).commandType == pg_sys::CmdType::CMD_UTILITY {
            return Err(Skip::NotPlannable);
        }
        // Planning does not check privileges, and its costs reflect the tables' statistics:
        // only statements this role could run are planned.
        if !pg_sys::ExecCheckRTPerms((*query).rtable, false) {
            return Err(Skip::NotPermitted);
        }
        // Read before planning: the planner rewrites the tree in place.
        if let Some(analysis) = analysis {
            analysis.uses = table_uses(query);
            analysis.write = write_of(query);
            analysis.limit_parameter = parameter_number((*query).limitCount);
        }
        let planned = pg_sys::pg_plan_query(
            query,
            text.as_ptr(),
            pg_sys::CURSOR_OPT_GENERIC_PLAN as i32,
            parameter_values(parameter_types, parameters, bound),
        );
        Ok((*(*planned).planTree).total_cost)
    }
}

/// The values of the `bound` parameters, converted from text to the types the statement gave
/// them; the others stay unknown. Null when nothing is bound: a generic plan.
unsafe fn parameter_values(
    types: *mut pg_sys::Oid,
    count: std::ffi::c_int,
    bound: &[(i32, String)],
) -> pg_sys::ParamListInfo {
    unsafe {
        if bound.is_empty() {
            return std::ptr::null_mut();
        }
        let list = pg_sys::makeParamList(count);
        let params = (*list).params.as_mut_slice(count as usize);
        // ptype InvalidOid: the planner leaves the parameter unknown, even when estimating.
        for param in params.iter_mut() {
            *param = pg_sys::ParamExternData {
                value: pg_sys::Datum::from(0),
                isnull: true,
                pflags: 0,
                ptype: pg_sys::InvalidOid,
            };
        }
        for (number, value) in bound {
            let Some(param) = usize::try_from(*number - 1)
                .ok()
                .and_then(|i| params.get_mut(i))
            else {
                continue;
            };
            let type_oid = *types.add((*number - 1) as usize);
            let (mut input, mut io_param) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
            pg_sys::getTypeInputInfo(type_oid, &mut input, &mut io_param);
            let text = CString::new(value.as_str()).unwrap_or_default();
            *param = pg_sys::ParamExternData {
                value: pg_sys::OidInputFunctionCall(input, text.as_ptr() as *mut _, io_param, -1),
                isnull: false,
                pflags: pg_sys::PARAM_FLAG_CONST as u16,
                ptype: type_oid,
            };
        }
        list
    }
}

unsafe fn write_of(query: *mut pg_sys::Query) -> Option<Write> {
    unsafe {
        let q = &*query;
        let command = match q.commandType {
            pg_sys::CmdType::CMD_INSERT => Command::Insert,
            pg_sys::CmdType::CMD_UPDATE => Command::Update,
            pg_sys::CmdType::CMD_DELETE => Command::Delete,
            _ => return None,
        };
        let target = pg_sys::list_nth(q.rtable, q.resultRelation - 1) as *mut pg_sys::RangeTblEntry;
        let updated = if command == Command::Update {
            PgList::<pg_sys::TargetEntry>::from_pg(q.targetList)
                .iter_ptr()
                .filter(|t| !(**t).resjunk)
                .map(|t| (*t).resno)
                .collect()
        } else {
            Vec::new()
        };
        Some(Write {
            table: (*target).relid.to_u32(),
            command,
            updated,
        })
    }
}

/// SELECT, INSERT, UPDATE and DELETE; not utility statements (EXPLAIN, COPY, DDL...).
pub(super) unsafe fn is_plannable(node: *mut pg_sys::Node) -> bool {
    unsafe {
        !node.is_null()
            && matches!(
                (*node).type_,
                pg_sys::NodeTag::T_SelectStmt
                    | pg_sys::NodeTag::T_InsertStmt
                    | pg_sys::NodeTag::T_UpdateStmt
                    | pg_sys::NodeTag::T_DeleteStmt
            )
    }
}

/// Runs `work` in a subtransaction and a memory context of its own, both gone when it returns:
/// an error PostgreSQL raised inside becomes `Skip::Failed` with its message.
pub(super) fn in_subtransaction<T>(work: impl FnOnce() -> Result<T, Skip>) -> Result<T, Skip> {
    let outcome = subxact::run(OnSuccess::Keep, || {
        // SAFETY: a fresh context, deleted when dropped; what `work` returns is owned Rust data,
        // so nothing allocated in the context outlives it.
        unsafe { PgMemoryContexts::new("dbopt advisor planning").switch_to(|_| work()) }
    });
    outcome.unwrap_or_else(|caught| {
        let report = match &caught {
            CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => report,
            CaughtError::RustPanic { ereport, .. } => ereport,
        };
        // A cancel, timeout or shutdown stops the whole call, never just one statement's
        // planning; re-raised once the subtransaction is gone, so the caller's transaction
        // unwinds as usual.
        if is_operator_intervention(report.sql_error_code()) {
            caught.rethrow()
        }
        Err(Skip::Failed(report.message().to_owned()))
    })
}

fn is_operator_intervention(code: PgSqlErrorCode) -> bool {
    matches!(
        code,
        PgSqlErrorCode::ERRCODE_QUERY_CANCELED
            | PgSqlErrorCode::ERRCODE_ADMIN_SHUTDOWN
            | PgSqlErrorCode::ERRCODE_CRASH_SHUTDOWN
            | PgSqlErrorCode::ERRCODE_CANNOT_CONNECT_NOW
            | PgSqlErrorCode::ERRCODE_DATABASE_DROPPED
    )
}

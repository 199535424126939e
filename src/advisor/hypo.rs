//! Hypothetical btree indexes, seen by the planner only while the advisor plans.
//!
//! `get_relation_info_hook` adds an `IndexOptInfo` for each hypothetical index on the table being
//! planned, built the way plancat.c builds a real one (recipe and sources:
//! docs/advisor-hypothetical-indexes.md). The set is active only inside [`with_indexes`], which
//! clears it on every exit, an error included: no other query ever sees one.

use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;

/// A btree on `table`'s `keys`, with `include` columns, under an OID no relation has; partial
/// on the WHERE clause of `predicate` (`SELECT FROM ONLY <table> WHERE <condition>`), which
/// holds `share` of the table's rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothetical {
    pub oid: pg_sys::Oid,
    pub table: pg_sys::Oid,
    pub keys: Vec<i16>,
    pub include: Vec<i16>,
    pub predicate: Option<String>,
    pub share: f64,
}

thread_local! {
    static ACTIVE: RefCell<Vec<Hypothetical>> = const { RefCell::new(Vec::new()) };
}

static mut PREVIOUS_HOOK: pg_sys::get_relation_info_hook_type = None;

/// Installs the hook; called once from `_PG_init`.
pub fn install() {
    // SAFETY: _PG_init runs once per backend, before any planning by dbopt.
    unsafe {
        PREVIOUS_HOOK = pg_sys::get_relation_info_hook;
        pg_sys::get_relation_info_hook = Some(relation_info_hook);
    }
}

/// Runs `work` with `indexes` visible to the planner, and never after.
pub fn with_indexes<T>(indexes: &[Hypothetical], work: impl FnOnce() -> T) -> T {
    ACTIVE.with(|active| *active.borrow_mut() = indexes.to_vec());
    PgTryBuilder::new(std::panic::AssertUnwindSafe(work))
        .finally(|| ACTIVE.with(|active| active.borrow_mut().clear()))
        .execute()
}

#[pg_guard]
unsafe extern "C-unwind" fn relation_info_hook(
    root: *mut pg_sys::PlannerInfo,
    relation: pg_sys::Oid,
    inheritance_parent: bool,
    rel: *mut pg_sys::RelOptInfo,
) {
    // An inheritance or partitioned parent has no indexes of its own in PG15.
    if !inheritance_parent {
        ACTIVE.with(|active| {
            for index in active.borrow().iter().filter(|i| i.table == relation) {
                // SAFETY: the planner hands a valid RelOptInfo of `relation`, in its memory context.
                unsafe { add_to_relation(rel, index) };
            }
        });
    }
    // SAFETY: chaining to the hook installed before ours, with the arguments we were given.
    unsafe {
        if let Some(previous) = PREVIOUS_HOOK {
            previous(root, relation, inheritance_parent, rel);
        }
    }
}

/// A column's type, typmod, collation and default btree operator class (InvalidOid when its
/// type has none: json, point...).
struct Column {
    attnum: i16,
    type_oid: pg_sys::Oid,
    typmod: i32,
    collation: pg_sys::Oid,
    opclass: pg_sys::Oid,
}

impl Column {
    fn read(table: pg_sys::Oid, attnum: i16) -> Column {
        let (mut type_oid, mut typmod, mut collation) =
            (pg_sys::InvalidOid, -1, pg_sys::InvalidOid);
        // SAFETY: syscache lookups by OID and attribute number.
        unsafe {
            pg_sys::get_atttypetypmodcoll(
                table,
                attnum,
                &mut type_oid,
                &mut typmod,
                &mut collation,
            );
            Column {
                attnum,
                type_oid,
                typmod,
                collation,
                opclass: pg_sys::GetDefaultOpClass(type_oid, pg_sys::BTREE_AM_OID),
            }
        }
    }

    /// The column as the planner's expression over `rel`.
    unsafe fn var(&self, rel: *mut pg_sys::RelOptInfo) -> *mut pg_sys::Var {
        unsafe {
            pg_sys::makeVar(
                (*rel).relid as _,
                self.attnum,
                self.type_oid,
                self.typmod,
                self.collation,
                0,
            )
        }
    }

    /// A key column: only one whose type has a btree operator class.
    fn key(table: pg_sys::Oid, attnum: i16) -> Option<Column> {
        Some(Column::read(table, attnum)).filter(|c| c.opclass != pg_sys::InvalidOid)
    }

    /// Its average width from the table's statistics, else its type's.
    fn width(&self, table: pg_sys::Oid) -> i32 {
        // SAFETY: syscache lookups by OID.
        unsafe {
            let measured = pg_sys::get_attavgwidth(table, self.attnum);
            if measured > 0 {
                measured
            } else {
                pg_sys::get_typavgwidth(self.type_oid, self.typmod)
            }
        }
    }
}

/// Whether every key column has a default btree operator class (json, point... have none).
pub fn buildable(table: pg_sys::Oid, keys: &[i16]) -> bool {
    keys.iter().all(|k| Column::key(table, *k).is_some())
}

unsafe fn palloc_array<T: Copy>(values: &[T]) -> *mut T {
    unsafe {
        let array = pg_sys::palloc(std::mem::size_of_val(values).max(1)) as *mut T;
        std::ptr::copy_nonoverlapping(values.as_ptr(), array, values.len());
        array
    }
}

unsafe fn add_to_relation(rel: *mut pg_sys::RelOptInfo, index: &Hypothetical) {
    unsafe {
        let Some(keys) = index
            .keys
            .iter()
            .map(|k| Column::key(index.table, *k))
            .collect::<Option<Vec<_>>>()
        else {
            return;
        };
        let included: Vec<Column> = index
            .include
            .iter()
            .map(|c| Column::read(index.table, *c))
            .collect();
        let all: Vec<&Column> = keys.iter().chain(included.iter()).collect();
        let am = pg_sys::GetIndexAmRoutineByAmId(pg_sys::BTREE_AM_OID, false);

        let info = pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexOptInfo>())
            as *mut pg_sys::IndexOptInfo;
        let i = &mut *info;
        i.type_ = pg_sys::NodeTag::T_IndexOptInfo;
        i.indexoid = index.oid;
        i.reltablespace = (*rel).reltablespace;
        i.rel = rel;
        i.ncolumns = all.len() as i32;
        i.nkeycolumns = keys.len() as i32;
        i.indexkeys = palloc_array(&all.iter().map(|c| c.attnum as i32).collect::<Vec<_>>());
        i.indexcollations = palloc_array(
            &keys
                .iter()
                .map(|c| {
                    if pg_sys::type_is_collatable(c.type_oid) {
                        c.collation
                    } else {
                        pg_sys::InvalidOid
                    }
                })
                .collect::<Vec<_>>(),
        );
        i.opfamily = palloc_array(
            &keys
                .iter()
                .map(|c| pg_sys::get_opclass_family(c.opclass))
                .collect::<Vec<_>>(),
        );
        i.opcintype = palloc_array(
            &keys
                .iter()
                .map(|c| pg_sys::get_opclass_input_type(c.opclass))
                .collect::<Vec<_>>(),
        );
        // For btree the sort operator family is the operator family itself.
        i.sortopfamily = i.opfamily;
        i.reverse_sort = palloc_array(&vec![false; keys.len()]);
        i.nulls_first = palloc_array(&vec![false; keys.len()]);
        // A btree can return every column, INCLUDE columns too: index-only scans.
        i.canreturn = palloc_array(&vec![true; all.len()]);
        i.relam = pg_sys::BTREE_AM_OID;
        let mut target_list: *mut pg_sys::List = std::ptr::null_mut();
        for (position, c) in all.iter().enumerate() {
            let var = c.var(rel);
            let entry = pg_sys::makeTargetEntry(
                var.cast(),
                (position + 1) as _,
                std::ptr::null_mut(),
                false,
            );
            target_list = pg_sys::lappend(target_list, entry.cast());
        }
        i.indextlist = target_list;

        // The planner sets predOK from indpred (check_index_predicates): a partial index is
        // considered only for queries whose conditions imply its predicate.
        if let Some(predicate) = &index.predicate {
            i.indpred = predicate_list(rel, predicate);
        }
        let widths: i32 = all.iter().map(|c| c.width(index.table)).sum();
        let tuples = (*rel).tuples * index.share;
        let size = super::size::estimate(tuples, widths);
        i.tuples = tuples;
        i.pages = size.pages;
        i.tree_height = size.tree_height;
        i.unique = false;
        i.immediate = true;
        // Mandatory: the planner skips hypothetical indexes where it would open them
        // (get_actual_variable_range).
        i.hypothetical = true;
        i.amcanorderbyop = (*am).amcanorderbyop;
        i.amoptionalkey = (*am).amoptionalkey;
        i.amsearcharray = (*am).amsearcharray;
        i.amsearchnulls = (*am).amsearchnulls;
        i.amhasgettuple = (*am).amgettuple.is_some();
        i.amhasgetbitmap = (*am).amgetbitmap.is_some();
        i.amcanparallel = (*am).amcanparallel;
        i.amcanmarkpos = (*am).ammarkpos.is_some() && (*am).amrestrpos.is_some();
        // SAFETY: plancat.c stores the AM's cost function in this untyped slot the same way.
        i.amcostestimate = std::mem::transmute::<
            pg_sys::amcostestimate_function,
            Option<unsafe extern "C-unwind" fn()>,
        >((*am).amcostestimate);
        // First in the list, as plancat.c does for real indexes: tried first on ties.
        (*rel).indexlist = pg_sys::lcons(info.cast(), (*rel).indexlist);
    }
}

/// The WHERE clause of `statement` as the planner holds a real index's predicate: analyzed
/// as CREATE INDEX would, then simplified as RelationGetIndexPredicate does, so that
/// predicate_implied_by compares like with like (casts and operators included).
unsafe fn predicate_list(rel: *mut pg_sys::RelOptInfo, statement: &str) -> *mut pg_sys::List {
    unsafe {
        let text =
            std::ffi::CString::new(statement).expect("built from identifiers and a quoted literal");
        let raw = pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        let parse = pg_sys::make_parsestate(std::ptr::null_mut());
        (*parse).p_sourcetext = text.as_ptr();
        // Not parse_analyze: its post-analysis hook would give pg_stat_statements an entry.
        let query = pg_sys::transformTopLevelStmt(parse, pg_sys::list_nth(raw, 0).cast());
        pg_sys::free_parsestate(parse);
        let quals =
            pg_sys::eval_const_expressions(std::ptr::null_mut(), (*(*query).jointree).quals);
        let quals = pg_sys::canonicalize_qual(quals.cast(), false);
        let list = pg_sys::make_ands_implicit(quals);
        pg_sys::fix_opfuncids(list.cast());
        // The statement's only table is range-table entry 1; plancat.c renumbers the same way.
        if (*rel).relid != 1 {
            pg_sys::ChangeVarNodes(list.cast(), 1, (*rel).relid as _, 0);
        }
        list
    }
}

/// The average width of a column, for size estimates outside the planner.
pub fn column_width(table: pg_sys::Oid, attnum: i16) -> i32 {
    Column::read(table, attnum).width(table)
}

/// OIDs below FirstNormalObjectId that no relation has: they can never name a real index, and
/// taking them needs no catalog write.
pub fn unused_oids(count: usize) -> Vec<pg_sys::Oid> {
    let mut found = Vec::with_capacity(count);
    let mut candidate = pg_sys::FirstNormalObjectId - 1;
    while found.len() < count && candidate > pg_sys::FirstGenbkiObjectId {
        let oid = pg_sys::Oid::from(candidate);
        // SAFETY: a syscache lookup by OID.
        if unsafe { pg_sys::get_rel_name(oid) }.is_null() {
            found.push(oid);
        }
        candidate -= 1;
    }
    if found.len() < count {
        crate::errors::DboptError::new(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("too many index candidates to cost at once ({count})"),
        )
        .raise();
    }
    found
}

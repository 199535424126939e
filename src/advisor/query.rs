//! What an analyzed statement asks of each table it reads: the columns it compares for
//! equality, those it bounds by a range, joins on, orders and groups by, and every column it
//! touches. Index candidates are made from these (candidates.rs).

use super::candidates::{Predicate, TableUse};
use pgrx::pg_sys;
use pgrx::{is_a, PgList};

/// The uses of every table `query` reads, at every level: subqueries in FROM, WITH queries
/// and sublinks in WHERE included.
pub unsafe fn table_uses(query: *mut pg_sys::Query) -> Vec<TableUse> {
    let mut uses = Vec::new();
    unsafe { walk_query(query, &mut uses) };
    uses
}

unsafe fn walk_query(query: *mut pg_sys::Query, uses: &mut Vec<TableUse>) {
    unsafe {
        let q = &*query;
        let rtable = PgList::<pg_sys::RangeTblEntry>::from_pg(q.rtable);
        // One use per range-table entry of a table: a self-join uses the table twice.
        let mut level: Vec<Option<TableUse>> = rtable
            .iter_ptr()
            .map(|rte| {
                ((*rte).rtekind == pg_sys::RTEKind::RTE_RELATION).then(|| TableUse {
                    table: (*rte).relid.to_u32(),
                    ..TableUse::default()
                })
            })
            .collect();
        let mut nested = Vec::new();
        if !q.jointree.is_null() {
            walk_from(q.jointree.cast(), &mut level, &mut nested);
        }
        for clause in [q.sortClause, q.groupClause] {
            let ordered = q.sortClause == clause;
            if let Some((varno, columns)) = plain_columns(q, clause) {
                if let Some(Some(table)) = level.get_mut(varno - 1) {
                    if ordered {
                        table.order = columns;
                    } else {
                        table.group = columns;
                    }
                }
            }
        }
        for (index, slot) in level.iter_mut().enumerate() {
            if let Some(table) = slot {
                table.referenced = referenced_columns(query, index + 1);
            }
        }
        uses.extend(level.into_iter().flatten());
        for rte in rtable.iter_ptr() {
            if (*rte).rtekind == pg_sys::RTEKind::RTE_SUBQUERY && !(*rte).subquery.is_null() {
                walk_query((*rte).subquery, uses);
            }
        }
        for cte in PgList::<pg_sys::CommonTableExpr>::from_pg(q.cteList).iter_ptr() {
            if is_a((*cte).ctequery, pg_sys::NodeTag::T_Query) {
                walk_query((*cte).ctequery.cast(), uses);
            }
        }
        for subquery in nested {
            walk_query(subquery, uses);
        }
    }
}

/// The FROM list's join conditions and the WHERE clause, conjunct by conjunct.
unsafe fn walk_from(
    node: *mut pg_sys::Node,
    level: &mut [Option<TableUse>],
    nested: &mut Vec<*mut pg_sys::Query>,
) {
    unsafe {
        if is_a(node, pg_sys::NodeTag::T_FromExpr) {
            let from = &*(node as *mut pg_sys::FromExpr);
            for item in PgList::<pg_sys::Node>::from_pg(from.fromlist).iter_ptr() {
                walk_from(item, level, nested);
            }
            walk_conjuncts(from.quals, level, nested);
        } else if is_a(node, pg_sys::NodeTag::T_JoinExpr) {
            let join = &*(node as *mut pg_sys::JoinExpr);
            walk_from(join.larg, level, nested);
            walk_from(join.rarg, level, nested);
            walk_conjuncts(join.quals, level, nested);
        }
    }
}

unsafe fn walk_conjuncts(
    node: *mut pg_sys::Node,
    level: &mut [Option<TableUse>],
    nested: &mut Vec<*mut pg_sys::Query>,
) {
    unsafe {
        if node.is_null() {
            return;
        }
        if is_a(node, pg_sys::NodeTag::T_BoolExpr) {
            let bool_expr = &*(node as *mut pg_sys::BoolExpr);
            if bool_expr.boolop == pg_sys::BoolExprType::AND_EXPR {
                for arg in PgList::<pg_sys::Node>::from_pg(bool_expr.args).iter_ptr() {
                    walk_conjuncts(arg, level, nested);
                }
                return;
            }
        }
        if let Some((varno, predicate)) = fixed_predicate(node) {
            if let Some(Some(table)) = level.get_mut(varno - 1) {
                if !table.fixed.contains(&predicate) {
                    table.fixed.push(predicate);
                }
            }
            return;
        }
        if is_a(node, pg_sys::NodeTag::T_SubLink) {
            let sublink = &*(node as *mut pg_sys::SubLink);
            if is_a(sublink.subselect, pg_sys::NodeTag::T_Query) {
                nested.push(sublink.subselect.cast());
            }
            return;
        }
        let (opno, args) = if is_a(node, pg_sys::NodeTag::T_OpExpr) {
            let op = &*(node as *mut pg_sys::OpExpr);
            (op.opno, op.args)
        } else if is_a(node, pg_sys::NodeTag::T_ScalarArrayOpExpr) {
            // column = ANY (...): an index on the column serves it like an equality.
            let op = &*(node as *mut pg_sys::ScalarArrayOpExpr);
            if !op.useOr {
                return;
            }
            (op.opno, op.args)
        } else {
            return;
        };
        let args = PgList::<pg_sys::Node>::from_pg(args);
        let (Some(left), Some(right)) = (args.get_ptr(0), args.get_ptr(1)) else {
            return;
        };
        let Some(equality) = btree_strategy(opno) else {
            return;
        };
        let mut record = |var: *mut pg_sys::Var, other: *mut pg_sys::Node, joined: bool| {
            let var = &*var;
            if let Some(Some(table)) = level.get_mut(var.varno as usize - 1) {
                let column = var.varattno;
                let list = if joined {
                    &mut table.join
                } else if equality {
                    &mut table.equality
                } else {
                    &mut table.range
                };
                if column > 0 && !list.contains(&column) {
                    list.push(column);
                }
                if let Some(parameter) = parameter_number(other).filter(|_| equality && !joined) {
                    table.parameters.push((column, parameter));
                }
            }
        };
        match (column_of(left), column_of(right)) {
            (Some(l), Some(r)) if (*l).varno != (*r).varno => {
                if equality {
                    record(l, right, true);
                    record(r, left, true);
                }
            }
            (Some(l), None) if !pg_sys::contain_vars_of_level(right, 0) => record(l, right, false),
            (None, Some(r)) if !pg_sys::contain_vars_of_level(left, 0) => record(r, left, false),
            _ => {}
        }
    }
}

/// `column IS [NOT] NULL`, a boolean column alone or under NOT: conditions pg_stat_statements
/// keeps as written, so a partial index can repeat them. With the column's range-table index.
unsafe fn fixed_predicate(node: *mut pg_sys::Node) -> Option<(usize, Predicate)> {
    unsafe {
        if is_a(node, pg_sys::NodeTag::T_NullTest) {
            let test = &*(node as *mut pg_sys::NullTest);
            let var = column_of(test.arg.cast())?;
            let column = (*var).varattno;
            let predicate = if test.nulltesttype == pg_sys::NullTestType::IS_NULL {
                Predicate::IsNull(column)
            } else {
                Predicate::IsNotNull(column)
            };
            return (column > 0).then_some(((*var).varno as usize, predicate));
        }
        let (node, negated) = if is_a(node, pg_sys::NodeTag::T_BoolExpr)
            && (*(node as *mut pg_sys::BoolExpr)).boolop == pg_sys::BoolExprType::NOT_EXPR
        {
            let args = PgList::<pg_sys::Node>::from_pg((*(node as *mut pg_sys::BoolExpr)).args);
            (args.get_ptr(0)?, true)
        } else {
            (node, false)
        };
        let var = column_of(node)?;
        let column = (*var).varattno;
        if column <= 0 || (*var).vartype != pg_sys::BOOLOID {
            return None;
        }
        let predicate = if negated {
            Predicate::IsFalse(column)
        } else {
            Predicate::IsTrue(column)
        };
        Some(((*var).varno as usize, predicate))
    }
}

/// Whether a btree can serve the operator: Some(true) for equality, Some(false) for <, <=, >=, >.
unsafe fn btree_strategy(opno: pg_sys::Oid) -> Option<bool> {
    unsafe {
        let interpretations = PgList::<pg_sys::OpBtreeInterpretation>::from_pg(
            pg_sys::get_op_btree_interpretation(opno),
        );
        let strategies: Vec<i32> = interpretations.iter_ptr().map(|i| (*i).strategy).collect();
        if strategies.contains(&(pg_sys::BTEqualStrategyNumber as i32)) {
            Some(true)
        } else if strategies
            .iter()
            .any(|s| (1..=5).contains(s) && *s != pg_sys::BTEqualStrategyNumber as i32)
        {
            Some(false)
        } else {
            None
        }
    }
}

/// `$n` (under any cast), for the skewed-value costing in recommend.rs.
pub unsafe fn parameter_number(mut node: *mut pg_sys::Node) -> Option<i32> {
    unsafe {
        loop {
            if is_a(node, pg_sys::NodeTag::T_RelabelType) {
                node = (*(node as *mut pg_sys::RelabelType)).arg.cast();
            } else if is_a(node, pg_sys::NodeTag::T_CoerceViaIO) {
                node = (*(node as *mut pg_sys::CoerceViaIO)).arg.cast();
            } else {
                break;
            }
        }
        (is_a(node, pg_sys::NodeTag::T_Param)
            && (*(node as *mut pg_sys::Param)).paramkind == pg_sys::ParamKind::PARAM_EXTERN)
            .then(|| (*(node as *mut pg_sys::Param)).paramid)
    }
}

/// A column of this query level, under any binary-compatible cast.
unsafe fn column_of(mut node: *mut pg_sys::Node) -> Option<*mut pg_sys::Var> {
    unsafe {
        while is_a(node, pg_sys::NodeTag::T_RelabelType) {
            node = (*(node as *mut pg_sys::RelabelType)).arg.cast();
        }
        (is_a(node, pg_sys::NodeTag::T_Var) && (*(node as *mut pg_sys::Var)).varlevelsup == 0)
            .then_some(node as *mut pg_sys::Var)
    }
}

/// The columns of an ORDER BY or GROUP BY list when all of them are plain columns of one table
/// (range-table index, 1-based); only then can one index deliver the order.
unsafe fn plain_columns(q: &pg_sys::Query, clause: *mut pg_sys::List) -> Option<(usize, Vec<i16>)> {
    unsafe {
        let targets = PgList::<pg_sys::TargetEntry>::from_pg(q.targetList);
        let mut table = None;
        let mut columns = Vec::new();
        for item in PgList::<pg_sys::SortGroupClause>::from_pg(clause).iter_ptr() {
            let target = targets
                .iter_ptr()
                .find(|t| (**t).ressortgroupref == (*item).tleSortGroupRef)?;
            let var = column_of((*target).expr.cast())?;
            let varno = (*var).varno as usize;
            if *table.get_or_insert(varno) != varno || (*var).varattno <= 0 {
                return None;
            }
            columns.push((*var).varattno);
        }
        table.map(|t| (t, columns))
    }
}

/// Every column of range-table entry `varno` that the query level mentions anywhere.
unsafe fn referenced_columns(query: *mut pg_sys::Query, varno: usize) -> Vec<i16> {
    unsafe {
        let q = &*query;
        let mut attributes: *mut pg_sys::Bitmapset = std::ptr::null_mut();
        for node in [
            q.targetList.cast(),
            q.jointree.cast(),
            q.havingQual,
            q.returningList.cast(),
        ] {
            pg_sys::pull_varattnos(node, varno as pg_sys::Index, &mut attributes);
        }
        let mut columns = Vec::new();
        let mut member = -1;
        loop {
            member = pg_sys::bms_next_member(attributes, member);
            if member < 0 {
                break;
            }
            let attno = member + pg_sys::FirstLowInvalidHeapAttributeNumber;
            if attno > 0 {
                columns.push(attno as i16);
            }
        }
        columns
    }
}

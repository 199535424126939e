//! The measures of a rolling aggregate: which aggregate calls a trigger can keep exact. A change
//! to the source adds or removes rows, so a measure is kept exactly only when a row's
//! contribution can be subtracted again: count(*), count(expr) and sum(expr), each optionally
//! with FILTER (WHERE ...). avg, min, max and count(DISTINCT ...) cannot be.

use crate::checks::with_bare_select_targets;
use pgrx::{is_a, pg_sys, PgList};
use std::ffi::CStr;

/// One measure as the parser saw it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedMeasure {
    /// The measure as the caller wrote it, for messages.
    pub text: String,
    /// Whether it is a function call at all.
    pub is_call: bool,
    /// The function's name, qualified or not, as the parser folded it.
    pub function: Vec<String>,
    pub args: usize,
    pub star: bool,
    pub distinct: bool,
    pub ordered: bool,
    pub window: bool,
    pub within_group: bool,
    pub variadic: bool,
    pub filtered: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// count(*) without FILTER: the number of rows, which says when a group is empty.
    CountRows,
    /// count(expr), or count(*) with a FILTER.
    CountValues,
    Sum,
}

/// Why a measure cannot be kept by subtraction, or which kind it is.
pub fn classify(m: &ParsedMeasure) -> Result<Kind, String> {
    if !m.is_call {
        return Err("it is not an aggregate call".into());
    }
    let name = match m.function.as_slice() {
        [name] => name.as_str(),
        [schema, name] if schema == "pg_catalog" => name.as_str(),
        _ => {
            return Err(format!(
                "{} is not a built-in aggregate",
                m.function.join(".")
            ))
        }
    };
    if !matches!(name, "count" | "sum") {
        return Err(format!(
            "{name}() cannot be undone when a row leaves the group"
        ));
    }
    if m.distinct {
        return Err(format!(
            "{name}(DISTINCT ...) cannot be undone when a row leaves the group"
        ));
    }
    if m.window {
        return Err("a window function is not an aggregate".into());
    }
    if m.ordered || m.within_group || m.variadic {
        return Err(format!("{name}() takes one plain argument here"));
    }
    match (name, m.star, m.args) {
        ("count", true, _) if !m.filtered => Ok(Kind::CountRows),
        ("count", true, _) | ("count", false, 1) => Ok(Kind::CountValues),
        ("sum", false, 1) => Ok(Kind::Sum),
        _ => Err(format!("{name}() takes exactly one argument")),
    }
}

/// Parses a measure list such as `count(*) AS total_orders, sum(total_amount) AS total_spent`.
/// `None` when it is not a bare list of expressions (a syntax error, a second statement, a
/// FROM clause smuggled in).
pub fn parse(measures: &str) -> Option<Vec<ParsedMeasure>> {
    const PREFIX: usize = "SELECT ".len();
    with_bare_select_targets(measures, |targets| {
        let starts: Vec<usize> = targets
            .iter_ptr()
            // SAFETY: every element of a SELECT's target list is a ResTarget.
            .map(|t| usize::try_from(unsafe { (*t).location }).unwrap_or(PREFIX) - PREFIX)
            .collect();
        targets
            .iter_ptr()
            .enumerate()
            .map(|(i, target)| {
                let end = starts.get(i + 1).copied().unwrap_or(measures.len());
                let text = measures
                    .get(starts[i]..end)
                    .unwrap_or(measures)
                    .trim_end()
                    .trim_end_matches(',')
                    .trim()
                    .to_owned();
                // SAFETY: as above; the value node is read only after checking its tag.
                let parsed = unsafe { call_of((*target).val) };
                ParsedMeasure { text, ..parsed }
            })
            .collect()
    })
}

/// # Safety
/// `node` must be a node of a raw parse tree.
unsafe fn call_of(node: *mut pg_sys::Node) -> ParsedMeasure {
    if node.is_null() || !is_a(node, pg_sys::NodeTag::T_FuncCall) {
        return ParsedMeasure::default();
    }
    let call = &*node.cast::<pg_sys::FuncCall>();
    let function = PgList::<pg_sys::Node>::from_pg(call.funcname)
        .iter_ptr()
        .filter(|part| is_a(*part, pg_sys::NodeTag::T_String))
        .map(|part| {
            CStr::from_ptr((*part.cast::<pg_sys::String>()).sval)
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    ParsedMeasure {
        text: String::new(),
        is_call: true,
        function,
        args: PgList::<pg_sys::Node>::from_pg(call.args).len(),
        star: call.agg_star,
        distinct: call.agg_distinct,
        ordered: !call.agg_order.is_null(),
        window: !call.over.is_null(),
        within_group: call.agg_within_group,
        variadic: call.func_variadic,
        filtered: !call.agg_filter.is_null(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: usize) -> ParsedMeasure {
        ParsedMeasure {
            is_call: true,
            function: name.split('.').map(str::to_owned).collect(),
            args,
            ..Default::default()
        }
    }

    #[test]
    fn count_and_sum_are_kept_by_subtraction() {
        let star = ParsedMeasure {
            star: true,
            ..call("count", 0)
        };
        assert_eq!(classify(&star), Ok(Kind::CountRows));
        let filtered_star = ParsedMeasure {
            filtered: true,
            ..star.clone()
        };
        assert_eq!(classify(&filtered_star), Ok(Kind::CountValues));
        assert_eq!(classify(&call("count", 1)), Ok(Kind::CountValues));
        assert_eq!(classify(&call("sum", 1)), Ok(Kind::Sum));
        assert_eq!(classify(&call("pg_catalog.sum", 1)), Ok(Kind::Sum));
        let filtered_sum = ParsedMeasure {
            filtered: true,
            ..call("sum", 1)
        };
        assert_eq!(classify(&filtered_sum), Ok(Kind::Sum));
    }

    #[test]
    fn what_cannot_be_undone_is_refused_with_a_reason() {
        for name in ["avg", "min", "max", "string_agg"] {
            let why = classify(&call(name, 1)).unwrap_err();
            assert!(why.contains("cannot be undone"), "{name}: {why}");
        }
        let distinct = ParsedMeasure {
            distinct: true,
            ..call("count", 1)
        };
        assert!(classify(&distinct).unwrap_err().contains("DISTINCT"));
        let window = ParsedMeasure {
            window: true,
            ..call("sum", 1)
        };
        assert!(classify(&window).is_err());
        assert!(classify(&call("myschema.sum", 1)).is_err());
        assert!(classify(&call("sum", 2)).is_err());
        assert!(classify(&ParsedMeasure::default()).is_err());
    }
}

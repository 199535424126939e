//! Index candidates from what statements ask of a table (query.rs). Equality columns lead, as
//! a btree can only use a column after those before it are fixed; then one range, ORDER BY or
//! GROUP BY; small column sets also get a covering (INCLUDE) variant for index-only scans.
//! A statement whose WHERE fixes a predicate (`deleted_at IS NULL`, a boolean column, or
//! `status = $1` read as the column's rare value) also gets partial variants holding only the
//! rows it can match.

use crate::ident::literal;
use std::collections::BTreeSet;

/// Columns are attribute numbers of `table` (an OID).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableUse {
    pub table: u32,
    pub equality: Vec<i16>,
    pub range: Vec<i16>,
    pub join: Vec<i16>,
    pub order: Vec<i16>,
    pub group: Vec<i16>,
    pub referenced: Vec<i16>,
    /// Columns compared for equality with a statement parameter: (column, parameter number).
    pub parameters: Vec<(i16, i32)>,
    /// Conditions of the WHERE clause a partial index's predicate can repeat: those with no
    /// parameter in them, and equalities with a parameter bound to a skewed column's rare value.
    pub fixed: Vec<Predicate>,
}

/// A condition on one column that a partial index can hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Predicate {
    IsNull(i16),
    IsNotNull(i16),
    /// A boolean column on its own (`WHERE active`).
    IsTrue(i16),
    /// `WHERE NOT active`.
    IsFalse(i16),
    /// `column = 'value'`, the value as text (pg_stats' most common values).
    Equals(i16, String),
}

impl Predicate {
    pub fn column(&self) -> i16 {
        match self {
            Predicate::IsNull(c)
            | Predicate::IsNotNull(c)
            | Predicate::IsTrue(c)
            | Predicate::IsFalse(c)
            | Predicate::Equals(c, _) => *c,
        }
    }

    /// The predicate as SQL, with `column` the quoted column name.
    pub fn sql(&self, column: &str) -> String {
        match self {
            Predicate::IsNull(_) => format!("{column} IS NULL"),
            Predicate::IsNotNull(_) => format!("{column} IS NOT NULL"),
            Predicate::IsTrue(_) => column.to_owned(),
            Predicate::IsFalse(_) => format!("NOT {column}"),
            Predicate::Equals(_, value) => format!("{column} = {}", literal(value)),
        }
    }

    /// A few words for the index name: identifier characters only.
    pub fn name_part(&self, column: &str) -> String {
        match self {
            Predicate::IsNull(_) => format!("{column}_null"),
            Predicate::IsNotNull(_) => format!("{column}_not_null"),
            Predicate::IsTrue(_) => column.to_owned(),
            Predicate::IsFalse(_) => format!("not_{column}"),
            Predicate::Equals(_, value) => {
                let word: String = value
                    .chars()
                    .map(|c| {
                        if c.is_alphanumeric() {
                            c.to_ascii_lowercase()
                        } else {
                            '_'
                        }
                    })
                    .take(20)
                    .collect();
                format!("{column}_{word}")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Candidate {
    pub table: u32,
    pub keys: Vec<i16>,
    pub include: Vec<i16>,
    /// A partial index's predicate.
    pub predicate: Option<Predicate>,
}

/// At most this many key columns: wider btrees rarely pay for their size.
const MAX_KEYS: usize = 4;
/// Statements touching at most this many columns of a table get covering candidates.
const MAX_COVERED: usize = 5;
/// Partial variants for at most this many of a statement's fixed conditions.
const MAX_PARTIAL_PREDICATES: usize = 2;

pub fn candidates(table_use: &TableUse) -> BTreeSet<Candidate> {
    let mut leading: Vec<i16> = Vec::new();
    for column in table_use.equality.iter().chain(&table_use.join) {
        if !leading.contains(column) && leading.len() < MAX_KEYS - 1 {
            leading.push(*column);
        }
    }
    let mut key_sets: Vec<Vec<i16>> = Vec::new();
    let mut add = |keys: Vec<i16>| {
        if !keys.is_empty() && !key_sets.contains(&keys) {
            key_sets.push(keys);
        }
    };
    for column in table_use
        .equality
        .iter()
        .chain(&table_use.join)
        .chain(&table_use.range)
        .chain(table_use.order.first())
        .chain(table_use.group.first())
    {
        add(vec![*column]);
    }
    add(leading.clone());
    for range in &table_use.range {
        add(followed_by(&leading, &[*range]));
    }
    add(followed_by(&leading, &table_use.order));
    add(followed_by(&leading, &table_use.group));

    let mut result = BTreeSet::new();
    for keys in key_sets {
        let include: Vec<i16> = table_use
            .referenced
            .iter()
            .filter(|c| !keys.contains(c))
            .copied()
            .collect();
        if !include.is_empty() && keys.len() + include.len() <= MAX_COVERED {
            result.insert(Candidate {
                table: table_use.table,
                keys: keys.clone(),
                include,
                predicate: None,
            });
        }
        result.insert(Candidate {
            table: table_use.table,
            keys,
            include: Vec::new(),
            predicate: None,
        });
    }
    // Partial variants for the first fixed conditions; a condition's column, constant in the
    // index, is left out of its keys.
    let whole: Vec<Candidate> = result.iter().cloned().collect();
    for predicate in table_use.fixed.iter().take(MAX_PARTIAL_PREDICATES) {
        for candidate in &whole {
            let keys: Vec<i16> = candidate
                .keys
                .iter()
                .copied()
                .filter(|c| *c != predicate.column())
                .collect();
            if !keys.is_empty() {
                result.insert(Candidate {
                    keys,
                    predicate: Some(predicate.clone()),
                    ..candidate.clone()
                });
            }
        }
    }
    result
}

/// `leading` then the columns of `rest` not already in it, at most MAX_KEYS in all.
fn followed_by(leading: &[i16], rest: &[i16]) -> Vec<i16> {
    let mut keys = leading.to_vec();
    for column in rest {
        if !keys.contains(column) && keys.len() < MAX_KEYS {
            keys.push(*column);
        }
    }
    if keys.len() == leading.len() {
        return Vec::new(); // nothing follows: the leading set alone is already a candidate
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(set: &BTreeSet<Candidate>) -> Vec<(Vec<i16>, Vec<i16>)> {
        set.iter()
            .map(|c| (c.keys.clone(), c.include.clone()))
            .collect()
    }

    // ml_jobs (seed 002): 1 id, 2 status, 3 created_at, 4 payload, ...
    #[test]
    fn a_fixed_null_test_gets_partial_variants_without_its_column() {
        // tasks: 1 id, 2 owner, 3 deleted_at, 4 due
        let found = candidates(&TableUse {
            table: 1,
            equality: vec![2],
            order: vec![4],
            referenced: vec![1, 2, 3, 4, 5, 6, 7],
            fixed: vec![Predicate::IsNull(3)],
            ..TableUse::default()
        });
        assert!(found.contains(&Candidate {
            table: 1,
            keys: vec![2, 4],
            include: vec![],
            predicate: Some(Predicate::IsNull(3))
        }));
        assert!(found.contains(&Candidate {
            table: 1,
            keys: vec![2, 4],
            include: vec![],
            predicate: None
        }));
        assert!(found
            .iter()
            .all(|c| c.predicate.is_none() || !c.keys.contains(&3)));
        assert_eq!(Predicate::IsNull(3).sql("deleted_at"), "deleted_at IS NULL");
        assert_eq!(Predicate::IsFalse(5).sql("active"), "NOT active");
    }

    #[test]
    fn a_rare_value_gets_partial_variants_named_after_it() {
        let pending = Predicate::Equals(2, "pending".into());
        let found = candidates(&TableUse {
            table: 1,
            equality: vec![2],
            order: vec![3],
            parameters: vec![(2, 1)],
            fixed: vec![pending.clone()],
            ..TableUse::default()
        });
        assert!(found.contains(&Candidate {
            table: 1,
            keys: vec![3],
            include: vec![],
            predicate: Some(pending.clone())
        }));
        assert!(found.contains(&Candidate {
            table: 1,
            keys: vec![2, 3],
            include: vec![],
            predicate: None
        }));
        assert_eq!(pending.sql("status"), "status = 'pending'");
        assert_eq!(
            Predicate::Equals(2, "it's".into()).sql("\"s\""),
            "\"s\" = 'it''s'"
        );
        assert_eq!(literal("a\\b"), "E'a\\\\b'");
        assert_eq!(
            Predicate::Equals(2, "On Hold!".into()).name_part("status"),
            "status_on_hold_"
        );
    }

    #[test]
    fn pending_jobs_by_age_lead_with_status_then_order() {
        let found = candidates(&TableUse {
            table: 1,
            equality: vec![2],
            order: vec![3],
            referenced: vec![1, 2, 3, 4, 5, 6, 7],
            ..TableUse::default()
        });
        assert!(found.contains(&Candidate {
            table: 1,
            keys: vec![2, 3],
            include: vec![],
            predicate: None
        }));
        assert!(found.contains(&Candidate {
            table: 1,
            keys: vec![3],
            include: vec![],
            predicate: None
        }));
        assert!(
            found.iter().all(|c| c.include.is_empty()),
            "SELECT * over seven columns is not covered"
        );
    }

    #[test]
    fn a_date_range_with_a_status_puts_the_equality_first() {
        let found = candidates(&TableUse {
            table: 1,
            equality: vec![2],
            range: vec![3],
            referenced: vec![2, 3],
            ..TableUse::default()
        });
        assert_eq!(
            keys(&found),
            vec![
                (vec![2], vec![]),
                (vec![2], vec![3]),
                (vec![2, 3], vec![]),
                (vec![3], vec![]),
                (vec![3], vec![2])
            ]
        );
    }

    #[test]
    fn small_column_sets_get_covering_candidates() {
        let found = candidates(&TableUse {
            table: 9,
            equality: vec![1],
            referenced: vec![1, 4, 5],
            ..TableUse::default()
        });
        assert!(found.contains(&Candidate {
            table: 9,
            keys: vec![1],
            include: vec![4, 5],
            predicate: None
        }));
    }

    #[test]
    fn keys_are_capped_and_never_repeat_a_column() {
        let found = candidates(&TableUse {
            table: 1,
            equality: vec![1, 2, 3, 4, 5],
            range: vec![2, 6],
            order: vec![7, 8],
            ..TableUse::default()
        });
        for candidate in &found {
            assert!(candidate.keys.len() <= MAX_KEYS, "{candidate:?}");
            let distinct: BTreeSet<_> = candidate.keys.iter().collect();
            assert_eq!(distinct.len(), candidate.keys.len(), "{candidate:?}");
        }
        assert!(found.iter().any(|c| c.keys == vec![1, 2, 3, 6]));
    }

    #[test]
    fn a_table_only_read_whole_gets_nothing() {
        assert!(candidates(&TableUse {
            table: 1,
            referenced: vec![1, 2],
            ..TableUse::default()
        })
        .is_empty());
    }
}

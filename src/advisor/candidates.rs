//! Index candidates from what statements ask of a table (query.rs). Equality columns lead, as
//! a btree can only use a column after those before it are fixed; then one range, ORDER BY or
//! GROUP BY; small column sets also get a covering (INCLUDE) variant for index-only scans.

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
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Candidate {
    pub table: u32,
    pub keys: Vec<i16>,
    pub include: Vec<i16>,
}

/// At most this many key columns: wider btrees rarely pay for their size.
const MAX_KEYS: usize = 4;
/// Statements touching at most this many columns of a table get covering candidates.
const MAX_COVERED: usize = 5;

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
            });
        }
        result.insert(Candidate {
            table: table_use.table,
            keys,
            include: Vec::new(),
        });
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
            include: vec![]
        }));
        assert!(found.contains(&Candidate {
            table: 1,
            keys: vec![3],
            include: vec![]
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
            include: vec![4, 5]
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

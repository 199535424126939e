//! `recommend_indexes`: the workload from pg_stat_statements, planned in-process; candidates
//! from what its statements ask of each table; each costed with hypothetical indexes; one set
//! chosen for the whole workload (select.rs).

use super::candidates::{candidates, Candidate, Predicate, TableUse};
use super::hypo::{self, Hypothetical};
use super::plan::{self, Analysis, Command};
use super::select::{self, Limits, Proposal};
use super::size;
use super::workload::{self, Statement, Table};
use crate::ident::{quote_identifier, quote_qualified_identifier};
use pgrx::pg_sys;
use std::collections::{BTreeMap, BTreeSet};

/// The planner-cost units one index entry written costs the workload: about one leaf page
/// touched and WAL-logged (seq_page_cost), the descent being cached.
const ENTRY_WRITE_COST: f64 = 1.0;

/// One recommended index.
#[derive(Debug, Clone)]
pub struct Recommendation {
    pub table: pg_sys::Oid,
    pub definition: String,
    pub columns: Vec<String>,
    pub bytes: i64,
    pub benefit: f64,
    pub write_penalty: f64,
    pub queries: serde_json::Value,
}

/// A statement of the workload that could be planned.
struct Planned {
    statement: Statement,
    text: plan::Text,
    analysis: Analysis,
    /// Parameter values known from the statistics: LIMIT, from the rows each call returned.
    known: Vec<(i32, String)>,
    /// Parameters compared with a skewed column, bound to its rarest common value.
    rare: Vec<(i32, String)>,
    cost: f64,
}

impl Planned {
    /// The statement's cost with `indexes`: its plan with the parameter values the statistics
    /// reveal (a generic plan when none), and, when it compares a skewed column with a
    /// parameter, the higher of that and its plan for the rarest common value: the value a
    /// generic plan misjudges most.
    fn cost_with(&self, indexes: &[Hypothetical]) -> Option<f64> {
        let usual = plan::cost_with(&self.text, indexes, &self.known).ok()?;
        if self.rare.is_empty() {
            return Some(usual);
        }
        let bound: Vec<(i32, String)> = self.known.iter().chain(&self.rare).cloned().collect();
        let rare = plan::cost_with(&self.text, indexes, &bound).unwrap_or(usual);
        Some(usual.max(rare))
    }
}

/// Statements that could not be planned, with the reason.
pub fn skipped(statements: Vec<Statement>) -> Vec<(Statement, String)> {
    statements
        .into_iter()
        .filter_map(
            |s| match plan::Text::new(&s.query).and_then(|t| plan::analyze(&t)) {
                Ok(_) => None,
                Err(skip) => Some((s, skip.reason())),
            },
        )
        .collect()
}

pub fn recommend(statements: Vec<Statement>, limits: &Limits) -> Vec<Recommendation> {
    let analyzed: Vec<(Statement, plan::Text, Analysis, f64)> = statements
        .into_iter()
        .filter_map(|statement| {
            let text = plan::Text::new(&statement.query).ok()?;
            let (analysis, cost) = plan::analyze(&text).ok()?;
            Some((statement, text, analysis, cost))
        })
        .collect();

    // The tables worth indexing, each read once.
    let mut tables: BTreeMap<u32, Table> = BTreeMap::new();
    for (_, _, analysis, _) in &analyzed {
        for table_use in &analysis.uses {
            if !tables.contains_key(&table_use.table) {
                if let Some(table) = workload::table(table_use.table) {
                    tables.insert(table_use.table, table);
                }
            }
        }
    }
    let mut rare_values: BTreeMap<(u32, i16), Option<String>> = BTreeMap::new();
    let planned: Vec<Planned> = analyzed
        .into_iter()
        .map(|(statement, text, analysis, generic_cost)| {
            let mut analysis = analysis;
            let mut rare = Vec::new();
            for table_use in &mut analysis.uses {
                let Some(table) = tables.get(&table_use.table) else {
                    continue;
                };
                for (column, parameter) in &table_use.parameters {
                    let value = rare_values
                        .entry((table_use.table, *column))
                        .or_insert_with(|| {
                            workload::rare_common_value(table, &table.column_name(*column))
                        });
                    if let Some(value) = value {
                        rare.push((*parameter, value.clone()));
                        // Called with the rare value, the statement can use a partial index
                        // holding only that value's rows.
                        let predicate = Predicate::Equals(*column, value.clone());
                        if !table_use.fixed.contains(&predicate) {
                            table_use.fixed.push(predicate);
                        }
                    }
                }
            }
            // pg_stat_statements folds LIMIT 100 into LIMIT $n; a generic plan then assumes a
            // tenth of the rows, while rows per call tell what the callers ask for.
            let known = analysis
                .limit_parameter
                .filter(|_| statement.calls > 0)
                .map(|n| (n, (statement.rows / statement.calls).max(1).to_string()))
                .into_iter()
                .collect();
            let mut planned = Planned {
                statement,
                text,
                analysis,
                known,
                rare,
                cost: generic_cost,
            };
            if !planned.known.is_empty() || !planned.rare.is_empty() {
                planned.cost = planned.cost_with(&[]).unwrap_or(generic_cost);
            }
            planned
        })
        .collect();

    // Candidates, each with the statements it might serve.
    let mut served: BTreeMap<Candidate, BTreeSet<usize>> = BTreeMap::new();
    for p in &planned {
        for table_use in p
            .analysis
            .uses
            .iter()
            .filter(|u| tables.contains_key(&u.table))
        {
            for candidate in candidates(table_use) {
                served.entry(candidate).or_default();
            }
        }
    }
    served.retain(|candidate, _| {
        let table = &tables[&candidate.table];
        !already_indexed(candidate, table)
            && hypo::buildable(pg_sys::Oid::from(candidate.table), &candidate.keys)
    });
    for (candidate, statements) in served.iter_mut() {
        for (s, p) in planned.iter().enumerate() {
            if p.analysis.uses.iter().any(|u| leads_with(u, candidate)) {
                statements.insert(s);
            }
        }
    }
    let candidates: Vec<(Candidate, Vec<usize>)> = served
        .into_iter()
        .map(|(c, s)| (c, s.into_iter().collect()))
        .filter(|(_, s): &(Candidate, Vec<usize>)| !s.is_empty())
        .collect();
    // The share of a table's rows a partial candidate holds, from the column's statistics.
    let mut shares: BTreeMap<(u32, Option<Predicate>), f64> = BTreeMap::new();
    for (c, _) in &candidates {
        shares
            .entry((c.table, c.predicate.clone()))
            .or_insert_with(|| {
                c.predicate
                    .as_ref()
                    .map(|p| workload::predicate_share(&tables[&c.table], p))
                    .unwrap_or(1.0)
            });
    }
    let share_of = |c: &Candidate| shares[&(c.table, c.predicate.clone())];
    let oids = hypo::unused_oids(candidates.len());
    let hypotheticals: Vec<Hypothetical> = candidates
        .iter()
        .zip(&oids)
        .map(|((c, _), oid)| Hypothetical {
            oid: *oid,
            table: pg_sys::Oid::from(c.table),
            keys: c.keys.clone(),
            include: c.include.clone(),
            predicate: c.predicate.as_ref().map(|p| {
                let table = &tables[&c.table];
                format!(
                    "SELECT FROM ONLY {} WHERE {}",
                    quote_qualified_identifier(&table.schema, &table.name),
                    p.sql(&quote_identifier(&table.column_name(p.column())))
                )
            }),
            share: share_of(c),
        })
        .collect();

    // A statement no candidate helps even with all of them present is costed no further.
    let mut helpable = vec![false; planned.len()];
    for (s, p) in planned.iter().enumerate() {
        let present: Vec<Hypothetical> = candidates
            .iter()
            .zip(&hypotheticals)
            .filter(|((_, served), _)| served.contains(&s))
            .map(|(_, h)| h.clone())
            .collect();
        if present.is_empty() {
            continue;
        }
        if let Some(best) = p.cost_with(&present) {
            helpable[s] = best < p.cost * (1.0 - select::MIN_IMPROVEMENT);
        }
    }

    let writes = table_writes(&planned);
    let sizes: Vec<u64> = candidates
        .iter()
        .map(|(c, _)| estimated_size(c, &tables[&c.table], share_of(c)).bytes)
        .collect();
    let proposals: Vec<Proposal> = candidates
        .iter()
        .zip(&sizes)
        .map(|((c, served), bytes)| {
            let table = &tables[&c.table];
            Proposal {
                statements: served.iter().copied().filter(|s| helpable[*s]).collect(),
                bytes: *bytes,
                // A partial index is written only for the rows its predicate holds.
                penalty: writes
                    .get(&c.table)
                    .map(|w| w.entries_written(c, table.hot_share) * share_of(c) * ENTRY_WRITE_COST)
                    .unwrap_or(0.0),
            }
        })
        .collect();
    let calls: Vec<f64> = planned.iter().map(|p| p.statement.calls as f64).collect();
    let base: Vec<f64> = planned.iter().map(|p| p.cost).collect();
    let chosen = select::choose(&calls, &base, &proposals, limits, |s, present| {
        let indexes: Vec<Hypothetical> =
            present.iter().map(|o| hypotheticals[*o].clone()).collect();
        planned[s].cost_with(&indexes)
    });

    chosen
        .into_iter()
        .map(|choice| {
            let (candidate, _) = &candidates[choice.proposal];
            let table = &tables[&candidate.table];
            let queries = choice
                .helped
                .iter()
                .map(|h| {
                    let statement = &planned[h.statement].statement;
                    serde_json::json!({
                        "queryid": statement.queryid,
                        "calls": statement.calls,
                        "cost_before": round(h.before),
                        "cost_after": round(h.after),
                        "query": statement.query,
                    })
                })
                .collect();
            Recommendation {
                table: pg_sys::Oid::from(candidate.table),
                definition: definition(candidate, table),
                columns: candidate
                    .keys
                    .iter()
                    .map(|k| table.column_name(*k))
                    .collect(),
                bytes: sizes[choice.proposal] as i64,
                benefit: round(choice.benefit),
                write_penalty: round(proposals[choice.proposal].penalty),
                queries,
            }
        })
        .collect()
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Whether the statement's use of the candidate's table constrains, joins, orders or groups by
/// the candidate's first column: only then can the index's order serve it.
fn leads_with(table_use: &TableUse, candidate: &Candidate) -> bool {
    let first = candidate.keys[0];
    table_use.table == candidate.table
        // A partial index serves only statements that fix its predicate themselves.
        && candidate.predicate.as_ref().is_none_or(|p| table_use.fixed.contains(p))
        && (table_use.equality.contains(&first)
            || table_use.range.contains(&first)
            || table_use.join.contains(&first)
            || table_use.order.first() == Some(&first)
            || table_use.group.first() == Some(&first))
}

/// An existing index already leads with the candidate's keys, holds its INCLUDE columns, and
/// has the same predicate as pg_get_expr prints it (or none, like the candidate). A whole index
/// does not make a partial candidate redundant: the partial one skips the rows it leaves out.
/// Predicates printed differently (with casts) are left to the planner, which then finds the
/// candidate no better than the real index.
fn already_indexed(candidate: &Candidate, table: &Table) -> bool {
    let wanted = candidate
        .predicate
        .as_ref()
        .map(|p| p.sql(&quote_identifier(&table.column_name(p.column()))));
    table.indexes.iter().any(|index| {
        index.keys.starts_with(&candidate.keys)
            && candidate
                .include
                .iter()
                .all(|c| index.keys.contains(c) || index.include.contains(c))
            && index.predicate == wanted
    })
}

fn estimated_size(candidate: &Candidate, table: &Table, share: f64) -> size::Size {
    let width = candidate
        .keys
        .iter()
        .chain(&candidate.include)
        .map(|c| hypo::column_width(pg_sys::Oid::from(candidate.table), *c))
        .sum();
    size::estimate(table.tuples * share, width)
}

/// `CREATE INDEX CONCURRENTLY`, named after the table and columns as PostgreSQL would name it.
fn definition(candidate: &Candidate, table: &Table) -> String {
    let names = |columns: &[i16]| -> Vec<String> {
        columns.iter().map(|c| table.column_name(*c)).collect()
    };
    let keys = names(&candidate.keys);
    let include = names(&candidate.include);
    let quoted = |names: &[String]| {
        names
            .iter()
            .map(|n| quote_identifier(n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut name_parts = vec![table.name.clone()];
    name_parts.extend(keys.iter().cloned());
    if !include.is_empty() {
        name_parts.push("incl".into());
    }
    let predicate = candidate.predicate.as_ref().map(|p| {
        let column = table.column_name(p.column());
        name_parts.push(format!("where_{}", p.name_part(&column)));
        p.sql(&quote_identifier(&column))
    });
    let name = index_name(&name_parts.join("_"));
    let mut sql = format!(
        "CREATE INDEX CONCURRENTLY {} ON {} USING btree ({})",
        quote_identifier(&name),
        quote_qualified_identifier(&table.schema, &table.name),
        quoted(&keys)
    );
    if !include.is_empty() {
        sql.push_str(&format!(" INCLUDE ({})", quoted(&include)));
    }
    if let Some(predicate) = predicate {
        sql.push_str(&format!(" WHERE {predicate}"));
    }
    sql
}

/// `base` + "_idx", cut to PostgreSQL's 63 bytes with a stable hash of the whole when too long,
/// so the same recommendation always gets the same name.
fn index_name(base: &str) -> String {
    let full = format!("{base}_idx");
    if full.len() <= 63 {
        return full;
    }
    let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut cut = 63 - 13; // "_" + 8 hex digits + "_idx"
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{:08x}_idx", &base[..cut], hash as u32)
}

/// Rows a table's DML statements wrote, to price an index's upkeep.
#[derive(Debug, Default)]
struct TableWrites {
    /// Rows inserted or deleted: each writes (or later vacuums) one entry in every index.
    inserted_or_deleted: f64,
    /// Rows updated, with the columns each UPDATE statement sets.
    updates: Vec<(f64, Vec<i16>)>,
}

impl TableWrites {
    /// Index entries an index on `candidate`'s columns would have had written: every insert
    /// and delete, updates setting one of its columns, and of the others those that were not
    /// HOT (HOT updates write no index entry).
    fn entries_written(&self, candidate: &Candidate, hot_share: f64) -> f64 {
        self.inserted_or_deleted
            + self
                .updates
                .iter()
                .map(|(rows, set)| {
                    let touches = set
                        .iter()
                        .any(|c| candidate.keys.contains(c) || candidate.include.contains(c));
                    if touches {
                        *rows
                    } else {
                        rows * (1.0 - hot_share)
                    }
                })
                .sum::<f64>()
    }
}

fn table_writes(planned: &[Planned]) -> BTreeMap<u32, TableWrites> {
    let mut writes: BTreeMap<u32, TableWrites> = BTreeMap::new();
    for p in planned {
        let Some(write) = &p.analysis.write else {
            continue;
        };
        let entry = writes.entry(write.table).or_default();
        let rows = p.statement.rows as f64;
        match write.command {
            Command::Insert | Command::Delete => entry.inserted_or_deleted += rows,
            Command::Update => entry.updates.push((rows, write.updated.clone())),
        }
    }
    writes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_index_names_are_cut_to_63_bytes_with_a_stable_hash() {
        assert_eq!(
            index_name("ml_jobs_status_created_at"),
            "ml_jobs_status_created_at_idx"
        );
        let long = "a_table_with_a_rather_long_name_status_created_at_user_id_incl";
        let name = index_name(long);
        assert_eq!(name.len(), 63);
        assert_eq!(name, index_name(long));
        assert_ne!(name, index_name(&long.replace("status", "statut")));
    }

    #[test]
    fn updates_that_stay_hot_cost_an_index_nothing() {
        let writes = TableWrites {
            inserted_or_deleted: 10.0,
            updates: vec![(100.0, vec![5]), (1000.0, vec![2])],
        };
        let on_status = Candidate {
            table: 1,
            keys: vec![2, 3],
            include: vec![],
            predicate: None,
        };
        let on_other = Candidate {
            table: 1,
            keys: vec![3],
            include: vec![],
            predicate: None,
        };
        // All updates HOT: only the updates setting status (column 2) write into (2, 3).
        assert_eq!(writes.entries_written(&on_status, 1.0), 1010.0);
        assert_eq!(writes.entries_written(&on_other, 1.0), 10.0);
        // No update HOT: every updated row writes an entry into every index.
        assert_eq!(writes.entries_written(&on_other, 0.0), 1110.0);
    }
}

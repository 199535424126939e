//! Choosing one set of indexes for the whole workload: greedy on benefit (calls × planner cost
//! saved) less the write penalty, re-costing after each choice the proposals that share a
//! statement with it, so one made useless by an index already chosen is dropped.

/// A candidate index to choose from.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// The statements (indexes into the workload) it might speed up.
    pub statements: Vec<usize>,
    pub bytes: u64,
    /// The cost its upkeep adds to the workload's writes, in the same units as benefit.
    pub penalty: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Helped {
    pub statement: usize,
    pub before: f64,
    pub after: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub proposal: usize,
    pub benefit: f64,
    pub helped: Vec<Helped>,
}

pub struct Limits {
    pub max_indexes: usize,
    pub max_total_bytes: Option<u64>,
}

/// A statement counts as helped only when its cost falls by at least a fifth: smaller
/// differences are within the planner's noise and not worth an index.
pub const MIN_IMPROVEMENT: f64 = 0.20;

/// `calls[s]` and `base_cost[s]` describe statement s; `cost_with(s, proposals)` plans s with those
/// proposals' indexes present (None when it cannot be planned).
pub fn choose(
    calls: &[f64],
    base_cost: &[f64],
    proposals: &[Proposal],
    limits: &Limits,
    mut cost_with: impl FnMut(usize, &[usize]) -> Option<f64>,
) -> Vec<Choice> {
    let mut current = base_cost.to_vec();
    let mut chosen: Vec<Choice> = Vec::new();
    let mut spent = 0u64;
    // Each proposal's gain against the current choice; None once it must be re-costed.
    let mut gains: Vec<Option<(f64, Vec<Helped>)>> = vec![None; proposals.len()];
    let mut open: Vec<usize> = (0..proposals.len()).collect();
    while chosen.len() < limits.max_indexes {
        let taken: Vec<usize> = chosen.iter().map(|c| c.proposal).collect();
        let mut best: Option<(usize, f64)> = None;
        for &o in &open {
            let proposal = &proposals[o];
            if limits
                .max_total_bytes
                .is_some_and(|budget| spent + proposal.bytes > budget)
            {
                continue;
            }
            if gains[o].is_none() {
                let with: Vec<usize> = taken.iter().copied().chain([o]).collect();
                let helped: Vec<Helped> = proposal
                    .statements
                    .iter()
                    .filter_map(|&s| {
                        let after = cost_with(s, &with)?;
                        (after < current[s] * (1.0 - MIN_IMPROVEMENT)).then_some(Helped {
                            statement: s,
                            before: current[s],
                            after,
                        })
                    })
                    .collect();
                let benefit = helped
                    .iter()
                    .map(|h| calls[h.statement] * (h.before - h.after))
                    .sum();
                gains[o] = Some((benefit, helped));
            }
            let (benefit, _) = gains[o].as_ref().expect("costed above");
            let score = benefit - proposal.penalty;
            let better = match best {
                None => true,
                Some((b, best_score)) => {
                    score > best_score
                        || (score == best_score && proposal.bytes < proposals[b].bytes)
                }
            };
            if score > 0.0 && better {
                best = Some((o, score));
            }
        }
        let Some((winner, _)) = best else { break };
        let (benefit, helped) = gains[winner].take().expect("costed above");
        for h in &helped {
            current[h.statement] = h.after;
        }
        spent += proposals[winner].bytes;
        open.retain(|&o| o != winner);
        // Options sharing a statement with the winner must be re-costed against it.
        for &o in &open {
            if proposals[o]
                .statements
                .iter()
                .any(|s| proposals[winner].statements.contains(s))
            {
                gains[o] = None;
            }
        }
        chosen.push(Choice {
            proposal: winner,
            benefit,
            helped,
        });
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(statements: &[usize], bytes: u64, penalty: f64) -> Proposal {
        Proposal {
            statements: statements.to_vec(),
            bytes,
            penalty,
        }
    }

    /// Costs of a toy workload: statement s costs `base[s]`, or the lowest `helps[o][s]` among
    /// the proposals present.
    fn costs(
        base: Vec<f64>,
        helps: Vec<Vec<(usize, f64)>>,
    ) -> impl FnMut(usize, &[usize]) -> Option<f64> {
        move |s, present| {
            Some(
                present
                    .iter()
                    .flat_map(|o| helps[*o].iter().filter(|(t, _)| *t == s).map(|(_, c)| *c))
                    .fold(base[s], f64::min),
            )
        }
    }

    const NO_LIMIT: Limits = Limits {
        max_indexes: 10,
        max_total_bytes: None,
    };

    #[test]
    fn the_proposal_saving_most_calls_times_cost_comes_first() {
        let proposals = [proposal(&[0], 100, 0.0), proposal(&[1], 100, 0.0)];
        let chosen = choose(
            &[10.0, 1000.0],
            &[100.0, 50.0],
            &proposals,
            &NO_LIMIT,
            costs(vec![100.0, 50.0], vec![vec![(0, 1.0)], vec![(1, 1.0)]]),
        );
        assert_eq!(
            chosen.iter().map(|c| c.proposal).collect::<Vec<_>>(),
            [1, 0]
        );
        assert_eq!(chosen[0].benefit, 1000.0 * 49.0);
        assert_eq!(
            chosen[0].helped,
            [Helped {
                statement: 1,
                before: 50.0,
                after: 1.0
            }]
        );
    }

    #[test]
    fn a_proposal_made_useless_by_a_chosen_one_is_dropped() {
        // Options 0 and 1 serve the same statement; once 0 is in, 1 saves nothing more.
        let proposals = [proposal(&[0], 100, 0.0), proposal(&[0], 100, 0.0)];
        let chosen = choose(
            &[10.0],
            &[100.0],
            &proposals,
            &NO_LIMIT,
            costs(vec![100.0], vec![vec![(0, 1.0)], vec![(0, 2.0)]]),
        );
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].proposal, 0);
    }

    #[test]
    fn the_index_count_and_byte_budget_are_kept() {
        let proposals = [
            proposal(&[0], 500, 0.0),
            proposal(&[1], 100, 0.0),
            proposal(&[2], 100, 0.0),
        ];
        let cost = || {
            costs(
                vec![100.0, 100.0, 100.0],
                vec![vec![(0, 1.0)], vec![(1, 10.0)], vec![(2, 20.0)]],
            )
        };
        let budget = Limits {
            max_indexes: 10,
            max_total_bytes: Some(250),
        };
        let within = choose(&[1.0; 3], &[100.0; 3], &proposals, &budget, cost());
        assert_eq!(
            within.iter().map(|c| c.proposal).collect::<Vec<_>>(),
            [1, 2]
        );
        let one = Limits {
            max_indexes: 1,
            max_total_bytes: None,
        };
        let first = choose(&[1.0; 3], &[100.0; 3], &proposals, &one, cost());
        assert_eq!(first.iter().map(|c| c.proposal).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn a_write_penalty_larger_than_the_benefit_keeps_an_index_out() {
        let proposals = [proposal(&[0], 100, 5000.0)];
        let chosen = choose(
            &[10.0],
            &[100.0],
            &proposals,
            &NO_LIMIT,
            costs(vec![100.0], vec![vec![(0, 1.0)]]),
        );
        assert!(chosen.is_empty());
    }

    #[test]
    fn savings_within_the_planners_noise_are_not_benefits() {
        let proposals = [proposal(&[0], 100, 0.0)];
        let chosen = choose(
            &[1_000_000.0],
            &[100.0],
            &proposals,
            &NO_LIMIT,
            costs(vec![100.0], vec![vec![(0, 95.0)]]),
        );
        assert!(chosen.is_empty());
    }
}

//! Time arithmetic of a rolling window. Times are PostgreSQL `timestamptz` values, microseconds
//! since 2000-01-01 00:00 UTC; buckets are aligned to that instant, so a bucket is the same
//! stretch of time whatever the session's TimeZone or a DST change.
//!
//! The aggregate table holds the window `[start, end]` set by its last refresh (`start` is that
//! refresh's time less `window_size`, `end` the time plus `lookahead`, so rows written until then
//! count at once). Refreshing to a later time subtracts what left the window and adds what came
//! due. Each of those is a time range answered from two places: whole
//! buckets from the per-bucket partial sums dbopt keeps, and the pieces at either end of the
//! range, which cover only part of a bucket, from the source table itself.

pub const MICROS_PER_SECOND: i64 = 1_000_000;

/// Bucket widths dbopt picks from when the caller gives none.
const BUCKET_CHOICES: [i64; 9] = [
    1,
    10,
    60,
    5 * 60,
    15 * 60,
    3600,
    6 * 3600,
    24 * 3600,
    7 * 24 * 3600,
];

/// The default bucket: the widest of [`BUCKET_CHOICES`] that fits 24 times into the window
/// (1 day for 30 days, 1 hour for 1 day). More buckets mean more rows of partial sums; wider ones
/// mean more source rows read at the window's edges on each refresh.
pub fn default_bucket_micros(window_micros: i64) -> i64 {
    let target = window_micros / 24;
    BUCKET_CHOICES
        .iter()
        .map(|seconds| seconds * MICROS_PER_SECOND)
        .filter(|width| *width <= target)
        .max()
        .unwrap_or(MICROS_PER_SECOND)
}

/// Start of the bucket holding `t`.
pub fn bucket_start(t: i64, width: i64) -> i64 {
    t - t.rem_euclid(width)
}

/// Where the rows of a half-open time range `[from, to)` are read from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeParts {
    /// Whole buckets: those starting in `[first, end)`.
    pub buckets: Option<(i64, i64)>,
    /// Pieces covering part of a bucket, read from the source: `[from, to)` each.
    pub from_source: Vec<(i64, i64)>,
}

pub fn split_range(from: i64, to: i64, width: i64) -> RangeParts {
    if from >= to {
        return RangeParts::default();
    }
    let first_whole = if bucket_start(from, width) == from {
        from
    } else {
        bucket_start(from, width) + width
    };
    let end_whole = bucket_start(to, width);
    if first_whole >= end_whole {
        return RangeParts {
            buckets: None,
            from_source: vec![(from, to)],
        };
    }
    let from_source = [(from, first_whole), (end_whole, to)]
        .into_iter()
        .filter(|(a, b)| a < b)
        .collect();
    RangeParts {
        buckets: Some((first_whole, end_whole)),
        from_source,
    }
}

/// Like [`split_range`], when the buckets hold only the rows before `sealed` (dbopt's last
/// refresh; rows written since are added at the next): whole buckets ending by then, the source
/// for the rest.
pub fn split_sealed(from: i64, to: i64, width: i64, sealed: i64) -> RangeParts {
    let complete_before = bucket_start(sealed, width);
    if from >= to || to <= complete_before {
        return split_range(from, to, width);
    }
    if from >= complete_before {
        return RangeParts {
            buckets: None,
            from_source: vec![(from, to)],
        };
    }
    let mut parts = split_range(from, complete_before, width);
    match parts.from_source.last_mut() {
        Some(last) if last.1 == complete_before => last.1 = to,
        _ => parts.from_source.push((complete_before, to)),
    }
    parts
}

/// The window an aggregate table holds: rows with `start <= time <= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    /// The window as a half-open range (times are whole microseconds).
    pub fn range(&self) -> (i64, i64) {
        (self.start, self.end + 1)
    }
}

/// What a refresh from `old` to `new` must do to the aggregate table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// The new window ends no later than the old one: nothing to do.
    Nothing,
    /// Subtract the rows that left, add those that came due (at either end of the window).
    Delta {
        left: Vec<RangeParts>,
        came_due: Vec<RangeParts>,
    },
    /// The windows do not overlap: recompute the table from the new window's rows.
    Recompute(RangeParts),
}

pub fn plan_refresh(old: Window, new: Window, width: i64, sealed: i64) -> Refresh {
    if new.end <= old.end {
        return Refresh::Nothing;
    }
    plan_move(old, new, width, sealed)
}

/// What turns the table's window `old` into `new`, each end moving either way: a refresh moves
/// both forward, but the exact answer as of now() moves the start forward and the end back to
/// now() (or both back when asked before the last refresh). The buckets hold the rows before
/// `sealed`.
pub fn plan_move(old: Window, new: Window, width: i64, sealed: i64) -> Refresh {
    let split = |from: i64, to: i64| split_sealed(from, to, width, sealed);
    if new == old {
        return Refresh::Nothing;
    }
    if new.start > old.end || new.end < old.start {
        let (from, to) = new.range();
        return Refresh::Recompute(split(from, to));
    }
    let (mut left, mut came_due) = (Vec::new(), Vec::new());
    if new.start > old.start {
        left.push(split(old.start, new.start));
    } else if new.start < old.start {
        // From the source alone: buckets before the one holding the old start are not kept.
        came_due.push(RangeParts {
            buckets: None,
            from_source: vec![(new.start, old.start)],
        });
    }
    if new.end > old.end {
        came_due.push(split(old.end + 1, new.end + 1));
    } else if new.end < old.end {
        left.push(split(new.end + 1, old.end + 1));
    }
    Refresh::Delta { left, came_due }
}

/// Buckets starting before this hold only rows that can never be in the window again.
pub fn first_bucket_kept(window: Window, width: i64) -> i64 {
    bucket_start(window.start, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600 * MICROS_PER_SECOND;
    const DAY: i64 = 24 * HOUR;
    /// A last refresh far ahead: every bucket complete.
    const ALL_SEALED: i64 = i64::MAX / 2;

    #[test]
    fn default_buckets_fit_24_times_into_the_window() {
        assert_eq!(default_bucket_micros(30 * DAY), DAY);
        assert_eq!(default_bucket_micros(7 * DAY), 6 * HOUR);
        assert_eq!(default_bucket_micros(DAY), HOUR);
        assert_eq!(default_bucket_micros(365 * DAY), 7 * DAY);
        assert_eq!(
            default_bucket_micros(10 * MICROS_PER_SECOND),
            MICROS_PER_SECOND
        );
    }

    #[test]
    fn buckets_start_at_multiples_of_the_width_also_before_2000() {
        assert_eq!(bucket_start(DAY + 5, DAY), DAY);
        assert_eq!(bucket_start(DAY, DAY), DAY);
        assert_eq!(bucket_start(-5, DAY), -DAY);
        assert_eq!(bucket_start(-DAY, DAY), -DAY);
    }

    #[test]
    fn a_range_splits_into_whole_buckets_and_edge_pieces() {
        let parts = split_range(DAY + HOUR, 4 * DAY + 2 * HOUR, DAY);
        assert_eq!(parts.buckets, Some((2 * DAY, 4 * DAY)));
        assert_eq!(
            parts.from_source,
            vec![(DAY + HOUR, 2 * DAY), (4 * DAY, 4 * DAY + 2 * HOUR)]
        );
    }

    #[test]
    fn aligned_ends_need_no_source_piece() {
        let parts = split_range(DAY, 3 * DAY, DAY);
        assert_eq!(parts.buckets, Some((DAY, 3 * DAY)));
        assert!(parts.from_source.is_empty());
    }

    #[test]
    fn a_range_inside_one_or_two_buckets_is_read_from_the_source() {
        for (from, to) in [(DAY + 1, DAY + 5), (DAY + HOUR, 2 * DAY + HOUR)] {
            let parts = split_range(from, to, DAY);
            assert_eq!(parts.buckets, None);
            assert_eq!(parts.from_source, vec![(from, to)]);
        }
        assert_eq!(split_range(DAY, DAY, DAY), RangeParts::default());
    }

    /// Every microsecond of a range is covered exactly once, whatever its alignment.
    #[test]
    fn splits_cover_each_instant_exactly_once() {
        let width = 7;
        for from in -20..20 {
            for to in from..from + 40 {
                let parts = split_range(from, to, width);
                for t in from - 10..to + 10 {
                    let in_buckets = parts
                        .buckets
                        .is_some_and(|(a, b)| (a..b).contains(&bucket_start(t, width)))
                        as usize;
                    let in_source = parts
                        .from_source
                        .iter()
                        .filter(|(a, b)| (*a..*b).contains(&t))
                        .count();
                    let expected = usize::from((from..to).contains(&t));
                    assert_eq!(in_buckets + in_source, expected, "t={t} in [{from},{to})");
                }
            }
        }
    }

    #[test]
    fn a_refresh_subtracts_what_left_and_adds_what_came_due() {
        let old = Window {
            start: 0,
            end: 30 * DAY,
        };
        let new = Window {
            start: DAY + HOUR,
            end: 31 * DAY + HOUR,
        };
        let Refresh::Delta { left, came_due } = plan_refresh(old, new, DAY, new.end) else {
            panic!("overlapping windows refresh by delta")
        };
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].buckets, Some((0, DAY)));
        assert_eq!(left[0].from_source, vec![(DAY, DAY + HOUR)]);
        // (30 days, 31 days 1 hour] holds no whole bucket: all of it comes from the source.
        assert_eq!(came_due.len(), 1);
        assert_eq!(came_due[0].buckets, None);
        assert_eq!(
            came_due[0].from_source,
            vec![(30 * DAY + 1, 31 * DAY + HOUR + 1)]
        );
    }

    #[test]
    fn refreshing_to_the_same_or_an_earlier_time_does_nothing() {
        let w = Window { start: 0, end: DAY };
        assert_eq!(plan_refresh(w, w, HOUR, ALL_SEALED), Refresh::Nothing);
        let earlier = Window {
            start: -1,
            end: DAY - 1,
        };
        assert_eq!(plan_refresh(w, earlier, HOUR, ALL_SEALED), Refresh::Nothing);
    }

    #[test]
    fn a_refresh_after_more_than_a_window_recomputes() {
        let old = Window { start: 0, end: DAY };
        let new = Window {
            start: 2 * DAY,
            end: 3 * DAY,
        };
        assert_eq!(
            plan_refresh(old, new, HOUR, ALL_SEALED),
            Refresh::Recompute(split_range(2 * DAY, 3 * DAY + 1, HOUR))
        );
    }

    #[test]
    fn moving_back_swaps_what_leaves_and_what_comes_due() {
        let old = Window {
            start: DAY,
            end: 31 * DAY,
        };
        let new = Window {
            start: DAY - HOUR,
            end: 31 * DAY - HOUR,
        };
        assert_eq!(
            plan_move(old, new, DAY, ALL_SEALED),
            Refresh::Delta {
                left: vec![split_range(31 * DAY - HOUR + 1, 31 * DAY + 1, DAY)],
                came_due: vec![RangeParts {
                    buckets: None,
                    from_source: vec![(DAY - HOUR, DAY)],
                }],
            }
        );
        assert_eq!(plan_move(old, old, DAY, ALL_SEALED), Refresh::Nothing);
    }

    /// The exact answer between refreshes: the start has moved on since the refresh (at 30
    /// days), the end is now(), before the day of lookahead the table counts up to. Rows written
    /// since the refresh are in no bucket yet: the source has them.
    #[test]
    fn an_exact_answer_narrows_the_window_from_both_ends() {
        let held = Window {
            start: 0,
            end: 31 * DAY,
        };
        let now = Window {
            start: 2 * HOUR,
            end: 30 * DAY + 2 * HOUR,
        };
        assert_eq!(
            plan_move(held, now, DAY, 30 * DAY),
            Refresh::Delta {
                left: vec![
                    split_range(0, 2 * HOUR, DAY),
                    RangeParts {
                        buckets: None,
                        from_source: vec![(30 * DAY + 2 * HOUR + 1, 31 * DAY + 1)],
                    },
                ],
                came_due: Vec::new(),
            }
        );
    }

    #[test]
    fn buckets_are_used_only_where_complete() {
        // Sealed mid-bucket: the bucket holding the last refresh comes from the source.
        assert_eq!(
            split_sealed(DAY + HOUR, 5 * DAY, DAY, 3 * DAY + HOUR),
            RangeParts {
                buckets: Some((2 * DAY, 3 * DAY)),
                from_source: vec![(DAY + HOUR, 2 * DAY), (3 * DAY, 5 * DAY)],
            }
        );
        assert_eq!(
            split_sealed(4 * DAY, 5 * DAY, DAY, 3 * DAY),
            RangeParts {
                buckets: None,
                from_source: vec![(4 * DAY, 5 * DAY)],
            }
        );
        assert_eq!(
            split_sealed(DAY, 2 * DAY, DAY, 3 * DAY),
            split_range(DAY, 2 * DAY, DAY)
        );
    }

    /// Moving a window by any amount either way leaves each instant counted once or not at all,
    /// as the new window says, reading only complete buckets.
    #[test]
    fn every_move_counts_each_instant_as_the_new_window_says() {
        let width = 5;
        let counted = |w: Window, t: i64| i64::from(w.start <= t && t <= w.end);
        let range_count = |parts: &RangeParts, t: i64| -> i64 {
            let in_buckets = parts
                .buckets
                .is_some_and(|(a, b)| (a..b).contains(&bucket_start(t, width)));
            let in_source = parts
                .from_source
                .iter()
                .filter(|(a, b)| (*a..*b).contains(&t))
                .count();
            i64::from(in_buckets) + in_source as i64
        };
        let complete =
            |parts: &RangeParts, sealed: i64| parts.buckets.is_none_or(|(_, b)| b <= sealed);
        let old = Window { start: 10, end: 40 };
        for (start, end, sealed) in (0..50)
            .flat_map(|s| (s..60).map(move |e| (s, e)))
            .flat_map(|(s, e)| [3, 27, 41, 90].map(|sealed| (s, e, sealed)))
        {
            let new = Window { start, end };
            let plan = plan_move(old, new, width, sealed);
            match &plan {
                Refresh::Nothing => {}
                Refresh::Recompute(parts) => assert!(complete(parts, sealed)),
                Refresh::Delta { left, came_due } => {
                    assert!(left.iter().chain(came_due).all(|p| complete(p, sealed)))
                }
            }
            for t in -5..70 {
                let after = match &plan {
                    Refresh::Nothing => counted(old, t),
                    Refresh::Recompute(parts) => range_count(parts, t),
                    Refresh::Delta { left, came_due } => {
                        counted(old, t) - left.iter().map(|p| range_count(p, t)).sum::<i64>()
                            + came_due.iter().map(|p| range_count(p, t)).sum::<i64>()
                    }
                };
                assert_eq!(after, counted(new, t), "t={t} moving {old:?} to {new:?}");
            }
        }
    }

    #[test]
    fn buckets_before_the_one_holding_the_window_start_are_dropped() {
        let w = Window {
            start: DAY + HOUR,
            end: 31 * DAY,
        };
        assert_eq!(first_bucket_kept(w, DAY), DAY);
    }
}

//! What a partition set needs, decided from its configuration, the clock and the bounds of the
//! partitions it already has; no data is read here.

use super::boundaries::{self, BoundValue, Range, Zone};
use super::step::{ControlType, Step};
use chrono::NaiveDateTime;

/// An existing partition's bounds as ordering keys ([`BoundValue::key`]); MINVALUE is
/// `i64::MIN` and MAXVALUE `i64::MAX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub name: String,
    pub lower: i64,
    pub upper: i64,
}

/// Where the partitions of a set should start and end, in the control's own terms: wall-clock
/// time in the partition time zone for time controls, values for integer controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Time(NaiveDateTime),
    Int(i64),
}

/// The ranges from the one holding `from` through the one holding `through`.
pub fn ranges(
    control: ControlType,
    step: Step,
    from: Position,
    through: Position,
    zone: &dyn Zone,
) -> Vec<Range> {
    match (step, from, through) {
        (Step::Width(width), Position::Int(from), Position::Int(through)) => {
            let max = if control == ControlType::Integer {
                i64::from(i32::MAX)
            } else {
                i64::MAX
            };
            boundaries::int_ranges(width, from, through, max)
        }
        (_, Position::Time(from), Position::Time(through)) => {
            boundaries::time_ranges(control, step, from, through, zone)
        }
        _ => Vec::new(),
    }
}

/// `position` moved `count` intervals on; None past the type's range.
pub fn ahead(position: Position, step: Step, count: u32) -> Option<Position> {
    match (position, step) {
        (Position::Int(v), Step::Width(width)) => width
            .checked_mul(i64::from(count))
            .and_then(|d| v.checked_add(d))
            .map(Position::Int),
        (Position::Time(t), _) => boundaries::advance(t, step, count).map(Position::Time),
        _ => None,
    }
}

/// The earliest position from which [`ahead`] by `count` intervals reaches `boundary` (an
/// aligned bound): when a runway of `count` intervals first needs the range starting there.
pub fn behind(boundary: Position, step: Step, count: u32) -> Option<Position> {
    match (boundary, step) {
        (Position::Int(v), Step::Width(width)) => width
            .checked_mul(i64::from(count))
            .and_then(|d| v.checked_sub(d))
            .map(Position::Int),
        (Position::Time(t), _) => boundaries::retreat(t, step, count).map(Position::Time),
        _ => None,
    }
}

pub fn overlaps(range: &Range, child: &Child) -> bool {
    range.lower.key() < child.upper && child.lower < range.upper.key()
}

/// The ranges no existing partition covers. A range that partly overlaps a partition someone
/// made by hand is left out too: PostgreSQL would refuse it.
pub fn uncovered(candidates: Vec<Range>, children: &[Child]) -> Vec<Range> {
    candidates
        .into_iter()
        .filter(|range| !children.iter().any(|child| overlaps(range, child)))
        .collect()
}

/// Partitions that hold nothing newer than `cutoff`: their upper bound is at or before it.
pub fn expired(children: &[Child], cutoff: i64) -> Vec<&Child> {
    let mut old: Vec<&Child> = children
        .iter()
        .filter(|child| child.upper != i64::MAX && child.upper <= cutoff)
        .collect();
    old.sort_by_key(|child| child.lower);
    old
}

/// Holes between consecutive partitions (rows for them go to the default partition).
pub fn gaps(children: &[Child]) -> usize {
    let mut sorted: Vec<&Child> = children.iter().collect();
    sorted.sort_by_key(|child| child.lower);
    sorted
        .windows(2)
        .filter(|pair| pair[0].upper < pair[1].lower)
        .count()
}

/// Where the unbroken run of partitions holding `key` ends: inserts up to there land in a
/// partition, after it in the default. None when no partition holds `key`.
pub fn covered_until(children: &[Child], key: i64) -> Option<i64> {
    let mut end = children
        .iter()
        .find(|c| c.lower <= key && key < c.upper)?
        .upper;
    while let Some(next) = children.iter().find(|c| c.lower == end) {
        end = next.upper;
    }
    Some(end)
}

/// The range that holds `value`, for moving a row out of the default partition.
pub fn range_holding(
    control: ControlType,
    step: Step,
    value: Position,
    zone: &dyn Zone,
) -> Option<Range> {
    ranges(control, step, value, value, zone).into_iter().next()
}

/// Whether `range` starts later than `limit`.
pub fn starts_after(range: &Range, limit: &BoundValue) -> bool {
    range.lower.key() > limit.key()
}

#[cfg(test)]
mod pure_tests {
    use super::*;
    use chrono::{DateTime, NaiveDate, Utc};

    struct Utc0;
    impl Zone for Utc0 {
        fn instant(&self, local: NaiveDateTime) -> DateTime<Utc> {
            local.and_utc()
        }
    }

    fn at(y: i32, m: u32, d: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
    }

    fn child_of(range: &Range) -> Child {
        Child {
            name: range.suffix.clone(),
            lower: range.lower.key(),
            upper: range.upper.key(),
        }
    }

    #[test]
    fn behind_mirrors_ahead_for_integer_widths() {
        assert_eq!(
            behind(Position::Int(1000), Step::Width(100), 4),
            Some(Position::Int(600))
        );
        assert_eq!(
            ahead(Position::Int(600), Step::Width(100), 4),
            Some(Position::Int(1000))
        );
        assert_eq!(
            behind(Position::Int(i64::MIN + 5), Step::Width(10), 1),
            None
        );
    }

    #[test]
    fn runway_is_premake_intervals_past_now() {
        let now = Position::Time(at(2026, 11, 21));
        let through = ahead(now, Step::Months(1), 4).unwrap();
        let made = ranges(ControlType::Date, Step::Months(1), now, through, &Utc0);
        let names: Vec<_> = made.iter().map(|r| r.suffix.as_str()).collect();
        assert_eq!(
            names,
            ["p202611", "p202612", "p202701", "p202702", "p202703"]
        );
    }

    #[test]
    fn existing_and_overlapping_partitions_are_not_made_again() {
        let now = Position::Time(at(2026, 11, 21));
        let through = ahead(now, Step::Days(1), 3).unwrap();
        let wanted = ranges(ControlType::TimestampTz, Step::Days(1), now, through, &Utc0);
        let mut children = vec![child_of(&wanted[0])];
        // A hand-made partition from noon on the 23rd to noon on the 24th.
        children.push(Child {
            name: "by_hand".into(),
            lower: wanted[2].lower.key() + 43_200_000_000,
            upper: wanted[3].lower.key() + 43_200_000_000,
        });
        let left: Vec<_> = uncovered(wanted, &children)
            .into_iter()
            .map(|r| r.suffix)
            .collect();
        assert_eq!(left, ["p20261122"]);
    }

    #[test]
    fn integer_runway_stops_at_maxvalue() {
        let from = Position::Int(i64::from(i32::MAX) - 150);
        let through = ahead(from, Step::Width(100), 4).unwrap();
        let made = ranges(ControlType::Integer, Step::Width(100), from, through, &Utc0);
        assert_eq!(made.len(), 3);
        assert_eq!(made[2].upper, BoundValue::MaxValue);
        assert_eq!(ahead(Position::Int(i64::MAX - 5), Step::Width(10), 1), None);
    }

    #[test]
    fn retention_takes_partitions_wholly_before_the_cutoff() {
        let all = ranges(
            ControlType::Date,
            Step::Months(1),
            Position::Time(at(2026, 1, 1)),
            Position::Time(at(2026, 5, 1)),
            &Utc0,
        );
        let children: Vec<Child> = all.iter().map(child_of).collect();
        let cutoff = BoundValue::Date(NaiveDate::from_ymd_opt(2026, 3, 15).unwrap()).key();
        let old: Vec<_> = expired(&children, cutoff)
            .iter()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(old, ["p202601", "p202602"]);
    }

    #[test]
    fn gaps_are_counted_between_neighbours() {
        let all = ranges(
            ControlType::BigInt,
            Step::Width(10),
            Position::Int(0),
            Position::Int(40),
            &Utc0,
        );
        let mut children: Vec<Child> = all.iter().map(child_of).collect();
        assert_eq!(gaps(&children), 0);
        assert_eq!(covered_until(&children, 15), Some(50));
        children.remove(2);
        assert_eq!(covered_until(&children, 15), Some(20));
        children.remove(0);
        assert_eq!(gaps(&children), 1);
        assert_eq!(covered_until(&children, 5), None);
    }

    #[test]
    fn a_row_value_maps_to_its_aligned_range() {
        let row = Position::Time(at(2026, 2, 28) + chrono::TimeDelta::hours(23));
        let range = range_holding(ControlType::Timestamp, Step::Weeks(1), row, &Utc0).unwrap();
        assert_eq!(range.suffix, "p20260223");
        let far = BoundValue::Wall(at(2026, 2, 1));
        assert!(starts_after(&range, &far));
    }
}

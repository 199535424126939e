//! Partition boundaries, computed from the clock and the interval alone (never from data).
//!
//! Time boundaries are wall-clock times in the partition time zone (`dbopt.partition_timezone`),
//! aligned to the interval: midnight for days, Monday for weeks, the 1st for months, January for
//! years. For `timestamptz` columns each wall-clock boundary is then turned into an instant by a
//! [`Zone`], so a DST change makes a day 23 or 25 hours long instead of shifting or overlapping
//! partitions, and the session's own TimeZone plays no part.

use super::naming;
use super::step::{ControlType, Step};
use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, TimeDelta, Timelike, Utc};

/// Turns wall-clock time in the partition time zone into instants.
pub trait Zone {
    /// A wall-clock time skipped by a DST change maps to an instant at or after the gap, a
    /// repeated one to either occurrence: boundaries rely only on the mapping never going back.
    fn instant(&self, local: NaiveDateTime) -> DateTime<Utc>;
}

/// A bound as written in `FOR VALUES FROM (...) TO (...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundValue {
    Instant(DateTime<Utc>),
    Wall(NaiveDateTime),
    Date(NaiveDate),
    Int(i64),
    MaxValue,
}

impl BoundValue {
    /// The SQL literal, with an explicit UTC offset for instants so that the session's TimeZone
    /// cannot change its meaning.
    pub fn literal(&self) -> String {
        match self {
            BoundValue::Int(_) | BoundValue::MaxValue => self.text(),
            _ => format!("'{}'", self.text()),
        }
    }

    /// The value as text, to pass as a query parameter cast to the column's type.
    pub fn text(&self) -> String {
        match self {
            BoundValue::Instant(t) => t.format("%Y-%m-%d %H:%M:%S+00").to_string(),
            BoundValue::Wall(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
            BoundValue::Date(d) => d.format("%Y-%m-%d").to_string(),
            BoundValue::Int(v) => v.to_string(),
            BoundValue::MaxValue => "MAXVALUE".into(),
        }
    }

    /// A number ordering bounds of one column the way PostgreSQL does: microseconds since
    /// 1970 for time columns (`extract(epoch ...)` of the value), the value for integers.
    pub fn key(&self) -> i64 {
        match self {
            BoundValue::Instant(t) => t.timestamp_micros(),
            BoundValue::Wall(t) => t.and_utc().timestamp_micros(),
            BoundValue::Date(d) => d
                .and_hms_opt(0, 0, 0)
                .map_or(i64::MIN, |t| t.and_utc().timestamp_micros()),
            BoundValue::Int(v) => *v,
            BoundValue::MaxValue => i64::MAX,
        }
    }
}

/// One partition to be: its name suffix (`p202611`, `p20261121`, `p100000`) and bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub suffix: String,
    pub lower: BoundValue,
    pub upper: BoundValue,
}

/// The boundary at or before `t`. None only past chrono's calendar (year ±262,000).
pub fn align(t: NaiveDateTime, step: Step) -> Option<NaiveDateTime> {
    let midnight = t.date().and_hms_opt(0, 0, 0)?;
    let day_offset = |minutes_per_step: u32| {
        let minute_of_day = t.hour() * 60 + t.minute();
        let floored = minute_of_day - minute_of_day % minutes_per_step;
        midnight.checked_add_signed(TimeDelta::minutes(i64::from(floored)))
    };
    match step {
        Step::Minutes(n) => day_offset(n),
        Step::Hours(n) => day_offset(n * 60),
        Step::Days(n) => {
            let days = days_since_epoch(t.date());
            let aligned = days - days.rem_euclid(i64::from(n));
            epoch().checked_add_signed(TimeDelta::days(aligned))
        }
        Step::Weeks(n) => {
            // 1970-01-05 was a Monday.
            let days = days_since_epoch(t.date()) - 4;
            let period = 7 * i64::from(n);
            let aligned = days - days.rem_euclid(period) + 4;
            epoch().checked_add_signed(TimeDelta::days(aligned))
        }
        Step::Months(n) => {
            let index = i64::from(t.year()) * 12 + i64::from(t.month0());
            let aligned = index - index.rem_euclid(i64::from(n));
            let year = i32::try_from(aligned.div_euclid(12)).ok()?;
            NaiveDate::from_ymd_opt(year, aligned.rem_euclid(12) as u32 + 1, 1)?
                .and_hms_opt(0, 0, 0)
        }
        Step::Width(_) => None,
    }
}

/// The boundary after an aligned boundary `t`.
pub fn next(t: NaiveDateTime, step: Step) -> Option<NaiveDateTime> {
    match step {
        Step::Minutes(n) => t.checked_add_signed(TimeDelta::minutes(i64::from(n))),
        Step::Hours(n) => t.checked_add_signed(TimeDelta::hours(i64::from(n))),
        Step::Days(n) => t.checked_add_signed(TimeDelta::days(i64::from(n))),
        Step::Weeks(n) => t.checked_add_signed(TimeDelta::weeks(i64::from(n))),
        Step::Months(n) => t.checked_add_months(Months::new(n)),
        Step::Width(_) => None,
    }
}

/// `t` advanced by `count` steps; for "now + premake intervals".
pub fn advance(t: NaiveDateTime, step: Step, count: u32) -> Option<NaiveDateTime> {
    (0..count).try_fold(t, |acc, _| next(acc, step))
}

/// The earliest time that [`advance`] by `count` steps takes to `t` or past it, for an aligned
/// boundary `t`: when a runway of `count` intervals first reaches `t`.
pub fn retreat(t: NaiveDateTime, step: Step, count: u32) -> Option<NaiveDateTime> {
    let steps = |n: u32| n.checked_mul(count).map(i64::from);
    match step {
        Step::Minutes(n) => t.checked_sub_signed(TimeDelta::minutes(steps(n)?)),
        Step::Hours(n) => t.checked_sub_signed(TimeDelta::hours(steps(n)?)),
        Step::Days(n) => t.checked_sub_signed(TimeDelta::days(steps(n)?)),
        Step::Weeks(n) => t.checked_sub_signed(TimeDelta::weeks(steps(n)?)),
        Step::Months(n) => t.checked_sub_months(Months::new(n.checked_mul(count)?)),
        Step::Width(_) => None,
    }
}

fn epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(1970, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
}

fn days_since_epoch(d: NaiveDate) -> i64 {
    i64::from(d.num_days_from_ce()) - i64::from(epoch().date().num_days_from_ce())
}

/// Ranges of a time control, from the one containing wall-clock `from` up to and including the
/// one containing `through`. Ranges a DST gap leaves empty are skipped.
pub fn time_ranges(
    control: ControlType,
    step: Step,
    from: NaiveDateTime,
    through: NaiveDateTime,
    zone: &dyn Zone,
) -> Vec<Range> {
    let bound = |t: NaiveDateTime| match control {
        ControlType::TimestampTz => BoundValue::Instant(zone.instant(t)),
        ControlType::Date => BoundValue::Date(t.date()),
        _ => BoundValue::Wall(t),
    };
    let mut ranges = Vec::new();
    let mut lower = match align(from, step) {
        Some(t) => t,
        None => return ranges,
    };
    while lower <= through {
        let Some(upper) = next(lower, step) else {
            break;
        };
        let (lo, up) = (bound(lower), bound(upper));
        if lo != up {
            ranges.push(Range {
                suffix: naming::time_suffix(step, lower),
                lower: lo,
                upper: up,
            });
        }
        lower = upper;
    }
    ranges
}

/// The lower bound of the integer partition holding `v`.
pub fn align_int(v: i64, width: i64) -> i64 {
    v - v.rem_euclid(width)
}

/// Ranges of an integer control from the one holding `from` through the one holding `through`;
/// the last upper bound is MAXVALUE where the next bound would pass the column type's `max`.
pub fn int_ranges(width: i64, from: i64, through: i64, max: i64) -> Vec<Range> {
    let mut ranges = Vec::new();
    let mut lower = align_int(from, width);
    while lower <= through {
        let upper = lower.checked_add(width).filter(|u| *u <= max);
        ranges.push(Range {
            suffix: naming::int_suffix(lower),
            lower: BoundValue::Int(lower),
            upper: upper.map_or(BoundValue::MaxValue, BoundValue::Int),
        });
        match upper {
            Some(u) => lower = u,
            None => break,
        }
    }
    ranges
}

#[cfg(test)]
mod pure_tests {
    use super::*;
    use chrono::{LocalResult, TimeZone};

    struct Tz(chrono_tz::Tz);

    impl Zone for Tz {
        fn instant(&self, local: NaiveDateTime) -> DateTime<Utc> {
            let mut probe = local;
            loop {
                match self.0.from_local_datetime(&probe) {
                    LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                        return t.with_timezone(&Utc)
                    }
                    LocalResult::None => probe += TimeDelta::minutes(1),
                }
            }
        }
    }

    fn ranges(
        control: ControlType,
        step: Step,
        from: &str,
        through: &str,
        zone: chrono_tz::Tz,
    ) -> Vec<Range> {
        time_ranges(control, step, at(from), at(through), &Tz(zone))
    }

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn utc(s: &str) -> BoundValue {
        BoundValue::Instant(at(s).and_utc())
    }

    const ALL_STEPS: [Step; 11] = [
        Step::Minutes(15),
        Step::Minutes(90),
        Step::Hours(1),
        Step::Hours(6),
        Step::Days(1),
        Step::Days(7),
        Step::Weeks(1),
        Step::Weeks(2),
        Step::Months(1),
        Step::Months(3),
        Step::Months(12),
    ];

    #[test]
    fn retreat_is_the_first_moment_a_runway_reaches_a_boundary() {
        let boundary = |y, m, d| {
            NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
        };
        let cases = [
            (boundary(2026, 3, 1), Step::Months(1), 4),
            (boundary(2027, 1, 1), Step::Months(3), 2),
            (boundary(2025, 3, 1), Step::Months(12), 1),
            (boundary(2024, 3, 1), Step::Days(1), 7),
            (boundary(2026, 11, 23), Step::Weeks(1), 3),
            (boundary(2026, 11, 21), Step::Hours(6), 5),
            (boundary(2026, 11, 21), Step::Minutes(15), 4),
        ];
        for (upper, step, count) in cases {
            let due = retreat(upper, step, count).unwrap();
            assert!(
                advance(due, step, count).unwrap() >= upper,
                "{step:?} x{count} from {due}"
            );
            let just_before = due - TimeDelta::microseconds(1);
            assert!(
                advance(just_before, step, count).unwrap() < upper,
                "{step:?} x{count}"
            );
        }
        assert_eq!(retreat(boundary(2026, 1, 1), Step::Width(10), 1), None);
    }

    #[test]
    fn every_unit_aligns_to_its_calendar_start() {
        let t = at("2026-11-21 13:47");
        let cases = [
            (Step::Minutes(15), "2026-11-21 13:45"),
            (Step::Minutes(90), "2026-11-21 13:30"),
            (Step::Hours(1), "2026-11-21 13:00"),
            (Step::Hours(6), "2026-11-21 12:00"),
            (Step::Days(1), "2026-11-21 00:00"),
            (Step::Weeks(1), "2026-11-16 00:00"),
            (Step::Months(1), "2026-11-01 00:00"),
            (Step::Months(3), "2026-10-01 00:00"),
            (Step::Months(12), "2026-01-01 00:00"),
            (Step::Months(24), "2026-01-01 00:00"),
        ];
        for (step, expected) in cases {
            assert_eq!(align(t, step), Some(at(expected)), "{step:?}");
        }
        assert_eq!(
            align(at("1969-12-31 23:59"), Step::Days(7))
                .unwrap()
                .weekday(),
            chrono::Weekday::Thu
        );
        assert_eq!(
            align(at("1969-12-31 23:59"), Step::Weeks(1)),
            Some(at("1969-12-29 00:00"))
        );
    }

    #[test]
    fn aligned_boundaries_stay_aligned_and_cover_every_instant() {
        let mut t = at("2023-12-25 07:13");
        while t < at("2029-03-01 00:00") {
            for step in ALL_STEPS {
                let lower = align(t, step).unwrap();
                let upper = next(lower, step).unwrap();
                assert!(lower <= t && t < upper, "{step:?} {t}");
                assert_eq!(align(lower, step), Some(lower), "{step:?} {t}");
                assert_eq!(align(upper, step), Some(upper), "{step:?} {t}");
            }
            t += TimeDelta::minutes(3 * 60 * 24 + 37);
        }
    }

    #[test]
    fn month_ends_and_leap_days() {
        assert_eq!(
            align(at("2026-01-31 23:59"), Step::Months(1)),
            Some(at("2026-01-01 00:00"))
        );
        let months: Vec<_> = ranges(
            ControlType::Date,
            Step::Months(1),
            "2028-01-31 12:00",
            "2028-03-31 00:00",
            chrono_tz::UTC,
        )
        .into_iter()
        .map(|r| (r.suffix, r.lower.literal(), r.upper.literal()))
        .collect();
        assert_eq!(
            months,
            vec![
                (
                    "p202801".into(),
                    "'2028-01-01'".into(),
                    "'2028-02-01'".into()
                ),
                (
                    "p202802".into(),
                    "'2028-02-01'".into(),
                    "'2028-03-01'".into()
                ),
                (
                    "p202803".into(),
                    "'2028-03-01'".into(),
                    "'2028-04-01'".into()
                ),
            ]
        );
        let days = ranges(
            ControlType::Date,
            Step::Days(1),
            "2028-02-28 00:00",
            "2028-03-01 00:00",
            chrono_tz::UTC,
        );
        let suffixes: Vec<_> = days.iter().map(|r| r.suffix.as_str()).collect();
        assert_eq!(suffixes, ["p20280228", "p20280229", "p20280301"]);
        assert_eq!(
            align(at("2028-02-29 10:00"), Step::Months(12)),
            Some(at("2028-01-01 00:00"))
        );
        assert_eq!(
            next(at("2028-02-29 00:00"), Step::Days(1)),
            Some(at("2028-03-01 00:00"))
        );
    }

    #[test]
    fn a_dst_day_is_23_or_25_hours_and_never_shifts_midnight() {
        let berlin = chrono_tz::Europe::Berlin;
        let days = ranges(
            ControlType::TimestampTz,
            Step::Days(1),
            "2026-03-28 12:00",
            "2026-03-30 12:00",
            berlin,
        );
        let bounds: Vec<_> = days
            .iter()
            .map(|r| (r.lower.clone(), r.upper.clone()))
            .collect();
        assert_eq!(
            bounds,
            vec![
                (utc("2026-03-27 23:00"), utc("2026-03-28 23:00")),
                (utc("2026-03-28 23:00"), utc("2026-03-29 22:00")), // 23 hours
                (utc("2026-03-29 22:00"), utc("2026-03-30 22:00")),
            ]
        );
        let autumn = ranges(
            ControlType::TimestampTz,
            Step::Days(1),
            "2026-10-25 12:00",
            "2026-10-25 12:00",
            berlin,
        );
        assert_eq!(
            (autumn[0].lower.clone(), autumn[0].upper.clone()),
            (utc("2026-10-24 22:00"), utc("2026-10-25 23:00"))
        );
    }

    #[test]
    fn hourly_partitions_across_dst_have_no_gap_no_overlap_and_unique_names() {
        let berlin = chrono_tz::Europe::Berlin;
        for (from, through) in [
            ("2026-03-29 00:00", "2026-03-29 05:00"),
            ("2026-10-25 00:00", "2026-10-25 05:00"),
        ] {
            let hours = ranges(
                ControlType::TimestampTz,
                Step::Hours(1),
                from,
                through,
                berlin,
            );
            for pair in hours.windows(2) {
                assert_eq!(pair[0].upper, pair[1].lower, "contiguous");
                assert_ne!(pair[0].suffix, pair[1].suffix);
            }
            assert!(hours.iter().all(|r| r.lower != r.upper));
        }
        // Spring forward: 02:00 local does not exist, so its partition is skipped.
        let spring = ranges(
            ControlType::TimestampTz,
            Step::Hours(1),
            "2026-03-29 01:00",
            "2026-03-29 03:00",
            berlin,
        );
        let names: Vec<_> = spring.iter().map(|r| r.suffix.as_str()).collect();
        assert_eq!(names, ["p20260329_0100", "p20260329_0300"]);
        // Santiago moves its clocks at midnight: the day still starts at the first instant it has.
        let santiago = chrono_tz::America::Santiago;
        let days = ranges(
            ControlType::TimestampTz,
            Step::Days(1),
            "2024-09-06 12:00",
            "2024-09-09 12:00",
            santiago,
        );
        assert_eq!(days.len(), 4);
        for pair in days.windows(2) {
            assert_eq!(pair[0].upper, pair[1].lower);
        }
    }

    #[test]
    fn timestamp_without_time_zone_uses_wall_clock_bounds() {
        let wall = ranges(
            ControlType::Timestamp,
            Step::Months(1),
            "2026-11-21 13:00",
            "2026-12-01 00:00",
            chrono_tz::Europe::Berlin,
        );
        assert_eq!(wall[0].lower.literal(), "'2026-11-01 00:00:00'");
        assert_eq!(wall[1].upper.literal(), "'2027-01-01 00:00:00'");
        assert_eq!(wall.len(), 2);
    }

    #[test]
    fn premake_counts_intervals_ahead() {
        let now = at("2026-11-21 13:47");
        let through = advance(now, Step::Months(1), 4).unwrap();
        let ranges = time_ranges(
            ControlType::TimestampTz,
            Step::Months(1),
            now,
            through,
            &Tz(chrono_tz::UTC),
        );
        let names: Vec<_> = ranges.iter().map(|r| r.suffix.as_str()).collect();
        assert_eq!(
            names,
            ["p202611", "p202612", "p202701", "p202702", "p202703"]
        );
        assert_eq!(ranges[0].lower.literal(), "'2026-11-01 00:00:00+00'");
    }

    #[test]
    fn integer_widths_align_below_zero_and_stop_at_the_type_maximum() {
        assert_eq!(align_int(150, 100), 100);
        assert_eq!(align_int(-1, 100), -100);
        assert_eq!(align_int(-100, 100), -100);
        let ranges = int_ranges(100_000, 0, 250_000, i64::from(i32::MAX));
        let bounds: Vec<_> = ranges
            .iter()
            .map(|r| (r.suffix.as_str(), r.lower.literal(), r.upper.literal()))
            .collect();
        assert_eq!(
            bounds,
            vec![
                ("p0", "0".to_string(), "100000".to_string()),
                ("p100000", "100000".into(), "200000".into()),
                ("p200000", "200000".into(), "300000".into()),
            ]
        );
        let top = int_ranges(
            1_000_000_000,
            2_000_000_000,
            2_100_000_000,
            i64::from(i32::MAX),
        );
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].upper, BoundValue::MaxValue);
        let bigtop = int_ranges(10, i64::MAX - 5, i64::MAX, i64::MAX);
        assert_eq!(bigtop.last().unwrap().upper, BoundValue::MaxValue);
    }
}

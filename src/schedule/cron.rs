//! Cron schedules as pg_cron 1.6 reads them, so `dbopt.schedule()` can validate a schedule the
//! same way whether pg_cron runs it or dbopt's own worker does, and the worker can tell when a job
//! is due.
//!
//! The rule is: whatever this module accepts, pg_cron accepts with the same meaning. Where pg_cron
//! is lax, this module is stricter, because a schedule that only one of the two runners accepts
//! would make `dbopt.schedule()` behave differently depending on whether pg_cron is installed. So
//! it rejects what pg_cron silently ignores (text after the fifth field or after a macro, junk
//! after a value such as `5;`), ranges that run backwards (pg_cron fills them with garbage), steps
//! larger than the field's maximum (rejected since pg_cron 1.6.5), and `a/n` (pg_cron rejects it).
//!
//! Times are wall-clock minutes in one fixed zone: pg_cron evaluates schedules in
//! `cron.timezone`, GMT by default, so the worker should pass UTC.

use std::fmt;

/// A schedule that [`parse`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CronSchedule {
    /// pg_cron's `N seconds` form (1 ≤ N ≤ 59): run every N seconds, not tied to the clock.
    EverySeconds(u32),
    /// The five-field form; macros such as `@daily` are expanded into it.
    Fields(CronFields),
}

/// The allowed values of each field as bit sets: bit `n` set means value `n` matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronFields {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    /// pg_cron's `$` day of month: the last day of each month.
    last_day_of_month: bool,
    months: u64,
    /// Bit 0 is Sunday; a 7 in the text (also Sunday) is folded into bit 0.
    days_of_week: u64,
    /// Vixie cron's rule: when neither day field starts with `*`, a day matches if either field
    /// matches it; otherwise both must (the `*` side usually matches every day).
    day_fields_either: bool,
}

/// Why a schedule was rejected, in words meant for the user who wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    message: String,
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CronError {}

fn error(message: String) -> CronError {
    CronError { message }
}

/// A minute on the calendar, with no time zone: the caller decides which zone it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NaiveMinute {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
}

const SECONDS_PER_MINUTE: i64 = 60;
const MINUTES_PER_DAY: i64 = 24 * 60;

impl NaiveMinute {
    /// `None` unless every part names a real minute (including Feb 29 only in leap years).
    pub fn new(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> Option<NaiveMinute> {
        let valid = (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day)
            && hour < 24
            && minute < 60;
        valid.then_some(NaiveMinute {
            year,
            month,
            day,
            hour,
            minute,
        })
    }

    /// The UTC minute containing `seconds` after the Unix epoch (seconds are dropped, rounding
    /// towards the past). `None` only when the year does not fit an `i32`.
    pub fn from_unix_seconds(seconds: i64) -> Option<NaiveMinute> {
        let minutes = seconds.div_euclid(SECONDS_PER_MINUTE);
        let (year, month, day) = civil_from_days(minutes.div_euclid(MINUTES_PER_DAY));
        let minute_of_day = minutes.rem_euclid(MINUTES_PER_DAY);
        Some(NaiveMinute {
            year: i32::try_from(year).ok()?,
            month,
            day,
            hour: (minute_of_day / 60) as u32,
            minute: (minute_of_day % 60) as u32,
        })
    }

    /// Seconds since the Unix epoch, reading this minute as UTC.
    pub fn to_unix_seconds(self) -> i64 {
        let minute_of_day = i64::from(self.hour) * 60 + i64::from(self.minute);
        (days_from_civil(self.year, self.month, self.day) * MINUTES_PER_DAY + minute_of_day)
            * SECONDS_PER_MINUTE
    }

    /// 0 = Sunday … 6 = Saturday.
    pub fn weekday(self) -> u32 {
        weekday(self.year, self.month, self.day)
    }

    fn next_minute(self) -> Option<NaiveMinute> {
        NaiveMinute::from_unix_seconds(self.to_unix_seconds() + SECONDS_PER_MINUTE)
    }
}

fn is_leap_year(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's algorithm).
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    // Counting years from March puts the leap day last, so month lengths follow a fixed pattern.
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (i64::from(month) + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`], with the year widened so that no `i64` input overflows.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = (month_from_march + 2) % 12 + 1;
    let year = era * 400 + year_of_era + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

fn weekday(year: i32, month: u32, day: u32) -> u32 {
    // 1970-01-01 was a Thursday.
    (days_from_civil(year, month, day) + 4).rem_euclid(7) as u32
}

fn contains(set: u64, value: u32) -> bool {
    value < u64::BITS && set & (1 << value) != 0
}

/// The smallest value in `set` that is at least `from`.
fn first_from(set: u64, from: u32) -> Option<u32> {
    let candidates = set & u64::MAX.checked_shl(from)?;
    (candidates != 0).then(|| candidates.trailing_zeros())
}

fn set_of(values: impl IntoIterator<Item = u32>) -> u64 {
    values.into_iter().fold(0, |set, value| set | 1 << value)
}

/// How far [`CronSchedule::next_after`] looks. The Gregorian calendar repeats every 400 years
/// (146097 days is a whole number of weeks), so a schedule with no match in that span never
/// matches; a shorter span would miss rare but real matches such as Feb 29 after 2096 (2104) or
/// a Feb 29 that must also be a Sunday.
const SEARCH_HORIZON_YEARS: u32 = 400;

impl CronSchedule {
    /// The interval of the `N seconds` form, which [`CronSchedule::matches`] and
    /// [`CronSchedule::next_after`] can only approximate: they treat it as due every minute.
    pub fn interval_seconds(&self) -> Option<u32> {
        match self {
            CronSchedule::EverySeconds(seconds) => Some(*seconds),
            CronSchedule::Fields(_) => None,
        }
    }

    /// Whether the schedule is due in minute `t`. The `N seconds` form is due in every minute.
    pub fn matches(&self, t: NaiveMinute) -> bool {
        match self {
            CronSchedule::EverySeconds(_) => true,
            CronSchedule::Fields(fields) => fields.matches(t),
        }
    }

    /// The first minute strictly after `after` in which the schedule is due (for the `N seconds`
    /// form, simply the next minute), or `None` if it is never due within 400 years, as with
    /// `0 0 30 2 *`.
    pub fn next_after(&self, after: NaiveMinute) -> Option<NaiveMinute> {
        match self {
            CronSchedule::EverySeconds(_) => after.next_minute(),
            CronSchedule::Fields(fields) => fields.next_after(after),
        }
    }
}

impl CronFields {
    fn matches(&self, t: NaiveMinute) -> bool {
        contains(self.minutes, t.minute)
            && contains(self.hours, t.hour)
            && contains(self.months, t.month)
            && contains(self.matching_days(t.year, t.month), t.day)
    }

    /// The days of this month on which the schedule is due, as a bit set.
    fn matching_days(&self, year: i32, month: u32) -> u64 {
        let last_day = days_in_month(year, month);
        let mut by_day_of_month = self.days_of_month;
        if self.last_day_of_month {
            by_day_of_month |= 1 << last_day;
        }
        let first_weekday = weekday(year, month, 1);
        let by_day_of_week = set_of(
            (1..=last_day).filter(|day| contains(self.days_of_week, (first_weekday + day - 1) % 7)),
        );
        let days = if self.day_fields_either {
            by_day_of_month | by_day_of_week
        } else {
            by_day_of_month & by_day_of_week
        };
        days & set_of(1..=last_day)
    }

    /// Jumps month by month, then day by day within a month, then straight to the first
    /// allowed hour and minute, so each month costs a few bit operations instead of 44640
    /// minute checks.
    fn next_after(&self, after: NaiveMinute) -> Option<NaiveMinute> {
        // Every minute at or after `earliest` is a candidate; it only starts mid-month in the
        // first month searched.
        let mut earliest = after.next_minute()?;
        for _ in 0..=SEARCH_HORIZON_YEARS * 12 {
            if contains(self.months, earliest.month) {
                let days = self.matching_days(earliest.year, earliest.month);
                while let Some(day) = first_from(days, earliest.day) {
                    if day > earliest.day {
                        earliest = NaiveMinute {
                            day,
                            hour: 0,
                            minute: 0,
                            ..earliest
                        };
                    }
                    if let Some((hour, minute)) =
                        self.first_time_from(earliest.hour, earliest.minute)
                    {
                        return Some(NaiveMinute {
                            hour,
                            minute,
                            ..earliest
                        });
                    }
                    earliest = NaiveMinute {
                        day: day + 1,
                        hour: 0,
                        minute: 0,
                        ..earliest
                    };
                }
            }
            let (year, month) = match earliest.month {
                12.. => (earliest.year.checked_add(1)?, 1),
                month => (earliest.year, month + 1),
            };
            earliest = NaiveMinute {
                year,
                month,
                day: 1,
                hour: 0,
                minute: 0,
            };
        }
        None
    }

    /// The first allowed hour and minute at or after `hour:minute` on the same day.
    fn first_time_from(&self, hour: u32, minute: u32) -> Option<(u32, u32)> {
        if contains(self.hours, hour) {
            if let Some(minute) = first_from(self.minutes, minute) {
                return Some((hour, minute));
            }
        }
        let later_hour = first_from(self.hours, hour + 1)?;
        Some((later_hour, self.minutes.trailing_zeros()))
    }
}

/// One of the five fields: its name for messages, its bounds, and the names it accepts for
/// values (matched case-insensitively; the first name stands for `min`).
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl Field {
    /// A comma-separated list of items, as a bit set of the values it allows.
    fn parse(&self, text: &str) -> Result<u64, CronError> {
        text.split(',')
            .try_fold(0, |set, item| Ok(set | self.parse_item(item)?))
            .map_err(|problem: String| {
                error(format!("{} field \"{}\": {}", self.name, text, problem))
            })
    }

    /// `*`, `a`, `a-b`, `*/n` or `a-b/n`.
    fn parse_item(&self, item: &str) -> Result<u64, String> {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(self.parse_step(step)?)),
            None => (item, None),
        };
        let (first, last) = if range == "*" {
            (self.min, self.max)
        } else if let Some((first, last)) = range.split_once('-') {
            let (first, last) = (self.parse_value(first)?, self.parse_value(last)?);
            if first > last {
                return Err(format!("range \"{range}\" starts after it ends"));
            }
            (first, last)
        } else if let Some(step) = step {
            return Err(format!(
                "\"{item}\" is not accepted by pg_cron, write \"{range}-{}/{step}\"",
                self.max
            ));
        } else {
            let value = self.parse_value(range)?;
            (value, value)
        };
        Ok(set_of((first..=last).step_by(step.unwrap_or(1) as usize)))
    }

    fn parse_value(&self, text: &str) -> Result<u32, String> {
        if let Some(index) = self
            .names
            .iter()
            .position(|name| name.eq_ignore_ascii_case(text))
        {
            return Ok(self.min + index as u32);
        }
        if text.is_empty() {
            return Err("missing value".to_string());
        }
        if !text.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(match (self.names.first(), self.names.last()) {
                (Some(first), Some(last)) => {
                    format!("\"{text}\" is neither a number nor a name {first}-{last}")
                }
                _ => format!("\"{text}\" is not a number"),
            });
        }
        match text.parse::<u32>() {
            Ok(value) if (self.min..=self.max).contains(&value) => Ok(value),
            _ => Err(format!(
                "{text} is out of range, values must be between {} and {}",
                self.min, self.max
            )),
        }
    }

    fn parse_step(&self, text: &str) -> Result<u32, String> {
        let all_digits = !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
        match text.parse::<u32>() {
            Ok(step) if all_digits && (1..=self.max).contains(&step) => Ok(step),
            _ => Err(format!(
                "step \"{text}\" must be a number between 1 and {}",
                self.max
            )),
        }
    }
}

/// pg_cron's documented meanings of its macros. pg_cron 1.6's own expansion of `@yearly` sets
/// month 0, which does not exist, so there it never fires; this follows the documentation.
const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// pg_cron refuses cron and macro schedules of 1000 bytes or more.
const MAX_SCHEDULE_BYTES: usize = 999;

const FIELD_SEPARATORS: [char; 2] = [' ', '\t'];

/// Parses a schedule as pg_cron 1.6 would: five fields, a macro such as `@daily`, or
/// `N seconds`.
pub fn parse(expr: &str) -> Result<CronSchedule, CronError> {
    let text = expr.trim_matches([' ', '\t', '\n']);
    if let Some(seconds) = parse_seconds_interval(text) {
        return seconds.map(CronSchedule::EverySeconds);
    }
    if expr.len() > MAX_SCHEDULE_BYTES {
        return Err(error(format!(
            "schedule is {} bytes long, pg_cron accepts at most {MAX_SCHEDULE_BYTES}",
            expr.len()
        )));
    }
    let fields = if text.starts_with('@') {
        let (_, expansion) = MACROS
            .iter()
            .find(|(name, _)| *name == text)
            .ok_or_else(|| {
                let names: Vec<&str> = MACROS.iter().map(|(name, _)| *name).collect();
                // pg_cron compares macro names case-sensitively, hence no case folding here.
                error(format!(
                    "unknown macro \"{text}\", expected one of {}",
                    names.join(", ")
                ))
            })?;
        parse_fields(expansion)?
    } else {
        parse_fields(text)?
    };
    Ok(CronSchedule::Fields(fields))
}

/// The schedule as it should be handed to pg_cron: a macro spelled out as its five fields (pg_cron
/// 1.6's `@yearly` and `@annually` set month 0, which does not exist, so they never fire there),
/// anything else trimmed.
pub fn for_pg_cron(expr: &str) -> &str {
    let text = expr.trim_matches([' ', '\t', '\n']);
    MACROS
        .iter()
        .find(|(name, _)| *name == text)
        .map_or(text, |(_, expansion)| expansion)
}

/// Whether pg_cron at extension version `version` (`1.4-1`, `1.6`) runs `N seconds` schedules,
/// which came with 1.5; older versions refuse them.
pub fn pg_cron_runs_seconds(version: &str) -> bool {
    let mut parts = version
        .split(['.', '-'])
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 5)
}

/// `None` if `text` is not in the `N seconds` form at all, so that it is parsed as cron fields.
fn parse_seconds_interval(text: &str) -> Option<Result<u32, CronError>> {
    let lowercase = text.to_ascii_lowercase();
    let number = lowercase
        .strip_suffix("seconds")
        .or_else(|| lowercase.strip_suffix("second"))?
        .trim_end_matches(FIELD_SEPARATORS);
    let all_digits = !number.is_empty() && number.bytes().all(|byte| byte.is_ascii_digit());
    Some(match number.parse::<u32>() {
        Ok(seconds) if all_digits && (1..=59).contains(&seconds) => Ok(seconds),
        _ => Err(error(format!(
            "interval \"{text}\": expected \"N seconds\" with N between 1 and 59"
        ))),
    })
}

fn parse_fields(text: &str) -> Result<CronFields, CronError> {
    let fields: Vec<&str> = text
        .split(FIELD_SEPARATORS)
        .filter(|field| !field.is_empty())
        .collect();
    let [minute, hour, day_of_month, month, day_of_week] = fields[..] else {
        return Err(error(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), got {}",
            fields.len()
        )));
    };
    let last_day_of_month = day_of_month == "$";
    let days_of_week = DAY_OF_WEEK.parse(day_of_week)?;
    Ok(CronFields {
        minutes: MINUTE.parse(minute)?,
        hours: HOUR.parse(hour)?,
        days_of_month: if last_day_of_month {
            0
        } else {
            DAY_OF_MONTH.parse(day_of_month)?
        },
        last_day_of_month,
        months: MONTH.parse(month)?,
        days_of_week: (days_of_week | days_of_week >> 7) & set_of(0..7),
        day_fields_either: !day_of_month.starts_with('*') && !day_of_week.starts_with('*'),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> NaiveMinute {
        NaiveMinute::new(year, month, day, hour, minute).expect("test dates are real")
    }

    fn fields(expr: &str) -> CronFields {
        match parse(expr) {
            Ok(CronSchedule::Fields(fields)) => fields,
            other => panic!("{expr:?} parsed as {other:?}"),
        }
    }

    fn error_of(expr: &str) -> String {
        match parse(expr) {
            Err(error) => error.to_string(),
            Ok(schedule) => panic!("{expr:?} was accepted as {schedule:?}"),
        }
    }

    /// Each (schedule, after, the first minute due strictly after it).
    fn expect_next(cases: &[(&str, NaiveMinute, Option<NaiveMinute>)]) {
        for (expr, after, expected) in cases {
            let next = parse(expr).expect("valid schedule").next_after(*after);
            assert_eq!(next, *expected, "{expr} after {after:?}");
        }
    }

    #[test]
    fn cron_star_allows_the_whole_range() {
        let every = fields("* * * * *");
        assert_eq!(every.minutes, set_of(0..=59));
        assert_eq!(every.hours, set_of(0..=23));
        assert_eq!(every.days_of_month, set_of(1..=31));
        assert_eq!(every.months, set_of(1..=12));
        assert_eq!(every.days_of_week, set_of(0..=6));
        assert!(!every.last_day_of_month);
    }

    #[test]
    fn cron_numbers_ranges_lists_and_steps() {
        assert_eq!(fields("5 * * * *").minutes, set_of([5]));
        assert_eq!(fields("05 * * * *").minutes, set_of([5]));
        assert_eq!(fields("* 9-17 * * *").hours, set_of(9..=17));
        assert_eq!(
            fields("1,15,20-22 * * * *").minutes,
            set_of([1, 15, 20, 21, 22])
        );
        assert_eq!(fields("*/15 * * * *").minutes, set_of([0, 15, 30, 45]));
        assert_eq!(fields("* */5 * * *").hours, set_of([0, 5, 10, 15, 20]));
        assert_eq!(fields("10-30/10 * * * *").minutes, set_of([10, 20, 30]));
        assert_eq!(
            fields("* * 1-31/10 * *").days_of_month,
            set_of([1, 11, 21, 31])
        );
        assert_eq!(fields("0,*/20 * * * *").minutes, set_of([0, 20, 40]));
        assert_eq!(fields("*/59 * * * *").minutes, set_of([0, 59]));
        assert_eq!(fields("3-3 * * * *").minutes, set_of([3]));
    }

    #[test]
    fn cron_month_and_day_names_ignore_case() {
        assert_eq!(fields("* * * jan *").months, set_of([1]));
        assert_eq!(fields("* * * DEC *").months, set_of([12]));
        assert_eq!(fields("* * * Mar-May,oct *").months, set_of([3, 4, 5, 10]));
        assert_eq!(fields("* * * jan-dec/3 *").months, set_of([1, 4, 7, 10]));
        assert_eq!(fields("* * * * mon-fri").days_of_week, set_of(1..=5));
        assert_eq!(fields("* * * * SUN,Sat").days_of_week, set_of([0, 6]));
        assert_eq!(fields("* * * * 1-fri").days_of_week, set_of(1..=5));
    }

    #[test]
    fn cron_sunday_is_both_0_and_7() {
        assert_eq!(fields("* * * * 7").days_of_week, set_of([0]));
        assert_eq!(fields("* * * * 0").days_of_week, set_of([0]));
        assert_eq!(fields("* * * * 5-7").days_of_week, set_of([0, 5, 6]));
        assert_eq!(fields("* * * * */7").days_of_week, set_of([0]));
        let sunday = at(2026, 11, 22, 4, 16);
        assert_eq!(sunday.weekday(), 0);
        assert!(parse("* * * * 7").unwrap().matches(sunday));
        assert!(parse("* * * * sun").unwrap().matches(sunday));
        assert!(!parse("* * * * 1-6").unwrap().matches(sunday));
    }

    #[test]
    fn cron_whitespace_is_trimmed_and_separators_repeat() {
        assert_eq!(parse("  0\t\t12  * *   1 \n"), parse("0 12 * * 1"));
        assert_eq!(parse("\t@daily "), parse("@daily"));
        assert_eq!(parse(" 5 seconds \n"), Ok(CronSchedule::EverySeconds(5)));
    }

    #[test]
    fn cron_last_day_of_month() {
        let last = fields("0 0 $ * *");
        assert!(last.last_day_of_month);
        assert_eq!(last.days_of_month, 0);
        expect_next(&[
            (
                "0 0 $ * *",
                at(2026, 4, 10, 0, 0),
                Some(at(2026, 4, 30, 0, 0)),
            ),
            (
                "0 0 $ 2 *",
                at(2027, 1, 1, 0, 0),
                Some(at(2027, 2, 28, 0, 0)),
            ),
            (
                "0 0 $ 2 *",
                at(2028, 1, 1, 0, 0),
                Some(at(2028, 2, 29, 0, 0)),
            ),
        ]);
        // `$` restricts the day of month, so a restricted day of week widens it (either matches).
        assert!(parse("0 0 $ * fri")
            .unwrap()
            .matches(at(2026, 11, 20, 0, 0)));
        assert!(parse("0 0 $ * fri")
            .unwrap()
            .matches(at(2026, 11, 30, 0, 0)));
        assert!(error_of("0 0 $,1 * *").contains("day-of-month field \"$,1\""));
    }

    #[test]
    fn cron_macros_reach_pg_cron_spelled_out() {
        assert_eq!(for_pg_cron(" @yearly "), "0 0 1 1 *");
        assert_eq!(for_pg_cron("@annually"), "0 0 1 1 *");
        assert_eq!(for_pg_cron("@hourly"), "0 * * * *");
        assert_eq!(for_pg_cron(" */5 * * * *\t"), "*/5 * * * *");
        assert_eq!(for_pg_cron("30 seconds"), "30 seconds");
    }

    #[test]
    fn cron_macros_mean_their_documented_fields() {
        for (macro_name, expansion) in [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
        ] {
            assert_eq!(parse(macro_name), parse(expansion), "{macro_name}");
        }
        expect_next(&[
            (
                "@weekly",
                at(2026, 11, 18, 12, 0),
                Some(at(2026, 11, 22, 0, 0)),
            ),
            ("@yearly", at(2026, 6, 1, 0, 0), Some(at(2027, 1, 1, 0, 0))),
        ]);
    }

    #[test]
    fn cron_unknown_or_decorated_macros_are_rejected() {
        let reboot = error_of("@reboot");
        assert!(reboot.contains("unknown macro \"@reboot\""), "{reboot}");
        assert!(reboot.contains("@yearly, @annually, @monthly"), "{reboot}");
        assert!(error_of("@DAILY").contains("unknown macro \"@DAILY\""));
        assert!(error_of("@daily now").contains("unknown macro \"@daily now\""));
        assert!(error_of("@").contains("unknown macro \"@\""));
    }

    #[test]
    fn cron_seconds_interval() {
        let every_thirty = parse("30 seconds").unwrap();
        assert_eq!(every_thirty, CronSchedule::EverySeconds(30));
        assert_eq!(every_thirty.interval_seconds(), Some(30));
        assert_eq!(parse("1 second"), Ok(CronSchedule::EverySeconds(1)));
        assert_eq!(parse("1 seconds"), Ok(CronSchedule::EverySeconds(1)));
        assert_eq!(parse("59 Seconds"), Ok(CronSchedule::EverySeconds(59)));
        assert_eq!(parse("10SECONDS"), Ok(CronSchedule::EverySeconds(10)));
        assert_eq!(parse("07 seconds"), Ok(CronSchedule::EverySeconds(7)));
        assert_eq!(parse("* * * * *").unwrap().interval_seconds(), None);
        for bad in [
            "0 seconds",
            "60 seconds",
            "+5 seconds",
            "5.5 seconds",
            "five seconds",
            "seconds",
        ] {
            let message = error_of(bad);
            assert_eq!(
                message,
                format!("interval \"{bad}\": expected \"N seconds\" with N between 1 and 59")
            );
        }
        assert!(error_of("5 secs").starts_with("expected 5 fields"));
    }

    #[test]
    fn cron_seconds_interval_is_due_every_minute() {
        let every_five = parse("5 seconds").unwrap();
        let t = at(2026, 12, 31, 23, 59);
        assert!(every_five.matches(t));
        assert_eq!(every_five.next_after(t), Some(at(2027, 1, 1, 0, 0)));
    }

    #[test]
    fn cron_field_count_errors() {
        assert_eq!(
            error_of("* * * *"),
            "expected 5 fields (minute hour day-of-month month day-of-week), got 4"
        );
        assert!(error_of("* * * * * *").ends_with("got 6"));
        assert!(error_of("").ends_with("got 0"));
        assert!(error_of("   ").ends_with("got 0"));
    }

    #[test]
    fn cron_out_of_range_values_name_field_and_value() {
        for (expr, message) in [
            ("61 * * * *", "minute field \"61\": 61 is out of range, values must be between 0 and 59"),
            ("* 24 * * *", "hour field \"24\": 24 is out of range, values must be between 0 and 23"),
            (
                "* * 0 * *",
                "day-of-month field \"0\": 0 is out of range, values must be between 1 and 31",
            ),
            (
                "* * 32 * *",
                "day-of-month field \"32\": 32 is out of range, values must be between 1 and 31",
            ),
            ("* * * 13 *", "month field \"13\": 13 is out of range, values must be between 1 and 12"),
            (
                "* * * * 8",
                "day-of-week field \"8\": 8 is out of range, values must be between 0 and 7",
            ),
            (
                "1,5-70 * * * *",
                "minute field \"1,5-70\": 70 is out of range, values must be between 0 and 59",
            ),
            (
                "99999999999 * * * *",
                "minute field \"99999999999\": 99999999999 is out of range, values must be between 0 and 59",
            ),
        ] {
            assert_eq!(error_of(expr), message);
        }
    }

    #[test]
    fn cron_malformed_items_name_field_and_value() {
        for (expr, message) in [
            ("x * * * *", "minute field \"x\": \"x\" is not a number"),
            (
                "jan * * * *",
                "minute field \"jan\": \"jan\" is not a number",
            ),
            (
                "* * * foo *",
                "month field \"foo\": \"foo\" is neither a number nor a name jan-dec",
            ),
            (
                "* * * * funday",
                "day-of-week field \"funday\": \"funday\" is neither a number nor a name sun-sat",
            ),
            (
                "* * * january *",
                "month field \"january\": \"january\" is neither a number nor a name jan-dec",
            ),
            ("5x * * * *", "minute field \"5x\": \"5x\" is not a number"),
            ("5; * * * *", "minute field \"5;\": \"5;\" is not a number"),
            ("*x * * * *", "minute field \"*x\": \"*x\" is not a number"),
            ("-5 * * * *", "minute field \"-5\": missing value"),
            ("1,,2 * * * *", "minute field \"1,,2\": missing value"),
            ("1, * * * *", "minute field \"1,\": missing value"),
            ("5- * * * *", "minute field \"5-\": missing value"),
            (
                "1-2-3 * * * *",
                "minute field \"1-2-3\": \"2-3\" is not a number",
            ),
            (
                "* 5-3 * * *",
                "hour field \"5-3\": range \"5-3\" starts after it ends",
            ),
            (
                "* * * * sat-sun",
                "day-of-week field \"sat-sun\": range \"sat-sun\" starts after it ends",
            ),
        ] {
            assert_eq!(error_of(expr), message);
        }
    }

    #[test]
    fn cron_bad_steps_name_field_and_value() {
        for (expr, message) in [
            (
                "*/0 * * * *",
                "minute field \"*/0\": step \"0\" must be a number between 1 and 59",
            ),
            (
                "*/60 * * * *",
                "minute field \"*/60\": step \"60\" must be a number between 1 and 59",
            ),
            (
                "* */24 * * *",
                "hour field \"*/24\": step \"24\" must be a number between 1 and 23",
            ),
            (
                "* * * */13 *",
                "month field \"*/13\": step \"13\" must be a number between 1 and 12",
            ),
            (
                "* * * * */8",
                "day-of-week field \"*/8\": step \"8\" must be a number between 1 and 7",
            ),
            (
                "*/ * * * *",
                "minute field \"*/\": step \"\" must be a number between 1 and 59",
            ),
            (
                "*/+5 * * * *",
                "minute field \"*/+5\": step \"+5\" must be a number between 1 and 59",
            ),
            (
                "*/x * * * *",
                "minute field \"*/x\": step \"x\" must be a number between 1 and 59",
            ),
            (
                "1-9/2/3 * * * *",
                "minute field \"1-9/2/3\": step \"2/3\" must be a number between 1 and 59",
            ),
            (
                "* * * * */mon",
                "day-of-week field \"*/mon\": step \"mon\" must be a number between 1 and 7",
            ),
        ] {
            assert_eq!(error_of(expr), message);
        }
    }

    #[test]
    fn cron_step_without_range_is_rejected_like_pg_cron() {
        assert_eq!(
            error_of("5/15 * * * *"),
            "minute field \"5/15\": \"5/15\" is not accepted by pg_cron, write \"5-59/15\""
        );
        assert_eq!(
            error_of("* * * * mon/2"),
            "day-of-week field \"mon/2\": \"mon/2\" is not accepted by pg_cron, write \"mon-7/2\""
        );
    }

    #[test]
    fn cron_overlong_schedule_is_rejected_like_pg_cron() {
        let at_limit = format!("{} * * * *", vec!["1"; 496].join(","));
        assert_eq!(at_limit.len(), 999);
        assert!(parse(&at_limit).is_ok());
        let over_limit = format!("{at_limit} ");
        assert_eq!(
            error_of(&over_limit),
            "schedule is 1000 bytes long, pg_cron accepts at most 999"
        );
    }

    #[test]
    fn cron_errors_display_their_message() {
        let error = parse("* * * *").unwrap_err();
        assert_eq!(format!("{error}"), error.to_string());
        let as_std_error: &dyn std::error::Error = &error;
        assert!(as_std_error.to_string().starts_with("expected 5 fields"));
    }

    #[test]
    fn cron_day_fields_match_either_when_both_restricted() {
        let the_13th_or_friday = parse("0 0 13 * 5").unwrap();
        assert!(the_13th_or_friday.matches(at(2026, 1, 13, 0, 0))); // a Tuesday
        assert!(the_13th_or_friday.matches(at(2026, 11, 20, 0, 0))); // a Friday, the 20th
        assert!(!the_13th_or_friday.matches(at(2026, 11, 19, 0, 0)));
        assert_eq!(
            the_13th_or_friday.next_after(at(2026, 11, 20, 0, 0)),
            Some(at(2026, 11, 27, 0, 0))
        );
        assert_eq!(
            the_13th_or_friday.next_after(at(2026, 1, 12, 0, 0)),
            Some(at(2026, 1, 13, 0, 0))
        );
    }

    #[test]
    fn cron_day_fields_match_both_when_one_starts_with_star() {
        // `*/1` allows every day but still counts as `*`, so only Fridays match.
        let fridays = parse("0 0 */1 * 5").unwrap();
        assert!(fridays.matches(at(2026, 11, 20, 0, 0)));
        assert!(!fridays.matches(at(2026, 11, 19, 0, 0)));
        // Written without the star, the same days widen to every day.
        assert!(parse("0 0 1-31 * 5")
            .unwrap()
            .matches(at(2026, 11, 19, 0, 0)));
        // Both restricted through a star: odd days that are also Mondays.
        let odd_mondays = parse("0 0 */2 * 1").unwrap();
        assert_eq!(
            odd_mondays.next_after(at(2026, 11, 1, 0, 0)),
            Some(at(2026, 11, 9, 0, 0))
        );
        let sundays_the_13th = parse("0 0 13 * */7").unwrap(); // `*/7` is Sunday only
        assert_eq!(
            sundays_the_13th.next_after(at(2026, 1, 1, 0, 0)),
            Some(at(2026, 9, 13, 0, 0))
        );
        assert_eq!(
            parse("0 0 13 * *")
                .unwrap()
                .next_after(at(2026, 1, 14, 0, 0)),
            Some(at(2026, 2, 13, 0, 0))
        );
    }

    #[test]
    fn cron_matches_checks_every_field() {
        let weekday_morning = parse("30 2 * * 1-5").unwrap();
        assert!(weekday_morning.matches(at(2026, 11, 20, 2, 30)));
        assert!(!weekday_morning.matches(at(2026, 11, 20, 2, 31)));
        assert!(!weekday_morning.matches(at(2026, 11, 20, 3, 30)));
        assert!(!weekday_morning.matches(at(2026, 11, 22, 2, 30)));
        assert!(!parse("* * * jun *")
            .unwrap()
            .matches(at(2026, 11, 20, 2, 30)));
    }

    #[test]
    #[rustfmt::skip]
    fn cron_next_after_is_strictly_after() {
        let t = at(2026, 11, 20, 2, 30);
        expect_next(&[
            ("* * * * *", t, Some(at(2026, 11, 20, 2, 31))),
            ("30 2 * * *", t, Some(at(2026, 11, 21, 2, 30))),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn cron_next_after_every_quarter_hour() {
        expect_next(&[
            ("*/15 * * * *", at(2026, 3, 5, 10, 7), Some(at(2026, 3, 5, 10, 15))),
            ("*/15 * * * *", at(2026, 3, 5, 10, 45), Some(at(2026, 3, 5, 11, 0))),
            ("*/15 * * * *", at(2026, 12, 31, 23, 50), Some(at(2027, 1, 1, 0, 0))),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn cron_next_after_weekday_mornings_skip_the_weekend() {
        let friday_after_the_run = at(2026, 11, 20, 3, 0);
        expect_next(&[
            ("30 2 * * 1-5", friday_after_the_run, Some(at(2026, 11, 23, 2, 30))),
            ("30 2 * * 1-5", at(2026, 11, 23, 2, 29), Some(at(2026, 11, 23, 2, 30))),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn cron_next_after_crosses_month_and_year_ends() {
        expect_next(&[
            ("0 0 1 * *", at(2026, 1, 31, 23, 59), Some(at(2026, 2, 1, 0, 0))),
            ("0 0 1 1 *", at(2026, 12, 31, 23, 59), Some(at(2027, 1, 1, 0, 0))),
            ("0 0 31 * *", at(2026, 4, 1, 0, 0), Some(at(2026, 5, 31, 0, 0))),
            ("15 10 * * *", at(2026, 2, 28, 11, 0), Some(at(2026, 3, 1, 10, 15))),
            ("0 12 * 6 *", at(2026, 6, 30, 12, 0), Some(at(2027, 6, 1, 12, 0))),
            ("59 23 31 12 *", at(2026, 12, 31, 23, 58), Some(at(2026, 12, 31, 23, 59))),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn cron_next_after_finds_leap_days() {
        let leap_day = "0 0 29 2 *";
        expect_next(&[
            (leap_day, at(2026, 3, 1, 0, 0), Some(at(2028, 2, 29, 0, 0))),
            (leap_day, at(2028, 2, 28, 23, 59), Some(at(2028, 2, 29, 0, 0))),
        ]);
        // 2100 is not a leap year, so the next one after 2096 is 2104.
        expect_next(&[
            (leap_day, at(2096, 3, 1, 0, 0), Some(at(2104, 2, 29, 0, 0))),
            (leap_day, at(1999, 3, 1, 0, 0), Some(at(2000, 2, 29, 0, 0))),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn cron_impossible_dates_never_come() {
        expect_next(&[
            ("0 0 30 2 *", at(2026, 1, 1, 0, 0), None),
            ("0 0 31 2,4,6,9,11 *", at(2026, 1, 1, 0, 0), None),
            ("0 0 31 * *", at(2026, 1, 1, 0, 0), Some(at(2026, 1, 31, 0, 0))),
        ]);
    }

    #[test]
    fn cron_naive_minute_rejects_unreal_minutes() {
        assert!(NaiveMinute::new(2028, 2, 29, 0, 0).is_some());
        assert!(NaiveMinute::new(2000, 2, 29, 0, 0).is_some());
        assert!(NaiveMinute::new(2026, 2, 29, 0, 0).is_none());
        assert!(NaiveMinute::new(2100, 2, 29, 0, 0).is_none());
        assert!(NaiveMinute::new(2026, 4, 31, 0, 0).is_none());
        assert!(NaiveMinute::new(2026, 13, 1, 0, 0).is_none());
        assert!(NaiveMinute::new(2026, 0, 1, 0, 0).is_none());
        assert!(NaiveMinute::new(2026, 1, 0, 0, 0).is_none());
        assert!(NaiveMinute::new(2026, 1, 1, 24, 0).is_none());
        assert!(NaiveMinute::new(2026, 1, 1, 0, 60).is_none());
    }

    #[test]
    fn cron_weekdays() {
        assert_eq!(at(1970, 1, 1, 0, 0).weekday(), 4);
        assert_eq!(at(2000, 2, 29, 0, 0).weekday(), 2);
        assert_eq!(at(2024, 5, 16, 0, 0).weekday(), 4);
        assert_eq!(at(2026, 11, 20, 0, 0).weekday(), 5);
        assert_eq!(at(2104, 2, 29, 0, 0).weekday(), 5);
        assert_eq!(at(1600, 1, 1, 0, 0).weekday(), 6);
    }

    #[test]
    fn cron_unix_seconds_round_trip() {
        // Cross-checked with `date -u -d @1795320960`: Sun Nov 22 04:16:00 UTC 2026.
        let t = at(2026, 11, 22, 4, 16);
        assert_eq!(t.to_unix_seconds(), 1_795_320_960);
        assert_eq!(NaiveMinute::from_unix_seconds(1_795_320_960), Some(t));
        assert_eq!(NaiveMinute::from_unix_seconds(1_795_320_960 + 59), Some(t));
        assert_eq!(
            NaiveMinute::from_unix_seconds(0),
            Some(at(1970, 1, 1, 0, 0))
        );
        assert_eq!(
            NaiveMinute::from_unix_seconds(-1),
            Some(at(1969, 12, 31, 23, 59))
        );
        assert_eq!(
            NaiveMinute::from_unix_seconds(951_782_400),
            Some(at(2000, 2, 29, 0, 0))
        );
        assert_eq!(at(1600, 3, 1, 0, 0).to_unix_seconds(), -11_670_912_000);
        assert_eq!(NaiveMinute::from_unix_seconds(i64::MAX), None);
        // Every day boundary over a few leap cycles, to catch off-by-one errors in the calendar.
        let mut day = at(1995, 1, 1, 23, 59);
        for _ in 0..(366 * 12) {
            let seconds = day.to_unix_seconds();
            assert_eq!(NaiveMinute::from_unix_seconds(seconds), Some(day));
            let next_day = NaiveMinute::from_unix_seconds(seconds + 60).unwrap();
            assert_eq!(next_day.to_unix_seconds(), seconds + 60);
            assert!(next_day > day);
            assert!(NaiveMinute::new(next_day.year, next_day.month, next_day.day, 0, 0).is_some());
            day = NaiveMinute {
                hour: 23,
                minute: 59,
                ..next_day
            };
        }
    }

    #[test]
    fn seconds_schedules_need_pg_cron_1_5() {
        assert!(!pg_cron_runs_seconds("1.4-1"));
        assert!(!pg_cron_runs_seconds("1.4"));
        assert!(pg_cron_runs_seconds("1.5"));
        assert!(pg_cron_runs_seconds("1.6"));
        assert!(pg_cron_runs_seconds("2.0"));
    }
}

//! What `partition_interval` means for a control column: parsed once, validated against the
//! column's type, and normalised so equal intervals compare equal.

/// The control column types dbopt partitions by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    TimestampTz,
    Timestamp,
    Date,
    Integer,
    BigInt,
}

impl ControlType {
    pub fn sql_name(self) -> &'static str {
        match self {
            ControlType::TimestampTz => "timestamp with time zone",
            ControlType::Timestamp => "timestamp without time zone",
            ControlType::Date => "date",
            ControlType::Integer => "integer",
            ControlType::BigInt => "bigint",
        }
    }

    /// The control type for a column type's OID, or None when dbopt cannot partition by it.
    pub fn from_type_oid(oid: u32) -> Option<ControlType> {
        match oid {
            1184 => Some(ControlType::TimestampTz),
            1114 => Some(ControlType::Timestamp),
            1082 => Some(ControlType::Date),
            23 => Some(ControlType::Integer),
            20 => Some(ControlType::BigInt),
            _ => None,
        }
    }

    pub fn is_time(self) -> bool {
        !matches!(self, ControlType::Integer | ControlType::BigInt)
    }
}

/// One partition's width. Calendar steps are in wall-clock terms of the partition time zone, so
/// a day is midnight to midnight even when DST makes it 23 or 25 hours long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Divides a day evenly.
    Minutes(u32),
    /// Divides a day evenly.
    Hours(u32),
    Days(u32),
    /// Aligned to Mondays.
    Weeks(u32),
    /// Years are 12 months; aligned to January.
    Months(u32),
    /// Integer controls.
    Width(i64),
}

impl Step {
    /// The step as a PostgreSQL interval (or integer width), for arithmetic in SQL.
    pub fn interval_text(self) -> String {
        match self {
            Step::Minutes(n) => format!("{n} minutes"),
            Step::Hours(n) => format!("{n} hours"),
            Step::Days(n) => format!("{n} days"),
            Step::Weeks(n) => format!("{n} weeks"),
            Step::Months(n) => format!("{n} months"),
            Step::Width(w) => w.to_string(),
        }
    }
}

pub const ACCEPTED_FORMS: &str = "Use one number and one unit, e.g. '1 hour', '1 day', '1 week', \
    '1 month', '3 months', '1 year' (or hourly, daily, weekly, monthly, quarterly, yearly) for \
    time columns, and a width such as '100000' for integer columns.";

/// Parses `text` for a column of type `control`. The error is a sentence for the user.
pub fn parse_step(text: &str, control: ControlType) -> Result<Step, String> {
    let step = parse_unchecked(text)?;
    let shown = text.trim();
    match (control.is_time(), step) {
        (false, Step::Width(w)) => {
            if control == ControlType::Integer && w > i64::from(i32::MAX) {
                return Err(format!("width {w} does not fit an integer column"));
            }
            Ok(step)
        }
        (false, _) => Err(format!(
            "'{shown}' is a time interval, but the control column is {}: give a width such as '100000'",
            control.sql_name()
        )),
        (true, Step::Width(_)) => Err(format!(
            "'{shown}' has no unit, but the control column is {}: give an interval such as '1 month'",
            control.sql_name()
        )),
        (true, Step::Minutes(_) | Step::Hours(_)) if control == ControlType::Date => Err(format!(
            "'{shown}' is finer than a day, the resolution of a date column"
        )),
        (true, Step::Minutes(n)) if 1440 % n != 0 => Err(format!(
            "'{shown}' does not divide a day evenly: use 1, 2, 5, 10, 15, 20, 30 or 60 minutes, or hours"
        )),
        (true, Step::Hours(n)) if 24 % n != 0 => Err(format!(
            "'{shown}' does not divide a day evenly: use 1, 2, 3, 4, 6, 8, 12 or 24 hours"
        )),
        (true, step) => Ok(normalise(step)),
    }
}

/// Equal widths get one spelling: 60 minutes is an hour, 24 hours a day.
fn normalise(step: Step) -> Step {
    match step {
        Step::Minutes(n) if n % 60 == 0 => normalise(Step::Hours(n / 60)),
        Step::Hours(24) => Step::Days(1),
        other => other,
    }
}

fn parse_unchecked(text: &str) -> Result<Step, String> {
    let lowered = text.trim().to_ascii_lowercase();
    let alias = match lowered.as_str() {
        "hourly" => Some(Step::Hours(1)),
        "daily" => Some(Step::Days(1)),
        "weekly" => Some(Step::Weeks(1)),
        "monthly" => Some(Step::Months(1)),
        "quarterly" => Some(Step::Months(3)),
        "yearly" | "annually" => Some(Step::Months(12)),
        _ => None,
    };
    if let Some(step) = alias {
        return Ok(step);
    }
    if lowered.is_empty() {
        return Err("partition_interval is empty".into());
    }
    if let Some(step) = parse_clock(&lowered)? {
        return Ok(step);
    }
    let words: Vec<&str> = lowered.split_whitespace().collect();
    let (number, unit) = match words.as_slice() {
        [number] => split_number_unit(number),
        [number, unit] => (*number, *unit),
        _ => {
            return Err(format!(
                "'{}' is not a single number and unit: give one, e.g. '14 months' rather than '1 year 2 months'",
                text.trim()
            ))
        }
    };
    let value: i64 = number.replace('_', "").parse().map_err(|_| {
        format!(
            "'{}' is not an interval or width dbopt understands",
            text.trim()
        )
    })?;
    if value <= 0 {
        return Err(format!("'{}' is not positive", text.trim()));
    }
    if unit.is_empty() {
        return Ok(Step::Width(value));
    }
    let count = u32::try_from(value).map_err(|_| format!("'{}' is too large", text.trim()))?;
    let step = match unit {
        "minute" | "minutes" | "min" | "mins" => Step::Minutes(count),
        "hour" | "hours" | "h" | "hr" | "hrs" => Step::Hours(count),
        "day" | "days" | "d" => Step::Days(count),
        "week" | "weeks" | "w" => Step::Weeks(count),
        "month" | "months" | "mon" | "mons" => Step::Months(count),
        "year" | "years" | "y" | "yr" | "yrs" => Step::Months(
            count
                .checked_mul(12)
                .ok_or_else(|| format!("'{}' is too large", text.trim()))?,
        ),
        _ => {
            return Err(format!(
                "'{unit}' in '{}' is not a unit dbopt partitions by",
                text.trim()
            ))
        }
    };
    Ok(step)
}

/// "12h" or "100000": digits, then an optional unit.
fn split_number_unit(word: &str) -> (&str, &str) {
    let digits = word
        .find(|c: char| !(c.is_ascii_digit() || c == '-' || c == '+' || c == '_'))
        .unwrap_or(word.len());
    word.split_at(digits)
}

/// `HH:MM[:SS]`, as PostgreSQL prints intervals of hours and minutes (`'1 hour'::interval::text`).
fn parse_clock(text: &str) -> Result<Option<Step>, String> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() < 2
        || parts.len() > 3
        || !parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty())
    {
        return Ok(None);
    }
    let number = |p: &str| {
        p.parse::<u32>()
            .map_err(|_| format!("'{text}' is too large"))
    };
    let (hours, minutes) = (number(parts[0])?, number(parts[1])?);
    if parts.len() == 3 && number(parts[2])? != 0 {
        return Err(format!(
            "'{text}' has seconds: partitions are at least a minute wide"
        ));
    }
    let total = hours
        .checked_mul(60)
        .and_then(|h| h.checked_add(minutes))
        .ok_or_else(|| format!("'{text}' is too large"))?;
    if total == 0 {
        return Err(format!("'{text}' is not positive"));
    }
    Ok(Some(Step::Minutes(total)))
}

#[cfg(test)]
mod pure_tests {
    use super::ControlType::*;
    use super::*;

    #[test]
    fn every_unit_and_alias_parses() {
        let cases = [
            ("1 hour", Step::Hours(1)),
            ("2 hours", Step::Hours(2)),
            ("15 minutes", Step::Minutes(15)),
            ("90 min", Step::Minutes(90)),
            ("30 mins", Step::Minutes(30)),
            ("1 day", Step::Days(1)),
            ("7 days", Step::Days(7)),
            ("1 week", Step::Weeks(1)),
            ("1 month", Step::Months(1)),
            ("3 months", Step::Months(3)),
            ("1 mon", Step::Months(1)),
            ("1 year", Step::Months(12)),
            ("2 Years", Step::Months(24)),
            ("daily", Step::Days(1)),
            ("Quarterly", Step::Months(3)),
            ("01:00:00", Step::Hours(1)),
            ("00:30", Step::Minutes(30)),
            ("60 minutes", Step::Hours(1)),
            ("24 hours", Step::Days(1)),
            ("12h", Step::Hours(12)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_step(text, TimestampTz), Ok(expected), "{text}");
        }
    }

    #[test]
    fn integer_widths() {
        assert_eq!(parse_step("100000", BigInt), Ok(Step::Width(100_000)));
        assert_eq!(
            parse_step(" 1_000_000 ", Integer),
            Ok(Step::Width(1_000_000))
        );
        assert!(parse_step("3000000000", Integer)
            .unwrap_err()
            .contains("does not fit an integer"));
        assert_eq!(
            parse_step("3000000000", BigInt),
            Ok(Step::Width(3_000_000_000))
        );
    }

    #[test]
    fn bad_intervals_are_refused_with_a_reason() {
        let cases = [
            ("0 days", TimestampTz, "not positive"),
            ("-1 month", TimestampTz, "not positive"),
            ("0", TimestampTz, "not positive"),
            ("00:00:00", TimestampTz, "not positive"),
            ("-5", BigInt, "not positive"),
            ("soon", TimestampTz, "not an interval"),
            ("1 fortnight", TimestampTz, "not a unit"),
            ("1 year 2 months", TimestampTz, "single number"),
            ("", TimestampTz, "empty"),
            ("00:00:30", TimestampTz, "seconds"),
            ("1 hour", Date, "finer than a day"),
            ("1 day", BigInt, "give a width"),
            ("100000", Timestamp, "has no unit"),
            ("5 hours", TimestampTz, "divide a day"),
            ("7 minutes", TimestampTz, "divide a day"),
        ];
        for (text, control, reason) in cases {
            let err = parse_step(text, control).unwrap_err();
            assert!(err.contains(reason), "{text:?} on {control:?}: {err}");
        }
        assert_eq!(parse_step("1 day", Date), Ok(Step::Days(1)));
    }
}

//! When the background worker's jobs are next due. Pure logic: the scheduler feeds it the jobs it
//! read and the time, and launches what it returns.
//!
//! As with pg_cron, a job is first due at the first matching minute after the scheduler sees it,
//! times missed while the server was down are not caught up, and a run still going when the
//! job is due again makes the scheduler skip that time (it checks; this table only advances).

use super::cron::{self, CronSchedule, NaiveMinute};
use std::collections::HashMap;

/// The first time strictly after `now` (Unix seconds, UTC) at which `schedule` is due.
pub fn next_due(schedule: &CronSchedule, now: i64) -> Option<i64> {
    match schedule.interval_seconds() {
        Some(seconds) => Some(now + i64::from(seconds)),
        None => schedule
            .next_after(NaiveMinute::from_unix_seconds(now)?)
            .map(NaiveMinute::to_unix_seconds),
    }
}

#[derive(Default)]
pub struct Timetable {
    /// job id → (its schedule as last read, when it is next due; None: never)
    next: HashMap<i64, (String, Option<i64>)>,
}

impl Timetable {
    /// Brings the table in line with `jobs` (id, cron expression) at `now`, and returns the ids
    /// of the jobs due now, in the order given, each advanced to its next time. A job new to
    /// the table, or whose schedule changed, is not due before its first time after `now`; one
    /// whose expression no longer parses is never due.
    pub fn due(&mut self, jobs: &[(i64, String)], now: i64) -> Vec<i64> {
        self.next
            .retain(|id, _| jobs.iter().any(|(job, _)| job == id));
        let mut due = Vec::new();
        for (id, expression) in jobs {
            let schedule = cron::parse(expression).ok();
            let entry = self
                .next
                .entry(*id)
                .or_insert_with(|| (String::new(), None));
            if entry.0 != *expression {
                *entry = (
                    expression.clone(),
                    schedule.as_ref().and_then(|s| next_due(s, now)),
                );
                continue;
            }
            if matches!(entry.1, Some(at) if at <= now) {
                due.push(*id);
                entry.1 = schedule.as_ref().and_then(|s| next_due(s, now));
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-22 10:00:00 UTC
    const TEN: i64 = 1_795_341_600;

    fn jobs(list: &[(i64, &str)]) -> Vec<(i64, String)> {
        list.iter().map(|(id, c)| (*id, c.to_string())).collect()
    }

    #[test]
    fn a_job_is_first_due_at_the_first_matching_minute_after_it_is_seen() {
        assert_eq!(
            NaiveMinute::from_unix_seconds(TEN),
            NaiveMinute::new(2026, 11, 22, 10, 0)
        );
        let mut table = Timetable::default();
        let every_minute = jobs(&[(1, "* * * * *")]);
        assert!(table.due(&every_minute, TEN + 30).is_empty());
        assert!(table.due(&every_minute, TEN + 59).is_empty());
        assert_eq!(table.due(&every_minute, TEN + 60), vec![1]);
        // Due once per minute, however often the scheduler looks.
        assert!(table.due(&every_minute, TEN + 61).is_empty());
        assert_eq!(table.due(&every_minute, TEN + 120), vec![1]);
    }

    #[test]
    fn missed_times_are_not_caught_up() {
        let mut table = Timetable::default();
        let hourly = jobs(&[(7, "@hourly")]);
        table.due(&hourly, TEN + 10);
        // The scheduler was away for three hours: one run, then the next hour.
        assert_eq!(table.due(&hourly, TEN + 3 * 3600 + 5), vec![7]);
        assert!(table.due(&hourly, TEN + 4 * 3600 - 1).is_empty());
        assert_eq!(table.due(&hourly, TEN + 4 * 3600), vec![7]);
    }

    #[test]
    fn second_intervals_count_from_the_last_run() {
        let mut table = Timetable::default();
        let every_20s = jobs(&[(3, "20 seconds")]);
        table.due(&every_20s, TEN);
        assert!(table.due(&every_20s, TEN + 19).is_empty());
        assert_eq!(table.due(&every_20s, TEN + 21), vec![3]);
        assert!(table.due(&every_20s, TEN + 40).is_empty());
        assert_eq!(table.due(&every_20s, TEN + 41), vec![3]);
    }

    #[test]
    fn changed_and_removed_jobs_are_rescheduled_or_forgotten() {
        let mut table = Timetable::default();
        table.due(&jobs(&[(1, "* * * * *"), (2, "0 12 * * *")]), TEN);
        // Job 1 now runs at noon too; job 2 is gone.
        let noon = jobs(&[(1, "0 12 * * *")]);
        assert!(table.due(&noon, TEN + 60).is_empty());
        assert!(table.due(&noon, TEN + 7199).is_empty());
        assert_eq!(table.due(&noon, TEN + 7200), vec![1]);
        // Job 2, gone, comes back with its schedule: it starts afresh, not due at once.
        assert!(table
            .due(&jobs(&[(2, "0 12 * * *")]), TEN + 9 * 3600)
            .is_empty());
    }

    #[test]
    fn an_unparsable_or_impossible_schedule_is_never_due() {
        let mut table = Timetable::default();
        let odd = jobs(&[(1, "0 0 30 2 *"), (2, "not cron")]);
        table.due(&odd, TEN);
        assert!(table.due(&odd, TEN + 400 * 24 * 3600).is_empty());
    }
}

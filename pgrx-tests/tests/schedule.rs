//! dbopt.schedule() against a live server with pg_cron: jobs run on pg_cron's minute ticks, as
//! the role that scheduled them.

use dbopt_integration_tests::{db_error, sqlstate, Cluster};
use postgres::Client;
use std::time::{Duration, Instant};

/// A daily partition set made with premake 1, then asked for 5: maintenance is due.
fn short_of_partitions(db: &mut Client, table: &str) {
    db.batch_execute(&format!(
        "CREATE TABLE {table} (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL)
           PARTITION BY RANGE (at);
         SELECT count(*) FROM dbopt.create_partitions('{table}', 'at', '1 day', premake => 1);
         UPDATE dbopt.partition_config SET premake = 5, future_limit = 12 WHERE parent = '{table}'::regclass;"
    ))
    .unwrap();
}

fn partitions(db: &mut Client, table: &str) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = $1::text::regclass",
        &[&table],
    )
    .unwrap()
    .get(0)
}

/// Waits (pg_cron runs on the minute) until `done` holds, or fails after 150 s.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(150);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn columns(row: Result<postgres::Row, postgres::Error>) -> (i64, i64) {
    let row = row.unwrap();
    (row.get(0), row.get(1))
}

fn schedule(db: &mut Client, task: &str, args: &str) -> i64 {
    db.query_one(
        "SELECT dbopt.schedule($1, '* * * * *', $2::text::jsonb)",
        &[&task, &args],
    )
    .unwrap()
    .get(0)
}

#[test]
fn maintenance_jobs_create_missing_partitions_each_as_its_owner_only() {
    let cluster = Cluster::with_pg_cron("sched");
    let mut db = cluster.create_database("sched", true);
    db.batch_execute(
        "CREATE EXTENSION pg_cron;
         CREATE ROLE clerk LOGIN;
         GRANT USAGE ON SCHEMA cron TO clerk;
         CREATE SCHEMA clerk AUTHORIZATION clerk;",
    )
    .unwrap();
    short_of_partitions(&mut db, "public.ev");
    short_of_partitions(&mut db, "public.untouched");
    let mut clerk = cluster.connect_as("sched", "clerk");
    short_of_partitions(&mut clerk, "clerk.ev");

    let owners_job = schedule(&mut db, "maintenance", r#"{"parent": "public.ev"}"#);
    let clerks_job = schedule(&mut clerk, "maintenance", "{}");
    let row = db
        .query_one(
            "SELECT j.username::text, j.command FROM cron.job j
               JOIN dbopt.jobs d ON d.cron_job_id = j.jobid WHERE d.job_id = $1",
            &[&clerks_job],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("clerk".into(), "CALL dbopt.run_maintenance()".into())
    );
    // pg_cron gets macros spelled out: its own @yearly never fires.
    let yearly_job: i64 = db
        .query_one("SELECT dbopt.schedule('snapshot_stats', '@yearly')", &[])
        .unwrap()
        .get(0);
    let yearly: String = db
        .query_one(
            "SELECT j.schedule FROM cron.job j JOIN dbopt.jobs d ON d.cron_job_id = j.jobid
              WHERE d.job_id = $1",
            &[&yearly_job],
        )
        .unwrap()
        .get(0);
    assert_eq!(yearly, "0 0 1 1 *");
    // A job for someone else's table is refused before it exists.
    let e = clerk
        .query_one(
            "SELECT dbopt.schedule('maintenance', '@hourly', '{\"parent\": \"public.ev\"}')",
            &[],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{:?}", db_error(&e));

    let before = partitions(&mut db, "public.untouched");
    wait_until("both jobs to create partitions", || {
        partitions(&mut db, "public.ev") >= 6 && partitions(&mut db, "clerk.ev") >= 6
    });
    // The clerk's job ran maintenance over everything the clerk may see: not the owner's tables.
    assert_eq!(partitions(&mut db, "public.untouched"), before);
    let runs: Vec<(i64, String)> = clerk
        .query(
            "SELECT job_id, outcome FROM dbopt.job_runs WHERE outcome <> 'running'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(runs.contains(&(clerks_job, "ok".into())), "{runs:?}");
    assert!(runs.iter().all(|(job, _)| *job == clerks_job), "{runs:?}");

    assert!(clerk
        .query_one("SELECT dbopt.unschedule($1)", &[&clerks_job])
        .unwrap()
        .get::<_, bool>(0));
    let left: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM cron.job WHERE username = 'clerk')
                  + (SELECT count(*) FROM dbopt.jobs WHERE job_id = $1)",
            &[&clerks_job],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    // The owner's job is not the clerk's to remove.
    let e = clerk
        .query_one("SELECT dbopt.unschedule($1)", &[&owners_job])
        .unwrap_err();
    assert_eq!(
        (sqlstate(&e), db_error(&e).0),
        ("42704", format!("dbopt job {owners_job} does not exist"))
    );
}

#[test]
fn a_failing_job_is_recorded_and_the_next_job_still_runs() {
    let cluster = Cluster::with_pg_cron("fails");
    let mut db = cluster.create_database("fails", true);
    db.batch_execute(
        "CREATE EXTENSION pg_cron;
         CREATE TABLE ev (id int PRIMARY KEY, at timestamptz NOT NULL, v int);
         INSERT INTO ev SELECT g, now() - g * interval '1 day', g FROM generate_series(1, 1000) g;",
    )
    .unwrap();
    let checksum = |db: &mut Client, tables: &str| -> (i64, i64) {
        columns(db.query_one(
            &format!(
                "SELECT count(*), sum(hashtext(format('%s|%s|%s', id, at, v))) FROM ({tables}) rows"
            ),
            &[],
        ))
    };
    let before = checksum(&mut db, "SELECT id, at, v FROM ev");
    let policy: String = db
        .query_one(
            "SELECT dbopt.set_archive_policy('ev', 'at', '90 days')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        policy,
        "public.ev: rows whose at is older than 90 days are archived by each run of the archive task"
    );
    // Checked as a run checks it, and nothing of that check is left behind.
    let e = db
        .query_one(
            "SELECT dbopt.set_archive_policy('ev', 'seen_at', '90 days')",
            &[],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42703");
    let e = db
        .query_one("SELECT dbopt.set_archive_policy('ev', 'at', '-1 day')", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22023");
    let leftovers: (i64, i64) = columns(db.query_one(
        "SELECT (SELECT count(*) FROM pg_class WHERE relname = 'ev_archive'),
                (SELECT count(*) FROM dbopt.archive_runs)",
        &[],
    ));
    assert_eq!(leftovers, (0, 0));

    short_of_partitions(&mut db, "public.doomed");
    let failing = schedule(&mut db, "maintenance", r#"{"parent": "public.doomed"}"#);
    let healthy = schedule(&mut db, "snapshot_stats", "{}");
    let archiving = schedule(&mut db, "archive", "{}");
    db.batch_execute("DROP TABLE doomed").unwrap();

    let outcome = |db: &mut Client, job: i64| -> Option<(String, String)> {
        db.query_opt(
            "SELECT outcome, coalesce(message, '') FROM dbopt.job_runs
              WHERE job_id = $1 AND outcome <> 'running' LIMIT 1",
            &[&job],
        )
        .unwrap()
        .map(|r| (r.get(0), r.get(1)))
    };
    wait_until("the three jobs to run", || {
        [failing, healthy, archiving]
            .iter()
            .all(|job| outcome(&mut db, *job).is_some())
    });
    let (state, message) = outcome(&mut db, failing).unwrap();
    assert_eq!(state, "failed");
    assert!(message.contains("doomed"), "{message}");
    assert_eq!(outcome(&mut db, healthy).unwrap().0, "ok");
    assert_eq!(outcome(&mut db, archiving).unwrap().0, "ok");
    let hot: i64 = db.query_one("SELECT count(*) FROM ev", &[]).unwrap().get(0);
    assert_eq!(hot, 89);
    assert_eq!(
        checksum(
            &mut db,
            "SELECT id, at, v FROM ev UNION ALL SELECT id, at, v FROM ev_archive"
        ),
        before
    );
    let snapshots: i64 = db
        .query_one("SELECT count(*) FROM dbopt.stat_snapshots", &[])
        .unwrap()
        .get(0);
    assert!(snapshots >= 1);
}

#[test]
fn bad_schedules_tasks_and_arguments_are_refused_and_record_nothing() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("plain", true);
    let refuse = |db: &mut Client, task: &str, cron: &str, args: &str| {
        db.query_one(
            "SELECT dbopt.schedule($1, $2, $3::text::jsonb)",
            &[&task, &cron, &args],
        )
        .unwrap_err()
    };
    let e = refuse(&mut db, "maintenance", "61 * * * *", "{}");
    assert_eq!(sqlstate(&e), "22023");
    let (message, _, hint) = db_error(&e);
    assert_eq!(
        message,
        "invalid cron schedule \"61 * * * *\" for task \"maintenance\": minute field \"61\": \
         61 is out of range, values must be between 0 and 59"
    );
    assert!(hint
        .unwrap()
        .contains("minute hour day-of-month month day-of-week"));
    assert_eq!(
        sqlstate(&refuse(&mut db, "maintenance", "* * * *", "{}")),
        "22023"
    );
    let e = refuse(&mut db, "vacuum", "@daily", "{}");
    assert_eq!(
        (sqlstate(&e), db_error(&e).0, db_error(&e).2.unwrap()),
        (
            "22023",
            "cannot schedule unknown task \"vacuum\"".to_owned(),
            "Tasks: maintenance, archive, refresh_rolling, refresh_matviews, snapshot_stats."
                .to_owned()
        )
    );
    let e = refuse(&mut db, "maintenance", "@daily", r#"{"table": "t"}"#);
    assert_eq!(sqlstate(&e), "22023");
    assert!(db_error(&e).0.contains("takes no argument \"table\""));
    let e = refuse(
        &mut db,
        "maintenance",
        "@daily",
        r#"{"parent": "no_such_table"}"#,
    );
    assert_eq!(sqlstate(&e), "42P01");
    let e = db
        .query_one("SELECT dbopt.unschedule(12345)", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42704");
    let jobs: i64 = db
        .query_one("SELECT count(*) FROM dbopt.jobs", &[])
        .unwrap()
        .get(0);
    assert_eq!(jobs, 0);

    // Without pg_cron the job is kept for dbopt's own worker; asking again is the same job.
    let job = schedule(&mut db, "refresh_matviews", r#"{"force": true}"#);
    assert_eq!(
        schedule(&mut db, "refresh_matviews", r#"{"force": true}"#),
        job
    );
    assert_ne!(schedule(&mut db, "refresh_matviews", "{}"), job);
    let row = db
        .query_one(
            "SELECT runner, command, cron_job_id FROM dbopt.jobs WHERE job_id = $1",
            &[&job],
        )
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, Option<i64>>(2)
        ),
        (
            "worker".into(),
            "CALL dbopt.refresh_matviews(force => 'true'::boolean)".into(),
            None
        )
    );
    assert_eq!(
        db.query("SELECT * FROM dbopt.job_runs", &[]).unwrap().len(),
        0
    );
}

//! dbopt.schedule() against live servers, with pg_cron and with dbopt's own background worker:
//! jobs run on the minute (or every N seconds), as the role that scheduled them.

use dbopt_integration_tests::index_builds::{self, apply_index, build_state};
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

/// Row count and checksum of the (id, at, v) rows `tables` (a query) returns.
fn checksum(db: &mut Client, tables: &str) -> (i64, i64) {
    columns(db.query_one(
        &format!(
            "SELECT count(*), sum(hashtext(format('%s|%s|%s', id, at, v))) FROM ({tables}) rows"
        ),
        &[],
    ))
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
    // Schedules in seconds came with pg_cron 1.5; an older pg_cron is not handed one.
    let version: String = db
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'",
            &[],
        )
        .unwrap()
        .get(0);
    let seconds = db.query_one("SELECT dbopt.schedule('snapshot_stats', '30 seconds')", &[]);
    if ["1.0", "1.1", "1.2", "1.3", "1.4"]
        .iter()
        .any(|old| version.starts_with(old))
    {
        let e = seconds.unwrap_err();
        assert_eq!(sqlstate(&e), "0A000", "{:?}", db_error(&e));
        assert!(
            db_error(&e).0.contains("need pg_cron 1.5"),
            "{:?}",
            db_error(&e)
        );
    } else {
        seconds.unwrap();
    }
    // dbopt.job_runner = 'worker' hands a job to dbopt's worker even where pg_cron runs.
    db.batch_execute("SET dbopt.job_runner = 'worker'").unwrap();
    let for_worker: i64 = db
        .query_one("SELECT dbopt.schedule('snapshot_stats', '30 seconds')", &[])
        .unwrap()
        .get(0);
    db.batch_execute("RESET dbopt.job_runner").unwrap();
    let row = db
        .query_one(
            "SELECT runner, cron_job_id FROM dbopt.jobs WHERE job_id = $1",
            &[&for_worker],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, Option<i64>>(1)),
        ("worker".into(), None)
    );
    db.query_one("SELECT dbopt.unschedule($1)", &[&for_worker])
        .unwrap();
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

    // Only the three runners exist; asking for pg_cron where it is not is refused.
    let e = db
        .batch_execute("SET dbopt.job_runner = 'cron'")
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22023");
    db.batch_execute("SET dbopt.job_runner = 'pg_cron'")
        .unwrap();
    let e = refuse(&mut db, "snapshot_stats", "@daily", "{}");
    assert_eq!(sqlstate(&e), "55000");
    assert!(
        db_error(&e).0.contains("needs pg_cron"),
        "{:?}",
        db_error(&e)
    );
    db.batch_execute("RESET dbopt.job_runner").unwrap();
    // Neither pg_cron nor the worker here: dbopt.apply_index says so and how to do without.
    db.batch_execute("CREATE TABLE t (a int)").unwrap();
    let e = db
        .query_one(
            "SELECT dbopt.apply_index('CREATE INDEX CONCURRENTLY t_a ON public.t (a)')",
            &[],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "55000");
    let (message, _, hint) = db_error(&e);
    assert_eq!(
        message,
        "dbopt.apply_index needs pg_cron or dbopt's background worker: pg_cron is not loaded \
         through shared_preload_libraries, and dbopt's background worker does not run jobs in \
         database \"plain\""
    );
    let hint = hint.unwrap();
    assert!(
        hint.contains("dbopt.worker_databases") && hint.contains("run it yourself"),
        "{hint}"
    );
    // Asked for the worker, the error is about the worker alone.
    db.batch_execute("SET dbopt.job_runner = 'worker'").unwrap();
    let e = db
        .query_one(
            "SELECT dbopt.apply_index('CREATE INDEX CONCURRENTLY t_a ON public.t (a)')",
            &[],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "55000");
    assert_eq!(
        db_error(&e).0,
        "dbopt.apply_index is to use dbopt's background worker (dbopt.job_runner), but dbopt's \
         background worker does not run jobs in database \"plain\""
    );
    assert!(!db_error(&e).2.unwrap().contains("For pg_cron"));
    db.batch_execute("RESET dbopt.job_runner").unwrap();
    let jobs: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM dbopt.jobs) + (SELECT count(*) FROM dbopt.index_builds)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(jobs, 0);

    // Without pg_cron the job is kept for dbopt's own worker, with a warning that no worker
    // serves this database yet; asking again is the same job.
    let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut db = {
        let seen = warnings.clone();
        cluster
            .config("plain")
            .notice_callback(move |notice| {
                seen.lock().unwrap().push(format!(
                    "{}: {} HINT: {}",
                    notice.severity(),
                    notice.message(),
                    notice.hint().unwrap_or("")
                ))
            })
            .connect(postgres::NoTls)
            .unwrap()
    };
    let job = schedule(&mut db, "refresh_matviews", r#"{"force": true}"#);
    let warned = warnings.lock().unwrap().clone();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].starts_with(&format!(
            "WARNING: dbopt job {job} will not run yet: dbopt's background worker does not run \
             jobs in database \"plain\" HINT: Add dbopt to shared_preload_libraries"
        )),
        "{warned:?}"
    );
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

/// Runs of `job` the worker finished, oldest first: (outcome, sqlstate, message).
fn finished_runs(db: &mut Client, job: i64) -> Vec<(String, Option<String>, Option<String>)> {
    db.query(
        "SELECT outcome, sqlstate, message FROM dbopt.job_runs
          WHERE job_id = $1 AND outcome <> 'running' ORDER BY run_id",
        &[&job],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[test]
fn without_pg_cron_the_worker_runs_each_job_as_its_owner_and_survives_failures() {
    let cluster = Cluster::with_dbopt_worker("wk");
    let mut db = cluster.create_database("wk", true);
    db.batch_execute(
        "CREATE ROLE clerk LOGIN;
         CREATE SCHEMA clerk AUTHORIZATION clerk;
         CREATE TABLE ev_hist (id int PRIMARY KEY, at timestamptz NOT NULL, v int);
         INSERT INTO ev_hist SELECT g, now() - g * interval '1 day', g
           FROM generate_series(1, 1000) g;",
    )
    .unwrap();
    short_of_partitions(&mut db, "public.ev");
    short_of_partitions(&mut db, "public.untouched");
    short_of_partitions(&mut db, "public.doomed");
    let mut clerk = cluster.connect_as("wk", "clerk");
    short_of_partitions(&mut clerk, "clerk.ev");
    let before = checksum(&mut db, "SELECT id, at, v FROM ev_hist");
    db.query_one(
        "SELECT dbopt.set_archive_policy('ev_hist', 'at', '90 days')",
        &[],
    )
    .unwrap();

    let scheduled = Instant::now();
    let owners_job = schedule(&mut db, "maintenance", r#"{"parent": "public.ev"}"#);
    let clerks_job = schedule(&mut clerk, "maintenance", "{}");
    let failing = schedule(&mut db, "maintenance", r#"{"parent": "public.doomed"}"#);
    let archiving = schedule(&mut db, "archive", "{}");
    let healthy: i64 = db
        .query_one("SELECT dbopt.schedule('snapshot_stats', '10 seconds')", &[])
        .unwrap()
        .get(0);
    db.batch_execute("DROP TABLE doomed").unwrap();
    let runners: Vec<String> = db
        .query("SELECT DISTINCT runner FROM dbopt.jobs", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(runners, ["worker"]);

    let untouched = partitions(&mut db, "public.untouched");
    wait_until("both maintenance jobs to create partitions", || {
        partitions(&mut db, "public.ev") >= 6 && partitions(&mut db, "clerk.ev") >= 6
    });
    eprintln!(
        "maintenance by the worker: partitions made {:.0} s after scheduling",
        scheduled.elapsed().as_secs_f64()
    );
    // The clerk's run could not touch the owner's partition set, and made the clerk's
    // partitions as the clerk.
    assert_eq!(partitions(&mut db, "public.untouched"), untouched);
    let foreign_owners: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'clerk.ev'::regclass AND c.relowner <> 'clerk'::regrole",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(foreign_owners, 0);
    // Each role sees the runs of its own jobs only.
    let seen: Vec<i64> = clerk
        .query("SELECT DISTINCT job_id FROM dbopt.job_runs", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seen, [clerks_job]);
    assert_eq!(finished_runs(&mut clerk, clerks_job)[0].0, "ok");
    assert_eq!(finished_runs(&mut db, owners_job)[0].0, "ok");

    // The failing job is recorded with its error; the jobs due at the same time ran, and the
    // ten-second job kept running after it.
    let failed = finished_runs(&mut db, failing);
    assert_eq!(failed[0].0, "failed", "{failed:?}");
    assert_eq!(failed[0].1.as_deref(), Some("42P01"), "{failed:?}");
    assert!(
        failed[0].2.as_deref().unwrap_or("").contains("doomed"),
        "{failed:?}"
    );
    assert_eq!(finished_runs(&mut db, archiving)[0].0, "ok");
    wait_until("two more runs of the ten-second job", || {
        finished_runs(&mut db, healthy).len() >= 3
    });
    assert!(finished_runs(&mut db, healthy).iter().all(|r| r.0 == "ok"));
    let hot: i64 = db
        .query_one("SELECT count(*) FROM ev_hist", &[])
        .unwrap()
        .get(0);
    assert_eq!(hot, 89);
    assert_eq!(
        checksum(
            &mut db,
            "SELECT id, at, v FROM ev_hist UNION ALL SELECT id, at, v FROM ev_hist_archive"
        ),
        before
    );

    // Unscheduled, a job runs no more.
    assert!(db
        .query_one("SELECT dbopt.unschedule($1)", &[&healthy])
        .unwrap()
        .get::<_, bool>(0));
    std::thread::sleep(Duration::from_secs(2));
    let runs = finished_runs(&mut db, healthy).len();
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(finished_runs(&mut db, healthy).len(), runs);
}

#[test]
fn the_worker_builds_indexes_stops_on_sigterm_and_records_interrupted_runs() {
    let mut cluster = Cluster::with_dbopt_worker("ix");
    let mut db = cluster.create_database("ix", true);
    let (built, failed) = index_builds::queue_two_builds(&mut db);
    wait_until("both builds to end", || {
        [built, failed]
            .iter()
            .all(|id| !["queued", "running"].contains(&build_state(&mut db, *id).0.as_str()))
    });
    index_builds::assert_one_built_one_failed_and_cleaned_up(&mut db, built, failed);
    let runs: Vec<(String, Option<String>)> = db
        .query(
            "SELECT outcome, sqlstate FROM dbopt.job_runs WHERE task = 'apply_index'
              ORDER BY run_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        runs,
        [("ok".into(), None), ("failed".into(), Some("23505".into()))]
    );

    // A build waiting for a lock, its process terminated: recorded as failed at once.
    let mut holder = cluster.connect("ix");
    holder
        .batch_execute("BEGIN; LOCK t IN SHARE UPDATE EXCLUSIVE MODE")
        .unwrap();
    // The owner's statement_timeout holds for a run as for a session.
    db.batch_execute("ALTER ROLE postgres IN DATABASE ix SET statement_timeout = '2s'")
        .unwrap();
    let timed_out = apply_index(&mut db, "CREATE INDEX CONCURRENTLY t_b_idx ON public.t (b)");
    wait_until("the build to time out", || {
        build_state(&mut db, timed_out).0 == "failed"
    });
    let run: (String, String) = {
        let row = db
            .query_one(
                "SELECT sqlstate, message FROM dbopt.job_log WHERE index_build = $1",
                &[&timed_out],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(
        run,
        (
            "57014".into(),
            "canceling statement due to statement timeout".into()
        )
    );
    db.batch_execute("ALTER ROLE postgres IN DATABASE ix RESET statement_timeout")
        .unwrap();

    let waiting = apply_index(&mut db, "CREATE INDEX CONCURRENTLY t_b_idx ON public.t (b)");
    let job_pid = |db: &mut Client| -> Option<i32> {
        db.query_opt(
            "SELECT pid FROM pg_stat_activity
              WHERE backend_type = 'dbopt job' AND wait_event_type = 'Lock'",
            &[],
        )
        .unwrap()
        .map(|r| r.get(0))
    };
    wait_until("the build to wait for the lock", || {
        job_pid(&mut db).is_some()
    });
    let pid = job_pid(&mut db).unwrap();
    db.query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    wait_until("the terminated build to be recorded", || {
        build_state(&mut db, waiting).0 == "failed"
    });
    let message = build_state(&mut db, waiting).1.unwrap_or_default();
    assert!(
        message.contains("ended before recording an outcome"),
        "{message}"
    );

    // SIGTERM stops the scheduler cleanly: no error, no restart.
    let another = apply_index(
        &mut db,
        "CREATE INDEX CONCURRENTLY t_b_idx2 ON public.t (b)",
    );
    wait_until("the next build to wait for the lock", || {
        job_pid(&mut db).is_some()
    });
    let schedulers = |db: &mut Client| -> i64 {
        db.query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'dbopt scheduler'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    assert_eq!(schedulers(&mut db), 1);
    // (Before the database existed, the scheduler's attempts to connect failed: only what
    // follows counts.)
    let logged_before = cluster.log().len();
    db.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE backend_type = 'dbopt scheduler'",
    )
    .unwrap();
    wait_until("the scheduler to stop", || schedulers(&mut db) == 0);
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(
        schedulers(&mut db),
        0,
        "a stopped scheduler is not restarted"
    );
    let log = cluster.log()[logged_before..].to_owned();
    assert!(
        log.contains("dbopt scheduler in database \"ix\" stopped"),
        "{log}"
    );
    assert!(
        !log.contains("\"dbopt scheduler\" (PID"),
        "the scheduler exited with an error:\n{log}"
    );

    // Its run, still waiting, ends with nobody watching; the next scheduler (after a restart)
    // records it as interrupted and runs what is queued.
    let pid = job_pid(&mut db).unwrap();
    db.query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    holder.batch_execute("COMMIT").unwrap();
    drop(holder);
    drop(db);
    cluster.restart();
    let mut db = cluster.connect("ix");
    wait_until("the interrupted build to be recorded", || {
        build_state(&mut db, another).0 == "failed"
    });
    let message = build_state(&mut db, another).1.unwrap_or_default();
    assert!(message.contains("interrupted"), "{message}");
    let again = apply_index(
        &mut db,
        "CREATE INDEX CONCURRENTLY t_b_idx3 ON public.t (b)",
    );
    wait_until("a build after the restart", || {
        build_state(&mut db, again).0 == "built"
    });
}

//! Partition maintenance and online conversion against a live server with concurrent sessions.

use dbopt_integration_tests::{Cluster, Workload};
use postgres::Client;
use std::time::{Duration, Instant};

fn daily_parent(db: &mut Client, name: &str, premake: i32) {
    db.batch_execute(&format!(
        "CREATE TABLE {name} (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, v int)
           PARTITION BY RANGE (at);
         SELECT count(*) FROM dbopt.create_partitions('{name}', 'at', '1 day', premake => {premake});"
    ))
    .unwrap();
}

fn checksum(db: &mut Client, table: &str) -> (i64, String) {
    let row = db
        .query_one(
            &format!(
                "SELECT count(*), coalesce(md5(string_agg(format('%s|%s|%s', id, at, v), ',' ORDER BY id)), '')
                   FROM {table}"
            ),
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn maintenance_gives_up_on_a_locked_parent_and_never_queues_the_writer() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("locked", true);
    daily_parent(&mut db, "busy", 1);
    daily_parent(&mut db, "quiet", 1);
    db.batch_execute("UPDATE dbopt.partition_config SET premake = 4, future_limit = 12")
        .unwrap();

    // A long transaction that has read the parent holds ACCESS SHARE on every partition,
    // including the default one that ATTACH must lock exclusively.
    let mut holder = cluster.connect("locked");
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM busy")
        .unwrap();
    // The writer gives up after 100ms of waiting: had it queued behind maintenance's lock
    // request (up to dbopt.lock_timeout = 500ms each attempt), it would count errors.
    let writer = Workload::spawn(cluster.config("locked"), 1, |c, _, i| {
        c.batch_execute("SET lock_timeout = '100ms'")?;
        c.execute(
            "INSERT INTO busy (at, v) VALUES (now(), $1)",
            &[&(i as i32)],
        )?;
        Ok(())
    });
    std::thread::sleep(Duration::from_millis(300));

    let mut maintenance = cluster.connect("locked");
    // Separate statements: several in one simple query form a transaction, where CALL cannot
    // COMMIT.
    maintenance
        .batch_execute("SET dbopt.lock_timeout = '500ms'")
        .unwrap();
    let started = Instant::now();
    maintenance
        .batch_execute("CALL dbopt.run_maintenance(lock_retries => 2)")
        .unwrap();
    let took = started.elapsed();
    let report = writer.stop();
    assert_eq!(report.error_count(), 0, "the writer waited: {report:?}");
    assert!(report.ok > 0);
    assert!(took < Duration::from_secs(20), "gave up in {took:?}");

    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let busy = db
        .query_one(
            "SELECT outcome, sqlstate, detail FROM dbopt.partition_log
              WHERE parent = 'busy'::regclass AND action = 'maintain' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    let (outcome, state, detail): (String, String, String) =
        (busy.get(0), busy.get(1), busy.get(2));
    assert_eq!(
        (outcome.as_str(), state.as_str()),
        ("lock_timeout", "55P03")
    );
    assert!(detail.contains("3 attempt(s)"), "{detail}");
    assert!(detail.contains(&format!("pid {holder_pid}")), "{detail}");
    // The other parent was maintained in the same run.
    let quiet: i64 = db
        .query_one(
            "SELECT count(*) FROM dbopt.partition_log
              WHERE parent = 'quiet'::regclass AND action = 'create' AND detail IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(quiet, 3);

    // Once the long transaction ends, the next run catches up.
    holder.batch_execute("COMMIT").unwrap();
    maintenance
        .batch_execute("CALL dbopt.run_maintenance('busy')")
        .unwrap();
    let runway: String = db
        .query_one(
            "SELECT runway FROM dbopt.partition_health WHERE parent = 'busy'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(runway.starts_with("4 days"), "{runway}");
}

#[test]
fn rows_in_the_default_partition_are_moved_and_maintenance_succeeds() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("stranded", true);
    daily_parent(&mut db, "ev", 2);
    db.batch_execute(
        "INSERT INTO ev (at, v)
           SELECT now() - interval '10 days' + (g % 5) * interval '1 day', g
             FROM generate_series(1, 5000) g",
    )
    .unwrap();
    let before = checksum(&mut db, "ev");
    assert_eq!(count(&mut db, "SELECT count(*) FROM ev_default"), 5000);

    db.batch_execute("CALL dbopt.run_maintenance()").unwrap();

    assert_eq!(checksum(&mut db, "ev"), before);
    assert_eq!(count(&mut db, "SELECT count(*) FROM ev_default"), 0);
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM dbopt.partition_log WHERE action = 'move_default_rows' AND outcome = 'ok'"
        ),
        5
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM dbopt.partition_log WHERE outcome NOT IN ('ok', 'reported')"
        ),
        0
    );

    // Nothing left to do: the next run passes over the parent without a full check, only
    // noting when it looked.
    let runs = |db: &mut Client| {
        count(
            db,
            "SELECT count(*) FROM dbopt.partition_log WHERE action = 'maintain'",
        )
    };
    let (full_runs, checked_before) = (runs(&mut db), checked_at(&mut db, "ev"));
    db.batch_execute("CALL dbopt.run_maintenance()").unwrap();
    assert_eq!(runs(&mut db), full_runs);
    assert!(checked_at(&mut db, "ev") > checked_before);

    // A row arriving in the default partition makes the next run move it.
    db.batch_execute("INSERT INTO ev (at, v) VALUES (now() - interval '20 days', -1)")
        .unwrap();
    let before = checksum(&mut db, "ev");
    db.batch_execute("CALL dbopt.run_maintenance()").unwrap();
    assert_eq!(runs(&mut db), full_runs + 1);
    assert_eq!(checksum(&mut db, "ev"), before);
    assert_eq!(count(&mut db, "SELECT count(*) FROM ev_default"), 0);
}

/// Rows on one side only, as text, to show what a failed checksum comparison is about.
fn differences(db: &mut Client, left: &str, right: &str) -> Vec<String> {
    db.query(
        &format!(
            "(SELECT 'only in {left}: ' || l::text FROM (TABLE {left} EXCEPT TABLE {right}) l)
             UNION ALL
             (SELECT 'only in {right}: ' || r::text FROM (TABLE {right} EXCEPT TABLE {left}) r)
             LIMIT 20"
        ),
        &[],
    )
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect()
}

fn count(db: &mut Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).unwrap().get(0)
}

fn checked_at(db: &mut Client, parent: &str) -> f64 {
    db.query_one(
        "SELECT extract(epoch FROM checked_at)::float8 FROM dbopt.partition_config
          WHERE parent = $1::text::regclass",
        &[&parent],
    )
    .unwrap()
    .get(0)
}

/// `t` with `rows` rows, one every 15 minutes back from now, and `twin`, a plain copy that
/// writers keep in step with what really happens to `t`.
fn t_and_twin(db: &mut Client, rows: i32) {
    db.batch_execute(&format!(
        "CREATE TABLE t (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                         at timestamptz NOT NULL, v int);
         CREATE TABLE twin (id bigint PRIMARY KEY, at timestamptz NOT NULL, v int);
         INSERT INTO t (at, v) SELECT now() - g * interval '15 minutes', g FROM generate_series(1, {rows}) g;
         INSERT INTO twin SELECT * FROM t;"
    ))
    .unwrap();
}

/// One writer's change to `t` (being converted), mirrored to `twin` (left alone) in the same
/// statement: only what really happened to `t` reaches `twin`. Two statements would each take
/// their own snapshot, and a row whose insert commits between them would be changed in `twin`
/// alone.
fn random_change(c: &mut Client, session: usize, i: u64) -> Result<(), postgres::Error> {
    let pick = (i * 7919 + session as u64 * 104_729) % 60_000 + 1;
    let id = pick as i64;
    let mut tx = c.transaction()?;
    match i % 3 {
        0 => {
            tx.execute(
                "WITH n AS (INSERT INTO t (at, v) VALUES (now() - $1 * interval '1 hour', $2)
                            RETURNING id, at, v)
                 INSERT INTO twin SELECT * FROM n",
                &[&((pick % 9000) as f64), &(i as i32)],
            )?;
        }
        1 => {
            tx.execute(
                "WITH u AS (UPDATE t SET v = v + 1, at = at + interval '20 days' WHERE id = $1
                            RETURNING id, at, v)
                 UPDATE twin SET v = u.v, at = u.at FROM u WHERE twin.id = u.id",
                &[&id],
            )?;
        }
        _ => {
            tx.execute(
                "WITH d AS (DELETE FROM t WHERE id = $1 RETURNING id)
                 DELETE FROM twin USING d WHERE twin.id = d.id",
                &[&id],
            )?;
        }
    }
    tx.commit()
}

#[test]
fn partition_table_with_four_writers_loses_and_duplicates_nothing() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("convert", true);
    t_and_twin(&mut db, 50000);
    db.batch_execute("CREATE INDEX t_at ON t (at)").unwrap();
    let writers = Workload::spawn(cluster.config("convert"), 4, random_change);
    std::thread::sleep(Duration::from_millis(500));

    let mut converter = cluster.connect("convert");
    converter
        .batch_execute("CALL dbopt.partition_table('t', 'at', '1 month', batch_size => 2000)")
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let report = writers.stop();
    assert!(report.ok > 100, "{report:?}");
    assert_eq!(report.error_count(), 0, "{report:?}");

    let kind: String = db
        .query_one(
            "SELECT relkind::text FROM pg_class WHERE oid = 't'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(kind, "p");
    assert_eq!(
        checksum(&mut db, "t"),
        checksum(&mut db, "twin"),
        "rows that differ: {:?} OLD: {:?}",
        differences(&mut db, "t", "twin"),
        differences(&mut db, "t_dbopt_old", "twin")
    );
    // Nothing of the conversion's machinery is left behind.
    let leftovers: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'dbopt%')
                  + (SELECT count(*) FROM pg_class WHERE relname LIKE '%dbopt_changes')
                  + (SELECT count(*) FROM dbopt.partition_conversion)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0);
}

/// Writers that go for the newest rows, the ones the swap replays under its lock.
fn change_newest(c: &mut Client, session: usize, i: u64) -> Result<(), postgres::Error> {
    let sql = match i % 3 {
        0 => {
            "WITH n AS (INSERT INTO t (at, v) VALUES (now() - ($1::bigint % 9000) * interval '1 hour', 0)
                        RETURNING id, at, v)
             INSERT INTO twin SELECT * FROM n"
        }
        1 => {
            "WITH u AS (UPDATE t SET v = v + 1, at = at + interval '20 days'
                         WHERE id = (SELECT max(id) FROM twin) - $1::bigint % 3 RETURNING id, at, v)
             UPDATE twin SET v = u.v, at = u.at FROM u WHERE twin.id = u.id"
        }
        _ => {
            "WITH d AS (DELETE FROM t WHERE id = $1::bigint % 6000 RETURNING id)
             DELETE FROM twin USING d WHERE twin.id = d.id"
        }
    };
    let mut tx = c.transaction()?;
    tx.execute(sql, &[&((i * 7919 + session as u64 * 104_729) as i64)])?;
    tx.commit()
}

#[test]
fn repeated_swaps_under_writers_of_the_newest_rows_lose_nothing() {
    let cluster = Cluster::plain();
    for round in 0..10 {
        let name = format!("swap{round}");
        let mut db = cluster.create_database(&name, true);
        t_and_twin(&mut db, 5000);
        let writers = Workload::spawn(cluster.config(&name), 8, change_newest);
        std::thread::sleep(Duration::from_millis(200));
        cluster
            .connect(&name)
            .batch_execute("CALL dbopt.partition_table('t', 'at', '1 month', batch_size => 1000)")
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let report = writers.stop();
        // Once partitioned, an update that finds its row moved to another partition by a
        // concurrent update fails with 40001 (PostgreSQL's rule); nothing else may fail.
        assert!(
            report.errors.keys().all(|code| code == "40001"),
            "round {round}: {report:?}"
        );
        assert_eq!(
            checksum(&mut db, "t"),
            checksum(&mut db, "twin"),
            "round {round}: rows that differ: {:?}",
            differences(&mut db, "t", "twin")
        );
    }
}

#[test]
fn a_conversion_killed_mid_copy_resumes_without_loss() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("resume", true);
    t_and_twin(&mut db, 60000);
    let writers = Workload::spawn(cluster.config("resume"), 2, random_change);
    let mut converter = cluster.connect("resume");
    let pid: i32 = converter
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let call = std::thread::spawn(move || {
        converter
            .batch_execute("CALL dbopt.partition_table('t', 'at', '1 month', batch_size => 500)")
    });
    // Kill the backend once a few batches are committed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let copied: Option<i64> = db
            .query_opt("SELECT rows_copied FROM dbopt.partition_conversion", &[])
            .unwrap()
            .map(|r| r.get(0));
        if copied.is_some_and(|n| n >= 5000) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.kill_backend(pid);
    assert!(
        call.join().unwrap().is_err(),
        "the call died with its backend"
    );
    cluster.wait_ready(Duration::from_secs(30));

    let mut again = cluster.connect("resume");
    again
        .batch_execute("CALL dbopt.partition_table('t', 'at', '1 month', batch_size => 5000)")
        .unwrap();
    let report = writers.stop();
    let mut db = cluster.connect("resume");
    assert_eq!(
        checksum(&mut db, "t"),
        checksum(&mut db, "twin"),
        "{report:?}"
    );
}

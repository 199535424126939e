//! dbopt.db_health() and its sections against a live server, each on a situation built for it:
//! sessions that block, sit idle in a transaction or run long; a sequence at 95% of int4; a
//! table past autovacuum's trigger under its own reloptions; a half-emptied table; an index
//! unused for days as snapshots measure it; and a role that may not see everything.

use dbopt_integration_tests::{db_error, sqlstate, Cluster, ClusterOptions};
use postgres::Client;
use std::time::{Duration, Instant};

fn cluster() -> Cluster {
    Cluster::start(ClusterOptions::default().preload("pg_stat_statements"))
}

/// Waits until `query` returns true.
fn wait_for(db: &mut Client, query: &str) {
    let start = Instant::now();
    while !db.query_one(query, &[]).unwrap().get::<_, bool>(0) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {query}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A row's first columns as a tuple, typed by the binding it is assigned to.
macro_rules! columns {
    ($row:expr, $($i:literal),+) => {{
        let row = $row;
        ($(row.get($i)),+)
    }};
}

fn pid(db: &mut Client) -> i32 {
    db.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0)
}

#[test]
fn sessions_that_block_idle_or_run_long_are_found_and_graded() {
    let cluster = cluster();
    let mut db = cluster.create_database("sessions", true);
    db.batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .unwrap();

    // Root blocker: holds the lock, idle in its transaction.
    let mut holder = cluster.connect("sessions");
    holder
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let holder_pid = pid(&mut holder);
    // Two waiters, the second queued behind both.
    let waiter = |sql: &'static str| {
        let mut c = cluster.connect("sessions");
        let p = pid(&mut c);
        (p, std::thread::spawn(move || c.batch_execute(sql).unwrap()))
    };
    let (reader_pid, reader) = waiter("SELECT count(*) FROM t");
    wait_for(
        &mut db,
        &format!("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = {reader_pid} AND wait_event_type = 'Lock')"),
    );
    let (locker_pid, locker) = waiter("BEGIN; LOCK TABLE t IN SHARE MODE; COMMIT");
    wait_for(
        &mut db,
        &format!("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = {locker_pid} AND wait_event_type = 'Lock')"),
    );

    let chain: Vec<(i32, i32, i32, Vec<i32>, String)> = db
        .query(
            "SELECT root_pid, pid, depth, coalesce(blocked_by, '{}'), severity
               FROM dbopt.health_blocking()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        chain[0].1, holder_pid,
        "the root blocker comes first: {chain:?}"
    );
    assert_eq!(chain[0].2, 0);
    assert!(chain.iter().all(|c| c.0 == holder_pid), "{chain:?}");
    let reader_row = chain.iter().find(|c| c.1 == reader_pid).expect("reader");
    assert!(reader_row.3.contains(&holder_pid), "{chain:?}");
    assert!(
        chain.iter().any(|c| c.1 == locker_pid && c.2 >= 1),
        "{chain:?}"
    );
    // Seconds-old waits are under the 10 s default.
    assert!(chain.iter().all(|c| c.4 == "ok"), "{chain:?}");

    let idle = |db: &mut Client| -> String {
        db.query_one(
            "SELECT severity FROM dbopt.health_long_sessions() WHERE pid = $1",
            &[&holder_pid],
        )
        .unwrap()
        .get(0)
    };
    assert_eq!(idle(&mut db), "ok");
    // Thresholds are data: lower them for every object and the same sessions become findings.
    db.batch_execute(
        "INSERT INTO dbopt.health_thresholds (check_name, warning, critical)
         VALUES ('idle_in_transaction', 0, 3600), ('blocked_session', 0, 3600)",
    )
    .unwrap();
    assert_eq!(idle(&mut db), "warning");
    let graded: Vec<String> = db
        .query("SELECT severity FROM dbopt.health_blocking()", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(graded.iter().all(|s| s == "warning"), "{graded:?}");

    let connections: (i64, String) = columns!(
        db.query_one(
            "SELECT connections, severity FROM dbopt.health_connections() WHERE state = 'total'",
            &[],
        )
        .unwrap(),
        0,
        1
    );
    assert!(connections.0 >= 4, "{connections:?}");
    assert_eq!(connections.1, "ok");

    let report: serde_json::Value = db
        .query_one("SELECT dbopt.db_health()", &[])
        .unwrap()
        .get(0);
    assert_eq!(report["status"], "warning", "{report:#}");
    assert!(
        report["sections"]["long_sessions"]["warning"]
            .as_i64()
            .unwrap()
            >= 1
    );
    assert!(report["sections"]["blocking"]["rows"][0]["pid"] == holder_pid);

    holder.batch_execute("COMMIT").unwrap();
    reader.join().unwrap();
    locker.join().unwrap();
}

#[test]
fn tables_sequences_and_statements_are_graded_against_their_thresholds() {
    let cluster = cluster();
    let mut db = cluster.create_database("tables", true);
    db.batch_execute(
        "CREATE EXTENSION pg_stat_statements;
         -- A sequence at 95% of int4.
         CREATE TABLE tickets (id serial PRIMARY KEY, note text);
         SELECT setval('tickets_id_seq', 2040109465);
         -- Past autovacuum's trigger under its own reloptions (10 dead tuples).
         CREATE TABLE queue (id int, payload text)
           WITH (autovacuum_enabled = false, autovacuum_vacuum_threshold = 10,
                 autovacuum_vacuum_scale_factor = 0);
         INSERT INTO queue SELECT g, 'x' FROM generate_series(1, 1000) g;
         ANALYZE queue;
         DELETE FROM queue WHERE id <= 100;
         -- Four rows in five deleted and vacuumed: the pages stay.
         CREATE TABLE events (id bigint, at timestamptz, kind int) WITH (autovacuum_enabled = false);
         INSERT INTO events SELECT g, now(), g % 7 FROM generate_series(1, 200000) g;
         DELETE FROM events WHERE id % 5 <> 0;",
    )
    .unwrap();
    // The deletes reach the statistics before ANALYZE resets changed_since_analyze.
    db.batch_execute("SELECT pg_stat_force_next_flush()")
        .unwrap();
    db.batch_execute("VACUUM ANALYZE events").unwrap();
    db.batch_execute("SELECT pg_sleep(0.6); SELECT pg_stat_force_next_flush()")
        .unwrap();

    let sequence: (String, String, f64, String) = columns!(
        db.query_one(
            "SELECT column_name, column_type::text, share_used, severity
               FROM dbopt.health_sequences() WHERE sequence_name = 'tickets_id_seq'::regclass",
            &[],
        )
        .unwrap(),
        0,
        1,
        2,
        3
    );
    assert_eq!(sequence.0, "public.tickets.id");
    assert_eq!(sequence.1, "integer");
    assert!((sequence.2 - 0.95).abs() < 0.001, "{sequence:?}");
    assert_eq!(sequence.3, "critical");

    let vacuum: (i64, i64, f64, bool, String) = columns!(
        db.query_one(
            "SELECT dead_tuples, vacuum_trigger, vacuum_ratio, autovacuum_enabled, severity
               FROM dbopt.health_vacuum() WHERE table_name = 'queue'::regclass",
            &[],
        )
        .unwrap(),
        0,
        1,
        2,
        3,
        4
    );
    assert_eq!(vacuum.0, 100);
    assert_eq!(
        vacuum.1, 10,
        "the table's reloptions, not the server's 50 + 20%"
    );
    assert_eq!(vacuum.2, 10.0);
    assert!(!vacuum.3);
    assert_eq!(vacuum.4, "critical");

    let bloat = |db: &mut Client| -> (f64, String, String, Vec<String>) {
        columns!(
            db.query_one(
                "SELECT bloat_ratio, confidence, severity, reasons FROM dbopt.health_bloat()
              WHERE table_name = 'events'::regclass",
                &[],
            )
            .unwrap(),
            0,
            1,
            2,
            3
        )
    };
    let before = bloat(&mut db);
    assert!(before.0 > 0.7 && before.0 < 0.9, "{before:?}");
    assert_eq!(
        (before.1.as_str(), before.2.as_str()),
        ("high", "critical"),
        "{before:?}"
    );
    db.batch_execute("VACUUM FULL events").unwrap();
    db.batch_execute("ANALYZE events").unwrap();
    let after = bloat(&mut db);
    assert!(after.0 < 0.1, "{after:?}");
    // Changed since its analyze beyond a fifth of its rows: the estimate is not trusted.
    db.batch_execute(
        "INSERT INTO events SELECT g, now(), 1 FROM generate_series(1, 30000) g;
         SELECT pg_stat_force_next_flush()",
    )
    .unwrap();
    let stale = bloat(&mut db);
    assert_eq!((stale.1.as_str(), stale.2.as_str()), ("low", "info"));

    let slow: (f64, String) = columns!(
        db.query_one(
            "SELECT mean_ms, severity FROM dbopt.health_slow_queries()
              WHERE query LIKE 'SELECT pg_sleep%'",
            &[],
        )
        .unwrap(),
        0,
        1
    );
    assert!(slow.0 >= 600.0, "{slow:?}");
    assert_eq!(slow.1, "warning");

    let runway: (i64, i64, String) = columns!(
        db.query_one(
            "SELECT age, runway, severity FROM dbopt.health_wraparound()
              WHERE scope = 'database' AND object_name = current_database() AND kind = 'xid'",
            &[],
        )
        .unwrap(),
        0,
        1,
        2
    );
    assert_eq!(runway.0 + runway.1, 2_147_483_647 - 3_000_000);
    assert_eq!(runway.2, "ok");

    // Per-object thresholds win over the defaults: the sequence is fine by its owner's measure.
    db.batch_execute(
        "INSERT INTO dbopt.health_thresholds VALUES ('sequence_exhaustion', 'tickets_id_seq', 0.97, 0.99)",
    )
    .unwrap();
    let relaxed: String = db
        .query_one(
            "SELECT severity FROM dbopt.health_sequences() WHERE sequence_name = 'tickets_id_seq'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(relaxed, "ok");

    let report: serde_json::Value = db
        .query_one("SELECT dbopt.db_health(rows_per_section => 1)", &[])
        .unwrap()
        .get(0);
    assert_eq!(report["status"], "critical", "{report:#}");
    assert_eq!(report["note"], serde_json::Value::Null);
    let vacuum_section = &report["sections"]["vacuum"];
    assert_eq!(vacuum_section["critical"], 1, "{vacuum_section:#}");
    assert_eq!(vacuum_section["rows"][0]["table_name"], "public.queue");
    assert_eq!(
        report["sections"]["sizes"]["rows"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(
        report["sections"]["sizes"]["rows_left_out"]
            .as_i64()
            .unwrap()
            >= 2
    );

    // A role without pg_read_all_stats gets the report and a note, not an error.
    db.batch_execute("CREATE ROLE viewer LOGIN").unwrap();
    let mut viewer = cluster.connect_as("tables", "viewer");
    let seen: serde_json::Value = viewer
        .query_one("SELECT dbopt.db_health()", &[])
        .unwrap()
        .get(0);
    assert!(
        seen["note"].as_str().unwrap().contains("pg_read_all_stats"),
        "{seen:#}"
    );
    let hidden: String = viewer
        .query_one(
            "SELECT note FROM dbopt.health_sequences() WHERE sequence_name = 'tickets_id_seq'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        hidden.starts_with("no SELECT or USAGE privilege"),
        "{hidden}"
    );

    // Bad input: a specific SQLSTATE, a message naming the argument, nothing written.
    for (sql, code, words) in [
        ("SELECT dbopt.db_health(0)", "22023", "rows_per_section"),
        ("SELECT dbopt.snapshot_stats('-1 day')", "22023", "keep"),
        ("SELECT * FROM dbopt.health_slow_queries(0)", "22023", "top"),
        (
            "INSERT INTO dbopt.health_thresholds (check_name, warning, critical) VALUES ('nope', 1, 2)",
            "23503",
            "health_checks",
        ),
    ] {
        let e = db.batch_execute(sql).unwrap_err();
        assert_eq!(sqlstate(&e), code, "{sql}: {e}");
        let (message, detail, _) = db_error(&e);
        assert!(
            format!("{message} {}", detail.unwrap_or_default()).contains(words),
            "{sql}: {message}"
        );
    }
    let snapshots: i64 = db
        .query_one("SELECT count(*) FROM dbopt.stat_snapshots", &[])
        .unwrap()
        .get(0);
    assert_eq!(snapshots, 0);
    // Viewer may not change the defaults everyone is judged by.
    let e = viewer
        .batch_execute("UPDATE dbopt.health_thresholds SET warning = 0.99")
        .map(|_| ())
        .and_then(|_| {
            viewer.batch_execute(
                "INSERT INTO dbopt.health_thresholds (check_name, warning, critical)
                 VALUES ('table_bloat', 0.9, 0.95)",
            )
        })
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e}");
}

#[test]
fn snapshots_measure_how_long_an_index_has_gone_unused_and_how_fast_tables_grow() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("snapshots", true);
    db.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, status text, customer int);
         INSERT INTO orders SELECT g, 'new', g % 100 FROM generate_series(1, 5000) g;
         CREATE INDEX orders_customer_idx ON orders (customer);
         ANALYZE orders;",
    )
    .unwrap();
    let scan_customer = |db: &mut Client| {
        db.batch_execute(
            "SET enable_seqscan = off; SET enable_bitmapscan = off;
             SELECT count(*) FROM orders WHERE customer = 7;
             RESET enable_seqscan; RESET enable_bitmapscan;
             SELECT pg_stat_force_next_flush();",
        )
        .unwrap();
    };
    scan_customer(&mut db);
    db.batch_execute("SELECT dbopt.snapshot_stats()").unwrap();
    // Ten days pass with no scan of the index (the clock moved back instead).
    db.batch_execute(
        "UPDATE dbopt.index_usage SET changed_at = changed_at - interval '10 days',
                                      first_seen = first_seen - interval '10 days';
         UPDATE dbopt.stat_snapshots SET taken_at = taken_at - interval '10 days';
         INSERT INTO orders SELECT g, 'new', 1 FROM generate_series(5001, 50000) g;",
    )
    .unwrap();
    db.batch_execute("SELECT dbopt.snapshot_stats()").unwrap();

    let usage =
        |db: &mut Client| -> (i64, Option<f64>, String, String) {
            columns!(
db.query_one(
            "SELECT idx_scan, unused_days, evidence, severity FROM dbopt.health_index_usage()
              WHERE index_name = 'orders_customer_idx'::regclass",
            &[],
        )
        .unwrap(),
0, 1, 2, 3)
        };
    let unused = usage(&mut db);
    assert!(
        unused.0 > 0,
        "scanned once, before the snapshots: {unused:?}"
    );
    assert!((unused.1.unwrap() - 10.0).abs() < 0.1, "{unused:?}");
    assert_eq!(
        (unused.2.as_str(), unused.3.as_str()),
        ("snapshots", "warning")
    );
    let health: (String, String) = columns!(
        db.query_one(
            "SELECT problem, detail FROM dbopt.index_health()
              WHERE index_name = 'orders_customer_idx'::regclass",
            &[],
        )
        .unwrap(),
        0,
        1
    );
    assert_eq!(health.0, "unused", "idx_scan > 0, yet none for 10 days");
    assert!(health.1.contains("snapshot_stats measured"), "{}", health.1);

    let growth: (i64, i64) = columns!(
        db.query_one(
            "SELECT total_bytes, growth_bytes_per_day FROM dbopt.health_sizes()
              WHERE table_name = 'orders'::regclass",
            &[],
        )
        .unwrap(),
        0,
        1
    );
    assert!(growth.1 > 0 && growth.1 < growth.0 / 5, "{growth:?}");

    // A scan, then a snapshot: in use again.
    scan_customer(&mut db);
    db.batch_execute("SELECT dbopt.snapshot_stats()").unwrap();
    let used = usage(&mut db);
    assert_eq!(used.2, "snapshots", "{used:?}");
    assert!(used.1.unwrap() < 0.01, "{used:?}");
    assert_eq!(used.3, "ok");
    let reported: i64 = db
        .query_one(
            "SELECT count(*) FROM dbopt.index_health() WHERE index_name = 'orders_customer_idx'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(reported, 0);

    // Snapshots older than `keep` go; index_usage keeps one row per index whatever the count.
    db.batch_execute("SELECT dbopt.snapshot_stats(keep => '1 day')")
        .unwrap();
    let (snapshots, usage_rows): (i64, i64) = columns!(
db
        .query_one(
            "SELECT (SELECT count(*) FROM dbopt.stat_snapshots),
                    (SELECT count(*) FROM dbopt.index_usage WHERE index_name = 'public.orders_customer_idx')",
            &[],
        )
        .unwrap(),
0, 1);
    // The ten-day-old snapshot went; the three since stay.
    assert_eq!((snapshots, usage_rows), (3, 1));
}

#[test]
fn sizes_never_wait_for_a_locked_table_and_are_measured_afresh_each_statement() {
    let cluster = cluster();
    let mut db = cluster.create_database("sizes", true);
    db.batch_execute(
        "CREATE TABLE busy (id int PRIMARY KEY, note text);
         INSERT INTO busy SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g;",
    )
    .unwrap();
    db.batch_execute("VACUUM ANALYZE busy").unwrap();
    let sizes = |db: &mut Client| -> (i64, i64, bool) {
        let row = db
            .query_one(
                "SELECT heap_bytes, index_bytes, exact FROM dbopt.health_sizes()
                  WHERE table_name = 'busy'::regclass",
                &[],
            )
            .unwrap();
        columns!(row, 0, 1, 2)
    };
    let (heap, indexes, exact) = sizes(&mut db);
    assert!(exact);
    let measured: (i64, i64) = columns!(
        db.query_one(
            "SELECT pg_relation_size('busy') + pg_relation_size('busy', 'fsm')
                    + pg_relation_size('busy', 'vm'), pg_indexes_size('busy')",
            &[]
        )
        .unwrap(),
        0,
        1
    );
    assert_eq!((heap, indexes), measured);

    // A migration holds ACCESS EXCLUSIVE: the sizes come from relpages at once, marked inexact,
    // where pg_relation_size would queue behind the lock (the statement_timeout would end it).
    let mut migration = cluster.connect("sizes");
    migration
        .batch_execute("BEGIN; LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    db.batch_execute("SET statement_timeout = '5s'").unwrap();
    let (locked_heap, _, locked_exact) = sizes(&mut db);
    assert!(!locked_exact);
    let relpages: i64 = db
        .query_one(
            "SELECT relpages::int8 * current_setting('block_size')::int8 FROM pg_class
              WHERE relname = 'busy'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(locked_heap, relpages);
    migration.batch_execute("ROLLBACK").unwrap();

    // Sizes are remembered within a statement only: the next one sees the table grow.
    db.batch_execute(
        "INSERT INTO busy SELECT g, repeat('y', 100) FROM generate_series(20001, 40000) g",
    )
    .unwrap();
    let (grown, _, exact) = sizes(&mut db);
    assert!(exact && grown > heap, "{grown} after {heap}");
}

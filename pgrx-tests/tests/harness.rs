//! The harness itself: a crash keeps committed work and loses uncommitted work, a killed backend
//! is survived, and concurrent sessions run side by side. Later issues rely on all three.

use dbopt_integration_tests::{Cluster, Workload};
use std::time::Duration;

#[test]
fn a_crashed_server_recovers_committed_rows_only() {
    let mut cluster = Cluster::plain();
    let mut db = cluster.create_database("crash", false);
    db.batch_execute(
        "CREATE TABLE t(id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 5000)",
    )
    .unwrap();
    let mut open = cluster.connect("crash");
    open.batch_execute("BEGIN; INSERT INTO t SELECT generate_series(5001, 6000)")
        .unwrap();

    cluster.crash();
    assert!(
        db.query_one("SELECT 1", &[]).is_err(),
        "sessions die with the server"
    );
    cluster.restart();

    let mut db = cluster.connect("crash");
    let (count, max): (i64, i32) = {
        let row = db
            .query_one("SELECT count(*), max(id) FROM t", &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((count, max), (5000, 5000));
}

#[test]
fn a_killed_backend_ends_its_session_and_the_server_recovers() {
    let cluster = Cluster::plain();
    let mut victim = cluster.create_database("kill", false);
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    cluster.kill_backend(pid);
    assert!(victim.query_one("SELECT 1", &[]).is_err());
    cluster.wait_ready(Duration::from_secs(30));
    let mut db = cluster.connect("kill");
    let one: i32 = db.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
}

#[test]
fn concurrent_sessions_run_side_by_side() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("workload", false);
    db.batch_execute("CREATE TABLE hits(session int, n bigint)")
        .unwrap();
    let workload = Workload::spawn(cluster.config("workload"), 4, |c, session, i| {
        c.execute(
            "INSERT INTO hits VALUES ($1, $2)",
            &[&(session as i32), &(i as i64)],
        )?;
        Ok(())
    });
    // Every session must have written at least once before we stop.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let sessions: i64 = db
            .query_one("SELECT count(DISTINCT session) FROM hits", &[])
            .unwrap()
            .get(0);
        if sessions == 4 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = workload.stop();
    assert_eq!(report.error_count(), 0, "{report:?}");
    let rows: i64 = db
        .query_one("SELECT count(*) FROM hits", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows as u64, report.ok);
    let sessions: i64 = db
        .query_one("SELECT count(DISTINCT session) FROM hits", &[])
        .unwrap()
        .get(0);
    assert_eq!(sessions, 4);
}

//! Rolling aggregates against a live server: random writes from several sessions with refreshes
//! in between (a differential test: after every step the table equals a recomputation), sixteen
//! sessions on ten hot users, and a REPEATABLE READ writer whose snapshot predates a refresh.

use dbopt_integration_tests::{sqlstate, Cluster, Workload};
use postgres::Client;
use std::time::Duration;

/// A small deterministic generator (splitmix64): the same run every time, no extra crate.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }
}

/// Seed 001's orders, 20,000 of them over the last 60 days, some ahead of now, some without a
/// user, and the seed's aggregate on them with hour buckets (so refreshes cross many).
fn orders_with_aggregate(db: &mut Client) {
    db.batch_execute(
        "CREATE TABLE orders (
             id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             user_id bigint,
             total_amount numeric(12, 2) NOT NULL,
             status text NOT NULL,
             created_at timestamptz NOT NULL);
         CREATE INDEX ON orders (created_at);
         INSERT INTO orders (user_id, total_amount, status, created_at)
         SELECT CASE WHEN g % 101 = 0 THEN NULL ELSE 1 + g % 200 END, (g % 1000) / 10.0,
                CASE WHEN g % 4 = 0 THEN 'pending' ELSE 'completed' END,
                now() + interval '1 hour' - g * interval '259 seconds'
           FROM generate_series(1, 20000) g;
         SELECT dbopt.create_rolling_aggregate(
             name => 'user_spending_30d', source => 'orders', group_by => 'user_id',
             time_column => 'created_at',
             measures => 'count(*) AS total_orders, sum(total_amount) AS total_spent',
             filter => $$status = 'completed'$$, bucket_size => '1 hour',
             lookahead => '2 seconds');",
    )
    .unwrap();
}

/// The differences verify_rolling finds, and those between the table and seed 001's report
/// over the window the table holds, in one snapshot.
fn differences(db: &mut Client) -> (i64, i64) {
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM dbopt.verify_rolling('user_spending_30d')),
                    (SELECT count(*) FROM (
                        (SELECT user_id, total_orders, total_spent FROM user_spending_30d
                         EXCEPT ALL
                         SELECT o.user_id, count(o.id), sum(o.total_amount)
                           FROM orders o, dbopt.rolling_aggregates w
                          WHERE o.created_at >= w.window_start
                            AND o.created_at <= w.window_end AND o.status = 'completed'
                          GROUP BY o.user_id)
                        UNION ALL
                        (SELECT o.user_id, count(o.id), sum(o.total_amount)
                           FROM orders o, dbopt.rolling_aggregates w
                          WHERE o.created_at >= w.window_start
                            AND o.created_at <= w.window_end AND o.status = 'completed'
                          GROUP BY o.user_id
                         EXCEPT ALL
                         SELECT user_id, total_orders, total_spent FROM user_spending_30d)) d)",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// One random write. Times cluster where a refresh moves things: around the window's start
/// (rows about to age out) and just ahead of now, across the 2-second lookahead (rows counted at
/// once or coming due), the rest anywhere in 60 days.
fn random_write(c: &mut Client, session: usize, i: u64) -> Result<(), postgres::Error> {
    let mut r = Random(((session as u64) << 32) ^ i);
    let user = 1 + r.below(220);
    let id = 1 + r.below(21_000);
    let time = match r.below(3) {
        0 => format!(
            "now() - interval '30 days' + interval '{} ms'",
            r.below(20_000) - 2_000
        ),
        1 => format!("now() + interval '{} ms'", r.below(4_000)),
        _ => format!("now() - interval '{} minutes'", r.below(60 * 24 * 60)),
    };
    let status = ["completed", "pending", "refunded"][r.below(3) as usize];
    let sql = match r.below(8) {
        0 | 1 => format!(
            "INSERT INTO orders (user_id, total_amount, status, created_at)
             VALUES ({user}, {}.25, '{status}', {time}), (NULLIF({}, 0), 3, 'completed', {time})",
            r.below(500),
            r.below(30)
        ),
        2 => format!("UPDATE orders SET status = '{status}' WHERE id = {id}"),
        3 => format!("UPDATE orders SET total_amount = total_amount + 1.5 WHERE id = {id}"),
        4 => format!("UPDATE orders SET user_id = {user} WHERE id = {id}"),
        5 => format!("UPDATE orders SET created_at = {time} WHERE id = {id}"),
        6 => format!("UPDATE orders SET user_id = NULL, status = 'completed' WHERE id = {id}"),
        _ => format!("DELETE FROM orders WHERE id = {id}"),
    };
    c.batch_execute(&sql)
}

#[test]
fn random_writes_and_refreshes_keep_the_aggregate_exact() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("differential", true);
    orders_with_aggregate(&mut db);
    assert_eq!(differences(&mut db), (0, 0));

    let writers = Workload::spawn(cluster.config("differential"), 4, random_write);
    for step in 0..12 {
        std::thread::sleep(Duration::from_millis(400));
        if step == 6 {
            // Everything goes, then writers refill it.
            db.batch_execute("TRUNCATE orders").unwrap();
        }
        db.batch_execute("CALL dbopt.refresh_rolling('user_spending_30d')")
            .unwrap();
        // While the writers go on: verify reads the table and the source in one snapshot.
        assert_eq!(differences(&mut db), (0, 0), "after refresh {step}");
    }
    let report = writers.stop();
    assert_eq!(report.error_count(), 0, "{report:?}");
    assert!(report.ok > 500, "{report:?}");
    assert_eq!(differences(&mut db), (0, 0), "after the writers stopped");

    // Rows near the window's start aged out and rows written just ahead came due meanwhile:
    // the last refresh agrees with the report at its own time.
    db.batch_execute("CALL dbopt.refresh_rolling()").unwrap();
    assert_eq!(differences(&mut db), (0, 0), "after a last refresh of all");
    let exact_vs_now: i64 = db
        .query_one(
            "WITH exact AS (SELECT r FROM dbopt.rolling_exact('user_spending_30d') r),
                  seed AS (SELECT jsonb_build_object('user_id', user_id,
                                                     'total_orders', count(*),
                                                     'total_spent', sum(total_amount)) AS r
                             FROM orders
                            WHERE created_at >= now() - interval '30 days'
                              AND created_at <= now() AND status = 'completed'
                            GROUP BY user_id)
             SELECT (SELECT count(*) FROM (SELECT * FROM exact EXCEPT SELECT * FROM seed) a)
                  + (SELECT count(*) FROM (SELECT * FROM seed EXCEPT SELECT * FROM exact) b)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        exact_vs_now, 0,
        "rolling_exact against seed 001's report at now()"
    );
}

/// Two-row transactions on ten hot users, users in random order: with a row-level trigger
/// these deadlock; dbopt's statement-level upserts in key order must not. Dated an hour ago, so
/// every row is counted (and logged) at once rather than at the next refresh.
fn hot_pair(c: &mut Client, session: usize, i: u64) -> Result<(), postgres::Error> {
    let mut r = Random(((session as u64) << 40) ^ i ^ 0xdead);
    let (a, b) = (1 + r.below(10), 1 + r.below(10));
    c.batch_execute(&format!(
        "INSERT INTO orders (user_id, total_amount, status, created_at)
         VALUES ({a}, 1.50, 'completed', now() - interval '1 hour'),
                ({b}, 2.25, 'completed', now() - interval '1 hour')"
    ))
}

#[test]
fn sixteen_sessions_on_ten_hot_users_never_deadlock() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("hot", true);
    orders_with_aggregate(&mut db);
    let writers = Workload::spawn(cluster.config("hot"), 16, hot_pair);
    std::thread::sleep(Duration::from_secs(4));
    let report = writers.stop();
    assert_eq!(
        report.error_count(),
        0,
        "no deadlock or any other error: {report:?}"
    );
    assert!(report.ok > 1_000, "{report:?}");
    assert_eq!(differences(&mut db), (0, 0));
}

#[test]
fn a_repeatable_read_writer_older_than_a_refresh_is_told_to_retry() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("snapshots", true);
    orders_with_aggregate(&mut db);
    let mut writer = cluster.connect("snapshots");
    let insert = "INSERT INTO orders (user_id, total_amount, status, created_at)
                  VALUES (1, 5, 'completed', now() - interval '1 minute')";

    writer
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM orders")
        .unwrap();
    db.batch_execute("CALL dbopt.refresh_rolling('user_spending_30d')")
        .unwrap();
    let err = writer
        .batch_execute(insert)
        .expect_err("its snapshot shows the window before the refresh");
    assert_eq!(sqlstate(&err), "40001");
    writer.batch_execute("ROLLBACK").unwrap();

    // Retried, and a snapshot taken after the refresh, it goes through.
    writer
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; {insert}; COMMIT"
        ))
        .unwrap();
    assert_eq!(differences(&mut db), (0, 0));
}

//! Per-key row caps against a live server: eight sessions inserting for the same users at once.

use dbopt_integration_tests::{db_error, sqlstate, Cluster, Workload};
use postgres::Client;
use std::time::Duration;

/// Seed 001 B3: recently viewed products, the newest 50 per user kept. `seen` logs every view
/// ever inserted (in the same transaction), so the rows kept can be checked against all of them.
fn recently_viewed(db: &mut Client) {
    db.batch_execute(
        "CREATE TABLE recently_viewed (id bigserial PRIMARY KEY, user_id int NOT NULL,
                                       product_id int NOT NULL,
                                       viewed_at timestamptz NOT NULL DEFAULT clock_timestamp());
         CREATE INDEX ON recently_viewed (user_id, id);
         CREATE TABLE seen (id bigint PRIMARY KEY, user_id int NOT NULL);",
    )
    .unwrap();
}

/// One view for user 1, or a two-row insert for users 1 and 2 in either order (a row trigger
/// would lock the two keys in opposite orders in two sessions and deadlock).
fn view(c: &mut Client, session: usize, i: u64) -> Result<(), postgres::Error> {
    let users: &[i32] = match (session + i as usize) % 3 {
        0 => &[1],
        1 => &[1, 2],
        _ => &[2, 1],
    };
    let mut tx = c.transaction()?;
    tx.execute(
        "WITH v AS (INSERT INTO recently_viewed (user_id, product_id)
                    SELECT u, $2 FROM unnest($1::int[]) u RETURNING id, user_id)
         INSERT INTO seen SELECT * FROM v",
        &[&users, &(i as i32)],
    )?;
    tx.commit()
}

fn rows_of_user_1(db: &mut Client) -> i64 {
    ids(db, "SELECT count(*) FROM recently_viewed WHERE user_id = 1")[0]
}

fn ids(db: &mut Client, sql: &str) -> Vec<i64> {
    db.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn eight_sessions_inserting_for_the_same_key_leave_exactly_the_newest_keep_rows() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("caps", true);
    recently_viewed(&mut db);
    let report: String = db
        .query_one(
            "SELECT dbopt.cap_rows('recently_viewed', 'user_id', 'id', 50)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        report,
        "public.recently_viewed keeps the newest 50 rows per user_id by id"
    );

    let writers = Workload::spawn(cluster.config("caps"), 8, view);
    std::thread::sleep(Duration::from_millis(2000));
    let done = writers.stop();
    assert_eq!(done.error_count(), 0, "{done:?}");
    assert!(done.ok > 400, "{done:?}");

    for user in [1, 2] {
        let inserted = ids(
            &mut db,
            &format!("SELECT count(*) FROM seen WHERE user_id = {user}"),
        )[0];
        assert!(inserted > 200, "user {user}: {inserted} views");
        // Exactly 50 left, and they are the 50 newest of every view ever inserted.
        assert_eq!(
            ids(
                &mut db,
                &format!("SELECT id FROM recently_viewed WHERE user_id = {user} ORDER BY id")
            ),
            ids(
                &mut db,
                &format!(
                    "SELECT id FROM (SELECT id FROM seen WHERE user_id = {user}
                                      ORDER BY id DESC LIMIT 50) s ORDER BY id"
                )
            ),
            "user {user}"
        );
    }
    let caps = db
        .query_one(
            "SELECT target::text, key_column, order_column, keep FROM dbopt.row_caps",
            &[],
        )
        .unwrap();
    assert_eq!(
        (
            caps.get::<_, String>(0),
            caps.get::<_, String>(1),
            caps.get::<_, String>(2),
            caps.get::<_, i32>(3)
        ),
        ("recently_viewed".into(), "user_id".into(), "id".into(), 50)
    );

    // A new cap applies from the next insert on; uncapped, nothing is trimmed.
    db.batch_execute(
        "SELECT dbopt.cap_rows('recently_viewed', 'user_id', 'viewed_at', 10);
         INSERT INTO recently_viewed (user_id, product_id) VALUES (1, 0);",
    )
    .unwrap();
    assert_eq!(rows_of_user_1(&mut db), 10);
    let removed: bool = db
        .query_one("SELECT dbopt.uncap_rows('recently_viewed')", &[])
        .unwrap()
        .get(0);
    assert!(removed);
    db.batch_execute("INSERT INTO recently_viewed (user_id, product_id) VALUES (1, 0)")
        .unwrap();
    assert_eq!(rows_of_user_1(&mut db), 11);
    let again: bool = db
        .query_one("SELECT dbopt.uncap_rows('recently_viewed')", &[])
        .unwrap()
        .get(0);
    assert!(!again);
}

#[test]
fn bad_input_is_refused_with_its_sqlstate_and_installs_nothing() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("caps", true);
    db.batch_execute(
        "CREATE TABLE recently_viewed (user_id int, product_id int, viewed_at timestamptz);
         CREATE VIEW views AS SELECT * FROM recently_viewed;",
    )
    .unwrap();
    let refuse = |db: &mut Client, args: &str| {
        db.query_one(&format!("SELECT dbopt.cap_rows({args})"), &[])
            .expect_err(args)
    };
    let e = refuse(&mut db, "'recently_viewed', 'user_id', 'viewed_at', 0");
    assert_eq!(sqlstate(&e), "22023");
    assert_eq!(
        db_error(&e).0,
        "keep for public.recently_viewed must be at least 1, not 0"
    );
    assert_eq!(
        sqlstate(&refuse(
            &mut db,
            "'recently_viewed', 'user_id', 'viewed_at', -5"
        )),
        "22023"
    );
    assert_eq!(
        sqlstate(&refuse(
            &mut db,
            "'no_such_table', 'user_id', 'viewed_at', 50"
        )),
        "42P01"
    );
    let e = refuse(&mut db, "'recently_viewed', 'customer', 'viewed_at', 50");
    assert_eq!(sqlstate(&e), "42703");
    assert!(db_error(&e).0.contains("customer"), "{:?}", db_error(&e));
    assert_eq!(
        sqlstate(&refuse(
            &mut db,
            "'recently_viewed', 'user_id', 'seen_at', 50"
        )),
        "42703"
    );
    let e = refuse(&mut db, "'views', 'user_id', 'viewed_at', 50");
    assert_eq!(
        (sqlstate(&e), db_error(&e).0.as_str()),
        ("42809", "public.views is not a table")
    );
    // STRICT, as PostgreSQL's own functions: NULL in, NULL out, nothing installed.
    let null: Option<String> = db
        .query_one(
            "SELECT dbopt.cap_rows(NULL, 'user_id', 'viewed_at', 50)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(null, None);
    let triggers: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'recently_viewed'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(triggers, 0);

    // Without an index on (key, order) the cap works and says what would make it cheap.
    let report: String = db
        .query_one(
            "SELECT dbopt.cap_rows('recently_viewed', 'user_id', 'viewed_at', 50)",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        report.ends_with("CREATE INDEX ON public.recently_viewed (user_id, viewed_at)"),
        "{report}"
    );
}

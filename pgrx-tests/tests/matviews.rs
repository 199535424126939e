//! The materialized-view refresh manager against a live server: refresh_matviews COMMITs per
//! view, and what matters (readers not blocked, lock waits given up, a run skipping a view
//! another run holds) needs other sessions.

use dbopt_integration_tests::{db_error, sqlstate, Cluster};
use postgres::Client;

/// Seed 000's appointments and their no-show predictions, a materialized view joining them
/// (unique per appointment: refreshable CONCURRENTLY) and a daily summary read from that view
/// (no unique index: refreshed plainly). The summary sorts first by name, so only the
/// dependency order refreshes the join before it.
fn appointments(db: &mut Client) {
    db.batch_execute(
        "CREATE TABLE appointment (id int PRIMARY KEY, patient int NOT NULL, starts_at timestamptz NOT NULL);
         CREATE TABLE prediction (appointment_id int PRIMARY KEY REFERENCES appointment,
                                  no_show_risk float8 NOT NULL);
         INSERT INTO appointment SELECT g, g % 37, now() + (g % 10) * interval '1 day'
           FROM generate_series(1, 100) g;
         INSERT INTO prediction SELECT g, (g % 10) / 10.0 FROM generate_series(1, 100) g;
         CREATE MATERIALIZED VIEW appointment_risk AS
           SELECT a.id AS appointment_id, a.patient, a.starts_at, p.no_show_risk
             FROM appointment a JOIN prediction p ON p.appointment_id = a.id;
         CREATE UNIQUE INDEX ON appointment_risk (appointment_id);
         CREATE MATERIALIZED VIEW a_daily_risk AS
           SELECT date_trunc('day', starts_at) AS day, count(*) AS n, avg(no_show_risk) AS risk
             FROM appointment_risk GROUP BY 1;",
    )
    .unwrap();
}

fn more_appointments(db: &mut Client) {
    db.batch_execute(
        "INSERT INTO appointment SELECT g, g % 37, now() + (g % 10) * interval '1 day'
           FROM generate_series(101, 150) g;
         INSERT INTO prediction SELECT g, 0.5 FROM generate_series(101, 150) g;",
    )
    .unwrap();
}

fn manage(db: &mut Client, view: &str, every: &str) -> String {
    db.query_one(
        "SELECT dbopt.manage_matview($1::text::regclass, $2::text::interval)",
        &[&view, &every],
    )
    .unwrap()
    .get(0)
}

/// (refreshes, failures, last_method, last_error_sqlstate, last_error) of one managed view.
fn status(
    db: &mut Client,
    view: &str,
) -> (i64, i64, Option<String>, Option<String>, Option<String>) {
    let row = db
        .query_one(
            "SELECT refreshes, failures, last_method, last_error_sqlstate, last_error
               FROM dbopt.matview_status WHERE view = $1::text::regclass",
            &[&view],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
}

fn count(db: &mut Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn due_views_are_refreshed_dependencies_first_and_concurrently_where_possible() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("mv", true);
    appointments(&mut db);
    let summary = manage(&mut db, "a_daily_risk", "1 hour");
    assert!(summary.contains("plain: no unique index"), "{summary}");
    let join = manage(&mut db, "appointment_risk", "1 hour");
    assert!(join.contains("concurrently: unique index"), "{join}");

    more_appointments(&mut db);
    db.batch_execute("CALL dbopt.refresh_matviews()").unwrap();
    assert_eq!(count(&mut db, "SELECT count(*) FROM appointment_risk"), 150);
    // The summary was refreshed after the join it reads, so it counts the new rows too.
    assert_eq!(count(&mut db, "SELECT sum(n)::int8 FROM a_daily_risk"), 150);
    assert_eq!(
        status(&mut db, "appointment_risk"),
        (1, 0, Some("concurrently".into()), None, None)
    );
    assert_eq!(
        status(&mut db, "a_daily_risk"),
        (1, 0, Some("plain".into()), None, None)
    );
    let row = db
        .query_one(
            "SELECT due, staleness < interval '1 minute', next_due > now() + interval '59 minutes',
                    last_duration IS NOT NULL
               FROM dbopt.matview_status WHERE view = 'a_daily_risk'::regclass",
            &[],
        )
        .unwrap();
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2),
            row.get::<_, bool>(3)
        ),
        (false, true, true, true)
    );

    // Nothing is due any more; force refreshes all the same.
    db.batch_execute("CALL dbopt.refresh_matviews()").unwrap();
    assert_eq!(status(&mut db, "appointment_risk").0, 1);
    db.batch_execute("CALL dbopt.refresh_matviews(force => true)")
        .unwrap();
    assert_eq!(status(&mut db, "appointment_risk").0, 2);
    assert_eq!(status(&mut db, "a_daily_risk").0, 2);

    // A shorter interval makes it due again; unmanaging forgets it.
    db.batch_execute("UPDATE dbopt.matviews SET last_refresh_at = now() - interval '2 minutes'")
        .unwrap();
    manage(&mut db, "appointment_risk", "1 minute");
    db.batch_execute("CALL dbopt.refresh_matviews()").unwrap();
    assert_eq!(status(&mut db, "appointment_risk").0, 3);
    assert_eq!(status(&mut db, "a_daily_risk").0, 2);
    let gone: bool = db
        .query_one("SELECT dbopt.unmanage_matview('appointment_risk')", &[])
        .unwrap()
        .get(0);
    assert!(gone);
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM dbopt.matview_status"),
        1
    );

    // A view dropped since it was registered is forgotten by the next run.
    db.batch_execute("DROP MATERIALIZED VIEW a_daily_risk")
        .unwrap();
    db.batch_execute("CALL dbopt.refresh_matviews()").unwrap();
    assert_eq!(count(&mut db, "SELECT count(*) FROM dbopt.matviews"), 0);
}

#[test]
fn a_reader_holds_up_only_the_plain_refresh_which_gives_up_after_lock_timeout() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("mv", true);
    appointments(&mut db);
    manage(&mut db, "appointment_risk", "1 hour");
    manage(&mut db, "a_daily_risk", "1 hour");
    more_appointments(&mut db);

    let mut reader = cluster.connect("mv");
    reader
        .batch_execute(
            "BEGIN; SELECT count(*) FROM appointment_risk; SELECT count(*) FROM a_daily_risk;",
        )
        .unwrap();
    db.batch_execute("SET dbopt.lock_timeout = '300ms'")
        .unwrap();
    db.batch_execute("CALL dbopt.refresh_matviews()").unwrap();
    // CONCURRENTLY takes EXCLUSIVE, which the reader's ACCESS SHARE does not block.
    assert_eq!(
        status(&mut db, "appointment_risk"),
        (1, 0, Some("concurrently".into()), None, None)
    );
    assert_eq!(count(&mut db, "SELECT count(*) FROM appointment_risk"), 150);
    // The plain refresh needs ACCESS EXCLUSIVE: it gave up, said why, and the run went on.
    let (refreshes, failures, method, state, error) = status(&mut db, "a_daily_risk");
    assert_eq!(
        (refreshes, failures, method, state.as_deref()),
        (0, 1, None, Some("55P03"))
    );
    let error = error.unwrap();
    assert!(
        error.contains("a_daily_risk") && error.contains("dbopt.lock_timeout"),
        "{error}"
    );

    // Once the reader is gone the next run catches up, and the error is cleared.
    reader.batch_execute("COMMIT").unwrap();
    db.batch_execute("CALL dbopt.refresh_matviews()").unwrap();
    assert_eq!(
        status(&mut db, "a_daily_risk"),
        (1, 1, Some("plain".into()), None, None)
    );
    assert_eq!(count(&mut db, "SELECT sum(n)::int8 FROM a_daily_risk"), 150);
}

#[test]
fn a_view_another_run_holds_is_skipped_and_an_unpopulated_view_starts_plain() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("mv", true);
    appointments(&mut db);
    db.batch_execute(
        "CREATE MATERIALIZED VIEW patient_load AS
           SELECT patient, count(*) AS appointments FROM appointment GROUP BY patient WITH NO DATA;
         CREATE UNIQUE INDEX ON patient_load (patient);",
    )
    .unwrap();
    manage(&mut db, "appointment_risk", "1 hour");
    let first = manage(&mut db, "patient_load", "1 hour");
    assert!(first.contains("plain: not populated"), "{first}");

    // Another run is refreshing appointment_risk: this one passes it by instead of queueing.
    let mut other_run = cluster.connect("mv");
    other_run
        .batch_execute(
            "BEGIN; SELECT FROM dbopt.matviews WHERE view = 'appointment_risk'::regclass FOR UPDATE",
        )
        .unwrap();
    db.batch_execute("CALL dbopt.refresh_matviews()").unwrap();
    assert_eq!(status(&mut db, "appointment_risk").0, 0);
    assert_eq!(
        status(&mut db, "patient_load"),
        (1, 0, Some("plain".into()), None, None)
    );
    other_run.batch_execute("ROLLBACK").unwrap();
    let next: String = db
        .query_one(
            "SELECT next_method FROM dbopt.matview_status WHERE view = 'patient_load'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(next, "concurrently");
    assert_eq!(count(&mut db, "SELECT count(*) FROM patient_load"), 37);
}

#[test]
fn bad_input_is_refused_with_its_sqlstate_and_changes_nothing() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("mv", true);
    appointments(&mut db);
    db.batch_execute(
        "CREATE VIEW upcoming AS SELECT * FROM appointment WHERE starts_at > now();
         CREATE ROLE clerk LOGIN;
         GRANT USAGE ON SCHEMA dbopt TO clerk;
         GRANT SELECT ON appointment_risk TO clerk;",
    )
    .unwrap();
    let refuse = |db: &mut Client, view: &str, every: Option<&str>| {
        db.query_one(
            "SELECT dbopt.manage_matview($1::text::regclass, $2::text::interval)",
            &[&view, &every],
        )
        .unwrap_err()
    };
    let e = refuse(&mut db, "upcoming", Some("1 hour"));
    let (message, detail, hint) = db_error(&e);
    assert_eq!(sqlstate(&e), "42809");
    assert_eq!(message, "public.upcoming is not a materialized view");
    assert_eq!(detail.as_deref(), Some("It is a view."));
    assert!(hint.unwrap().contains("CREATE MATERIALIZED VIEW"));
    let e = refuse(&mut db, "appointment", Some("1 hour"));
    assert_eq!(
        (sqlstate(&e), db_error(&e).1.as_deref()),
        ("42809", Some("It is a table."))
    );
    assert_eq!(
        sqlstate(&refuse(&mut db, "no_such_view", Some("1 hour"))),
        "42P01"
    );
    for every in [Some("0"), Some("-5 minutes"), None] {
        let e = refuse(&mut db, "appointment_risk", every);
        assert_eq!(sqlstate(&e), "22023", "{every:?}");
        assert!(db_error(&e).0.contains("appointment_risk"), "{every:?}");
    }

    // Only the owner may register (REFRESH needs ownership); others see no one's views.
    let mut clerk = cluster.connect_as("mv", "clerk");
    let e = refuse(&mut clerk, "appointment_risk", Some("1 hour"));
    assert_eq!(sqlstate(&e), "42501");
    assert_eq!(
        db_error(&e).0,
        "must be owner of materialized view public.appointment_risk to manage its refreshes"
    );
    assert_eq!(count(&mut db, "SELECT count(*) FROM dbopt.matviews"), 0);

    manage(&mut db, "appointment_risk", "1 hour");
    assert_eq!(
        count(&mut clerk, "SELECT count(*) FROM dbopt.matview_status"),
        0
    );
    clerk
        .batch_execute("CALL dbopt.refresh_matviews(force => true)")
        .unwrap();
    assert_eq!(status(&mut db, "appointment_risk").0, 0);
    clerk
        .batch_execute("UPDATE dbopt.matviews SET refresh_every = '1 second'")
        .unwrap();
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM dbopt.matviews WHERE refresh_every = '1 hour'"
        ),
        1
    );
}

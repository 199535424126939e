//! dbopt on real servers: installing into a plain server, the prerequisites report, settings,
//! privileges and what DROP EXTENSION leaves behind.

use dbopt_integration_tests::{db_error, sqlstate, Cluster, ClusterOptions};

fn environment(client: &mut postgres::Client) -> Vec<(String, bool, String, Option<String>)> {
    client
        .query(
            "SELECT component, ready, status, hint FROM dbopt.environment()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

#[test]
fn installs_into_a_plain_server_with_nothing_preloaded() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("plain", true);

    let version: String = db.query_one("SELECT dbopt.version()", &[]).unwrap().get(0);
    let installed: String = db
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'dbopt'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        version.starts_with(&format!("dbopt {installed} (commit ")),
        "{version}"
    );

    let env = environment(&mut db);
    assert_eq!(env.len(), 2);
    for (component, ready, status, hint) in env {
        assert!(!ready, "{component} cannot be ready on a plain server");
        assert_eq!(
            status, "not loaded through shared_preload_libraries",
            "{component}"
        );
        assert!(hint
            .unwrap()
            .contains(&format!("CREATE EXTENSION {component}")));
    }
}

#[test]
fn reports_ready_when_pg_stat_statements_and_pg_cron_are_set_up() {
    let cluster = Cluster::start(
        ClusterOptions::default()
            .preload("pg_stat_statements")
            .preload("pg_cron")
            .setting("cron.database_name", "'ready'"),
    );
    let mut db = cluster.create_database("ready", true);
    let before = environment(&mut db);
    assert!(before
        .iter()
        .all(|(_, ready, status, _)| !ready && status == "not created in this database"));

    db.batch_execute("CREATE EXTENSION pg_stat_statements; CREATE EXTENSION pg_cron")
        .unwrap();
    let after = environment(&mut db);
    assert!(
        after
            .iter()
            .all(|(_, ready, _, hint)| *ready && hint.is_none()),
        "{after:?}"
    );

    // pg_cron serves one database only: another database is told which one.
    let mut other = cluster.create_database("other", true);
    let (_, ready, status, hint) = environment(&mut other).remove(1);
    assert!(!ready);
    assert_eq!(
        status,
        "serving database \"ready\" (cron.database_name), not this one"
    );
    assert!(hint.unwrap().contains("cron.database_name = 'other'"));
}

#[test]
fn lock_timeout_setting_is_validated() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("gucs", true);
    // A new session knows dbopt's settings as soon as the library is loaded.
    db.batch_execute("SELECT dbopt.version()").unwrap();
    let shown: String = db.query_one("SHOW dbopt.lock_timeout", &[]).unwrap().get(0);
    assert_eq!(shown, "1s");

    db.batch_execute("SET dbopt.lock_timeout = '250ms'")
        .unwrap();
    let shown: String = db.query_one("SHOW dbopt.lock_timeout", &[]).unwrap().get(0);
    assert_eq!(shown, "250ms");

    let zero = db.batch_execute("SET dbopt.lock_timeout = 0").unwrap_err();
    assert_eq!(sqlstate(&zero), "22023", "{:?}", db_error(&zero));
    let typo = db
        .batch_execute("SET dbopt.lock_timout = '5s'")
        .unwrap_err();
    assert_eq!(sqlstate(&typo), "42602", "{:?}", db_error(&typo));
    let shown: String = db.query_one("SHOW dbopt.lock_timeout", &[]).unwrap().get(0);
    assert_eq!(shown, "250ms", "a rejected SET changes nothing");
}

#[test]
fn every_function_is_security_invoker_with_a_pinned_search_path() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("conventions", true);
    let rows = db
        .query(
            "SELECT p.oid::regprocedure::text, p.prosecdef, coalesce(p.proconfig, '{}'), \
                    p.prokind = 'p', p.prosrc
               FROM pg_proc p
               JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
               JOIN pg_extension e ON e.oid = d.refobjid AND d.deptype = 'e'
              WHERE e.extname = 'dbopt'",
            &[],
        )
        .unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        let (name, security_definer, config): (String, bool, Vec<String>) =
            (row.get(0), row.get(1), row.get(2));
        assert!(!security_definer, "{name} is SECURITY DEFINER");
        // A procedure that commits may not have SET clauses; it pins search_path in its body
        // after every COMMIT instead.
        let (is_procedure, body): (bool, String) = (row.get(3), row.get(4));
        if is_procedure {
            let pin = "set_config('search_path', 'pg_catalog, pg_temp', true)";
            assert_eq!(
                body.matches(pin).count(),
                body.matches("COMMIT;").count() + 1,
                "{name} must pin search_path at its start and after each COMMIT"
            );
            continue;
        }
        assert!(
            config.iter().any(|c| c.starts_with("search_path=")),
            "{name} has no pinned search_path: {config:?}"
        );
    }
}

#[test]
fn an_unprivileged_role_can_use_dbopt_and_gains_nothing() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("roles", true);
    db.batch_execute(
        "CREATE ROLE alice LOGIN;
         CREATE TABLE private_data(id int); INSERT INTO private_data VALUES (1);",
    )
    .unwrap();
    let mut alice = cluster.connect_as("roles", "alice");
    let version: String = alice
        .query_one("SELECT dbopt.version()", &[])
        .unwrap()
        .get(0);
    assert!(version.starts_with("dbopt "));
    assert_eq!(
        alice
            .query("SELECT * FROM dbopt.environment()", &[])
            .unwrap()
            .len(),
        2
    );
    let denied = alice.query("SELECT * FROM private_data", &[]).unwrap_err();
    assert_eq!(sqlstate(&denied), "42501");
}

#[test]
fn drop_extension_removes_what_dbopt_owns_and_nothing_else() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("dropping", true);
    db.batch_execute(
        "CREATE TABLE orders AS SELECT g AS id, g * 1.5 AS total FROM generate_series(1, 1000) g;",
    )
    .unwrap();
    let checksum = |db: &mut postgres::Client| -> String {
        db.query_one("SELECT count(*)::text || ':' || md5(string_agg(id::text || total, ',' ORDER BY id)) FROM orders", &[])
            .unwrap()
            .get(0)
    };
    let before = checksum(&mut db);
    let owned: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
              WHERE e.extname = 'dbopt' AND d.deptype = 'e'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        owned >= 2,
        "dbopt should own its functions, owns {owned} objects"
    );

    db.batch_execute("DROP EXTENSION dbopt").unwrap();
    // PostgreSQL never makes an extension's own schema one of its members ("the schema contains
    // the extension"), so the schema stays, empty, and CREATE EXTENSION reuses it.
    let left: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM pg_proc WHERE pronamespace = 'dbopt'::regnamespace)
                  + (SELECT count(*) FROM pg_class WHERE relnamespace = 'dbopt'::regnamespace)
                  + (SELECT count(*) FROM pg_type WHERE typnamespace = 'dbopt'::regnamespace)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "DROP EXTENSION left dbopt objects behind");
    assert_eq!(checksum(&mut db), before, "user data changed");

    db.batch_execute("CREATE EXTENSION dbopt").unwrap();
    db.query_one("SELECT dbopt.version()", &[]).unwrap();
}

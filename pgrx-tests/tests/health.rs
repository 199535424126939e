//! dbopt.index_health() against a live server: invalid indexes need a failing CREATE INDEX
//! CONCURRENTLY, which only runs at top level, and idx_scan needs real scans.

use dbopt_integration_tests::Cluster;
use std::collections::HashMap;

#[test]
fn index_health_finds_invalid_duplicate_redundant_and_unused_indexes_and_spares_constraints() {
    let cluster = Cluster::plain();
    let mut db = cluster.create_database("health", true);
    db.batch_execute(
        "CREATE SCHEMA app;
         CREATE TABLE app.orders (id int PRIMARY KEY, status text, created_at timestamptz,
                                  customer int, amount numeric, note text, code text);
         INSERT INTO app.orders
         SELECT g, (ARRAY['new', 'paid', 'sent'])[g % 3 + 1], now() - g * interval '1 hour',
                g % 50, g, 'Note ' || g, 'C' || g
           FROM generate_series(1, 2000) g;
         CREATE INDEX orders_status_idx ON app.orders (status);
         ANALYZE app.orders;
         SET enable_seqscan = off;
         SELECT count(*) FROM app.orders WHERE status = 'paid';
         RESET enable_seqscan;
         SELECT pg_stat_force_next_flush();",
    )
    .unwrap();
    db.batch_execute(
        "CREATE INDEX orders_status_dup ON app.orders (status);
         CREATE INDEX orders_status_c ON app.orders (status COLLATE \"C\");
         CREATE INDEX orders_status_pattern ON app.orders (status text_pattern_ops);
         CREATE INDEX orders_status_desc ON app.orders (status DESC);
         CREATE INDEX orders_status_partial ON app.orders (status) WHERE amount > 0;
         CREATE INDEX orders_cust_incl1 ON app.orders (customer) INCLUDE (amount, note);
         CREATE INDEX orders_cust_incl2 ON app.orders (customer) INCLUDE (note, amount);
         CREATE INDEX orders_created_idx ON app.orders (created_at);
         CREATE INDEX orders_created_status_idx ON app.orders (created_at, status);
         CREATE UNIQUE INDEX orders_code_uq ON app.orders (code);
         CREATE INDEX orders_code_amount_idx ON app.orders (code, amount);
         CREATE INDEX orders_id_idx ON app.orders (id);
         CREATE INDEX orders_lower_note ON app.orders (lower(note));
         CREATE INDEX orders_lower_note2 ON app.orders (lower(  note  ));
         CREATE INDEX orders_upper_note ON app.orders (upper(note));
         CREATE TABLE app.events (id int NOT NULL, kind text);
         CREATE UNIQUE INDEX events_id_uq ON app.events (id);
         ALTER TABLE app.events REPLICA IDENTITY USING INDEX events_id_uq;
         CREATE TABLE app.customers (id int, email text, area box,
                                     CONSTRAINT customers_email_key UNIQUE (email),
                                     CONSTRAINT customers_area_excl
                                         EXCLUDE USING gist (area WITH &&));
         CREATE INDEX customers_email_idx ON app.customers (email);
         CREATE TABLE app.measure (id int, ts date, v int, w int) PARTITION BY RANGE (ts);
         CREATE TABLE app.measure_2024 PARTITION OF app.measure
             FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE INDEX measure_w_idx ON app.measure (w);
         CREATE TABLE app.dupvals (v int);
         INSERT INTO app.dupvals VALUES (1), (1), (2);",
    )
    .unwrap();
    // A failed build leaves an invalid index behind.
    assert!(db
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY dupvals_v_uq ON app.dupvals (v)")
        .is_err());

    let found: HashMap<String, (String, Option<String>, String)> = db
        .query(
            "SELECT index_name::text, problem, kept_index::text, drop_statement
               FROM dbopt.index_health()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    let problem = |index: &str| found.get(index).map(|(p, k, _)| (p.as_str(), k.as_deref()));

    assert_eq!(problem("app.dupvals_v_uq"), Some(("invalid", None)));
    assert_eq!(
        problem("app.orders_status_dup"),
        Some(("duplicate", Some("app.orders_status_idx"))),
        "the scanned one is kept"
    );
    assert_eq!(
        problem("app.orders_cust_incl2"),
        Some(("duplicate", Some("app.orders_cust_incl1"))),
        "INCLUDE order does not matter"
    );
    assert_eq!(
        problem("app.orders_lower_note2"),
        Some(("duplicate", Some("app.orders_lower_note"))),
        "expressions are compared deparsed, not as typed"
    );
    assert_eq!(
        problem("app.orders_id_idx"),
        Some(("duplicate", Some("app.orders_pkey")))
    );
    assert_eq!(
        problem("app.customers_email_idx"),
        Some(("duplicate", Some("app.customers_email_key")))
    );
    assert_eq!(
        problem("app.orders_created_idx"),
        Some(("redundant_prefix", Some("app.orders_created_status_idx")))
    );
    // Same column, but another collation, operator class, order or predicate: not duplicates.
    for different in [
        "app.orders_status_c",
        "app.orders_status_pattern",
        "app.orders_status_desc",
        "app.orders_status_partial",
        "app.orders_upper_note",
    ] {
        assert_eq!(problem(different), Some(("unused", None)), "{different}");
    }
    // Partitioned: judged as a whole, dropped without CONCURRENTLY (PostgreSQL refuses it).
    assert_eq!(problem("app.measure_w_idx"), Some(("unused", None)));
    assert_eq!(
        found["app.measure_w_idx"].2,
        "DROP INDEX app.measure_w_idx;"
    );
    // Never proposed: what backs a key, a constraint or the replica identity, the used index,
    // and the partitions' own attached indexes.
    for spared in [
        "app.orders_pkey",
        "app.orders_code_uq",
        "app.events_id_uq",
        "app.customers_email_key",
        "app.customers_area_excl",
        "app.orders_status_idx",
        "app.measure_2024_w_idx",
    ] {
        assert!(
            !found.contains_key(spared),
            "{spared}: {:?}",
            found.get(spared)
        );
    }
    // dbopt's own tables are not reported.
    assert!(found.keys().all(|name| !name.starts_with("dbopt.")));

    // The drop statements are ready to run, and what they drop was what they said.
    let drops: Vec<String> = found
        .values()
        .filter(|(p, _, _)| p != "unused")
        .map(|(_, _, statement)| statement.clone())
        .collect();
    for statement in &drops {
        assert!(
            statement.starts_with("DROP INDEX CONCURRENTLY app."),
            "{statement}"
        );
        db.batch_execute(statement).unwrap();
    }
    let left: Vec<String> = db
        .query(
            "SELECT problem FROM dbopt.index_health() WHERE problem <> 'unused'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

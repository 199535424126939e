//! The index advisor against a live server with pg_stat_statements preloaded: seed 002's
//! ml_jobs and its problem queries, seed 001's orders report, a primary-key-only workload,
//! hypothetical indexes that must never leak, and bad input.

use dbopt_integration_tests::{db_error, index_builds, sqlstate, Cluster, ClusterOptions};
use postgres::Client;

fn cluster() -> Cluster {
    Cluster::start(ClusterOptions::default().preload("pg_stat_statements"))
}

fn advisor_database(cluster: &Cluster, name: &str) -> Client {
    let mut db = cluster.create_database(name, true);
    db.batch_execute("CREATE EXTENSION pg_stat_statements")
        .unwrap();
    db
}

/// Seed 002's ml_jobs: `rows` jobs, 220 s apart, statuses skewed (0.1% pending).
fn ml_jobs(db: &mut Client, rows: i32) {
    db.batch_execute(
        "CREATE TABLE ml_jobs (
             id serial PRIMARY KEY, job_uuid varchar(36) UNIQUE, input_text text,
             status varchar(20) DEFAULT 'pending', result_score float,
             result_label varchar(50), created_at timestamp DEFAULT now(),
             completed_at timestamp)",
    )
    .unwrap();
    db.execute(
        "INSERT INTO ml_jobs (job_uuid, input_text, status, result_score, result_label,
                              created_at)
         SELECT md5(g::text), repeat('x', 100),
                CASE WHEN g % 1000 = 0 THEN 'pending' WHEN g % 10 = 0 THEN 'failed'
                     WHEN g % 7 = 0 THEN 'running' ELSE 'completed' END,
                random(), 'label', timestamp '2019-01-01' + g * interval '220 seconds'
           FROM generate_series(1, $1) g",
        &[&rows],
    )
    .unwrap();
    db.batch_execute("VACUUM ANALYZE ml_jobs").unwrap();
}

/// Seed 002's four problem queries (the pagination one at a realistic depth).
const ML_JOBS_QUERIES: [&str; 4] = [
    "SELECT * FROM ml_jobs WHERE status = 'pending' ORDER BY created_at LIMIT 100",
    "SELECT * FROM ml_jobs ORDER BY created_at DESC LIMIT 50 OFFSET 1000",
    "SELECT * FROM ml_jobs WHERE created_at BETWEEN '2024-01-01' AND '2024-01-31'
        AND status = 'completed'",
    "SELECT status, count(*) FROM ml_jobs GROUP BY status",
];

fn run_workload(db: &mut Client, queries: &[&str], times: usize) {
    for _ in 0..times {
        for query in queries {
            db.simple_query(query).unwrap();
        }
    }
}

/// Summed execution time (ms) pg_stat_statements recorded per query text prefix, then reset.
fn measured_ms(db: &mut Client, prefix: &str) -> f64 {
    db.query_one(
        "SELECT coalesce(sum(total_exec_time), 0)::float8 FROM pg_stat_statements
          WHERE query LIKE $1 || '%' AND dbid = (SELECT oid FROM pg_database
                                                  WHERE datname = current_database())",
        &[&prefix],
    )
    .unwrap()
    .get(0)
}

/// EXPLAIN's text for `query`.
fn explain(db: &mut Client, query: &str) -> String {
    db.simple_query(&format!("EXPLAIN {query}"))
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

struct Recommended {
    definition: String,
    columns: Vec<String>,
    queries: Vec<String>,
}

fn recommendations(db: &mut Client) -> Vec<Recommended> {
    db.query(
        "SELECT index_definition, columns,
                ARRAY(SELECT q->>'query' FROM jsonb_array_elements(queries) q)
           FROM dbopt.recommend_indexes()",
        &[],
    )
    .unwrap()
    .iter()
    .map(|row| Recommended {
        definition: row.get(0),
        columns: row.get(1),
        queries: row.get(2),
    })
    .collect()
}

/// The recommendation whose definition ends with `suffix`; fails the test naming them all.
fn ending_with<'a>(recommended: &'a [Recommended], suffix: &str) -> &'a Recommended {
    recommended
        .iter()
        .find(|r| r.definition.ends_with(suffix))
        .unwrap_or_else(|| {
            panic!(
                "none ends with {suffix:?}: {:?}",
                recommended
                    .iter()
                    .map(|r| &r.definition)
                    .collect::<Vec<_>>()
            )
        })
}

fn serves(recommended: &[Recommended], query_start: &str) -> Vec<Vec<String>> {
    recommended
        .iter()
        .filter(|r| r.queries.iter().any(|q| q.starts_with(query_start)))
        .map(|r| r.columns.clone())
        .collect()
}

#[test]
fn ml_jobs_gets_indexes_for_its_problem_queries_that_cut_their_time_tenfold() {
    let cluster = cluster();
    let mut db = advisor_database(&cluster, "jobs");
    ml_jobs(&mut db, 1_000_000);
    db.batch_execute("SELECT pg_stat_statements_reset()")
        .unwrap();
    run_workload(&mut db, &ML_JOBS_QUERIES, 12);

    // What no index fixes is linted: the OFFSET page (a full sort per call before any index
    // exists) and count(*) per status over 1M rows.
    let lints: Vec<(String, String, String)> = db
        .query(
            "SELECT lint, severity, query FROM dbopt.query_lints() WHERE table_name = 'ml_jobs'::regclass",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(
        lints
            .iter()
            .any(|(lint, severity, query)| lint == "offset_pagination"
                && severity == "warning"
                && query.contains("OFFSET")),
        "{lints:?}"
    );
    assert!(
        lints
            .iter()
            .any(|(lint, _, query)| lint == "count_large_table"
                && query.starts_with("SELECT status, count(*)")),
        "{lints:?}"
    );

    let recommended = recommendations(&mut db);
    // The pending jobs oldest first: (status, created_at), or created_at under WHERE status =
    // 'pending' (the partial index seed 002 builds by hand).
    let pending: Vec<&Recommended> = recommended
        .iter()
        .filter(|r| {
            r.queries
                .iter()
                .any(|q| q.starts_with("SELECT * FROM ml_jobs WHERE status = $1 ORDER BY"))
        })
        .collect();
    assert!(
        pending
            .iter()
            .any(|r| r.columns[..] == ["status", "created_at"]
                || (r.columns[..] == ["created_at"]
                    && r.definition.ends_with("WHERE status = 'pending'"))),
        "nothing for the pending jobs: {:?}",
        pending.iter().map(|r| &r.definition).collect::<Vec<_>>()
    );
    let range = serves(
        &recommended,
        "SELECT * FROM ml_jobs WHERE created_at BETWEEN",
    );
    assert!(
        range.iter().any(|columns| columns
            .first()
            .is_some_and(|c| c == "created_at" || c == "status")),
        "nothing for the status + date-range query: {range:?}"
    );

    // The queries the recommendations serve, timed before and after building them.
    let served: Vec<&str> = ML_JOBS_QUERIES
        .iter()
        .copied()
        .filter(|q| {
            let normalized_start: String = q.chars().take(30).collect();
            recommended
                .iter()
                .any(|r| r.queries.iter().any(|n| n.starts_with(&normalized_start)))
        })
        .collect();
    assert!(served.len() >= 3, "{served:?}");
    let time = |db: &mut Client| {
        db.batch_execute("SELECT pg_stat_statements_reset()")
            .unwrap();
        run_workload(db, &served, 5);
        served
            .iter()
            .map(|q| measured_ms(db, &q.chars().take(30).collect::<String>()))
            .sum::<f64>()
    };
    let before = time(&mut db);
    for r in &recommended {
        db.batch_execute(&r.definition).unwrap();
    }
    db.batch_execute("ANALYZE ml_jobs").unwrap();
    let after = time(&mut db);
    println!("served queries: {before:.1} ms before, {after:.1} ms after");
    assert!(before >= 10.0 * after, "{before:.1} ms -> {after:.1} ms");

    // Once built, nothing more is recommended for the same workload.
    db.batch_execute("SELECT pg_stat_statements_reset()")
        .unwrap();
    run_workload(&mut db, &ML_JOBS_QUERIES, 12);
    let again = recommendations(&mut db);
    assert!(
        again
            .iter()
            .all(|r| !recommended.iter().any(|o| o.definition == r.definition)),
        "{:?}",
        again.iter().map(|r| &r.definition).collect::<Vec<_>>()
    );
}

#[test]
fn the_orders_report_gets_an_index_led_by_status_and_created_at() {
    let cluster = cluster();
    let mut db = advisor_database(&cluster, "orders");
    db.batch_execute(
        "CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                              user_id bigint NOT NULL, total_amount numeric(12, 2) NOT NULL,
                              status text NOT NULL, created_at timestamptz NOT NULL);
         INSERT INTO orders (user_id, total_amount, status, created_at)
         SELECT 1 + g % 50000, (g % 1000) / 10.0,
                CASE WHEN g % 10 < 7 THEN 'completed' WHEN g % 10 < 9 THEN 'pending'
                     ELSE 'cancelled' END,
                now() - g * interval '30 seconds'
           FROM generate_series(1, 1000000) g;",
    )
    .unwrap();
    db.batch_execute("VACUUM ANALYZE orders").unwrap();
    db.batch_execute("SELECT pg_stat_statements_reset()")
        .unwrap();
    run_workload(
        &mut db,
        &["SELECT user_id, sum(total_amount) AS spent FROM orders
            WHERE status = 'completed' AND created_at >= now() - interval '30 days'
            GROUP BY user_id ORDER BY spent DESC LIMIT 10"],
        12,
    );
    let recommended = recommendations(&mut db);
    assert!(
        recommended
            .iter()
            .any(|r| r.columns.first().map(String::as_str) == Some("status")
                && r.columns.get(1).map(String::as_str) == Some("created_at")
                || r.columns.first().map(String::as_str) == Some("created_at")),
        "{:?}",
        recommended
            .iter()
            .map(|r| &r.definition)
            .collect::<Vec<_>>()
    );
}

#[test]
fn primary_key_lookups_get_no_recommendation() {
    let cluster = cluster();
    let mut db = advisor_database(&cluster, "pk");
    ml_jobs(&mut db, 1_000_000);
    db.batch_execute("SELECT pg_stat_statements_reset()")
        .unwrap();
    for id in 1..200 {
        db.query("SELECT * FROM ml_jobs WHERE id = $1", &[&id])
            .unwrap();
        db.query(
            "UPDATE ml_jobs SET result_score = 0.5 WHERE id = $1",
            &[&id],
        )
        .unwrap();
    }
    assert!(recommendations(&mut db).is_empty());
}

#[test]
fn hypothetical_indexes_never_leak_even_when_advising_is_cancelled() {
    let cluster = cluster();
    let mut db = advisor_database(&cluster, "leak");
    ml_jobs(&mut db, 1_000_000);
    db.batch_execute("SELECT pg_stat_statements_reset()")
        .unwrap();
    run_workload(&mut db, &ML_JOBS_QUERIES, 12);
    let plans = |db: &mut Client| -> String {
        ML_JOBS_QUERIES
            .iter()
            .map(|q| explain(db, q))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let before = plans(&mut db);
    assert!(!recommendations(&mut db).is_empty());
    assert_eq!(plans(&mut db), before, "a plan changed after advising");

    // Cancelled part-way by statement_timeout: the error reaches the caller (it is not taken
    // for one statement failing to plan) and the next plans are the same.
    let mut cancelled = false;
    for timeout_ms in [1, 2, 5, 10, 20, 40] {
        db.batch_execute(&format!("SET statement_timeout = {timeout_ms}"))
            .unwrap();
        let outcome = db.query("SELECT * FROM dbopt.recommend_indexes()", &[]);
        db.batch_execute("RESET statement_timeout").unwrap();
        if let Err(error) = outcome {
            assert_eq!(sqlstate(&error), "57014", "{error}");
            cancelled = true;
            assert_eq!(
                plans(&mut db),
                before,
                "a plan changed after a cancelled advice"
            );
        }
    }
    assert!(cancelled, "no timeout fired while advising");
}

#[test]
fn bad_input_and_unplannable_statements() {
    let cluster = cluster();
    let mut db = cluster.create_database("bad", true);
    // pg_stat_statements preloaded but not created in this database.
    for function in ["recommend_indexes", "query_lints"] {
        let missing = db
            .query(&format!("SELECT * FROM dbopt.{function}()"), &[])
            .unwrap_err();
        assert_eq!(sqlstate(&missing), "55000", "{missing}");
    }
    db.batch_execute("CREATE EXTENSION pg_stat_statements")
        .unwrap();
    for (call, message) in [
        ("max_indexes => 0", "max_indexes must be at least 1"),
        ("max_total_bytes => -1", "max_total_bytes must be 0 or more"),
        ("min_calls => -5", "min_calls must be 0 or more"),
    ] {
        let error = db
            .query(
                &format!("SELECT * FROM dbopt.recommend_indexes({call})"),
                &[],
            )
            .unwrap_err();
        assert_eq!(sqlstate(&error), "22023", "{call}: {error}");
        let text = error.as_db_error().map(|e| e.message()).unwrap_or_default();
        assert!(text.contains(message), "{error:?}");
    }

    // A dropped table, a temporary table of another session, and a utility statement are
    // skipped with their reasons, never fatal.
    db.batch_execute(
        "CREATE TABLE gone (id int, v int);
         SELECT pg_stat_statements_reset();",
    )
    .unwrap();
    let mut other = cluster.connect("bad");
    other
        .batch_execute("CREATE TEMP TABLE scratch (id int, v int)")
        .unwrap();
    for v in 0..12 {
        db.query("SELECT * FROM gone WHERE v = $1", &[&v]).unwrap();
        other
            .query("SELECT * FROM scratch WHERE v = $1", &[&v])
            .unwrap();
        db.batch_execute("VACUUM gone").unwrap();
    }
    db.batch_execute("DROP TABLE gone").unwrap();
    assert!(recommendations(&mut db).is_empty());
    let skipped: Vec<(String, String)> = db
        .query("SELECT query, reason FROM dbopt.advisor_skipped()", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let reason = |start: &str| {
        skipped
            .iter()
            .find(|(q, _)| q.starts_with(start))
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{start} not skipped: {skipped:?}"))
    };
    for (call, message) in [
        ("min_calls => -1", "min_calls must be 0 or more"),
        (
            "large_table_rows => -1",
            "large_table_rows must be 0 or more",
        ),
        (
            "wide_table_columns => 0",
            "wide_table_columns must be at least 1",
        ),
    ] {
        let error = db
            .query(&format!("SELECT * FROM dbopt.query_lints({call})"), &[])
            .unwrap_err();
        assert_eq!(sqlstate(&error), "22023", "{call}: {error}");
        assert!(db_error(&error).0.contains(message), "{error:?}");
    }
    // Statements that do not parse as stored (a dropped table parses; a cut text would not)
    // are no lint and no error.
    db.query("SELECT * FROM dbopt.query_lints(min_calls => 0)", &[])
        .unwrap();
    assert!(reason("SELECT * FROM gone").contains("does not exist"));
    assert!(reason("SELECT * FROM scratch").contains("does not exist"));
    assert!(reason("VACUUM gone").contains("not a SELECT"));
}

#[test]
fn select_star_is_linted_on_wide_tables_only() {
    let cluster = cluster();
    let mut db = advisor_database(&cluster, "lints");
    let wide_columns: Vec<String> = (1..=20).map(|i| format!("c{i} int")).collect();
    db.batch_execute(&format!(
        "CREATE TABLE wide (id int PRIMARY KEY, {});
         CREATE TABLE narrow (id int PRIMARY KEY, v int);
         CREATE TABLE docs (id int PRIMARY KEY, body text);
         INSERT INTO wide (id) SELECT generate_series(1, 100);
         INSERT INTO narrow SELECT g, g FROM generate_series(1, 100) g;
         INSERT INTO docs SELECT g, repeat(md5(g::text), 60) FROM generate_series(1, 100) g;
         ANALYZE wide, narrow, docs;
         SELECT pg_stat_statements_reset();",
        wide_columns.join(", ")
    ))
    .unwrap();
    run_workload(
        &mut db,
        &[
            "SELECT * FROM wide WHERE id = 1",
            "SELECT * FROM narrow WHERE id = 1",
            "SELECT d.* FROM docs d JOIN narrow n ON n.id = d.id WHERE n.v = 1",
            "WITH w AS (SELECT id FROM narrow) SELECT * FROM w",
        ],
        12,
    );
    let linted: Vec<(String, String)> = db
        .query(
            "SELECT table_name::text, query FROM dbopt.query_lints()
              WHERE lint = 'select_star_wide_table' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // docs is wide by its 1,920-byte rows; narrow is never, even under a * or a WITH named w.
    let tables: Vec<&str> = linted.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tables, ["docs", "wide"], "{linted:?}");
}

#[test]
fn apply_index_builds_through_pg_cron_and_cleans_up_a_failed_build() {
    let cluster = Cluster::with_pg_cron("apply");
    let mut db = cluster.create_database("apply", true);
    db.batch_execute("CREATE EXTENSION pg_cron").unwrap();
    let (built, failed) = index_builds::queue_two_builds(&mut db);

    // pg_cron starts jobs on the minute and the builds run one after the other: up to a minute
    // to start each and a minute to record each outcome.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(420);
    loop {
        let jobs: i64 = db
            .query_one("SELECT count(*) FROM cron.job", &[])
            .unwrap()
            .get(0);
        // Done when both outcomes are in and every job, the finishing one too, is gone.
        if jobs == 0 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    index_builds::assert_one_built_one_failed_and_cleaned_up(&mut db, built, failed);
    let jobs: i64 = db
        .query_one("SELECT count(*) FROM cron.job", &[])
        .unwrap()
        .get(0);
    assert_eq!(jobs, 0, "the build and finishing jobs remove themselves");
}

#[test]
fn apply_index_refuses_bad_definitions_and_changes_nothing() {
    let cluster = Cluster::with_pg_cron("refuse");
    let mut db = cluster.create_database("refuse", true);
    db.batch_execute(
        "CREATE EXTENSION pg_cron;
         CREATE TABLE public.t (id int PRIMARY KEY, a int);
         CREATE TABLE public.p (id int, at date) PARTITION BY RANGE (at);
         CREATE VIEW public.v AS SELECT * FROM public.t;
         CREATE ROLE stranger LOGIN;
         GRANT USAGE ON SCHEMA cron TO stranger;
         GRANT SELECT ON public.t TO stranger;",
    )
    .unwrap();
    let attempt = |db: &mut Client, definition: &str| {
        db.query_one("SELECT dbopt.apply_index($1)", &[&definition])
            .unwrap_err()
    };
    for (definition, code, words) in [
        (
            "CREATE INDEX t_a_idx ON public.t (a)",
            "22023",
            "only with CONCURRENTLY",
        ),
        ("DROP TABLE public.t", "22023", "exactly one CREATE INDEX"),
        (
            "CREATE INDEX CONCURRENTLY ON public.t (a)",
            "22023",
            "needs the index to be named",
        ),
        (
            "CREATE INDEX CONCURRENTLY t_a_idx ON t (a)",
            "22023",
            "without its schema",
        ),
        (
            "CREATE INDEX CONCURRENTLY x_idx ON public.nope (a)",
            "42P01",
            "\"nope\"",
        ),
        (
            "CREATE INDEX CONCURRENTLY t_pkey ON public.t (a)",
            "42P07",
            "already exists",
        ),
        (
            "CREATE INDEX CONCURRENTLY p_at_idx ON public.p (at)",
            "0A000",
            "is partitioned",
        ),
        (
            "CREATE INDEX CONCURRENTLY v_idx ON public.v (a)",
            "42809",
            "not a table",
        ),
        (
            "CREATE INDEX CONCURRENTLY t_a_idx ON public.t (a",
            "42601",
            "syntax error",
        ),
        (
            "CREATE INDEX CONCURRENTLY t_a_idx ON public.t (a); DROP TABLE public.t",
            "22023",
            "exactly one",
        ),
    ] {
        let error = attempt(&mut db, definition);
        assert_eq!(sqlstate(&error), code, "{definition}: {error}");
        assert!(
            db_error(&error).0.contains(words),
            "{definition}: {error:?}"
        );
    }
    // Only the table's owner may index it, as with CREATE INDEX itself.
    let mut stranger = cluster.connect_as("refuse", "stranger");
    let error = attempt(
        &mut stranger,
        "CREATE INDEX CONCURRENTLY t_a_idx ON public.t (a)",
    );
    assert_eq!(sqlstate(&error), "42501", "{error}");
    let (builds, jobs): (i64, i64) = {
        let row = db
            .query_one(
                "SELECT (SELECT count(*) FROM dbopt.index_builds), (SELECT count(*) FROM cron.job)",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((builds, jobs), (0, 0));

    // Where pg_cron does not run, the error says how to build it by hand.
    let mut other = cluster.create_database("elsewhere", true);
    other
        .batch_execute("CREATE TABLE public.t (id int, a int)")
        .unwrap();
    let error = attempt(
        &mut other,
        "CREATE INDEX CONCURRENTLY t_a_idx ON public.t (a)",
    );
    assert_eq!(sqlstate(&error), "55000", "{error}");
    let hint = db_error(&error).2.unwrap_or_default();
    assert!(hint.contains("run it yourself"), "{hint}");
}

#[test]
fn a_condition_that_survives_normalization_gets_a_partial_index() {
    let cluster = cluster();
    let mut db = advisor_database(&cluster, "partial");
    // 400k tasks over 2,000 owners; 3% still open (closed_at IS NULL).
    db.batch_execute(
        "CREATE TABLE tasks (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                             owner int NOT NULL, title text NOT NULL,
                             created_at timestamptz NOT NULL, closed_at timestamptz);
         INSERT INTO tasks (owner, title, created_at, closed_at)
         SELECT g % 2000, 'task ' || g, now() - g * interval '1 minute',
                CASE WHEN g % 100 >= 3 THEN now() - g * interval '30 seconds' END
           FROM generate_series(1, 400000) g;",
    )
    .unwrap();
    db.batch_execute("VACUUM ANALYZE tasks").unwrap();
    db.batch_execute("SELECT pg_stat_statements_reset()")
        .unwrap();
    for owner in 0..40 {
        db.query(
            "SELECT id, title FROM tasks WHERE owner = $1 AND closed_at IS NULL",
            &[&owner],
        )
        .unwrap();
    }
    let recommended = recommendations(&mut db);
    let partial = ending_with(&recommended, "WHERE closed_at IS NULL");
    assert_eq!(partial.columns, ["owner"], "{}", partial.definition);
    db.batch_execute(&partial.definition).unwrap();
    db.batch_execute("ANALYZE tasks").unwrap();
    let plan = explain(
        &mut db,
        "SELECT id, title FROM tasks WHERE owner = 7 AND closed_at IS NULL",
    );
    assert!(plan.contains("where_closed_at_null_idx"), "{plan}");
    // Built, it is not recommended again.
    assert!(recommendations(&mut db)
        .iter()
        .all(|r| r.definition != partial.definition));
}

#[test]
fn a_rare_value_of_a_skewed_column_gets_a_partial_index() {
    let cluster = cluster();
    let mut db = advisor_database(&cluster, "queue");
    // Seed 002's queue: workers poll the few pending jobs oldest first and set each job's
    // status when they take it; the table already has the index on created_at users add first.
    ml_jobs(&mut db, 300_000);
    db.batch_execute(
        "CREATE INDEX ml_jobs_created_at_idx ON ml_jobs (created_at); ANALYZE ml_jobs",
    )
    .unwrap();
    db.batch_execute("SELECT pg_stat_statements_reset()")
        .unwrap();
    let poll =
        "SELECT id, job_uuid FROM ml_jobs WHERE status = 'pending' ORDER BY created_at LIMIT 10";
    for _ in 0..20 {
        db.simple_query(poll).unwrap();
    }
    let take = db
        .prepare("UPDATE ml_jobs SET status = $1, completed_at = now() WHERE id = $2")
        .unwrap();
    // Jobs already 'running' (id % 7 = 0, id % 10 <> 0), so the statistics stay as built.
    for id in (1..=2300)
        .map(|k| k * 7)
        .filter(|id| id % 10 != 0)
        .take(2000)
    {
        db.execute(&take, &[&"running", &id]).unwrap();
    }

    let before = explain(&mut db, poll);
    let recommended = recommendations(&mut db);
    let partial = ending_with(&recommended, "WHERE status = 'pending'");
    assert_eq!(partial.columns, ["created_at"], "{}", partial.definition);
    assert!(
        partial
            .definition
            .contains("ml_jobs_created_at_where_status_pending_idx"),
        "{}",
        partial.definition
    );
    // Preferred to (status, created_at), which every status update would also write.
    assert!(
        recommended
            .iter()
            .all(|r| r.columns.first().map(String::as_str) != Some("status")),
        "{:?}",
        recommended
            .iter()
            .map(|r| &r.definition)
            .collect::<Vec<_>>()
    );

    db.batch_execute(&partial.definition).unwrap();
    let after = explain(&mut db, poll);
    assert!(
        after.contains("ml_jobs_created_at_where_status_pending_idx"),
        "before:\n{before}\nafter:\n{after}"
    );
    // Built, it is neither recommended again nor replaced by a copy under another predicate.
    let again = recommendations(&mut db);
    assert!(
        again.iter().all(|r| !r.definition.contains("WHERE status")),
        "{:?}",
        again.iter().map(|r| &r.definition).collect::<Vec<_>>()
    );
}

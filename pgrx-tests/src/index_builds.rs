//! The two dbopt.apply_index builds both runners (pg_cron, dbopt's worker) are tested with: one
//! that succeeds and one that fails and leaves an invalid index behind.

use postgres::Client;

/// `dbopt.index_builds`' state, message and leftover for build `id`.
pub fn build_state(db: &mut Client, id: i64) -> (String, Option<String>, Option<String>) {
    let row = db
        .query_one(
            "SELECT state, message, leftover FROM dbopt.index_builds WHERE id = $1",
            &[&id],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

pub fn apply_index(db: &mut Client, definition: &str) -> i64 {
    db.query_one("SELECT dbopt.apply_index($1)", &[&definition])
        .unwrap()
        .get(0)
}

/// Creates public.t (200,000 rows; b has duplicates) and queues the builds of t_a_idx, which
/// succeeds, and of the unique t_b_key, which fails. Returns their ids.
pub fn queue_two_builds(db: &mut Client) -> (i64, i64) {
    db.batch_execute(
        "CREATE TABLE public.t (id int PRIMARY KEY, a int, b int);
         INSERT INTO t SELECT g, g % 1000, g % 10 FROM generate_series(1, 200000) g;",
    )
    .unwrap();
    (
        apply_index(db, "CREATE INDEX CONCURRENTLY t_a_idx ON public.t (a)"),
        apply_index(
            db,
            "CREATE UNIQUE INDEX CONCURRENTLY t_b_key ON public.t (b)",
        ),
    )
}

/// Once both have ended: t_a_idx is built and valid, with nothing left over; t_b_key failed with PostgreSQL's message
/// and its invalid index was dropped.
pub fn assert_one_built_one_failed_and_cleaned_up(db: &mut Client, built: i64, failed: i64) {
    // (The message of a success is the runner's: pg_cron's command tag, or none.)
    let (state, _, leftover) = build_state(db, built);
    assert_eq!((state.as_str(), leftover), ("built", None));
    let valid: bool = db
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.t_a_idx'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(valid);
    let (state, message, leftover) = build_state(db, failed);
    assert_eq!(state, "failed");
    assert!(
        message
            .as_deref()
            .unwrap_or("")
            .contains("could not create unique index"),
        "{message:?}"
    );
    assert_eq!(leftover.as_deref(), Some("dropped"));
    let leftovers: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 't_b_key'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0);
}

//! In-server tests of archiving: every bad input refused with its SQLSTATE and nothing changed,
//! and the steps the procedures commit between, run here in one transaction. The procedures
//! themselves (which COMMIT) are exercised against a live server in pgrx-tests/tests/archive.rs.

#[pgrx::pg_schema]
mod tests {
    use crate::errors::raised_by;
    use crate::testing::{one, sql};
    use pgrx::prelude::*;

    /// 1,000 jobs over 1,000 hours, every third one still pending; a few columns of other kinds.
    fn jobs() {
        sql("CREATE TABLE jobs (
                 id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 status text NOT NULL,
                 created_at timestamptz NOT NULL,
                 created_on date GENERATED ALWAYS AS ((created_at AT TIME ZONE 'UTC')::date) STORED,
                 payload jsonb,
                 label text DEFAULT 'none');
             INSERT INTO jobs (status, created_at, payload)
             SELECT CASE WHEN g % 3 = 0 THEN 'pending' ELSE 'completed' END,
                    now() - g * interval '1 hour', jsonb_build_object('g', g)
               FROM generate_series(1, 1000) g;");
    }

    fn callers_path() -> String {
        one::<String>("SELECT current_setting('search_path')")
    }

    /// Count and checksum over source and archive together: unchanged by any move.
    fn everything(source: &str, archive: &str) -> (i64, String) {
        let row = Spi::get_two::<i64, String>(&format!(
            "SELECT count(*), md5(string_agg(row_text, ',' ORDER BY row_text)) FROM (
                SELECT format('%s|%s|%s|%s', id, status, created_at, payload) AS row_text FROM {source}
                UNION ALL
                SELECT format('%s|%s|%s|%s', id, status, created_at, payload) FROM {archive}) rows"
        ))
        .unwrap();
        (row.0.unwrap(), row.1.unwrap())
    }

    #[allow(clippy::too_many_arguments)]
    fn begin(
        source: &str,
        time_column: Option<&str>,
        older_than: Option<&str>,
        archive_table: Option<&str>,
        filter: Option<&str>,
        batch_size: i32,
    ) -> i64 {
        let source_oid = one::<pg_sys::Oid>(&format!("SELECT '{source}'::regclass::oid"));
        let older_than = older_than.map(|text| {
            Spi::get_one_with_args::<pgrx::datum::Interval>("SELECT $1::interval", &[text.into()])
                .unwrap()
                .unwrap()
        });
        super::super::archive_begin(
            "archive",
            &callers_path(),
            source_oid,
            archive_table,
            filter,
            Some(batch_size),
            time_column,
            older_than,
            None,
            None,
        )
    }

    /// What archive_move does, without its COMMITs: every target, every step, passes until done,
    /// batches of the kind given (with no other session, they never need to skip locked rows).
    fn run_to_end(run: i64, batch_step: &str) -> i64 {
        let targets = Spi::connect(|client| {
            client
                .select(
                    "SELECT t.target::oid, t.action
                   FROM dbopt.archive_runs r, unnest(r.targets, r.actions) AS t(target, action)
                  WHERE r.id = $1",
                    None,
                    &[run.into()],
                )?
                .map(|row| {
                    Ok((
                        row.get::<pg_sys::Oid>(1)?.unwrap(),
                        row.get::<String>(2)?.unwrap(),
                    ))
                })
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
        .unwrap();
        let mut total = 0;
        for (target, action) in targets {
            let steps: &[&str] = if action == "attach" {
                &["fence", "validate", "swap"]
            } else {
                &[batch_step]
            };
            for step in steps {
                let mut position: Option<String> = None;
                loop {
                    let (moved, next) = Spi::connect_mut(|client| {
                        let row = client
                            .update(
                                "SELECT moved, next_position FROM dbopt.archive_step($1, $2, $3, $4)",
                                None,
                                &[run.into(), target.into(), (*step).into(), position.clone().into()],
                            )?
                            .first();
                        Ok::<_, pgrx::spi::Error>((row.get::<i64>(1)?.unwrap(), row.get::<String>(2)?))
                    })
                    .unwrap();
                    total += moved;
                    let from_start = position.is_none();
                    position = next;
                    if *step != batch_step || (moved == 0 && from_start) {
                        break;
                    }
                }
            }
        }
        total
    }

    #[pg_test]
    fn old_matching_rows_move_in_batches_and_nothing_is_lost() {
        jobs();
        let before = one::<i64>("SELECT count(*) FROM jobs");
        let run = begin(
            "jobs",
            Some("created_at"),
            Some("500 hours"),
            None,
            Some("status IN ('completed', 'failed')"),
            37,
        );
        let archive_columns = one::<String>(
            "SELECT string_agg(format('%s %s', attname, format_type(atttypid, atttypmod)), ', ' ORDER BY attnum)
               FROM pg_attribute WHERE attrelid = 'jobs_archive'::regclass AND attnum > 0",
        );
        assert_eq!(
            archive_columns,
            "id bigint, status text, created_at timestamp with time zone, created_on date, \
             payload jsonb, label text, archived_at timestamp with time zone"
        );
        // Plain columns in the archive: no identity, no generation, no sequence; the same key.
        assert_eq!(
            one::<String>("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'jobs_archive'::regclass AND contype = 'p'"),
            "PRIMARY KEY (id)"
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pg_attribute WHERE attrelid = 'jobs_archive'::regclass AND (attidentity <> '' OR attgenerated <> '')"),
            0
        );
        let snapshot = everything("jobs", "jobs_archive");

        let moved = run_to_end(run, "batch");
        let expected = (501..=1000).filter(|g| g % 3 != 0).count() as i64;
        assert_eq!(moved, expected);
        assert_eq!(one::<i64>("SELECT count(*) FROM jobs_archive"), expected);
        assert_eq!(one::<i64>("SELECT count(*) FROM jobs"), before - expected);
        assert_eq!(everything("jobs", "jobs_archive"), snapshot);
        assert_eq!(
            one::<i64>("SELECT count(*) FROM jobs j JOIN jobs_archive a USING (id)"),
            0
        );
        // The generated column's values were kept as they were.
        assert_eq!(
            one::<i64>("SELECT count(*) FROM jobs_archive WHERE created_on <> (created_at AT TIME ZONE 'UTC')::date"),
            0
        );
        let (status, rows, batches) = Spi::get_three_with_args::<String, i64, i32>(
            "SELECT status, rows_moved, batches FROM dbopt.archive_runs WHERE id = $1",
            &[run.into()],
        )
        .unwrap();
        assert_eq!(
            (status.unwrap(), rows.unwrap()),
            ("running".to_string(), expected)
        );
        assert!(batches.unwrap() >= (expected as i32) / 37);
    }

    #[pg_test]
    fn a_time_index_and_a_heap_scan_move_the_same_rows() {
        jobs();
        sql("CREATE TABLE jobs2 (LIKE jobs INCLUDING ALL);
             INSERT INTO jobs2 (status, created_at, payload) OVERRIDING SYSTEM VALUE
             SELECT status, created_at, payload FROM jobs;
             CREATE INDEX ON jobs (created_at);");
        for table in ["jobs", "jobs2"] {
            let run = begin(table, Some("created_at"), Some("10 hours"), None, None, 100);
            run_to_end(
                run,
                if table == "jobs" {
                    "batch"
                } else {
                    "batch_skip_locked"
                },
            );
        }
        assert_eq!(one::<i64>("SELECT count(*) FROM jobs_archive"), 990);
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM jobs_archive a JOIN jobs2_archive b USING (created_at)"
            ),
            990
        );
    }

    #[pg_test]
    fn triggers_see_dbopt_archiving_on_during_the_move_only() {
        jobs();
        sql(
            "CREATE TABLE seen (archiving text);
             CREATE FUNCTION note_delete() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO seen VALUES (current_setting('dbopt.archiving')); RETURN OLD; END $$;
             CREATE TRIGGER note AFTER DELETE ON jobs FOR EACH ROW EXECUTE FUNCTION note_delete();",
        );
        let run = begin(
            "jobs",
            Some("created_at"),
            Some("995 hours"),
            None,
            None,
            100,
        );
        run_to_end(run, "batch");
        sql("DELETE FROM jobs WHERE id = 1");
        assert_eq!(
            one::<String>("SELECT string_agg(archiving, ',' ORDER BY archiving) FROM seen"),
            "off,on,on,on,on,on"
        );
    }

    #[pg_test]
    fn referenced_rows_are_refused_naming_the_foreign_key_and_table() {
        jobs();
        sql("CREATE TABLE job_notes (note_id int PRIMARY KEY,
                                     job_id bigint REFERENCES jobs ON DELETE CASCADE);
             INSERT INTO job_notes VALUES (1, 990);");
        let run = begin(
            "jobs",
            Some("created_at"),
            Some("900 hours"),
            None,
            None,
            1000,
        );
        let err = raised_by(|| {
            run_to_end(run, "batch");
        })
        .expect("a referenced row must stop the move");
        assert_eq!(err.code, PgSqlErrorCode::ERRCODE_FOREIGN_KEY_VIOLATION);
        assert_eq!(
            err.message,
            "rows of public.jobs are referenced by foreign key job_notes_job_id_fkey of table public.job_notes"
        );
        assert!(err.hint.unwrap().contains("never cascades"));
    }

    #[pg_test]
    fn a_batch_that_loses_rows_on_the_way_is_rolled_back() {
        jobs();
        let run = begin(
            "jobs",
            Some("created_at"),
            Some("900 hours"),
            None,
            None,
            1000,
        );
        sql(
            "CREATE FUNCTION drop_some() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.id % 2 = 0 THEN RETURN NULL; END IF; RETURN NEW; END $$;
             CREATE TRIGGER drop_some BEFORE INSERT ON jobs_archive
                FOR EACH ROW EXECUTE FUNCTION drop_some();",
        );
        let err = raised_by(|| {
            run_to_end(run, "batch");
        })
        .unwrap();
        assert_eq!(
            err.code,
            PgSqlErrorCode::ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION
        );
        assert_eq!(
            err.message,
            "a batch deleted 100 row(s) from public.jobs but inserted 50 into public.jobs_archive; rolled back"
        );
    }

    #[pg_test]
    fn whole_partitions_move_by_detach_and_attach_and_the_straddler_in_batches() {
        sql("CREATE TABLE events (id bigint, at timestamptz NOT NULL, kind text, PRIMARY KEY (id, at))
                PARTITION BY RANGE (at);
             CREATE TABLE events_old PARTITION OF events FOR VALUES FROM ('2020-01-01') TO ('2020-02-01');
             CREATE TABLE events_older PARTITION OF events FOR VALUES FROM ('2019-12-01') TO ('2020-01-01');
             CREATE TABLE events_now PARTITION OF events FOR VALUES FROM ('2020-02-01') TO ('2020-03-01');
             CREATE TABLE events_later PARTITION OF events FOR VALUES FROM ('2020-03-01') TO ('2020-04-01');
             CREATE TABLE events_default PARTITION OF events DEFAULT;
             INSERT INTO events SELECT g, timestamptz '2019-12-01' + g * interval '1 hour', 'k'
               FROM generate_series(0, 24 * 120) g;
             INSERT INTO events VALUES (-1, '2001-01-01', 'ancient');");
        let before = one::<i64>("SELECT count(*) FROM events");
        // The cutoff falls on 2020-02-15 12:00 UTC.
        let older_than = one::<String>("SELECT (now() - timestamptz '2020-02-15 12:00+00')::text");
        let run = begin("events", Some("at"), Some(&older_than), None, None, 200);
        let moved = run_to_end(run, "batch");
        assert_eq!(moved, one::<i64>("SELECT count(*) FROM events_archive"));
        assert_eq!(one::<i64>("SELECT count(*) FROM events") + moved, before);
        assert_eq!(
            one::<i64>("SELECT count(*) FROM events WHERE at < '2020-02-15 12:00+00'"),
            0
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM events_archive WHERE at >= '2020-02-15 12:00+00'"),
            0
        );
        // Whole months went by DETACH/ATTACH with their rows; the straddler and default in batches.
        let layout = one::<String>(
            "SELECT string_agg(format('%s:%s', c.relname, i.inhparent::regclass), ' ' ORDER BY c.relname)
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent IN ('events'::regclass, 'events_archive'::regclass)",
        );
        assert_eq!(
            layout,
            "events_default:events events_default_archive:events_archive events_later:events \
             events_now:events events_now_archive:events_archive events_old:events_archive \
             events_older:events_archive"
        );
        assert_eq!(
            one::<i64>("SELECT partitions_moved FROM dbopt.archive_runs ORDER BY id DESC LIMIT 1"),
            2
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pg_constraint WHERE conname = 'dbopt_archive_bound'"),
            0
        );
    }

    #[pg_test]
    fn the_history_view_shows_every_row_once_and_unarchive_brings_rows_back() {
        jobs();
        let run = begin(
            "jobs",
            Some("created_at"),
            Some("100 hours"),
            None,
            None,
            500,
        );
        run_to_end(run, "batch");
        let view = one::<String>("SELECT dbopt.create_history_view('jobs')::text");
        assert_eq!(view, "jobs_history");
        assert_eq!(one::<i64>("SELECT count(*) FROM jobs_history"), 1000);
        assert_eq!(
            one::<i64>("SELECT count(DISTINCT id) FROM jobs_history"),
            1000
        );
        let source = one::<pg_sys::Oid>("SELECT 'jobs'::regclass::oid");
        let back = super::super::archive_begin(
            "unarchive",
            &callers_path(),
            source,
            None,
            Some("id <= 150"),
            Some(20),
            None,
            None,
            None,
            None,
        );
        assert_eq!(run_to_end(back, "batch"), 50);
        assert_eq!(one::<i64>("SELECT count(*) FROM jobs"), 150);
        assert_eq!(one::<i64>("SELECT count(*) FROM jobs_history"), 1000);
        // Identity values came back as they were, and the identity still generates new ones.
        sql("INSERT INTO jobs (status, created_at) VALUES ('new', now())");
        assert_eq!(one::<i64>("SELECT max(id) FROM jobs"), 1001);
    }

    /// Each bad input: its SQLSTATE, a message naming the object, and nothing created or moved.
    #[pg_test]
    fn bad_inputs_are_refused_with_specific_sqlstates_and_change_nothing() {
        jobs();
        sql("CREATE TABLE no_key (at timestamptz);
             CREATE TABLE jobs_wrong (id int PRIMARY KEY, archived_at timestamptz);
             CREATE ROLE archive_reader;
             GRANT SELECT, INSERT ON jobs TO archive_reader;
             GRANT USAGE ON SCHEMA dbopt TO archive_reader;");
        type Arguments = (
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            i32,
        );
        let bad_arguments: Vec<(PgSqlErrorCode, &str, Arguments)> = vec![
            (
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                "column \"made_at\" of relation public.jobs does not exist",
                ("jobs", Some("made_at"), Some("1 day"), None, None, 10),
            ),
            (
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                "time_column \"status\" of public.jobs is text, not a date or timestamp",
                ("jobs", Some("status"), Some("1 day"), None, None, 10),
            ),
            (
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                "older_than must not be NULL",
                ("jobs", Some("created_at"), None, None, None, 10),
            ),
            (
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "older_than must not be negative, not -1 days",
                ("jobs", Some("created_at"), Some("-1 day"), None, None, 10),
            ),
            (
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "batch_size must be at least 1, not 0",
                ("jobs", Some("created_at"), Some("1 day"), None, None, 0),
            ),
            (
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                "filter for public.jobs is not a boolean expression over its columns: column \"state\" does not exist",
                ("jobs", Some("created_at"), Some("1 day"), None, Some("state = 'x'"), 10),
            ),
            (
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                "filter for public.jobs is not a boolean expression over its columns: argument of WHERE must be type boolean, not type bigint",
                ("jobs", Some("created_at"), Some("1 day"), None, Some("id + 1"), 10),
            ),
            (
                PgSqlErrorCode::ERRCODE_SYNTAX_ERROR,
                "filter for public.jobs is not a boolean expression over its columns: it is not a single expression",
                ("jobs", Some("created_at"), Some("1 day"), None, Some("true; drop table jobs"), 10),
            ),
            (
                PgSqlErrorCode::ERRCODE_SYNTAX_ERROR,
                "filter for public.jobs is not a boolean expression over its columns: it is not a single expression",
                (
                    "jobs",
                    Some("created_at"),
                    Some("1 day"),
                    None,
                    Some("true) ; drop table jobs; select (1"),
                    10,
                ),
            ),
            (
                PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME,
                "schema \"cold\" of archive_table \"cold.jobs\" does not exist",
                ("jobs", Some("created_at"), Some("1 day"), Some("cold.jobs"), None, 10),
            ),
            (
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "public.no_key has no primary key and no unique index on NOT NULL columns",
                ("no_key", Some("at"), Some("1 day"), None, None, 10),
            ),
            (
                PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION,
                "public.jobs_wrong does not match public.jobs: it cannot be its archive",
                ("jobs", Some("created_at"), Some("1 day"), Some("jobs_wrong"), None, 10),
            ),
        ];
        let check =
            |code: PgSqlErrorCode, message: &str, case: &(dyn Fn() + std::panic::RefUnwindSafe)| {
                let err = raised_by(|| case()).unwrap_or_else(|| panic!("expected: {message}"));
                assert_eq!((err.code, err.message.as_str()), (code, message));
                sql("RESET ROLE");
            };
        for (code, message, (source, time_column, older_than, archive, filter, batch_size)) in
            bad_arguments
        {
            check(code, message, &move || {
                begin(source, time_column, older_than, archive, filter, batch_size);
            });
        }
        // A caller without DELETE on the source, then one without INSERT on the archive.
        check(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied: dbopt.archive needs DELETE on public.jobs",
            &|| {
                sql("CREATE TABLE jobs_archive_ro (LIKE jobs, archived_at timestamptz, PRIMARY KEY (id));
                     GRANT INSERT ON jobs_archive_ro TO archive_reader;
                     SET LOCAL ROLE archive_reader");
                begin(
                    "jobs",
                    Some("created_at"),
                    Some("1 day"),
                    Some("jobs_archive_ro"),
                    None,
                    10,
                );
            },
        );
        check(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied: dbopt.archive needs INSERT on public.jobs_cold",
            &|| {
                sql(
                    "CREATE TABLE jobs_cold (LIKE jobs, archived_at timestamptz, PRIMARY KEY (id));
                     GRANT DELETE ON jobs TO archive_reader;
                     GRANT SELECT ON jobs_cold TO archive_reader;
                     SET LOCAL ROLE archive_reader",
                );
                begin(
                    "jobs",
                    Some("created_at"),
                    Some("1 day"),
                    Some("jobs_cold"),
                    None,
                    10,
                );
            },
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM jobs"), 1000);
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pg_class WHERE relname = 'jobs_archive'"),
            0
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM dbopt.archive_runs"), 0);
    }

    #[pg_test(error = "relation \"nope\" does not exist")]
    fn a_missing_source_is_refused_by_its_regclass() {
        sql("CALL dbopt.archive('nope', 'created_at', '1 day')");
    }
}

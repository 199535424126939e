//! `#[pg_test]`s for the partition functions: each function end to end, and each bad input
//! with its SQLSTATE and "nothing changed".

#[pgrx::pg_schema]
mod tests {
    use super::super::*;
    use crate::errors::raised_by;

    fn rel(name: &str) -> PgRelation {
        PgRelation::open_with_name_and_share_lock(name).expect("test table exists")
    }

    /// The table's OID, with no relation kept open (an open one blocks ALTER TABLE).
    fn oid(name: &str) -> pg_sys::Oid {
        rel(name).oid()
    }

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql).unwrap().unwrap_or(0)
    }

    fn strings(sql: &str) -> Vec<String> {
        Spi::connect(|client| {
            client
                .select(sql, None, &[])
                .unwrap()
                .map(|row| row.get::<String>(1).unwrap().unwrap_or_default())
                .collect()
        })
    }

    fn create(
        parent: &str,
        control: &str,
        interval: &str,
        start_from: Option<&str>,
    ) -> Vec<String> {
        create_partitions(
            rel(parent),
            control,
            interval,
            4,
            start_from,
            true,
            false,
            None,
            24,
        )
        .collect()
    }

    fn partitions_of(parent: &str) -> i64 {
        count(&format!(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = '{parent}'::regclass"
        ))
    }

    const ODD: &str = r#""Odd Schema"."Orders ""2026""""#;

    fn odd_parent() {
        Spi::run(
            r#"CREATE SCHEMA "Odd Schema";
               CREATE TABLE "Odd Schema"."Orders ""2026""" (
                   id bigint GENERATED ALWAYS AS IDENTITY,
                   "Created At" timestamptz NOT NULL,
                   total numeric CHECK (total >= 0)
               ) PARTITION BY RANGE ("Created At");
               CREATE INDEX ON "Odd Schema"."Orders ""2026""" ("Created At", id);
               CREATE ROLE dbopt_test_reader;
               GRANT SELECT ON "Odd Schema"."Orders ""2026""" TO dbopt_test_reader"#,
        )
        .unwrap();
    }

    #[pg_test]
    fn monthly_partitions_with_quoted_names_indexes_and_grants() {
        odd_parent();
        let made = create(ODD, "Created At", "1 month", Some("2026-01-15"));
        assert_eq!(made[0], r#""Odd Schema"."Orders ""2026""_p202601""#);
        assert_eq!(
            made.last().unwrap(),
            r#""Odd Schema"."Orders ""2026""_default""#
        );
        let months = made.len() as i64 - 1;
        assert!(
            months >= 15,
            "January 2026 through now + 4 months: {made:?}"
        );
        assert_eq!(partitions_of(ODD), months + 1);
        // The parent's index exists on every partition, and so does the reader's privilege.
        assert_eq!(
            count(&format!(
                "SELECT count(*) FROM pg_inherits i JOIN pg_index x ON x.indrelid = i.inhrelid \
                  WHERE i.inhparent = '{ODD}'::regclass"
            )),
            months + 1
        );
        assert_eq!(
            count(&format!(
                "SELECT count(*) FROM pg_inherits i \
                  WHERE i.inhparent = '{ODD}'::regclass \
                    AND has_table_privilege('dbopt_test_reader', i.inhrelid, 'SELECT')"
            )),
            months + 1
        );
        // The same call again changes nothing.
        assert!(create(ODD, "Created At", "monthly", Some("2026-01-15")).is_empty());
        assert_eq!(partitions_of(ODD), months + 1);
        assert_eq!(count("SELECT count(*) FROM dbopt.partition_config"), 1);
    }

    fn dry_run_weekly() -> Vec<String> {
        create_partitions(
            rel(ODD),
            "Created At",
            "1 week",
            2,
            None,
            true,
            true,
            None,
            24,
        )
        .collect()
    }

    #[pg_test]
    fn a_dry_run_lists_ddl_and_changes_nothing() {
        odd_parent();
        let ddl = dry_run_weekly();
        // A parent without partitions holds no rows: its partitions are made as partitions.
        assert!(ddl
            .iter()
            .any(|s| s.contains("PARTITION OF") && s.ends_with("DEFAULT")));
        assert!(!ddl.iter().any(|s| s.contains("ATTACH")));
        // PARTITION OF would drop column comments, so LIKE and ATTACH make them instead.
        Spi::run(&format!(
            r#"COMMENT ON COLUMN {ODD}."Created At" IS 'when'"#
        ))
        .unwrap();
        let ddl = dry_run_weekly();
        assert!(ddl.iter().any(|s| s.contains("(LIKE ")));
        assert!(ddl
            .iter()
            .any(|s| s.contains("ATTACH PARTITION") && s.ends_with("DEFAULT")));
        assert_eq!(partitions_of(ODD), 0);
        assert_eq!(count("SELECT count(*) FROM dbopt.partition_config"), 0);
    }

    #[pg_test]
    fn dst_days_in_the_partition_time_zone_are_23_and_25_hours() {
        Spi::run(
            "SET dbopt.partition_timezone = 'Europe/Berlin'; SET TimeZone = 'America/New_York';
             CREATE TABLE ev (at timestamptz NOT NULL) PARTITION BY RANGE (at)",
        )
        .unwrap();
        create_partitions(
            rel("ev"),
            "at",
            "1 day",
            1,
            Some("2026-03-28 12:00+01"),
            false,
            false,
            None,
            24,
        )
        .for_each(drop);
        let hours = |day: &str| {
            Spi::get_one::<f64>(&format!(
                "SELECT extract(epoch FROM (regexp_match(pg_get_expr(relpartbound, oid), \
                        'TO \\(''(.*)''\\)'))[1]::timestamptz \
                      - (regexp_match(pg_get_expr(relpartbound, oid), 'FROM \\(''(.*)''\\) TO'))[1]::timestamptz)::float8 / 3600 \
                   FROM pg_class WHERE relname = 'ev_p{day}'"
            ))
            .unwrap()
            .unwrap()
        };
        assert_eq!(hours("20260328"), 24.0);
        assert_eq!(hours("20260329"), 23.0);
        assert_eq!(hours("20261025"), 25.0);
        // Midnight in Berlin, whatever the session's TimeZone.
        Spi::run("SET TimeZone = 'UTC'").unwrap();
        assert_eq!(
            strings("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'ev_p20260329'"),
            ["FOR VALUES FROM ('2026-03-28 23:00:00+00') TO ('2026-03-29 22:00:00+00')"]
        );
    }

    #[pg_test]
    fn integer_controls_get_width_aligned_partitions() {
        Spi::run("CREATE TABLE ids (id bigint NOT NULL, v text) PARTITION BY RANGE (id)").unwrap();
        let made = create("ids", "id", "100000", Some("250000"));
        assert_eq!(
            made,
            [
                "public.ids_p200000",
                "public.ids_p300000",
                "public.ids_p400000",
                "public.ids_p500000",
                "public.ids_p600000",
                "public.ids_default"
            ]
        );
    }

    #[pg_test]
    fn maintenance_moves_default_rows_and_reports_far_future_ones() {
        Spi::run("CREATE TABLE m (d date NOT NULL, v int) PARTITION BY RANGE (d)").unwrap();
        create("m", "d", "1 month", None);
        Spi::run(
            "INSERT INTO m SELECT current_date - 400 + g % 3, g FROM generate_series(1, 30) g;
             INSERT INTO m VALUES (current_date + 3650, -1)",
        )
        .unwrap();
        let before = strings("SELECT md5(string_agg(d::text || v, ',' ORDER BY v)) FROM m");
        let plan =
            strings("SELECT step FROM dbopt.maintenance_plan('m') GROUP BY step ORDER BY step");
        assert_eq!(plan, ["move_default_rows", "report"]);
        maintain::maintain(&Config::require(oid("m")));
        assert_eq!(
            count("SELECT count(*) FROM m_default"),
            1,
            "only the far-future row stays"
        );
        assert_eq!(
            strings("SELECT md5(string_agg(d::text || v, ',' ORDER BY v)) FROM m"),
            before
        );
        assert_eq!(
            strings("SELECT outcome FROM dbopt.partition_log WHERE action = 'report'"),
            ["reported"]
        );
        // A second run has nothing to move.
        assert!(
            strings("SELECT step FROM dbopt.maintenance_plan('m') WHERE step <> 'report'")
                .is_empty()
        );
    }

    #[pg_test]
    fn max_per_run_bounds_one_run_and_the_next_run_continues() {
        Spi::run("CREATE TABLE h (at timestamp NOT NULL) PARTITION BY RANGE (at)").unwrap();
        create_partitions(rel("h"), "at", "1 hour", 1, None, false, false, Some(48), 2)
            .for_each(drop);
        Spi::run("UPDATE dbopt.partition_config SET premake = 6").unwrap();
        let config = Config::require(oid("h"));
        assert_eq!(maintain::maintain(&config), 2);
        assert_eq!(maintain::maintain(&config), 2);
    }

    #[pg_test]
    fn retention_drops_detaches_or_archives_old_partitions() {
        Spi::run(
            "CREATE SCHEMA old_parts;
             CREATE TABLE a (d date NOT NULL) PARTITION BY RANGE (d);
             CREATE TABLE b (d date NOT NULL) PARTITION BY RANGE (d);
             CREATE TABLE c (d date NOT NULL) PARTITION BY RANGE (d)",
        )
        .unwrap();
        for (name, action, schema) in [
            ("a", "drop", None),
            ("b", "detach", None),
            ("c", "detach", Some("old_parts")),
        ] {
            let start = strings("SELECT (current_date - interval '11 months')::date::text");
            create(name, "d", "1 month", Some(&start[0]));
            let before = partitions_of(name);
            set_retention(rel(name), Some("3 months"), action, schema);
            maintain::maintain(&Config::require(oid(name)));
            let retired = before - partitions_of(name);
            assert!(
                retired >= 7,
                "{name}: months before now - 3 months are retired ({retired})"
            );
            let left_as_tables = count(&format!("SELECT count(*) FROM pg_class WHERE relname LIKE '{name}\\_p%' AND relkind = 'r' AND NOT relispartition"));
            match action {
                "drop" => assert_eq!(left_as_tables, 0),
                _ => assert_eq!(left_as_tables, retired),
            }
        }
        assert!(
            count("SELECT count(*) FROM pg_class WHERE relnamespace = 'old_parts'::regnamespace")
                >= 7
        );
    }

    fn due(parent: &str) -> String {
        strings(&format!(
            "SELECT format('%s: %s', due::text, reason) FROM dbopt.maintenance_due('{parent}')"
        ))
        .concat()
    }

    /// Runs `ddl` with boundaries computed in UTC, as the expected due times are.
    fn in_utc(ddl: &str) {
        Spi::run(&format!("SET dbopt.partition_timezone = 'UTC'; {ddl}")).unwrap();
    }

    #[pg_test]
    fn a_set_is_due_when_the_clock_reaches_its_runway_and_not_before() {
        in_utc("CREATE TABLE clocked (at timestamptz NOT NULL) PARTITION BY RANGE (at)");
        create("clocked", "at", "1 day", None);
        // Partitions run through today + 4 days, so the runway needs another one at midnight.
        assert_eq!(
            count(
                "SELECT count(*) FROM dbopt.partition_config WHERE parent = 'clocked'::regclass \
                   AND due_at = date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' \
                                + interval '1 day'"
            ),
            1
        );
        assert!(due("clocked").starts_with("false: nothing to do before"));

        Spi::run("UPDATE dbopt.partition_config SET due_at = now() - interval '1 second'").unwrap();
        assert_eq!(due("clocked"), "true: runway or retention due");
        Spi::run("UPDATE dbopt.partition_config SET premake = 5").unwrap();
        assert_eq!(
            due("clocked"),
            "true: not checked since it was registered or reconfigured"
        );
        maintain::maintain(&Config::require(oid("clocked")));
        assert!(due("clocked").starts_with("false"));

        Spi::run("SET dbopt.partition_timezone = 'Asia/Tokyo'").unwrap();
        assert_eq!(due("clocked"), "true: dbopt.partition_timezone changed");
        Spi::run("RESET dbopt.partition_timezone").unwrap();

        Spi::run("INSERT INTO clocked VALUES (now() - interval '1 year')").unwrap();
        assert_eq!(
            due("clocked"),
            "true: rows to act on in public.clocked_default"
        );
        Spi::run("TRUNCATE clocked_default").unwrap();
        assert!(due("clocked").starts_with("false"));

        let newest = strings(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
              WHERE i.inhparent = 'clocked'::regclass AND c.relname <> 'clocked_default' \
              ORDER BY 1 DESC LIMIT 1",
        );
        Spi::run(&format!(
            "ALTER TABLE clocked DETACH PARTITION {}",
            newest[0]
        ))
        .unwrap();
        assert_eq!(
            due("clocked"),
            "true: partitions changed since the last check"
        );
    }

    #[pg_test]
    fn retention_is_due_keep_after_the_oldest_partition_ends() {
        in_utc("CREATE TABLE kept (d date NOT NULL) PARTITION BY RANGE (d)");
        let start = strings("SELECT (current_date - 10)::text");
        // Made 10 days ahead, kept 4 ahead: the runway is not due for a week, so the due time
        // recorded is retention's.
        create_partitions(
            rel("kept"),
            "d",
            "1 day",
            10,
            Some(&start[0]),
            true,
            false,
            None,
            24,
        )
        .for_each(drop);
        Spi::run("UPDATE dbopt.partition_config SET premake = 4").unwrap();
        set_retention(rel("kept"), Some("2 days"), "drop", None);
        assert!(due("kept").starts_with("true: not checked"));
        maintain::maintain(&Config::require(oid("kept")));
        // Daily partitions are named kept_pYYYYMMDD; the oldest left ends a day after its name
        // and retention removes it 2 days after that.
        assert_eq!(
            count(
                "SELECT count(*) FROM dbopt.partition_config c \
                  WHERE c.parent = 'kept'::regclass AND c.due_at = ( \
                        SELECT (to_date(substr(min(p.relname), 7), 'YYYYMMDD') + 3)::timestamp \
                               AT TIME ZONE 'UTC' \
                          FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid \
                         WHERE i.inhparent = 'kept'::regclass AND p.relname <> 'kept_default')"
            ),
            1
        );
        assert!(due("kept").starts_with("false"));
    }

    #[pg_test]
    fn an_integer_set_is_due_once_rows_reach_its_runway() {
        Spi::run("CREATE TABLE counted (id bigint NOT NULL) PARTITION BY RANGE (id)").unwrap();
        create("counted", "id", "100000", Some("250000"));
        assert_eq!(due("counted"), "false: nothing to do until rows arrive");
        Spi::run("INSERT INTO counted VALUES (250001)").unwrap();
        assert_eq!(due("counted"), "false: nothing to do until rows arrive");
        Spi::run("INSERT INTO counted VALUES (350000)").unwrap();
        assert_eq!(
            due("counted"),
            "true: rows to act on in public.counted_p300000"
        );
        assert_eq!(maintain::maintain(&Config::require(oid("counted"))), 1);
        assert_eq!(partitions_of("counted"), 7);
        assert!(due("counted").starts_with("false"));
    }

    #[pg_test]
    fn the_health_view_reports_runway_and_default_rows() {
        Spi::run("CREATE TABLE hv (at timestamptz NOT NULL) PARTITION BY RANGE (at)").unwrap();
        create("hv", "at", "1 day", None);
        Spi::run("INSERT INTO hv VALUES (now() + interval '30 days')").unwrap();
        let row = strings(
            "SELECT format('%s|%s|%s|%s', partitions, default_rows, gaps, runway LIKE '4 days%') \
               FROM dbopt.partition_health WHERE parent = 'hv'::regclass",
        );
        assert_eq!(row, ["5|1|0|t"]);
    }

    fn refused(f: impl FnOnce() + std::panic::UnwindSafe) -> crate::errors::Raised {
        let raised = raised_by(f).expect("refused");
        assert_eq!(
            count("SELECT count(*) FROM dbopt.partition_config"),
            0,
            "nothing registered"
        );
        raised
    }

    #[pg_test]
    fn bad_tables_and_columns_are_refused_with_specific_errors() {
        Spi::run(
            "CREATE TABLE plain (at timestamptz);
             CREATE TABLE listed (k int) PARTITION BY LIST (k);
             CREATE TABLE two (a int, b int) PARTITION BY RANGE (a, b);
             CREATE TABLE num (n numeric NOT NULL, at date) PARTITION BY RANGE (n);
             CREATE TABLE dated (d date NOT NULL, n bigint) PARTITION BY RANGE (d)",
        )
        .unwrap();
        let cases: [(&str, &str, &str, PgSqlErrorCode, &str); 7] = [
            (
                "plain",
                "at",
                "1 day",
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                "is not partitioned",
            ),
            (
                "listed",
                "k",
                "10",
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                "partitioned by list",
            ),
            (
                "two",
                "a",
                "10",
                PgSqlErrorCode::ERRCODE_INVALID_OBJECT_DEFINITION,
                "not the partition key",
            ),
            (
                "num",
                "n",
                "10",
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                "has type numeric",
            ),
            (
                "num",
                "at",
                "1 day",
                PgSqlErrorCode::ERRCODE_INVALID_OBJECT_DEFINITION,
                "not the partition key",
            ),
            (
                "dated",
                "missing",
                "1 day",
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                "\"missing\"",
            ),
            (
                "dated",
                "n",
                "10",
                PgSqlErrorCode::ERRCODE_INVALID_OBJECT_DEFINITION,
                "not the partition key",
            ),
        ];
        for (table, control, interval, code, says) in cases {
            let raised = refused(move || {
                create(table, control, interval, None);
            });
            assert_eq!(raised.code, code, "{table}.{control}: {}", raised.message);
            assert!(raised.message.contains(says), "{}", raised.message);
        }
        let plain = refused(|| {
            create("plain", "at", "1 day", None);
        });
        assert!(plain.hint.unwrap().contains("dbopt.partition_table"));
        assert_eq!(count("SELECT count(*) FROM pg_inherits"), 0);
    }

    #[pg_test]
    fn bad_intervals_premake_and_start_from_are_refused() {
        Spi::run(
            "CREATE TABLE dated (d date NOT NULL) PARTITION BY RANGE (d);
             CREATE TABLE big (n bigint NOT NULL) PARTITION BY RANGE (n)",
        )
        .unwrap();
        for (table, control, interval) in [
            ("dated", "d", "0 days"),
            ("dated", "d", "-1 month"),
            ("dated", "d", "fortnightly"),
            ("dated", "d", "1 hour"),
            ("big", "n", "1 day"),
            ("big", "n", "0"),
        ] {
            let raised = refused(move || {
                create(table, control, interval, None);
            });
            assert_eq!(
                raised.code,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "{interval}"
            );
            assert!(
                raised.message.contains("partition_interval"),
                "{}",
                raised.message
            );
        }
        let premake = refused(|| {
            create_partitions(rel("dated"), "d", "1 day", 0, None, true, false, None, 24)
                .for_each(drop);
        });
        assert_eq!(
            premake.code,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
        );
        let date = refused(|| {
            create("dated", "d", "1 day", Some("yesterday-ish"));
        });
        assert_eq!(date.code, PgSqlErrorCode::ERRCODE_INVALID_DATETIME_FORMAT);
        assert!(date.message.contains("start_from 'yesterday-ish'"));
        let number = refused(|| {
            create("big", "n", "1000", Some("12x"));
        });
        assert_eq!(
            number.code,
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION
        );
        assert_eq!(count("SELECT count(*) FROM pg_inherits"), 0);
    }

    #[pg_test]
    fn a_different_layout_for_a_registered_table_is_refused() {
        Spi::run("CREATE TABLE r (d date NOT NULL) PARTITION BY RANGE (d)").unwrap();
        create("r", "d", "1 month", None);
        let partitions = partitions_of("r");
        let raised = raised_by(|| {
            create("r", "d", "1 week", None);
        })
        .unwrap();
        assert_eq!(raised.code, PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT);
        assert_eq!(partitions_of("r"), partitions);
    }

    #[pg_test]
    fn a_role_that_does_not_own_the_table_is_refused() {
        Spi::run(
            "CREATE TABLE owned (d date NOT NULL) PARTITION BY RANGE (d);
             CREATE ROLE dbopt_test_stranger; GRANT ALL ON owned TO dbopt_test_stranger;
             SET ROLE dbopt_test_stranger",
        )
        .unwrap();
        let raised = refused(|| {
            create("owned", "d", "1 month", None);
        });
        Spi::run("RESET ROLE").unwrap();
        assert_eq!(raised.code, PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE);
        assert!(raised
            .message
            .contains("must be owner of table public.owned"));
        assert_eq!(partitions_of("owned"), 0);
    }

    #[pg_test]
    fn bad_retention_settings_are_refused() {
        Spi::run(
            "CREATE TABLE kept (d date NOT NULL) PARTITION BY RANGE (d);
             CREATE TABLE unregistered (d date NOT NULL) PARTITION BY RANGE (d)",
        )
        .unwrap();
        create("kept", "d", "1 month", None);
        let cases: [(&str, Option<&str>, &str, Option<&str>, PgSqlErrorCode); 5] = [
            (
                "kept",
                Some("forever"),
                "drop",
                None,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "kept",
                Some("-3 months"),
                "drop",
                None,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "kept",
                Some("3 months"),
                "shred",
                None,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "kept",
                Some("3 months"),
                "detach",
                Some("nowhere"),
                PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME,
            ),
            (
                "unregistered",
                Some("3 months"),
                "drop",
                None,
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            ),
        ];
        for (table, keep, action, schema, code) in cases {
            let raised =
                raised_by(move || set_retention(rel(table), keep, action, schema)).unwrap();
            assert_eq!(
                raised.code, code,
                "{table} {keep:?} {action}: {}",
                raised.message
            );
        }
        assert_eq!(
            count("SELECT count(*) FROM dbopt.partition_config WHERE retention_keep IS NOT NULL"),
            0
        );
    }

    #[pg_test]
    fn tables_whose_conversion_would_break_a_promise_are_refused_untouched() {
        Spi::run(
            "CREATE TABLE keyless (at timestamptz NOT NULL);
             CREATE TABLE referenced (id int PRIMARY KEY, at date NOT NULL);
             CREATE TABLE referrer (ref int REFERENCES referenced);
             CREATE TABLE viewed (id int PRIMARY KEY, at date NOT NULL);
             CREATE VIEW v AS SELECT * FROM viewed;
             CREATE TABLE uniq (id int PRIMARY KEY, code text UNIQUE, at date NOT NULL);
             CREATE TABLE money (id int PRIMARY KEY, amount numeric NOT NULL);
             CREATE TABLE already (at date NOT NULL) PARTITION BY RANGE (at)",
        )
        .unwrap();
        let cases: [(&str, &str, &str, PgSqlErrorCode, &str); 8] = [
            (
                "keyless",
                "at",
                "1 month",
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "no primary key",
            ),
            (
                "referenced",
                "at",
                "1 month",
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "foreign keys",
            ),
            (
                "viewed",
                "at",
                "1 month",
                PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
                "views depend on it",
            ),
            (
                "uniq",
                "at",
                "1 month",
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                "uniq_code_key",
            ),
            (
                "money",
                "amount",
                "100",
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                "has type numeric",
            ),
            (
                "money",
                "nope",
                "100",
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                "\"nope\"",
            ),
            (
                "money",
                "id",
                "1 day",
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "partition_interval",
            ),
            (
                "already",
                "at",
                "1 month",
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "already partitioned",
            ),
        ];
        for (table, control, interval, code, says) in cases {
            let raised = raised_by(move || {
                convert::conversion_start(rel(table), control, interval, 4);
            })
            .unwrap();
            assert_eq!(raised.code, code, "{table}: {}", raised.message);
            assert!(raised.message.contains(says), "{table}: {}", raised.message);
        }
        assert_eq!(
            count("SELECT count(*) FROM pg_class WHERE relname LIKE '%dbopt%'"),
            0
        );
        assert_eq!(
            count(
                "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
                  WHERE NOT t.tgisinternal AND c.relnamespace <> 'dbopt'::regnamespace"
            ),
            0
        );
        assert_eq!(count("SELECT count(*) FROM dbopt.partition_conversion"), 0);
    }

    #[pg_test(error = "lock_retries must be 0 or more, not -1")]
    fn run_maintenance_refuses_a_negative_lock_retries() {
        Spi::run("CALL dbopt.run_maintenance(lock_retries => -1)").unwrap();
    }

    #[pg_test(error = "lock_retries must be 0 or more, not -2")]
    fn partition_table_refuses_a_negative_lock_retries() {
        Spi::run("CREATE TABLE plain_t (id int PRIMARY KEY, at timestamptz NOT NULL)").unwrap();
        Spi::run("CALL dbopt.partition_table('plain_t', 'at', '1 month', lock_retries => -2)")
            .unwrap();
    }
}

//! In-server tests of rolling aggregates, through their SQL functions: each bad input refused
//! with its SQLSTATE and nothing created, and the table exact after every kind of write, refresh
//! and repair. refresh_rolling (a procedure that commits) runs here through the function it
//! calls for each aggregate; concurrent writers are in pgrx-tests/tests/rollups.rs.

#[pgrx::pg_schema]
mod tests {
    use crate::testing::{one, sql};
    use pgrx::prelude::*;

    /// Seed 001's orders: 3,000 over 60 days and a day ahead, a fifth of them not completed,
    /// some without a user.
    fn orders() {
        sql("CREATE TABLE orders (
                 id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 user_id bigint,
                 total_amount numeric(12, 2) NOT NULL,
                 status text NOT NULL,
                 created_at timestamptz NOT NULL);
             CREATE INDEX ON orders (created_at);
             INSERT INTO orders (user_id, total_amount, status, created_at)
             SELECT CASE WHEN g % 97 = 0 THEN NULL ELSE 1 + g % 40 END, (g % 100) + 0.25,
                    CASE WHEN g % 5 = 0 THEN 'pending' ELSE 'completed' END,
                    now() + interval '1 day' - g * interval '29 minutes'
               FROM generate_series(1, 3000) g;");
    }

    fn seed_aggregate() {
        sql("SELECT dbopt.create_rolling_aggregate(
                 name => 'user_spending_30d', source => 'orders', group_by => 'user_id',
                 time_column => 'created_at',
                 measures => 'count(*) AS total_orders, sum(total_amount) AS total_spent',
                 filter => $$status = 'completed'$$)");
    }

    /// Seed 001's report over the window the table holds (from 30 days before its last refresh
    /// to a bucket after it), as sorted JSON, beside the table's.
    fn table_and_seed_report() -> (String, String) {
        let table = one::<String>(
            "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY user_id NULLS FIRST)::text, '[]')
               FROM user_spending_30d t",
        );
        let report = one::<String>(
            "SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY user_id NULLS FIRST)::text, '[]') FROM (
                 SELECT o.user_id, count(o.id) AS total_orders, sum(o.total_amount) AS total_spent
                   FROM orders o, dbopt.rolling_aggregates w
                  WHERE w.aggregate = 'user_spending_30d'::regclass
                    AND o.created_at >= w.window_start AND o.created_at <= w.window_end
                    AND o.status = 'completed'
                  GROUP BY o.user_id) r",
        );
        (table, report)
    }

    fn assert_exact(after: &str) {
        let differences =
            one::<i64>("SELECT count(*) FROM dbopt.verify_rolling('user_spending_30d')");
        assert_eq!(differences, 0, "verify_rolling after {after}");
        let (table, report) = table_and_seed_report();
        assert_eq!(
            table, report,
            "the table against seed 001's report after {after}"
        );
    }

    /// refresh_rolling's work for one aggregate, without its COMMIT.
    fn refresh_as_of(offset: &str) {
        sql(&format!(
            "SELECT dbopt.rolling_refresh_of('user_spending_30d'::regclass, now() + interval '{offset}')"
        ));
    }

    /// The SQLSTATE and message with which `call` fails, in a subtransaction that undoes it.
    fn refusal(call: &str) -> (String, String) {
        sql("CREATE OR REPLACE FUNCTION pg_temp.refusal(call text, OUT state text, OUT message text)
             LANGUAGE plpgsql AS $$
             BEGIN
                 EXECUTE call;
                 state := 'none';
             EXCEPTION WHEN OTHERS THEN
                 GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
             END $$");
        let (state, message) = Spi::get_two_with_args::<String, String>(
            "SELECT * FROM pg_temp.refusal($1)",
            &[call.into()],
        )
        .unwrap();
        (state.unwrap_or_default(), message.unwrap_or_default())
    }

    #[pg_test]
    fn the_seed_aggregate_is_seed_001s_report_and_reads_by_index() {
        orders();
        seed_aggregate();
        assert_exact("creation");
        assert!(one::<i64>("SELECT count(*) FROM user_spending_30d") > 30);
        assert_eq!(
            one::<i64>("SELECT count(*) FROM user_spending_30d WHERE user_id IS NULL"),
            1,
            "orders without a user are a group of their own"
        );
        sql("SET LOCAL enable_seqscan = off");
        let plan = one::<pgrx::datum::Json>(
            "EXPLAIN (FORMAT JSON) SELECT * FROM user_spending_30d ORDER BY total_spent DESC LIMIT 10",
        );
        assert!(
            plan.0.to_string().contains("\"Index Scan\""),
            "top-10 is an index scan: {}",
            plan.0
        );
    }

    #[pg_test]
    fn every_kind_of_write_keeps_the_table_exact() {
        orders();
        seed_aggregate();
        let writes = [
            "INSERT INTO orders (user_id, total_amount, status, created_at) VALUES
                 (1, 10, 'completed', now()), (2, 5, 'pending', now()),
                 (3, 7, 'completed', now() - interval '40 days'),
                 (4, 9, 'completed', now() + interval '3 hours'), (NULL, 2, 'completed', now())",
            "UPDATE orders SET status = 'completed' WHERE user_id = 5 AND status = 'pending'",
            "UPDATE orders SET status = 'refunded' WHERE user_id = 6 AND id % 2 = 0",
            "UPDATE orders SET total_amount = total_amount * 2 WHERE user_id = 7",
            "UPDATE orders SET user_id = 8 WHERE user_id = 9 AND id % 3 = 0",
            "UPDATE orders SET created_at = created_at - interval '20 days' WHERE user_id = 10",
            "UPDATE orders SET created_at = created_at + interval '25 days' WHERE user_id = 11",
            "UPDATE orders SET user_id = NULL WHERE user_id = 12",
            "UPDATE orders SET user_id = 13 WHERE user_id IS NULL AND id % 2 = 0",
            "UPDATE orders SET status = status",
            "DELETE FROM orders WHERE user_id = 14",
            "COPY orders (user_id, total_amount, status, created_at) FROM PROGRAM
                 'printf \"15\\t1.50\\tcompleted\\t2000-01-01\\n16\\t2.50\\tcompleted\\tnow\\n\"'",
            "INSERT INTO orders (user_id, total_amount, status, created_at)
                 SELECT 17, 1, 'completed', now() - g * interval '1 day' FROM generate_series(0, 59) g",
        ];
        for write in writes {
            sql(write);
            assert_exact(write);
        }
        assert_eq!(
            one::<i64>("SELECT count(*) FROM user_spending_30d WHERE user_id = 14"),
            0,
            "a group whose rows are all deleted disappears"
        );
        sql("TRUNCATE orders");
        assert_exact("TRUNCATE");
        assert_eq!(one::<i64>("SELECT count(*) FROM user_spending_30d"), 0);
    }

    /// A row dated after the last refresh (as every row written since is) waits for the next
    /// refresh, unless the aggregate looks that far ahead.
    #[pg_test]
    fn new_rows_count_at_the_next_refresh_or_at_once_within_the_lookahead() {
        orders();
        seed_aggregate();
        sql("SELECT dbopt.create_rolling_aggregate(
                 name => 'spending_now', source => 'orders', group_by => 'user_id',
                 time_column => 'created_at',
                 measures => 'count(*) AS total_orders, sum(total_amount) AS total_spent',
                 filter => $$status = 'completed'$$, lookahead => '1 hour')");
        let orders_of = |table: &str| {
            one::<i64>(&format!(
                "SELECT coalesce(sum(total_orders), 0)::bigint FROM {table} WHERE user_id = 1"
            ))
        };
        let (waiting, counting) = (orders_of("user_spending_30d"), orders_of("spending_now"));
        sql(
            "INSERT INTO orders (user_id, total_amount, status, created_at)
             VALUES (1, 10, 'completed', clock_timestamp() + interval '1 minute')",
        );
        assert_eq!(orders_of("user_spending_30d"), waiting);
        assert_eq!(orders_of("spending_now"), counting + 1);
        refresh_as_of("2 minutes");
        assert_exact("a refresh past the new row");
        assert_eq!(orders_of("user_spending_30d"), waiting + 1);
        assert_eq!(
            one::<i64>("SELECT count(*) FROM dbopt.verify_rolling('spending_now')"),
            0
        );
    }

    /// Dates and timestamps without time zone name instants in the creator's TimeZone, whatever
    /// the writer's: a row at the window's end counts at once, one a microsecond later waits.
    #[pg_test]
    fn local_times_are_read_in_the_creators_time_zone() {
        sql("SET LOCAL TimeZone = 'Asia/Tokyo';
             CREATE TABLE visits (
                 page int NOT NULL, seen_at timestamp NOT NULL, seen_on date NOT NULL);
             INSERT INTO visits
             SELECT g % 7, localtimestamp - g * interval '37 minutes',
                    localtimestamp - g * interval '37 minutes'
               FROM generate_series(1, 2000) g;
             SELECT dbopt.create_rolling_aggregate('visits_at', 'visits', 'page', 'seen_at',
                                                   'count(*) AS n', window_size => '7 days');
             SELECT dbopt.create_rolling_aggregate('visits_on', 'visits', 'page', 'seen_on',
                                                   'count(*) AS n', window_size => '7 days');
             SET LOCAL TimeZone = 'America/New_York';");
        let window_end = |aggregate: &str| {
            format!(
                "(SELECT window_end AT TIME ZONE 'Asia/Tokyo' FROM dbopt.rolling_aggregates
                   WHERE aggregate = '{aggregate}'::regclass)"
            )
        };
        let at_end = window_end("visits_at");
        let on_end = window_end("visits_on");
        sql(&format!(
            "INSERT INTO visits VALUES (100, {at_end}, '2000-01-01'),
                                       (101, {at_end} + interval '1 microsecond', '2000-01-01');
             INSERT INTO visits VALUES (102, '2000-01-01', {on_end}::date),
                                       (103, '2000-01-01', {on_end}::date + 1)"
        ));
        let pages = |aggregate: &str| {
            one::<String>(&format!(
                "SELECT coalesce(string_agg(page::text, ',' ORDER BY page), '')
                   FROM {aggregate} WHERE page >= 100"
            ))
        };
        let differences = |aggregate: &str| {
            one::<i64>(&format!(
                "SELECT count(*) FROM dbopt.verify_rolling('{aggregate}')"
            ))
        };
        assert_eq!(pages("visits_at"), "100");
        assert_eq!(pages("visits_on"), "102");
        for aggregate in ["visits_at", "visits_on"] {
            assert_eq!(differences(aggregate), 0, "{aggregate}");
            sql(&format!(
                "SELECT dbopt.rolling_refresh_of('{aggregate}'::regclass, now() + interval '1 day 1 minute')"
            ));
            assert_eq!(differences(aggregate), 0, "{aggregate} refreshed");
        }
        assert_eq!(pages("visits_at"), "100,101");
        assert_eq!(pages("visits_on"), "102,103");
    }

    /// The INSERT trigger function serves only the table of the aggregate it names.
    #[pg_test]
    fn the_insert_gate_refuses_other_tables_and_unknown_aggregates() {
        orders();
        seed_aggregate();
        let id = one::<i64>("SELECT id FROM dbopt.rolling_aggregates");
        sql(&format!(
            "CREATE TABLE stray (LIKE orders INCLUDING IDENTITY);
             CREATE TRIGGER other_table AFTER INSERT ON stray REFERENCING NEW TABLE AS n
                 FOR EACH STATEMENT EXECUTE FUNCTION dbopt.rolling_insert_gate({id})"
        ));
        let insert =
            "INSERT INTO stray (total_amount, status, created_at) VALUES (1, 'completed', now())";
        let cases = [
            ("", "39P01", format!("trigger other_table on public.stray serves rolling aggregate public.user_spending_30d, which watches public.orders")),
            (&format!("({})", id + 1000), "42704", format!("trigger other_table on public.stray serves rolling aggregate {}, which does not exist", id + 1000)),
            ("()", "39P01", "trigger other_table on public.stray must name one rolling aggregate by its id".into()),
        ];
        for (arguments, state, message) in cases {
            if !arguments.is_empty() {
                sql(&format!(
                    "DROP TRIGGER other_table ON stray;
                     CREATE TRIGGER other_table AFTER INSERT ON stray REFERENCING NEW TABLE AS n
                         FOR EACH STATEMENT EXECUTE FUNCTION dbopt.rolling_insert_gate{arguments}"
                ));
            }
            assert_eq!(refusal(insert), (state.into(), message), "{arguments}");
        }
        sql(&format!(
            "DROP TRIGGER other_table ON stray;
             CREATE TRIGGER other_table AFTER INSERT ON stray
                 FOR EACH ROW EXECUTE FUNCTION dbopt.rolling_insert_gate({id})"
        ));
        assert_eq!(
            refusal(insert),
            ("39P01".into(), "trigger other_table on public.stray must fire AFTER INSERT FOR EACH STATEMENT with REFERENCING NEW TABLE".into())
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM stray"), 0);
    }

    #[pg_test]
    fn refreshes_move_the_window_exactly() {
        orders();
        seed_aggregate();
        sql(
            "INSERT INTO orders (user_id, total_amount, status, created_at)
             VALUES (20, 100, 'completed', now() + interval '2 hours'),
                    (20, 100, 'completed', now() + interval '40 days')",
        );
        // Within a bucket, across whole buckets, a single day, then past the whole window.
        for offset in [
            "1 minute",
            "3 hours",
            "1 day 5 hours 7 minutes",
            "2 days",
            "31 days",
            "70 days",
        ] {
            refresh_as_of(offset);
            assert_exact(&format!("a refresh to now() + {offset}"));
        }
        // Refreshing to an earlier time changes nothing.
        let before = table_and_seed_report().0;
        refresh_as_of("1 day");
        assert_eq!(table_and_seed_report().0, before);
    }

    #[pg_test]
    fn rolling_exact_answers_as_of_now_whatever_the_last_refresh() {
        orders();
        seed_aggregate();
        let seed_now = "SELECT coalesce(jsonb_agg(r ORDER BY r->>'user_id')::text, '[]') FROM (
                SELECT jsonb_build_object('user_id', user_id, 'total_orders', count(*),
                                          'total_spent', sum(total_amount)) AS r
                  FROM orders
                 WHERE created_at >= now() - interval '30 days' AND created_at <= now()
                   AND status = 'completed'
                 GROUP BY user_id) s";
        let exact = "SELECT coalesce(jsonb_agg(r ORDER BY r->>'user_id')::text, '[]')
                       FROM dbopt.rolling_exact('user_spending_30d') r";
        assert_eq!(one::<String>(exact), one::<String>(seed_now));
        refresh_as_of("2 days 3 hours");
        assert_ne!(table_and_seed_report().0, one::<String>(seed_now));
        assert_eq!(one::<String>(exact), one::<String>(seed_now));
    }

    #[pg_test]
    fn archive_moves_leave_the_aggregate_alone() {
        orders();
        seed_aggregate();
        let before = table_and_seed_report().0;
        sql("SET LOCAL dbopt.archiving = on;
             DELETE FROM orders WHERE created_at < now() - interval '10 days';
             SET LOCAL dbopt.archiving = off");
        assert_eq!(table_and_seed_report().0, before);
    }

    #[pg_test]
    fn verify_reports_a_damaged_table_and_rebuild_repairs_it() {
        orders();
        seed_aggregate();
        sql(
            "UPDATE user_spending_30d SET total_spent = total_spent + 1 WHERE user_id = 3;
             DELETE FROM user_spending_30d WHERE user_id = 4;
             UPDATE user_spending_30d_dbopt_buckets SET total_orders = total_orders + 1
              WHERE ctid = (SELECT ctid FROM user_spending_30d_dbopt_buckets
                             ORDER BY dbopt_bucket DESC LIMIT 1)",
        );
        let reported = one::<String>(
            "SELECT string_agg(coalesce(bucket::text, 'table') || ' ' || group_key::text, '; '
                               ORDER BY bucket NULLS FIRST, group_key)
               FROM dbopt.verify_rolling('user_spending_30d')",
        );
        assert!(reported.starts_with("table [3]; table [4]; "), "{reported}");
        assert_eq!(
            reported.matches("; ").count(),
            2,
            "one damaged bucket: {reported}"
        );
        assert_eq!(
            one::<String>(
                "SELECT format('%s %s', stored IS NULL, recomputed->>'total_orders' IS NOT NULL)
                   FROM dbopt.verify_rolling('user_spending_30d')
                  WHERE bucket IS NULL AND group_key = '[4]'"
            ),
            "t t",
            "a group missing from the table is stored NULL beside what the source gives"
        );
        let groups = one::<i64>("SELECT dbopt.rebuild_rolling('user_spending_30d')");
        assert_eq!(groups, one::<i64>("SELECT count(*) FROM user_spending_30d"));
        assert_exact("a rebuild");
    }

    #[pg_test]
    fn drop_removes_the_triggers_the_tables_and_the_definition() {
        orders();
        seed_aggregate();
        sql("SELECT dbopt.drop_rolling_aggregate('user_spending_30d')");
        assert_eq!(
            one::<i64>(
                "SELECT (SELECT count(*) FROM pg_class WHERE relname LIKE 'user_spending_30d%')
                      + (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass)
                      + (SELECT count(*) FROM pg_proc WHERE proname LIKE 'user_spending_30d%')
                      + (SELECT count(*) FROM dbopt.rolling_aggregates)"
            ),
            0
        );
        sql("INSERT INTO orders (user_id, total_amount, status, created_at) VALUES (1, 1, 'completed', now())");
    }

    #[pg_test]
    fn measures_without_a_row_count_get_one_and_several_groups_work() {
        orders();
        sql("ALTER TABLE orders ADD COLUMN region text;
             UPDATE orders SET region = CASE WHEN id % 3 = 0 THEN NULL ELSE 'r' || id % 2 END;
             SELECT dbopt.create_rolling_aggregate('by_region', 'orders', 'user_id, Region',
                 'created_at', 'sum(total_amount) FILTER (WHERE status = ''completed''),
                                count(region) AS with_region', window_size => '7 days')");
        let columns = one::<String>(
            "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
              WHERE attrelid = 'by_region'::regclass AND attnum > 0",
        );
        assert_eq!(columns, "user_id,region,sum,with_region,dbopt_rows");
        sql("UPDATE orders SET region = 'moved' WHERE id % 7 = 0;
             DELETE FROM orders WHERE id % 11 = 0;");
        assert_eq!(
            one::<i64>("SELECT count(*) FROM dbopt.verify_rolling('by_region')"),
            0
        );
    }

    #[pg_test]
    fn bad_inputs_are_refused_with_specific_sqlstates_and_create_nothing() {
        orders();
        sql("CREATE TABLE user_spending_30d (id int);
             CREATE ROLE rollup_reader;
             GRANT SELECT ON orders TO rollup_reader;
             GRANT USAGE ON SCHEMA dbopt TO rollup_reader;");
        let create = |name: &str, rest: &str| {
            format!(
                "SELECT dbopt.create_rolling_aggregate('{name}', 'orders', 'user_id', 'created_at', \
                 'count(*) AS n, sum(total_amount) AS s'{rest})"
            )
        };
        let cases = [
            ("42P07", "relation public.user_spending_30d already exists", create("user_spending_30d", "")),
            ("42P01", "relation \"nope\" does not exist",
             "SELECT dbopt.create_rolling_aggregate('a', 'nope', 'user_id', 'created_at', 'count(*)')".into()),
            ("42703", "column \"customer\" of relation public.orders does not exist",
             "SELECT dbopt.create_rolling_aggregate('a', 'orders', 'customer', 'created_at', 'count(*)')".into()),
            ("42601", "group_by \"user_id; drop table orders\" is not a list of column names: unexpected \";\"",
             "SELECT dbopt.create_rolling_aggregate('a', 'orders', 'user_id; drop table orders', 'created_at', 'count(*)')".into()),
            ("42703", "column \"made_at\" of relation public.orders does not exist",
             "SELECT dbopt.create_rolling_aggregate('a', 'orders', 'user_id', 'made_at', 'count(*)')".into()),
            ("42804", "time_column \"status\" of public.orders is text, not a date or timestamp",
             "SELECT dbopt.create_rolling_aggregate('a', 'orders', 'user_id', 'status', 'count(*)')".into()),
            ("42601", "measures \"count(* AS n\" are not a list of aggregate calls",
             "SELECT dbopt.create_rolling_aggregate('a', 'orders', 'user_id', 'created_at', 'count(* AS n')".into()),
            ("42601", "measures \"count(*) FROM pg_authid --\" are not a list of aggregate calls",
             "SELECT dbopt.create_rolling_aggregate('a', 'orders', 'user_id', 'created_at', 'count(*) FROM pg_authid --')".into()),
            ("0A000", "measure avg(total_amount) AS a cannot be kept by a rolling aggregate: avg() cannot be undone when a row leaves the group",
             "SELECT dbopt.create_rolling_aggregate('a', 'orders', 'user_id', 'created_at', 'count(*), avg(total_amount) AS a')".into()),
            ("0A000", "measure min(total_amount) cannot be kept by a rolling aggregate: min() cannot be undone when a row leaves the group",
             "SELECT dbopt.create_rolling_aggregate('a', 'orders', 'user_id', 'created_at', 'min(total_amount)')".into()),
            ("0A000", "measure max(total_amount) cannot be kept by a rolling aggregate: max() cannot be undone when a row leaves the group",
             "SELECT dbopt.create_rolling_aggregate('a', 'orders', 'user_id', 'created_at', 'max(total_amount)')".into()),
            ("0A000", "measure count(DISTINCT status) cannot be kept by a rolling aggregate: count(DISTINCT ...) cannot be undone when a row leaves the group",
             "SELECT dbopt.create_rolling_aggregate('a', 'orders', 'user_id', 'created_at', 'count(DISTINCT status)')".into()),
            ("0A000", "measure sum(total_amount::float8) (sum) does not sum exact numbers: adding and subtracting it would drift",
             "SELECT dbopt.create_rolling_aggregate('a', 'orders', 'user_id', 'created_at', 'sum(total_amount::float8)')".into()),
            ("42703", "measures \"sum(amount)\" are not valid over public.orders: column \"amount\" does not exist",
             "SELECT dbopt.create_rolling_aggregate('a', 'orders', 'user_id', 'created_at', 'sum(amount)')".into()),
            ("42701", "column \"n\" would appear twice in the rolling aggregate",
             "SELECT dbopt.create_rolling_aggregate('a', 'orders', 'user_id', 'created_at', 'count(*) AS n, sum(total_amount) AS n')".into()),
            ("22023", "window_size must be positive, not 00:00:00", create("a", ", window_size => '0'")),
            ("22023", "window_size must be positive, not -1 days", create("a", ", window_size => '-1 day'")),
            ("22023", "lookahead must not be negative, not -00:05:00", create("a", ", lookahead => '-5 minutes'")),
            ("22004", "window_size must not be NULL", create("a", ", window_size => NULL")),
            ("22023", "bucket_size must be a positive number of days, hours, minutes or seconds, not 1 mon",
             create("a", ", bucket_size => '1 month'")),
            ("42703", "filter for public.orders is not a boolean expression over its columns: column \"state\" does not exist",
             create("a", ", filter => $$state = 'x'$$")),
            ("42804", "filter for public.orders is not a boolean expression over its columns: argument of WHERE must be type boolean, not type bigint",
             create("a", ", filter => 'id + 1'")),
            ("42601", "filter for public.orders is not a boolean expression over its columns: it is not a single expression",
             create("a", ", filter => 'true; drop table orders'")),
            ("42601", "filter for public.orders is not a boolean expression over its columns: it is not a single expression",
             create("a", ", filter => 'true) ; drop table orders; select (1'")),
            ("3F000", "schema \"cold\" of name \"cold.a\" does not exist", create("cold.a", "")),
            ("42622", "name \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" is longer than 48 bytes",
             create(&"a".repeat(49), "")),
            ("42501", "permission denied: dbopt.create_rolling_aggregate needs TRIGGER on public.orders",
             format!("SET LOCAL ROLE rollup_reader; {}", create("a", ""))),
            ("42809", "public.user_spending_30d is not a rolling aggregate",
             "SELECT * FROM dbopt.verify_rolling('user_spending_30d')".into()),
        ];
        for (state, message, call) in cases {
            assert_eq!(refusal(&call), (state.into(), message.into()), "{call}");
            sql("RESET ROLE");
        }
        assert_eq!(
            one::<i64>(
                "SELECT (SELECT count(*) FROM pg_class WHERE relname ~ '^(a|user_spending_30d)_dbopt_' OR relname = 'a')
                      + (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass)
                      + (SELECT count(*) FROM dbopt.rolling_aggregates)"
            ),
            0,
            "nothing was created"
        );
    }
}

//! The SQL that keeps a rolling aggregate exact, generated from its definition. Three tables
//! hold it:
//!
//! - the aggregate table (the caller's name): one row per group, the window as of the last
//!   refresh, plus every write since;
//! - `<name>_dbopt_buckets`: the same sums per group and time bucket, for the rows from the
//!   bucket holding the window's start to the last refresh, so a refresh subtracts what aged out
//!   without reading the source. Each refresh reads the rows dated since the previous one from
//!   the source (through the time index) and adds them;
//! - `<name>_dbopt_log`: the changes the triggers make to rows dated before the last refresh
//!   (updates, deletes, backdated inserts), appended without locking anything and folded into
//!   the buckets by each refresh. So the common write, a row dated now, pays for one upsert (the
//!   aggregate table's) and nothing else.
//!
//! The caller's measures and filter are spliced in as written: both were checked to be exactly
//! aggregate calls and one boolean expression over the source's columns.

pub const BUCKET: &str = "dbopt_bucket";
/// The row count added when the measures have no plain count(*).
pub const ADDED_ROWS: &str = "dbopt_rows";
/// Transition tables of the triggers.
pub const NEW_ROWS: &str = "dbopt_new";
pub const OLD_ROWS: &str = "dbopt_old";
const IN_WINDOW: &str = "dbopt_in_window";
const BEFORE_REFRESH: &str = "dbopt_before_refresh";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub id: i64,
    /// Every name below is quoted, ready to splice: relations schema-qualified.
    pub table: String,
    pub buckets: String,
    pub log: String,
    /// The sequence numbering refreshes.
    pub epoch: String,
    pub source: String,
    pub groups: Vec<String>,
    pub time: String,
    pub measure_names: Vec<String>,
    /// The column counting a group's rows: a count(*) measure, or [`ADDED_ROWS`].
    pub rows: String,
    /// The caller's measure list and filter, checked.
    pub measures: String,
    pub filter: Option<String>,
}

/// Whether a statement's changes count positively (new rows) or negatively (old rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    Plus,
    Minus,
}

impl Spec {
    fn rows_added(&self) -> bool {
        self.rows == ADDED_ROWS
    }

    /// Every column summed: the measures, and the added row count if any.
    pub fn value_columns(&self) -> Vec<String> {
        let mut values = self.measure_names.clone();
        if self.rows_added() {
            values.push(ADDED_ROWS.into());
        }
        values
    }

    fn key_columns(&self, per_bucket: bool) -> Vec<String> {
        let mut keys = self.groups.clone();
        if per_bucket {
            keys.push(BUCKET.into());
        }
        keys
    }

    fn quoted_keys(&self, per_bucket: bool) -> String {
        self.key_columns(per_bucket).join(", ")
    }

    fn positions(&self, per_bucket: bool) -> String {
        (1..=self.key_columns(per_bucket).len())
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `GROUP BY` over the group columns (and bucket) of the rows of `relation` that pass the
    /// filter and `condition`, with each value made non-NULL (a sum over no value is 0 here) and
    /// negated for [`Sign::Minus`]. `bucket_width` is the SQL for the bucket width when the rows
    /// are wanted per bucket.
    pub fn contributions(
        &self,
        relation: &str,
        condition: &str,
        bucket_width: Option<&str>,
        sign: Sign,
    ) -> String {
        self.grouped(relation, condition, bucket_width, &[], sign)
    }

    /// [`Spec::contributions`], also grouped by `flags`: (name, boolean expression) each.
    fn grouped(
        &self,
        relation: &str,
        condition: &str,
        bucket_width: Option<&str>,
        flags: &[(&str, &str)],
        sign: Sign,
    ) -> String {
        let mut keys = self.key_columns(bucket_width.is_some());
        let mut key_sql = self.groups.clone();
        if let Some(width) = bucket_width {
            key_sql.push(format!(
                "pg_catalog.date_bin({width}, ({})::timestamptz, '2000-01-01 00:00:00+00') AS {BUCKET}",
                self.time
            ));
        }
        for (name, expression) in flags {
            keys.push((*name).into());
            key_sql.push(format!("({expression}) AS {name}"));
        }
        let added = if self.rows_added() {
            format!(", count(*) AS {ADDED_ROWS}")
        } else {
            String::new()
        };
        let filter = self.filter.as_deref().unwrap_or("true");
        let positions = (1..=keys.len())
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT {keys}, {values} FROM (SELECT {key_sql}, {measures}{added} FROM {relation} \
             WHERE ({filter}) AND {condition} GROUP BY {positions}) c",
            keys = keys.join(", "),
            key_sql = key_sql.join(", "),
            values = self.signed_values(sign, true),
            measures = self.measures,
        )
    }

    /// The stored sums of the whole buckets starting in `[from, to)`, per group: the buckets
    /// table and what the log has not yet folded into it.
    pub fn stored_buckets(&self, from: &str, to: &str, sign: Sign) -> String {
        let keys = self.quoted_keys(false);
        let values = self.signed_values(sign, false);
        [&self.buckets, &self.log]
            .iter()
            .map(|relation| {
                format!(
                    "SELECT {keys}, {values} FROM {relation} WHERE {BUCKET} >= {from} AND {BUCKET} < {to}"
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    }

    /// Each whole row of a stored table (the aggregate table, or buckets and log), as
    /// contributions: for rebuilding the table from itself plus a delta.
    pub fn stored_rows(&self, relation: &str, per_bucket: bool) -> String {
        format!(
            "SELECT {}, {} FROM {relation}",
            self.quoted_keys(per_bucket),
            self.signed_values(Sign::Plus, false)
        )
    }

    fn signed_values(&self, sign: Sign, may_be_null: bool) -> String {
        let minus = if sign == Sign::Minus { "-" } else { "" };
        list(&self.value_columns(), |c| {
            if may_be_null {
                format!("{minus}COALESCE({c}, 0) AS {c}")
            } else {
                format!("{minus}{c} AS {c}")
            }
        })
    }

    fn summed_values(&self) -> String {
        list(&self.value_columns(), |c| format!("sum({c}) AS {c}"))
    }

    /// Keeps only keys whose change is not zero everywhere, so a statement that changes nothing
    /// counted (an update of another column) locks nothing.
    fn changed(&self) -> String {
        self.value_columns()
            .iter()
            .map(|c| format!("sum({c}) <> 0"))
            .collect::<Vec<_>>()
            .join(" OR ")
    }

    /// Adds `delta` (contributions, any number per key) into `target`, the aggregate table or
    /// the buckets. Keys are upserted in their order, so two writers touching the same groups
    /// lock them in the same order and cannot deadlock each other.
    pub fn upsert(&self, target: &str, delta: &str, per_bucket: bool) -> String {
        let keys = self.quoted_keys(per_bucket);
        let positions = self.positions(per_bucket);
        let set = list(&self.value_columns(), |c| {
            format!("{c} = t.{c} + excluded.{c}")
        });
        format!(
            "INSERT INTO {target} AS t ({keys}, {values}) \
             SELECT {keys}, {summed} FROM ({delta}) d GROUP BY {positions} HAVING {changed} \
             ORDER BY {positions} \
             ON CONFLICT ({keys}) DO UPDATE SET {set}",
            values = self.value_columns().join(", "),
            summed = self.summed_values(),
            changed = self.changed(),
        )
    }

    /// Appends `delta` (contributions per bucket) to the log: no lock, no conflict.
    pub fn append(&self, delta: &str) -> String {
        let keys = self.quoted_keys(true);
        format!(
            "INSERT INTO {log} ({keys}, {values}) \
             SELECT {keys}, {summed} FROM ({delta}) d GROUP BY {positions} HAVING {changed}",
            log = self.log,
            values = self.value_columns().join(", "),
            summed = self.summed_values(),
            positions = self.positions(true),
            changed = self.changed(),
        )
    }

    /// Folds the log into the buckets, in one statement: a log row is either deleted and added
    /// or neither.
    pub fn fold_log(&self) -> String {
        let moved = format!("{} RETURNING *", self.delete_all(&self.log));
        format!(
            "WITH moved AS ({moved}) {}",
            self.upsert(&self.buckets, &self.stored_rows("moved", true), true)
        )
    }

    /// Removes the groups left with no row.
    pub fn delete_empty_groups(&self) -> String {
        format!("DELETE FROM {} WHERE {} = 0", self.table, self.rows)
    }

    fn delete_all(&self, relation: &str) -> String {
        format!("DELETE FROM {relation}")
    }

    /// What the trigger runs for one statement, in one statement: read the window of the last
    /// refresh, group the changed rows (`parts`: transition tables and their sign) per group,
    /// bucket, whether they fall inside the window and whether they are dated before the last
    /// refresh, append the latter to the log and upsert the former into the aggregate table.
    fn apply_changes(&self, parts: &[(&str, Sign)]) -> String {
        let t = &self.time;
        let window = format!(
            "dbopt_window AS (SELECT window_start AS dbopt_window_start, \
               window_end AS dbopt_window_end, refreshed_at AS dbopt_refreshed_at, \
               bucket_size AS dbopt_bucket_width, \
               pg_catalog.date_bin(bucket_size, window_start, '2000-01-01 00:00:00+00') AS dbopt_first_bucket \
             FROM dbopt.rolling_aggregates WHERE id = {})",
            self.id
        );
        let changes = parts
            .iter()
            .map(|(rows, sign)| {
                self.grouped(
                    &format!("{rows}, dbopt_window"),
                    &format!("{t} >= dbopt_first_bucket"),
                    Some("dbopt_bucket_width"),
                    &[
                        (
                            IN_WINDOW,
                            &format!("{t} >= dbopt_window_start AND {t} <= dbopt_window_end"),
                        ),
                        (BEFORE_REFRESH, &format!("{t} < dbopt_refreshed_at")),
                    ],
                    *sign,
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        format!(
            "WITH {window}, dbopt_changes AS MATERIALIZED ({changes}), dbopt_logged AS ({log}) {upsert}",
            log = self.append(&format!("SELECT * FROM dbopt_changes WHERE {BEFORE_REFRESH}")),
            upsert = self.upsert(
                &self.table,
                &format!("SELECT * FROM dbopt_changes WHERE {IN_WINDOW}"),
                false
            ),
        )
    }

    /// The statement-level trigger function on the source. It runs in the creator's
    /// search_path (`SET ... FROM CURRENT`), where the measures and filter were checked, and,
    /// with `pin_time_zone`, in the creator's TimeZone, in which a date or a timestamp without
    /// time zone is compared with the window (a timestamptz compares alike in any).
    pub fn trigger_function(&self, function: &str, pin_time_zone: bool) -> String {
        let apply = |parts: &[(&str, Sign)], deletes: bool| {
            let mut statements = vec![self.apply_changes(parts)];
            if deletes {
                statements.push(self.delete_empty_groups());
            }
            statements
                .iter()
                .map(|s| format!("        {s};\n"))
                .collect::<String>()
        };
        let body = format!(
            "
BEGIN
    -- Rows moved to or from an archive by dbopt stay counted until they age out.
    IF pg_catalog.current_setting('dbopt.archiving', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        {truncate_table};
        {truncate_buckets};
        {truncate_log};
        RETURN NULL;
    END IF;
    -- Under REPEATABLE READ or SERIALIZABLE the snapshot may predate the last refresh, or the
    -- aggregate itself: changes applied with the window it shows would corrupt the table. The
    -- sequence, read outside any snapshot, says whether a refresh came since.
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed'
       AND NOT EXISTS (SELECT FROM dbopt.rolling_aggregates
                        WHERE id = {id} AND refresh_epoch = (SELECT last_value FROM {epoch})) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'serialization_failure',
            MESSAGE = {refreshed},
            HINT = 'Retry the transaction.';
    END IF;
    -- Inserts come through dbopt.rolling_insert_gate, only when a new row is dated at or
    -- before the window's end: later rows wait for the next refresh, which reads the source.
    IF TG_OP = 'INSERT' THEN
{insert}    ELSIF TG_OP = 'UPDATE' THEN
{update}    ELSE
{delete}    END IF;
    RETURN NULL;
END
",
            id = self.id,
            epoch = self.epoch,
            refreshed = sql_literal(&format!(
                "rolling aggregate {} was refreshed after this transaction's snapshot was taken",
                self.table
            )),
            truncate_table = self.delete_all(&self.table),
            truncate_buckets = self.delete_all(&self.buckets),
            truncate_log = self.delete_all(&self.log),
            insert = apply(&[(NEW_ROWS, Sign::Plus)], false),
            update = apply(&[(NEW_ROWS, Sign::Plus), (OLD_ROWS, Sign::Minus)], true),
            delete = apply(&[(OLD_ROWS, Sign::Minus)], true),
        );
        format!(
            "CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql \
             SET search_path FROM CURRENT{} AS {}",
            if pin_time_zone {
                " SET TimeZone FROM CURRENT"
            } else {
                ""
            },
            dollar_quoted(&body)
        )
    }
}

/// A string constant: quotes doubled, backslashes meaning themselves
/// (standard_conforming_strings is on in every supported PostgreSQL).
fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `body` between dollar quotes whose tag it does not contain, so nothing in it (the caller's
/// filter included) can end the quoted text early.
fn dollar_quoted(body: &str) -> String {
    let tag = (0..)
        .map(|n| format!("$dbopt{n}$"))
        .find(|tag| !body.contains(tag.as_str()))
        .expect("some tag is absent from any finite text");
    format!("{tag}{body}{tag}")
}

fn list(items: &[String], f: impl Fn(&str) -> String) -> String {
    items.iter().map(|i| f(i)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Spec {
        Spec {
            id: 7,
            table: r#""public"."user_spending_30d""#.into(),
            buckets: r#""public"."user_spending_30d_dbopt_buckets""#.into(),
            log: r#""public"."user_spending_30d_dbopt_log""#.into(),
            epoch: r#""public"."user_spending_30d_dbopt_epoch""#.into(),
            source: r#""public"."orders""#.into(),
            groups: vec!["user_id".into()],
            time: "created_at".into(),
            measure_names: vec!["total_orders".into(), "total_spent".into()],
            rows: "total_orders".into(),
            measures: "count(*) AS total_orders, sum(total_amount) AS total_spent".into(),
            filter: Some("status = 'completed'".into()),
        }
    }

    #[test]
    fn contributions_group_filter_and_sign_the_rows() {
        let sql = seed().contributions("dbopt_old", "true", None, Sign::Minus);
        assert_eq!(
            sql,
            "SELECT user_id, -COALESCE(total_orders, 0) AS total_orders, \
             -COALESCE(total_spent, 0) AS total_spent FROM (SELECT user_id, count(*) AS total_orders, \
             sum(total_amount) AS total_spent FROM dbopt_old WHERE (status = 'completed') AND true \
             GROUP BY 1) c"
        );
    }

    #[test]
    fn per_bucket_contributions_bin_the_time_column() {
        let sql = seed().contributions("dbopt_new", "true", Some("$1"), Sign::Plus);
        assert!(sql.contains(
            "pg_catalog.date_bin($1, (created_at)::timestamptz, '2000-01-01 00:00:00+00') AS dbopt_bucket"
        ));
        assert!(sql.contains("GROUP BY 1, 2"));
    }

    #[test]
    fn a_row_count_is_added_when_no_measure_counts_rows() {
        let spec = Spec {
            measure_names: vec!["total_spent".into()],
            rows: ADDED_ROWS.into(),
            measures: "sum(total_amount) AS total_spent".into(),
            filter: None,
            ..seed()
        };
        assert_eq!(spec.value_columns(), ["total_spent", "dbopt_rows"]);
        let sql = spec.contributions("t", "true", None, Sign::Plus);
        assert!(sql.contains("sum(total_amount) AS total_spent, count(*) AS dbopt_rows FROM t"));
        assert!(sql.contains("WHERE (true) AND true"));
    }

    #[test]
    fn upserts_go_in_key_order_and_skip_unchanged_keys() {
        let spec = Spec {
            groups: vec!["user_id".into(), "\"Region\"".into()],
            ..seed()
        };
        let sql = spec.upsert(&spec.table, "SELECT 1", false);
        assert!(
            sql.contains("GROUP BY 1, 2 HAVING sum(total_orders) <> 0 OR sum(total_spent) <> 0")
        );
        assert!(sql.contains("ORDER BY 1, 2 ON CONFLICT (user_id, \"Region\") DO UPDATE SET"));
        assert!(sql.contains("total_orders = t.total_orders + excluded.total_orders"));
    }

    #[test]
    fn folding_the_log_moves_its_rows_in_one_statement() {
        let sql = seed().fold_log();
        assert!(sql.starts_with(
            r#"WITH moved AS (DELETE FROM "public"."user_spending_30d_dbopt_log" RETURNING *) INSERT INTO "public"."user_spending_30d_dbopt_buckets""#
        ));
        assert!(sql.contains("ON CONFLICT (user_id, dbopt_bucket)"));
    }

    #[test]
    fn the_trigger_body_cannot_be_ended_by_the_filter() {
        let spec = Spec {
            filter: Some("note <> '$dbopt0$ ; drop table t'".into()),
            ..seed()
        };
        let sql = spec.trigger_function(r#""public"."f""#, true);
        assert!(sql.contains(" AS $dbopt1$\n"));
        assert!(sql.ends_with("$dbopt1$"));
        assert_eq!(sql.matches("$dbopt1$").count(), 2);
        assert!(sql.contains("SET search_path FROM CURRENT SET TimeZone FROM CURRENT"));
    }
}

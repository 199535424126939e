//! Rolling aggregates (issue 5): `dbopt.create_rolling_aggregate` makes a table of per-group
//! counts and sums over a sliding time window of a source table, kept exact at every write by
//! statement-level triggers and aged by `dbopt.refresh_rolling`.
//!
//! - `window.rs`: the time arithmetic (buckets, what a refresh adds and subtracts);
//! - `measures.rs`: which aggregate calls can be kept by subtraction;
//! - `spec.rs`: the SQL that keeps the tables exact, triggers included;
//! - `insert_gate.rs`: the INSERT trigger, which passes on only rows the window covers;
//! - this file: the SQL surface, checks on the caller's input, and the catalog;
//! - `../../sql/rollups.sql`: the definitions table and the public wrappers.

mod insert_gate;
mod measures;
mod spec;
mod window;

#[cfg(any(test, feature = "pg_test"))]
mod sql_tests;

use crate::checks;
use crate::ddl;
use crate::errors::{DboptError, OrRaise};
use crate::gucs;
use crate::ident::{quote_identifier, quote_literal, quote_qualified_identifier, Relation};
use measures::Kind;
use pgrx::datum::{DatumWithOid, Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use spec::{Sign, Spec, ADDED_ROWS, BUCKET};
use window::{RangeParts, Refresh, Window};

/// Helper objects are named `<name><suffix>`, so a name may use the rest of PostgreSQL's 63
/// bytes.
const HELPER_SUFFIXES: [&str; 4] = [
    "_dbopt_buckets",
    "_dbopt_log",
    "_dbopt_epoch",
    "_dbopt_maintain",
];
const MAX_NAME_BYTES: usize = 63 - 15;

fn invalid(message: impl Into<String>) -> DboptError {
    DboptError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message)
}

fn required<T>(value: Option<T>, parameter: &str) -> T {
    value.unwrap_or_else(|| {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{parameter} must not be NULL"),
        )
        .raise()
    })
}

/// What `create_rolling_aggregate` checked and will build.
struct Plan {
    schema: String,
    name: String,
    source: Relation,
    groups: Vec<String>,
    time: String,
    /// timestamptz: compared and binned the same in any TimeZone.
    time_has_zone: bool,
    measure_names: Vec<String>,
    rows: String,
    measures: String,
    filter: Option<String>,
    window_size: Interval,
    bucket_size: Interval,
    lookahead: Interval,
}

#[allow(clippy::too_many_arguments)]
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn rolling_create(
    name: Option<&str>,
    source: Option<pg_sys::Oid>,
    group_by: Option<&str>,
    time_column: Option<&str>,
    measures: Option<&str>,
    window_size: Option<Interval>,
    filter: Option<&str>,
    bucket_size: Option<Interval>,
    lookahead: Option<Interval>,
    callers_path: &str,
    callers_time_zone: &str,
) -> pg_sys::Oid {
    let plan = check_definition(
        required(name, "name"),
        Relation::from_oid(required(source, "source")),
        required(group_by, "group_by"),
        required(time_column, "time_column"),
        required(measures, "measures"),
        required(window_size, "window_size"),
        filter,
        bucket_size,
        lookahead,
        callers_path,
    );
    let in_callers_settings = |f: &mut dyn FnMut()| {
        gucs::with_local(
            &[
                (c"search_path", callers_path),
                (c"TimeZone", callers_time_zone),
            ],
            f,
        )
    };
    // Writers wait while the table is filled, so that no write falls between the fill and the
    // triggers; SHARE ROW EXCLUSIVE is also what CREATE TRIGGER takes, so no lock upgrade.
    ddl::execute(
        &format!(
            "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
            plan.source.quoted()
        ),
        &plan.source.quoted(),
    );
    let table = quote_qualified_identifier(&plan.schema, &plan.name);
    let helper =
        |suffix: &str| quote_qualified_identifier(&plan.schema, &format!("{}{suffix}", plan.name));
    let groups = plan
        .groups
        .iter()
        .map(|g| quote_identifier(g))
        .collect::<Vec<_>>();
    let positions = (1..=groups.len())
        .map(|i| i.to_string())
        .collect::<Vec<_>>();
    in_callers_settings(&mut || {
        ddl::execute(
            &format!(
                "CREATE TABLE {table} AS SELECT {}, {} FROM {} WHERE false GROUP BY {} WITH NO DATA",
                groups.join(", "),
                plan.measures,
                plan.source.quoted(),
                positions.join(", ")
            ),
            &table,
        )
    });
    let mut ddl_steps = Vec::new();
    for measure in &plan.measure_names {
        ddl_steps.push(format!(
            "ALTER TABLE {table} ALTER COLUMN {} SET NOT NULL",
            quote_identifier(measure)
        ));
    }
    if plan.rows == ADDED_ROWS {
        ddl_steps.push(format!(
            "ALTER TABLE {table} ADD COLUMN {ADDED_ROWS} bigint NOT NULL DEFAULT 0"
        ));
    }
    let (buckets, log, epoch) = (
        helper("_dbopt_buckets"),
        helper("_dbopt_log"),
        helper("_dbopt_epoch"),
    );
    for helper_table in [&buckets, &log] {
        ddl_steps.push(format!("CREATE TABLE {helper_table} (LIKE {table})"));
        ddl_steps.push(format!(
            "ALTER TABLE {helper_table} ADD COLUMN {BUCKET} timestamptz NOT NULL"
        ));
    }
    ddl_steps.push(format!("CREATE SEQUENCE {epoch}"));
    // The group key (NULL is a group like any value), the top-k reads, the groups to delete.
    ddl_steps.push(format!(
        "CREATE UNIQUE INDEX ON {table} ({}) NULLS NOT DISTINCT",
        groups.join(", ")
    ));
    for measure in &plan.measure_names {
        ddl_steps.push(format!(
            "CREATE INDEX ON {table} ({} DESC)",
            quote_identifier(measure)
        ));
    }
    let rows = quote_identifier(&plan.rows);
    ddl_steps.push(format!("CREATE INDEX ON {table} ({rows}) WHERE {rows} = 0"));
    ddl_steps.push(format!(
        "CREATE UNIQUE INDEX ON {buckets} ({}, {BUCKET}) NULLS NOT DISTINCT",
        groups.join(", ")
    ));
    ddl_steps.push(format!("CREATE INDEX ON {buckets} ({BUCKET})"));
    for step in &ddl_steps {
        ddl::execute(step, &table);
    }

    let aggregate = Spi::get_one_with_args::<pg_sys::Oid>(
        &format!(
            "INSERT INTO dbopt.rolling_aggregates
                (aggregate, source, buckets, log, epoch, group_by, time_column, measures,
                 measure_names, rows_column, filter, window_size, bucket_size, lookahead,
                 search_path, time_zone, refreshed_at, window_start, window_end, refresh_epoch)
             VALUES ({t}::regclass, $1, {b}::regclass, {l}::regclass, {e}::regclass, $2, $3, $4,
                     $5, $6, $7, $8, $9, $10, $11, $12, clock_timestamp(),
                     clock_timestamp() - $8, clock_timestamp() + $10, nextval({e}::regclass))
             RETURNING aggregate::oid",
            t = quote_literal(&table),
            b = quote_literal(&buckets),
            l = quote_literal(&log),
            e = quote_literal(&epoch),
        ),
        &[
            plan.source.oid.into(),
            plan.groups.clone().into(),
            plan.time.as_str().into(),
            plan.measures.as_str().into(),
            plan.measure_names.clone().into(),
            plan.rows.as_str().into(),
            plan.filter.as_deref().into(),
            plan.window_size.into(),
            plan.bucket_size.into(),
            plan.lookahead.into(),
            callers_path.into(),
            callers_time_zone.into(),
        ],
    )
    .or_raise("recording the rolling aggregate")
    .expect("INSERT ... RETURNING gives the aggregate");
    let definition = Definition::load(aggregate, false);
    let id = definition.id;
    fill(&definition);

    // The trigger function captures the caller's search_path and TimeZone (SET ... FROM
    // CURRENT): the measures and filter were checked in them.
    let function = helper("_dbopt_maintain");
    in_callers_settings(&mut || {
        ddl::execute(
            &definition
                .spec
                .trigger_function(&function, !plan.time_has_zone),
            &function,
        )
    });
    let source = plan.source.quoted();
    // Inserts pass the gate first (insert_gate.rs): only rows the window covers reach `function`.
    let insert_gate = format!("dbopt.rolling_insert_gate({id})");
    let maintain = format!("{function}()");
    for (event, transition, handler) in [
        ("INSERT", "REFERENCING NEW TABLE AS dbopt_new", &insert_gate),
        (
            "UPDATE",
            "REFERENCING OLD TABLE AS dbopt_old NEW TABLE AS dbopt_new",
            &maintain,
        ),
        ("DELETE", "REFERENCING OLD TABLE AS dbopt_old", &maintain),
        ("TRUNCATE", "", &maintain),
    ] {
        ddl::execute(
            &format!(
                "CREATE TRIGGER {} AFTER {event} ON {source} {transition} \
                 FOR EACH STATEMENT EXECUTE FUNCTION {handler}",
                quote_identifier(&format!("dbopt_rolling_{id}_{}", event.to_lowercase()))
            ),
            &source,
        );
    }
    Spi::run_with_args(
        &format!(
            "UPDATE dbopt.rolling_aggregates SET maintain = {}::regprocedure WHERE id = $1",
            quote_literal(&maintain)
        ),
        &[id.into()],
    )
    .or_raise("recording the trigger function");

    warn_about_missing_time_index(&plan);
    warn_about_archiving(&plan);
    aggregate
}

#[allow(clippy::too_many_arguments)]
fn check_definition(
    name: &str,
    source: Relation,
    group_by: &str,
    time_column: &str,
    measures: &str,
    window_size: Interval,
    filter: Option<&str>,
    bucket_size: Option<Interval>,
    lookahead: Option<Interval>,
    callers_path: &str,
) -> Plan {
    checks::require_table(&source, "source");
    checks::require_privilege(&source, "SELECT", "dbopt.create_rolling_aggregate");
    checks::require_privilege(&source, "TRIGGER", "dbopt.create_rolling_aggregate");

    if checks::interval_below_zero(Some(window_size), true) {
        invalid(format!("window_size must be positive, not {window_size}"))
            .hint("Pass a length such as '30 days'.")
            .raise()
    }
    let bucket_size = bucket_size.unwrap_or_else(|| {
        Interval::from_micros(window::default_bucket_micros(approximate_micros(
            window_size,
        )))
    });
    if bucket_size.months() != 0 || checks::interval_below_zero(Some(bucket_size), true) {
        invalid(format!(
            "bucket_size must be a positive number of days, hours, minutes or seconds, not {bucket_size}"
        ))
        .hint("Months vary in length, so buckets are measured in days or less.")
        .raise()
    }
    if approximate_micros(bucket_size) > approximate_micros(window_size) {
        invalid(format!(
            "bucket_size {bucket_size} is longer than window_size {window_size}"
        ))
        .raise()
    }
    let lookahead = lookahead.unwrap_or_else(|| Interval::from_micros(0));
    if checks::interval_below_zero(Some(lookahead), false) {
        invalid(format!("lookahead must not be negative, not {lookahead}"))
            .hint("It is how far past its last refresh the table counts new rows, e.g. '1 day'.")
            .raise()
    }

    let groups = group_columns(&source, group_by);
    let time = checks::require_time_column(
        &source,
        time_column,
        "A rolling window is a stretch of time: use a date, timestamp or timestamptz column.",
    );
    let time_has_zone = time.type_oid == pg_sys::TIMESTAMPTZOID;
    let time = time.name;
    let filter = filter.map(str::trim).filter(|f| !f.is_empty());
    if let Some(filter) = filter {
        gucs::in_search_path(callers_path, || checks::check_filter(&source, filter));
    }
    let (measure_names, rows) =
        gucs::in_search_path(callers_path, || check_measures(&source, measures));

    let mut seen = std::collections::HashSet::new();
    for column in groups.iter().chain(&measure_names) {
        if column == BUCKET || (column == ADDED_ROWS && rows == ADDED_ROWS) || !seen.insert(column)
        {
            DboptError::new(
                PgSqlErrorCode::ERRCODE_DUPLICATE_COLUMN,
                format!("column \"{column}\" would appear twice in the rolling aggregate"),
            )
            .hint("Name each measure with AS, apart from the group columns (dbopt_bucket and dbopt_rows are dbopt's).")
            .raise()
        }
    }

    let (schema, relname) = aggregate_name(name, callers_path);
    Plan {
        schema,
        name: relname,
        source,
        groups,
        time,
        time_has_zone,
        measure_names,
        rows,
        measures: measures.trim().to_owned(),
        filter: filter.map(str::to_owned),
        window_size,
        bucket_size,
        lookahead,
    }
}

/// A month counted as 30 days: only to compare lengths and pick a default bucket.
fn approximate_micros(interval: Interval) -> i64 {
    const DAY: i64 = 24 * 3600 * window::MICROS_PER_SECOND;
    (i64::from(interval.months()) * 30 + i64::from(interval.days())) * DAY + interval.micros()
}

/// The group columns, as a comma-separated list of SQL identifiers.
fn group_columns(source: &Relation, group_by: &str) -> Vec<String> {
    let names = crate::ident::parse_identifier_list(group_by).unwrap_or_else(|why| {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_SYNTAX_ERROR,
            format!("group_by \"{group_by}\" is not a list of column names: {why}"),
        )
        .hint("Pass column names separated by commas, e.g. 'user_id' or 'user_id, region'.")
        .raise()
    });
    names.iter().map(|name| source.column(name).name).collect()
}

/// Checks the measures and returns their column names and the column counting rows.
fn check_measures(source: &Relation, measures: &str) -> (Vec<String>, String) {
    let refuse_syntax = || -> ! {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_SYNTAX_ERROR,
            format!("measures \"{measures}\" are not a list of aggregate calls"),
        )
        .hint("Pass e.g. 'count(*) AS total_orders, sum(total_amount) AS total_spent'.")
        .raise()
    };
    let parsed = measures::parse(measures).unwrap_or_else(|| refuse_syntax());
    if parsed.is_empty() {
        refuse_syntax()
    }
    let mut kinds = Vec::new();
    for measure in &parsed {
        match measures::classify(measure) {
            Ok(kind) => kinds.push(kind),
            Err(why) => DboptError::new(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("measure {} cannot be kept by a rolling aggregate: {why}", measure.text),
            )
            .hint("Use count(*), count(expr) or sum(expr) (with FILTER if needed); for an average keep a sum and a count and divide when reading.")
            .raise(),
        }
    }
    // Planning the measures over the source checks their columns and gives their names and types.
    let probe = format!("SELECT {measures} FROM {} LIMIT 0", source.quoted());
    let columns = PgTryBuilder::new(|| {
        Spi::connect(|client| {
            let table = client.select(probe.as_str(), None, &[])?;
            (1..=table.columns()?)
                .map(|i| Ok((table.column_name(i)?, table.column_type_oid(i)?.value())))
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
        .or_raise("checking the measures")
    })
    .catch_others(|caught| match caught {
        pgrx::pg_sys::panic::CaughtError::PostgresError(report)
        | pgrx::pg_sys::panic::CaughtError::ErrorReport(report) => DboptError::new(
            report.sql_error_code(),
            format!(
                "measures \"{measures}\" are not valid over {}: {}",
                source.quoted(),
                report.message()
            ),
        )
        .raise(),
        other => other.rethrow(),
    })
    .execute();
    for ((name, type_oid), measure) in columns.iter().zip(&parsed) {
        if !matches!(*type_oid, pg_sys::INT8OID | pg_sys::NUMERICOID) {
            DboptError::new(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "measure {} ({name}) does not sum exact numbers: adding and subtracting it would drift",
                    measure.text
                ),
            )
            .hint("Sum an integer or numeric expression, e.g. sum(amount::numeric).")
            .raise()
        }
    }
    let names: Vec<String> = columns.into_iter().map(|(name, _)| name).collect();
    let rows = kinds
        .iter()
        .position(|kind| *kind == Kind::CountRows)
        .map(|i| names[i].clone())
        .unwrap_or_else(|| ADDED_ROWS.to_owned());
    (names, rows)
}

/// Splits the aggregate's name into schema (the caller's current schema by default) and name,
/// refusing one that exists, one whose helper objects' names would not fit, and a missing
/// schema.
fn aggregate_name(text: &str, callers_path: &str) -> (String, String) {
    let parts = PgTryBuilder::new(|| {
        Spi::get_one_with_args::<Vec<String>>("SELECT pg_catalog.parse_ident($1)", &[text.into()])
            .or_raise("parsing the aggregate's name")
            .unwrap_or_default()
    })
    .catch_others(|_| Vec::new())
    .execute();
    let (schema, name) = match parts.as_slice() {
        [name] => {
            let schema = gucs::in_search_path(callers_path, || {
                Spi::get_one::<String>("SELECT current_schema()::text")
                    .or_raise("reading current_schema")
            });
            let schema = schema.unwrap_or_else(|| {
                DboptError::new(
                    PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME,
                    format!("no schema in search_path to create \"{name}\" in"),
                )
                .hint("Qualify the name, e.g. 'public.user_spending_30d'.")
                .raise()
            });
            (schema, name.clone())
        }
        [schema, name] => (schema.clone(), name.clone()),
        _ => DboptError::new(
            PgSqlErrorCode::ERRCODE_INVALID_NAME,
            format!("name \"{text}\" must be a table name, optionally schema-qualified"),
        )
        .raise(),
    };
    if name.len() > MAX_NAME_BYTES {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_NAME_TOO_LONG,
            format!("name \"{name}\" is longer than {MAX_NAME_BYTES} bytes"),
        )
        .detail(format!(
            "dbopt names its helper objects after the table ({}), within PostgreSQL's 63 bytes.",
            HELPER_SUFFIXES.join(", ")
        ))
        .raise()
    }
    checks::require_schema(&schema, &format!("name \"{text}\""));
    let taken = Spi::get_one_with_args::<String>(
        "SELECT (SELECT c.relname::text FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relname = ANY ($2) LIMIT 1)",
        &[
            schema.as_str().into(),
            std::iter::once(name.clone())
                .chain(HELPER_SUFFIXES.iter().map(|s| format!("{name}{s}")))
                .collect::<Vec<_>>()
                .into(),
        ],
    )
    .or_raise("looking for an existing relation");
    if let Some(taken) = taken {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_TABLE,
            format!(
                "relation {} already exists",
                quote_qualified_identifier(&schema, &taken)
            ),
        )
        .hint("Pick another name, or drop the old aggregate with dbopt.drop_rolling_aggregate.")
        .raise()
    }
    (schema, name)
}

fn warn_about_missing_time_index(plan: &Plan) {
    if !checks::has_index_leading_with(plan.source.oid, &plan.time) {
        pgrx::warning!(
            "dbopt.create_rolling_aggregate: {} has no index leading with {}; each refresh_rolling will scan it to read the edges of the window. Create one, e.g. CREATE INDEX CONCURRENTLY ON {} ({})",
            plan.source.quoted(),
            quote_identifier(&plan.time),
            plan.source.quoted(),
            quote_identifier(&plan.time)
        );
    }
}

/// Rows dbopt.archive moves out stay counted until they age out, but a rebuild or a
/// verification reads the source alone: an archive cutoff inside the window makes them differ.
fn warn_about_archiving(plan: &Plan) {
    let archived_within = Spi::get_one_with_args::<Interval>(
        "SELECT min(started - cutoff) FROM dbopt.archive_runs
          WHERE source = $1 AND direction = 'archive' AND cutoff IS NOT NULL
          HAVING min(started - cutoff) < $2",
        &[plan.source.oid.into(), plan.window_size.into()],
    )
    .unwrap_or(None);
    if let Some(older_than) = archived_within {
        pgrx::warning!(
            "dbopt.create_rolling_aggregate: rows of {} older than {older_than} have been archived, within the {} window: they are missing from this aggregate",
            plan.source.quoted(),
            plan.window_size
        );
    }
}

/// A rolling aggregate as recorded in `dbopt.rolling_aggregates`.
struct Definition {
    id: i64,
    spec: Spec,
    table: Relation,
    source: Relation,
    group_names: Vec<String>,
    measure_names: Vec<String>,
    window_size: Interval,
    bucket_size: Interval,
    lookahead: Interval,
    refreshed_at: i64,
    /// The window the table holds, as the triggers read it.
    held: Window,
    search_path: String,
    time_zone: String,
}

impl Definition {
    /// `lock` takes the definition's row lock, which serializes refreshes of one aggregate.
    fn load(aggregate: pg_sys::Oid, lock: bool) -> Definition {
        let table = Relation::from_oid(aggregate);
        let sql = format!(
            "SELECT id, source::oid, buckets::oid, log::oid, epoch::oid, group_by::text[],
                    time_column::text, measures, measure_names::text[], rows_column::text, filter,
                    window_size, bucket_size, refreshed_at, search_path, time_zone, lookahead,
                    window_start, window_end
               FROM dbopt.rolling_aggregates WHERE aggregate = $1{}",
            if lock { " FOR UPDATE" } else { "" }
        );
        let found = Spi::connect_mut(|client| {
            let rows = client.update(sql.as_str(), Some(1), &[aggregate.into()])?;
            let Some(row) = rows.into_iter().next() else {
                return Ok(None);
            };
            let text = |i: usize| -> Result<String, pgrx::spi::Error> {
                Ok(row.get::<String>(i)?.unwrap_or_default())
            };
            let oid = |i: usize| -> Result<pg_sys::Oid, pgrx::spi::Error> {
                Ok(row.get::<pg_sys::Oid>(i)?.unwrap_or(pg_sys::InvalidOid))
            };
            let texts = |i: usize| -> Result<Vec<String>, pgrx::spi::Error> {
                Ok(row.get::<Vec<String>>(i)?.unwrap_or_default())
            };
            let interval = |i: usize| -> Result<Interval, pgrx::spi::Error> {
                Ok(row.get::<Interval>(i)?.expect("NOT NULL"))
            };
            let stamp = |i: usize| -> Result<i64, pgrx::spi::Error> {
                Ok(row
                    .get::<TimestampWithTimeZone>(i)?
                    .expect("NOT NULL")
                    .into())
            };
            Ok::<_, pgrx::spi::Error>(Some((
                row.get::<i64>(1)?.unwrap_or_default(),
                [oid(2)?, oid(3)?, oid(4)?, oid(5)?],
                texts(6)?,
                [text(7)?, text(8)?, text(10)?],
                texts(9)?,
                row.get::<String>(11)?,
                [interval(12)?, interval(13)?, interval(17)?],
                [stamp(14)?, stamp(18)?, stamp(19)?],
                [text(15)?, text(16)?],
            )))
        })
        .or_raise("reading a rolling aggregate");
        let Some((
            id,
            [source, buckets, log, epoch],
            group_names,
            [time, measures, rows],
            measure_names,
            filter,
            [window_size, bucket_size, lookahead],
            [refreshed_at, window_start, window_end],
            [search_path, time_zone],
        )) = found
        else {
            DboptError::new(
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!("{} is not a rolling aggregate", table.quoted()),
            )
            .hint("Rolling aggregates are made by dbopt.create_rolling_aggregate; dbopt.rolling_aggregates lists them.")
            .raise()
        };
        let source = Relation::from_oid(source);
        let quoted = |names: &[String]| names.iter().map(|n| quote_identifier(n)).collect();
        let spec = Spec {
            id,
            table: table.quoted(),
            buckets: Relation::from_oid(buckets).quoted(),
            log: Relation::from_oid(log).quoted(),
            epoch: Relation::from_oid(epoch).quoted(),
            source: source.quoted(),
            groups: quoted(&group_names),
            time: quote_identifier(&time),
            measure_names: quoted(&measure_names),
            rows: quote_identifier(&rows),
            measures,
            filter,
        };
        Definition {
            id,
            spec,
            table,
            source,
            group_names,
            measure_names,
            window_size,
            bucket_size,
            lookahead,
            refreshed_at,
            held: Window {
                start: window_start,
                end: window_end,
            },
            search_path,
            time_zone,
        }
    }

    /// Runs `f` in the creator's search_path and TimeZone, where the measures and filter were
    /// checked and timestamps without time zone are read.
    fn in_settings<T>(&self, f: impl FnOnce() -> T) -> T {
        gucs::with_local(
            &[
                (c"search_path", self.search_path.as_str()),
                (c"TimeZone", self.time_zone.as_str()),
            ],
            f,
        )
    }

    fn bucket_micros(&self) -> i64 {
        approximate_micros(self.bucket_size)
    }

    fn bucket_width_sql(&self) -> String {
        format!("'{} microseconds'::interval", self.bucket_micros())
    }

    /// The window the table holds after a refresh at `refreshed`: from `window_size` before it
    /// (in the creator's TimeZone, as the seed's `created_at >= now() - interval '30 days'`
    /// computes it) to `lookahead` after it, so rows written until then count at once.
    fn held_window(&self, refreshed: i64) -> Window {
        let (start, end) = gucs::with_local(&[(c"TimeZone", self.time_zone.as_str())], || {
            Spi::get_two_with_args::<TimestampWithTimeZone, TimestampWithTimeZone>(
                "SELECT $1 - $2, $1 + $3",
                &[
                    timestamp(refreshed).into(),
                    self.window_size.into(),
                    self.lookahead.into(),
                ],
            )
        })
        .or_raise("computing the window");
        Window {
            start: start.expect("timestamptz minus interval").into(),
            end: end.expect("timestamptz plus interval").into(),
        }
    }

    /// The seed's window at `now`: `now - window_size` to `now`.
    fn exact_window(&self, now: i64) -> Window {
        Window {
            start: self.held_window(now).start,
            end: now,
        }
    }

    /// The SQL of the rows of `parts` (per group, signed) and its parameters, appended to
    /// `params` (referenced as `$1[i]`).
    fn range_rows(&self, parts: &RangeParts, sign: Sign, params: &mut Vec<i64>) -> Vec<String> {
        let mut param = |value: i64| {
            params.push(value);
            format!("$1[{}]", params.len())
        };
        let mut rows = Vec::new();
        if let Some((from, to)) = parts.buckets {
            let (from, to) = (param(from), param(to));
            rows.push(self.spec.stored_buckets(&from, &to, sign));
        }
        for (from, to) in &parts.from_source {
            let condition = format!(
                "{t} >= {} AND {t} < {}",
                param(*from),
                param(*to),
                t = self.spec.time
            );
            rows.push(
                self.spec
                    .contributions(&self.spec.source, &condition, None, sign),
            );
        }
        rows
    }

    /// The rows that turn the table's window `old` into `new`, and whether they replace the
    /// table's rows (when the windows do not overlap) rather than adjust them.
    fn move_rows(&self, plan: Refresh, params: &mut Vec<i64>) -> (bool, Vec<String>) {
        match plan {
            Refresh::Nothing => (false, Vec::new()),
            Refresh::Delta { left, came_due } => {
                let mut rows = Vec::new();
                for parts in &left {
                    rows.extend(self.range_rows(parts, Sign::Minus, params));
                }
                for parts in &came_due {
                    rows.extend(self.range_rows(parts, Sign::Plus, params));
                }
                (false, rows)
            }
            Refresh::Recompute(parts) => (true, self.range_rows(&parts, Sign::Plus, params)),
        }
    }

    fn json_object(&self, columns: &[String]) -> String {
        let pairs = columns
            .iter()
            .map(|c| format!("{}, {}", quote_literal(c), quote_identifier(c)))
            .collect::<Vec<_>>()
            .join(", ");
        format!("pg_catalog.jsonb_build_object({pairs})")
    }

    fn json_key(&self) -> String {
        format!(
            "pg_catalog.jsonb_build_array({})",
            self.spec.groups.join(", ")
        )
    }
}

fn timestamp(micros: i64) -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(micros).or_raise("converting a timestamp")
}

fn run(sql: &str, params: &[i64], doing: &str) -> u64 {
    let array: Vec<TimestampWithTimeZone> = params.iter().map(|m| timestamp(*m)).collect();
    let args: Vec<DatumWithOid> = if sql.contains("$1") {
        vec![array.into()]
    } else {
        Vec::new()
    };
    Spi::connect_mut(|client| client.update(sql, None, &args).map(|t| t.len() as u64))
        .or_raise(doing)
}

/// Empties the aggregate's tables and fills them from the source, with the window ending now.
/// Called with the source locked against writers.
fn fill(def: &Definition) -> u64 {
    let end = now_micros();
    let window = def.held_window(end);
    let first_bucket = window::first_bucket_kept(window, def.bucket_micros());
    def.in_settings(|| {
        for relation in [&def.spec.table, &def.spec.buckets, &def.spec.log] {
            run(
                &format!("DELETE FROM {relation}"),
                &[],
                "emptying a rolling aggregate",
            );
        }
        let t = &def.spec.time;
        let width = def.bucket_width_sql();
        run(
            &def.spec.upsert(
                &def.spec.buckets,
                &def.spec.contributions(
                    &def.spec.source,
                    &format!("{t} >= $1[1] AND {t} < $1[2]"),
                    Some(&width),
                    Sign::Plus,
                ),
                true,
            ),
            &[first_bucket, end],
            "filling the buckets",
        );
        let groups = run(
            &def.spec.upsert(
                &def.spec.table,
                &def.spec.contributions(
                    &def.spec.source,
                    &format!("{t} >= $1[1] AND {t} <= $1[2]"),
                    None,
                    Sign::Plus,
                ),
                false,
            ),
            &[window.start, window.end],
            "filling the aggregate",
        );
        record_refresh(def, end, window, groups, None);
        groups
    })
}

fn now_micros() -> i64 {
    Spi::get_one::<TimestampWithTimeZone>("SELECT clock_timestamp()")
        .or_raise("reading the clock")
        .expect("a time")
        .into()
}

fn record_refresh(
    def: &Definition,
    refreshed: i64,
    window: Window,
    groups: u64,
    started: Option<std::time::Instant>,
) {
    Spi::run_with_args(
        &format!(
            "UPDATE dbopt.rolling_aggregates
                SET refreshed_at = $2, window_start = $5, window_end = $6,
                    refresh_epoch = nextval({}::regclass),
                    last_refresh_ms = $3, last_refresh_groups = $4
              WHERE id = $1",
            quote_literal(&def.spec.epoch)
        ),
        &[
            def.id.into(),
            timestamp(refreshed).into(),
            started.map(|s| s.elapsed().as_secs_f64() * 1000.0).into(),
            i64::try_from(groups).unwrap_or(i64::MAX).into(),
            timestamp(window.start).into(),
            timestamp(window.end).into(),
        ],
    )
    .or_raise("recording a refresh");
}

/// Locks the aggregate's source in `mode` (waiting at most dbopt.lock_timeout), so that no
/// trigger applies a change with the window being replaced, then reads the definition with its
/// row lock, which serializes refreshes of one aggregate.
fn lock_source_and_load(aggregate: pg_sys::Oid, mode: &str) -> Definition {
    let source = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT (SELECT source::oid FROM dbopt.rolling_aggregates WHERE aggregate = $1)",
        &[aggregate.into()],
    )
    .or_raise("finding an aggregate's source");
    if let Some(source) = source {
        let source = Relation::from_oid(source).quoted();
        ddl::execute(&format!("LOCK TABLE {source} IN {mode} MODE"), &source);
    }
    // Raises 42809 when `aggregate` is not a rolling aggregate.
    Definition::load(aggregate, true)
}

#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn rolling_refresh_of(aggregate: pg_sys::Oid, as_of: Option<TimestampWithTimeZone>) -> String {
    let started = std::time::Instant::now();
    let def = lock_source_and_load(aggregate, "SHARE");
    let end: i64 = as_of.map(Into::into).unwrap_or_else(now_micros);
    let old = def.held;
    if end <= def.refreshed_at {
        return format!(
            "{} already holds the window ending {}",
            def.table.quoted(),
            timestamp(def.refreshed_at)
        );
    }
    let new = def.held_window(end);
    def.in_settings(|| {
        run(
            &def.spec.fold_log(),
            &[],
            "folding the log into the buckets",
        );
        // The rows written since the last refresh went to no bucket (the triggers log changes
        // to older rows only): their buckets are read from the source, now complete up to `end`.
        let seal_from = def
            .refreshed_at
            .max(window::first_bucket_kept(new, def.bucket_micros()));
        if seal_from < end {
            run(
                &def.spec.upsert(
                    &def.spec.buckets,
                    &def.spec.contributions(
                        &def.spec.source,
                        &format!("{t} >= $1[1] AND {t} < $1[2]", t = def.spec.time),
                        Some(&def.bucket_width_sql()),
                        Sign::Plus,
                    ),
                    true,
                ),
                &[seal_from, end],
                "completing the buckets",
            );
        }
        let mut params = Vec::new();
        let (recompute, rows) = def.move_rows(
            window::plan_refresh(old, new, def.bucket_micros(), end),
            &mut params,
        );
        if recompute {
            run(
                &format!("DELETE FROM {}", def.spec.table),
                &[],
                "emptying the aggregate",
            );
        }
        let groups = if rows.is_empty() {
            0
        } else {
            let changed = run(
                &def.spec
                    .upsert(&def.spec.table, &rows.join(" UNION ALL "), false),
                &params,
                "applying a refresh",
            );
            run(
                &def.spec.delete_empty_groups(),
                &[],
                "deleting empty groups",
            );
            changed
        };
        run(
            &format!("DELETE FROM {} WHERE {BUCKET} < $1[1]", def.spec.buckets),
            &[window::first_bucket_kept(new, def.bucket_micros())],
            "dropping old buckets",
        );
        record_refresh(&def, end, new, groups, Some(started));
        format!(
            "{} now holds {} to {}: {groups} groups changed in {:.1} ms",
            def.table.quoted(),
            timestamp(new.start),
            timestamp(new.end),
            started.elapsed().as_secs_f64() * 1000.0
        )
    })
}

/// The read-only queries behind `dbopt.rolling_exact` ("exact") and `dbopt.verify_rolling`
/// ("verify"), with their parameters and the settings to run them in: the SQL wrappers run
/// them, so the rows come back as PostgreSQL made them.
#[pg_extern(stable)]
#[search_path(pg_catalog, pg_temp)]
fn rolling_query(
    aggregate: pg_sys::Oid,
    purpose: &str,
) -> TableIterator<
    'static,
    (
        name!(query, String),
        name!(params, Vec<TimestampWithTimeZone>),
        name!(search_path, String),
        name!(time_zone, String),
    ),
> {
    let def = Definition::load(aggregate, false);
    let (query, params) = def.in_settings(|| match purpose {
        "exact" => exact_query(&def),
        "verify" => verify_query(&def),
        other => invalid(format!("unknown rolling aggregate query \"{other}\"")).raise(),
    });
    TableIterator::once((
        query,
        params.into_iter().map(timestamp).collect(),
        def.search_path,
        def.time_zone,
    ))
}

/// The table's rows brought to now() without changing them.
fn exact_query(def: &Definition) -> (String, Vec<i64>) {
    let old = def.held;
    let new = def.exact_window(now_of_statement());
    let mut params = Vec::new();
    let (recompute, mut rows) = def.move_rows(
        window::plan_move(old, new, def.bucket_micros(), def.refreshed_at),
        &mut params,
    );
    if !recompute {
        rows.push(def.spec.stored_rows(&def.spec.table, false));
    }
    let keys = def.spec.groups.join(", ");
    let sums = def
        .spec
        .value_columns()
        .iter()
        .map(|c| format!("sum({c}) AS {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut columns = def.group_names.clone();
    columns.extend(def.measure_names.iter().cloned());
    (
        format!(
            "SELECT {object} FROM (SELECT {keys}, {sums} FROM ({rows}) d GROUP BY {keys} \
                 HAVING sum({count}) <> 0) r",
            object = def.json_object(&columns),
            rows = rows.join(" UNION ALL "),
            count = def.spec.rows,
        ),
        params,
    )
}

fn now_of_statement() -> i64 {
    Spi::get_one::<TimestampWithTimeZone>("SELECT now()")
        .or_raise("reading now()")
        .expect("a time")
        .into()
}

/// The table against its window recomputed from the source, and the buckets (with the log)
/// against the source per bucket, for the rows before the last refresh that they hold.
fn verify_query(def: &Definition) -> (String, Vec<i64>) {
    let t = &def.spec.time;
    let values = def.spec.value_columns();
    let mut value_names = def.measure_names.clone();
    if def.spec.rows == ADDED_ROWS {
        value_names.push(ADDED_ROWS.into());
    }
    let object = def.json_object(&value_names);
    let key = def.json_key();
    let keys = def.spec.groups.join(", ");
    let sums = values
        .iter()
        .map(|c| format!("sum({c}) AS {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let compare = |bucket: &str, stored: &str, fresh: &str| {
        format!(
                "SELECT coalesce(s.b, f.b) AS bucket, coalesce(s.k, f.k) AS group_key, \
                        s.v AS stored, f.v AS recomputed \
                   FROM ({stored}) s FULL JOIN ({fresh}) f ON s.k = f.k AND s.b IS NOT DISTINCT FROM f.b \
                  WHERE s.v IS DISTINCT FROM f.v",
                stored = stored.replace("{bucket}", bucket),
                fresh = fresh.replace("{bucket}", bucket),
            )
    };
    let width = def.bucket_width_sql();
    let table_check = compare(
        "NULL::timestamptz",
        &format!(
            "SELECT {{bucket}} AS b, {key} AS k, {object} AS v FROM {}",
            def.spec.table
        ),
        &format!(
            "SELECT {{bucket}} AS b, {key} AS k, {object} AS v FROM ({}) c",
            def.spec.contributions(
                &def.spec.source,
                &format!("{t} >= $1[1] AND {t} <= $1[2]"),
                None,
                Sign::Plus
            )
        ),
    );
    let bucket_check = compare(
        BUCKET,
        &format!(
            "SELECT {BUCKET} AS b, {key} AS k, {object} AS v FROM \
                 (SELECT {keys}, {BUCKET}, {sums} FROM ({stored}) u GROUP BY {keys}, {BUCKET} \
                  HAVING sum({count}) <> 0) c",
            stored = [&def.spec.buckets, &def.spec.log]
                .iter()
                .map(|r| def.spec.stored_rows(r, true))
                .collect::<Vec<_>>()
                .join(" UNION ALL "),
            count = def.spec.rows,
        ),
        &format!(
            "SELECT {BUCKET} AS b, {key} AS k, {object} AS v FROM ({}) c",
            def.spec.contributions(
                &def.spec.source,
                &format!("{t} >= $1[3] AND {t} < $1[4]"),
                Some(&width),
                Sign::Plus
            )
        ),
    );
    // One JSON object per difference, as rolling_run_of returns every query's rows.
    let query = format!(
        "SELECT pg_catalog.jsonb_build_object('bucket', bucket, 'group_key', group_key, \
                'stored', stored, 'recomputed', recomputed) \
           FROM ({table_check} UNION ALL {bucket_check}) d ORDER BY bucket NULLS FIRST, group_key"
    );
    let window = def.held;
    let params = vec![
        window.start,
        window.end,
        window::first_bucket_kept(window, def.bucket_micros()),
        def.refreshed_at,
    ];
    (query, params)
}

#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn rolling_rebuild_of(aggregate: pg_sys::Oid) -> i64 {
    let def = lock_source_and_load(aggregate, "SHARE");
    i64::try_from(fill(&def)).unwrap_or(i64::MAX)
}

#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn rolling_drop_of(aggregate: pg_sys::Oid) {
    let def = Definition::load(aggregate, true);
    let source = def.source.quoted();
    for event in ["insert", "update", "delete", "truncate"] {
        ddl::execute(
            &format!(
                "DROP TRIGGER IF EXISTS {} ON {source}",
                quote_identifier(&format!("dbopt_rolling_{}_{event}", def.id))
            ),
            &source,
        );
    }
    let maintain = Spi::get_one_with_args::<String>(
        "SELECT maintain::text FROM dbopt.rolling_aggregates WHERE id = $1",
        &[def.id.into()],
    )
    .or_raise("reading the trigger function");
    if let Some(function) = maintain {
        ddl::execute(&format!("DROP FUNCTION IF EXISTS {function}"), &function);
    }
    for relation in [&def.spec.log, &def.spec.buckets, &def.spec.table] {
        ddl::execute(&format!("DROP TABLE IF EXISTS {relation}"), relation);
    }
    ddl::execute(
        &format!("DROP SEQUENCE IF EXISTS {}", def.spec.epoch),
        &def.spec.epoch,
    );
    Spi::run_with_args(
        "DELETE FROM dbopt.rolling_aggregates WHERE id = $1",
        &[def.id.into()],
    )
    .or_raise("forgetting the rolling aggregate");
}

extension_sql_file!(
    "../../sql/rollups.sql",
    name = "rollups",
    requires = [
        insert_gate::rolling_insert_gate,
        rolling_create,
        rolling_refresh_of,
        rolling_query,
        rolling_rebuild_of,
        rolling_drop_of
    ]
);

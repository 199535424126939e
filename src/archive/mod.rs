//! Batched archiving (issue 4): `CALL dbopt.archive(...)` moves old rows to an archive table in
//! committed batches, each one statement that deletes and inserts the same rows, so no row is
//! ever in both tables or in neither; `dbopt.unarchive` moves them back; partitions lying wholly
//! before the cutoff move by DETACH and ATTACH instead of row by row.
//!
//! [`plan`] builds the statements (pure), [`catalog`] reads keys, columns and partitions and
//! checks what the caller passed. The procedures that commit between batches, the run log and
//! the reference guard are in `sql/archive.sql`.

pub mod catalog;
pub mod plan;
mod policy;
#[cfg(any(test, feature = "pg_test"))]
mod sql_tests;

use crate::checks;
use crate::ddl;
use crate::errors::{DboptError, OrRaise};
use crate::gucs;
use crate::ident::{quote_identifier, quote_qualified_identifier, Relation};
use crate::partitions::naming::child_name;
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use plan::{Direction, Move, Position};

/// Batches between two progress NOTICEs.
const NOTICE_EVERY: i32 = 10;

/// How long a batch that does not skip locked rows waits for one before it is retried as one
/// that does.
const BRIEF_ROW_LOCK_WAIT_MS: i32 = 20;

fn invalid(message: impl Into<String>) -> DboptError {
    DboptError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message)
}

/// Checks everything the caller passed, creates the archive table when it does not exist yet,
/// and records the run. Called by the procedures once they hold the source's advisory lock.
#[allow(clippy::too_many_arguments)]
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn archive_begin(
    direction: &str,
    callers_path: &str,
    source: pg_sys::Oid,
    archive_table: Option<&str>,
    filter: Option<&str>,
    batch_size: Option<i32>,
    time_column: Option<&str>,
    older_than: Option<Interval>,
    max_runtime: Option<Interval>,
    pause: Option<Interval>,
) -> i64 {
    let direction = Direction::parse(direction)
        .unwrap_or_else(|| invalid(format!("unknown direction \"{direction}\"")).raise());
    let source = Relation::from_oid(source);
    checks::require_table(&source, "source");
    match batch_size {
        Some(n) if n >= 1 => {}
        other => invalid(format!(
            "batch_size must be at least 1, not {}",
            other.map_or("NULL".into(), |n| n.to_string())
        ))
        .raise(),
    }
    if checks::interval_below_zero(max_runtime, true) {
        invalid("max_runtime must be positive").raise()
    }
    if checks::interval_below_zero(pause, false) {
        invalid("pause must not be negative").raise()
    }
    let key = catalog::key_columns(source.oid).unwrap_or_else(|| {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "{} has no primary key and no unique index on NOT NULL columns",
                source.quoted()
            ),
        )
        .detail(
            "dbopt moves rows with a key: the archive's primary key on it is what makes a row \
             moved twice (after a crash, by a second run) fail instead of being duplicated.",
        )
        .hint(format!(
            "Add one, e.g. ALTER TABLE {} ADD PRIMARY KEY (id).",
            source.quoted()
        ))
        .raise()
    });
    if catalog::columns(source.oid)
        .iter()
        .any(|(name, _)| name == "archived_at")
    {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_COLUMN,
            format!("{} already has a column named archived_at", source.quoted()),
        )
        .hint("dbopt adds archived_at to the archive table; rename the source's column.")
        .raise()
    }

    let (cutoff, time_column) = match direction {
        Direction::Archive => {
            let column = time_column.unwrap_or_else(|| {
                DboptError::new(
                    PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                    "time_column must not be NULL",
                )
                .raise()
            });
            let column = checks::require_time_column(
                &source,
                column,
                "dbopt.archive picks rows by age: use a date, timestamp or timestamptz column.",
            );
            let older_than = older_than.unwrap_or_else(|| {
                DboptError::new(
                    PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                    "older_than must not be NULL",
                )
                .hint("Pass an age such as '2 years'; rows older than now() minus it move.")
                .raise()
            });
            if checks::interval_below_zero(Some(older_than), false) {
                invalid(format!(
                    "older_than must not be negative, not {older_than}"
                ))
                .hint("Rows older than now() minus older_than move; a negative age would take rows from the future.")
                .raise()
            }
            let cutoff = Spi::get_one_with_args::<TimestampWithTimeZone>(
                "SELECT now() - $1",
                &[older_than.into()],
            )
            .or_raise("computing the cutoff");
            warn_about_rolling_aggregates(&source, older_than);
            (cutoff, Some(column.name))
        }
        Direction::Unarchive => (None, None),
    };
    if direction == Direction::Unarchive && filter.is_none() {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "filter must not be NULL",
        )
        .hint("Say which archived rows to bring back, e.g. user_id = 42; pass 'true' for all.")
        .raise()
    }

    if direction == Direction::Archive {
        if let Some(filter) = filter {
            gucs::in_search_path(callers_path, || checks::check_filter(&source, filter));
        }
        // Before the archive is created: a caller who cannot move rows creates nothing.
        checks::require_privilege(&source, "SELECT", "dbopt.archive");
        checks::require_privilege(&source, "DELETE", "dbopt.archive");
    }
    let archive = match direction {
        Direction::Archive => {
            let (schema, name) = qualified_name(&source, archive_table, "archive", "archive_table");
            match existing_table(&schema, &name) {
                Some(oid) => {
                    let archive = Relation::from_oid(oid);
                    check_archive(&source, &archive, &key);
                    archive
                }
                None => create_archive(&source, &schema, &name, &key),
            }
        }
        Direction::Unarchive => {
            let archive = find_archive(&source, archive_table);
            check_archive(&source, &archive, &key);
            archive
        }
    };
    let (moved_from, moved_to, why) = match direction {
        Direction::Archive => (&source, &archive, "dbopt.archive"),
        Direction::Unarchive => (&archive, &source, "dbopt.unarchive"),
    };
    if let (Direction::Unarchive, Some(filter)) = (direction, filter) {
        gucs::in_search_path(callers_path, || checks::check_filter(&archive, filter));
    }
    checks::require_privilege(moved_from, "SELECT", why);
    checks::require_privilege(moved_from, "DELETE", why);
    checks::require_privilege(moved_to, "INSERT", why);
    if checks::relkind(source.oid) == "p"
        && catalog::partitions(source.oid)
            .iter()
            .any(|p| p.partitioned)
    {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("{} has sub-partitions", source.quoted()),
        )
        .hint("dbopt archives tables partitioned on one level only.")
        .raise()
    }

    // The caller holds the source's lock, so a run still marked running has lost its session.
    Spi::run_with_args(
        "UPDATE dbopt.archive_runs SET status = 'interrupted', finished = clock_timestamp()
          WHERE source = $1 AND status = 'running'",
        &[source.oid.into()],
    )
    .or_raise("closing interrupted runs");
    let run = Spi::get_one_with_args::<i64>(
        "INSERT INTO dbopt.archive_runs
             (direction, source, source_name, archive, archive_name, time_column, cutoff, filter,
              batch_size, search_path)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        &[
            match direction {
                Direction::Archive => "archive",
                Direction::Unarchive => "unarchive",
            }
            .into(),
            source.oid.into(),
            source.quoted().into(),
            archive.oid.into(),
            archive.quoted().into(),
            time_column.into(),
            cutoff.into(),
            filter.into(),
            batch_size.into(),
            callers_path.into(),
        ],
    )
    .or_raise("recording the run")
    .expect("INSERT … RETURNING returns the row");
    plan_targets(run);
    run
}

/// Rows archived inside a rolling aggregate's window stay counted by it (their deletes are
/// archive moves) but are gone from the source its rebuild and verification read.
fn warn_about_rolling_aggregates(source: &Relation, older_than: Interval) {
    let aggregates = Spi::get_one_with_args::<String>(
        "SELECT string_agg(aggregate::text || ' (' || window_size || ')', ', ' ORDER BY id)
           FROM dbopt.rolling_aggregates WHERE source = $1 AND window_size > $2",
        &[source.oid.into(), older_than.into()],
    )
    .or_raise("looking for rolling aggregates");
    if let Some(aggregates) = aggregates {
        pgrx::warning!(
            "dbopt.archive: rows of {} older than {older_than} are inside the window of {aggregates}: they stay counted there until they age out, but rebuild_rolling and verify_rolling will no longer see them",
            source.quoted()
        );
    }
}

/// A name the caller passed (as `parameter`), split into schema and name; by default
/// `<source>_<suffix>` beside source. The schema must exist.
fn qualified_name(
    source: &Relation,
    text: Option<&str>,
    suffix: &str,
    parameter: &str,
) -> (String, String) {
    let Some(text) = text else {
        return (source.schema.clone(), child_name(&source.name, suffix));
    };
    let parts =
        Spi::get_one_with_args::<Vec<String>>("SELECT pg_catalog.parse_ident($1)", &[text.into()])
            .or_raise("parsing a table name")
            .unwrap_or_default();
    let (schema, name) = match parts.as_slice() {
        [name] => (source.schema.clone(), name.clone()),
        [schema, name] => (schema.clone(), name.clone()),
        _ => invalid(format!(
            "{parameter} \"{text}\" must be a name, optionally schema-qualified"
        ))
        .raise(),
    };
    checks::require_schema(&schema, &format!("{parameter} \"{text}\""));
    (schema, name)
}

fn existing_table(schema: &str, name: &str) -> Option<pg_sys::Oid> {
    Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT (SELECT c.oid FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relname = $2)",
        &[schema.into(), name.into()],
    )
    .or_raise("looking up the archive table")
}

/// The archive `unarchive` and `create_history_view` read: the one named, else the one the
/// source's last archive run wrote, else `<source>_archive`.
fn find_archive(source: &Relation, archive_table: Option<&str>) -> Relation {
    let recorded = if archive_table.is_none() {
        Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT (SELECT r.archive::oid FROM dbopt.archive_runs r
                       JOIN pg_catalog.pg_class c ON c.oid = r.archive
                      WHERE r.source = $1 AND r.direction = 'archive'
                      ORDER BY r.id DESC LIMIT 1)",
            &[source.oid.into()],
        )
        .or_raise("finding the archive of a source")
    } else {
        None
    };
    let oid = recorded.or_else(|| {
        let (schema, name) = qualified_name(source, archive_table, "archive", "archive_table");
        existing_table(&schema, &name)
    });
    let archive = oid.map(Relation::from_oid).unwrap_or_else(|| {
        let (schema, name) = qualified_name(source, archive_table, "archive", "archive_table");
        DboptError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!(
                "archive table {} of {} does not exist",
                quote_qualified_identifier(&schema, &name),
                source.quoted()
            ),
        )
        .hint("Archive rows with dbopt.archive first, or name the archive with archive_table.")
        .raise()
    });
    checks::require_table(&archive, "archive table");
    archive
}

/// Refuses an archive table that cannot hold the source's rows exactly.
fn check_archive(source: &Relation, archive: &Relation, key: &[String]) {
    checks::require_table(archive, "archive table");
    if archive.oid == source.oid {
        invalid(format!("{} cannot be its own archive", source.quoted())).raise()
    }
    require_matching_columns(source, archive);
    if catalog::key_columns(archive.oid).as_deref() != Some(key) {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION,
            format!(
                "{} has no primary key on ({}), the key of {}",
                archive.quoted(),
                key.join(", "),
                source.quoted()
            ),
        )
        .detail("Without it a row moved twice would be duplicated instead of refused.")
        .hint(format!(
            "ALTER TABLE {} ADD PRIMARY KEY ({}).",
            archive.quoted(),
            key.join(", ")
        ))
        .raise()
    }
}

/// Refuses an archive whose columns are not source's plus archived_at, listing the differences.
fn require_matching_columns(source: &Relation, archive: &Relation) {
    let problems = plan::archive_mismatches(
        &catalog::columns(source.oid),
        &catalog::columns(archive.oid),
    );
    if !problems.is_empty() {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION,
            format!(
                "{} does not match {}: it cannot be its archive",
                archive.quoted(),
                source.quoted()
            ),
        )
        .detail(problems.join("; "))
        .hint("Name another archive_table (dbopt creates it), or make the columns match.")
        .raise()
    }
}

/// Creates `schema.name` with source's columns, types and defaults, its key as primary key and
/// `archived_at`; partitioned like source when source is. Sequence defaults are left out: the
/// archive keeps the values rows had, and must not depend on (or draw from) source's sequences.
fn create_archive(source: &Relation, schema: &str, name: &str, key: &[String]) -> Relation {
    let table = quote_qualified_identifier(schema, name);
    let partitioning = Spi::get_one_with_args::<String>(
        "SELECT ' PARTITION BY ' || pg_catalog.pg_get_partkeydef($1)",
        &[source.oid.into()],
    )
    .or_raise("reading the partition key")
    .unwrap_or_default();
    ddl::execute(
        &format!(
            "CREATE TABLE {table} (LIKE {} INCLUDING DEFAULTS, \
             archived_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY ({})){partitioning}",
            source.quoted(),
            key.join(", ")
        ),
        &table,
    );
    let oid = existing_table(schema, name).expect("the archive was just created");
    let sequence_defaults = Spi::get_one_with_args::<String>(
        "SELECT string_agg(format('ALTER COLUMN %I DROP DEFAULT', a.attname), ', ')
           FROM pg_catalog.pg_attrdef d
           JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
          WHERE d.adrelid = $1 AND pg_catalog.pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%'",
        &[oid.into()],
    )
    .or_raise("listing sequence defaults");
    if let Some(drops) = sequence_defaults {
        ddl::execute(&format!("ALTER TABLE {table} {drops}"), &table);
    }
    notice!(
        "dbopt.archive: created {table} for the archived rows of {}",
        source.quoted()
    );
    Relation::from_oid(oid)
}

/// What a run needs at every step, as `archive_begin` recorded it.
struct Run {
    direction: Direction,
    source: Relation,
    archive: Relation,
    time_column: Option<String>,
    cutoff: Option<TimestampWithTimeZone>,
    filter: Option<String>,
    batch_size: i32,
    callers_path: String,
}

impl Run {
    fn load(id: i64) -> Run {
        let row = Spi::connect(|client| {
            let row = client
                .select(
                    "SELECT direction, source::oid, archive::oid, time_column::text, cutoff,
                             filter, batch_size, search_path
                        FROM dbopt.archive_runs WHERE id = $1",
                    Some(1),
                    &[id.into()],
                )?
                .first();
            Ok::<_, pgrx::spi::Error>((
                row.get::<String>(1)?,
                row.get::<pg_sys::Oid>(2)?,
                row.get::<pg_sys::Oid>(3)?,
                row.get::<String>(4)?,
                row.get::<TimestampWithTimeZone>(5)?,
                row.get::<String>(6)?,
                row.get::<i32>(7)?,
                row.get::<String>(8)?,
            ))
        })
        .or_raise("reading the run");
        match row {
            (
                Some(direction),
                Some(source),
                Some(archive),
                time_column,
                cutoff,
                filter,
                Some(batch_size),
                callers_path,
            ) => Run {
                direction: Direction::parse(&direction).expect("the table checks direction"),
                source: Relation::from_oid(source),
                archive: Relation::from_oid(archive),
                time_column,
                cutoff,
                filter,
                batch_size,
                callers_path: callers_path.unwrap_or_else(|| "\"$user\", public".into()),
            },
            _ => DboptError::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("archive run {id} does not exist"),
            )
            .raise(),
        }
    }

    /// The batch that moves rows of `from` (the source, one of its partitions, or the archive).
    fn batch_for(&self, from: &Relation, skip_locked: bool) -> Move {
        let older_than = self.time_column.as_deref().map(|column| {
            (
                quote_identifier(column),
                self.source.column(column).type_name,
            )
        });
        let position = match (&older_than, &self.time_column) {
            (Some((column, type_name)), Some(name))
                if checks::has_index_leading_with(from.oid, name) =>
            {
                Position::Time {
                    column: column.clone(),
                    type_name: type_name.clone(),
                }
            }
            _ => Position::Physical,
        };
        let (into, columns) = match self.direction {
            Direction::Archive => (self.archive.quoted(), catalog::all_columns(self.source.oid)),
            Direction::Unarchive => (self.source.quoted(), self.source.insertable_columns()),
        };
        Move {
            from: from.quoted(),
            into,
            columns,
            older_than,
            filter: self.filter.clone(),
            position,
            direction: self.direction,
            reference_guard: catalog::is_referenced(from.oid)
                .then(|| "dbopt.archive_unreferenced".to_owned()),
            skip_locked,
        }
    }
}

/// Records what a run does, table by table: `batch` moves a table's rows in batches, `attach`
/// moves a partition lying wholly before the cutoff by DETACH and ATTACH. Creates the archive
/// partitions that batched rows of a partitioned source need.
fn plan_targets(id: i64) {
    let run = Run::load(id);
    let moved_from = match run.direction {
        Direction::Archive => &run.source,
        Direction::Unarchive => &run.archive,
    };
    let mut targets = Vec::new();
    if checks::relkind(moved_from.oid) != "p" {
        targets.push((moved_from.oid, "batch"));
    } else {
        let into_partitions =
            run.direction == Direction::Archive && checks::relkind(run.archive.oid) == "p";
        let by_time = into_partitions
            && catalog::range_key_column(run.source.oid) == run.time_column
            && owns(&run.source)
            && owns(&run.archive);
        let archive_partitions = if into_partitions {
            catalog::partitions(run.archive.oid)
        } else {
            Vec::new()
        };
        for partition in catalog::partitions(moved_from.oid) {
            let rel = Relation::from_oid(partition.oid);
            let (lower, upper) = plan::range_bounds(&partition.bound);
            let has_twin = archive_partitions
                .iter()
                .any(|a| a.bound == partition.bound);
            if by_time && lower.is_some_and(|l| !run.before_cutoff(&l, false)) {
                continue;
            }
            if by_time
                && !has_twin
                && upper.is_some_and(|u| run.before_cutoff(&u, true))
                && run.all_rows_match_filter(&rel)
            {
                targets.push((partition.oid, "attach"));
                continue;
            }
            if !run.any_left(&rel) {
                continue;
            }
            if into_partitions && !has_twin {
                let twin = quote_qualified_identifier(
                    &run.archive.schema,
                    &child_name(&partition.name, "archive"),
                );
                ddl::execute(
                    &format!(
                        "CREATE TABLE {twin} PARTITION OF {} {}",
                        run.archive.quoted(),
                        partition.bound
                    ),
                    &twin,
                );
            }
            targets.push((partition.oid, "batch"));
        }
    }
    let (oids, actions): (Vec<pg_sys::Oid>, Vec<&str>) = targets.into_iter().unzip();
    Spi::run_with_args(
        "UPDATE dbopt.archive_runs SET targets = $2::oid[]::regclass[], actions = $3
           WHERE id = $1",
        &[id.into(), oids.into(), actions.into()],
    )
    .or_raise("recording the run's plan");
}

/// Whether the current user may DETACH and ATTACH partitions of `rel` (its owner's rights).
fn owns(rel: &Relation) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT (SELECT pg_catalog.pg_has_role(relowner, 'USAGE')
                   FROM pg_catalog.pg_class WHERE oid = $1)",
        &[rel.oid.into()],
    )
    .or_raise("checking ownership")
    .unwrap_or(false)
}

impl Run {
    /// Whether a bound value of the time column lies before the cutoff (or at it, with `or_at`).
    fn before_cutoff(&self, value: &str, or_at: bool) -> bool {
        let column = self
            .time_column
            .as_deref()
            .expect("archive runs have a time column");
        let type_name = self.source.column(column).type_name;
        let op = if or_at { "<=" } else { "<" };
        Spi::get_one_with_args::<bool>(
            &format!("SELECT $1::{type_name} {op} $2::{type_name}"),
            &[value.into(), self.cutoff.into()],
        )
        .or_raise("comparing a partition bound with the cutoff")
        .unwrap_or(false)
    }

    fn all_rows_match_filter(&self, partition: &Relation) -> bool {
        let Some(filter) = &self.filter else {
            return true;
        };
        let query = format!(
            "SELECT NOT EXISTS (SELECT 1 FROM ONLY {} WHERE NOT coalesce(({filter}), false))",
            partition.quoted()
        );
        self.ask(query, "checking a partition's rows against the filter")
            .unwrap_or(false)
    }

    fn remaining(&self, from: &Relation) -> i64 {
        self.ask(
            self.batch_for(from, false).remaining_sql(),
            "counting the rows left",
        )
        .unwrap_or(0)
    }

    /// Whether `from` has a row to move: an EXISTS, not a count, when planning a partitioned run.
    fn any_left(&self, from: &Relation) -> bool {
        self.ask(
            self.batch_for(from, false).any_left_sql(),
            "looking for rows to move",
        )
        .unwrap_or(false)
    }

    /// One value from a query about the rows to move ($1: the cutoff), run in the caller's
    /// search_path like the batches, since it evaluates the caller's filter.
    fn ask<T: IntoDatum + FromDatum>(&self, query: String, doing: &str) -> Option<T> {
        gucs::in_search_path(&self.callers_path, || {
            Spi::get_one_with_args::<T>(&query, &[self.cutoff.into()])
        })
        .or_raise(doing)
    }

    /// Adds a step's work to the run's row, in the step's transaction.
    fn record(&self, id: i64, rows: i64, batches: i32, partitions: i32) -> (i32, i64, f64) {
        Spi::connect_mut(|client| {
            let row = client
                .update(
                    "UPDATE dbopt.archive_runs r
                         SET rows_moved = r.rows_moved + $2, batches = r.batches + $3,
                             partitions_moved = r.partitions_moved + $4,
                             last_batch_at = clock_timestamp(),
                             rows_per_second = (r.rows_moved + $2)
                                 / greatest(extract(epoch FROM clock_timestamp() - r.started), 0.001)
                       WHERE r.id = $1
                      RETURNING r.batches, r.rows_moved, r.rows_per_second",
                    None,
                    &[id.into(), rows.into(), batches.into(), partitions.into()],
                )?
                .first();
            Ok::<_, pgrx::spi::Error>((
                row.get::<i32>(1)?.unwrap_or(0),
                row.get::<i64>(2)?.unwrap_or(0),
                row.get::<f64>(3)?.unwrap_or(0.0),
            ))
        })
        .or_raise("recording progress")
    }
}

/// One step of a run on one table, in the caller's transaction: `batch` (moves up to
/// batch_size rows past `position`, returning how many and the position reached, NULL when the
/// pass is over; fails with 55P03 when another session holds one of them), `batch_skip_locked`
/// (the same, locking the rows first and skipping those others hold), or one of the three steps moving a whole partition: `fence` (a NOT VALID
/// CHECK matching its bound), `validate` (without blocking writers), `swap` (DETACH from the
/// source, ATTACH to the archive, in one transaction that scans nothing).
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn archive_step(
    run: i64,
    target: pg_sys::Oid,
    step: &str,
    position: Option<&str>,
) -> TableIterator<'static, (name!(moved, i64), name!(next_position, Option<String>))> {
    let id = run;
    let run = Run::load(id);
    let target = Relation::from_oid(target);
    let done = match step {
        "batch" => move_batch(id, &run, &target, position, false),
        "batch_skip_locked" => move_batch(id, &run, &target, position, true),
        "fence" => {
            fence_partition(&target);
            (0, None)
        }
        "validate" => {
            ddl::execute(
                &format!(
                    "ALTER TABLE {} VALIDATE CONSTRAINT {FENCE}",
                    target.quoted()
                ),
                &target.quoted(),
            );
            (0, None)
        }
        "swap" => swap_partition(id, &run, &target),
        other => invalid(format!("unknown archive step \"{other}\"")).raise(),
    };
    TableIterator::once(done)
}

fn move_batch(
    id: i64,
    run: &Run,
    from: &Relation,
    position: Option<&str>,
    skip_locked: bool,
) -> (i64, Option<String>) {
    let batch = run.batch_for(from, skip_locked);
    let position = position.unwrap_or(batch.position.start());
    let statement = batch.batch_sql();
    // A batch is lost whole if at all: after a crash its rows are back in the table they left,
    // and its progress row with them. So its commit need not wait for the WAL flush; the WAL
    // writer flushes it in the background.
    gucs::set_local(c"synchronous_commit", "off");
    // Without skip_locked a row another session holds stops the batch here, and the caller
    // retries it skipping locked rows: so wait for one only briefly.
    let lock_timeout_ms = if skip_locked {
        gucs::lock_timeout_ms()
    } else {
        gucs::lock_timeout_ms().min(BRIEF_ROW_LOCK_WAIT_MS)
    };
    let lock_timeout = format!("{lock_timeout_ms}ms");
    let settings = [
        (c"search_path", run.callers_path.as_str()),
        (c"dbopt.archiving", "on"),
        (c"lock_timeout", lock_timeout.as_str()),
    ];
    let (deleted, inserted, reached) = gucs::with_local(&settings, || {
        Spi::connect_mut(|client| {
            let row = client
                .update(
                    statement.as_str(),
                    None,
                    &[
                        run.cutoff.into(),
                        position.into(),
                        run.batch_size.into(),
                        from.oid.into(),
                    ],
                )?
                .first();
            Ok::<_, pgrx::spi::Error>((
                row.get::<i64>(1)?.unwrap_or(0),
                row.get::<i64>(2)?.unwrap_or(0),
                row.get::<String>(3)?,
            ))
        })
    })
    .or_raise("moving a batch");
    if deleted != inserted {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION,
            format!(
                "a batch deleted {deleted} row(s) from {} but inserted {inserted} into {}; rolled back",
                from.quoted(),
                batch.into
            ),
        )
        .hint(format!(
            "A trigger or rule on {} skips or adds rows; dbopt refuses to lose or duplicate any.",
            batch.into
        ))
        .raise()
    }
    let (batches, total, rate) = run.record(id, deleted, 1, 0);
    if deleted > 0 && batches % NOTICE_EVERY == 0 {
        let (verb, way) = match run.direction {
            Direction::Archive => ("archive", "out of"),
            Direction::Unarchive => ("unarchive", "back into"),
        };
        notice!(
            "dbopt.{verb}: {total} rows moved {way} {} in {batches} batches ({rate:.0} rows/s)",
            run.source.quoted()
        );
    }
    (deleted, reached.filter(|_| deleted > 0))
}

/// The CHECK constraint that lets ATTACH skip scanning a partition it moves whole.
const FENCE: &str = "dbopt_archive_bound";

fn fence_partition(partition: &Relation) {
    let fenced = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = $1 AND conname = $2)",
        &[partition.oid.into(), FENCE.into()],
    )
    .or_raise("looking for the fence constraint")
    .unwrap_or(false);
    if fenced {
        return;
    }
    let bound = Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.pg_get_partition_constraintdef($1)",
        &[partition.oid.into()],
    )
    .or_raise("reading a partition constraint")
    .unwrap_or_else(|| invalid(format!("{} is not a partition", partition.quoted())).raise());
    ddl::execute(
        &format!(
            "ALTER TABLE {} ADD CONSTRAINT {FENCE} CHECK ({bound}) NOT VALID",
            partition.quoted()
        ),
        &partition.quoted(),
    );
}

fn swap_partition(id: i64, run: &Run, partition: &Relation) -> (i64, Option<String>) {
    let bound = Spi::get_one_with_args::<String>(
        "SELECT (SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid)
                   FROM pg_catalog.pg_class c JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid
                  WHERE c.oid = $1 AND i.inhparent = $2)",
        &[partition.oid.into(), run.source.oid.into()],
    )
    .or_raise("reading a partition bound")
    .unwrap_or_else(|| {
        invalid(format!(
            "{} is no longer a partition of {}",
            partition.quoted(),
            run.source.quoted()
        ))
        .raise()
    });
    let rows = Spi::get_one::<i64>(&format!("SELECT count(*) FROM ONLY {}", partition.quoted()))
        .or_raise("counting a partition's rows")
        .unwrap_or(0);
    ddl::execute(
        &format!(
            "ALTER TABLE {} DETACH PARTITION {}",
            run.source.quoted(),
            partition.quoted()
        ),
        &run.source.quoted(),
    );
    ddl::execute(
        &format!(
            "ALTER TABLE {} ADD COLUMN archived_at timestamptz NOT NULL DEFAULT now()",
            partition.quoted()
        ),
        &partition.quoted(),
    );
    let moved = if partition.schema == run.archive.schema {
        partition.quoted()
    } else {
        ddl::execute(
            &format!(
                "ALTER TABLE {} SET SCHEMA {}",
                partition.quoted(),
                quote_identifier(&run.archive.schema)
            ),
            &partition.quoted(),
        );
        quote_qualified_identifier(&run.archive.schema, &partition.name)
    };
    ddl::execute(
        &format!(
            "ALTER TABLE {} ATTACH PARTITION {moved} {bound}",
            run.archive.quoted()
        ),
        &run.archive.quoted(),
    );
    ddl::execute(
        &format!("ALTER TABLE {moved} DROP CONSTRAINT {FENCE}"),
        &moved,
    );
    run.record(id, rows, 0, 1);
    notice!(
        "dbopt.archive: moved partition {moved} ({rows} rows) to {} by DETACH and ATTACH",
        run.archive.quoted()
    );
    (rows, None)
}

/// Rows of `target` the run has still to move, whether or not other sessions hold them.
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn archive_remaining(run: i64, target: pg_sys::Oid) -> i64 {
    Run::load(run).remaining(&Relation::from_oid(target))
}

/// Creates (or replaces) the view of all rows, hot and archived: source UNION ALL its archive,
/// without archived_at. The view checks the privileges of whoever queries it.
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn history_view_create(
    source: pg_sys::Oid,
    view_name: Option<&str>,
    archive_table: Option<&str>,
) -> pg_sys::Oid {
    let source = Relation::from_oid(source);
    checks::require_table(&source, "source");
    let archive = find_archive(&source, archive_table);
    require_matching_columns(&source, &archive);
    let (schema, name) = qualified_name(&source, view_name, "history", "view_name");
    let view = quote_qualified_identifier(&schema, &name);
    let columns = catalog::all_columns(source.oid);
    ddl::execute(
        &format!(
            "CREATE OR REPLACE VIEW {view} WITH (security_invoker = true) AS \
             SELECT {columns} FROM {} UNION ALL SELECT {columns} FROM {}",
            source.quoted(),
            archive.quoted()
        ),
        &view,
    );
    existing_table(&schema, &name).expect("the view was just created")
}

extension_sql_file!(
    "../../sql/archive.sql",
    name = "archive",
    requires = [
        archive_begin,
        archive_step,
        archive_remaining,
        history_view_create,
        policy::archive_policy_check
    ]
);

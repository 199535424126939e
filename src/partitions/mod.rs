//! Partition management (issue 3): `dbopt.create_partitions`, `dbopt.run_maintenance`,
//! retention and online conversion of an existing table. Boundaries are computed from the clock
//! and the catalog, never by scanning data.
//!
//! Pure logic: [`step`] (what an interval means for a column type), [`boundaries`] (aligned
//! ranges, DST-safe), [`naming`] (predictable names within 63 bytes), [`plan`] (what a set
//! needs) and [`actions`] (the DDL and its locks). The catalog and SPI layer: [`catalog`] and
//! [`maintain`]. The procedures that commit between steps are in `sql/partitions.sql`.

pub mod actions;
pub mod boundaries;
pub mod catalog;
pub mod convert;
pub mod maintain;
pub mod naming;
pub mod plan;
#[cfg(any(test, feature = "pg_test"))]
mod sql_tests;
pub mod step;

use crate::errors::{DboptError, OrRaise};
use crate::ident::quote_identifier;
use actions::Retention;
use catalog::PartitionSet;
use maintain::{Config, Workspace};
use pgrx::prelude::*;
use pgrx::PgRelation;

fn invalid(message: impl Into<String>) -> DboptError {
    DboptError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message)
}

fn parse_interval(set: &PartitionSet, text: &str) -> step::Step {
    step::parse_step(text, set.control_type).unwrap_or_else(|reason| {
        invalid(format!(
            "partition_interval for {}: {reason}",
            set.rel.quoted()
        ))
        .hint(step::ACCEPTED_FORMS)
        .raise()
    })
}

/// Registers `parent` with dbopt and creates its partitions: from `start_from` (default: now)
/// through `premake` intervals ahead of now, plus a default partition. Returns the partitions
/// created, or with `dry_run` the statements it would run.
#[allow(clippy::too_many_arguments)]
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn create_partitions(
    parent: PgRelation,
    control: &str,
    partition_interval: &str,
    premake: default!(i32, 4),
    start_from: default!(Option<&str>, "NULL"),
    with_default: default!(bool, true),
    dry_run: default!(bool, false),
    future_limit: default!(Option<i32>, "NULL"),
    max_per_run: default!(i32, 24),
) -> SetOfIterator<'static, String> {
    let set = PartitionSet::inspect(parent.oid(), control);
    drop(parent);
    let made = create_for(
        set,
        &Request {
            partition_interval,
            premake,
            start_from,
            with_default,
            future_limit,
            max_per_run,
        },
        dry_run,
        None,
    );
    SetOfIterator::new(made)
}

/// What `create_partitions` is asked for.
pub struct Request<'a> {
    pub partition_interval: &'a str,
    pub premake: i32,
    pub start_from: Option<&'a str>,
    pub with_default: bool,
    pub future_limit: Option<i32>,
    pub max_per_run: i32,
}

/// `create_partitions` for an inspected set; `base_name` names partitions after another table
/// (the online conversion names them after the table being converted).
pub fn create_for(
    set: PartitionSet,
    request: &Request,
    dry_run: bool,
    base_name: Option<&str>,
) -> Vec<String> {
    let &Request {
        partition_interval,
        premake,
        start_from,
        with_default,
        future_limit,
        max_per_run,
    } = request;
    let step = parse_interval(&set, partition_interval);
    if premake < 1 {
        invalid(format!("premake must be at least 1, not {premake}"))
            .hint("premake is how many intervals ahead of now partitions are kept ready.")
            .raise();
    }
    let future_limit = future_limit.unwrap_or(premake.saturating_mul(3));
    if future_limit < premake {
        invalid(format!(
            "future_limit ({future_limit}) is below premake ({premake})"
        ))
        .raise();
    }
    if max_per_run < 1 {
        invalid(format!("max_per_run must be at least 1, not {max_per_run}")).raise();
    }
    set.require_ddl_privileges();
    let existing = Config::load(set.rel.oid);
    if let Some(existing) = &existing {
        let same_interval = step::parse_step(&existing.partition_interval, set.control_type)
            .is_ok_and(|known| known == step);
        if existing.control != set.control.name || !same_interval {
            DboptError::new(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!(
                    "table {} is already managed by dbopt with control {} and interval '{}'",
                    set.rel.quoted(),
                    quote_identifier(&existing.control),
                    existing.partition_interval
                ),
            )
            .hint("Changing the layout of existing partitions is not supported; pass the registered control and interval.")
            .raise();
        }
    }

    let mut ws = Workspace::open(set, step);
    if let Some(name) = base_name {
        ws.base_name = name.to_owned();
    }
    let zone = ws.zone();
    let now = ws.set.position(&ws.layout, &ws.zone);
    let from = start_from.map_or(now, |text| ws.set.parse_position(text, &ws.zone));
    // Integer controls have no clock: an empty set is counted from where it starts.
    let base = match (now, from) {
        (plan::Position::Int(n), plan::Position::Int(f)) if ws.layout.partitions.is_empty() => {
            plan::Position::Int(n.max(f))
        }
        _ => now,
    };
    let through = plan::ahead(base, step, premake as u32).unwrap_or(base);
    let wanted = plan::uncovered(
        plan::ranges(ws.set.control_type, step, from, through, &zone),
        &ws.children(),
    );
    let (stranded, _) = ws.stranded_ranges(wanted.len(), None, None);
    let stranded: Vec<_> = stranded
        .into_iter()
        .filter(|s| wanted.iter().any(|w| w.lower == s.lower))
        .collect();
    let mut actions = ws.creations(&wanted, &stranded);
    if with_default {
        actions.extend(ws.default_partition());
    }

    if dry_run {
        let statements: Vec<String> = actions
            .iter()
            .flat_map(|a| a.statements.iter().map(|s| s.sql.clone()))
            .collect();
        return statements;
    }
    register(
        ws.set.rel.oid,
        &ws.set.control.name,
        partition_interval,
        premake,
        with_default,
        future_limit,
        max_per_run,
    );
    let mut logbook = maintain::Logbook::new(ws.set.rel.oid, ws.set.rel.quoted());
    logbook.run(&actions, Some("create_partitions"));
    logbook.write();
    let position = ws.refresh();
    let keep = existing.and_then(|config| config.retention_keep);
    maintain::Schedule::of(&ws, position, premake, with_default, keep.as_deref())
        .store(ws.set.rel.oid, &ws.zone);
    actions.into_iter().map(|a| a.object).collect()
}

fn register(
    parent: pg_sys::Oid,
    control: &str,
    partition_interval: &str,
    premake: i32,
    with_default: bool,
    future_limit: i32,
    max_per_run: i32,
) {
    Spi::run_with_args(
        "INSERT INTO dbopt.partition_config AS c \
           (parent, control, partition_interval, premake, with_default, future_limit, max_per_run) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (parent) DO UPDATE SET premake = EXCLUDED.premake, \
           with_default = EXCLUDED.with_default, future_limit = EXCLUDED.future_limit, \
           max_per_run = EXCLUDED.max_per_run",
        &[
            parent.into(),
            control.into(),
            partition_interval.into(),
            premake.into(),
            with_default.into(),
            future_limit.into(),
            max_per_run.into(),
        ],
    )
    .or_raise("registering the partition set");
}

/// Maintenance of one registered parent in the caller's transaction: what
/// `CALL dbopt.run_maintenance()` runs for each parent, between commits. Returns the number of
/// actions taken; each is in `dbopt.partition_log`.
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn maintain_partitions(parent: PgRelation) -> i64 {
    let config = Config::require(parent.oid());
    drop(parent);
    PartitionSet::inspect(config.parent, &config.control).require_ddl_privileges();
    maintain::maintain(&config)
}

/// Whether a partition may hold rows, answered without waiting for locks: what
/// `dbopt.maintenance_due` asks of the partitions a parent's schedule watches.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn may_have_rows(partition: pg_sys::Oid) -> bool {
    catalog::may_have_rows(partition)
}

/// What `run_maintenance` would do, statement by statement, with the lock each takes;
/// `dbopt.maintenance_plan` shows these rows with the parent as a regclass.
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn maintenance_steps(
    parent: default!(Option<PgRelation>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(parent, pg_sys::Oid),
        name!(step, String),
        name!(statement, String),
        name!(lock_mode, String),
    ),
> {
    let parents = match parent {
        Some(rel) => vec![Config::require(rel.oid())],
        None => registered_parents()
            .into_iter()
            .filter_map(Config::load)
            .collect(),
    };
    let mut rows = Vec::new();
    for config in parents {
        let plan = maintain::plan_maintenance(&config);
        for report in plan.reports {
            rows.push((
                config.parent,
                "report".to_owned(),
                format!("-- {report}"),
                "none".to_owned(),
            ));
        }
        for action in plan.actions {
            for statement in action.statements {
                rows.push((
                    config.parent,
                    action.step.to_owned(),
                    statement.sql,
                    statement.lock_mode,
                ));
            }
        }
    }
    TableIterator::new(rows)
}

fn registered_parents() -> Vec<pg_sys::Oid> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT c.parent::oid FROM dbopt.partition_config c \
                   JOIN pg_catalog.pg_class r ON r.oid = c.parent ORDER BY 1",
                None,
                &[],
            )?
            .map(|row| {
                row.get::<pg_sys::Oid>(1)
                    .map(|o| o.unwrap_or(pg_sys::InvalidOid))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .or_raise("listing registered parents")
}

/// Partitions of `parent` entirely older than `keep` are dropped, detached, or detached and
/// moved into `archive_schema` by the next maintenance run. `keep => NULL` turns retention off.
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn set_retention(
    parent: PgRelation,
    keep: Option<&str>,
    action: default!(&str, "'detach'"),
    archive_schema: default!(Option<&str>, "NULL"),
) {
    let config = Config::require(parent.oid());
    drop(parent);
    let set = PartitionSet::inspect(config.parent, &config.control);
    set.require_ddl_privileges();
    let retention =
        Retention::parse(action, archive_schema).unwrap_or_else(|reason| invalid(reason).raise());
    if let Some(keep) = keep {
        check_keep(&set, keep);
    }
    if let Some(schema) = archive_schema {
        check_archive_schema(schema);
    }
    Spi::run_with_args(
        "UPDATE dbopt.partition_config SET retention_keep = $2, retention_action = $3, \
                retention_schema = $4 WHERE parent = $1",
        &[
            config.parent.into(),
            keep.into(),
            keep.map(|_| retention.name()).into(),
            keep.and(archive_schema).into(),
        ],
    )
    .or_raise("saving retention");
}

fn check_keep(set: &PartitionSet, keep: &str) {
    let positive = if set.control_type.is_time() {
        PgTryBuilder::new(|| {
            Spi::get_one_with_args::<bool>("SELECT $1::interval > interval '0'", &[keep.into()])
                .ok()
                .flatten()
        })
        .catch_others(|_| None)
        .execute()
    } else {
        keep.trim().parse::<i64>().ok().map(|v| v > 0)
    };
    match positive {
        Some(true) => {}
        Some(false) => invalid(format!("keep '{keep}' must be positive")).raise(),
        None => invalid(format!(
            "keep '{keep}' is not {} for {}",
            if set.control_type.is_time() {
                "an interval"
            } else {
                "a whole number"
            },
            set.rel.quoted()
        ))
        .hint(if set.control_type.is_time() {
            "Give an interval such as '90 days' or '2 years'."
        } else {
            "Give how many control values to keep below the newest, e.g. '10000000'."
        })
        .raise(),
    }
}

fn check_archive_schema(schema: &str) {
    let creatable = Spi::get_one_with_args::<bool>(
        "SELECT (SELECT pg_catalog.has_schema_privilege(n.oid, 'CREATE') \
                   FROM pg_catalog.pg_namespace n WHERE n.nspname = $1)",
        &[schema.into()],
    )
    .or_raise("checking the archive schema");
    match creatable {
        None => DboptError::new(
            PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME,
            format!("archive schema {} does not exist", quote_identifier(schema)),
        )
        .hint("Create it first, e.g. CREATE SCHEMA archive.")
        .raise(),
        Some(false) => DboptError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "permission denied to move partitions into schema {}",
                quote_identifier(schema)
            ),
        )
        .raise(),
        Some(true) => {}
    }
}

/// One row per registered parent; `dbopt.partition_health` is a view over this.
#[pg_extern(stable)]
#[search_path(pg_catalog, pg_temp)]
fn partition_health_report() -> TableIterator<
    'static,
    (
        name!(parent, pg_sys::Oid),
        name!(control, String),
        name!(partition_interval, String),
        name!(partitions, i64),
        name!(first_bound, Option<String>),
        name!(last_bound, Option<String>),
        name!(runway, Option<String>),
        name!(default_rows, Option<i64>),
        name!(gaps, i64),
    ),
> {
    let mut rows = Vec::new();
    for oid in registered_parents() {
        let Some(config) = Config::load(oid) else {
            continue;
        };
        let set = PartitionSet::inspect(oid, &config.control);
        let Ok(step) = step::parse_step(&config.partition_interval, set.control_type) else {
            continue;
        };
        let ws = Workspace::open(set, step);
        let children = ws.children();
        let first = children.iter().map(|c| c.lower).min();
        let last = children.iter().map(|c| c.upper).max();
        let show = |key: i64| bound_text(&ws, key);
        let runway = runway_text(&ws, &children);
        let default_rows = ws.layout.default.as_ref().map(|d| {
            Spi::get_one::<i64>(&format!("SELECT count(*) FROM {}", d.quoted()))
                .or_raise("counting default rows")
                .unwrap_or(0)
        });
        rows.push((
            oid,
            config.control.clone(),
            config.partition_interval.clone(),
            children.len() as i64,
            first.and_then(show),
            last.and_then(show),
            runway,
            default_rows,
            plan::gaps(&children) as i64,
        ));
    }
    TableIterator::new(rows)
}

/// A bound key as the control column's type prints it; None for MINVALUE/MAXVALUE.
fn bound_text(ws: &Workspace, key: i64) -> Option<String> {
    if key == i64::MIN || key == i64::MAX {
        return None;
    }
    let sql = match ws.set.control_type {
        step::ControlType::TimestampTz => "SELECT pg_catalog.to_timestamp($1 / 1000000.0)::text",
        step::ControlType::Timestamp => {
            "SELECT pg_catalog.timezone('UTC', pg_catalog.to_timestamp($1 / 1000000.0))::text"
        }
        step::ControlType::Date => {
            "SELECT pg_catalog.timezone('UTC', pg_catalog.to_timestamp($1 / 1000000.0))::date::text"
        }
        _ => "SELECT $1::text",
    };
    Spi::get_one_with_args::<String>(sql, &[key.into()]).or_raise("printing a bound")
}

/// How far past now (time) or past the newest populated partition (integers) inserts still
/// find a partition.
fn runway_text(ws: &Workspace, children: &[plan::Child]) -> Option<String> {
    let now = ws.set.position(&ws.layout, &ws.zone);
    let now_key = match now {
        plan::Position::Int(v) => v,
        plan::Position::Time(t) => match ws.set.control_type {
            step::ControlType::TimestampTz => Spi::get_one::<i64>(
                "SELECT (pg_catalog.date_part('epoch', pg_catalog.now()) * 1000000)::int8",
            )
            .or_raise("reading the clock")
            .unwrap_or(0),
            _ => t.and_utc().timestamp_micros(),
        },
    };
    let Some(end) = plan::covered_until(children, now_key) else {
        return Some("none: new rows go to the default partition".into());
    };
    match now {
        _ if end == i64::MAX => Some("unbounded (MAXVALUE)".into()),
        plan::Position::Int(_) => Some(end.saturating_sub(now_key).to_string()),
        plan::Position::Time(_) => Spi::get_one_with_args::<String>(
            "SELECT pg_catalog.justify_interval(pg_catalog.date_trunc('minute', \
                 ($1 - $2) * interval '1 microsecond'))::text",
            &[end.into(), now_key.into()],
        )
        .or_raise("computing the runway"),
    }
}

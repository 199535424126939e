//! Deciding and carrying out the changes a partition set needs: the runway ahead of the clock,
//! rows stranded in the default partition, retention and the default partition itself.

use super::actions::{Action, Retention, Template};
use super::boundaries::{BoundValue, Range};
use super::catalog::{parse_wall, wall_sql, Layout, PartitionSet, PgZone};
use super::plan::{self, Position};
use super::{naming, step};
use crate::errors::{DboptError, OrRaise};
use crate::gucs;
use crate::ident::{quote_identifier, Relation};
use chrono::NaiveDateTime;
use pgrx::prelude::*;
use std::time::Instant;

/// A registered partition set, as `dbopt.partition_config` holds it.
pub struct Config {
    pub parent: pg_sys::Oid,
    pub control: String,
    pub partition_interval: String,
    pub premake: i32,
    pub with_default: bool,
    pub future_limit: i32,
    pub max_per_run: i32,
    pub retention_keep: Option<String>,
    pub retention_action: Option<String>,
    pub retention_schema: Option<String>,
}

impl Config {
    pub fn load(parent: pg_sys::Oid) -> Option<Config> {
        Spi::connect(|client| {
            let rows = client.select(
                "SELECT control::text, partition_interval, premake, with_default, future_limit, \
                        max_per_run, retention_keep, retention_action, retention_schema::text \
                   FROM dbopt.partition_config WHERE parent = $1",
                Some(1),
                &[parent.into()],
            )?;
            rows.into_iter()
                .next()
                .map(|row| {
                    Ok::<_, pgrx::spi::Error>(Config {
                        parent,
                        control: row.get(1)?.unwrap_or_default(),
                        partition_interval: row.get(2)?.unwrap_or_default(),
                        premake: row.get(3)?.unwrap_or(1),
                        with_default: row.get(4)?.unwrap_or(false),
                        future_limit: row.get(5)?.unwrap_or(1),
                        max_per_run: row.get(6)?.unwrap_or(1),
                        retention_keep: row.get(7)?,
                        retention_action: row.get(8)?,
                        retention_schema: row.get(9)?,
                    })
                })
                .transpose()
        })
        .or_raise("reading dbopt.partition_config")
    }

    pub fn require(parent: pg_sys::Oid) -> Config {
        Config::load(parent).unwrap_or_else(|| {
            let rel = Relation::from_oid(parent);
            DboptError::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("table {} is not managed by dbopt", rel.quoted()),
            )
            .hint("Register it first with dbopt.create_partitions(parent, control, partition_interval).")
            .raise()
        })
    }
}

/// A partition set opened for planning: catalog facts plus what new partitions are made from.
pub struct Workspace {
    pub set: PartitionSet,
    pub step: step::Step,
    pub zone: String,
    pub layout: Layout,
    /// The parent's quoted name.
    parent: String,
    /// What partition names start with: the parent's name, or during an online conversion the
    /// name the parent will have once swapped in.
    pub base_name: String,
    owner: Option<String>,
    grants: Vec<String>,
    default_name: Option<String>,
    /// See [`Template::fresh`].
    fresh: bool,
}

impl Workspace {
    pub fn open(set: PartitionSet, step: step::Step) -> Workspace {
        let zone = gucs::partition_timezone();
        let layout = set.layout(&zone);
        let (is_owner, grants) = owner_and_grants(set.rel.oid);
        let owner = (!is_owner).then(|| quote_identifier(&set.owner));
        let default_name = layout.default.as_ref().map(Relation::quoted);
        let fresh = layout.partitions.is_empty()
            && layout.default.is_none()
            && copies_fully_as_partition(set.rel.oid);
        Workspace {
            fresh,
            parent: set.rel.quoted(),
            base_name: set.rel.name.clone(),
            set,
            step,
            zone,
            layout,
            owner,
            grants,
            default_name,
        }
    }

    fn template(&self) -> Template<'_> {
        Template {
            parent: self.quoted_parent(),
            tablespace: self.set.tablespace.as_deref().map(quote_identifier),
            owner: self.owner.clone(),
            grants: &self.grants,
            default: self.default_name.as_deref(),
            fresh: self.fresh,
        }
    }

    fn quoted_parent(&self) -> &str {
        &self.parent
    }

    /// Re-reads the partitions after changing them; returns the set's position.
    pub fn refresh(&mut self) -> Position {
        self.layout = self.set.layout(&self.zone);
        self.set.position(&self.layout, &self.zone)
    }

    pub fn zone(&self) -> PgZone {
        PgZone(self.zone.clone())
    }

    fn child_name(&self, range: &Range) -> String {
        self.set
            .sibling(&naming::child_name(&self.base_name, &range.suffix))
    }

    pub fn children(&self) -> Vec<plan::Child> {
        self.layout
            .partitions
            .iter()
            .map(|p| p.child.clone())
            .collect()
    }

    /// Actions creating `ranges`, moving rows out of the default partition for the ones in
    /// `from_default`.
    pub fn creations(&self, ranges: &[Range], from_default: &[Range]) -> Vec<Action> {
        let template = self.template();
        let control = quote_identifier(&self.set.control.name);
        let columns = self.set.rel.insertable_columns();
        let mut actions: Vec<(i64, Action)> = Vec::new();
        for range in from_default {
            actions.push((
                range.lower.key(),
                template.move_from_default(
                    &self.child_name(range),
                    range,
                    &control,
                    self.set.control_type.sql_name(),
                    &columns,
                ),
            ));
        }
        for range in ranges {
            if !from_default.iter().any(|m| m.lower == range.lower) {
                actions.push((
                    range.lower.key(),
                    template.create(&self.child_name(range), range),
                ));
            }
        }
        actions.sort_by_key(|(key, _)| *key);
        actions.into_iter().map(|(_, action)| action).collect()
    }

    pub fn default_partition(&self) -> Option<Action> {
        if self.layout.default.is_some() {
            return None;
        }
        let name = naming::child_name(&self.base_name, "default");
        Some(self.template().create_default(&self.set.sibling(&name)))
    }

    /// The lowest control value at or above `floor` sitting in the default partition.
    fn lowest_default_value(&self, floor: Option<&BoundValue>) -> Option<Position> {
        let default = self.layout.default.as_ref()?;
        let control = quote_identifier(&self.set.control.name);
        let type_name = self.set.control_type.sql_name();
        let filter =
            format!("{control} IS NOT NULL AND ($1::text IS NULL OR {control} >= $1::{type_name})");
        let value = if self.set.control_type.is_time() {
            format!(
                "SELECT {} FROM (SELECT min({control}) AS v FROM {} WHERE {filter} \
                 AND pg_catalog.isfinite({control})) m",
                wall_sql(self.set.control_type, "v", "$2"),
                default.quoted()
            )
        } else {
            format!(
                "SELECT min({control})::text FROM {} WHERE {filter}",
                default.quoted()
            )
        };
        let found = Spi::get_one_with_args::<String>(
            &value,
            &[floor.map(BoundValue::text).into(), self.zone.clone().into()],
        )
        .or_raise("looking for rows in the default partition")?;
        if self.set.control_type.is_time() {
            parse_wall(&found).map(Position::Time)
        } else {
            found.parse().ok().map(Position::Int)
        }
    }

    /// How many rows in the default partition are at or above `floor`.
    fn default_rows_from(&self, floor: &BoundValue) -> i64 {
        let Some(default) = self.layout.default.as_ref() else {
            return 0;
        };
        let control = quote_identifier(&self.set.control.name);
        Spi::get_one_with_args::<i64>(
            &format!(
                "SELECT count(*) FROM {} WHERE {control} >= $1::{}",
                default.quoted(),
                self.set.control_type.sql_name()
            ),
            &[floor.text().into()],
        )
        .or_raise("counting rows in the default partition")
        .unwrap_or(0)
    }

    /// Ranges for rows sitting in the default partition, up to `limit` ranges and no further
    /// ahead than `future_limit`; rows past it, or older than `retention_cutoff`, are reported.
    pub fn stranded_ranges(
        &self,
        limit: usize,
        future_limit: Option<&BoundValue>,
        retention_cutoff: Option<i64>,
    ) -> (Vec<Range>, Vec<String>) {
        let mut found = Vec::new();
        let mut reports = Vec::new();
        let children = self.children();
        let zone = self.zone();
        let mut floor: Option<BoundValue> = None;
        while found.len() < limit {
            let Some(value) = self.lowest_default_value(floor.as_ref()) else {
                break;
            };
            let Some(range) = plan::range_holding(self.set.control_type, self.step, value, &zone)
            else {
                break;
            };
            if future_limit.is_some_and(|limit| plan::starts_after(&range, limit)) {
                let rows = self.default_rows_from(&range.lower);
                reports.push(format!(
                    "{rows} row(s) from {} on stay in the default partition: past the future limit",
                    range.lower.text()
                ));
                break;
            }
            if retention_cutoff.is_some_and(|cutoff| range.upper.key() <= cutoff) {
                reports.push(format!(
                    "rows in the default partition below {} are older than retention keeps: left there",
                    range.upper.text()
                ));
            } else if children.iter().any(|child| plan::overlaps(&range, child)) {
                reports.push(format!(
                    "rows in the default partition from {} overlap a partition made by hand: left there",
                    range.lower.text()
                ));
            } else {
                found.push(range.clone());
            }
            if range.upper == BoundValue::MaxValue {
                break;
            }
            floor = Some(range.upper);
        }
        (found, reports)
    }

    /// The ordering key before which retention removes partitions.
    pub fn retention_cutoff(&self, keep: &str, position: Position) -> Option<i64> {
        match position {
            Position::Int(v) => keep.trim().parse::<i64>().ok().map(|k| v.saturating_sub(k)),
            Position::Time(_) => {
                let sql = match self.set.control_type {
                    step::ControlType::TimestampTz => {
                        "SELECT (pg_catalog.date_part('epoch', pg_catalog.timezone($2, \
                         pg_catalog.timezone($2, pg_catalog.now()) - $1::interval)) * 1000000)::int8"
                    }
                    _ => {
                        "SELECT (pg_catalog.date_part('epoch', \
                         pg_catalog.timezone($2, pg_catalog.now()) - $1::interval) * 1000000)::int8"
                    }
                };
                Spi::get_one_with_args::<i64>(sql, &[keep.into(), self.zone.clone().into()])
                    .or_raise("computing the retention cutoff")
            }
        }
    }

    pub fn retire(
        &self,
        retention: Retention,
        cutoff: i64,
        archive_schema: Option<&str>,
    ) -> Vec<Action> {
        let schema = archive_schema.map(quote_identifier);
        plan::expired(&self.children(), cutoff)
            .into_iter()
            .map(|child| {
                retention.action(
                    self.quoted_parent(),
                    &self.set.sibling(&child.name),
                    schema.as_deref(),
                )
            })
            .collect()
    }
}

/// Whether `CREATE TABLE ... PARTITION OF` gives a partition everything `LIKE` would copy:
/// not column comments or extended statistics.
fn copies_fully_as_partition(oid: pg_sys::Oid) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_statistic_ext s WHERE s.stxrelid = $1) \
            AND NOT EXISTS (SELECT FROM pg_catalog.pg_description d WHERE d.objoid = $1 \
                  AND d.classoid = 'pg_catalog.pg_class'::regclass AND d.objsubid > 0)",
        &[oid.into()],
    )
    .or_raise("reading the parent's comments and statistics")
    .unwrap_or(false)
}

/// Whether the current role owns the table, and GRANT statements reproducing its ACL on a new
/// partition (`{table}` stands for the partition).
pub fn owner_and_grants(oid: pg_sys::Oid) -> (bool, Vec<String>) {
    Spi::connect(|client| {
        let is_owner = client
            .select(
                "SELECT c.relowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) \
                   FROM pg_catalog.pg_class c WHERE c.oid = $1",
                Some(1),
                &[oid.into()],
            )?
            .first()
            .get::<bool>(1)?
            .unwrap_or(false);
        let grants = client
            .select(
                "SELECT pg_catalog.format('GRANT %s ON {table} TO %s%s', \
                        string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type), \
                        CASE WHEN a.grantee = 0 THEN 'PUBLIC' \
                             ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END, \
                        CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) \
                   FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a \
                  WHERE c.oid = $1 AND a.grantee <> c.relowner \
                  GROUP BY a.grantee, a.is_grantable ORDER BY 1",
                None,
                &[oid.into()],
            )?
            .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, pgrx::spi::Error>((is_owner, grants))
    })
    .or_raise("reading the parent's owner and privileges")
}

/// One executed action, for `dbopt.partition_log`.
pub struct Done {
    pub duration_ms: f64,
    pub lock_wait_ms: f64,
}

/// Runs an action's statements, each bounded by dbopt.lock_timeout.
pub fn execute(action: &Action) -> Done {
    let started = Instant::now();
    let mut lock_wait_ms = 0.0;
    for statement in &action.statements {
        let t = Instant::now();
        crate::ddl::execute(&statement.sql, &action.object);
        if statement.is_lock() {
            lock_wait_ms += t.elapsed().as_secs_f64() * 1000.0;
        }
    }
    Done {
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        lock_wait_ms,
    }
}

/// One `dbopt.partition_log` row in the making.
struct Entry {
    at: f64,
    action: &'static str,
    object: Option<String>,
    statement: Option<String>,
    duration_ms: Option<f64>,
    lock_wait_ms: Option<f64>,
    outcome: &'static str,
    detail: Option<String>,
}

/// Collects `dbopt.partition_log` rows for one parent and writes them in one statement: they
/// share the transaction of the actions they describe, so they land or vanish together anyway.
pub struct Logbook {
    parent: pg_sys::Oid,
    parent_name: String,
    entries: Vec<Entry>,
}

impl Logbook {
    pub fn new(parent: pg_sys::Oid, parent_name: String) -> Logbook {
        Logbook {
            parent,
            parent_name,
            entries: Vec::new(),
        }
    }

    fn add(
        &mut self,
        action: &'static str,
        object: Option<&str>,
        statement: Option<&str>,
        done: Option<&Done>,
        outcome: &'static str,
        detail: Option<&str>,
    ) {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.entries.push(Entry {
            at,
            action,
            object: object.map(str::to_owned),
            statement: statement.map(str::to_owned),
            duration_ms: done.map(|d| d.duration_ms),
            lock_wait_ms: done.map(|d| d.lock_wait_ms),
            outcome,
            detail: detail.map(str::to_owned),
        });
    }

    /// Something maintenance declined to do, and why.
    pub fn report(&mut self, what: &str) {
        self.add("report", None, None, None, "reported", Some(what));
    }

    /// Executes `actions` in order, logging each with its duration and lock wait.
    pub fn run(&mut self, actions: &[Action], detail: Option<&str>) {
        for action in actions {
            let done = execute(action);
            let main = action
                .statements
                .iter()
                .find(|s| !s.is_lock() && !s.sql.starts_with("CREATE TABLE"))
                .map(|s| s.sql.as_str());
            self.add(
                action.step,
                Some(&action.object),
                main,
                Some(&done),
                "ok",
                detail,
            );
        }
    }

    fn summary(&mut self, actions: usize, started: Instant) {
        let done = Done {
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            lock_wait_ms: 0.0,
        };
        let detail = format!("{actions} action(s)");
        self.add("maintain", None, None, Some(&done), "ok", Some(&detail));
    }

    pub fn write(self) {
        if self.entries.is_empty() {
            return;
        }
        let column = |f: fn(&Entry) -> Option<String>| -> Vec<Option<String>> {
            self.entries.iter().map(f).collect()
        };
        let at: Vec<f64> = self.entries.iter().map(|e| e.at).collect();
        let duration: Vec<Option<f64>> = self.entries.iter().map(|e| e.duration_ms).collect();
        let lock_wait: Vec<Option<f64>> = self.entries.iter().map(|e| e.lock_wait_ms).collect();
        Spi::run_with_args(
            "INSERT INTO dbopt.partition_log (at, parent, parent_name, action, object, statement, \
                    duration_ms, lock_wait_ms, outcome, detail) \
             SELECT pg_catalog.to_timestamp(e.at), $1, $2, e.action, e.object, e.statement, \
                    e.duration_ms, e.lock_wait_ms, e.outcome, e.detail \
               FROM unnest($3::float8[], $4::text[], $5::text[], $6::text[], \
                    $7::float8[], $8::float8[], $9::text[], $10::text[]) \
                 AS e(at, action, object, statement, duration_ms, lock_wait_ms, outcome, detail)",
            &[
                self.parent.into(),
                self.parent_name.as_str().into(),
                at.into(),
                column(|e| Some(e.action.to_owned())).into(),
                column(|e| e.object.clone()).into(),
                column(|e| e.statement.clone()).into(),
                duration.into(),
                lock_wait.into(),
                column(|e| Some(e.outcome.to_owned())).into(),
                column(|e| e.detail.clone()).into(),
            ],
        )
        .or_raise("writing dbopt.partition_log");
    }
}

/// When a parent next needs maintenance, kept in `dbopt.partition_config` so that
/// `run_maintenance` passes over a parent with nothing to do after a probe or two
/// (`dbopt.maintenance_due`), without planning it.
pub struct Schedule {
    /// Something is due already: no partition holds the current position, or the default
    /// partition is missing.
    due_now: bool,
    /// Wall-clock time, in the partition time zone, from which the runway needs a partition.
    runway_from: Option<NaiveDateTime>,
    /// The upper bound (wall clock) of the partition retention removes next, and `keep`: it is
    /// due `keep` after that bound.
    retention: Option<(NaiveDateTime, String)>,
    /// Partitions whose first row makes maintenance due: the default partition, and for integer
    /// controls, whose position moves with the data, those the runway or retention waits for.
    watch: Vec<pg_sys::Oid>,
}

impl Schedule {
    pub fn of(
        ws: &Workspace,
        position: Position,
        premake: i32,
        with_default: bool,
        keep: Option<&str>,
    ) -> Schedule {
        let mut schedule = Schedule {
            due_now: with_default && ws.layout.default.is_none(),
            runway_from: None,
            retention: None,
            watch: ws.layout.default.iter().map(|d| d.oid).collect(),
        };
        let premake = premake.max(1) as u32;
        let children = ws.children();
        let covered = plan::range_holding(ws.set.control_type, ws.step, position, &ws.zone())
            .and_then(|current| plan::covered_until(&children, current.lower.key()));
        // Integer controls: the lowest partition lower bound whose first row makes work.
        let mut int_threshold: Option<i64> = None;
        match (covered, position) {
            (None, _) => schedule.due_now = true,
            (Some(i64::MAX), _) => {}
            (Some(end), Position::Time(_)) => {
                let end_wall = ws
                    .layout
                    .partitions
                    .iter()
                    .find(|p| p.child.upper == end)
                    .and_then(|p| p.upper_wall);
                match end_wall.and_then(|w| plan::behind(Position::Time(w), ws.step, premake)) {
                    Some(Position::Time(from)) => schedule.runway_from = Some(from),
                    _ => schedule.due_now = true,
                }
            }
            (Some(end), Position::Int(_)) => {
                match plan::behind(Position::Int(end), ws.step, premake) {
                    Some(Position::Int(threshold)) => int_threshold = Some(threshold),
                    _ => schedule.due_now = true,
                }
            }
        }
        let oldest = ws
            .layout
            .partitions
            .iter()
            .filter(|p| p.child.upper != i64::MAX)
            .min_by_key(|p| p.child.upper);
        if let (Some(keep), Some(oldest)) = (keep, oldest) {
            match position {
                Position::Time(_) => {
                    schedule.retention = oldest.upper_wall.map(|wall| (wall, keep.to_owned()))
                }
                Position::Int(_) => {
                    if let Ok(keep) = keep.trim().parse::<i64>() {
                        let threshold = oldest.child.upper.saturating_add(keep);
                        int_threshold = Some(int_threshold.map_or(threshold, |t| t.min(threshold)));
                    }
                }
            }
        }
        if let Some(threshold) = int_threshold {
            schedule.watch.extend(
                ws.layout
                    .partitions
                    .iter()
                    .filter(|p| p.child.lower >= threshold)
                    .map(|p| p.oid),
            );
        }
        schedule
    }

    pub fn store(&self, parent: pg_sys::Oid, zone: &str) {
        let wall = |t: &NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
        Spi::run_with_args(
            "UPDATE dbopt.partition_config c \
                SET checked_at = pg_catalog.clock_timestamp(), checked_zone = $2, \
                    due_at = CASE WHEN $3 THEN '-infinity'::timestamptz ELSE \
                             coalesce(LEAST(pg_catalog.timezone($2, $4::timestamp), \
                                            pg_catalog.timezone($2, $5::timestamp + $6::interval)), \
                                      'infinity') END, \
                    watch = $7::oid[]::regclass[], \
                    fingerprint = dbopt.partition_fingerprint(c.parent) \
              WHERE c.parent = $1",
            &[
                parent.into(),
                zone.into(),
                self.due_now.into(),
                self.runway_from.as_ref().map(wall).into(),
                self.retention.as_ref().map(|(t, _)| wall(t)).into(),
                self.retention.as_ref().map(|(_, keep)| keep.as_str()).into(),
                self.watch.clone().into(),
            ],
        )
        .or_raise("recording when the partition set is next due");
    }
}

/// Everything maintenance would do for one registered parent, and what it only reports.
pub struct MaintenancePlan {
    pub actions: Vec<Action>,
    pub reports: Vec<String>,
    pub ws: Workspace,
    pub position: Position,
}

pub fn plan_maintenance(config: &Config) -> MaintenancePlan {
    let set = PartitionSet::inspect(config.parent, &config.control);
    let step = step::parse_step(&config.partition_interval, set.control_type).unwrap_or_else(|e| {
        DboptError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e).raise()
    });
    let ws = Workspace::open(set, step);
    let zone = ws.zone();
    let position = ws.set.position(&ws.layout, &ws.zone);
    let premake = config.premake.max(1) as u32;
    let reach = config.future_limit.max(config.premake).max(1) as u32;
    let through = plan::ahead(position, step, premake).unwrap_or(position);
    let future_limit = plan::ahead(position, step, reach)
        .and_then(|p| plan::range_holding(ws.set.control_type, step, p, &zone))
        .map(|r| r.lower);
    let cutoff = config
        .retention_keep
        .as_deref()
        .and_then(|keep| ws.retention_cutoff(keep, position));
    let budget = config.max_per_run.max(1) as usize;

    let (stranded, mut reports) = ws.stranded_ranges(budget, future_limit.as_ref(), cutoff);
    // The runway starts where the newest partition ends when that is behind the clock, so a
    // missed run leaves no hole between the old partitions and the new ones.
    let from = match (position, newest_upper(&ws)) {
        (Position::Time(now), Some(Position::Time(upper))) if upper < now => Position::Time(upper),
        _ => position,
    };
    let mut runway = plan::uncovered(
        plan::ranges(ws.set.control_type, step, from, through, &zone),
        &ws.children(),
    );
    let room = budget.saturating_sub(stranded.len());
    if runway.len() > room {
        reports.push(format!(
            "{} more partition(s) needed; max_per_run ({budget}) reached, the next run continues",
            runway.len() - room
        ));
        runway.truncate(room);
    }
    let mut actions = ws.creations(&runway, &stranded);
    if let (Some(cutoff), Some(keep_action)) = (cutoff, config.retention_action.as_deref()) {
        let retention = Retention::parse(keep_action, config.retention_schema.as_deref())
            .unwrap_or(Retention::Detach);
        actions.extend(ws.retire(retention, cutoff, config.retention_schema.as_deref()));
    }
    if config.with_default {
        actions.extend(ws.default_partition());
    }
    MaintenancePlan {
        actions,
        reports,
        ws,
        position,
    }
}

fn newest_upper(ws: &Workspace) -> Option<Position> {
    ws.layout
        .partitions
        .iter()
        .filter(|p| p.child.upper != i64::MAX)
        .max_by_key(|p| p.child.upper)
        .and_then(|p| p.upper_wall.map(Position::Time))
}

/// Carries out maintenance for one parent in the current transaction, logs each action and
/// records when the parent is next due. Returns the number of actions taken.
pub fn maintain(config: &Config) -> i64 {
    let started = Instant::now();
    let MaintenancePlan {
        actions,
        reports,
        mut ws,
        position,
    } = plan_maintenance(config);
    let mut logbook = Logbook::new(config.parent, ws.set.rel.quoted());
    for report in &reports {
        logbook.report(report);
    }
    logbook.run(&actions, None);
    logbook.summary(actions.len(), started);
    logbook.write();
    let position = if actions.is_empty() {
        position
    } else {
        ws.refresh()
    };
    Schedule::of(
        &ws,
        position,
        config.premake,
        config.with_default,
        config.retention_keep.as_deref(),
    )
    .store(config.parent, &ws.zone);
    actions.len() as i64
}

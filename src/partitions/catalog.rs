//! A partitioned table as the catalog describes it: validated as something dbopt can manage,
//! with its partitions' bounds read from `pg_class.relpartbound`, never from the rows.

use super::boundaries::Zone;
use super::plan::{Child, Position};
use super::step::ControlType;
use crate::errors::{DboptError, OrRaise};
use crate::ident::{quote_identifier, quote_qualified_identifier, Column, Relation};
use chrono::{DateTime, NaiveDateTime, Utc};
use pgrx::prelude::*;

/// A range-partitioned table and the column it is partitioned by.
pub struct PartitionSet {
    pub rel: Relation,
    pub owner: String,
    pub control: Column,
    pub control_type: ControlType,
    pub tablespace: Option<String>,
}

/// A partition, by name and bounds.
pub struct Partition {
    pub oid: pg_sys::Oid,
    pub child: Child,
    /// The upper bound as wall-clock time in the partition time zone (time controls only).
    pub upper_wall: Option<NaiveDateTime>,
}

/// The partitions of a set, and its default partition if it has one.
pub struct Layout {
    pub partitions: Vec<Partition>,
    pub default: Option<Relation>,
}

impl PartitionSet {
    /// Checks that `oid` is a table dbopt can partition by `control`, raising the specific
    /// error for each way it is not. Changes nothing.
    pub fn inspect(oid: pg_sys::Oid, control: &str) -> PartitionSet {
        let rel = Relation::from_oid(oid);
        let (relkind, strategy, key_columns, owner, tablespace) = Spi::connect(|client| {
            let row = client
                .select(
                    "SELECT c.relkind::text, p.partstrat::text, \
                            (SELECT array_agg(a.attname::text ORDER BY k.n) \
                               FROM unnest(p.partattrs) WITH ORDINALITY AS k(attnum, n) \
                               LEFT JOIN pg_catalog.pg_attribute a \
                                 ON a.attrelid = c.oid AND a.attnum = k.attnum), \
                            pg_catalog.pg_get_userbyid(c.relowner)::text, t.spcname::text \
                       FROM pg_catalog.pg_class c \
                       LEFT JOIN pg_catalog.pg_partitioned_table p ON p.partrelid = c.oid \
                       LEFT JOIN pg_catalog.pg_tablespace t ON t.oid = c.reltablespace \
                      WHERE c.oid = $1",
                    Some(1),
                    &[oid.into()],
                )?
                .first();
            Ok::<_, pgrx::spi::Error>((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<String>(2)?,
                row.get::<Vec<Option<String>>>(3)?.unwrap_or_default(),
                row.get::<String>(4)?.unwrap_or_default(),
                row.get::<String>(5)?,
            ))
        })
        .or_raise("reading the table's partitioning");
        let quoted = rel.quoted();
        match relkind.as_str() {
            "p" => {}
            "r" => DboptError::new(
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!("table {quoted} is not partitioned"),
            )
            .hint(format!(
                "Convert it online with CALL dbopt.partition_table('{}', '{control}', '1 month').",
                quoted.replace('\'', "''")
            ))
            .raise(),
            _ => DboptError::new(
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!("{quoted} is not a table"),
            )
            .raise(),
        }
        if strategy.as_deref() != Some("r") {
            let kind = match strategy.as_deref() {
                Some("l") => "list",
                Some("h") => "hash",
                _ => "an unknown strategy",
            };
            DboptError::new(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "table {quoted} is partitioned by {kind}; dbopt manages range partitioning"
                ),
            )
            .raise();
        }
        let column = rel.column(control);
        if key_columns.len() != 1 || key_columns[0].as_deref() != Some(column.name.as_str()) {
            let key = Spi::get_one_with_args::<String>(
                "SELECT pg_catalog.pg_get_partkeydef($1)",
                &[oid.into()],
            )
            .or_raise("reading the partition key")
            .unwrap_or_default();
            DboptError::new(
                PgSqlErrorCode::ERRCODE_INVALID_OBJECT_DEFINITION,
                format!(
                    "column {} is not the partition key of {quoted}, which is partitioned by {key}",
                    quote_identifier(&column.name)
                ),
            )
            .hint(
                "dbopt manages tables partitioned by a single column: pass that column as control.",
            )
            .raise();
        }
        let control_type = control_type_of(&rel, &column);
        PartitionSet {
            rel,
            owner,
            control: column,
            control_type,
            tablespace,
        }
    }

    /// Refuses with 42501 unless the current role may run DDL on the table (as its owner) and
    /// create tables in its schema: checked up front so nothing is half done.
    pub fn require_ddl_privileges(&self) {
        let (owns, creates) = Spi::connect(|client| {
            let row = client
                .select(
                    "SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE'), \
                            pg_catalog.has_schema_privilege(c.relnamespace, 'CREATE') \
                       FROM pg_catalog.pg_class c WHERE c.oid = $1",
                    Some(1),
                    &[self.rel.oid.into()],
                )?
                .first();
            Ok::<_, pgrx::spi::Error>((
                row.get::<bool>(1)?.unwrap_or(false),
                row.get::<bool>(2)?.unwrap_or(false),
            ))
        })
        .or_raise("checking privileges");
        if !owns {
            DboptError::new(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!(
                    "must be owner of table {} to manage its partitions",
                    self.rel.quoted()
                ),
            )
            .hint(format!(
                "Run it as {} or a member of that role.",
                quote_identifier(&self.owner)
            ))
            .raise();
        }
        if !creates {
            DboptError::new(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!(
                    "permission denied to create partitions in schema {}",
                    quote_identifier(&self.rel.schema)
                ),
            )
            .hint("Partitions are created beside their parent: grant CREATE on that schema.")
            .raise();
        }
    }

    /// The quoted name of a table beside the parent.
    pub fn sibling(&self, name: &str) -> String {
        quote_qualified_identifier(self.rel.schema.as_str(), name)
    }

    /// The partitions and their bounds, with the session's own DateStyle and TimeZone: each
    /// bound is printed and read back in one statement, so both settings cancel out.
    pub fn layout(&self, zone: &str) -> Layout {
        let key = |v: &str| key_sql(self.control_type, v);
        let query = format!(
            "WITH b AS ( \
               SELECT c.oid, c.relname::text AS name, n.nspname::text AS schema, \
                      pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound \
                 FROM pg_catalog.pg_inherits i \
                 JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                WHERE i.inhparent = $1), \
             v AS ( \
               SELECT b.oid, b.name, b.schema, b.bound = 'DEFAULT' AS is_default, \
                      pg_catalog.btrim(m[1], '''') AS lo, pg_catalog.btrim(m[2], '''') AS hi \
                 FROM b LEFT JOIN LATERAL pg_catalog.regexp_match(b.bound, \
                      '^FOR VALUES FROM \\((.*)\\) TO \\((.*)\\)$') AS m ON true) \
             SELECT oid, name, schema, is_default, \
                    CASE WHEN lo = 'MINVALUE' THEN NULL ELSE {} END, \
                    CASE WHEN hi = 'MAXVALUE' THEN NULL ELSE {} END, \
                    CASE WHEN hi = 'MAXVALUE' THEN NULL ELSE {} END \
               FROM v ORDER BY 5 NULLS FIRST",
            key("lo"),
            key("hi"),
            wall_sql(self.control_type, "hi", "$2"),
        );
        let rows = Spi::connect(|client| {
            client
                .select(&query, None, &[self.rel.oid.into(), zone.into()])?
                .map(|row| {
                    Ok::<_, pgrx::spi::Error>((
                        row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                        row.get::<String>(2)?.unwrap_or_default(),
                        row.get::<String>(3)?.unwrap_or_default(),
                        row.get::<bool>(4)?.unwrap_or(false),
                        row.get::<i64>(5)?,
                        row.get::<i64>(6)?,
                        row.get::<String>(7)?,
                    ))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .or_raise("reading partition bounds");
        let mut layout = Layout {
            partitions: Vec::new(),
            default: None,
        };
        for (oid, name, schema, is_default, lower, upper, upper_wall) in rows {
            if is_default {
                layout.default = Some(Relation { oid, schema, name });
                continue;
            }
            layout.partitions.push(Partition {
                oid,
                child: Child {
                    name,
                    lower: lower.unwrap_or(i64::MIN),
                    upper: upper.unwrap_or(i64::MAX),
                },
                upper_wall: upper_wall.as_deref().and_then(parse_wall),
            });
        }
        layout
    }

    /// Where the set stands now: the wall clock in the partition time zone for time controls;
    /// for integer controls the lower bound of the newest partition holding a row, found by
    /// probing partitions newest first (each probe reads at most one row), or of the lowest
    /// partition while none holds any.
    pub fn position(&self, layout: &Layout, zone: &str) -> Position {
        if self.control_type.is_time() {
            return Position::Time(now_in(zone));
        }
        let mut newest_first: Vec<&Partition> = layout.partitions.iter().collect();
        newest_first.sort_by_key(|p| std::cmp::Reverse(p.child.lower));
        for partition in &newest_first {
            let probe = format!(
                "SELECT EXISTS (SELECT 1 FROM {})",
                self.sibling(&partition.child.name)
            );
            if Spi::get_one::<bool>(&probe).or_raise("probing a partition") == Some(true) {
                return Position::Int(partition.child.lower.max(i64::from(i32::MIN)));
            }
        }
        // Nothing stored yet: the set starts at its lowest partition.
        Position::Int(
            newest_first
                .last()
                .map_or(0, |p| p.child.lower.max(i64::from(i32::MIN))),
        )
    }

    /// Parses a `start_from` argument as the control column's type, in the caller's session
    /// (so '2026-01-01' on a timestamptz column means midnight in the caller's TimeZone), and
    /// returns it as a position in the partition time zone.
    pub fn parse_position(&self, text: &str, zone: &str) -> Position {
        let sql = if self.control_type.is_time() {
            format!("SELECT {}::text", wall_sql(self.control_type, "$1", "$2"))
        } else {
            format!("SELECT ($1::{})::int8::text", self.control_type.sql_name())
        };
        let parsed = PgTryBuilder::new(|| {
            Spi::get_one_with_args::<String>(&sql, &[text.into(), zone.into()]).ok()
        })
        .catch_others(|_| None)
        .execute()
        .flatten();
        let position = parsed.and_then(|value| {
            if self.control_type.is_time() {
                parse_wall(&value).map(Position::Time)
            } else {
                value.parse().ok().map(Position::Int)
            }
        });
        position.unwrap_or_else(|| {
            let code = if self.control_type.is_time() {
                PgSqlErrorCode::ERRCODE_INVALID_DATETIME_FORMAT
            } else {
                PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION
            };
            DboptError::new(
                code,
                format!(
                    "start_from '{text}' is not a valid {} for column {} of {}",
                    self.control_type.sql_name(),
                    quote_identifier(&self.control.name),
                    self.rel.quoted()
                ),
            )
            .hint(if self.control_type.is_time() {
                "Write it as the column's type reads it, e.g. '2026-01-01' or '2026-01-01 00:00:00+00'."
            } else {
                "Write a whole number within the column's range, e.g. '0' or '1000000'."
            })
            .raise()
        })
    }
}

fn control_type_of(rel: &Relation, column: &Column) -> ControlType {
    ControlType::from_type_oid(column.type_oid.to_u32()).unwrap_or_else(|| {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!(
                "column {} of {} has type {}, which dbopt cannot partition by",
                quote_identifier(&column.name),
                rel.quoted(),
                column.type_name
            ),
        )
        .hint("Control columns may be timestamptz, timestamp, date, integer or bigint.")
        .raise()
    })
}

/// SQL for a bound's ordering key ([`BoundValue::key`]) from `text`, a value of the control type.
fn key_sql(control: ControlType, text: &str) -> String {
    match control {
        ControlType::Integer | ControlType::BigInt => format!("({text})::int8"),
        _ => format!(
            "(pg_catalog.date_part('epoch', ({text})::{}::timestamp{}) * 1000000)::int8",
            control.sql_name(),
            if control == ControlType::TimestampTz {
                " with time zone"
            } else {
                ""
            }
        ),
    }
}

/// SQL for the wall-clock time (in the zone given by parameter `zone`) of `value`, a value of
/// the control type or text castable to it, as `YYYY-MM-DD HH24:MI:SS`; NULL for integers.
pub fn wall_sql(control: ControlType, value: &str, zone: &str) -> String {
    let wall = match control {
        ControlType::Integer | ControlType::BigInt => return "NULL::text".into(),
        ControlType::TimestampTz => {
            format!("pg_catalog.timezone({zone}, ({value})::timestamp with time zone)")
        }
        _ => format!("(({value})::{})::timestamp", control.sql_name()),
    };
    format!("pg_catalog.to_char({wall}, 'YYYY-MM-DD HH24:MI:SS')")
}

pub fn parse_wall(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok()
}

fn now_in(zone: &str) -> NaiveDateTime {
    let sql = format!(
        "SELECT {}",
        wall_sql(ControlType::TimestampTz, "pg_catalog.now()", "$1")
    );
    Spi::get_one_with_args::<String>(&sql, &[zone.into()])
        .ok()
        .flatten()
        .and_then(|t| parse_wall(&t))
        .unwrap_or_else(|| bad_zone(zone))
}

fn bad_zone(zone: &str) -> ! {
    DboptError::new(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        format!("dbopt.partition_timezone '{zone}' is not a time zone PostgreSQL knows"),
    )
    .hint("Use a name from pg_timezone_names, e.g. 'UTC' or 'Europe/Berlin'.")
    .raise()
}

/// Wall-clock time in a PostgreSQL time zone to instants, with the server's own tzdata.
pub struct PgZone(pub String);

impl Zone for PgZone {
    fn instant(&self, local: NaiveDateTime) -> DateTime<Utc> {
        let micros = Spi::get_one_with_args::<i64>(
            "SELECT (pg_catalog.date_part('epoch', \
                     pg_catalog.timezone($2, $1::timestamp)) * 1000000)::int8",
            &[
                local.format("%Y-%m-%d %H:%M:%S").to_string().into(),
                self.0.clone().into(),
            ],
        )
        .ok()
        .flatten()
        .unwrap_or_else(|| bad_zone(&self.0));
        DateTime::from_timestamp_micros(micros).unwrap_or_default()
    }
}

/// Whether a partition may hold rows, without waiting for any lock: an empty main fork
/// answers at once; otherwise one row is read. A partition that is locked against readers,
/// unreadable to the caller, or has sub-partitions counts as possibly holding rows, so the
/// caller's full check decides.
pub fn may_have_rows(oid: pg_sys::Oid) -> bool {
    let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    // SAFETY: the lock is taken without waiting and released below; the relation is opened only
    // while locked and checked for existence (try_relation_open returns NULL once dropped).
    let blocks = unsafe {
        if !pg_sys::ConditionalLockRelationOid(oid, lock) {
            return true;
        }
        let rel = pg_sys::try_relation_open(oid, pg_sys::NoLock as pg_sys::LOCKMODE);
        if rel.is_null() {
            pg_sys::UnlockRelationOid(oid, lock);
            return false;
        }
        let has_storage = (*(*rel).rd_rel).relkind == pg_sys::RELKIND_RELATION as std::ffi::c_char;
        let readable = pg_sys::pg_class_aclcheck(
            oid,
            pg_sys::GetUserId(),
            pg_sys::ACL_SELECT as pg_sys::AclMode,
        ) == pg_sys::AclResult::ACLCHECK_OK;
        let blocks = (has_storage && readable).then(|| {
            pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM)
        });
        pg_sys::relation_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        blocks
    };
    let answer = match blocks {
        None => true,
        Some(0) => false,
        Some(_) => {
            let probe = format!(
                "SELECT EXISTS (SELECT FROM {})",
                Relation::from_oid(oid).quoted()
            );
            Spi::get_one::<bool>(&probe).or_raise("probing a partition") != Some(false)
        }
    };
    // SAFETY: releases the lock taken above; nothing of the relation is kept.
    unsafe { pg_sys::UnlockRelationOid(oid, lock) };
    answer
}

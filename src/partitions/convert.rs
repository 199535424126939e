//! Online conversion of a populated plain table into a range-partitioned table of the same name
//! (`CALL dbopt.partition_table`). Each function here is one committed step of the procedure in
//! `sql/partitions.sql`:
//!
//! 1. [`conversion_start`] checks every promise can be kept, builds the partitioned twin with
//!    the table's columns, defaults, constraints, indexes and partitions, and installs a trigger
//!    that records the key of every row written from then on;
//! 2. [`conversion_copy`] copies the next batch of rows in key order;
//! 3. [`conversion_replay`] re-copies rows whose keys were recorded (delete, then copy the
//!    current version), so writes made during the copy are neither lost nor duplicated;
//! 4. [`conversion_swap`] takes the table's lock for at most dbopt.lock_timeout, replays what is
//!    left and swaps the names; the old table stays, renamed, until the caller drops it.

use super::catalog::PartitionSet;
use super::maintain::owner_and_grants;
use super::naming;
use super::step::{self, ControlType};
use crate::ddl;
use crate::errors::{DboptError, OrRaise};
use crate::ident::{quote_identifier, quote_literal, quote_qualified_identifier, Relation};
use pgrx::prelude::*;
use pgrx::PgRelation;
use std::time::Instant;

fn refuse(code: PgSqlErrorCode, message: String, hint: &str) -> ! {
    DboptError::new(code, message).hint(hint).raise()
}

fn strings(sql: &str, oid: pg_sys::Oid) -> Vec<String> {
    Spi::connect(|client| {
        client
            .select(sql, None, &[oid.into()])?
            .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()
    })
    .or_raise("reading the catalog")
}

fn one(sql: &str, oid: pg_sys::Oid) -> Option<String> {
    strings(sql, oid).into_iter().next()
}

/// A conversion in progress, as `dbopt.partition_conversion` records it.
struct Conversion {
    source: Relation,
    target: Relation,
    changes: String,
    capture: String,
    /// Quoted primary key columns, and their types.
    key: Vec<String>,
    key_types: Vec<String>,
    /// Quoted columns copied (all but generated ones).
    columns: String,
    last_key: Option<Vec<String>>,
}

impl Conversion {
    fn load(source: pg_sys::Oid) -> Option<Conversion> {
        let row = Spi::connect_mut(|client| {
            let rows = client.update(
                "SELECT target::oid, changes, capture, key_columns, last_key \
                   FROM dbopt.partition_conversion WHERE source = $1 FOR UPDATE",
                Some(1),
                &[source.into()],
            )?;
            rows.into_iter()
                .next()
                .map(|row| {
                    Ok::<_, pgrx::spi::Error>((
                        row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                        row.get::<String>(2)?.unwrap_or_default(),
                        row.get::<String>(3)?.unwrap_or_default(),
                        row.get::<Vec<String>>(4)?.unwrap_or_default(),
                        row.get::<Vec<String>>(5)?,
                    ))
                })
                .transpose()
        })
        .or_raise("reading dbopt.partition_conversion")?;
        let (target, changes, capture, key, last_key) = row;
        let source = Relation::from_oid(source);
        let key_types = key.iter().map(|k| source.column(k).type_name).collect();
        Some(Conversion {
            key_types,
            columns: source.insertable_columns(),
            source,
            target: Relation::from_oid(target),
            changes,
            capture,
            key: key.iter().map(|k| quote_identifier(k)).collect(),
            last_key,
        })
    }

    fn require(source: pg_sys::Oid) -> Conversion {
        Conversion::load(source).unwrap_or_else(|| {
            refuse(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "no conversion of {} is in progress",
                    Relation::from_oid(source).quoted()
                ),
                "Start one with CALL dbopt.partition_table(source, control, partition_interval).",
            )
        })
    }

    fn key_list(&self, alias: &str) -> String {
        self.key
            .iter()
            .map(|k| format!("{alias}{k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Deletes up to `limit` recorded keys (all when None) and re-copies those rows from the
    /// source as they are now. Returns how many keys were taken.
    fn replay(&self, limit: Option<i64>) -> i64 {
        let keys = self.key_list("");
        let limit_clause = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
        let matches = |left: &str, right: &str| {
            self.key
                .iter()
                .map(|k| format!("{left}.{k} = {right}.{k}"))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        Spi::run(&format!(
            "CREATE TEMP TABLE dbopt_replay_keys ON COMMIT DROP AS \
               SELECT {keys} FROM {} WITH NO DATA",
            self.changes
        ))
        .or_raise("preparing a replay");
        Spi::run(&format!(
            "WITH taken AS (DELETE FROM {changes} WHERE change_id IN \
                 (SELECT change_id FROM {changes} ORDER BY change_id{limit_clause}) \
               RETURNING {keys}) \
             INSERT INTO pg_temp.dbopt_replay_keys SELECT DISTINCT {keys} FROM taken",
            changes = self.changes
        ))
        .or_raise("taking recorded changes");
        // Without statistics the planner guesses thousands of keys and hashes whole tables; a
        // few keys replayed under the swap's lock must be index lookups.
        Spi::run("ANALYZE pg_temp.dbopt_replay_keys").or_raise("measuring the keys to replay");
        Spi::run(&format!(
            "DELETE FROM {} t USING pg_temp.dbopt_replay_keys r WHERE {}",
            self.target.quoted(),
            matches("t", "r")
        ))
        .or_raise("removing stale copies");
        Spi::run(&format!(
            "INSERT INTO {} ({cols}) OVERRIDING SYSTEM VALUE \
             SELECT {} FROM {} s JOIN pg_temp.dbopt_replay_keys r ON {}",
            self.target.quoted(),
            self.columns
                .split(", ")
                .map(|c| format!("s.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.source.quoted(),
            matches("s", "r"),
            cols = self.columns,
        ))
        .or_raise("copying changed rows");
        let taken = Spi::get_one::<i64>("SELECT count(*) FROM pg_temp.dbopt_replay_keys")
            .or_raise("counting replayed keys")
            .unwrap_or(0);
        Spi::run("DROP TABLE pg_temp.dbopt_replay_keys").or_raise("finishing a replay");
        taken
    }
}

/// Refuses, before anything changes, every table whose conversion would break a promise.
fn check_convertible(source: &Relation, control: &str) -> (ControlType, Vec<String>) {
    let oid = source.oid;
    let quoted = source.quoted();
    let relkind = one(
        "SELECT relkind::text FROM pg_catalog.pg_class WHERE oid = $1",
        oid,
    );
    match relkind.as_deref() {
        Some("r") => {}
        Some("p") => refuse(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("table {quoted} is already partitioned"),
            "Manage its partitions with dbopt.create_partitions(parent, control, partition_interval).",
        ),
        _ => refuse(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("{quoted} is not a table"),
            "partition_table converts ordinary tables.",
        ),
    }
    let column = source.column(control);
    let control_type = ControlType::from_type_oid(column.type_oid.to_u32()).unwrap_or_else(|| {
        refuse(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!(
                "column {} of {quoted} has type {}, which dbopt cannot partition by",
                quote_identifier(&column.name),
                column.type_name
            ),
            "Control columns may be timestamptz, timestamp, date, integer or bigint.",
        )
    });
    let key = strings(
        "SELECT a.attname::text FROM pg_catalog.pg_index i \
           CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) \
           JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
          WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.n",
        oid,
    );
    if key.is_empty() {
        refuse(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("table {quoted} has no primary key"),
            "Rows written during the copy are tracked by primary key: add one (ALTER TABLE ... ADD PRIMARY KEY) and call again.",
        );
    }
    let checks: [(&str, PgSqlErrorCode, &str, &str); 7] = [
        (
            "SELECT format('%s (constraint %I)', conrelid::regclass, conname) FROM pg_catalog.pg_constraint \
              WHERE confrelid = $1 AND contype = 'f'",
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "other tables have foreign keys to",
            "PostgreSQL 15 cannot keep a foreign key to a partitioned table's non-unique-per-partition key; drop those foreign keys, convert, then re-create them against the new primary key.",
        ),
        (
            "SELECT DISTINCT v.oid::regclass::text FROM pg_catalog.pg_depend d \
               JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid \
               JOIN pg_catalog.pg_class v ON v.oid = r.ev_class \
              WHERE d.refobjid = $1 AND d.classid = 'pg_catalog.pg_rewrite'::regclass AND v.oid <> $1",
            PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
            "views depend on",
            "Views keep pointing at the old table after the swap: drop them, convert, and re-create them.",
        ),
        (
            "SELECT format('trigger %I', tgname) FROM pg_catalog.pg_trigger \
              WHERE tgrelid = $1 AND NOT tgisinternal AND tgname <> 'dbopt_capture' \
                AND tgname <> 'dbopt_no_truncate'",
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "dbopt does not carry triggers over:",
            "Drop the triggers, convert, then create them on the partitioned table.",
        ),
        (
            "SELECT format('policy %I', polname) FROM pg_catalog.pg_policy WHERE polrelid = $1",
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "dbopt does not carry row-level security policies over:",
            "Drop the policies, convert, then create them on the partitioned table.",
        ),
        (
            "SELECT format('inherits from or is inherited by %s', \
                    CASE WHEN inhrelid = $1 THEN inhparent ELSE inhrelid END::regclass) \
               FROM pg_catalog.pg_inherits WHERE inhrelid = $1 OR inhparent = $1",
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "table inheritance is in the way:",
            "Only stand-alone tables can be converted.",
        ),
        (
            "SELECT format('constraint %I', conname) FROM pg_catalog.pg_constraint \
              WHERE conrelid = $1 AND contype = 'x'",
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "exclusion constraints cannot span partitions:",
            "Drop the exclusion constraint or convert by hand.",
        ),
        (
            "SELECT format('unique index %I', c.relname) FROM pg_catalog.pg_index i \
               JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
              WHERE i.indrelid = $1 AND i.indisunique AND NOT i.indisprimary \
                AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1 \
                     AND a.attname = $2 AND a.attnum = ANY (i.indkey))",
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "unique indexes lacking the control column cannot be enforced across partitions:",
            "Add the control column to the index, or drop it, and call again.",
        ),
    ];
    for (sql, code, problem, hint) in checks {
        let found: Vec<String> = Spi::connect(|client| {
            client
                .select(sql, None, &[oid.into(), column.name.as_str().into()])?
                .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
                .collect::<Result<Vec<_>, _>>()
        })
        .or_raise("checking the table");
        if !found.is_empty() {
            refuse(
                code,
                format!(
                    "cannot partition {quoted}: {problem} it: {}",
                    found.join(", ")
                ),
                hint,
            );
        }
    }
    (control_type, key)
}

/// Step 1: checks, builds the partitioned twin and starts recording changes. Returns what the
/// caller should know (e.g. the primary key gaining the control column). Calling it again for
/// a conversion already under way resumes it.
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
pub fn conversion_start(
    source: PgRelation,
    control: &str,
    partition_interval: &str,
    premake: default!(i32, 4),
) -> Vec<String> {
    let oid = source.oid();
    drop(source);
    let rel = Relation::from_oid(oid);
    if let Some(existing) = Conversion::load(oid) {
        return vec![format!(
            "resuming the conversion of {} into {}",
            rel.quoted(),
            existing.target.quoted()
        )];
    }
    let (control_type, key) = check_convertible(&rel, control);
    step::parse_step(partition_interval, control_type).unwrap_or_else(|reason| {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("partition_interval for {}: {reason}", rel.quoted()),
        )
        .hint(step::ACCEPTED_FORMS)
        .raise()
    });
    if premake < 1 {
        DboptError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("premake must be at least 1, not {premake}"),
        )
        .raise();
    }
    require_owner(&rel);
    let mut notes = Vec::new();
    let control_name = rel.column(control).name;
    let target_name = naming::child_name(&rel.name, "dbopt_new");
    let target = quote_qualified_identifier(&rel.schema, &target_name);
    ddl::execute(
        &format!(
            "CREATE TABLE {target} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
             INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING GENERATED INCLUDING IDENTITY \
             INCLUDING COMMENTS INCLUDING STATISTICS) PARTITION BY RANGE ({})",
            rel.quoted(),
            quote_identifier(&control_name)
        ),
        &target,
    );
    let target_oid = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT $1::regclass::oid",
        &[target.as_str().into()],
    )
    .or_raise("finding the new table")
    .unwrap_or(pg_sys::InvalidOid);

    // The primary key, with the control column added when it lacks it.
    let pk_name = one(
        "SELECT conname::text FROM pg_catalog.pg_constraint WHERE conrelid = $1 AND contype = 'p'",
        oid,
    )
    .unwrap_or_default();
    let mut pk_columns: Vec<String> = key.iter().map(|k| quote_identifier(k)).collect();
    if !key.contains(&control_name) {
        pk_columns.push(quote_identifier(&control_name));
        notes.push(format!(
            "primary key {} gains the control column: it becomes ({})",
            quote_identifier(&pk_name),
            pk_columns.join(", ")
        ));
    }
    ddl::execute(
        &format!(
            "ALTER TABLE {target} ADD CONSTRAINT {} PRIMARY KEY ({})",
            quote_identifier(&naming::child_name(&pk_name, "dbopt")),
            pk_columns.join(", ")
        ),
        &target,
    );
    // Other indexes and foreign keys, under temporary names that the swap gives back.
    for definition in strings(
        "SELECT pg_catalog.format('CREATE %sINDEX %I ON %%s USING %s', \
                CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END, \
                c.relname || '_dbopt', \
                pg_catalog.substr(pg_catalog.pg_get_indexdef(i.indexrelid), \
                    pg_catalog.strpos(pg_catalog.pg_get_indexdef(i.indexrelid), ' USING ') + 7)) \
           FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
          WHERE i.indrelid = $1 AND NOT i.indisprimary \
            AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k WHERE k.conindid = i.indexrelid \
                              AND k.contype IN ('u', 'x'))",
        oid,
    ) {
        ddl::execute(&definition.replacen("%s", &target, 1), &target);
    }
    for definition in strings(
        "SELECT pg_catalog.format('ADD CONSTRAINT %I %s', \
                CASE WHEN contype = 'u' THEN conname || '_dbopt' ELSE conname END, \
                pg_catalog.pg_get_constraintdef(oid)) \
           FROM pg_catalog.pg_constraint WHERE conrelid = $1 AND contype IN ('f', 'u')",
        oid,
    ) {
        ddl::execute(&format!("ALTER TABLE {target} {definition}"), &target);
    }

    // Partitions from the oldest row through premake intervals ahead, named after the source.
    let oldest = Spi::get_one::<String>(&format!(
        "SELECT min({})::text FROM {}",
        quote_identifier(&control_name),
        rel.quoted()
    ))
    .or_raise("finding the oldest row");
    let set = PartitionSet::inspect(target_oid, &control_name);
    super::create_for(
        set,
        &super::Request {
            partition_interval,
            premake,
            start_from: oldest.as_deref(),
            with_default: true,
            future_limit: None,
            max_per_run: 24,
        },
        false,
        Some(&rel.name),
    );

    // Change capture: the key of every row written from now on.
    let changes =
        quote_qualified_identifier(&rel.schema, &naming::child_name(&rel.name, "dbopt_changes"));
    let key_defs = strings(
        "SELECT pg_catalog.format('%I %s NOT NULL', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)) \
           FROM pg_catalog.pg_index i \
           CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) \
           JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
          WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.n",
        oid,
    );
    ddl::execute(
        &format!(
            "CREATE TABLE {changes} (change_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {})",
            key_defs.join(", ")
        ),
        &changes,
    );
    let quoted_key: Vec<String> = key.iter().map(|k| quote_identifier(k)).collect();
    let old_key = quoted_key
        .iter()
        .map(|k| format!("OLD.{k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let new_key = quoted_key
        .iter()
        .map(|k| format!("NEW.{k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let key_list = quoted_key.join(", ");
    let capture =
        quote_qualified_identifier(&rel.schema, &naming::child_name(&rel.name, "dbopt_capture"));
    ddl::execute(
        &format!(
            "CREATE FUNCTION {capture}() RETURNS trigger LANGUAGE plpgsql \
             SET search_path = pg_catalog, pg_temp AS $dbopt$ \
             BEGIN \
               IF TG_OP = 'TRUNCATE' THEN \
                 RAISE EXCEPTION 'cannot truncate % while dbopt.partition_table converts it', TG_TABLE_NAME \
                   USING ERRCODE = 'object_in_use'; \
               END IF; \
               IF TG_OP <> 'INSERT' THEN INSERT INTO {changes} ({key_list}) VALUES ({old_key}); END IF; \
               IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND ROW({old_key}) IS DISTINCT FROM ROW({new_key})) THEN \
                 INSERT INTO {changes} ({key_list}) VALUES ({new_key}); \
               END IF; \
               RETURN NULL; \
             END $dbopt$"
        ),
        &capture,
    );
    ddl::execute(
        &format!(
            "CREATE TRIGGER dbopt_capture AFTER INSERT OR UPDATE OR DELETE ON {} \
             FOR EACH ROW EXECUTE FUNCTION {capture}()",
            rel.quoted()
        ),
        &rel.quoted(),
    );
    ddl::execute(
        &format!(
            "CREATE TRIGGER dbopt_no_truncate BEFORE TRUNCATE ON {} \
             FOR EACH STATEMENT EXECUTE FUNCTION {capture}()",
            rel.quoted()
        ),
        &rel.quoted(),
    );
    Spi::run_with_args(
        "INSERT INTO dbopt.partition_conversion \
           (source, target, changes, capture, control, partition_interval, key_columns) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            oid.into(),
            target_oid.into(),
            changes.into(),
            capture.into(),
            control_name.into(),
            partition_interval.into(),
            key.into(),
        ],
    )
    .or_raise("recording the conversion");
    notes
}

/// Identity columns of a table and their sequences.
fn identity_sequences(oid: pg_sys::Oid) -> Vec<(String, String)> {
    crate::ident::text_pairs(
        "SELECT a.attname::text, \
                pg_catalog.pg_get_serial_sequence(a.attrelid::regclass::text, a.attname) \
           FROM pg_catalog.pg_attribute a \
          WHERE a.attrelid = $1 AND a.attidentity <> '' AND NOT a.attisdropped",
        oid,
        "reading identity columns",
    )
}

fn require_owner(rel: &Relation) {
    let owns = Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.pg_has_role(relowner, 'USAGE') \
                AND pg_catalog.has_schema_privilege(relnamespace, 'CREATE') \
           FROM pg_catalog.pg_class WHERE oid = $1",
        &[rel.oid.into()],
    )
    .or_raise("checking privileges");
    if owns != Some(true) {
        refuse(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "must be owner of table {} and able to create tables in its schema to convert it",
                rel.quoted()
            ),
            "Run it as the table's owner.",
        );
    }
}

/// Step 2: copies the next `batch_size` rows in primary-key order. Returns how many; 0 when
/// the copy is complete.
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn conversion_copy(source: PgRelation, batch_size: i32) -> i64 {
    let oid = source.oid();
    drop(source);
    let conversion = Conversion::require(oid);
    let keys = conversion.key_list("");
    let after = match &conversion.last_key {
        None => String::new(),
        Some(_) => {
            let typed = conversion
                .key_types
                .iter()
                .enumerate()
                .map(|(i, type_name)| format!("$1[{}]::{type_name}", i + 1))
                .collect::<Vec<_>>()
                .join(", ");
            format!("WHERE ({keys}) > ({typed})")
        }
    };
    let last_key_array = conversion
        .key
        .iter()
        .map(|k| format!("{k}::text"))
        .collect::<Vec<_>>()
        .join(", ");
    let descending = conversion
        .key
        .iter()
        .map(|k| format!("{k} DESC"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "WITH batch AS MATERIALIZED (SELECT {cols} FROM {source} {after} ORDER BY {keys} LIMIT {batch_size}), \
              copied AS (INSERT INTO {target} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM batch) \
         SELECT (SELECT count(*) FROM batch), \
                (SELECT ARRAY[{last_key_array}] FROM batch ORDER BY {descending} LIMIT 1)",
        cols = conversion.columns,
        source = conversion.source.quoted(),
        target = conversion.target.quoted(),
    );
    let (copied, last) = Spi::connect_mut(|client| {
        let row = client
            .update(&sql, Some(1), &[conversion.last_key.clone().into()])?
            .first();
        Ok::<_, pgrx::spi::Error>((row.get::<i64>(1)?.unwrap_or(0), row.get::<Vec<String>>(2)?))
    })
    .or_raise("copying a batch");
    if copied > 0 {
        Spi::run_with_args(
            "UPDATE dbopt.partition_conversion SET last_key = $2, rows_copied = rows_copied + $3 \
              WHERE source = $1",
            &[oid.into(), last.into(), copied.into()],
        )
        .or_raise("recording progress");
    }
    copied
}

/// Step 3: replays up to `batch_size` recorded changes. Returns how many were replayed.
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn conversion_replay(source: PgRelation, batch_size: i32) -> i64 {
    let oid = source.oid();
    drop(source);
    Conversion::require(oid).replay(Some(i64::from(batch_size.max(1))))
}

/// Step 4: under the table's lock (waiting at most dbopt.lock_timeout), replays the last
/// changes and swaps the partitioned table in under the original name. Returns notes for the
/// caller.
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn conversion_swap(source: PgRelation) -> Vec<String> {
    let oid = source.oid();
    drop(source);
    let conversion = Conversion::require(oid);
    let source = conversion.source.quoted();
    let target = conversion.target.quoted();
    ddl::execute(
        &format!("LOCK TABLE {source} IN ACCESS EXCLUSIVE MODE"),
        &source,
    );
    let locked = Instant::now();
    let replayed = conversion.replay(None);

    let name = conversion.source.name.clone();
    let schema = conversion.source.schema.clone();
    let old_name = naming::child_name(&name, "dbopt_old");
    let mut statements = vec![
        format!("DROP TRIGGER dbopt_capture ON {source}"),
        format!("DROP TRIGGER dbopt_no_truncate ON {source}"),
        format!("DROP TABLE {}", conversion.changes),
        format!("DROP FUNCTION {}()", conversion.capture),
    ];
    // Identity columns continue where the old table's left off; serial sequences move over.
    for (column, sequence) in identity_sequences(oid) {
        statements.push(format!(
            "SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence({}, {}), last_value, is_called) \
               FROM {sequence}",
            quote_literal(&target),
            quote_literal(&column)
        ));
    }
    statements.extend(strings(
        "SELECT pg_catalog.format('ALTER SEQUENCE %s OWNED BY {target}.%I', d.objid::regclass, a.attname) \
           FROM pg_catalog.pg_depend d \
           JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
           JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
          WHERE d.refobjid = $1 AND d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'a' \
            AND a.attidentity = ''",
        oid,
    )
    .into_iter()
    .map(|s| s.replace("{target}", &target)));
    // Index and constraint names go back to their owners.
    statements.extend(strings(
        "SELECT pg_catalog.format('ALTER INDEX %I.%I RENAME TO %I', n.nspname, c.relname, c.relname || '_old') \
           FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE i.indrelid = $1",
        oid,
    ));
    statements.push(format!(
        "ALTER TABLE {source} RENAME TO {}",
        quote_identifier(&old_name)
    ));
    statements.push(format!(
        "ALTER TABLE {target} RENAME TO {}",
        quote_identifier(&name)
    ));
    let renamed_target = quote_qualified_identifier(&schema, &name);
    statements.extend(strings(
        "SELECT pg_catalog.format('ALTER INDEX %I.%I RENAME TO %I', n.nspname, c.relname, \
                pg_catalog.left(c.relname, -6)) \
           FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
          WHERE i.indrelid = $1 AND c.relname LIKE '%\\_dbopt'",
        conversion.target.oid,
    ));
    statements.extend(
        strings(
            "SELECT pg_catalog.format('COMMENT ON TABLE {renamed} IS %L', d.description) \
           FROM pg_catalog.pg_description d \
          WHERE d.objoid = $1 AND d.classoid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0",
            oid,
        )
        .into_iter()
        .map(|s| s.replace("{renamed}", &renamed_target)),
    );
    // Ownership and privileges, on the table and each partition.
    let tables: Vec<String> = std::iter::once(renamed_target.clone())
        .chain(strings(
            "SELECT i.inhrelid::regclass::text FROM pg_catalog.pg_inherits i WHERE i.inhparent = $1",
            conversion.target.oid,
        ))
        .collect();
    let owner = one(
        "SELECT pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(relowner)) FROM pg_catalog.pg_class WHERE oid = $1",
        oid,
    )
    .unwrap_or_default();
    let (is_owner, grants) = owner_and_grants(oid);
    for table in &tables {
        if !is_owner {
            statements.push(format!("ALTER TABLE {table} OWNER TO {owner}"));
        }
        statements.extend(grants.iter().map(|g| g.replace("{table}", table)));
    }
    for statement in &statements {
        ddl::execute(statement, &source);
    }
    Spi::run_with_args(
        "DELETE FROM dbopt.partition_conversion WHERE source = $1",
        &[oid.into()],
    )
    .or_raise("finishing the conversion");
    vec![format!(
        "{renamed_target} is now partitioned (swapped in {:.0} ms under lock, {replayed} last \
         change(s) replayed); the original table is kept as {} until you drop it",
        locked.elapsed().as_secs_f64() * 1000.0,
        quote_qualified_identifier(&schema, &old_name)
    )]
}

//! The DDL behind each partition change, with the lock each statement takes, so the dry run
//! (`maintenance_plan`, `create_partitions(dry_run => true)`) shows exactly what would run.
//!
//! Partitions are made with `CREATE TABLE ... (LIKE parent)` and then `ATTACH PARTITION`: the
//! attach takes SHARE UPDATE EXCLUSIVE on the parent, where `CREATE TABLE ... PARTITION OF`
//! takes ACCESS EXCLUSIVE and would block every reader and writer of the table meanwhile.
//! The exception is a parent with no partitions at all, which cannot hold a row: its first
//! partitions are made with `PARTITION OF`, which rebuilds the parent's partition descriptor
//! once per partition where ATTACH rebuilds it twice (a third faster for a thousand
//! partitions).

use super::boundaries::Range;

/// One statement and the strongest lock it takes, as `maintenance_plan` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub lock_mode: String,
}

impl Statement {
    fn new(sql: String, lock_mode: impl Into<String>) -> Statement {
        Statement {
            sql,
            lock_mode: lock_mode.into(),
        }
    }

    /// Statements that only acquire locks: their time is the time spent waiting for locks.
    pub fn is_lock(&self) -> bool {
        self.sql.starts_with("LOCK TABLE ")
    }
}

/// One change to a partition set: what the log calls an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// `create`, `create_default`, `move_default_rows`, `drop`, `detach`, `archive`.
    pub step: &'static str,
    /// The quoted partition the action is about.
    pub object: String,
    pub statements: Vec<Statement>,
}

/// What every new partition is made from: the parent's quoted name and its properties.
pub struct Template<'a> {
    pub parent: &'a str,
    /// Quoted tablespace, when the parent names one.
    pub tablespace: Option<String>,
    /// `ALTER TABLE ... OWNER TO` target, when the current role is not the parent's owner.
    pub owner: Option<String>,
    /// GRANT statements copied from the parent, with `{table}` for the partition.
    pub grants: &'a [String],
    /// The quoted default partition, which ATTACH must lock and scan.
    pub default: Option<&'a str>,
    /// The parent has no partitions (so no rows) and nothing `PARTITION OF` would leave out
    /// (column comments, extended statistics): partitions are made with `PARTITION OF`.
    pub fresh: bool,
}

impl Template<'_> {
    fn create_table(&self, child: &str) -> Statement {
        let tablespace = self
            .tablespace
            .as_ref()
            .map(|t| format!(" TABLESPACE {t}"))
            .unwrap_or_default();
        Statement::new(
            format!(
                "CREATE TABLE {child} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
                 INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING GENERATED \
                 INCLUDING COMMENTS INCLUDING STATISTICS){tablespace}",
                self.parent
            ),
            format!("ACCESS SHARE on {}", self.parent),
        )
    }

    fn lock_for_attach(&self) -> Vec<Statement> {
        let mut locks = vec![Statement::new(
            format!(
                "LOCK TABLE ONLY {} IN SHARE UPDATE EXCLUSIVE MODE",
                self.parent
            ),
            format!("SHARE UPDATE EXCLUSIVE on {}", self.parent),
        )];
        if let Some(default) = self.default {
            locks.push(Statement::new(
                format!("LOCK TABLE ONLY {default} IN ACCESS EXCLUSIVE MODE"),
                format!("ACCESS EXCLUSIVE on {default}"),
            ));
        }
        locks
    }

    fn attach(&self, child: &str, bounds: &str) -> Statement {
        let mut lock = format!("SHARE UPDATE EXCLUSIVE on {}", self.parent);
        if let Some(default) = self.default {
            lock.push_str(&format!(", ACCESS EXCLUSIVE on {default}"));
        }
        Statement::new(
            format!(
                "ALTER TABLE {} ATTACH PARTITION {child} {bounds}",
                self.parent
            ),
            lock,
        )
    }

    fn finish(&self, child: &str) -> Vec<Statement> {
        let mut statements = Vec::new();
        if let Some(owner) = &self.owner {
            statements.push(Statement::new(
                format!("ALTER TABLE {child} OWNER TO {owner}"),
                format!("ACCESS EXCLUSIVE on {child} (new, unused)"),
            ));
        }
        for grant in self.grants {
            statements.push(Statement::new(
                grant.replace("{table}", child),
                format!("none on {}", self.parent),
            ));
        }
        statements
    }

    /// A new partition of a parent without partitions, under ACCESS EXCLUSIVE on the parent:
    /// nothing can be using a table that cannot hold a row.
    fn create_as_partition(&self, child: &str, bounds: &str) -> Vec<Statement> {
        let exclusive = format!("ACCESS EXCLUSIVE on {} (no partitions yet)", self.parent);
        let tablespace = self
            .tablespace
            .as_ref()
            .map(|t| format!(" TABLESPACE {t}"))
            .unwrap_or_default();
        vec![
            Statement::new(
                format!("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE", self.parent),
                exclusive.clone(),
            ),
            Statement::new(
                format!(
                    "CREATE TABLE {child} PARTITION OF {} {bounds}{tablespace}",
                    self.parent
                ),
                exclusive,
            ),
        ]
    }

    fn create_and_attach(&self, child: &str, bounds: &str) -> Vec<Statement> {
        let mut statements = if self.fresh {
            self.create_as_partition(child, bounds)
        } else {
            let mut statements = vec![self.create_table(child)];
            statements.extend(self.lock_for_attach());
            statements.push(self.attach(child, bounds));
            statements
        };
        statements.extend(self.finish(child));
        statements
    }

    /// A new, empty partition for `range`.
    pub fn create(&self, child: &str, range: &Range) -> Action {
        Action {
            step: "create",
            object: child.to_owned(),
            statements: self.create_and_attach(child, &bounds_clause(range)),
        }
    }

    /// The default partition (made last, so creating it scans nothing).
    pub fn create_default(&self, child: &str) -> Action {
        Action {
            step: "create_default",
            object: child.to_owned(),
            statements: self.create_and_attach(child, "DEFAULT"),
        }
    }

    /// A partition for `range` whose rows are sitting in the default partition: the rows move
    /// into the new table before it is attached, in the same transaction, so they are never
    /// invisible and the attach cannot fail on them. `columns` are the quoted columns to copy
    /// (generated columns are recomputed), `control` the quoted control column and `type_name`
    /// its type.
    pub fn move_from_default(
        &self,
        child: &str,
        range: &Range,
        control: &str,
        type_name: &str,
        columns: &str,
    ) -> Action {
        let default = self.default.unwrap_or_default();
        let mut statements = self.lock_for_attach();
        statements.push(self.create_table(child));
        let upper = match range.upper {
            super::boundaries::BoundValue::MaxValue => String::new(),
            ref upper => format!(" AND {control} < {}::{type_name}", upper.literal()),
        };
        statements.push(Statement::new(
            format!(
                "WITH moved AS (DELETE FROM {default} WHERE {control} >= {}::{type_name}{upper} \
                 RETURNING {columns}) INSERT INTO {child} ({columns}) SELECT {columns} FROM moved",
                range.lower.literal()
            ),
            format!("ACCESS EXCLUSIVE on {default} (held)"),
        ));
        statements.push(self.attach(child, &bounds_clause(range)));
        statements.extend(self.finish(child));
        Action {
            step: "move_default_rows",
            object: child.to_owned(),
            statements,
        }
    }
}

pub fn bounds_clause(range: &Range) -> String {
    format!(
        "FOR VALUES FROM ({}) TO ({})",
        range.lower.literal(),
        range.upper.literal()
    )
}

/// What retention does with a partition that holds only old rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Drop,
    Detach,
    /// Detach, then move the table into an archive schema.
    Archive,
}

impl Retention {
    pub fn parse(action: &str, archive_schema: Option<&str>) -> Result<Retention, String> {
        match (action.trim().to_ascii_lowercase().as_str(), archive_schema) {
            ("drop", None) => Ok(Retention::Drop),
            ("drop", Some(_)) => Err(
                "action 'drop' deletes the partitions, so archive_schema cannot apply: use action 'detach' to move them there".into(),
            ),
            ("detach", None) => Ok(Retention::Detach),
            ("detach" | "archive", Some(_)) => Ok(Retention::Archive),
            ("archive", None) => Err("action 'archive' needs archive_schema".into()),
            (other, _) => Err(format!(
                "action '{other}' is not one of 'drop', 'detach' (with archive_schema: detach and move)"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Retention::Drop => "drop",
            Retention::Detach => "detach",
            Retention::Archive => "archive",
        }
    }

    /// Statements retiring `child` from `parent`. Both DROP and DETACH take ACCESS EXCLUSIVE
    /// on the parent, so the lock is requested first, bounded by dbopt.lock_timeout.
    pub fn action(self, parent: &str, child: &str, archive_schema: Option<&str>) -> Action {
        let exclusive = format!("ACCESS EXCLUSIVE on {parent}");
        let mut statements = vec![Statement::new(
            format!("LOCK TABLE ONLY {parent} IN ACCESS EXCLUSIVE MODE"),
            exclusive.clone(),
        )];
        match self {
            Retention::Drop => {
                statements.push(Statement::new(format!("DROP TABLE {child}"), exclusive))
            }
            Retention::Detach | Retention::Archive => {
                statements.push(Statement::new(
                    format!("ALTER TABLE {parent} DETACH PARTITION {child}"),
                    exclusive,
                ));
                if let (Retention::Archive, Some(schema)) = (self, archive_schema) {
                    statements.push(Statement::new(
                        format!("ALTER TABLE {child} SET SCHEMA {schema}"),
                        format!("ACCESS EXCLUSIVE on {child} (detached)"),
                    ));
                }
            }
        }
        Action {
            step: self.name(),
            object: child.to_owned(),
            statements,
        }
    }
}

#[cfg(test)]
mod pure_tests {
    use super::super::boundaries::BoundValue;
    use super::*;

    fn range() -> Range {
        Range {
            suffix: "p100".into(),
            lower: BoundValue::Int(100),
            upper: BoundValue::Int(200),
        }
    }

    fn template<'a>(grants: &'a [String], default: Option<&'a str>) -> Template<'a> {
        Template {
            parent: r#""s"."T""x""#,
            tablespace: None,
            owner: Some("app".into()),
            grants,
            default,
            fresh: false,
        }
    }

    #[test]
    fn the_first_partitions_of_a_parent_are_made_as_partitions_under_its_lock() {
        let grants = vec!["GRANT SELECT ON {table} TO reader".to_string()];
        let mut fresh = template(&grants, None);
        fresh.fresh = true;
        fresh.tablespace = Some("fast".into());
        let sql: Vec<_> = fresh
            .create("c", &range())
            .statements
            .into_iter()
            .map(|s| s.sql)
            .collect();
        assert_eq!(
            sql,
            [
                r#"LOCK TABLE ONLY "s"."T""x" IN ACCESS EXCLUSIVE MODE"#,
                r#"CREATE TABLE c PARTITION OF "s"."T""x" FOR VALUES FROM (100) TO (200) TABLESPACE fast"#,
                "ALTER TABLE c OWNER TO app",
                "GRANT SELECT ON c TO reader",
            ]
        );
        let default = fresh.create_default("d").statements;
        assert_eq!(
            default[1].sql,
            r#"CREATE TABLE d PARTITION OF "s"."T""x" DEFAULT TABLESPACE fast"#
        );
    }

    #[test]
    fn a_partition_is_created_then_attached_with_bounded_locks() {
        let grants = vec!["GRANT SELECT ON {table} TO reader".to_string()];
        let action =
            template(&grants, Some(r#""s"."T""x_default""#)).create(r#""s"."c""#, &range());
        let sql: Vec<_> = action.statements.iter().map(|s| s.sql.as_str()).collect();
        assert!(sql[0].starts_with(r#"CREATE TABLE "s"."c" (LIKE "s"."T""x" INCLUDING DEFAULTS"#));
        assert_eq!(
            sql[1],
            r#"LOCK TABLE ONLY "s"."T""x" IN SHARE UPDATE EXCLUSIVE MODE"#
        );
        assert_eq!(
            sql[2],
            r#"LOCK TABLE ONLY "s"."T""x_default" IN ACCESS EXCLUSIVE MODE"#
        );
        assert_eq!(
            sql[3],
            r#"ALTER TABLE "s"."T""x" ATTACH PARTITION "s"."c" FOR VALUES FROM (100) TO (200)"#
        );
        assert_eq!(sql[4], r#"ALTER TABLE "s"."c" OWNER TO app"#);
        assert_eq!(sql[5], r#"GRANT SELECT ON "s"."c" TO reader"#);
        assert!(action.statements[1].is_lock() && !action.statements[3].is_lock());
    }

    #[test]
    fn default_rows_move_before_the_attach() {
        let action =
            template(&[], Some("d")).move_from_default("c", &range(), "k", "bigint", "k, v");
        let sql: Vec<_> = action.statements.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(
            sql[0],
            r#"LOCK TABLE ONLY "s"."T""x" IN SHARE UPDATE EXCLUSIVE MODE"#
        );
        assert_eq!(sql[1], "LOCK TABLE ONLY d IN ACCESS EXCLUSIVE MODE");
        assert_eq!(
            sql[3],
            "WITH moved AS (DELETE FROM d WHERE k >= 100::bigint AND k < 200::bigint \
             RETURNING k, v) INSERT INTO c (k, v) SELECT k, v FROM moved"
        );
        assert!(sql[4].contains("ATTACH PARTITION c FOR VALUES FROM (100) TO (200)"));
    }

    #[test]
    fn retention_actions_and_their_refusals() {
        assert_eq!(Retention::parse("DROP", None), Ok(Retention::Drop));
        assert_eq!(Retention::parse("detach", None), Ok(Retention::Detach));
        assert_eq!(
            Retention::parse("detach", Some("old")),
            Ok(Retention::Archive)
        );
        assert!(Retention::parse("drop", Some("old")).is_err());
        assert!(Retention::parse("archive", None).is_err());
        assert!(Retention::parse("truncate", None)
            .unwrap_err()
            .contains("'truncate'"));
        let archive = Retention::Archive.action("p", "c", Some("old"));
        let sql: Vec<_> = archive.statements.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(
            sql,
            [
                "LOCK TABLE ONLY p IN ACCESS EXCLUSIVE MODE",
                "ALTER TABLE p DETACH PARTITION c",
                "ALTER TABLE c SET SCHEMA old"
            ]
        );
    }
}

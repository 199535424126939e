//! The extensions some dbopt features need (pg_stat_statements for the advisor and slow-statement
//! checks, pg_cron for scheduling). `CREATE EXTENSION dbopt` never needs them: each feature calls
//! [`require`] when it runs, and `dbopt.environment()` reports what is ready and what to do.

use crate::errors::{DboptError, OrRaise};
use pgrx::prelude::*;
use std::ffi::CStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    PgStatStatements,
    PgCron,
}

impl Component {
    pub const ALL: [Component; 2] = [Component::PgStatStatements, Component::PgCron];

    pub fn extension(self) -> &'static str {
        match self {
            Component::PgStatStatements => "pg_stat_statements",
            Component::PgCron => "pg_cron",
        }
    }

    /// The Debian/Ubuntu (PGDG) package that ships it.
    fn package(self, major_version: u32) -> String {
        match self {
            Component::PgStatStatements => format!("postgresql-contrib-{major_version}"),
            Component::PgCron => format!("postgresql-{major_version}-cron"),
        }
    }

    fn used_for(self) -> &'static str {
        match self {
            Component::PgStatStatements => "index recommendations, slow-statement health checks",
            Component::PgCron => "scheduling dbopt's upkeep with dbopt.schedule()",
        }
    }
}

/// An extension as created in the current database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledExtension {
    pub schema: String,
    pub version: String,
}

/// What the server and the current database say about one component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub available_on_server: bool,
    pub preloaded: bool,
    pub installed: Option<InstalledExtension>,
    /// pg_cron can only be created in the database named by `cron.database_name`.
    pub cron_database: Option<String>,
    pub current_database: String,
    pub server_major_version: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ready(InstalledExtension),
    NotOnServer,
    NotPreloaded,
    CronServesOtherDatabase(String),
    NotCreated,
}

/// Decides a component's status from what was observed, most fundamental problem first.
pub fn diagnose(component: Component, observed: &Observed) -> Status {
    if !observed.available_on_server {
        return Status::NotOnServer;
    }
    if !observed.preloaded {
        return Status::NotPreloaded;
    }
    if let Some(installed) = &observed.installed {
        return Status::Ready(installed.clone());
    }
    match (&observed.cron_database, component) {
        (Some(cron_db), Component::PgCron) if *cron_db != observed.current_database => {
            Status::CronServesOtherDatabase(cron_db.clone())
        }
        _ => Status::NotCreated,
    }
}

impl Status {
    pub fn is_ready(&self) -> bool {
        matches!(self, Status::Ready(_))
    }

    /// Short status, phrased to follow "<extension> is …" or to stand alone in a report.
    pub fn describe(&self) -> String {
        match self {
            Status::Ready(_) => "ready".into(),
            Status::NotOnServer => "not installed on this server".into(),
            Status::NotPreloaded => "not loaded through shared_preload_libraries".into(),
            Status::CronServesOtherDatabase(db) => {
                format!("serving database \"{db}\" (cron.database_name), not this one")
            }
            Status::NotCreated => "not created in this database".into(),
        }
    }

    /// What to do about it, or None when ready.
    pub fn hint(&self, component: Component, observed: &Observed) -> Option<String> {
        let ext = component.extension();
        let db = &observed.current_database;
        let preload = match component {
            Component::PgCron => format!(
                "add {ext} to shared_preload_libraries and set cron.database_name = '{db}' in \
                 postgresql.conf, restart PostgreSQL"
            ),
            Component::PgStatStatements => format!(
                "add {ext} to shared_preload_libraries in postgresql.conf (keep the libraries \
                 already listed), restart PostgreSQL"
            ),
        };
        let create = format!("run CREATE EXTENSION {ext}; in database \"{db}\"");
        match self {
            Status::Ready(_) => None,
            Status::NotOnServer => Some(format!(
                "Install the package {} (or your platform's equivalent), {preload}, then {create}.",
                component.package(observed.server_major_version)
            )),
            Status::NotPreloaded => Some(format!("To enable it: {preload}, then {create}.")),
            Status::CronServesOtherDatabase(cron_db) => Some(format!(
                "pg_cron can only be created in database \"{cron_db}\". Set cron.database_name = \
                 '{db}' in postgresql.conf and restart PostgreSQL, or use dbopt from \"{cron_db}\"."
            )),
            Status::NotCreated => Some(format!("To enable it: {create}.")),
        }
    }
}

/// True when a `shared_preload_libraries` value lists `library`, however it is spelt there:
/// quoted, with a path such as `$libdir/`, or with a `.so` suffix.
pub fn preload_list_contains(setting: &str, library: &str) -> bool {
    setting.split(',').any(|entry| {
        let entry = entry.trim().trim_matches('"');
        let base = entry.rsplit('/').next().unwrap_or(entry);
        base.strip_suffix(".so").unwrap_or(base) == library
    })
}

/// Returns the installed extension, or raises SQLSTATE 55000 naming `feature`, the missing
/// component and what to do about it.
pub fn require(component: Component, feature: &str) -> InstalledExtension {
    require_with_hint(component, feature, "")
}

/// As [`require`], with `alternative` (another way to get the job done) after the hint.
pub fn require_with_hint(
    component: Component,
    feature: &str,
    alternative: &str,
) -> InstalledExtension {
    let observed = observe(component);
    let status = diagnose(component, &observed);
    match status {
        Status::Ready(installed) => installed,
        _ => {
            let hint = status.hint(component, &observed).unwrap_or_default();
            DboptError::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "{feature} needs {}, which is {}",
                    component.extension(),
                    status.describe()
                ),
            )
            .hint(format!("{hint} {alternative}").trim().to_owned())
            .raise()
        }
    }
}

/// Reads a server setting without the privilege check that `current_setting()` applies:
/// `shared_preload_libraries` and `cron.database_name` are superuser-only to read. dbopt derives
/// only whether a library is loaded and which database pg_cron serves (database names are
/// public in pg_database anyway).
fn server_setting(name: &CStr) -> Option<String> {
    // SAFETY: GetConfigOption returns NULL or a pointer to the setting's current string, which
    // stays valid until the setting changes; it is copied at once.
    unsafe {
        let value = pg_sys::GetConfigOption(name.as_ptr(), true, false);
        (!value.is_null()).then(|| CStr::from_ptr(value).to_string_lossy().into_owned())
    }
}

pub fn observe(component: Component) -> Observed {
    let ext = component.extension();
    let (available_on_server, installed) = Spi::connect(|client| {
        let installed = client
            .select(
                "SELECT n.nspname::text, e.extversion \
                   FROM pg_catalog.pg_extension e \
                   JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
                  WHERE e.extname = $1",
                Some(1),
                &[ext.into()],
            )?
            .into_iter()
            .next()
            .map(|row| -> Result<InstalledExtension, pgrx::spi::Error> {
                Ok(InstalledExtension {
                    schema: row.get(1)?.unwrap_or_default(),
                    version: row.get(2)?.unwrap_or_default(),
                })
            })
            .transpose()?;
        // pg_available_extensions reads every control file on the server: only worth it when
        // the extension is missing here.
        let available = installed.is_some()
            || client
                .select(
                    "SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = $1",
                    Some(1),
                    &[ext.into()],
                )?
                .len()
                > 0;
        Ok::<_, pgrx::spi::Error>((available, installed))
    })
    .or_raise("looking up extensions");
    let current_database = Spi::get_one::<String>("SELECT pg_catalog.current_database()::text")
        .or_raise("reading the database name")
        .unwrap_or_default();
    Observed {
        available_on_server,
        preloaded: server_setting(c"shared_preload_libraries")
            .is_some_and(|libs| preload_list_contains(&libs, ext)),
        installed,
        cron_database: server_setting(c"cron.database_name"),
        current_database,
        server_major_version: pg_sys::PG_VERSION_NUM / 10000,
    }
}

/// One row per component dbopt can use: whether it is ready here, and if not, what to do.
#[pg_extern(stable)]
#[search_path(pg_catalog, pg_temp)]
fn environment() -> TableIterator<
    'static,
    (
        name!(component, String),
        name!(ready, bool),
        name!(status, String),
        name!(version, Option<String>),
        name!(used_for, String),
        name!(hint, Option<String>),
    ),
> {
    let rows: Vec<_> = Component::ALL
        .iter()
        .map(|&component| {
            let observed = observe(component);
            let status = diagnose(component, &observed);
            let version = match &status {
                Status::Ready(installed) => Some(installed.version.clone()),
                _ => None,
            };
            (
                component.extension().to_owned(),
                status.is_ready(),
                status.describe(),
                version,
                component.used_for().to_owned(),
                status.hint(component, &observed),
            )
        })
        .collect();
    TableIterator::new(rows)
}

#[cfg(test)]
mod pure_tests {
    use super::*;

    fn observed() -> Observed {
        Observed {
            available_on_server: true,
            preloaded: true,
            installed: None,
            cron_database: Some("postgres".into()),
            current_database: "shop".into(),
            server_major_version: 15,
        }
    }

    #[test]
    fn preload_list_matches_all_spellings() {
        assert!(preload_list_contains(
            "pg_stat_statements",
            "pg_stat_statements"
        ));
        assert!(preload_list_contains(
            "pg_cron, pg_stat_statements",
            "pg_stat_statements"
        ));
        assert!(preload_list_contains(
            "\"pg_stat_statements\",auto_explain",
            "pg_stat_statements"
        ));
        assert!(preload_list_contains(
            "$libdir/pg_stat_statements.so",
            "pg_stat_statements"
        ));
        assert!(!preload_list_contains(
            "pg_stat_statements_ext",
            "pg_stat_statements"
        ));
        assert!(!preload_list_contains("", "pg_cron"));
    }

    #[test]
    fn the_most_fundamental_problem_is_reported_first() {
        let mut o = observed();
        o.available_on_server = false;
        o.preloaded = false;
        assert_eq!(
            diagnose(Component::PgStatStatements, &o),
            Status::NotOnServer
        );
        o.available_on_server = true;
        assert_eq!(
            diagnose(Component::PgStatStatements, &o),
            Status::NotPreloaded
        );
        o.preloaded = true;
        assert_eq!(
            diagnose(Component::PgStatStatements, &o),
            Status::NotCreated
        );
    }

    #[test]
    fn pg_cron_bound_to_another_database_is_named() {
        let o = observed();
        let status = diagnose(Component::PgCron, &o);
        assert_eq!(status, Status::CronServesOtherDatabase("postgres".into()));
        let hint = status.hint(Component::PgCron, &o).unwrap();
        assert!(hint.contains("cron.database_name = 'shop'"), "{hint}");
    }

    #[test]
    fn installed_and_preloaded_is_ready_with_no_hint() {
        let mut o = observed();
        let installed = InstalledExtension {
            schema: "public".into(),
            version: "1.10".into(),
        };
        o.installed = Some(installed.clone());
        let status = diagnose(Component::PgStatStatements, &o);
        assert_eq!(status, Status::Ready(installed));
        assert_eq!(status.hint(Component::PgStatStatements, &o), None);
    }

    #[test]
    fn hints_name_the_package_and_the_database() {
        let mut o = observed();
        o.available_on_server = false;
        let hint = Status::NotOnServer.hint(Component::PgCron, &o).unwrap();
        assert!(hint.contains("postgresql-15-cron"), "{hint}");
        assert!(
            hint.contains("CREATE EXTENSION pg_cron; in database \"shop\""),
            "{hint}"
        );
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use super::*;
    use crate::errors::raised_by;

    // The test server preloads pg_stat_statements but not pg_cron (see `crate::pg_test`).

    #[pg_test]
    fn a_preloaded_extension_is_required_to_be_created() {
        let err = raised_by(|| {
            require(Component::PgStatStatements, "dbopt.recommend_indexes");
        })
        .expect("pg_stat_statements is not created yet");
        assert_eq!(
            err.code,
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
        );
        assert_eq!(
            err.message,
            "dbopt.recommend_indexes needs pg_stat_statements, which is not created in this database"
        );
        assert!(err
            .hint
            .unwrap()
            .contains("CREATE EXTENSION pg_stat_statements"));

        Spi::run("CREATE EXTENSION pg_stat_statements").unwrap();
        let installed = require(Component::PgStatStatements, "dbopt.recommend_indexes");
        assert_eq!(installed.schema, "public");
    }

    #[pg_test]
    fn an_extension_not_preloaded_gets_a_hint_to_preload_it() {
        let err = raised_by(|| {
            require(Component::PgCron, "dbopt.schedule");
        })
        .expect("pg_cron is not preloaded in the test server");
        assert_eq!(
            err.code,
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
        );
        assert!(err
            .message
            .contains("not loaded through shared_preload_libraries"));
        assert!(err.hint.unwrap().contains("shared_preload_libraries"));
    }

    #[pg_test]
    fn environment_reports_each_component() {
        let rows = Spi::connect(|client| {
            client
                .select(
                    "SELECT component, ready, status FROM dbopt.environment()",
                    None,
                    &[],
                )
                .unwrap()
                .map(|row| {
                    (
                        row.get::<String>(1).unwrap().unwrap(),
                        row.get::<bool>(2).unwrap().unwrap(),
                        row.get::<String>(3).unwrap().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        });
        assert_eq!(
            rows,
            vec![
                (
                    "pg_stat_statements".into(),
                    false,
                    "not created in this database".into()
                ),
                (
                    "pg_cron".into(),
                    false,
                    "not loaded through shared_preload_libraries".into()
                ),
            ]
        );
    }
}

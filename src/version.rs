//! `dbopt.version()`: which dbopt is running, and whether its SQL objects match the library.

use crate::errors::OrRaise;
use pgrx::prelude::*;

pub struct BuildInfo {
    pub library_version: &'static str,
    pub commit: &'static str,
    pub profile: &'static str,
    pub built_for: &'static str,
}

pub const BUILD: BuildInfo = BuildInfo {
    library_version: env!("CARGO_PKG_VERSION"),
    commit: env!("DBOPT_GIT_COMMIT"),
    profile: if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    },
    built_for: match pg_sys::PG_VERSION.to_str() {
        Ok(version) => version,
        Err(_) => "unknown",
    },
};

/// Describes the build. `sql_version` is the version `CREATE/ALTER EXTENSION` installed; when it
/// differs from the library's, the server was upgraded without `ALTER EXTENSION dbopt UPDATE`.
pub fn describe(build: &BuildInfo, sql_version: Option<&str>) -> String {
    let mut text = format!(
        "dbopt {} (commit {}, {} build for PostgreSQL {})",
        build.library_version, build.commit, build.profile, build.built_for
    );
    match sql_version {
        Some(v) if v != build.library_version => text.push_str(&format!(
            "; SQL objects are at version {v}: run ALTER EXTENSION dbopt UPDATE"
        )),
        None => text.push_str("; extension not created in this database"),
        Some(_) => {}
    }
    text
}

#[pg_extern(stable)]
#[search_path(pg_catalog, pg_temp)]
fn version() -> String {
    let sql_version = Spi::get_one::<String>(
        "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'dbopt'",
    )
    .or_raise("reading dbopt's installed version");
    describe(&BUILD, sql_version.as_deref())
}

#[cfg(test)]
mod pure_tests {
    use super::*;

    const BUILD_010: BuildInfo = BuildInfo {
        library_version: "0.1.0",
        commit: "abc",
        profile: "debug",
        built_for: "15.4",
    };

    #[test]
    fn matching_versions_describe_the_build_only() {
        assert_eq!(
            describe(&BUILD_010, Some("0.1.0")),
            "dbopt 0.1.0 (commit abc, debug build for PostgreSQL 15.4)"
        );
    }

    #[test]
    fn an_outdated_sql_install_says_how_to_update() {
        let text = describe(&BUILD_010, Some("0.0.9"));
        assert!(
            text.ends_with("SQL objects are at version 0.0.9: run ALTER EXTENSION dbopt UPDATE")
        );
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn version_names_the_library_and_matches_the_installed_sql() {
        let text = Spi::get_one::<String>("SELECT dbopt.version()")
            .unwrap()
            .unwrap();
        let prefix = format!("dbopt {} (commit ", env!("CARGO_PKG_VERSION"));
        assert!(text.starts_with(&prefix), "{text}");
        assert!(
            !text.contains("ALTER EXTENSION"),
            "SQL and library versions differ: {text}"
        );
    }
}

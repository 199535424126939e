//! How dbopt reports errors: always a specific SQLSTATE, a message naming the object, and a hint
//! where one helps. A plain `Err` or panic would surface as the generic 22000/XX000, which tells
//! the caller nothing, so every error dbopt raises on purpose goes through [`DboptError`].

use pgrx::pg_sys::panic::{CaughtError, ErrorReport, ErrorReportWithLevel};
use pgrx::{PgLogLevel, PgSqlErrorCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DboptError {
    pub code: PgSqlErrorCode,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl DboptError {
    pub fn new(code: PgSqlErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Raises this error as a PostgreSQL ERROR, aborting the current statement.
    #[track_caller]
    pub fn raise(self) -> ! {
        self.report(PgLogLevel::ERROR);
        unreachable!("an ERROR report does not return")
    }

    /// Sends this as a WARNING: the statement goes on.
    pub fn warn(self) {
        self.report(PgLogLevel::WARNING);
    }

    fn report(self, level: PgLogLevel) {
        let mut report = ErrorReport::new(self.code, self.message, "dbopt");
        if let Some(detail) = self.detail {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint {
            report = report.set_hint(hint);
        }
        report.report(level);
    }
}

/// Unwraps an SPI result. SPI failures that PostgreSQL raised already carry their own SQLSTATE;
/// what arrives here is pgrx's own (a statement returning no row, a type mismatch) and means a
/// query dbopt wrote is wrong, so it is reported as an internal error naming what was attempted.
pub trait OrRaise<T> {
    fn or_raise(self, doing: &str) -> T;
}

impl<T, E: std::fmt::Display> OrRaise<T> for Result<T, E> {
    #[track_caller]
    fn or_raise(self, doing: &str) -> T {
        match self {
            Ok(value) => value,
            Err(e) => DboptError::new(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                format!("dbopt failed while {doing}: {e}"),
            )
            .hint("This is a bug in dbopt; please report it with the statement that caused it.")
            .raise(),
        }
    }
}

/// What a caught dbopt error said, for tests that check SQLSTATE, message and hint.
#[cfg(any(test, feature = "pg_test"))]
#[derive(Debug)]
pub struct Raised {
    pub code: PgSqlErrorCode,
    pub message: String,
    pub hint: Option<String>,
}

/// Runs `f` and returns the error it raised, or None. Only for errors dbopt raises from Rust:
/// continuing after catching an error PostgreSQL raised would need a subtransaction.
#[cfg(any(test, feature = "pg_test"))]
pub fn raised_by(f: impl FnOnce() + std::panic::UnwindSafe) -> Option<Raised> {
    use pgrx::PgTryBuilder;
    PgTryBuilder::new(|| {
        f();
        None
    })
    .catch_others(|caught| {
        let report = report_of(&caught);
        Some(Raised {
            code: report.sql_error_code(),
            message: report.message().to_owned(),
            hint: report.hint().map(str::to_owned),
        })
    })
    .execute()
}

/// The error report inside whatever `PgTryBuilder` caught.
pub fn report_of(caught: &CaughtError) -> &ErrorReportWithLevel {
    match caught {
        CaughtError::ErrorReport(report) | CaughtError::PostgresError(report) => report,
        CaughtError::RustPanic { ereport, .. } => ereport,
    }
}

/// The five-character SQLSTATE of `code`, e.g. "42P01".
pub fn sqlstate(code: PgSqlErrorCode) -> String {
    // PostgreSQL packs each character in 6 bits, first character lowest (MAKE_SQLSTATE).
    let packed = code as i32;
    (0..5)
        .map(|i| char::from(((packed >> (6 * i)) & 0x3F) as u8 + b'0'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_unpacked_as_postgresql_spells_them() {
        assert_eq!(sqlstate(PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE), "42P01");
        assert_eq!(
            sqlstate(PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION),
            "00000"
        );
        assert_eq!(
            sqlstate(PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES),
            "53000"
        );
        assert_eq!(
            sqlstate(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE),
            "55P03"
        );
    }
}

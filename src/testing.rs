//! Helpers shared by the `#[pg_test]`s of every capability.

use pgrx::prelude::*;

/// Runs SQL (several statements allowed), failing the test on any error.
pub fn sql(statements: &str) {
    Spi::run(statements).unwrap();
}

/// The one value a query returns, failing the test when there is none.
pub fn one<T: IntoDatum + FromDatum>(query: &str) -> T {
    Spi::get_one::<T>(query).unwrap().unwrap()
}

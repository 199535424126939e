//! Partition management (issue 3): `dbopt.create_partitions`, `dbopt.run_maintenance`,
//! retention and online conversion of an existing table. Boundaries are computed from the clock
//! and the catalog, never by scanning data.
//!
//! Pure logic: [`step`] (what an interval means for a column type), [`boundaries`] (aligned
//! ranges, DST-safe) and [`naming`] (predictable names within 63 bytes).

pub mod boundaries;
pub mod naming;
pub mod step;

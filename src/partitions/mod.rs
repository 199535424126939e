//! Partition management (issue 3): `dbopt.create_partitions`, `dbopt.run_maintenance`,
//! retention and online conversion of an existing table. Boundaries are computed from the clock
//! and the catalog, never by scanning data.

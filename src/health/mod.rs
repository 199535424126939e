//! Database health and upkeep (issue 7): `dbopt.db_health()`, statistics snapshots, the
//! materialized-view refresh manager and per-key row caps.

//! Index advisor (issue 6): `dbopt.recommend_indexes()` plans pg_stat_statements' workload
//! in-process with hypothetical indexes, plus index health and query lints.

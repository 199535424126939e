//! Scheduling (issue 8): `dbopt.schedule()` through pg_cron, and a background worker where pg_cron
//! is absent.

pub mod cron;

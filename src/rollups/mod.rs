//! Rolling aggregates (issue 5): `dbopt.create_rolling_aggregate` tables kept exact by
//! statement-level triggers, aged by `dbopt.refresh_rolling`.

//! Batched archiving (issue 4): `CALL dbopt.archive(...)` moves old rows to an archive table in
//! committed batches, each one statement, verified, resumable after a crash.

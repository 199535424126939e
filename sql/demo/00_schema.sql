-- The seeds' tables, as their authors first had them: primary keys and little else, so that the
-- later demo steps (partitions, archiving, the index advisor, rolling aggregates) have work to do.
-- Everything lives in schema dbopt_demo, which this step recreates.
\echo '== Creating the seeds'' tables in schema dbopt_demo'
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS dbopt_demo CASCADE;
CREATE SCHEMA dbopt_demo;

-- Seed 001: the shop.
CREATE TABLE dbopt_demo.users (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username   text NOT NULL,
    email      text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dbopt_demo.orders (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES dbopt_demo.users (id),
    total_amount numeric(12, 2) NOT NULL,
    status       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Seed 002: the ML job queue (SQLAlchemy model MLJob: timestamps without time zone).
CREATE TABLE dbopt_demo.ml_jobs (
    id           serial PRIMARY KEY,
    job_uuid     varchar(36) UNIQUE,
    input_text   text,
    status       varchar(20) DEFAULT 'pending',
    result_score double precision,
    result_label varchar(50),
    created_at   timestamp DEFAULT (now() AT TIME ZONE 'utc'),
    completed_at timestamp
);

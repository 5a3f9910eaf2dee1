-- The ride example's own tables: the application's, not the engine's. The
-- engine never creates them; `setup.py` does (`make demo` runs it). The same
-- SQL serves SQLite and Postgres.

CREATE TABLE IF NOT EXISTS rides (
    id           TEXT PRIMARY KEY,
    run_key      TEXT NOT NULL,
    user_email   TEXT NOT NULL,
    origin       TEXT NOT NULL,
    target       TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    charge_id    TEXT
);

-- One row per thing that happened to a ride, written in the same step (and
-- so the same transaction) as the change it records.
CREATE TABLE IF NOT EXISTS audit_records (
    ride_id TEXT NOT NULL,
    action  TEXT NOT NULL,
    detail  TEXT NOT NULL,
    PRIMARY KEY (ride_id, action)
);

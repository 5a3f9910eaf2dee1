-- acidic's engine tables (SQLite). Times are milliseconds since the Unix epoch.

-- Component bytes, content-addressed by SHA-256 (hex).
CREATE TABLE components (
    digest     TEXT PRIMARY KEY,
    bytes      BLOB NOT NULL,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

-- Registered workflow definitions. A changed manifest is a new version; runs
-- pin the version they started with.
CREATE TABLE workflows (
    name            TEXT NOT NULL,
    version         INTEGER NOT NULL,
    definition_hash TEXT NOT NULL,
    definition      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (name, version),
    UNIQUE (name, definition_hash)
);

-- One row per run: the idempotency-key record, and the queue.
CREATE TABLE runs (
    id                 INTEGER PRIMARY KEY,
    workflow           TEXT NOT NULL,
    workflow_version   INTEGER NOT NULL,
    definition_hash    TEXT NOT NULL,
    idempotency_key    TEXT NOT NULL,
    args               TEXT NOT NULL,
    args_hash          TEXT NOT NULL,
    status             TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
    recovery_point     TEXT NOT NULL,
    attributes         TEXT NOT NULL,
    result             TEXT,
    response_code      INTEGER,
    response_body      TEXT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    step_attempt       INTEGER NOT NULL DEFAULT 0,
    -- step_attempt when the current retry budget began (raised by a manual retry)
    step_attempt_base  INTEGER NOT NULL DEFAULT 0,
    last_error_step    TEXT,
    last_error_kind    TEXT,
    last_error_message TEXT,
    last_error_attempt INTEGER,
    locked_by          TEXT,
    locked_until       INTEGER,
    available_at       INTEGER NOT NULL,
    queue              TEXT NOT NULL DEFAULT 'default',
    parent_run_id      INTEGER REFERENCES runs (id) ON DELETE SET NULL,
    -- 1 if the parent's step waits for this run (fan-out / fan-in)
    awaited            INTEGER NOT NULL DEFAULT 0,
    -- while waiting: awaited children not yet succeeded, and where to go next
    pending_children   INTEGER NOT NULL DEFAULT 0,
    await_next         TEXT,
    cancelled_by       TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    last_run_at        INTEGER,
    finished_at        INTEGER,
    UNIQUE (workflow, idempotency_key)
);

CREATE INDEX runs_by_key ON runs (idempotency_key);
CREATE INDEX runs_runnable ON runs (queue, available_at) WHERE status IN ('pending', 'running');
CREATE INDEX runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

-- The step timeline: one row per step call that committed or failed.
CREATE TABLE step_events (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step        TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    error_kind  TEXT,
    message     TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL
);

CREATE INDEX step_events_by_run ON step_events (run_id, id);

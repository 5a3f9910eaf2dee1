-- acidic's engine tables (Postgres), in step with migrations/sqlite/0001_init.sql:
-- same tables, same meaning. Times are milliseconds since the Unix epoch.

-- Component bytes, content-addressed by SHA-256 (hex).
CREATE TABLE components (
    digest     TEXT PRIMARY KEY,
    bytes      BYTEA NOT NULL,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Registered workflow definitions. A changed manifest is a new version; runs
-- pin the version they started with.
CREATE TABLE workflows (
    name            TEXT NOT NULL,
    version         BIGINT NOT NULL,
    definition_hash TEXT NOT NULL,
    definition      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (name, version),
    UNIQUE (name, definition_hash)
);

-- One row per run: the idempotency-key record, and the queue.
CREATE TABLE runs (
    id                 BIGSERIAL PRIMARY KEY,
    workflow           TEXT NOT NULL,
    workflow_version   BIGINT NOT NULL,
    definition_hash    TEXT NOT NULL,
    idempotency_key    TEXT NOT NULL,
    args               TEXT NOT NULL,
    args_hash          TEXT NOT NULL,
    status             TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
    recovery_point     TEXT NOT NULL,
    attributes         TEXT NOT NULL,
    result             TEXT,
    response_code      BIGINT,
    response_body      TEXT,
    attempts           BIGINT NOT NULL DEFAULT 0,
    step_attempt       BIGINT NOT NULL DEFAULT 0,
    -- step_attempt when the current retry budget began (raised by a manual retry)
    step_attempt_base  BIGINT NOT NULL DEFAULT 0,
    last_error_step    TEXT,
    last_error_kind    TEXT,
    last_error_message TEXT,
    last_error_attempt BIGINT,
    locked_by          TEXT,
    locked_until       BIGINT,
    available_at       BIGINT NOT NULL,
    queue              TEXT NOT NULL DEFAULT 'default',
    parent_run_id      BIGINT REFERENCES runs (id) ON DELETE SET NULL,
    -- 1 if the parent's step waits for this run (fan-out / fan-in)
    awaited            BOOLEAN NOT NULL DEFAULT FALSE,
    -- while waiting: awaited children not yet succeeded, and where to go next
    pending_children   BIGINT NOT NULL DEFAULT 0,
    await_next         TEXT,
    cancelled_by       TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    last_run_at        BIGINT,
    finished_at        BIGINT,
    UNIQUE (workflow, idempotency_key)
)
-- Room on each page for HOT updates: a step commit that changes no indexed
-- column writes no index entry, so concurrent SERIALIZABLE commits rarely
-- share an index page and abort each other.
WITH (fillfactor = 70);

CREATE INDEX runs_by_key ON runs (idempotency_key);
CREATE INDEX runs_runnable ON runs (queue, available_at) WHERE status IN ('pending', 'running');
CREATE INDEX runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

-- The step timeline: one row per step call that committed or failed.
CREATE TABLE step_events (
    id          BIGSERIAL PRIMARY KEY,
    run_id      BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step        TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    error_kind  TEXT,
    message     TEXT,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL
);

CREATE INDEX step_events_by_run ON step_events (run_id, id);

-- Wakes idle workers (LISTEN "<schema>.runs") when a run becomes pending:
-- created, staged by a committed step, released, backed off, or resumed by its
-- last child. The notification is sent at commit, so a worker woken by it
-- always finds the run; Postgres folds identical notifications of one
-- transaction into one.
CREATE FUNCTION notify_runnable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.runs', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER runs_runnable_notify
    AFTER INSERT OR UPDATE OF status ON runs
    FOR EACH ROW WHEN (NEW.status = 'pending')
    EXECUTE FUNCTION notify_runnable();

//! Storage: the runs table (which is also the queue), workflow versions,
//! component bytes and the step timeline.
//!
//! - `backend.rs`: the contract every backend keeps, as a trait; [`Store`]
//!   picks a backend from the database URL and reaches it only through it.
//! - `sqlite.rs`, `postgres.rs`: the two backends (connection, dialect,
//!   guest SQL); `shared/`: their SQL, written once, one file per concept.
//! - `tx.rs`: the step transaction, the one place a step's effects commit.
//! - `retry.rs`: which errors a second try can clear, and its bounds.
//!
//! Every other method that writes is one transaction of its own, which
//! [`Store`] runs again when the database aborted it for a reason that a
//! second try can clear (a serialization failure, a deadlock, a busy SQLite
//! file, a dropped connection). Re-running is safe because an aborted
//! transaction wrote nothing, and a commit whose answer was lost is fenced:
//! the second try finds the lease or the recovery point moved. The only
//! transaction that lives longer is a step's own, for a step granted SQL:
//! it is open while the guest runs, and ends in `tx.rs`.

mod backend;
pub mod postgres;
mod retry;
pub mod sqlite;
mod sqlite_handle;

pub use retry::deterministic;
use retry::{Retry, Transient, transient, unique_violation};

use backend::Backend;

use std::time::Duration;

use crate::error::{Error, Result};
use crate::run::{
    FailureOutcome, FailureRecord, Lease, NewRun, ParentFailure, RunRecord, RunStatus,
    StartOutcome, StepEvent,
};
use crate::workflow::{Definition, Workflow};

/// What inserting a run by key found.
#[derive(Debug)]
pub enum InsertOutcome {
    /// A new run with this id.
    Created(i64),
    /// The key exists with the same args: this run.
    Existing(Box<RunRecord>),
    /// The key exists with other args.
    Mismatch,
}

/// Which runs a worker may claim.
#[derive(Debug, Clone, Default)]
pub struct Claim {
    /// Only runs on these queues; empty means every queue.
    pub queues: Vec<String>,
    /// How long an expired lease must have been expired before the run is
    /// taken over (and, with `abandoned_only`, how long a pending run must
    /// have been due).
    pub grace: std::time::Duration,
    /// Only runs whose caller gave up on them: due for longer than `grace`
    /// (the completer's pass).
    pub abandoned_only: bool,
}

/// What cancelling found.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// Cancelled this many runs (the run and its unfinished staged runs).
    Cancelled(u64),
    /// The run had already finished.
    AlreadyFinal(RunStatus),
    /// A worker is inside one of its steps: the request is recorded, and
    /// that worker cancels the run when the step ends.
    Requested {
        /// The lease's owner.
        locked_by: String,
        /// The step it is in.
        step: String,
    },
    /// The run changed while it was being cancelled (a step ended): try again.
    Raced,
}

/// A run staged by another, as a step reads it (`staging.children`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChildRun {
    /// Its workflow.
    pub workflow: String,
    /// Its idempotency key.
    pub key: String,
    /// Its status, as stored.
    pub status: String,
    /// Its result as JSON text, once it succeeded.
    pub result: Option<String>,
}

/// Which runs to list.
#[derive(Debug, Clone)]
pub struct RunFilter {
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs staged by this run.
    pub parent: Option<i64>,
    /// Only runs on this queue.
    pub queue: Option<String>,
    /// Only runs whose idempotency key starts with this (a caller's scope).
    pub key_prefix: Option<String>,
    /// Only runs older than the run with this id (the next page, newest first).
    pub before: Option<i64>,
    /// Only runs created at or after this time (ms since the epoch).
    pub created_from: Option<i64>,
    /// Only runs created before this time (ms since the epoch).
    pub created_until: Option<i64>,
    /// At most this many, newest first.
    pub limit: u32,
}

impl Default for RunFilter {
    fn default() -> Self {
        RunFilter {
            status: None,
            workflow: None,
            parent: None,
            queue: None,
            key_prefix: None,
            before: None,
            created_from: None,
            created_until: None,
            limit: 50,
        }
    }
}

/// One stored version of a workflow.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WorkflowVersion {
    /// Workflow name.
    pub name: String,
    /// Version number.
    pub version: u32,
    /// SHA-256 of the definition.
    pub definition_hash: String,
    /// Registered (ms since epoch).
    pub created_at: i64,
}

/// What pruning workflow versions deleted.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Pruned {
    /// The versions deleted, as (workflow, version).
    pub versions: Vec<(String, u32)>,
    /// The digests of the components deleted.
    pub components: Vec<String>,
}

/// The answer stored for a finished run, replayed byte for byte to every
/// caller that asks again with its key.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    /// HTTP status code.
    pub code: u16,
    /// Body.
    pub body: String,
}

/// What the runs show of the system's activity, for the dashboard.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Activity {
    /// Each lease holder (a worker, a server or a CLI run): runs it holds,
    /// and when its latest lease ends (ms).
    pub leases: Vec<(String, i64, i64)>,
    /// Runs finished per minute (ms of the minute's start) by final status.
    pub finished: Vec<(i64, String, i64)>,
    /// Runs per workflow and version.
    pub per_version: Vec<(String, u32, i64)>,
}

/// How many runs stand in one (workflow, queue, status), for metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct RunCount {
    /// Workflow.
    pub workflow: String,
    /// Queue.
    pub queue: String,
    /// Status.
    pub status: String,
    /// Runs.
    pub count: i64,
    /// For pending runs: the earliest `available_at` (ms) among those due now.
    pub oldest_due: Option<i64>,
}

/// A database the host stores its state in.
#[derive(Debug, Clone)]
pub enum Store {
    /// An embedded SQLite file.
    Sqlite(sqlite::SqliteStore),
    /// A Postgres database, shared by many processes.
    Postgres(postgres::PostgresStore),
}

/// Calls the backend's method, again after a jittered pause while the error
/// is one a retry can clear (see [`Retry`]).
macro_rules! forward {
    ($self:ident, $s:ident => $call:expr) => {{
        let mut retry = $crate::store::Retry::default();
        loop {
            let result = match $self {
                Store::Sqlite($s) => $call,
                Store::Postgres($s) => $call,
            };
            match result {
                Err(e) => match retry.pause_after(&e) {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => break Err(retry.give_up(e)),
                },
                ok => break ok,
            }
        }
    }};
}

// After `forward!`, which it uses.
mod tx;
pub use tx::StepTx;

/// Pool size when the caller does not say.
pub const DEFAULT_POOL_SIZE: u32 = 10;

impl Store {
    /// Opens the database at `url` (a file path, `sqlite://...` or
    /// `postgres://...[?schema=NAME]`) and applies migrations.
    pub async fn open(url: &str) -> Result<Store> {
        Store::connect(url, DEFAULT_POOL_SIZE).await
    }

    /// [`Store::open`] with a pool of at most `max_connections` (Postgres;
    /// SQLite has one writer whatever the pool).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        Store::connect_with(url, max_connections, true).await
    }

    /// [`Store::connect`]; unless `create`, a SQLite file that does not
    /// exist is [`Error::NoDatabase`] rather than a new, empty database.
    pub async fn connect_with(url: &str, max_connections: u32, create: bool) -> Result<Store> {
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            return Ok(Store::Postgres(
                postgres::PostgresStore::open(url, max_connections).await?,
            ));
        }
        if url.contains("://") && !url.starts_with("sqlite:") {
            return Err(Error::DatabaseUrl(redacted_url(url)));
        }
        Ok(Store::Sqlite(sqlite::SqliteStore::open(url, create).await?))
    }

    /// The only schema a step's SQL may name: `main` on SQLite, the
    /// application schema on Postgres.
    pub fn app_schema(&self) -> &str {
        match self {
            Store::Sqlite(_) => "main",
            Store::Postgres(s) => s.app_schema(),
        }
    }

    /// The SQL dialect guest statements are checked in.
    pub fn dialect(&self) -> crate::sql::Dialects {
        match self {
            Store::Sqlite(_) => crate::sql::Dialects::Sqlite,
            Store::Postgres(_) => crate::sql::Dialects::Postgres,
        }
    }

    /// Closes every connection once the ones in use are given back.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Something to wait on for "a run may have become runnable", where the
    /// backend can tell (Postgres `LISTEN`); `None` means poll.
    pub async fn wakeups(&self) -> Result<Option<Wakeups>> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(s) => Ok(Some(Wakeups {
                listener: s.listen().await?,
            })),
        }
    }

    /// The writes of one run of a workflow with `steps`, as bare SQL
    /// transactions of this backend: the baseline of `acidic bench`.
    pub async fn baseline_run(&self, workflow: &str, key: &str, steps: &[String]) -> Result<()> {
        forward!(self, s => Backend::baseline_run(s, workflow, key, steps).await)
    }

    /// Stores component bytes under their digest.
    pub async fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        forward!(self, s => Backend::put_component(s, digest, bytes).await)
    }

    /// The component with `digest`.
    pub async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        forward!(self, s => Backend::component(s, digest).await)
    }

    /// Stores a definition as a new version unless identical to a stored one.
    pub async fn register_workflow(&self, definition: &Definition) -> Result<(u32, bool)> {
        forward!(self, s => Backend::register_workflow(s, definition).await)
    }

    /// A version of a workflow, or its latest.
    pub async fn workflow(&self, name: &str, version: Option<u32>) -> Result<Option<Workflow>> {
        forward!(self, s => Backend::workflow(s, name, version).await)
    }

    /// Finds or creates the run for a key and leases it.
    pub async fn start_run(&self, new: &NewRun, lease: &Lease) -> Result<StartOutcome> {
        forward!(self, s => Backend::start_run(s, new, lease).await)
    }

    /// Leases an existing run.
    pub async fn claim(&self, id: i64, lease: &Lease) -> Result<StartOutcome> {
        forward!(self, s => Backend::claim(s, id, lease).await)
    }

    /// Creates a pending run unless its key exists.
    pub async fn insert_run(&self, new: &NewRun) -> Result<InsertOutcome> {
        forward!(self, s => Backend::insert_run(s, new).await)
    }

    /// Records a failed step call and releases the lease.
    pub async fn record_failure(&self, failure: &FailureRecord) -> Result<FailureOutcome> {
        forward!(self, s => Backend::record_failure(s, failure).await)
    }

    /// Releases a lease without recording anything.
    pub async fn release(&self, id: i64, lease: &Lease) -> Result<()> {
        forward!(self, s => Backend::release(s, id, lease).await)
    }

    /// Puts a failed run back to pending (on version `upgrade` of its
    /// workflow, if given).
    pub async fn reset_for_retry(
        &self,
        id: i64,
        upgrade: Option<&WorkflowVersion>,
    ) -> Result<bool> {
        forward!(self, s => Backend::reset_for_retry(s, id, upgrade).await)
    }

    /// One run by id.
    pub async fn run(&self, id: i64) -> Result<Option<RunRecord>> {
        forward!(self, s => Backend::run(s, id).await)
    }

    /// Runs by key.
    pub async fn runs_by_key(&self, key: &str, workflow: Option<&str>) -> Result<Vec<RunRecord>> {
        forward!(self, s => Backend::runs_by_key(s, key, workflow).await)
    }

    /// Claims up to `limit` runnable runs, each under a fresh lease of `worker` for `ttl`.
    pub async fn claim_batch(
        &self,
        claim: &Claim,
        worker: &str,
        ttl: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<(RunRecord, Lease)>> {
        forward!(self, s => Backend::claim_batch(s, claim, worker, ttl, limit).await)
    }

    /// Extends a held lease.
    pub async fn extend_lease(&self, id: i64, lease: &Lease) -> Result<bool> {
        forward!(self, s => Backend::extend_lease(s, id, lease).await)
    }

    /// Cancels a run and its unfinished staged runs; a run inside a step
    /// of a lease other than `held` gets a cancel request instead.
    pub async fn cancel(
        &self,
        id: i64,
        by: &str,
        parent: Option<&ParentFailure>,
        held: Option<&Lease>,
    ) -> Result<CancelOutcome> {
        forward!(self, s => Backend::cancel(s, id, by, parent, held).await)
    }

    /// Deletes finished runs older than `cutoff` (ms), at most `batch`.
    pub async fn reap(&self, cutoff: i64, batch: u32) -> Result<u64> {
        forward!(self, s => Backend::reap(s, cutoff, batch).await)
    }

    /// Runs matching a filter.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        forward!(self, s => Backend::list_runs(s, filter).await)
    }

    /// The runs `parent` staged, as a step reads them, while they fit in
    /// `max_bytes`; `None` once they do not.
    pub async fn children(&self, parent: i64, max_bytes: usize) -> Result<Option<Vec<ChildRun>>> {
        forward!(self, s => Backend::children(s, parent, max_bytes).await)
    }

    /// A run's step timeline.
    pub async fn step_events(&self, id: i64) -> Result<Vec<StepEvent>> {
        forward!(self, s => Backend::step_events(s, id).await)
    }

    /// Deletes unused, superseded workflow versions and the components no
    /// version names (see the backends' `prune_workflows`).
    pub async fn prune_workflows(&self, grace: std::time::Duration) -> Result<Pruned> {
        forward!(self, s => Backend::prune_workflows(s, grace).await)
    }

    /// Every version of workflow `name` (all workflows' if `None`), by name then version.
    pub async fn workflow_versions(&self, name: Option<&str>) -> Result<Vec<WorkflowVersion>> {
        forward!(self, s => Backend::workflow_versions(s, name).await)
    }

    /// The answer stored for finished run `id`, storing `make()`'s first if
    /// none is: every later caller gets the same bytes. `None` if the run is
    /// not finished (or gone).
    pub async fn response(
        &self,
        id: i64,
        make: impl Fn(&RunRecord) -> StoredResponse + Sync,
    ) -> Result<Option<StoredResponse>> {
        forward!(self, s => Backend::response(s, id, &make).await)
    }

    /// Whether a pending run in `queues` (all, if empty) waits out the
    /// backoff of a failed attempt.
    pub async fn retries_waiting(&self, queues: &[String]) -> Result<bool> {
        forward!(self, s => Backend::retries_waiting(s, queues).await)
    }

    /// How many runs match `filter` (its status, cursor and limit aside),
    /// per status.
    pub async fn count_runs(&self, filter: &RunFilter) -> Result<Vec<(String, i64)>> {
        forward!(self, s => Backend::count_runs(s, filter).await)
    }

    /// The answer stored for run `id`, if one is; stores nothing.
    pub async fn stored_response(&self, id: i64) -> Result<Option<StoredResponse>> {
        forward!(self, s => Backend::stored_response(s, id).await)
    }

    /// Runs by workflow, queue and status, with the oldest due pending run.
    pub async fn run_counts(&self) -> Result<Vec<RunCount>> {
        forward!(self, s => Backend::run_counts(s).await)
    }

    /// What the runs show of the system's activity since `since` (ms).
    pub async fn activity(&self, since: i64) -> Result<Activity> {
        forward!(self, s => Backend::activity(s, since).await)
    }

    /// True if the database answers.
    pub async fn ping(&self) -> Result<()> {
        forward!(self, s => Backend::ping(s).await)
    }
}

/// A value of guest SQL: bound to a parameter or read from a column.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// NULL.
    Null,
    /// A whole number (booleans read as 0 or 1).
    Integer(i64),
    /// A floating-point number.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
    /// JSON text.
    Json(String),
}

impl SqlValue {
    /// The variant's name, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            SqlValue::Null => "null",
            SqlValue::Integer(_) => "integer",
            SqlValue::Real(_) => "real",
            SqlValue::Text(_) => "text",
            SqlValue::Blob(_) => "blob",
            SqlValue::Json(_) => "json",
        }
    }
}

/// What a guest query returned.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlRows {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of values, in column order.
    pub rows: Vec<Vec<SqlValue>>,
}

impl SqlRows {
    /// About how many bytes the rows take in memory.
    pub fn size(&self) -> usize {
        let columns: usize = self.columns.iter().map(|c| c.len() + 24).sum();
        columns
            + self
                .rows
                .iter()
                .map(|r| 24 + r.iter().map(SqlValue::size).sum::<usize>())
                .sum::<usize>()
    }
}

impl SqlValue {
    /// About how many bytes the value takes in memory.
    pub fn size(&self) -> usize {
        32 + match self {
            SqlValue::Text(t) | SqlValue::Json(t) => t.len(),
            SqlValue::Blob(b) => b.len(),
            _ => 0,
        }
    }
}

/// The bounds one guest statement runs within: it is cut off at the step's
/// deadline, and its rows may not take more than what is left of the step's
/// memory budget.
#[derive(Debug, Clone, Copy)]
pub struct GuestLimits {
    /// When the step's time is up.
    pub deadline: std::time::Instant,
    /// Bytes the rows may take.
    pub max_bytes: usize,
}

impl GuestLimits {
    /// Time left, at least 1 ms (a bound of zero means "none" to the databases).
    pub fn time_left(&self) -> Duration {
        self.deadline
            .saturating_duration_since(std::time::Instant::now())
            .max(Duration::from_millis(1))
    }
}

/// Notifications that runs became pending (Postgres `LISTEN`).
pub struct Wakeups {
    listener: sqlx::postgres::PgListener,
}

impl std::fmt::Debug for Wakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wakeups")
    }
}

impl Wakeups {
    /// Waits for the next notification. After a lost connection it
    /// reconnects (notifications in between are lost: callers also poll).
    pub async fn next(&mut self) -> Result<()> {
        self.listener.recv().await?;
        Ok(())
    }
}

/// `url` with any password in it replaced by `***`, for messages (a
/// password may hold `@`: the host starts after the last one).
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{postgres, sqlite};

    #[test]
    fn a_password_in_a_url_is_never_shown() {
        for (url, shown) in [
            ("postgres://u:s3cret@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u:p@ss@h:5432/db?schema=x",
                "postgres://u:***@h:5432/db?schema=x",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("acidic.db", "acidic.db"),
            ("sqlite:///tmp/a@b.db", "sqlite:///tmp/a@b.db"),
        ] {
            assert_eq!(super::redacted_url(url), shown);
        }
    }

    /// Every file in `migrations/<backend>/` is compiled in, and the two
    /// backends' migrations are numbered and named alike.
    #[test]
    fn migrations_are_listed_and_in_step_across_backends() {
        let names = |list: &[(i64, &str, &str)]| -> Vec<String> {
            list.iter()
                .map(|(v, name, _)| format!("{v:04}_{name}.sql"))
                .collect()
        };
        for (backend, listed) in [
            ("sqlite", names(sqlite::MIGRATIONS)),
            ("postgres", names(postgres::MIGRATIONS)),
        ] {
            let dir = format!("{}/../migrations/{backend}", env!("CARGO_MANIFEST_DIR"));
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            assert_eq!(files, listed, "{dir} and its MIGRATIONS disagree");
        }
        assert_eq!(names(sqlite::MIGRATIONS), names(postgres::MIGRATIONS));
    }
}

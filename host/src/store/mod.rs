//! Storage: the runs table (which is also the queue), workflow versions,
//! component bytes and the step timeline.
//!
//! Each backend is its own module with the same methods; [`Store`] picks one
//! from the database URL and forwards to it. The executor never sees a
//! transaction: every method that writes is one transaction of its own.

pub mod sqlite;

use crate::error::{Error, Result};
use crate::run::{
    CommitOutcome, FailureRecord, Lease, NewRun, ParentFailure, RunRecord, RunStatus, StartOutcome,
    StepCommit, StepEvent,
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
    /// A worker is inside one of its steps.
    Locked {
        /// Owner.
        locked_by: String,
        /// Remaining ms.
        remaining_ms: i64,
    },
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
    /// At most this many, newest first.
    pub limit: u32,
}

impl Default for RunFilter {
    fn default() -> Self {
        RunFilter {
            status: None,
            workflow: None,
            parent: None,
            limit: 50,
        }
    }
}

/// A database the host stores its state in.
#[derive(Debug, Clone)]
pub enum Store {
    /// An embedded SQLite file.
    Sqlite(sqlite::SqliteStore),
}

macro_rules! forward {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Sqlite($s) => $call,
        }
    };
}

impl Store {
    /// Opens the database at `url` (a file path or `sqlite://...`) and applies migrations.
    pub async fn open(url: &str) -> Result<Store> {
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            return Err(Error::DatabaseUrl(format!(
                "{url} (Postgres is not supported by this build yet)"
            )));
        }
        if url.contains("://") && !url.starts_with("sqlite:") {
            return Err(Error::DatabaseUrl(url.to_string()));
        }
        Ok(Store::Sqlite(sqlite::SqliteStore::open(url).await?))
    }

    /// Stores component bytes under their digest.
    pub async fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        forward!(self, s => s.put_component(digest, bytes).await)
    }

    /// The component with `digest`.
    pub async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        forward!(self, s => s.component(digest).await)
    }

    /// Stores a definition as a new version unless identical to a stored one.
    pub async fn register_workflow(&self, definition: &Definition) -> Result<(u32, bool)> {
        forward!(self, s => s.register_workflow(definition).await)
    }

    /// A version of a workflow, or its latest.
    pub async fn workflow(&self, name: &str, version: Option<u32>) -> Result<Option<Workflow>> {
        forward!(self, s => s.workflow(name, version).await)
    }

    /// Finds or creates the run for a key and leases it.
    pub async fn start_run(&self, new: &NewRun, lease: &Lease) -> Result<StartOutcome> {
        forward!(self, s => s.start_run(new, lease).await)
    }

    /// Leases an existing run.
    pub async fn claim(&self, id: i64, lease: &Lease) -> Result<StartOutcome> {
        forward!(self, s => s.claim(id, lease).await)
    }

    /// Creates a pending run unless its key exists.
    pub async fn insert_run(&self, new: &NewRun) -> Result<InsertOutcome> {
        forward!(self, s => s.insert_run(new).await)
    }

    /// Commits a step, fenced on its lease.
    pub async fn commit_step(&self, commit: &StepCommit) -> Result<CommitOutcome> {
        forward!(self, s => s.commit_step(commit).await)
    }

    /// Records a failed step call and releases the lease.
    pub async fn record_failure(&self, failure: &FailureRecord) -> Result<bool> {
        forward!(self, s => s.record_failure(failure).await)
    }

    /// Releases a lease without recording anything.
    pub async fn release(&self, id: i64, lease: &Lease) -> Result<()> {
        forward!(self, s => s.release(id, lease).await)
    }

    /// Puts a failed run back to pending.
    pub async fn reset_for_retry(&self, id: i64) -> Result<bool> {
        forward!(self, s => s.reset_for_retry(id).await)
    }

    /// One run by id.
    pub async fn run(&self, id: i64) -> Result<Option<RunRecord>> {
        forward!(self, s => s.run(id).await)
    }

    /// Runs by key.
    pub async fn runs_by_key(&self, key: &str, workflow: Option<&str>) -> Result<Vec<RunRecord>> {
        forward!(self, s => s.runs_by_key(key, workflow).await)
    }

    /// Claims up to `limit` runnable runs, each under a fresh lease of `worker` for `ttl`.
    pub async fn claim_batch(
        &self,
        claim: &Claim,
        worker: &str,
        ttl: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<(RunRecord, Lease)>> {
        forward!(self, s => s.claim_batch(claim, worker, ttl, limit).await)
    }

    /// Extends a held lease.
    pub async fn extend_lease(&self, id: i64, lease: &Lease) -> Result<bool> {
        forward!(self, s => s.extend_lease(id, lease).await)
    }

    /// Cancels a run and its unfinished staged runs.
    pub async fn cancel(
        &self,
        id: i64,
        by: &str,
        parent: Option<&ParentFailure>,
    ) -> Result<CancelOutcome> {
        forward!(self, s => s.cancel(id, by, parent).await)
    }

    /// Deletes finished runs older than `cutoff` (ms), at most `batch`.
    pub async fn reap(&self, cutoff: i64, batch: u32) -> Result<u64> {
        forward!(self, s => s.reap(cutoff, batch).await)
    }

    /// Runs matching a filter.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        forward!(self, s => s.list_runs(filter).await)
    }

    /// A run's step timeline.
    pub async fn step_events(&self, id: i64) -> Result<Vec<StepEvent>> {
        forward!(self, s => s.step_events(id).await)
    }
}

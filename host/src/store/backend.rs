//! The contract every storage backend keeps, as a trait the compiler
//! checks: `Store` (in `mod.rs`) reaches a backend only through it, and
//! `shared/contract.rs` implements it for each backend over the SQL written
//! once in `shared/`. A new backend implements these methods (or includes
//! the shared SQL, if its dialect accepts it) and nothing else.
//!
//! Every method that writes is one transaction of its own; `Store` runs it
//! again when the database aborted it for a reason a second try can clear
//! (a serialization failure, a deadlock, a busy SQLite file, a dropped
//! connection). That is safe because an aborted transaction wrote nothing,
//! and a commit whose answer was lost is fenced: the second try finds the
//! lease or the recovery point moved.

use std::time::Duration;

use super::{
    Activity, CancelOutcome, ChildRun, Claim, InsertOutcome, RunCount, RunFilter, StoredResponse,
    WorkflowVersion,
};
use crate::error::Result;
use crate::run::{
    CommitOutcome, FailureOutcome, FailureRecord, Lease, NewRun, ParentFailure, RunRecord,
    StartOutcome, StepCommit, StepEvent,
};
use crate::workflow::{Definition, Workflow};

/// What a backend does for [`super::Store`].
pub(crate) trait Backend {
    /// Stores component bytes under their digest (a no-op if present).
    async fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<()>;

    /// The bytes of the component with `digest`.
    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>>;

    /// Stores `definition` as a new version unless an identical one exists.
    /// Returns the version and whether it is new.
    async fn register_workflow(&self, definition: &Definition) -> Result<(u32, bool)>;

    /// Version `version` of workflow `name`, or its latest version.
    async fn workflow(&self, name: &str, version: Option<u32>) -> Result<Option<Workflow>>;

    /// Finds the run of `new.workflow` with `new.key`, creating it if absent,
    /// and leases it to `lease` unless it is final, locked, or has other args.
    async fn start_run(&self, new: &NewRun, lease: &Lease) -> Result<StartOutcome>;

    /// Leases run `id` to `lease` unless it is final or locked.
    async fn claim(&self, id: i64, lease: &Lease) -> Result<StartOutcome>;

    /// Claims up to `limit` runnable runs, each under a fresh lease of
    /// `worker` for `ttl`: pending runs that are due, and running ones whose
    /// lease expired more than `claim.grace` ago (their worker died).
    async fn claim_batch(
        &self,
        claim: &Claim,
        worker: &str,
        ttl: Duration,
        limit: u32,
    ) -> Result<Vec<(RunRecord, Lease)>>;

    /// Extends `lease` on run `id` to `lease.ttl` from now. Returns false if it is no longer held.
    async fn extend_lease(&self, id: i64, lease: &Lease) -> Result<bool>;

    /// Cancels run `id` and every unfinished run it staged, recursively,
    /// recording `by`. A run inside a step (a live lease other than `held`)
    /// gets a cancel request instead, which its worker carries out.
    async fn cancel(
        &self,
        id: i64,
        by: &str,
        parent: Option<&ParentFailure>,
        held: Option<&Lease>,
    ) -> Result<CancelOutcome>;

    /// Deletes up to `batch` finished runs that finished before `cutoff` (ms
    /// since epoch), with their timelines. Unfinished runs are never touched.
    async fn reap(&self, cutoff: i64, batch: u32) -> Result<u64>;

    /// Creates a pending run unless its key exists.
    async fn insert_run(&self, new: &NewRun) -> Result<InsertOutcome>;

    /// Gives up a lease without recording anything: the run is pending again at once.
    async fn release(&self, id: i64, lease: &Lease) -> Result<()>;

    /// Makes a failed or pending run runnable now. A failed run also gets a
    /// fresh budget of attempts for its current step (attempt numbers keep
    /// counting); a pending one keeps its budget, so a retry is not a way
    /// around the policy. With `upgrade`, the run moves to that version of
    /// its workflow in the same statement. Returns false if the run is in
    /// another state or leased.
    async fn reset_for_retry(&self, id: i64, upgrade: Option<&WorkflowVersion>) -> Result<bool>;

    /// The run with `id`.
    async fn run(&self, id: i64) -> Result<Option<RunRecord>>;

    /// Lease holders, runs finished per minute since `since` (ms), and runs
    /// per workflow version.
    async fn activity(&self, since: i64) -> Result<Activity>;

    /// The runs with idempotency key `key`, of `workflow` if given.
    async fn runs_by_key(&self, key: &str, workflow: Option<&str>) -> Result<Vec<RunRecord>>;

    /// Runs matching `filter`, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;

    /// How many runs match `filter` (its status, cursor and limit aside),
    /// per status.
    async fn count_runs(&self, filter: &RunFilter) -> Result<Vec<(String, i64)>>;

    /// The answer stored for run `id`, if one is; stores nothing.
    async fn stored_response(&self, id: i64) -> Result<Option<StoredResponse>>;

    /// The runs `parent` staged, as a step reads them, while they fit in
    /// `max_bytes`; `None` once they do not.
    async fn children(&self, parent: i64, max_bytes: usize) -> Result<Option<Vec<ChildRun>>>;

    /// The step timeline of run `id`, oldest first.
    async fn step_events(&self, id: i64) -> Result<Vec<StepEvent>>;

    /// Every version of workflow `name` (of all workflows if `None`), by
    /// name, then version.
    async fn workflow_versions(&self, name: Option<&str>) -> Result<Vec<WorkflowVersion>>;

    /// The answer stored for finished run `id`; if none is stored yet,
    /// stores `make(run)` unless another caller stored one first, and
    /// returns what is stored. `None` while the run is not finished.
    async fn response(
        &self,
        id: i64,
        make: &(dyn Fn(&RunRecord) -> StoredResponse + Sync),
    ) -> Result<Option<StoredResponse>>;

    /// Whether a pending run in `queues` (all, if empty) waits out the
    /// backoff of a failed attempt.
    async fn retries_waiting(&self, queues: &[String]) -> Result<bool>;

    /// Runs counted by workflow, queue and status.
    async fn run_counts(&self) -> Result<Vec<RunCount>>;

    /// A round trip to the database.
    async fn ping(&self) -> Result<()>;

    /// Commits a step: attributes, staged runs, timeline entry and the new
    /// recovery point, in one transaction fenced on the lease. If the step
    /// staged awaited runs that have not all succeeded, the run waits for them
    /// at this step instead of moving on.
    async fn commit_step(&self, c: &StepCommit) -> Result<CommitOutcome>;

    /// Records a failed step call and releases the lease; if the run failed
    /// for good and a waiting parent awaits it, fails the parent's step too.
    /// Writes nothing if the caller no longer holds the lease.
    async fn record_failure(&self, f: &FailureRecord) -> Result<FailureOutcome>;

    /// Deletes the workflow versions no run uses that are not their
    /// workflow's latest (and were superseded more than `grace` ago), then
    /// the components (stored more than `grace` ago) no version names.
    async fn prune_workflows(&self, grace: std::time::Duration) -> Result<super::Pruned>;

    /// The writes acidic makes for one run of a workflow with `steps`, as
    /// bare transactions of this backend (the baseline of `acidic bench`):
    /// create the run row, then per step one transaction that moves the
    /// recovery point, fenced like a real commit, and appends a timeline row.
    async fn baseline_run(&self, workflow: &str, key: &str, steps: &[String]) -> Result<()>;
}

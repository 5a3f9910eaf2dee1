//! Runs and what happens to them: the concepts the store persists and the
//! executor moves along. No I/O here.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Runnable (now or at `available_at`), not leased.
    Pending,
    /// Leased by a worker that is running its steps.
    Running,
    /// Waiting for child runs.
    Waiting,
    /// Finished with a result.
    Succeeded,
    /// Failed for good: out of attempts, or a non-retryable error.
    Failed,
    /// Stopped by a person.
    Cancelled,
}

impl RunStatus {
    /// The name stored in the database and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// True once nothing more will happen to the run without a person.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pending" => RunStatus::Pending,
            "running" => RunStatus::Running,
            "waiting" => RunStatus::Waiting,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            other => return Err(format!("unknown run status `{other}`")),
        })
    }
}

/// Why a step call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The step returned an error.
    Guest,
    /// The guest trapped (a panic, an unreachable, a bad memory access).
    Trap,
    /// The call ran past its deadline.
    Timeout,
    /// The guest tried to grow its memory past the cap.
    MemoryLimit,
    /// The guest's answer was malformed (a result that is not JSON, a bad staged job).
    InvalidOutput,
    /// The component could not be instantiated.
    Instantiate,
    /// The step's commit kept colliding with concurrent transactions
    /// (serialization failures, deadlocks) past the store's retries.
    Conflict,
    /// The guest burned its fuel (its instruction budget).
    FuelExhausted,
    /// The run's args are larger than the step accepts.
    InputTooLarge,
    /// A result, attribute value or staged run's args is larger than the step may produce.
    OutputTooLarge,
    /// The step failed after asking for something its manifest does not
    /// grant (an HTTP request to a host not in `allowed_outbound_hosts`, SQL
    /// without a `sql` grant).
    CapabilityDenied,
    /// The step failed after a SQL statement of a forbidden form was refused.
    SqlRefused,
    /// The step failed after the database rejected one of its SQL statements.
    SqlError,
    /// The database refused the step's commit (a value it cannot store, a
    /// constraint); nothing of the step was committed.
    CommitRefused,
    /// The host itself failed while serving the step (a bug reached by the
    /// step's input); nothing of the step was committed, the process lives on.
    HostError,
    /// A run the step awaited failed for good (recorded on the parent).
    ChildFailed,
    /// A run the step awaited was cancelled (recorded on the parent).
    ChildCancelled,
}

impl ErrorKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Guest => "guest",
            ErrorKind::Trap => "trap",
            ErrorKind::Timeout => "timeout",
            ErrorKind::MemoryLimit => "memory_limit",
            ErrorKind::InvalidOutput => "invalid_output",
            ErrorKind::Instantiate => "instantiate",
            ErrorKind::Conflict => "conflict",
            ErrorKind::FuelExhausted => "fuel_exhausted",
            ErrorKind::InputTooLarge => "input_too_large",
            ErrorKind::OutputTooLarge => "output_too_large",
            ErrorKind::CapabilityDenied => "capability_denied",
            ErrorKind::SqlRefused => "sql_refused",
            ErrorKind::SqlError => "sql_error",
            ErrorKind::CommitRefused => "commit_refused",
            ErrorKind::HostError => "host_error",
            ErrorKind::ChildFailed => "child_failed",
            ErrorKind::ChildCancelled => "child_cancelled",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a step call did, as its timeline entry records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// It committed and the run moved to the next step.
    Committed,
    /// It committed and asked to run again.
    Repeated,
    /// It committed and the run finished.
    Finished,
    /// It committed and now waits for the runs it awaits.
    Awaiting,
    /// The runs it awaited all succeeded (recorded when the last one does).
    ChildrenDone,
    /// It failed; nothing of it was committed.
    Failed,
}

impl StepOutcome {
    /// The name stored in the timeline.
    pub fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Committed => "committed",
            StepOutcome::Repeated => "repeated",
            StepOutcome::Finished => "finished",
            StepOutcome::Awaiting => "awaiting",
            StepOutcome::ChildrenDone => "children_done",
            StepOutcome::Failed => "failed",
        }
    }
}

/// A failed step call, as recorded on the run.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StepFailure {
    /// The step.
    pub step: String,
    /// What kind of failure.
    pub kind: String,
    /// The message.
    pub message: String,
    /// Which attempt of the step failed.
    pub attempt: u32,
}

/// A run as stored.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Numeric id.
    pub id: i64,
    /// Workflow name.
    pub workflow: String,
    /// Pinned workflow version.
    pub workflow_version: u32,
    /// Hash of the pinned definition.
    pub definition_hash: String,
    /// Idempotency key.
    pub key: String,
    /// Arguments.
    pub args: Value,
    /// SHA-256 of the canonical args.
    pub args_hash: String,
    /// Status.
    pub status: RunStatus,
    /// The next step to run, or `finished`.
    pub recovery_point: String,
    /// Persisted attributes.
    pub attributes: Map<String, Value>,
    /// The result, once succeeded.
    pub result: Option<Value>,
    /// Step calls so far, all steps.
    pub attempts: u32,
    /// Failed calls of the current step so far.
    pub step_attempt: u32,
    /// `step_attempt` when the current retry budget began (a manual retry raises it).
    pub step_attempt_base: u32,
    /// The last failure.
    pub last_error: Option<StepFailure>,
    /// Lease owner.
    pub locked_by: Option<String>,
    /// Lease expiry (ms since epoch).
    pub locked_until: Option<i64>,
    /// Earliest time a worker may run it (ms since epoch).
    pub available_at: i64,
    /// Queue name.
    pub queue: String,
    /// The run that staged this one.
    pub parent_run_id: Option<i64>,
    /// How many runs stand above it in the chain that staged it (0: none).
    pub depth: u32,
    /// The HTTP status its committed steps set for its answer, if any.
    pub http_status: Option<u16>,
    /// The HTTP status the step that failed it for good set, if any.
    pub failure_http_status: Option<u16>,
    /// Who cancelled it, if cancelled.
    pub cancelled_by: Option<String>,
    /// Who asked to cancel it while it was inside a step: the worker
    /// holding its lease cancels it at the next step boundary.
    pub cancel_requested_by: Option<String>,
    /// Whether its parent's step waits for it.
    pub awaited: bool,
    /// While waiting: awaited children not yet succeeded.
    pub pending_children: u32,
    /// While waiting: the recovery point to move to once the children succeed.
    pub await_next: Option<String>,
    /// Created (ms).
    pub created_at: i64,
    /// Last changed (ms).
    pub updated_at: i64,
    /// Last claimed (ms).
    pub last_run_at: Option<i64>,
    /// Finished (ms).
    pub finished_at: Option<i64>,
}

/// One entry of a run's step timeline.
#[derive(Debug, Clone, Serialize)]
pub struct StepEvent {
    /// The step.
    pub step: String,
    /// Its attempt.
    pub attempt: u32,
    /// What the call did: a [`StepOutcome`]'s name (`committed`, `repeated`,
    /// `finished`, `awaiting`, `children_done` or `failed`).
    pub outcome: String,
    /// For failures, the kind.
    pub error_kind: Option<String>,
    /// For failures, the message.
    pub message: Option<String>,
    /// Call start (ms).
    pub started_at: i64,
    /// Commit or failure (ms).
    pub finished_at: i64,
    /// What the call logged: its log lines, stdout and stderr, oldest first.
    pub logs: Vec<LogLine>,
}

/// One line a step logged.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn`, `error`, or `stdout` / `stderr` for what it printed.
    pub level: String,
    /// The line.
    pub message: String,
}

/// A run to create: by `run`, `enqueue`, or a step's staging.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Workflow name.
    pub workflow: String,
    /// Workflow version to pin.
    pub workflow_version: u32,
    /// Hash of that definition.
    pub definition_hash: String,
    /// First step.
    pub first_step: String,
    /// Initial attributes.
    pub attributes: Map<String, Value>,
    /// Idempotency key.
    pub key: String,
    /// Arguments.
    pub args: Value,
    /// Delay before it may run.
    pub delay: Duration,
    /// Queue.
    pub queue: String,
    /// Parent run, for staged runs.
    pub parent_run_id: Option<i64>,
    /// How many runs stand above it in the chain that staged it (0: none).
    pub depth: u32,
    /// Whether the parent's step waits for this run.
    pub awaited: bool,
}

impl NewRun {
    /// The same run on `workflow` (a version of its workflow): the version,
    /// its hash, its first step and its initial attributes.
    pub fn on_version(self, workflow: &crate::workflow::Workflow) -> NewRun {
        NewRun {
            workflow_version: workflow.version,
            definition_hash: workflow.hash.clone(),
            first_step: workflow.definition.first_step().to_string(),
            attributes: workflow.definition.attributes.clone(),
            ..self
        }
    }
}

/// A worker's claim on a run. The owner string is unique per claim, so a
/// takeover by anyone (even the same process) fences out the old holder.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Unique owner token.
    pub owner: String,
    /// How long a claim lasts without renewal.
    pub ttl: Duration,
}

impl Lease {
    /// A fresh lease token for `worker`.
    pub fn new(worker: &str, ttl: Duration) -> Lease {
        Lease {
            owner: format!("{worker}/{:08x}", fastrand::u32(..)),
            ttl,
        }
    }
}

/// How a step call ended, as the executor commits it.
#[derive(Debug, Clone, PartialEq)]
pub enum StepEnd {
    /// Move the recovery point to this step (or `finished` with the result).
    Advance {
        /// Next recovery point.
        next: String,
        /// Result when `next` is `finished`.
        result: Option<Value>,
    },
    /// Stay at the same step.
    Repeat,
}

/// Everything one successful step commits, in one transaction.
#[derive(Debug, Clone)]
pub struct StepCommit {
    /// The run.
    pub run_id: i64,
    /// The lease under which the step ran: the commit is fenced on it.
    pub lease: Lease,
    /// The step that ran (the expected recovery point).
    pub step: String,
    /// Its attempt.
    pub attempt: u32,
    /// What happens next.
    pub end: StepEnd,
    /// The attributes after the step.
    pub attributes: Map<String, Value>,
    /// Runs staged by the step.
    pub staged: Vec<NewRun>,
    /// Call start (ms).
    pub started_at: i64,
    /// What the call logged, as stored (JSON), if anything.
    pub logs: Option<String>,
    /// The HTTP status the step set for its run's answer, if any.
    pub http_status: Option<u16>,
}

/// A failed step call, as the executor records it.
#[derive(Debug, Clone)]
pub struct FailureRecord {
    /// The run.
    pub run_id: i64,
    /// The lease under which the step ran.
    pub lease: Lease,
    /// The failure.
    pub failure: StepFailure,
    /// `Some(delay)`: retry after it; `None`: the run fails.
    pub retry_in: Option<Duration>,
    /// Call start (ms).
    pub started_at: i64,
    /// When the run fails for good and a waiting parent awaits it: how the
    /// parent's awaiting step fails, in the same transaction.
    pub parent: Option<ParentFailure>,
    /// What the call logged, as stored (JSON), if anything.
    pub logs: Option<String>,
    /// The HTTP status the step set for its run's answer, if any.
    pub http_status: Option<u16>,
    /// Whether the failure counts against the step's `max_attempts`: not a
    /// conflict's (the attempt number still counts up, the budget does not
    /// shrink).
    pub uses_attempt: bool,
}

/// The failure of a waiting parent's step because an awaited run failed for good.
#[derive(Debug, Clone)]
pub struct ParentFailure {
    /// The parent.
    pub run_id: i64,
    /// Its awaiting step (its recovery point).
    pub step: String,
    /// Its `step_attempt` as read: the update applies only if unchanged.
    pub step_attempt: u32,
    /// `Some(delay)`: the step is retried after it; `None`: the parent fails.
    pub retry_in: Option<Duration>,
    /// The kind recorded on the parent.
    pub kind: ErrorKind,
    /// The message recorded on the parent.
    pub message: String,
}

/// The result of trying to commit a step.
#[derive(Debug, Clone, PartialEq)]
pub enum CommitOutcome {
    /// Committed.
    Committed,
    /// Committed, and the run now waits for this many awaited runs.
    Waiting(u32),
    /// Committed, but an operator asked to cancel the run (who): it goes
    /// no further.
    CancelRequested(String),
    /// The lease was gone: nothing was written.
    LeaseLost,
    /// A staged run's key exists with other args: nothing was written.
    StagedKeyConflict {
        /// The staged workflow.
        workflow: String,
        /// The conflicting key.
        key: String,
    },
}

/// What recording a failed step call found.
#[derive(Debug, Clone, PartialEq)]
pub enum FailureOutcome {
    /// Recorded, and the lease released.
    Recorded,
    /// Recorded, and an operator had asked to cancel the run (who).
    CancelRequested(String),
    /// The lease was gone: nothing was written.
    LeaseLost,
}

/// What creating-or-claiming a run by key found.
#[derive(Debug)]
pub enum StartOutcome {
    /// The run (new or existing) is now leased to the caller.
    Claimed(Box<RunRecord>),
    /// The run exists and is final: nothing was changed.
    Final(Box<RunRecord>),
    /// Another worker holds a live lease.
    Locked {
        /// Owner.
        locked_by: String,
        /// Remaining ms.
        remaining_ms: i64,
    },
    /// The key exists with other args.
    Mismatch,
    /// No run has the key, and a version of the workflow newer than the
    /// one asked for exists: nothing was written (a new run starts on the
    /// latest version only).
    Stale,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Canonical JSON text: object keys sorted, no insignificant whitespace.
///
/// `serde_json::Map` is a `BTreeMap` in this build (no `preserve_order`), so
/// serialising a `Value` already sorts keys at every depth.
pub fn canonical_json(value: &Value) -> String {
    value.to_string()
}

/// The key of a run whose caller gave none: SHA-256 over canonical `[workflow, args]`.
pub fn derived_key(workflow: &str, args: &Value) -> String {
    sha256_hex(
        canonical_json(&Value::Array(vec![
            Value::String(workflow.into()),
            args.clone(),
        ]))
        .as_bytes(),
    )
}

/// The hash that decides whether two calls with one key carry the same args.
pub fn args_hash(args: &Value) -> String {
    sha256_hex(canonical_json(args).as_bytes())
}

/// The key a step passes to external APIs: stable across retries of this step of this run.
pub fn step_key(workflow: &str, run_key: &str, step: &str) -> String {
    format!("{workflow}/{run_key}/{step}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn derived_keys_ignore_key_order() {
        let a = derived_key("w", &json!({"a": 1, "b": [1, {"y": 2, "x": 1}]}));
        let b = derived_key("w", &json!({"b": [1, {"x": 1, "y": 2}], "a": 1}));
        assert_eq!(a, b);
        assert_ne!(
            a,
            derived_key("other", &json!({"a": 1, "b": [1, {"y": 2, "x": 1}]}))
        );
    }
}

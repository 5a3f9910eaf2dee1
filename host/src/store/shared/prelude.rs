// Store operations shared by every backend, written once in the SQL both
// SQLite and Postgres accept (numbered placeholders, ON CONFLICT, RETURNING,
// TRUE/FALSE), one file per concept beside this one. Each backend module
// includes this file and the others after defining: `Backend` (its store
// type, with `begin`, `begin_claim` and `pool`), `Db`, `Conn`, `DbRow`,
// `CLAIM_SQL`, `queue_param` and the `step_commit_sql!` macro. `contract.rs`
// checks, at compile time, that each backend keeps the contract in
// `backend.rs`.

use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::Row;

use super::{
    Activity, CancelOutcome, Pruned, ChildRun, Claim, InsertOutcome, RunCount, RunFilter, StoredResponse, WorkflowVersion,
};
use crate::error::{Error, Result};
use crate::manifest::FINISHED;
use crate::run::{
    CommitOutcome, ErrorKind, FailureOutcome, FailureRecord, Lease, NewRun, ParentFailure, RunRecord, RunStatus, StartOutcome,
    StepCommit, StepEnd, StepEvent, StepFailure, StepOutcome, args_hash, canonical_json, ms, now_ms,
};
use crate::workflow::{Definition, Workflow};

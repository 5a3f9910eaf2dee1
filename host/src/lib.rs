//! acidic: idempotent, ACID, multi-step operations whose steps are WebAssembly components.
//!
//! Register a workflow from its manifest, then run it: every step's effects
//! (attribute writes, staged runs) commit in one database transaction together
//! with the run's recovery point, so a retry resumes where the run stopped and
//! never repeats a committed step.
//!
//! ```no_run
//! # async fn demo() -> acidic::Result<()> {
//! use acidic::{Host, HostConfig, RunRequest};
//! let host = Host::open(HostConfig::new("acidic.db")).await?;
//! host.register("guest-examples/rust/ride-create/workflow.toml".as_ref()).await?;
//! let args = serde_json::json!({"user": "a@example.com", "origin": [0.0, 0.0], "target": [0.1, 0.1], "card": "tok_visa"});
//! let report = host.run(RunRequest::new("ride-create", args)).await?;
//! println!("{:?}", report.result);
//! # Ok(()) }
//! ```

pub mod backoff;
pub mod bench;
pub mod error;
mod executor;
mod host;
pub mod manifest;
mod registry;
pub mod run;
pub mod runtime;
pub mod serve;
pub mod sql;
pub mod store;
pub mod telemetry;
mod worker;
pub mod workflow;

pub use error::{Error, ManifestError, Result};
pub use host::{
    ClaimedRun, DEFAULT_LEASE, Enqueued, Host, HostConfig, Registration, RunDetail, RunReport,
    RunRequest, StagedRef, Started, scoped_key,
};
pub use run::{RunRecord, RunStatus, StepEvent, StepFailure};
pub use store::RunFilter;
pub use worker::{Cancellation, WorkSummary, WorkerOptions};

//! What the API shows of runs and workflows, as JSON. Keys are shown as the
//! caller sent them (without the caller's scope); times are RFC 3339.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::host::RunDetail;
use crate::run::{RunRecord, StepEvent, StepFailure};
use crate::workflow::Definition;

/// An RFC 3339 time of `ms` since the epoch.
pub fn time(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

/// `key` as its caller knows it: without the `caller:` scope.
pub fn unscoped<'a>(key: &'a str, caller: Option<&str>) -> &'a str {
    match caller {
        Some(c) => key
            .strip_prefix(c)
            .and_then(|k| k.strip_prefix(':'))
            .unwrap_or(key),
        None => key,
    }
}

/// What a path segment leaves as is: RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` as one percent-encoded path segment.
pub fn segment(text: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(text, SEGMENT)
}

/// Where a run is found: `/v1/runs/{workflow}/{key}`, both percent-encoded.
pub fn location(workflow: &str, key: &str) -> String {
    format!("/v1/runs/{}/{}", segment(workflow), segment(key))
}

/// A run, as listed.
#[derive(Serialize, ToSchema)]
pub struct RunSummary {
    workflow: String,
    workflow_version: u32,
    key: String,
    status: String,
    recovery_point: String,
    attempts: u32,
    queue: String,
    last_error: Option<StepFailure>,
    created_at: String,
    updated_at: String,
    finished_at: Option<String>,
    href: String,
}

impl RunSummary {
    /// `run` as `caller` sees it.
    pub fn new(run: &RunRecord, caller: Option<&str>) -> RunSummary {
        let key = unscoped(&run.key, caller).to_string();
        RunSummary {
            href: location(&run.workflow, &key),
            workflow: run.workflow.clone(),
            workflow_version: run.workflow_version,
            key,
            status: run.status.to_string(),
            recovery_point: run.recovery_point.clone(),
            attempts: run.attempts,
            queue: run.queue.clone(),
            last_error: run.last_error.clone(),
            created_at: time(run.created_at),
            updated_at: time(run.updated_at),
            finished_at: run.finished_at.map(time),
        }
    }
}

/// One step call of a run's timeline.
#[derive(Serialize, ToSchema)]
pub struct TimelineEntry {
    step: String,
    attempt: u32,
    outcome: String,
    error_kind: Option<String>,
    message: Option<String>,
    started_at: String,
    finished_at: String,
    duration_ms: i64,
    logs: Vec<crate::run::LogLine>,
}

impl From<&StepEvent> for TimelineEntry {
    fn from(e: &StepEvent) -> TimelineEntry {
        TimelineEntry {
            step: e.step.clone(),
            attempt: e.attempt,
            outcome: e.outcome.clone(),
            error_kind: e.error_kind.clone(),
            message: e.message.clone(),
            started_at: time(e.started_at),
            finished_at: time(e.finished_at),
            duration_ms: (e.finished_at - e.started_at).max(0),
            logs: e.logs.clone(),
        }
    }
}

/// A run staged by another.
#[derive(Serialize, ToSchema)]
pub struct StagedEntry {
    workflow: String,
    key: String,
    status: String,
    recovery_point: String,
}

/// A run in full: what `GET /v1/runs/{workflow}/{key}` answers.
#[derive(Serialize, ToSchema)]
pub struct RunResource {
    #[serde(flatten)]
    summary: RunSummary,
    step_attempt: u32,
    #[schema(value_type = Object)]
    attributes: Map<String, Value>,
    result: Option<Value>,
    available_at: String,
    locked_by: Option<String>,
    locked_until: Option<String>,
    cancelled_by: Option<String>,
    /// Who asked to cancel the run while it was inside a step (it is
    /// cancelled when the step ends).
    cancel_requested_by: Option<String>,
    timeline: Vec<TimelineEntry>,
    staged: Vec<StagedEntry>,
}

impl RunResource {
    /// `detail` as `caller` sees it.
    pub fn new(detail: &RunDetail, caller: Option<&str>) -> RunResource {
        let run = &detail.run;
        RunResource {
            summary: RunSummary::new(run, caller),
            step_attempt: run.step_attempt,
            attributes: run.attributes.clone(),
            result: run.result.clone(),
            available_at: time(run.available_at),
            locked_by: run.locked_by.clone(),
            locked_until: run.locked_until.map(time),
            cancelled_by: run.cancelled_by.clone(),
            cancel_requested_by: run
                .cancel_requested_by
                .clone()
                .filter(|_| !run.status.is_final()),
            timeline: detail.timeline.iter().map(TimelineEntry::from).collect(),
            staged: detail
                .children
                .iter()
                .map(|c| StagedEntry {
                    workflow: c.workflow.clone(),
                    key: c.key.clone(),
                    status: c.status.to_string(),
                    recovery_point: c.recovery_point.clone(),
                })
                .collect(),
        }
    }
}

/// A workflow's definition as the API shows it: environment variable
/// names, not their values.
pub fn definition(definition: &Definition) -> Value {
    definition.shown()
}

/// A page of runs.
#[derive(Serialize, ToSchema)]
pub struct RunPage {
    /// Newest first.
    pub runs: Vec<RunSummary>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// What cancelling did.
#[derive(Serialize, ToSchema)]
pub struct Cancelled {
    /// Runs cancelled: the run and its unfinished staged runs (0 while
    /// the cancel is only requested).
    pub cancelled: u64,
    /// True when the run is inside a step: it is cancelled when that step
    /// ends (the answer is then 202).
    pub requested: bool,
    /// The run now.
    pub run: RunResource,
}

/// A registered workflow, as listed.
#[derive(Serialize, ToSchema)]
pub struct WorkflowSummary {
    /// Its name.
    pub name: String,
    /// Its latest version.
    pub version: u32,
    /// How many versions are stored.
    pub versions: usize,
    /// The author's version label.
    pub label: Option<String>,
    /// What it does.
    pub description: Option<String>,
    /// Its steps, in order.
    pub steps: Vec<String>,
    /// When its latest version was registered.
    pub registered_at: String,
    /// Where it is described.
    pub href: String,
}

/// The workflows.
#[derive(Serialize, ToSchema)]
pub struct WorkflowList {
    /// By name.
    pub workflows: Vec<WorkflowSummary>,
}

/// One stored version of a workflow.
#[derive(Serialize, ToSchema)]
pub struct VersionEntry {
    /// Its number.
    pub version: u32,
    /// SHA-256 of the definition.
    pub definition_hash: String,
    /// When it was registered.
    pub registered_at: String,
}

/// A workflow: its versions and its latest definition.
#[derive(Serialize, ToSchema)]
pub struct WorkflowDetail {
    /// Its name.
    pub name: String,
    /// Its latest version.
    pub version: u32,
    /// SHA-256 of the latest definition.
    pub definition_hash: String,
    /// The latest definition: steps with component digests, policies and
    /// grants (environment variable names, not values).
    pub definition: Value,
    /// Every version, oldest first.
    pub versions: Vec<VersionEntry>,
}

/// A probe's answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
    /// The backend, on `/readyz`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

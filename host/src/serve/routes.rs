//! The API's handlers. The idempotent POST is the heart: find or create the
//! caller's run for the key, work it in a task of its own (a client that
//! hangs up does not stop it), and answer within the wait the client asked
//! for: the stored answer once the run finished, `202` while it runs on,
//! `503` when a step failed and a retry with the same key will resume it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::problem::{KINDS, PROBLEM_JSON, Problem, ProblemDoc, retry_seconds};
use super::resource::{
    Cancelled, Health, RunPage, RunResource, RunSummary, VersionEntry, WorkflowDetail,
    WorkflowList, WorkflowSummary, definition, location, segment, time, unscoped,
};
use super::{Api, Caller};
use crate::error::Error;
use crate::host::{RunReport, RunRequest, Started, scoped_key};
use crate::run::{RunRecord, RunStatus, canonical_json, now_ms};
use crate::store::{RunFilter, StoredResponse};
use crate::worker::Cancellation;

type Answer = std::result::Result<Response, Problem>;

/// How often a waiting request looks at its run again.
const POLL: Duration = Duration::from_millis(50);

/// Longest key a client may send (the draft's advice is a UUID; 255 is Stripe's limit).
const MAX_KEY: usize = 255;

/// The `Idempotency-Key` header: 1 to 255 printable ASCII characters, bare
/// or as an RFC 8941 string (`"..."`, with `\"` and `\\` escapes).
fn idempotency_key(headers: &HeaderMap) -> std::result::Result<String, Problem> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Err(Problem::new(
            "invalid-idempotency-key",
            "the Idempotency-Key header is required: a unique value per operation (a UUID, say), \
             sent again unchanged on every retry",
        ));
    };
    if values.next().is_some() {
        return Err(Problem::new(
            "invalid-idempotency-key",
            "send the Idempotency-Key header once",
        ));
    }
    let bad = |why: &str| Problem::new("invalid-idempotency-key", format!("Idempotency-Key {why}"));
    let raw = value.as_bytes();
    let key: Vec<u8> = if raw.first() == Some(&b'"') {
        if raw.len() < 2 || raw.last() != Some(&b'"') {
            return Err(bad("starts a quoted string it does not end"));
        }
        let mut key = Vec::with_capacity(raw.len());
        let mut escaped = false;
        for &b in &raw[1..raw.len() - 1] {
            match (escaped, b) {
                (false, b'\\') => escaped = true,
                (false, b'"') => return Err(bad("has an unescaped `\"` inside its quotes")),
                (true, b'"' | b'\\') => {
                    key.push(b);
                    escaped = false;
                }
                (true, _) => return Err(bad("has a `\\` that escapes neither `\"` nor `\\`")),
                (false, _) => key.push(b),
            }
        }
        if escaped {
            return Err(bad("ends in a lone `\\`"));
        }
        key
    } else {
        raw.to_vec()
    };
    if key.is_empty() {
        return Err(bad("is empty"));
    }
    if key.len() > MAX_KEY {
        return Err(bad(&format!(
            "is {} characters; at most {MAX_KEY}",
            key.len()
        )));
    }
    if !key.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(bad("must be printable ASCII"));
    }
    String::from_utf8(key).map_err(|_| bad("must be printable ASCII"))
}

/// How long the client will wait for its answer: `Prefer: wait=<seconds>`
/// (RFC 7240), else the default, at most the configured maximum.
fn prefer_wait(headers: &HeaderMap, api: &Api) -> Duration {
    let asked = headers
        .get_all(header::HeaderName::from_static("prefer"))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|pref| {
            let first = pref.split(';').next()?.trim();
            let (name, value) = first.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("wait")
                .then(|| value.trim().trim_matches('"').parse::<u64>().ok())?
        })
        .next_back();
    asked
        .map(Duration::from_secs)
        .unwrap_or(api.config.default_wait)
        .min(api.config.max_wait)
}

/// The args: the body, which must be one JSON object.
fn args(body: std::result::Result<Bytes, BytesRejection>) -> std::result::Result<Value, Problem> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new("body-too-large", rejection.body_text())
        } else {
            Problem::new("invalid-body", rejection.body_text())
        }
    })?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        Problem::new(
            "invalid-body",
            format!("the body must be the run's args as a JSON object (`{{}}` for none): {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(Problem::new(
            "invalid-body",
            "the body must be the run's args as a JSON object (`{}` for none)",
        ));
    }
    Ok(value)
}

fn path<T>(p: std::result::Result<Path<T>, PathRejection>) -> std::result::Result<T, Problem> {
    p.map(|Path(t)| t)
        .map_err(|e| Problem::new("invalid-request", e.body_text()))
}

/// `POST /v1/workflows/{workflow}/runs`: starts (or replays) the caller's
/// run for its `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/workflows/{workflow}/runs", tag = "runs",
    params(
        ("workflow" = String, Path, description = "A registered workflow"),
        ("Idempotency-Key" = String, Header, description = "1-255 printable ASCII characters, bare or as an RFC 8941 string; the same on every retry"),
        ("Prefer" = Option<String>, Header, description = "`wait=<seconds>`: how long to wait for the answer (default 10, capped)"),
    ),
    request_body(content = Object, description = "The run's args: a JSON object", content_type = "application/json"),
    responses(
        (status = 201, description = "Finished: the run's result (or the status a step set); replays carry `Idempotent-Replayed: true`", body = Value),
        (status = 202, description = "Still running after the wait; poll `Location`", body = RunResource),
        (status = 400, description = "Missing or malformed key, or a body that is not a JSON object", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown bearer token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Unknown workflow", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "In flight for longer than the wait, or cancelled", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "The key was used with other args", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 500, description = "The run failed (stored, replayed)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "A step failed and will be retried: retry with the same key", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn create_run(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    workflow: std::result::Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Answer {
    let workflow = path(workflow)?;
    let key = idempotency_key(&headers)?;
    let wait = prefer_wait(&headers, &api);
    let args = match args(body) {
        Ok(args) => args,
        Err(problem) => {
            // An unknown workflow is a 404 whatever the body.
            api.host.workflow(&workflow).await?;
            return Err(problem);
        }
    };
    let mut request = RunRequest::new(&workflow, args).with_key(&key);
    if let Some(c) = caller.name() {
        request = request.for_caller(c);
    }
    let deadline = Instant::now() + wait;
    let mut latched = false;
    let mut answer = loop {
        match api.host.start(request.clone()).await {
            Ok(Started::Claimed(claimed)) => {
                let Some(permit) = permit(&api, deadline).await else {
                    // At capacity: hand the run back (a worker, or this
                    // key's next request, runs it) and say when to retry.
                    api.host.release_started(claimed).await?;
                    api.metrics.outcome("shed");
                    return Err(Problem::new(
                        "unavailable",
                        "the server is running as many runs as it may; retry with the same Idempotency-Key",
                    )
                    .retry_after(1));
                };
                let run = claimed.run();
                let fresh = run.attempts == 0 && run.step_attempt == 0;
                api.metrics.outcome(match (latched, fresh) {
                    (true, _) => "latched",
                    (false, true) => "created",
                    (false, false) => "resumed",
                });
                let run_id = run.id;
                let host = Arc::clone(&api.host);
                let drive = api.drives.spawn(async move {
                    let _permit = permit;
                    host.drive_started(claimed).await
                });
                break work_answer(&api, &caller, drive, deadline, run_id, false).await?;
            }
            Ok(Started::Final(run)) => {
                api.metrics
                    .outcome(if latched { "latched" } else { "replayed" });
                break final_answer(&api, &caller, &Finished::of(&run), true).await?;
            }
            Err(Error::Locked { remaining_ms, .. }) => {
                if Instant::now() >= deadline || *api.draining.borrow() {
                    api.metrics.outcome("conflict");
                    return Err(Problem::new(
                        "run-in-progress",
                        "a request with this Idempotency-Key is still being worked on; \
                         retry with the same key",
                    )
                    .retry_after(retry_seconds(remaining_ms.min(1000))));
                }
                latched = true;
                pause(&api, deadline).await;
            }
            Err(e @ Error::ArgsMismatch { .. }) => {
                api.metrics.outcome("mismatch");
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        }
    };
    if wait != api.config.default_wait {
        answer.headers_mut().insert(
            header::HeaderName::from_static("preference-applied"),
            HeaderValue::from_str(&format!("wait={}", wait.as_secs()))
                .unwrap_or(HeaderValue::from_static("wait")),
        );
    }
    Ok(answer)
}

/// A permit to drive a run, waiting for one until `deadline` (or the drain).
async fn permit(api: &Api, deadline: Instant) -> Option<tokio::sync::OwnedSemaphorePermit> {
    // A free slot is taken at once, whatever the wait (even `wait=0`).
    if let Ok(permit) = Arc::clone(&api.in_flight).try_acquire_owned() {
        return Some(permit);
    }
    let mut draining = api.draining.clone();
    tokio::select! {
        biased;
        permit = Arc::clone(&api.in_flight).acquire_owned() => permit.ok(),
        _ = tokio::time::sleep_until(deadline.into()) => None,
        _ = draining.wait_for(|d| *d) => None,
    }
}

/// Sleeps a poll interval (less if the deadline is nearer), or until the server drains.
async fn pause(api: &Api, deadline: Instant) {
    let mut draining = api.draining.clone();
    let nap = POLL.min(deadline.saturating_duration_since(Instant::now()));
    tokio::select! {
        _ = tokio::time::sleep(nap) => {}
        _ = draining.wait_for(|d| *d) => {}
    }
}

/// Waits for `drive` until `deadline`, then answers from its report, or
/// with the run as it stands if it is still going (it goes on).
async fn work_answer(
    api: &Api,
    caller: &Caller,
    mut drive: tokio::task::JoinHandle<crate::Result<RunReport>>,
    deadline: Instant,
    run_id: i64,
    replayed: bool,
) -> Answer {
    let mut draining = api.draining.clone();
    let done = tokio::select! {
        biased;
        done = &mut drive => Some(done),
        _ = tokio::time::sleep_until(deadline.into()) => None,
        _ = draining.wait_for(|d| *d) => None,
    };
    let report = match done {
        Some(Ok(Ok(report))) => report,
        Some(Ok(Err(e))) => return Err(e.into()),
        Some(Err(panicked)) => {
            tracing::error!("a run's task failed: {panicked}");
            return Err(Problem::new(
                "internal",
                "internal error; the server's log has the details",
            ));
        }
        None => {
            // Still running: tell the client where to look; it keeps going.
            return in_progress(api, caller, run_id).await;
        }
    };
    report_answer(api, caller, &report, replayed).await
}

/// The answer for a drive's report.
async fn report_answer(api: &Api, caller: &Caller, report: &RunReport, replayed: bool) -> Answer {
    match report.status {
        RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled => {
            let finished = Finished {
                id: report.run_id,
                workflow: &report.workflow,
                key: &report.key,
            };
            final_answer(api, caller, &finished, replayed).await
        }
        RunStatus::Pending => {
            let retry = retry_seconds(report.retry_at.unwrap_or_else(now_ms) - now_ms());
            let key = unscoped(&report.key, caller.name());
            let problem = match &report.error {
                Some(failure) => Problem::new(
                    "step-failed-retryable",
                    format!(
                        "step `{}` failed ({}): {}; retry with the same Idempotency-Key to resume at `{}`",
                        failure.step, failure.kind, failure.message, report.recovery_point
                    ),
                )
                .with("step", failure.step.as_str())
                .with("kind", failure.kind.as_str())
                .with("attempt", failure.attempt),
                None => Problem::new(
                    "unavailable",
                    "the server is shutting down; retry with the same Idempotency-Key",
                ),
            };
            Err(problem
                .with("recovery_point", report.recovery_point.as_str())
                .with("run", location(&report.workflow, key))
                .retry_after(retry))
        }
        RunStatus::Waiting | RunStatus::Running => in_progress(api, caller, report.run_id).await,
    }
}

/// A run to answer for with its stored response.
struct Finished<'a> {
    id: i64,
    workflow: &'a str,
    key: &'a str,
}

impl Finished<'_> {
    fn of(run: &RunRecord) -> Finished<'_> {
        Finished {
            id: run.id,
            workflow: &run.workflow,
            key: &run.key,
        }
    }
}

/// The answer for a finished run: its stored response (stored with its
/// last commit, or on its first answer), so every replay is the same bytes.
async fn final_answer(api: &Api, caller: &Caller, run: &Finished<'_>, replayed: bool) -> Answer {
    let scope = caller.name().map(str::to_string);
    let stored = api
        .host
        .store()
        .response(run.id, |run| final_response(run, scope.as_deref()))
        .await?;
    let Some(stored) = stored else {
        // Not finished (waiting, or retried since): the run as it stands.
        return in_progress(api, caller, run.id).await;
    };
    let status = StatusCode::from_u16(stored.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let media = if status.is_client_error() || status.is_server_error() {
        PROBLEM_JSON
    } else {
        "application/json"
    };
    let key = unscoped(run.key, caller.name());
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    if let Ok(at) = HeaderValue::from_str(&location(run.workflow, key)) {
        headers.insert(header::LOCATION, at);
    }
    if replayed {
        headers.insert(
            header::HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// The answer a finished run keeps for its key: `201` and its result, or
/// the problem it failed or was cancelled with.
fn final_response(run: &RunRecord, caller: Option<&str>) -> StoredResponse {
    let key = unscoped(&run.key, caller);
    let problem = match run.status {
        RunStatus::Succeeded => {
            return StoredResponse {
                code: run.http_status.unwrap_or(201),
                body: canonical_json(run.result.as_ref().unwrap_or(&Value::Null)),
            };
        }
        RunStatus::Cancelled => Problem::new(
            "run-cancelled",
            format!(
                "the run was cancelled by {}",
                run.cancelled_by.as_deref().unwrap_or("an operator")
            ),
        ),
        _ => {
            let detail = match &run.last_error {
                Some(f) => format!("step `{}` failed ({}): {}", f.step, f.kind, f.message),
                None => "the run failed".to_string(),
            };
            let mut p = Problem::new("run-failed", detail);
            if let Some(f) = &run.last_error {
                p = p
                    .with("step", f.step.as_str())
                    .with("kind", f.kind.as_str())
                    .with("attempt", f.attempt);
            }
            p
        }
    };
    let mut problem = problem
        .with("workflow", run.workflow.as_str())
        .with("key", key);
    if run.status == RunStatus::Failed
        && let Some(status) = run
            .failure_http_status
            .and_then(|s| StatusCode::from_u16(s).ok())
    {
        problem = problem.with_status(status);
    }
    StoredResponse {
        code: problem.status().as_u16(),
        body: problem.body(),
    }
}

/// `202 Accepted` with run `id` as it stands, where to poll, and when.
async fn in_progress(api: &Api, caller: &Caller, id: i64) -> Answer {
    let detail = detail_of(api, id).await?;
    let resource = RunResource::new(&detail, caller.name());
    let key = unscoped(&detail.run.key, caller.name());
    let mut response = (StatusCode::ACCEPTED, axum::Json(resource)).into_response();
    let headers = response.headers_mut();
    if let Ok(at) = HeaderValue::from_str(&location(&detail.run.workflow, key)) {
        headers.insert(header::LOCATION, at);
    }
    headers.insert(header::RETRY_AFTER, HeaderValue::from(1u32));
    Ok(response)
}

/// Run `id` with its timeline and staged runs.
pub(crate) async fn detail_of(api: &Api, id: i64) -> crate::Result<crate::host::RunDetail> {
    let store = api.host.store();
    let run = store
        .run(id)
        .await?
        .ok_or_else(|| Error::RunNotFound(id.to_string()))?;
    let timeline = store.step_events(id).await?;
    let filter = RunFilter {
        parent: Some(id),
        limit: 1000,
        ..RunFilter::default()
    };
    let mut children = store.list_runs(&filter).await?;
    children.reverse();
    Ok(crate::host::RunDetail {
        run,
        timeline,
        children,
    })
}

/// The caller's run of `workflow` with `key`.
///
/// A caller's runs are those under its scope, and the runs they staged
/// (whose keys the staging steps chose): a run found by its bare key is
/// the caller's if a run up its chain of parents is.
async fn find(api: &Api, caller: &Caller, workflow: &str, key: &str) -> crate::Result<RunRecord> {
    let Some(name) = caller.name() else {
        return api.host.find(key, Some(workflow)).await;
    };
    match api.host.find(&scoped_key(name, key), Some(workflow)).await {
        Err(Error::RunNotFound(_)) => {}
        found => return found,
    }
    let run = api.host.find(key, Some(workflow)).await?;
    match visible(api, caller, &run).await? {
        true => Ok(run),
        false => Err(Error::RunNotFound(key.to_string())),
    }
}

/// Whether `caller` may see `run`: one under its scope, or staged by one.
pub(crate) async fn visible(api: &Api, caller: &Caller, run: &RunRecord) -> crate::Result<bool> {
    let Some(name) = caller.name() else {
        return Ok(true);
    };
    let scope = scoped_key(name, "");
    if run.key.starts_with(&scope) {
        return Ok(true);
    }
    let mut parent = run.parent_run_id;
    // The chain is at most the lineage cap deep; bound the walk anyway.
    for _ in 0..64 {
        let Some(id) = parent else { break };
        let Some(up) = api.host.store().run(id).await? else {
            break;
        };
        if up.key.starts_with(&scope) {
            return Ok(true);
        }
        parent = up.parent_run_id;
    }
    Ok(false)
}

/// `?wait=` of `GET`: seconds (`30`) or a duration (`30s`, `2m`).
#[derive(Deserialize)]
pub struct ShowParams {
    wait: Option<String>,
}

fn parse_wait(wait: Option<&str>, api: &Api) -> std::result::Result<Duration, Problem> {
    let Some(wait) = wait else {
        return Ok(Duration::ZERO);
    };
    let parsed = match wait.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(wait),
    };
    parsed.map(|d| d.min(api.config.max_wait)).map_err(|e| {
        Problem::new(
            "invalid-request",
            format!("wait=`{wait}`: {e} (say `30` or `30s`)"),
        )
    })
}

/// `GET /v1/runs/{workflow}/{key}`: the run, its timeline and staged runs;
/// with `?wait=`, once it is finished or the wait is over.
#[utoipa::path(get, path = "/v1/runs/{workflow}/{key}", tag = "runs",
    params(
        ("workflow" = String, Path, description = "The run's workflow"),
        ("key" = String, Path, description = "Its Idempotency-Key (percent-encoded)"),
        ("wait" = Option<String>, Query, description = "Long-poll until it is finished: `30` or `30s` (capped)"),
    ),
    responses(
        (status = 200, description = "The run, its timeline with stored step logs, and its staged runs", body = RunResource),
        (status = 400, description = "A bad `wait`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No run of the caller's has this key", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn show_run(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    target: std::result::Result<Path<(String, String)>, PathRejection>,
    params: std::result::Result<Query<ShowParams>, QueryRejection>,
) -> Answer {
    let (workflow, key) = path(target)?;
    let params = params.map_err(|e| Problem::new("invalid-request", e.body_text()))?;
    let wait = parse_wait(params.wait.as_deref(), &api)?;
    let deadline = Instant::now() + wait;
    let mut run = find(&api, &caller, &workflow, &key).await?;
    while !run.status.is_final() && Instant::now() < deadline && !*api.draining.borrow() {
        pause(&api, deadline).await;
        run = api
            .host
            .store()
            .run(run.id)
            .await?
            .ok_or_else(|| Error::RunNotFound(key.clone()))?;
    }
    let detail = detail_of(&api, run.id).await?;
    Ok(axum::Json(RunResource::new(&detail, caller.name())).into_response())
}

/// Filters and page of `GET /v1/runs`.
#[derive(Deserialize)]
pub struct ListParams {
    workflow: Option<String>,
    status: Option<String>,
    queue: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Most runs one page lists.
const MAX_PAGE: u32 = 500;

/// `GET /v1/runs`: the caller's runs, newest first, a page at a time
/// (`next_cursor` asks for the next).
#[utoipa::path(get, path = "/v1/runs", tag = "runs",
    params(
        ("workflow" = Option<String>, Query, description = "Only this workflow's runs"),
        ("status" = Option<String>, Query, description = "pending, running, waiting, succeeded, failed or cancelled"),
        ("queue" = Option<String>, Query, description = "Only runs on this queue"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "The caller's runs, newest first", body = RunPage),
        (status = 400, description = "A bad filter or cursor", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn list_runs(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    params: std::result::Result<Query<ListParams>, QueryRejection>,
) -> Answer {
    let Query(params) = params.map_err(|e| Problem::new("invalid-request", e.body_text()))?;
    let status = params
        .status
        .as_deref()
        .map(str::parse::<RunStatus>)
        .transpose()
        .map_err(|e| {
            Problem::new(
                "invalid-request",
                format!("status: {e} (pending, running, waiting, succeeded, failed, cancelled)"),
            )
        })?;
    let before = params
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                Problem::new(
                    "invalid-request",
                    format!("cursor `{c}` is not one this API gave"),
                )
            })
        })
        .transpose()?;
    let limit = params.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let filter = RunFilter {
        status,
        workflow: params.workflow,
        queue: params.queue,
        key_prefix: caller.name().map(|c| scoped_key(c, "")),
        before,
        limit,
        ..RunFilter::default()
    };
    let runs = api.host.runs(&filter).await?;
    let next = (runs.len() == limit as usize)
        .then(|| runs.last().map(|r| r.id.to_string()))
        .flatten();
    let runs: Vec<RunSummary> = runs
        .iter()
        .map(|r| RunSummary::new(r, caller.name()))
        .collect();
    Ok(axum::Json(RunPage {
        runs,
        next_cursor: next,
    })
    .into_response())
}

/// The query of `POST …/retry`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RetryQuery {
    /// Move the run to the latest version of its workflow first (it must
    /// have the step the run stands at).
    #[serde(default)]
    pub upgrade: bool,
}

/// `POST /v1/runs/{workflow}/{key}/retry`: runs a failed or pending run
/// again from its recovery point (a failed one with a fresh budget of
/// attempts), answering as the first POST does.
#[utoipa::path(post, path = "/v1/runs/{workflow}/{key}/retry", tag = "runs",
    params(
        ("workflow" = String, Path, description = "The run's workflow"),
        ("key" = String, Path, description = "Its Idempotency-Key"),
        ("Prefer" = Option<String>, Header, description = "`wait=<seconds>`"),
        RetryQuery,
    ),
    responses(
        (status = 201, description = "Finished (a succeeded run is replayed)", body = Value),
        (status = 202, description = "Still running after the wait", body = RunResource),
        (status = 404, description = "No such run", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Cancelled, waiting, or in a step right now", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 500, description = "It failed again", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "A step failed and will be retried", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn retry_run(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    target: std::result::Result<Path<(String, String)>, PathRejection>,
    query: std::result::Result<Query<RetryQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Answer {
    let (workflow, key) = path(target)?;
    let upgrade = query
        .map_err(|e| Problem::new("invalid-request", e.body_text()))?
        .upgrade;
    let wait = prefer_wait(&headers, &api);
    let run = find(&api, &caller, &workflow, &key).await?;
    if run.status == RunStatus::Succeeded {
        return final_answer(&api, &caller, &Finished::of(&run), true).await;
    }
    let requeued = api
        .host
        .requeue_on(&run.key, Some(&run.workflow), upgrade)
        .await?;
    let deadline = Instant::now() + wait;
    let Some(permit) = permit(&api, deadline).await else {
        // Requeued, runnable now: a worker or a later request runs it.
        return in_progress(&api, &caller, run.id).await;
    };
    let host = Arc::clone(&api.host);
    let stored_key = requeued.key.clone();
    let workflow = requeued.workflow.clone();
    let drive = api.drives.spawn(async move {
        let _permit = permit;
        host.retry(&stored_key, Some(&workflow)).await
    });
    work_answer(&api, &caller, drive, deadline, run.id, false).await
}

/// `POST /v1/runs/{workflow}/{key}/cancel`: cancels a run and its
/// unfinished staged runs; a run inside a step is cancelled when the step
/// ends (202).
#[utoipa::path(post, path = "/v1/runs/{workflow}/{key}/cancel", tag = "runs",
    params(
        ("workflow" = String, Path, description = "The run's workflow"),
        ("key" = String, Path, description = "Its Idempotency-Key"),
    ),
    responses(
        (status = 200, description = "Cancelled, with its unfinished staged runs", body = Cancelled),
        (status = 202, description = "The run is inside a step: it is cancelled when the step ends (what the step did commits)", body = Cancelled),
        (status = 404, description = "No such run", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Already finished", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn cancel_run(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    target: std::result::Result<Path<(String, String)>, PathRejection>,
) -> Answer {
    let (workflow, key) = path(target)?;
    let run = find(&api, &caller, &workflow, &key).await?;
    let by = caller.name().unwrap_or("api");
    let outcome = api.host.cancel(&run.key, Some(&run.workflow), by).await?;
    let detail = detail_of(&api, run.id).await?;
    let (status, cancelled, requested) = match outcome {
        Cancellation::Cancelled(n) => (StatusCode::OK, n, false),
        Cancellation::Requested { .. } => (StatusCode::ACCEPTED, 0, true),
    };
    let body = Cancelled {
        cancelled,
        requested,
        run: RunResource::new(&detail, caller.name()),
    };
    Ok((status, axum::Json(body)).into_response())
}

/// `GET /v1/workflows`: every registered workflow, its latest version and steps.
#[utoipa::path(get, path = "/v1/workflows", tag = "workflows",
    responses((status = 200, description = "Every registered workflow", body = WorkflowList)))]
pub async fn list_workflows(State(api): State<Arc<Api>>) -> Answer {
    let versions = api.host.workflow_versions(None).await?;
    let mut workflows = Vec::new();
    let mut i = 0;
    while i < versions.len() {
        let name = &versions[i].name;
        let count = versions[i..].iter().take_while(|v| &v.name == name).count();
        let latest = &versions[i + count - 1];
        let workflow = api.host.workflow_version(name, latest.version).await?;
        let d = &workflow.definition;
        workflows.push(WorkflowSummary {
            name: name.clone(),
            version: latest.version,
            versions: count,
            label: d.label.clone(),
            description: d.description.clone(),
            steps: d.steps.iter().map(|s| s.name.clone()).collect(),
            registered_at: time(latest.created_at),
            href: format!("/v1/workflows/{}", segment(name)),
        });
        i += count;
    }
    Ok(axum::Json(WorkflowList { workflows }).into_response())
}

/// `GET /v1/workflows/{workflow}`: its versions, and the latest definition
/// (steps, component digests, policies, grants).
#[utoipa::path(get, path = "/v1/workflows/{workflow}", tag = "workflows",
    params(("workflow" = String, Path, description = "A registered workflow")),
    responses(
        (status = 200, description = "Its versions and latest definition", body = WorkflowDetail),
        (status = 404, description = "Not registered", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn show_workflow(
    State(api): State<Arc<Api>>,
    name: std::result::Result<Path<String>, PathRejection>,
) -> Answer {
    let name = path(name)?;
    let latest = api.host.workflow(&name).await?;
    let versions = api
        .host
        .workflow_versions(Some(&name))
        .await?
        .iter()
        .map(|v| VersionEntry {
            version: v.version,
            definition_hash: v.definition_hash.clone(),
            registered_at: time(v.created_at),
        })
        .collect();
    Ok(axum::Json(WorkflowDetail {
        name,
        version: latest.version,
        definition_hash: latest.hash.clone(),
        definition: definition(&latest.definition),
        versions,
    })
    .into_response())
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(api): State<Arc<Api>>) -> Answer {
    let text = api.host.telemetry().encode(api.host.store()).await?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// `GET /healthz`: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "The process answers", body = Health)))]
pub async fn healthz() -> Response {
    axum::Json(Health {
        status: "ok".into(),
        database: None,
    })
    .into_response()
}

/// `GET /readyz`: the database answers and the server is not draining.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "The database answers", body = Health),
        (status = 503, description = "Draining, or the database does not answer", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(api): State<Arc<Api>>) -> Answer {
    if *api.draining.borrow() {
        return Err(Problem::new("unavailable", "the server is draining").retry_after(1));
    }
    match api.host.store().ping().await {
        Ok(()) => Ok(axum::Json(Health {
            status: "ready".into(),
            database: Some(api.host.store().backend().into()),
        })
        .into_response()),
        Err(e) => Err(
            Problem::new("unavailable", format!("the database does not answer: {e}"))
                .retry_after(1),
        ),
    }
}

/// `GET /problems/{slug}`: what a problem `type` means.
#[utoipa::path(get, path = "/problems/{slug}", tag = "operations", security(()),
    params(("slug" = String, Path, description = "The last part of a problem's `type`")),
    responses(
        (status = 200, description = "What the problem type means", body = ProblemDoc),
        (status = 404, description = "No such type", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn problem_type(slug: std::result::Result<Path<String>, PathRejection>) -> Answer {
    let slug = path(slug)?;
    let Some((slug, status, title)) = KINDS.iter().find(|(s, _, _)| *s == slug) else {
        return Err(Problem::new(
            "not-found",
            format!("no problem type `{slug}`"),
        ));
    };
    Ok(axum::Json(ProblemDoc {
        kind: format!("/problems/{slug}"),
        title: title.to_string(),
        status: *status,
        detail: format!("answered with status {status}: {title}"),
    })
    .into_response())
}

/// Any other path.
pub async fn not_found(uri: axum::http::Uri) -> Problem {
    Problem::new("not-found", format!("no resource at {}", uri.path()))
}

/// A known path with another method.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Problem {
    Problem::new(
        "method-not-allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

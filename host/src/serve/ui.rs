//! The dashboard at `/ui`: server-rendered HTML (maud) with a few lines of
//! inline JavaScript, served by `acidic serve` itself, so there is nothing
//! to build or run beside the binary and every page works without scripts
//! (they add only confirmations and "select all").
//!
//! It reads what the API reads and acts through the same host calls. With
//! tokens, a login form keeps the caller's token in an `HttpOnly`,
//! `SameSite=Strict` cookie, and the caller sees the runs the API shows it;
//! every state-changing action is a POST carrying a CSRF token derived from
//! the session's token and a secret of this server process.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::resource::time;
use super::routes::{detail_of, visible};
use super::{Api, Caller};
use crate::host::scoped_key;
use crate::run::{RunRecord, RunStatus, now_ms};
use crate::store::RunFilter;

/// The session cookie.
const COOKIE: &str = "acidic_session";

/// Runs on one page of the list.
const PAGE: u32 = 50;

/// Most runs one bulk action takes.
const MAX_BULK: usize = 200;

/// What the dashboard needs beside the API's state.
pub(crate) struct Ui {
    /// Mixed into every CSRF token: a fresh one per server process.
    secret: [u8; 32],
}

impl Ui {
    pub(crate) fn new() -> Ui {
        let mut secret = [0u8; 32];
        if getrandom::fill(&mut secret).is_err() {
            // No OS randomness: still unique per process, if guessable.
            let seed = format!("{}:{}", std::process::id(), now_ms());
            secret.copy_from_slice(&Sha256::digest(seed.as_bytes()));
        }
        Ui { secret }
    }

    /// The CSRF token of a session holding `token` (empty without tokens).
    fn csrf(&self, token: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(token.as_bytes());
        hex::encode(h.finalize())
    }
}

/// The signed-in caller and their CSRF token, for the pages.
#[derive(Clone)]
pub(crate) struct Session {
    caller: Caller,
    csrf: String,
}

/// The dashboard's routes, under `/ui`.
pub(crate) fn router(api: Arc<Api>) -> axum::Router<Arc<Api>> {
    use axum::routing::{get, post};
    let pages = axum::Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/runs") }))
        .route("/ui/runs", get(runs_page))
        .route("/ui/runs/bulk", post(bulk))
        .route("/ui/runs/{id}", get(run_page))
        .route("/ui/runs/{id}/{action}", post(run_action))
        .route("/ui/workflows", get(workflows_page))
        .route("/ui/queues", get(queues_page))
        .route("/ui/logout", post(logout))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&api),
            sign_in,
        ));
    axum::Router::new()
        .route("/ui/login", get(login_page).post(login))
        .merge(pages)
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| hex::decode(value).ok())
        .and_then(|token| String::from_utf8(token).ok())
}

/// Lets a page in with a valid session cookie (or when there are no
/// tokens); sends the browser to the login form otherwise.
async fn sign_in(State(api): State<Arc<Api>>, mut request: Request, next: Next) -> Response {
    let session = match &api.config.tokens {
        None => Session {
            caller: Caller(None),
            csrf: api.ui.csrf(""),
        },
        Some(tokens) => {
            let token = cookie_token(request.headers());
            let caller = token.as_deref().and_then(|t| tokens.caller(t));
            match (caller, token.as_deref()) {
                (Some(caller), Some(token)) => Session {
                    caller: Caller(Some(caller.to_string())),
                    csrf: api.ui.csrf(token),
                },
                _ if request.method() == axum::http::Method::GET => {
                    return Redirect::to("/ui/login").into_response();
                }
                _ => return refusal(StatusCode::UNAUTHORIZED, "sign in first"),
            }
        }
    };
    request.extensions_mut().insert(session);
    next.run(request).await
}

/// A refused request, as a small page of its own.
fn refusal(status: StatusCode, message: &str) -> Response {
    let markup = html! {
        (DOCTYPE) html lang="en" { head { meta charset="utf-8"; title { "Refused · acidic" } }
            body { h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) } p { (message) }
                p { a href="/ui/login" { "Sign in" } } } }
    };
    (status, Html(markup.into_string())).into_response()
}

/// The form fields of a POST body (a key may repeat).
fn form(body: &Bytes) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The refusal of a POST without this session's CSRF token, or sent from
/// another origin; `None` if it may go ahead.
fn refused_post(
    session: &Session,
    headers: &HeaderMap,
    fields: &[(String, String)],
) -> Option<Response> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
    if let (Some(origin), Some(host)) = (origin, host)
        && origin != "null"
        && origin.split_once("://").map(|(_, rest)| rest) != Some(host)
    {
        return Some(refusal(
            StatusCode::FORBIDDEN,
            "cross-origin request refused",
        ));
    }
    let sent = field(fields, "csrf").unwrap_or("");
    let good: bool = sent.len() == session.csrf.len()
        && sent
            .bytes()
            .zip(session.csrf.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !good {
        return Some(refusal(
            StatusCode::FORBIDDEN,
            "missing or stale form token: reload the page and try again",
        ));
    }
    None
}

const CSS: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2733;background:#f6f7f9}
header{background:#1d2733;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}
header a{color:#cfe3ff;text-decoration:none}header a.on{color:#fff;font-weight:600}
header form{margin-left:auto}main{padding:16px}
table{border-collapse:collapse;background:#fff;width:100%;margin:8px 0}
th,td{border-bottom:1px solid #e3e6ea;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}
pre{background:#fff;border:1px solid #e3e6ea;padding:8px;overflow:auto;max-height:24em;margin:4px 0}
.s{padding:1px 6px;border-radius:8px;font-size:12px;color:#fff;background:#8792a2}
.s-succeeded{background:#2e7d32}.s-failed{background:#c62828}.s-running{background:#1565c0}
.s-pending{background:#ef8f00}.s-waiting{background:#6a1b9a}.s-cancelled{background:#546e7a}
.counts a{margin-right:12px}.notice{background:#fff8d6;border:1px solid #e8d27a;padding:6px 10px}
.error{background:#fdecea;border:1px solid #f5b5ae;padding:6px 10px}
form.inline{display:inline}dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}
dt{font-weight:600}dd{margin:0}fieldset{border:1px solid #d5d9de;background:#fff}
";

/// A whole page.
fn page(session: &Session, title: &str, on: &str, refresh: Option<u32>, body: Markup) -> Response {
    let nav = [
        ("runs", "/ui/runs", "Runs"),
        ("workflows", "/ui/workflows", "Workflows"),
        ("queues", "/ui/queues", "Queues & health"),
    ];
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                @if let Some(seconds) = refresh {
                    meta http-equiv="refresh" content=(seconds);
                }
                title { (title) " · acidic" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    strong { "acidic" }
                    @for (id, href, label) in nav {
                        a href=(href) class=[(id == on).then_some("on")] { (label) }
                    }
                    @if let Some(caller) = session.caller.name() {
                        form method="post" action="/ui/logout" {
                            span { "signed in as " (caller) " " }
                            input type="hidden" name="csrf" value=(session.csrf);
                            button { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

fn status_badge(status: &str) -> Markup {
    html! { span class={ "s s-" (status) } { (status) } }
}

/// A key as the caller knows it (without its `caller:` scope).
fn shown_key<'a>(session: &Session, key: &'a str) -> &'a str {
    match session.caller.name() {
        Some(name) => key
            .strip_prefix(name)
            .and_then(|k| k.strip_prefix(':'))
            .unwrap_or(key),
        None => key,
    }
}

fn json(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn ago(ms: i64) -> String {
    let s = (now_ms() - ms).max(0) / 1000;
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86_400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

fn problem_page(session: &Session, status: StatusCode, message: &str) -> Response {
    let mut response = page(
        session,
        "Not possible",
        "",
        None,
        html! { p.error { (message) } p { a href="/ui/runs" { "Back to the runs" } } },
    );
    *response.status_mut() = status;
    response
}

// ---- sign-in ----

#[derive(Deserialize, Default)]
struct LoginQuery {
    failed: Option<String>,
}

async fn login_page(State(api): State<Arc<Api>>, Query(q): Query<LoginQuery>) -> Response {
    if api.config.tokens.is_none() {
        return Redirect::to("/ui/runs").into_response();
    }
    let session = Session {
        caller: Caller(None),
        csrf: String::new(),
    };
    page(
        &session,
        "Sign in",
        "",
        None,
        html! {
            @if q.failed.is_some() { p.error { "That token is not known to this server." } }
            form method="post" action="/ui/login" {
                p { label { "API token " input type="password" name="token" autofocus required size="40"; } }
                p { button { "Sign in" } }
            }
            p { "The token is one of the server's --tokens; it is kept in an HttpOnly cookie for this site only." }
        },
    )
}

async fn login(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let fields = form(&body);
    let token = field(&fields, "token").unwrap_or("").trim().to_string();
    let known = api
        .config
        .tokens
        .as_ref()
        .is_some_and(|t| t.caller(&token).is_some());
    if !known {
        return Redirect::to("/ui/login?failed=1").into_response();
    }
    // Hex: a token may hold any printable character, a cookie may not.
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/ui",
        hex::encode(&token)
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/ui/runs")).into_response()
}

async fn logout(
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = refused_post(&session, &headers, &form(&body)) {
        return refused;
    }
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0");
    let to = if session.caller.name().is_some() {
        "/ui/login"
    } else {
        "/ui/runs"
    };
    ([(header::SET_COOKIE, cookie)], Redirect::to(to)).into_response()
}

// ---- runs ----

#[derive(Deserialize, Default)]
struct RunsQuery {
    workflow: Option<String>,
    status: Option<String>,
    queue: Option<String>,
    key: Option<String>,
    from: Option<String>,
    until: Option<String>,
    cursor: Option<i64>,
    refresh: Option<String>,
    notice: Option<String>,
}

/// `YYYY-MM-DDTHH:MM` (a datetime-local field, read as UTC) or RFC 3339, in ms.
fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let full = if text.len() == 16 {
        format!("{text}:00Z")
    } else if text.ends_with('Z') {
        text.to_string()
    } else {
        format!("{text}Z")
    };
    let at = humantime::parse_rfc3339_weak(&full).ok()?;
    let ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    i64::try_from(ms).ok()
}

fn some(text: &Option<String>) -> Option<String> {
    text.as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

async fn runs_page(
    State(api): State<Arc<Api>>,
    Extension(session): Extension<Session>,
    q: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return problem_page(&session, StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let status = match some(&q.status).map(|s| s.parse::<RunStatus>()).transpose() {
        Ok(s) => s,
        Err(e) => return problem_page(&session, StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let (from, until) = (some(&q.from), some(&q.until));
    let created_from = from.as_deref().and_then(parse_time);
    let created_until = until.as_deref().and_then(parse_time);
    if from.is_some() && created_from.is_none() || until.is_some() && created_until.is_none() {
        return problem_page(
            &session,
            StatusCode::BAD_REQUEST,
            "a time is YYYY-MM-DDTHH:MM (UTC) or RFC 3339",
        );
    }
    let key = some(&q.key);
    let key_prefix = match (session.caller.name(), key.as_deref()) {
        (Some(caller), key) => Some(scoped_key(caller, key.unwrap_or(""))),
        (None, key) => key.map(str::to_string),
    };
    let filter = RunFilter {
        status,
        workflow: some(&q.workflow),
        queue: some(&q.queue),
        key_prefix,
        before: q.cursor,
        created_from,
        created_until,
        limit: PAGE,
        ..RunFilter::default()
    };
    // Counted under the same filter (the caller's scope, key and times
    // included), whatever the status picked.
    let store = api.host.store();
    let (runs, per_status, counts) = match tokio::try_join!(
        api.host.runs(&filter),
        store.count_runs(&filter),
        store.run_counts()
    ) {
        Ok(all) => all,
        Err(e) => {
            return problem_page(&session, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
    };
    let per_status: BTreeMap<String, i64> = per_status.into_iter().collect();
    let mut workflows: Vec<&str> = counts.iter().map(|c| c.workflow.as_str()).collect();
    workflows.dedup();
    // The query string of this view with `status` (or the cursor) changed.
    let link = |status: Option<&str>, cursor: Option<i64>| {
        let mut url = form_urlencoded::Serializer::new(String::new());
        let pairs = [
            ("workflow", filter.workflow.clone()),
            ("status", status.map(str::to_string)),
            ("queue", filter.queue.clone()),
            ("key", key.clone()),
            ("from", from.clone()),
            ("until", until.clone()),
            ("refresh", some(&q.refresh)),
            ("cursor", cursor.map(|c| c.to_string())),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                url.append_pair(k, &v);
            }
        }
        format!("/ui/runs?{}", url.finish())
    };
    let next = (runs.len() == PAGE as usize)
        .then(|| runs.last().map(|r| r.id))
        .flatten();
    let current = status.map(RunStatus::as_str);
    let refresh = q.refresh.is_some().then_some(5);
    let body = html! {
        @if let Some(notice) = &q.notice { p.notice #notice { (notice) } }
        p.counts #counts {
            a href=(link(None, None)) { "all " (per_status.values().sum::<i64>()) }
            @for (s, n) in &per_status {
                a href=(link(Some(s), None)) { (status_badge(s)) " " (n) }
            }
        }
        form method="get" action="/ui/runs" #filters {
            fieldset {
                legend { "Filter" }
                label { "workflow " select name="workflow" {
                    option value="" { "any" }
                    @for w in &workflows {
                        option value=(w) selected[filter.workflow.as_deref() == Some(*w)] { (w) }
                    }
                } } " "
                label { "status " select name="status" {
                    option value="" { "any" }
                    @for s in ["pending", "running", "waiting", "succeeded", "failed", "cancelled"] {
                        option value=(s) selected[current == Some(s)] { (s) }
                    }
                } } " "
                label { "queue " input name="queue" size="10" value=[filter.queue.as_deref()]; } " "
                label { "key or prefix " input name="key" size="16" value=[key.as_deref()]; } " "
                label { "created from " input type="datetime-local" name="from" value=[from.as_deref()]; } " "
                label { "until " input type="datetime-local" name="until" value=[until.as_deref()]; } " "
                label { input type="checkbox" name="refresh" value="on" checked[q.refresh.is_some()]; " auto-refresh" } " "
                button #apply { "Apply" }
                " " a href="/ui/runs" { "clear" }
                span { " (times in UTC)" }
            }
        }
        form method="post" action="/ui/runs/bulk" #bulk
            onsubmit="return confirm('Apply \u{201c}' + event.submitter.value + '\u{201d} to the selected runs?')" {
            input type="hidden" name="csrf" value=(session.csrf);
            table #runs {
                thead { tr {
                    th { input type="checkbox" title="select all"
                        onclick="for (const b of document.querySelectorAll('input[name=id]')) b.checked = this.checked"; }
                    th { "id" } th { "workflow" } th { "key" } th { "status" } th { "at step" }
                    th { "attempts" } th { "queue" } th { "created" } th { "updated" }
                } }
                tbody {
                    @for r in &runs {
                        tr data-key=(shown_key(&session, &r.key)) {
                            td { input type="checkbox" name="id" value=(r.id); }
                            td { (r.id) }
                            td { (r.workflow) " v" (r.workflow_version) }
                            td { a href={ "/ui/runs/" (r.id) } { (shown_key(&session, &r.key)) } }
                            td { (status_badge(shown_status(r))) }
                            td { (r.recovery_point) }
                            td { (r.attempts) }
                            td { (r.queue) }
                            td title=(time(r.created_at)) { (ago(r.created_at)) }
                            td title=(time(r.updated_at)) { (ago(r.updated_at)) }
                        }
                    }
                    @if runs.is_empty() { tr { td colspan="10" { "No runs match." } } }
                }
            }
            p {
                button name="action" value="retry" { "Retry selected" } " "
                button name="action" value="cancel" { "Cancel selected" }
                @if let Some(next) = next { " " a #next href=(link(current, Some(next))) { "Older runs →" } }
            }
        }
    };
    page(&session, "Runs", "runs", refresh, body)
}

/// A running run whose lease expired shows as stalled.
fn shown_status(run: &RunRecord) -> &'static str {
    if run.status == RunStatus::Running && run.locked_until.is_none_or(|u| u < now_ms()) {
        return "stalled";
    }
    run.status.as_str()
}

async fn bulk(
    State(api): State<Arc<Api>>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = form(&body);
    if let Some(refused) = refused_post(&session, &headers, &fields) {
        return refused;
    }
    let action = field(&fields, "action").unwrap_or("");
    let ids: Vec<i64> = fields
        .iter()
        .filter(|(k, _)| k == "id")
        .filter_map(|(_, v)| v.parse().ok())
        .take(MAX_BULK)
        .collect();
    if !matches!(action, "retry" | "cancel") || ids.is_empty() {
        return Redirect::to("/ui/runs?notice=Select+runs+and+an+action").into_response();
    }
    let (mut done, mut refused) = (0, Vec::new());
    for id in ids {
        let outcome = act(&api, &session, id, action).await;
        match outcome {
            Ok(_) => done += 1,
            Err(why) => refused.push(format!("run {id}: {why}")),
        }
    }
    let mut notice = format!(
        "{action}: {done} run{} done",
        if done == 1 { "" } else { "s" }
    );
    if !refused.is_empty() {
        notice.push_str(&format!(
            "; {} refused ({})",
            refused.len(),
            refused.join("; ")
        ));
    }
    let mut url = form_urlencoded::Serializer::new(String::from("/ui/runs?"));
    url.append_pair("notice", &notice);
    Redirect::to(&url.finish()).into_response()
}

/// Does `action` to run `id`, for `session`; says what happened.
async fn act(api: &Api, session: &Session, id: i64, action: &str) -> Result<String, String> {
    let run = match api.host.store().run(id).await {
        Ok(Some(run)) => run,
        Ok(None) => return Err("no such run".into()),
        Err(e) => return Err(e.to_string()),
    };
    if !visible(api, &session.caller, &run).await.unwrap_or(false) {
        return Err("no such run".into());
    }
    let (key, workflow) = (run.key.as_str(), Some(run.workflow.as_str()));
    let host = &api.host;
    let done = match action {
        "retry" | "upgrade" => host
            .requeue_on(key, workflow, action == "upgrade")
            .await
            .map(|r| {
                if r.status == RunStatus::Succeeded {
                    return "it had already succeeded".to_string();
                }
                drive(api, r.key.clone(), r.workflow.clone());
                format!(
                    "requeued at step `{}` (version {})",
                    r.recovery_point, r.workflow_version
                )
            }),
        "cancel" => {
            let by = session.caller.name().unwrap_or("dashboard");
            host.cancel(key, workflow, by).await.map(|c| c.to_string())
        }
        "unlock" => host
            .unlock(key, workflow)
            .await
            .map(|_| "its lease is broken; it is pending again".to_string()),
        other => return Err(format!("no action `{other}`")),
    };
    done.map_err(|e| e.to_string())
}

/// Runs a requeued run now if a slot for request-driven runs is free (a
/// worker picks it up otherwise).
fn drive(api: &Api, key: String, workflow: String) {
    let Ok(permit) = Arc::clone(&api.in_flight).try_acquire_owned() else {
        return;
    };
    let host = Arc::clone(&api.host);
    api.drives.spawn(async move {
        let _permit = permit;
        if let Err(e) = host.retry(&key, Some(&workflow)).await {
            tracing::info!("dashboard retry of {key}: {e}");
        }
    });
}

async fn run_action(
    State(api): State<Arc<Api>>,
    Extension(session): Extension<Session>,
    Path((id, action)): Path<(i64, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = form(&body);
    if let Some(refused) = refused_post(&session, &headers, &fields) {
        return refused;
    }
    let notice = match act(&api, &session, id, &action).await {
        Ok(done) => format!("{action}: {done}"),
        Err(why) => format!("{action} refused: {why}"),
    };
    let mut url = form_urlencoded::Serializer::new(format!("/ui/runs/{id}?"));
    url.append_pair("notice", &notice);
    Redirect::to(&url.finish()).into_response()
}

#[derive(Deserialize, Default)]
struct RunQuery {
    notice: Option<String>,
}

/// Most runs the tree of staged runs shows.
const MAX_TREE: usize = 500;

/// The runs staged under `id`, as a tree (at most `depth` levels and
/// `left` runs in all).
fn children_tree<'a>(
    api: &'a Api,
    session: &'a Session,
    id: i64,
    depth: u32,
    left: &'a std::sync::atomic::AtomicUsize,
) -> futures_util::future::BoxFuture<'a, Markup> {
    use std::sync::atomic::Ordering;
    Box::pin(async move {
        let room = left.load(Ordering::Relaxed);
        if room == 0 {
            return html! {};
        }
        let filter = RunFilter {
            parent: Some(id),
            limit: u32::try_from(room.min(200)).unwrap_or(200),
            ..RunFilter::default()
        };
        let mut children = api.host.runs(&filter).await.unwrap_or_default();
        children.reverse();
        left.fetch_sub(children.len().min(room), Ordering::Relaxed);
        let mut items = Vec::new();
        for c in &children {
            let below = if depth > 1 {
                children_tree(api, session, c.id, depth - 1, left).await
            } else {
                html! {}
            };
            items.push(html! {
                li {
                    a href={ "/ui/runs/" (c.id) } { (c.workflow) " · " (shown_key(session, &c.key)) }
                    " " (status_badge(shown_status(c)))
                    @if c.awaited { " awaited" } @else { " staged" }
                    " at `" (c.recovery_point) "`"
                    (below)
                }
            });
        }
        html! { @if !items.is_empty() { ul { @for i in items { (i) } } } }
    })
}

async fn run_page(
    State(api): State<Arc<Api>>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    Query(q): Query<RunQuery>,
) -> Response {
    let detail = match detail_of(&api, id).await {
        Ok(d) => d,
        Err(_) => return problem_page(&session, StatusCode::NOT_FOUND, "no such run"),
    };
    if !visible(&api, &session.caller, &detail.run)
        .await
        .unwrap_or(false)
    {
        return problem_page(&session, StatusCode::NOT_FOUND, "no such run");
    }
    let run = &detail.run;
    // What the API answers for this run's key, once it is stored.
    let response = api
        .host
        .store()
        .stored_response(run.id)
        .await
        .ok()
        .flatten();
    let shown = std::sync::atomic::AtomicUsize::new(MAX_TREE);
    let tree = children_tree(&api, &session, run.id, 3, &shown).await;
    let action = |name: &str, label: &str, confirm: &str| {
        html! {
            form.inline method="post" action={ "/ui/runs/" (run.id) "/" (name) }
                onsubmit={ "return confirm('" (confirm) "')" } {
                input type="hidden" name="csrf" value=(session.csrf);
                button #(name) { (label) }
            }
        }
    };
    let refresh = (!run.status.is_final()).then_some(2);
    let body = html! {
        @if let Some(notice) = &q.notice { p.notice #notice { (notice) } }
        dl #summary {
            dt { "workflow" } dd { a href="/ui/workflows" { (run.workflow) } " version " (run.workflow_version) }
            dt { "key" } dd { (shown_key(&session, &run.key)) " (run " (run.id) ")" }
            dt { "status" } dd #status { (status_badge(shown_status(run))) }
            dt { "recovery point" } dd #recovery { (run.recovery_point) }
            dt { "attempts" } dd { (run.attempts) }
            dt { "queue" } dd { (run.queue) }
            @if let Some(by) = &run.locked_by {
                dt { "lease" } dd { (by) " until " (time(run.locked_until.unwrap_or(0))) }
            }
            @if let Some(by) = run.cancel_requested_by.as_ref().filter(|_| !run.status.is_final()) {
                dt { "cancel" } dd #cancel-requested { "requested by " (by) ": cancelled when its current step ends" }
            }
            @if let Some(parent) = run.parent_run_id {
                dt { "staged by" } dd { a href={ "/ui/runs/" (parent) } { "run " (parent) } }
            }
            dt { "created" } dd { (time(run.created_at)) }
            dt { "updated" } dd { (time(run.updated_at)) }
            @if let Some(at) = run.finished_at { dt { "finished" } dd { (time(at)) } }
        }
        p #actions {
            (action("retry", "Retry", "Retry this run from its recovery point?")) " "
            (action("upgrade", "Retry on the latest version", "Move this run to the latest version of its workflow and retry it?")) " "
            (action("cancel", "Cancel", "Cancel this run and its unfinished staged runs?")) " "
            (action("unlock", "Unlock", "Break this run's lease? Only do this if its worker is gone."))
        }
        @if let Some(e) = run.last_error.as_ref().filter(|_| run.status != RunStatus::Succeeded) {
            h2 { "Last error" }
            p.error #last-error { "step " code { (e.step) } ", attempt " (e.attempt) ": " strong { (e.kind) } " — " (e.message) }
        }
        @if let Some(result) = &run.result { h2 { "Result" } pre #result { (json(result)) } }
        @if let Some(stored) = &response {
            h2 { "Stored HTTP response" }
            p #http-status { "every request with this run's key is answered " strong { (stored.code) } " with:" }
            pre #response { (stored.body) }
        } @else if let Some(code) = run.failure_http_status.or(run.http_status) {
            p #http-status { "HTTP status set by its steps (answered over the API): " strong { (code) } }
        }
        h2 { "Args" } pre #args { (json(&run.args)) }
        h2 { "Attributes" } pre #attributes { (json(&Value::Object(run.attributes.clone()))) }
        h2 { "Timeline" }
        table #timeline {
            thead { tr { th { "step" } th { "attempt" } th { "started" } th { "took" } th { "outcome" } th { "error" } th { "logs" } } }
            tbody {
                @for e in &detail.timeline {
                    tr {
                        td { (e.step) } td { (e.attempt) } td { (time(e.started_at)) }
                        td { ((e.finished_at - e.started_at).max(0)) " ms" }
                        td { (status_badge(match e.outcome.as_str() { "committed" | "finished" => "succeeded", o => o })) }
                        td { @if let Some(k) = &e.error_kind { strong { (k) } ": " } (e.message.as_deref().unwrap_or("")) }
                        td { @if !e.logs.is_empty() {
                            details { summary { (e.logs.len()) @if e.logs.len() == 1 { " line" } @else { " lines" } }
                                pre { @for l in &e.logs { (l.level) " " (l.message) "\n" } } }
                        } }
                    }
                }
                @if detail.timeline.is_empty() { tr { td colspan="7" { "No step has run yet." } } }
            }
        }
        h2 { "Staged and awaited runs" }
        div #children { @if detail.children.is_empty() { p { "None." } } @else { (tree) } }
    };
    page(
        &session,
        &format!("Run {}", shown_key(&session, &run.key)),
        "runs",
        refresh,
        body,
    )
}

// ---- workflows ----

async fn workflows_page(
    State(api): State<Arc<Api>>,
    Extension(session): Extension<Session>,
) -> Response {
    let versions = match api.host.workflow_versions(None).await {
        Ok(v) => v,
        Err(e) => return problem_page(&session, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let activity = api
        .host
        .store()
        .activity(now_ms())
        .await
        .unwrap_or_default();
    let runs_of = |name: &str, version: u32| {
        activity
            .per_version
            .iter()
            .find(|(w, v, _)| w == name && *v == version)
            .map_or(0, |(_, _, n)| *n)
    };
    let mut sections = Vec::new();
    let mut by_name: BTreeMap<&str, Vec<&crate::store::WorkflowVersion>> = BTreeMap::new();
    for v in &versions {
        by_name.entry(v.name.as_str()).or_default().push(v);
    }
    for (name, list) in by_name {
        let Some(latest) = list.iter().map(|v| v.version).max() else {
            continue;
        };
        let definition = match api.host.workflow_version(name, latest).await {
            Ok(w) => w,
            Err(e) => {
                return problem_page(&session, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
            }
        };
        let d = &definition.definition;
        sections.push(html! {
            section.workflow data-name=(name) {
                h2 { (name) }
                @if let Some(text) = &d.description { p { (text) } }
                p { "New runs get " strong { "version " (latest) } "." }
                table {
                    thead { tr { th { "version" } th { "definition" } th { "registered" } th { "runs" } } }
                    tbody { @for v in list.iter().rev() {
                        tr { td { (v.version) } td { code { (&v.definition_hash[..v.definition_hash.len().min(16)]) } }
                             td { (time(v.created_at)) } td { (runs_of(name, v.version)) } }
                    } }
                }
                h3 { "Steps of version " (latest) }
                table {
                    thead { tr { th { "step" } th { "component" } th { "grants" } th { "limits" } } }
                    tbody { @for s in &d.steps {
                        tr {
                            td { (s.name) }
                            td { code title=(s.component) { (&s.component[..s.component.len().min(16)]) } br; small { (s.file) } }
                            td {
                                @if let Some(sql) = &s.sql { "sql " (match sql.mode { crate::sql::SqlMode::ReadOnly => "read-only", crate::sql::SqlMode::ReadWrite => "read-write" }) @if sql.ddl { " + ddl" } @if !sql.tables.is_empty() { " on " (sql.tables.join(", ")) } br; }
                                @for h in &s.allowed_outbound_hosts { "http " (h) br; }
                                @if !s.env.is_empty() { "env " (s.env.keys().cloned().collect::<Vec<_>>().join(", ")) br; }
                                @if let Some(a) = &s.awaits { "awaits " (a.workflow) br; }
                                @if s.sql.is_none() && s.allowed_outbound_hosts.is_empty() && s.env.is_empty() { "none" }
                            }
                            td { small { "timeout " (humantime::format_duration(s.policy.timeout)) ", attempts " (s.policy.max_attempts) } }
                        }
                    } }
                }
            }
        });
    }
    let body = html! {
        @if sections.is_empty() { p { "No workflow is registered yet: " code { "acidic register workflow.toml" } } }
        @for s in sections { (s) }
    };
    page(&session, "Workflows", "workflows", None, body)
}

// ---- queues and health ----

/// Runs finished per minute over the last hour, by outcome, as an SVG bar chart.
fn throughput_chart(finished: &[(i64, String, i64)], now: i64) -> Markup {
    const W: i64 = 12;
    const H: i64 = 120;
    let first = (now / 60_000 - 59) * 60_000;
    let mut minutes = vec![[0i64; 3]; 60];
    for (minute, status, n) in finished {
        let slot = (minute - first) / 60_000;
        let which = match status.as_str() {
            "succeeded" => 0,
            "failed" => 1,
            _ => 2,
        };
        if let Some(m) = usize::try_from(slot).ok().and_then(|s| minutes.get_mut(s)) {
            m[which] += n;
        }
    }
    let most = minutes
        .iter()
        .map(|m| m.iter().sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let colors = ["#2e7d32", "#c62828", "#546e7a"];
    let totals = minutes.iter().fold([0i64; 3], |mut t, m| {
        for i in 0..3 {
            t[i] += m[i];
        }
        t
    });
    html! {
        svg #throughput width=(W * 60 + 40) height=(H + 30) role="img"
            aria-label="runs finished per minute over the last hour" xmlns="http://www.w3.org/2000/svg" {
            line x1="0" y1=(H) x2=(W * 60) y2=(H) stroke="#8792a2" {}
            @for (i, m) in minutes.iter().enumerate() {
                @let mut y = H;
                @for (k, n) in m.iter().enumerate() {
                    @if *n > 0 {
                        @let h = (n * H / most).max(1);
                        @let top = { y -= h; y };
                        rect x=(i as i64 * W) y=(top) width=(W - 2) height=(h) fill=(colors[k]) {
                            title { (n) " " (["succeeded", "failed", "cancelled"][k]) }
                        }
                    }
                }
            }
            text x=(W * 60 + 4) y="10" font-size="10" { (most) "/min" }
            text x="0" y=(H + 14) font-size="10" { "60 min ago" }
            text x=(W * 60 - 20) y=(H + 14) font-size="10" { "now" }
        }
        p { (status_badge("succeeded")) " " (totals[0]) "  " (status_badge("failed")) " " (totals[1]) "  " (status_badge("cancelled")) " " (totals[2]) " in the last hour" }
    }
}

async fn queues_page(
    State(api): State<Arc<Api>>,
    Extension(session): Extension<Session>,
) -> Response {
    let now = now_ms();
    let store = api.host.store();
    let (counts, activity) =
        match tokio::try_join!(store.run_counts(), store.activity(now - 3_600_000)) {
            Ok(both) => both,
            Err(e) => {
                return problem_page(&session, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
            }
        };
    let mut queues: BTreeMap<&str, (BTreeMap<&str, i64>, Option<i64>)> = BTreeMap::new();
    for c in &counts {
        let q = queues.entry(c.queue.as_str()).or_default();
        *q.0.entry(c.status.as_str()).or_default() += c.count;
        if let Some(due) = c.oldest_due {
            q.1 = Some(q.1.map_or(due, |d| d.min(due)));
        }
    }
    let statuses = [
        "pending",
        "running",
        "waiting",
        "succeeded",
        "failed",
        "cancelled",
    ];
    let body = html! {
        h2 { "Queues" }
        table #queues {
            thead { tr { th { "queue" } @for s in statuses { th { (s) } } th { "oldest runnable" } } }
            tbody {
                @for (name, (by, oldest)) in &queues {
                    tr {
                        td { a href={ "/ui/runs?" (form_urlencoded::Serializer::new(String::new()).append_pair("queue", name).finish()) } { (name) } }
                        @for s in statuses { td { (by.get(s).copied().unwrap_or(0)) } }
                        td { @if let Some(due) = oldest { (ago(*due)) } @else { "—" } }
                    }
                }
                @if queues.is_empty() { tr { td colspan="8" { "No runs yet." } } }
            }
        }
        h2 { "Workers seen (from leases)" }
        table #workers {
            thead { tr { th { "holder" } th { "runs leased" } th { "latest lease ends" } } }
            tbody {
                @for (holder, n, until) in &activity.leases {
                    tr { td { (holder) } td { (n) } td { (time(*until)) @if *until < now { " (expired: stalled)" } } }
                }
                @if activity.leases.is_empty() { tr { td colspan="3" { "No run is leased right now." } } }
            }
        }
        h2 { "Runs finished per minute, last hour" }
        (throughput_chart(&activity.finished, now))
        p { "Database: " @match store.ping().await { Ok(()) => { "answering" }, Err(e) => { span.error { (e.to_string()) } } } }
    };
    page(&session, "Queues & health", "queues", Some(10), body)
}

//! `acidic serve`: the HTTP API. A client POSTs a run with an
//! `Idempotency-Key` and retries until the answer is definitive; the first
//! request creates and works the run, every later one with the same key
//! gets the stored answer byte for byte (`Idempotent-Replayed: true`), waits
//! for it while it is in flight, or is told the key was used with other
//! arguments. The process also works runs (embedded workers) unless told
//! not to, and drains on SIGTERM: it stops accepting, lets each run finish
//! its current step, and hands the runs back.

mod auth;
pub mod openapi;
pub mod problem;
mod resource;
mod routes;
mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

pub use auth::Tokens;
use problem::Problem;

use crate::error::{Error, Result};
use crate::host::Host;
use crate::worker::WorkerOptions;

/// How much longer than the longest wait a request may take by default, body included.
pub const REQUEST_MARGIN: Duration = Duration::from_secs(30);

/// Runs driven for requests at once, by default.
pub const DEFAULT_IN_FLIGHT: usize = 32;

/// How `serve` behaves.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Who may call, by bearer token; `None` lets anyone on loopback in.
    pub tokens: Option<Tokens>,
    /// How long a request waits for its run when it does not say (`Prefer: wait=N`).
    pub default_wait: Duration,
    /// The longest wait a request may ask for (here and in `?wait=` of `GET`).
    pub max_wait: Duration,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Embedded workers: `None` serves the API only.
    pub workers: Option<WorkerOptions>,
    /// How long finished runs (and so their keys' stored answers) are kept.
    pub retention: Duration,
    /// The longest a request may take, its body included (at least `max_wait`).
    pub request_timeout: Duration,
    /// Runs driven for requests at once; a request that finds none free
    /// within its wait is answered `503` and its run handed back (pending).
    pub max_in_flight: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            tokens: None,
            default_wait: Duration::from_secs(10),
            max_wait: Duration::from_secs(60),
            max_body: 1024 * 1024,
            workers: Some(WorkerOptions::default()),
            retention: Duration::from_secs(72 * 3600),
            request_timeout: Duration::from_secs(60) + REQUEST_MARGIN,
            max_in_flight: DEFAULT_IN_FLIGHT,
        }
    }
}

/// Binds `addr` for [`serve`], refusing an address beyond loopback when no
/// tokens protect the API.
pub async fn bind(addr: &str, tokens: Option<&Tokens>) -> Result<TcpListener> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| Error::Serve(format!("cannot resolve --listen {addr}: {e}")))?
        .collect();
    let Some(first) = resolved.first().copied() else {
        return Err(Error::Serve(format!(
            "--listen {addr} resolves to no address"
        )));
    };
    if tokens.is_none() && !resolved.iter().all(|a| a.ip().is_loopback()) {
        return Err(Error::Serve(format!(
            "refusing to listen on {addr} without --tokens: anyone who reaches it could start runs; \
             give --tokens FILE (lines `caller:token`) or listen on 127.0.0.1"
        )));
    }
    TcpListener::bind(first)
        .await
        .map_err(|e| Error::Serve(format!("cannot listen on {first}: {e}")))
}

/// The API's shared state.
pub(crate) struct Api {
    pub host: Arc<Host>,
    pub config: ServeConfig,
    /// Runs driven for requests, beyond any one request's wait.
    pub drives: TaskTracker,
    /// One permit per run driven for a request.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Becomes true when the server starts draining.
    pub draining: watch::Receiver<bool>,
    pub metrics: ApiMetrics,
    /// The dashboard's own state.
    pub ui: ui::Ui,
}

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HttpLabels {
    route: String,
    method: String,
    status: String,
}

/// A route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    route: String,
}

/// The outcome of an idempotent request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    outcome: String,
}

/// The API's own metrics, registered with the host's.
#[derive(Clone)]
pub(crate) struct ApiMetrics {
    requests: Family<HttpLabels, Counter>,
    seconds: Family<RouteLabels, Histogram>,
    idempotent: Family<OutcomeLabels, Counter>,
}

fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

impl ApiMetrics {
    fn new(host: &Host) -> ApiMetrics {
        let metrics = ApiMetrics {
            requests: Family::default(),
            seconds: Family::new_with_constructor(request_buckets as fn() -> _),
            idempotent: Family::default(),
        };
        let m = metrics.clone();
        host.telemetry().register(move |r| {
            r.register(
                "http_requests",
                "HTTP requests by route, method and status",
                m.requests,
            );
            r.register(
                "http_request_duration_seconds",
                "HTTP request durations by route",
                m.seconds,
            );
            r.register(
                "idempotent_requests",
                "POSTs of runs by outcome: created, resumed, replayed, latched, conflict, mismatch, shed",
                m.idempotent,
            );
        });
        metrics
    }

    /// Counts an idempotent request's outcome.
    pub fn outcome(&self, outcome: &str) {
        self.idempotent
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }
}

/// Serves the API on `listener` until `shutdown` resolves, working runs
/// meanwhile if `config.workers` asks. Then drains: stops accepting,
/// answers waiting requests, lets each run finish its current step and
/// hands it back.
pub async fn serve(
    host: Arc<Host>,
    listener: TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (drain, draining) = watch::channel(false);
    let metrics = ApiMetrics::new(&host);
    let workers = config.workers.clone();
    let api = Arc::new(Api {
        host: Arc::clone(&host),
        config: config.clone(),
        drives: TaskTracker::new(),
        in_flight: Arc::new(tokio::sync::Semaphore::new(config.max_in_flight.max(1))),
        draining: draining.clone(),
        metrics,
        ui: ui::Ui::new(),
    });
    let app = router(Arc::clone(&api));

    let worker = workers.map(|options| {
        let host = Arc::clone(&host);
        let mut stop = draining.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|d| *d).await;
            };
            host.work(options, stopped).await
        })
    });

    let mut stop = draining.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stop.wait_for(|d| *d).await;
    });
    let signal = tokio::spawn(async move {
        shutdown.await;
        tracing::info!("draining: no new connections; runs finish their current step");
        let _ = drain.send(true);
    });
    let served = server.await;
    signal.abort();
    // Runs still in flight finish their current step, then hand their lease back.
    host.stop();
    api.drives.close();
    api.drives.wait().await;
    if let Some(worker) = worker {
        match worker.await {
            Ok(Ok(summary)) => tracing::info!(?summary, "workers stopped"),
            Ok(Err(e)) => tracing::warn!("workers stopped on an error: {e}"),
            Err(e) => tracing::error!("the worker task failed: {e}"),
        }
    }
    served.map_err(|e| Error::Serve(format!("the server failed: {e}")))
}

fn router(api: Arc<Api>) -> Router {
    use axum::routing::{get, post};
    let protected = Router::new()
        .route("/v1/workflows", get(routes::list_workflows))
        .route("/v1/workflows/{workflow}", get(routes::show_workflow))
        .route("/v1/workflows/{workflow}/runs", post(routes::create_run))
        .route("/v1/runs", get(routes::list_runs))
        .route("/v1/runs/{workflow}/{key}", get(routes::show_run))
        .route("/v1/runs/{workflow}/{key}/retry", post(routes::retry_run))
        .route("/v1/runs/{workflow}/{key}/cancel", post(routes::cancel_run))
        .route("/metrics", get(routes::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&api),
            authenticate,
        ));
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/problems/{slug}", get(routes::problem_type))
        .route("/openapi.json", get(openapi::openapi_json))
        .merge(protected)
        .merge(ui::router(Arc::clone(&api)))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(api.config.max_body))
        // A request (its body included) that outlasts the longest wait a
        // client may ask for is cut off: a slow client cannot hold a
        // connection and its task forever.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            api.config.request_timeout,
        ))
        .layer(axum::middleware::from_fn(problem_bodies))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&api),
            count_request,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http().on_failure(()))
        .with_state(api)
}

/// Who is calling, once authenticated: `None` when the API has no tokens.
#[derive(Clone, Debug)]
pub(crate) struct Caller(pub Option<String>);

impl Caller {
    pub fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// Lets a request in if it carries a known bearer token (or if there are no tokens).
async fn authenticate(State(api): State<Arc<Api>>, mut request: Request, next: Next) -> Response {
    let caller = match &api.config.tokens {
        None => Caller(None),
        Some(tokens) => {
            let token = request
                .headers()
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    let (scheme, token) = v.trim().split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
                });
            let Some(token) = token else {
                return Problem::new(
                    "unauthorized",
                    "this API needs `Authorization: Bearer <token>`",
                )
                .into_response();
            };
            match tokens.caller(token) {
                Some(caller) => Caller(Some(caller.to_string())),
                None => {
                    return Problem::new("unauthorized", "unknown bearer token").into_response();
                }
            }
        }
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Counts every request by route, method and status, and times it.
async fn count_request(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    api.metrics
        .requests
        .get_or_create(&HttpLabels {
            route: route.clone(),
            method,
            status: response.status().as_u16().to_string(),
        })
        .inc();
    api.metrics
        .seconds
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Makes every error answer `application/problem+json`, including those a
/// layer makes on its own (a request cut off by the timeout, say).
async fn problem_bodies(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| {
            // A problem already, or a page of the dashboard's.
            v.as_bytes().starts_with(problem::PROBLEM_JSON.as_bytes())
                || v.as_bytes().starts_with(b"text/html")
        });
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let slug = match status.as_u16() {
        400 => "invalid-request",
        404 => "not-found",
        405 => "method-not-allowed",
        408 => "request-timeout",
        413 => "body-too-large",
        503 => "unavailable",
        _ => "internal",
    };
    let reason = status.canonical_reason().unwrap_or("error");
    let (mut parts, _) = response.into_parts();
    let mut problem = Problem::new(slug, format!("{} {reason}", status.as_u16()))
        .with_status(status)
        .into_response();
    for name in [axum::http::header::ALLOW, axum::http::header::RETRY_AFTER] {
        if let Some(v) = parts.headers.remove(&name) {
            problem.headers_mut().insert(name, v);
        }
    }
    problem
}

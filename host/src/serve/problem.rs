//! Errors as `application/problem+json` (RFC 9457): a `type` per kind of
//! problem, a title, the status, and what exactly was wrong.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::Error;

/// The media type of every error this API answers with.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every kind of problem the API reports: its slug (the `type` is
/// `/problems/<slug>`, served as a description), status and title.
pub const KINDS: &[(&str, u16, &str)] = &[
    (
        "invalid-idempotency-key",
        400,
        "Missing or malformed Idempotency-Key",
    ),
    ("invalid-body", 400, "The body is not a JSON object"),
    ("invalid-request", 400, "The request is malformed"),
    ("unauthorized", 401, "Missing or unknown bearer token"),
    ("unknown-workflow", 404, "No such workflow"),
    ("run-not-found", 404, "No such run"),
    ("not-found", 404, "No such resource"),
    (
        "method-not-allowed",
        405,
        "Method not allowed on this resource",
    ),
    (
        "run-in-progress",
        409,
        "The run is being worked on by another request",
    ),
    (
        "invalid-state",
        409,
        "The run is not in a state that allows this",
    ),
    ("run-cancelled", 409, "The run was cancelled"),
    ("body-too-large", 413, "The body is too large"),
    (
        "idempotency-key-mismatch",
        422,
        "The key was used with other arguments",
    ),
    ("run-failed", 500, "The run failed"),
    ("internal", 500, "Internal error"),
    (
        "step-failed-retryable",
        503,
        "A step failed; retry with the same key",
    ),
    ("unavailable", 503, "The service cannot answer now"),
];

/// An `application/problem+json` body, as documented (RFC 9457).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProblemDoc {
    /// `/problems/<kind>`: what kind of problem (described at that path).
    #[serde(rename = "type")]
    pub kind: String,
    /// The kind's title.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What exactly was wrong.
    pub detail: String,
}

/// A problem to answer with.
#[derive(Debug, Clone)]
pub struct Problem {
    slug: &'static str,
    status: StatusCode,
    title: &'static str,
    detail: String,
    extra: Map<String, Value>,
    retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

impl Problem {
    /// A problem of kind `slug` (one of [`KINDS`]) with `detail`.
    pub fn new(slug: &'static str, detail: impl Into<String>) -> Problem {
        let (status, title) = KINDS
            .iter()
            .find(|(s, _, _)| *s == slug)
            .map(|(_, status, title)| (*status, *title))
            .unwrap_or((500, "Internal error"));
        Problem {
            slug,
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            title,
            detail: detail.into(),
            extra: Map::new(),
            retry_after: None,
        }
    }

    /// The same problem answered with another status (a step's own).
    pub fn with_status(mut self, status: StatusCode) -> Problem {
        self.status = status;
        self
    }

    /// The same problem with one more member.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Problem {
        self.extra.insert(name.to_string(), value.into());
        self
    }

    /// The same problem with a `Retry-After` of `seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Problem {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// Its status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its kind.
    pub fn slug(&self) -> &'static str {
        self.slug
    }

    /// The body, as JSON text.
    pub fn body(&self) -> String {
        let body = Body {
            kind: format!("/problems/{}", self.slug),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            extra: &self.extra,
        };
        serde_json::to_string(&body).unwrap_or_else(|_| String::from("{}"))
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Problem {
        match &e {
            Error::UnknownWorkflow(name) => Problem::new(
                "unknown-workflow",
                format!("workflow `{name}` is not registered"),
            )
            .with("workflow", name.as_str()),
            Error::RunNotFound(_) => Problem::new("run-not-found", "no run has this key"),
            Error::InvalidKey(_) => Problem::new("invalid-idempotency-key", e.to_string()),
            Error::ArgsMismatch { .. } => Problem::new(
                "idempotency-key-mismatch",
                "this Idempotency-Key was first used with other arguments; \
                 use a new key for new arguments",
            ),
            Error::Locked { remaining_ms, .. } => Problem::new(
                "run-in-progress",
                "another request or worker is inside one of this run's steps",
            )
            .retry_after(retry_seconds(*remaining_ms)),
            Error::InvalidState { status, hint, .. } => {
                Problem::new("invalid-state", format!("the run is {status}: {hint}"))
                    .with("run_status", status.as_str())
            }
            Error::UpgradeWithoutStep { step, .. } => {
                Problem::new("invalid-state", e.to_string()).with("step", step.as_str())
            }
            Error::Database(_) | Error::Conflict { .. } => {
                tracing::warn!("API request failed on the database: {e}");
                Problem::new("unavailable", "the database did not answer; try again").retry_after(1)
            }
            _ => {
                tracing::error!("API request failed: {e}");
                Problem::new(
                    "internal",
                    "internal error; the server's log has the details",
                )
            }
        }
    }
}

/// Seconds to wait for something `ms` milliseconds away, at least 1.
pub fn retry_seconds(ms: i64) -> u64 {
    u64::try_from(ms.max(0)).unwrap_or(0).div_ceil(1000).max(1)
}

//! `GET /openapi.json`: the API's OpenAPI 3.1 document, generated from the
//! handlers' annotations (utoipa), with bearer auth declared.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::routes;

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "acidic",
        description = "Idempotent, ACID multi-step runs over HTTP. POST a run with an \
            Idempotency-Key and retry with the same key until the answer is definitive: \
            a finished key's stored answer is replayed byte for byte. Keys are scoped per \
            caller and kept as long as their finished run (72 h by default)."
    ),
    paths(
        routes::create_run,
        routes::show_run,
        routes::list_runs,
        routes::retry_run,
        routes::cancel_run,
        routes::list_workflows,
        routes::show_workflow,
        routes::metrics,
        routes::healthz,
        routes::readyz,
        routes::problem_type,
        openapi_json,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "runs", description = "Start, inspect, retry and cancel runs"),
        (name = "workflows", description = "Registered workflows"),
        (name = "operations", description = "Probes, metrics, problem types and this document"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "This document", body = Object)))]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

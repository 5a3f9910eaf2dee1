//! Outbound HTTP from a step, over standard `wasi:http`. The host lets a
//! step reach only the hosts its manifest lists in `allowed_outbound_hosts`;
//! anything else fails with `HttpRequestDenied` (a fatal [`StepError`]).
//!
//! A retried step calls again: send [`crate::Ctx::step_key`] as the API's
//! idempotency key, as [`post_json`] does.

use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

use crate::StepError;

/// POSTs `body` (JSON text) to `api` + `path` (`api` is `http://host:port`
/// or `https://host`) with the header `Idempotency-Key: key`; returns the
/// status and the answer's text. Network failures are retryable errors; a
/// request the host refused is fatal.
pub fn post_json(api: &str, path: &str, key: &str, body: &str) -> Result<(u16, String), StepError> {
    let fail = |what: &str, e: &dyn std::fmt::Debug| StepError::retryable(format!("{what}: {e:?}"));
    let (scheme, authority) = match api.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest.trim_end_matches('/')),
        Some(("https", rest)) => (Scheme::Https, rest.trim_end_matches('/')),
        _ => return Err(StepError::fatal(format!("`{api}` is not an http(s) URL"))),
    };
    let headers = Fields::from_list(&[
        ("content-type".to_string(), b"application/json".to_vec()),
        ("idempotency-key".to_string(), key.as_bytes().to_vec()),
        (
            "content-length".to_string(),
            body.len().to_string().into_bytes(),
        ),
    ])
    .map_err(|e| fail("headers", &e))?;
    let request = OutgoingRequest::new(headers);
    let _ = request.set_method(&Method::Post);
    let _ = request.set_scheme(Some(&scheme));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(path));
    let outgoing = request.body().map_err(|e| fail("request body", &e))?;
    let pending =
        outgoing_handler::handle(request, None).map_err(|e| fail("request refused", &e))?;
    {
        let stream = outgoing.write().map_err(|e| fail("body stream", &e))?;
        stream
            .blocking_write_and_flush(body.as_bytes())
            .map_err(|e| fail("writing the body", &e))?;
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| fail("finishing the body", &e))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(ErrorCode::HttpRequestDenied))) => {
            return Err(StepError::fatal(format!(
                "{api} is not in this step's allowed_outbound_hosts"
            )));
        }
        Some(Ok(Err(code))) => return Err(fail("request failed", &code)),
        other => return Err(fail("no response", &other.map(|_| ()))),
    };
    let status = response.status();
    let incoming = response.consume().map_err(|e| fail("response body", &e))?;
    let stream = incoming.stream().map_err(|e| fail("response stream", &e))?;
    let mut answer = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        answer.extend_from_slice(&chunk);
    }
    Ok((status, String::from_utf8_lossy(&answer).into_owned()))
}

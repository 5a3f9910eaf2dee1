//! Charges a card through a payment API over `wasi:http`, the way
//! rocket-rides charges Stripe: the step's `step_key` is sent as the
//! `Idempotency-Key`, so a retried step never charges twice.
//!
//! Args: `{"api": "http://127.0.0.1:8089", "cents": 1234}`; optional
//! `"fail_after_charge": n` fails attempts 1..=n after the charge went
//! through (a lost answer), to show that the retry is deduplicated.
//! The step's manifest must list the API in `allowed_outbound_hosts`.

use acidic_guest::{Ctx, Outcome, Step, StepError, export_step};
use serde_json::{Value, json};
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

struct Charge;

impl Step for Charge {
    fn run(cx: &mut Ctx) -> Result<Outcome, StepError> {
        let api: String = cx.arg("api")?;
        let cents: u64 = cx.arg("cents")?;
        let body = json!({ "cents": cents, "run": cx.key() }).to_string();
        let (status, answer) = post(&api, "/charges", cx.step_key(), &body)?;
        if !(200..300).contains(&status) {
            return Err(StepError::retryable(format!(
                "payment API answered {status}: {answer}"
            )));
        }
        let charge: Value = serde_json::from_str(&answer)
            .map_err(|e| StepError::retryable(format!("payment API answer is not JSON: {e}")))?;
        let fail_after: u32 = cx
            .args()
            .get("fail_after_charge")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32;
        if cx.attempt() <= fail_after {
            return Err(StepError::retryable(
                "the connection dropped after the charge (simulated)",
            ));
        }
        cx.set("charge", &charge)?;
        Outcome::finish(&charge)
    }
}

/// POSTs `body` as JSON to `api` + `path` with an idempotency key; returns
/// the status and the answer's text.
fn post(api: &str, path: &str, key: &str, body: &str) -> Result<(u16, String), StepError> {
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

export_step!(Charge);

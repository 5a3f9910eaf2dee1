//! Charges a card through a payment API over `wasi:http`, the way
//! rocket-rides charges Stripe: the step's `step_key` is sent as the
//! `Idempotency-Key`, so a retried step never charges twice.
//!
//! Args: `{"api": "http://127.0.0.1:8089", "cents": 1234}`; optional
//! `"fail_after_charge": n` fails attempts 1..=n after the charge went
//! through (a lost answer), to show that the retry is deduplicated.
//! The step's manifest must list the API in `allowed_outbound_hosts`.

use acidic_guest::http::post_json;
use acidic_guest::{Ctx, Outcome, Step, StepError, export_step};
use serde_json::{Value, json};

struct Charge;

impl Step for Charge {
    fn run(cx: &mut Ctx) -> Result<Outcome, StepError> {
        let api: String = cx.arg("api")?;
        let cents: u64 = cx.arg("cents")?;
        let body = json!({ "cents": cents, "run": cx.key() }).to_string();
        let (status, answer) = post_json(&api, "/charges", cx.step_key(), &body)?;
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

export_step!(Charge);

//! Rocket Rides' "create a ride" operation as three acidic steps.
//!
//! `create_ride` inserts the ride and its audit record into the application's
//! tables (`schema.sql`), in the step's transaction; `charge_card` charges for
//! it through the payment API named by `PAYMENTS_API` over `wasi:http`, with
//! its `step_key` as the idempotency key (without `PAYMENTS_API` it charges
//! locally), then records the charge; `send_receipt` stages a run of the
//! `send-receipt` workflow, which exists only if this step commits.

use acidic_guest::http::post_json;
use acidic_guest::{Ctx, Job, Outcome, Step, StepError, export_step};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Ride {
    user: String,
    origin: [f64; 2],
    target: [f64; 2],
    card: String,
}

struct RideCreate;

impl Step for RideCreate {
    fn run(cx: &mut Ctx) -> Result<Outcome, StepError> {
        let ride: Ride = cx.args_as()?;
        match cx.step() {
            "create_ride" => create_ride(cx, &ride),
            "charge_card" => charge_card(cx, &ride),
            "send_receipt" => send_receipt(cx, &ride),
            other => Err(StepError::fatal(format!(
                "ride-create has no step `{other}`"
            ))),
        }
    }
}

fn create_ride(cx: &mut Ctx, ride: &Ride) -> Result<Outcome, StepError> {
    let ride_id = format!("ride_{}", cx.run_id());
    let amount = fare_cents(ride.origin, ride.target);
    let (key, origin, target) = (
        cx.key().to_string(),
        json!(ride.origin).to_string(),
        json!(ride.target).to_string(),
    );
    cx.execute(
        "INSERT INTO rides (id, run_key, user_email, origin, target, amount_cents) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            ride_id.as_str().into(),
            key.into(),
            ride.user.as_str().into(),
            origin.into(),
            target.into(),
            (amount as i64).into(),
        ],
    )
    .map_err(tables_hint)?;
    audit(cx, &ride_id, "created", &format!("for {}", ride.user))?;
    cx.set("ride_id", &ride_id)?;
    cx.set("amount_cents", &amount)?;
    cx.info(&format!("created {ride_id} for {}", ride.user));
    Ok(Outcome::Continue)
}

fn audit(cx: &mut Ctx, ride_id: &str, action: &str, detail: &str) -> Result<(), StepError> {
    cx.execute(
        "INSERT INTO audit_records (ride_id, action, detail) VALUES ($1, $2, $3)",
        &[ride_id.into(), action.into(), detail.into()],
    )
    .map(|_| ())
    .map_err(tables_hint)
}

/// A missing table is a set-up mistake, not something a retry fixes.
fn tables_hint(e: StepError) -> StepError {
    let missing = e.message.contains("no such table") || e.message.contains("does not exist");
    if missing {
        StepError::fatal(format!(
            "{}: create the example's tables first: python3 guest-examples/rust/ride-create/setup.py <database>",
            e.message
        ))
    } else {
        e
    }
}

/// Test cards, as a payment API's sandbox would have them: `tok_chargeDeclined`
/// always fails for good; with `tok_flaky` the first attempt's answer is lost
/// after the charge went through (a timeout), so the retry asks again with
/// the same idempotency key and the API answers with the same charge.
fn charge_card(cx: &mut Ctx, ride: &Ride) -> Result<Outcome, StepError> {
    let ride_id: String = cx.require("ride_id")?;
    let amount: u64 = cx.require("amount_cents")?;
    if ride.card == "tok_chargeDeclined" {
        // Over HTTP the run answers 402 Payment Required (and replays it).
        cx.set_http_status(402);
        return Err(StepError::fatal("card declined"));
    }
    let charge_id = match std::env::var("PAYMENTS_API") {
        Ok(api) if !api.is_empty() => {
            let body = json!({ "cents": amount, "card": ride.card, "ride": ride_id }).to_string();
            let (status, answer) = post_json(&api, "/charges", cx.step_key(), &body)?;
            if status != 200 {
                return Err(StepError::retryable(format!(
                    "payment API answered {status}: {answer}"
                )));
            }
            let charge: serde_json::Value = serde_json::from_str(&answer)?;
            charge["charge_id"].as_str().unwrap_or_default().to_string()
        }
        _ => format!("ch_{}", cx.step_key()),
    };
    if ride.card == "tok_flaky" && cx.attempt() == 1 {
        return Err(StepError::retryable("payment gateway timed out"));
    }
    cx.execute(
        "UPDATE rides SET charge_id = $1 WHERE id = $2",
        &[charge_id.as_str().into(), ride_id.as_str().into()],
    )
    .map_err(tables_hint)?;
    audit(
        cx,
        &ride_id,
        "charged",
        &format!("{amount} cents, {charge_id}"),
    )?;
    cx.set("charge_id", &charge_id)?;
    cx.info(&format!("charged {amount} cents for {ride_id}"));
    Ok(Outcome::Continue)
}

fn send_receipt(cx: &mut Ctx, ride: &Ride) -> Result<Outcome, StepError> {
    let ride_id: String = cx.require("ride_id")?;
    let amount: u64 = cx.require("amount_cents")?;
    let charge_id: String = cx.require("charge_id")?;
    let receipt = json!({ "user": ride.user, "ride_id": ride_id, "amount_cents": amount });
    let receipt_key =
        cx.enqueue(Job::new("send-receipt", &receipt)?.key(format!("receipt-{}", cx.key())))?;
    Outcome::finish(&json!({
        "ride_id": ride_id,
        "charge_id": charge_id,
        "amount_cents": amount,
        "receipt_run": receipt_key,
    }))
}

/// A flat fee plus a rate per degree travelled: enough to give each ride a price.
fn fare_cents(origin: [f64; 2], target: [f64; 2]) -> u64 {
    let distance = ((target[0] - origin[0]).powi(2) + (target[1] - origin[1]).powi(2)).sqrt();
    200 + (distance * 1000.0).round() as u64
}

export_step!(RideCreate);

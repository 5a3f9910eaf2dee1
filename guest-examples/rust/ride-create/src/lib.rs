//! Rocket Rides' "create a ride" operation as three acidic steps.
//!
//! `create_ride` records the ride, `charge_card` charges for it (its `step_key`
//! is what a real payment API would get as its idempotency key), and
//! `send_receipt` stages a run of the `send-receipt` workflow, which exists
//! only if this step commits.

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
    cx.set("ride_id", &ride_id)?;
    cx.set("amount_cents", &fare_cents(ride.origin, ride.target))?;
    cx.info(&format!("created {ride_id} for {}", ride.user));
    Ok(Outcome::Continue)
}

/// Test cards, as a payment API's sandbox would have them: `tok_chargeDeclined`
/// always fails for good, `tok_flaky` fails once with a retryable error.
fn charge_card(cx: &mut Ctx, ride: &Ride) -> Result<Outcome, StepError> {
    let ride_id: String = cx.require("ride_id")?;
    let amount: u64 = cx.require("amount_cents")?;
    match ride.card.as_str() {
        "tok_chargeDeclined" => return Err(StepError::fatal("card declined")),
        "tok_flaky" if cx.attempt() == 1 => {
            return Err(StepError::retryable("payment gateway timed out"));
        }
        _ => {}
    }
    let charge_id = format!("ch_{}", cx.step_key());
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

//! Fan-out and join: an order charges each line item in its own run, in
//! parallel on workers, and totals the charges once all of them succeeded.
//!
//! One component serves both workflows: `order` (steps `plan`, `total`) and
//! `charge-item` (step `charge`). The fan-out itself is declared in
//! `workflow.toml`: `plan` sets the `items` attribute, and the host stages one
//! awaited `charge-item` run per item when `plan` commits.

use acidic_guest::{Ctx, Outcome, Step, StepError, export_step};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Item {
    sku: String,
    cents: u64,
}

struct Order;

impl Step for Order {
    fn run(cx: &mut Ctx) -> Result<Outcome, StepError> {
        match cx.step() {
            "plan" => plan(cx),
            "total" => total(cx),
            "charge" => charge(cx),
            other => Err(StepError::fatal(format!("order has no step `{other}`"))),
        }
    }
}

/// Validates the order and lists the items to charge.
fn plan(cx: &mut Ctx) -> Result<Outcome, StepError> {
    let items: Vec<Value> = cx.arg("items")?;
    if items.is_empty() {
        return Err(StepError::fatal("an order needs at least one item"));
    }
    for item in &items {
        Item::deserialize(item).map_err(|e| StepError::fatal(format!("item {item}: {e}")))?;
    }
    cx.set("items", &items).map(|()| Outcome::Continue)
}

/// Charges one item (a `charge-item` run). A real step would call the payment
/// API with `cx.step_key()` as its idempotency key.
fn charge(cx: &mut Ctx) -> Result<Outcome, StepError> {
    let item: Item = cx.args_as()?;
    if item.sku == "declined" {
        return Err(StepError::fatal("card declined for this item"));
    }
    Outcome::finish(
        &json!({ "sku": item.sku, "charged_cents": item.cents, "charge_id": cx.step_key() }),
    )
}

/// Runs after every item's charge succeeded: sums them.
fn total(cx: &mut Ctx) -> Result<Outcome, StepError> {
    let charges: Vec<Value> = cx.children().into_iter().filter_map(|c| c.result).collect();
    let total: u64 = charges
        .iter()
        .filter_map(|c| c.get("charged_cents").and_then(Value::as_u64))
        .sum();
    Outcome::finish(&json!({ "items": charges.len(), "total_cents": total, "charges": charges }))
}

export_step!(Order);

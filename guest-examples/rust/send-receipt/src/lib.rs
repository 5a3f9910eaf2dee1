//! Sends a ride's receipt. Staged by ride-create's `send_receipt` step.

use acidic_guest::{Ctx, Outcome, Step, StepError, export_step};
use serde_json::json;

struct SendReceipt;

impl Step for SendReceipt {
    fn run(cx: &mut Ctx) -> Result<Outcome, StepError> {
        let user: String = cx.arg("user")?;
        let ride_id: String = cx.arg("ride_id")?;
        let amount: u64 = cx.arg("amount_cents")?;
        // A real step would call a mail API here with `cx.step_key()` as its idempotency key.
        cx.info(&format!("receipt for {ride_id} ({amount} cents) to {user}"));
        Outcome::finish(
            &json!({ "sent_to": user, "ride_id": ride_id, "message_id": cx.step_key() }),
        )
    }
}

export_step!(SendReceipt);

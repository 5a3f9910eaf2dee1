//! A component built against `acidic:step@0.2.0` (no SDK), so the host's
//! compatibility with guests older than `set-http-status` stays tested: it
//! logs, sets an attribute, runs a query through `sql` when the step is
//! granted it, and finishes with what it saw.

wit_bindgen::generate!({
    path: "../../../wit/step@0.2.0",
    world: "step",
});

use acidic::step::context::{Level, log};
use acidic::step::{attributes, sql};

struct Legacy;

impl Guest for Legacy {
    fn run(input: StepInput) -> Result<Outcome, StepError> {
        log(Level::Info, &format!("0.2.0 guest at step {}", input.step));
        attributes::set("seen", "\"0.2.0\"").map_err(|message| StepError {
            message,
            retryable: false,
        })?;
        let sum = match sql::query("SELECT 1 + 1", &[]) {
            Ok(rows) => match rows.rows.first().and_then(|r| r.first()) {
                Some(sql::Value::Integer(n)) => n.to_string(),
                _ => "null".to_string(),
            },
            Err(_) => "\"no sql\"".to_string(),
        };
        Ok(Outcome::Finish(format!(
            "{{\"version\":\"0.2.0\",\"sum\":{sum}}}"
        )))
    }
}

export!(Legacy);

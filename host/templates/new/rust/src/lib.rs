//! The `{{name}}` workflow's steps. One component serves both: it looks at
//! `cx.step()`. Everything a step does through `cx` commits with the step,
//! or not at all.

use acidic_guest::{Ctx, Outcome, Step, StepError, export_step};

struct Greet;

impl Step for Greet {
    fn run(cx: &mut Ctx) -> Result<Outcome, StepError> {
        match cx.step() {
            "greet" => {
                let name: String = cx.arg("name")?; // the run's args (a missing one fails the run)
                if name.is_empty() {
                    return Err(StepError::fatal("name is empty")); // fails the run, commits nothing
                }
                cx.info(&format!("greeting {name}")); // kept with the step's record
                cx.set("greeting", &format!("hello, {name}"))?; // an attribute, committed with the step
                Ok(Outcome::Continue) // the next step runs
            }
            "finish" => {
                let greeting: String = cx.require("greeting")?; // what `greet` committed
                Outcome::finish(&greeting) // the run's result
            }
            other => Err(StepError::fatal(format!("{{name}} has no step `{other}`"))),
        }
    }
}

export_step!(Greet);

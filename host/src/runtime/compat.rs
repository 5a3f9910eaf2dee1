//! `acidic:step@0.1.0`, for guests built before `sql` existed: the same
//! imports, on that version's types, forwarded to the current ones (so every
//! limit of `imports.rs` holds for them too).

use super::bindings::acidic::step::{attributes, context, staging};
use super::bindings::v0_1::acidic::step as v0_1;
use super::state::StepState;

impl v0_1::context::Host for StepState {
    fn log(&mut self, level: v0_1::context::Level, message: String) {
        use v0_1::context::Level as Old;
        let level = match level {
            Old::Trace => context::Level::Trace,
            Old::Debug => context::Level::Debug,
            Old::Info => context::Level::Info,
            Old::Warn => context::Level::Warn,
            Old::Error => context::Level::Error,
        };
        context::Host::log(self, level, message)
    }
}

impl v0_1::attributes::Host for StepState {
    fn get(&mut self, name: String) -> Option<String> {
        attributes::Host::get(self, name)
    }

    fn set(&mut self, name: String, value: String) -> std::result::Result<(), String> {
        attributes::Host::set(self, name, value)
    }

    fn delete(&mut self, name: String) {
        attributes::Host::delete(self, name)
    }

    fn names(&mut self) -> Vec<String> {
        attributes::Host::names(self)
    }
}

impl v0_1::staging::Host for StepState {
    fn enqueue(&mut self, job: v0_1::staging::Job) -> std::result::Result<String, String> {
        let job = staging::Job {
            workflow: job.workflow,
            args: job.args,
            key: job.key,
            delay_ms: job.delay_ms,
            queue: job.queue,
            awaits: job.awaits,
        };
        staging::Host::enqueue(self, job)
    }

    async fn children(&mut self) -> Vec<v0_1::staging::Child> {
        staging::Host::children(self)
            .await
            .into_iter()
            .map(|c| v0_1::staging::Child {
                workflow: c.workflow,
                key: c.key,
                status: c.status,
                output: c.output,
            })
            .collect()
    }
}

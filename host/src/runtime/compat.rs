//! `acidic:step@0.1.0` and `@0.2.0`, for guests built before `sql` or
//! `set-http-status` existed: the same imports, on that version's types,
//! forwarded to the current ones (so every limit of `imports.rs` holds for
//! them too).

use super::bindings::acidic::step::{attributes, context, sql, staging};
use super::bindings::v0_1::acidic::step as v0_1;
use super::bindings::v0_2::acidic::step as v0_2;
use super::state::StepState;

/// The imports every older version shares with the current one, on that
/// version's types: context's `log`, attributes, and staging.
macro_rules! shared_imports {
    ($v:ident) => {
        impl $v::context::Host for StepState {
            fn log(&mut self, level: $v::context::Level, message: String) {
                use $v::context::Level as Old;
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

        impl $v::attributes::Host for StepState {
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

        impl $v::staging::Host for StepState {
            fn enqueue(&mut self, job: $v::staging::Job) -> std::result::Result<String, String> {
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

            async fn children(&mut self) -> Vec<$v::staging::Child> {
                staging::Host::children(self)
                    .await
                    .into_iter()
                    .map(|c| $v::staging::Child {
                        workflow: c.workflow,
                        key: c.key,
                        status: c.status,
                        output: c.output,
                    })
                    .collect()
            }
        }
    };
}

shared_imports!(v0_1);
shared_imports!(v0_2);

// 0.2.0's `sql`: the same calls on its own value types.

fn value_from_0_2(v: v0_2::sql::Value) -> sql::Value {
    use v0_2::sql::Value as Old;
    match v {
        Old::Null => sql::Value::Null,
        Old::Integer(i) => sql::Value::Integer(i),
        Old::Real(r) => sql::Value::Real(r),
        Old::Text(t) => sql::Value::Text(t),
        Old::Blob(b) => sql::Value::Blob(b),
        Old::Json(j) => sql::Value::Json(j),
    }
}

fn value_to_0_2(v: sql::Value) -> v0_2::sql::Value {
    use v0_2::sql::Value as Old;
    match v {
        sql::Value::Null => Old::Null,
        sql::Value::Integer(i) => Old::Integer(i),
        sql::Value::Real(r) => Old::Real(r),
        sql::Value::Text(t) => Old::Text(t),
        sql::Value::Blob(b) => Old::Blob(b),
        sql::Value::Json(j) => Old::Json(j),
    }
}

fn error_to_0_2(e: sql::SqlError) -> v0_2::sql::SqlError {
    match e {
        sql::SqlError::Refused(m) => v0_2::sql::SqlError::Refused(m),
        sql::SqlError::Failed(m) => v0_2::sql::SqlError::Failed(m),
    }
}

impl v0_2::sql::Host for StepState {
    async fn execute(
        &mut self,
        statement: String,
        params: Vec<v0_2::sql::Value>,
    ) -> std::result::Result<u64, v0_2::sql::SqlError> {
        let params = params.into_iter().map(value_from_0_2).collect();
        sql::Host::execute(self, statement, params)
            .await
            .map_err(error_to_0_2)
    }

    async fn query(
        &mut self,
        statement: String,
        params: Vec<v0_2::sql::Value>,
    ) -> std::result::Result<v0_2::sql::Rows, v0_2::sql::SqlError> {
        let params = params.into_iter().map(value_from_0_2).collect();
        let rows = sql::Host::query(self, statement, params)
            .await
            .map_err(error_to_0_2)?;
        Ok(v0_2::sql::Rows {
            columns: rows.columns,
            rows: rows
                .rows
                .into_iter()
                .map(|r| r.into_iter().map(value_to_0_2).collect())
                .collect(),
        })
    }
}

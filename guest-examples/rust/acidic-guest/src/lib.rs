//! Write acidic steps in Rust.
//!
//! A step is a function from a [`Ctx`] to an [`Outcome`]. Implement [`Step`] on
//! a type and export it with [`export_step!`]:
//!
//! ```ignore
//! use acidic_guest::{export_step, Ctx, Outcome, Step, StepError};
//!
//! struct Hello;
//!
//! impl Step for Hello {
//!     fn run(cx: &mut Ctx) -> Result<Outcome, StepError> {
//!         let name: String = cx.arg("name")?;
//!         cx.set("greeting", &format!("hello, {name}"))?;
//!         Ok(Outcome::Continue)
//!     }
//! }
//!
//! export_step!(Hello);
//! ```
//!
//! Everything the step does through `cx` commits with the step, or not at all.

pub mod http;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/step@0.3.0",
        world: "step",
        pub_export_macro: true,
        default_bindings_module: "acidic_guest::bindings",
    });
}

use bindings::acidic::step::{attributes, context, sql, staging};

/// A value bound to a SQL parameter or read from a column (see [`Ctx::execute`]).
pub use bindings::acidic::step::sql::Value as SqlValue;

/// Severity of a log line written with [`Ctx::log`].
pub use bindings::acidic::step::context::Level;

/// What the run does after the step commits.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Move on to the next step (or finish with `null` after the last one).
    Continue,
    /// End the run now with this JSON result.
    Finish(Value),
    /// Commit this step's effects and run the same step again.
    Repeat,
}

impl Outcome {
    /// Ends the run with `result`, serialised to JSON.
    pub fn finish(result: &impl Serialize) -> Result<Outcome, StepError> {
        Ok(Outcome::Finish(to_value(result)?))
    }
}

/// A failed step: nothing it did is committed.
#[derive(Debug, Clone, PartialEq)]
pub struct StepError {
    /// What went wrong.
    pub message: String,
    /// Whether running the step again may succeed.
    pub retryable: bool,
}

impl StepError {
    /// A failure worth retrying (a timeout, a busy service): the retry policy applies.
    pub fn retryable(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure that retrying cannot fix (bad input, a declined card): the run fails now.
    pub fn fatal(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            retryable: false,
        }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<sql::SqlError> for StepError {
    fn from(e: sql::SqlError) -> Self {
        match e {
            sql::SqlError::Refused(m) => StepError::fatal(m),
            sql::SqlError::Failed(m) => StepError::retryable(m),
        }
    }
}

fn sql_to_json(v: SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::from(i),
        SqlValue::Real(f) => Value::from(f),
        SqlValue::Text(t) => Value::from(t),
        SqlValue::Blob(b) => Value::from(b),
        SqlValue::Json(j) => serde_json::from_str(&j).unwrap_or(Value::String(j)),
    }
}

impl From<i64> for SqlValue {
    fn from(i: i64) -> Self {
        SqlValue::Integer(i)
    }
}

impl From<f64> for SqlValue {
    fn from(f: f64) -> Self {
        SqlValue::Real(f)
    }
}

impl From<&str> for SqlValue {
    fn from(s: &str) -> Self {
        SqlValue::Text(s.to_string())
    }
}

impl From<String> for SqlValue {
    fn from(s: String) -> Self {
        SqlValue::Text(s)
    }
}

impl From<&Value> for SqlValue {
    /// JSON to SQL: null, integers, floats and strings map to themselves,
    /// booleans to 0/1, arrays and objects to JSON.
    fn from(v: &Value) -> Self {
        match v {
            Value::Null => SqlValue::Null,
            Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => SqlValue::Integer(i),
                None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => SqlValue::Text(s.clone()),
            other => SqlValue::Json(other.to_string()),
        }
    }
}

impl From<serde_json::Error> for StepError {
    fn from(e: serde_json::Error) -> Self {
        StepError::fatal(format!("JSON: {e}"))
    }
}

/// A staged run of another workflow, built for [`Ctx::enqueue`].
#[derive(Debug, Clone)]
pub struct Job {
    workflow: String,
    args: Value,
    key: Option<String>,
    delay_ms: Option<u64>,
    queue: Option<String>,
    awaits: bool,
}

impl Job {
    /// A run of `workflow` with `args`.
    pub fn new(workflow: impl Into<String>, args: &impl Serialize) -> Result<Job, StepError> {
        Ok(Job {
            workflow: workflow.into(),
            args: to_value(args)?,
            key: None,
            delay_ms: None,
            queue: None,
            awaits: false,
        })
    }

    /// Gives the run this idempotency key (default: derived from workflow and args).
    pub fn key(mut self, key: impl Into<String>) -> Job {
        self.key = Some(key.into());
        self
    }

    /// Makes the run wait this long after the step commits.
    pub fn delay(mut self, delay: std::time::Duration) -> Job {
        self.delay_ms = Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Makes this step wait for the run: the workflow moves on only when every
    /// awaited run has succeeded (fan-out / fan-in).
    pub fn awaited(mut self) -> Job {
        self.awaits = true;
        self
    }

    /// Puts the run on this queue (default: "default").
    pub fn queue(mut self, queue: impl Into<String>) -> Job {
        self.queue = Some(queue.into());
        self
    }
}

/// A run staged by this run, as it stands now.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    /// Its workflow.
    pub workflow: String,
    /// Its idempotency key.
    pub key: String,
    /// pending, running, waiting, succeeded, failed or cancelled.
    pub status: String,
    /// Its result, once succeeded.
    pub result: Option<Value>,
}

/// The step's view of its run: input, arguments, attributes, staging, logging.
pub struct Ctx {
    input: context::StepInput,
    args: Value,
}

impl Ctx {
    /// The name of the step being run.
    pub fn step(&self) -> &str {
        &self.input.step
    }

    /// The run's idempotency key.
    pub fn key(&self) -> &str {
        &self.input.idempotency_key
    }

    /// The run's numeric id.
    pub fn run_id(&self) -> u64 {
        self.input.run_id
    }

    /// The workflow's name.
    pub fn workflow(&self) -> &str {
        &self.input.workflow
    }

    /// This step's attempt, from 1.
    pub fn attempt(&self) -> u32 {
        self.input.attempt
    }

    /// A key stable across retries of this step: send it to external APIs as their idempotency key.
    pub fn step_key(&self) -> &str {
        &self.input.step_key
    }

    /// The run's arguments.
    pub fn args(&self) -> &Value {
        &self.args
    }

    /// The run's arguments, decoded into `T`.
    pub fn args_as<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        T::deserialize(&self.args).map_err(|e| StepError::fatal(format!("args: {e}")))
    }

    /// Argument `name`, decoded into `T`; an error names the missing or mistyped argument.
    pub fn arg<T: DeserializeOwned>(&self, name: &str) -> Result<T, StepError> {
        let value = self.args.get(name).unwrap_or(&Value::Null);
        T::deserialize(value).map_err(|e| StepError::fatal(format!("argument `{name}`: {e}")))
    }

    /// Attribute `name`, decoded into `T`, or `None` if it is not set.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StepError> {
        match attributes::get(name) {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| StepError::fatal(format!("attribute `{name}`: {e}"))),
        }
    }

    /// Attribute `name`, which an earlier step must have set.
    pub fn require<T: DeserializeOwned>(&self, name: &str) -> Result<T, StepError> {
        self.get(name)?
            .ok_or_else(|| StepError::fatal(format!("attribute `{name}` is not set")))
    }

    /// Sets attribute `name` to `value` (committed with the step).
    pub fn set(&mut self, name: &str, value: &impl Serialize) -> Result<(), StepError> {
        let text = serde_json::to_string(value)?;
        attributes::set(name, &text).map_err(StepError::fatal)
    }

    /// Removes attribute `name`.
    pub fn delete(&mut self, name: &str) {
        attributes::delete(name)
    }

    /// The names of all attributes, sorted.
    pub fn attribute_names(&self) -> Vec<String> {
        attributes::names()
    }

    /// Stages `job`: it exists only if this step commits. Returns its idempotency key.
    pub fn enqueue(&mut self, job: Job) -> Result<String, StepError> {
        let args = serde_json::to_string(&job.args)?;
        staging::enqueue(&staging::Job {
            workflow: job.workflow,
            args,
            key: job.key,
            delay_ms: job.delay_ms,
            queue: job.queue,
            awaits: job.awaits,
        })
        .map_err(StepError::fatal)
    }

    /// The runs this run staged in earlier steps, oldest first.
    pub fn children(&self) -> Vec<Child> {
        staging::children()
            .into_iter()
            .map(|c| Child {
                workflow: c.workflow,
                key: c.key,
                status: c.status,
                result: c.output.and_then(|r| serde_json::from_str(&r).ok()),
            })
            .collect()
    }

    /// Runs one INSERT, UPDATE or DELETE on the application's tables, in the
    /// step's own transaction: it commits with the step or not at all.
    /// Parameters are `?1, ?2, ...` on SQLite and `$1, $2, ...` on Postgres.
    /// Needs `sql = "read-write"` on the step in the manifest. A refused
    /// statement is a fatal error; one the database rejects is retryable.
    pub fn execute(&mut self, statement: &str, params: &[SqlValue]) -> Result<u64, StepError> {
        sql::execute(statement, params).map_err(StepError::from)
    }

    /// Runs one SELECT (or a write with RETURNING) in the step's transaction;
    /// each row is a JSON object keyed by column name. Needs a `sql` grant.
    pub fn query(
        &self,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<Vec<serde_json::Map<String, Value>>, StepError> {
        let rows = sql::query(statement, params).map_err(StepError::from)?;
        Ok(rows
            .rows
            .into_iter()
            .map(|row| {
                rows.columns
                    .iter()
                    .cloned()
                    .zip(row.into_iter().map(sql_to_json))
                    .collect()
            })
            .collect())
    }

    /// Writes a line to the host's log, tagged with this run and step.
    pub fn log(&self, level: Level, message: &str) {
        context::log(level, message)
    }

    /// Writes an info line to the host's log.
    pub fn info(&self, message: &str) {
        self.log(Level::Info, message)
    }

    /// Sets the HTTP status `acidic serve` answers this run's request with,
    /// if this step commits (a finished run's default is 201) or fails the
    /// run for good (default 500): 402 for a declined card, say. 200 to 599.
    pub fn set_http_status(&self, status: u16) {
        context::set_http_status(status)
    }
}

/// A step implementation. One type may serve several steps: match on [`Ctx::step`].
pub trait Step {
    /// Runs the step.
    fn run(cx: &mut Ctx) -> Result<Outcome, StepError>;
}

fn to_value(v: &impl Serialize) -> Result<Value, StepError> {
    serde_json::to_value(v).map_err(StepError::from)
}

#[doc(hidden)]
pub fn dispatch<S: Step>(
    input: context::StepInput,
) -> Result<context::Outcome, context::StepError> {
    let args = match serde_json::from_str(&input.args) {
        Ok(v) => v,
        Err(e) => {
            return Err(context::StepError {
                message: format!("args are not JSON: {e}"),
                retryable: false,
            });
        }
    };
    let mut cx = Ctx { input, args };
    match S::run(&mut cx) {
        Ok(Outcome::Continue) => Ok(context::Outcome::Continue),
        Ok(Outcome::Repeat) => Ok(context::Outcome::Repeat),
        Ok(Outcome::Finish(v)) => Ok(context::Outcome::Finish(v.to_string())),
        Err(e) => Err(context::StepError {
            message: e.message,
            retryable: e.retryable,
        }),
    }
}

/// Exports a [`Step`] implementation as the component's `run`.
#[macro_export]
macro_rules! export_step {
    ($step:ty) => {
        struct __AcidicStepExport;

        impl $crate::bindings::Guest for __AcidicStepExport {
            fn run(
                input: $crate::bindings::acidic::step::context::StepInput,
            ) -> ::core::result::Result<
                $crate::bindings::acidic::step::context::Outcome,
                $crate::bindings::acidic::step::context::StepError,
            > {
                $crate::dispatch::<$step>(input)
            }
        }

        $crate::bindings::export!(__AcidicStepExport with_types_in $crate::bindings);
    };
}

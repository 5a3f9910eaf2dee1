//! The acidic imports a step calls: context (logging), attributes, staging
//! and SQL, with every cap, the memory budget, host-call fuel and the
//! deadline applied here, at the boundary; then the 0.1.0 shims.

use std::time::Duration;

use serde_json::Value;

use super::bindings::acidic::step::{attributes, context, sql, staging};
use super::limits::{VALUE_OVERHEAD, guest_json, guest_name, json_held, shown};
use super::state::{AttributeSize, Refusal, StagedJob, StepState, cap};
use crate::error::Error;
use crate::run::{ErrorKind, derived_key};
use crate::sql::{Access, Dialects};
use crate::store::{GuestLimits, SqlRows, SqlValue};

/// Longest workflow name a step may stage (as long as a registered name may be).
const MAX_WORKFLOW_NAME: usize = 128;
/// Longest idempotency key.
pub const MAX_KEY: usize = 255;
/// Longest queue name.
pub const MAX_QUEUE_NAME: usize = 128;
/// Longest delay a staged run may be given: a year.
pub const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Longest SQL statement a step may send.
pub const MAX_STATEMENT: usize = 64 << 10;

impl context::Host for StepState {
    fn set_http_status(&mut self, status: u16) {
        StepState::set_http_status(self, status)
    }

    fn log(&mut self, level: context::Level, message: String) {
        if !self.charge(message.len()) || self.log_bytes >= cap(self.policy.max_log) {
            return;
        }
        self.log_bytes += message.len();
        let message = if self.log_bytes >= cap(self.policy.max_log) {
            "(log cap reached; further lines dropped)"
        } else {
            &message
        };
        let name = match level {
            context::Level::Trace => "trace",
            context::Level::Debug => "debug",
            context::Level::Info => "info",
            context::Level::Warn => "warn",
            context::Level::Error => "error",
        };
        self.logs.push(name, message);
        let (key, step) = (&self.run_key, &self.step);
        match level {
            context::Level::Trace => {
                tracing::trace!(target: "acidic::guest", run = %key, step = %step, "{message}")
            }
            context::Level::Debug => {
                tracing::debug!(target: "acidic::guest", run = %key, step = %step, "{message}")
            }
            context::Level::Info => {
                tracing::info!(target: "acidic::guest", run = %key, step = %step, "{message}")
            }
            context::Level::Warn => {
                tracing::warn!(target: "acidic::guest", run = %key, step = %step, "{message}")
            }
            context::Level::Error => {
                tracing::error!(target: "acidic::guest", run = %key, step = %step, "{message}")
            }
        }
    }
}

impl StepState {
    /// `set-http-status`: the status of the run's answer, if this step
    /// commits or fails the run for good.
    pub(super) fn set_http_status(&mut self, status: u16) {
        if !self.charge(0) {
            return;
        }
        if (200..=599).contains(&status) {
            self.http_status = Some(status);
        } else {
            let message = format!("set-http-status({status}) ignored: only 200 to 599");
            tracing::warn!(target: "acidic::guest", run = %self.run_key, step = %self.step, "{message}");
            self.logs.push("warn", &message);
        }
    }

    /// Sets attribute `name` to the JSON text `value` within every cap: value
    /// size, name length, count, total size and the memory budget.
    fn set_attribute(&mut self, name: String, value: String) -> Result<(), String> {
        let policy = self.policy;
        if value.len() as u64 > policy.max_attribute {
            let message = format!(
                "attribute `{}`: value of {} bytes is over max_attribute ({} bytes)",
                shown(&name),
                value.len(),
                policy.max_attribute
            );
            return Err(self.refuse(message));
        }
        if name.len() as u64 > policy.max_attribute_name {
            let message = format!(
                "attribute name `{}` of {} bytes is over max_attribute_name ({} bytes)",
                shown(&name),
                name.len(),
                policy.max_attribute_name
            );
            return Err(self.refuse(message));
        }
        if name.chars().any(char::is_control) {
            return Err(format!(
                "attribute name `{}` holds control characters",
                shown(&name)
            ));
        }
        let size = AttributeSize::of(&name, &value);
        let old = self.attribute_sizes.get(&name).copied();
        if old.is_none() && self.attributes.len() as u64 >= policy.max_attributes {
            let message = format!(
                "attribute `{}`: the run already holds max_attributes ({}) attributes",
                shown(&name),
                policy.max_attributes
            );
            return Err(self.refuse(message));
        }
        let total = self.attributes_total - old.map_or(0, |o| o.text) + size.text;
        if total as u64 > policy.max_attributes_total {
            let message = format!(
                "attribute `{}`: the run's attributes would total {total} bytes, over max_attributes_total ({} bytes)",
                shown(&name),
                policy.max_attributes_total
            );
            return Err(self.refuse(message));
        }
        // Counted before it is parsed: the parse builds what is counted.
        let held = old.map_or(0, |o| o.held);
        if !self.budget.replace(held, size.held) {
            let message = format!(
                "attribute `{}`: the step's memory budget of {} bytes is used up",
                shown(&name),
                self.budget.max()
            );
            self.note_refusal(Refusal::new(ErrorKind::MemoryLimit, message.clone()));
            return Err(message);
        }
        let parsed = match guest_json(&value) {
            Ok(parsed) => parsed,
            Err(e) => {
                let _ = self.budget.replace(size.held, held);
                return Err(format!("attribute `{}`: value is {e}", shown(&name)));
            }
        };
        self.attributes_total = total;
        self.attribute_sizes.insert(name.clone(), size);
        self.attributes.insert(name, parsed);
        Ok(())
    }

    /// Checks a run the guest asks to stage against every cap; returns it as staged.
    fn stage(&mut self, job: staging::Job) -> Result<String, String> {
        let policy = self.policy;
        self.staged_name(
            "the staged run's workflow",
            &job.workflow,
            MAX_WORKFLOW_NAME,
        )?;
        let workflow = job.workflow;
        if self.staged.len() as u64 >= policy.max_staged {
            let message = format!(
                "staged run of `{workflow}`: this call already staged max_staged ({}) runs",
                policy.max_staged
            );
            return Err(self.refuse(message));
        }
        if job.args.len() as u64 > policy.max_result {
            let message = format!(
                "staged run of `{workflow}`: args of {} bytes are over max_result ({} bytes)",
                job.args.len(),
                policy.max_result
            );
            return Err(self.refuse(message));
        }
        let total = self.staged_total + job.args.len();
        if total as u64 > policy.max_staged_total {
            let message = format!(
                "staged run of `{workflow}`: the args staged by this call would total {total} bytes, \
                 over max_staged_total ({} bytes)",
                policy.max_staged_total
            );
            return Err(self.refuse(message));
        }
        // What the parsed args will hold, checked before they are parsed.
        let held = json_held(&job.args) + VALUE_OVERHEAD * 4;
        if held > self.budget.room() {
            return Err(self.staged_over_budget(&workflow));
        }
        let args = guest_json(&job.args)
            .map_err(|e| format!("staged run of `{workflow}`: args are {e}"))?;
        // Counted as stored (canonical JSON), which can be longer than sent.
        let stored = crate::run::canonical_json(&args).len();
        let total = self.staged_total + stored;
        if stored as u64 > policy.max_result || total as u64 > policy.max_staged_total {
            let message = format!(
                "staged run of `{workflow}`: args of {stored} bytes as stored (this call's total \
                 {total}) are over max_result ({}) or max_staged_total ({} bytes)",
                policy.max_result, policy.max_staged_total
            );
            return Err(self.refuse(message));
        }
        if let Some(key) = &job.key {
            self.staged_name("the staged run's key", key, MAX_KEY)
                .map_err(|e| format!("staged run of `{workflow}`: {e}"))?;
        }
        let queue = job.queue.unwrap_or_else(|| "default".into());
        self.staged_name("the staged run's queue", &queue, MAX_QUEUE_NAME)
            .map_err(|e| format!("staged run of `{workflow}`: {e}"))?;
        let delay = Duration::from_millis(job.delay_ms.unwrap_or(0));
        if delay > MAX_DELAY {
            return Err(format!(
                "staged run of `{workflow}`: a delay of {} ms is over the limit of {} ms (a year)",
                job.delay_ms.unwrap_or(0),
                MAX_DELAY.as_millis()
            ));
        }
        if !self.budget.hold(held) {
            return Err(self.staged_over_budget(&workflow));
        }
        let key = job.key.unwrap_or_else(|| derived_key(&workflow, &args));
        self.staged_total = total;
        self.staged.push(StagedJob {
            workflow,
            args,
            key: key.clone(),
            delay,
            queue,
            awaits: job.awaits,
        });
        Ok(key)
    }

    /// Checks a name a staged run carries: one over its length limit is a
    /// cap the step hit (recorded, like every cap, whatever the guest does
    /// with the error); an empty one or one with control characters is only
    /// refused.
    fn staged_name(&mut self, what: &str, name: &str, max: usize) -> Result<(), String> {
        if name.len() > max {
            let message = format!(
                "{what} `{}` of {} bytes is over the limit of {max} bytes",
                shown(name),
                name.len()
            );
            return Err(self.refuse(message));
        }
        guest_name(what, name, max)
    }

    /// Records and words a staged run refused by the memory budget.
    fn staged_over_budget(&mut self, workflow: &str) -> String {
        self.budget.hit = true;
        let message = format!(
            "staged run of `{workflow}`: the step's memory budget of {} bytes is used up",
            self.budget.max()
        );
        self.note_refusal(Refusal::new(ErrorKind::MemoryLimit, message.clone()));
        message
    }
}

/// The error a host call answers once the step's fuel budget is gone; the
/// next epoch tick stops the guest.
const NO_FUEL: &str = "the step's fuel budget is burnt";

impl attributes::Host for StepState {
    fn get(&mut self, name: String) -> Option<String> {
        let value = self.attributes.get(&name).map(Value::to_string);
        let moved = name.len() + value.as_ref().map_or(0, String::len);
        if !self.charge(moved) {
            return None;
        }
        value
    }

    fn set(&mut self, name: String, value: String) -> std::result::Result<(), String> {
        if !self.charge(name.len() + value.len()) {
            return Err(NO_FUEL.into());
        }
        self.set_attribute(name, value)
    }

    fn delete(&mut self, name: String) {
        if !self.charge(name.len()) {
            return;
        }
        if self.attributes.remove(&name).is_some()
            && let Some(size) = self.attribute_sizes.remove(&name)
        {
            self.attributes_total -= size.text;
            self.budget.release(size.held);
        }
    }

    fn names(&mut self) -> Vec<String> {
        let bytes: usize = self.attributes.keys().map(String::len).sum();
        if !self.charge(bytes) {
            return Vec::new();
        }
        self.attributes.keys().cloned().collect()
    }
}

impl staging::Host for StepState {
    fn enqueue(&mut self, job: staging::Job) -> std::result::Result<String, String> {
        let moved = job.workflow.len()
            + job.args.len()
            + job.key.as_ref().map_or(0, String::len)
            + job.queue.as_ref().map_or(0, String::len);
        if !self.charge(moved) {
            return Err(NO_FUEL.into());
        }
        self.stage(job)
    }

    async fn children(&mut self) -> Vec<staging::Child> {
        if !self.charge(0) {
            return Vec::new();
        }
        // What the guest receives must fit what is left of its budget (the
        // host's copy lives until it is lowered into the guest's memory,
        // which then counts it): the store stops reading once it does not.
        let room = self.budget.room();
        let read = self.store.children(self.run_id, room);
        let runs = match tokio::time::timeout(self.time_left(), read).await {
            Ok(Ok(Some(runs))) => runs,
            Ok(Ok(None)) => {
                self.budget.hit = true;
                let message = format!(
                    "the staged runs' results are over the step's memory budget of {} bytes",
                    self.budget.max()
                );
                self.cannot_answer(Refusal::new(ErrorKind::MemoryLimit, message));
                return Vec::new();
            }
            Ok(Err(e)) => {
                let message = format!("the host could not list the staged runs: {e}");
                let mut refusal = Refusal::new(ErrorKind::HostError, message);
                refusal.retryable = true;
                self.cannot_answer(refusal);
                return Vec::new();
            }
            Err(_) => {
                let message = "listing the staged runs was cut off at the step's deadline";
                self.cannot_answer(Refusal::new(ErrorKind::Timeout, message));
                return Vec::new();
            }
        };
        let mut children = Vec::with_capacity(runs.len());
        for r in runs {
            let one = r.key.len() + r.result.as_ref().map_or(0, String::len) + VALUE_OVERHEAD;
            if !self.charge(one) {
                break;
            }
            children.push(staging::Child {
                workflow: r.workflow,
                key: r.key,
                status: r.status,
                output: r.result,
            });
        }
        children
    }
}

/// What a guest statement did.
enum GuestSqlDone {
    Changed(u64),
    Rows(SqlRows),
}

fn from_wit(v: sql::Value) -> SqlValue {
    match v {
        sql::Value::Null => SqlValue::Null,
        sql::Value::Integer(i) => SqlValue::Integer(i),
        sql::Value::Real(f) => SqlValue::Real(f),
        sql::Value::Text(t) => SqlValue::Text(t),
        sql::Value::Blob(b) => SqlValue::Blob(b),
        sql::Value::Json(j) => SqlValue::Json(j),
    }
}

/// Bytes a parameter carries across the boundary.
fn wit_size(v: &sql::Value) -> usize {
    8 + match v {
        sql::Value::Text(t) | sql::Value::Json(t) => t.len(),
        sql::Value::Blob(b) => b.len(),
        _ => 0,
    }
}

fn to_wit(v: SqlValue) -> sql::Value {
    match v {
        SqlValue::Null => sql::Value::Null,
        SqlValue::Integer(i) => sql::Value::Integer(i),
        SqlValue::Real(f) => sql::Value::Real(f),
        SqlValue::Text(t) => sql::Value::Text(t),
        SqlValue::Blob(b) => sql::Value::Blob(b),
        SqlValue::Json(j) => sql::Value::Json(j),
    }
}

impl StepState {
    /// Records a refusal of kind `kind` and answers the guest with it.
    fn sql_refused(&mut self, kind: ErrorKind, message: String) -> sql::SqlError {
        self.note_refusal(Refusal::new(kind, message.clone()));
        sql::SqlError::Refused(message)
    }

    /// Runs one guest statement on the step's transaction, if its grant and
    /// the statement's form allow it, within the step's deadline and memory.
    async fn guest_sql(
        &mut self,
        statement: &str,
        params: Vec<sql::Value>,
        want: Access,
    ) -> std::result::Result<GuestSqlDone, sql::SqlError> {
        let moved = statement.len() + params.iter().map(wit_size).sum::<usize>();
        if !self.charge(moved) {
            return Err(sql::SqlError::Refused(NO_FUEL.into()));
        }
        let (Some(grant), true) = (self.sql_grant.clone(), self.step_tx.is_some()) else {
            let message = "this step has no sql grant: add sql = \"read-only\" or \"read-write\" \
                           to its [[step]] in the manifest"
                .to_string();
            return Err(self.sql_refused(ErrorKind::CapabilityDenied, message));
        };
        if statement.len() > MAX_STATEMENT {
            let message = format!(
                "SQL refused: a statement of {} bytes is over the limit of {MAX_STATEMENT} bytes; \
                 pass large values as parameters",
                statement.len()
            );
            return Err(self.sql_refused(ErrorKind::SqlRefused, message));
        }
        if self.time_left().is_zero() {
            let message = "SQL refused: the step's deadline has passed".to_string();
            return Err(self.sql_refused(ErrorKind::Timeout, message));
        }
        // Parsing and walking the statement is deep work on guest input: the
        // checker runs on a thread of its own, never on this fiber's stack.
        let checked =
            crate::sql::check_off_stack(statement, &grant, self.dialect, &self.app_schema).await;
        let checked = match checked {
            Ok(c) if c.access == Access::Read && want == Access::Write => {
                Err("execute runs INSERT, UPDATE or DELETE; use query for SELECT".to_string())
            }
            other => other,
        };
        let (access, sent) = match &checked {
            Ok(c) => (c.access, c.guarded.as_deref().unwrap_or(statement)),
            Err(why) => {
                return Err(self.sql_refused(ErrorKind::SqlRefused, format!("SQL refused: {why}")));
            }
        };
        let params: Vec<SqlValue> = params.into_iter().map(from_wit).collect();
        let limits = GuestLimits {
            deadline: self.deadline,
            max_bytes: self.budget.room(),
        };
        let Some(tx) = self.step_tx.as_mut() else {
            return Err(sql::SqlError::Failed("no step transaction".into()));
        };
        let result = if want == Access::Write && access != Access::Read {
            tx.execute(sent, &params, &grant, &limits)
                .await
                .map(GuestSqlDone::Changed)
        } else {
            tx.query(sent, &params, &grant, &limits)
                .await
                .map(GuestSqlDone::Rows)
        };
        match result {
            Ok(GuestSqlDone::Rows(rows)) => {
                if !self.charge(rows.size()) {
                    return Err(sql::SqlError::Refused(NO_FUEL.into()));
                }
                Ok(GuestSqlDone::Rows(rows))
            }
            Ok(done) => Ok(done),
            Err(e) => Err(self.sql_failed(e)),
        }
    }

    /// The guest's view of a statement the database did not run, recorded
    /// with the kind a failing step is given.
    fn sql_failed(&mut self, e: Error) -> sql::SqlError {
        let (message, code) = match e {
            Error::GuestSqlDeadline => {
                let message = "SQL statement cut off at the step's deadline".to_string();
                return self.sql_refused(ErrorKind::Timeout, message);
            }
            Error::GuestRowsOverBudget { budget } => {
                let message = format!(
                    "the query's rows are over the step's memory budget of {} bytes ({budget} bytes were left); \
                     select fewer rows or columns, or raise `memory`",
                    self.budget.max()
                );
                self.budget.hit = true;
                return self.sql_refused(ErrorKind::MemoryLimit, message);
            }
            Error::Database(sqlx::Error::Database(db)) => {
                (db.message().to_string(), db.code().map(|c| c.into_owned()))
            }
            Error::GuestSqlite { code, message } => (message, Some(code.to_string())),
            other => (other.to_string(), None),
        };
        // A database's message can quote a whole value the guest made.
        let message = super::limits::cut_text(message, MAX_SQL_MESSAGE);
        match (self.dialect, code.as_deref()) {
            // SQLITE_AUTH: SQLite's authorizer said no, a refusal like the parser's.
            (Dialects::Sqlite, Some("23")) => {
                let message = format!("SQL refused by the database's authorizer: {message}");
                self.sql_refused(ErrorKind::SqlRefused, message)
            }
            // SQLITE_INTERRUPT, query_canceled: the deadline's own cut-off.
            (Dialects::Sqlite, Some("9")) | (Dialects::Postgres, Some("57014")) => {
                let message = format!("SQL statement cut off at the step's deadline: {message}");
                self.sql_refused(ErrorKind::Timeout, message)
            }
            // SQLITE_TOOBIG: a value over what is left of the step's memory budget.
            (Dialects::Sqlite, Some("18")) => {
                self.budget.hit = true;
                let message = format!(
                    "the statement made a value over the step's memory budget of {} bytes: {message}",
                    self.budget.max()
                );
                self.sql_refused(ErrorKind::MemoryLimit, message)
            }
            // insufficient_privilege: the guest role reached outside its grant.
            (Dialects::Postgres, Some("42501")) => {
                let message = format!("SQL refused by the database's privileges: {message}");
                self.sql_refused(ErrorKind::SqlRefused, message)
            }
            // The step's transaction lost to another: the whole step runs
            // again (the executor's conflict retries), whatever the guest does.
            (dialect, code) if sql_conflict(dialect, code) => {
                let message = format!("SQL conflict: {message}");
                self.note_refusal(Refusal {
                    kind: ErrorKind::Conflict,
                    message: message.clone(),
                    retryable: true,
                });
                sql::SqlError::Failed(message)
            }
            (dialect, code) => {
                let message = format!("SQL error: {message}");
                // A constraint, a missing table, a syntax error: the same
                // statement fails the same way on every try. A conflict or a
                // busy database may clear.
                let retryable = sql_error_may_clear(dialect, code);
                self.note_refusal(Refusal {
                    kind: ErrorKind::SqlError,
                    message: message.clone(),
                    retryable,
                });
                sql::SqlError::Failed(message)
            }
        }
    }
}

/// Longest database error message a guest is given.
const MAX_SQL_MESSAGE: usize = 4 << 10;

/// Whether a database error code says the step's transaction collided with
/// another: serialization_failure, deadlock_detected (Postgres); SQLITE_BUSY,
/// SQLITE_LOCKED (SQLite, with their extended codes).
fn sql_conflict(dialect: Dialects, code: Option<&str>) -> bool {
    match (dialect, code) {
        (Dialects::Postgres, Some(code)) => matches!(code, "40001" | "40P01"),
        (Dialects::Sqlite, Some(code)) => {
            matches!(code.parse::<u32>().map(|n| n & 0xff), Ok(5 | 6))
        }
        (_, None) => false,
    }
}

/// Whether a database error code says the statement may succeed on a later
/// try: a serialization failure or deadlock, a lost connection, a server out
/// of resources (Postgres), a busy or locked database, a full disk or an I/O
/// error (SQLite). An error without a code is given the benefit of the doubt.
fn sql_error_may_clear(dialect: Dialects, code: Option<&str>) -> bool {
    let Some(code) = code else { return true };
    match dialect {
        Dialects::Postgres => {
            matches!(
                code,
                "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03"
            ) || code.starts_with("08")
                || code.starts_with("53")
        }
        Dialects::Sqlite => matches!(code.parse::<u32>().map(|n| n & 0xff), Ok(5 | 6 | 10 | 13)),
    }
}

impl sql::Host for StepState {
    async fn execute(
        &mut self,
        statement: String,
        params: Vec<sql::Value>,
    ) -> std::result::Result<u64, sql::SqlError> {
        match self.guest_sql(&statement, params, Access::Write).await? {
            GuestSqlDone::Changed(n) => Ok(n),
            GuestSqlDone::Rows(rows) => Ok(rows.rows.len() as u64),
        }
    }

    async fn query(
        &mut self,
        statement: String,
        params: Vec<sql::Value>,
    ) -> std::result::Result<sql::Rows, sql::SqlError> {
        let rows = match self.guest_sql(&statement, params, Access::Read).await? {
            GuestSqlDone::Rows(rows) => rows,
            GuestSqlDone::Changed(_) => SqlRows {
                columns: Vec::new(),
                rows: Vec::new(),
            },
        };
        Ok(sql::Rows {
            columns: rows.columns,
            rows: rows
                .rows
                .into_iter()
                .map(|r| r.into_iter().map(to_wit).collect())
                .collect(),
        })
    }
}

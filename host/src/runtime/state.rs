//! The store data of one step call: the sandbox's WASI context, the step's
//! limits, and the effects it buffers until its commit.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::limits::{HostFuel, MemoryBudget, VALUE_OVERHEAD, json_held};
use super::outbound::Outbound;
use super::output::{Capture, MAX_RANDOM_CALL, MeteredRandom};
use crate::manifest::{OutboundHost, StepPolicy};
use crate::run::ErrorKind;
use crate::sql::{Dialects, SqlGrant};
use crate::store::{StepTx, Store};
use crate::workflow::StepDef;

/// Something a guest asked for and was refused, as a failing step records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The kind the step fails with.
    pub kind: ErrorKind,
    /// What was refused, and why.
    pub message: String,
    /// Whether a later try could be given it: a deadline or a budget a
    /// faster or smaller try might meet, or a database error that can clear
    /// (a conflict, a busy file); never a grant, a form, or a constraint.
    pub retryable: bool,
}

impl Refusal {
    /// A refusal of `kind`, retryable as the kind usually is.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Refusal {
        let retryable = matches!(
            kind,
            ErrorKind::SqlError | ErrorKind::Timeout | ErrorKind::MemoryLimit
        );
        Refusal {
            kind,
            message: message.into(),
            retryable,
        }
    }
}

/// A run staged by a step, as the guest asked for it.
#[derive(Debug, Clone)]
pub struct StagedJob {
    /// Workflow name.
    pub workflow: String,
    /// Args.
    pub args: Value,
    /// Key (given or derived).
    pub key: String,
    /// Delay.
    pub delay: Duration,
    /// Queue.
    pub queue: String,
    /// Whether the step waits for it.
    pub awaits: bool,
}

/// What one attribute takes.
#[derive(Debug, Clone, Copy)]
pub(super) struct AttributeSize {
    /// Its name and JSON text, in bytes: what the caps count.
    pub text: usize,
    /// What the host holds for it, parsed: what the memory budget counts.
    pub held: usize,
}

impl AttributeSize {
    pub(super) fn of(name: &str, json: &str) -> AttributeSize {
        AttributeSize {
            text: name.len() + json.len(),
            held: name.len() + json_held(json) + VALUE_OVERHEAD,
        }
    }
}

/// The store data of one step call: the sandbox plus the step's buffered effects.
pub struct StepState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) budget: MemoryBudget,
    pub(super) fuel: HostFuel,
    /// The run's attributes, as the step leaves them.
    pub attributes: Map<String, Value>,
    /// What each attribute takes, for the caps and the budget.
    pub(super) attribute_sizes: HashMap<String, AttributeSize>,
    pub(super) attributes_total: usize,
    /// Runs the step staged.
    pub staged: Vec<StagedJob>,
    pub(super) staged_total: usize,
    /// The first cap the guest tried to exceed; the step fails with it even
    /// if the guest ignored the error it was given.
    pub too_large: Option<String>,
    /// A host call that could not give the guest its answer and had no way
    /// to say so (`children` returns a list, not a result): the step fails
    /// with it whatever the guest did after, since that rested on an answer
    /// it never got.
    pub unanswered: Option<Refusal>,
    pub(super) run_key: String,
    pub(super) run_id: i64,
    pub(super) step: String,
    pub(super) policy: StepPolicy,
    pub(super) log_bytes: usize,
    /// What the call logged, to be stored with its timeline entry.
    pub(super) logs: StoredLogs,
    /// The HTTP status the step asked its run's answer to have.
    pub http_status: Option<u16>,
    stdout: Capture,
    stderr: Capture,
    http: WasiHttpCtx,
    pub(super) outbound: Outbound,
    pub(super) sql_grant: Option<SqlGrant>,
    pub(super) step_tx: Option<StepTx>,
    pub(super) dialect: Dialects,
    pub(super) app_schema: String,
    pub(super) refusals: Vec<Refusal>,
    pub(super) timed_out: bool,
    pub(super) deadline: Instant,
    pub(super) store: Store,
}

/// A size from the manifest, as a length on this machine.
pub(super) fn cap(bytes: u64) -> usize {
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

impl StepState {
    /// State for a call of `step` of run `run_key`, starting from `attributes`.
    pub fn new(
        store: Store,
        run_id: i64,
        run_key: &str,
        step: &StepDef,
        attributes: Map<String, Value>,
    ) -> StepState {
        let policy = step.policy;
        let deadline = Instant::now() + policy.timeout;
        let fuel = HostFuel::new(policy.fuel);
        let (stdout, stderr) = (
            Capture::new(policy.max_log, fuel.clone()),
            Capture::new(policy.max_log, fuel.clone()),
        );
        // No preopened dirs, no args, no network, and only the environment the
        // manifest lists: a step reaches only what the acidic imports give it.
        let mut wasi = WasiCtx::builder();
        let env: Vec<(&String, &String)> = step.env.iter().collect();
        wasi.envs(&env)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .secure_random(MeteredRandom::new(fuel.clone()))
            .insecure_random(MeteredRandom::new(fuel.clone()))
            .max_random_size(MAX_RANDOM_CALL);
        let attribute_sizes: HashMap<String, AttributeSize> = attributes
            .iter()
            .map(|(k, v)| (k.clone(), AttributeSize::of(k, &v.to_string())))
            .collect();
        let attributes_total = attribute_sizes.values().map(|s| s.text).sum();
        let mut budget = MemoryBudget::new(cap(policy.memory));
        // What the run already holds counts against the step's budget too.
        let _ = budget.hold(attribute_sizes.values().map(|s| s.held).sum());
        budget.hit = false;
        StepState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            budget,
            fuel: fuel.clone(),
            attributes,
            attribute_sizes,
            attributes_total,
            staged: Vec::new(),
            staged_total: 0,
            too_large: None,
            run_key: run_key.to_string(),
            run_id,
            step: step.name.clone(),
            policy,
            log_bytes: 0,
            logs: StoredLogs::default(),
            http_status: None,
            stdout,
            stderr,
            http: WasiHttpCtx::new(),
            outbound: Outbound::new(
                // Entries were validated at register; one that no longer parses allows nothing.
                step.allowed_outbound_hosts
                    .iter()
                    .filter_map(|h| OutboundHost::parse(h).ok())
                    .collect(),
                deadline,
                fuel.clone(),
            ),
            sql_grant: step.sql.clone(),
            step_tx: None,
            dialect: store.dialect(),
            app_schema: store.app_schema().to_string(),
            refusals: Vec::new(),
            unanswered: None,
            timed_out: false,
            deadline,
            store,
        }
    }

    /// Gives the guest's SQL the step's open transaction.
    pub fn with_step_tx(mut self, tx: StepTx) -> StepState {
        self.step_tx = Some(tx);
        self
    }

    /// Takes the step's transaction back after the call.
    pub fn take_step_tx(&mut self) -> Option<StepTx> {
        self.step_tx.take()
    }

    /// Starts the step's clock: its deadline is its timeout from now.
    pub(super) fn start_clock(&mut self) {
        self.deadline = Instant::now() + self.policy.timeout;
        self.outbound.deadline = self.deadline;
    }

    /// When the step's time is up: nothing it did may commit after this.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The first thing the guest asked for and was refused (a request to a
    /// host not allowed, SQL without a grant or of a forbidden form, SQL the
    /// database rejected, a host call cut off at the deadline), as the kind a
    /// failing step is recorded with.
    pub fn refusal(&self) -> Option<Refusal> {
        if let Some(denied) = self.outbound.denied.first() {
            let message =
                format!("outbound HTTP to {denied} is not in this step's allowed_outbound_hosts");
            return Some(Refusal::new(ErrorKind::CapabilityDenied, message));
        }
        let cut_off = self.outbound.cut_off.lock().ok().and_then(|c| c.clone());
        if let Some(target) = cut_off {
            let message = format!("outbound HTTP to {target} was cut off at the step's deadline");
            return Some(Refusal::new(ErrorKind::Timeout, message));
        }
        self.refusals.first().cloned()
    }

    /// Remembers that the guest was refused something (the first one names
    /// the step's failure, if it then fails).
    pub(super) fn note_refusal(&mut self, refusal: Refusal) {
        // Only the first names the failure: a guest asking again and again
        // must not make the host keep every answer.
        if self.refusals.is_empty() {
            self.refusals.push(refusal);
        }
    }

    /// Records why a host call could not answer the guest and has no error
    /// to say so with (`children`): the step fails with the first such.
    pub(super) fn cannot_answer(&mut self, refusal: Refusal) {
        self.unanswered.get_or_insert(refusal);
    }

    /// Records that the guest tried to exceed a cap; returns the message for the guest.
    pub(super) fn refuse(&mut self, message: String) -> String {
        self.too_large.get_or_insert_with(|| message.clone());
        message
    }

    /// Charges a host call moving `bytes`; false once the fuel budget is gone
    /// (the call then does nothing, and the next epoch tick stops the guest).
    pub(super) fn charge(&self, bytes: usize) -> bool {
        self.fuel.charge(bytes)
    }

    /// Time left to the step's deadline.
    pub(super) fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// What the call logged, as JSON to store with its timeline entry
    /// (`None` if nothing); empties it.
    pub fn take_logs(&mut self) -> Option<String> {
        std::mem::take(&mut self.logs).into_json()
    }

    /// Writes what the guest printed to the host's log, tagged with the run
    /// and step, and keeps it with the call's log lines.
    pub(super) fn emit_output(&mut self) {
        for (stream, capture) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let (text, dropped) = capture.take();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                tracing::info!(target: "acidic::guest", run = %self.run_key, step = %self.step, stream = %stream, "{line}");
                self.logs.push(stream, line);
            }
            if dropped > 0 {
                tracing::warn!(target: "acidic::guest", run = %self.run_key, step = %self.step, stream = %stream,
                    "{dropped} more bytes dropped (max_log)");
            }
        }
    }
}

impl WasiHttpView for StepState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Most bytes of log lines stored with one step call (at most its max_log).
pub const MAX_STORED_LOG: usize = 64 << 10;

/// The lines a call logged, kept for its timeline entry up to
/// [`MAX_STORED_LOG`]: the oldest are kept, the rest counted.
#[derive(Default)]
pub(super) struct StoredLogs {
    lines: Vec<crate::run::LogLine>,
    bytes: usize,
    dropped: usize,
}

impl StoredLogs {
    /// Keeps `message` at `level` if it fits.
    pub(super) fn push(&mut self, level: &str, message: &str) {
        let size = level.len() + message.len() + 24;
        if self.dropped > 0 || self.bytes + size > MAX_STORED_LOG {
            self.dropped += 1;
            return;
        }
        self.bytes += size;
        self.lines.push(crate::run::LogLine {
            level: level.to_string(),
            message: message.to_string(),
        });
    }

    fn into_json(mut self) -> Option<String> {
        if self.dropped > 0 {
            self.lines.push(crate::run::LogLine {
                level: "warn".into(),
                message: format!(
                    "{} more lines not stored ({} bytes are kept per step call)",
                    self.dropped, MAX_STORED_LOG
                ),
            });
        }
        (!self.lines.is_empty())
            .then(|| serde_json::to_string(&self.lines).ok())
            .flatten()
    }
}

//! The WebAssembly side: one engine per host, compiled components cached on
//! disk and as pre-instantiated forms in memory, and a fresh sandboxed
//! instance for every step call.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter,
    UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::error::{Error, Result};
use crate::manifest::{MAX_MEMORY, OutboundHost, StepPolicy};
use crate::run::{ErrorKind, derived_key, sha256_hex};
use crate::sql::{Access, Dialects, SqlGrant};
use crate::store::{RunFilter, SqlRows, SqlValue, StepTx, Store};
use crate::workflow::StepDef;

mod bindings {
    // The world guests build against today. Its `run` has the same type in
    // 0.1.0, so one pre-instantiated form serves guests of either version;
    // only the imports differ by version, and the linker has both.
    wasmtime::component::bindgen!({
        path: "../wit/step@0.2.0",
        world: "step",
        imports: {
            "acidic:step/staging.children": async,
            "acidic:step/sql.execute": async,
            "acidic:step/sql.query": async,
        },
        exports: { default: async },
    });

    /// `acidic:step@0.1.0`, for guests built before `sql` existed.
    pub mod v0_1 {
        wasmtime::component::bindgen!({
            path: "../wit/step@0.1.0",
            world: "step",
            imports: { "acidic:step/staging.children": async },
            exports: { default: async },
        });
    }
}

pub use bindings::acidic::step::context::{Outcome, StepError, StepInput};
use bindings::acidic::step::{attributes, context, sql, staging};
use bindings::v0_1::acidic::step as v0_1;
use bindings::{Step, StepPre};

/// How often the engine's epoch advances: the granularity of step deadlines.
const TICK: Duration = Duration::from_millis(10);

/// Counters of the runtime's work, for tests and benchmarks.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Components compiled from bytes.
    pub compiles: AtomicU64,
    /// Components loaded from the on-disk cache.
    pub cache_loads: AtomicU64,
    /// Instances created (one per step call).
    pub instantiations: AtomicU64,
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

/// The store data of one step call: the sandbox plus the step's buffered effects.
pub struct StepState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryCap,
    /// The run's attributes, as the step leaves them.
    pub attributes: Map<String, Value>,
    /// Runs the step staged.
    pub staged: Vec<StagedJob>,
    /// The first cap the guest tried to exceed; the step fails with it even
    /// if the guest ignored the error it was given.
    pub too_large: Option<String>,
    run_key: String,
    run_id: i64,
    step: String,
    caps: Caps,
    log_bytes: usize,
    stdout: Capture,
    stderr: Capture,
    http: WasiHttpCtx,
    outbound: Outbound,
    sql_grant: Option<SqlGrant>,
    step_tx: Option<StepTx>,
    dialect: Dialects,
    app_schema: String,
    refusals: Vec<(ErrorKind, String)>,
    timed_out: bool,
    store: Store,
}

/// The step's outbound HTTP grant: a request to a host outside
/// `allowed_outbound_hosts` is refused with `HTTP-request-denied`, which the
/// guest sees, and remembered so a failing step is recorded as
/// `capability_denied`.
struct Outbound {
    allowed: Vec<OutboundHost>,
    denied: Vec<String>,
}

type HttpResult<T> = wasmtime_wasi_http::Result<T>;
type HttpIo = Box<dyn std::future::Future<Output = HttpResult<()>> + Send>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: HttpIo,
    ) -> Box<
        dyn std::future::Future<
                Output = HttpResult<(http::Response<wasmtime_wasi_http::WasiBody>, HttpIo)>,
            > + Send,
    > {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        if !self.allowed.iter().any(|a| a.allows(&scheme, &host, port)) {
            self.denied.push(format!("{scheme}://{host}:{port}"));
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        wasmtime_wasi_http::default_hooks().send_request(request, options, fut)
    }
}

/// The size caps of one call, in bytes.
#[derive(Debug, Clone, Copy)]
struct Caps {
    attribute: usize,
    result: usize,
    log: usize,
}

fn cap(bytes: u64) -> usize {
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
        let policy = &step.policy;
        let (stdout, stderr) = (Capture::new(policy.max_log), Capture::new(policy.max_log));
        // No preopened dirs, no args, no network, and only the environment the
        // manifest lists: a step reaches only what the acidic imports give it.
        let mut wasi = WasiCtx::builder();
        let env: Vec<(&String, &String)> = step.env.iter().collect();
        wasi.envs(&env)
            .stdout(stdout.clone())
            .stderr(stderr.clone());
        StepState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryCap {
                max: cap(policy.memory),
                hit: false,
            },
            attributes,
            staged: Vec::new(),
            too_large: None,
            run_key: run_key.to_string(),
            run_id,
            step: step.name.clone(),
            caps: Caps {
                attribute: cap(policy.max_attribute),
                result: cap(policy.max_result),
                log: cap(policy.max_log),
            },
            log_bytes: 0,
            stdout,
            stderr,
            http: WasiHttpCtx::new(),
            outbound: Outbound {
                // Entries were validated at register; one that no longer parses allows nothing.
                allowed: step
                    .allowed_outbound_hosts
                    .iter()
                    .filter_map(|h| OutboundHost::parse(h).ok())
                    .collect(),
                denied: Vec::new(),
            },
            sql_grant: step.sql.clone(),
            step_tx: None,
            dialect: store.dialect(),
            app_schema: store.app_schema().to_string(),
            refusals: Vec::new(),
            timed_out: false,
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

    /// The first thing the guest asked for and was refused (a request to a
    /// host not allowed, SQL without a grant or of a forbidden form, SQL the
    /// database rejected), as the kind a failing step is recorded with.
    pub fn refusal(&self) -> Option<(ErrorKind, String)> {
        if let Some(denied) = self.outbound.denied.first() {
            let message =
                format!("outbound HTTP to {denied} is not in this step's allowed_outbound_hosts");
            return Some((ErrorKind::CapabilityDenied, message));
        }
        self.refusals.first().cloned()
    }

    /// Runs one guest statement on the step's transaction, if its grant and
    /// the statement's form allow it.
    async fn guest_sql(
        &mut self,
        statement: &str,
        params: Vec<sql::Value>,
        want: Access,
    ) -> std::result::Result<GuestSqlDone, sql::SqlError> {
        let (Some(grant), true) = (&self.sql_grant, self.step_tx.is_some()) else {
            let message = "this step has no sql grant: add sql = \"read-only\" or \"read-write\" \
                           to its [[step]] in the manifest"
                .to_string();
            self.refusals
                .push((ErrorKind::CapabilityDenied, message.clone()));
            return Err(sql::SqlError::Refused(message));
        };
        let access = match crate::sql::check(statement, grant, self.dialect, &self.app_schema) {
            Ok(Access::Read) if want == Access::Write => {
                Err("execute runs INSERT, UPDATE or DELETE; use query for SELECT".to_string())
            }
            other => other,
        };
        let access = match access {
            Ok(a) => a,
            Err(why) => {
                let message = format!("SQL refused: {why}");
                self.refusals.push((ErrorKind::SqlRefused, message.clone()));
                return Err(sql::SqlError::Refused(message));
            }
        };
        let params: Vec<SqlValue> = params.into_iter().map(from_wit).collect();
        let grant = grant.clone();
        let Some(tx) = self.step_tx.as_mut() else {
            return Err(sql::SqlError::Failed("no step transaction".into()));
        };
        let result = if want == Access::Write && access != Access::Read {
            tx.execute(statement, &params, &grant)
                .await
                .map(GuestSqlDone::Changed)
        } else {
            tx.query(statement, &params, &grant)
                .await
                .map(GuestSqlDone::Rows)
        };
        result.map_err(|e| {
            let (message, code) = match e {
                Error::Database(sqlx::Error::Database(db)) => {
                    (db.message().to_string(), db.code().map(|c| c.into_owned()))
                }
                other => (other.to_string(), None),
            };
            // SQLITE_AUTH: SQLite's authorizer said no, a refusal like the parser's.
            if self.dialect == Dialects::Sqlite && code.as_deref() == Some("23") {
                let message = format!("SQL refused by the database's authorizer: {message}");
                self.refusals.push((ErrorKind::SqlRefused, message.clone()));
                return sql::SqlError::Refused(message);
            }
            let message = format!("SQL error: {message}");
            self.refusals.push((ErrorKind::SqlError, message.clone()));
            sql::SqlError::Failed(message)
        })
    }

    /// Records that the guest tried to exceed a cap; returns the message for the guest.
    fn refuse(&mut self, message: String) -> String {
        self.too_large.get_or_insert_with(|| message.clone());
        message
    }

    /// Writes what the guest printed to the host's log, tagged with the run and step.
    fn emit_output(&self) {
        for (stream, capture) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let (text, dropped) = capture.take();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                tracing::info!(target: "acidic::guest", run = %self.run_key, step = %self.step, stream = %stream, "{line}");
            }
            if dropped > 0 {
                tracing::warn!(target: "acidic::guest", run = %self.run_key, step = %self.step, stream = %stream,
                    "{dropped} more bytes dropped (max_log)");
            }
        }
    }
}

/// A guest's stdout or stderr: kept up to its cap, the rest counted and
/// dropped (the guest's writes still succeed, so printing cannot trap it).
#[derive(Clone)]
struct Capture(Arc<Mutex<CaptureBuf>>);

#[derive(Default)]
struct CaptureBuf {
    kept: Vec<u8>,
    cap: usize,
    dropped: usize,
}

impl Capture {
    fn new(cap: u64) -> Capture {
        Capture(Arc::new(Mutex::new(CaptureBuf {
            cap: self::cap(cap),
            ..CaptureBuf::default()
        })))
    }

    fn take(&self) -> (String, usize) {
        match self.0.lock() {
            Ok(mut b) => {
                let text = String::from_utf8_lossy(&b.kept).into_owned();
                b.kept.clear();
                (text, std::mem::take(&mut b.dropped))
            }
            Err(_) => (String::new(), 0),
        }
    }
}

impl wasmtime_wasi::cli::IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if let Ok(mut b) = self.0.lock() {
            let room = b.cap.saturating_sub(b.kept.len());
            let kept = room.min(buf.len());
            b.kept.extend_from_slice(&buf[..kept]);
            b.dropped += buf.len() - kept;
        }
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
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

/// Refuses memory growth past the step's cap, and remembers that it did so the
/// resulting trap is reported as a memory limit rather than a guest bug.
struct MemoryCap {
    max: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

impl context::Host for StepState {
    fn log(&mut self, level: context::Level, message: String) {
        if self.log_bytes >= self.caps.log {
            return;
        }
        self.log_bytes += message.len();
        let message = if self.log_bytes >= self.caps.log {
            "(log cap reached; further lines dropped)"
        } else {
            &message
        };
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

impl attributes::Host for StepState {
    fn get(&mut self, name: String) -> Option<String> {
        self.attributes.get(&name).map(Value::to_string)
    }

    fn set(&mut self, name: String, value: String) -> std::result::Result<(), String> {
        if value.len() > self.caps.attribute {
            let (len, cap) = (value.len(), self.caps.attribute);
            return Err(self.refuse(format!(
                "attribute `{name}`: value of {len} bytes is over max_attribute ({cap} bytes)"
            )));
        }
        let value: Value = serde_json::from_str(&value)
            .map_err(|e| format!("attribute `{name}`: value is not JSON: {e}"))?;
        self.attributes.insert(name, value);
        Ok(())
    }

    fn delete(&mut self, name: String) {
        self.attributes.remove(&name);
    }

    fn names(&mut self) -> Vec<String> {
        self.attributes.keys().cloned().collect()
    }
}

impl staging::Host for StepState {
    fn enqueue(&mut self, job: staging::Job) -> std::result::Result<String, String> {
        if job.args.len() > self.caps.result {
            let (len, cap) = (job.args.len(), self.caps.result);
            return Err(self.refuse(format!(
                "staged run of `{}`: args of {len} bytes are over max_result ({cap} bytes)",
                job.workflow
            )));
        }
        let args: Value = serde_json::from_str(&job.args)
            .map_err(|e| format!("staged run of `{}`: args are not JSON: {e}", job.workflow))?;
        if job.workflow.is_empty() {
            return Err("staged run: workflow name is empty".into());
        }
        let key = job.key.unwrap_or_else(|| derived_key(&job.workflow, &args));
        self.staged.push(StagedJob {
            workflow: job.workflow,
            args,
            key: key.clone(),
            delay: Duration::from_millis(job.delay_ms.unwrap_or(0)),
            queue: job.queue.unwrap_or_else(|| "default".into()),
            awaits: job.awaits,
        });
        Ok(key)
    }

    async fn children(&mut self) -> Vec<staging::Child> {
        let filter = RunFilter {
            parent: Some(self.run_id),
            limit: 10_000,
            ..RunFilter::default()
        };
        match self.store.list_runs(&filter).await {
            Ok(runs) => runs
                .into_iter()
                .rev()
                .map(|r| staging::Child {
                    workflow: r.workflow,
                    key: r.key,
                    status: r.status.to_string(),
                    output: r.result.map(|v| v.to_string()),
                })
                .collect(),
            Err(e) => {
                // The guest cannot act on a host database error; it sees no
                // children, and the step's commit (same database) will fail too.
                tracing::warn!(run = %self.run_key, "cannot list children: {e}");
                Vec::new()
            }
        }
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

// acidic:step@0.1.0: the same functions, on that version's types.

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

/// How a call into a step ended.
pub enum CallOutcome {
    /// The step answered.
    Returned(std::result::Result<Outcome, StepError>),
    /// The host stopped it, or it trapped.
    Aborted {
        /// Why.
        kind: ErrorKind,
        /// Details, with the Wasm backtrace for traps.
        message: String,
    },
}

/// A compiled component, ready to instantiate.
#[derive(Clone)]
pub struct Prepared(StepPre<StepState>);

/// The engine, its linker, and the compiled-component caches.
pub struct Runtime {
    engine: Engine,
    linker: Linker<StepState>,
    cache_dir: PathBuf,
    compat: String,
    prepared: Mutex<HashMap<String, Prepared>>,
    ticker_stop: Arc<AtomicBool>,
    /// Whether instances come from wasmtime's pooling allocator.
    pub pooling: bool,
    /// What the runtime has done.
    pub metrics: Metrics,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// An engine with epoch deadlines, caching compiled components under `cache_dir`.
    /// The pooling allocator is used when `pooling` is set and the host allows it.
    pub fn new(cache_dir: &Path, pooling: bool) -> Result<Runtime> {
        let (engine, pooling) = match pooling.then(|| Engine::new(&config(true))) {
            Some(Ok(engine)) => (engine, true),
            fallback => {
                if let Some(Err(e)) = fallback {
                    tracing::warn!(
                        "pooling allocator unavailable ({e}); using on-demand allocation"
                    );
                }
                let engine =
                    Engine::new(&config(false)).map_err(|e| Error::Engine(e.to_string()))?;
                (engine, false)
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| Error::Engine(e.to_string()))?;
        // Outbound HTTP for steps granted `allowed_outbound_hosts`; every
        // request passes the step's allow-list first (see `Outbound`).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| Error::Engine(e.to_string()))?;
        Step::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| Error::Engine(e.to_string()))?;
        bindings::v0_1::Step::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| Error::Engine(e.to_string()))?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compat = format!("{:016x}", hasher.finish());

        std::fs::create_dir_all(cache_dir).map_err(|source| Error::Cache {
            path: cache_dir.into(),
            source,
        })?;

        // One ticker per engine drives every store's deadline.
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (stop, ticking) = (ticker_stop.clone(), engine.clone());
        std::thread::Builder::new()
            .name("acidic-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| Error::Engine(format!("cannot start the epoch ticker: {e}")))?;

        Ok(Runtime {
            engine,
            linker,
            cache_dir: cache_dir.to_path_buf(),
            compat,
            prepared: Mutex::new(HashMap::new()),
            ticker_stop,
            pooling,
            metrics: Metrics::default(),
        })
    }

    /// The prepared form of component `digest`: from memory, else from the
    /// on-disk cache, else compiled from the bytes `load` returns (and cached).
    pub async fn prepare<F, Fut>(&self, digest: &str, load: F) -> Result<Prepared>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<u8>>>,
    {
        if let Some(p) = self.prepared.lock().map_err(|_| poisoned())?.get(digest) {
            return Ok(p.clone());
        }
        let path = self
            .cache_dir
            .join(format!("{digest}-{}.cwasm", self.compat));
        let component = match self.load_cached(&path) {
            Some(c) => c,
            None => {
                let bytes = load().await?;
                if sha256_hex(&bytes) != digest {
                    return Err(Error::Corrupt(format!(
                        "component {digest}: stored bytes do not match their digest"
                    )));
                }
                self.compile_to_cache(&bytes, &path, digest).await?
            }
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| Error::Component {
                path: digest.to_string(),
                message: format!("does not fit the acidic:step world: {e:#}"),
            })?;
        let pre = StepPre::new(pre).map_err(|e| Error::Component {
            path: digest.to_string(),
            message: format!("does not export acidic:step's `run`: {e:#}"),
        })?;
        let prepared = Prepared(pre);
        self.prepared
            .lock()
            .map_err(|_| poisoned())?
            .insert(digest.to_string(), prepared.clone());
        Ok(prepared)
    }

    fn load_cached(&self, path: &Path) -> Option<Component> {
        if !path.is_file() {
            return None;
        }
        // SAFETY: the file was written by `compile_to_cache` from
        // `Engine::precompile_component`, under a name that carries this
        // engine's compatibility hash; wasmtime checks the header again.
        match unsafe { Component::deserialize_file(&self.engine, path) } {
            Ok(c) => {
                self.metrics.cache_loads.fetch_add(1, Ordering::Relaxed);
                Some(c)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "discarding unreadable cached component: {e}");
                let _ = std::fs::remove_file(path);
                None
            }
        }
    }

    async fn compile_to_cache(&self, bytes: &[u8], path: &Path, digest: &str) -> Result<Component> {
        let engine = self.engine.clone();
        let owned = bytes.to_vec();
        let compiled = tokio::task::spawn_blocking(move || engine.precompile_component(&owned))
            .await
            .map_err(|e| Error::Engine(e.to_string()))?
            .map_err(|e| Error::Component {
                path: digest.to_string(),
                message: format!("not a valid component: {e:#}"),
            })?;
        self.metrics.compiles.fetch_add(1, Ordering::Relaxed);
        // Write then rename, so a concurrent reader never sees half a file.
        let tmp = path.with_extension(format!("tmp{}", fastrand::u32(..)));
        std::fs::write(&tmp, &compiled).map_err(|source| Error::Cache {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, path).map_err(|source| Error::Cache {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: as in `load_cached`: we just wrote this file from `precompile_component`.
        unsafe { Component::deserialize_file(&self.engine, path) }.map_err(|e| Error::Component {
            path: digest.to_string(),
            message: format!("cannot load compiled form: {e:#}"),
        })
    }

    /// For `acidic bench`: how long compiling `bytes` takes, and a mean load
    /// of the compiled form from a file under `scratch` (as the cache loads it).
    pub fn time_compile_and_load(
        &self,
        bytes: &[u8],
        scratch: &Path,
    ) -> Result<(Duration, Duration)> {
        let start = Instant::now();
        let compiled = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| Error::Engine(format!("not a valid component: {e:#}")))?;
        let compile = start.elapsed();
        let path = scratch.join("bench.cwasm");
        std::fs::write(&path, &compiled).map_err(|source| Error::Cache {
            path: path.clone(),
            source,
        })?;
        const LOADS: u32 = 20;
        let start = Instant::now();
        for _ in 0..LOADS {
            // SAFETY: written just above by `precompile_component` of this engine.
            unsafe { Component::deserialize_file(&self.engine, &path) }
                .map_err(|e| Error::Engine(format!("cannot load compiled form: {e:#}")))?;
        }
        let load = start.elapsed() / LOADS;
        let _ = std::fs::remove_file(&path);
        Ok((compile, load))
    }

    /// Instantiates `prepared` afresh and calls its `run` with `input`, under
    /// `policy`'s deadline and memory cap. Returns the state with the step's
    /// buffered effects.
    pub async fn call(
        &self,
        prepared: &Prepared,
        state: StepState,
        input: &StepInput,
        policy: &StepPolicy,
    ) -> (StepState, CallOutcome) {
        let mut store = wasmtime::Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Fuel is metered engine-wide; a step without a budget gets all of it.
        if let Err(e) = store.set_fuel(policy.fuel.unwrap_or(u64::MAX)) {
            let state = store.into_data();
            let message = format!("cannot set the fuel budget: {e}");
            let kind = ErrorKind::Instantiate;
            return (state, CallOutcome::Aborted { kind, message });
        }
        // Every tick the guest yields to the executor, so a busy step never
        // holds a runtime thread for long; past the deadline it is stopped.
        let deadline = Instant::now() + policy.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            if Instant::now() >= deadline {
                ctx.data_mut().timed_out = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            // tokio's yield lets its I/O driver run too, so the database work of
            // other runs proceeds even on a single-threaded runtime.
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });

        let result = match prepared.0.instantiate_async(&mut store).await {
            Ok(instance) => {
                self.metrics.instantiations.fetch_add(1, Ordering::Relaxed);
                instance.call_run(&mut store, input).await
            }
            Err(e) => {
                let state = store.into_data();
                state.emit_output();
                let message = format!("cannot instantiate: {e:#}");
                let kind = if state.limiter.hit {
                    ErrorKind::MemoryLimit
                } else if state.timed_out {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Instantiate
                };
                return (state, CallOutcome::Aborted { kind, message });
            }
        };
        let state = store.into_data();
        state.emit_output();
        let outcome = match result {
            Ok(answer) => CallOutcome::Returned(answer),
            Err(e) => {
                let out_of_fuel =
                    e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::OutOfFuel);
                let (kind, message) = if out_of_fuel {
                    (
                        ErrorKind::FuelExhausted,
                        format!(
                            "fuel budget of {} units burnt",
                            policy.fuel.unwrap_or(u64::MAX)
                        ),
                    )
                } else if state.limiter.hit {
                    (
                        ErrorKind::MemoryLimit,
                        format!("memory cap of {} bytes reached: {e:#}", policy.memory),
                    )
                } else if state.timed_out {
                    (
                        ErrorKind::Timeout,
                        format!("deadline of {:?} passed", policy.timeout),
                    )
                } else {
                    (ErrorKind::Trap, format!("{e:?}"))
                };
                CallOutcome::Aborted { kind, message }
            }
        };
        (state, outcome)
    }
}

fn poisoned() -> Error {
    Error::Engine("component cache lock poisoned by a panic".into())
}

fn config(pooling: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    // Metered for every step so a manifest can bound any of them; a step
    // without a `fuel` budget gets u64::MAX, which it cannot burn.
    config.consume_fuel(true);
    config.wasm_backtrace_max_frames(NonZeroUsize::new(32));
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(256)
            .total_core_instances(1024)
            .total_memories(256)
            .total_tables(1024)
            .total_stacks(256)
            .max_core_instances_per_component(64)
            .max_memories_per_component(16)
            .max_tables_per_component(64)
            .max_memory_size(usize::try_from(MAX_MEMORY).unwrap_or(usize::MAX))
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

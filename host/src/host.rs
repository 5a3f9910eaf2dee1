//! The host's public face: open a database, start, enqueue, retry and
//! inspect runs. Registering workflows and finding their versions is in
//! `registry`; the step loop in `executor`; workers in `worker`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::registry::WorkflowCache;
use crate::run::{
    Lease, NewRun, RunRecord, RunStatus, StartOutcome, StepEvent, StepFailure, derived_key,
};
use crate::runtime::{Metrics, Runtime};
use crate::store::{InsertOutcome, RunFilter, Store, WorkflowVersion};
use crate::telemetry::Telemetry;
use crate::workflow::{Definition, Workflow};

/// Default lease: how long a claimed run stays locked without progress (as rocket-rides).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(90);

/// Time beyond a step's deadline that its lease must last, for instantiation and the commit.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// How to open a [`Host`].
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// `acidic.db`, a file path, `sqlite://path`, or `postgres://user@host/db[?schema=NAME]`.
    pub database_url: String,
    /// Where compiled components are cached; default: the user's cache folder.
    pub cache_dir: Option<PathBuf>,
    /// Lease length for claimed runs (at least the longest step deadline plus 5 s is used).
    pub lease: Duration,
    /// Use wasmtime's pooling allocator when the machine allows it.
    pub pooling: bool,
    /// This process's name in leases; default `hostname:pid`.
    pub worker_name: Option<String>,
    /// Database connections this process may hold (Postgres); default 10.
    pub max_connections: Option<u32>,
    /// Create the database if it does not exist (SQLite); default true.
    pub create: bool,
}

impl HostConfig {
    /// Defaults for the database at `database_url`.
    pub fn new(database_url: impl Into<String>) -> HostConfig {
        HostConfig {
            database_url: database_url.into(),
            cache_dir: None,
            lease: DEFAULT_LEASE,
            pooling: true,
            worker_name: None,
            max_connections: None,
            create: true,
        }
    }
}

/// The result of registering a manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    /// Workflow name.
    pub workflow: String,
    /// The version now current.
    pub version: u32,
    /// False if an identical definition was already registered.
    pub new: bool,
    /// Number of steps.
    pub steps: usize,
}

/// A request to run a workflow.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// Registered workflow name.
    pub workflow: String,
    /// Arguments.
    pub args: Value,
    /// Idempotency key; `None` derives one from workflow and args.
    pub key: Option<String>,
    /// The caller whose keys this one is among: the run is stored under
    /// `caller:key`, so two callers' equal keys are two runs. `None`: the
    /// key as given.
    pub caller: Option<String>,
}

impl RunRequest {
    /// A request with a derived key.
    pub fn new(workflow: impl Into<String>, args: Value) -> RunRequest {
        RunRequest {
            workflow: workflow.into(),
            args,
            key: None,
            caller: None,
        }
    }

    /// The same request in `caller`'s scope of keys.
    pub fn for_caller(mut self, caller: impl Into<String>) -> RunRequest {
        self.caller = Some(caller.into());
        self
    }

    /// The same request with an explicit key.
    pub fn with_key(mut self, key: impl Into<String>) -> RunRequest {
        self.key = Some(key.into());
        self
    }
}

/// A run staged by a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StagedRef {
    /// Its workflow.
    pub workflow: String,
    /// Its key.
    pub key: String,
}

/// What a `run`, `retry` or replay did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Run id.
    pub run_id: i64,
    /// Workflow.
    pub workflow: String,
    /// Pinned version.
    pub workflow_version: u32,
    /// Key.
    pub key: String,
    /// Status after this call.
    pub status: RunStatus,
    /// Recovery point after this call.
    pub recovery_point: String,
    /// Result, if succeeded.
    pub result: Option<Value>,
    /// True if the run was already final and nothing ran.
    pub replayed: bool,
    /// Steps committed by this call.
    pub steps_committed: u32,
    /// The failure that stopped this call, or the stored one on replay.
    pub error: Option<StepFailure>,
    /// When a pending run may be retried (ms since epoch).
    pub retry_at: Option<i64>,
    /// Runs staged by steps committed in this call.
    pub staged: Vec<StagedRef>,
}

impl RunReport {
    pub(crate) fn from_record(run: &RunRecord, replayed: bool) -> RunReport {
        RunReport {
            run_id: run.id,
            workflow: run.workflow.clone(),
            workflow_version: run.workflow_version,
            key: run.key.clone(),
            status: run.status,
            recovery_point: run.recovery_point.clone(),
            result: run.result.clone(),
            replayed,
            steps_committed: 0,
            // A succeeded run's last error is history (the timeline keeps
            // it), not the answer: a replay carries none.
            error: run
                .last_error
                .clone()
                .filter(|_| run.status != RunStatus::Succeeded),
            retry_at: (run.status == RunStatus::Pending).then_some(run.available_at),
            staged: Vec::new(),
        }
    }
}

/// A run with its timeline and the runs it staged.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    /// The run.
    pub run: RunRecord,
    /// Its step calls, oldest first.
    pub timeline: Vec<StepEvent>,
    /// Runs it staged.
    pub children: Vec<RunRecord>,
}

/// The result of enqueueing.
#[derive(Debug, Clone, Serialize)]
pub struct Enqueued {
    /// Run id.
    pub run_id: i64,
    /// Key.
    pub key: String,
    /// False if the key already existed with the same args.
    pub new: bool,
}

/// A run [`Host::start`] found or created.
pub enum Started {
    /// Leased to this host: [`Host::drive_started`] runs it.
    Claimed(ClaimedRun),
    /// Finished (or waiting for the runs it awaits): nothing to run.
    Final(Box<RunRecord>),
}

/// A run leased to this host, not yet driven.
pub struct ClaimedRun {
    run: Box<RunRecord>,
    lease: Lease,
}

impl ClaimedRun {
    /// The run as claimed.
    pub fn run(&self) -> &RunRecord {
        &self.run
    }
}

/// The acidic host: a database, a wasm engine, and the step executor.
pub struct Host {
    pub(crate) store: Store,
    pub(crate) runtime: Runtime,
    pub(crate) workflows: WorkflowCache,
    worker: String,
    pub(crate) lease: Duration,
    pub(crate) stopping: AtomicBool,
    pub(crate) telemetry: Telemetry,
}

impl Host {
    /// Closes the database connections once the calls in flight give theirs
    /// back; every later call fails.
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// Opens (and migrates) the database and sets up the engine.
    pub async fn open(config: HostConfig) -> Result<Host> {
        let pool = config
            .max_connections
            .unwrap_or(crate::store::DEFAULT_POOL_SIZE);
        let store = Store::connect_with(&config.database_url, pool, config.create).await?;
        let cache_dir = config.cache_dir.clone().unwrap_or_else(default_cache_dir);
        let runtime = Runtime::new(&cache_dir, config.pooling)?;
        let worker = config
            .worker_name
            .clone()
            .unwrap_or_else(|| format!("{}:{}", this_host(), std::process::id()));
        Ok(Host {
            store,
            runtime,
            workflows: WorkflowCache::default(),
            worker,
            lease: config.lease,
            stopping: AtomicBool::new(false),
            telemetry: Telemetry::default(),
        })
    }

    /// Asks every run this host is driving to stop after its current step and
    /// hand its lease back (graceful shutdown). Irreversible.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// True once [`Host::stop`] was called.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// This process's name in leases.
    pub fn worker_name(&self) -> &str {
        &self.worker
    }

    /// The host's Prometheus metrics.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The runtime's counters (compiles, cache loads, instantiations).
    pub fn metrics(&self) -> &Metrics {
        &self.runtime.metrics
    }

    /// Runs `request` now, in this task, until it finishes or a step fails.
    ///
    /// A finished key returns its stored result without running anything; a
    /// key in use with other args is [`Error::ArgsMismatch`]; a run leased by
    /// another worker is [`Error::Locked`]. A failed step is not an error:
    /// the report carries it, and the run stays resumable.
    pub async fn run(&self, request: RunRequest) -> Result<RunReport> {
        match self.start(request).await? {
            Started::Claimed(claimed) => self.drive_started(claimed).await,
            Started::Final(run) => Ok(RunReport::from_record(&run, true)),
        }
    }

    /// Finds or creates `request`'s run and leases it to this host, without
    /// running a step: [`Host::drive_started`] does that (in another task, if
    /// the caller may stop waiting). A run leased by another worker is
    /// [`Error::Locked`]; a key in use with other args [`Error::ArgsMismatch`].
    pub async fn start(&self, request: RunRequest) -> Result<Started> {
        // The latest version this host knows, not read again per run: the
        // store creates a run only on the latest, and says when another
        // process registered a newer one, which is then read.
        let workflow = self.registry().latest_known(&request.workflow).await?;
        let mut new = requested_run(&workflow, request, Duration::ZERO, "default")?;
        let mut lease = self.lease_for(&workflow.definition);
        let mut outcome = self.store.start_run(&new, &lease).await?;
        if matches!(outcome, StartOutcome::Stale) {
            let workflow = self.latest(&new.workflow).await?;
            new = new.on_version(&workflow);
            lease = self.lease_for(&workflow.definition);
            outcome = self.store.start_run(&new, &lease).await?;
        }
        match outcome {
            StartOutcome::Claimed(run) => Ok(Started::Claimed(ClaimedRun { run, lease })),
            StartOutcome::Final(run) => Ok(Started::Final(run)),
            StartOutcome::Locked {
                locked_by,
                remaining_ms,
            } => Err(Error::Locked {
                key: new.key,
                locked_by,
                remaining_ms,
            }),
            StartOutcome::Mismatch => Err(Error::ArgsMismatch {
                workflow: new.workflow,
                key: new.key,
            }),
            // Read afresh just now, and already superseded: registrations
            // racing this start. The caller may start again.
            StartOutcome::Stale => Err(Error::Conflict {
                tries: 2,
                message: format!(
                    "workflow `{}` got a new version twice while run `{}` started",
                    new.workflow, new.key
                ),
            }),
        }
    }

    /// Hands a run [`Host::start`] claimed back without running it: it is
    /// runnable again at once, by anyone.
    pub async fn release_started(&self, claimed: ClaimedRun) -> Result<()> {
        self.store.release(claimed.run.id, &claimed.lease).await
    }

    /// Runs a run [`Host::start`] claimed until it finishes or a step fails.
    pub async fn drive_started(&self, claimed: ClaimedRun) -> Result<RunReport> {
        self.drive(*claimed.run, claimed.lease).await
    }

    /// Creates `request`'s run as pending, without running it; a worker (or
    /// `run`/`retry` with its key) runs it later.
    pub async fn enqueue(
        &self,
        request: RunRequest,
        delay: Duration,
        queue: &str,
    ) -> Result<Enqueued> {
        let workflow = self.latest(&request.workflow).await?;
        let new = requested_run(&workflow, request, delay, queue)?;
        match self.store.insert_run(&new).await? {
            InsertOutcome::Created(run_id) => Ok(Enqueued {
                run_id,
                key: new.key,
                new: true,
            }),
            InsertOutcome::Existing(run) => Ok(Enqueued {
                run_id: run.id,
                key: run.key,
                new: false,
            }),
            InsertOutcome::Mismatch => Err(Error::ArgsMismatch {
                workflow: new.workflow,
                key: new.key,
            }),
        }
    }

    /// Runs a failed or pending run again now, from its recovery point; a
    /// failed run gets a fresh budget of attempts for the step that failed.
    /// A succeeded run is returned as a replay, with nothing run.
    pub async fn retry(&self, key: &str, workflow: Option<&str>) -> Result<RunReport> {
        self.retry_on(key, workflow, false).await
    }

    /// [`Host::retry`]; with `upgrade`, on the latest version of the run's
    /// workflow (see [`Host::requeue_on`]).
    pub async fn retry_on(
        &self,
        key: &str,
        workflow: Option<&str>,
        upgrade: bool,
    ) -> Result<RunReport> {
        let run = self.requeue_on(key, workflow, upgrade).await?;
        if run.status == RunStatus::Succeeded {
            return Ok(RunReport::from_record(&run, true));
        }
        self.resume(run.id, &run.workflow, run.workflow_version)
            .await
    }

    /// Puts a failed or pending run back in the queue, runnable now, for a
    /// worker to pick up; a failed run gets a fresh budget of attempts.
    /// Returns the run as it now stands (a succeeded run is left alone).
    pub async fn requeue(&self, key: &str, workflow: Option<&str>) -> Result<RunRecord> {
        self.requeue_on(key, workflow, false).await
    }

    /// [`Host::requeue`]; with `upgrade`, the run also moves to the latest
    /// registered version of its workflow, which must have the step the run
    /// stands at (the steps before it are not run again). This is how a
    /// fixed component reaches a run that failed on the broken one.
    pub async fn requeue_on(
        &self,
        key: &str,
        workflow: Option<&str>,
        upgrade: bool,
    ) -> Result<RunRecord> {
        let run = self.find(key, workflow).await?;
        let hint = match run.status {
            // Retrying asks for the run to be complete; a succeeded one already is.
            RunStatus::Succeeded => return Ok(run),
            RunStatus::Cancelled => {
                "a cancelled run is not retried; start a new one with a new key"
            }
            RunStatus::Waiting => "it resumes when the runs it awaits finish",
            RunStatus::Pending | RunStatus::Running | RunStatus::Failed => "",
        };
        if !hint.is_empty() {
            return Err(Error::InvalidState {
                key: run.key,
                status: run.status.to_string(),
                hint,
            });
        }
        let target = match upgrade {
            true => self.upgrade_for(&run).await?,
            false => None,
        };
        if !self.store.reset_for_retry(run.id, target.as_ref()).await? {
            let (locked_by, until) = (
                run.locked_by.clone().unwrap_or_default(),
                run.locked_until.unwrap_or(0),
            );
            return Err(Error::Locked {
                key: run.key,
                locked_by,
                remaining_ms: until - crate::run::now_ms(),
            });
        }
        self.store
            .run(run.id)
            .await?
            .ok_or_else(|| Error::RunNotFound(run.key))
    }

    /// The latest version of `run`'s workflow, if it is newer than the run's
    /// and has the step the run stands at.
    async fn upgrade_for(&self, run: &RunRecord) -> Result<Option<WorkflowVersion>> {
        let latest = self
            .store
            .workflow_versions(Some(&run.workflow))
            .await?
            .into_iter()
            .max_by_key(|v| v.version);
        let Some(latest) = latest.filter(|v| v.version != run.workflow_version) else {
            return Ok(None);
        };
        let definition = self.version(&run.workflow, latest.version).await?;
        if definition.definition.step(&run.recovery_point).is_none() {
            return Err(Error::UpgradeWithoutStep {
                key: run.key.clone(),
                workflow: run.workflow.clone(),
                version: latest.version,
                step: run.recovery_point.clone(),
            });
        }
        Ok(Some(latest))
    }

    /// Runs the runs staged by `report` (and those they stage) to their end,
    /// in this task, and resumes any run that was waiting for them once they
    /// succeeded. Returns their reports in the order they ran.
    pub async fn run_staged(&self, report: &RunReport) -> Result<Vec<RunReport>> {
        let mut queue: VecDeque<StagedRef> = report.staged.iter().cloned().collect();
        let mut waiting: Vec<i64> = Vec::new();
        if report.replayed || report.status == RunStatus::Waiting {
            // Runs it staged earlier may still be unfinished: follow those too.
            let filter = RunFilter {
                parent: Some(report.run_id),
                limit: 10_000,
                ..RunFilter::default()
            };
            let children = self.store.list_runs(&filter).await?;
            queue.extend(
                children
                    .into_iter()
                    .rev()
                    .filter(|c| !c.status.is_final())
                    .map(|c| StagedRef {
                        workflow: c.workflow,
                        key: c.key,
                    }),
            );
        }
        if report.status == RunStatus::Waiting {
            waiting.push(report.run_id);
        }
        let mut reports = Vec::new();
        loop {
            while let Some(staged) = queue.pop_front() {
                let run = self.find(&staged.key, Some(&staged.workflow)).await?;
                if run.status.is_final() || run.status == RunStatus::Waiting {
                    continue;
                }
                let child = self
                    .resume(run.id, &run.workflow, run.workflow_version)
                    .await?;
                absorb(child, &mut waiting, &mut queue, &mut reports);
            }
            // Runs whose awaited children all succeeded are runnable again.
            let mut resumed = false;
            for id in std::mem::take(&mut waiting) {
                let Some(run) = self.store.run(id).await? else {
                    continue;
                };
                match run.status {
                    RunStatus::Waiting => waiting.push(id),
                    RunStatus::Pending => {
                        let again = self
                            .resume(run.id, &run.workflow, run.workflow_version)
                            .await?;
                        absorb(again, &mut waiting, &mut queue, &mut reports);
                        resumed = true;
                    }
                    _ => {}
                }
            }
            if !resumed && queue.is_empty() {
                return Ok(reports);
            }
        }
    }

    /// The run with `key` (of `workflow`, if the key is used by several).
    pub async fn find(&self, key: &str, workflow: Option<&str>) -> Result<RunRecord> {
        let mut runs = self.store.runs_by_key(key, workflow).await?;
        match runs.len() {
            0 => Err(Error::RunNotFound(key.to_string())),
            1 => Ok(runs.remove(0)),
            _ => Err(Error::AmbiguousKey {
                key: key.to_string(),
                workflows: runs
                    .iter()
                    .map(|r| r.workflow.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The run with `key`, its step timeline, and the runs it staged.
    pub async fn show(&self, key: &str, workflow: Option<&str>) -> Result<RunDetail> {
        let run = self.find(key, workflow).await?;
        let timeline = self.store.step_events(run.id).await?;
        let filter = RunFilter {
            parent: Some(run.id),
            limit: 1000,
            ..RunFilter::default()
        };
        let mut children = self.store.list_runs(&filter).await?;
        children.reverse();
        Ok(RunDetail {
            run,
            timeline,
            children,
        })
    }

    /// Breaks the lease of a running run whose worker is gone: the run is
    /// pending again, runnable at once. Refused while the lease's holder is
    /// a live process on this machine (stop it: it hands the run back). A
    /// holder elsewhere that is in fact alive cannot commit its step any
    /// more: commits are fenced on the lease.
    pub async fn unlock(&self, key: &str, workflow: Option<&str>) -> Result<RunRecord> {
        let run = self.find(key, workflow).await?;
        let (RunStatus::Running, Some(owner)) = (run.status, run.locked_by.clone()) else {
            return Err(Error::InvalidState {
                key: run.key,
                status: run.status.to_string(),
                hint: "only a running run has a lease to break",
            });
        };
        if live_holder_here(&owner).is_some() {
            return Err(Error::InvalidState {
                key: run.key,
                status: format!("running in {owner}, a live process of this machine"),
                hint: "stop that process (SIGINT or SIGTERM hands the run back) instead",
            });
        }
        let lease = Lease {
            owner,
            ttl: Duration::ZERO,
        };
        self.store.release(run.id, &lease).await?;
        self.store
            .run(run.id)
            .await?
            .ok_or_else(|| Error::RunNotFound(run.key))
    }

    /// Runs matching `filter`, newest first.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        self.store.list_runs(filter).await
    }

    /// The store this host keeps its state in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Every version of workflow `name` (of every workflow if `None`).
    pub async fn workflow_versions(&self, name: Option<&str>) -> Result<Vec<WorkflowVersion>> {
        self.store.workflow_versions(name).await
    }

    /// Version `version` of workflow `name`.
    pub async fn workflow_version(&self, name: &str, version: u32) -> Result<Arc<Workflow>> {
        self.version(name, version).await
    }

    async fn resume(&self, run_id: i64, workflow: &str, version: u32) -> Result<RunReport> {
        let workflow = self.version(workflow, version).await?;
        let lease = self.lease_for(&workflow.definition);
        match self.store.claim(run_id, &lease).await? {
            StartOutcome::Claimed(run) => self.drive(*run, lease).await,
            StartOutcome::Final(run) => Ok(RunReport::from_record(&run, true)),
            StartOutcome::Locked {
                locked_by,
                remaining_ms,
            } => {
                let key = self
                    .store
                    .run(run_id)
                    .await?
                    .map(|r| r.key)
                    .unwrap_or_default();
                Err(Error::Locked {
                    key,
                    locked_by,
                    remaining_ms,
                })
            }
            StartOutcome::Mismatch | StartOutcome::Stale => Err(Error::Corrupt(format!(
                "run {run_id}: a claim of an existing run reported a new run's outcome"
            ))),
        }
    }

    pub(crate) fn lease_for(&self, definition: &Definition) -> Lease {
        // A step must be able to finish (and commit) inside the lease it started under.
        let ttl = self.lease.max(definition.max_timeout() + LEASE_MARGIN);
        Lease::new(&self.worker, ttl)
    }
}

/// This machine's name, as leases give it (`host:pid/token`).
fn this_host() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    match host.trim() {
        "" => "localhost".to_string(),
        name => name.to_string(),
    }
}

/// The process of this machine that holds lease `owner`, if it is alive.
fn live_holder_here(owner: &str) -> Option<u32> {
    let worker = owner.split('/').next()?;
    let (host, pid) = worker.rsplit_once(':')?;
    let pid: u32 = pid.parse().ok()?;
    (host == this_host()
        && pid != std::process::id()
        && std::path::Path::new("/proc").join(pid.to_string()).exists())
    .then_some(pid)
}

/// The run a caller's `request` asks for, its key in the caller's scope.
fn requested_run(
    workflow: &Workflow,
    request: RunRequest,
    delay: Duration,
    queue: &str,
) -> Result<NewRun> {
    let mut new = new_run(workflow, request.key, request.args, delay, queue, None)?;
    if let Some(caller) = &request.caller {
        new.key = scoped_key(caller, &new.key);
    }
    Ok(new)
}

/// The key a run of `caller`'s is stored under: `caller:key`. Callers'
/// names hold no `:`, so two callers' keys never meet.
pub fn scoped_key(caller: &str, key: &str) -> String {
    format!("{caller}:{key}")
}

/// The run to create for `workflow` with `key` (or one derived from the
/// args), refusing a key that is empty, longer than 255 bytes or holds
/// control characters.
pub(crate) fn new_run(
    workflow: &Workflow,
    key: Option<String>,
    args: Value,
    delay: Duration,
    queue: &str,
    parent_run_id: Option<i64>,
) -> Result<NewRun> {
    let definition = &workflow.definition;
    let key = key.unwrap_or_else(|| derived_key(&definition.name, &args));
    if key.is_empty() || key.len() > 255 || key.chars().any(char::is_control) {
        return Err(Error::InvalidKey(key.chars().take(64).collect()));
    }
    let new = NewRun {
        workflow: definition.name.clone(),
        workflow_version: 0,
        definition_hash: String::new(),
        first_step: String::new(),
        attributes: serde_json::Map::new(),
        key,
        args,
        delay,
        queue: queue.to_string(),
        parent_run_id,
        depth: 0,
        awaited: false,
    };
    Ok(new.on_version(workflow))
}

/// Takes in a report of `run_staged`: follow what it staged, and watch it if it waits.
fn absorb(
    report: RunReport,
    waiting: &mut Vec<i64>,
    queue: &mut VecDeque<StagedRef>,
    reports: &mut Vec<RunReport>,
) {
    if report.status == RunStatus::Waiting {
        waiting.push(report.run_id);
    }
    queue.extend(report.staged.iter().cloned());
    reports.push(report);
}

/// `$ACIDIC_CACHE_DIR`, else `$XDG_CACHE_HOME/acidic`, else `~/.cache/acidic`.
fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ACIDIC_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("acidic");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("acidic"),
        None => std::env::temp_dir().join("acidic-cache"),
    }
}

//! Workers: the runs table as a queue. A worker claims runnable runs (due
//! pending runs, and running ones whose worker died: the completer), drives
//! them with bounded concurrency, and periodically reaps finished runs past
//! their retention (the reaper).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::host::{Host, RunReport};
use crate::run::{Lease, RunRecord, RunStatus, now_ms};
use crate::store::{CancelOutcome, Claim};

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Runs driven at once by this process.
    pub concurrency: usize,
    /// Queues to claim from; empty means all.
    pub queues: Vec<String>,
    /// How long to sleep when there is nothing to claim.
    pub poll: Duration,
    /// How long an expired lease stays untouched before the run is taken over.
    pub grace: Duration,
    /// Finished runs older than this are deleted; `None` keeps them.
    pub retention: Option<Duration>,
    /// How often to reap.
    pub reap_every: Duration,
    /// Exit once nothing is runnable, nothing is in flight and no run waits
    /// out the backoff of a failed attempt (for scripts and tests; a run
    /// enqueued with a delay does not keep it).
    pub exit_when_idle: bool,
    /// Claim only runs whose caller gave up on them (the completer's pass).
    pub abandoned_only: bool,
}

/// How a worker waits between tries to get its notification connection back.
const RECONNECT: crate::backoff::Backoff =
    crate::backoff::Backoff::new(Duration::from_millis(100), Duration::from_millis(3_200));

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            queues: Vec::new(),
            poll: Duration::from_millis(200),
            grace: Duration::ZERO,
            retention: Some(Duration::from_secs(72 * 3600)),
            reap_every: Duration::from_secs(60),
            exit_when_idle: false,
            abandoned_only: false,
        }
    }
}

impl WorkerOptions {
    /// These options for one completer pass: only the runs whose callers gave
    /// up on them (due or stalled for longer than the grace, at least 1 s),
    /// then stop.
    pub fn completer(mut self) -> WorkerOptions {
        self.exit_when_idle = true;
        self.abandoned_only = true;
        self.grace = self.grace.max(Duration::from_secs(1));
        self
    }

    /// Database connections a process working with these options needs: one
    /// per run in flight, one to claim, one to listen.
    pub fn connections(&self) -> u32 {
        u32::try_from(self.concurrency)
            .unwrap_or(u32::MAX)
            .saturating_add(2)
    }
}

/// What a worker did before it stopped.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkSummary {
    /// Runs claimed.
    pub claimed: u64,
    /// Runs that succeeded.
    pub succeeded: u64,
    /// Runs that went on to wait for the runs they await.
    pub waiting: u64,
    /// Runs that stopped on a failed step (pending retry or failed).
    pub stopped_on_failure: u64,
    /// Runs handed back at shutdown.
    pub released: u64,
    /// Runs whose drive ended in a host error (logged; the run stays resumable).
    pub errors: u64,
    /// Finished runs deleted by the reaper.
    pub reaped: u64,
}

impl WorkSummary {
    fn count(&mut self, result: std::result::Result<Result<RunReport>, tokio::task::JoinError>) {
        match result {
            Ok(Ok(r)) if r.status == RunStatus::Succeeded => self.succeeded += 1,
            Ok(Ok(r)) if r.status == RunStatus::Waiting => self.waiting += 1,
            Ok(Ok(r)) if r.error.is_none() && r.status == RunStatus::Pending => self.released += 1,
            Ok(Ok(_)) => self.stopped_on_failure += 1,
            Ok(Err(e)) => {
                tracing::warn!("run ended with a host error: {e}");
                self.errors += 1;
            }
            Err(e) => {
                tracing::error!("a run's task panicked: {e}");
                self.errors += 1;
            }
        }
    }
}

/// What cancelling a run did.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancellation {
    /// Cancelled: the run and this many runs in all (with its unfinished
    /// staged runs).
    Cancelled(u64),
    /// The run is inside step `step` of worker `locked_by`: that step's
    /// effects commit, then the run is cancelled (at once, if it fails).
    Requested {
        /// The lease's owner.
        locked_by: String,
        /// The step it is in.
        step: String,
    },
}

impl std::fmt::Display for Cancellation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cancellation::Cancelled(n) => {
                write!(f, "cancelled {n} run{}", if *n == 1 { "" } else { "s" })
            }
            Cancellation::Requested { locked_by, step } => write!(
                f,
                "cancel requested: the run is inside step `{step}` ({locked_by}); \
                 it is cancelled when that step ends (what the step did commits, no later step runs)"
            ),
        }
    }
}

impl Host {
    /// Works runs until `shutdown` resolves (or, with `exit_when_idle`, until
    /// there is nothing left). On shutdown it stops claiming, lets each run
    /// finish its current step, hands the runs back, and returns.
    pub async fn work(
        self: &Arc<Self>,
        options: WorkerOptions,
        shutdown: impl Future<Output = ()>,
    ) -> Result<WorkSummary> {
        let claim = Claim {
            queues: options.queues.clone(),
            grace: options.grace,
            abandoned_only: options.abandoned_only,
        };
        let concurrency = options.concurrency.max(1);
        let mut summary = WorkSummary::default();
        let mut tasks: JoinSet<Result<RunReport>> = JoinSet::new();
        let mut next_reap = Instant::now();
        let mut claim_errors = 0u32;
        let wake = Arc::new(tokio::sync::Notify::new());
        let listener = self.listen(Arc::clone(&wake)).await;
        tokio::pin!(shutdown);
        loop {
            if self.stopping() {
                break;
            }
            if let Some(retention) = options.retention
                && Instant::now() >= next_reap
            {
                summary.reaped += self.reap(retention).await.unwrap_or_else(|e| {
                    tracing::warn!("reaper: {e}");
                    0
                });
                next_reap = Instant::now() + options.reap_every;
            }

            let mut idle = false;
            // Idle because the queue is empty, not because the database is away.
            let mut drained = false;
            if tasks.len() < concurrency && !self.stopping() {
                let free = concurrency - tasks.len();
                match self.claim_some(&claim, free).await {
                    Ok(claimed) => {
                        claim_errors = 0;
                        // Fewer than asked for: nothing more is runnable right now.
                        idle = claimed.len() < free;
                        drained = idle;
                        for (run, lease) in claimed {
                            summary.claimed += 1;
                            let host = Arc::clone(self);
                            tasks.spawn(async move { host.drive(run, lease).await });
                        }
                    }
                    Err(e) => {
                        // The database is unreachable or busy: back off, keep what is in flight.
                        claim_errors = claim_errors.saturating_add(1);
                        tracing::warn!("cannot claim runs: {e}");
                        idle = true;
                    }
                }
            }
            if drained && tasks.is_empty() && options.exit_when_idle {
                // A run whose step failed comes back after its backoff: the
                // work is not done until it has (the completer's one pass
                // takes only what is overdue).
                let retrying = !options.abandoned_only
                    && !self.stopping()
                    && self
                        .store
                        .retries_waiting(&options.queues)
                        .await
                        .unwrap_or_else(|e| {
                            tracing::warn!("cannot tell whether runs wait to be retried: {e}");
                            false
                        });
                if !retrying {
                    break;
                }
            }
            let pause = options.poll * claim_errors.clamp(1, 50);
            tokio::select! {
                _ = &mut shutdown => {
                    // Runs in flight finish their current step, then hand their lease back.
                    self.stop();
                    break;
                }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => summary.count(done),
                _ = tokio::time::sleep(pause), if idle || tasks.len() >= concurrency => {}
                _ = wake.notified(), if idle && claim_errors == 0 => {}
            }
        }
        if let Some(listener) = listener {
            listener.abort();
        }
        while let Some(done) = tasks.join_next().await {
            summary.count(done);
        }
        Ok(summary)
    }

    /// Where the backend can announce runnable runs (Postgres `LISTEN`),
    /// a task that wakes `wake` on each announcement; polling stays the
    /// fallback, for announcements lost while the connection was down.
    async fn listen(&self, wake: Arc<tokio::sync::Notify>) -> Option<tokio::task::JoinHandle<()>> {
        let mut wakeups = match self.store.wakeups().await {
            Ok(w) => w?,
            Err(e) => {
                tracing::warn!("cannot listen for runnable runs, polling only: {e}");
                return None;
            }
        };
        Some(tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                match wakeups.next().await {
                    Ok(()) => {
                        failures = 0;
                        wake.notify_one();
                    }
                    Err(e) => {
                        // The listener reconnects on its next call; meanwhile the worker polls.
                        failures = failures.saturating_add(1);
                        tracing::warn!("lost the notification connection, reconnecting: {e}");
                        let pause = RECONNECT.delay(failures);
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        }))
    }

    /// Claims up to `limit` runnable runs, each with a lease long enough for
    /// its workflow's longest step.
    async fn claim_some(&self, claim: &Claim, limit: usize) -> Result<Vec<(RunRecord, Lease)>> {
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let claimed = self
            .store
            .claim_batch(claim, self.worker_name(), self.lease, limit)
            .await?;
        let mut ready = Vec::with_capacity(claimed.len());
        for (run, lease) in claimed {
            let workflow = match self.version(&run.workflow, run.workflow_version).await {
                Ok(w) => w,
                Err(e) => {
                    self.store.release(run.id, &lease).await?;
                    tracing::warn!(run = %run.key, "cannot run: {e}");
                    continue;
                }
            };
            let needed = self.lease_for(&workflow.definition).ttl;
            if needed > lease.ttl {
                let lease = Lease {
                    owner: lease.owner,
                    ttl: needed,
                };
                if self.store.extend_lease(run.id, &lease).await? {
                    ready.push((run, lease));
                }
                continue;
            }
            ready.push((run, lease));
        }
        Ok(ready)
    }

    /// Cancels the run with `key` and its unfinished staged runs, recording
    /// `by`. A run inside a step is cancelled when that step ends (its
    /// effects commit; no later step runs), or at once if the step fails:
    /// this records the request and says so.
    pub async fn cancel(
        &self,
        key: &str,
        workflow: Option<&str>,
        by: &str,
    ) -> Result<Cancellation> {
        // A step may end between reading the run and writing: read again.
        for _ in 0..5 {
            let run = self.find(key, workflow).await?;
            let parent = self
                .parent_failure(
                    &run,
                    crate::run::ErrorKind::ChildCancelled,
                    &format!("cancelled by {by}"),
                )
                .await?;
            match self.store.cancel(run.id, by, parent.as_ref(), None).await? {
                CancelOutcome::Cancelled(n) => return Ok(Cancellation::Cancelled(n)),
                CancelOutcome::AlreadyFinal(status) => {
                    return Err(Error::InvalidState {
                        key: run.key,
                        status: status.to_string(),
                        hint: "only unfinished runs can be cancelled",
                    });
                }
                CancelOutcome::Requested { locked_by, step } => {
                    return Ok(Cancellation::Requested { locked_by, step });
                }
                CancelOutcome::Raced => {}
            }
        }
        Err(Error::Conflict {
            tries: 5,
            message: format!("run `{key}` kept changing while it was being cancelled"),
        })
    }

    /// Deletes finished runs that finished more than `older_than` ago, in
    /// batches. Returns how many were deleted.
    pub async fn reap(&self, older_than: Duration) -> Result<u64> {
        let cutoff = now_ms() - crate::run::ms(older_than);
        let mut total = 0;
        loop {
            let n = self.store.reap(cutoff, 500).await?;
            total += n;
            if n < 500 {
                return Ok(total);
            }
        }
    }

    /// Waits until the run with `key` is final (or `timeout` passes) and reports it.
    pub async fn wait(
        &self,
        key: &str,
        workflow: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<RunReport> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let run = self.find(key, workflow).await?;
            if run.status.is_final() || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(RunReport::from_record(&run, true));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

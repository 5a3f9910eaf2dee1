//! The step loop: for a leased run, call the step at its recovery point, then
//! commit its effects with the next recovery point, or record its failure.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::telemetry::Telemetry;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::host::{Host, RunReport, StagedRef};
use crate::manifest::FINISHED;
use crate::registry::Registry;
use crate::run::{
    CommitOutcome, ErrorKind, FailureOutcome, FailureRecord, Lease, NewRun, ParentFailure,
    RunRecord, RunStatus, StepCommit, StepEnd, StepFailure, canonical_json, derived_key, now_ms,
    step_key,
};
use crate::runtime::Runtime;
use crate::runtime::limits::stored_message;
use crate::runtime::{CallOutcome, StagedJob, StepInput, StepState};
use crate::store::{CancelOutcome, StepTx, Store};

mod outcome;

use outcome::{CallFacts, Failed, classify};

/// Longest wait for a failed step's transaction to roll back.
const ROLLBACK_WAIT: Duration = Duration::from_secs(10);

/// Longest error message kept of a failed step (the guest's own included).
const MAX_ERROR_MESSAGE: usize = 16 << 10;

/// How long a step whose transaction lost a conflict (a serialization
/// failure, a deadlock, a busy database) is tried again at once, none of
/// those tries counted against its attempts. Past it, the run is handed back
/// to wait out the step's backoff, still without using an attempt: a run
/// never fails for good because of conflicts alone.
const CONFLICT_WINDOW: Duration = Duration::from_secs(10);

/// The pauses between those tries: 1 ms doubling to 100 ms, jittered.
const CONFLICT_BACKOFF: crate::backoff::Backoff =
    crate::backoff::Backoff::new(Duration::from_millis(1), Duration::from_millis(100));
use crate::workflow::StepDef;

/// A step call that committed.
struct Committed {
    end: StepEnd,
    staged: Vec<NewRun>,
    attributes: Map<String, Value>,
    /// Awaited runs not yet succeeded: the run now waits for them.
    waiting_for: u32,
    /// Who asked to cancel the run while the step ran: it goes no further.
    cancel_requested: Option<String>,
}

/// One step call of one run, as the executor sees it.
struct Call<'a> {
    run: &'a RunRecord,
    lease: &'a Lease,
    step: &'a StepDef,
    next: &'a str,
    attempt: u32,
    started_at: i64,
}

/// The step loop, with what it depends on named: the store it commits to,
/// the runtime that calls a step, the registry's lookups, and the host's
/// stop flag (it hands a run back between steps once that is set).
pub(crate) struct Executor<'a> {
    store: &'a Store,
    runtime: &'a Runtime,
    registry: Registry<'a>,
    stopping: &'a AtomicBool,
    telemetry: &'a Telemetry,
}

impl Host {
    /// This host's step loop.
    pub(crate) fn executor(&self) -> Executor<'_> {
        Executor {
            store: &self.store,
            runtime: &self.runtime,
            registry: self.registry(),
            stopping: &self.stopping,
            telemetry: &self.telemetry,
        }
    }

    /// See [`Executor::drive`].
    pub(crate) async fn drive(&self, run: RunRecord, lease: Lease) -> Result<RunReport> {
        self.executor().drive(run, lease).await
    }

    /// See [`Executor::parent_failure`].
    pub(crate) async fn parent_failure(
        &self,
        child: &RunRecord,
        kind: ErrorKind,
        message: &str,
    ) -> Result<Option<ParentFailure>> {
        self.executor().parent_failure(child, kind, message).await
    }
}

impl Executor<'_> {
    /// Runs the steps of `run`, which `lease` holds, until it finishes, waits
    /// for children, or a step fails. Each step is its own transaction; a
    /// failed step is recorded and the lease released, so the run can always
    /// be resumed. If the host itself fails (the database, a corrupt row), the
    /// lease is released too.
    pub(crate) async fn drive(&self, run: RunRecord, lease: Lease) -> Result<RunReport> {
        let id = run.id;
        let result = self.drive_steps(run, &lease).await;
        if let Err(e) = &result
            && !matches!(e, Error::LeaseLost(_))
            && let Err(release) = self.store.release(id, &lease).await
        {
            tracing::warn!(
                run = id,
                "could not release the lease after `{e}`: {release}"
            );
        }
        result
    }

    async fn drive_steps(&self, mut run: RunRecord, lease: &Lease) -> Result<RunReport> {
        let workflow = self
            .registry
            .version(&run.workflow, run.workflow_version)
            .await?;
        let definition = &workflow.definition;
        let mut report = RunReport::from_record(&run, false);
        report.error = None;
        if run.attempts == 0 && run.step_attempt == 0 {
            self.telemetry.first_claim(&run.workflow, run.created_at);
        }
        // The current step's conflicts: when the first was, and how many.
        let mut conflicts: Option<(Instant, u32)> = None;
        loop {
            // Asked to cancel while another worker's step ran (and that
            // worker died before it could), or a claim of such a run.
            if let Some(by) = run.cancel_requested_by.take() {
                self.cancel_requested(&run, Some(lease), &by, &mut report)
                    .await?;
                return Ok(report);
            }
            if self.stopping.load(Ordering::SeqCst) {
                // Shutting down between steps: hand the run back, resumable at once.
                self.store.release(run.id, lease).await?;
                report.status = RunStatus::Pending;
                report.recovery_point = run.recovery_point;
                report.retry_at = Some(now_ms());
                return Ok(report);
            }
            let Some((index, step)) = definition.step(&run.recovery_point) else {
                return Err(Error::Corrupt(format!(
                    "run {} is running at `{}`, which workflow `{}` v{} has no step of",
                    run.id, run.recovery_point, run.workflow, run.workflow_version
                )));
            };
            let call = Call {
                run: &run,
                lease,
                step,
                next: definition.next_after(index),
                attempt: run.step_attempt + 1,
                started_at: now_ms(),
            };
            let tries = conflicts.map_or(1, |(_, tries)| tries + 1);
            tracing::debug!(run = %run.key, step = %step.name, attempt = call.attempt, tries, worker = %lease.owner, "step started");

            let called = contain_panic(&run.key, &step.name, self.call_step(&call)).await?;
            let seconds = (now_ms() - call.started_at).max(0) as f64 / 1000.0;
            let outcome = match &called {
                Ok(_) => "ok",
                Err(failed) => failed.kind.as_str(),
            };
            self.telemetry
                .step(&run.workflow, &step.name, outcome, seconds);
            match called {
                Ok(done) => {
                    report.steps_committed += 1;
                    report.staged.extend(done.staged.iter().map(|s| StagedRef {
                        workflow: s.workflow.clone(),
                        key: s.key.clone(),
                    }));
                    run.attributes = done.attributes;
                    run.step_attempt = 0;
                    run.step_attempt_base = 0;
                    run.attempts += 1;
                    conflicts = None;
                    if let Some(by) = done.cancel_requested {
                        tracing::info!(run = %run.key, step = %step.name, "the step committed; the run is cancelled, as {by} asked");
                        self.cancel_requested(&run, Some(lease), &by, &mut report)
                            .await?;
                        return Ok(report);
                    }
                    if done.waiting_for > 0 {
                        tracing::debug!(run = %run.key, children = done.waiting_for, "waiting for children");
                        report.status = RunStatus::Waiting;
                        report.recovery_point = run.recovery_point;
                        return Ok(report);
                    }
                    match done.end {
                        StepEnd::Advance { next, result } if next == FINISHED => {
                            tracing::debug!(run = %run.key, "run finished");
                            report.status = RunStatus::Succeeded;
                            report.recovery_point = next;
                            report.result = Some(result.unwrap_or(Value::Null));
                            return Ok(report);
                        }
                        StepEnd::Advance { next, .. } => run.recovery_point = next,
                        StepEnd::Repeat => {}
                    }
                }
                Err(failed) => {
                    let (failed, retry_in, uses_attempt) = if failed.kind == ErrorKind::Conflict {
                        // Nothing of the step committed: run it again, soon.
                        let (since, tries) = conflicts.get_or_insert((Instant::now(), 0));
                        *tries += 1;
                        if since.elapsed() < CONFLICT_WINDOW {
                            let pause = CONFLICT_BACKOFF.delay(*tries);
                            tracing::debug!(run = %run.key, step = %step.name, attempt = call.attempt, tries = *tries, ?pause, "step conflicted, trying again: {}", failed.message);
                            tokio::time::sleep(pause).await;
                            // A cancel asked for meanwhile takes effect now,
                            // not after the conflict window.
                            if let Some(fresh) = self.store.run(run.id).await? {
                                run.cancel_requested_by = fresh.cancel_requested_by;
                            }
                            continue;
                        }
                        let message = format!(
                            "{} ({tries} tries in {:?}; the run waits out its backoff, no attempt used)",
                            failed.message,
                            since.elapsed()
                        );
                        let retry_in = step.policy.backoff_after(call.attempt);
                        (Failed { message, ..failed }, Some(retry_in), false)
                    } else {
                        let retry_in = retry_delay(
                            step,
                            call.attempt,
                            run.step_attempt_base,
                            failed.retryable,
                        );
                        (failed, retry_in, true)
                    };
                    let failure = StepFailure {
                        step: step.name.clone(),
                        kind: failed.kind.to_string(),
                        message: stored_message(&failed.message, MAX_ERROR_MESSAGE),
                        attempt: call.attempt,
                    };
                    tracing::info!(run = %run.key, step = %failure.step, attempt = failure.attempt, kind = %failure.kind, retry = retry_in.is_some(), "step failed: {}", failure.message);
                    let parent = match retry_in {
                        None => {
                            self.parent_failure(&run, ErrorKind::ChildFailed, &failure.message)
                                .await?
                        }
                        Some(_) => None,
                    };
                    let record = FailureRecord {
                        run_id: run.id,
                        lease: lease.clone(),
                        failure: failure.clone(),
                        retry_in,
                        started_at: call.started_at,
                        parent,
                        logs: failed.logs.clone(),
                        http_status: failed.http_status,
                        uses_attempt,
                    };
                    match self.store.record_failure(&record).await? {
                        FailureOutcome::Recorded => {}
                        FailureOutcome::LeaseLost => return Err(Error::LeaseLost(run.key)),
                        // A step cut off while a cancel was asked for: the
                        // run is cancelled now rather than tried again.
                        FailureOutcome::CancelRequested(by) if retry_in.is_some() => {
                            report.error = Some(failure);
                            self.cancel_requested(&run, None, &by, &mut report).await?;
                            return Ok(report);
                        }
                        FailureOutcome::CancelRequested(_) => {}
                    }
                    report.status = if retry_in.is_some() {
                        RunStatus::Pending
                    } else {
                        RunStatus::Failed
                    };
                    report.recovery_point = run.recovery_point;
                    report.retry_at = retry_in.map(|d| now_ms() + crate::run::ms(d));
                    report.error = Some(failure);
                    return Ok(report);
                }
            }
        }
    }

    /// Calls the step and commits what it did, or says why it failed.
    async fn call_step(&self, call: &Call<'_>) -> Result<std::result::Result<Committed, Failed>> {
        let run = call.run;
        let prepared = match self.registry.prepare(&call.step.component).await {
            Ok(p) => p,
            Err(e) => {
                return Ok(Err(Failed::new(
                    ErrorKind::Instantiate,
                    e.to_string(),
                    true,
                )));
            }
        };
        let args = canonical_json(&run.args);
        if args.len() as u64 > call.step.policy.max_input {
            let message = format!(
                "the run's args are {} bytes, over this step's max_input ({} bytes)",
                args.len(),
                call.step.policy.max_input
            );
            return Ok(Err(Failed::new(ErrorKind::InputTooLarge, message, false)));
        }
        let input = StepInput {
            run_id: run.id as u64,
            idempotency_key: run.key.clone(),
            workflow: run.workflow.clone(),
            workflow_version: run.workflow_version,
            step: call.step.name.clone(),
            attempt: call.attempt,
            args,
            step_key: step_key(&run.workflow, &run.key, &call.step.name),
        };
        let mut state = StepState::new(
            self.store.clone(),
            run.id,
            &run.key,
            call.step,
            run.attributes.clone(),
        );
        // A step granted SQL runs inside its own transaction (begun by its
        // first statement), so its writes and its recovery point commit
        // together. Dropping the transaction on any failure below rolls the
        // guest's SQL back.
        if call.step.sql.is_some() {
            state = state.with_step_tx(self.store.begin_step());
        }
        let (mut state, outcome) = self
            .runtime
            .call(&prepared, state, &input, &call.step.policy)
            .await;
        let mut step_tx = state.take_step_tx();
        let logs = state.take_logs();
        let http_status = state.http_status;
        let settled = match self
            .settle(call, state, outcome, &mut step_tx, logs.clone())
            .await
        {
            Ok(Err(failed)) => Ok(Err(Failed {
                logs,
                http_status,
                ..failed
            })),
            other => other,
        };
        // A step that did not commit rolls its transaction back here, and
        // waits for it: a statement cut off at the deadline may still be
        // ending on the connection, which must be clean before the pool hands
        // it out again.
        if let Some(tx) = step_tx.take() {
            match tokio::time::timeout(ROLLBACK_WAIT, tx.rollback()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(run = %run.key, "rolling back the step's transaction failed: {e}")
                }
                Err(_) => {
                    tracing::warn!(run = %run.key, "rolling back the step's transaction took over {ROLLBACK_WAIT:?}; dropped")
                }
            }
        }
        settled
    }

    /// What follows a step's call: decide how it ended, stage what it
    /// staged, and commit (taking `step_tx`, the transaction its SQL ran
    /// on, if any), or say why it failed.
    async fn settle(
        &self,
        call: &Call<'_>,
        state: StepState,
        outcome: CallOutcome,
        step_tx: &mut Option<StepTx>,
        logs: Option<String>,
    ) -> Result<std::result::Result<Committed, Failed>> {
        let run = call.run;
        let deadline = state.deadline();
        let http_status = state.http_status;

        let facts = CallFacts {
            refusal: state.refusal(),
            too_large: state.too_large.clone(),
            unanswered: state.unanswered.clone(),
            next: call.next,
            max_result: call.step.policy.max_result,
        };
        let end = match classify(facts, outcome) {
            Ok(end) => end,
            Err(failed) => return Ok(Err(failed)),
        };

        let mut jobs = state.staged;
        if let Some(fan_out) = &call.step.awaits {
            match manifest_fan_out(run, &call.step.name, fan_out, &state.attributes) {
                Ok(more) => jobs.extend(more),
                Err(message) => {
                    return Ok(Err(Failed::new(ErrorKind::InvalidOutput, message, false)));
                }
            }
        }
        // A manifest's fan-out stages runs too: the same caps hold.
        let policy = &call.step.policy;
        let args_total: usize = jobs.iter().map(|j| canonical_json(&j.args).len()).sum();
        if jobs.len() as u64 > policy.max_staged || args_total as u64 > policy.max_staged_total {
            let message = format!(
                "the step stages {} runs with {args_total} bytes of args: over max_staged ({}) \
                 or max_staged_total ({} bytes)",
                jobs.len(),
                policy.max_staged,
                policy.max_staged_total
            );
            return Ok(Err(Failed::new(ErrorKind::OutputTooLarge, message, false)));
        }
        let mut staged = Vec::with_capacity(jobs.len());
        if !jobs.is_empty() && u64::from(run.depth) >= call.step.policy.max_lineage_depth {
            let message = format!(
                "run `{}` stands {} deep in a chain of runs staged by runs; max_lineage_depth ({}) \
                 lets it stage no more",
                run.key, run.depth, call.step.policy.max_lineage_depth
            );
            return Ok(Err(Failed::new(ErrorKind::OutputTooLarge, message, false)));
        }
        for job in jobs {
            match self.staged_run(run, job).await {
                Ok(new) => staged.push(new),
                Err(message) => {
                    return Ok(Err(Failed::new(ErrorKind::InvalidOutput, message, false)));
                }
            }
        }
        if matches!(end, StepEnd::Repeat) && staged.iter().any(|s| s.awaited) {
            let message = "a step cannot both repeat and await runs";
            return Ok(Err(Failed::new(ErrorKind::InvalidOutput, message, false)));
        }

        let commit = StepCommit {
            run_id: run.id,
            lease: call.lease.clone(),
            step: call.step.name.clone(),
            attempt: call.attempt,
            end,
            attributes: state.attributes,
            staged,
            started_at: call.started_at,
            logs,
            http_status,
        };
        // Nothing a step did commits after its deadline: a host call that
        // finished late (a statement, a response) does not make it count.
        if Instant::now() >= deadline {
            let message = format!(
                "deadline of {:?} passed before the step could commit; nothing of it was committed",
                call.step.policy.timeout
            );
            return Ok(Err(Failed::new(ErrorKind::Timeout, message, true)));
        }
        let own_tx = step_tx.is_some();
        let committed = self.store.commit(step_tx.take(), &commit).await;
        let committed = match committed {
            Err(Error::Conflict { tries, message }) => {
                let message = format!("the commit conflicted {tries} times: {message}");
                return Ok(Err(Failed::new(ErrorKind::Conflict, message, true)));
            }
            // The database refused the commit itself (a value it cannot
            // store, a constraint): a failed step, counted against its
            // attempts, never a host error that would hand the run straight
            // back to be tried again at once, forever.
            Err(Error::Database(sqlx::Error::Database(db))) => {
                let retryable =
                    !crate::store::deterministic(self.store.dialect(), db.code().as_deref());
                let message = format!("the database refused the step's commit: {}", db.message());
                return Ok(Err(Failed::new(
                    ErrorKind::CommitRefused,
                    message,
                    retryable,
                )));
            }
            // The step's own transaction could not commit for another reason
            // (its connection broke): a failed step that may be tried again.
            Err(e) if own_tx => {
                let message = format!("the step's transaction could not commit: {e}");
                return Ok(Err(Failed::new(ErrorKind::SqlError, message, true)));
            }
            other => other?,
        };
        let (waiting_for, cancel_requested) = match committed {
            CommitOutcome::Committed => (0, None),
            CommitOutcome::Waiting(n) => (n, None),
            CommitOutcome::CancelRequested(by) => (0, Some(by)),
            CommitOutcome::LeaseLost => return Err(Error::LeaseLost(run.key.clone())),
            CommitOutcome::StagedKeyConflict { workflow, key } => {
                return Ok(Err(Failed::new(
                    ErrorKind::InvalidOutput,
                    format!("staged run of `{workflow}` with key `{key}` exists with other args"),
                    false,
                )));
            }
        };
        Ok(Ok(Committed {
            end: commit.end,
            staged: commit.staged,
            attributes: commit.attributes,
            waiting_for,
            cancel_requested,
        }))
    }

    /// Carries out a cancel request `by` made while the run was inside a
    /// step: cancels it and its unfinished staged runs, failing a waiting
    /// parent's step, with the lease this executor holds (if it still does).
    async fn cancel_requested(
        &self,
        run: &RunRecord,
        held: Option<&Lease>,
        by: &str,
        report: &mut RunReport,
    ) -> Result<()> {
        let parent = self
            .parent_failure(
                run,
                ErrorKind::ChildCancelled,
                &format!("cancelled by {by}"),
            )
            .await?;
        report.retry_at = None;
        match self.store.cancel(run.id, by, parent.as_ref(), held).await? {
            CancelOutcome::Cancelled(_) | CancelOutcome::AlreadyFinal(_) => {}
            // Another worker holds it now, and carries the request out.
            CancelOutcome::Requested { .. } | CancelOutcome::Raced if held.is_some() => {
                return Err(Error::LeaseLost(run.key.clone()));
            }
            CancelOutcome::Requested { .. } | CancelOutcome::Raced => {}
        }
        // The run as it now stands (the step just committed may have moved
        // its recovery point, or left it waiting at the step).
        let now = self.store.run(run.id).await?;
        let now = now.as_ref().unwrap_or(run);
        report.status = now.status;
        report.recovery_point = now.recovery_point.clone();
        Ok(())
    }

    async fn staged_run(
        &self,
        parent: &RunRecord,
        job: StagedJob,
    ) -> std::result::Result<NewRun, String> {
        let workflow = match self.registry.latest(&job.workflow).await {
            Ok(w) => w,
            Err(Error::UnknownWorkflow(name)) => {
                return Err(format!("staged a run of `{name}`, which is not registered"));
            }
            Err(e) => return Err(format!("staged a run of `{}`: {e}", job.workflow)),
        };
        let mut new = crate::host::new_run(
            &workflow,
            Some(job.key),
            job.args,
            job.delay,
            &job.queue,
            Some(parent.id),
        )
        .map_err(|e| format!("staged a run of `{}`: {e}", job.workflow))?;
        new.awaited = job.awaits;
        new.depth = parent.depth.saturating_add(1);
        Ok(new)
    }

    /// If `child` is awaited by a waiting parent, how the parent's awaiting
    /// step fails now that `child` failed for good (`kind`, `message`).
    pub(crate) async fn parent_failure(
        &self,
        child: &RunRecord,
        kind: ErrorKind,
        message: &str,
    ) -> Result<Option<ParentFailure>> {
        let Some(parent_id) = child.parent_run_id.filter(|_| child.awaited) else {
            return Ok(None);
        };
        let Some(parent) = self.store.run(parent_id).await? else {
            return Ok(None);
        };
        if parent.status != RunStatus::Waiting {
            return Ok(None);
        }
        let workflow = self
            .registry
            .version(&parent.workflow, parent.workflow_version)
            .await?;
        let Some((_, step)) = workflow.definition.step(&parent.recovery_point) else {
            return Ok(None);
        };
        let attempt = parent.step_attempt + 1;
        Ok(Some(ParentFailure {
            run_id: parent.id,
            step: step.name.clone(),
            step_attempt: parent.step_attempt,
            retry_in: retry_delay(step, attempt, parent.step_attempt_base, true),
            kind,
            message: format!(
                "awaited run `{}` of `{}`: {message}",
                child.key, child.workflow
            ),
        }))
    }
}

/// Runs a step call, turning a panic in the host while it serves the step
/// (a bug reached by guest input) into a failure of that step rather than
/// of the process. The step's transaction is dropped with the unwound
/// future, so nothing of it commits; the failure is then recorded like any
/// other, and the lease released.
async fn contain_panic<T>(
    run: &str,
    step: &str,
    call: impl std::future::Future<Output = Result<std::result::Result<T, Failed>>>,
) -> Result<std::result::Result<T, Failed>> {
    AssertUnwindSafe(call)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            tracing::error!(run = %run, step = %step, "host panic while serving the step: {what}");
            Ok(Err(Failed::new(
                ErrorKind::HostError,
                format!(
                    "the host failed while serving this step ({what}); nothing of it was committed"
                ),
                true,
            )))
        })
}

/// `Some(backoff)` if attempt `attempt` of `step` may be followed by another.
fn retry_delay(step: &StepDef, attempt: u32, base: u32, retryable: bool) -> Option<Duration> {
    (retryable && attempt.saturating_sub(base) < step.policy.max_attempts)
        .then(|| step.policy.backoff_after(attempt))
}

/// `<run key>/<step>/<index>`, or its SHA-256 when that would be too long for a key.
fn child_key(run_key: &str, step: &str, index: usize) -> String {
    let key = format!("{run_key}/{step}/{index}");
    if key.len() <= 200 {
        key
    } else {
        derived_key(step, &Value::from(key))
    }
}

/// The runs a manifest `awaits = { workflow, for_each }` stages: one per
/// element of the list attribute, keyed by run, step and index so a retry of
/// the step never duplicates one.
fn manifest_fan_out(
    run: &RunRecord,
    step: &str,
    fan_out: &crate::manifest::AwaitSpec,
    attributes: &Map<String, Value>,
) -> std::result::Result<Vec<StagedJob>, String> {
    let items = match attributes.get(&fan_out.for_each) {
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(format!(
                "awaits.for_each: attribute `{}` is not a list",
                fan_out.for_each
            ));
        }
        None => {
            return Err(format!(
                "awaits.for_each: attribute `{}` is not set",
                fan_out.for_each
            ));
        }
    };
    Ok(items
        .iter()
        .enumerate()
        .map(|(i, args)| StagedJob {
            workflow: fan_out.workflow.clone(),
            args: args.clone(),
            key: child_key(&run.key, step, i),
            delay: Duration::ZERO,
            queue: run.queue.clone(),
            awaits: true,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_host_panic_while_serving_a_step_fails_that_step_only() {
        let panicking = async {
            if std::hint::black_box(true) {
                panic!("index out of bounds (on purpose)");
            }
            Ok(Ok(()))
        };
        let failed = match contain_panic("run-1", "charge", panicking).await {
            Ok(Err(failed)) => failed,
            _ => panic!("the panic was not contained"),
        };
        assert_eq!(failed.kind, ErrorKind::HostError);
        assert!(failed.retryable, "retried per policy");
        assert!(failed.message.contains("index out of bounds (on purpose)"));
        let fine = contain_panic("run-1", "charge", async { Ok(Ok(7)) }).await;
        assert!(matches!(fine, Ok(Ok(7))));
    }
}

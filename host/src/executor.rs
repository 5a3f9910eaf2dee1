//! The step loop: for a leased run, call the step at its recovery point, then
//! commit its effects with the next recovery point, or record its failure.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::host::{Host, RunReport, StagedRef};
use crate::manifest::FINISHED;
use crate::run::{
    CommitOutcome, ErrorKind, FailureRecord, Lease, NewRun, RunRecord, RunStatus, StepCommit,
    StepEnd, StepFailure, canonical_json, now_ms, step_key,
};
use crate::runtime::{CallOutcome, Outcome, StagedJob, StepInput, StepState};

/// A step call that committed.
struct Committed {
    end: StepEnd,
    staged: Vec<NewRun>,
    attributes: serde_json::Map<String, Value>,
}

/// A step call that did not commit.
struct Failed {
    kind: ErrorKind,
    message: String,
    retryable: bool,
}

impl Failed {
    fn new(kind: ErrorKind, message: impl Into<String>, retryable: bool) -> Failed {
        Failed {
            kind,
            message: message.into(),
            retryable,
        }
    }
}

impl Host {
    /// Runs the steps of `run`, which `lease` holds, until it finishes or a
    /// step fails. Each step is its own transaction; a failed step is recorded
    /// and the lease released, so the run can always be resumed. If the host
    /// itself fails (the database, a corrupt row), the lease is released too.
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
        let workflow = self.version(&run.workflow, run.workflow_version).await?;
        let definition = &workflow.definition;
        let mut report = RunReport::from_record(&run, false);
        report.error = None;
        loop {
            if self.stopping() {
                // Shutting down between steps: hand the run back, resumable at once.
                self.store.release(run.id, lease).await?;
                report.status = RunStatus::Pending;
                report.recovery_point = run.recovery_point;
                report.retry_at = Some(now_ms());
                return Ok(report);
            }
            if run.recovery_point == FINISHED {
                // Only a corrupt row is running with nothing left to do.
                return Err(Error::Corrupt(format!(
                    "run {} is running but already at `finished`",
                    run.id
                )));
            }
            let Some((index, step)) = definition.step(&run.recovery_point) else {
                return Err(Error::Corrupt(format!(
                    "run {} is at step `{}`, which workflow `{}` v{} does not have",
                    run.id, run.recovery_point, run.workflow, run.workflow_version
                )));
            };
            let attempt = run.step_attempt + 1;
            let started_at = now_ms();
            tracing::debug!(run = %run.key, step = %step.name, attempt, worker = %lease.owner, "step started");

            let outcome = match self.prepare(&step.component).await {
                Ok(prepared) => {
                    let input = StepInput {
                        run_id: run.id as u64,
                        idempotency_key: run.key.clone(),
                        workflow: run.workflow.clone(),
                        workflow_version: run.workflow_version,
                        step: step.name.clone(),
                        attempt,
                        args: canonical_json(&run.args),
                        step_key: step_key(&run.workflow, &run.key, &step.name),
                    };
                    let state = StepState::new(
                        &run.key,
                        &step.name,
                        run.attributes.clone(),
                        step.policy.memory,
                    );
                    let (state, outcome) = self
                        .runtime
                        .call(&prepared, state, &input, &step.policy)
                        .await;
                    self.settle(
                        &run,
                        lease,
                        &step.name,
                        definition.next_after(index),
                        attempt,
                        started_at,
                        state,
                        outcome,
                    )
                    .await?
                }
                Err(e) => Err(Failed::new(ErrorKind::Instantiate, e.to_string(), true)),
            };

            match outcome {
                Ok(Committed {
                    end,
                    staged,
                    attributes,
                }) => {
                    report.steps_committed += 1;
                    run.attributes = attributes;
                    report.staged.extend(staged.iter().map(|s| StagedRef {
                        workflow: s.workflow.clone(),
                        key: s.key.clone(),
                    }));
                    run.step_attempt = 0;
                    run.step_attempt_base = 0;
                    run.attempts += 1;
                    match end {
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
                    let retry_in = (failed.retryable
                        && attempt.saturating_sub(run.step_attempt_base)
                            < step.policy.max_attempts)
                        .then(|| step.policy.backoff_after(attempt));
                    let failure = StepFailure {
                        step: step.name.clone(),
                        kind: failed.kind.to_string(),
                        message: failed.message,
                        attempt,
                    };
                    tracing::info!(run = %run.key, step = %failure.step, kind = %failure.kind, retry = retry_in.is_some(), "step failed: {}", failure.message);
                    let record = FailureRecord {
                        run_id: run.id,
                        lease: lease.clone(),
                        failure: failure.clone(),
                        retry_in,
                        started_at,
                    };
                    if !self.store.record_failure(&record).await? {
                        return Err(Error::LeaseLost(run.key));
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

    /// Turns a step call's outcome into a commit, or a failure to record.
    #[allow(clippy::too_many_arguments)]
    async fn settle(
        &self,
        run: &RunRecord,
        lease: &Lease,
        step: &str,
        next: &str,
        attempt: u32,
        started_at: i64,
        state: StepState,
        outcome: CallOutcome,
    ) -> Result<std::result::Result<Committed, Failed>> {
        let answer = match outcome {
            CallOutcome::Returned(answer) => answer,
            CallOutcome::Aborted { kind, message } => {
                let retryable = !matches!(kind, ErrorKind::InvalidOutput);
                return Ok(Err(Failed::new(kind, message, retryable)));
            }
        };
        let end = match answer {
            Err(e) => return Ok(Err(Failed::new(ErrorKind::Guest, e.message, e.retryable))),
            Ok(Outcome::Continue) => StepEnd::Advance {
                next: next.to_string(),
                result: (next == FINISHED).then_some(Value::Null),
            },
            Ok(Outcome::Repeat) => StepEnd::Repeat,
            Ok(Outcome::Finish(text)) => match serde_json::from_str(&text) {
                Ok(result) => StepEnd::Advance {
                    next: FINISHED.to_string(),
                    result: Some(result),
                },
                Err(e) => {
                    return Ok(Err(Failed::new(
                        ErrorKind::InvalidOutput,
                        format!("result is not JSON: {e}"),
                        false,
                    )));
                }
            },
        };
        let mut staged = Vec::with_capacity(state.staged.len());
        for job in state.staged {
            match self.staged_run(run, job).await {
                Ok(new) => staged.push(new),
                Err(message) => {
                    return Ok(Err(Failed::new(ErrorKind::InvalidOutput, message, false)));
                }
            }
        }
        let commit = StepCommit {
            run_id: run.id,
            lease: lease.clone(),
            step: step.to_string(),
            attempt,
            end: end.clone(),
            attributes: state.attributes,
            staged: staged.clone(),
            started_at,
        };
        match self.store.commit_step(&commit).await? {
            CommitOutcome::Committed => Ok(Ok(Committed {
                end,
                staged,
                attributes: commit.attributes,
            })),
            CommitOutcome::LeaseLost => Err(Error::LeaseLost(run.key.clone())),
            CommitOutcome::StagedKeyConflict { workflow, key } => Ok(Err(Failed::new(
                ErrorKind::InvalidOutput,
                format!("staged run of `{workflow}` with key `{key}` exists with other args"),
                false,
            ))),
        }
    }

    async fn staged_run(
        &self,
        parent: &RunRecord,
        job: StagedJob,
    ) -> std::result::Result<NewRun, String> {
        let workflow = match self.latest(&job.workflow).await {
            Ok(w) => w,
            Err(Error::UnknownWorkflow(name)) => {
                return Err(format!("staged a run of `{name}`, which is not registered"));
            }
            Err(e) => return Err(format!("staged a run of `{}`: {e}", job.workflow)),
        };
        self.new_run(
            &workflow,
            Some(job.key),
            job.args,
            job.delay,
            &job.queue,
            Some(parent.id),
        )
        .map_err(|e| format!("staged a run of `{}`: {e}", job.workflow))
    }
}

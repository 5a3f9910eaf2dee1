// A step's commit, fenced on its lease, and the record of a failed call.
// Written once for both backends: see `prelude.rs`.

/// A step's fenced update of its run: the new recovery point (or the end),
/// attributes and lease, only if `$12` still holds the lease at `$13`.
macro_rules! step_update {
    () => {
        "UPDATE runs SET recovery_point = $1, attributes = $2, status = $3, result = $4, \
           attempts = attempts + 1, step_attempt = 0, step_attempt_base = 0, \
           locked_by = CASE WHEN $5 THEN NULL ELSE locked_by END, \
           locked_until = CASE WHEN $6 THEN NULL ELSE $7 END, \
           updated_at = $8, finished_at = CASE WHEN $9 THEN $10 ELSE NULL END, \
           http_status = COALESCE($14, http_status), \
           response_code = CASE WHEN $9 THEN COALESCE($14, http_status, 201) ELSE NULL END, \
           response_body = CASE WHEN $9 THEN $4 ELSE NULL END \
         WHERE id = $11 AND locked_by = $12 AND recovery_point = $13 AND status = 'running' \
         RETURNING id, cancel_requested_by, parent_run_id, awaited, \
           EXISTS (SELECT 1 FROM runs c WHERE c.parent_run_id = $11 AND c.awaited = TRUE) AS awaits_runs"
    };
}

/// The update alone, for a step whose timeline entry depends on the runs it staged.
const STEP_UPDATE_SQL: &str = step_update!();

/// The update and the step's timeline entry (`$15` attempt, `$16` outcome,
/// `$17` started, `$18` logs) in one round trip, the entry written only if
/// the update's fence held: each backend says how (`step_commit_sql!`).
const STEP_COMMIT_SQL: &str = step_commit_sql!(step_update!());

impl Backend {
    /// Commits a step: attributes, staged runs, timeline entry and the new
    /// recovery point, in one transaction fenced on the lease. If the step
    /// staged awaited runs that have not all succeeded, the run waits for them
    /// at this step instead of moving on.
    pub(super) async fn commit_step(&self, c: &StepCommit) -> Result<CommitOutcome> {
        end_step_tx(self.begin().await?, c).await
    }

    /// Records a failed step call and releases the lease; if the run failed
    /// for good and a waiting parent awaits it, fails the parent's step too.
    /// Writes nothing if the caller no longer holds the lease.
    pub(super) async fn record_failure(&self, f: &FailureRecord) -> Result<FailureOutcome> {
        let mut tx = self.begin().await?;
        let now = now_ms();
        let (status, available_at, finished_at) = match f.retry_in {
            Some(delay) => (RunStatus::Pending, now + ms(delay), None),
            None => (RunStatus::Failed, now, Some(now)),
        };
        let updated = sqlx::query(
            "UPDATE runs SET status = $1, attempts = attempts + 1, step_attempt = step_attempt + 1, \
               step_attempt_base = step_attempt_base + CASE WHEN $11 THEN 0 ELSE 1 END, \
               last_error_step = $2, last_error_kind = $3, last_error_message = $4, last_error_attempt = $5, \
               available_at = $6, locked_by = NULL, locked_until = NULL, updated_at = $7, finished_at = $8 \
             WHERE id = $9 AND locked_by = $10 AND status = 'running' \
             RETURNING cancel_requested_by",
        )
        .bind(status.as_str())
        .bind(&f.failure.step)
        .bind(&f.failure.kind)
        .bind(&f.failure.message)
        .bind(i64::from(f.failure.attempt))
        .bind(available_at)
        .bind(now)
        .bind(finished_at)
        .bind(f.run_id)
        .bind(&f.lease.owner)
        .bind(f.uses_attempt)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(updated) = updated else {
            tx.rollback().await?;
            return Ok(FailureOutcome::LeaseLost);
        };
        let cancel_requested: Option<String> = updated.try_get("cancel_requested_by")?;
        if f.retry_in.is_none()
            && let Some(status) = f.http_status
        {
            sqlx::query("UPDATE runs SET failure_http_status = $1 WHERE id = $2")
                .bind(i64::from(status))
                .bind(f.run_id)
                .execute(&mut *tx)
                .await?;
        }
        insert_event(
            &mut tx,
            f.run_id,
            &f.failure.step,
            f.failure.attempt,
            StepOutcome::Failed,
            Some((&f.failure.kind, &f.failure.message)),
            f.started_at,
            now,
            f.logs.as_deref(),
        )
        .await?;
        if let Some(parent) = &f.parent {
            fail_waiting_parent(&mut tx, parent, now).await?;
        }
        tx.commit().await?;
        Ok(match cancel_requested {
            Some(by) => FailureOutcome::CancelRequested(by),
            None => FailureOutcome::Recorded,
        })
    }
}

/// The writes of a step commit, on `tx` (which the caller commits when the
/// outcome is `Committed` or `Waiting`, and rolls back otherwise).
async fn commit_step_in(tx: &mut Transaction<'static, Db>, c: &StepCommit) -> Result<CommitOutcome> {
    let now = now_ms();

    let attributes = Value::Object(c.attributes.clone()).to_string();
    let (status, recovery_point, result, outcome) = match &c.end {
        StepEnd::Advance { next, result } if next == FINISHED => (
            RunStatus::Succeeded,
            next.as_str(),
            Some(
                result
                    .as_ref()
                    .map(canonical_json)
                    .unwrap_or_else(|| "null".into()),
            ),
            StepOutcome::Finished,
        ),
        StepEnd::Advance { next, .. } => (RunStatus::Running, next.as_str(), None, StepOutcome::Committed),
        StepEnd::Repeat => (RunStatus::Running, c.step.as_str(), None, StepOutcome::Repeated),
    };
    let done = status == RunStatus::Succeeded;
    // The lease is checked inside the commit, so a worker that lost it
    // (expired and taken over) cannot advance the run. The owner token is
    // unique per claim, so comparing it is the whole fence: an expired
    // lease nobody took over still belongs to its worker. A step that staged
    // no runs knows its timeline entry already: it goes with the update, in
    // the same round trip, and only if the fence held.
    let with_event = c.staged.is_empty();
    let query = sqlx::query(if with_event { STEP_COMMIT_SQL } else { STEP_UPDATE_SQL })
        .bind(recovery_point)
        .bind(&attributes)
        .bind(status.as_str())
        .bind(&result)
        .bind(done)
        .bind(done)
        .bind(now + ms(c.lease.ttl))
        .bind(now)
        .bind(done)
        .bind(now)
        .bind(c.run_id)
        .bind(&c.lease.owner)
        .bind(&c.step)
        .bind(c.http_status.map(i64::from));
    let query = if with_event {
        query
            .bind(i64::from(c.attempt))
            .bind(outcome.as_str())
            .bind(c.started_at)
            .bind(c.logs.as_deref())
    } else {
        query
    };
    // All rows, not the first: on SQLite the entry is a second statement,
    // which runs only once the update's row has been read.
    let updated = query.fetch_all(&mut **tx).await?.into_iter().next();
    let Some(updated) = updated else {
        return Ok(CommitOutcome::LeaseLost);
    };
    // An operator asked to cancel the run while this step ran: the step
    // commits, and the run goes no further (the executor cancels it).
    let cancel_requested: Option<String> = updated.try_get("cancel_requested_by")?;
    let parent: Option<i64> = updated.try_get("parent_run_id")?;
    let awaited: bool = updated.try_get("awaited")?;

    // What this step awaits replaces whatever an earlier step or attempt
    // awaited (the statement is skipped when the run awaits none).
    if updated.try_get::<bool, _>("awaits_runs")? {
        sqlx::query("UPDATE runs SET awaited = FALSE WHERE parent_run_id = $1 AND awaited = TRUE")
            .bind(c.run_id)
            .execute(&mut **tx)
            .await?;
    }
    let waiting_for = match stage_in(tx, c, now).await? {
        Ok(waiting_for) => waiting_for,
        Err(conflict) => return Ok(conflict),
    };

    if waiting_for > 0 {
        sqlx::query(
            "UPDATE runs SET status = 'waiting', recovery_point = $1, await_next = $2, pending_children = $3, \
               locked_by = NULL, locked_until = NULL, finished_at = NULL WHERE id = $4",
        )
        .bind(&c.step)
        .bind(recovery_point)
        .bind(i64::from(waiting_for))
        .bind(c.run_id)
        .execute(&mut **tx)
        .await?;
        insert_event(
            tx,
            c.run_id,
            &c.step,
            c.attempt,
            StepOutcome::Awaiting,
            None,
            c.started_at,
            now,
            c.logs.as_deref(),
        )
        .await?;
    } else {
        if !with_event {
            insert_event(
                tx,
                c.run_id,
                &c.step,
                c.attempt,
                outcome,
                None,
                c.started_at,
                now,
                c.logs.as_deref(),
            )
            .await?;
        }
        if done {
            child_succeeded(tx, parent, awaited, now).await?;
        }
    }
    Ok(match cancel_requested {
        Some(by) if !done => CommitOutcome::CancelRequested(by),
        _ if waiting_for > 0 => CommitOutcome::Waiting(waiting_for),
        _ => CommitOutcome::Committed,
    })
}

/// Inserts (or, for a retried step, finds again) the runs the step staged.
/// Returns how many awaited runs have not succeeded yet, or the conflict
/// when a staged key exists with other args.
async fn stage_in(
    tx: &mut Transaction<'static, Db>,
    c: &StepCommit,
    now: i64,
) -> Result<std::result::Result<u32, CommitOutcome>> {
    let mut waiting_for = 0u32;
    for staged in &c.staged {
        let existing = sqlx::query(
            "SELECT id, args_hash, status, parent_run_id FROM runs WHERE workflow = $1 AND idempotency_key = $2",
        )
        .bind(&staged.workflow)
        .bind(&staged.key)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(existing) = existing else {
            insert_run(tx, staged, now, None).await?;
            waiting_for += u32::from(staged.awaited);
            continue;
        };
        if existing.try_get::<String, _>("args_hash")? != args_hash(&staged.args) {
            return Ok(Err(CommitOutcome::StagedKeyConflict {
                workflow: staged.workflow.clone(),
                key: staged.key.clone(),
            }));
        }
        if !staged.awaited {
            continue;
        }
        // Only a run's own children may be awaited (and so revived, or taken
        // into its count): a step must not take over another run's.
        let parent: Option<i64> = existing.try_get("parent_run_id")?;
        if parent != Some(c.run_id) {
            return Ok(Err(CommitOutcome::StagedKeyConflict {
                workflow: staged.workflow.clone(),
                key: staged.key.clone(),
            }));
        }
        let id: i64 = existing.try_get("id")?;
        let status: String = existing.try_get("status")?;
        match status.as_str() {
            // Awaited again by a retried step: already done.
            "succeeded" => {}
            // It failed for good or was cancelled: run it again, with a fresh budget.
            "failed" | "cancelled" => {
                sqlx::query(
                    "UPDATE runs SET status = 'pending', awaited = TRUE, step_attempt_base = step_attempt, \
                       available_at = $1, finished_at = NULL, cancelled_by = NULL, updated_at = $2 WHERE id = $3",
                )
                .bind(now)
                .bind(now)
                .bind(id)
                .execute(&mut **tx)
                .await?;
                waiting_for += 1;
            }
            _ => {
                sqlx::query("UPDATE runs SET awaited = TRUE WHERE id = $1")
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
                waiting_for += 1;
            }
        }
    }
    Ok(Ok(waiting_for))
}

/// How every step transaction ends, whether it was opened for the guest's
/// SQL or just for the commit: the step's writes (fenced on the lease) go
/// onto `tx`, which commits if they stand and rolls back if not (the lease
/// was lost, a staged key is taken), or on an error, which is logged.
async fn end_step_tx(mut tx: Transaction<'static, Db>, c: &StepCommit) -> Result<CommitOutcome> {
    let outcome = match commit_step_in(&mut tx, c).await {
        Ok(outcome) => outcome,
        Err(e) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(run = c.run_id, step = %c.step, "rolling back after `{e}` failed too: {rollback}");
            }
            return Err(e);
        }
    };
    match outcome {
        CommitOutcome::Committed | CommitOutcome::Waiting(_) | CommitOutcome::CancelRequested(_) => {
            tx.commit().await?
        }
        CommitOutcome::LeaseLost | CommitOutcome::StagedKeyConflict { .. } => tx.rollback().await?,
    }
    Ok(outcome)
}

// Store operations shared by every backend, written once in the SQL both
// SQLite and Postgres accept (numbered placeholders, ON CONFLICT, RETURNING,
// TRUE/FALSE). Each backend module includes this file after defining:
// `Backend` (its store type, with `begin`, `begin_claim` and `pool`), `Db`,
// `Conn`, `DbRow`, `CLAIM_SQL` and `queue_param`.

use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::Row;

use super::{CancelOutcome, Claim, InsertOutcome, RunFilter};
use crate::error::{Error, Result};
use crate::manifest::FINISHED;
use crate::run::{
    CommitOutcome, FailureRecord, Lease, NewRun, ParentFailure, RunRecord, RunStatus, StartOutcome,
    StepCommit, StepEnd, StepEvent, StepFailure, args_hash, canonical_json, ms, now_ms,
};
use crate::workflow::{Definition, Workflow};

const RUN_COLUMNS: &str = "id, workflow, workflow_version, definition_hash, idempotency_key, args, args_hash, \
    status, recovery_point, attributes, result, attempts, step_attempt, step_attempt_base, last_error_step, \
    last_error_kind, last_error_message, last_error_attempt, locked_by, locked_until, available_at, queue, \
    parent_run_id, awaited, pending_children, await_next, cancelled_by, created_at, updated_at, last_run_at, \
    finished_at, depth";

impl Backend {
    /// Stores component bytes under their digest (a no-op if present).
    pub async fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        sqlx::query("INSERT INTO components (digest, bytes, size, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(digest)
            .bind(bytes)
            .bind(bytes.len() as i64)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The bytes of the component with `digest`.
    pub async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT bytes FROM components WHERE digest = $1")
                .bind(digest)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Stores `definition` as a new version unless an identical one exists.
    /// Returns the version and whether it is new.
    pub async fn register_workflow(&self, definition: &Definition) -> Result<(u32, bool)> {
        let hash = definition.hash();
        let text = serde_json::to_string(definition).map_err(|e| Error::Corrupt(e.to_string()))?;
        let mut tx = self.begin().await?;
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM workflows WHERE name = $1 AND definition_hash = $2",
        )
        .bind(&definition.name)
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(v) = existing {
            return Ok((v as u32, false));
        }
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM workflows WHERE name = $1",
        )
        .bind(&definition.name)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO workflows (name, version, definition_hash, definition, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&definition.name)
            .bind(version)
            .bind(&hash)
            .bind(&text)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((version as u32, true))
    }

    /// Version `version` of workflow `name`, or its latest version.
    pub async fn workflow(&self, name: &str, version: Option<u32>) -> Result<Option<Workflow>> {
        let row = match version {
            Some(v) => {
                sqlx::query("SELECT version, definition_hash, definition FROM workflows WHERE name = $1 AND version = $2")
                    .bind(name)
                    .bind(i64::from(v))
                    .fetch_optional(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(
                    "SELECT version, definition_hash, definition FROM workflows WHERE name = $1 \
                     ORDER BY version DESC LIMIT 1",
                )
                .bind(name)
                .fetch_optional(&self.pool)
                .await?
            }
        };
        row.map(|row| {
            let text: String = row.try_get("definition")?;
            let definition: Definition = serde_json::from_str(&text)
                .map_err(|e| Error::Corrupt(format!("definition of workflow `{name}`: {e}")))?;
            Ok(Workflow {
                version: row.try_get::<i64, _>("version")? as u32,
                hash: row.try_get("definition_hash")?,
                definition,
            })
        })
        .transpose()
    }

    /// Finds the run of `new.workflow` with `new.key`, creating it if absent,
    /// and leases it to `lease` unless it is final, locked, or has other args.
    pub async fn start_run(&self, new: &NewRun, lease: &Lease) -> Result<StartOutcome> {
        let mut tx = self.begin().await?;
        let existing = fetch_run(&mut tx, By::Key(&new.workflow, &new.key)).await?;
        let now = now_ms();
        let outcome = match existing {
            None => {
                let id = insert_run(&mut tx, new, now, Some(lease)).await?;
                let run = fetch_run(&mut tx, By::Id(id))
                    .await?
                    .ok_or_else(|| Error::Corrupt(format!("run {id} vanished")))?;
                StartOutcome::Claimed(Box::new(run))
            }
            Some(run) if run.args_hash != args_hash(&new.args) => StartOutcome::Mismatch,
            Some(run) => claim_in(&mut tx, run, lease, now).await?,
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Leases run `id` to `lease` unless it is final or locked.
    pub async fn claim(&self, id: i64, lease: &Lease) -> Result<StartOutcome> {
        let mut tx = self.begin().await?;
        let run = fetch_run(&mut tx, By::Id(id))
            .await?
            .ok_or_else(|| Error::RunNotFound(id.to_string()))?;
        let outcome = claim_in(&mut tx, run, lease, now_ms()).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Claims up to `limit` runnable runs, each under a fresh lease of
    /// `worker` for `ttl`: pending runs that are due, and running ones whose
    /// lease expired more than `claim.grace` ago (their worker died).
    pub async fn claim_batch(
        &self,
        claim: &Claim,
        worker: &str,
        ttl: Duration,
        limit: u32,
    ) -> Result<Vec<(RunRecord, Lease)>> {
        let mut tx = self.begin_claim().await?;
        let now = now_ms();
        let queues = queue_param(&claim.queues);
        let due = if claim.abandoned_only {
            now - ms(claim.grace)
        } else {
            now
        };
        let ids: Vec<i64> = sqlx::query_scalar(CLAIM_SQL)
            .bind(queues.clone())
            .bind(queues)
            .bind(due)
            .bind(now)
            .bind(now - ms(claim.grace))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let run = fetch_run(&mut tx, By::Id(id))
                .await?
                .ok_or_else(|| Error::Corrupt(format!("run {id} vanished")))?;
            let lease = Lease::new(worker, ttl);
            if let StartOutcome::Claimed(run) = claim_in(&mut tx, run, &lease, now).await? {
                claimed.push((*run, lease));
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Extends `lease` on run `id` to `lease.ttl` from now. Returns false if it is no longer held.
    pub async fn extend_lease(&self, id: i64, lease: &Lease) -> Result<bool> {
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE runs SET locked_until = $1 WHERE id = $2 AND locked_by = $3 AND status = 'running'",
        )
        .bind(now + ms(lease.ttl))
        .bind(id)
        .bind(&lease.owner)
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Cancels run `id` and every unfinished run it staged, recursively,
    /// recording `by`. A run inside a step (live lease) cannot be cancelled.
    pub async fn cancel(
        &self,
        id: i64,
        by: &str,
        parent: Option<&ParentFailure>,
    ) -> Result<CancelOutcome> {
        let mut tx = self.begin().await?;
        let now = now_ms();
        let run = fetch_run(&mut tx, By::Id(id))
            .await?
            .ok_or_else(|| Error::RunNotFound(id.to_string()))?;
        if run.status.is_final() {
            return Ok(CancelOutcome::AlreadyFinal(run.status));
        }
        if let (Some(owner), Some(until)) = (&run.locked_by, run.locked_until)
            && until > now
        {
            return Ok(CancelOutcome::Locked {
                locked_by: owner.clone(),
                remaining_ms: until - now,
            });
        }
        let cancelled = sqlx::query(
            "WITH RECURSIVE tree (id) AS (SELECT CAST($1 AS BIGINT) UNION SELECT runs.id FROM runs JOIN tree ON runs.parent_run_id = tree.id) \
             UPDATE runs SET status = 'cancelled', cancelled_by = $2, finished_at = $3, updated_at = $4, \
               locked_by = NULL, locked_until = NULL \
             WHERE id IN (SELECT id FROM tree) AND status IN ('pending', 'waiting', 'running') \
               AND (id = $5 OR locked_until IS NULL OR locked_until < $6)",
        )
        .bind(id)
        .bind(by)
        .bind(now)
        .bind(now)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if let Some(parent) = parent {
            fail_waiting_parent(&mut tx, parent, now).await?;
        }
        tx.commit().await?;
        Ok(CancelOutcome::Cancelled(cancelled.rows_affected()))
    }

    /// Deletes up to `batch` finished runs that finished before `cutoff` (ms
    /// since epoch), with their timelines. Unfinished runs are never touched.
    pub async fn reap(&self, cutoff: i64, batch: u32) -> Result<u64> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query(
            "DELETE FROM runs WHERE id IN (SELECT id FROM runs \
               WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < $1 ORDER BY finished_at LIMIT $2)",
        )
        .bind(cutoff)
        .bind(i64::from(batch))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted.rows_affected())
    }

    /// Creates a pending run unless its key exists.
    pub async fn insert_run(&self, new: &NewRun) -> Result<InsertOutcome> {
        let mut tx = self.begin().await?;
        let existing = fetch_run(&mut tx, By::Key(&new.workflow, &new.key)).await?;
        let outcome = match existing {
            Some(run) if run.args_hash != args_hash(&new.args) => InsertOutcome::Mismatch,
            Some(run) => InsertOutcome::Existing(Box::new(run)),
            None => {
                let id = insert_run(&mut tx, new, now_ms(), None).await?;
                InsertOutcome::Created(id)
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Commits a step: attributes, staged runs, timeline entry and the new
    /// recovery point, in one transaction fenced on the lease. If the step
    /// staged awaited runs that have not all succeeded, the run waits for them
    /// at this step instead of moving on.
    pub async fn commit_step(&self, c: &StepCommit) -> Result<CommitOutcome> {
        let mut tx = self.begin().await?;
        let outcome = commit_step_in(&mut tx, c).await?;
        finish_step_tx(tx, &outcome).await?;
        Ok(outcome)
    }

    /// Records a failed step call and releases the lease; if the run failed
    /// for good and a waiting parent awaits it, fails the parent's step too.
    /// Returns false (and writes nothing) if the caller no longer holds the lease.
    pub async fn record_failure(&self, f: &FailureRecord) -> Result<bool> {
        let mut tx = self.begin().await?;
        let now = now_ms();
        let (status, available_at, finished_at) = match f.retry_in {
            Some(delay) => (RunStatus::Pending, now + ms(delay), None),
            None => (RunStatus::Failed, now, Some(now)),
        };
        let updated = sqlx::query(
            "UPDATE runs SET status = $1, attempts = attempts + 1, step_attempt = step_attempt + 1, \
               last_error_step = $2, last_error_kind = $3, last_error_message = $4, last_error_attempt = $5, \
               available_at = $6, locked_by = NULL, locked_until = NULL, updated_at = $7, finished_at = $8 \
             WHERE id = $9 AND locked_by = $10 AND status = 'running'",
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
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_event(
            &mut tx,
            f.run_id,
            &f.failure.step,
            f.failure.attempt,
            "failed",
            Some((&f.failure.kind, &f.failure.message)),
            f.started_at,
            now,
        )
        .await?;
        if let Some(parent) = &f.parent {
            fail_waiting_parent(&mut tx, parent, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Gives up a lease without recording anything: the run is pending again at once.
    pub async fn release(&self, id: i64, lease: &Lease) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET locked_by = NULL, locked_until = NULL, updated_at = $1, \
               status = CASE WHEN status = 'running' THEN 'pending' ELSE status END \
             WHERE id = $2 AND locked_by = $3",
        )
        .bind(now_ms())
        .bind(id)
        .bind(&lease.owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes a failed or pending run runnable now. A failed run also gets a
    /// fresh budget of attempts for its current step (attempt numbers keep
    /// counting); a pending one keeps its budget, so a retry is not a way
    /// around the policy. Returns false if the
    /// run is in another state or leased.
    pub async fn reset_for_retry(&self, id: i64) -> Result<bool> {
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE runs SET step_attempt_base = CASE WHEN status = 'failed' THEN step_attempt ELSE step_attempt_base END, \
               status = 'pending', available_at = $1, finished_at = NULL, updated_at = $2 \
             WHERE id = $3 AND (status = 'failed' OR (status IN ('pending', 'running') \
               AND (locked_until IS NULL OR locked_until < $4)))",
        )
        .bind(now)
        .bind(now)
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// The run with `id`.
    pub async fn run(&self, id: i64) -> Result<Option<RunRecord>> {
        let mut conn = self.pool.acquire().await?;
        fetch_run(&mut conn, By::Id(id)).await
    }

    /// The runs with idempotency key `key`, of `workflow` if given.
    pub async fn runs_by_key(&self, key: &str, workflow: Option<&str>) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE idempotency_key = $1 AND ($2 IS NULL OR workflow = $3) ORDER BY id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .bind(workflow)
            .bind(workflow)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// Runs matching `filter`, newest first.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE ($1 IS NULL OR status = $2) AND ($3 IS NULL OR workflow = $4) \
               AND ($5 IS NULL OR parent_run_id = $6) ORDER BY id DESC LIMIT $7"
        );
        let status = filter.status.map(RunStatus::as_str);
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(status)
            .bind(status)
            .bind(filter.workflow.as_deref())
            .bind(filter.workflow.as_deref())
            .bind(filter.parent)
            .bind(filter.parent)
            .bind(i64::from(filter.limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// The writes acidic makes for one run of a workflow with `steps`, as
    /// bare transactions of this backend (the baseline of `acidic bench`):
    /// create the run row, then per step one transaction that moves the
    /// recovery point, fenced like a real commit, and appends a timeline row.
    pub async fn baseline_run(&self, workflow: &str, key: &str, steps: &[String]) -> Result<()> {
        let first = steps
            .first()
            .ok_or_else(|| Error::Engine("a workflow has at least one step".into()))?;
        let now = now_ms();
        let mut tx = self.begin().await?;
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT id FROM runs WHERE workflow = $1 AND idempotency_key = $2")
                .bind(workflow)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
        let id = match existing {
            Some(id) => id,
            None => {
                sqlx::query_scalar(
                    "INSERT INTO runs (workflow, workflow_version, definition_hash, idempotency_key, args, args_hash, \
                       status, recovery_point, attributes, locked_by, locked_until, available_at, created_at, updated_at) \
                     VALUES ($1, 1, 'h', $2, '{}', 'h', 'running', $3, '{}', 'bench', $4, $5, $6, $7) RETURNING id",
                )
                .bind(workflow)
                .bind(key)
                .bind(first)
                .bind(now + 90_000)
                .bind(now)
                .bind(now)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        tx.commit().await?;
        for (i, step) in steps.iter().enumerate() {
            let next = steps.get(i + 1).map(String::as_str).unwrap_or(FINISHED);
            let status = if i + 1 == steps.len() {
                "succeeded"
            } else {
                "running"
            };
            let mut tx = self.begin().await?;
            sqlx::query(
                "UPDATE runs SET recovery_point = $1, attributes = '{}', status = $2, attempts = attempts + 1, \
                   updated_at = $3 WHERE id = $4 AND locked_by = 'bench' AND recovery_point = $5",
            )
            .bind(next)
            .bind(status)
            .bind(now_ms())
            .bind(id)
            .bind(step)
            .execute(&mut *tx)
            .await?;
            insert_event(&mut tx, id, step, 1, "committed", None, now, now_ms()).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// The step timeline of run `id`, oldest first.
    pub async fn step_events(&self, id: i64) -> Result<Vec<StepEvent>> {
        let rows = sqlx::query(
            "SELECT step, attempt, outcome, error_kind, message, started_at, finished_at \
             FROM step_events WHERE run_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StepEvent {
                    step: r.try_get("step")?,
                    attempt: r.try_get::<i64, _>("attempt")? as u32,
                    outcome: r.try_get("outcome")?,
                    error_kind: r.try_get("error_kind")?,
                    message: r.try_get("message")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                })
            })
            .collect()
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
            "finished",
        ),
        StepEnd::Advance { next, .. } => (RunStatus::Running, next.as_str(), None, "committed"),
        StepEnd::Repeat => (RunStatus::Running, c.step.as_str(), None, "repeated"),
    };
    let done = status == RunStatus::Succeeded;
    // The lease is checked inside the commit, so a worker that lost it
    // (expired and taken over) cannot advance the run. The owner token is
    // unique per claim, so comparing it is the whole fence: an expired
    // lease nobody took over still belongs to its worker.
    let updated = sqlx::query(
        "UPDATE runs SET recovery_point = $1, attributes = $2, status = $3, result = $4, \
           attempts = attempts + 1, step_attempt = 0, step_attempt_base = 0, \
           locked_by = CASE WHEN $5 THEN NULL ELSE locked_by END, \
           locked_until = CASE WHEN $6 THEN NULL ELSE $7 END, \
           updated_at = $8, finished_at = CASE WHEN $9 THEN $10 ELSE NULL END \
         WHERE id = $11 AND locked_by = $12 AND recovery_point = $13 AND status = 'running'",
    )
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
    .execute(&mut **tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(CommitOutcome::LeaseLost);
    }

    // What this step awaits replaces whatever an earlier attempt awaited.
    sqlx::query("UPDATE runs SET awaited = FALSE WHERE parent_run_id = $1 AND awaited = TRUE")
        .bind(c.run_id)
        .execute(&mut **tx)
        .await?;
    let mut waiting_for = 0u32;
    for staged in &c.staged {
        let existing = sqlx::query(
            "SELECT id, args_hash, status FROM runs WHERE workflow = $1 AND idempotency_key = $2",
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
            return Ok(CommitOutcome::StagedKeyConflict {
                workflow: staged.workflow.clone(),
                key: staged.key.clone(),
            });
        }
        if !staged.awaited {
            continue;
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
            "awaiting",
            None,
            c.started_at,
            now,
        )
        .await?;
    } else {
        insert_event(
            tx,
            c.run_id,
            &c.step,
            c.attempt,
            outcome,
            None,
            c.started_at,
            now,
        )
        .await?;
        if done {
            child_succeeded(tx, c.run_id, now).await?;
        }
    }
    Ok(if waiting_for > 0 {
        CommitOutcome::Waiting(waiting_for)
    } else {
        CommitOutcome::Committed
    })
}

/// Commits `tx` if `outcome` says the step's writes stand, else rolls it back.
async fn finish_step_tx(tx: Transaction<'static, Db>, outcome: &CommitOutcome) -> Result<()> {
    match outcome {
        CommitOutcome::Committed | CommitOutcome::Waiting(_) => tx.commit().await?,
        CommitOutcome::LeaseLost | CommitOutcome::StagedKeyConflict { .. } => tx.rollback().await?,
    }
    Ok(())
}

/// Applies, on `tx`, the migrations `_acidic_migrations` does not record yet, in order.
async fn apply_migrations(
    tx: &mut Transaction<'static, Db>,
    migrations: &[(i64, &'static str, &'static str)],
) -> Result<()> {
    for &(version, name, sql) in migrations {
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT version FROM _acidic_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut **tx)
                .await?;
        if applied.is_some() {
            continue;
        }
        sqlx::raw_sql(sql)
            .execute(&mut **tx)
            .await
            .map_err(|source| Error::Migration {
                version,
                name,
                source,
            })?;
        sqlx::query("INSERT INTO _acidic_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(version)
            .bind(name)
            .bind(now_ms())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Run `id` just succeeded: if a waiting parent awaits it, count it off, and
/// when it was the last one, move the parent on (runnable at its next step,
/// or succeeded), which may in turn complete the parent's own parent.
async fn child_succeeded(conn: &mut Conn, id: i64, now: i64) -> Result<()> {
    let mut child = id;
    loop {
        let row = sqlx::query("SELECT parent_run_id, awaited FROM runs WHERE id = $1")
            .bind(child)
            .fetch_one(&mut *conn)
            .await?;
        let parent: Option<i64> = row.try_get("parent_run_id")?;
        let (Some(parent), true) = (parent, row.try_get::<bool, _>("awaited")?) else {
            return Ok(());
        };
        let left: Option<i64> = sqlx::query_scalar(
            "UPDATE runs SET pending_children = pending_children - 1, updated_at = $1 \
             WHERE id = $2 AND status = 'waiting' RETURNING pending_children",
        )
        .bind(now)
        .bind(parent)
        .fetch_optional(&mut *conn)
        .await?;
        if left.is_none_or(|n| n > 0) {
            return Ok(());
        }
        let row =
            sqlx::query("SELECT recovery_point, await_next, step_attempt FROM runs WHERE id = $1")
                .bind(parent)
                .fetch_one(&mut *conn)
                .await?;
        let step: String = row.try_get("recovery_point")?;
        let next: String = row
            .try_get::<Option<String>, _>("await_next")?
            .unwrap_or_else(|| FINISHED.into());
        let finished = next == FINISHED;
        sqlx::query(
            "UPDATE runs SET status = $1, recovery_point = $2, await_next = NULL, pending_children = 0, \
               step_attempt = 0, step_attempt_base = 0, available_at = $3, updated_at = $4, \
               finished_at = CASE WHEN $5 THEN $6 ELSE NULL END, \
               result = CASE WHEN $7 THEN COALESCE(result, 'null') ELSE result END \
             WHERE id = $8",
        )
        .bind(if finished { "succeeded" } else { "pending" })
        .bind(&next)
        .bind(now)
        .bind(now)
        .bind(finished)
        .bind(now)
        .bind(finished)
        .bind(parent)
        .execute(&mut *conn)
        .await?;
        let attempt = row.try_get::<i64, _>("step_attempt")? as u32 + 1;
        insert_event(
            conn,
            parent,
            &step,
            attempt,
            "children_done",
            None,
            now,
            now,
        )
        .await?;
        if !finished {
            return Ok(());
        }
        child = parent;
    }
}

/// Fails a waiting parent's awaiting step because an awaited run failed for
/// good: retried after `retry_in`, or failed. Applies only if the parent is
/// still waiting at that step and attempt (it may have moved on meanwhile).
async fn fail_waiting_parent(conn: &mut Conn, p: &ParentFailure, now: i64) -> Result<()> {
    let (status, available_at, finished_at) = match p.retry_in {
        Some(delay) => (RunStatus::Pending, now + ms(delay), None),
        None => (RunStatus::Failed, now, Some(now)),
    };
    let attempt = i64::from(p.step_attempt) + 1;
    let updated = sqlx::query(
        "UPDATE runs SET status = $1, step_attempt = step_attempt + 1, await_next = NULL, pending_children = 0, \
           last_error_step = $2, last_error_kind = $3, last_error_message = $4, last_error_attempt = $5, \
           available_at = $6, updated_at = $7, finished_at = $8, result = NULL \
         WHERE id = $9 AND status = 'waiting' AND recovery_point = $10 AND step_attempt = $11",
    )
    .bind(status.as_str())
    .bind(&p.step)
    .bind(&p.kind)
    .bind(&p.message)
    .bind(attempt)
    .bind(available_at)
    .bind(now)
    .bind(finished_at)
    .bind(p.run_id)
    .bind(&p.step)
    .bind(i64::from(p.step_attempt))
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() == 1 {
        insert_event(
            conn,
            p.run_id,
            &p.step,
            attempt as u32,
            "failed",
            Some((&p.kind, &p.message)),
            now,
            now,
        )
        .await?;
        if p.retry_in.is_none() {
            // The parent failed for good: its own waiting parent's step fails too.
            Box::pin(parent_failed_for_good(conn, p.run_id, now)).await?;
        }
    }
    Ok(())
}

/// A run that just failed for good because of its children: if its own parent
/// waits for it, that parent's step fails at once (without retry: the store
/// does not know the grandparent's policy, and a retry would re-stage the
/// failed subtree anyway).
async fn parent_failed_for_good(conn: &mut Conn, id: i64, now: i64) -> Result<()> {
    let row = sqlx::query("SELECT parent_run_id, awaited, idempotency_key FROM runs WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    let (Some(parent), true) = (
        row.try_get::<Option<i64>, _>("parent_run_id")?,
        row.try_get::<bool, _>("awaited")?,
    ) else {
        return Ok(());
    };
    let Some(p) = sqlx::query(
        "SELECT recovery_point, step_attempt FROM runs WHERE id = $1 AND status = 'waiting'",
    )
    .bind(parent)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(());
    };
    let key: String = row.try_get("idempotency_key")?;
    let failure = ParentFailure {
        run_id: parent,
        step: p.try_get("recovery_point")?,
        step_attempt: p.try_get::<i64, _>("step_attempt")? as u32,
        retry_in: None,
        kind: "child_failed".into(),
        message: format!("awaited run `{key}` failed"),
    };
    fail_waiting_parent(conn, &failure, now).await
}

async fn claim_in(
    conn: &mut Conn,
    run: RunRecord,
    lease: &Lease,
    now: i64,
) -> Result<StartOutcome> {
    if run.status.is_final() || run.status == RunStatus::Waiting {
        return Ok(StartOutcome::Final(Box::new(run)));
    }
    // A lease already ours is a claim whose commit answer was lost and that
    // the store is trying again: it stands.
    if let (Some(owner), Some(until)) = (&run.locked_by, run.locked_until)
        && until > now
        && *owner != lease.owner
    {
        return Ok(StartOutcome::Locked {
            locked_by: owner.clone(),
            remaining_ms: until - now,
        });
    }
    sqlx::query(
        "UPDATE runs SET status = 'running', locked_by = $1, locked_until = $2, last_run_at = $3, updated_at = $4 \
         WHERE id = $5",
    )
    .bind(&lease.owner)
    .bind(now + ms(lease.ttl))
    .bind(now)
    .bind(now)
    .bind(run.id)
    .execute(&mut *conn)
    .await?;
    let run = RunRecord {
        status: RunStatus::Running,
        locked_by: Some(lease.owner.clone()),
        locked_until: Some(now + ms(lease.ttl)),
        last_run_at: Some(now),
        updated_at: now,
        ..run
    };
    Ok(StartOutcome::Claimed(Box::new(run)))
}

async fn insert_run(conn: &mut Conn, new: &NewRun, now: i64, lease: Option<&Lease>) -> Result<i64> {
    let status = if lease.is_some() {
        RunStatus::Running
    } else {
        RunStatus::Pending
    };
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO runs (workflow, workflow_version, definition_hash, idempotency_key, args, args_hash, status, \
           recovery_point, attributes, locked_by, locked_until, available_at, queue, parent_run_id, awaited, \
           created_at, updated_at, last_run_at, depth) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) RETURNING id",
    )
    .bind(&new.workflow)
    .bind(i64::from(new.workflow_version))
    .bind(&new.definition_hash)
    .bind(&new.key)
    .bind(canonical_json(&new.args))
    .bind(args_hash(&new.args))
    .bind(status.as_str())
    .bind(&new.first_step)
    .bind(Value::Object(new.attributes.clone()).to_string())
    .bind(lease.map(|l| l.owner.as_str()))
    .bind(lease.map(|l| now + ms(l.ttl)))
    .bind(now.saturating_add(ms(new.delay)))
    .bind(&new.queue)
    .bind(new.parent_run_id)
    .bind(new.awaited)
    .bind(now)
    .bind(now)
    .bind(lease.map(|_| now))
    .bind(i64::from(new.depth))
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

#[allow(clippy::too_many_arguments)]
async fn insert_event(
    conn: &mut Conn,
    run_id: i64,
    step: &str,
    attempt: u32,
    outcome: &str,
    error: Option<(&str, &str)>,
    started_at: i64,
    finished_at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO step_events (run_id, step, attempt, outcome, error_kind, message, started_at, finished_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(run_id)
    .bind(step)
    .bind(i64::from(attempt))
    .bind(outcome)
    .bind(error.map(|e| e.0))
    .bind(error.map(|e| e.1))
    .bind(started_at)
    .bind(finished_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// How to find one run.
enum By<'a> {
    Id(i64),
    Key(&'a str, &'a str),
}

async fn fetch_run(conn: &mut Conn, by: By<'_>) -> Result<Option<RunRecord>> {
    let row = match by {
        By::Id(id) => {
            let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        }
        By::Key(workflow, key) => {
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE workflow = $1 AND idempotency_key = $2"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(workflow)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?
        }
    };
    row.as_ref().map(run_from_row).transpose()
}

fn run_from_row(row: &DbRow) -> Result<RunRecord> {
    let id: i64 = row.try_get("id")?;
    let corrupt =
        |what: &str, e: &dyn std::fmt::Display| Error::Corrupt(format!("run {id}: {what}: {e}"));
    let args: String = row.try_get("args")?;
    let attributes: String = row.try_get("attributes")?;
    let result: Option<String> = row.try_get("result")?;
    let status: String = row.try_get("status")?;
    let last_error = match row.try_get::<Option<String>, _>("last_error_step")? {
        Some(step) => Some(StepFailure {
            step,
            kind: row
                .try_get::<Option<String>, _>("last_error_kind")?
                .unwrap_or_default(),
            message: row
                .try_get::<Option<String>, _>("last_error_message")?
                .unwrap_or_default(),
            attempt: row
                .try_get::<Option<i64>, _>("last_error_attempt")?
                .unwrap_or(0) as u32,
        }),
        None => None,
    };
    Ok(RunRecord {
        id,
        workflow: row.try_get("workflow")?,
        workflow_version: row.try_get::<i64, _>("workflow_version")? as u32,
        definition_hash: row.try_get("definition_hash")?,
        key: row.try_get("idempotency_key")?,
        args: serde_json::from_str(&args).map_err(|e| corrupt("args", &e))?,
        args_hash: row.try_get("args_hash")?,
        status: status.parse().map_err(|e: String| corrupt("status", &e))?,
        recovery_point: row.try_get("recovery_point")?,
        attributes: serde_json::from_str::<Map<String, Value>>(&attributes)
            .map_err(|e| corrupt("attributes", &e))?,
        result: result
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| corrupt("result", &e))?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        step_attempt: row.try_get::<i64, _>("step_attempt")? as u32,
        step_attempt_base: row.try_get::<i64, _>("step_attempt_base")? as u32,
        last_error,
        locked_by: row.try_get("locked_by")?,
        locked_until: row.try_get("locked_until")?,
        available_at: row.try_get("available_at")?,
        queue: row.try_get("queue")?,
        parent_run_id: row.try_get("parent_run_id")?,
        depth: u32::try_from(row.try_get::<i64, _>("depth")?).unwrap_or(u32::MAX),
        cancelled_by: row.try_get("cancelled_by")?,
        awaited: row.try_get::<bool, _>("awaited")?,
        pending_children: row.try_get::<i64, _>("pending_children")?.max(0) as u32,
        await_next: row.try_get("await_next")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        last_run_at: row.try_get("last_run_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

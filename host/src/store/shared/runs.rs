// Runs: creating, claiming (the queue), leases, cancelling, reaping, reading.
// Written once for both backends: see `prelude.rs`.

impl Backend {
    /// Finds the run of `new.workflow` with `new.key`, creating it if absent,
    /// and leases it to `lease` unless it is final, locked, or has other args.
    /// A new run is created only on its workflow's latest version: if a
    /// newer one exists, nothing is written and the outcome is
    /// [`StartOutcome::Stale`].
    pub(super) async fn start_run(&self, new: &NewRun, lease: &Lease) -> Result<StartOutcome> {
        // The common case, a new key: one statement, which commits alone.
        let now = now_ms();
        if let Some(run) = insert_started(&self.writer, new, now, lease).await? {
            return Ok(StartOutcome::Claimed(Box::new(run)));
        }
        let mut tx = self.begin().await?;
        let existing = fetch_run(&mut tx, By::Key(&new.workflow, &new.key)).await?;
        let now = now_ms();
        let outcome = match existing {
            // Not inserted, yet no run has the key: a newer version exists
            // (or the run was reaped just now; starting again serves both).
            None => StartOutcome::Stale,
            Some(run) if run.args_hash != args_hash(&new.args) => StartOutcome::Mismatch,
            Some(run) => claim_in(&mut tx, run, lease, now).await?,
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Whether a pending run in `queues` (all, if empty) waits out the
    /// backoff of a failed attempt.
    pub(super) async fn retries_waiting(&self, queues: &[String]) -> Result<bool> {
        let queues = queue_param(queues);
        Ok(sqlx::query_scalar(RETRY_WAIT_SQL)
            .bind(queues.clone())
            .bind(queues)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Leases run `id` to `lease` unless it is final or locked.
    pub(super) async fn claim(&self, id: i64, lease: &Lease) -> Result<StartOutcome> {
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
    pub(super) async fn claim_batch(
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
    pub(super) async fn extend_lease(&self, id: i64, lease: &Lease) -> Result<bool> {
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE runs SET locked_until = $1 WHERE id = $2 AND locked_by = $3 AND status = 'running'",
        )
        .bind(now + ms(lease.ttl))
        .bind(id)
        .bind(&lease.owner)
        .execute(&self.writer)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Cancels run `id` and every unfinished run it staged, recursively,
    /// recording `by`. A run inside a step (a live lease other than `held`)
    /// is not cancelled here: the request is recorded, and the worker
    /// holding the lease cancels it at the step's end.
    pub(super) async fn cancel(
        &self,
        id: i64,
        by: &str,
        parent: Option<&ParentFailure>,
        held: Option<&Lease>,
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
            && held.is_none_or(|lease| lease.owner != *owner)
        {
            // The holder reads the request in its step's commit (the same
            // row, under the same lock), so it cannot miss it.
            let requested = sqlx::query(
                "UPDATE runs SET cancel_requested_by = $1, updated_at = $2 \
                 WHERE id = $3 AND locked_by = $4 AND status = 'running'",
            )
            .bind(by)
            .bind(now)
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(if requested.rows_affected() == 1 {
                CancelOutcome::Requested {
                    locked_by: owner.clone(),
                    step: run.recovery_point,
                }
            } else {
                // The step ended between the read and the write.
                CancelOutcome::Raced
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
    pub(super) async fn reap(&self, cutoff: i64, batch: u32) -> Result<u64> {
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
    pub(super) async fn insert_run(&self, new: &NewRun) -> Result<InsertOutcome> {
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

    /// Gives up a lease without recording anything: the run is pending again at once.
    pub(super) async fn release(&self, id: i64, lease: &Lease) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET locked_by = NULL, locked_until = NULL, updated_at = $1, \
               status = CASE WHEN status = 'running' THEN 'pending' ELSE status END \
             WHERE id = $2 AND locked_by = $3",
        )
        .bind(now_ms())
        .bind(id)
        .bind(&lease.owner)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Makes a failed or pending run runnable now. A failed run also gets a
    /// fresh budget of attempts for its current step (attempt numbers keep
    /// counting); a pending one keeps its budget, so a retry is not a way
    /// around the policy. With `upgrade`, the run moves to that version of
    /// its workflow in the same statement. Returns false if the run is in
    /// another state or leased.
    pub(super) async fn reset_for_retry(
        &self,
        id: i64,
        upgrade: Option<&WorkflowVersion>,
    ) -> Result<bool> {
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE runs SET step_attempt_base = CASE WHEN status = 'failed' THEN step_attempt ELSE step_attempt_base END, \
               status = 'pending', available_at = $1, finished_at = NULL, updated_at = $2, \
               response_code = NULL, response_body = NULL, failure_http_status = NULL, \
               cancel_requested_by = NULL, \
               workflow_version = COALESCE($5, workflow_version), \
               definition_hash = COALESCE($6, definition_hash) \
             WHERE id = $3 AND (status = 'failed' OR (status IN ('pending', 'running') \
               AND (locked_until IS NULL OR locked_until < $4)))",
        )
        .bind(now)
        .bind(now)
        .bind(id)
        .bind(now)
        .bind(upgrade.map(|u| i64::from(u.version)))
        .bind(upgrade.map(|u| u.definition_hash.as_str()))
        .execute(&self.writer)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// The run with `id`.
    pub(super) async fn run(&self, id: i64) -> Result<Option<RunRecord>> {
        let mut conn = self.pool.acquire().await?;
        fetch_run(&mut conn, By::Id(id)).await
    }

    /// The runs with idempotency key `key`, of `workflow` if given.
    pub(super) async fn runs_by_key(&self, key: &str, workflow: Option<&str>) -> Result<Vec<RunRecord>> {
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
    pub(super) async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let sql =
            format!("SELECT {RUN_COLUMNS} FROM runs WHERE {FILTERED} ORDER BY id DESC LIMIT $18");
        let status = filter.status.map(RunStatus::as_str);
        let rows = filtered(sqlx::query(sqlx::AssertSqlSafe(sql)), filter, status, filter.before)
            .bind(i64::from(filter.limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// How many runs match `filter` (its status, cursor and limit aside),
    /// per status.
    pub(super) async fn count_runs(&self, filter: &RunFilter) -> Result<Vec<(String, i64)>> {
        let sql = format!(
            "SELECT status, COUNT(*) AS n FROM runs WHERE {FILTERED} GROUP BY status ORDER BY status"
        );
        let rows = filtered(sqlx::query(sqlx::AssertSqlSafe(sql)), filter, None, None)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("status")?, row.try_get("n")?)))
            .collect()
    }

    /// The answer stored for run `id`, if one is; stores nothing.
    pub(super) async fn stored_response(&self, id: i64) -> Result<Option<StoredResponse>> {
        let row = sqlx::query("SELECT response_code, response_body FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => stored_of(id, &row),
            None => Ok(None),
        }
    }

    /// The answer stored for finished run `id`, storing `make(run)` first if
    /// none is (the first writer wins); `None` while the run is unfinished.
    pub(super) async fn response(
        &self,
        id: i64,
        make: &(dyn Fn(&RunRecord) -> StoredResponse + Sync),
    ) -> Result<Option<StoredResponse>> {
        let mut conn = self.writer.acquire().await?;
        let stored = |row: &DbRow| stored_of(id, row);
        let sql = format!("SELECT {RUN_COLUMNS}, response_code, response_body FROM runs WHERE id = $1");
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let run = run_from_row(&row)?;
        if !run.status.is_final() {
            return Ok(None);
        }
        // Stored with the run's last commit (a finished run), or by an earlier answer.
        if let Some(response) = stored(&row)? {
            return Ok(Some(response));
        }
        let made = make(&run);
        sqlx::query(
            "UPDATE runs SET response_code = $1, response_body = $2 \
             WHERE id = $3 AND response_code IS NULL AND status IN ('succeeded', 'failed', 'cancelled')",
        )
        .bind(i64::from(made.code))
        .bind(&made.body)
        .bind(id)
        .execute(&mut *conn)
        .await?;
        let row = sqlx::query("SELECT response_code, response_body FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            Some(row) => stored(&row),
            None => Ok(None),
        }
    }

    /// Runs counted by workflow, queue and status; for pending runs, the
    /// earliest `available_at` among those already due.
    pub(super) async fn run_counts(&self) -> Result<Vec<RunCount>> {
        let rows = sqlx::query(
            "SELECT workflow, queue, status, COUNT(*) AS n, \
               MIN(CASE WHEN status = 'pending' AND available_at <= $1 THEN available_at END) AS oldest \
             FROM runs GROUP BY workflow, queue, status ORDER BY workflow, queue, status",
        )
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RunCount {
                    workflow: row.try_get("workflow")?,
                    queue: row.try_get("queue")?,
                    status: row.try_get("status")?,
                    count: row.try_get("n")?,
                    oldest_due: row.try_get("oldest")?,
                })
            })
            .collect()
    }

    /// Lease holders, runs finished per minute since `since` (ms), and runs
    /// per workflow version.
    pub(super) async fn activity(&self, since: i64) -> Result<Activity> {
        let leases = sqlx::query(
            "SELECT locked_by, COUNT(*) AS n, MAX(locked_until) AS until FROM runs \
             WHERE locked_by IS NOT NULL GROUP BY locked_by ORDER BY locked_by",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("locked_by")?, r.try_get("n")?, r.try_get("until")?)))
        .collect::<Result<Vec<_>>>()?;
        let finished = sqlx::query(
            "SELECT (finished_at / 60000) * 60000 AS minute, status, COUNT(*) AS n FROM runs \
             WHERE finished_at >= $1 GROUP BY (finished_at / 60000) * 60000, status ORDER BY minute",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("minute")?, r.try_get("status")?, r.try_get("n")?)))
        .collect::<Result<Vec<_>>>()?;
        let per_version = sqlx::query(
            "SELECT workflow, workflow_version, COUNT(*) AS n FROM runs \
             GROUP BY workflow, workflow_version ORDER BY workflow, workflow_version",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let version: i64 = r.try_get("workflow_version")?;
            Ok((r.try_get("workflow")?, version as u32, r.try_get("n")?))
        })
        .collect::<Result<Vec<_>>>()?;
        Ok(Activity {
            leases,
            finished,
            per_version,
        })
    }

    /// A round trip to the database.
    pub(super) async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// What a step may read of the runs run `parent` staged, oldest first:
    /// each one's workflow, key, status and result, read one row at a time
    /// while they fit in `max_bytes`; `None` once they do not.
    pub(super) async fn children(
        &self,
        parent: i64,
        max_bytes: usize,
    ) -> Result<Option<Vec<ChildRun>>> {
        use futures_util::TryStreamExt;
        let mut rows = sqlx::query(
            "SELECT workflow, idempotency_key, status, result FROM runs \
             WHERE parent_run_id = $1 ORDER BY id LIMIT 10000",
        )
        .bind(parent)
        .fetch(&self.pool);
        let (mut children, mut held) = (Vec::new(), 0usize);
        while let Some(row) = rows.try_next().await? {
            let child = ChildRun {
                workflow: row.try_get("workflow")?,
                key: row.try_get("idempotency_key")?,
                status: row.try_get("status")?,
                result: row.try_get("result")?,
            };
            held += 64 + child.workflow.len() + child.key.len();
            held += child.result.as_ref().map_or(0, String::len);
            if held > max_bytes {
                return Ok(None);
            }
            children.push(child);
        }
        Ok(Some(children))
    }

    /// The step timeline of run `id`, oldest first.
    pub(super) async fn step_events(&self, id: i64) -> Result<Vec<StepEvent>> {
        let rows = sqlx::query(
            "SELECT step, attempt, outcome, error_kind, message, started_at, finished_at, logs \
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
                    logs: r
                        .try_get::<Option<String>, _>("logs")?
                        .and_then(|text| serde_json::from_str(&text).ok())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }
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

/// The runs a [`RunFilter`] selects, over parameters $1 to $17 (bound by
/// [`filtered`]): each condition holds when its value is NULL.
const FILTERED: &str = "($1 IS NULL OR status = $2) AND ($3 IS NULL OR workflow = $4) \
   AND ($5 IS NULL OR parent_run_id = $6) AND ($7 IS NULL OR queue = $8) \
   AND ($9 IS NULL OR id < $10) \
   AND ($11 IS NULL OR substr(idempotency_key, 1, length($12)) = $13) \
   AND ($14 IS NULL OR created_at >= $15) AND ($16 IS NULL OR created_at < $17)";

/// Binds [`FILTERED`]'s parameters: `filter`'s, with `status` and `before`
/// given apart (a count leaves them out).
fn filtered<'q>(
    q: sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments>,
    filter: &'q RunFilter,
    status: Option<&'q str>,
    before: Option<i64>,
) -> sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments> {
    let prefix = filter.key_prefix.as_deref();
    q.bind(status)
        .bind(status)
        .bind(filter.workflow.as_deref())
        .bind(filter.workflow.as_deref())
        .bind(filter.parent)
        .bind(filter.parent)
        .bind(filter.queue.as_deref())
        .bind(filter.queue.as_deref())
        .bind(before)
        .bind(before)
        .bind(prefix)
        .bind(prefix)
        .bind(prefix)
        .bind(filter.created_from)
        .bind(filter.created_from)
        .bind(filter.created_until)
        .bind(filter.created_until)
}

/// The answer stored in run `id`'s `row`, if one is.
fn stored_of(id: i64, row: &DbRow) -> Result<Option<StoredResponse>> {
    let code: Option<i64> = row.try_get("response_code")?;
    let body: Option<String> = row.try_get("response_body")?;
    Ok(match (code, body) {
        (Some(code), Some(body)) => Some(StoredResponse {
            code: u16::try_from(code)
                .map_err(|_| Error::Corrupt(format!("run {id}: response code {code}")))?,
            body,
        }),
        _ => None,
    })
}

/// The columns a new run is inserted with, and their parameters (bound by
/// [`bind_new_run`]).
const NEW_RUN_COLUMNS: &str = "(workflow, workflow_version, definition_hash, idempotency_key, args, args_hash, \
    status, recovery_point, attributes, locked_by, locked_until, available_at, queue, parent_run_id, awaited, \
    created_at, updated_at, last_run_at, depth)";
const NEW_RUN_VALUES: &str =
    "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19";

/// Binds [`NEW_RUN_VALUES`] for `new`: running and leased to `lease` if
/// given, else pending.
fn bind_new_run<'q>(
    q: sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments>,
    new: &'q NewRun,
    now: i64,
    lease: Option<&'q Lease>,
) -> sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments> {
    let status = if lease.is_some() {
        RunStatus::Running
    } else {
        RunStatus::Pending
    };
    q.bind(&new.workflow)
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
}

/// Inserts `new`, leased to `lease`, if no run has its key and no version of
/// its workflow is newer than its own: the whole of a common start, in one
/// statement. `None` if either holds.
async fn insert_started(
    pool: &sqlx::Pool<Db>,
    new: &NewRun,
    now: i64,
    lease: &Lease,
) -> Result<Option<RunRecord>> {
    let sql = format!(
        "INSERT INTO runs {NEW_RUN_COLUMNS} SELECT {NEW_RUN_VALUES} \
         WHERE NOT EXISTS (SELECT 1 FROM workflows WHERE name = $1 AND version > $2) \
         ON CONFLICT (workflow, idempotency_key) DO NOTHING RETURNING {RUN_COLUMNS}"
    );
    let query = sqlx::query(sqlx::AssertSqlSafe(sql));
    let row = bind_new_run(query, new, now, Some(lease))
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(run_from_row).transpose()
}

async fn insert_run(conn: &mut Conn, new: &NewRun, now: i64, lease: Option<&Lease>) -> Result<i64> {
    let sql = format!("INSERT INTO runs {NEW_RUN_COLUMNS} VALUES ({NEW_RUN_VALUES}) RETURNING id");
    let row = bind_new_run(sqlx::query(sqlx::AssertSqlSafe(sql)), new, now, lease)
        .fetch_one(&mut *conn)
        .await?;
    let id: i64 = row.try_get("id")?;
    Ok(id)
}

#[allow(clippy::too_many_arguments)]
async fn insert_event(
    conn: &mut Conn,
    run_id: i64,
    step: &str,
    attempt: u32,
    outcome: StepOutcome,
    error: Option<(&str, &str)>,
    started_at: i64,
    finished_at: i64,
    logs: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO step_events (run_id, step, attempt, outcome, error_kind, message, started_at, finished_at, logs) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(run_id)
    .bind(step)
    .bind(i64::from(attempt))
    .bind(outcome.as_str())
    .bind(error.map(|e| e.0))
    .bind(error.map(|e| e.1))
    .bind(started_at)
    .bind(finished_at)
    .bind(logs)
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

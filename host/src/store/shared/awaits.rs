// Awaits: what a child's success or failure does to the parent waiting for it.
// Written once for both backends: see `prelude.rs`.

/// A run just succeeded, staged by `parent` (and `awaited` by it): if the
/// parent waits for it, count it off, and when it was the last one, move the
/// parent on (runnable at its next step, or succeeded), which may in turn
/// complete the parent's own parent.
async fn child_succeeded(conn: &mut Conn, parent: Option<i64>, awaited: bool, now: i64) -> Result<()> {
    let (mut up, mut awaited) = (parent, awaited);
    loop {
        let (Some(parent), true) = (up, awaited) else {
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
            StepOutcome::ChildrenDone,
            None,
            now,
            now,
            None,
        )
        .await?;
        if !finished {
            return Ok(());
        }
        let row = sqlx::query("SELECT parent_run_id, awaited FROM runs WHERE id = $1")
            .bind(parent)
            .fetch_one(&mut *conn)
            .await?;
        (up, awaited) = (row.try_get("parent_run_id")?, row.try_get("awaited")?);
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
    .bind(p.kind.as_str())
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
            StepOutcome::Failed,
            Some((p.kind.as_str(), &p.message)),
            now,
            now,
            None,
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
        kind: ErrorKind::ChildFailed,
        message: format!("awaited run `{key}` failed"),
    };
    fail_waiting_parent(conn, &failure, now).await
}

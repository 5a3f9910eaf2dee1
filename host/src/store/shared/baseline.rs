// The bench baseline: acidic's writes as bare transactions (not production SQL).
// Written once for both backends: see `prelude.rs`.

impl Backend {
    /// The writes acidic makes for one run of a workflow with `steps`, as
    /// bare transactions of this backend (the baseline of `acidic bench`):
    /// create the run row, then per step one transaction that moves the
    /// recovery point, fenced like a real commit, and appends a timeline row.
    pub(super) async fn baseline_run(&self, workflow: &str, key: &str, steps: &[String]) -> Result<()> {
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
            insert_event(&mut tx, id, step, 1, StepOutcome::Committed, None, now, now_ms(), None).await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

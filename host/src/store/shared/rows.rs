// Mapping a `runs` row to a `RunRecord`.
// Written once for both backends: see `prelude.rs`.

/// The columns of a `RunRecord`, in the order `run_from_row` reads.
const RUN_COLUMNS: &str = "id, workflow, workflow_version, definition_hash, idempotency_key, args, args_hash, \
    status, recovery_point, attributes, result, attempts, step_attempt, step_attempt_base, last_error_step, \
    last_error_kind, last_error_message, last_error_attempt, locked_by, locked_until, available_at, queue, \
    parent_run_id, awaited, pending_children, await_next, cancelled_by, created_at, updated_at, last_run_at, \
    finished_at, depth, http_status, failure_http_status, cancel_requested_by";

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
        http_status: row
            .try_get::<Option<i64>, _>("http_status")?
            .and_then(|s| u16::try_from(s).ok()),
        failure_http_status: row
            .try_get::<Option<i64>, _>("failure_http_status")?
            .and_then(|s| u16::try_from(s).ok()),
        cancelled_by: row.try_get("cancelled_by")?,
        cancel_requested_by: row.try_get("cancel_requested_by")?,
        awaited: row.try_get::<bool, _>("awaited")?,
        pending_children: row.try_get::<i64, _>("pending_children")?.max(0) as u32,
        await_next: row.try_get("await_next")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        last_run_at: row.try_get("last_run_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

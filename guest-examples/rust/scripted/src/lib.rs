//! A step whose behaviour is scripted by the run's args, for tests and benchmarks.
//!
//! Args: `{"script": {"<step>": <action>, ...}}`; a step without an action
//! continues. An action is an object whose keys apply in this order:
//! - `"set": {"name": value}` sets attributes;
//! - `"log": [line, ..]` logs each line (`"log_times": n` times over), `"print": text` prints it;
//! - `"count": true` increments attribute `calls_<step>`;
//! - `"sql": [{"execute": s, "params": [..]} | {"query": s, "params": [..], "into": name}]`
//!   runs statements in the step's transaction (`into` sets attribute `name`
//!   to the rows; `"tolerate": true` ignores the statement's error); a
//!   parameter `{"real": "NaN"}` is that float, `{"blob": text}` those bytes;
//! - `"stage": [{"workflow": w, "args": a, "key": k, "queue": q, "delay_ms": n, "await": bool}]`
//!   stages runs;
//! - `"children_into": "name"` sets attribute `name` to the staged runs' results;
//! - `"fail": "retryable" | "fatal"` fails (only while attempt <= `"fail_attempts"`, if given);
//! - `"sleep_ms": n` sleeps n ms (through WASI's clock, so the host keeps serving);
//! - `"trap": true` panics (a Wasm trap), `"spin": true` loops forever,
//!   `"grow_mib": n` allocates n MiB;
//! - `"finish": value` ends the run with `value` (`"finish_padding": n`: with
//!   a string of n bytes); `"repeat_while_below": n`
//!   repeats the step until `calls_<step>` reaches n.

use acidic_guest::{Ctx, Job, Outcome, SqlValue, Step, StepError, export_step};
use serde_json::Value;

struct Scripted;

/// A statement's parameter: JSON as the SDK maps it, or a float JSON cannot
/// hold (`{"real": "NaN"}`), or bytes (`{"blob": text}`).
fn param(v: &Value) -> SqlValue {
    if let Some(real) = v.get("real").and_then(Value::as_str) {
        return SqlValue::Real(real.parse().unwrap_or(f64::NAN));
    }
    if let Some(blob) = v.get("blob").and_then(Value::as_str) {
        return SqlValue::Blob(blob.as_bytes().to_vec());
    }
    SqlValue::from(v)
}

impl Step for Scripted {
    fn run(cx: &mut Ctx) -> Result<Outcome, StepError> {
        let step = cx.step().to_string();
        let action = cx
            .args()
            .get("script")
            .and_then(|s| s.get(&step))
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(Value::Object(attrs)) = action.get("set") {
            for (name, value) in attrs {
                cx.set(name, value)?;
            }
        }
        if let Some(Value::Array(lines)) = action.get("log") {
            let times = action.get("log_times").and_then(Value::as_u64).unwrap_or(1);
            for _ in 0..times {
                for line in lines.iter().filter_map(Value::as_str) {
                    cx.info(line);
                }
            }
        }
        if let Some(text) = action.get("print").and_then(Value::as_str) {
            println!("{text}");
        }
        let counter = format!("calls_{step}");
        let mut calls = cx.get::<u64>(&counter)?.unwrap_or(0);
        if action.get("count") == Some(&Value::Bool(true)) {
            calls += 1;
            cx.set(&counter, &calls)?;
        }
        if let Some(Value::Array(statements)) = action.get("sql") {
            for s in statements {
                let params: Vec<SqlValue> = s
                    .get("params")
                    .and_then(Value::as_array)
                    .map(|ps| ps.iter().map(param).collect())
                    .unwrap_or_default();
                let tolerate = s.get("tolerate") == Some(&Value::Bool(true));
                if let Some(statement) = s.get("execute").and_then(Value::as_str) {
                    match cx.execute(statement, &params) {
                        Err(_) if tolerate => {}
                        other => {
                            other?;
                        }
                    }
                }
                if let Some(statement) = s.get("query").and_then(Value::as_str) {
                    let rows = cx.query(statement, &params)?;
                    if let Some(name) = s.get("into").and_then(Value::as_str) {
                        cx.set(name, &rows)?;
                    }
                }
            }
        }
        if let Some(Value::Array(jobs)) = action.get("stage") {
            for job in jobs {
                let workflow = job
                    .get("workflow")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let mut staged = Job::new(workflow, job.get("args").unwrap_or(&Value::Null))?;
                if let Some(key) = job.get("key").and_then(Value::as_str) {
                    staged = staged.key(key);
                }
                if let Some(queue) = job.get("queue").and_then(Value::as_str) {
                    staged = staged.queue(queue);
                }
                if let Some(ms) = job.get("delay_ms").and_then(Value::as_u64) {
                    staged = staged.delay(std::time::Duration::from_millis(ms));
                }
                if job.get("await") == Some(&Value::Bool(true)) {
                    staged = staged.awaited();
                }
                cx.enqueue(staged)?;
            }
        }
        if let Some(name) = action.get("children_into").and_then(Value::as_str) {
            let results: Vec<Value> = cx
                .children()
                .into_iter()
                .map(|c| c.result.unwrap_or(Value::Null))
                .collect();
            cx.set(name, &results)?;
        }
        let fail_attempts = action
            .get("fail_attempts")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        if u64::from(cx.attempt()) <= fail_attempts {
            match action.get("fail").and_then(Value::as_str) {
                Some("retryable") => {
                    return Err(StepError::retryable(format!("{step} failed (scripted)")));
                }
                Some(_) => {
                    return Err(StepError::fatal(format!(
                        "{step} failed for good (scripted)"
                    )));
                }
                None => {}
            }
        }
        if let Some(ms) = action.get("sleep_ms").and_then(Value::as_u64) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        if action.get("trap") == Some(&Value::Bool(true)) {
            panic!("{step} trapped (scripted)");
        }
        if action.get("spin") == Some(&Value::Bool(true)) {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        if let Some(mib) = action.get("grow_mib").and_then(Value::as_u64) {
            let mut hog: Vec<Vec<u8>> = Vec::new();
            for _ in 0..mib {
                hog.push(vec![1u8; 1 << 20]);
            }
            std::hint::black_box(&hog);
        }
        if let Some(below) = action.get("repeat_while_below").and_then(Value::as_u64) {
            if calls < below {
                return Ok(Outcome::Repeat);
            }
        }
        if let Some(bytes) = action.get("finish_padding").and_then(Value::as_u64) {
            let padding = "p".repeat(usize::try_from(bytes).unwrap_or(usize::MAX));
            return Ok(Outcome::Finish(Value::String(padding)));
        }
        match action.get("finish") {
            Some(result) => Ok(Outcome::Finish(result.clone())),
            None => Ok(Outcome::Continue),
        }
    }
}

export_step!(Scripted);

//! How results look: text for people, or JSON with `--json`.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use acidic::run::now_ms;
use acidic::{RunDetail, RunRecord, RunReport, RunStatus};

pub fn describe(r: &RunReport, follow: bool) {
    let who = format!("{} run {}", r.workflow, short(&r.key));
    match r.status {
        RunStatus::Succeeded if r.replayed => {
            eprintln!("{who}: already succeeded; stored result (nothing ran)")
        }
        RunStatus::Succeeded => {
            eprintln!("{who}: succeeded ({} steps committed)", r.steps_committed)
        }
        status => {
            if r.replayed {
                eprintln!("{who}: is {status} (nothing ran)");
            } else {
                eprintln!(
                    "{who}: {status} after {} steps committed",
                    r.steps_committed
                );
            }
            if let Some(e) = &r.error {
                eprintln!(
                    "  step `{}` attempt {} failed: {}: {}",
                    e.step, e.attempt, e.kind, e.message
                );
            }
            match (status, r.retry_at) {
                (RunStatus::Pending, Some(at)) => eprintln!(
                    "  it will resume at step `{}` in {}; `acidic retry {}` runs it now",
                    r.recovery_point,
                    in_time(at),
                    r.key
                ),
                (RunStatus::Failed, _) => eprintln!(
                    "  out of attempts or not retryable; `acidic retry {key}` resumes at `{}` on version {} \
                     (fixed a database row or a service: that is enough); after registering a fixed \
                     step or manifest, `acidic retry {key} --upgrade` resumes on the latest version",
                    r.recovery_point,
                    r.workflow_version,
                    key = r.key,
                ),
                (RunStatus::Cancelled, _) => eprintln!(
                    "  cancelled at step `{}`: what the committed steps did stays; no later step runs",
                    r.recovery_point
                ),
                _ => {}
            }
        }
    }
    for s in &r.staged {
        let hint = if r.status == RunStatus::Cancelled {
            " (cancelled with it, unless it had finished)"
        } else if follow {
            ""
        } else {
            " (pending; `--follow` runs staged runs here)"
        };
        eprintln!("  staged {} run {}{hint}", s.workflow, s.key);
    }
}

pub fn print_runs(runs: &[RunRecord]) {
    if runs.is_empty() {
        eprintln!("no runs");
        return;
    }
    // The key last and whole, so it can be copied from the line.
    println!(
        "{:>6}  {:<18} {:<10} {:<16} {:>4}  {:>6}  {:<12} KEY",
        "ID", "WORKFLOW", "STATUS", "AT", "TRY", "PARENT", "UPDATED"
    );
    for r in runs {
        println!(
            "{:>6}  {:<18} {:<10} {:<16} {:>4}  {:>6}  {:<12} {}",
            r.id,
            format!("{} v{}", r.workflow, r.workflow_version),
            if stalled(r) {
                "stalled"
            } else {
                r.status.as_str()
            },
            r.recovery_point,
            r.attempts,
            r.parent_run_id
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            ago(r.updated_at),
            r.key,
        );
    }
}

pub fn print_detail(d: &RunDetail) {
    let r = &d.run;
    println!("run {}  {} v{}", r.id, r.workflow, r.workflow_version);
    println!("key         {}", r.key);
    let status = match (r.status, r.status == RunStatus::Pending) {
        (_, true) if r.available_at > now_ms() => {
            format!("pending (runnable in {})", in_time(r.available_at))
        }
        _ if stalled(r) => format!(
            "stalled: running, but the lease of {} expired {} (its worker is gone; a worker or `acidic retry` takes it over)",
            r.locked_by.as_deref().unwrap_or("?"),
            ago(r.locked_until.unwrap_or(0))
        ),
        (s, _) => s.to_string(),
    };
    println!("status      {status}");
    println!("at step     {}", r.recovery_point);
    println!(
        "attempts    {} step calls; {} failed on the current step",
        r.attempts, r.step_attempt
    );
    match (&r.locked_by, r.locked_until) {
        (Some(owner), Some(until)) if until > now_ms() => {
            println!("lease       {owner}, {} left", in_time(until))
        }
        _ => println!("lease       none"),
    }
    println!("args        {}", r.args);
    println!("attributes  {}", Value::Object(r.attributes.clone()));
    if let Some(result) = &r.result {
        println!("result      {result}");
    }
    if let Some(e) = &r.last_error {
        println!(
            "last error  step `{}` attempt {}: {}: {}",
            e.step, e.attempt, e.kind, e.message
        );
    }
    if let Some(p) = r.parent_run_id {
        println!("parent      run {p}");
    }
    if let Some(by) = &r.cancelled_by {
        println!("cancelled   by {by}");
    }
    if let Some(by) = r
        .cancel_requested_by
        .as_ref()
        .filter(|_| !r.status.is_final())
    {
        println!("cancel      requested by {by}: the run is cancelled when its current step ends");
    }
    println!(
        "created     {}, updated {}",
        ago(r.created_at),
        ago(r.updated_at)
    );
    if !d.timeline.is_empty() {
        println!("timeline");
        for e in &d.timeline {
            let detail = match (&e.error_kind, &e.message) {
                (Some(k), Some(m)) => format!("{k}: {m}"),
                _ => String::new(),
            };
            println!(
                "  {:<16} #{:<3} {:<13} {:>6} ms  {}",
                e.step,
                e.attempt,
                e.outcome,
                e.finished_at - e.started_at,
                first_line(&detail)
            );
            for line in &e.logs {
                println!("      {:<6} {}", line.level, line.message);
            }
        }
    }
    if !d.children.is_empty() {
        println!("staged runs");
        for c in &d.children {
            println!("  {:<16} {:<10} {}", c.workflow, c.status.as_str(), c.key);
        }
    }
}

/// Prints `value` as JSON with `--json`, else as `text` renders it: every
/// command answers through this, so `--json` means the same everywhere.
/// `acidic workflows list`: a line per workflow.
pub fn print_workflows(listed: &[Value]) {
    if listed.is_empty() {
        println!("no workflows registered (`acidic register <manifest.toml>` registers one)");
        return;
    }
    println!(
        "{:<24} {:>6} {:>8}  {:<16} steps",
        "workflow", "latest", "versions", "registered"
    );
    for w in listed {
        let steps: Vec<&str> = w["steps"]
            .as_array()
            .map(|s| s.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "{:<24} {:>6} {:>8}  {:<16} {}",
            w["name"].as_str().unwrap_or("?"),
            w["latest"],
            w["versions"].as_array().map_or(0, Vec::len),
            ago(w["registered_at"].as_i64().unwrap_or(0)),
            steps.join(" → ")
        );
    }
}

/// `acidic workflows show`: one version in full.
pub fn print_workflow(
    w: &acidic::workflow::Workflow,
    latest: u32,
    registered: i64,
    versions: &[acidic::store::WorkflowVersion],
) {
    let d = &w.definition;
    println!("workflow    {}", d.name);
    let which = if w.version == latest {
        "the latest: new runs get it".to_string()
    } else {
        format!("not the latest: new runs get version {latest}")
    };
    println!("version     {} ({which})", w.version);
    let listed: Vec<String> = versions.iter().map(|v| v.version.to_string()).collect();
    println!("versions    {}", listed.join(", "));
    if let Some(label) = &d.label {
        println!("label       {label}");
    }
    if let Some(description) = &d.description {
        println!("description {description}");
    }
    println!("registered  {}", ago(registered));
    println!("hash        {}", w.hash);
    if !d.attributes.is_empty() {
        println!("attributes  {}", Value::Object(d.attributes.clone()));
    }
    for (i, s) in d.steps.iter().enumerate() {
        let p = &s.policy;
        println!("step {} `{}`", i + 1, s.name);
        println!("  component  sha256:{} (from {})", s.component, s.file);
        println!(
            "  policy     max_attempts {}, backoff {}..{}, timeout {}, memory {} MiB{}",
            p.max_attempts,
            humantime::format_duration(p.backoff),
            humantime::format_duration(p.max_backoff),
            humantime::format_duration(p.timeout),
            p.memory >> 20,
            p.fuel.map(|f| format!(", fuel {f}")).unwrap_or_default()
        );
        match &s.sql {
            Some(g) => println!(
                "  sql        {} on {}{}",
                serde_json::to_value(g.mode)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| format!("{:?}", g.mode)),
                if g.tables.is_empty() {
                    "every table".to_string()
                } else {
                    g.tables.join(", ")
                },
                if g.ddl { ", with DDL" } else { "" }
            ),
            None => println!("  sql        none"),
        }
        if s.allowed_outbound_hosts.is_empty() {
            println!("  outbound   none");
        } else {
            println!("  outbound   {}", s.allowed_outbound_hosts.join(", "));
        }
        if !s.env.is_empty() {
            let names: Vec<&str> = s.env.keys().map(String::as_str).collect();
            println!("  env        {}", names.join(", "));
        }
        if let Some(a) = &s.awaits {
            println!(
                "  awaits     {}",
                serde_json::to_string(a).unwrap_or_default()
            );
        }
    }
}

pub fn emit<T: Serialize>(json: bool, value: &T, text: impl FnOnce(&T)) -> anyhow::Result<()> {
    if json {
        print_json(value)
    } else {
        text(value);
        Ok(())
    }
}

pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn short(key: &str) -> String {
    if key.chars().count() > 18 {
        format!("{}…", key.chars().take(17).collect::<String>())
    } else {
        key.to_string()
    }
}

pub fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

pub fn ago(ms: i64) -> String {
    let d = (now_ms() - ms).max(0);
    format!(
        "{} ago",
        humantime::format_duration(Duration::from_secs((d / 1000) as u64))
    )
}

pub fn in_time(ms: i64) -> String {
    let d = (ms - now_ms()).max(0);
    humantime::format_duration(Duration::from_millis(d as u64)).to_string()
}

/// A run recorded as running whose lease has expired: nobody is working it.
fn stalled(r: &acidic::RunRecord) -> bool {
    r.status == RunStatus::Running && r.locked_until.is_none_or(|until| until < now_ms())
}

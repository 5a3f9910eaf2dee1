//! What each subcommand does, over the host library.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::Value;

use acidic::{
    Cancellation, Error, Host, HostConfig, RunFilter, RunReport, RunRequest, RunStatus,
    WorkerOptions,
};

use super::args::{BenchArgs, Cli, Command, RunsCommand, ServeArgs, Target, WorkflowsCommand};
use super::render::{
    describe, emit, print_detail, print_json, print_runs, print_workflow, print_workflows,
};

/// Exit codes scripts can tell apart.
pub mod exit {
    pub const ERROR: u8 = 1;
    /// A step failed; the run is pending and will be retried.
    pub const STEP_FAILED: u8 = 3;
    pub const LOCKED: u8 = 4;
    pub const MISMATCH: u8 = 5;
    pub const WAITING: u8 = 6;
    /// The run failed for good (or was cancelled).
    pub const RUN_FAILED: u8 = 7;
    /// Stopped by SIGINT/SIGTERM after the current step, the run handed back.
    pub const INTERRUPTED: u8 = 130;
}

/// Runs the command `cli` asks for; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let json = cli.json;
    if let Command::Bench { options } = &cli.command {
        return bench(options, &cli.database_url, json).await;
    }
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory;
        let mut command = Cli::command();
        clap_complete::generate(shell, &mut command, "acidic", &mut std::io::stdout());
        return Ok(0);
    }
    if let Command::New {
        language,
        dir,
        name,
        acidic_home,
    } = &cli.command
    {
        return super::new::scaffold(
            *language,
            dir,
            name.as_deref(),
            acidic_home.as_deref(),
            json,
        );
    }
    let mut config = HostConfig::new(&cli.database_url);
    config.cache_dir = cli.cache_dir.clone();
    // Commands about existing runs never create a database: a wrong path
    // says so instead of showing an empty one.
    config.create = !matches!(
        cli.command,
        Command::Runs { .. }
            | Command::Workflows { .. }
            | Command::Retry { .. }
            | Command::Cancel { .. }
            | Command::Reap { .. }
    );
    if let Command::Worker { options, .. } | Command::Complete { options } = &cli.command {
        config.lease = options.lease;
        config.max_connections = Some(options.options().connections());
    }
    if let Command::Serve { options } = &cli.command {
        config.lease = options.lease;
        // Runs driven for requests and by the workers, plus the API's reads.
        let workers = options.worker_options().map_or(0, |w| w.connections());
        let requests = u32::try_from(options.max_in_flight).unwrap_or(u32::MAX);
        config.max_connections = Some(workers.saturating_add(requests).saturating_add(8));
    }
    let host = match Host::open(config).await {
        Ok(host) => host,
        // These name the database already: said once.
        Err(
            e @ (acidic::Error::Connect { .. }
            | acidic::Error::NoDatabase(_)
            | acidic::Error::DatabaseUrl(_)
            | acidic::Error::DatabaseUrlParameter { .. }),
        ) => {
            return Err(e.into());
        }
        Err(e) => {
            let url = acidic::store::redacted_url(&cli.database_url);
            return Err(anyhow::Error::new(e).context(format!("opening {url}")));
        }
    };
    match cli.command {
        Command::Register { manifests } => register(&host, &manifests, json).await,
        Command::Run { target, follow } => {
            let request = request(&host, &target).await?;
            let (report, interrupted) = interruptible(&host, host.run(request)).await?;
            if interrupted {
                return stopped(&report, json);
            }
            finish(&host, report, follow, json).await
        }
        Command::Retry {
            key,
            workflow,
            later: true,
            upgrade,
            ..
        } => {
            let (key, workflow) = resolve(&host, &key, workflow).await?;
            let run = host.requeue_on(&key, workflow.as_deref(), upgrade).await?;
            emit(json, &run, |run| {
                eprintln!(
                    "{} run {}: {} at step `{}`",
                    run.workflow, run.key, run.status, run.recovery_point
                )
            })?;
            Ok(0)
        }
        Command::Retry {
            key,
            workflow,
            follow,
            upgrade,
            ..
        } => {
            let (key, workflow) = resolve(&host, &key, workflow).await?;
            let (report, interrupted) =
                interruptible(&host, host.retry_on(&key, workflow.as_deref(), upgrade)).await?;
            if interrupted {
                return stopped(&report, json);
            }
            finish(&host, report, follow, json).await
        }
        Command::Enqueue {
            target,
            delay,
            queue,
        } => enqueue(&host, &target, delay.unwrap_or_default(), &queue, json).await,
        Command::Runs { command } => runs(&host, command, json).await,
        Command::Workflows { command } => workflows(&host, command, json).await,
        Command::Worker {
            options,
            exit_when_idle,
        } => {
            let mut options = options.options();
            options.exit_when_idle = exit_when_idle;
            work(host, options, json).await
        }
        Command::Complete { options } => work(host, options.options().completer(), json).await,
        Command::Reap { older_than } => {
            let n = host.reap(older_than).await?;
            emit(json, &serde_json::json!({ "reaped": n }), |_| {
                println!(
                    "reaped {n} finished runs older than {}",
                    humantime::format_duration(older_than)
                )
            })?;
            Ok(0)
        }
        Command::Cancel { key, workflow, by } => {
            let (key, workflow) = resolve(&host, &key, workflow).await?;
            let outcome = host.cancel(&key, workflow.as_deref(), &by).await?;
            let shown = match &outcome {
                Cancellation::Cancelled(n) => {
                    serde_json::json!({ "cancelled": n, "requested": false })
                }
                Cancellation::Requested { locked_by, step } => serde_json::json!({
                    "cancelled": 0, "requested": true, "locked_by": locked_by, "step": step,
                }),
            };
            emit(json, &shown, |_| println!("{outcome}"))?;
            Ok(0)
        }
        Command::Serve { options } => serve(host, &options).await,
        Command::Bench { options } => bench(&options, &cli.database_url, json).await,
        Command::Completions { .. } | Command::New { .. } => Ok(0),
    }
}

async fn register(host: &Host, manifests: &[PathBuf], json: bool) -> anyhow::Result<u8> {
    let paths: Vec<&Path> = manifests.iter().map(PathBuf::as_path).collect();
    let registered = host.register_all(&paths).await?;
    for (r, path) in registered.iter().zip(manifests) {
        emit(json, r, |r| {
            let what = if r.new { "registered" } else { "unchanged" };
            println!(
                "{what}: {} v{} ({} steps) from {}",
                r.workflow,
                r.version,
                r.steps,
                path.display()
            );
        })?;
    }
    Ok(0)
}

async fn enqueue(
    host: &Host,
    target: &Target,
    delay: Duration,
    queue: &str,
    json: bool,
) -> anyhow::Result<u8> {
    let request = request(host, target).await?;
    let e = host.enqueue(request, delay, queue).await?;
    emit(json, &e, |e| {
        println!("{}", e.key);
        if !e.new {
            eprintln!(
                "(a run with this key and these args already exists: run {})",
                e.run_id
            );
        }
    })?;
    Ok(0)
}

async fn workflows(host: &Host, command: WorkflowsCommand, json: bool) -> anyhow::Result<u8> {
    match command {
        WorkflowsCommand::List => {
            let versions = host.workflow_versions(None).await?;
            let mut listed = Vec::new();
            for chunk in versions.chunk_by(|a, b| a.name == b.name) {
                let Some(latest) = chunk.last() else { continue };
                let workflow = host.workflow_version(&latest.name, latest.version).await?;
                listed.push(serde_json::json!({
                    "name": latest.name,
                    "latest": latest.version,
                    "versions": chunk.iter().map(|v| v.version).collect::<Vec<_>>(),
                    "steps": workflow.definition.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
                    "label": workflow.definition.label,
                    "registered_at": latest.created_at,
                }));
            }
            emit(json, &listed, |listed| print_workflows(listed))?;
            Ok(0)
        }
        WorkflowsCommand::Show { name, version } => {
            let (workflow, versions) = host.workflow_info(&name, version).await?;
            let latest = versions.last().map_or(workflow.version, |v| v.version);
            let registered = versions
                .iter()
                .find(|v| v.version == workflow.version)
                .map_or(0, |v| v.created_at);
            let shown = serde_json::json!({
                "name": name,
                "version": workflow.version,
                "latest": latest,
                "new_runs_get": latest,
                "definition_hash": workflow.hash,
                "registered_at": registered,
                "versions": versions,
                "definition": workflow.definition.shown(),
            });
            emit(json, &shown, |_| {
                print_workflow(&workflow, latest, registered, &versions)
            })?;
            Ok(0)
        }
        WorkflowsCommand::Prune { grace } => {
            let pruned = host.prune_workflows(grace).await?;
            emit(json, &pruned, |p| {
                for (name, version) in &p.versions {
                    println!("deleted {name} version {version}");
                }
                for digest in &p.components {
                    println!("deleted component {}", &digest[..digest.len().min(16)]);
                }
                println!(
                    "pruned {} version(s) no run uses and {} component(s) no version names",
                    p.versions.len(),
                    p.components.len()
                );
            })?;
            Ok(0)
        }
    }
}

async fn runs(host: &Host, command: RunsCommand, json: bool) -> anyhow::Result<u8> {
    match command {
        RunsCommand::List {
            status,
            workflow,
            limit,
        } => {
            let status = status
                .map(|s| s.parse::<RunStatus>())
                .transpose()
                .map_err(|e| {
                    anyhow::anyhow!(
                        "--status: {e} (pending, running, waiting, succeeded, failed, cancelled)"
                    )
                })?;
            let filter = RunFilter {
                status,
                workflow,
                limit,
                ..RunFilter::default()
            };
            let runs = host.runs(&filter).await?;
            emit(json, &runs, |runs| print_runs(runs))?;
            Ok(0)
        }
        RunsCommand::Show {
            key,
            workflow,
            wait: true,
            timeout,
        } => {
            let (key, workflow) = resolve(host, &key, workflow).await?;
            let report = host.wait(&key, workflow.as_deref(), timeout).await?;
            if json {
                print_json(&report)?;
            } else if let Some(result) = &report.result {
                println!("{}", serde_json::to_string_pretty(result)?);
            } else {
                describe(&report, false);
            }
            Ok(match report.status {
                RunStatus::Succeeded => 0,
                RunStatus::Failed | RunStatus::Cancelled => exit::RUN_FAILED,
                _ => exit::STEP_FAILED,
            })
        }
        RunsCommand::Unlock { key, workflow } => {
            let (key, workflow) = resolve(host, &key, workflow).await?;
            let run = host.unlock(&key, workflow.as_deref()).await?;
            emit(json, &run, |run| {
                println!(
                    "unlocked {} run {}: pending at step `{}`, runnable now (`acidic retry {}` runs it here)",
                    run.workflow, run.key, run.recovery_point, run.key
                )
            })?;
            Ok(0)
        }
        RunsCommand::Show { key, workflow, .. } => {
            let (key, workflow) = resolve(host, &key, workflow).await?;
            let detail = host.show(&key, workflow.as_deref()).await?;
            emit(json, &detail, print_detail)?;
            Ok(0)
        }
    }
}

/// The run `given` names, as `runs list` shows it: its key, its id, or
/// the unique start of its key. Returns its key and workflow.
async fn resolve(
    host: &Host,
    given: &str,
    workflow: Option<String>,
) -> anyhow::Result<(String, Option<String>)> {
    match host.find(given, workflow.as_deref()).await {
        Err(Error::RunNotFound(_)) => {}
        _ => return Ok((given.to_string(), workflow)),
    }
    // A key as `runs list` cut it short, copied with its ellipsis.
    let given = given.trim_end_matches('…');
    if let Ok(id) = given.parse::<i64>()
        && let Some(run) = host.store().run(id).await?
        && workflow.as_deref().is_none_or(|w| w == run.workflow)
    {
        return Ok((run.key, Some(run.workflow)));
    }
    let filter = RunFilter {
        workflow: workflow.clone(),
        key_prefix: Some(given.to_string()),
        limit: 6,
        ..RunFilter::default()
    };
    let mut runs = host.runs(&filter).await?;
    match runs.len() {
        0 => Err(Error::RunNotFound(given.to_string()).into()),
        1 => {
            let run = runs.remove(0);
            Ok((run.key, Some(run.workflow)))
        }
        n => {
            let shown: Vec<String> = runs
                .iter()
                .take(5)
                .map(|r| format!("{} ({}, id {})", r.key, r.workflow, r.id))
                .collect();
            bail!(
                "`{given}` starts the keys of {}{} runs: {}; give more of the key, or the id",
                if n > 5 { "more than " } else { "" },
                n.min(5),
                shown.join(", ")
            )
        }
    }
}

/// Parses the args, then resolves the target (registering a manifest path
/// first): args that are refused register nothing.
async fn request(host: &Host, target: &Target) -> anyhow::Result<RunRequest> {
    let text = match target.args.strip_prefix('@') {
        Some(file) => {
            std::fs::read_to_string(file).with_context(|| format!("reading args from {file}"))?
        }
        None => target.args.clone(),
    };
    let args: Value = serde_json::from_str(&text).map_err(|e| Error::Json {
        what: "--args".into(),
        message: e.to_string(),
    })?;
    if !args.is_object() {
        bail!(
            "--args must be a JSON object, like '{{\"user\": \"ada\"}}' (got {})",
            match args {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => "an object",
            }
        );
    }
    let workflow = if target.workflow.ends_with(".toml") || Path::new(&target.workflow).is_file() {
        let r = host.register(Path::new(&target.workflow)).await?;
        if r.new {
            eprintln!("registered {} v{}", r.workflow, r.version);
        }
        r.workflow
    } else {
        target.workflow.clone()
    };
    Ok(RunRequest {
        workflow,
        args,
        key: target.key.clone(),
        caller: None,
    })
}

#[derive(Serialize)]
struct Finished<'a> {
    #[serde(flatten)]
    report: &'a RunReport,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    followed: Vec<RunReport>,
}

async fn finish(host: &Host, report: RunReport, follow: bool, json: bool) -> anyhow::Result<u8> {
    let followed = if follow {
        host.run_staged(&report).await?
    } else {
        Vec::new()
    };
    // With --follow, a run that waited for its children may have been resumed
    // and finished: its last report is the one that counts.
    let last = followed
        .iter()
        .rev()
        .find(|r| r.run_id == report.run_id)
        .unwrap_or(&report);
    let code = match last.status {
        RunStatus::Succeeded => 0,
        RunStatus::Waiting => exit::WAITING,
        RunStatus::Failed | RunStatus::Cancelled => exit::RUN_FAILED,
        RunStatus::Pending | RunStatus::Running => exit::STEP_FAILED,
    };
    if json {
        print_json(&Finished {
            report: &report,
            followed,
        })?;
        return Ok(code);
    }
    describe(&report, follow);
    for child in &followed {
        describe(child, follow);
    }
    if let Some(result) = &last.result {
        println!("{}", serde_json::to_string_pretty(result)?);
    }
    Ok(code)
}

async fn bench(options: &BenchArgs, database_url: &str, json: bool) -> anyhow::Result<u8> {
    if options.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if options.workload.is_some() {
        let ride = acidic::bench::RideOptions {
            workflows: options.workflows,
            concurrency: options.concurrency.clone(),
            rounds: options.rounds,
            synchronous: options.synchronous.clone(),
            root: PathBuf::from("."),
        };
        let report = acidic::bench::ride(Some(database_url), &ride).await?;
        emit(json, &report, |r| print!("{r}"))?;
        return Ok(0);
    }
    if options.languages {
        let report = acidic::bench::languages(Path::new("."), options.runs, true).await?;
        emit(json, &report, |r| print!("{r}"))?;
        return Ok(0);
    }
    if options.http {
        let report =
            acidic::bench::http(&options.manifest, options.runs, Some(database_url), &[1, 8])
                .await?;
        emit(json, &report, |r| print!("{r}"))?;
        return Ok(0);
    }
    let report = acidic::bench::run(&options.manifest, options.runs, Some(database_url)).await?;
    emit(json, &report, |r| print!("{r}"))?;
    Ok(0)
}

async fn serve(host: Host, options: &ServeArgs) -> anyhow::Result<u8> {
    use acidic::serve::{ServeConfig, Tokens};
    let tokens = match (&options.tokens, &options.tokens_env) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --tokens {}", path.display()))?;
            Some(Tokens::parse(&text, &path.display().to_string())?)
        }
        (None, Some(text)) if !text.trim().is_empty() => {
            Some(Tokens::parse(text, "ACIDIC_TOKENS")?)
        }
        _ => None,
    };
    // The signal handlers go in before the server says it listens, so a
    // SIGTERM right after that drains instead of killing the process.
    let shutdown = shutdown_signal();
    let listener = acidic::serve::bind(&options.listen, tokens.as_ref()).await?;
    let addr = listener.local_addr()?;
    let config = ServeConfig {
        tokens,
        default_wait: options.wait.min(options.max_wait),
        max_wait: options.max_wait,
        max_body: options.max_body,
        workers: options.worker_options(),
        retention: options.retention,
        request_timeout: options
            .request_timeout
            .unwrap_or(options.max_wait + acidic::serve::REQUEST_MARGIN),
        max_in_flight: options.max_in_flight,
    };
    let host = Arc::new(host);
    // Scripts wait for this line (with --listen 127.0.0.1:0, it names the port).
    println!("acidic serve: listening on http://{addr}");
    eprintln!(
        "serving {} as {}: {}, {}",
        host.store().backend(),
        host.worker_name(),
        match config.workers.as_ref() {
            Some(w) => format!("{} embedded workers", w.concurrency),
            None => "API only (no workers)".to_string(),
        },
        match config.tokens.as_ref() {
            Some(t) => format!("{} callers by bearer token", t.len()),
            None => "no tokens (loopback only)".to_string(),
        }
    );
    acidic::serve::serve(host, listener, config, shutdown).await?;
    eprintln!("acidic serve: stopped");
    Ok(0)
}

async fn work(host: Host, options: WorkerOptions, json: bool) -> anyhow::Result<u8> {
    let host = Arc::new(host);
    eprintln!(
        "worker {} claiming from {} with concurrency {}",
        host.worker_name(),
        if options.queues.is_empty() {
            "all queues".to_string()
        } else {
            options.queues.join(", ")
        },
        options.concurrency
    );
    let summary = host.work(options, shutdown_signal()).await?;
    emit(json, &summary, |summary| {
        eprintln!(
            "worker stopped: {} claimed, {} succeeded, {} waiting for children, {} stopped on a failed step, \
             {} handed back, {} host errors, {} reaped",
            summary.claimed,
            summary.succeeded,
            summary.waiting,
            summary.stopped_on_failure,
            summary.released,
            summary.errors,
            summary.reaped
        )
    })?;
    Ok(0)
}

/// Drives a run in the foreground so that SIGINT or SIGTERM (Ctrl-C)
/// stops it after its current step, its lease handed back, instead of
/// killing the process while it holds the lease; a second signal exits at
/// once. Returns the report and whether a signal came.
async fn interruptible(
    host: &Host,
    drive: impl std::future::Future<Output = acidic::Result<RunReport>>,
) -> anyhow::Result<(RunReport, bool)> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::pin!(drive);
    let mut interrupted = false;
    loop {
        tokio::select! {
            report = &mut drive => return Ok((report?, interrupted)),
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if interrupted {
            eprintln!("interrupted again: exiting now; the run's lease expires on its own");
            std::process::exit(i32::from(exit::INTERRUPTED));
        }
        interrupted = true;
        host.stop();
        eprintln!("stopping after the current step (press Ctrl-C again to quit at once)");
    }
}

/// What an interrupted foreground run says: where it stands and how to go on.
fn stopped(report: &RunReport, json: bool) -> anyhow::Result<u8> {
    if json {
        print_json(report)?;
    }
    if report.status.is_final() {
        // It finished (or failed) before it could be stopped.
        if !json {
            describe(report, false);
        }
        return Ok(match report.status {
            RunStatus::Succeeded => 0,
            _ => exit::RUN_FAILED,
        });
    }
    eprintln!(
        "interrupted: run {} is {} at step `{}`; resume it with `acidic retry {}` (or a worker will)",
        report.key, report.status, report.recovery_point, report.key
    );
    Ok(exit::INTERRUPTED)
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed now, before
/// the first claim, so a signal never kills a worker mid-step.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    async move {
        let recv = |s: &mut Option<tokio::signal::unix::Signal>| {
            let s = s.take();
            async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
        };
        tokio::select! {
            _ = recv(&mut term) => {}
            _ = recv(&mut int) => {}
        }
        eprintln!("stopping: finishing current steps, then handing runs back");
    }
}

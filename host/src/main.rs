//! `acidic`: the command line over the host library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use serde_json::Value;

use acidic::run::now_ms;
use acidic::{
    Error, Host, HostConfig, RunDetail, RunFilter, RunRecord, RunReport, RunRequest, RunStatus,
    WorkerOptions,
};

/// Idempotent, ACID, multi-step operations whose steps are WebAssembly components.
#[derive(Parser)]
#[command(name = "acidic", version, about)]
struct Cli {
    /// Database: a SQLite file path or sqlite:// URL, or postgres://user@host/db[?schema=NAME].
    #[arg(long, global = true, env = "DATABASE_URL", default_value = "acidic.db")]
    database_url: String,

    /// Where compiled components are cached (default: ~/.cache/acidic).
    #[arg(long, global = true, env = "ACIDIC_CACHE_DIR")]
    cache_dir: Option<PathBuf>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate manifests and their components and store them as workflow versions.
    Register {
        /// Manifest files (TOML).
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
    },
    /// Run a workflow now and print its result; a finished key prints the stored result.
    Run {
        #[command(flatten)]
        target: Target,
        /// Also run the runs its steps staged, to their end.
        #[arg(long)]
        follow: bool,
    },
    /// Create a pending run without running it; prints its key.
    Enqueue {
        #[command(flatten)]
        target: Target,
        /// Wait this long before the run may start ("30s", "5m").
        #[arg(long, value_parser = humantime::parse_duration)]
        delay: Option<Duration>,
        /// Queue name.
        #[arg(long, default_value = "default")]
        queue: String,
    },
    /// Inspect runs.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Run a failed or pending run again now, from the step where it stopped.
    Retry {
        /// The run's idempotency key.
        key: String,
        /// The workflow, if the key is used by several.
        #[arg(long)]
        workflow: Option<String>,
        /// Also run the runs its steps staged.
        #[arg(long)]
        follow: bool,
        /// Only put it back in the queue, runnable now, for a worker.
        #[arg(long, conflicts_with = "follow")]
        later: bool,
    },
    /// Claim and run runnable runs until stopped (SIGINT/SIGTERM finish the current steps, then exit).
    Worker {
        #[command(flatten)]
        options: WorkerArgs,
        /// Exit once nothing is runnable and nothing is in flight.
        #[arg(long)]
        exit_when_idle: bool,
    },
    /// One completer pass: run the runs their callers gave up on (due or stalled for longer than --grace), then exit.
    Complete {
        #[command(flatten)]
        options: WorkerArgs,
    },
    /// Delete finished runs older than --older-than (never an unfinished one).
    Reap {
        /// Age of finished runs to delete ("72h", "30d").
        #[arg(long, value_parser = humantime::parse_duration, default_value = "72h")]
        older_than: Duration,
    },
    /// Cancel a pending or waiting run and its unfinished staged runs.
    Cancel {
        /// The run's idempotency key.
        key: String,
        /// The workflow, if the key is used by several.
        #[arg(long)]
        workflow: Option<String>,
        /// Who is cancelling (recorded on the run).
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
    /// Measure runs/s and per-step host overhead against bare database transactions.
    Bench {
        #[command(flatten)]
        options: BenchArgs,
    },
}

#[derive(Args)]
struct Target {
    /// A registered workflow name, or a manifest file to register first.
    workflow: String,
    /// Arguments as JSON, or @file.json.
    #[arg(long, default_value = "{}")]
    args: String,
    /// Idempotency key (default: SHA-256 of the workflow and args).
    #[arg(long)]
    key: Option<String>,
}

#[derive(Args)]
struct WorkerArgs {
    /// Runs driven at once (default: number of cores).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Only claim runs on these queues (repeatable; default: all).
    #[arg(long = "queue")]
    queues: Vec<String>,
    /// Sleep this long when nothing is runnable.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "200ms")]
    poll: Duration,
    /// Leave expired leases (and, for `complete`, due runs) alone this long before taking them over.
    #[arg(long, value_parser = humantime::parse_duration)]
    grace: Option<Duration>,
    /// Lease length for claimed runs (raised to the longest step deadline plus 5s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "90s")]
    lease: Duration,
    /// Delete finished runs older than this ("0s" keeps them all).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "72h")]
    retention: Duration,
}

impl WorkerArgs {
    fn options(&self) -> WorkerOptions {
        let mut o = WorkerOptions::default();
        if let Some(n) = self.concurrency {
            o.concurrency = n;
        }
        o.queues = self.queues.clone();
        o.poll = self.poll;
        o.grace = self.grace.unwrap_or_default();
        o.retention = (!self.retention.is_zero()).then_some(self.retention);
        o
    }
}

#[derive(Subcommand)]
enum RunsCommand {
    /// List runs, newest first.
    List {
        /// Only runs in this status.
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one run: status, recovery point, attributes, attempts, last error, step timeline.
    Show {
        /// The run's idempotency key.
        key: String,
        /// The workflow, if the key is used by several.
        #[arg(long)]
        workflow: Option<String>,
        /// Block until the run is finished, then print its result.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this long (exit 3).
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
    },
}

#[derive(Args)]
struct BenchArgs {
    /// Runs to time (each of three no-op steps).
    #[arg(long, default_value_t = 300)]
    runs: u32,
    /// The 3-step workflow to run.
    #[arg(long, default_value = "guest-examples/rust/scripted/workflow.toml")]
    manifest: PathBuf,
    /// Instead: per guest language (Rust, JS, Python, Go, C), component size,
    /// compile and cached-load time, fresh instance + call, and steps/s of its
    /// ride example on SQLite, with Rust as the baseline. Run from the
    /// repository root after `make guests`.
    #[arg(long)]
    languages: bool,
}

/// Exit codes scripts can tell apart.
mod exit {
    pub const ERROR: u8 = 1;
    pub const STEP_FAILED: u8 = 3;
    pub const LOCKED: u8 = 4;
    pub const MISMATCH: u8 = 5;
    pub const WAITING: u8 = 6;
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ACIDIC_LOG").unwrap_or_else(|_| {
        // Postgres warns "there is no transaction in progress" when the
        // driver rolls back a transaction a failed COMMIT already ended.
        tracing_subscriber::EnvFilter::new("warn,acidic::guest=info,sqlx::postgres::notice=error")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();

    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = match e.downcast_ref::<Error>() {
                Some(Error::Locked { .. }) => exit::LOCKED,
                Some(Error::ArgsMismatch { .. }) => exit::MISMATCH,
                _ => exit::ERROR,
            };
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    if let Command::Bench { options } = &cli.command {
        return bench(options, &cli.database_url, cli.json).await;
    }
    let mut config = HostConfig::new(&cli.database_url);
    config.cache_dir = cli.cache_dir.clone();
    if let Command::Worker { options, .. } | Command::Complete { options } = &cli.command {
        config.lease = options.lease;
        // One connection per run in flight, one to claim, one to listen.
        config.max_connections = Some(options.options().concurrency as u32 + 2);
    }
    let host = Host::open(config)
        .await
        .with_context(|| format!("opening {}", cli.database_url))?;
    let json = cli.json;
    match cli.command {
        Command::Register { manifests } => {
            for path in manifests {
                let r = host.register(&path).await?;
                if json {
                    print_json(&r)?;
                } else {
                    let what = if r.new { "registered" } else { "unchanged" };
                    println!(
                        "{what}: {} v{} ({} steps) from {}",
                        r.workflow,
                        r.version,
                        r.steps,
                        path.display()
                    );
                }
            }
            Ok(0)
        }
        Command::Run { target, follow } => {
            let request = request(&host, &target).await?;
            let report = host.run(request).await?;
            finish(&host, report, follow, json).await
        }
        Command::Retry {
            key,
            workflow,
            later: true,
            ..
        } => {
            let run = host.requeue(&key, workflow.as_deref()).await?;
            if json {
                print_json(&run)?;
            } else {
                eprintln!(
                    "{} run {}: {} at step `{}`",
                    run.workflow, run.key, run.status, run.recovery_point
                );
            }
            Ok(0)
        }
        Command::Retry {
            key,
            workflow,
            follow,
            ..
        } => {
            let report = host.retry(&key, workflow.as_deref()).await?;
            finish(&host, report, follow, json).await
        }
        Command::Enqueue {
            target,
            delay,
            queue,
        } => {
            let request = request(&host, &target).await?;
            let e = host
                .enqueue(request, delay.unwrap_or_default(), &queue)
                .await?;
            if json {
                print_json(&e)?;
            } else {
                println!("{}", e.key);
                if !e.new {
                    eprintln!(
                        "(a run with this key and these args already exists: run {})",
                        e.run_id
                    );
                }
            }
            Ok(0)
        }
        Command::Runs {
            command:
                RunsCommand::List {
                    status,
                    workflow,
                    limit,
                },
        } => {
            let status = status
                .map(|s| s.parse::<RunStatus>())
                .transpose()
                .map_err(|e| {
                    anyhow::anyhow!(
                        "--status: {e} (pending, running, waiting, succeeded, failed, cancelled)"
                    )
                })?;
            let runs = host
                .runs(&RunFilter {
                    status,
                    workflow,
                    parent: None,
                    limit,
                })
                .await?;
            if json {
                print_json(&runs)?;
            } else {
                print_runs(&runs);
            }
            Ok(0)
        }
        Command::Runs {
            command:
                RunsCommand::Show {
                    key,
                    workflow,
                    wait: true,
                    timeout,
                },
        } => {
            let report = host.wait(&key, workflow.as_deref(), timeout).await?;
            if json {
                print_json(&report)?;
            } else if let Some(result) = &report.result {
                println!("{}", serde_json::to_string_pretty(result)?);
            } else {
                describe(&report, false);
            }
            Ok(if report.status == RunStatus::Succeeded {
                0
            } else {
                exit::STEP_FAILED
            })
        }
        Command::Runs {
            command: RunsCommand::Show { key, workflow, .. },
        } => {
            let detail = host.show(&key, workflow.as_deref()).await?;
            if json {
                print_json(&detail)?;
            } else {
                print_detail(&detail);
            }
            Ok(0)
        }
        Command::Worker {
            options,
            exit_when_idle,
        } => {
            let mut options = options.options();
            options.exit_when_idle = exit_when_idle;
            work(host, options, json).await
        }
        Command::Complete { options } => {
            let mut options = options.options();
            options.exit_when_idle = true;
            options.abandoned_only = true;
            options.grace = options.grace.max(Duration::from_secs(1));
            work(host, options, json).await
        }
        Command::Reap { older_than } => {
            let n = host.reap(older_than).await?;
            if json {
                print_json(&serde_json::json!({ "reaped": n }))?;
            } else {
                println!(
                    "reaped {n} finished runs older than {}",
                    humantime::format_duration(older_than)
                );
            }
            Ok(0)
        }
        Command::Cancel { key, workflow, by } => {
            let n = host.cancel(&key, workflow.as_deref(), &by).await?;
            if json {
                print_json(&serde_json::json!({ "cancelled": n }))?;
            } else {
                println!("cancelled {n} run(s)");
            }
            Ok(0)
        }
        Command::Bench { .. } => unreachable!("handled above"),
    }
}

/// Resolves the target (registering a manifest path first) and parses the args.
async fn request(host: &Host, target: &Target) -> anyhow::Result<RunRequest> {
    let workflow = if target.workflow.ends_with(".toml") || Path::new(&target.workflow).is_file() {
        let r = host.register(Path::new(&target.workflow)).await?;
        if r.new {
            eprintln!("registered {} v{}", r.workflow, r.version);
        }
        r.workflow
    } else {
        target.workflow.clone()
    };
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
    Ok(RunRequest {
        workflow,
        args,
        key: target.key.clone(),
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
        _ => exit::STEP_FAILED,
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

fn describe(r: &RunReport, follow: bool) {
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
                    "  out of attempts or not retryable; after fixing the cause, `acidic retry {}` resumes at `{}`",
                    r.key, r.recovery_point
                ),
                _ => {}
            }
        }
    }
    for s in &r.staged {
        let hint = if follow {
            ""
        } else {
            " (pending; `--follow` runs staged runs here)"
        };
        eprintln!("  staged {} run {}{hint}", s.workflow, s.key);
    }
}

fn print_runs(runs: &[RunRecord]) {
    if runs.is_empty() {
        eprintln!("no runs");
        return;
    }
    println!(
        "{:>6}  {:<18} {:<18} {:<10} {:<16} {:>4}  {:>6}  UPDATED",
        "ID", "WORKFLOW", "KEY", "STATUS", "AT", "TRY", "PARENT"
    );
    for r in runs {
        println!(
            "{:>6}  {:<18} {:<18} {:<10} {:<16} {:>4}  {:>6}  {}",
            r.id,
            format!("{} v{}", r.workflow, r.workflow_version),
            short(&r.key),
            r.status.as_str(),
            r.recovery_point,
            r.attempts,
            r.parent_run_id
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            ago(r.updated_at),
        );
    }
}

fn print_detail(d: &RunDetail) {
    let r = &d.run;
    println!("run {}  {} v{}", r.id, r.workflow, r.workflow_version);
    println!("key         {}", r.key);
    let status = match (r.status, r.status == RunStatus::Pending) {
        (_, true) if r.available_at > now_ms() => {
            format!("pending (runnable in {})", in_time(r.available_at))
        }
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
        }
    }
    if !d.children.is_empty() {
        println!("staged runs");
        for c in &d.children {
            println!("  {:<16} {:<10} {}", c.workflow, c.status.as_str(), c.key);
        }
    }
}

async fn bench(options: &BenchArgs, database_url: &str, json: bool) -> anyhow::Result<u8> {
    if options.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if options.languages {
        let report = acidic::bench::languages(Path::new("."), options.runs, true).await?;
        if json {
            print_json(&report)?;
        } else {
            print!("{report}");
        }
        return Ok(0);
    }
    let report = acidic::bench::run(&options.manifest, options.runs, Some(database_url)).await?;
    if json {
        print_json(&report)?;
    } else {
        print!("{report}");
    }
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
    if json {
        print_json(&summary)?;
    } else {
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
        );
    }
    Ok(0)
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

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn short(key: &str) -> String {
    if key.chars().count() > 18 {
        format!("{}…", key.chars().take(17).collect::<String>())
    } else {
        key.to_string()
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn ago(ms: i64) -> String {
    let d = (now_ms() - ms).max(0);
    format!(
        "{} ago",
        humantime::format_duration(Duration::from_secs((d / 1000) as u64))
    )
}

fn in_time(ms: i64) -> String {
    let d = (ms - now_ms()).max(0);
    humantime::format_duration(Duration::from_millis(d as u64)).to_string()
}

//! The command line's flags and subcommands (clap), apart from what they do.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use acidic::WorkerOptions;

/// Idempotent, ACID, multi-step operations whose steps are WebAssembly components.
#[derive(Parser)]
#[command(name = "acidic", version, about)]
pub struct Cli {
    /// Database: a SQLite file path or sqlite:// URL, or postgres://user@host/db[?schema=NAME].
    #[arg(long, global = true, env = "DATABASE_URL", default_value = "acidic.db")]
    pub database_url: String,

    /// Where compiled components are cached (default: ~/.cache/acidic).
    #[arg(long, global = true, env = "ACIDIC_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Registered workflows: list them, show a version, prune unused versions.
    Workflows {
        #[command(subcommand)]
        command: WorkflowsCommand,
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
        /// Move it to the latest registered version of its workflow first
        /// (a fixed component for a run that failed on the broken one); that
        /// version must have the step the run stands at.
        #[arg(long)]
        upgrade: bool,
    },
    /// Claim and run runnable runs until stopped (SIGINT/SIGTERM finish the current steps, then exit).
    Worker {
        #[command(flatten)]
        options: WorkerArgs,
        /// Exit once nothing is runnable, nothing is in flight and no run waits out a failed attempt's backoff (a run enqueued with --delay does not keep it).
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
    /// Cancel a run and its unfinished staged runs (a run inside a step: when that step ends).
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
    /// Serve the HTTP API (and work runs): POST runs with an Idempotency-Key, inspect, retry, cancel; /metrics.
    Serve {
        #[command(flatten)]
        options: ServeArgs,
    },
    /// Make a new project for a workflow whose steps are in LANGUAGE: the step, a manifest, a Makefile that builds it.
    New {
        /// The steps' language.
        language: Language,
        /// The project's folder (created; an existing one must be empty).
        dir: PathBuf,
        /// The workflow's name (default: the folder's name).
        #[arg(long)]
        name: Option<String>,
        /// The acidic checkout whose SDKs and toolchains build the step (default: the one this acidic was built from).
        #[arg(long, env = "ACIDIC_HOME")]
        acidic_home: Option<PathBuf>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Measure runs/s and per-step host overhead against bare database transactions.
    Bench {
        #[command(flatten)]
        options: BenchArgs,
    },
}

/// A workload of `acidic bench --workload`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// 3 steps, each INSERTing one row through its `sql` grant.
    Ride,
}

/// A language steps are written in, for `acidic new`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    #[value(alias = "javascript")]
    Js,
    #[value(alias = "py")]
    Python,
    Go,
    C,
}

#[derive(Args)]
pub struct Target {
    /// A registered workflow name, or a manifest file to register first.
    pub workflow: String,
    /// Arguments as JSON, or @file.json.
    #[arg(long, default_value = "{}")]
    pub args: String,
    /// Idempotency key (default: SHA-256 of the workflow and args).
    #[arg(long)]
    pub key: Option<String>,
}

#[derive(Args)]
pub struct WorkerArgs {
    /// Runs driven at once (default: number of cores).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Only claim runs on these queues (repeatable; default: all).
    #[arg(long = "queue")]
    pub queues: Vec<String>,
    /// Sleep this long when nothing is runnable.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "200ms")]
    pub poll: Duration,
    /// Leave expired leases (and, for `complete`, due runs) alone this long before taking them over.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub grace: Option<Duration>,
    /// Lease length for claimed runs (raised to the longest step deadline plus 5s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "90s")]
    pub lease: Duration,
    /// Delete finished runs older than this ("0s" keeps them all).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "72h")]
    pub retention: Duration,
}

impl Command {
    /// Whether log lines are to be JSON objects.
    pub fn logs_json(&self) -> bool {
        matches!(self, Command::Serve { options } if options.log_format == LogFormat::Json)
    }

    /// Whether the command runs until it is stopped (workers, completers).
    pub fn runs_long(&self) -> bool {
        matches!(
            self,
            Command::Worker { .. } | Command::Complete { .. } | Command::Serve { .. }
        )
    }
}

impl ServeArgs {
    /// The embedded workers' options, `None` for an API-only process.
    pub fn worker_options(&self) -> Option<WorkerOptions> {
        if self.workers == Some(0) {
            return None;
        }
        let mut o = WorkerOptions::default();
        if let Some(n) = self.workers {
            o.concurrency = n;
        }
        o.queues = self.queues.clone();
        o.retention = (!self.retention.is_zero()).then_some(self.retention);
        Some(o)
    }
}

impl WorkerArgs {
    /// The worker options these flags ask for.
    pub fn options(&self) -> WorkerOptions {
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
pub enum WorkflowsCommand {
    /// Every registered workflow: its latest version (the one new runs get), versions, steps.
    List,
    /// One version of a workflow (the latest by default): steps, component digests, policies, grants.
    Show {
        /// The workflow.
        name: String,
        /// This version instead of the latest.
        #[arg(long)]
        version: Option<u32>,
    },
    /// Delete the versions no run uses (never a workflow's latest), then the components and compiled cache entries no version names.
    Prune {
        /// Keep what changed this recently (a version superseded, a component stored): a run or a registration may be in flight.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1m")]
        grace: Duration,
    },
}

#[derive(Subcommand)]
pub enum RunsCommand {
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
    /// Break the lease of a running run whose worker died (refused while its holder lives on this machine).
    Unlock {
        /// The run's idempotency key.
        key: String,
        /// The workflow, if the key is used by several.
        #[arg(long)]
        workflow: Option<String>,
    },
    /// Show one run: status, recovery point, attributes, attempts, last error, step timeline.
    Show {
        /// The run's idempotency key, its id (as `runs list` shows it), or the unique start of its key.
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
pub struct ServeArgs {
    /// Address to listen on; beyond loopback only with --tokens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Runs the embedded workers drive at once; 0 serves the API only (default: number of cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// File of `caller:token` lines: every request then needs `Authorization: Bearer <token>`.
    #[arg(long, conflicts_with = "tokens_env")]
    pub tokens: Option<PathBuf>,
    /// The same entries as --tokens, inline (lines or commas).
    #[arg(
        long = "tokens-env",
        env = "ACIDIC_TOKENS",
        hide_env_values = true,
        hide = true
    )]
    pub tokens_env: Option<String>,
    /// How long a POST waits for its run when it sends no `Prefer: wait=N`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub wait: Duration,
    /// The longest wait a request may ask for.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub max_wait: Duration,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_body: usize,
    /// Runs driven for requests at once; beyond, a request waits for a free
    /// one within its wait, then gets 503 (its run handed back, pending).
    #[arg(long, default_value_t = acidic::serve::DEFAULT_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// The longest a request may take, its body included (default: --max-wait plus 30s); then 408.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub request_timeout: Option<Duration>,
    /// Only claim runs on these queues (repeatable; default: all).
    #[arg(long = "queue")]
    pub queues: Vec<String>,
    /// Lease length for claimed runs (raised to the longest step deadline plus 5s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "90s")]
    pub lease: Duration,
    /// How long finished runs, and so their keys' stored answers, are kept ("0s" keeps them all).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "72h")]
    pub retention: Duration,
    /// Log lines as text or as JSON objects.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Runs to time (each of three no-op steps).
    #[arg(long, default_value_t = 300)]
    pub runs: u32,
    /// The 3-step workflow to run.
    #[arg(long, default_value = "guest-examples/rust/scripted/workflow.toml")]
    pub manifest: PathBuf,
    /// Instead: per guest language (Rust, JS, Python, Go, C), component size,
    /// compile and cached-load time, fresh instance + call, and steps/s of its
    /// ride example on SQLite, with Rust as the baseline. Run from the
    /// repository root after `make guests`.
    #[arg(long, conflicts_with = "http")]
    pub languages: bool,
    /// Instead: a workload against the ceiling the database allows. `ride`:
    /// --workflows workflows of 3 steps, each INSERTing a row through its
    /// `sql` grant, from --concurrency callers, against the same writes as
    /// bare transactions (one commit per step), in alternating rounds; on
    /// SQLite once per --synchronous setting. Run from the repository root
    /// after `make guests`.
    #[arg(long, value_enum, conflicts_with_all = ["languages", "http"])]
    pub workload: Option<Workload>,
    /// Workflows per side, round and concurrency (--workload).
    #[arg(long, default_value_t = 2000)]
    pub workflows: u32,
    /// Callers at once, each a measurement (--workload).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub concurrency: Vec<usize>,
    /// Rounds per measurement; medians are reported (--workload).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// SQLite's synchronous settings to measure (--workload).
    #[arg(long, value_delimiter = ',', default_value = "full,normal")]
    pub synchronous: Vec<String>,
    /// Instead: requests/s and p50/p99 of `POST /v1/workflows/{w}/runs` on
    /// an in-process `acidic serve`, at concurrency 1 and 8, against the
    /// same workflow through the embedded library in the same run.
    #[arg(long)]
    pub http: bool,
}

//! `acidic bench`: the cost of running steps through the host, against a
//! baseline taken in the same process: bare sqlx transactions doing the same
//! writes (create the run, then per step update it and append a timeline row).

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::host::{Host, HostConfig, RunRequest};
use crate::run::RunStatus;
use crate::runtime::{CallOutcome, StepInput, StepState};
use crate::store::Store;

/// Figures from one bench run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Runs timed per side.
    pub runs: u32,
    /// Steps per run.
    pub steps_per_run: u32,
    /// Seconds for the bare-sqlx baseline.
    pub baseline_secs: f64,
    /// Seconds for acidic.
    pub acidic_secs: f64,
    /// Mean seconds of one fresh instance + call of a no-op step, without the database.
    pub instantiate_call_secs: f64,
    /// acidic time / baseline time.
    pub ratio: f64,
    /// Whether the pooling allocator was in use.
    pub pooling: bool,
    /// The database both sides ran on.
    pub database: String,
}

impl BenchReport {
    fn steps(&self) -> f64 {
        f64::from(self.runs * self.steps_per_run)
    }

    /// Mean host overhead per step over the baseline, in seconds.
    pub fn overhead_per_step_secs(&self) -> f64 {
        (self.acidic_secs - self.baseline_secs) / self.steps()
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps = self.steps();
        let runs = f64::from(self.runs);
        writeln!(
            f,
            "acidic bench: {} runs x {} no-op steps, {}, {} allocator",
            self.runs,
            self.steps_per_run,
            self.database,
            if self.pooling { "pooling" } else { "on-demand" }
        )?;
        writeln!(
            f,
            "{:<22} {:>9} {:>9} {:>9} {:>10}",
            "", "total s", "runs/s", "steps/s", "ms/step"
        )?;
        for (name, secs) in [
            ("bare sqlx (baseline)", self.baseline_secs),
            ("acidic", self.acidic_secs),
        ] {
            writeln!(
                f,
                "{:<22} {:>9.3} {:>9.1} {:>9.1} {:>10.3}",
                name,
                secs,
                runs / secs,
                steps / secs,
                secs * 1000.0 / steps
            )?;
        }
        writeln!(f, "ratio acidic/baseline: {:.2}x", self.ratio)?;
        writeln!(
            f,
            "host overhead per step over the baseline: {:.3} ms (of which fresh instance + call: {:.3} ms)",
            self.overhead_per_step_secs() * 1000.0,
            self.instantiate_call_secs * 1000.0
        )
    }
}

/// Runs `runs` runs of the 3-step workflow in `manifest` through a fresh
/// host, and the same writes as bare transactions. With a Postgres
/// `database_url` both sides run there, each in a schema of its own that is
/// dropped afterwards; otherwise each gets a new SQLite file in a temporary
/// folder.
pub async fn run(manifest: &Path, runs: u32, database_url: Option<&str>) -> Result<BenchReport> {
    let tag = format!("acidic_bench_{}_{}", std::process::id(), fastrand::u32(..));
    let dir = std::env::temp_dir().join(&tag);
    std::fs::create_dir_all(&dir).map_err(|source| Error::Cache {
        path: dir.clone(),
        source,
    })?;
    let postgres = database_url.filter(|u| u.starts_with("postgres"));
    let (host_url, baseline_url) = match postgres {
        Some(url) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            (
                format!("{url}{sep}schema={tag}_host"),
                format!("{url}{sep}schema={tag}_base"),
            )
        }
        None => (
            dir.join("acidic.db").display().to_string(),
            dir.join("baseline.db").display().to_string(),
        ),
    };
    let result = measure(&dir, &host_url, &baseline_url, manifest, runs).await;
    if postgres.is_some() {
        for url in [&host_url, &baseline_url] {
            if let Ok(crate::store::Store::Postgres(s)) = Store::open(url).await
                && let Err(e) = s.drop_schema().await
            {
                tracing::warn!("could not drop the bench schema: {e}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(
    dir: &Path,
    host_url: &str,
    baseline_url: &str,
    manifest: &Path,
    runs: u32,
) -> Result<BenchReport> {
    let mut config = HostConfig::new(host_url);
    config.cache_dir = Some(dir.join("cache"));
    let host = Host::open(config).await?;
    let database = match host.store.backend() {
        "postgres" => "Postgres (SERIALIZABLE)".to_string(),
        _ => "SQLite (WAL, synchronous=FULL)".to_string(),
    };
    let registration = host.register(manifest).await?;
    let workflow = host.latest(&registration.workflow).await?;
    let steps_per_run = workflow.definition.steps.len() as u32;

    // Warm up: prepare the component, fill caches.
    for i in 0..5 {
        host.run(RunRequest::new(
            &registration.workflow,
            json!({ "warmup": i }),
        ))
        .await?;
    }

    let baseline_store = Store::open(baseline_url).await?;
    let steps: Vec<String> = workflow
        .definition
        .steps
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let start = Instant::now();
    for i in 0..runs {
        baseline_store
            .baseline_run(&registration.workflow, &format!("k{i}"), &steps)
            .await?;
    }
    let baseline = start.elapsed();

    let start = Instant::now();
    for i in 0..runs {
        let report = host
            .run(RunRequest::new(&registration.workflow, json!({ "i": i })))
            .await?;
        if report.status != RunStatus::Succeeded {
            return Err(Error::Engine(format!(
                "bench run {i} did not succeed: {:?}",
                report.error
            )));
        }
    }
    let acidic = start.elapsed();

    let instantiate_call =
        instantiate_call(&host, &workflow.definition.steps[0], runs.max(100), false).await?;

    Ok(BenchReport {
        runs,
        steps_per_run,
        baseline_secs: baseline.as_secs_f64(),
        acidic_secs: acidic.as_secs_f64(),
        instantiate_call_secs: instantiate_call.as_secs_f64(),
        ratio: acidic.as_secs_f64() / baseline.as_secs_f64(),
        pooling: host.runtime.pooling,
        database,
    })
}

/// The mean of `calls` fresh instances + calls of `step`. Unless
/// `answer_only` is set the call must return `ok`; with it, any answer (not a
/// trap) counts: the language bench calls a step name no component serves,
/// which each answers with an error at once.
async fn instantiate_call(
    host: &Host,
    step: &crate::workflow::StepDef,
    calls: u32,
    answer_only: bool,
) -> Result<Duration> {
    let prepared = host.registry().prepare(&step.component).await?;
    let input = StepInput {
        run_id: 1,
        idempotency_key: "bench".into(),
        workflow: "bench".into(),
        workflow_version: 1,
        step: if answer_only {
            "bench-no-such-step".into()
        } else {
            step.name.clone()
        },
        attempt: 1,
        args: "{}".into(),
        step_key: "bench".into(),
    };
    let start = Instant::now();
    for _ in 0..calls {
        let state = StepState::new(host.store.clone(), 0, "bench", step, Default::default());
        let (_, outcome) = host
            .runtime
            .call(&prepared, state, &input, &step.policy)
            .await;
        match outcome {
            CallOutcome::Returned(Ok(_)) => {}
            CallOutcome::Returned(Err(_)) if answer_only => {}
            _ => return Err(Error::Engine("the bench step did not return ok".into())),
        }
    }
    Ok(start.elapsed() / calls)
}

/// One language's figures in `acidic bench --languages`.
#[derive(Debug, Clone, Serialize)]
pub struct LanguageRow {
    /// rust, js, python, go or c.
    pub language: String,
    /// The workflow timed: the language's ride example (C: polyglot-notify).
    pub workflow: String,
    /// Size of the component file.
    pub component_bytes: u64,
    /// Seconds to compile it (what `register` pays once).
    pub compile_secs: f64,
    /// Mean seconds to load its compiled form from the cache (what a process start pays).
    pub cached_load_secs: f64,
    /// Mean seconds of a fresh instance + a call answered at once.
    pub instantiate_call_secs: f64,
    /// Steps per second running the workflow on SQLite, one run after another.
    pub steps_per_sec: f64,
    /// Steps per run.
    pub steps_per_run: u32,
}

/// `acidic bench --languages`: one row per guest language.
#[derive(Debug, Clone, Serialize)]
pub struct LanguagesReport {
    /// Runs timed per language.
    pub runs: u32,
    /// Whether the pooling allocator was in use.
    pub pooling: bool,
    /// The rows, Rust first (the baseline of the ratios).
    pub rows: Vec<LanguageRow>,
}

impl fmt::Display for LanguagesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "acidic bench --languages: {} runs each on SQLite (WAL, synchronous=FULL), {} allocator; ratios against Rust",
            self.runs,
            if self.pooling { "pooling" } else { "on-demand" }
        )?;
        writeln!(
            f,
            "{:<8} {:<18} {:>10} {:>10} {:>12} {:>15} {:>9} {:>11} {:>11}",
            "language",
            "workflow",
            "component",
            "compile",
            "cached load",
            "instance+call",
            "steps/s",
            "inst ratio",
            "steps ratio"
        )?;
        let base = self.rows.first();
        for r in &self.rows {
            let (inst, steps) = base.map_or((1.0, 1.0), |b| {
                (
                    r.instantiate_call_secs / b.instantiate_call_secs,
                    r.steps_per_sec / b.steps_per_sec,
                )
            });
            writeln!(
                f,
                "{:<8} {:<18} {:>10} {:>8.0}ms {:>10.2}ms {:>13.3}ms {:>9.0} {:>10.1}x {:>10.2}x",
                r.language,
                r.workflow,
                human_bytes(r.component_bytes),
                r.compile_secs * 1e3,
                r.cached_load_secs * 1e3,
                r.instantiate_call_secs * 1e3,
                r.steps_per_sec,
                inst,
                steps
            )?;
        }
        Ok(())
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / f64::from(1 << 20)),
        n => format!("{} KB", n.div_ceil(1024)),
    }
}

/// What each language's row runs: (language, manifest, args).
const LANGUAGES: [(&str, &str, &str); 5] = [
    (
        "rust",
        "guest-examples/rust/ride-create/workflow.toml",
        RIDE_ARGS,
    ),
    (
        "js",
        "guest-examples/js/ride-create/workflow.toml",
        RIDE_ARGS,
    ),
    (
        "python",
        "guest-examples/python/ride-create/workflow.toml",
        RIDE_ARGS,
    ),
    (
        "go",
        "guest-examples/go/ride-create/workflow.toml",
        RIDE_ARGS,
    ),
    (
        "c",
        "guest-examples/polyglot/notify.toml",
        r#"{"top_word":"the","distinct":5}"#,
    ),
];
const RIDE_ARGS: &str =
    r#"{"user":"ada@example.com","origin":[0,0],"target":[0.3,0.4],"card":"tok_visa"}"#;
const RECEIPT: &str = "guest-examples/rust/send-receipt/workflow.toml";
const RIDE_SCHEMA: &str = "guest-examples/rust/ride-create/schema.sql";

/// Times every language's example, from the repository at `root` (its guests
/// built by `make guests`), each on a SQLite file of its own.
pub async fn languages(root: &Path, runs: u32, pooling: bool) -> Result<LanguagesReport> {
    let root = &std::path::absolute(root).map_err(|source| Error::Cache {
        path: root.to_path_buf(),
        source,
    })?;
    let tag = format!("acidic_bench_{}_{}", std::process::id(), fastrand::u32(..));
    let dir = std::env::temp_dir().join(&tag);
    let mut rows = Vec::new();
    let mut used_pooling = false;
    let result = async {
        for (language, manifest, args) in LANGUAGES {
            let lang_dir = dir.join(language);
            std::fs::create_dir_all(&lang_dir).map_err(|source| Error::Cache {
                path: lang_dir.clone(),
                source,
            })?;
            let (row, pooled) =
                language_row(root, &lang_dir, language, manifest, args, runs, pooling).await?;
            used_pooling = pooled;
            rows.push(row);
        }
        Ok::<(), Error>(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    Ok(LanguagesReport {
        runs,
        pooling: used_pooling,
        rows,
    })
}

/// Copies the manifest at `root/rel` into `dir` with absolute component
/// paths and without outbound HTTP (so every ride charges locally and the
/// languages do the same work).
fn local_manifest(root: &Path, rel: &str, dir: &Path) -> Result<std::path::PathBuf> {
    let path = root.join(rel);
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Cache {
        path: path.clone(),
        source,
    })?;
    let base = path.parent().unwrap_or(root);
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("env =") || t.starts_with("allowed_outbound_hosts =") {
            continue;
        }
        match t
            .strip_prefix("component = \"")
            .and_then(|r| r.split_once('"'))
        {
            Some((component, _)) => {
                let abs = base.join(component);
                if !abs.is_file() {
                    return Err(Error::Engine(format!(
                        "{} is not built: run `make guests` first",
                        abs.display()
                    )));
                }
                out.push_str(&format!("component = {:?}\n", abs.display().to_string()));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    let file = dir.join(rel.replace('/', "_"));
    std::fs::write(&file, out).map_err(|source| Error::Cache {
        path: file.clone(),
        source,
    })?;
    Ok(file)
}

async fn language_row(
    root: &Path,
    dir: &Path,
    language: &str,
    manifest: &str,
    args: &str,
    runs: u32,
    pooling: bool,
) -> Result<(LanguageRow, bool)> {
    let db = dir.join("acidic.db").display().to_string();
    let mut config = HostConfig::new(&db);
    config.cache_dir = Some(dir.join("cache"));
    config.pooling = pooling;
    let host = Host::open(config).await?;
    ride_tables(root, &db).await?;
    let receipt = local_manifest(root, RECEIPT, dir)?;
    host.register(&receipt).await?;
    let registration = host.register(&local_manifest(root, manifest, dir)?).await?;
    let workflow = host.latest(&registration.workflow).await?;
    let first = &workflow.definition.steps[0];

    let component = std::fs::read(&first.file).map_err(|source| Error::Cache {
        path: first.file.clone().into(),
        source,
    })?;
    let (compile, load) = host.runtime.time_compile_and_load(&component, dir)?;

    let args: serde_json::Value =
        serde_json::from_str(args).map_err(|e| Error::Engine(format!("bench args: {e}")))?;
    let run_one = |key: String| {
        let (host, workflow, args) = (&host, &registration.workflow, args.clone());
        async move {
            let report = host
                .run(RunRequest::new(workflow, args).with_key(key))
                .await?;
            if report.status != RunStatus::Succeeded {
                return Err(Error::Engine(format!(
                    "{language}: a bench run did not succeed: {:?}",
                    report.error
                )));
            }
            Ok(())
        }
    };
    for i in 0..3 {
        run_one(format!("warmup-{i}")).await?;
    }
    let start = Instant::now();
    for i in 0..runs {
        run_one(format!("bench-{i}")).await?;
    }
    let elapsed = start.elapsed();
    let steps_per_run = workflow.definition.steps.len() as u32;
    let instantiate = instantiate_call(&host, first, 200, true).await?;
    Ok((
        LanguageRow {
            language: language.to_string(),
            workflow: registration.workflow.clone(),
            component_bytes: component.len() as u64,
            compile_secs: compile.as_secs_f64(),
            cached_load_secs: load.as_secs_f64(),
            instantiate_call_secs: instantiate.as_secs_f64(),
            steps_per_sec: f64::from(runs * steps_per_run) / elapsed.as_secs_f64(),
            steps_per_run,
        },
        host.runtime.pooling,
    ))
}

/// The ride example's tables (its `schema.sql`) in the SQLite file `db`.
async fn ride_tables(root: &Path, db: &str) -> Result<()> {
    use sqlx::Connection;
    let path = root.join(RIDE_SCHEMA);
    let schema = std::fs::read_to_string(&path).map_err(|source| Error::Cache { path, source })?;
    let sql: String = schema
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| Error::Engine(format!("open {db}: {e}")))?;
    for statement in sql.split(';').filter(|s| !s.trim().is_empty()) {
        sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
            .execute(&mut conn)
            .await
            .map_err(|e| Error::Engine(format!("ride tables: {e}")))?;
    }
    Ok(())
}

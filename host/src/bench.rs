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
        instantiate_call(&host, &workflow.definition.steps[0], runs.max(100)).await?;

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

async fn instantiate_call(
    host: &Host,
    step: &crate::workflow::StepDef,
    calls: u32,
) -> Result<Duration> {
    let prepared = host.prepare(&step.component).await?;
    let input = StepInput {
        run_id: 1,
        idempotency_key: "bench".into(),
        workflow: "bench".into(),
        workflow_version: 1,
        step: step.name.clone(),
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
        if !matches!(outcome, CallOutcome::Returned(Ok(_))) {
            return Err(Error::Engine("the bench step did not return ok".into()));
        }
    }
    Ok(start.elapsed() / calls)
}

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

mod ride;
pub mod statements;
pub use ride::{RideOptions, RideReport, RideRow, ride};

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
    let scratch = Scratch::new(database_url)?;
    let (host_url, baseline_url) = (scratch.url("host"), scratch.url("baseline"));
    let result = measure(&scratch.dir, &host_url, &baseline_url, manifest, runs).await;
    scratch.remove(&[&host_url, &baseline_url]).await;
    result
}

/// The database a bench ran on, with the settings that decide its speed.
fn described(store: &Store) -> String {
    match store {
        Store::Postgres(_) => "Postgres (SERIALIZABLE)".to_string(),
        Store::Sqlite(s) => format!("SQLite (WAL, synchronous={})", s.synchronous()),
    }
}

/// Where one bench run keeps its databases and caches: a temporary folder,
/// with a SQLite file per name there, or a Postgres schema per name in the
/// database of `database_url`; removed afterwards.
struct Scratch {
    tag: String,
    dir: std::path::PathBuf,
    postgres: Option<String>,
}

impl Scratch {
    fn new(database_url: Option<&str>) -> Result<Scratch> {
        let tag = format!("acidic_bench_{}_{}", std::process::id(), fastrand::u32(..));
        let dir = std::env::temp_dir().join(&tag);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Cache {
            path: dir.clone(),
            source,
        })?;
        let postgres = database_url
            .filter(|u| u.starts_with("postgres"))
            .map(str::to_string);
        Ok(Scratch { tag, dir, postgres })
    }

    /// The Postgres schema of the database called `name`.
    fn schema(&self, name: &str) -> String {
        format!("{}_{name}", self.tag)
    }

    /// The URL of the database called `name`.
    fn url(&self, name: &str) -> String {
        match &self.postgres {
            Some(url) => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}schema={}", self.schema(name))
            }
            None => self.dir.join(format!("{name}.db")).display().to_string(),
        }
    }

    /// Drops the Postgres schemas of `urls` and deletes the folder.
    async fn remove(self, urls: &[&str]) {
        if self.postgres.is_some() {
            for url in urls {
                if let Ok(Store::Postgres(s)) = Store::open(url).await
                    && let Err(e) = s.drop_schema().await
                {
                    tracing::warn!("could not drop the bench schema: {e}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
    let database = described(&host.store);
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

/// One side of `acidic bench --http` at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct HttpRow {
    /// `embedded` (the library's `Host::run`) or `http` (`POST /v1/workflows/{w}/runs`).
    pub via: &'static str,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests made.
    pub requests: u32,
    /// Requests per second.
    pub per_sec: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}

/// `acidic bench --http`: the HTTP API against the embedded library, in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct HttpReport {
    /// The database both sides ran on.
    pub database: String,
    /// Steps per run.
    pub steps_per_run: u32,
    /// Embedded and HTTP rows, per concurrency.
    pub rows: Vec<HttpRow>,
}

impl fmt::Display for HttpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "acidic bench --http: {}-step runs, new key per request, {}",
            self.steps_per_run, self.database
        )?;
        writeln!(
            f,
            "{:<10} {:>11} {:>9} {:>9} {:>9} {:>9}",
            "via", "concurrency", "requests", "req/s", "p50 ms", "p99 ms"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<10} {:>11} {:>9} {:>9.1} {:>9.2} {:>9.2}",
                r.via, r.concurrency, r.requests, r.per_sec, r.p50_ms, r.p99_ms
            )?;
        }
        for c in self.concurrencies() {
            let side = |via| {
                self.rows
                    .iter()
                    .find(|r| r.via == via && r.concurrency == c)
            };
            if let (Some(e), Some(h)) = (side("embedded"), side("http")) {
                writeln!(
                    f,
                    "concurrency {c}: http/embedded throughput {:.2}x, p50 +{:.2} ms",
                    h.per_sec / e.per_sec,
                    h.p50_ms - e.p50_ms
                )?;
            }
        }
        Ok(())
    }
}

impl HttpReport {
    fn concurrencies(&self) -> Vec<usize> {
        let mut c: Vec<usize> = self.rows.iter().map(|r| r.concurrency).collect();
        c.dedup();
        c
    }
}

/// The `q` quantile (0.5, 0.99) of `sorted` latencies, in ms; 0 for none.
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Latencies to a row.
fn row(
    via: &'static str,
    concurrency: usize,
    mut latencies: Vec<Duration>,
    wall: Duration,
) -> HttpRow {
    latencies.sort();
    HttpRow {
        via,
        concurrency,
        requests: latencies.len() as u32,
        per_sec: latencies.len() as f64 / wall.as_secs_f64(),
        p50_ms: quantile_ms(&latencies, 0.5),
        p99_ms: quantile_ms(&latencies, 0.99),
    }
}

/// `POST`s `count` runs of `workflow` over one kept-alive connection to
/// `addr`, keys `{tag}-{i}`; the latency of each.
async fn post_runs(
    addr: std::net::SocketAddr,
    workflow: &str,
    tag: &str,
    count: u32,
) -> Result<Vec<Duration>> {
    use http_body_util::BodyExt;
    let fail = |e: &dyn std::fmt::Display| Error::Serve(format!("bench client: {e}"));
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| fail(&e))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| fail(&e))?;
    let driver = tokio::spawn(connection);
    let mut latencies = Vec::with_capacity(count as usize);
    for i in 0..count {
        let body = json!({ "i": i, "tag": tag }).to_string();
        let request = http::Request::post(format!("/v1/workflows/{workflow}/runs"))
            .header("host", addr.to_string())
            .header("idempotency-key", format!("{tag}-{i}"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(axum::body::Bytes::from(body)))
            .map_err(|e| fail(&e))?;
        let start = Instant::now();
        // The connection takes the next request once it is done with the last.
        sender.ready().await.map_err(|e| fail(&e))?;
        let response = sender.send_request(request).await.map_err(|e| fail(&e))?;
        let status = response.status();
        response.into_body().collect().await.map_err(|e| fail(&e))?;
        latencies.push(start.elapsed());
        if status != http::StatusCode::CREATED {
            return Err(fail(&format!("run {tag}-{i} answered {status}")));
        }
    }
    driver.abort();
    Ok(latencies)
}

/// Runs `runs` runs of the 3-step workflow in `manifest` through the
/// embedded library and through `acidic serve`'s `POST` on the same host and
/// database, at each concurrency in `concurrencies`.
pub async fn http(
    manifest: &Path,
    runs: u32,
    database_url: Option<&str>,
    concurrencies: &[usize],
) -> Result<HttpReport> {
    let scratch = Scratch::new(database_url)?;
    let url = scratch.url("http");
    let result = measure_http(&scratch.dir, &url, manifest, runs, concurrencies).await;
    scratch.remove(&[&url]).await;
    result
}

async fn measure_http(
    dir: &Path,
    url: &str,
    manifest: &Path,
    runs: u32,
    concurrencies: &[usize],
) -> Result<HttpReport> {
    use std::sync::Arc;
    let mut config = HostConfig::new(url);
    config.cache_dir = Some(dir.join("cache"));
    config.max_connections = Some(32);
    let host = Arc::new(Host::open(config).await?);
    let database = described(&host.store);
    let registration = host.register(manifest).await?;
    let workflow = registration.workflow.clone();
    let steps_per_run = registration.steps as u32;

    let listener = crate::serve::bind("127.0.0.1:0", None).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Serve(format!("bench: {e}")))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = crate::serve::ServeConfig {
        workers: None,
        ..crate::serve::ServeConfig::default()
    };
    let server = tokio::spawn(crate::serve::serve(
        Arc::clone(&host),
        listener,
        config,
        async move {
            let _ = stopped.await;
        },
    ));

    // Warm up both paths: the component prepared, connections open.
    for i in 0..5 {
        host.run(RunRequest::new(&workflow, json!({ "warmup": i })))
            .await?;
    }
    post_runs(addr, &workflow, "warmup-http", 5).await?;

    let mut rows = Vec::new();
    for &concurrency in concurrencies {
        let concurrency = concurrency.max(1);
        // Two rounds per side, alternating (embedded, http, http, embedded),
        // so neither side gains from running second on a warmer database.
        let each = (runs / concurrency as u32 / 2).max(1);
        let (mut embedded, mut over_http) = (Measured::default(), Measured::default());
        for round in 0..4 {
            let via_http = round == 1 || round == 2;
            let start = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for t in 0..concurrency {
                let (host, workflow) = (Arc::clone(&host), workflow.clone());
                let tag = format!("r{round}-c{concurrency}-t{t}");
                tasks.spawn(async move {
                    if via_http {
                        return post_runs(addr, &workflow, &tag, each).await;
                    }
                    let mut latencies = Vec::with_capacity(each as usize);
                    for i in 0..each {
                        let started = Instant::now();
                        let request = RunRequest::new(&workflow, json!({ "i": i, "tag": tag }))
                            .with_key(format!("{tag}-{i}"));
                        let report = host.run(request).await?;
                        if report.status != RunStatus::Succeeded {
                            return Err(Error::Engine(format!(
                                "bench run did not succeed: {:?}",
                                report.error
                            )));
                        }
                        latencies.push(started.elapsed());
                    }
                    Ok(latencies)
                });
            }
            let latencies = join_latencies(tasks).await?;
            let side = if via_http {
                &mut over_http
            } else {
                &mut embedded
            };
            side.latencies.extend(latencies);
            side.wall += start.elapsed();
        }
        rows.push(row(
            "embedded",
            concurrency,
            embedded.latencies,
            embedded.wall,
        ));
        rows.push(row(
            "http",
            concurrency,
            over_http.latencies,
            over_http.wall,
        ));
    }
    let _ = stop.send(());
    match server.await {
        Ok(r) => r?,
        Err(e) => return Err(Error::Serve(format!("bench server: {e}"))),
    }
    Ok(HttpReport {
        database,
        steps_per_run,
        rows,
    })
}

/// Latencies and wall time of one side's rounds.
#[derive(Default)]
struct Measured {
    latencies: Vec<Duration>,
    wall: Duration,
}

async fn join_latencies(
    mut tasks: tokio::task::JoinSet<Result<Vec<Duration>>>,
) -> Result<Vec<Duration>> {
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let latencies = done.map_err(|e| Error::Engine(format!("bench task: {e}")))??;
        all.extend(latencies);
    }
    Ok(all)
}

//! `acidic bench --workload ride`: acidic against the ceiling the database
//! allows, in the same run. The workload: N workflows of 3 steps, each step
//! INSERTing one row into an application table through its `sql` grant,
//! driven by C concurrent callers of `Host::run` in a closed loop. The bare
//! side makes the same writes without acidic, with the same client library
//! (sqlx): per step BEGIN; INSERT the row; UPSERT a progress row; COMMIT,
//! one durable commit per step. Rounds alternate which side goes first;
//! the figures are medians over rounds.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::{Scratch, described, quantile_ms, statements};
use crate::error::{Error, Result};
use crate::host::{Host, HostConfig, RunRequest};
use crate::run::RunStatus;

/// The workflow's steps.
const STEPS: [&str; 3] = ["a", "b", "c"];
const WORKFLOW: &str = "ride-bench";
/// The statement each step runs, on both databases.
const INSERT: &str = "INSERT INTO bench_rides (key, step) VALUES ($1, $2)";

/// What to run.
#[derive(Debug, Clone)]
pub struct RideOptions {
    /// Workflows per side, per round and concurrency.
    pub workflows: u32,
    /// Callers at once, one measurement each.
    pub concurrency: Vec<usize>,
    /// Rounds per measurement (the medians are reported).
    pub rounds: u32,
    /// SQLite's `synchronous` settings to measure (FULL, NORMAL).
    pub synchronous: Vec<String>,
    /// The repository, for the scripted guest component.
    pub root: PathBuf,
}

/// One side at one concurrency on one database: medians over the rounds.
#[derive(Debug, Clone, Serialize)]
pub struct RideRow {
    /// The database and its settings.
    pub database: String,
    /// Callers at once.
    pub concurrency: usize,
    /// `acidic` or `bare`.
    pub side: &'static str,
    /// Workflows per second.
    pub wf_per_sec: f64,
    /// Median workflow latency, ms.
    pub p50_ms: f64,
    /// 99th percentile workflow latency, ms.
    pub p99_ms: f64,
    /// Transactions committed per workflow (Postgres: from
    /// `pg_stat_database.xact_commit`; not known on SQLite).
    pub commits_per_wf: Option<f64>,
    /// Statements sent to the database per step, as the driver logs them (a
    /// batch sent at once is one), counted over the warm-up's workflows at
    /// C=1. `None` when the counting log layer is not installed (the library).
    pub statements_per_step: Option<f64>,
    /// Times a caller had to drive a run again because a step failed
    /// (conflicts), per workflow.
    pub redrives_per_wf: f64,
    /// Runs that failed for good (out of attempts on conflicts alone), in
    /// all rounds.
    pub failed: u32,
}

/// `acidic bench --workload ride`.
#[derive(Debug, Clone, Serialize)]
pub struct RideReport {
    /// Workflows per side, round and concurrency.
    pub workflows: u32,
    /// Steps per workflow.
    pub steps: u32,
    /// Rounds.
    pub rounds: u32,
    /// Both sides at each concurrency on each database.
    pub rows: Vec<RideRow>,
}

impl std::fmt::Display for RideReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "acidic bench --workload ride: {} workflows x {} steps (one guest INSERT each) per side, \
             {} rounds alternating sides, medians",
            self.workflows, self.steps, self.rounds
        )?;
        writeln!(
            f,
            "{:<36} {:>2} {:>7} {:>9} {:>8} {:>8} {:>10} {:>10} {:>10} {:>6}",
            "database",
            "C",
            "side",
            "wf/s",
            "p50 ms",
            "p99 ms",
            "commits/wf",
            "stmts/step",
            "redrive/wf",
            "failed"
        )?;
        for r in &self.rows {
            let commits = r
                .commits_per_wf
                .map_or_else(|| "-".to_string(), |c| format!("{c:.2}"));
            let statements = r
                .statements_per_step
                .map_or_else(|| "-".to_string(), |s| format!("{s:.2}"));
            writeln!(
                f,
                "{:<36} {:>2} {:>7} {:>9.1} {:>8.2} {:>8.2} {:>10} {:>10} {:>10.3} {:>6}",
                r.database,
                r.concurrency,
                r.side,
                r.wf_per_sec,
                r.p50_ms,
                r.p99_ms,
                commits,
                statements,
                r.redrives_per_wf,
                r.failed
            )?;
        }
        for pair in self.rows.chunks(2) {
            if let [a, b] = pair {
                writeln!(
                    f,
                    "{} at C={}: acidic/bare throughput {:.2}, p99 {:.1}x bare's",
                    a.database,
                    a.concurrency,
                    a.wf_per_sec / b.wf_per_sec,
                    a.p99_ms / b.p99_ms
                )?;
            }
        }
        Ok(())
    }
}

/// Runs the workload on Postgres if `database_url` is a Postgres URL (in
/// schemas of its own, dropped afterwards), else on fresh SQLite files, once
/// per `synchronous` setting.
pub async fn ride(database_url: Option<&str>, options: &RideOptions) -> Result<RideReport> {
    if options.workflows == 0 || options.rounds == 0 || options.concurrency.contains(&0) {
        return Err(Error::Engine(
            "the ride bench needs at least 1 workflow, 1 round and concurrency 1".into(),
        ));
    }
    let component = options
        .root
        .join("guest-examples/rust/target/wasm32-wasip2/release/scripted.wasm");
    let component = component.canonicalize().map_err(|_| {
        Error::Engine(format!(
            "{} is missing: run the bench from the repository root after `make guests`",
            component.display()
        ))
    })?;
    let postgres = database_url.filter(|u| u.starts_with("postgres"));
    let targets: Vec<Option<String>> = match postgres {
        Some(_) => vec![None],
        None => options.synchronous.iter().cloned().map(Some).collect(),
    };
    let mut rows = Vec::new();
    for synchronous in targets {
        let scratch = Scratch::new(postgres)?;
        let result = ride_on(&scratch, synchronous.as_deref(), &component, options).await;
        if let Some(base) = &scratch.postgres {
            let (app, bare) = (scratch.schema("app"), scratch.schema("bare"));
            drop_schemas(base, &[&app, &bare]).await;
        }
        let host = scratch.url("host");
        scratch.remove(&[&host]).await;
        rows.extend(result?);
    }
    Ok(RideReport {
        workflows: options.workflows,
        steps: STEPS.len() as u32,
        rounds: options.rounds,
        rows,
    })
}

/// A Postgres URL without its query (acidic's `schema` and `app_schema`).
fn base_url(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

async fn ride_on(
    scratch: &Scratch,
    synchronous: Option<&str>,
    component: &Path,
    options: &RideOptions,
) -> Result<Vec<RideRow>> {
    let max_c = options.concurrency.iter().copied().max().unwrap_or(1);
    let connections = u32::try_from(max_c).unwrap_or(u32::MAX).saturating_add(4);
    // The application's table exists before the host opens (on Postgres
    // the guest role's grants cover what is there).
    let (host_url, bare_side) = match (&scratch.postgres, synchronous) {
        (Some(pg), _) => {
            let app = scratch.schema("app");
            let bare = scratch.schema("bare");
            let side = BareSide::Postgres {
                url: base_url(pg).to_string(),
                schema: bare.clone(),
            };
            let Bare::Postgres { pool, .. } = side.open(1).await? else {
                return Err(Error::Engine("a Postgres bare side".into()));
            };
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA \"{app}\"; \
                 CREATE TABLE \"{app}\".bench_rides (key TEXT NOT NULL, step TEXT NOT NULL); \
                 CREATE SCHEMA \"{bare}\"; \
                 CREATE TABLE \"{bare}\".bench_rides (key TEXT NOT NULL, step TEXT NOT NULL); \
                 CREATE TABLE \"{bare}\".bench_progress (key TEXT PRIMARY KEY, step TEXT NOT NULL)"
            )))
            .execute(&pool)
            .await?;
            pool.close().await;
            // scratch.url names the engine's schema in a query already.
            let url = format!("{}&app_schema={app}", scratch.url("host"));
            (url, side)
        }
        (None, synchronous) => {
            let synchronous = synchronous.unwrap_or("full").to_ascii_lowercase();
            let level = match synchronous.as_str() {
                "normal" => sqlx::sqlite::SqliteSynchronous::Normal,
                "full" => sqlx::sqlite::SqliteSynchronous::Full,
                other => {
                    return Err(Error::Engine(format!(
                        "--synchronous {other}: the bench measures full and normal"
                    )));
                }
            };
            let app = BareSide::Sqlite {
                file: scratch.dir.join("host.db"),
                level,
            };
            let Bare::Sqlite { pool } = app.open(1).await? else {
                return Err(Error::Engine("a SQLite bare side".into()));
            };
            sqlx::raw_sql("CREATE TABLE bench_rides (key TEXT NOT NULL, step TEXT NOT NULL)")
                .execute(&pool)
                .await?;
            pool.close().await;
            let side = BareSide::Sqlite {
                file: scratch.dir.join("bare.db"),
                level,
            };
            let Bare::Sqlite { pool } = side.open(1).await? else {
                return Err(Error::Engine("a SQLite bare side".into()));
            };
            sqlx::raw_sql(
                "CREATE TABLE bench_rides (key TEXT NOT NULL, step TEXT NOT NULL); \
                 CREATE TABLE bench_progress (key TEXT PRIMARY KEY, step TEXT NOT NULL)",
            )
            .execute(&pool)
            .await?;
            pool.close().await;
            let url = format!(
                "sqlite://{}?synchronous={synchronous}",
                scratch.dir.join("host.db").display()
            );
            (url, side)
        }
    };

    let mut config = HostConfig::new(&host_url);
    config.cache_dir = Some(scratch.dir.join("cache"));
    config.max_connections = Some(connections);
    let host = Arc::new(Host::open(config).await?);
    let database = described(&host.store);
    let manifest = scratch.dir.join("ride.toml");
    let mut text = format!(
        "name = \"{WORKFLOW}\"\n\n[defaults]\nmax_attempts = 10\nbackoff = \"5ms\"\nmax_backoff = \"50ms\"\n"
    );
    for step in STEPS {
        text.push_str(&format!(
            "\n[[step]]\nname = \"{step}\"\ncomponent = \"{}\"\nsql = \"read-write\"\ntables = [\"bench_rides\"]\n",
            component.display()
        ));
    }
    std::fs::write(&manifest, text).map_err(|source| Error::Cache {
        path: manifest.clone(),
        source,
    })?;
    host.register(&manifest).await?;

    // Warm up both sides: the component compiled, the files and caches warm.
    // The statements each side sends are counted here, at C=1 and untimed
    // (counting makes the driver build a log line per statement).
    const WARM: u32 = 20;
    let bare = Arc::new(bare_side.open(connections).await?);
    let (warmed, acidic_sent) = statements::counted(closed_loop(WARM, 1, {
        let host = Arc::clone(&host);
        move |i| acidic_workflow(Arc::clone(&host), format!("warm-{i}"))
    }))
    .await;
    warmed?;
    let (warmed, bare_sent) = statements::counted(closed_loop(WARM, 1, {
        let bare = Arc::clone(&bare);
        move |i| bare_workflow(Arc::clone(&bare), format!("warm-{i}"))
    }))
    .await;
    warmed?;
    let per_step =
        |sent: Option<u64>| sent.map(|n| n as f64 / f64::from(WARM * STEPS.len() as u32));
    let sent = [per_step(acidic_sent), per_step(bare_sent)];

    // Each measurement opens its own host or pool and closes it at the end:
    // a Postgres backend reports its transaction counts when it exits, so
    // `pg_stat_database` then holds every commit the measurement made.
    host.close().await;
    drop(host);
    let bare = Arc::try_unwrap(bare)
        .map_err(|_| Error::Engine("the bench's bare pool is still in use".into()))?;
    bare.close().await;
    let mut rows = Vec::new();
    for &c in &options.concurrency {
        let mut acidic = Vec::new();
        let mut baseline = Vec::new();
        for round in 0..options.rounds {
            for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
                let before = commits(scratch).await?;
                let tag = format!("r{round}-c{c}");
                let measured = if side == 0 {
                    let mut config = HostConfig::new(&host_url);
                    config.cache_dir = Some(scratch.dir.join("cache"));
                    config.max_connections = Some(connections);
                    let host = Arc::new(Host::open(config).await?);
                    let measured = closed_loop(options.workflows, c, {
                        let host = Arc::clone(&host);
                        move |i| acidic_workflow(Arc::clone(&host), format!("{tag}-{i}"))
                    })
                    .await;
                    host.close().await;
                    measured?
                } else {
                    let bare = Arc::new(bare_side.open(connections).await?);
                    let measured = closed_loop(options.workflows, c, {
                        let bare = Arc::clone(&bare);
                        move |i| bare_workflow(Arc::clone(&bare), format!("{tag}-{i}"))
                    })
                    .await;
                    if let Ok(bare) = Arc::try_unwrap(bare) {
                        bare.close().await;
                    }
                    measured?
                };
                let after = commits(scratch).await?;
                let commits = before.zip(after).map(|(b, a)| {
                    // The first read's own transaction is not the workload's.
                    (a - b - 1).max(0) as f64 / f64::from(options.workflows)
                });
                let round = Round::of(measured, commits, sent[side], options.workflows);
                let rounds = if side == 0 {
                    &mut acidic
                } else {
                    &mut baseline
                };
                rounds.push(round);
            }
        }
        rows.push(Round::median(&database, c, "acidic", acidic));
        rows.push(Round::median(&database, c, "bare", baseline));
    }
    Ok(rows)
}

/// What one side did in one round.
struct Round {
    wf_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    commits_per_wf: Option<f64>,
    statements_per_step: Option<f64>,
    redrives_per_wf: f64,
    failed: u32,
}

impl Round {
    fn of(
        measured: Loop,
        commits_per_wf: Option<f64>,
        statements_per_step: Option<f64>,
        workflows: u32,
    ) -> Round {
        let mut latencies = measured.latencies;
        latencies.sort();
        Round {
            wf_per_sec: f64::from(workflows) / measured.wall.as_secs_f64(),
            p50_ms: quantile_ms(&latencies, 0.5),
            p99_ms: quantile_ms(&latencies, 0.99),
            commits_per_wf,
            statements_per_step,
            redrives_per_wf: f64::from(measured.redrives) / f64::from(workflows),
            failed: measured.failed,
        }
    }

    fn median(
        database: &str,
        concurrency: usize,
        side: &'static str,
        rounds: Vec<Round>,
    ) -> RideRow {
        let median = |f: &dyn Fn(&Round) -> f64| {
            let mut v: Vec<f64> = rounds.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        RideRow {
            database: database.to_string(),
            concurrency,
            side,
            wf_per_sec: median(&|r| r.wf_per_sec),
            p50_ms: median(&|r| r.p50_ms),
            p99_ms: median(&|r| r.p99_ms),
            commits_per_wf: rounds
                .iter()
                .all(|r| r.commits_per_wf.is_some())
                .then(|| median(&|r| r.commits_per_wf.unwrap_or(0.0))),
            statements_per_step: rounds
                .iter()
                .all(|r| r.statements_per_step.is_some())
                .then(|| median(&|r| r.statements_per_step.unwrap_or(0.0))),
            redrives_per_wf: median(&|r| r.redrives_per_wf),
            failed: rounds.iter().map(|r| r.failed).sum(),
        }
    }
}

/// Latencies, wall time, re-drives and runs failed for good of one closed loop.
struct Loop {
    latencies: Vec<Duration>,
    wall: Duration,
    redrives: u32,
    failed: u32,
}

/// How one workflow went.
struct Drive {
    redrives: u32,
    /// It failed for good (conflicts alone: the workload's steps cannot
    /// fail otherwise).
    failed: bool,
}

/// Runs `n` workflows with `c` callers, each taking the next as soon as its
/// last one is done.
async fn closed_loop<F, Fut>(n: u32, c: usize, workflow: F) -> Result<Loop>
where
    F: Fn(u32) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Drive>> + Send,
{
    let next = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..c {
        let (next, workflow) = (Arc::clone(&next), workflow.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let (mut redrives, mut failed) = (0, 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, Error>((latencies, redrives, failed));
                }
                let started = Instant::now();
                let drive = workflow(i).await?;
                latencies.push(started.elapsed());
                redrives += drive.redrives;
                failed += u32::from(drive.failed);
            }
        });
    }
    let mut out = Loop {
        latencies: Vec::with_capacity(n as usize),
        wall: Duration::ZERO,
        redrives: 0,
        failed: 0,
    };
    while let Some(done) = tasks.join_next().await {
        let (latencies, redrives, failed) =
            done.map_err(|e| Error::Engine(format!("bench task: {e}")))??;
        out.latencies.extend(latencies);
        out.redrives += redrives;
        out.failed += failed;
    }
    out.wall = start.elapsed();
    Ok(out)
}

/// The workload's args: each step inserts its row.
fn script(key: &str) -> Value {
    let step = |name: &str| json!({ "sql": [{ "execute": INSERT, "params": [key, name] }] });
    json!({ "script": { "a": step("a"), "b": step("b"), "c": step("c") } })
}

/// One workflow through acidic, driven again (as a caller would, with its
/// key) while a step failed and the run waits to be retried. A run that
/// failed for good on conflicts is counted, not an error: the bench reports
/// it.
async fn acidic_workflow(host: Arc<Host>, key: String) -> Result<Drive> {
    let args = script(&key);
    for redrives in 0..200 {
        let report = host
            .run(RunRequest::new(WORKFLOW, args.clone()).with_key(key.clone()))
            .await;
        match report {
            Ok(r) if r.status == RunStatus::Succeeded => {
                return Ok(Drive {
                    redrives,
                    failed: false,
                });
            }
            Ok(r) if r.status == RunStatus::Pending || r.status == RunStatus::Running => {}
            Ok(r)
                if r.status == RunStatus::Failed
                    && r.error.as_ref().is_some_and(|e| e.kind == "conflict") =>
            {
                return Ok(Drive {
                    redrives,
                    failed: true,
                });
            }
            Ok(r) => {
                return Err(Error::Engine(format!(
                    "bench run {key} ended {}: {:?}",
                    r.status, r.error
                )));
            }
            Err(Error::Locked { .. } | Error::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(Error::Engine(format!(
        "bench run {key} did not finish in 200 drives"
    )))
}

/// Where the bare side writes.
enum BareSide {
    Sqlite {
        file: PathBuf,
        level: sqlx::sqlite::SqliteSynchronous,
    },
    Postgres {
        url: String,
        schema: String,
    },
}

impl BareSide {
    /// A pool of `connections` on it, set up as acidic sets up its own.
    async fn open(&self, connections: u32) -> Result<Bare> {
        Ok(match self {
            BareSide::Sqlite { file, level } => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(file)
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(*level)
                    .busy_timeout(Duration::from_secs(30));
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(connections.min(8))
                    .connect_with(options)
                    .await?;
                Bare::Sqlite { pool }
            }
            BareSide::Postgres { url, schema } => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(connections)
                    .connect(url)
                    .await?;
                Bare::Postgres {
                    pool,
                    schema: schema.clone(),
                }
            }
        })
    }
}

/// The bare side's database: the same writes without acidic.
enum Bare {
    Sqlite { pool: sqlx::SqlitePool },
    Postgres { pool: sqlx::PgPool, schema: String },
}

impl Bare {
    async fn close(self) {
        match self {
            Bare::Sqlite { pool } => pool.close().await,
            Bare::Postgres { pool, .. } => pool.close().await,
        }
    }
}

/// One workflow's writes without acidic: per step BEGIN; INSERT the row;
/// UPSERT the progress row; COMMIT.
async fn bare_workflow(bare: Arc<Bare>, key: String) -> Result<Drive> {
    for step in STEPS {
        match &*bare {
            Bare::Sqlite { pool } => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                sqlx::query(INSERT)
                    .bind(&key)
                    .bind(step)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO bench_progress (key, step) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET step = excluded.step",
                )
                .bind(&key)
                .bind(step)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            Bare::Postgres { pool, schema } => {
                let mut tx = pool.begin().await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO \"{schema}\".bench_rides (key, step) VALUES ($1, $2)"
                )))
                .bind(&key)
                .bind(step)
                .execute(&mut *tx)
                .await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO \"{schema}\".bench_progress (key, step) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET step = excluded.step"
                )))
                .bind(&key)
                .bind(step)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
        }
    }
    Ok(Drive {
        redrives: 0,
        failed: false,
    })
}

/// The database's committed transactions so far (Postgres), read on a
/// connection of its own once the measurement's connections are closed
/// (their backends report their counts as they exit).
async fn commits(scratch: &Scratch) -> Result<Option<i64>> {
    use sqlx::Connection;
    let Some(url) = &scratch.postgres else {
        return Ok(None);
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut conn = sqlx::PgConnection::connect(base_url(url)).await?;
    let n: i64 = sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(Some(n))
}

/// Drops the bench's own Postgres schemas.
async fn drop_schemas(url: &str, schemas: &[&str]) {
    let Ok(pool) = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(base_url(url))
        .await
    else {
        return;
    };
    for schema in schemas {
        let dropped = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&pool)
        .await;
        if let Err(e) = dropped {
            tracing::warn!("could not drop the bench schema {schema}: {e}");
        }
    }
    pool.close().await;
}

//! Hostile guests: a loop, a memory hog and a trap end as recorded errors of
//! the right kind, with nothing of the step committed and the host still serving.
//!
//! The second half is the sandbox at the host boundary: no guest input
//! crashes the host, every host call ends at the step's deadline, the host
//! holds no more for a step than its memory budget, what a step produces is
//! capped, host calls cost fuel, and guest SQL cannot reach the engine's
//! schema in any form. Each case checks the error kind recorded, that
//! nothing of the step committed, that the lease was released, and that a
//! well-behaved run beside it succeeds, on both backends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use acidic::{Host, RunFilter, RunReport, RunRequest, RunStatus, WorkerOptions};
use serde_json::{Value, json};

use crate::harness::{Backend, Env, on_each_backend};

#[tokio::test]
async fn a_guest_that_loops_is_stopped_at_its_deadline() {
    let env = Env::new();
    let host = env.host().await;
    let path = env.scripted(
        "loop",
        "max_attempts = 1",
        &[("spin", "timeout = \"200ms\"")],
    );
    host.register(&path).await.expect("register");
    let started = std::time::Instant::now();
    let args = json!({ "script": { "spin": { "set": { "x": 1 }, "spin": true } } });
    let report = host.run(RunRequest::new("loop", args)).await.expect("run");
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(
        report.error.as_ref().map(|e| e.kind.as_str()),
        Some("timeout")
    );
    assert!(
        started.elapsed().as_secs() < 10,
        "stopped near its 200 ms deadline"
    );
    let run = host.find(&report.key, None).await.expect("find");
    assert!(!run.attributes.contains_key("x"));
    let ok = host
        .run(RunRequest::new("loop", json!({})))
        .await
        .expect("next run");
    assert_eq!(ok.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn a_guest_that_eats_memory_hits_its_cap() {
    let env = Env::new();
    let host = env.host().await;
    let path = env.scripted("hog", "max_attempts = 1", &[("eat", "memory = \"16MiB\"")]);
    host.register(&path).await.expect("register");
    let report = host
        .run(RunRequest::new(
            "hog",
            json!({ "script": { "eat": { "grow_mib": 64 } } }),
        ))
        .await
        .expect("run");
    assert_eq!(report.status, RunStatus::Failed);
    let error = report.error.expect("error");
    assert_eq!(error.kind, "memory_limit", "{}", error.message);

    // The same step under its cap succeeds.
    let ok = host
        .run(RunRequest::new(
            "hog",
            json!({ "script": { "eat": { "grow_mib": 4 } } }),
        ))
        .await
        .expect("run");
    assert_eq!(ok.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn a_fatal_guest_error_fails_the_run_at_once() {
    let env = Env::new();
    let host = env.host().await;
    let path = env.scripted("fatal", "max_attempts = 5", &[("a", "")]);
    host.register(&path).await.expect("register");
    let report = host
        .run(RunRequest::new(
            "fatal",
            json!({ "script": { "a": { "fail": "fatal" } } }),
        ))
        .await
        .expect("run");
    assert_eq!(
        report.status,
        RunStatus::Failed,
        "a non-retryable error does not use up the attempts"
    );
    assert_eq!(report.error.map(|e| e.attempt), Some(1));
}

/// Every misbehaviour of the hostile guest (written against the bare WIT)
/// ends as a recorded error of its kind, commits nothing of the step, and
/// leaves the host serving: a well-behaved run alongside each one succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_end_as_recorded_errors_of_their_kind() {
    let env = Env::new();
    let host = env.host().await;
    let good = env.scripted("good", "", &[("only", "")]);
    host.register(&good).await.expect("register good");
    // (step, manifest lines of the step, expected kind, words in the message)
    let cases: &[(&str, &str, &str, &str)] = &[
        ("spin", "timeout = \"300ms\"", "timeout", "deadline"),
        ("grow", "memory = \"16MiB\"", "memory_limit", "memory cap"),
        // Rust keeps big frames on a shadow stack in linear memory: overflowing
        // it is an out-of-bounds trap; deep wasm frames would be "call stack
        // exhausted". Either way, a trap.
        ("recurse", "", "trap", "wasm trap"),
        ("trap", "", "trap", "unreachable"),
        ("huge_result", "", "output_too_large", "max_result"),
        ("huge_attribute", "", "output_too_large", "max_attribute"),
        ("burn", "fuel = 1_000_000", "fuel_exhausted", "fuel"),
    ];
    for (i, (step, extra, kind, words)) in cases.iter().enumerate() {
        let name = format!("hostile-{step}");
        // `mark` commits first, so the hostile step runs on a run with history.
        let path = env.workflow(
            "hostile",
            &name,
            "max_attempts = 3",
            &[("mark", ""), (step, extra)],
        );
        host.register(&path).await.expect("register hostile");
        let (hostile, good) = tokio::join!(
            host.run(RunRequest::new(&name, json!({ "case": i }))),
            host.run(RunRequest::new("good", json!({ "alongside": step }))),
        );
        let report = hostile.expect("the host survives the hostile run");
        assert_eq!(
            good.expect("good run").status,
            RunStatus::Succeeded,
            "{step}: the host kept serving"
        );
        let error = report
            .error
            .clone()
            .unwrap_or_else(|| panic!("{step}: no error recorded"));
        assert_eq!(error.kind, *kind, "{step}: {}", error.message);
        assert!(
            error.message.contains(words),
            "{step}: the message names the cause: {}",
            error.message
        );
        assert_eq!(
            report.recovery_point, *step,
            "{step}: the step did not commit"
        );
        let run = host.find(&report.key, Some(&name)).await.expect("find");
        assert!(
            !run.attributes.contains_key("blob"),
            "{step}: no attribute committed"
        );
        assert_eq!(run.locked_by, None, "{step}: the lease was released");
        // Capped, fuel-exhausted and oversized outputs are deterministic: no retry.
        if matches!(*kind, "output_too_large" | "fuel_exhausted") {
            assert_eq!(report.status, RunStatus::Failed, "{step} fails at once");
            assert_eq!(error.attempt, 1);
        }
    }
}

/// A step sees the environment its manifest lists, and nothing of the host's.
#[tokio::test]
async fn a_guest_sees_only_the_env_its_manifest_lists() {
    let env = Env::new();
    let host = env.host().await;
    let path = env.workflow(
        "hostile",
        "envs",
        "",
        &[("env", "env = { REGION = \"eu\", TIER = \"gold\" }")],
    );
    host.register(&path).await.expect("register");
    let report = host
        .run(RunRequest::new("envs", json!({})))
        .await
        .expect("run");
    assert_eq!(report.result, Some(json!(["REGION=eu", "TIER=gold"])));
    let path = env.workflow("hostile", "no-env", "", &[("env", "")]);
    host.register(&path).await.expect("register");
    let report = host
        .run(RunRequest::new("no-env", json!({})))
        .await
        .expect("run");
    assert_eq!(report.result, Some(json!([])), "not even PATH or HOME");
}

/// What a guest prints goes to the host's log with its run and step, up to
/// `max_log`; printing more does not fail the step.
#[test]
fn guest_output_goes_to_the_log_capped() {
    let env = Env::new();
    let path = env.workflow(
        "hostile",
        "printer",
        "",
        &[("print", "max_log = \"64KiB\"")],
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_acidic"))
        .args(["run"])
        .arg(&path)
        .args(["--key", "loud", "--args", "{}"])
        .env("DATABASE_URL", env.db())
        .env("ACIDIC_CACHE_DIR", env.dir.path().join("cache"))
        .env("ACIDIC_LOG", "warn,acidic::guest=info")
        .output()
        .expect("run acidic");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("run=loud") && l.contains("step=print"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("stream=stdout") && l.contains("zzzz")),
        "stdout reached the log: {}",
        &log[..log.len().min(2000)]
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("stream=stderr") && l.contains("printed 3 MiB")),
        "stderr reached the log"
    );
    assert!(
        lines.iter().any(|l| l.contains("bytes dropped (max_log)")),
        "the cap was reported"
    );
    assert!(
        log.len() < 256 << 10,
        "3 MiB of output was capped, log is {} bytes",
        log.len()
    );
}

/// Runs `request` beside a well-behaved run and checks the host kept serving.
async fn beside_a_good_run(env: &Env, host: &Host, request: RunRequest) -> RunReport {
    timed_beside_a_good_run(env, host, request).await.0
}

/// [`beside_a_good_run`], with how long the hostile run itself took.
async fn timed_beside_a_good_run(
    env: &Env,
    host: &Host,
    request: RunRequest,
) -> (RunReport, Duration) {
    let good = env.scripted("good", "", &[("only", "")]);
    host.register(&good).await.expect("register good");
    let hostile = async {
        let started = Instant::now();
        let report = host.run(request).await;
        (report, started.elapsed())
    };
    let ((hostile, took), good) = tokio::join!(
        hostile,
        host.run(RunRequest::new(
            "good",
            json!({ "beside": fastrand::u64(..) })
        )),
    );
    assert_eq!(
        good.expect("good run").status,
        RunStatus::Succeeded,
        "the host kept serving"
    );
    (hostile.expect("the host survives the hostile run"), took)
}

/// A hostile workflow `name`: `mark` commits an attribute, then `step` runs.
async fn hostile(env: &Env, host: &Host, name: &str, step: &str, extra: &str) {
    let path = env.workflow(
        "hostile",
        name,
        "max_attempts = 2",
        &[("mark", ""), (step, extra)],
    );
    host.register(&path).await.expect("register hostile");
}

/// The failed step call lasted at most its deadline + 1 s, as the run's
/// timeline records it (the call's own start to its recorded failure); the
/// whole run, with the steps before it, took a bounded time too.
async fn within_a_second_of(host: &Host, report: &RunReport, deadline: Duration, took: Duration) {
    let detail = host
        .show(&report.key, Some(&report.workflow))
        .await
        .expect("show");
    let failed = detail
        .timeline
        .iter()
        .rev()
        .find(|e| e.outcome == "failed")
        .expect("a failed call");
    let lasted = Duration::from_millis((failed.finished_at - failed.started_at).max(0) as u64);
    assert!(
        lasted < deadline + Duration::from_secs(1),
        "the call was recorded as failed {lasted:?} after it started (deadline {deadline:?})"
    );
    assert!(lasted >= deadline, "not before its deadline: {lasted:?}");
    assert!(took < Duration::from_secs(15), "the run took {took:?}");
}

/// The step failed with `kind`, naming `words`, and nothing of it committed:
/// the run stands at the step, with no staged runs and no committed event of
/// the step, and its lease is released.
async fn contained(host: &Host, report: &RunReport, step: &str, kind: &str, words: &str) {
    let error = report
        .error
        .clone()
        .unwrap_or_else(|| panic!("{step}: no error recorded, report {report:?}"));
    assert_eq!(error.kind, kind, "{step}: {}", error.message);
    assert!(
        error.message.contains(words),
        "{step}: the message names the cause ({words}): {}",
        error.message
    );
    assert_eq!(
        report.recovery_point, step,
        "{step}: the step did not commit"
    );
    let detail = host
        .show(&report.key, Some(&report.workflow))
        .await
        .expect("the run can be read");
    assert_eq!(detail.run.locked_by, None, "{step}: the lease was released");
    assert!(
        detail.children.is_empty(),
        "{step}: no staged run committed"
    );
    assert!(
        !detail
            .timeline
            .iter()
            .any(|e| e.step == step && e.outcome != "failed"),
        "{step}: nothing of the step committed: {:?}",
        detail.timeline
    );
    assert!(
        detail
            .timeline
            .iter()
            .any(|e| e.step == "mark" && e.outcome == "committed"),
        "the step before it committed"
    );
}

on_each_backend! {
/// Out-of-range numbers, deep JSON, NUL bytes and SQL that nests as deep as
/// it is long reach the host without crashing it: each is refused with an
/// error that names it, and the run stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_guest_input_crashes_the_host(env) {
    let host = env.host().await;
    for (step, words) in [
        ("far_delay", "delay"),
        ("nul_key", "control characters"),
    ] {
        let name = format!("crash-{}", step.replace('_', "-"));
        hostile(&env, &host, &name, step, "").await;
        let report = beside_a_good_run(&env, &host, RunRequest::new(&name, json!({}))).await;
        assert_eq!(report.status, RunStatus::Succeeded, "{step}: {:?}", report.error);
        let answer = report.result.clone().unwrap_or_default();
        let answer = answer.as_str().unwrap_or_default();
        assert!(answer.starts_with("refused") && answer.contains(words), "{step}: {answer}");
        assert!(report.staged.is_empty(), "{step}: nothing staged");
    }

    // A value nested 127 deep would make the stored map 128 deep, past what
    // the host can read back: refused, and the run stays readable.
    hostile(&env, &host, "crash-deep", "deep_json", "").await;
    let report = beside_a_good_run(&env, &host, RunRequest::new("crash-deep", json!({}))).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    let run = host.find(&report.key, Some("crash-deep")).await.expect("readable");
    assert!(!run.attributes.contains_key("deep"));

    // `1+1+…+1`: the parser does not recurse on it, but walking, printing
    // and dropping its tree does, as deep as the statement is long.
    let deep_sql = format!("SELECT 1{}", "+1".repeat(30_000));
    let nested = format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000));
    let path = env.scripted(
        "crash-sql",
        "max_attempts = 1",
        &[("q", "sql = \"read-only\"")],
    );
    host.register(&path).await.expect("register");
    for (i, statement) in [deep_sql, nested].into_iter().enumerate() {
        let args = json!({ "script": { "q": { "sql": [{ "query": statement }] } }, "i": i });
        let report = beside_a_good_run(&env, &host, RunRequest::new("crash-sql", args)).await;
        // Refused, or run by the database: either way a recorded answer.
        if let Some(error) = &report.error {
            assert!(
                ["sql_refused", "sql_error"].contains(&error.kind.as_str()),
                "{}: {}", error.kind, error.message
            );
        }
    }
}
}

on_each_backend! {
/// A step waiting in a host call (a WASI sleep, SQL that never ends, an
/// HTTP server that never answers) is stopped at its deadline, recorded as
/// `timeout` within deadline + 1 s, with nothing committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_host_call_ends_at_the_deadline(env) {
    let host = env.host().await;
    let deadline = Duration::from_millis(600);
    let timeout = format!("timeout = \"{}ms\"", deadline.as_millis());

    // A sleep of an hour, through WASI's clock.
    hostile(&env, &host, "sleepy", "sleep", &timeout).await;
    let (report, took) =
        timed_beside_a_good_run(&env, &host, RunRequest::new("sleepy", json!({}))).await;
    contained(&host, &report, "sleep", "timeout", "deadline").await;
    within_a_second_of(&host, &report, deadline, took).await;

    // SQL that never ends: a recursive CTE without a bound.
    let forever = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) \
                   SELECT count(*) FROM r";
    let path = env.scripted(
        "endless-sql",
        "max_attempts = 1",
        &[("mark", ""), ("q", &format!("sql = \"read-only\"\n{timeout}"))],
    );
    host.register(&path).await.expect("register");
    let args = json!({ "script": {
        "mark": { "count": true },
        "q": { "set": { "leak": 1 }, "sql": [{ "query": forever, "into": "n" }] },
    } });
    let (report, took) =
        timed_beside_a_good_run(&env, &host, RunRequest::new("endless-sql", args)).await;
    contained(&host, &report, "q", "timeout", "deadline").await;
    within_a_second_of(&host, &report, deadline, took).await;
    let run = host.find(&report.key, Some("endless-sql")).await.expect("find");
    assert!(!run.attributes.contains_key("leak"), "nothing of the step committed");

    // A statement cut off at the deadline whose error the guest ignores: the
    // guest then answers `ok` after its deadline, and nothing commits.
    let sink = env.app_table("sink", "n BIGINT");
    let path = env.scripted(
        "late",
        "max_attempts = 1",
        &[("mark", ""), ("q", &format!("sql = \"read-write\"\n{timeout}"))],
    );
    host.register(&path).await.expect("register");
    let forever_insert = format!(
        "INSERT INTO {sink} (n) WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) \
         SELECT count(*) FROM r"
    );
    let args = json!({ "script": {
        "q": { "set": { "leak": 1 }, "sql": [{ "execute": forever_insert, "tolerate": true }] },
    } });
    let report = beside_a_good_run(&env, &host, RunRequest::new("late", args)).await;
    contained(&host, &report, "q", "timeout", "deadline").await;
    let run = host.find(&report.key, Some("late")).await.expect("find");
    assert!(!run.attributes.contains_key("leak"), "a late `ok` commits nothing");
    assert_eq!(env.app_count(&sink, "TRUE"), 0);

    // An HTTP server that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let hold = std::thread::spawn(move || {
        // Keeps what it accepts open, unanswered, for a while; then stops.
        let mut held = Vec::new();
        silent.set_nonblocking(true).expect("nonblocking");
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Ok((stream, _)) = silent.accept() {
                held.push(stream);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let path = env.workflow(
        "charge",
        "silent-api",
        "max_attempts = 1",
        &[("charge", &format!("allowed_outbound_hosts = [\"http://{addr}\"]\n{timeout}"))],
    );
    host.register(&path).await.expect("register");
    let args = json!({ "api": format!("http://{addr}"), "cents": 100 });
    let (report, took) =
        timed_beside_a_good_run(&env, &host, RunRequest::new("silent-api", args)).await;
    let error = report.error.clone().expect("an error");
    assert_eq!(error.kind, "timeout", "{}", error.message);
    within_a_second_of(&host, &report, deadline, took).await;
    assert_eq!(report.recovery_point, "charge");
    drop(hold);
}
}

/// A query's rows, by backend: `n` rows of about 1 KB each.
fn wide_rows(backend: Backend, n: u32) -> String {
    match backend {
        Backend::Sqlite => format!(
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < {n}) \
             SELECT n, printf('%01000d', n) AS pad FROM r"
        ),
        Backend::Postgres => format!(
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < {n}) \
             SELECT n, lpad(n::text, 1000, '0') AS pad FROM r"
        ),
    }
}

/// Peak RSS in KiB of `acidic run` with `args`, measured by the parent (python's
/// `getrusage` of its children), with the run's exit code.
fn peak_rss_of_run(env: &Env, manifest: &std::path::Path, key: &str, args: &Value) -> (u64, i32) {
    let script = "import resource, subprocess, sys\n\
                  code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n\
                  print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)";
    let out = std::process::Command::new("python3")
        .args(["-c", script, env!("CARGO_BIN_EXE_acidic"), "run"])
        .arg(manifest)
        .args(["--key", key, "--args", &args.to_string()])
        .env("DATABASE_URL", env.db())
        .env("ACIDIC_CACHE_DIR", env.dir.path().join("cache"))
        .env("ACIDIC_LOG", "error")
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let rss = words
        .next()
        .and_then(|w| w.parse().ok())
        .expect("a peak RSS");
    let code = words
        .next()
        .and_then(|w| w.parse().ok())
        .expect("an exit code");
    (rss, code)
}

on_each_backend! {
/// A query returning 200 MB of rows under a 16 MiB budget fails as
/// `memory_limit`, and the host process stays within budget + a fixed margin
/// of the same command running a small query.
#[test]
fn host_memory_for_a_step_is_within_its_budget(env) {
    env.app_sql("SELECT 'ready'");
    let manifest = env.scripted(
        "rows",
        "max_attempts = 1",
        &[("q", "sql = \"read-only\"\nmemory = \"16MiB\"")],
    );
    let query = |n| json!({ "script": { "q": { "sql": [{ "query": wide_rows(env.backend, n), "into": "rows" }] } } });
    // The first run compiles the component (and caches it): not part of the baseline.
    let (_, code) = peak_rss_of_run(&env, &manifest, "warm", &query(10));
    assert_eq!(code, 0, "a tiny query succeeds");
    let (small, code) = peak_rss_of_run(&env, &manifest, "small", &query(100));
    assert_eq!(code, 0, "a small query succeeds");
    let (big, code) = peak_rss_of_run(&env, &manifest, "big", &query(200_000));
    assert_ne!(code, 0, "200 MB of rows cannot fit 16 MiB");
    let margin_kib = 16 * 1024 + 32 * 1024;
    eprintln!("peak RSS: small query {small} KiB, 200 MB query {big} KiB");
    assert!(
        big < small + margin_kib,
        "the host held {big} KiB for a step budgeted 16 MiB (small query: {small} KiB)"
    );
    // One value of 200 MB in one row: never built in the host (on Postgres
    // the server refuses to send the row; SQLite's length limit stops its
    // printf from making it).
    let huge = match env.backend {
        Backend::Sqlite => "SELECT printf('%.*c', 200000000, 'x') AS huge",
        Backend::Postgres => "SELECT lpad('x', 200000000, 'x') AS huge",
    };
    let one = json!({ "script": { "q": { "sql": [{ "query": huge, "into": "rows" }] } } });
    let (single, code) = peak_rss_of_run(&env, &manifest, "huge", &one);
    if env.backend == Backend::Postgres {
        assert_ne!(code, 0, "a 200 MB value cannot fit 16 MiB");
    }
    eprintln!("peak RSS: one 200 MB value {single} KiB");
    assert!(
        single < small + margin_kib,
        "the host held {single} KiB for one value, budgeted 16 MiB (small query: {small} KiB)"
    );
    let keys: &[&str] = match env.backend {
        Backend::Sqlite => &["big"],
        Backend::Postgres => &["big", "huge"],
    };
    for key in keys.iter().copied() {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_acidic"))
            .args(["runs", "show", key, "--json"])
            .env("DATABASE_URL", env.db())
            .output()
            .expect("runs show");
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(shown.contains("memory_limit"), "{key}: {shown}");
    }
}
}

on_each_backend! {
/// Attributes (count, name, total), staged runs (count, args in total, the
/// length of their queue's name) and the lineage of runs staging runs are
/// capped: each is a recorded `output_too_large`
/// naming its cap, with nothing of the step committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_step_produces_is_capped(env) {
    let host = env.host().await;
    for (step, words) in [
        ("many_attributes", "max_attributes"),
        ("long_name", "max_attribute_name"),
        ("fat_attributes", "max_attributes_total"),
        ("stage_many", "max_staged"),
        ("stage_fat", "max_staged_total"),
        ("long_queue", "queue"),
    ] {
        let name = format!("cap-{}", step.replace('_', "-"));
        hostile(&env, &host, &name, step, "").await;
        let report = beside_a_good_run(&env, &host, RunRequest::new(&name, json!({}))).await;
        assert_eq!(report.status, RunStatus::Failed, "{step}: caps are final");
        contained(&host, &report, step, "output_too_large", words).await;
        let staged = host
            .runs(&RunFilter { workflow: Some(name.clone()), limit: 10_000, ..RunFilter::default() })
            .await
            .expect("runs");
        assert_eq!(staged.len(), 1, "{step}: no run was staged");
    }

    // A manifest's fan-out stages runs too: the same caps hold, here
    // max_staged = 10 against a list of 11.
    let kid = env.scripted("cap-kid", "", &[("only", "")]);
    host.register(&kid).await.expect("register kid");
    let fan = env.scripted(
        "cap-fan",
        "max_attempts = 1\nmax_staged = 10",
        &[("mark", ""), ("spread", "awaits = { workflow = \"cap-kid\", for_each = \"items\" }")],
    );
    host.register(&fan).await.expect("register fan-out");
    let items: Vec<u32> = (0..11).collect();
    let args = json!({ "script": { "mark": { "count": true }, "spread": { "set": { "items": items } } } });
    let report = beside_a_good_run(&env, &host, RunRequest::new("cap-fan", args)).await;
    assert_eq!(report.status, RunStatus::Failed, "fan-out: caps are final");
    contained(&host, &report, "spread", "output_too_large", "max_staged").await;
    let kids = host
        .runs(&RunFilter { workflow: Some("cap-kid".into()), limit: 100, ..RunFilter::default() })
        .await
        .expect("runs");
    assert!(kids.is_empty(), "no run was staged: {kids:?}");

    // A run that stages a run of its own workflow, forever: stopped at depth 3.
    let path = env.workflow("hostile", "chain", "max_attempts = 1\nmax_lineage_depth = 3", &[("chain", "")]);
    host.register(&path).await.expect("register chain");
    let host = Arc::new(host);
    let first = host.run(RunRequest::new("chain", json!({ "n": 0 }))).await.expect("run");
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    let options = WorkerOptions {
        exit_when_idle: true,
        concurrency: 2,
        poll: Duration::from_millis(5),
        ..WorkerOptions::default()
    };
    tokio::time::timeout(Duration::from_secs(30), host.work(options, std::future::pending()))
        .await
        .expect("the chain ends by itself")
        .expect("work");
    let runs = host
        .runs(&RunFilter { workflow: Some("chain".into()), limit: 100, ..RunFilter::default() })
        .await
        .expect("runs");
    assert_eq!(runs.len(), 4, "depths 0, 1, 2 and 3");
    let last = runs.iter().find(|r| r.status == RunStatus::Failed).expect("the deepest failed");
    let error = last.last_error.clone().expect("its error");
    assert_eq!(error.kind, "output_too_large");
    assert!(error.message.contains("max_lineage_depth"), "{}", error.message);
    assert_eq!(runs.iter().filter(|r| r.status == RunStatus::Succeeded).count(), 3);
}
}

on_each_backend! {
/// A commit the database refuses for a reason that does not go away (here a
/// deferred foreign key) is a recorded failure of the step that consumes an
/// attempt; it does not loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_the_database_refuses_is_recorded_and_never_loops(env) {
    let host = env.host().await;
    env.app_table("owners", "id BIGINT PRIMARY KEY");
    env.app_table(
        "pets",
        "id BIGINT PRIMARY KEY, owner BIGINT REFERENCES owners (id) DEFERRABLE INITIALLY DEFERRED",
    );
    let path = env.scripted("orphan", "max_attempts = 3", &[("adopt", "sql = \"read-write\"")]);
    host.register(&path).await.expect("register");
    let args = json!({ "script": { "adopt": { "sql": [{
        "execute": "INSERT INTO pets (id, owner) VALUES (1, 42)",
    }] } } });
    let started = Instant::now();
    let report = beside_a_good_run(&env, &host, RunRequest::new("orphan", args)).await;
    let error = report.error.clone().expect("an error");
    assert_eq!(error.kind, "commit_refused", "{}", error.message);
    assert_eq!(report.status, RunStatus::Failed, "a constraint does not go away");
    assert_eq!(error.attempt, 1, "recorded on its first attempt");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(env.app_count("pets", "TRUE"), 0, "nothing committed");

    // A deferred UNIQUE (Postgres; SQLite has none) is checked at COMMIT
    // too: refused, not taken for a concurrent insert and run again.
    if env.engine_schema().is_some() {
        env.app_table("tags", "id BIGINT UNIQUE DEFERRABLE INITIALLY DEFERRED");
        let path = env.scripted("twin", "max_attempts = 3", &[("tag", "sql = \"read-write\"")]);
        host.register(&path).await.expect("register");
        let args = json!({ "script": { "tag": { "sql": [
            { "execute": "INSERT INTO tags (id) VALUES (1)" },
            { "execute": "INSERT INTO tags (id) VALUES (1)" },
        ] } } });
        let started = Instant::now();
        let report = beside_a_good_run(&env, &host, RunRequest::new("twin", args)).await;
        let error = report.error.clone().expect("an error");
        assert_eq!(error.kind, "commit_refused", "{}", error.message);
        assert_eq!(report.status, RunStatus::Failed, "a duplicate does not go away");
        assert_eq!(error.attempt, 1, "recorded on its first attempt");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(env.app_count("tags", "TRUE"), 0, "nothing committed");
    }
}
}

on_each_backend! {
/// Host calls are charged fuel (per call and per byte), so a small fuel
/// budget bounds what a step moves through the host, not only its Wasm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_calls_cost_fuel(env) {
    let host = env.host().await;
    hostile(&env, &host, "traffic", "host_traffic", "fuel = 50_000_000").await;
    let started = Instant::now();
    let report = beside_a_good_run(&env, &host, RunRequest::new("traffic", json!({}))).await;
    assert_eq!(report.status, RunStatus::Failed, "fuel is deterministic: {report:?}");
    contained(&host, &report, "host_traffic", "fuel_exhausted", "fuel").await;
    assert!(started.elapsed() < Duration::from_secs(20));
    // The same budget is plenty for a step that moves little.
    hostile(&env, &host, "frugal", "continue", "fuel = 50_000_000").await;
    let ok = host.run(RunRequest::new("frugal", json!({}))).await.expect("run");
    assert_eq!(ok.status, RunStatus::Succeeded, "{:?}", ok.error);

    // Random bytes cost fuel too: 25 MiB of them do not fit 50 M units
    // (the loop's Wasm alone does), and fit 2 G.
    hostile(&env, &host, "dice", "random_flood", "fuel = 50_000_000").await;
    let report = beside_a_good_run(&env, &host, RunRequest::new("dice", json!({}))).await;
    contained(&host, &report, "random_flood", "fuel_exhausted", "fuel").await;
    hostile(&env, &host, "dice-rich", "random_flood", "fuel = 2_000_000_000").await;
    let ok = host.run(RunRequest::new("dice-rich", json!({}))).await.expect("run");
    assert_eq!(ok.status, RunStatus::Succeeded, "{:?}", ok.error);

    // An outbound response of 48 MB: its bytes cost fuel as they pass, so a
    // budget of 20 M stops the step (its Wasm alone spends far less: the
    // body is refused as JSON at its first byte).
    let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = server.local_addr().expect("addr");
    let serving = std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut stream, _)) = server.accept() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let size = 48 << 20;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            let chunk = vec![b'x'; 64 << 10];
            for _ in 0..size / chunk.len() {
                if stream.write_all(&chunk).is_err() {
                    break;
                }
            }
        }
    });
    let path = env.workflow(
        "charge",
        "fat-answer",
        "max_attempts = 1",
        &[(
            "charge",
            &format!("allowed_outbound_hosts = [\"http://{addr}\"]\nfuel = 20_000_000\nmemory = \"256MiB\""),
        )],
    );
    host.register(&path).await.expect("register");
    let args = json!({ "api": format!("http://{addr}"), "cents": 100 });
    let report = beside_a_good_run(&env, &host, RunRequest::new("fat-answer", args)).await;
    let error = report.error.clone().expect("an error");
    assert_eq!(error.kind, "fuel_exhausted", "{}", error.message);
    assert_eq!(report.recovery_point, "charge", "nothing committed");
    let _ = serving.join();
}
}

on_each_backend! {
/// Guest SQL names nothing of the engine's schema in any form: not its
/// tables' row types, not `reg*` casts (or arrays of them), not qualified
/// types in DDL. The engine's own migrations still run afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_sql_cannot_reach_the_engine_through_types(env) {
    let host = env.host().await;
    let path = env.scripted(
        "types",
        "max_attempts = 1",
        &[("q", "sql = \"read-write\"\nddl = true")],
    );
    host.register(&path).await.expect("register");
    let engine = env.engine_schema().unwrap_or_else(|| "main".into());
    let statements = [
        "SELECT CAST(NULL AS runs) AS r".to_string(),
        format!("SELECT CAST(NULL AS {engine}.runs) AS r"),
        format!("SELECT CAST('{{}}' AS {engine}.runs[]) AS r"),
        "SELECT CAST('runs' AS regclass) AS r".to_string(),
        "SELECT CAST('{runs}' AS regclass[]) AS r".to_string(),
        "SELECT CAST('int4' AS regtype) AS r".to_string(),
        "SELECT CAST('{}' AS regnamespace[]) AS r".to_string(),
        format!("CREATE TABLE evil (c {engine}.runs)"),
        format!("CREATE TABLE evil (c {engine}.runs[])"),
        "CREATE TABLE evil (c runs)".to_string(),
        "CREATE TABLE evil (c regclass[])".to_string(),
    ];
    for (i, statement) in statements.iter().enumerate() {
        let statement_json = if statement.starts_with("CREATE") {
            json!({ "execute": statement })
        } else {
            json!({ "query": statement })
        };
        let args = json!({ "script": { "q": { "sql": [statement_json] } }, "i": i });
        let report = host.run(RunRequest::new("types", args)).await.expect("run");
        let error = report.error.clone().unwrap_or_else(|| panic!("{statement}: not refused"));
        assert_eq!(error.kind, "sql_refused", "{statement}: {}", error.message);
    }
    drop(host);
    // Nothing the guest did can stop the engine from opening (and migrating).
    let again = env.host().await;
    let ok = again.run(RunRequest::new("types", json!({ "script": {} }))).await.expect("run");
    assert_eq!(ok.status, RunStatus::Succeeded);
    if env.backend == Backend::Postgres {
        let role = format!("{engine}_guest");
        let usage = crate::harness::postgres(&[&format!(
            "SELECT has_schema_privilege('{role}', '{engine}', 'USAGE')::text"
        )])
        .expect("privilege");
        assert_eq!(usage, vec!["false".to_string()], "the guest role has no way into the engine's schema");
    }
}
}

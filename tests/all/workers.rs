//! Workers: real `acidic worker` processes on one SQLite file, killed and
//! stopped mid-step; the completer and the reaper.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use acidic::run::{Lease, NewRun, StartOutcome};
use acidic::store::Store;
use acidic::{Host, RunFilter, RunRequest, RunStatus, WorkerOptions};
use serde_json::{Value, json};

use crate::harness::{Env, on_each_backend, root};

pub(crate) fn worker(env: &Env, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_acidic"))
        .arg("worker")
        .args(args)
        .current_dir(root())
        .env("DATABASE_URL", env.db())
        .env("ACIDIC_CACHE_DIR", env.dir.path().join("cache"))
        .env(
            "ACIDIC_LOG",
            "warn,acidic::executor=debug,sqlx::postgres::notice=error",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start worker")
}

/// Waits for every process, reading all their pipes at once: a worker
/// whose stderr pipe fills while another is read would block mid-step.
pub(crate) fn wait_all(children: Vec<Child>) -> Vec<std::process::Output> {
    let readers: Vec<_> = children
        .into_iter()
        .map(|c| std::thread::spawn(move || c.wait_with_output().expect("process exit")))
        .collect();
    readers
        .into_iter()
        .map(|r| r.join().expect("reader thread"))
        .collect()
}

pub(crate) fn counting(sleep_ms: u64) -> Value {
    let step = json!({ "count": true, "sleep_ms": sleep_ms });
    json!({ "script": { "a": step, "b": step, "c": step } })
}

pub(crate) async fn setup(env: &Env, host: &Host) {
    let path = env.scripted(
        "w",
        "max_attempts = 3\ntimeout = \"1s\"",
        &[("a", ""), ("b", ""), ("c", "")],
    );
    host.register(&path).await.expect("register");
    let path = env.scripted("child", "", &[("only", "")]);
    host.register(&path).await.expect("register child");
}

pub(crate) async fn enqueue(host: &Host, n: usize, sleep_ms: u64) {
    for i in 0..n {
        let mut args = counting(sleep_ms);
        args["i"] = json!(i);
        host.enqueue(
            RunRequest::new("w", args).with_key(format!("run-{i}")),
            Duration::ZERO,
            "default",
        )
        .await
        .expect("enqueue");
    }
}

/// What the workers' logs say of each (run, step, attempt) call: how many
/// times it was started, and how many of those starts lost a conflict and
/// committed nothing.
#[derive(Default)]
pub(crate) struct Starts {
    started: HashMap<String, usize>,
    conflicted: HashMap<String, usize>,
}

impl Starts {
    /// Adds one worker's log.
    pub(crate) fn read(&mut self, log: &str) {
        for line in log.lines() {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(&format!("{name}=")))
                    .unwrap_or("?")
                    .to_string()
            };
            let key = || format!("{}/{}/{}", field("run"), field("step"), field("attempt"));
            if line.contains("step started") {
                *self.started.entry(key()).or_default() += 1;
            } else if line.contains("step conflicted, trying again")
                || (line.contains("step failed") && line.contains("kind=conflict"))
            {
                *self.conflicted.entry(key()).or_default() += 1;
            }
        }
    }
}

/// Every step call was started by one worker only: a step is started again
/// with the same attempt only after a start that lost a conflict (and so
/// committed nothing), and as a new attempt only after a failure. Every step
/// of `n` three-step runs was started.
pub(crate) fn assert_started_once_per_attempt(starts: &Starts, n: usize) {
    let twice: Vec<_> = starts
        .started
        .iter()
        .filter(|(key, n)| **n > 1 + starts.conflicted.get(*key).copied().unwrap_or(0))
        .collect();
    assert!(twice.is_empty(), "steps started by two workers: {twice:?}");
    let reruns: usize = starts.conflicted.values().sum();
    if reruns > 0 {
        eprintln!("{reruns} starts lost a conflict, committed nothing and were run again");
    }
    let steps: std::collections::HashSet<&str> = starts
        .started
        .keys()
        .filter_map(|k| k.rsplit_once('/').map(|(run_step, _)| run_step))
        .collect();
    assert_eq!(steps.len(), 3 * n, "every step of every run was started");
}

/// Every run succeeded, and every step of every run committed exactly once.
/// Prints the failed attempts (retried, committing nothing) it saw.
pub(crate) async fn assert_each_step_committed_once(host: &Host, n: usize) {
    let runs = host
        .runs(&RunFilter {
            workflow: Some("w".into()),
            limit: 10_000,
            ..RunFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(runs.len(), n);
    for run in &runs {
        assert_eq!(
            run.status,
            RunStatus::Succeeded,
            "run {} is {}",
            run.key,
            run.status
        );
        for step in ["a", "b", "c"] {
            assert_eq!(
                run.attributes.get(&format!("calls_{step}")),
                Some(&json!(1)),
                "run {} step {step}",
                run.key
            );
        }
        let timeline = host.show(&run.key, Some("w")).await.expect("show").timeline;
        let committed: Vec<&str> = timeline
            .iter()
            .filter(|e| e.outcome != "failed")
            .map(|e| e.step.as_str())
            .collect();
        assert_eq!(committed, vec!["a", "b", "c"], "run {}", run.key);
        for e in timeline.iter().filter(|e| e.outcome == "failed") {
            eprintln!(
                "run {} step {} attempt {} failed and was retried: {:?} {:?}",
                run.key, e.step, e.attempt, e.error_kind, e.message
            );
        }
    }
}

on_each_backend! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_run_every_step_exactly_once(env) {
    let host = env.host().await;
    setup(&env, &host).await;
    enqueue(&host, 200, 0).await;

    let workers: Vec<Child> = (0..2)
        .map(|_| {
            worker(
                &env,
                &["--exit-when-idle", "--concurrency", "4", "--poll", "20ms"],
            )
        })
        .collect();
    let mut starts = Starts::default();
    for out in wait_all(workers) {
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "worker failed: {log}");
        starts.read(&log);
    }
    assert_each_step_committed_once(&host, 200).await;
    assert_started_once_per_attempt(&starts, 200);
}
}

on_each_backend! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_nothing_and_repeats_no_committed_step(env) {
    let host = env.host().await;
    setup(&env, &host).await;
    // Steps of 200 ms: the 30 runs take seconds, so the kill below lands
    // while some are mid-step however slowly this test polls.
    enqueue(&host, 30, 200).await;

    let mut first = worker(
        &env,
        &["--concurrency", "4", "--lease", "1s", "--poll", "20ms"],
    );
    let started = Instant::now();
    loop {
        let count = |status| {
            let host = &host;
            async move {
                host.runs(&RunFilter {
                    status: Some(status),
                    ..RunFilter::default()
                })
                .await
                .expect("list")
                .len()
            }
        };
        let (done, running) = (
            count(RunStatus::Succeeded).await,
            count(RunStatus::Running).await,
        );
        if (done >= 3 && running >= 1) || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().expect("kill -9");
    let _ = first.wait();
    let stranded = host
        .runs(&RunFilter {
            status: Some(RunStatus::Running),
            ..RunFilter::default()
        })
        .await
        .expect("list");
    assert!(
        !stranded.is_empty(),
        "the kill should have caught runs mid-step"
    );

    // A second worker takes over once the dead worker's leases expire.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = worker(
            &env,
            &[
                "--exit-when-idle",
                "--concurrency",
                "4",
                "--lease",
                "1s",
                "--poll",
                "20ms",
            ],
        )
        .wait_with_output()
        .expect("second worker");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let unfinished = host
            .runs(&RunFilter::default())
            .await
            .expect("list")
            .iter()
            .filter(|r| !r.status.is_final())
            .count();
        if unfinished == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_each_step_committed_once(&host, 30).await;
}
}

on_each_backend! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_current_step_and_hands_runs_back(env) {
    let host = env.host().await;
    setup(&env, &host).await;
    enqueue(&host, 4, 300).await;

    // A claimed run is `running` before its first step begins, and a worker
    // told to stop then hands it back without starting one: wait for the
    // worker's own word that a step is in flight, then stop it.
    let mut w = worker(&env, &["--concurrency", "4", "--poll", "20ms"]);
    let stderr = w.stderr.take().expect("stderr");
    let (began, step_began) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        use std::io::{BufRead, BufReader};
        let mut text = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("step started") {
                let _ = began.send(());
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    step_began
        .recv_timeout(Duration::from_secs(30))
        .expect("a step started within 30 s");
    let status = Command::new("kill")
        .args(["-TERM", &w.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = w.wait().expect("exit");
    let stderr = log.join().expect("stderr reader");
    assert!(exit.success(), "exit 0 on SIGTERM: {stderr}");

    let runs = host.runs(&RunFilter::default()).await.expect("list");
    assert_eq!(runs.len(), 4);
    for run in &runs {
        assert!(run.locked_by.is_none(), "run {} still leased", run.key);
        assert!(
            matches!(run.status, RunStatus::Pending | RunStatus::Succeeded),
            "run {} is {}",
            run.key,
            run.status
        );
        let timeline = host.show(&run.key, None).await.expect("show").timeline;
        assert!(
            timeline.iter().all(|e| e.outcome != "failed"),
            "a step in flight was cut off: {timeline:?}"
        );
    }
    assert!(
        runs.iter().any(|r| r.attributes.contains_key("calls_a")),
        "the step in flight finished and committed"
    );
    // Handed-back runs are runnable at once and finish without repeating a step.
    let host = Arc::new(host);
    let options = WorkerOptions {
        exit_when_idle: true,
        poll: Duration::from_millis(10),
        ..WorkerOptions::default()
    };
    host.work(options, std::future::pending())
        .await
        .expect("work");
    assert_each_step_committed_once(&host, 4).await;
}
}

on_each_backend! {
#[tokio::test]
async fn a_staged_run_is_not_claimable_before_its_step_commits(env) {
    let host = Arc::new(env.host().await);
    setup(&env, &host).await;
    let args = json!({ "script": { "a": { "stage": [{ "workflow": "child", "args": {}, "key": "kid" }], "sleep_ms": 400 } } });
    let parent = tokio::spawn({
        let host = host.clone();
        async move { host.run(RunRequest::new("w", args).with_key("p")).await }
    });
    // While the staging step sleeps, a worker finds nothing to claim and the child does not exist.
    let watcher = env.host().await;
    let started = Instant::now();
    while watcher
        .find("p", None)
        .await
        .map(|r| r.status != RunStatus::Running)
        .unwrap_or(true)
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let watcher = Arc::new(watcher);
    let options = WorkerOptions {
        exit_when_idle: true,
        ..WorkerOptions::default()
    };
    let summary = watcher
        .work(options.clone(), std::future::pending())
        .await
        .expect("work");
    assert_eq!(
        summary.claimed, 0,
        "nothing is claimable while the step runs"
    );
    assert!(
        watcher.find("kid", None).await.is_err(),
        "the staged run does not exist before the commit"
    );

    let report = parent.await.expect("join").expect("run");
    assert_eq!(report.status, RunStatus::Succeeded);
    let summary = watcher
        .work(options, std::future::pending())
        .await
        .expect("work");
    assert_eq!(
        (summary.claimed, summary.succeeded),
        (1, 1),
        "the staged run is claimed once, after the commit"
    );
}
}

async fn new_run(host: &Host, key: &str) -> NewRun {
    let w = host.workflow("w").await.expect("workflow");
    NewRun {
        workflow: "w".into(),
        workflow_version: w.version,
        definition_hash: w.hash.clone(),
        first_step: "a".into(),
        attributes: Default::default(),
        key: key.into(),
        args: json!({}),
        delay: Duration::ZERO,
        queue: "default".into(),
        parent_run_id: None,
        depth: 0,
        awaited: false,
    }
}

on_each_backend! {
#[tokio::test]
async fn the_completer_takes_over_only_expired_leases(env) {
    let host = Arc::new(env.host().await);
    setup(&env, &host).await;
    let store = Store::open(&env.db()).await.expect("store");
    let live = Lease::new("busy-worker", Duration::from_secs(60));
    let dead = Lease::new("dead-worker", Duration::from_millis(1));
    assert!(matches!(
        store
            .start_run(&new_run(&host, "live").await, &live)
            .await
            .expect("claim"),
        StartOutcome::Claimed(_)
    ));
    assert!(matches!(
        store
            .start_run(&new_run(&host, "dead").await, &dead)
            .await
            .expect("claim"),
        StartOutcome::Claimed(_)
    ));
    tokio::time::sleep(Duration::from_millis(20)).await;

    let options = WorkerOptions {
        exit_when_idle: true,
        ..WorkerOptions::default()
    };
    let summary = host
        .work(options, std::future::pending())
        .await
        .expect("work");
    assert_eq!((summary.claimed, summary.succeeded), (1, 1));
    assert_eq!(
        host.find("dead", None).await.expect("dead").status,
        RunStatus::Succeeded
    );
    let live_run = host.find("live", None).await.expect("live");
    assert_eq!(live_run.status, RunStatus::Running);
    assert_eq!(
        live_run.locked_by.as_deref(),
        Some(live.owner.as_str()),
        "a live lease is left alone"
    );

    // With a grace period, even an expired lease is left alone until the grace has passed.
    let dead2 = Lease::new("dead-worker", Duration::from_millis(1));
    store
        .start_run(&new_run(&host, "recent").await, &dead2)
        .await
        .expect("claim");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let options = WorkerOptions {
        exit_when_idle: true,
        grace: Duration::from_secs(60),
        ..WorkerOptions::default()
    };
    let summary = host
        .work(options, std::future::pending())
        .await
        .expect("work");
    assert_eq!(summary.claimed, 0);
}
}

on_each_backend! {
#[tokio::test]
async fn the_reaper_never_deletes_an_unfinished_run(env) {
    let host = env.host().await;
    setup(&env, &host).await;
    host.run(RunRequest::new("w", json!({})).with_key("done"))
        .await
        .expect("run");
    host.run(
        RunRequest::new("w", json!({ "script": { "a": { "fail": "fatal" } } })).with_key("failed"),
    )
    .await
    .expect("run");
    host.run(
        RunRequest::new("w", json!({ "script": { "b": { "fail": "retryable" } } }))
            .with_key("pending"),
    )
    .await
    .expect("run");
    host.enqueue(
        RunRequest::new("w", json!({ "n": 1 })).with_key("queued"),
        Duration::ZERO,
        "default",
    )
    .await
    .expect("enqueue");
    let store = Store::open(&env.db()).await.expect("store");
    let lease = Lease::new("w", Duration::from_secs(60));
    store
        .start_run(&new_run(&host, "running").await, &lease)
        .await
        .expect("claim");
    tokio::time::sleep(Duration::from_millis(10)).await;

    assert_eq!(
        host.reap(Duration::from_secs(3600)).await.expect("reap"),
        0,
        "nothing is old enough"
    );
    assert_eq!(
        host.reap(Duration::ZERO).await.expect("reap"),
        2,
        "the succeeded and the failed run"
    );
    let mut left: Vec<String> = host
        .runs(&RunFilter::default())
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.key)
        .collect();
    left.sort();
    assert_eq!(left, vec!["pending", "queued", "running"]);
    assert!(host.show("pending", None).await.is_ok());
}
}

on_each_backend! {
#[tokio::test]
async fn cancel_stops_a_pending_run_and_its_staged_runs(env) {
    let host = env.host().await;
    setup(&env, &host).await;
    let args = json!({ "script": { "a": { "stage": [{ "workflow": "child", "args": {}, "key": "kid" }] }, "b": { "fail": "retryable" } } });
    let report = host
        .run(RunRequest::new("w", args).with_key("p"))
        .await
        .expect("run");
    assert_eq!(report.status, RunStatus::Pending);
    assert_eq!(
        host.cancel("p", None, "ops@example.com")
            .await
            .expect("cancel"),
        acidic::Cancellation::Cancelled(2)
    );
    for key in ["p", "kid"] {
        let run = host.find(key, None).await.expect("find");
        assert_eq!(run.status, RunStatus::Cancelled, "{key}");
        assert_eq!(run.cancelled_by.as_deref(), Some("ops@example.com"));
    }
    assert!(
        host.cancel("p", None, "again").await.is_err(),
        "a cancelled run cannot be cancelled again"
    );
    let host = Arc::new(host);
    let options = WorkerOptions {
        exit_when_idle: true,
        ..WorkerOptions::default()
    };
    assert_eq!(
        host.work(options, std::future::pending())
            .await
            .expect("work")
            .claimed,
        0,
        "workers skip cancelled runs"
    );
}
}

on_each_backend! {
#[tokio::test]
async fn a_worker_claims_only_from_its_queues_and_not_before_a_delay(env) {
    let host = Arc::new(env.host().await);
    setup(&env, &host).await;
    let later = Duration::from_secs(3600);
    for (key, queue, delay) in [
        ("f", "fast", Duration::ZERO),
        ("s", "slow", Duration::ZERO),
        ("d", "fast", later),
    ] {
        host.enqueue(
            RunRequest::new("w", json!({ "k": key })).with_key(key),
            delay,
            queue,
        )
        .await
        .expect("enqueue");
    }
    let options = WorkerOptions {
        exit_when_idle: true,
        queues: vec!["fast".into()],
        ..WorkerOptions::default()
    };
    let summary = host
        .work(options, std::future::pending())
        .await
        .expect("work");
    assert_eq!((summary.claimed, summary.succeeded), (1, 1));
    assert_eq!(
        host.find("f", None).await.expect("f").status,
        RunStatus::Succeeded
    );
    assert_eq!(
        host.find("s", None).await.expect("s").status,
        RunStatus::Pending,
        "other queue"
    );
    assert_eq!(
        host.find("d", None).await.expect("d").status,
        RunStatus::Pending,
        "delayed"
    );
}
}

on_each_backend! {
/// Two processes race `acidic run` with the same key: one runs it, the other
/// gets the locked error (exit 4) or the replayed result; never two executions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_racing_one_key_execute_it_once(env) {
    let host = env.host().await;
    setup(&env, &host).await;
    let args = counting(100).to_string();
    for i in 0..5 {
        let key = format!("race-{i}");
        let racers: Vec<Child> = (0..2)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_acidic"))
                    .args(["run", "w", "--key", &key, "--args", &args, "--json"])
                    .current_dir(root())
                    .env("DATABASE_URL", env.db())
                    .env("ACIDIC_CACHE_DIR", env.dir.path().join("cache"))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start acidic run")
            })
            .collect();
        let codes: Vec<i32> = racers
            .into_iter()
            .map(|r| {
                let out = r.wait_with_output().expect("racer exit");
                let code = out.status.code().unwrap_or(-1);
                assert!(
                    code == 0 || code == 4,
                    "exit {code}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                code
            })
            .collect();
        assert!(codes.contains(&0), "nobody ran {key}: {codes:?}");
        let detail = host.show(&key, Some("w")).await.expect("show");
        assert_eq!(detail.run.status, RunStatus::Succeeded);
        for step in ["a", "b", "c"] {
            assert_eq!(
                detail.run.attributes.get(&format!("calls_{step}")),
                Some(&json!(1)),
                "{key} step {step} ran once"
            );
        }
        let committed = detail.timeline.iter().filter(|e| e.outcome != "failed").count();
        assert_eq!(committed, 3, "{key}: {:?}", detail.timeline);
    }
}
}

on_each_backend! {
#[tokio::test]
async fn exit_when_idle_waits_for_retries_but_not_for_delays(env) {
    let host = Arc::new(env.host().await);
    let path = env.scripted(
        "flaky",
        "max_attempts = 3",
        &[("a", "backoff = \"300ms\"\nmax_backoff = \"300ms\"")],
    );
    host.register(&path).await.expect("register");
    // Fails its first attempt, then waits 300 ms before it may run again.
    let args = json!({ "script": { "a": { "fail": "retryable", "fail_attempts": 1 } } });
    host.enqueue(
        RunRequest::new("flaky", args).with_key("retried"),
        Duration::ZERO,
        "default",
    )
    .await
    .expect("enqueue");
    // A run delayed by an hour is not work this pass waits for.
    host.enqueue(
        RunRequest::new("flaky", json!({})).with_key("later"),
        Duration::from_secs(3600),
        "default",
    )
    .await
    .expect("enqueue");
    let options = WorkerOptions {
        exit_when_idle: true,
        poll: Duration::from_millis(20),
        ..WorkerOptions::default()
    };
    let summary = tokio::time::timeout(Duration::from_secs(30), host.work(options, std::future::pending()))
        .await
        .expect("the worker exits")
        .expect("work");
    let retried = host.show("retried", Some("flaky")).await.expect("show");
    assert_eq!(retried.run.status, RunStatus::Succeeded, "{summary:?}");
    let later = host.show("later", Some("flaky")).await.expect("show");
    assert_eq!(later.run.status, RunStatus::Pending);
}
}

//! Hostile guests: a loop, a memory hog and a trap end as recorded errors of
//! the right kind, with nothing of the step committed and the host still serving.

use acidic::{RunRequest, RunStatus};
use serde_json::json;

use crate::harness::Env;

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

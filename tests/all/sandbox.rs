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

//! Awaits (fan-out / fan-in): a parent step waits for the runs it staged as
//! awaited, resumes exactly once after the last one succeeds, and a child that
//! fails for good fails the parent's step, whose retry re-runs only that child.

use std::sync::Arc;
use std::time::Duration;

use acidic::{Host, RunRequest, RunStatus, WorkerOptions};
use serde_json::{Value, json};

use crate::harness::{Env, on_each_backend, root};

async fn setup(env: &Env, host: &Host, parent_attempts: u32) {
    let defaults = format!("max_attempts = {parent_attempts}");
    let parent = env.scripted("parent", &defaults, &[("fan_out", ""), ("join", "")]);
    host.register(&parent).await.expect("register parent");
    let child = env.scripted("child", "max_attempts = 1", &[("only", "")]);
    host.register(&child).await.expect("register child");
}

fn child(key: &str, script: Value) -> Value {
    json!({ "workflow": "child", "key": key, "await": true, "args": { "script": { "only": script } } })
}

async fn drain(host: &Arc<Host>) {
    let options = WorkerOptions {
        exit_when_idle: true,
        concurrency: 4,
        poll: Duration::from_millis(5),
        ..WorkerOptions::default()
    };
    host.work(options, std::future::pending())
        .await
        .expect("work");
}

fn outcomes(host_timeline: &[acidic::StepEvent], step: &str) -> Vec<String> {
    host_timeline
        .iter()
        .filter(|e| e.step == step)
        .map(|e| e.outcome.clone())
        .collect()
}

on_each_backend! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parent_resumes_exactly_once_after_its_last_child(env) {
    let host = Arc::new(env.host().await);
    setup(&env, &host, 3).await;
    let kids: Vec<Value> = (0..3)
        .map(|i| child(&format!("kid-{i}"), json!({ "sleep_ms": 50, "finish": i })))
        .collect();
    let args = json!({ "script": {
        "fan_out": { "stage": kids },
        "join": { "count": true, "children_into": "results" }
    }});
    let report = host
        .run(RunRequest::new("parent", args).with_key("p"))
        .await
        .expect("run");
    assert_eq!(report.status, RunStatus::Waiting);
    assert_eq!(report.recovery_point, "fan_out");

    drain(&host).await;
    let detail = host.show("p", Some("parent")).await.expect("show");
    assert_eq!(detail.run.status, RunStatus::Succeeded);
    assert_eq!(
        detail.run.attributes.get("calls_join"),
        Some(&json!(1)),
        "join ran once"
    );
    assert_eq!(
        detail.run.attributes.get("results"),
        Some(&json!([0, 1, 2]))
    );
    assert_eq!(
        outcomes(&detail.timeline, "fan_out"),
        vec!["awaiting", "children_done"]
    );
    assert_eq!(outcomes(&detail.timeline, "join"), vec!["finished"]);
}
}

on_each_backend! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_child_fails_the_parent_step_and_the_retry_reruns_only_it(env) {
    let host = Arc::new(env.host().await);
    setup(&env, &host, 3).await;
    let kids = vec![
        child("ok-1", json!({ "count": true, "finish": 1 })),
        child(
            "flaky",
            json!({ "count": true, "fail": "fatal", "fail_attempts": 1, "finish": 2 }),
        ),
        child("ok-3", json!({ "count": true, "finish": 3 })),
    ];
    let args = json!({ "script": { "fan_out": { "stage": kids }, "join": { "children_into": "results" } } });
    host.run(RunRequest::new("parent", args).with_key("p"))
        .await
        .expect("run");
    drain(&host).await;

    let detail = host.show("p", Some("parent")).await.expect("show");
    assert_eq!(
        detail.run.status,
        RunStatus::Succeeded,
        "{:?}",
        detail.run.last_error
    );
    assert_eq!(
        outcomes(&detail.timeline, "fan_out"),
        vec!["awaiting", "failed", "awaiting", "children_done"],
        "the child's failure failed the step; the retry waited again"
    );
    let failure = detail
        .timeline
        .iter()
        .find(|e| e.outcome == "failed")
        .expect("failure");
    assert_eq!(failure.error_kind.as_deref(), Some("child_failed"));
    assert!(failure.message.as_deref().unwrap_or("").contains("flaky"));
    assert_eq!(
        detail.run.attributes.get("results"),
        Some(&json!([1, 2, 3]))
    );

    for (key, calls) in [("ok-1", 1), ("ok-3", 1), ("flaky", 2)] {
        let kid = host.show(key, Some("child")).await.expect("child");
        assert_eq!(kid.run.status, RunStatus::Succeeded, "{key}");
        assert_eq!(
            kid.timeline.len(),
            calls,
            "{key} ran {calls} time(s): {:?}",
            kid.timeline
        );
    }
    let runs = host
        .runs(&acidic::RunFilter::default())
        .await
        .expect("list");
    assert_eq!(runs.len(), 4, "no child was duplicated");
}
}

on_each_backend! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_out_of_attempts_fails_when_its_child_fails(env) {
    let host = Arc::new(env.host().await);
    setup(&env, &host, 1).await;
    let args = json!({ "script": { "fan_out": { "stage": [child("doomed", json!({ "fail": "fatal" }))] } } });
    host.run(RunRequest::new("parent", args).with_key("p"))
        .await
        .expect("run");
    drain(&host).await;
    let run = host.find("p", Some("parent")).await.expect("find");
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.last_error.map(|e| e.kind), Some("child_failed".into()));
}
}

on_each_backend! {
#[test]
fn the_order_example_fans_out_and_joins_with_follow(env) {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_acidic"))
            .args(args)
            .current_dir(root())
            .env("DATABASE_URL", env.db())
            .env("ACIDIC_CACHE_DIR", env.dir.path().join("cache"))
            .output()
            .expect("acidic")
    };
    let out = run(&[
        "register",
        "guest-examples/rust/order/workflow.toml",
        "guest-examples/rust/order/charge-item.toml",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let items =
        r#"{"items":[{"sku":"a","cents":100},{"sku":"b","cents":250},{"sku":"c","cents":5}]}"#;
    let out = run(&["run", "order", "--key", "o1", "--follow", "--args", items]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("json result");
    assert_eq!(result["total_cents"], json!(355));
    assert_eq!(result["items"], json!(3));

    // Without --follow the order waits (exit 6) until a worker runs the charges.
    let out = run(&["run", "order", "--key", "o2", "--args", items]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["worker", "--exit-when-idle"]);
    assert!(out.status.success());
    let out = run(&[
        "runs",
        "show",
        "o2",
        "--workflow",
        "order",
        "--wait",
        "--timeout",
        "10s",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("json result");
    assert_eq!(result["total_cents"], json!(355));
}
}

on_each_backend! {
/// The results of the runs a step awaited count against that step's memory
/// budget when it reads them: over it, the step fails as `memory_limit`
/// (the store stops reading at the budget), and the children stand as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_childrens_results_is_within_the_steps_memory_budget(env) {
    let host = Arc::new(env.host().await);
    let parent = env.scripted(
        "parent",
        "max_attempts = 1",
        &[("fan_out", ""), ("join", "memory = \"8MiB\"")],
    );
    host.register(&parent).await.expect("register parent");
    let child_manifest = env.scripted("child", "max_attempts = 1", &[("only", "")]);
    host.register(&child_manifest).await.expect("register child");
    // Twelve results of 900 KB: about 10.5 MiB, over the join's 8 MiB.
    let kids: Vec<Value> = (0..12)
        .map(|i| child(&format!("fat-{i}"), json!({ "finish_padding": 900 << 10 })))
        .collect();
    let args = json!({ "script": {
        "fan_out": { "stage": kids },
        "join": { "children_into": "results" }
    }});
    host.run(RunRequest::new("parent", args).with_key("p"))
        .await
        .expect("run");
    drain(&host).await;

    let detail = host.show("p", Some("parent")).await.expect("show");
    assert_eq!(detail.run.status, RunStatus::Failed, "{:?}", detail.run.last_error);
    let error = detail.run.last_error.clone().expect("an error");
    assert_eq!(error.kind, "memory_limit", "{}", error.message);
    assert!(error.message.contains("staged runs' results"), "{}", error.message);
    assert!(!detail.run.attributes.contains_key("results"), "nothing of join committed");
    for i in 0..12 {
        let kid = host.show(&format!("fat-{i}"), Some("child")).await.expect("child");
        assert_eq!(kid.run.status, RunStatus::Succeeded, "fat-{i}");
    }
}
}

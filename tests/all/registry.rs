//! Registration: versions pinned by runs, content-addressed components, and
//! the compiled-component cache.

use std::sync::atomic::Ordering;

use acidic::{RunRequest, RunStatus};
use serde_json::json;

use crate::harness::Env;
use crate::harness::on_each_backend;

on_each_backend! {
#[tokio::test]
async fn runs_finish_on_the_version_they_started_with(env) {
    let host = env.host().await;
    let v1 = env.scripted("w", "max_attempts = 3", &[("a", ""), ("b", "")]);
    let r1 = host.register(&v1).await.expect("register v1");
    assert_eq!((r1.version, r1.new), (1, true));
    assert!(
        !host.register(&v1).await.expect("again").new,
        "an unchanged manifest is not a new version"
    );

    let args = json!({ "script": { "b": { "fail": "retryable", "fail_attempts": 1 } } });
    let first = host
        .run(RunRequest::new("w", args.clone()).with_key("k"))
        .await
        .expect("run");
    assert_eq!(
        (first.status, first.workflow_version),
        (RunStatus::Pending, 1)
    );

    let v2 = env.scripted("w", "max_attempts = 3", &[("a", ""), ("b", ""), ("c", "")]);
    assert_eq!(host.register(&v2).await.expect("register v2").version, 2);

    let resumed = host
        .run(RunRequest::new("w", args).with_key("k"))
        .await
        .expect("resume");
    assert_eq!(
        (
            resumed.status,
            resumed.workflow_version,
            resumed.steps_committed
        ),
        (RunStatus::Succeeded, 1, 1)
    );
    let fresh = host
        .run(RunRequest::new("w", json!({})))
        .await
        .expect("new run");
    assert_eq!((fresh.workflow_version, fresh.steps_committed), (2, 3));
}
}

on_each_backend! {
#[tokio::test]
async fn a_second_process_loads_compiled_components_from_the_cache(env) {
    {
        let host = env.host().await;
        let path = env.scripted("w", "", &[("a", "")]);
        host.register(&path).await.expect("register");
        assert_eq!(host.metrics().compiles.load(Ordering::Relaxed), 1);
    }
    let host = env.host().await;
    let report = host
        .run(RunRequest::new("w", json!({})))
        .await
        .expect("run");
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(
        host.metrics().compiles.load(Ordering::Relaxed),
        0,
        "nothing recompiled"
    );
    assert_eq!(host.metrics().cache_loads.load(Ordering::Relaxed), 1);
}
}

#[tokio::test]
async fn the_database_alone_is_enough_to_run() {
    // Components live in the database: a run works after the files and the
    // cache are gone (a new machine sharing the database).
    let env = Env::new();
    let dir = tempfile::tempdir().expect("dir");
    let wasm = dir.path().join("step.wasm");
    std::fs::copy(crate::harness::component("scripted"), &wasm).expect("copy");
    let manifest = dir.path().join("w.toml");
    std::fs::write(
        &manifest,
        "name = \"w\"\n[[step]]\nname = \"a\"\ncomponent = \"step.wasm\"\n",
    )
    .expect("write");
    env.host()
        .await
        .register(&manifest)
        .await
        .expect("register");
    drop(dir);
    std::fs::remove_dir_all(env.dir.path().join("cache")).expect("clear cache");

    let host = env.host().await;
    let report = host
        .run(RunRequest::new("w", json!({})))
        .await
        .expect("run");
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(host.metrics().compiles.load(Ordering::Relaxed), 1);
}

//! One test per guarantee of DESIGN.md §4 (1–4, 6, 7), each able to fail.

use std::time::Duration;

use acidic::run::{CommitOutcome, Lease, NewRun, StartOutcome, StepCommit, StepEnd, derived_key};
use acidic::store::Store;
use acidic::{Error, Host, RunFilter, RunRequest, RunStatus};
use serde_json::{Value, json};

use crate::harness::{Env, instances, on_each_backend};

async fn three_steps(env: &Env, host: &Host) {
    let path = env.scripted("w", "max_attempts = 3", &[("a", ""), ("b", ""), ("c", "")]);
    host.register(&path).await.expect("register");
    let path = env.scripted("child", "", &[("only", "")]);
    host.register(&path).await.expect("register child");
}

fn script(s: Value) -> Value {
    json!({ "script": s })
}

on_each_backend! {
/// §4.1 Atomic step: a step that writes attributes and stages a run, then
/// fails, leaves no trace of either.
#[tokio::test]
async fn atomic_step_failure_leaves_no_trace(env) {
    let host = env.host().await;
    three_steps(&env, &host).await;
    let args = script(json!({
        "a": { "set": { "x": 1 } },
        "b": { "set": { "y": 2 }, "stage": [{ "workflow": "child", "args": {}, "key": "kid" }], "fail": "fatal" }
    }));
    let report = host
        .run(RunRequest::new("w", args).with_key("k"))
        .await
        .expect("run");
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.recovery_point, "b");

    let run = host.find("k", None).await.expect("find");
    assert_eq!(run.attributes.get("x"), Some(&json!(1)), "step a committed");
    assert_eq!(
        run.attributes.get("y"),
        None,
        "step b's attribute write was rolled back"
    );
    assert!(
        matches!(host.find("kid", None).await, Err(Error::RunNotFound(_))),
        "step b's staged run was rolled back"
    );
    let error = run.last_error.expect("error recorded");
    assert_eq!(
        (error.step.as_str(), error.kind.as_str(), error.attempt),
        ("b", "guest", 1)
    );
}
}

on_each_backend! {
/// §4.2 Resume, never repeat: a retry after a failure in step 2 starts at
/// step 2; step 1 is not instantiated again.
#[tokio::test]
async fn resume_never_repeats_a_committed_step(env) {
    let host = env.host().await;
    three_steps(&env, &host).await;
    let args = script(json!({
        "a": { "count": true },
        "b": { "count": true, "fail": "retryable", "fail_attempts": 1 },
        "c": { "count": true }
    }));
    let first = host
        .run(RunRequest::new("w", args.clone()))
        .await
        .expect("run");
    assert_eq!(
        first.status,
        RunStatus::Pending,
        "a retryable failure leaves the run pending"
    );
    assert_eq!(
        (first.recovery_point.as_str(), first.steps_committed),
        ("b", 1)
    );
    assert_eq!(instances(&host), 2, "a and b were called");

    // A retry by the caller: same workflow, same args, same (derived) key.
    let second = host.run(RunRequest::new("w", args)).await.expect("retry");
    assert_eq!(second.status, RunStatus::Succeeded);
    assert_eq!(
        second.steps_committed, 2,
        "b and c committed; a did not run again"
    );
    assert_eq!(
        instances(&host),
        4,
        "only b and c were instantiated on the retry"
    );

    let detail = host.show(&first.key, None).await.expect("show");
    assert_eq!(detail.run.attributes.get("calls_a"), Some(&json!(1)));
    assert_eq!(
        detail.run.attributes.get("calls_b"),
        Some(&json!(1)),
        "the failed call's increment was rolled back"
    );
    let committed_a = detail
        .timeline
        .iter()
        .filter(|e| e.step == "a" && e.outcome != "failed")
        .count();
    assert_eq!(committed_a, 1);
    let b_attempts: Vec<u32> = detail
        .timeline
        .iter()
        .filter(|e| e.step == "b")
        .map(|e| e.attempt)
        .collect();
    assert_eq!(b_attempts, vec![1, 2]);
}
}

on_each_backend! {
/// §4.3 One key, one run: a finished key returns its stored result without
/// instantiating anything.
#[tokio::test]
async fn finished_key_replays_without_running(env) {
    let host = env.host().await;
    three_steps(&env, &host).await;
    let args = script(json!({ "c": { "finish": { "total": 42 } } }));
    let first = host
        .run(RunRequest::new("w", args.clone()).with_key("order-1"))
        .await
        .expect("run");
    assert_eq!(first.result, Some(json!({ "total": 42 })));
    assert!(!first.replayed);
    let made = instances(&host);

    let again = host
        .run(RunRequest::new("w", args).with_key("order-1"))
        .await
        .expect("replay");
    assert!(again.replayed);
    assert_eq!(again.result, Some(json!({ "total": 42 })));
    assert_eq!(again.run_id, first.run_id);
    assert_eq!(instances(&host), made, "a replay instantiates nothing");
    assert_eq!(
        host.runs(&RunFilter::default()).await.expect("list").len(),
        1
    );
}
}

on_each_backend! {
/// §4.3 One key, one run: the same key with other args is refused and runs nothing.
#[tokio::test]
async fn args_mismatch_is_refused_and_runs_nothing(env) {
    let host = env.host().await;
    three_steps(&env, &host).await;
    host.run(RunRequest::new("w", json!({ "amount": 1 })).with_key("pay-1"))
        .await
        .expect("run");
    let made = instances(&host);
    let err = host
        .run(RunRequest::new("w", json!({ "amount": 2 })).with_key("pay-1"))
        .await
        .expect_err("mismatch");
    assert!(matches!(err, Error::ArgsMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("pay-1"),
        "the error names the key: {err}"
    );
    assert_eq!(instances(&host), made);
    let err = host
        .enqueue(
            RunRequest::new("w", json!({ "amount": 3 })).with_key("pay-1"),
            Duration::ZERO,
            "default",
        )
        .await;
    assert!(matches!(err, Err(Error::ArgsMismatch { .. })));
    assert_eq!(
        host.runs(&RunFilter::default()).await.expect("list").len(),
        1
    );
}
}

on_each_backend! {
/// §4.4 Mutual exclusion: while one worker is inside a step, a second one
/// gets the locked error and runs nothing.
#[tokio::test]
async fn live_lease_refuses_a_second_worker(env) {
    let first = env.host().await;
    let path = env.scripted(
        "slow",
        "max_attempts = 1\ntimeout = \"1500ms\"",
        &[("spin", "")],
    );
    first.register(&path).await.expect("register");
    let args = script(json!({ "spin": { "spin": true } }));
    let running = tokio::spawn({
        let args = args.clone();
        async move {
            first
                .run(RunRequest::new("slow", args).with_key("busy"))
                .await
        }
    });

    let second = env.host().await;
    let mut seen_running = false;
    for _ in 0..200 {
        if let Ok(run) = second.find("busy", None).await
            && run.status == RunStatus::Running
        {
            seen_running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(seen_running, "the first worker never got inside the step");
    let err = second
        .run(RunRequest::new("slow", args).with_key("busy"))
        .await
        .expect_err("locked");
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert_eq!(instances(&second), 0);

    let report = running.await.expect("join").expect("first run");
    assert_eq!(report.error.map(|e| e.kind), Some("timeout".to_string()));
}
}

/// A run as a worker would create it, for tests that play a worker by hand.
async fn new_run(host: &Host, workflow: &str, key: &str, args: Value) -> NewRun {
    let w = host.workflow(workflow).await.expect("workflow");
    NewRun {
        workflow: workflow.into(),
        workflow_version: w.version,
        definition_hash: w.hash.clone(),
        first_step: w.definition.first_step().into(),
        attributes: w.definition.attributes.clone(),
        key: key.into(),
        args,
        delay: Duration::ZERO,
        queue: "default".into(),
        parent_run_id: None,
        depth: 0,
        awaited: false,
    }
}

on_each_backend! {
/// §4.4 An expired lease (its worker died) may be taken over.
#[tokio::test]
async fn expired_lease_is_taken_over(env) {
    let host = env.host().await;
    three_steps(&env, &host).await;
    let store = Store::open(&env.db()).await.expect("store");
    let dead = Lease::new("dead-worker", Duration::from_millis(1));
    let new = new_run(&host, "w", "orphan", json!({})).await;
    assert!(matches!(
        store.start_run(&new, &dead).await.expect("claim"),
        StartOutcome::Claimed(_)
    ));
    tokio::time::sleep(Duration::from_millis(10)).await;

    let report = host
        .run(RunRequest::new("w", json!({})).with_key("orphan"))
        .await
        .expect("take over");
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(report.steps_committed, 3);
}
}

on_each_backend! {
/// §4.4 A worker that lost its lease cannot commit a step: the commit is fenced.
#[tokio::test]
async fn worker_that_lost_its_lease_cannot_commit(env) {
    let host = env.host().await;
    three_steps(&env, &host).await;
    let store = Store::open(&env.db()).await.expect("store");
    let old = Lease::new("slow-worker", Duration::from_millis(1));
    let new = new_run(&host, "w", "contested", json!({})).await;
    let StartOutcome::Claimed(run) = store.start_run(&new, &old).await.expect("claim") else {
        panic!("not claimed");
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    let fresh = Lease::new("new-worker", Duration::from_secs(60));
    assert!(matches!(
        store.claim(run.id, &fresh).await.expect("take over"),
        StartOutcome::Claimed(_)
    ));

    let mut attributes = run.attributes.clone();
    attributes.insert("stale".into(), json!(true));
    let commit = |lease: &Lease| StepCommit {
        run_id: run.id,
        lease: lease.clone(),
        step: "a".into(),
        attempt: 1,
        end: StepEnd::Advance {
            next: "b".into(),
            result: None,
        },
        attributes: attributes.clone(),
        staged: vec![new_run_blocking_child(&new)],
        started_at: 0,
        logs: None,
        http_status: None,
    };
    assert_eq!(
        store.commit_step(&commit(&old)).await.expect("commit"),
        CommitOutcome::LeaseLost
    );
    let after = store.run(run.id).await.expect("read").expect("run");
    assert_eq!(
        after.recovery_point, "a",
        "the stale worker did not move the run"
    );
    assert!(!after.attributes.contains_key("stale"));
    assert!(
        store
            .runs_by_key("child-of-contested", None)
            .await
            .expect("read")
            .is_empty()
    );

    assert_eq!(
        store.commit_step(&commit(&fresh)).await.expect("commit"),
        CommitOutcome::Committed
    );
    let after = store.run(run.id).await.expect("read").expect("run");
    assert_eq!(after.recovery_point, "b");
    assert_eq!(
        store
            .runs_by_key("child-of-contested", None)
            .await
            .expect("read")
            .len(),
        1
    );
}
}

fn new_run_blocking_child(parent: &NewRun) -> NewRun {
    NewRun {
        key: "child-of-contested".into(),
        parent_run_id: None,
        ..parent.clone()
    }
}

on_each_backend! {
/// §4.6 Transactional enqueue: a staged run exists only once its step
/// committed, exactly once, pending and linked to its parent.
#[tokio::test]
async fn staged_run_exists_only_if_its_step_committed(env) {
    let host = env.host().await;
    three_steps(&env, &host).await;
    let args = script(json!({
        "a": { "stage": [{ "workflow": "child", "args": { "n": 1 } }], "fail": "retryable", "fail_attempts": 1 }
    }));
    let child_key = derived_key("child", &json!({ "n": 1 }));

    let first = host
        .run(RunRequest::new("w", args.clone()).with_key("parent"))
        .await
        .expect("run");
    assert_eq!(first.status, RunStatus::Pending);
    assert!(first.staged.is_empty());
    assert!(
        matches!(
            host.find(&child_key, None).await,
            Err(Error::RunNotFound(_))
        ),
        "rolled back with its step"
    );

    let second = host
        .run(RunRequest::new("w", args).with_key("parent"))
        .await
        .expect("retry");
    assert_eq!(second.status, RunStatus::Succeeded);
    assert_eq!(second.staged.len(), 1);
    let child = host
        .find(&child_key, Some("child"))
        .await
        .expect("staged run exists");
    assert_eq!(child.status, RunStatus::Pending);
    assert_eq!(child.parent_run_id, Some(first.run_id));

    let followed = host.run_staged(&second).await.expect("follow");
    assert_eq!(followed.len(), 1);
    assert_eq!(followed[0].status, RunStatus::Succeeded);
}
}

on_each_backend! {
/// §4.6 Staging a key that exists with other args fails the step; nothing commits.
#[tokio::test]
async fn staged_key_conflict_fails_the_step(env) {
    let host = env.host().await;
    three_steps(&env, &host).await;
    host.enqueue(
        RunRequest::new("child", json!({ "n": 1 })).with_key("taken"),
        Duration::ZERO,
        "default",
    )
    .await
    .expect("enqueue");
    let args = script(json!({
        "a": { "set": { "x": 1 }, "stage": [{ "workflow": "child", "args": { "n": 2 }, "key": "taken" }] }
    }));
    let report = host
        .run(RunRequest::new("w", args).with_key("p"))
        .await
        .expect("run");
    assert_eq!(report.status, RunStatus::Failed);
    let error = report.error.expect("error");
    assert_eq!(error.kind, "invalid_output");
    assert!(error.message.contains("taken"), "{}", error.message);
    assert!(
        !host
            .find("p", None)
            .await
            .expect("run")
            .attributes
            .contains_key("x")
    );
}
}

on_each_backend! {
/// §4.7 Nothing lost: a trap is a recorded, retryable error with the lease
/// released, not a crash; the same host serves the next run.
#[tokio::test]
async fn trap_is_recorded_and_the_run_stays_resumable(env) {
    let host = env.host().await;
    three_steps(&env, &host).await;
    let report = host
        .run(RunRequest::new("w", script(json!({ "b": { "trap": true } }))).with_key("t"))
        .await
        .expect("run");
    assert_eq!(report.status, RunStatus::Pending);
    let error = report.error.expect("error recorded");
    assert_eq!((error.step.as_str(), error.kind.as_str()), ("b", "trap"));
    assert!(
        error.message.contains("trapped (scripted)") || error.message.contains("unreachable"),
        "{}",
        error.message
    );

    let run = host.find("t", None).await.expect("find");
    assert_eq!(run.locked_by, None, "lease released");
    assert_eq!(run.recovery_point, "b");
    assert_eq!(run.last_error.map(|e| e.kind), Some("trap".into()));

    let ok = host
        .run(RunRequest::new("w", json!({})))
        .await
        .expect("next run");
    assert_eq!(ok.status, RunStatus::Succeeded);
}
}

on_each_backend! {
/// §4.7 Attempts are bounded: a step that keeps failing ends the run as
/// failed after `max_attempts`, and `retry` resumes it at that step.
#[tokio::test]
async fn exhausted_attempts_fail_the_run_and_retry_resumes(env) {
    let host = env.host().await;
    three_steps(&env, &host).await;
    let args =
        script(json!({ "a": { "count": true }, "b": { "fail": "retryable", "fail_attempts": 3 } }));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            host.run(RunRequest::new("w", args.clone()).with_key("r"))
                .await
                .expect("run")
                .status,
        );
    }
    assert_eq!(
        statuses,
        vec![RunStatus::Pending, RunStatus::Pending, RunStatus::Failed]
    );
    let replay = host
        .run(RunRequest::new("w", args).with_key("r"))
        .await
        .expect("replay");
    assert!(replay.replayed, "a failed run is not re-run by `run`");
    assert_eq!(replay.status, RunStatus::Failed);

    let retried = host.retry("r", None).await.expect("retry");
    assert_eq!(
        retried.status,
        RunStatus::Succeeded,
        "attempt 4 passes the script's fail_attempts"
    );
    let run = host.find("r", None).await.expect("find");
    assert_eq!(run.attributes.get("calls_a"), Some(&json!(1)));
}
}

on_each_backend! {
/// §4.5 Isolation: concurrent steps that read a row and then write it behave
/// as if they ran one after another. Each step records the counter it saw,
/// then increments it; under SERIALIZABLE (Postgres, where a collision is a
/// serialization failure and the step runs again) or `BEGIN IMMEDIATE`
/// (SQLite) every step saw a different count. Under READ COMMITTED two would
/// see the same one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_concurrent_steps_read_and_write_serializably(env) {
    let host = std::sync::Arc::new(env.host().await);
    let counter = env.app_table("counter", "id BIGINT PRIMARY KEY, n BIGINT NOT NULL");
    let seen = env.app_table("seen_log", "seen BIGINT NOT NULL");
    env.app_sql(&format!("INSERT INTO {counter} (id, n) VALUES (1, 0)"));
    let path = env.scripted(
        "tick",
        "max_attempts = 100",
        &[("tick", "sql = \"read-write\"")],
    );
    host.register(&path).await.expect("register");
    const RUNS: i64 = 12;
    let mut runs = Vec::new();
    for i in 0..RUNS {
        let host = host.clone();
        let args = json!({ "script": { "tick": { "sql": [
            { "execute": format!("INSERT INTO {seen} (seen) SELECT n FROM {counter} WHERE id = 1") },
            { "execute": format!("UPDATE {counter} SET n = n + 1 WHERE id = 1") },
        ] } }, "i": i });
        runs.push(tokio::spawn(async move {
            let mut report = host.run(RunRequest::new("tick", args)).await.expect("run");
            // A step that collided is pending again: run it until it commits.
            while report.status == RunStatus::Pending {
                tokio::time::sleep(Duration::from_millis(5)).await;
                report = host.retry(&report.key, Some("tick")).await.expect("retry");
            }
            report
        }));
    }
    for run in runs {
        let report = run.await.expect("task");
        assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    }
    assert_eq!(env.app_count(&counter, &format!("n = {RUNS}")), 1, "every increment counted");
    let distinct = env.app_sql(&format!("SELECT CAST(count(DISTINCT seen) AS TEXT) FROM {seen}"));
    assert_eq!(distinct, vec![RUNS.to_string()], "each step saw its own count");
    assert_eq!(env.app_count(&seen, "TRUE"), RUNS, "each step wrote once");
}
}

on_each_backend! {
/// A migration that was changed after a database applied it is refused at
/// start, naming it: the schema is not what this binary expects.
#[tokio::test]
async fn a_changed_applied_migration_is_refused_at_start(env) {
    drop(env.host().await);
    let table = match env.engine_schema() {
        Some(schema) => format!("\"{schema}\"._acidic_migrations"),
        None => "_acidic_migrations".to_string(),
    };
    let tamper = format!("UPDATE {table} SET checksum = 'edited' WHERE version = 1");
    match env.backend {
        crate::harness::Backend::Postgres => {
            crate::harness::postgres(&[&tamper]).expect("tamper");
        }
        crate::harness::Backend::Sqlite => {
            env.app_sql(&tamper);
        }
    }
    match Host::open(env.config()).await {
        Err(Error::MigrationChanged { version: 1, name }) => assert_eq!(name, "init"),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a changed migration was accepted"),
    }
}
}

on_each_backend! {
/// Eight runs at once each read and bump one row, then hold their
/// transaction open: on Postgres they collide (SERIALIZABLE fails all but
/// one), on SQLite the one writer queues them. Each step has one attempt,
/// yet every run succeeds and the row counts each step once: a conflict is
/// tried again without using an attempt, and leaves no failure behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_are_tried_again_without_using_an_attempt(env) {
    const RUNS: usize = 8;
    let host = std::sync::Arc::new(env.host().await);
    let counter = env.app_table("counter", "id BIGINT PRIMARY KEY, n BIGINT NOT NULL");
    env.app_sql(&format!("INSERT INTO {counter} (id, n) VALUES (1, 0)"));
    let path = env.scripted(
        "bump",
        "max_attempts = 1\ntimeout = \"20s\"",
        &[("bump", "sql = \"read-write\"")],
    );
    host.register(&path).await.expect("register");
    let step = json!({
        "sql": [
            { "query": format!("SELECT n FROM {counter} WHERE id = 1"), "params": [], "into": "seen" },
            { "execute": format!("UPDATE {counter} SET n = n + 1 WHERE id = 1"), "params": [] },
        ],
        "sleep_ms": 30,
    });
    let tasks: Vec<_> = (0..RUNS)
        .map(|i| {
            let host = host.clone();
            let args = json!({ "script": { "bump": step.clone() }, "i": i });
            tokio::spawn(async move {
                host.run(RunRequest::new("bump", args).with_key(format!("bump-{i}")))
                    .await
            })
        })
        .collect();
    for task in tasks {
        let report = task.await.expect("task").expect("run");
        assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    }
    assert_eq!(env.app_count(&counter, "n = 8"), 1, "each step bumped the row once");
    for i in 0..RUNS {
        let shown = host.show(&format!("bump-{i}"), None).await.expect("show");
        let outcomes: Vec<_> = shown.timeline.iter().map(|e| e.outcome.as_str()).collect();
        assert_eq!(outcomes, ["finished"], "no failure recorded: {outcomes:?}");
    }
    let metrics = host.telemetry().encode(host.store()).await.expect("metrics");
    if env.backend == crate::harness::Backend::Postgres {
        assert!(
            metrics.contains("outcome=\"conflict\""),
            "the runs did collide: {metrics}"
        );
    }
}
}

/// A cancel asked for while a step keeps losing conflicts takes effect at
/// the step's next try, not after the conflict window: the run ends
/// cancelled, with no hand-back recorded. (Postgres: a trigger makes every
/// insert fail as a serialization failure would.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_ends_a_run_that_keeps_conflicting() {
    let env = Env::on(crate::harness::Backend::Postgres);
    let host = std::sync::Arc::new(env.host().await);
    let table = env.app_table("contested", "id BIGINT");
    env.app_sql(
        "CREATE FUNCTION always_conflicts() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'made to conflict' USING ERRCODE = '40001'; END $$",
    );
    env.app_sql(&format!(
        "CREATE TRIGGER always_conflicts BEFORE INSERT ON {table} \
         FOR EACH ROW EXECUTE FUNCTION always_conflicts()"
    ));
    let path = env.scripted(
        "contested",
        "timeout = \"20s\"",
        &[("only", "sql = \"read-write\"")],
    );
    host.register(&path).await.expect("register");
    let step = json!({
        "sql": [{ "execute": format!("INSERT INTO {table} (id) VALUES (1)"), "params": [] }],
    });
    let running = {
        let host = host.clone();
        tokio::spawn(async move {
            host.run(RunRequest::new("contested", script(json!({ "only": step }))).with_key("c-1"))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let asked = host
        .cancel("c-1", Some("contested"), "operator")
        .await
        .expect("cancel");
    assert!(
        matches!(asked, acidic::Cancellation::Requested { .. }),
        "the run was inside its step: {asked:?}"
    );
    let report = running.await.expect("task").expect("run");
    assert_eq!(report.status, RunStatus::Cancelled, "{:?}", report.error);
    let shown = host.show("c-1", Some("contested")).await.expect("show");
    assert!(
        shown
            .timeline
            .iter()
            .all(|e| e.error_kind.as_deref() != Some("conflict")),
        "the run was cancelled before the conflict window ran out: {:?}",
        shown.timeline
    );
    assert_eq!(env.app_count(&table, "TRUE"), 0, "nothing was inserted");
}

/// A host keeps the latest version of a workflow it read; a version another
/// process registers afterwards is still the one a new run starts on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_run_starts_on_a_version_another_process_registered() {
    let env = Env::new();
    let first = env.host().await;
    let path = env.scripted("versioned", "", &[("only", "")]);
    first.register(&path).await.expect("register v1");
    let one = first
        .run(RunRequest::new("versioned", json!({ "n": 1 })))
        .await
        .expect("run on v1");
    assert_eq!(one.status, RunStatus::Succeeded);

    let other = env.host().await;
    let path = env.scripted("versioned", "", &[("only", ""), ("then", "")]);
    let v2 = other.register(&path).await.expect("register v2");
    assert_eq!(v2.version, 2);

    let two = first
        .run(RunRequest::new("versioned", json!({ "n": 2 })))
        .await
        .expect("run on v2");
    let run = first.find(&two.key, Some("versioned")).await.expect("find");
    assert_eq!(
        run.workflow_version, 2,
        "started on the version registered elsewhere"
    );
    let steps: Vec<_> = first
        .show(&two.key, None)
        .await
        .expect("show")
        .timeline
        .iter()
        .map(|e| e.step.clone())
        .collect();
    assert_eq!(steps, ["only", "then"]);
}

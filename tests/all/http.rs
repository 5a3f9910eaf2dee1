//! Outbound HTTP: standard `wasi:http`, only to the hosts a step's manifest
//! allows, with the step key as the idempotency key of the foreign API.

use acidic::{RunRequest, RunStatus};
use serde_json::json;

use crate::harness::{Env, FakePayments};

/// The charge step, allowed to call `allowed` (an allow-list TOML array body).
fn charge_workflow(env: &Env, name: &str, allowed: &str) -> std::path::PathBuf {
    env.workflow(
        "charge",
        name,
        "max_attempts = 3",
        &[("charge", &format!("allowed_outbound_hosts = [{allowed}]"))],
    )
}

/// rocket-rides' charge: the step key is the idempotency key, so a retry
/// after a charge whose answer was lost charges nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_api_is_called_with_the_step_key_and_charges_once() {
    let env = Env::new();
    let host = env.host().await;
    let api = FakePayments::start();
    let path = charge_workflow(&env, "pay", &format!("\"{}\"", api.url()));
    host.register(&path).await.expect("register");
    let args = json!({ "api": api.url(), "cents": 1250, "fail_after_charge": 1 });
    let first = host
        .run(RunRequest::new("pay", args.clone()).with_key("ride-1"))
        .await
        .expect("run");
    assert_eq!(first.status, RunStatus::Pending, "{:?}", first.error);
    assert_eq!((api.requests(), api.charges()), (1, 1));
    let retry = host
        .run(RunRequest::new("pay", args).with_key("ride-1"))
        .await
        .expect("retry");
    assert_eq!(retry.status, RunStatus::Succeeded, "{:?}", retry.error);
    assert_eq!(
        retry.result,
        Some(json!({ "charge_id": "ch_0", "cents": 1250 }))
    );
    assert_eq!(
        (api.requests(), api.charges()),
        (2, 1),
        "the retry called the API again with the same key: one charge"
    );
}

/// A host not on the allow-list is refused before any connection is made;
/// the guest sees the refusal, and the run records `capability_denied`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_not_on_the_allow_list_is_denied() {
    let env = Env::new();
    let host = env.host().await;
    let api = FakePayments::start();
    for (name, allowed) in [
        ("other-port", "\"http://127.0.0.1:9\"".to_string()),
        ("https-only", format!("\"https://{}\"", api.addr)),
        ("nothing", String::new()),
    ] {
        let path = charge_workflow(&env, name, &allowed);
        host.register(&path).await.expect("register");
        let report = host
            .run(RunRequest::new(
                name,
                json!({ "api": api.url(), "cents": 1 }),
            ))
            .await
            .expect("run");
        assert_eq!(report.status, RunStatus::Failed, "{name}: fails for good");
        let error = report.error.expect("error recorded");
        assert_eq!(error.kind, "capability_denied", "{name}: {}", error.message);
        assert!(
            error.message.contains(&format!("http://{}", api.addr)),
            "{name}: the error names the host: {}",
            error.message
        );
        assert_eq!(error.attempt, 1, "{name}: not retried");
    }
    assert_eq!(api.requests(), 0, "no request left the sandbox");
}

//! `acidic serve` as a client meets it: a real server process on 127.0.0.1,
//! a real HTTP client, both backends. Every status of the idempotency
//! contract, byte-identical replays, latching, per-caller scoping, auth,
//! metrics, pagination, and draining on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{
    Env, FakePayments, component, on_each_backend, polyglot_guests, ride_tables, root,
};

/// A running `acidic serve` on a free port of 127.0.0.1, killed when dropped.
struct Server {
    child: Child,
    client: Client,
    /// Its stderr so far (drained as it comes, so the server never blocks on a full pipe).
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl std::ops::Deref for Server {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// An HTTP client of a server, with a bearer token or none.
#[derive(Clone)]
struct Client {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
}

/// What the client got.
struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The problem's `type`, checking the media type.
    fn problem(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}: {}",
            self.status,
            self.body
        );
        let p = self.json();
        assert_eq!(p["status"], self.status, "{}", self.body);
        p["type"].as_str().unwrap_or_default().to_string()
    }
}

fn register(env: &Env, manifest: &std::path::Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_acidic"))
        .arg("register")
        .arg(manifest)
        .current_dir(root())
        .env("DATABASE_URL", env.db())
        .env("ACIDIC_CACHE_DIR", env.dir.path().join("cache"))
        .output()
        .expect("run acidic register");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Server {
    fn start(env: &Env, extra: &[&str]) -> Server {
        Server::try_start(env, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start(env: &Env, extra: &[&str]) -> Result<Server, String> {
        Server::try_start_on(env, "127.0.0.1:0", extra)
    }

    fn try_start_on(env: &Env, listen: &str, extra: &[&str]) -> Result<Server, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_acidic"))
            .args(["serve", "--listen", listen])
            .args(extra)
            .current_dir(root())
            .env("DATABASE_URL", env.db())
            .env("ACIDIC_CACHE_DIR", env.dir.path().join("cache"))
            .env_remove("ACIDIC_TOKENS")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn acidic serve: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            let into = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Ok(mut text) = into.lock()
                        && text.len() < 1 << 20
                    {
                        text.push_str(&line);
                        text.push('\n');
                    }
                }
            });
        }
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let Some(base) = line.trim().strip_prefix("acidic serve: listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            let err = stderr.lock().map(|t| t.clone()).unwrap_or_default();
            return Err(format!("acidic serve did not start: {line}{err}"));
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Ok(Server {
            child,
            stderr,
            client: Client {
                base: base.to_string(),
                agent,
                token: None,
            },
        })
    }

    fn authorized(mut self, token: &str) -> Server {
        self.client.token = Some(token.to_string());
        self
    }

    /// Sends SIGTERM and waits (at most `within`) for the process to exit; its exit status and stderr.
    fn terminate(mut self, within: Duration) -> (std::process::ExitStatus, String) {
        let pid = self.child.id() as i32;
        // SAFETY: signals a child process this test started and still owns.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                std::thread::sleep(Duration::from_millis(100));
                let err = self.stderr.lock().map(|t| t.clone()).unwrap_or_default();
                return (status, err);
            }
            assert!(
                Instant::now() < deadline,
                "acidic serve did not stop within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Client {
    fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Sends a request (with the client's token, and a JSON content type
    /// for a POST that names none); what went wrong if no answer came.
    fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Result<Reply, String> {
        let url = format!("{}{path}", self.base);
        let mut builder = http::Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let body = body.unwrap_or("").to_string();
        if method == "POST"
            && !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder.body(body).map_err(|e| e.to_string())?;
        let mut response = self.agent.run(request).map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| format!("reading the body: {e}"))?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], None)
    }

    /// [`Client::post`], `None` if the server could not be reached.
    fn try_post(
        &self,
        workflow: &str,
        key: &str,
        args: &Value,
        headers: &[(&str, &str)],
    ) -> Option<Reply> {
        let mut all = vec![("idempotency-key", key)];
        all.extend_from_slice(headers);
        let path = format!("/v1/workflows/{workflow}/runs");
        self.try_request("POST", &path, &all, Some(&args.to_string()))
            .ok()
    }

    /// POSTs `args` to `workflow` with `key` (and more headers).
    fn post(&self, workflow: &str, key: &str, args: &Value, headers: &[(&str, &str)]) -> Reply {
        let mut all = vec![("idempotency-key", key)];
        all.extend_from_slice(headers);
        self.request(
            "POST",
            &format!("/v1/workflows/{workflow}/runs"),
            &all,
            Some(&args.to_string()),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A three-step workflow of the scripted guest, registered.
fn scripted(env: &Env) {
    let manifest = env.scripted(
        "trip",
        "max_attempts = 3",
        &[("a", ""), ("b", ""), ("c", "")],
    );
    register(env, &manifest);
}

fn finish(value: Value) -> Value {
    json!({ "script": { "c": { "finish": value } } })
}

on_each_backend! {
/// New key, replay, mismatch, and the refusals of a bad request, each with
/// its status and problem type.
#[test]
fn the_idempotency_contract(env) {
    scripted(&env);
    let server = Server::start(&env, &["--max-body", "4096"]);
    let args = finish(json!({ "ride": 1 }));

    let first = server.post("trip", "ride-1", &args, &[]);
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.header("location"), Some("/v1/runs/trip/ride-1"));
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.header("idempotent-replayed"), None);
    assert_eq!(first.json(), json!({ "ride": 1 }));

    // Same key, same args: the stored answer, byte for byte, nothing run.
    let again = server.post("trip", "ride-1", &args, &[]);
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let run = server.get("/v1/runs/trip/ride-1").json();
    assert_eq!(run["attempts"], 3, "{run}");
    assert_eq!(run["timeline"].as_array().map(Vec::len), Some(3), "{run}");

    // The RFC 8941 quoted form names the same key.
    let quoted = server.post("trip", "\"ride-1\"", &args, &[]);
    assert_eq!(quoted.status, 201);
    assert_eq!(quoted.header("idempotent-replayed"), Some("true"));

    // Same key, other args.
    let other = server.post("trip", "ride-1", &finish(json!({ "ride": 2 })), &[]);
    assert_eq!(other.status, 422, "{}", other.body);
    assert_eq!(other.problem(), "/problems/idempotency-key-mismatch");

    // Keys that are missing or malformed.
    let missing = server.request("POST", "/v1/workflows/trip/runs", &[], Some("{}"));
    assert_eq!(missing.status, 400);
    assert_eq!(missing.problem(), "/problems/invalid-idempotency-key");
    let long = "k".repeat(256);
    for bad in [long.as_str(), "\"\"", "\"open", "tab\there", "\"a\\b\""] {
        let r = server.post("trip", bad, &args, &[]);
        assert_eq!(r.status, 400, "key {bad:?}: {}", r.body);
        assert_eq!(r.problem(), "/problems/invalid-idempotency-key", "{bad:?}");
    }
    let twice = server.request(
        "POST",
        "/v1/workflows/trip/runs",
        &[("idempotency-key", "a"), ("idempotency-key", "b")],
        Some("{}"),
    );
    assert_eq!(twice.status, 400, "{}", twice.body);
    let max = "k".repeat(255);
    assert_eq!(server.post("trip", &max, &args, &[]).status, 201);

    // Unknown workflow, bodies that are not a JSON object, a body too large.
    let unknown = server.post("nope", "k", &json!({}), &[]);
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.problem(), "/problems/unknown-workflow");
    for body in ["[1]", "{\"a\":", "", "null", "\"text\""] {
        let r = server.request("POST", "/v1/workflows/trip/runs", &[("idempotency-key", "b-1")], Some(body));
        assert_eq!(r.status, 400, "body {body:?}: {}", r.body);
        assert_eq!(r.problem(), "/problems/invalid-body");
    }
    let big = json!({ "pad": "x".repeat(5000) }).to_string();
    let r = server.request("POST", "/v1/workflows/trip/runs", &[("idempotency-key", "big")], Some(&big));
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.problem(), "/problems/body-too-large");
    // None of the refused requests made a run.
    let runs = server.get("/v1/runs?limit=50").json();
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(2), "{runs}");

    // Unknown paths and methods are problems too.
    let r = server.get("/v2/nothing");
    assert_eq!(r.status, 404);
    assert_eq!(r.problem(), "/problems/not-found");
    let r = server.request("DELETE", "/v1/runs", &[], None);
    assert_eq!(r.status, 405);
    assert_eq!(r.problem(), "/problems/method-not-allowed");
    // A problem type describes itself.
    let described = server.get("/problems/idempotency-key-mismatch").json();
    assert_eq!(described["status"], 422);
}
}

on_each_backend! {
/// A retryable step failure is a 503 that stores nothing; the retry with the
/// same key resumes at the recovery point (the committed step is not run
/// again). A failed run's 500 is stored and replayed, byte for byte.
#[test]
fn retryable_failures_resume_and_failed_runs_replay(env) {
    scripted(&env);
    let server = Server::start(&env, &["--workers", "0"]);
    let flaky = json!({ "script": {
        "a": { "count": true },
        "b": { "fail": "retryable", "fail_attempts": 1 },
        "c": { "finish": "done" },
    }});
    let first = server.post("trip", "flaky", &flaky, &[]);
    assert_eq!(first.status, 503, "{}", first.body);
    assert_eq!(first.problem(), "/problems/step-failed-retryable");
    assert!(first.header("retry-after").is_some());
    let p = first.json();
    assert_eq!((p["step"].as_str(), p["recovery_point"].as_str()), (Some("b"), Some("b")), "{p}");

    let second = server.post("trip", "flaky", &flaky, &[]);
    assert_eq!(second.status, 201, "{}", second.body);
    assert_eq!(second.header("idempotent-replayed"), None);
    assert_eq!(second.json(), json!("done"));
    let run = server.get("/v1/runs/trip/flaky").json();
    assert_eq!(run["attributes"]["calls_a"], 1, "step a ran once: {run}");
    let outcomes: Vec<(String, String)> = run["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| (e["step"].as_str().unwrap_or("").into(), e["outcome"].as_str().unwrap_or("").into()))
        .collect();
    let expected: Vec<(String, String)> = [("a", "committed"), ("b", "failed"), ("b", "committed"), ("c", "finished")]
        .iter()
        .map(|(s, o)| (s.to_string(), o.to_string()))
        .collect();
    assert_eq!(outcomes, expected);

    let fatal = json!({ "script": { "a": { "fail": "fatal" } } });
    let failed = server.post("trip", "doomed", &fatal, &[]);
    assert_eq!(failed.status, 500, "{}", failed.body);
    assert_eq!(failed.problem(), "/problems/run-failed");
    let p = failed.json();
    assert_eq!((p["step"].as_str(), p["key"].as_str()), (Some("a"), Some("doomed")), "{p}");
    let replay = server.post("trip", "doomed", &fatal, &[]);
    assert_eq!(replay.status, 500);
    assert_eq!(replay.body, failed.body);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));

    // An operator's retry runs it again (here the step fails for good again).
    let retried = server.request("POST", "/v1/runs/trip/doomed/retry", &[], None);
    assert_eq!(retried.status, 500, "{}", retried.body);
    let run = server.get("/v1/runs/trip/doomed").json();
    assert_eq!(run["attempts"], 2, "{run}");
}
}

on_each_backend! {
/// `POST …/retry?upgrade=true` moves a pending run whose step is broken on
/// its version to the latest one and resumes it there; without it, the
/// retry runs the broken code again. The steps it committed do not run again.
#[test]
fn a_retry_can_move_a_run_to_the_latest_version(env) {
    let manifest = |guest: &str| {
        let text = format!(
            "name = \"fixable\"\n\n[defaults]\nmax_attempts = 5\nbackoff = \"1h\"\n\n\
             [[step]]\nname = \"a\"\ncomponent = \"{}\"\n\n\
             [[step]]\nname = \"trap\"\ncomponent = \"{}\"\n",
            component("scripted").display(),
            component(guest).display()
        );
        env.write(&format!("fixable-{guest}.toml"), &text)
    };
    // Version 1: its step `trap` traps (the hostile guest does what its step is named).
    register(&env, &manifest("hostile"));
    let server = Server::start(&env, &["--workers", "0"]);
    let args = json!({ "script": { "a": { "count": true } } });
    let first = server.post("fixable", "fix-me", &args, &[]);
    assert_eq!(first.status, 503, "pending, retried in an hour: {}", first.body);

    // Version 2 fixes the step. A plain retry stays on version 1.
    register(&env, &manifest("scripted"));
    let again = server.request("POST", "/v1/runs/fixable/fix-me/retry", &[], None);
    assert_eq!(again.status, 503, "the broken code again: {}", again.body);
    let run = server.get("/v1/runs/fixable/fix-me").json();
    assert_eq!((run["status"].as_str(), run["workflow_version"].as_i64()), (Some("pending"), Some(1)), "{run}");

    let bad = server.request("POST", "/v1/runs/fixable/fix-me/retry?upgrade=perhaps", &[], None);
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.problem(), "/problems/invalid-request");

    let upgraded = server.request("POST", "/v1/runs/fixable/fix-me/retry?upgrade=true", &[], None);
    assert_eq!(upgraded.status, 201, "{}", upgraded.body);
    let run = server.get("/v1/runs/fixable/fix-me").json();
    assert_eq!((run["status"].as_str(), run["workflow_version"].as_i64()), (Some("succeeded"), Some(2)), "{run}");
    assert_eq!(run["attributes"]["calls_a"], 1, "step a ran once: {run}");
    // The key now replays what the fixed run answered.
    let replay = server.post("fixable", "fix-me", &args, &[]);
    assert_eq!((replay.status, replay.header("idempotent-replayed")), (201, Some("true")), "{}", replay.body);
}
}

on_each_backend! {
/// A run still in flight: `202` with where to look; a second request with
/// the key waits for it (latch) within its wait, or is told `409` after.
#[test]
fn in_flight_runs_latch_or_conflict(env) {
    scripted(&env);
    let server = Server::start(&env, &[]);
    let slow = json!({ "script": { "a": { "sleep_ms": 1500 }, "c": { "finish": "slow" } } });
    let started = server.post("trip", "slow", &slow, &[("prefer", "wait=0")]);
    assert_eq!(started.status, 202, "{}", started.body);
    assert_eq!(started.header("location"), Some("/v1/runs/trip/slow"));
    assert!(started.header("retry-after").is_some());
    assert_eq!(started.json()["status"], "running");

    let busy = server.post("trip", "slow", &slow, &[("prefer", "wait=0")]);
    assert_eq!(busy.status, 409, "{}", busy.body);
    assert_eq!(busy.problem(), "/problems/run-in-progress");
    assert!(busy.header("retry-after").is_some());

    let latched = server.post("trip", "slow", &slow, &[("prefer", "wait=20")]);
    assert_eq!(latched.status, 201, "{}", latched.body);
    assert_eq!(latched.json(), json!("slow"));
    assert_eq!(latched.header("idempotent-replayed"), Some("true"));

    // Long-polling a run: `?wait=` returns once it is finished.
    let other = json!({ "script": { "a": { "sleep_ms": 800 } } });
    assert_eq!(server.post("trip", "poll", &other, &[("prefer", "wait=0")]).status, 202);
    let polled = server.get("/v1/runs/trip/poll?wait=20s").json();
    assert_eq!(polled["status"], "succeeded", "{polled}");
    let bad = server.get("/v1/runs/trip/poll?wait=soon");
    assert_eq!(bad.status, 400);
    let missing = server.get("/v1/runs/trip/never");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.problem(), "/problems/run-not-found");

    // The run the first request left behind finished once, in one process.
    let run = server.get("/v1/runs/trip/slow").json();
    assert_eq!(run["attempts"], 3, "{run}");
}
}

on_each_backend! {
/// With tokens every request needs a known bearer token, and each caller's
/// keys are its own: two callers' equal keys are two runs.
#[test]
fn callers_authenticate_and_keys_are_scoped(env) {
    scripted(&env);
    let tokens = env.write("tokens.txt", "# callers\nalice:alice-secret-0123456789\nbob:bob-secret-0123456789abc\n");
    let tokens = tokens.display().to_string();
    let open = Server::start(&env, &["--tokens", &tokens]);
    let r = open.post("trip", "k", &json!({}), &[]);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.problem(), "/problems/unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(open.get("/v1/runs").status, 401);
    assert_eq!(open.get("/metrics").status, 401);
    assert_eq!(open.get("/healthz").status, 200);
    assert_eq!(open.get("/readyz").status, 200);
    let wrong = open.request("GET", "/v1/runs", &[("authorization", "Bearer nope-nope-nope-nope")], None);
    assert_eq!(wrong.status, 401);
    let base = open.base.clone();
    drop(open);

    let alice = Server::start(&env, &["--tokens", &tokens]).authorized("alice-secret-0123456789");
    assert_ne!(alice.base, base);
    let args = finish(json!("alice's"));
    let a = alice.post("trip", "same-key", &args, &[]);
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.header("location"), Some("/v1/runs/trip/same-key"));

    let bob = alice.with_token("bob-secret-0123456789abc");
    // Bob's equal key is another run: created, not replayed, and other args are fine.
    let b = bob.post("trip", "same-key", &finish(json!("bob's")), &[]);
    assert_eq!(b.status, 201, "{}", b.body);
    assert_eq!(b.header("idempotent-replayed"), None);
    assert_eq!(b.json(), json!("bob's"));
    assert_eq!(alice.get("/v1/runs/trip/same-key").json()["result"], json!("alice's"));
    assert_eq!(bob.get("/v1/runs/trip/same-key").json()["result"], json!("bob's"));
    // Each lists only its own runs, under its own key.
    let listed = bob.get("/v1/runs").json();
    let keys: Vec<&str> = listed["runs"].as_array().expect("runs").iter().filter_map(|r| r["key"].as_str()).collect();
    assert_eq!(keys, ["same-key"], "{listed}");
    let only_alice = alice.post("trip", "alice-only", &args, &[]);
    assert_eq!(only_alice.status, 201);
    assert_eq!(bob.get("/v1/runs/trip/alice-only").status, 404);
    assert_eq!(bob.request("POST", "/v1/runs/trip/alice-only/cancel", &[], None).status, 404);

    // Without tokens, only loopback.
    let refused = Command::new(env!("CARGO_BIN_EXE_acidic"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env("DATABASE_URL", env.db())
        .env_remove("ACIDIC_TOKENS")
        .output()
        .expect("run acidic serve");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("without --tokens"), "{err}");
    // A broken tokens file is refused, naming the line.
    let broken = env.write("broken.txt", "alice:short\n");
    let e = Server::try_start(&env, &["--tokens", &broken.display().to_string()]).err().expect("refused");
    assert!(e.contains("broken.txt:1") && e.contains("at least 16"), "{e}");
}
}

on_each_backend! {
/// Listing pages through runs newest first; cancelling and retrying answer
/// with problems that name the state; workflows describe themselves.
#[test]
fn lists_cancels_and_describes(env) {
    scripted(&env);
    let server = Server::start(&env, &["--workers", "0"]);
    for i in 0..5 {
        assert_eq!(server.post("trip", &format!("r{i}"), &finish(json!(i)), &[]).status, 201);
    }
    let mut seen = Vec::new();
    let mut path = "/v1/runs?workflow=trip&limit=2".to_string();
    loop {
        let page = server.get(&path).json();
        for r in page["runs"].as_array().expect("runs") {
            seen.push(r["key"].as_str().unwrap_or("").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/runs?workflow=trip&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["r4", "r3", "r2", "r1", "r0"]);
    assert_eq!(server.get("/v1/runs?status=failed").json()["runs"], json!([]));
    assert_eq!(server.get("/v1/runs?status=lost").status, 400);

    // A run left pending by a retryable failure can be cancelled; its key then answers 409.
    let stuck = json!({ "script": { "a": { "fail": "retryable" } } });
    assert_eq!(server.post("trip", "stuck", &stuck, &[]).status, 503);
    let cancelled = server.request("POST", "/v1/runs/trip/stuck/cancel", &[], None);
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.json()["run"]["status"], "cancelled");
    let after = server.post("trip", "stuck", &stuck, &[]);
    assert_eq!(after.status, 409, "{}", after.body);
    assert_eq!(after.problem(), "/problems/run-cancelled");
    let again = server.request("POST", "/v1/runs/trip/stuck/cancel", &[], None);
    assert_eq!(again.status, 409);
    assert_eq!(again.problem(), "/problems/invalid-state");
    let retry = server.request("POST", "/v1/runs/trip/stuck/retry", &[], None);
    assert_eq!(retry.status, 409);

    let workflows = server.get("/v1/workflows").json();
    assert_eq!(workflows["workflows"][0]["name"], "trip", "{workflows}");
    assert_eq!(workflows["workflows"][0]["steps"], json!(["a", "b", "c"]));
    let trip = server.get("/v1/workflows/trip").json();
    assert_eq!(trip["versions"].as_array().map(Vec::len), Some(1), "{trip}");
    assert_eq!(trip["definition"]["steps"][0]["component"].as_str().map(str::len), Some(64));
    assert_eq!(server.get("/v1/workflows/nope").status, 404);
}
}

on_each_backend! {
/// `/metrics` is Prometheus text whose counters move with the traffic.
#[test]
fn metrics_move(env) {
    scripted(&env);
    let server = Server::start(&env, &[]);
    let before = server.get("/metrics");
    assert_eq!(before.status, 200);
    assert!(before.header("content-type").is_some_and(|c| c.starts_with("text/plain")));
    assert_eq!(server.post("trip", "m1", &finish(json!(1)), &[]).status, 201);
    assert_eq!(server.post("trip", "m1", &finish(json!(1)), &[]).status, 201);
    assert_eq!(server.post("trip", "m1", &finish(json!(2)), &[]).status, 422);
    let text = server.get("/metrics").body;
    for line in [
        "acidic_idempotent_requests_total{outcome=\"created\"} 1",
        "acidic_idempotent_requests_total{outcome=\"replayed\"} 1",
        "acidic_idempotent_requests_total{outcome=\"mismatch\"} 1",
        "acidic_runs{workflow=\"trip\",status=\"succeeded\"} 1",
        "acidic_queue_depth{queue=\"default\",status=\"succeeded\"} 1",
        "acidic_step_calls_total{workflow=\"trip\",step=\"a\",outcome=\"ok\"} 1",
        "acidic_http_requests_total{route=\"/v1/workflows/{workflow}/runs\",method=\"POST\",status=\"201\"} 2",
        "acidic_http_requests_total{route=\"/v1/workflows/{workflow}/runs\",method=\"POST\",status=\"422\"} 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    for family in ["acidic_step_duration_seconds_bucket", "acidic_queue_wait_seconds_bucket", "acidic_http_request_duration_seconds_bucket"] {
        assert!(text.contains(family), "missing {family}");
    }
}
}

on_each_backend! {
/// SIGTERM drains: the server stops accepting, the step in flight commits,
/// the run is handed back (pending at its next step, no lease held) and the
/// process exits 0.
#[test]
fn sigterm_drains(env) {
    scripted(&env);
    let server = Server::start(&env, &[]);
    let slow = json!({ "script": { "a": { "sleep_ms": 1500, "count": true } } });
    let started = server.post("trip", "drain", &slow, &[("prefer", "wait=0")]);
    assert_eq!(started.status, 202, "{}", started.body);
    std::thread::sleep(Duration::from_millis(300));
    let (status, stderr) = server.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status}: {stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_acidic"))
        .args(["--json", "runs", "show", "drain"])
        .env("DATABASE_URL", env.db())
        .env("ACIDIC_CACHE_DIR", env.dir.path().join("cache"))
        .output()
        .expect("runs show");
    let shown: Value = serde_json::from_slice(&out.stdout).expect("json");
    let run = &shown["run"];
    assert_eq!(run["status"], "pending", "{shown}");
    assert_eq!(run["recovery_point"], "b", "{shown}");
    assert_eq!(run["locked_by"], Value::Null, "{shown}");
    assert_eq!(run["attributes"]["calls_a"], 1, "{shown}");
    // The next server finishes it from there.
    let next = Server::start(&env, &[]);
    let done = next.post("trip", "drain", &slow, &[]);
    assert_eq!(done.status, 201, "{}", done.body);
    assert_eq!(next.get("/v1/runs/trip/drain").json()["attributes"]["calls_a"], 1);
}
}

/// The ride example's manifest, charging through `payments` (and with short
/// step deadlines, so a killed server's leases expire within seconds).
fn ride_manifest(env: &Env, payments: &FakePayments) -> std::path::PathBuf {
    let ride = component("ride-create").display().to_string();
    let receipt = component("send-receipt").display().to_string();
    env.write(
        "receipt.toml",
        &format!(
            "name = \"send-receipt\"\n\n[[step]]\nname = \"send\"\ncomponent = \"{receipt}\"\n"
        ),
    );
    env.write(
        "ride.toml",
        &format!(
            r#"name = "ride-create"

[defaults]
max_attempts = 5
backoff = "50ms"
max_backoff = "200ms"
timeout = "2s"

[[step]]
name = "create_ride"
component = "{ride}"
sql = "read-write"
tables = ["rides", "audit_records"]

[[step]]
name = "charge_card"
component = "{ride}"
sql = "read-write"
tables = ["rides", "audit_records"]
env = {{ PAYMENTS_API = "{url}" }}
allowed_outbound_hosts = ["{url}"]

[[step]]
name = "send_receipt"
component = "{ride}"
"#,
            url = payments.url()
        ),
    )
}

on_each_backend! {
/// Clients POST distinct rides and retry on 5xx and connection errors with
/// the same keys, while the server is killed with SIGKILL twice mid-load
/// and restarted: every ride row and every charge exists exactly once, and
/// every key answers with its stored response.
#[test]
fn rides_survive_kill_9_of_the_server(env) {
    let payments = FakePayments::start();
    ride_tables(&env);
    let manifest = ride_manifest(&env, &payments);
    register(&env, &env.dir.path().join("receipt.toml"));
    register(&env, &manifest);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let extra = ["--lease", "1s", "--workers", "2"];
    let server = Server::try_start_on(&env, &listen, &extra).unwrap_or_else(|e| panic!("{e}"));
    let client = server.client.clone();

    const RIDES: usize = 24;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Requests that got no definitive answer (refused connections while the
    // server was down, 5xx): proof the crashes hit the load.
    let retried = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut clients = Vec::new();
    for t in 0..4 {
        let (client, done, retried) = (client.clone(), done.clone(), retried.clone());
        clients.push(std::thread::spawn(move || {
            let mut answers = Vec::new();
            for i in (t..RIDES).step_by(4) {
                let key = format!("ride-{i}");
                let args = json!({
                    "user": format!("rider{i}@example.com"),
                    "origin": [0.0, i as f64],
                    "target": [1.0, i as f64],
                    "card": "tok_visa",
                });
                loop {
                    assert!(Instant::now() < deadline, "{key} got no definitive answer in time");
                    match client.try_post("ride-create", &key, &args, &[("prefer", "wait=5")]) {
                        Some(r) if r.status < 300 && r.status != 202 || (400..500).contains(&r.status) && r.status != 409 => {
                            answers.push((key.clone(), args.clone(), r));
                            break;
                        }
                        _ => {
                            retried.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            answers
        }));
    }
    let mut server = Some(server);
    for crash in [RIDES / 3, 2 * RIDES / 3] {
        while done.load(std::sync::atomic::Ordering::SeqCst) < crash && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(mut s) = server.take() {
            s.child.kill().expect("kill -9");
            let _ = s.child.wait();
        }
        // The port is free again once the process is gone.
        let mut restarted = None;
        while restarted.is_none() && Instant::now() < deadline {
            match Server::try_start_on(&env, &listen, &extra) {
                Ok(s) => restarted = Some(s),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        server = restarted;
    }
    let answers: Vec<(String, Value, Reply)> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("a client thread"))
        .collect();
    assert_eq!(answers.len(), RIDES);
    assert!(
        retried.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the kills interrupted no request"
    );
    let server = server.expect("a server after the crashes");
    for (key, args, first) in &answers {
        assert_eq!(first.status, 201, "{key}: {}", first.body);
        let replay = server.post("ride-create", key, args, &[]);
        assert_eq!(replay.status, 201, "{key}: {}", replay.body);
        assert_eq!(replay.body, first.body, "{key}: the stored answer");
        assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    }
    assert_eq!(env.app_count("rides", "1 = 1"), RIDES as i64);
    assert_eq!(env.app_count("rides", "charge_id IS NOT NULL"), RIDES as i64);
    assert_eq!(payments.charges(), RIDES, "one charge per ride");
    let distinct = env.app_sql("SELECT CAST(COUNT(DISTINCT run_key) AS TEXT) FROM rides");
    assert_eq!(distinct, [RIDES.to_string()]);
}
}

on_each_backend! {
/// A step's log lines and what it printed are stored with its timeline
/// entry (committed or failed), capped per call with the oldest kept, and
/// shown by the API and by `acidic runs show`.
#[test]
fn step_logs_are_stored_with_the_timeline(env) {
    scripted(&env);
    let server = Server::start(&env, &["--workers", "0"]);
    let args = json!({ "script": {
        "a": { "log": ["charging card", "charged"], "print": "hello from stdout" },
        "b": { "log": ["about to fail"], "fail": "retryable", "fail_attempts": 1 },
        "c": { "log": [&"x".repeat(100)], "log_times": 2000 },
    }});
    assert_eq!(server.post("trip", "logged", &args, &[]).status, 503);
    assert_eq!(server.post("trip", "logged", &args, &[]).status, 201);
    let run = server.get("/v1/runs/trip/logged").json();
    let timeline = run["timeline"].as_array().expect("timeline");
    let lines = |i: usize| -> Vec<(String, String)> {
        timeline[i]["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .map(|l| (l["level"].as_str().unwrap_or("").into(), l["message"].as_str().unwrap_or("").into()))
            .collect()
    };
    let pair = |l: &str, m: &str| (l.to_string(), m.to_string());
    assert_eq!(
        lines(0),
        [pair("info", "charging card"), pair("info", "charged"), pair("stdout", "hello from stdout")]
    );
    assert_eq!(timeline[1]["outcome"], "failed");
    assert_eq!(lines(1), [pair("info", "about to fail")]);
    assert_eq!(lines(2), [pair("info", "about to fail")]);
    let flood = lines(3);
    let stored: usize = flood.iter().map(|(l, m)| l.len() + m.len()).sum();
    assert!(flood.len() > 100 && stored <= 64 << 10, "{} lines, {stored} bytes", flood.len());
    assert_eq!(flood[0].1, "x".repeat(100), "the oldest lines are kept");
    let last = &flood[flood.len() - 1];
    assert!(last.1.contains("more lines not stored"), "{last:?}");

    let shown = Command::new(env!("CARGO_BIN_EXE_acidic"))
        .args(["runs", "show", "logged"])
        .env("DATABASE_URL", env.db())
        .env("ACIDIC_CACHE_DIR", env.dir.path().join("cache"))
        .output()
        .expect("runs show");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("charging card") && text.contains("hello from stdout"), "{text}");
}
}

/// A POST of the ride example's args for `card`.
fn ride(i: usize, card: &str) -> Value {
    json!({
        "user": format!("rider{i}@example.com"),
        "origin": [0.0, i as f64],
        "target": [1.0, i as f64],
        "card": card,
    })
}

on_each_backend! {
/// Rocket Rides over HTTP: a ride is created (201), replayed, a declined card
/// answers the 402 its step set (and replays 402), and a charge whose answer
/// was lost is a 503 whose retry resumes at `charge_card`.
#[test]
fn rocket_rides_over_http(env) {
    let payments = FakePayments::start();
    ride_tables(&env);
    let manifest = ride_manifest(&env, &payments);
    register(&env, &env.dir.path().join("receipt.toml"));
    register(&env, &manifest);
    let server = Server::start(&env, &[]);

    let created = server.post("ride-create", "ride-ok", &ride(1, "tok_visa"), &[]);
    assert_eq!(created.status, 201, "{}", created.body);
    let replay = server.post("ride-create", "ride-ok", &ride(1, "tok_visa"), &[]);
    assert_eq!((replay.status, replay.body.as_str()), (201, created.body.as_str()));

    let declined = server.post("ride-create", "ride-declined", &ride(2, "tok_chargeDeclined"), &[]);
    assert_eq!(declined.status, 402, "{}", declined.body);
    assert_eq!(declined.problem(), "/problems/run-failed");
    assert_eq!(declined.json()["step"], "charge_card");
    let again = server.post("ride-create", "ride-declined", &ride(2, "tok_chargeDeclined"), &[]);
    assert_eq!((again.status, again.body.as_str()), (402, declined.body.as_str()));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    let flaky = server.post("ride-create", "ride-flaky", &ride(3, "tok_flaky"), &[]);
    assert_eq!(flaky.status, 503, "{}", flaky.body);
    assert_eq!(flaky.json()["recovery_point"], "charge_card");
    std::thread::sleep(Duration::from_millis(300));
    let resumed = server.post("ride-create", "ride-flaky", &ride(3, "tok_flaky"), &[]);
    assert_eq!(resumed.status, 201, "{}", resumed.body);
    let run = server.get("/v1/runs/ride-create/ride-flaky").json();
    let created_once = run["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|e| e["step"] == "create_ride")
        .count();
    assert_eq!(created_once, 1, "{run}");
    assert_eq!(env.app_count("rides", "1 = 1"), 3);
    assert_eq!(payments.charges(), 2, "the declined card was never charged");
}
}

on_each_backend! {
/// A component built against WIT 0.2.0 runs beside 0.3.0 ones, with its
/// logs, attributes and SQL.
#[test]
fn a_0_2_0_guest_still_runs(env) {
    let manifest = env.workflow("legacy-v0-2", "legacy", "", &[("only", "sql = \"read-only\"")]);
    register(&env, &manifest);
    let server = Server::start(&env, &[]);
    let r = server.post("legacy", "old", &json!({}), &[]);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json(), json!({ "version": "0.2.0", "sum": 2 }));
    let run = server.get("/v1/runs/legacy/old").json();
    assert_eq!(run["attributes"]["seen"], "0.2.0");
    assert_eq!(run["timeline"][0]["logs"][0]["message"], "0.2.0 guest at step only");
}
}

/// Every SDK sets the answer's status: the JavaScript, Python and Go ride
/// examples answer a declined card with 402, the polyglot workflow's C step
/// its report with 200.
#[test]
fn every_sdk_sets_the_http_status() {
    polyglot_guests();
    let env = Env::new();
    ride_tables(&env);
    for manifest in [
        "guest-examples/js/ride-create/workflow.toml",
        "guest-examples/python/ride-create/workflow.toml",
        "guest-examples/go/ride-create/workflow.toml",
        "guest-examples/polyglot/workflow.toml",
        "guest-examples/polyglot/notify.toml",
    ] {
        register(&env, &root().join(manifest));
    }
    let server = Server::start(&env, &[]);
    let workflows = server.get("/v1/workflows").json();
    let names: Vec<&str> = workflows["workflows"]
        .as_array()
        .expect("workflows")
        .iter()
        .filter_map(|w| w["name"].as_str())
        .filter(|n| n.starts_with("ride-create"))
        .collect();
    assert_eq!(names.len(), 3, "{workflows}");
    for (i, name) in names.iter().enumerate() {
        let r = server.post(name, "declined", &ride(i, "tok_chargeDeclined"), &[]);
        assert_eq!(r.status, 402, "{name}: {}", r.body);
        assert_eq!(r.json()["step"], "charge_card", "{name}");
    }
    let words = json!({ "text": "the cat and the hat", "top": 1 });
    let r = server.post("polyglot", "words", &words, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["summary"]["top_word"], "the", "{}", r.body);
}

/// `GET /openapi.json` is a valid OpenAPI 3.1 document (checked by
/// openapi-spec-validator, from the toolchains `make` installs) that covers
/// every route, each with its problem responses.
#[test]
fn openapi_is_valid_and_covers_every_route() {
    polyglot_guests();
    let env = Env::new();
    let tokens = env.write("tokens.txt", "alice:alice-secret-0123456789\n");
    let server = Server::start(&env, &["--tokens", &tokens.display().to_string()]);
    // Served without a token, like the probes.
    let doc = server.get("/openapi.json");
    assert_eq!(doc.status, 200, "{}", doc.body);
    let file = env.write("openapi.json", &doc.body);
    let out = Command::new(root().join(".toolchains/py/bin/python"))
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = doc.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut routes: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            routes.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    routes.sort();
    let mut expected = vec![
        "POST /v1/workflows/{workflow}/runs",
        "GET /v1/runs/{workflow}/{key}",
        "GET /v1/runs",
        "POST /v1/runs/{workflow}/{key}/retry",
        "POST /v1/runs/{workflow}/{key}/cancel",
        "GET /v1/workflows",
        "GET /v1/workflows/{workflow}",
        "GET /metrics",
        "GET /healthz",
        "GET /readyz",
        "GET /problems/{slug}",
        "GET /openapi.json",
    ];
    expected.sort();
    assert_eq!(routes, expected);
    let post = &doc["paths"]["/v1/workflows/{workflow}/runs"]["post"];
    for status in [
        "201", "202", "400", "401", "404", "409", "413", "422", "500", "503",
    ] {
        assert!(post["responses"][status].is_object(), "POST lacks {status}");
    }
    assert!(post["responses"]["422"]["content"]["application/problem+json"].is_object());
    let header = post["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header" && p["required"] == true);
    assert!(header, "{post}");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Every documented route answers as documented: one that needs a token refuses without.
    assert_eq!(server.get("/v1/workflows").status, 401);
    assert_eq!(server.get("/healthz").status, 200);
}

/// A client that sends its body too slowly is cut off with a 408 problem;
/// the server goes on answering others.
#[test]
fn a_slow_body_is_cut_off() {
    use std::io::{Read, Write};
    let env = Env::new();
    scripted(&env);
    let server = Server::start(&env, &["--request-timeout", "1s"]);
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        stream,
        "POST /v1/workflows/trip/runs HTTP/1.1\r\nhost: {addr}\r\nidempotency-key: slow\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"a\":"
    )
    .expect("write");
    let started = Instant::now();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("application/problem+json") && answer.contains("/problems/request-timeout"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        server.post("trip", "fast", &finish(json!(1)), &[]).status,
        201
    );
}

on_each_backend! {
/// Two `serve` processes on one database: a key in flight on one is
/// latched by the other, which answers with the stored result; the run
/// ran once.
#[test]
fn two_servers_share_one_database(env) {
    scripted(&env);
    let one = Server::start(&env, &["--workers", "0"]);
    let two = Server::start(&env, &["--workers", "0"]);
    let slow = json!({ "script": { "a": { "sleep_ms": 1000, "count": true }, "c": { "finish": "once" } } });
    let first = one.post("trip", "shared", &slow, &[("prefer", "wait=0")]);
    assert_eq!(first.status, 202, "{}", first.body);
    let latched = two.post("trip", "shared", &slow, &[("prefer", "wait=20")]);
    assert_eq!(latched.status, 201, "{}", latched.body);
    assert_eq!(latched.json(), json!("once"));
    assert_eq!(latched.header("idempotent-replayed"), Some("true"));
    let run = one.get("/v1/runs/trip/shared").json();
    assert_eq!(run["attributes"]["calls_a"], 1, "{run}");
    assert_eq!(run["attempts"], 3, "{run}");
}
}

/// `--log-format json` writes every log line as a JSON object.
#[test]
fn logs_can_be_json() {
    let env = Env::new();
    scripted(&env);
    let mut child = Command::new(env!("CARGO_BIN_EXE_acidic"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("DATABASE_URL", env.db())
        .env("ACIDIC_CACHE_DIR", env.dir.path().join("cache"))
        .env("ACIDIC_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn acidic serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the listening line");
    assert!(line.starts_with("acidic serve: listening on"), "{line}");
    // SAFETY: signals the child this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json_lines: Vec<Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        json_lines.iter().any(|l| l["level"] == "INFO"),
        "no JSON log line in:\n{stderr}"
    );
}

on_each_backend! {
/// At most --max-in-flight runs are driven for requests at once: beyond, a
/// request waits for a free slot within its wait, then gets 503 and its run
/// is handed back, pending, for its next request (or a worker).
#[test]
fn runs_in_flight_are_bounded(env) {
    scripted(&env);
    let server = Server::start(&env, &["--workers", "0", "--max-in-flight", "1"]);
    let slow = json!({ "script": { "a": { "sleep_ms": 1500 } } });
    assert_eq!(server.post("trip", "busy", &slow, &[("prefer", "wait=0")]).status, 202);
    let shed = server.post("trip", "next", &finish(json!("next")), &[("prefer", "wait=0")]);
    assert_eq!(shed.status, 503, "{}", shed.body);
    assert_eq!(shed.problem(), "/problems/unavailable");
    assert!(shed.header("retry-after").is_some());
    let pending = server.get("/v1/runs/trip/next").json();
    assert_eq!((pending["status"].as_str(), pending["locked_by"].as_str()), (Some("pending"), None), "{pending}");
    // Within a longer wait it gets the slot once the first run is done.
    let done = server.post("trip", "next", &finish(json!("next")), &[("prefer", "wait=20")]);
    assert_eq!(done.status, 201, "{}", done.body);
    assert_eq!(done.json(), json!("next"));
    assert!(server.get("/metrics").body.contains("acidic_idempotent_requests_total{outcome=\"shed\"} 1"));
}
}

/// The runs a caller's run staged are the caller's too: it can see them by
/// the keys its steps gave them; another caller cannot.
#[test]
fn a_callers_staged_runs_are_its_own() {
    let env = Env::new();
    scripted(&env);
    let tokens = env.write(
        "tokens.txt",
        "alice:alice-secret-0123456789\nbob:bob-secret-0123456789abc\n",
    );
    let alice = Server::start(&env, &["--tokens", &tokens.display().to_string()])
        .authorized("alice-secret-0123456789");
    let bob = alice.with_token("bob-secret-0123456789abc");
    let parent = json!({ "script": { "a": { "stage": [{ "workflow": "trip", "key": "child-1", "args": { "script": {} } }] } } });
    let r = alice.post("trip", "parent", &parent, &[]);
    assert_eq!(r.status, 201, "{}", r.body);
    let shown = alice.get("/v1/runs/trip/parent").json();
    assert_eq!(shown["staged"][0]["key"], "child-1", "{shown}");
    let child = alice.get("/v1/runs/trip/child-1?wait=20");
    assert_eq!(child.status, 200, "{}", child.body);
    assert_eq!(child.json()["status"], "succeeded");
    assert_eq!(bob.get("/v1/runs/trip/child-1").status, 404);
}

/// The dashboard at `/ui` in a real headless Chromium (Debian's, driven by
/// Playwright's core from `make`'s pinned toolchain; see
/// tests/ui/dashboard.cjs): sign-in with a token kept in an HttpOnly,
/// SameSite=Strict cookie, the run list with its counts and filters, a
/// failed run's error, timeline and stored logs, Retry until it succeeds,
/// the workflows and queues views, a confirmed bulk cancel, a forged form
/// refused. A screenshot of each view lands in the test's output folder.
#[test]
fn the_dashboard_works_in_a_real_browser() {
    let env = Env::new();
    let tokens = env.write("tokens.txt", "ops:ops-secret-0123456789abcdef\n");
    let manifest = env.scripted(
        "orders",
        "max_attempts = 2",
        &[("a", ""), ("b", "sql = \"read-write\"")],
    );
    register(&env, &manifest);
    let server = Server::start(
        &env,
        &["--tokens", &tokens.display().to_string(), "--workers", "0"],
    )
    .authorized("ops-secret-0123456789abcdef");

    // Runs in several states, through the API.
    let log = json!({ "log": ["hello from a"] });
    let ok = server.post(
        "orders",
        "order-ok",
        &json!({ "script": { "a": log } }),
        &[],
    );
    assert_eq!(ok.status, 201, "{}", ok.body);
    let flaky = |n: u32| json!({ "script": { "a": log, "b": { "fail": "retryable", "fail_attempts": n } } });
    for expected in [503, 500] {
        let bad = server.post("orders", "order-bad", &flaky(2), &[]);
        assert_eq!(bad.status, expected, "{}", bad.body);
    }
    let pending = server.post("orders", "order-pending", &flaky(1), &[]);
    assert_eq!(pending.status, 503, "{}", pending.body);
    let gone = server.post("orders", "order-gone", &flaky(5), &[]);
    assert_eq!(gone.status, 503, "{}", gone.body);
    let cancel = server.request("POST", "/v1/runs/orders/order-gone/cancel", &[], None);
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    // A pending run the browser moves to version 2 ("Retry on the latest version").
    let later = server.post("orders", "order-later", &flaky(1), &[]);
    assert_eq!(later.status, 503, "{}", later.body);
    let v2 = env.scripted(
        "orders",
        "max_attempts = 3",
        &[("a", ""), ("b", "sql = \"read-write\"")],
    );
    register(&env, &v2);

    // Without a session: pages go to the login form, actions are refused.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .build()
        .into();
    let anonymous = Client {
        token: None,
        agent,
        base: server.base.clone(),
    };
    let page = anonymous.request("GET", "/ui/runs", &[], None);
    assert_eq!(
        (page.status, page.header("location")),
        (303, Some("/ui/login")),
        "{}",
        page.body
    );
    let post = anonymous.request(
        "POST",
        "/ui/runs/1/retry",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some("csrf=x"),
    );
    assert_eq!(post.status, 401, "{}", post.body);
    let forged = anonymous.request(
        "GET",
        "/ui/runs",
        &[("cookie", "acidic_session=not-a-token-0123456789")],
        None,
    );
    assert_eq!(
        forged.status, 303,
        "an unknown session token is not a session"
    );

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let out = Command::new("node")
        .arg(root().join("tests/ui/dashboard.cjs"))
        .arg(&server.base)
        .arg("ops-secret-0123456789abcdef")
        .arg(&shots)
        .env("NODE_PATH", root().join(".toolchains/browser/node_modules"))
        .output()
        .expect("node (make installs the browser toolchain)");
    assert!(
        out.status.success(),
        "the browser test failed:\n{}\n{}\nserver: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.stderr.lock().map(|t| t.clone()).unwrap_or_default()
    );
    for view in [
        "login",
        "runs",
        "run-failed",
        "run-detail",
        "workflows",
        "queues",
    ] {
        let file = shots.join(format!("{view}.png"));
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "a screenshot of {view} at {}", file.display());
    }
    eprintln!("dashboard screenshots: {}", shots.display());
    let after = server.request("GET", "/v1/runs/orders/order-bad", &[], None);
    assert_eq!(after.json()["status"], "succeeded", "{}", after.body);
}

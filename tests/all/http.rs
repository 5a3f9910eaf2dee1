//! Outbound HTTP: standard `wasi:http`, only to the hosts a step's manifest
//! allows, with the step key as the idempotency key of the foreign API.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acidic::{RunRequest, RunStatus};
use serde_json::{Value, json};

use crate::harness::Env;

/// A payment API on 127.0.0.1 that, like Stripe, charges once per
/// `Idempotency-Key` and answers a repeated key with the first charge.
/// It serves at most 100 requests or 60 s, then stops by itself.
struct FakePayments {
    addr: SocketAddr,
    charges: Arc<Mutex<HashMap<String, Value>>>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FakePayments {
    fn start() -> FakePayments {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let charges = Arc::new(Mutex::new(HashMap::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, r, s) = (charges.clone(), requests.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::Relaxed)
                && Instant::now() < deadline
                && r.load(Ordering::Relaxed) < 100
            {
                match listener.accept() {
                    Ok((stream, _)) => {
                        r.fetch_add(1, Ordering::Relaxed);
                        let _ = serve(stream, &c);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakePayments {
            addr,
            charges,
            requests,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn charges(&self) -> usize {
        self.charges.lock().expect("charges").len()
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for FakePayments {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(stream: TcpStream, charges: &Mutex<HashMap<String, Value>>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut headers = HashMap::new();
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let (status, answer) = match headers.get("idempotency-key") {
        None => (
            "400 Bad Request",
            json!({ "error": "Idempotency-Key required" }),
        ),
        Some(key) => {
            let mut charges = charges.lock().expect("charges");
            let n = charges.len();
            let charge = charges.entry(key.clone()).or_insert_with(|| {
                let asked: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                json!({ "charge_id": format!("ch_{n}"), "cents": asked["cents"] })
            });
            ("200 OK", charge.clone())
        }
    };
    let answer = answer.to_string();
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    )?;
    stream.flush()
}

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

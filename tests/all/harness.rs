//! Shared set-up: guests built once per test binary, a fresh database and
//! cache per test, and manifests written on the fly around the scripted guest.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use acidic::{Host, HostConfig};
use tempfile::TempDir;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Builds the Rust guest examples (once per test binary) and returns their output folder.
pub fn guests() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = root().join("guest-examples/rust");
            let target = dir.join("target");
            let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--manifest-path",
                ])
                .arg(dir.join("Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .output()
                .map_err(|e| format!("cannot run cargo: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "building the guest examples failed (is the wasm32-wasip2 target installed? \
                     `rustup target add wasm32-wasip2`):\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(target.join("wasm32-wasip2/release"))
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Builds every guest example in every language (once per test binary) with
/// the README's own entry, `make guests`: toolchains into `.toolchains/`
/// on first use, then only what changed.
pub fn polyglot_guests() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = Command::new("make")
                .args(["--no-print-directory", "guests"])
                .current_dir(root())
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("MAKEFLAGS")
                .output()
                .map_err(|e| format!("cannot run make: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "`make guests` failed:\n{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(())
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The path of a built guest component, e.g. `component("scripted")`.
pub fn component(name: &str) -> PathBuf {
    guests().join(format!("{}.wasm", name.replace('-', "_")))
}

/// The Postgres server the tests use: `ACIDIC_TEST_POSTGRES`, or the machine's own.
pub fn postgres_url() -> String {
    std::env::var("ACIDIC_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A test's own database (a SQLite file, or a Postgres schema dropped when
/// the test ends) and component cache.
pub struct Env {
    pub dir: TempDir,
    pub backend: Backend,
    url: String,
    schema: Option<String>,
}

impl Env {
    /// A SQLite test environment.
    pub fn new() -> Env {
        Env::on(Backend::Sqlite)
    }

    pub fn on(backend: Backend) -> Env {
        guests();
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, schema) = match backend {
            Backend::Sqlite => (dir.path().join("acidic.db").display().to_string(), None),
            Backend::Postgres => {
                static SWEPT: OnceLock<()> = OnceLock::new();
                SWEPT.get_or_init(drop_stale_schemas);
                static NEXT: AtomicU32 = AtomicU32::new(0);
                let schema = format!(
                    "acidic_t_{}_{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                );
                // The application's tables get a schema of their own too.
                postgres(&[&format!("CREATE SCHEMA \"{schema}_app\"")])
                    .unwrap_or_else(|e| panic!("{e}"));
                (
                    format!("{}?schema={schema}&app_schema={schema}_app", postgres_url()),
                    Some(schema),
                )
            }
        };
        Env {
            dir,
            backend,
            url,
            schema,
        }
    }

    /// Creates an application table (what a team migrates itself, not the
    /// engine) in the test's own file (SQLite) or application schema
    /// (Postgres), and returns its name.
    pub fn app_table(&self, name: &str, columns: &str) -> String {
        self.app_sql(&format!("CREATE TABLE {name} ({columns})"));
        name.to_string()
    }

    /// Runs `sql` on the application's side of the database; returns the
    /// first column of its rows as text.
    pub fn app_sql(&self, sql: &str) -> Vec<String> {
        match self.backend {
            Backend::Postgres => {
                let schema = self.schema.as_deref().unwrap_or("public");
                let path = format!("SET search_path TO \"{schema}_app\"");
                postgres(&[&path, sql]).expect("app sql")
            }
            Backend::Sqlite => {
                let (url, sql) = (self.url.clone(), sql.to_string());
                on_own_thread(async move {
                    use sqlx::Connection;
                    let options = sqlx::sqlite::SqliteConnectOptions::new()
                        .filename(&url)
                        .create_if_missing(true);
                    let mut conn = sqlx::SqliteConnection::connect_with(&options)
                        .await
                        .map_err(|e| format!("open {url}: {e}"))?;
                    sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
                        .fetch_all(&mut conn)
                        .await
                        .map_err(|e| e.to_string())
                })
                .expect("app sql")
            }
        }
    }

    /// `SELECT count(*)` of an application table, with a condition.
    pub fn app_count(&self, table: &str, condition: &str) -> i64 {
        let rows = self.app_sql(&format!(
            "SELECT CAST(count(*) AS TEXT) FROM {table} WHERE {condition}"
        ));
        rows.first().and_then(|n| n.parse().ok()).expect("a count")
    }

    /// The engine's schema, on Postgres.
    pub fn engine_schema(&self) -> Option<String> {
        self.schema.clone()
    }

    /// The database URL (a file path for SQLite).
    pub fn db(&self) -> String {
        self.url.clone()
    }

    pub fn config(&self) -> HostConfig {
        let mut c = HostConfig::new(self.db());
        c.cache_dir = Some(self.dir.path().join("cache"));
        c
    }

    pub async fn host(&self) -> Host {
        Host::open(self.config()).await.expect("open host")
    }
    /// Writes a manifest named `name` whose steps all use the scripted guest.
    /// `steps` are (name, extra TOML lines); `defaults` is the `[defaults]` body.
    pub fn scripted(&self, name: &str, defaults: &str, steps: &[(&str, &str)]) -> PathBuf {
        self.workflow("scripted", name, defaults, steps)
    }

    /// Writes a manifest named `name` whose steps all use the guest `guest`.
    pub fn workflow(
        &self,
        guest: &str,
        name: &str,
        defaults: &str,
        steps: &[(&str, &str)],
    ) -> PathBuf {
        let mut text = format!(
            "name = \"{name}\"\n\n[defaults]\nbackoff = \"1ms\"\nmax_backoff = \"2ms\"\n{defaults}\n"
        );
        for (step, extra) in steps {
            text.push_str(&format!(
                "\n[[step]]\nname = \"{step}\"\ncomponent = \"{}\"\n{extra}\n",
                component(guest).display()
            ));
        }
        self.write(&format!("{name}.toml"), &text)
    }

    pub fn write(&self, file: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(file);
        std::fs::write(&path, text).expect("write file");
        path
    }
}

/// A payment API on 127.0.0.1 that, like Stripe, charges once per
/// `Idempotency-Key` and answers a repeated key with the first charge.
/// It stops when dropped, or by itself at the end of its lifetime.
pub struct FakePayments {
    pub addr: SocketAddr,
    charges: Arc<Mutex<HashMap<String, Value>>>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FakePayments {
    /// On a free port, for one test: at most 10 minutes.
    pub fn start() -> FakePayments {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        FakePayments::on(listener, Duration::from_secs(600))
    }

    fn on(listener: TcpListener, lifetime: Duration) -> FakePayments {
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let charges = Arc::new(Mutex::new(HashMap::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, r, s) = (charges.clone(), requests.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + lifetime;
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
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

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn charges(&self) -> usize {
        self.charges.lock().expect("charges").len()
    }

    pub fn requests(&self) -> usize {
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
    let is_stats = line.starts_with("GET /stats");
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
    let stats = || {
        let charges = charges.lock().expect("charges").len();
        json!({ "charges": charges })
    };
    let (status, answer) = match headers.get("idempotency-key") {
        // Like the demo's fake_payments.py, so either can serve the other's clients.
        _ if is_stats => ("200 OK", stats()),
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

/// The payment API the ride example's manifest allows (127.0.0.1:8089),
/// started once per test process and serving as long as it lives (a
/// slow machine reaches the last ride test long after the first: a fake
/// that stopped by itself failed them with a closed connection). If the port
/// is taken, a fake from `make demo` is assumed to be serving it.
pub fn ride_payments() {
    static STARTED: OnceLock<Option<FakePayments>> = OnceLock::new();
    STARTED.get_or_init(|| {
        let whole_run = Duration::from_secs(24 * 3600);
        TcpListener::bind("127.0.0.1:8089")
            .ok()
            .map(|listener| FakePayments::on(listener, whole_run))
    });
}

/// Creates the ride example's own tables (its `schema.sql`) in the test's database.
pub fn ride_tables(env: &Env) {
    let schema = std::fs::read_to_string(root().join("guest-examples/rust/ride-create/schema.sql"))
        .expect("schema.sql");
    let sql: String = schema
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    for statement in sql.split(';').filter(|s| !s.trim().is_empty()) {
        env.app_sql(statement);
    }
}

/// Instances created so far by `host`.
pub fn instances(host: &Host) -> u64 {
    host.metrics()
        .instantiations
        .load(std::sync::atomic::Ordering::Relaxed)
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(schema) = &self.schema {
            let drop = format!("DROP SCHEMA IF EXISTS \"{schema}_app\" CASCADE");
            let _ = postgres(&["SET lock_timeout = '3s'", &drop]);
        }
        if let Some(schema) = self.schema.take() {
            // Bounded: a transaction still open in this test must not hang it.
            // A schema left behind is swept by the next test process.
            let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            if let Err(e) = postgres(&["SET lock_timeout = '3s'", &drop]) {
                eprintln!("could not drop test schema {schema}: {e}");
            }
            drop_guest_role(&schema);
        }
    }
}

/// Runs `statements` in order on one connection to the test Postgres, from
/// a thread of its own (so it works inside and outside a runtime); returns
/// the first column of the last statement's rows.
pub fn postgres(statements: &[&str]) -> Result<Vec<String>, String> {
    let statements: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
    on_own_thread(async move {
        use sqlx::Connection;
        let url = postgres_url();
        let mut conn = sqlx::PgConnection::connect(&url).await.map_err(|e| {
            format!(
                "the Postgres tests need a server at {url} (set ACIDIC_TEST_POSTGRES, or start it: \
                 pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start): {e}"
            )
        })?;
        let mut rows = Vec::new();
        for sql in statements {
            rows = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_all(&mut conn)
                .await
                .map_err(|e| format!("{sql}: {e}"))?;
        }
        Ok(rows)
    })
}

/// Runs `work` to its end on a thread and runtime of its own, so a test can
/// use it inside or outside its own runtime (and from `Drop`).
fn on_own_thread<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, String>> + Send + 'static,
) -> Result<T, String> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(work)
    })
    .join()
    .map_err(|_| "the database thread panicked".to_string())?
}

/// Drops the role the engine made for the guest SQL of schema `schema`.
fn drop_guest_role(schema: &str) {
    let role = acidic::store::postgres::guest_role_name(schema);
    let exists = postgres(&[&format!(
        "SELECT rolname::text FROM pg_roles WHERE rolname = '{role}'"
    )]);
    if exists.is_ok_and(|r| !r.is_empty()) {
        let _ = postgres(&[
            "SET lock_timeout = '3s'",
            &format!("DROP OWNED BY \"{role}\" CASCADE"),
            &format!("DROP ROLE IF EXISTS \"{role}\""),
        ]);
    }
}

/// Drops the schemas of earlier test processes that are gone (killed
/// before their `Drop` ran).
fn drop_stale_schemas() {
    let schemas =
        postgres(&["SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'acidic\\_t\\_%'"])
            .unwrap_or_else(|e| panic!("{e}"));
    for schema in schemas {
        let pid = schema.split('_').nth(2).unwrap_or("");
        if !Path::new("/proc").join(pid).exists() {
            let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            let _ = postgres(&["SET lock_timeout = '3s'", &drop]);
            drop_guest_role(&schema);
        }
    }
}

/// One test body, run on each backend: defines a module `name` with the
/// tests `sqlite` and `postgres`, each carrying the attributes given (the
/// doc and the test attribute). The body gets the test's [`Env`].
macro_rules! on_each_backend {
    ($(#[$attr:meta])* async fn $name:ident($env:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($env: $crate::harness::Env) $body

            $(#[$attr])*
            async fn sqlite() {
                body($crate::harness::Env::on($crate::harness::Backend::Sqlite)).await
            }

            $(#[$attr])*
            async fn postgres() {
                body($crate::harness::Env::on($crate::harness::Backend::Postgres)).await
            }
        }
    };
    ($(#[$attr:meta])* fn $name:ident($env:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($env: $crate::harness::Env) $body

            $(#[$attr])*
            fn sqlite() {
                body($crate::harness::Env::on($crate::harness::Backend::Sqlite))
            }

            $(#[$attr])*
            fn postgres() {
                body($crate::harness::Env::on($crate::harness::Backend::Postgres))
            }
        }
    };
}
pub(crate) use on_each_backend;

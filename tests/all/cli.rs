//! The `acidic` binary end to end, as the README uses it: the ride example.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::harness::{Backend, Env, on_each_backend, ride_payments, ride_tables, root};

fn acidic(env: &Env, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acidic"))
        .args(args)
        .current_dir(root())
        .env("DATABASE_URL", env.db())
        .env("ACIDIC_CACHE_DIR", env.dir.path().join("cache"))
        .env_remove("ACIDIC_LOG")
        .output()
        .expect("run acidic")
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const RIDE: &str = "guest-examples/rust/ride-create/workflow.toml";
const RECEIPT: &str = "guest-examples/rust/send-receipt/workflow.toml";

on_each_backend! {
#[test]
fn ride_example_runs_replays_fails_and_retries(env) {
    assert!(Path::new(&root().join(RIDE)).is_file());
    ride_tables(&env);
    ride_payments();
    let out = acidic(&env, &["register", RIDE, RECEIPT]);
    assert!(out.status.success(), "{}", stderr(&out));

    let args = json!({ "user": "ada@example.com", "origin": [0, 0], "target": [0.3, 0.4], "card": "tok_visa" }).to_string();
    let out = acidic(
        &env,
        &[
            "run",
            "ride-create",
            "--args",
            &args,
            "--key",
            "ride-1",
            "--follow",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let result = stdout_json(&out);
    assert_eq!(result["ride_id"], json!("ride_1"));
    assert_eq!(result["amount_cents"], json!(700));
    assert!(
        stderr(&out).contains("send-receipt run receipt-ride-1: succeeded"),
        "{}",
        stderr(&out)
    );

    // The same key again: the stored result, nothing run.
    let again = acidic(
        &env,
        &[
            "run",
            "ride-create",
            "--args",
            &args,
            "--key",
            "ride-1",
            "--json",
        ],
    );
    assert_eq!(again.status.code(), Some(0));
    let report = stdout_json(&again);
    assert_eq!(report["replayed"], json!(true));
    assert_eq!(report["result"], result);

    // The same key with other args: refused.
    let other = json!({ "user": "eve@example.com", "origin": [0, 0], "target": [1, 1], "card": "tok_visa" }).to_string();
    let out = acidic(
        &env,
        &["run", "ride-create", "--args", &other, "--key", "ride-1"],
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("other args"), "{}", stderr(&out));

    // A flaky card: the charge fails once; `runs show` has the error; `retry` resumes at the charge.
    let flaky = json!({ "user": "bob@example.com", "origin": [0, 0], "target": [1, 1], "card": "tok_flaky" }).to_string();
    let out = acidic(
        &env,
        &["run", "ride-create", "--args", &flaky, "--key", "ride-2"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("payment gateway timed out"),
        "{}",
        stderr(&out)
    );
    let show = acidic(&env, &["runs", "show", "ride-2"]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("at step     charge_card") && text.contains("payment gateway timed out"),
        "{text}"
    );

    let out = acidic(&env, &["retry", "ride-2", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = stdout_json(&out);
    assert_eq!(report["status"], json!("succeeded"));
    assert_eq!(
        report["steps_committed"],
        json!(2),
        "charge_card and send_receipt; create_ride did not run again"
    );
    let detail = stdout_json(&acidic(&env, &["runs", "show", "ride-2", "--json"]));
    let steps: Vec<(String, String)> = detail["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| {
            (
                e["step"].as_str().unwrap_or("").to_string(),
                e["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expect = [
        ("create_ride", "committed"),
        ("charge_card", "failed"),
        ("charge_card", "committed"),
        ("send_receipt", "finished"),
    ];
    assert_eq!(
        steps,
        expect.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
    );

    // A declined card fails for good, at once.
    let declined = json!({ "user": "cy@example.com", "origin": [0, 0], "target": [1, 1], "card": "tok_chargeDeclined" }).to_string();
    let out = acidic(&env, &["run", "ride-create", "--args", &declined, "--json"]);
    // Failed for good: 7, not the 3 of a step that will be retried.
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(stdout_json(&out)["status"], json!("failed"));

    // The application's rows: each ride once, each audit record once, though
    // ride-2's charge step ran twice; the declined ride has no charge.
    let rides = env.app_sql(
        "SELECT run_key || ':' || COALESCE(charge_id, '-') FROM rides ORDER BY run_key",
    );
    assert_eq!(rides.len(), 3, "{rides:?}");
    let charged: Vec<&String> = rides.iter().filter(|r| r.starts_with("ride-")).collect();
    assert!(
        charged.len() == 2 && charged.iter().all(|r| r.contains(":ch_")),
        "ride-1 and ride-2 charged: {rides:?}"
    );
    assert!(
        rides.iter().any(|r| r.ends_with(":-")),
        "the declined ride was not charged: {rides:?}"
    );
    let audit = env.app_sql(
        "SELECT r.run_key || ':' || a.action FROM audit_records a JOIN rides r ON r.id = a.ride_id \
         WHERE r.run_key LIKE 'ride-%' ORDER BY 1",
    );
    assert_eq!(
        audit,
        ["ride-1:charged", "ride-1:created", "ride-2:charged", "ride-2:created"],
    );

    let list = acidic(&env, &["runs", "list", "--json"]);
    assert_eq!(
        stdout_json(&list).as_array().map(Vec::len),
        Some(5),
        "3 rides + 2 receipts"
    );
}
}

#[test]
fn bad_input_gets_a_clear_error() {
    let env = Env::new();
    let out = acidic(&env, &["run", "nope", "--args", "{}"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("workflow `nope` is not registered"),
        "{}",
        stderr(&out)
    );

    let out = acidic(&env, &["run", RIDE, "--args", "{not json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid JSON --args"),
        "{}",
        stderr(&out)
    );

    let out = acidic(&env, &["runs", "show", "missing-key"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no run has the key `missing-key`"),
        "{}",
        stderr(&out)
    );

    let out = acidic(&env, &["register", "guest-examples/rust/nowhere.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nowhere.toml"), "{}", stderr(&out));
}

on_each_backend! {
#[test]
fn bench_prints_a_ratio_against_its_baseline(env) {
    let out = acidic(&env, &["bench", "--runs", "20", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout_json(&out);
    assert!(
        report["ratio"].as_f64().is_some_and(|r| r > 0.0),
        "{report}"
    );
    assert_eq!(report["steps_per_run"], json!(3));
    let database = if env.backend == Backend::Postgres { "Postgres" } else { "SQLite" };
    assert!(
        report["database"].as_str().is_some_and(|d| d.starts_with(database)),
        "the bench ran on {database}: {report}"
    );
}
}

on_each_backend! {
#[test]
fn the_ride_bench_compares_acidic_with_bare_commits(env) {
    let out = acidic(
        &env,
        &[
            "bench", "--workload", "ride", "--workflows", "6", "--rounds", "1",
            "--concurrency", "1,2", "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout_json(&out);
    let rows = report["rows"].as_array().expect("rows");
    // Postgres: one database; SQLite: synchronous FULL and NORMAL.
    let databases = if env.backend == Backend::Postgres { 1 } else { 2 };
    assert_eq!(rows.len(), databases * 2 * 2, "{report}");
    for row in rows {
        assert!(row["wf_per_sec"].as_f64().is_some_and(|r| r > 0.0), "{row}");
        assert!(row["p99_ms"].as_f64() >= row["p50_ms"].as_f64(), "{row}");
        if env.backend == Backend::Postgres {
            // At least one commit per step on either side.
            assert!(row["commits_per_wf"].as_f64().is_some_and(|c| c >= 3.0), "{row}");
        } else {
            assert!(row["commits_per_wf"].is_null(), "{row}");
        }
    }
    if env.backend == Backend::Sqlite {
        let settings: Vec<&str> = rows.iter().filter_map(|r| r["database"].as_str()).collect();
        assert!(settings.iter().any(|d| d.contains("synchronous=NORMAL")), "{report}");
        let out = acidic(
            &env,
            &["bench", "--workload", "ride", "--workflows", "2", "--synchronous", "off"],
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("--synchronous off"), "{}", stderr(&out));
    }
}
}

/// A SQLite URL may ask for synchronous=normal; off, or anything else, is
/// refused with the reason, and nothing is created.
#[test]
fn sqlite_synchronous_is_a_setting_of_the_url() {
    let env = Env::new();
    let manifest = env.scripted("plain", "", &[("only", "")]);
    let manifest = manifest.display().to_string();
    let file = env.dir.path().join("normal.db");
    let url = format!("sqlite://{}?synchronous=normal", file.display());
    let out = acidic(
        &env,
        &["--database-url", &url, "run", &manifest, "--args", "{}"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(file.is_file());
    let off = env.dir.path().join("off.db");
    let url = format!("sqlite://{}?synchronous=off", off.display());
    let out = acidic(
        &env,
        &["--database-url", &url, "run", &manifest, "--args", "{}"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("synchronous=off is not allowed"),
        "{}",
        stderr(&out)
    );
    assert!(!off.exists(), "nothing created");
}

/// `--args` must be a JSON object: an array, a string or a number is refused
/// with a message saying so, and nothing runs.
#[test]
fn args_that_are_not_a_json_object_are_refused() {
    let env = Env::new();
    let manifest = env.scripted("plain", "", &[("only", "")]);
    let manifest = manifest.display().to_string();
    for args in ["[1]", "\"ada\"", "42", "null"] {
        let out = acidic(&env, &["run", &manifest, "--args", args]);
        assert_eq!(out.status.code(), Some(1), "{args}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--args must be a JSON object"),
            "{args}: {}",
            stderr(&out)
        );
    }
    let out = acidic(&env, &["runs", "list", "--json"]);
    assert_eq!(stdout_json(&out), json!([]), "nothing ran");
    let out = acidic(&env, &["workflows", "list", "--json"]);
    assert_eq!(
        stdout_json(&out),
        json!([]),
        "nothing registered: {}",
        stderr(&out)
    );
}

on_each_backend! {
/// A manifest whose step awaits a workflow that is not registered is refused
/// at `register`, naming it; registered together, the two are accepted.
#[test]
fn register_refuses_awaits_of_an_unregistered_workflow(env) {
    let order = "guest-examples/rust/order/workflow.toml";
    let item = "guest-examples/rust/order/charge-item.toml";
    let out = acidic(&env, &["register", order]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("charge-item") && text.contains("not registered"), "{text}");
    assert!(text.contains("awaits.workflow"), "names the field: {text}");
    let out = acidic(&env, &["register", order, item]);
    assert!(out.status.success(), "{}", stderr(&out));
}
}

/// `acidic runs list | head -1`: the listing ends quietly when its reader
/// goes away, with no panic.
#[test]
fn a_closed_pipe_ends_a_listing_quietly() {
    use std::io::{BufRead, BufReader};
    let env = Env::new();
    let manifest = env.scripted("many", "", &[("only", "")]);
    let manifest = manifest.display().to_string();
    let out = acidic(&env, &["register", &manifest]);
    assert!(out.status.success(), "{}", stderr(&out));
    for i in 0..40 {
        let out = acidic(
            &env,
            &[
                "enqueue",
                "many",
                "--key",
                &format!("k-{i}-{}", "x".repeat(200)),
                "--args",
                "{}",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for _ in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_acidic"))
            .args(["runs", "list", "--limit", "1000", "--json"])
            .current_dir(root())
            .env("DATABASE_URL", env.db())
            .env("ACIDIC_CACHE_DIR", env.dir.path().join("cache"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("a line");
        // The reader is dropped here: the rest of the listing has nowhere to go.
        let out = child.wait_with_output().expect("wait");
        let text = stderr(&out);
        assert!(!text.contains("panicked"), "no panic: {text}");
        assert!(text.trim().is_empty(), "quiet: {text}");
        use std::os::unix::process::ExitStatusExt;
        assert!(
            out.status.success() || out.status.signal() == Some(libc_sigpipe()),
            "ended by the closed pipe, not an error: {:?}",
            out.status
        );
    }
}

/// SIGPIPE's number on Linux.
fn libc_sigpipe() -> i32 {
    13
}

/// `acidic completions <shell>` prints a completion script for the shell.
#[test]
fn completions_are_printed_for_each_shell() {
    let env = Env::new();
    for (shell, mark) in [
        ("bash", "_acidic"),
        ("zsh", "#compdef acidic"),
        ("fish", "complete -c acidic"),
    ] {
        let out = acidic(&env, &["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains(mark),
            "{shell}: {}",
            &script[..script.len().min(300)]
        );
        assert!(
            script.contains("worker") && script.contains("register"),
            "{shell}: subcommands"
        );
    }
    let out = acidic(&env, &["completions", "tcsh"]);
    assert_ne!(out.status.code(), Some(0), "an unknown shell is refused");
}

/// With `--json`, an error is a JSON object on stderr, with the exit code;
/// and replaying a run that succeeded after a failed attempt carries no
/// stale `error`.
#[test]
fn json_errors_and_replays_are_clean() {
    let env = Env::new();
    let manifest = env.scripted("flaky-once", "max_attempts = 3", &[("only", "")]);
    let manifest = manifest.display().to_string();
    // `runs show` never creates a database: make it first.
    let out = acidic(&env, &["register", &manifest]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A usage error too, with clap's exit code.
    let out = acidic(&env, &["--json", "runs", "lst"]);
    assert_eq!(out.status.code(), Some(2));
    let usage: Value = serde_json::from_slice(&out.stderr)
        .unwrap_or_else(|e| panic!("a usage error is not JSON ({e}): {}", stderr(&out)));
    assert!(
        usage["error"]
            .as_str()
            .is_some_and(|e| e.contains("unrecognized subcommand 'lst'")),
        "{usage}"
    );
    assert_eq!(usage["exit_code"], 2);
    let out = acidic(&env, &["--json", "runs", "show", "no-such-key"]);
    assert_eq!(out.status.code(), Some(1));
    let error: Value = serde_json::from_slice(&out.stderr)
        .unwrap_or_else(|e| panic!("stderr is not JSON ({e}): {}", stderr(&out)));
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|m| m.contains("no-such-key")),
        "{error}"
    );
    assert_eq!(error["exit_code"], json!(1));

    let args = r#"{"script":{"only":{"fail":"retryable","fail_attempts":1}}}"#;
    let out = acidic(&env, &["run", &manifest, "--key", "f1", "--args", args]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the first attempt fails: {}",
        stderr(&out)
    );
    let out = acidic(&env, &["retry", "f1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = acidic(
        &env,
        &["--json", "run", "flaky-once", "--key", "f1", "--args", args],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let replay = stdout_json(&out);
    assert_eq!(replay["replayed"], json!(true), "{replay}");
    assert_eq!(replay["status"], json!("succeeded"));
    assert!(
        replay["error"].is_null(),
        "no stale error on a replay: {replay}"
    );
}

/// A database that cannot be opened is one line naming the cause, said
/// once; a command about existing runs never creates a database file; a
/// password in the URL is not printed.
#[test]
fn database_errors_are_one_line_and_inspecting_creates_nothing() {
    let env = Env::new();
    let missing = env.dir.path().join("nothing-here.db");
    let run = |url: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_acidic"))
            .args(args)
            .env("DATABASE_URL", url)
            .env("ACIDIC_CACHE_DIR", env.dir.path().join("cache"))
            .output()
            .expect("run acidic")
    };
    for args in [
        &["runs", "list"][..],
        &["runs", "show", "k"],
        &["retry", "k"],
        &["cancel", "k"],
        &["reap"],
    ] {
        let out = run(&missing.display().to_string(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("no database at"), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        let named = missing.display().to_string();
        assert_eq!(err.matches(&named).count(), 1, "the path once: {err}");
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
    let nowhere = env.dir.path().join("no/such/folder/acidic.db");
    let out = run(
        &nowhere.display().to_string(),
        &["register", "guest-examples/rust/scripted/workflow.toml"],
    );
    let err = stderr(&out);
    assert!(err.contains("cannot open or create the file"), "{err}");
    let named = nowhere.display().to_string();
    assert_eq!(err.matches(&named).count(), 1, "the path once: {err}");

    let base = crate::harness::postgres_url();
    let (scheme_user, host_db) = base.split_once('@').expect("a Postgres URL with a user");
    let cases = [
        (
            format!("{scheme_user}:s3cret@127.0.0.1:1/test"),
            "Connection refused",
        ),
        (
            format!(
                "{scheme_user}:s3cret@{}",
                host_db.replace("/test", "/acidic_no_such_db")
            ),
            "does not exist",
        ),
        (
            "mysql://u:s3cret@127.0.0.1/test".to_string(),
            "unsupported database URL",
        ),
        (
            format!("postgres://acidic_no_such_role:s3cret@{host_db}"),
            "role \"acidic_no_such_role\" does not exist",
        ),
    ];
    for (url, cause) in cases {
        let out = run(&url, &["runs", "list"]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert_eq!(err.matches(cause).count(), 1, "{cause} once in: {err}");
        // The database is named once.
        assert_eq!(err.matches("127.0.0.1").count(), 1, "named once: {err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}

on_each_backend! {
/// `runs show` takes the id `runs list` shows, or the unique start of a key
/// (also as the list cut it, with its ellipsis); an ambiguous start names
/// the candidates.
#[test]
fn runs_show_takes_an_id_or_a_key_prefix(env) {
    let manifest = env.scripted("trip", "", &[("a", "")]);
    let manifest = manifest.display().to_string();
    for key in ["order-2026-12-02-alpha-0001", "order-2026-12-02-beta-0002"] {
        let out = acidic(&env, &["run", &manifest, "--key", key]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let listed = stdout_json(&acidic(&env, &["--json", "runs", "list"]));
    let first = listed
        .as_array()
        .and_then(|runs| runs.iter().find(|r| r["key"] == "order-2026-12-02-alpha-0001"))
        .expect("the run listed");
    let id = first["id"].to_string();
    for given in [id.as_str(), "order-2026-12-02-al", "order-2026-12-02-al…"] {
        let shown = stdout_json(&acidic(&env, &["--json", "runs", "show", given]));
        assert_eq!(shown["run"]["key"], "order-2026-12-02-alpha-0001", "{given}");
    }
    // The list shows keys whole, so one copied from it resolves.
    let text = stdout(&acidic(&env, &["runs", "list"]));
    assert!(text.contains("order-2026-12-02-alpha-0001"), "{text}");
    // retry (and cancel, runs unlock) take an id or a prefix too.
    let out = acidic(&env, &["retry", id.as_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("already succeeded"), "{}", stderr(&out));
    let out = acidic(&env, &["retry", "order-2026-12-02-be"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = acidic(&env, &["runs", "show", "order-2026"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("starts the keys of 2 runs") && err.contains("beta-0002"), "{err}");
    let out = acidic(&env, &["runs", "show", "nothing-like-it"]);
    assert!(stderr(&out).contains("no run has the key"), "{}", stderr(&out));
}
}

on_each_backend! {
/// Ctrl-C on `acidic run` stops the run after its current step and hands
/// its lease back: the process exits 130 saying how to resume, the run is
/// pending at its next step with no lease, and `retry` finishes it.
#[test]
fn ctrl_c_on_run_hands_the_run_back(env) {
    let manifest = env.scripted("trip", "", &[("a", ""), ("b", ""), ("c", "")]);
    let manifest = manifest.display().to_string();
    let args = r#"{"script":{"a":{"sleep_ms":1500,"count":true}}}"#;
    let child = spawn_run(&env, &manifest, "ctrl-c", args);
    // Once the run is running, its step has started (and the handlers are in).
    wait_until_running(&env, "ctrl-c");
    std::thread::sleep(std::time::Duration::from_millis(200));
    // SAFETY: signals the child this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let started = std::time::Instant::now();
    let out = child.wait_with_output().expect("wait");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("acidic retry ctrl-c"), "{}", stderr(&out));
    let shown = stdout_json(&acidic(&env, &["--json", "runs", "show", "ctrl-c"]));
    assert_eq!(shown["run"]["status"], "pending", "{shown}");
    assert_eq!(shown["run"]["recovery_point"], "b", "{shown}");
    assert_eq!(shown["run"]["locked_by"], Value::Null, "{shown}");
    let out = acidic(&env, &["retry", "ctrl-c"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout_json(&acidic(&env, &["--json", "runs", "show", "ctrl-c"]));
    assert_eq!(shown["run"]["status"], "succeeded");
    assert_eq!(shown["run"]["attributes"]["calls_a"], 1, "step a ran once: {shown}");
}
}

on_each_backend! {
/// Cancelling a run that is inside a step records the request; the step's
/// effects commit, then the run is cancelled with the runs it staged, and
/// no later step runs. A step cut off while a cancel is asked for cancels
/// the run at once instead of being retried.
#[test]
fn cancelling_a_running_run_takes_effect_at_the_step_boundary(env) {
    let manifest = env.scripted("trip", "", &[("a", ""), ("b", ""), ("c", "")]);
    let manifest = manifest.display().to_string();
    let args = r#"{"script":{"a":{"sleep_ms":1500,"count":true,"stage":[{"workflow":"trip","key":"kid","args":{}}]},"b":{"count":true}}}"#;
    let child = spawn_run(&env, &manifest, "halt", args);
    wait_until_running(&env, "halt");
    let out = acidic(&env, &["--json", "cancel", "halt", "--by", "ops"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let asked = stdout_json(&out);
    assert_eq!(asked["requested"], true, "{asked}");
    assert_eq!(asked["step"], "a", "{asked}");
    let shown = acidic(&env, &["runs", "show", "halt"]);
    assert!(
        stdout(&shown).contains("requested by ops"),
        "{}",
        stdout(&shown)
    );
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(7), "cancelled: {}", stderr(&out));
    assert!(
        stderr(&out).contains("cancelled at step `b`"),
        "the report names where it stopped: {}",
        stderr(&out)
    );
    let shown = stdout_json(&acidic(&env, &["--json", "runs", "show", "halt"]));
    let run = &shown["run"];
    assert_eq!(run["status"], "cancelled", "{shown}");
    assert_eq!(run["cancelled_by"], "ops", "{shown}");
    assert_eq!(run["recovery_point"], "b", "{shown}");
    assert_eq!(run["attributes"]["calls_a"], 1, "step a committed: {shown}");
    assert!(run["attributes"].get("calls_b").is_none(), "b never ran: {shown}");
    let kid = stdout_json(&acidic(&env, &["--json", "runs", "show", "kid"]));
    assert_eq!(kid["run"]["status"], "cancelled", "the staged run too: {kid}");
    // Once cancelled, a retry of it is refused and a worker finds nothing.
    let out = acidic(&env, &["worker", "--exit-when-idle"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout_json(&acidic(&env, &["--json", "runs", "show", "halt"]));
    assert_eq!(shown["run"]["status"], "cancelled");

    // A step cut off at its deadline while a cancel was asked for.
    let manifest = env.scripted("slow", "timeout = \"2s\"", &[("a", ""), ("b", "")]);
    let manifest = manifest.display().to_string();
    let args = r#"{"script":{"a":{"sleep_ms":10000}}}"#;
    let child = spawn_run(&env, &manifest, "cut", args);
    wait_until_running(&env, "cut");
    let out = acidic(&env, &["cancel", "cut"]);
    assert!(stdout(&out).contains("cancel requested"), "{}", stdout(&out));
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let shown = stdout_json(&acidic(&env, &["--json", "runs", "show", "cut"]));
    assert_eq!(shown["run"]["status"], "cancelled", "{shown}");
    assert_eq!(shown["run"]["recovery_point"], "a", "{shown}");
    assert_eq!(shown["timeline"][0]["outcome"], "failed", "{shown}");
    assert_eq!(shown["timeline"].as_array().map(Vec::len), Some(1), "not retried: {shown}");
}
}

on_each_backend! {
/// `workflows list` and `show` say which version new runs get, with each
/// step's component digest, policy and grants; `prune` deletes the versions
/// no run uses (never the latest) and the components and compiled cache
/// entries no version names, keeping what changed within its grace.
#[test]
fn workflows_are_listed_shown_and_pruned(env) {
    let scripted = crate::harness::component("scripted").display().to_string();
    let tokenize = crate::harness::component("tokenize").display().to_string();
    let write = |steps: &[(&str, &str)]| {
        let mut text = "name = \"flow\"\nversion = \"x\"\n".to_string();
        for (name, component) in steps {
            text.push_str(&format!("\n[[step]]\nname = \"{name}\"\ncomponent = \"{component}\"\n"));
        }
        env.write("flow.toml", &text).display().to_string()
    };
    let v1 = write(&[("a", &scripted)]);
    assert!(acidic(&env, &["register", &v1]).status.success());
    let out = acidic(&env, &["run", "flow", "--key", "used", "--args", "{}"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v2 = write(&[("a", &tokenize)]);
    assert!(acidic(&env, &["register", &v2]).status.success());
    let v3 = write(&[("a", &scripted), ("b", &scripted)]);
    assert!(acidic(&env, &["register", &v3]).status.success());
    let tokenize_digest = {
        let shown = stdout_json(&acidic(&env, &["--json", "workflows", "show", "flow", "--version", "2"]));
        shown["definition"]["steps"][0]["component"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(tokenize_digest.len(), 64, "a digest");

    let out = acidic(&env, &["workflows", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&out);
    assert!(listed.contains("flow") && listed.contains("a → b"), "{listed}");
    let out = acidic(&env, &["workflows", "show", "flow"]);
    let shown = stdout(&out);
    assert!(shown.contains("version     3 (the latest: new runs get it)"), "{shown}");
    assert!(shown.contains("step 2 `b`") && shown.contains("component  sha256:"), "{shown}");
    assert!(shown.contains("max_attempts") && shown.contains("sql        none"), "{shown}");
    let out = acidic(&env, &["workflows", "show", "flow", "--version", "1"]);
    assert!(stdout(&out).contains("new runs get version 3"), "{}", stdout(&out));

    // Within the grace nothing goes: version 2 was superseded just now.
    let pruned = stdout_json(&acidic(&env, &["--json", "workflows", "prune"]));
    assert_eq!(pruned["versions"], json!([]), "{pruned}");
    let cached = |digest: &str| {
        std::fs::read_dir(env.dir.path().join("cache"))
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(digest)))
            .unwrap_or(false)
    };
    assert!(cached(&tokenize_digest), "registering compiled it into the cache");
    let out = acidic(&env, &["--json", "workflows", "prune", "--grace", "0s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pruned = stdout_json(&out);
    assert_eq!(pruned["versions"], json!([["flow", 2]]), "only the unused, superseded one: {pruned}");
    assert_eq!(pruned["components"], json!([tokenize_digest]), "{pruned}");
    assert!(!cached(&tokenize_digest), "its compiled form is gone too");
    let out = acidic(&env, &["workflows", "show", "flow", "--version", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("has no version 2 (its versions: 1, 3)"), "{}", stderr(&out));
    // The run on version 1 still reads, and new runs get version 3.
    assert!(acidic(&env, &["runs", "show", "used"]).status.success());
    let out = acidic(&env, &["--json", "run", "flow", "--key", "new", "--args", "{}"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["workflow_version"], 3);
    let pruned = stdout_json(&acidic(&env, &["--json", "workflows", "prune", "--grace", "0s"]));
    assert_eq!(pruned["versions"], json!([]), "nothing more: {pruned}");
    let out = acidic(&env, &["workflows", "show", "nope"]);
    assert!(stderr(&out).contains("`nope` is not registered"), "{}", stderr(&out));
}
}

/// A run whose worker died mid-step shows as stalled once its lease has
/// expired, naming the dead lease, in `runs show` and `runs list`.
#[test]
fn a_run_whose_lease_expired_shows_as_stalled() {
    let env = Env::new();
    let manifest = env.scripted("trip", "timeout = \"1s\"", &[("a", "")]);
    let manifest = manifest.display().to_string();
    let args = r#"{"script":{"a":{"sleep_ms":900}}}"#;
    let out = acidic(
        &env,
        &["enqueue", &manifest, "--key", "orphan", "--args", args],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut worker = spawn_worker(&env, &["--lease", "1s"]);
    wait_until_running(&env, "orphan");
    worker.kill().expect("kill -9 the worker");
    let _ = worker.wait();
    let out = acidic(&env, &["runs", "show", "orphan"]);
    assert!(
        stdout(&out).contains("status      running"),
        "{}",
        stdout(&out)
    );
    // The lease: the step's deadline (1 s) plus 5 s.
    std::thread::sleep(std::time::Duration::from_millis(6500));
    let out = acidic(&env, &["runs", "show", "orphan"]);
    assert!(
        stdout(&out).contains("status      stalled"),
        "{}",
        stdout(&out)
    );
    let out = acidic(&env, &["runs", "list"]);
    assert!(stdout(&out).contains("stalled"), "{}", stdout(&out));
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

on_each_backend! {
/// `runs unlock` breaks the lease of a run whose worker died, refuses while
/// the holder is a live process of this machine, and refuses a run that is
/// not running.
#[test]
fn runs_unlock_breaks_a_dead_workers_lease(env) {
    let manifest = env.scripted("trip", "", &[("a", ""), ("b", "")]);
    let manifest = manifest.display().to_string();
    let args = r#"{"script":{"a":{"sleep_ms":2500}}}"#;
    let out = acidic(&env, &["enqueue", &manifest, "--key", "held", "--args", args]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut worker = spawn_worker(&env, &[]);
    wait_until_running(&env, "held");
    let out = acidic(&env, &["runs", "unlock", "held"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("a live process of this machine"), "{}", stderr(&out));

    worker.kill().expect("kill -9 the worker");
    let _ = worker.wait();
    let out = acidic(&env, &["runs", "unlock", "held"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout_json(&acidic(&env, &["--json", "runs", "show", "held"]));
    assert_eq!((shown["run"]["status"].as_str(), &shown["run"]["locked_by"]), (Some("pending"), &Value::Null), "{shown}");
    let out = acidic(&env, &["retry", "held"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = acidic(&env, &["runs", "unlock", "held"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("only a running run"), "{}", stderr(&out));
}
}

/// An `acidic worker` with `args` on the test's database, its output dropped.
/// Starts `acidic run MANIFEST --key KEY --args ARGS` in the background,
/// with its output kept for `wait_with_output`.
fn spawn_run(env: &Env, manifest: &str, key: &str, args: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_acidic"))
        .args(["run", manifest, "--key", key, "--args", args])
        .current_dir(root())
        .env("DATABASE_URL", env.db())
        .env("ACIDIC_CACHE_DIR", env.dir.path().join("cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn acidic run")
}

fn spawn_worker(env: &Env, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_acidic"))
        .arg("worker")
        .args(args)
        .current_dir(root())
        .env("DATABASE_URL", env.db())
        .env("ACIDIC_CACHE_DIR", env.dir.path().join("cache"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn a worker")
}

/// Waits (at most 30 s) until the run with `key` is running.
fn wait_until_running(env: &Env, key: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = acidic(env, &["--json", "runs", "show", key]);
        if out.status.success() && stdout_json(&out)["run"]["status"] == "running" {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{key} never started running"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

on_each_backend! {
/// `acidic retry KEY --upgrade` moves a run that failed on a broken
/// component to the latest version of its workflow and finishes it there,
/// without running the committed steps again; a latest version without the
/// step the run stands at is refused, naming it.
#[test]
fn retry_upgrade_moves_a_failed_run_to_the_latest_version(env) {
    let manifest = |second: &str, guest: &str| {
        let text = format!(
            "name = \"fixable\"\n\n[defaults]\nmax_attempts = 1\nbackoff = \"1ms\"\n\n\
             [[step]]\nname = \"a\"\ncomponent = \"{}\"\n\n\
             [[step]]\nname = \"{second}\"\ncomponent = \"{}\"\n",
            crate::harness::component("scripted").display(),
            crate::harness::component(guest).display()
        );
        env.write(&format!("fixable-{second}-{guest}.toml"), &text).display().to_string()
    };
    // Version 1: its step `trap` traps (the hostile guest does what its step is named).
    let broken = manifest("trap", "hostile");
    let args = r#"{"script":{"a":{"count":true}}}"#;
    let out = acidic(&env, &["run", &broken, "--key", "up", "--args", args]);
    assert_eq!(out.status.code(), Some(7), "failed for good: {}", stderr(&out));
    // The hint says how fixed code reaches the run.
    assert!(stderr(&out).contains("`acidic retry up --upgrade`"), "{}", stderr(&out));
    let out = acidic(&env, &["run", &broken, "--key", "up2", "--args", args]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    // Retried on its own version, it fails the same way.
    let out = acidic(&env, &["retry", "up"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));

    // Version 2 replaces the component; version 3 has no step `trap`.
    let fixed = manifest("trap", "scripted");
    assert!(acidic(&env, &["register", &fixed]).status.success());
    let out = acidic(&env, &["--json", "retry", "up", "--upgrade"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shown = stdout_json(&acidic(&env, &["--json", "runs", "show", "up"]));
    assert_eq!(shown["run"]["status"], "succeeded", "{shown}");
    assert_eq!(shown["run"]["workflow_version"], 2, "{shown}");
    assert_eq!(shown["run"]["attributes"]["calls_a"], 1, "step a ran once: {shown}");

    let renamed = manifest("other", "scripted");
    assert!(acidic(&env, &["register", &renamed]).status.success());
    let out = acidic(&env, &["retry", "up2", "--upgrade"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("step `trap`") && err.contains("version 3"), "{err}");
    let shown = stdout_json(&acidic(&env, &["--json", "runs", "show", "up2"]));
    assert_eq!(shown["run"]["status"], "failed", "left as it was: {shown}");
}
}

/// A worker on a SQLite file whose disk fills recovers by itself once
/// space returns: the runs it could not commit are retried and finish, with
/// no restart. The disk is a 6 MiB tmpfs (the test needs root to mount it,
/// as the machine's CI has; without it, it says so and checks nothing).
#[test]
fn a_worker_recovers_when_the_disk_has_room_again() {
    let env = Env::new();
    let disk = env.dir.path().join("disk");
    std::fs::create_dir_all(&disk).expect("mkdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6M", "tmpfs"])
        .arg(&disk)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("cannot mount a tmpfs here (not root?): the full-disk test checks nothing");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk.clone());
    let db = disk.join("acidic.db").display().to_string();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_acidic"))
            .args(args)
            .current_dir(root())
            .env("DATABASE_URL", &db)
            .env("ACIDIC_CACHE_DIR", env.dir.path().join("cache"))
            .env_remove("ACIDIC_LOG")
            .output()
            .expect("run acidic")
    };
    let manifest = env.scripted("fill", "max_attempts = 1000", &[("a", ""), ("b", "")]);
    let out = run(&["register", &manifest.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pad = "x".repeat(20_000);
    let args = format!(r#"{{"script":{{"a":{{"set":{{"pad":"{pad}"}}}}}}}}"#);
    for i in 0..10 {
        let key = format!("k{i}");
        let out = run(&[
            "enqueue", "fill", "--key", &key, "--delay", "3s", "--args", &args,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let mut worker = Command::new(env!("CARGO_BIN_EXE_acidic"))
        .arg("worker")
        .current_dir(root())
        .env("DATABASE_URL", &db)
        .env("ACIDIC_CACHE_DIR", env.dir.path().join("cache"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn a worker");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // Fill the disk, and keep it full while the runs come due.
    let filler = disk.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("create filler");
        let block = vec![0u8; 64 << 10];
        while f.write_all(&block).is_ok() {}
        let _ = f.flush();
    }
    std::thread::sleep(std::time::Duration::from_secs(5));
    let listed = run(&["--json", "runs", "list"]);
    let succeeded_while_full = stdout_json(&listed)
        .as_array()
        .map(|runs| runs.iter().filter(|r| r["status"] == "succeeded").count())
        .unwrap_or(0);
    assert!(
        succeeded_while_full < 10,
        "the disk was full, yet every run finished: the test filled nothing"
    );
    std::fs::remove_file(&filler).expect("free the disk");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let out = run(&["--json", "runs", "list"]);
        let runs = stdout_json(&out);
        let done = runs
            .as_array()
            .map(|runs| runs.iter().filter(|r| r["status"] == "succeeded").count())
            .unwrap_or(0);
        if done == 10 {
            break;
        }
        assert!(
            worker.try_wait().ok().flatten().is_none(),
            "the worker died"
        );
        let statuses: Vec<String> = runs
            .as_array()
            .map(|runs| {
                runs.iter()
                    .map(|r| format!("{}: {}", r["key"], r["status"]))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not recover once the disk had room: {statuses:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = worker.kill();
    let _ = worker.wait();
}

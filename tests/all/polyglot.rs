//! Steps in Rust, JavaScript, Python, Go and C: one ride test body for every
//! language, the five-language workflow, and the Go SDK's glue under load.
//! All through the `acidic` binary, as a user runs them.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::harness::{Env, on_each_backend, polyglot_guests, ride_payments, ride_tables, root};

/// One compiled-component cache for these tests: the JS, Python and Go
/// components are large, and the cache is keyed by digest and engine.
fn shared_cache() -> PathBuf {
    root().join("target/test-component-cache")
}

fn acidic(env: &Env, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acidic"))
        .args(args)
        .current_dir(root())
        .env("DATABASE_URL", env.db())
        .env("ACIDIC_CACHE_DIR", shared_cache())
        .env_remove("ACIDIC_LOG")
        .output()
        .expect("run acidic")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    })
}

/// `runs show <key> --json`: the run, its timeline and its children.
fn show(env: &Env, key: &str) -> Value {
    let out = acidic(env, &["runs", "show", key, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    json_of(&out)
}

fn timeline(detail: &Value) -> Vec<(String, String)> {
    detail["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (field("step"), field("outcome"))
        })
        .collect()
}

fn pairs(expect: &[(&str, &str)]) -> Vec<(String, String)> {
    expect
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The ride example in `lang`: a flaky card forces a retry of `charge_card`;
/// the attributes `create_ride` committed survive it, `create_ride` does not
/// run again, the result is right and the staged receipt exists once.
fn ride_behaves_the_same(env: Env, lang: &str) {
    polyglot_guests();
    ride_tables(&env);
    let (manifest, workflow) = match lang {
        "rust" => {
            ride_payments();
            (
                "guest-examples/rust/ride-create/workflow.toml".to_string(),
                "ride-create".to_string(),
            )
        }
        _ => (
            format!("guest-examples/{lang}/ride-create/workflow.toml"),
            format!("ride-create-{lang}"),
        ),
    };
    let out = acidic(
        &env,
        &[
            "register",
            &manifest,
            "guest-examples/rust/send-receipt/workflow.toml",
        ],
    );
    assert!(out.status.success(), "{lang}: {}", stderr(&out));

    let key = format!("ride-{lang}");
    let args = json!({ "user": "ada@example.com", "origin": [0, 0], "target": [0.3, 0.4], "card": "tok_flaky" })
        .to_string();
    let out = acidic(&env, &["run", &workflow, "--key", &key, "--args", &args]);
    assert_eq!(out.status.code(), Some(3), "{lang}: {}", stderr(&out));
    assert!(
        stderr(&out).contains("payment gateway timed out"),
        "{lang}: {}",
        stderr(&out)
    );

    // What create_ride committed is there; the failed charge left nothing.
    let detail = show(&env, &key);
    let run = &detail["run"];
    assert_eq!(run["recovery_point"], json!("charge_card"), "{lang}: {run}");
    let ride_id = format!("ride_{}", run["id"]);
    assert_eq!(
        run["attributes"]["ride_id"],
        json!(ride_id),
        "{lang}: {run}"
    );
    assert_eq!(
        run["attributes"]["amount_cents"],
        json!(700),
        "{lang}: {run}"
    );
    assert!(
        run["attributes"].get("charge_id").is_none(),
        "{lang}: {run}"
    );
    assert_eq!(env.app_count("rides", "charge_id IS NULL"), 1, "{lang}");

    let out = acidic(&env, &["retry", &key, "--follow", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{lang}: {}", stderr(&out));
    let detail = show(&env, &key);
    let run = &detail["run"];
    assert_eq!(run["status"], json!("succeeded"), "{lang}: {run}");
    let result = &run["result"];
    assert_eq!(result["ride_id"], json!(ride_id), "{lang}: {result}");
    assert_eq!(result["amount_cents"], json!(700), "{lang}: {result}");
    assert_eq!(
        result["receipt_run"],
        json!(format!("receipt-{key}")),
        "{lang}: {result}"
    );
    let charge = result["charge_id"].as_str().unwrap_or_default();
    assert!(charge.starts_with("ch_"), "{lang}: {result}");
    assert_eq!(
        timeline(&detail),
        pairs(&[
            ("create_ride", "committed"),
            ("charge_card", "failed"),
            ("charge_card", "committed"),
            ("send_receipt", "finished"),
        ]),
        "{lang}"
    );

    // The staged receipt: one run, succeeded (--follow ran it).
    let children = detail["children"].as_array().expect("children");
    assert_eq!(children.len(), 1, "{lang}: {children:?}");
    assert_eq!(children[0]["key"], json!(format!("receipt-{key}")));
    let receipt = show(&env, &format!("receipt-{key}"));
    assert_eq!(receipt["run"]["status"], json!("succeeded"), "{lang}");
    assert_eq!(
        receipt["run"]["result"]["ride_id"],
        json!(ride_id),
        "{lang}"
    );

    // The same key again replays; the rows are there once.
    let out = acidic(
        &env,
        &["run", &workflow, "--key", &key, "--args", &args, "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{lang}: {}", stderr(&out));
    let replay = json_of(&out);
    assert_eq!(replay["replayed"], json!(true), "{lang}");
    assert_eq!(&replay["result"], result, "{lang}");
    assert_eq!(
        env.app_count("rides", &format!("charge_id = '{charge}'")),
        1,
        "{lang}"
    );
    let audit = env.app_sql("SELECT action FROM audit_records ORDER BY action DESC");
    assert_eq!(audit, ["created", "charged"], "{lang}");
}

on_each_backend! {
#[test]
fn ride_in_rust(env) {
    ride_behaves_the_same(env, "rust");
}
}

on_each_backend! {
#[test]
fn ride_in_javascript(env) {
    ride_behaves_the_same(env, "js");
}
}

on_each_backend! {
#[test]
fn ride_in_python(env) {
    ride_behaves_the_same(env, "python");
}
}

on_each_backend! {
#[test]
fn ride_in_go(env) {
    ride_behaves_the_same(env, "go");
}
}

const POLYGLOT: &str = "guest-examples/polyglot/workflow.toml";
const NOTIFY: &str = "guest-examples/polyglot/notify.toml";

/// Rust → JS → Python → Go → C, with a failure injected in the Python step:
/// `retry` resumes there, and the Rust and JS steps are not run again.
#[test]
fn polyglot_workflow_survives_a_failure_in_its_python_step() {
    polyglot_guests();
    let env = Env::new();
    let out = acidic(&env, &["register", POLYGLOT, NOTIFY]);
    assert!(out.status.success(), "{}", stderr(&out));

    let args = json!({ "text": "The cat and the hat, and the bat.", "top": 2, "fail_once": true })
        .to_string();
    let out = acidic(
        &env,
        &["run", "polyglot", "--key", "words-1", "--args", &args],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("injected failure in the Python step"),
        "{}",
        stderr(&out)
    );
    let detail = show(&env, "words-1");
    let run = &detail["run"];
    assert_eq!(run["recovery_point"], json!("rank"), "{run}");
    assert_eq!(
        run["attributes"]["words"].as_array().map(Vec::len),
        Some(8),
        "{run}"
    );
    assert_eq!(run["attributes"]["counts"]["the"], json!(3), "{run}");
    assert!(
        run["attributes"].get("top").is_none(),
        "the failed attempt's write: {run}"
    );

    let out = acidic(&env, &["retry", "words-1", "--follow", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let detail = show(&env, "words-1");
    assert_eq!(
        timeline(&detail),
        pairs(&[
            ("tokenize", "committed"),
            ("count", "committed"),
            ("rank", "failed"),
            ("rank", "committed"),
            ("summarize", "committed"),
            ("report", "finished"),
        ]),
        "the Rust and JS steps ran once"
    );
    let result = &detail["run"]["result"];
    assert_eq!(
        result,
        &json!({
            "summary": { "distinct": 5, "total": 8, "top_word": "the" },
            "top": [["the", 3], ["and", 2]],
            "notify_run": "notify-words-1",
            "steps": 5,
        })
    );
    // The Go step's staged run, served by the C component, ran once.
    let children = detail["children"].as_array().expect("children");
    assert_eq!(children.len(), 1, "{children:?}");
    let notify = show(&env, "notify-words-1");
    assert_eq!(
        notify["run"]["result"],
        json!({ "notified": "the", "distinct": 5 })
    );
    assert_eq!(timeline(&notify), pairs(&[("notify", "finished")]));
}

/// A one-step manifest around the Go check component `name`, with `defaults`.
fn check_manifest(env: &Env, name: &str, defaults: &str) -> String {
    let component = root().join(format!("guest-examples/go/target/{name}.wasm"));
    let text = format!(
        "name = \"go-{}\"\n[defaults]\n{defaults}\n[[step]]\nname = \"check\"\ncomponent = {:?}\n",
        name.replace('_', "-"),
        component.display().to_string()
    );
    env.write(&format!("{name}.toml"), &text)
        .display()
        .to_string()
}

/// The Go SDK's hand-written canonical-ABI glue: 100,000 host calls in one
/// step with empty, small and 16 KiB strings, under garbage collection.
#[test]
fn go_glue_survives_100k_calls() {
    polyglot_guests();
    let env = Env::new();
    let manifest = check_manifest(&env, "glue_check", "max_attempts = 1\ntimeout = \"5m\"");
    let out = acidic(
        &env,
        &[
            "run",
            &manifest,
            "--key",
            "glue",
            "--args",
            r#"{"calls":100000}"#,
            "--json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let report = json_of(&out);
    assert_eq!(report["status"], json!("succeeded"), "{report}");
    assert_eq!(report["result"]["calls"], json!(100000));
    assert_eq!(report["result"]["names"], json!(["k0", "k1", "k2"]));
    assert!(report["result"]["bytes"].as_u64().unwrap_or(0) > 300_000_000);
}

/// The Go SDK's own WASI adapter: sleeping, both clocks, random bytes,
/// stdout and stderr into the host's log; no environment; a panic is a
/// retryable error with Go's stack, and the retry succeeds.
#[test]
fn go_adapter_gives_clocks_random_sleep_and_output() {
    polyglot_guests();
    let env = Env::new();
    let manifest = check_manifest(&env, "adapter_check", "backoff = \"10ms\"");
    let out = acidic(
        &env,
        &["run", &manifest, "--key", "a", "--args", "{}", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let result = &json_of(&out)["result"];
    assert!(result["slept_ms"].as_i64().unwrap_or(0) >= 50, "{result}");
    assert!(result["year"].as_i64().unwrap_or(0) >= 2026, "{result}");
    let random = result["random"].as_str().unwrap_or_default();
    assert!(random.len() == 26 && random != "0".repeat(26), "{result}");
    assert_eq!(result["home"], json!(""), "no environment: {result}");
    let log = stderr(&out);
    assert!(
        log.contains("adapter check: to stdout") && log.contains("stream=stdout"),
        "{log}"
    );
    assert!(
        log.contains("adapter check: to stderr") && log.contains("stream=stderr"),
        "{log}"
    );

    let out = acidic(
        &env,
        &[
            "run",
            &manifest,
            "--key",
            "p",
            "--args",
            r#"{"panic":true}"#,
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("panic: deliberate") && stderr(&out).contains("main.check"),
        "{}",
        stderr(&out)
    );
    let out = acidic(&env, &["retry", "p", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Each language's polyglot step run without the attribute the step before
/// it leaves: the SDK's `require` fails the run at once (fatal, no retry),
/// naming the attribute.
#[test]
fn a_missing_attribute_fails_the_run_at_once_in_every_language() {
    polyglot_guests();
    let env = Env::new();
    let steps = [
        (
            "js",
            "guest-examples/js/target/polyglot_count.wasm",
            "words",
        ),
        (
            "python",
            "guest-examples/python/target/polyglot_rank.wasm",
            "counts",
        ),
        ("go", "guest-examples/go/target/polyglot.wasm", "counts"),
        ("c", "guest-examples/c/target/polyglot.wasm", "summary"),
    ];
    for (lang, component, message) in steps {
        let step = if lang == "c" { "report" } else { "only" };
        let manifest = env.write(
            &format!("{lang}.toml"),
            &format!(
                "name = \"missing-{lang}\"\n[defaults]\nmax_attempts = 3\nbackoff = \"10ms\"\n\
                 [[step]]\nname = \"{step}\"\ncomponent = {:?}\n",
                root().join(component).display().to_string()
            ),
        );
        let manifest = manifest.display().to_string();
        let out = acidic(
            &env,
            &["run", &manifest, "--key", lang, "--args", "{}", "--json"],
        );
        assert_eq!(out.status.code(), Some(7), "{lang}: {}", stderr(&out));
        let report = json_of(&out);
        assert_eq!(
            report["status"],
            json!("failed"),
            "{lang}: fatal, not retried: {report}"
        );
        let error = report["error"].to_string();
        assert!(error.contains(message), "{lang}: {error}");
    }
}

/// `make step` gives each source its own component, beside the source (so a
/// step outside the checkout builds outside it), and refuses to overwrite a
/// component another source was built into.
#[test]
fn make_step_outputs_are_unique_per_source() {
    polyglot_guests();
    let env = Env::new();
    let outside = tempfile::tempdir().expect("a folder outside the checkout");
    let make_step = |src: &std::path::Path, out: Option<&std::path::Path>| {
        let mut args = vec![
            "--no-print-directory".to_string(),
            "step".to_string(),
            format!("SRC={}", src.display()),
        ];
        if let Some(out) = out {
            args.push(format!("OUT={}", out.display()));
        }
        Command::new("make")
            .args(&args)
            .current_dir(root())
            .env_remove("MAKEFLAGS")
            .output()
            .expect("run make")
    };
    let mut built = Vec::new();
    for (folder, word) in [("one", "first"), ("two", "second")] {
        let dir = outside.path().join(folder);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let src = dir.join("step.c");
        std::fs::write(
            &src,
            format!(
                "#include \"acidic.h\"\n\nstatic acidic_outcome step(const acidic_ctx *cx) {{\n    \
                 (void)cx;\n    return acidic_finish(\"\\\"{word}\\\"\");\n}}\n\nACIDIC_STEP(step)\n"
            ),
        )
        .expect("write step.c");
        let out = make_step(&src, None);
        assert!(out.status.success(), "{}", stderr(&out));
        let wasm = dir.join("target/step.wasm");
        assert!(
            wasm.is_file(),
            "built beside its source: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let manifest = dir.join("workflow.toml");
        std::fs::write(
            &manifest,
            format!("name = \"{folder}\"\n\n[[step]]\nname = \"only\"\ncomponent = \"target/step.wasm\"\n"),
        )
        .expect("write manifest");
        built.push((src, wasm, manifest, word));
    }
    assert_ne!(
        std::fs::read(&built[0].1).expect("read"),
        std::fs::read(&built[1].1).expect("read"),
        "two sources, two components"
    );
    for (_, _, manifest, word) in &built {
        let out = acidic(
            &env,
            &["run", &manifest.display().to_string(), "--args", "{}"],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(json_of(&out), json!(word));
    }
    // The same source again: the same component, so no new version.
    let out = make_step(&built[0].0, None);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("up to date"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = acidic(&env, &["register", &built[0].2.display().to_string()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("unchanged"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The second source into the first's component: refused, nothing overwritten.
    let before = std::fs::read(&built[0].1).expect("read");
    let out = make_step(&built[1].0, Some(&built[0].1));
    assert!(
        !out.status.success(),
        "overwrote another source's component"
    );
    assert!(stderr(&out).contains("was built from"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&built[0].1).expect("read"), before);
    assert!(
        !root().join("guest-examples/c/target/step.wasm").exists(),
        "nothing was built inside the checkout"
    );
}

/// A JavaScript step built again from the same source (its component
/// deleted, or a fresh clone) may come out in other bytes: the toolchain
/// seeds its snapshot at random. Registering it makes no new version, since
/// the build's note says what it was built from; a component whose note
/// does not describe its bytes counts by its bytes.
#[test]
fn a_rebuilt_javascript_step_registers_no_new_version() {
    a_rebuilt_step_registers_no_new_version("guest-examples/js/polyglot/count.js");
}

/// The same for Python (componentize-py also seeds its snapshot at random).
#[test]
fn a_rebuilt_python_step_registers_no_new_version() {
    a_rebuilt_step_registers_no_new_version("guest-examples/python/polyglot/rank.py");
}

fn a_rebuilt_step_registers_no_new_version(source: &str) {
    polyglot_guests();
    let env = Env::new();
    let outside = tempfile::tempdir().expect("a folder for the component");
    let wasm = outside.path().join("count.wasm");
    let build = || {
        let out = Command::new("make")
            .args([
                "--no-print-directory".to_string(),
                "step".to_string(),
                format!("SRC={source}"),
                format!("OUT={}", wasm.display()),
            ])
            .current_dir(root())
            .env_remove("MAKEFLAGS")
            .output()
            .expect("run make");
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::read(&wasm).expect("the component")
    };
    let manifest = outside.path().join("workflow.toml");
    std::fs::write(
        &manifest,
        "name = \"counted\"\n\n[[step]]\nname = \"count\"\ncomponent = \"count.wasm\"\n",
    )
    .expect("write manifest");
    let manifest = manifest.display().to_string();
    let register = || {
        let out = acidic(&env, &["register", &manifest]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = build();
    assert!(register().contains("v1"), "the first version");
    std::fs::remove_file(&wasm).expect("delete the component");
    let second = build();
    let again = register();
    assert!(
        again.contains("unchanged"),
        "{source}: the same source, no new version: {again}"
    );
    if first != second {
        // A note that is not about these bytes is no evidence: a new version.
        let note = outside.path().join("count.wasm.source");
        let text = std::fs::read_to_string(&note).expect("the build's note");
        let kept: Vec<&str> = text.lines().take(2).collect();
        std::fs::write(&note, format!("{}\n{}\n", kept.join("\n"), "0".repeat(64))).expect("write");
        assert!(register().contains("v2"), "counted by its bytes");
    }
}

//! `acidic new`: a project made in a temporary folder, outside the
//! checkout, builds with its own Makefile, registers and runs; its step
//! code fails and records as written.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::{polyglot_guests, root};

fn acidic(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acidic"))
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("ACIDIC_HOME")
        .env("ACIDIC_CACHE_DIR", dir.join(".cache"))
        .env_remove("ACIDIC_LOG")
        .output()
        .expect("run acidic")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `make TARGET` in the project, as its user would run it.
fn make(dir: &Path, target: &str) -> Output {
    let mut make = Command::new("make");
    make.arg(target)
        .current_dir(dir)
        .env_remove("MAKEFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("DATABASE_URL")
        .env("ACIDIC_CACHE_DIR", dir.join(".cache"));
    // A Rust project shares the guests' target folder: the same versions
    // and profile, so only the project's own crate is compiled.
    make.env(
        "CARGO_TARGET_DIR",
        root().join("guest-examples/rust/target"),
    );
    make.output().expect("run make")
}

/// Makes a project for `language` in a temporary folder, builds it, runs it
/// with a name and without one.
fn scaffold_builds_and_runs(language: &str) {
    polyglot_guests();
    let tmp = tempfile::tempdir().expect("tempdir");
    assert!(
        !tmp.path().starts_with(root()),
        "the project must be outside the checkout"
    );
    let dir = tmp.path().join(format!("hello-{language}"));
    let dir_text = dir.to_str().expect("a UTF-8 temporary path");

    let out = acidic(tmp.path(), &["--json", "new", language, dir_text]);
    assert!(out.status.success(), "{}", text(&out));
    let made: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(made["name"], format!("hello-{language}"));
    for file in ["workflow.toml", "Makefile", "README.md", ".gitignore"] {
        assert!(dir.join(file).is_file(), "{file} in {}", text(&out));
    }

    let built = make(&dir, "build");
    assert!(built.status.success(), "make: {}", text(&built));
    let module = format!("hello_{language}");
    let component = dir.join(format!("target/{module}.wasm"));
    assert!(
        component.is_file(),
        "{} after {}",
        component.display(),
        text(&built)
    );

    // `make run`: registers the manifest, runs it once, prints the result.
    let ran = make(&dir, "run");
    assert!(ran.status.success(), "make run: {}", text(&ran));
    assert!(
        String::from_utf8_lossy(&ran.stdout).contains("\"hello, ada\""),
        "{}",
        text(&ran)
    );

    // The same manifest with a key, through acidic itself; both steps ran
    // and the first one's attribute and log line were kept.
    let args = r#"{"name":"grace"}"#;
    let out = acidic(
        &dir,
        &[
            "--json",
            "run",
            "workflow.toml",
            "--key",
            "k1",
            "--args",
            args,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["result"], "hello, grace", "{report}");
    let out = acidic(&dir, &["--json", "runs", "show", "k1"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        shown["run"]["attributes"]["greeting"], "hello, grace",
        "{shown}"
    );
    let steps: Vec<&str> = shown["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| e["step"].as_str())
        .collect();
    assert_eq!(steps, ["greet", "finish"], "{shown}");
    assert!(shown.to_string().contains("greeting grace"), "{shown}");

    // The step's own fatal error fails the run for good, with its message.
    let out = acidic(
        &dir,
        &[
            "run",
            "workflow.toml",
            "--key",
            "k2",
            "--args",
            r#"{"name":""}"#,
        ],
    );
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(text(&out).contains("name is empty"), "{}", text(&out));

    // A second build changes nothing.
    let again = make(&dir, "build");
    assert!(again.status.success(), "{}", text(&again));
    if language != "rust" {
        assert!(
            String::from_utf8_lossy(&again.stdout).contains("up to date"),
            "{}",
            text(&again)
        );
    }
}

#[test]
fn a_rust_project_builds_and_runs_outside_the_checkout() {
    scaffold_builds_and_runs("rust");
}

#[test]
fn a_javascript_project_builds_and_runs_outside_the_checkout() {
    scaffold_builds_and_runs("js");
}

#[test]
fn a_python_project_builds_and_runs_outside_the_checkout() {
    scaffold_builds_and_runs("python");
}

#[test]
fn a_go_project_builds_and_runs_outside_the_checkout() {
    scaffold_builds_and_runs("go");
}

#[test]
fn a_c_project_builds_and_runs_outside_the_checkout() {
    scaffold_builds_and_runs("c");
}

#[test]
fn acidic_new_refuses_what_it_cannot_make() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let at = |name: &str| tmp.path().join(name).to_str().expect("UTF-8").to_string();

    let out = acidic(tmp.path(), &["new", "cobol", &at("x")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("rust, js, python, go, c"),
        "{}",
        text(&out)
    );

    let out = acidic(tmp.path(), &["new", "js", &at("Hello World")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("cannot name a workflow `Hello World`"),
        "{}",
        text(&out)
    );
    assert!(!tmp.path().join("Hello World").exists(), "nothing written");

    std::fs::create_dir(tmp.path().join("full")).expect("mkdir");
    std::fs::write(tmp.path().join("full/keep.txt"), "mine").expect("write");
    let out = acidic(tmp.path(), &["new", "python", &at("full")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is not empty"), "{}", text(&out));
    assert_eq!(
        std::fs::read_dir(tmp.path().join("full"))
            .expect("read")
            .count(),
        1,
        "nothing written beside the user's file"
    );

    let out = acidic(
        tmp.path(),
        &["new", "go", &at("y"), "--acidic-home", &at("nowhere")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is not an acidic checkout"),
        "{}",
        text(&out)
    );

    // A name of its own is fine; a path make cannot hold is not.
    let out = acidic(
        tmp.path(),
        &["new", "c", &at("Hello World"), "--name", "hello"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("a Makefile cannot hold"),
        "{}",
        text(&out)
    );
    let out = acidic(tmp.path(), &["new", "c", &at("Hello"), "--name", "hello"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(tmp.path().join("Hello/step.c").is_file());
    let workflow = std::fs::read_to_string(tmp.path().join("Hello/workflow.toml")).expect("read");
    assert!(workflow.contains("name = \"hello\""), "{workflow}");
}

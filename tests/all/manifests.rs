//! Bad manifests and components are refused at `register`, with errors that
//! name the file, the line and the field.

use acidic::Error;

use crate::harness::{Env, component};

async fn register_err(env: &Env, text: &str) -> String {
    let path = env.write("bad.toml", text);
    let host = env.host().await;
    match host.register(&path).await {
        Ok(r) => panic!("registered a bad manifest: {r:?}"),
        Err(e) => e.to_string(),
    }
}

fn step(name: &str) -> String {
    format!(
        "[[step]]\nname = \"{name}\"\ncomponent = \"{}\"\n",
        component("scripted").display()
    )
}

#[tokio::test]
async fn unknown_field_names_line_and_field() {
    let env = Env::new();
    let err = register_err(&env, &format!("name = \"w\"\n{}retries = 3\n", step("a"))).await;
    assert!(err.contains("bad.toml:5"), "{err}");
    assert!(err.contains("retries"), "{err}");
}

#[tokio::test]
async fn duplicate_step_names_are_refused() {
    let env = Env::new();
    let err = register_err(&env, &format!("name = \"w\"\n{}{}", step("a"), step("a"))).await;
    assert!(
        err.contains("bad.toml:6") && err.contains("step[1].name") && err.contains("duplicate"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_component_file_is_refused() {
    let env = Env::new();
    let err = register_err(
        &env,
        "name = \"w\"\n[[step]]\nname = \"a\"\ncomponent = \"nope.wasm\"\n",
    )
    .await;
    assert!(
        err.contains("bad.toml:4")
            && err.contains("step[0].component")
            && err.contains("nope.wasm"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_values_are_refused() {
    let env = Env::new();
    let err = register_err(
        &env,
        &format!(
            "name = \"w\"\n[defaults]\ntimeout = \"soon\"\n{}",
            step("a")
        ),
    )
    .await;
    assert!(
        err.contains("bad.toml:3") && err.contains("defaults.timeout"),
        "{err}"
    );
    let err = register_err(
        &env,
        &format!("name = \"w\"\n{}max_attempts = 0\n", step("a")),
    )
    .await;
    assert!(err.contains("step[0].max_attempts"), "{err}");
    let err = register_err(
        &env,
        &format!("name = \"w\"\n{}memory = \"9GiB\"\n", step("a")),
    )
    .await;
    assert!(err.contains("step[0].memory"), "{err}");
    let err = register_err(
        &env,
        &format!("name = \"w\"\n[defaults]\nfuel = 0\n{}", step("a")),
    )
    .await;
    assert!(
        err.contains("bad.toml:3") && err.contains("defaults.fuel"),
        "{err}"
    );
    let err = register_err(
        &env,
        &format!("name = \"w\"\n{}max_result = \"lots\"\n", step("a")),
    )
    .await;
    assert!(err.contains("step[0].max_result"), "{err}");
    let err = register_err(
        &env,
        &format!("name = \"w\"\n{}env = {{ \"A=B\" = \"x\" }}\n", step("a")),
    )
    .await;
    assert!(err.contains("step[0].env") && err.contains("A=B"), "{err}");
    let err = register_err(
        &env,
        &format!("name = \"w\"\n{}env = {{ A = 1 }}\n", step("a")),
    )
    .await;
    assert!(
        err.contains("bad.toml"),
        "a number is not an env value: {err}"
    );
    let err = register_err(
        &env,
        &format!(
            "name = \"w\"\n{}allowed_outbound_hosts = [\"api.stripe.com\"]\n",
            step("a")
        ),
    )
    .await;
    assert!(
        err.contains("step[0].allowed_outbound_hosts") && err.contains("api.stripe.com"),
        "{err}"
    );
    let err = register_err(&env, "name = \"w\"\n").await;
    assert!(err.contains("at least one"), "{err}");
    let err = register_err(&env, "name = \"w\"\n[[step]\n").await;
    assert!(err.contains("bad.toml:2"), "{err}");
    let err = register_err(&env, &format!("name = \"w\"\n{}", step("finished"))).await;
    assert!(err.contains("reserved"), "{err}");
}

#[tokio::test]
async fn a_file_that_is_not_a_component_is_refused() {
    let env = Env::new();
    let host = env.host().await;
    for (file, bytes) in [
        ("garbage.wasm", b"not wasm at all".to_vec()),
        ("core.wasm", b"\0asm\x01\0\0\0".to_vec()),
    ] {
        std::fs::write(env.dir.path().join(file), bytes).expect("write");
        let path = env.write(
            "w.toml",
            &format!("name = \"w\"\n[[step]]\nname = \"a\"\ncomponent = \"{file}\"\n"),
        );
        let err = host.register(&path).await.expect_err("refused");
        assert!(matches!(err, Error::Manifest(_)), "{err}");
        let err = err.to_string();
        assert!(err.contains(file), "the error names the file: {err}");
        assert!(
            err.contains("w.toml:4: step[0].component"),
            "and the manifest line: {err}"
        );
        assert_eq!(err.lines().count(), 1, "in one line: {err}");
    }
    let path = env.write(
        "w.toml",
        "name = \"w\"\n[[step]]\nname = \"a\"\ncomponent = \"core.wasm\"\n",
    );
    let err = host.register(&path).await.expect_err("refused").to_string();
    assert!(
        err.contains("core WebAssembly module, not a component"),
        "{err}"
    );
    assert!(
        matches!(host.workflow("w").await, Err(Error::UnknownWorkflow(_))),
        "nothing was registered"
    );
}

/// A value of the wrong type names its field's path and what is allowed;
/// `[step]` for `[[step]]` says so; a missing or unknown field is named
/// with its step.
#[tokio::test]
async fn type_errors_name_the_field_path() {
    let env = Env::new();
    let err = register_err(
        &env,
        &format!(
            "name = \"w\"\n{}{}max_attempts = \"three\"\n",
            step("a"),
            step("b")
        ),
    )
    .await;
    assert!(
        err.contains("bad.toml:8: step[1].max_attempts: expected an integer, got string \"three\""),
        "{err}"
    );
    let single = format!("name = \"w\"\n{}", step("a")).replace("[[step]]", "[step]");
    let err = register_err(&env, &single).await;
    assert!(err.contains("write `[[step]]`"), "{err}");
    let err = register_err(&env, &format!("name = \"w\"\n{}ddl = \"yes\"\n", step("a"))).await;
    assert!(
        err.contains("step[0].ddl: expected a boolean (true or false), got string \"yes\""),
        "{err}"
    );
    let err = register_err(&env, "name = 5\n").await;
    assert!(
        err.contains("bad.toml:1: name: expected a string, got integer"),
        "{err}"
    );
    let nameless = format!("name = \"w\"\n{}", step("a")).replace("name = \"a\"\n", "");
    let err = register_err(&env, &nameless).await;
    assert!(err.contains("step[0].name: missing field `name`"), "{err}");
    let err = register_err(
        &env,
        &format!("name = \"w\"\n{}colour = \"red\"\n", step("a")),
    )
    .await;
    assert!(
        err.contains("bad.toml:5: step[0].colour: unknown field `colour`, expected one of"),
        "{err}"
    );
    let err = register_err(&env, "name = \"w\"\n[[step]\n").await;
    assert!(err.contains("bad.toml:2: (syntax)"), "{err}");
}

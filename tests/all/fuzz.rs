//! Generated input through the host's checks of guest data: SQL text (the
//! statement checker, on the thread it runs on in a step), JSON (the depth
//! check) and names and messages (the checks and clean-up applied before
//! anything reaches the database). None may panic or overflow a stack; the
//! cases are bounded in number so the run takes seconds.

use acidic::runtime::limits::{guest_json, guest_name, json_depth, stored_message};
use acidic::sql::{Dialects, SqlGrant, SqlMode, check_off_stack};
use proptest::prelude::*;

/// SQL-ish text: keywords, operators, names, literals and brackets, in any
/// order, sometimes nested very deep.
fn sql_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("SELECT".to_string()),
        Just("FROM".to_string()),
        Just("WHERE".to_string()),
        Just("WITH RECURSIVE r(n) AS".to_string()),
        Just("UNION ALL".to_string()),
        Just("INSERT INTO t VALUES".to_string()),
        Just("CAST(".to_string()),
        Just("AS regclass[]".to_string()),
        Just("::".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("[".to_string()),
        Just(",".to_string()),
        Just("+".to_string()),
        Just("NOT".to_string()),
        Just("runs".to_string()),
        Just("acidic.runs".to_string()),
        Just("'x'".to_string()),
        Just("$1".to_string()),
        Just("1".to_string()),
        "[a-z_]{1,8}".prop_map(|s| s),
        any::<char>().prop_map(|c| c.to_string()),
    ];
    let flat = prop::collection::vec(token, 0..60).prop_map(|t| t.join(" "));
    let deep = (1usize..20_000, 0usize..3).prop_map(|(n, shape)| match shape {
        0 => format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)),
        1 => format!("SELECT 1{}", " + 1".repeat(n.min(12_000))),
        _ => format!("SELECT {}1", "NOT ".repeat(n.min(12_000))),
    });
    prop_oneof![flat, deep]
}

/// JSON-ish text: brackets, strings, numbers, escapes, sometimes deep.
fn json_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("\"k\":".to_string()),
        Just(",".to_string()),
        Just("\"\\u0000\"".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just("1e999".to_string()),
        Just("-0".to_string()),
        Just("null".to_string()),
        any::<char>().prop_map(|c| c.to_string()),
    ];
    let flat = prop::collection::vec(piece, 0..80).prop_map(|p| p.concat());
    let deep = (1usize..200_000).prop_map(|n| format!("{}1{}", "[".repeat(n), "]".repeat(n)));
    prop_oneof![flat, deep]
}

fn grant() -> impl Strategy<Value = SqlGrant> {
    (any::<bool>(), any::<bool>()).prop_map(|(rw, ddl)| SqlGrant {
        mode: if rw {
            SqlMode::ReadWrite
        } else {
            SqlMode::ReadOnly
        },
        tables: Vec::new(),
        ddl,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_sql_checker_answers_any_text(text in sql_text(), grant in grant(), pg in any::<bool>()) {
        let (dialect, schema) = if pg { (Dialects::Postgres, "public") } else { (Dialects::Sqlite, "main") };
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        // Run on this test thread's small stack: the checker must not use it.
        let verdict = runtime.block_on(check_off_stack(&text, &grant, dialect, schema));
        if let Err(why) = verdict {
            prop_assert!(!why.is_empty());
        }
    }

    #[test]
    fn guest_json_is_parsed_within_its_depth(text in json_text()) {
        if let Ok(value) = guest_json(&text) {
            prop_assert!(json_depth(&value) <= acidic::runtime::limits::MAX_JSON_DEPTH);
        }
    }

    #[test]
    fn names_and_messages_are_checked_or_cleaned(text in any::<String>(), max in 0usize..300) {
        if guest_name("a name", &text, max).is_ok() {
            prop_assert!(!text.is_empty() && text.len() <= max);
            prop_assert!(!text.contains('\0'));
        }
        let stored = stored_message(&text, max);
        prop_assert!(!stored.contains('\0'));
        prop_assert!(stored.len() <= max + 40);
    }
}

/// A JSON value of any shape, a few levels deep.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// What one step hands the host through its imports: an attribute, a SQL
/// parameter (integers at their ends, NaN and infinities, bytes, text with
/// any character), and a staged run (workflow, key, queue, delay, args).
fn wit_values() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    let param = prop_oneof![
        any::<i64>().prop_map(|i| json!(i)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        prop_oneof![Just("NaN"), Just("inf"), Just("-inf"), Just("-0")]
            .prop_map(|r| json!({ "real": r })),
        any::<String>().prop_map(|b| json!({ "blob": b })),
        any::<String>().prop_map(|s| json!(s)),
        json_value(),
    ];
    let name = prop_oneof![Just("calm".to_string()), any::<String>(), "[a-z]{0,300}"];
    let delay = prop_oneof![
        Just(None),
        any::<u64>().prop_map(Some),
        Just(Some(u64::MAX))
    ];
    (
        any::<String>(),
        json_value(),
        param,
        name,
        prop::option::of(any::<String>()),
        prop::option::of(any::<String>()),
        delay,
        json_value(),
    )
        .prop_map(|(attr, value, param, workflow, key, queue, delay, args)| {
            let mut job = json!({ "workflow": workflow, "args": args });
            for (field, v) in [("key", key.map(|k| json!(k))), ("queue", queue.map(|q| json!(q))), ("delay_ms", delay.map(|d| json!(d)))] {
                if let Some(v) = v {
                    job[field] = v;
                }
            }
            json!({ "script": { "only": {
                "set": { attr: value },
                "sql": [{ "execute": "INSERT INTO fuzzed (v) VALUES ($1)", "params": [param], "tolerate": true }],
                "stage": [job],
            } } })
        })
}

/// Generated WIT-level values, through a real step on SQLite: whatever a
/// step hands over, its run ends with a recorded outcome (a refusal of a
/// named kind, never a host error or a panic), and a well-behaved run after
/// it succeeds.
#[test]
fn wit_level_values_from_a_step_are_checked_without_harm() {
    use acidic::{RunRequest, RunStatus};
    let env = crate::harness::Env::new();
    env.app_table("fuzzed", "v");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let host = runtime.block_on(env.host());
    let fuzzed = env.scripted(
        "fuzzed",
        "max_attempts = 1",
        &[("only", "sql = \"read-write\"\ntables = [\"fuzzed\"]")],
    );
    let calm = env.scripted("calm", "", &[("only", "")]);
    for path in [&fuzzed, &calm] {
        runtime.block_on(host.register(path)).expect("register");
    }
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 32,
        ..ProptestConfig::default()
    });
    let case = std::sync::atomic::AtomicU32::new(0);
    runner
        .run(&wit_values(), |args| {
            let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let request = RunRequest::new("fuzzed", args.clone()).with_key(format!("case-{case}"));
            let report = runtime
                .block_on(host.run(request))
                .map_err(|e| TestCaseError::fail(format!("the host erred: {e}")))?;
            if let Some(error) = &report.error {
                prop_assert_ne!(&error.kind, "host_error", "{}", error.message);
            }
            prop_assert!(
                matches!(report.status, RunStatus::Succeeded | RunStatus::Failed),
                "{report:?}"
            );
            let calm =
                RunRequest::new("calm", serde_json::json!({})).with_key(format!("calm-{case}"));
            let calm = runtime
                .block_on(host.run(calm))
                .map_err(|e| TestCaseError::fail(format!("the host erred after: {e}")))?;
            prop_assert_eq!(calm.status, RunStatus::Succeeded);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

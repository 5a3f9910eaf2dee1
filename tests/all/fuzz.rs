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

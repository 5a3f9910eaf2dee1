//! Guest SQL: a step writes the application's own tables in the step's
//! transaction, so its rows commit with the recovery point or not at all;
//! statements of forbidden forms never reach the database.

use acidic::{Host, RunFilter, RunRequest, RunStatus};
use serde_json::{Value, json};

use crate::harness::{Backend, Env, on_each_backend};

/// Registers `book`: `write` (read-write SQL), then `read` (read-only SQL).
async fn book(env: &Env, host: &Host) -> String {
    let rides = env.app_table(
        "rides",
        "id BIGINT PRIMARY KEY, who TEXT, cents BIGINT, note TEXT",
    );
    let path = env.scripted(
        "book",
        "max_attempts = 3",
        &[
            ("write", "sql = \"read-write\""),
            (
                "read",
                &format!("sql = \"read-only\"\ntables = [\"{rides}\"]"),
            ),
        ],
    );
    host.register(&path).await.expect("register");
    rides
}

fn insert(rides: &str, id: i64) -> Value {
    json!({
        "execute": format!("INSERT INTO {rides} (id, who, cents, note) VALUES ($1, $2, $3, $4)"),
        "params": [id, "ada", 1250, null],
    })
}

on_each_backend! {
/// The step's rows and its recovery point commit together; a failed step
/// leaves no row, and its retry writes the row exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steps_sql_commits_or_vanishes_with_its_recovery_point(env) {
    let host = env.host().await;
    let rides = book(&env, &host).await;

    let args = json!({ "script": {
        "write": { "sql": [insert(&rides, 1)] },
        "read": { "sql": [{
            "query": format!("SELECT id, who, cents, note FROM {rides} WHERE id = $1"),
            "params": [1],
            "into": "ride",
        }] },
    } });
    let ok = host.run(RunRequest::new("book", args).with_key("ok")).await.expect("run");
    assert_eq!(ok.status, RunStatus::Succeeded, "{:?}", ok.error);
    let run = host.find("ok", Some("book")).await.expect("find");
    assert_eq!(
        run.attributes.get("ride"),
        Some(&json!([{ "id": 1, "who": "ada", "cents": 1250, "note": null }])),
        "typed rows came back to the guest"
    );
    assert_eq!(env.app_count(&rides, "id = 1"), 1);

    let args = json!({ "script": { "write": { "sql": [insert(&rides, 2)], "fail": "fatal" } } });
    let failed = host.run(RunRequest::new("book", args).with_key("failed")).await.expect("run");
    assert_eq!((failed.status, failed.recovery_point.as_str()), (RunStatus::Failed, "write"));
    assert_eq!(env.app_count(&rides, "id = 2"), 0, "the failed step's row was rolled back");

    let args = json!({ "script": {
        "write": { "sql": [insert(&rides, 3)], "fail": "retryable", "fail_attempts": 1 },
    } });
    let first = host.run(RunRequest::new("book", args.clone()).with_key("retried")).await.expect("run");
    assert_eq!(first.status, RunStatus::Pending);
    assert_eq!(env.app_count(&rides, "id = 3"), 0);
    let again = host.run(RunRequest::new("book", args).with_key("retried")).await.expect("retry");
    assert_eq!(again.status, RunStatus::Succeeded, "{:?}", again.error);
    assert_eq!(env.app_count(&rides, "id = 3"), 1, "the retry wrote the row once");
}
}

on_each_backend! {
/// Every forbidden form is refused before it reaches the database: the run
/// records `sql_refused`, the engine's tables and the application's rows are
/// as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_sql_is_refused_and_changes_nothing(env) {
    let host = env.host().await;
    let rides = book(&env, &host).await;
    let args = json!({ "script": { "write": { "sql": [insert(&rides, 1)] } } });
    let before = host.run(RunRequest::new("book", args).with_key("before")).await.expect("run");
    assert_eq!(before.status, RunStatus::Succeeded);
    let engine_before = host.show("before", Some("book")).await.expect("show");

    let mut forbidden: Vec<String> = [
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT s",
        "SET search_path TO public",
        "SET ROLE postgres",
        "UPDATE runs SET status = 'failed'",
        "DELETE FROM step_events",
        "SELECT * FROM runs",
        "CREATE TABLE sneaky (x INT)",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    forbidden.push(format!("DROP TABLE {rides}"));
    forbidden.push(format!("DELETE FROM {rides}; DELETE FROM runs"));
    if env.backend == Backend::Sqlite {
        forbidden.push("PRAGMA foreign_keys = OFF".into());
        forbidden.push("ATTACH DATABASE 'other.db' AS other".into());
    }
    for (i, statement) in forbidden.iter().enumerate() {
        let verb = if statement.starts_with("SELECT") { "query" } else { "execute" };
        let args = json!({ "script": { "write": { "sql": [{ verb: statement }] } } });
        let report = host
            .run(RunRequest::new("book", args).with_key(format!("bad-{i}")))
            .await
            .expect("run");
        let error = report.error.unwrap_or_else(|| panic!("`{statement}` was not refused"));
        assert_eq!(
            (report.status, error.kind.as_str(), error.attempt),
            (RunStatus::Failed, "sql_refused", 1),
            "`{statement}`: {}",
            error.message
        );
    }
    let engine_after = host.show("before", Some("book")).await.expect("show");
    assert_eq!(engine_after.run.status, engine_before.run.status);
    assert_eq!(engine_after.run.updated_at, engine_before.run.updated_at);
    assert_eq!(engine_after.timeline.len(), engine_before.timeline.len());
    let runs = host.runs(&RunFilter { limit: 1000, ..RunFilter::default() }).await.expect("runs");
    assert_eq!(runs.len(), forbidden.len() + 1, "no run was added or removed by guest SQL");
    assert_eq!(env.app_count(&rides, "1 = 1"), 1, "the application's rows are intact");
}
}

on_each_backend! {
/// SQL needs a grant, and a read-only grant cannot write or name tables
/// outside its list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_needs_a_grant_and_stays_within_it(env) {
    let host = env.host().await;
    let rides = book(&env, &host).await;
    let path = env.scripted("ungranted", "", &[("write", "")]);
    host.register(&path).await.expect("register");
    let args = json!({ "script": { "write": { "sql": [insert(&rides, 1)] } } });
    let report = host.run(RunRequest::new("ungranted", args)).await.expect("run");
    let error = report.error.expect("error");
    assert_eq!((report.status, error.kind.as_str()), (RunStatus::Failed, "capability_denied"));
    assert!(error.message.contains("no sql grant"), "{}", error.message);

    let args = json!({ "script": { "read": { "sql": [insert(&rides, 1)] } } });
    let report = host.run(RunRequest::new("book", args).with_key("ro")).await.expect("run");
    let error = report.error.expect("error");
    assert_eq!(error.kind, "sql_refused");
    assert!(error.message.contains("read-only"), "{}", error.message);
    assert_eq!(env.app_count(&rides, "1 = 1"), 0);
}
}

/// On SQLite the authorizer has the last word on what a compiled statement
/// touches: a statement the parser passes, on a view or with a trigger that
/// reaches an engine table, is still refused.
#[tokio::test]
async fn sqlites_authorizer_sees_through_views_and_triggers() {
    let env = Env::new();
    let host = env.host().await;
    let rides = book(&env, &host).await;
    env.app_sql("CREATE VIEW peek AS SELECT id, status FROM runs");
    env.app_sql(&format!(
        "CREATE TRIGGER wipe AFTER INSERT ON {rides} BEGIN DELETE FROM step_events; END"
    ));
    let path = env.scripted("peeker", "", &[("write", "sql = \"read-write\"")]);
    host.register(&path).await.expect("register");
    for (key, action) in [
        ("view", json!({ "query": "SELECT count(*) FROM peek" })),
        ("trigger", insert(&rides, 7)),
    ] {
        let args = json!({ "script": { "write": { "sql": [action] } } });
        let report = host
            .run(RunRequest::new("peeker", args).with_key(key))
            .await
            .expect("run");
        let error = report.error.unwrap_or_else(|| panic!("{key}: not refused"));
        assert_eq!(error.kind, "sql_refused", "{key}: {}", error.message);
        assert!(
            error.message.contains("authorizer"),
            "{key}: {}",
            error.message
        );
    }
    assert_eq!(env.app_count(&rides, "1 = 1"), 0);
    let events: i64 = env.app_sql("SELECT CAST(count(*) AS TEXT) FROM step_events")[0]
        .parse()
        .expect("count");
    assert!(events >= 2, "the trigger deleted nothing: {events} events");
}

on_each_backend! {
/// With `ddl = true` a step may create its tables, and the DDL is part of
/// the step's transaction: a failed step leaves no table behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_ddl_commits_or_vanishes_with_the_step(env) {
    let host = env.host().await;
    let path = env.scripted(
        "migrate",
        "max_attempts = 3",
        &[("create", "sql = \"read-write\"\nddl = true"), ("plain", "sql = \"read-write\"")],
    );
    host.register(&path).await.expect("register");
    let create = json!([
        { "execute": "CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT)" },
        { "execute": "INSERT INTO notes (id, body) VALUES ($1, $2)", "params": [1, "first"] },
    ]);
    let args = json!({ "script": { "create": { "sql": create, "fail": "fatal" } } });
    let failed = host.run(RunRequest::new("migrate", args).with_key("failed")).await.expect("run");
    assert_eq!(failed.status, RunStatus::Failed);
    // Creating it again works only if the failed step's CREATE was rolled back.
    let args = json!({ "script": { "create": { "sql": create } } });
    let ok = host.run(RunRequest::new("migrate", args).with_key("ok")).await.expect("run");
    assert_eq!(ok.status, RunStatus::Succeeded, "{:?}", ok.error);
    assert_eq!(env.app_count("notes", "1 = 1"), 1);

    // Without the grant, the next step may not.
    let args = json!({ "script": { "plain": { "sql": [{ "execute": "DROP TABLE notes" }] } } });
    let denied = host.run(RunRequest::new("migrate", args).with_key("plain")).await.expect("run");
    let error = denied.error.expect("refused");
    assert_eq!(error.kind, "sql_refused", "{}", error.message);
    assert!(error.message.contains("ddl = true"), "{}", error.message);
    assert_eq!(env.app_count("notes", "1 = 1"), 1);
}
}

on_each_backend! {
/// A guest may handle a statement's error and go on: the failed statement
/// alone is undone (on Postgres through a savepoint the host sets), and the
/// rest of the step commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handled_sql_error_undoes_only_its_statement(env) {
    let host = env.host().await;
    let rides = book(&env, &host).await;
    let duplicate = json!({
        "execute": format!("INSERT INTO {rides} (id, who, cents, note) VALUES ($1, $2, $3, $4)"),
        "params": [1, "again", 1, null],
        "tolerate": true,
    });
    let args = json!({ "script": { "write": { "sql": [insert(&rides, 1), duplicate, insert(&rides, 2)] } } });
    let report = host.run(RunRequest::new("book", args)).await.expect("run");
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert_eq!(env.app_count(&rides, "1 = 1"), 2);
    assert_eq!(env.app_count(&rides, "who = 'again'"), 0);
}
}

on_each_backend! {
/// A step that catches a SQL error and fails fatally is not retried: the
/// guest's own verdict wins. A constraint violation it passes on is not
/// retried either: the same statement fails the same way on every try. The
/// error names the database's message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guests_fatal_verdict_and_constraint_violations_are_not_retried(env) {
    let host = env.host().await;
    let table = env.app_table("once", "id BIGINT PRIMARY KEY");
    let path = env.scripted("insert-once", "max_attempts = 5", &[("put", "sql = \"read-write\"")]);
    host.register(&path).await.expect("register");
    let insert = json!({ "execute": format!("INSERT INTO {table} (id) VALUES (1)") });
    let first = host
        .run(RunRequest::new("insert-once", json!({ "script": { "put": { "sql": [insert] } } })))
        .await
        .expect("run");
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);

    let mut tolerated = insert.clone();
    tolerated["tolerate"] = json!(true);
    let fatal = json!({ "script": { "put": { "sql": [tolerated], "fail": "fatal" } }, "n": 2 });
    let report = host.run(RunRequest::new("insert-once", fatal)).await.expect("run");
    assert_eq!(report.status, RunStatus::Failed, "the guest said fatal");
    let error = report.error.expect("error");
    assert_eq!((error.kind.as_str(), error.attempt), ("sql_error", 1), "{}", error.message);

    let passed_on = json!({ "script": { "put": { "sql": [insert] } }, "n": 3 });
    let report = host.run(RunRequest::new("insert-once", passed_on)).await.expect("run");
    assert_eq!(report.status, RunStatus::Failed, "a constraint does not clear by itself");
    let error = report.error.expect("error");
    assert_eq!((error.kind.as_str(), error.attempt), ("sql_error", 1), "{}", error.message);
    assert_eq!(
        error.message.matches("SQL error").count(),
        1,
        "the database's message appears once: {}",
        error.message
    );
}
}

/// SQLite binds a guest's values to `?`, `?N` and `$N` as given, NULL to a
/// parameter past them, and reads each value back as SQLite stored it
/// (integer, real, text, blob, NULL); a named parameter (`:who`) is an
/// error that says what to use instead, and the step goes on past it.
#[tokio::test]
async fn sqlite_binds_each_parameter_style_and_reads_each_type_back() {
    let env = Env::new();
    let host = env.host().await;
    let rides = book(&env, &host).await;
    let args = json!({ "script": { "write": { "sql": [
        { "execute": format!("INSERT INTO {rides} (id, who, cents, note) VALUES (?, ?, ?, ?)"),
          "params": [1, "ada", 1250, "plain ?"] },
        { "execute": format!("INSERT INTO {rides} (id, who, cents, note) VALUES (?2, ?1, ?3, ?4)"),
          "params": ["bob", 2, 7.5] },
        { "execute": format!("INSERT INTO {rides} (id, who, cents, note) VALUES ($1, $2, $3, x'00ff')"),
          "params": [3, "cy", null] },
        { "execute": format!("INSERT INTO {rides} (id, who) VALUES (:id, :who)"),
          "params": [4, "dee"], "tolerate": true },
        { "query": format!("SELECT id, who, cents, typeof(cents) AS t, typeof(note) AS n \
                            FROM {rides} ORDER BY id;"),
          "into": "rows" },
    ] } } });
    let report = host
        .run(RunRequest::new("book", args).with_key("styles"))
        .await
        .expect("run");
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    let run = host.find("styles", Some("book")).await.expect("find");
    let rows = run
        .attributes
        .get("rows")
        .expect("rows read back")
        .to_string();
    for expected in [
        r#"{"cents":1250,"id":1,"n":"text","t":"integer","who":"ada"}"#,
        r#"{"cents":7.5,"id":2,"n":"null","t":"real","who":"bob"}"#,
        r#"{"cents":null,"id":3,"n":"blob","t":"null","who":"cy"}"#,
    ] {
        assert!(rows.contains(expected), "{expected} in {rows}");
    }
    assert_eq!(
        env.app_count(&rides, "1 = 1"),
        3,
        "the named parameters wrote nothing"
    );
    let shown = host.show("styles", Some("book")).await.expect("show");
    assert!(
        shown
            .timeline
            .iter()
            .any(|e| e.step == "write" && e.outcome == "committed"),
        "{:?}",
        shown.timeline
    );
}

/// On Postgres the first guest statement's savepoint rides on BEGIN, each
/// later one on the statement before it, and a failed statement is undone
/// alone: a step whose second statement fails (a duplicate key) and whose
/// guest goes on keeps its first and third rows, and the engine's commit
/// after them (as the engine again, in its own schema) records the step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_undoes_a_failed_statement_alone_and_commits_the_rest() {
    let env = Env::on(Backend::Postgres);
    let host = env.host().await;
    let rides = book(&env, &host).await;
    let mut duplicate = insert(&rides, 1);
    duplicate["tolerate"] = json!(true);
    let args = json!({ "script": { "write": { "sql": [
        insert(&rides, 1),
        duplicate,
        insert(&rides, 2),
        { "query": format!("SELECT count(*) AS n FROM {rides}"), "into": "seen" },
    ] } } });
    let report = host
        .run(RunRequest::new("book", args).with_key("undo-one"))
        .await
        .expect("run");
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    let run = host.find("undo-one", Some("book")).await.expect("find");
    let seen = run.attributes.get("seen").expect("seen").to_string();
    assert!(
        seen.contains("\"n\":2"),
        "the guest saw its two rows: {seen}"
    );
    assert_eq!(env.app_count(&rides, "1 = 1"), 2);
    let shown = host.show("undo-one", Some("book")).await.expect("show");
    assert!(
        shown
            .timeline
            .iter()
            .any(|e| e.step == "write" && e.outcome == "committed")
    );
}

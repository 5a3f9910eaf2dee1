//! Where the check runs inside a step: on a thread of its own, with its
//! verdicts remembered.

use super::{Checked, Dialects, SqlGrant, checked};

/// Stack of the checker's thread. A statement's tree can nest as deep as
/// the statement is long (`1+1+1+…` parses without recursion but is walked,
/// printed and dropped recursively), so the checker never runs on a step's
/// small fiber stack: it has a thread of its own, with room for the longest
/// statement a step may send.
const CHECKER_STACK: usize = 256 << 20;

type Verdict = Result<Checked, String>;

#[derive(Clone, PartialEq, Eq, Hash)]
struct CheckKey {
    statement: String,
    grant: SqlGrant,
    dialect: Dialects,
    app_schema: String,
}

type CheckJob = (CheckKey, tokio::sync::oneshot::Sender<Verdict>);

/// Longest statement whose verdict is kept.
const CACHED_STATEMENT: usize = 4 << 10;

/// Most verdicts kept; the cache is emptied when it is full.
const VERDICTS_KEPT: usize = 4_096;

fn verdicts() -> std::sync::MutexGuard<'static, std::collections::HashMap<CheckKey, Verdict>> {
    static VERDICTS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<CheckKey, Verdict>>,
    > = std::sync::OnceLock::new();
    VERDICTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The checker thread's queue, started on first use (and again if it died).
fn checker() -> Option<std::sync::mpsc::Sender<CheckJob>> {
    static QUEUE: std::sync::Mutex<Option<std::sync::mpsc::Sender<CheckJob>>> =
        std::sync::Mutex::new(None);
    let mut queue = QUEUE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(q) = queue.as_ref() {
        return Some(q.clone());
    }
    let (send, receive) = std::sync::mpsc::channel::<CheckJob>();
    std::thread::Builder::new()
        .name("acidic-sql-check".into())
        .stack_size(CHECKER_STACK)
        .spawn(move || {
            for (key, answer) in receive {
                let verdict = std::panic::catch_unwind(|| {
                    checked(&key.statement, &key.grant, key.dialect, &key.app_schema)
                })
                .unwrap_or_else(|_| Err("the SQL checker failed on this statement".into()));
                let _ = answer.send(verdict);
            }
        })
        .ok()?;
    *queue = Some(send.clone());
    Some(send)
}

/// [`checked`], run on the checker's own thread (see [`CHECKER_STACK`]), with
/// the verdict remembered per statement, grant, dialect and schema.
pub async fn check_off_stack(
    statement: &str,
    grant: &SqlGrant,
    dialect: Dialects,
    app_schema: &str,
) -> Verdict {
    let key = CheckKey {
        statement: statement.to_string(),
        grant: grant.clone(),
        dialect,
        app_schema: app_schema.to_string(),
    };
    if let Some(verdict) = verdicts().get(&key) {
        return verdict.clone();
    }
    let (answer, verdict) = tokio::sync::oneshot::channel();
    let sent = checker().is_some_and(|q| q.send((key.clone(), answer)).is_ok());
    if !sent {
        return Err("the SQL checker is not running".into());
    }
    let verdict = verdict
        .await
        .unwrap_or_else(|_| Err("the SQL checker stopped".into()));
    // Long statements are checked each time: the cache stays small (at most
    // VERDICTS_KEPT entries of up to CACHED_STATEMENT bytes).
    if statement.len() <= CACHED_STATEMENT {
        let mut kept = verdicts();
        if kept.len() >= VERDICTS_KEPT {
            kept.clear();
        }
        kept.insert(key, verdict.clone());
    }
    verdict
}

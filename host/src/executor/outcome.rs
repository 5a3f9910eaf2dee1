//! How a step call ended, decided without I/O: the pure mapping from what
//! the guest answered (or how the host stopped it) to either the step's end
//! (advance, finish, repeat) or a recorded failure with its kind and whether
//! the retry policy applies.

use serde_json::Value;

use crate::manifest::FINISHED;
use crate::run::{ErrorKind, StepEnd};
use crate::runtime::limits::{cut_text, guest_json};
use crate::runtime::{CallOutcome, Outcome, Refusal};

/// A step call that did not commit.
pub(super) struct Failed {
    pub(super) kind: ErrorKind,
    pub(super) message: String,
    pub(super) retryable: bool,
    /// What the call logged, as stored.
    pub(super) logs: Option<String>,
    /// The HTTP status the step set, for the run's answer if it fails for good.
    pub(super) http_status: Option<u16>,
}

/// Longest failure message stored: a guest's error text, or a database's
/// (which can quote a whole value the guest made), is cut here.
pub(super) const MAX_MESSAGE: usize = 32 << 10;

impl Failed {
    pub(super) fn new(kind: ErrorKind, message: impl Into<String>, retryable: bool) -> Failed {
        Failed {
            kind,
            message: cut_text(message.into(), MAX_MESSAGE),
            retryable,
            logs: None,
            http_status: None,
        }
    }
}

/// What the host knows of a call besides the guest's answer.
#[derive(Debug, Default)]
pub(super) struct CallFacts<'a> {
    /// The first thing the guest asked for and was refused.
    pub refusal: Option<Refusal>,
    /// The first cap the guest tried to exceed.
    pub too_large: Option<String>,
    /// A host call that could not answer the guest, nor tell it so.
    pub unanswered: Option<Refusal>,
    /// The step after this one (`finished` after the last).
    pub next: &'a str,
    /// The step's `max_result`.
    pub max_result: u64,
}

/// The step's end, or why it failed, from how its call ended.
pub(super) fn classify(facts: CallFacts<'_>, outcome: CallOutcome) -> Result<StepEnd, Failed> {
    // Whatever the guest did after a host call that could not answer it
    // rested on an answer it never got: the call's failure is the step's.
    if let Some(refusal) = facts.unanswered {
        return Err(Failed::new(
            refusal.kind,
            refusal.message,
            refusal.retryable,
        ));
    }
    // A step that failed after something it asked for was refused failed
    // because of it: recorded with the refusal's kind, naming what it asked.
    // It is tried again only if the refusal may clear and, when the guest
    // itself answered with an error, the guest said so too: its verdict wins.
    if let Some(refusal) = facts.refusal
        && !matches!(outcome, CallOutcome::Returned(Ok(_)))
    {
        let (detail, guest_retryable) = match &outcome {
            CallOutcome::Returned(Err(e)) => (e.message.clone(), e.retryable),
            CallOutcome::Aborted { message, .. } => (message.clone(), true),
            CallOutcome::Returned(Ok(_)) => (String::new(), true),
        };
        // The guest's error often is the refusal passed on: say it once.
        let message = if detail.contains(&refusal.message) {
            detail
        } else {
            format!("{}; the step then failed: {detail}", refusal.message)
        };
        // A conflict is the database's, not the guest's, to judge: the
        // step runs again whatever the guest made of it.
        let retryable =
            refusal.kind == ErrorKind::Conflict || (refusal.retryable && guest_retryable);
        return Err(Failed::new(refusal.kind, message, retryable));
    }
    let answer = match outcome {
        CallOutcome::Returned(answer) => answer,
        CallOutcome::Aborted { kind, message } => {
            // The same input burns the same fuel: trying again cannot help.
            let retryable = !matches!(kind, ErrorKind::InvalidOutput | ErrorKind::FuelExhausted);
            return Err(Failed::new(kind, message, retryable));
        }
    };
    // A guest that tried to exceed a cap fails, whatever it answered after.
    if let Some(message) = facts.too_large {
        return Err(Failed::new(ErrorKind::OutputTooLarge, message, false));
    }
    let end = match answer {
        Err(e) => return Err(Failed::new(ErrorKind::Guest, e.message, e.retryable)),
        Ok(Outcome::Continue) => StepEnd::Advance {
            next: facts.next.to_string(),
            result: (facts.next == FINISHED).then_some(Value::Null),
        },
        Ok(Outcome::Repeat) => StepEnd::Repeat,
        Ok(Outcome::Finish(text)) if text.len() as u64 > facts.max_result => {
            let message = format!(
                "result of {} bytes is over max_result ({} bytes)",
                text.len(),
                facts.max_result
            );
            return Err(Failed::new(ErrorKind::OutputTooLarge, message, false));
        }
        Ok(Outcome::Finish(text)) => match guest_json(&text) {
            Ok(result) => StepEnd::Advance {
                next: FINISHED.to_string(),
                result: Some(result),
            },
            Err(e) => {
                return Err(Failed::new(
                    ErrorKind::InvalidOutput,
                    format!("result is {e}"),
                    false,
                ));
            }
        },
    };
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::StepError;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let failed = Failed::new(ErrorKind::SqlError, "é".repeat(MAX_MESSAGE), false);
        let (kept, note) = failed.message.split_once('…').expect("a note");
        assert!(kept.len() <= MAX_MESSAGE && kept.chars().all(|c| c == 'é'));
        assert_eq!(
            note,
            format!(" ({} more bytes not kept)", 2 * MAX_MESSAGE - kept.len())
        );
        assert_eq!(
            Failed::new(ErrorKind::Guest, "short", true).message,
            "short"
        );
    }

    fn aborted(kind: ErrorKind) -> CallOutcome {
        CallOutcome::Aborted {
            kind,
            message: format!("{kind} (host)"),
        }
    }

    fn guest_error(retryable: bool) -> CallOutcome {
        CallOutcome::Returned(Err(StepError {
            message: "declined".into(),
            retryable,
        }))
    }

    fn ok(outcome: Outcome) -> CallOutcome {
        CallOutcome::Returned(Ok(outcome))
    }

    /// What each case should become: the end, or (kind, retryable, words).
    enum Want {
        End(StepEnd),
        Fail(ErrorKind, bool, &'static str),
    }

    #[test]
    fn every_way_a_call_ends_maps_to_one_decision() {
        let refused = || Some(Refusal::new(ErrorKind::SqlRefused, "SQL refused: DROP"));
        let timed_out = || Some(Refusal::new(ErrorKind::Timeout, "cut off at the deadline"));
        let constraint = || {
            Some(Refusal {
                kind: ErrorKind::SqlError,
                message: "SQL error: UNIQUE constraint failed".into(),
                retryable: false,
            })
        };
        let conflict = || {
            Some(Refusal::new(
                ErrorKind::Conflict,
                "SQL error: could not serialize",
            ))
        };
        let passed_on = |retryable| {
            CallOutcome::Returned(Err(StepError {
                message: "call 2: SQL error: could not serialize".into(),
                retryable,
            }))
        };
        let advance = |next: &str, result: Option<Value>| StepEnd::Advance {
            next: next.into(),
            result,
        };
        let cases: Vec<(&str, CallFacts<'_>, CallOutcome, Want)> = vec![
            (
                "continue",
                CallFacts {
                    next: "charge",
                    ..CallFacts::default()
                },
                ok(Outcome::Continue),
                Want::End(advance("charge", None)),
            ),
            (
                "continue after the last step",
                CallFacts {
                    next: FINISHED,
                    ..CallFacts::default()
                },
                ok(Outcome::Continue),
                Want::End(advance(FINISHED, Some(Value::Null))),
            ),
            (
                "finish",
                CallFacts {
                    next: "charge",
                    max_result: 100,
                    ..CallFacts::default()
                },
                ok(Outcome::Finish("{\"ride\":1}".into())),
                Want::End(advance(FINISHED, Some(serde_json::json!({"ride": 1})))),
            ),
            (
                "repeat",
                CallFacts {
                    next: "x",
                    ..CallFacts::default()
                },
                ok(Outcome::Repeat),
                Want::End(StepEnd::Repeat),
            ),
            (
                "a result over max_result",
                CallFacts {
                    next: "x",
                    max_result: 3,
                    ..CallFacts::default()
                },
                ok(Outcome::Finish("\"long\"".into())),
                Want::Fail(ErrorKind::OutputTooLarge, false, "max_result"),
            ),
            (
                "a result that is not JSON",
                CallFacts {
                    next: "x",
                    max_result: 100,
                    ..CallFacts::default()
                },
                ok(Outcome::Finish("{".into())),
                Want::Fail(ErrorKind::InvalidOutput, false, "not JSON"),
            ),
            (
                "a retryable guest error",
                CallFacts::default(),
                guest_error(true),
                Want::Fail(ErrorKind::Guest, true, "declined"),
            ),
            (
                "a fatal guest error",
                CallFacts::default(),
                guest_error(false),
                Want::Fail(ErrorKind::Guest, false, "declined"),
            ),
            (
                "a trap",
                CallFacts::default(),
                aborted(ErrorKind::Trap),
                Want::Fail(ErrorKind::Trap, true, "trap"),
            ),
            (
                "fuel burnt",
                CallFacts::default(),
                aborted(ErrorKind::FuelExhausted),
                Want::Fail(ErrorKind::FuelExhausted, false, "fuel"),
            ),
            (
                "a timeout",
                CallFacts::default(),
                aborted(ErrorKind::Timeout),
                Want::Fail(ErrorKind::Timeout, true, "timeout"),
            ),
            (
                "a refusal, then a guest error",
                CallFacts {
                    refusal: refused(),
                    ..CallFacts::default()
                },
                guest_error(true),
                Want::Fail(ErrorKind::SqlRefused, false, "DROP"),
            ),
            (
                "a host call cut off, then a trap",
                CallFacts {
                    refusal: timed_out(),
                    ..CallFacts::default()
                },
                aborted(ErrorKind::Trap),
                Want::Fail(ErrorKind::Timeout, true, "deadline"),
            ),
            (
                "a constraint the guest passed on as retryable",
                CallFacts {
                    refusal: constraint(),
                    ..CallFacts::default()
                },
                guest_error(true),
                Want::Fail(ErrorKind::SqlError, false, "UNIQUE"),
            ),
            (
                "a conflict the guest passed on",
                CallFacts {
                    refusal: conflict(),
                    ..CallFacts::default()
                },
                passed_on(true),
                Want::Fail(ErrorKind::Conflict, true, "call 2: SQL error"),
            ),
            (
                "a conflict the guest declared fatal: still a conflict, tried again",
                CallFacts {
                    refusal: conflict(),
                    ..CallFacts::default()
                },
                passed_on(false),
                Want::Fail(ErrorKind::Conflict, true, "could not serialize"),
            ),
            (
                "a refusal the guest handled",
                CallFacts {
                    refusal: refused(),
                    next: "x",
                    ..CallFacts::default()
                },
                ok(Outcome::Continue),
                Want::End(advance("x", None)),
            ),
            (
                "a cap exceeded, whatever the guest answered",
                CallFacts {
                    too_large: Some("max_attributes".into()),
                    next: "x",
                    ..CallFacts::default()
                },
                ok(Outcome::Continue),
                Want::Fail(ErrorKind::OutputTooLarge, false, "max_attributes"),
            ),
            (
                "a host call that could not answer, whatever the guest answered",
                CallFacts {
                    unanswered: Some(Refusal::new(ErrorKind::MemoryLimit, "staged runs' results")),
                    next: "x",
                    ..CallFacts::default()
                },
                ok(Outcome::Continue),
                Want::Fail(ErrorKind::MemoryLimit, true, "staged runs' results"),
            ),
        ];
        for (name, facts, outcome, want) in cases {
            match (classify(facts, outcome), want) {
                (Ok(end), Want::End(expected)) => assert_eq!(end, expected, "{name}"),
                (Err(failed), Want::Fail(kind, retryable, words)) => {
                    assert_eq!(failed.kind, kind, "{name}");
                    assert_eq!(failed.retryable, retryable, "{name}");
                    assert!(failed.message.contains(words), "{name}: {}", failed.message);
                }
                (Ok(end), Want::Fail(kind, ..)) => panic!("{name}: {end:?}, expected {kind}"),
                (Err(failed), Want::End(end)) => {
                    panic!(
                        "{name}: failed {} ({}), expected {end:?}",
                        failed.kind, failed.message
                    )
                }
            }
        }
    }
}

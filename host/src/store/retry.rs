//! Which database errors a second try of the whole transaction can clear,
//! and the bounded, jittered retry of one store call.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::error::Error;

/// Whether a database error code at a step's own commit says the same
/// transaction would fail the same way again: a value or size the database
/// cannot store (Postgres class 22, data exception; 54, program limit), an
/// integrity error (23: a guest's deferred constraint, a unique one
/// included), or SQLite's TOOBIG, CONSTRAINT and MISMATCH.
pub fn deterministic(dialect: crate::sql::Dialects, code: Option<&str>) -> bool {
    let Some(code) = code else { return false };
    match dialect {
        crate::sql::Dialects::Postgres => ["22", "23", "54"]
            .iter()
            .any(|class| code.starts_with(class)),
        // Extended result codes keep the primary code in their low byte.
        crate::sql::Dialects::Sqlite => {
            matches!(code.parse::<u32>().map(|n| n & 0xff), Ok(18..=20))
        }
    }
}

/// What kind of failure a second try of the whole transaction can clear.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Transient {
    /// Two transactions collided: serialization failure, deadlock, a key
    /// inserted concurrently, a busy SQLite file. Cleared in milliseconds.
    Conflict,
    /// The connection dropped or the server is restarting. Cleared in seconds.
    Connection,
}

/// Whether `e` is a unique violation (Postgres 23505): a concurrent insert
/// of a key in the engine's own transactions (which check for the key
/// first), but a guest's deferred constraint at a step's own commit.
pub(super) fn unique_violation(e: &Error) -> bool {
    matches!(e, Error::Database(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505"))
}

pub(super) fn transient(e: &Error) -> Option<Transient> {
    let Error::Database(e) = e else {
        return None;
    };
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code()?;
            match code.as_ref() {
                // serialization_failure, deadlock_detected, unique_violation
                // (every insert checks for the key first, so a violation means
                // a concurrent insert a retry will see), SQLite BUSY/LOCKED.
                "40001" | "40P01" | "23505" | "5" | "6" | "517" | "262" => {
                    Some(Transient::Conflict)
                }
                // connection_exception class; admin_shutdown, crash_shutdown,
                // cannot_connect_now: a restart.
                c if c.starts_with("08") => Some(Transient::Connection),
                "57P01" | "57P02" | "57P03" => Some(Transient::Connection),
                _ => None,
            }
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => Some(Transient::Connection),
        _ => None,
    }
}

/// The bounded retry of one store call.
#[derive(Debug, Default)]
pub(super) struct Retry {
    conflicts: u32,
    disconnects: u32,
}

impl Retry {
    /// Tries after a conflict: with 2 ms doubling to a cap of 250 ms, this
    /// bounds the wait near 1 s.
    const MAX_CONFLICTS: u32 = 10;
    const CONFLICT: Backoff = Backoff::new(Duration::from_millis(2), Duration::from_millis(250));
    /// Tries after a dropped connection: 100 ms doubling to 2 s, about 25 s
    /// in all, long enough to ride out a Postgres restart.
    const MAX_DISCONNECTS: u32 = 15;
    const DISCONNECT: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

    pub(super) fn pause_after(&mut self, e: &Error) -> Option<Duration> {
        let kind = transient(e)?;
        let (count, max, backoff) = match kind {
            Transient::Conflict => (&mut self.conflicts, Self::MAX_CONFLICTS, Self::CONFLICT),
            Transient::Connection => (
                &mut self.disconnects,
                Self::MAX_DISCONNECTS,
                Self::DISCONNECT,
            ),
        };
        *count += 1;
        if *count >= max {
            return None;
        }
        let pause = backoff.delay(*count);
        if kind == Transient::Connection {
            tracing::warn!(
                attempt = *count,
                ?pause,
                "database unreachable, reconnecting: {e}"
            );
        } else {
            tracing::debug!(
                attempt = *count,
                ?pause,
                "transaction conflict, trying again: {e}"
            );
        }
        Some(pause)
    }

    pub(super) fn give_up(&self, e: Error) -> Error {
        match (e, self.conflicts > 0) {
            (Error::Database(source), true) if self.conflicts >= Self::MAX_CONFLICTS => {
                Error::Conflict {
                    tries: self.conflicts,
                    message: source.to_string(),
                }
            }
            (e, _) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Error, Retry, Transient, transient};

    /// A database error with just a SQLSTATE, as the driver would report it.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "sqlstate {}", self.0)
        }
    }

    impl std::error::Error for Coded {}

    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            self.0
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn db(code: &'static str) -> Error {
        Error::Database(sqlx::Error::Database(Box::new(Coded(code))))
    }

    #[test]
    fn only_errors_a_second_try_can_clear_are_transient() {
        assert_eq!(transient(&db("40001")), Some(Transient::Conflict));
        assert_eq!(transient(&db("40P01")), Some(Transient::Conflict));
        assert_eq!(transient(&db("57P01")), Some(Transient::Connection));
        assert_eq!(transient(&db("08006")), Some(Transient::Connection));
        assert_eq!(
            transient(&db("42P01")),
            None,
            "undefined table is a bug, not a race"
        );
        assert_eq!(transient(&Error::RunNotFound("k".into())), None);
    }

    #[test]
    fn conflicts_are_retried_a_bounded_number_of_times_then_named() {
        let mut retry = Retry::default();
        let mut pauses = Vec::new();
        while let Some(pause) = retry.pause_after(&db("40001")) {
            pauses.push(pause);
        }
        assert_eq!(pauses.len() as u32, Retry::MAX_CONFLICTS - 1);
        let total: std::time::Duration = pauses.iter().sum();
        assert!(total.as_millis() <= 2_000, "bounded wait, was {total:?}");
        match retry.give_up(db("40001")) {
            Error::Conflict { tries, .. } => assert_eq!(tries, Retry::MAX_CONFLICTS),
            other => panic!("expected a conflict error, got {other}"),
        }
        let mut retry = Retry::default();
        assert!(
            retry.pause_after(&db("23502")).is_none(),
            "not null violation"
        );
        assert!(matches!(retry.give_up(db("23502")), Error::Database(_)));
    }
}

//! The step transaction, in one place: where it begins, what a guest's SQL
//! runs on, and the one way it ends.
//!
//! A step granted `sql` gets a [`StepTx`] before its guest runs
//! ([`Store::begin_step`]); the database transaction itself begins with the
//! guest's first statement (so a step holds no connection, and on SQLite no
//! write lock, while its component starts), and the guest's statements run
//! on it; then [`Store::commit`] writes the step's effects onto it
//! (attributes, staged runs, the timeline entry, the new recovery point)
//! fenced on the lease, and commits, or rolls everything back, the guest's
//! SQL included, if the fence fails. A step that ran no SQL commits the same
//! way on a transaction opened just for the commit. Dropping a [`StepTx`] (a
//! failed, timed-out or cancelled step) rolls it back. The writes themselves
//! are in `shared/commit.rs` (`end_step_tx`, `commit_step_in`), the same SQL
//! for both backends; the lease is checked inside the commit, so a worker
//! that lost it cannot advance the run.

use super::backend::Backend;
use super::{
    GuestLimits, SqlRows, SqlValue, Store, Transient, postgres, sqlite, transient, unique_violation,
};
use crate::error::{Error, Result};
use crate::run::{CommitOutcome, StepCommit};

impl Store {
    /// A step's own transaction, for a step granted SQL: it begins with the
    /// guest's first statement.
    pub fn begin_step(&self) -> StepTx {
        StepTx::Unopened(self.clone())
    }

    /// Begins a step's transaction on the database, for a first statement
    /// bounded by `limits`.
    async fn open_step(&self, limits: &GuestLimits) -> Result<StepTx> {
        match self {
            Store::Sqlite(s) => Ok(StepTx::Sqlite(s.begin_step().await?)),
            Store::Postgres(s) => Ok(StepTx::Postgres(s.begin_step(limits).await?)),
        }
    }

    /// Commits a step, fenced on its lease: on `tx`, the transaction its
    /// guest's SQL ran on, or else on a fresh one. The fresh one is tried
    /// again on conflicts (nothing ran in it yet); `tx` cannot be, since
    /// the guest's SQL would have to run again: a conflict there is
    /// [`Error::Conflict`], and the step is retried by its policy.
    pub async fn commit(&self, tx: Option<StepTx>, c: &StepCommit) -> Result<CommitOutcome> {
        match tx {
            Some(StepTx::Unopened(_)) | None => self.commit_step(c).await,
            Some(tx) => tx.commit(c).await,
        }
    }

    /// Commits a step on a transaction of its own, fenced on its lease: what
    /// [`Store::commit`] does for a step whose guest ran no SQL.
    pub async fn commit_step(&self, commit: &StepCommit) -> Result<CommitOutcome> {
        forward!(self, s => Backend::commit_step(s, commit).await)
    }
}

/// A step's own transaction, open while its guest runs: the guest's SQL runs
/// on it, and the step's commit (fenced on the lease) ends it. Dropping it
/// rolls everything back.
pub enum StepTx {
    /// Not begun yet: the guest has run no statement.
    Unopened(Store),
    /// On SQLite.
    Sqlite(sqlite::StepTx),
    /// On Postgres.
    Postgres(postgres::StepTx),
}

impl std::fmt::Debug for StepTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepTx")
    }
}

impl StepTx {
    /// Begins the transaction on the database, if it has not begun, for a
    /// statement bounded by `limits`.
    async fn opened(&mut self, limits: &GuestLimits) -> Result<&mut StepTx> {
        if let StepTx::Unopened(store) = self {
            *self = store.open_step(limits).await?;
        }
        Ok(self)
    }

    /// Runs a checked INSERT, UPDATE or DELETE, within `grant` and `limits`.
    pub async fn execute(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        grant: &crate::sql::SqlGrant,
        limits: &GuestLimits,
    ) -> Result<u64> {
        match self.opened(limits).await? {
            StepTx::Sqlite(t) => t.execute(sql, params, grant, limits).await,
            StepTx::Postgres(t) => t.execute(sql, params, grant, limits).await,
            StepTx::Unopened(_) => Err(not_opened()),
        }
    }

    /// Runs a checked SELECT, within `grant` and `limits`.
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        grant: &crate::sql::SqlGrant,
        limits: &GuestLimits,
    ) -> Result<SqlRows> {
        match self.opened(limits).await? {
            StepTx::Sqlite(t) => t.query(sql, params, grant, limits).await,
            StepTx::Postgres(t) => t.query(sql, params, grant, limits).await,
            StepTx::Unopened(_) => Err(not_opened()),
        }
    }

    /// Commits the step's writes and the guest's SQL together. A
    /// serialization failure here is [`Error::Conflict`]: the whole step
    /// (guest included) has to run again, which the executor does. A unique
    /// violation is not one here: the engine's inserts check their keys
    /// first (a concurrent one is a serialization failure), so it is the
    /// guest's deferred constraint, and the same commit would fail again.
    pub async fn commit(self, c: &StepCommit) -> Result<CommitOutcome> {
        let result = match self {
            StepTx::Sqlite(t) => t.commit(c).await,
            StepTx::Postgres(t) => t.commit(c).await,
            StepTx::Unopened(store) => return store.commit_step(c).await,
        };
        match result {
            Err(e) if transient(&e) == Some(Transient::Conflict) && !unique_violation(&e) => {
                Err(Error::Conflict {
                    tries: 1,
                    message: e.to_string(),
                })
            }
            other => other,
        }
    }

    /// Rolls back everything the step did.
    pub async fn rollback(self) -> Result<()> {
        match self {
            StepTx::Sqlite(t) => t.rollback().await,
            StepTx::Postgres(t) => t.rollback().await,
            StepTx::Unopened(_) => Ok(()),
        }
    }
}

/// A transaction that [`StepTx::opened`] had just begun was not there.
fn not_opened() -> Error {
    Error::Engine("the step's transaction did not begin".into())
}

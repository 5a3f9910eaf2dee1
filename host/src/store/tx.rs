//! The step transaction, in one place: where it begins, what a guest's SQL
//! runs on, and the one way it ends.
//!
//! A step granted `sql` gets its transaction before its guest runs
//! ([`Store::begin_step`]); the guest's statements run on it; then
//! [`Store::commit`] writes the step's effects onto it (attributes, staged
//! runs, the timeline entry, the new recovery point) fenced on the lease,
//! and commits, or rolls everything back, the guest's SQL included, if the
//! fence fails. A step without SQL commits the same way on a transaction
//! opened just for the commit. Dropping a [`StepTx`] (a failed, timed-out or
//! cancelled step) rolls it back. The writes themselves are in
//! `shared/commit.rs` (`end_step_tx`, `commit_step_in`), the same SQL for
//! both backends; the lease is checked inside the commit, so a worker that
//! lost it cannot advance the run.

use super::backend::Backend;
use super::{GuestLimits, SqlRows, SqlValue, Store, Transient, postgres, sqlite, transient};
use crate::error::{Error, Result};
use crate::run::{CommitOutcome, StepCommit};

impl Store {
    /// Opens a step's own transaction, for a step granted SQL.
    pub async fn begin_step(&self) -> Result<StepTx> {
        match self {
            Store::Sqlite(s) => Ok(StepTx::Sqlite(s.begin_step().await?)),
            Store::Postgres(s) => Ok(StepTx::Postgres(s.begin_step().await?)),
        }
    }

    /// Commits a step, fenced on its lease: on `tx`, the transaction its
    /// guest's SQL ran on, or else on a fresh one. The fresh one is tried
    /// again on conflicts (nothing ran in it yet); `tx` cannot be, since
    /// the guest's SQL would have to run again: a conflict there is
    /// [`Error::Conflict`], and the step is retried by its policy.
    pub async fn commit(&self, tx: Option<StepTx>, c: &StepCommit) -> Result<CommitOutcome> {
        match tx {
            Some(tx) => tx.commit(c).await,
            None => self.commit_step(c).await,
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
    /// Runs a checked INSERT, UPDATE or DELETE, within `grant` and `limits`.
    pub async fn execute(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        grant: &crate::sql::SqlGrant,
        limits: &GuestLimits,
    ) -> Result<u64> {
        match self {
            StepTx::Sqlite(t) => t.execute(sql, params, grant, limits).await,
            StepTx::Postgres(t) => t.execute(sql, params, grant, limits).await,
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
        match self {
            StepTx::Sqlite(t) => t.query(sql, params, grant, limits).await,
            StepTx::Postgres(t) => t.query(sql, params, grant, limits).await,
        }
    }

    /// Commits the step's writes and the guest's SQL together. A
    /// serialization failure here is [`Error::Conflict`]: the whole step
    /// (guest included) has to run again, which the retry policy does.
    pub async fn commit(self, c: &StepCommit) -> Result<CommitOutcome> {
        let result = match self {
            StepTx::Sqlite(t) => t.commit(c).await,
            StepTx::Postgres(t) => t.commit(c).await,
        };
        match result {
            Err(e) if transient(&e) == Some(Transient::Conflict) => Err(Error::Conflict {
                tries: 1,
                message: e.to_string(),
            }),
            other => other,
        }
    }

    /// Rolls back everything the step did.
    pub async fn rollback(self) -> Result<()> {
        match self {
            StepTx::Sqlite(t) => t.rollback().await,
            StepTx::Postgres(t) => t.rollback().await,
        }
    }
}

//! The embedded backend: one SQLite file in WAL mode.
//!
//! Every write transaction starts with `BEGIN IMMEDIATE`, so it holds the
//! database's single write lock from its first statement: two writers never
//! interleave, and a read-then-write inside one transaction cannot be stale.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Sqlite, SqlitePool, Transaction};

type Backend = SqliteStore;
type Db = Sqlite;
type Conn = sqlx::SqliteConnection;
type DbRow = SqliteRow;

/// Runnable runs, oldest due first; `$1`/`$2` carry the queues as a JSON array (or NULL for all).
const CLAIM_SQL: &str = "SELECT id FROM runs \
     WHERE ($1 IS NULL OR queue IN (SELECT value FROM json_each($2))) \
       AND ((status = 'pending' AND available_at <= $3 AND (locked_until IS NULL OR locked_until < $4)) \
         OR (status = 'running' AND locked_until < $5)) \
     ORDER BY available_at, id LIMIT $6";

fn queue_param(queues: &[String]) -> Option<String> {
    (!queues.is_empty()).then(|| serde_json::Value::from(queues.to_vec()).to_string())
}

/// Schema migrations, in order. Every file in `migrations/sqlite/` is listed here
/// (a test checks it), so the binary carries its schema with it.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "init",
    include_str!("../../../migrations/sqlite/0001_init.sql"),
)];

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (a path, or `sqlite://path`) and migrates it.
    pub async fn open(url: &str) -> Result<SqliteStore> {
        let options = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url)?
        } else {
            SqliteConnectOptions::new().filename(Path::new(url))
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL makes every commit durable across power loss, not just process death.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        let store = SqliteStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn begin(&self) -> Result<Transaction<'static, Db>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn begin_claim(&self) -> Result<Transaction<'static, Db>> {
        self.begin().await
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS _acidic_migrations \
             (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        for &(version, name, sql) in MIGRATIONS {
            let mut tx = self.begin().await?;
            let applied: Option<i64> =
                sqlx::query_scalar("SELECT version FROM _acidic_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if applied.is_some() {
                continue;
            }
            sqlx::raw_sql(sql)
                .execute(&mut *tx)
                .await
                .map_err(|source| Error::Migration {
                    version,
                    name,
                    source,
                })?;
            sqlx::query(
                "INSERT INTO _acidic_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(version)
            .bind(name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Direct access for tests and benchmarks that must compare against bare SQL.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// A step's own transaction on SQLite, open from before the guest runs until
/// the step commits. It holds the database's write lock meanwhile (`BEGIN
/// IMMEDIATE`), so only steps granted `sql` open it early.
pub struct StepTx {
    tx: Transaction<'static, Db>,
}

impl SqliteStore {
    /// Opens a step transaction for guest SQL.
    pub async fn begin_step(&self) -> Result<StepTx> {
        Ok(StepTx {
            tx: self.begin().await?,
        })
    }
}

impl StepTx {
    /// Runs a checked guest statement that changes rows; returns how many.
    pub async fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
        for p in params {
            q = match p {
                SqlValue::Null => q.bind(None::<i64>),
                SqlValue::Integer(i) => q.bind(*i),
                SqlValue::Real(f) => q.bind(*f),
                SqlValue::Text(t) | SqlValue::Json(t) => q.bind(t.clone()),
                SqlValue::Blob(b) => q.bind(b.clone()),
            };
        }
        Ok(q.execute(&mut *self.tx).await?.rows_affected())
    }

    /// Runs a checked guest query; values come back as SQLite stored them.
    pub async fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<SqlRows> {
        use sqlx::{Column, Executor, SqlSafeStr, Statement, TypeInfo, ValueRef};
        let statement = (&mut *self.tx)
            .prepare(sqlx::AssertSqlSafe(sql.to_string()).into_sql_str())
            .await?;
        let columns: Vec<String> = statement
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
        for p in params {
            q = match p {
                SqlValue::Null => q.bind(None::<i64>),
                SqlValue::Integer(i) => q.bind(*i),
                SqlValue::Real(f) => q.bind(*f),
                SqlValue::Text(t) | SqlValue::Json(t) => q.bind(t.clone()),
                SqlValue::Blob(b) => q.bind(b.clone()),
            };
        }
        let rows = q.fetch_all(&mut *self.tx).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut values = Vec::with_capacity(columns.len());
            for i in 0..row.len() {
                let raw = row.try_get_raw(i)?;
                let value = if raw.is_null() {
                    SqlValue::Null
                } else {
                    // SQLite is dynamically typed: decode what the value is.
                    match raw.type_info().name() {
                        "INTEGER" => SqlValue::Integer(row.try_get_unchecked(i)?),
                        "REAL" => SqlValue::Real(row.try_get_unchecked(i)?),
                        "BLOB" => SqlValue::Blob(row.try_get_unchecked(i)?),
                        _ => SqlValue::Text(row.try_get_unchecked(i)?),
                    }
                };
                values.push(value);
            }
            out.push(values);
        }
        Ok(SqlRows { columns, rows: out })
    }

    /// Commits the step on this transaction (fenced on its lease), or rolls
    /// everything back, the guest's SQL included, if the fence fails.
    pub async fn commit(mut self, c: &StepCommit) -> Result<CommitOutcome> {
        let outcome = commit_step_in(&mut self.tx, c).await?;
        finish_step_tx(self.tx, &outcome).await?;
        Ok(outcome)
    }

    /// Rolls back everything the step did.
    pub async fn rollback(self) -> Result<()> {
        Ok(self.tx.rollback().await?)
    }
}

use super::{SqlRows, SqlValue};

include!("shared.rs");

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn every_migration_file_is_listed() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/sqlite");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|(v, name, _)| format!("{v:04}_{name}.sql"))
            .collect();
        assert_eq!(files, listed, "migrations/sqlite and MIGRATIONS disagree");
    }
}

//! The production backend: Postgres, shared by many worker processes on many machines.
//!
//! Step transactions run at SERIALIZABLE; a serialization failure or deadlock
//! is retried by [`super::Store`]. Workers claim with `FOR UPDATE SKIP LOCKED`
//! under READ COMMITTED, so claimers never wait on each other nor abort each
//! other's claims. The engine's tables live in their own schema (`acidic` by
//! default, `?schema=NAME` in the URL), which every connection's
//! `search_path` names; a trigger notifies `<schema>.runs` whenever a run
//! becomes pending, so idle workers wake at the commit instead of the next poll.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, Transaction};

type Backend = PostgresStore;
type Db = Postgres;
type Conn = sqlx::PgConnection;
type DbRow = PgRow;

/// Runnable runs, oldest due first, locked so that concurrent claimers skip
/// them; `$1`/`$2` carry the queues (or NULL for all).
const CLAIM_SQL: &str = "SELECT id FROM runs \
     WHERE ($1::text[] IS NULL OR queue = ANY($2::text[])) \
       AND ((status = 'pending' AND available_at <= $3 AND (locked_until IS NULL OR locked_until < $4)) \
         OR (status = 'running' AND locked_until < $5)) \
     ORDER BY available_at, id LIMIT $6 FOR UPDATE SKIP LOCKED";

fn queue_param(queues: &[String]) -> Option<Vec<String>> {
    (!queues.is_empty()).then(|| queues.to_vec())
}

/// Schema migrations, in order, numbered like `migrations/sqlite/` (a test checks both).
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "init",
    include_str!("../../../migrations/postgres/0001_init.sql"),
)];

/// Any number: it only has to be the same in every process that migrates.
const MIGRATION_LOCK: i64 = 0x0ac1_d1c0;

/// The schema used when the URL names none.
pub const DEFAULT_SCHEMA: &str = "acidic";

/// The Postgres store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    schema: String,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`, optionally `?schema=NAME`) with a
    /// pool of at most `max_connections`, and migrates the schema.
    pub async fn open(url: &str, max_connections: u32) -> Result<PostgresStore> {
        let (url, schema) = split_schema(url)?;
        let options = PgConnectOptions::from_str(&url)?
            // A process frozen inside a transaction (stopped, or blocked
            // writing its logs) must not hold its locks, nor, at
            // SERIALIZABLE, make every other commit fail, for longer than this.
            .options([
                ("search_path", schema.as_str()),
                ("idle_in_transaction_session_timeout", "60s"),
            ])
            .application_name("acidic");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        let store = PostgresStore { pool, schema };
        store.migrate().await?;
        Ok(store)
    }

    async fn begin(&self) -> Result<Transaction<'static, Db>> {
        Ok(self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL SERIALIZABLE")
            .await?)
    }

    /// Claims run at READ COMMITTED: `SKIP LOCKED` already keeps two claimers
    /// apart, and SERIALIZABLE would only abort one of two disjoint claims.
    async fn begin_claim(&self) -> Result<Transaction<'static, Db>> {
        Ok(self.pool.begin().await?)
    }

    async fn migrate(&self) -> Result<()> {
        // One migrator at a time across every process sharing the database.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        // The schema name was checked to be a plain identifier in `split_schema`.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS \"{}\"",
            self.schema
        )))
        .execute(&mut *tx)
        .await?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS _acidic_migrations \
             (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        for &(version, name, sql) in MIGRATIONS {
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
        }
        tx.commit().await?;
        Ok(())
    }

    /// The schema holding the engine's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Direct access for tests and benchmarks that must compare against bare SQL.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A listener on this schema's "a run became pending" channel. It
    /// reconnects by itself; notifications sent while it was away are lost,
    /// which is why workers poll as well.
    pub async fn listen(&self) -> Result<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(&format!("{}.runs", self.schema)).await?;
        Ok(listener)
    }

    /// Drops this store's schema and everything in it (tests and benchmarks
    /// use a schema of their own).
    pub async fn drop_schema(self) -> Result<()> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        )))
        .execute(&self.pool)
        .await?;
        self.pool.close().await;
        Ok(())
    }
}

/// Takes the `schema` parameter out of a Postgres URL: (the URL without it, the schema).
fn split_schema(url: &str) -> Result<(String, String)> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut schema = DEFAULT_SCHEMA.to_string();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("schema", value)) => schema = value.to_string(),
            _ => rest.push(pair),
        }
    }
    let valid = schema.len() <= 63
        && schema
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(Error::DatabaseUrl(format!(
            "{url}: schema `{schema}` must be 1 to 63 letters, digits or _, not starting with a digit"
        )));
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, schema))
}

include!("shared.rs");

#[cfg(test)]
mod tests {
    use super::{MIGRATIONS, split_schema};

    #[test]
    fn migrations_are_numbered_like_sqlite() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/postgres");
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
        assert_eq!(files, listed, "migrations/postgres and MIGRATIONS disagree");
        let sqlite: Vec<(i64, &str)> = super::super::sqlite::MIGRATIONS
            .iter()
            .map(|(v, n, _)| (*v, *n))
            .collect();
        let postgres: Vec<(i64, &str)> = MIGRATIONS.iter().map(|(v, n, _)| (*v, *n)).collect();
        assert_eq!(sqlite, postgres, "the backends' migrations are out of step");
    }

    #[test]
    fn the_schema_parameter_is_taken_out_of_the_url() {
        let (url, schema) = split_schema("postgres://u@h/db").expect("plain");
        assert_eq!(
            (url.as_str(), schema.as_str()),
            ("postgres://u@h/db", "acidic")
        );
        let (url, schema) =
            split_schema("postgres://u@h/db?sslmode=disable&schema=t_1").expect("with schema");
        assert_eq!(
            (url.as_str(), schema.as_str()),
            ("postgres://u@h/db?sslmode=disable", "t_1")
        );
        assert!(split_schema("postgres://u@h/db?schema=a;drop").is_err());
        assert!(split_schema("postgres://u@h/db?schema=").is_err());
    }
}

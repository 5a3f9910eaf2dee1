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

/// Whether a pending run in the queues waits out the backoff of a failed
/// attempt (`worker --exit-when-idle` waits for those).
const RETRY_WAIT_SQL: &str = "SELECT EXISTS (SELECT 1 FROM runs \
     WHERE ($1::text[] IS NULL OR queue = ANY($2::text[])) \
       AND status = 'pending' AND step_attempt > 0)";

fn queue_param(queues: &[String]) -> Option<Vec<String>> {
    (!queues.is_empty()).then(|| queues.to_vec())
}

/// Schema migrations, in order, numbered like `migrations/sqlite/` (a test checks both).
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "lineage_depth",
        include_str!("../../../migrations/postgres/0002_lineage_depth.sql"),
    ),
    (
        3,
        "step_logs",
        include_str!("../../../migrations/postgres/0003_step_logs.sql"),
    ),
    (
        4,
        "http_status",
        include_str!("../../../migrations/postgres/0004_http_status.sql"),
    ),
    (
        5,
        "cancel_request",
        include_str!("../../../migrations/postgres/0005_cancel_request.sql"),
    ),
];

/// Any number: it only has to be the same in every process that migrates.
const MIGRATION_LOCK: i64 = 0x0ac1_d1c0;

/// The engine's schema when the URL names none.
pub const DEFAULT_SCHEMA: &str = "acidic";

/// Where steps' SQL finds the application's tables when the URL names no `app_schema`.
pub const DEFAULT_APP_SCHEMA: &str = "public";

/// The Postgres store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Where the shared SQL writes outside a transaction: the same pool
    /// (SQLite's store has a writer of its own).
    writer: PgPool,
    schema: String,
    app_schema: String,
    /// The role guest SQL runs under, if the connecting user could set it up.
    guest_role: Option<String>,
}

/// How long opening waits for the server's first answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl PostgresStore {
    /// Connects to `url` (`postgres://…`, optionally `?schema=NAME`) with a
    /// pool of at most `max_connections`, and migrates the schema.
    pub async fn open(url: &str, max_connections: u32) -> Result<PostgresStore> {
        let (url, schema, app_schema) = split_schema(url)?;
        let options = PgConnectOptions::from_str(&url)?
            // A process frozen inside a transaction (stopped, or blocked
            // writing its logs) must not hold its locks, nor, at
            // SERIALIZABLE, make every other commit fail, for longer than this.
            .options([
                ("search_path", schema.as_str()),
                ("idle_in_transaction_session_timeout", "60s"),
            ])
            .application_name("acidic");
        // One connection first, for its error: the pool would only say it
        // timed out (after 10 s) when the server refuses or rejects it.
        let target = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        );
        let connect_error = |message: String| Error::Connect {
            target: target.clone(),
            message,
        };
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&options),
        )
        .await
        {
            Err(_) => {
                return Err(connect_error(format!(
                    "no answer within {CONNECT_TIMEOUT:?}"
                )));
            }
            Ok(Err(sqlx::Error::Database(db))) => return Err(connect_error(db.message().into())),
            Ok(Err(e)) => return Err(connect_error(e.to_string())),
            Ok(Ok(probe)) => {
                let _ = sqlx::Connection::close(probe).await;
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        let mut store = PostgresStore {
            writer: pool.clone(),
            pool,
            schema,
            app_schema,
            guest_role: None,
        };
        store.migrate().await?;
        store.guest_role = store.prepare_guest_role().await?;
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
             (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL, checksum TEXT); \
             ALTER TABLE _acidic_migrations ADD COLUMN IF NOT EXISTS checksum TEXT",
        )
        .execute(&mut *tx)
        .await?;
        apply_migrations(&mut tx, MIGRATIONS).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets up the role guest SQL runs under: it may use the application's
    /// schema and its tables, and has no privilege at all on the engine's, so
    /// even a statement the checker let through by mistake cannot name an
    /// engine table, type or sequence. The connecting user must be allowed to
    /// create roles; if it is not, guest SQL runs under the user itself, with
    /// the checker as the only guard, and a warning says so.
    async fn prepare_guest_role(&self) -> Result<Option<String>> {
        let role = guest_role_name(&self.schema);
        // Names were checked to be plain identifiers; the role is derived from one.
        let (role_q, app, engine) = (
            format!("\"{role}\""),
            format!("\"{}\"", self.app_schema),
            format!("\"{}\"", self.schema),
        );
        let statements = [
            format!(
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN \
                 CREATE ROLE {role_q} NOLOGIN NOINHERIT; END IF; END $$"
            ),
            format!("GRANT {role_q} TO CURRENT_USER"),
            format!("REVOKE ALL ON SCHEMA {engine} FROM {role_q}"),
            format!("REVOKE ALL ON ALL TABLES IN SCHEMA {engine} FROM {role_q}"),
            format!("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {engine} FROM {role_q}"),
            format!("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {engine} FROM PUBLIC"),
            format!("GRANT USAGE, CREATE ON SCHEMA {app} TO {role_q}"),
            format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {app} TO {role_q}"
            ),
            format!("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {app} TO {role_q}"),
            // Tables the connecting user creates later are the guest's to use too.
            format!(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA {app} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role_q}"
            ),
            format!(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA {app} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {role_q}"
            ),
        ];
        let mut tx = self.pool.begin().await?;
        // Roles are shared by the whole server: one process sets them up at a time.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        for statement in &statements {
            if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
                .execute(&mut *tx)
                .await
            {
                let denied = matches!(&e, sqlx::Error::Database(db) if db.code().as_deref() == Some("42501"));
                if denied {
                    tracing::warn!(
                        "cannot set up the role `{role}` for guest SQL ({e}); steps' SQL runs as the \
                         connecting user, guarded by the SQL checker alone (grant CREATEROLE to fix)"
                    );
                    return Ok(None);
                }
                return Err(e.into());
            }
        }
        tx.commit().await?;
        Ok(Some(role))
    }

    /// The role guest SQL runs under, if any.
    pub fn guest_role(&self) -> Option<&str> {
        self.guest_role.as_deref()
    }

    /// Closes every connection once the ones in use are given back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The schema where steps' SQL finds the application's tables.
    pub fn app_schema(&self) -> &str {
        &self.app_schema
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

/// Takes acidic's own parameters out of a Postgres URL: (the URL without
/// them, the engine's schema, the application's schema).
fn split_schema(url: &str) -> Result<(String, String, String)> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut schema = DEFAULT_SCHEMA.to_string();
    let mut app_schema = DEFAULT_APP_SCHEMA.to_string();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("schema", value)) => schema = value.to_string(),
            Some(("app_schema", value)) => app_schema = value.to_string(),
            _ => rest.push(pair),
        }
    }
    for (param, name) in [("schema", &schema), ("app_schema", &app_schema)] {
        let valid = name.len() <= 63
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Error::DatabaseUrlParameter {
                url: super::redacted_url(url),
                problem: format!(
                    "{param} `{name}` must be 1 to 63 letters, digits or _, not starting with a digit"
                ),
            });
        }
    }
    if schema == app_schema {
        return Err(Error::DatabaseUrlParameter {
            url: super::redacted_url(url),
            problem: "the engine's schema and the application's must differ, or steps could \
                      reach the engine's tables"
                .into(),
        });
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, schema, app_schema))
}

/// A step's own transaction on Postgres (SERIALIZABLE), open from before the
/// guest runs until the step commits. Guest statements see the application's
/// schema (`public`, or `?app_schema=NAME`); the engine's comes back for the commit.
pub struct StepTx {
    tx: Transaction<'static, Db>,
    schema: String,
    /// How the last guest statement's savepoint ends (released, or rolled
    /// back to), sent ahead of the next statement on the transaction rather
    /// than as a round trip of its own.
    ending: Option<&'static str>,
    /// The next statement's savepoint is open already (BEGIN opened it).
    savepoint_open: bool,
}

/// How a guest statement's savepoint ends when the statement succeeded, and
/// when it failed (the savepoint is released either way, so failures do
/// not pile up nested subtransactions).
const RELEASE: &str = "RELEASE SAVEPOINT acidic_guest";
const UNDO: &str = "ROLLBACK TO SAVEPOINT acidic_guest; RELEASE SAVEPOINT acidic_guest";

impl PostgresStore {
    /// Opens a step transaction for guest SQL, with the savepoint of its
    /// first statement (bounded by `limits`) already in place.
    pub async fn begin_step(&self, limits: &GuestLimits) -> Result<StepTx> {
        // Checked to be a plain identifier in `split_schema`; the role is derived from one.
        let role = match &self.guest_role {
            Some(role) => format!("; SET LOCAL ROLE \"{role}\""),
            None => String::new(),
        };
        // One round trip: the transaction, the guest's view in it, and the
        // first statement's savepoint.
        let tx = self
            .pool
            .begin_with(sqlx::AssertSqlSafe(format!(
                "BEGIN ISOLATION LEVEL SERIALIZABLE; SET LOCAL search_path TO \"{}\"{role}; {}",
                self.app_schema,
                savepoint_sql(limits)
            )))
            .await?;
        Ok(StepTx {
            tx,
            schema: self.schema.clone(),
            ending: None,
            savepoint_open: true,
        })
    }
}

/// Opens a guest statement's savepoint, bounded by the time and memory left
/// to its step.
fn savepoint_sql(limits: &GuestLimits) -> String {
    let ms = limits.time_left().as_millis().max(1);
    format!(
        "SAVEPOINT acidic_guest; SET LOCAL statement_timeout = {ms}; SET LOCAL {} = {}",
        crate::sql::rows::BUDGET_SETTING,
        limits.max_bytes
    )
}

impl StepTx {
    /// `sql`, after how the last guest statement's savepoint ends (if it
    /// has not been sent yet): one batch, one round trip.
    fn after_ending(&mut self, sql: String) -> String {
        match self.ending.take() {
            Some(ending) => format!("{ending}; {sql}"),
            None => sql,
        }
    }

    /// Prepares `sql` and binds `params` with the types Postgres inferred
    /// for them (a NULL or a JSON value needs the parameter's own type).
    async fn bound<'a>(
        &mut self,
        sql: &'a str,
        params: &'a [SqlValue],
    ) -> Result<(
        sqlx::query::Query<'a, Postgres, sqlx::postgres::PgArguments>,
        Vec<String>,
    )> {
        use sqlx::{Column, Executor, SqlSafeStr, Statement, TypeInfo};
        let statement = (&mut *self.tx)
            .prepare(sqlx::AssertSqlSafe(sql.to_string()).into_sql_str())
            .await?;
        let columns = statement
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        let types: Vec<String> = match statement.parameters() {
            Some(sqlx::Either::Left(types)) => types.iter().map(|t| t.name().to_string()).collect(),
            _ => Vec::new(),
        };
        if types.len() != params.len() {
            return Err(Error::GuestSql(format!(
                "the statement has {} parameters, {} were given",
                types.len(),
                params.len()
            )));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
        for (n, (value, ty)) in params.iter().zip(&types).enumerate() {
            q = bind(q, value, ty)
                .map_err(|why| Error::GuestSql(format!("parameter ${}: {why}", n + 1)))?;
        }
        Ok((q, columns))
    }

    /// Runs `run` under a savepoint: a statement Postgres rejects is undone
    /// alone, so a guest that handles the error can go on (without it the
    /// whole transaction would be aborted and its commit refused).
    /// The statement is also bounded by the time left to the step: Postgres
    /// cancels it at the deadline (`statement_timeout` covers lock waits too),
    /// and each row it returns by the memory left to the step.
    async fn savepoint<T>(
        &mut self,
        limits: &GuestLimits,
        run: impl AsyncFnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let budget = limits.max_bytes;
        // The first statement's savepoint came with BEGIN.
        if !std::mem::take(&mut self.savepoint_open) {
            let batch = self.after_ending(savepoint_sql(limits));
            sqlx::raw_sql(sqlx::AssertSqlSafe(batch))
                .execute(&mut *self.tx)
                .await?;
        }
        let result = run(self).await.map_err(|e| over_budget(e, budget));
        // Nothing runs on the transaction before the next statement or the
        // commit, which send this first.
        self.ending = Some(if result.is_ok() { RELEASE } else { UNDO });
        result
    }

    /// Runs a checked guest statement that changes rows; returns how many.
    /// (Postgres has no authorizer: the engine's schema is out of the
    /// statement's search path, and the parser refuses naming it.)
    pub async fn execute(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        _grant: &SqlGrant,
        limits: &GuestLimits,
    ) -> Result<u64> {
        self.savepoint(limits, async |t: &mut Self| {
            let (q, _) = t.bound(sql, params).await?;
            Ok(q.execute(&mut *t.tx).await?.rows_affected())
        })
        .await
    }

    /// Runs a checked guest query. Rows are read one at a time and counted,
    /// so a query cannot make the host hold more than `limits.max_bytes`.
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        _grant: &SqlGrant,
        limits: &GuestLimits,
    ) -> Result<SqlRows> {
        let max_bytes = limits.max_bytes;
        self.savepoint(limits, async |t: &mut Self| {
            use futures_util::TryStreamExt;
            let (q, columns) = t.bound(sql, params).await?;
            let mut held = columns.iter().map(|c| c.len() + 24).sum::<usize>();
            let mut rows = q.fetch(&mut *t.tx);
            let mut out = Vec::new();
            while let Some(row) = rows.try_next().await? {
                let values = row_values(&row)?;
                held += 24 + values.iter().map(SqlValue::size).sum::<usize>();
                if held > max_bytes {
                    return Err(Error::GuestRowsOverBudget { budget: max_bytes });
                }
                out.push(values);
            }
            Ok(SqlRows { columns, rows: out })
        })
        .await
    }

    /// Commits the step on this transaction (fenced on its lease), or rolls
    /// everything back, the guest's SQL included, if the fence fails. The
    /// engine's own statements run as the connecting user again, in the
    /// engine's schema, with no statement timeout of the guest's.
    pub async fn commit(mut self, c: &StepCommit) -> Result<CommitOutcome> {
        let batch = self.after_ending(format!(
            "RESET ROLE; SET LOCAL search_path TO \"{}\"; SET LOCAL statement_timeout = 0",
            self.schema
        ));
        sqlx::raw_sql(sqlx::AssertSqlSafe(batch))
            .execute(&mut *self.tx)
            .await?;
        end_step_tx(self.tx, c).await
    }

    /// Rolls back everything the step did.
    pub async fn rollback(self) -> Result<()> {
        Ok(self.tx.rollback().await?)
    }
}

/// The server's refusal of a row over the budget (see [`crate::sql::rows`])
/// as the host's own.
fn over_budget(e: Error, budget: usize) -> Error {
    match &e {
        Error::Database(sqlx::Error::Database(db))
            if db.message().contains(crate::sql::rows::OVER_BUDGET) =>
        {
            Error::GuestRowsOverBudget { budget }
        }
        _ => e,
    }
}

/// One row of a guest query as guest values.
fn row_values(row: &PgRow) -> Result<Vec<SqlValue>> {
    use sqlx::{Column, Row, TypeInfo, ValueRef};
    let mut values = Vec::with_capacity(row.columns().len());
    for (i, column) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(i)?;
        let ty = column.type_info().name().to_string();
        let value = if raw.is_null() {
            SqlValue::Null
        } else {
            match ty.as_str() {
                "INT2" => SqlValue::Integer(row.try_get::<i16, _>(i)?.into()),
                "INT4" => SqlValue::Integer(row.try_get::<i32, _>(i)?.into()),
                "INT8" => SqlValue::Integer(row.try_get(i)?),
                "BOOL" => SqlValue::Integer(row.try_get::<bool, _>(i)?.into()),
                "FLOAT4" => SqlValue::Real(row.try_get::<f32, _>(i)?.into()),
                "FLOAT8" => SqlValue::Real(row.try_get(i)?),
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => SqlValue::Text(row.try_get(i)?),
                "BYTEA" => SqlValue::Blob(row.try_get(i)?),
                "JSON" | "JSONB" => SqlValue::Json(
                    row.try_get::<sqlx::types::Json<serde_json::Value>, _>(i)?
                        .0
                        .to_string(),
                ),
                other => {
                    return Err(Error::GuestSql(format!(
                        "column `{}` is {other}: cast it in the query (::text, ::float8, ::bigint)",
                        column.name()
                    )));
                }
            }
        };
        values.push(value);
    }
    Ok(values)
}

/// Binds one guest value as the parameter type Postgres inferred, `ty`.
fn bind<'a>(
    q: sqlx::query::Query<'a, Postgres, sqlx::postgres::PgArguments>,
    value: &SqlValue,
    ty: &str,
) -> std::result::Result<sqlx::query::Query<'a, Postgres, sqlx::postgres::PgArguments>, String> {
    use sqlx::types::Json;
    Ok(match (value, ty) {
        (SqlValue::Null, "INT2") => q.bind(None::<i16>),
        (SqlValue::Null, "INT4") => q.bind(None::<i32>),
        (SqlValue::Null, "INT8") => q.bind(None::<i64>),
        (SqlValue::Null, "FLOAT4") => q.bind(None::<f32>),
        (SqlValue::Null, "FLOAT8") => q.bind(None::<f64>),
        (SqlValue::Null, "BOOL") => q.bind(None::<bool>),
        (SqlValue::Null, "BYTEA") => q.bind(None::<Vec<u8>>),
        (SqlValue::Null, "JSON" | "JSONB") => q.bind(None::<Json<serde_json::Value>>),
        (SqlValue::Null, "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "UNKNOWN") => {
            q.bind(None::<String>)
        }
        (SqlValue::Integer(i), "INT2") => {
            q.bind(i16::try_from(*i).map_err(|_| format!("{i} does not fit INT2"))?)
        }
        (SqlValue::Integer(i), "INT4") => {
            q.bind(i32::try_from(*i).map_err(|_| format!("{i} does not fit INT4"))?)
        }
        (SqlValue::Integer(i), "INT8") => q.bind(*i),
        (SqlValue::Integer(i), "FLOAT8") => q.bind(*i as f64),
        (SqlValue::Integer(i), "BOOL") => q.bind(*i != 0),
        (SqlValue::Real(f), "FLOAT8") => q.bind(*f),
        (SqlValue::Real(f), "FLOAT4") => q.bind(*f as f32),
        (SqlValue::Text(t), "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "UNKNOWN") => {
            q.bind(t.clone())
        }
        (SqlValue::Blob(b), "BYTEA") => q.bind(b.clone()),
        (SqlValue::Json(j) | SqlValue::Text(j), "JSON" | "JSONB") => {
            let value: serde_json::Value =
                serde_json::from_str(j).map_err(|e| format!("not JSON: {e}"))?;
            q.bind(Json(value))
        }
        (SqlValue::Json(j), "TEXT" | "VARCHAR" | "UNKNOWN") => q.bind(j.clone()),
        (value, ty) => {
            return Err(format!(
                "a {} value cannot be bound where Postgres expects {ty}; cast the parameter in SQL (e.g. $1::text)",
                value.kind()
            ));
        }
    })
}

/// The role guest SQL runs under for the engine schema `schema` (roles are
/// shared by the whole server, so each engine schema has its own).
pub fn guest_role_name(schema: &str) -> String {
    let mut role = format!("{schema}_guest");
    role.truncate(63);
    role
}

use super::{GuestLimits, SqlRows, SqlValue};
use crate::sql::SqlGrant;

/// How a step's commit writes its timeline entry with the fenced update
/// (`shared/commit.rs`): one statement, whose insert takes the run the
/// update returned, so it inserts nothing when the fence failed.
macro_rules! step_commit_sql {
    ($update:expr) => {
        concat!(
            "WITH u AS (",
            $update,
            "), e AS (INSERT INTO step_events (run_id, step, attempt, outcome, error_kind, message, \
               started_at, finished_at, logs) \
             SELECT id, $13, $15, $16, NULL, NULL, $17, $8, $18 FROM u) \
             SELECT cancel_requested_by, parent_run_id, awaited, awaits_runs FROM u"
        )
    };
}

// The SQL written once for both backends, one concept per file.
include!("shared/prelude.rs");
include!("shared/components.rs");
include!("shared/runs.rs");
include!("shared/commit.rs");
include!("shared/awaits.rs");
include!("shared/rows.rs");
include!("shared/migrations.rs");
include!("shared/baseline.rs");
include!("shared/contract.rs");

#[cfg(test)]
mod tests {
    use super::split_schema;

    #[test]
    fn the_schema_parameters_are_taken_out_of_the_url() {
        let (url, schema, app) = split_schema("postgres://u@h/db").expect("plain");
        assert_eq!(
            (url.as_str(), schema.as_str(), app.as_str()),
            ("postgres://u@h/db", "acidic", "public")
        );
        let (url, schema, app) =
            split_schema("postgres://u@h/db?sslmode=disable&schema=t_1&app_schema=a_1")
                .expect("with schemas");
        assert_eq!(
            (url.as_str(), schema.as_str(), app.as_str()),
            ("postgres://u@h/db?sslmode=disable", "t_1", "a_1")
        );
        assert!(split_schema("postgres://u@h/db?schema=a;drop").is_err());
        assert!(split_schema("postgres://u@h/db?schema=").is_err());
        assert!(split_schema("postgres://u@h/db?schema=x&app_schema=x").is_err());
    }
}

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
use sqlx::{Connection, Sqlite, SqlitePool, Transaction};

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

/// Whether a pending run in the queues waits out the backoff of a failed
/// attempt (`worker --exit-when-idle` waits for those).
const RETRY_WAIT_SQL: &str = "SELECT EXISTS (SELECT 1 FROM runs \
     WHERE ($1 IS NULL OR queue IN (SELECT value FROM json_each($2))) \
       AND status = 'pending' AND step_attempt > 0)";

fn queue_param(queues: &[String]) -> Option<String> {
    (!queues.is_empty()).then(|| serde_json::Value::from(queues.to_vec()).to_string())
}

/// Schema migrations, in order. Every file in `migrations/sqlite/` is listed here
/// (a test checks it), so the binary carries its schema with it.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "lineage_depth",
        include_str!("../../../migrations/sqlite/0002_lineage_depth.sql"),
    ),
    (
        3,
        "step_logs",
        include_str!("../../../migrations/sqlite/0003_step_logs.sql"),
    ),
    (
        4,
        "http_status",
        include_str!("../../../migrations/sqlite/0004_http_status.sql"),
    ),
    (
        5,
        "cancel_request",
        include_str!("../../../migrations/sqlite/0005_cancel_request.sql"),
    ),
];

/// The `synchronous` setting a URL asks for, and the URL without it:
/// `sqlite://acidic.db?synchronous=normal`. FULL, the default, makes every
/// commit durable across power loss, not only across the process's death;
/// NORMAL (in WAL mode) may lose the last commits to a power loss or an OS
/// crash, never to a killed process, and never corrupts the file. OFF is
/// refused: it would lose committed steps to a crash.
fn synchronous_of(url: &str) -> Result<(String, SqliteSynchronous)> {
    let Some((base, query)) = url.split_once('?').filter(|_| url.starts_with("sqlite:")) else {
        return Ok((url.to_string(), SqliteSynchronous::Full));
    };
    let mut synchronous = SqliteSynchronous::Full;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((key, value)) if key.eq_ignore_ascii_case("synchronous") => {
                synchronous = match value.to_ascii_lowercase().as_str() {
                    "full" => SqliteSynchronous::Full,
                    "normal" => SqliteSynchronous::Normal,
                    _ => {
                        return Err(Error::Connect {
                            target: base.to_string(),
                            message: format!(
                                "synchronous={value} is not allowed: use full (the default: \
                                 every commit survives a power loss) or normal (the last \
                                 commits may not)"
                            ),
                        });
                    }
                };
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, synchronous))
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Readers: WAL lets them run beside the one writer.
    pool: SqlitePool,
    /// The one connection this process writes on. SQLite has one writer per
    /// file: queueing this process's write transactions here, first come
    /// first served, replaces their colliding on the file lock and sleeping
    /// in SQLite's busy handler (other processes still meet them there).
    writer: SqlitePool,
    /// FULL or NORMAL (see [`synchronous_of`]).
    synchronous: &'static str,
}

impl SqliteStore {
    /// Opens the database at `url` (a path, or `sqlite://path`), creating
    /// it if `create` (else a missing file is [`Error::NoDatabase`]), and
    /// migrates it.
    pub async fn open(url: &str, create: bool) -> Result<SqliteStore> {
        let (url, synchronous) = synchronous_of(url)?;
        let url = url.as_str();
        let options = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url)?
        } else {
            SqliteConnectOptions::new().filename(Path::new(url))
        };
        let file = options.get_filename().to_path_buf();
        let in_memory = file.as_os_str().is_empty() || file.as_os_str() == ":memory:";
        if !create && !in_memory && !file.exists() {
            return Err(Error::NoDatabase(file.display().to_string()));
        }
        let options = options
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pools = |max: u32| {
            SqlitePoolOptions::new()
                .max_connections(max)
                // A file's connection does not go stale the way a socket
                // does: no ping (a round trip to the driver's thread) before
                // each use. One left in a failed transaction is closed on
                // release (below).
                .test_before_acquire(false)
                // As long as the busy handler waits for another process's lock.
                .acquire_timeout(Duration::from_secs(30))
                // A connection whose COMMIT or ROLLBACK failed (a full disk, an
                // I/O error) stays inside a transaction that no longer exists,
                // and every BEGIN on it would fail: it is closed instead of
                // kept, so the pool opens a fresh one once the disk has room.
                .after_release(|conn, _| {
                    Box::pin(async move {
                        if !conn.is_in_transaction() {
                            return Ok(true);
                        }
                        // A dropped transaction's rollback is queued on the
                        // connection: a round trip lets it run first.
                        conn.ping().await?;
                        let healthy = !conn.is_in_transaction();
                        if !healthy {
                            tracing::warn!(
                                "closing a database connection stuck in a failed transaction"
                            );
                        }
                        Ok(healthy)
                    })
                })
        };
        let connect_error = |e: sqlx::Error| {
            Error::Connect {
                target: file.display().to_string(),
                message: match &e {
                    sqlx::Error::Database(db) if db.code().as_deref() == Some("14") => {
                        "cannot open or create the file (does its folder exist, and may this user write there?)".into()
                    }
                    sqlx::Error::Database(db) => db.message().to_string(),
                    other => other.to_string(),
                },
        }
        };
        // The writer first: it creates the file, and the readers find it.
        // (An in-memory database is one per connection: one, for both.)
        // Guest SQL runs only on the writer, so only its connections get
        // the guest's callbacks.
        let writer = pools(1)
            .after_connect(|conn, _| Box::pin(async move { install_guest_callbacks(conn).await }))
            .connect_with(options.clone())
            .await
            .map_err(connect_error)?;
        let pool = if in_memory {
            writer.clone()
        } else {
            pools(8)
                .connect_with(options)
                .await
                .map_err(connect_error)?
        };
        let store = SqliteStore {
            pool,
            writer,
            synchronous: match synchronous {
                SqliteSynchronous::Normal => "NORMAL",
                _ => "FULL",
            },
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Closes every connection once the ones in use are given back.
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    /// The `synchronous` setting it runs with: FULL or NORMAL.
    pub fn synchronous(&self) -> &'static str {
        self.synchronous
    }

    async fn begin(&self) -> Result<Transaction<'static, Db>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn begin_claim(&self) -> Result<Transaction<'static, Db>> {
        self.begin().await
    }

    async fn migrate(&self) -> Result<()> {
        // One write transaction: a second process starting at once waits for it.
        let mut tx = self.begin().await?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS _acidic_migrations \
             (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL, checksum TEXT)",
        )
        .execute(&mut *tx)
        .await?;
        // Databases made before migrations carried a checksum get the column.
        let has_checksum: bool = sqlx::query_scalar(
            "SELECT count(*) > 0 FROM pragma_table_info('_acidic_migrations') WHERE name = 'checksum'",
        )
        .fetch_one(&mut *tx)
        .await?;
        if !has_checksum {
            sqlx::raw_sql("ALTER TABLE _acidic_migrations ADD COLUMN checksum TEXT")
                .execute(&mut *tx)
                .await?;
        }
        apply_migrations(&mut tx, MIGRATIONS).await?;
        tx.commit().await?;
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
    /// SQLite ended the transaction itself after a statement failed (an
    /// interrupted write rolls back the whole transaction, as do a full
    /// disk and some I/O errors): nothing more may run on it, and it cannot commit.
    lost: bool,
}

impl SqliteStore {
    /// Opens a step transaction for guest SQL.
    pub async fn begin_step(&self) -> Result<StepTx> {
        Ok(StepTx {
            tx: self.begin().await?,
            lost: false,
        })
    }
}

/// What SQLite's authorizer lets a guest statement touch. The parser's check
/// comes first; this is SQLite's own word on what the compiled statement
/// reads and writes, views and triggers included.
#[derive(Clone)]
struct Authority {
    write: bool,
    ddl: bool,
    tables: Vec<String>,
    /// When the step's time is up: the progress handler interrupts the
    /// statement then.
    deadline: std::time::Instant,
    /// The longest string or blob the statement may make.
    max_bytes: usize,
}

/// Why a step whose transaction SQLite ended can neither run SQL nor commit.
const LOST: &str = "SQLite rolled the step's transaction back after a failed statement; \
                    nothing of the step was kept, and it must run again";

/// How many SQLite VM steps run between two looks at the deadline.
const PROGRESS_EVERY: std::ffi::c_int = 1_000;

/// The progress handler: interrupts a guest statement (SQLITE_INTERRUPT)
/// once its step's deadline has passed.
unsafe extern "C" fn progress(data: *mut std::ffi::c_void) -> std::ffi::c_int {
    let active = authorities();
    match active.get(&(data as usize)) {
        Some(authority) if std::time::Instant::now() >= authority.deadline => 1,
        _ => 0,
    }
}

/// The authorizer callback: allows reading and (with `write`) changing rows
/// of the application's tables in `main`, and calling functions; denies
/// everything else (engine tables, other databases, PRAGMA, ATTACH,
/// transaction control, DDL).
unsafe extern "C" fn authorize(
    data: *mut std::ffi::c_void,
    action: std::ffi::c_int,
    table: *const std::ffi::c_char,
    column: *const std::ffi::c_char,
    database: *const std::ffi::c_char,
    _trigger: *const std::ffi::c_char,
) -> std::ffi::c_int {
    use libsqlite3_sys::{
        SQLITE_ALTER_TABLE, SQLITE_CREATE_INDEX, SQLITE_CREATE_TABLE, SQLITE_CREATE_VIEW,
        SQLITE_DELETE, SQLITE_DENY, SQLITE_DROP_TABLE, SQLITE_DROP_VIEW, SQLITE_FUNCTION,
        SQLITE_INSERT, SQLITE_OK, SQLITE_READ, SQLITE_RECURSIVE, SQLITE_SELECT, SQLITE_UPDATE,
    };
    let text = |p: *const std::ffi::c_char| -> Option<String> {
        // SAFETY: SQLite passes NUL-terminated strings or NULL, valid for the call.
        (!p.is_null()).then(|| {
            unsafe { std::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .to_lowercase()
        })
    };
    let active = authorities();
    // None: the step's statement is over; this is the engine's own.
    let Some(authority) = active.get(&(data as usize)) else {
        return SQLITE_OK;
    };
    let application = |name: &str| {
        !crate::sql::ENGINE_TABLES.contains(&name)
            && !name.starts_with("sqlite_")
            && (authority.tables.is_empty() || authority.tables.iter().any(|t| t == name))
    };
    let allowed = match action {
        SQLITE_SELECT | SQLITE_FUNCTION | SQLITE_RECURSIVE => true,
        SQLITE_READ | SQLITE_INSERT | SQLITE_UPDATE | SQLITE_DELETE => {
            let name = text(table).unwrap_or_default();
            let in_main = text(database).is_none_or(|d| d == "main");
            let writes = action != SQLITE_READ;
            // DDL updates the schema table itself; SQLite asks about that too.
            let schema_table = matches!(name.as_str(), "sqlite_master" | "sqlite_schema");
            in_main
                && (!writes || authority.write)
                && (application(&name) || (authority.ddl && schema_table))
        }
        // For these, the third argument names the table or view.
        SQLITE_CREATE_TABLE | SQLITE_DROP_TABLE | SQLITE_CREATE_VIEW | SQLITE_DROP_VIEW => {
            authority.ddl && application(&text(table).unwrap_or_default())
        }
        // For an index and for ALTER TABLE, the fourth argument names the table.
        SQLITE_CREATE_INDEX | SQLITE_ALTER_TABLE => {
            authority.ddl && application(&text(column).unwrap_or_default())
        }
        _ => false,
    };
    if allowed { SQLITE_OK } else { SQLITE_DENY }
}

/// Installs the authorizer and the progress handler on a writer
/// connection, once, when it opens. Both look up the authority in force on
/// the connection (in AUTHORITIES, by its handle's address) and allow
/// everything while there is none: the engine's own statements. Installing
/// them once matters: setting an authorizer makes SQLite recompile every
/// statement the connection has cached, the engine's commit among them.
async fn install_guest_callbacks(conn: &mut Conn) -> std::result::Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is this connection's open handle, locked for the call;
    // the callbacks' data is an integer key, never dereferenced.
    unsafe {
        libsqlite3_sys::sqlite3_set_authorizer(db, Some(authorize), db as *mut std::ffi::c_void);
        libsqlite3_sys::sqlite3_progress_handler(
            db,
            PROGRESS_EVERY,
            Some(progress),
            db as *mut std::ffi::c_void,
        );
    }
    Ok(())
}

impl StepTx {
    /// Runs one guest statement with `authority` in force on the connection
    /// (see [`install_guest_callbacks`]), in one visit to it: the handle is
    /// locked from the driver's thread, the authority and the length limit
    /// set, the statement run on the handle itself (`sqlite_handle`), and
    /// both ended again before the lock is given back, whatever happened,
    /// so the engine's own statements in the transaction are not limited by
    /// them. Nothing here awaits between the two, so no cut-off can leave
    /// them in force.
    async fn guarded(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        authority: &Authority,
        rows: Option<usize>,
    ) -> Result<Ran> {
        if self.lost {
            return Err(Error::GuestSql(LOST.into()));
        }
        let mut handle = self.tx.lock_handle().await?;
        let db = handle.as_raw_handle().as_ptr();
        // No string or blob the statement makes may be longer than what is
        // left of the step's memory budget: SQLite refuses it (TOOBIG)
        // instead of building it in the host's memory.
        let most = i32::try_from(authority.max_bytes.max(1 << 10)).unwrap_or(i32::MAX);
        let in_force = InForce::set(db, authority, most);
        // SAFETY: `db` is this connection's open handle, locked from the
        // driver's thread for as long as `handle` lives.
        let result = off_the_runtime(|| unsafe { sqlite_handle::run(db, sql, params, rows) });
        drop(in_force);
        // SAFETY: as above. `sqlite3_get_autocommit` only reads the handle's
        // state; `sqlite3_exec` runs a constant statement on it.
        if result.is_err() && unsafe { libsqlite3_sys::sqlite3_get_autocommit(db) } != 0 {
            // SQLite rolled the step's transaction back itself. Open an empty
            // one in its place, so the driver's own rollback (it still counts
            // one transaction) finds it and leaves the connection clean for
            // the pool.
            self.lost = true;
            // SAFETY: as above.
            unsafe {
                libsqlite3_sys::sqlite3_exec(
                    db,
                    c"BEGIN".as_ptr(),
                    None,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                );
            }
        }
        drop(handle);
        result
    }

    /// Runs a checked guest statement that changes rows; returns how many.
    pub async fn execute(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        grant: &SqlGrant,
        limits: &GuestLimits,
    ) -> Result<u64> {
        let authority = Authority::of(grant, limits);
        Ok(self.guarded(sql, params, &authority, None).await?.changed)
    }

    /// Runs a checked guest query; values come back as SQLite stored them.
    /// Rows are read one at a time and counted, so a query cannot make the
    /// host hold more than `limits.max_bytes` for it.
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        grant: &SqlGrant,
        limits: &GuestLimits,
    ) -> Result<SqlRows> {
        let authority = Authority::of(grant, limits);
        let ran = self
            .guarded(sql, params, &authority, Some(limits.max_bytes))
            .await?;
        Ok(ran.rows)
    }

    /// Commits the step on this transaction (fenced on its lease), or rolls
    /// everything back, the guest's SQL included, if the fence fails.
    pub async fn commit(self, c: &StepCommit) -> Result<CommitOutcome> {
        if self.lost {
            self.tx.rollback().await?;
            return Err(Error::GuestSql(LOST.into()));
        }
        end_step_tx(self.tx, c).await
    }

    /// Rolls back everything the step did.
    pub async fn rollback(self) -> Result<()> {
        Ok(self.tx.rollback().await?)
    }
}

/// The authority in force on each connection (by its handle's address)
/// while a guest statement runs on it.
static AUTHORITIES: std::sync::Mutex<std::collections::BTreeMap<usize, Authority>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn authorities() -> std::sync::MutexGuard<'static, std::collections::BTreeMap<usize, Authority>> {
    AUTHORITIES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `f`, which may hold the thread until a step's deadline, without
/// holding up the runtime's other tasks: on a multi-threaded runtime the
/// thread's other work moves to another thread meanwhile.
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// A guest statement's authority and length limit, in force on a locked
/// connection until dropped (however the statement ended, a panic included).
struct InForce {
    db: *mut libsqlite3_sys::sqlite3,
    /// The connection's own length limit, put back on drop.
    length: std::ffi::c_int,
}

impl InForce {
    fn set(
        db: *mut libsqlite3_sys::sqlite3,
        authority: &Authority,
        most: std::ffi::c_int,
    ) -> InForce {
        authorities().insert(db as usize, authority.clone());
        // SAFETY: the caller holds `db` locked, open, for as long as this lives.
        let length =
            unsafe { libsqlite3_sys::sqlite3_limit(db, libsqlite3_sys::SQLITE_LIMIT_LENGTH, most) };
        InForce { db, length }
    }
}

impl Drop for InForce {
    fn drop(&mut self) {
        authorities().remove(&(self.db as usize));
        // SAFETY: as in `set`.
        unsafe {
            libsqlite3_sys::sqlite3_limit(
                self.db,
                libsqlite3_sys::SQLITE_LIMIT_LENGTH,
                self.length,
            );
        }
    }
}

impl Authority {
    fn of(grant: &SqlGrant, limits: &GuestLimits) -> Authority {
        Authority {
            write: grant.mode == crate::sql::SqlMode::ReadWrite,
            ddl: grant.ddl && grant.mode == crate::sql::SqlMode::ReadWrite,
            tables: grant.tables.iter().map(|t| t.to_lowercase()).collect(),
            deadline: limits.deadline,
            max_bytes: limits.max_bytes,
        }
    }
}

use super::sqlite_handle::{self, Ran};
use super::{GuestLimits, SqlRows, SqlValue};
use crate::sql::SqlGrant;

/// How a step's commit writes its timeline entry with the fenced update
/// (`shared/commit.rs`): a second statement in the same round trip, which
/// inserts only if the update changed the run.
macro_rules! step_commit_sql {
    ($update:expr) => {
        concat!(
            $update,
            "; INSERT INTO step_events (run_id, step, attempt, outcome, error_kind, message, \
               started_at, finished_at, logs) \
             SELECT $11, $13, $15, $16, NULL, NULL, $17, $8, $18 WHERE changes() = 1"
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
mod synchronous_tests {
    use super::*;

    #[test]
    fn the_url_names_full_or_normal() {
        let (url, s) = synchronous_of("sqlite://a.db?synchronous=NORMAL").expect("normal");
        assert_eq!(
            (url.as_str(), s),
            ("sqlite://a.db", SqliteSynchronous::Normal)
        );
        let (url, s) = synchronous_of("sqlite://a.db?mode=rwc&synchronous=full").expect("full");
        assert_eq!(
            (url.as_str(), s),
            ("sqlite://a.db?mode=rwc", SqliteSynchronous::Full)
        );
        let (url, s) = synchronous_of("acidic.db").expect("a path");
        assert_eq!((url.as_str(), s), ("acidic.db", SqliteSynchronous::Full));
        let err = synchronous_of("sqlite://a.db?synchronous=off")
            .expect_err("off")
            .to_string();
        assert!(err.contains("synchronous=off is not allowed"), "{err}");
    }
}

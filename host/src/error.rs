//! The library's one error type: each variant says what the caller can do about it.

use std::path::PathBuf;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the host library can fail with.
///
/// A step that fails is not an `Error`: it is recorded on the run and reported
/// in a [`crate::RunReport`]. These are the failures of the host's own work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A manifest is malformed; the error names the file, line and field.
    #[error(transparent)]
    Manifest(#[from] ManifestError),

    /// A component file is missing, unreadable, or does not implement `acidic:step`.
    #[error("component {path}: {message}")]
    Component {
        /// The component file (or its digest, when it came from the database).
        path: String,
        /// What is wrong with it.
        message: String,
    },

    /// No workflow of that name has been registered.
    #[error("workflow `{0}` is not registered; run `acidic register <manifest.toml>` first")]
    UnknownWorkflow(String),

    /// A workflow version that was never registered (or was pruned).
    #[error("workflow `{name}` has no version {version} (its versions: {known})")]
    NoSuchVersion {
        /// The workflow.
        name: String,
        /// The version asked for.
        version: u32,
        /// The versions it has.
        known: String,
    },

    /// No run with this key.
    #[error("no run has the key `{0}`")]
    RunNotFound(String),

    /// The key names runs of several workflows; the caller must say which.
    #[error("the key `{key}` belongs to runs of several workflows ({workflows}); name one")]
    AmbiguousKey {
        /// The key.
        key: String,
        /// The workflows it is used in, comma-separated.
        workflows: String,
    },

    /// The key was used before with other args. Nothing was run.
    #[error(
        "the key `{key}` of workflow `{workflow}` was used with other args; nothing was run \
         (use a new key, or the original args)"
    )]
    ArgsMismatch {
        /// The workflow.
        workflow: String,
        /// The key.
        key: String,
    },

    /// Another worker holds the run's lease. Try again after it expires.
    #[error("run `{key}` is locked by {locked_by} for {remaining_ms} ms more; try again later")]
    Locked {
        /// The key.
        key: String,
        /// The lease owner.
        locked_by: String,
        /// How long the lease still runs.
        remaining_ms: i64,
    },

    /// A retry on the latest version of a workflow that lacks the step the
    /// run stands at.
    #[error(
        "run `{key}` stands at step `{step}`, which version {version} of `{workflow}` does not have: \
         it cannot move to that version (retry it without upgrading, or register a version with the step)"
    )]
    UpgradeWithoutStep {
        /// The run's key.
        key: String,
        /// Its workflow.
        workflow: String,
        /// The latest version.
        version: u32,
        /// The step the run stands at.
        step: String,
    },
    /// The run is in a state that does not allow the operation.
    #[error("run `{key}` is {status}: {hint}")]
    InvalidState {
        /// The key.
        key: String,
        /// The run's status.
        status: String,
        /// What the caller can do.
        hint: &'static str,
    },

    /// This worker's lease was taken over while it ran a step: the step's
    /// effects were discarded and the new owner carries on.
    #[error("lost the lease on run `{0}` to another worker; its step was not committed")]
    LeaseLost(String),

    /// Args or a result are not valid JSON.
    #[error("invalid JSON {what}: {message}")]
    Json {
        /// What was being read.
        what: String,
        /// The parser's message.
        message: String,
    },

    /// An idempotency key that is empty, longer than 255 bytes, or holds
    /// control characters.
    #[error("invalid idempotency key `{0}`: a key is 1 to 255 bytes with no control characters")]
    InvalidKey(String),

    /// The database refused or failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),

    /// The database kept aborting the transaction because of concurrent
    /// ones (serialization failures, deadlocks) after bounded retries.
    /// Nothing was written; trying again later is safe.
    #[error("database conflict persisted after {tries} tries, nothing was written: {message}")]
    Conflict {
        /// How many times the transaction was tried.
        tries: u32,
        /// The database's last word.
        message: String,
    },

    /// A guest's SQL statement could not be run as given (parameters that do
    /// not fit, a column type that cannot cross to the guest).
    #[error("{0}")]
    GuestSql(String),

    /// SQLite refused or failed a guest's statement (run on the connection's
    /// handle itself): its extended result code and message.
    #[error("{message}")]
    GuestSqlite {
        /// SQLite's extended result code.
        code: i32,
        /// SQLite's message.
        message: String,
    },

    /// A guest's SQL statement was cut off at the step's deadline.
    #[error("the SQL statement was cut off at the step's deadline")]
    GuestSqlDeadline,

    /// A guest's query returned more than the step's memory budget holds.
    #[error("the query's rows are over the step's memory budget ({budget} bytes left)")]
    GuestRowsOverBudget {
        /// Bytes the step had left.
        budget: usize,
    },

    /// The database could not be reached or opened.
    #[error("cannot open the database {target}: {message}")]
    Connect {
        /// Where (a file path, or `host:port/database`; never a password).
        target: String,
        /// Why, in the database's or the system's words.
        message: String,
    },

    /// A command that only inspects or changes existing runs found no database.
    #[error(
        "no database at {0}: acidic creates it on `register`, `run`, `enqueue`, `worker` or `serve` \
         (is --database-url / DATABASE_URL right?)"
    )]
    NoDatabase(String),

    /// The database URL is not one this host understands.
    #[error(
        "unsupported database URL `{0}` (use a file path, sqlite://path or postgres://user@host/db[?schema=NAME])"
    )]
    DatabaseUrl(String),

    /// A database URL this host understands, with a parameter it refuses.
    #[error("database URL `{url}`: {problem}")]
    DatabaseUrlParameter {
        /// The URL, its password replaced by `***`.
        url: String,
        /// What is wrong with it.
        problem: String,
    },

    /// A migration this database applied earlier has other SQL in this
    /// binary: the schema may not be what the binary expects.
    #[error(
        "migration {version} ({name}) was changed after this database applied it; \
         restore its original text and put the change in a new migration"
    )]
    MigrationChanged {
        /// Its number.
        version: i64,
        /// Its name.
        name: &'static str,
    },

    /// A schema migration failed.
    #[error("migration {version} ({name}): {source}")]
    Migration {
        /// The migration's number.
        version: i64,
        /// The migration's name.
        name: &'static str,
        /// What the database said.
        source: sqlx::Error,
    },

    /// The compiled-component cache could not be read or written.
    #[error("component cache {path}: {source}")]
    Cache {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The WebAssembly engine could not be set up.
    #[error("wasm engine: {0}")]
    Engine(String),

    /// `acidic serve` cannot start as configured (its address, its tokens).
    #[error("serve: {0}")]
    Serve(String),

    /// Stored data is not what this host wrote; it needs a person to look at it.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

/// A manifest error, located at a file, line and field.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{}: {field}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ManifestError {
    /// The manifest file.
    pub path: PathBuf,
    /// The 1-based line of the offending field, when known.
    pub line: Option<usize>,
    /// The field (`step[2].component`, `defaults.timeout`, ...).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

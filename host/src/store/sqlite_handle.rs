//! A guest statement run on a SQLite connection's handle itself, while the
//! step's transaction holds it locked from the driver's thread: prepared (so
//! the authorizer judges it), bound, and stepped to its end, in one visit to
//! the connection. Through the driver the same statement took three visits
//! (the authority set, the statement, the authority ended), each a hand-off
//! to the driver's thread and back.
//!
//! It runs on the calling thread, which it holds until the statement ends;
//! a statement ends by the step's deadline at the latest (the progress
//! handler interrupts it then).

use std::ffi::{CStr, c_char, c_int};

use libsqlite3_sys as ffi;

use super::{SqlRows, SqlValue};
use crate::error::{Error, Result};

/// What a guest statement gave back.
pub(super) struct Ran {
    /// Rows it changed (SQLite's count, for an INSERT, UPDATE or DELETE).
    pub changed: u64,
    /// The rows it returned, when they were asked for (else they are read
    /// and dropped).
    pub rows: SqlRows,
}

/// A prepared statement, finalized when dropped.
struct Prepared(*mut ffi::sqlite3_stmt);

impl Drop for Prepared {
    fn drop(&mut self) {
        // SAFETY: a statement `prepare` made and nothing else finalizes.
        unsafe { ffi::sqlite3_finalize(self.0) };
    }
}

/// The connection's last error, as the guest sees a database's error.
///
/// # Safety
/// `db` must be an open handle the caller holds.
unsafe fn last_error(db: *mut ffi::sqlite3) -> Error {
    // SAFETY: per the function's contract; SQLite's message is a
    // NUL-terminated string valid until the next call on the handle.
    let (code, message) = unsafe {
        let code = ffi::sqlite3_extended_errcode(db);
        let message = CStr::from_ptr(ffi::sqlite3_errmsg(db))
            .to_string_lossy()
            .into_owned();
        (code, message)
    };
    Error::GuestSqlite { code, message }
}

/// Runs `sql` with `params` on `db`. With `rows`, it is a query whose rows
/// may hold at most that many bytes in the host; else its changes are counted.
///
/// # Safety
/// `db` must be an open handle that nothing else uses during the call (the
/// caller holds it locked from the driver's thread).
pub(super) unsafe fn run(
    db: *mut ffi::sqlite3,
    sql: &str,
    params: &[SqlValue],
    rows: Option<usize>,
) -> Result<Ran> {
    let started = std::time::Instant::now();
    // SAFETY: per the function's contract.
    let ran = unsafe { run_statement(db, sql, params, rows) };
    // Logged as the driver logs the statements it runs (and counted by the bench).
    tracing::debug!(
        target: crate::bench::statements::GUEST_TARGET,
        statement = sql,
        ok = ran.is_ok(),
        elapsed = ?started.elapsed(),
        "guest statement"
    );
    ran
}

/// [`run`], unlogged.
///
/// # Safety
/// As [`run`].
unsafe fn run_statement(
    db: *mut ffi::sqlite3,
    sql: &str,
    params: &[SqlValue],
    rows: Option<usize>,
) -> Result<Ran> {
    let length = c_int::try_from(sql.len())
        .map_err(|_| Error::GuestSql("the statement is too long".into()))?;
    let mut stmt = std::ptr::null_mut();
    let mut tail: *const c_char = std::ptr::null();
    // SAFETY: `sql` is valid for `length` bytes; SQLite writes the statement
    // and the tail's position, inside `sql`.
    let rc =
        unsafe { ffi::sqlite3_prepare_v2(db, sql.as_ptr().cast(), length, &mut stmt, &mut tail) };
    if rc != ffi::SQLITE_OK {
        // SAFETY: as the function's contract.
        return Err(unsafe { last_error(db) });
    }
    // Text that is only a comment or whitespace prepares no statement.
    if stmt.is_null() {
        return Ok(Ran {
            changed: 0,
            rows: SqlRows {
                columns: Vec::new(),
                rows: Vec::new(),
            },
        });
    }
    let stmt = Prepared(stmt);
    // The checker lets one statement through; the rest of the text may hold
    // only what prepares to nothing (a semicolon, a comment).
    let used = (tail as usize).saturating_sub(sql.as_ptr() as usize);
    let rest = sql.get(used..).unwrap_or_default();
    if rest.chars().any(|c| !c.is_whitespace() && c != ';') {
        let mut more = std::ptr::null_mut();
        let rest_length = c_int::try_from(rest.len()).unwrap_or(c_int::MAX);
        // SAFETY: as above, for the rest of the text.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(
                db,
                rest.as_ptr().cast(),
                rest_length,
                &mut more,
                std::ptr::null_mut(),
            )
        };
        let another = !more.is_null();
        // SAFETY: finalizing what was just prepared (a NULL is a no-op).
        unsafe { ffi::sqlite3_finalize(more) };
        if rc != ffi::SQLITE_OK || another {
            return Err(Error::GuestSql(
                "one statement at a time: the text holds more than one".into(),
            ));
        }
    }
    // SAFETY: `stmt` is a live statement of `db`.
    unsafe { bind(db, &stmt, params)? };
    // SAFETY: as above.
    let columns = unsafe { column_names(&stmt) };
    let mut out = Vec::new();
    let mut held = columns.iter().map(|c| c.len() + 24).sum::<usize>();
    loop {
        // SAFETY: as above.
        match unsafe { ffi::sqlite3_step(stmt.0) } {
            ffi::SQLITE_ROW => {
                let Some(max_bytes) = rows else { continue };
                // SAFETY: the statement stands on a row.
                let values = unsafe { row(&stmt, columns.len()) };
                held += 24 + values.iter().map(SqlValue::size).sum::<usize>();
                if held > max_bytes {
                    return Err(Error::GuestRowsOverBudget { budget: max_bytes });
                }
                out.push(values);
            }
            ffi::SQLITE_DONE => break,
            // SAFETY: as the function's contract.
            _ => return Err(unsafe { last_error(db) }),
        }
    }
    Ok(Ran {
        // SAFETY: as the function's contract.
        changed: u64::try_from(unsafe { ffi::sqlite3_changes64(db) }).unwrap_or(0),
        rows: SqlRows { columns, rows: out },
    })
}

/// Binds the guest's values as SQLite stores them (JSON as text), the way
/// the driver does: `?NNN` and `$NNN` by their number, plain `?` in order,
/// and a parameter past the values left NULL.
///
/// # Safety
/// `stmt` must be a live statement of `db`, which the caller holds.
unsafe fn bind(db: *mut ffi::sqlite3, stmt: &Prepared, params: &[SqlValue]) -> Result<()> {
    // SAFETY: per the function's contract.
    let count = unsafe { ffi::sqlite3_bind_parameter_count(stmt.0) };
    let mut next = 0usize;
    for i in 1..=count {
        // SAFETY: as above; the name is NUL-terminated, or NULL for a plain `?`.
        let name = unsafe { ffi::sqlite3_bind_parameter_name(stmt.0, i) };
        let n = if name.is_null() {
            next += 1;
            next
        } else {
            // SAFETY: a NUL-terminated name SQLite keeps with the statement.
            let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
            let number = name
                .strip_prefix('?')
                .or_else(|| name.strip_prefix('$'))
                .and_then(|digits| digits.parse::<usize>().ok())
                .filter(|n| *n > 0);
            match number {
                Some(n) => n,
                None => {
                    return Err(Error::GuestSql(format!(
                        "parameter {name}: use ?, ?N or $N"
                    )));
                }
            }
        };
        let Some(value) = params.get(n - 1) else {
            // SQLite leaves an unbound parameter NULL, as the driver did.
            continue;
        };
        // SAFETY: as above; SQLITE_TRANSIENT makes SQLite copy text and blobs.
        let rc = unsafe {
            match value {
                SqlValue::Null => ffi::sqlite3_bind_null(stmt.0, i),
                SqlValue::Integer(v) => ffi::sqlite3_bind_int64(stmt.0, i, *v),
                SqlValue::Real(v) => ffi::sqlite3_bind_double(stmt.0, i, *v),
                SqlValue::Text(t) | SqlValue::Json(t) => ffi::sqlite3_bind_text64(
                    stmt.0,
                    i,
                    t.as_ptr().cast(),
                    t.len() as u64,
                    ffi::SQLITE_TRANSIENT(),
                    ffi::SQLITE_UTF8 as u8,
                ),
                SqlValue::Blob(b) => ffi::sqlite3_bind_blob64(
                    stmt.0,
                    i,
                    b.as_ptr().cast(),
                    b.len() as u64,
                    ffi::SQLITE_TRANSIENT(),
                ),
            }
        };
        if rc != ffi::SQLITE_OK {
            // SAFETY: per the function's contract.
            return Err(unsafe { last_error(db) });
        }
    }
    Ok(())
}

/// The statement's column names.
///
/// # Safety
/// `stmt` must be a live statement.
unsafe fn column_names(stmt: &Prepared) -> Vec<String> {
    // SAFETY: per the function's contract; names are NUL-terminated or NULL.
    unsafe {
        (0..ffi::sqlite3_column_count(stmt.0))
            .map(|i| {
                let name = ffi::sqlite3_column_name(stmt.0, i);
                if name.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(name).to_string_lossy().into_owned()
                }
            })
            .collect()
    }
}

/// The row the statement stands on, each value as SQLite stored it.
///
/// # Safety
/// `stmt` must be a live statement that has just returned SQLITE_ROW.
unsafe fn row(stmt: &Prepared, columns: usize) -> Vec<SqlValue> {
    let bytes = |i: c_int, data: *const u8| -> &[u8] {
        // SAFETY: SQLite's value of column `i` is `column_bytes` long, valid
        // until the statement moves on; NULL for an empty one.
        unsafe {
            let n = usize::try_from(ffi::sqlite3_column_bytes(stmt.0, i)).unwrap_or(0);
            if data.is_null() || n == 0 {
                &[]
            } else {
                std::slice::from_raw_parts(data, n)
            }
        }
    };
    (0..columns)
        .map(|i| {
            let i = c_int::try_from(i).unwrap_or(c_int::MAX);
            // SAFETY: per the function's contract.
            unsafe {
                match ffi::sqlite3_column_type(stmt.0, i) {
                    ffi::SQLITE_INTEGER => SqlValue::Integer(ffi::sqlite3_column_int64(stmt.0, i)),
                    ffi::SQLITE_FLOAT => SqlValue::Real(ffi::sqlite3_column_double(stmt.0, i)),
                    ffi::SQLITE_BLOB => {
                        let data = ffi::sqlite3_column_blob(stmt.0, i).cast::<u8>();
                        SqlValue::Blob(bytes(i, data).to_vec())
                    }
                    ffi::SQLITE_NULL => SqlValue::Null,
                    _ => {
                        let data = ffi::sqlite3_column_text(stmt.0, i);
                        SqlValue::Text(String::from_utf8_lossy(bytes(i, data)).into_owned())
                    }
                }
            }
        })
        .collect()
}

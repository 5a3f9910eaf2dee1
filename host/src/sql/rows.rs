//! A bound on each row a Postgres guest statement returns, held by the
//! server.
//!
//! The client library reads a row whole before the host sees it, so one
//! huge value (`SELECT repeat('x', 500000000)`) would be held in full before
//! the step's memory budget could count it. A statement that returns rows
//! is therefore sent wrapped: the server measures each row as text and
//! raises an error instead of sending one longer than what is left of the
//! budget, which the step transaction sets in [`BUDGET_SETTING`] before
//! each guest statement. The check refuses writes inside WITH, so a
//! checked query nests in a CTE as it is, and an INSERT, UPDATE or DELETE
//! with RETURNING nests as a data-modifying CTE at the top level.

use sqlparser::ast::Statement;

/// The transaction-local setting holding the bytes a row may take.
pub const BUDGET_SETTING: &str = "acidic.row_budget";

/// What the server's error says when a row is over the budget.
/// (No quote in it: it is spliced into a string literal.)
pub const OVER_BUDGET: &str = "acidic: a row over the memory budget of the step";

/// The CTE the guest's statement is wrapped in.
const ROWS: &str = "acidic_guarded";

/// Whether a checked statement returns rows.
pub fn returned(statement: &Statement) -> bool {
    match statement {
        Statement::Query(_) => true,
        Statement::Insert(i) => i.returning.is_some(),
        Statement::Update(u) => u.returning.is_some(),
        Statement::Delete(d) => d.returning.is_some(),
        _ => false,
    }
}

/// `text`, a checked statement that returns rows, wrapped so that no row
/// longer than [`BUDGET_SETTING`] bytes leaves the server. Its rows, their
/// order and its parameters are the statement's own. `(rows.*)::text` is
/// the whole row even when a column has the CTE's name; the error's text
/// depends on the row, so the planner cannot raise it early.
pub fn guarded(text: &str) -> String {
    let inner = text.trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    format!(
        "WITH {ROWS} AS ({inner}) SELECT * FROM {ROWS} WHERE CASE \
         WHEN octet_length(({ROWS}.*)::text) > current_setting('{BUDGET_SETTING}')::int8 \
         THEN ('{OVER_BUDGET}: ' || octet_length(({ROWS}.*)::text))::int IS NULL \
         ELSE true END"
    )
}

//! What SQL a step may run: its manifest grant, and the check every guest
//! statement passes before it reaches the database.
//!
//! The check parses the statement with a real SQL parser and allows exactly
//! one SELECT (and, with a read-write grant, one INSERT, UPDATE or DELETE)
//! that names no engine table, no table outside the grant's `tables`, no
//! schema but the application's, and no function that reaches outside the
//! statement (session settings, files, other databases). Everything else
//! (transaction control, SET, PRAGMA, ATTACH, DDL, several statements) is
//! refused. The step's transaction is the host's: a guest can neither end
//! nor nest it.

use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};
use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, BinaryOperator, DataType, Expr, Ident, ObjectName,
    ObjectType, Query, Select, SetExpr, Statement, TableFactor, Visit, Visitor, visit_relations,
};
use sqlparser::dialect::{Dialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

mod checker;
mod functions;
pub mod rows;

pub use checker::check_off_stack;
use functions::{FUNCTIONS, TABLE_FUNCTIONS, function_refused};

/// The engine's tables: never readable or writable by a guest.
pub const ENGINE_TABLES: &[&str] = &[
    "runs",
    "workflows",
    "components",
    "step_events",
    "_acidic_migrations",
];

/// How much SQL a step may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SqlMode {
    /// SELECT only.
    ReadOnly,
    /// SELECT, INSERT, UPDATE and DELETE.
    ReadWrite,
}

/// A step's SQL grant, from its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SqlGrant {
    /// Read-only or read-write.
    pub mode: SqlMode,
    /// The only tables it may name; empty means any application table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// Whether it may also create, alter and drop tables, indexes and views
    /// (with `read-write` only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ddl: bool,
}

/// The database a statement is checked for (dialects differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialects {
    /// SQLite.
    Sqlite,
    /// Postgres.
    Postgres,
}

/// Whether a checked statement reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A SELECT.
    Read,
    /// An INSERT, UPDATE or DELETE.
    Write,
    /// CREATE or ALTER of a table, index or view, or DROP of a table or view.
    Ddl,
}

/// A statement the check accepted, and how it is sent to the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Whether it reads, writes or changes the schema.
    pub access: Access,
    /// On Postgres, for a statement that returns rows: the text sent in its
    /// place, which has the server refuse a row over the step's budget (see
    /// [`rows::guarded`]).
    pub guarded: Option<std::sync::Arc<str>>,
}

/// Checks one guest statement against `grant`; `app_schema` is the only
/// schema it may name (`main` on SQLite). The error says why it is refused.
pub fn check(
    statement: &str,
    grant: &SqlGrant,
    dialect: Dialects,
    app_schema: &str,
) -> Result<Access, String> {
    checked(statement, grant, dialect, app_schema).map(|c| c.access)
}

/// [`check`], with the text to send for the statement.
pub fn checked(
    text: &str,
    grant: &SqlGrant,
    dialect: Dialects,
    app_schema: &str,
) -> Result<Checked, String> {
    // Where the parser and the database might cut a statement differently,
    // what is checked would not be what runs: Postgres ends an operator
    // where `--` or `/*` begins, sqlparser does not. Comments are not needed
    // in a step's SQL; data holding these characters goes in parameters.
    if text.contains("--") || text.contains("/*") {
        return Err(
            "comments (-- or /*) are not allowed in a step's SQL; pass such text as a parameter"
                .into(),
        );
    }
    let parsed = match dialect {
        Dialects::Sqlite => parse(&SQLiteDialect {}, text),
        Dialects::Postgres => parse(&PostgreSqlDialect {}, text),
    }?;
    let [statement] = parsed.as_slice() else {
        return Err(format!("one statement per call, this is {}", parsed.len()));
    };
    let access = match statement {
        Statement::Query(_) => Access::Read,
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => Access::Write,
        Statement::CreateTable(t) if grant.ddl => {
            if t.temporary || t.like.is_some() || t.clone.is_some() || t.inherits.is_some() {
                return Err(
                    "CREATE TABLE with TEMPORARY, LIKE, CLONE or INHERITS is not allowed".into(),
                );
            }
            if let Some(why) = t.columns.iter().find_map(|c| type_refused(&c.data_type)) {
                return Err(why);
            }
            Access::Ddl
        }
        Statement::CreateView(v) if grant.ddl => {
            if v.temporary {
                return Err("temporary views are not allowed".into());
            }
            Access::Ddl
        }
        Statement::CreateIndex(i) if grant.ddl => {
            // Operator classes and collations are objects of some schema too.
            if i.columns.iter().any(|c| c.to_string().contains('.')) {
                return Err(
                    "CREATE INDEX may not name another schema's operator classes or collations"
                        .into(),
                );
            }
            Access::Ddl
        }
        Statement::AlterTable(t) if grant.ddl => {
            let plain = t.operations.iter().all(|op| {
                matches!(
                    op,
                    AlterTableOperation::AddColumn { .. }
                        | AlterTableOperation::DropColumn { .. }
                        | AlterTableOperation::AlterColumn { .. }
                        | AlterTableOperation::RenameColumn { .. }
                )
            });
            if !plain {
                return Err("ALTER TABLE may only add, drop, alter or rename columns".into());
            }
            // A column type from another schema would tie the table to it.
            if t.operations.iter().any(|op| op.to_string().contains('.')) {
                return Err("ALTER TABLE may not name another schema's types".into());
            }
            let types = t.operations.iter().filter_map(|op| match op {
                AlterTableOperation::AddColumn { column_def, .. } => Some(&column_def.data_type),
                AlterTableOperation::AlterColumn {
                    op: AlterColumnOperation::SetDataType { data_type, .. },
                    ..
                } => Some(data_type),
                _ => None,
            });
            if let Some(why) = types.into_iter().find_map(type_refused) {
                return Err(why);
            }
            Access::Ddl
        }
        Statement::Drop {
            object_type: ObjectType::Table | ObjectType::View,
            ..
        } if grant.ddl => Access::Ddl,
        other => {
            let what = other.to_string();
            let word = what
                .split_whitespace()
                .next()
                .unwrap_or("this")
                .to_uppercase();
            let ddl = if grant.ddl {
                " and, with ddl, CREATE/ALTER of tables, indexes and views and DROP of tables and views"
            } else {
                " (DDL needs ddl = true in the step's manifest)"
            };
            return Err(format!(
                "{word} statements are not allowed: only SELECT, INSERT, UPDATE and DELETE{ddl}; \
                 the host owns the transaction and the session"
            ));
        }
    };
    if access != Access::Read && grant.mode == SqlMode::ReadOnly {
        return Err("this step's sql grant is read-only".into());
    }
    // Foreign keys would tie application tables to others (and let a guest
    // probe or block them): applications declare them in their own migrations.
    if access == Access::Ddl
        && statement
            .to_string()
            .to_uppercase()
            .contains(" REFERENCES ")
    {
        return Err("foreign keys (REFERENCES) are not allowed in a step's DDL".into());
    }
    let fold = dialect == Dialects::Sqlite;
    if let Statement::Drop { names, .. } = statement {
        for name in names {
            if let Some(why) = table_refused(name, grant, &[], app_schema, fold) {
                return Err(why);
            }
        }
    }
    let mut guard = Guard {
        grant,
        app_schema,
        fold,
        ctes: Vec::new(),
        scopes: Vec::new(),
    };
    if let ControlFlow::Break(why) = statement.visit(&mut guard) {
        return Err(why);
    }
    let guarded = match dialect {
        Dialects::Postgres if rows::returned(statement) => Some(rows::guarded(text).into()),
        _ => None,
    };
    Ok(Checked { access, guarded })
}

/// How deeply the parser may nest (sqlparser's own default is 50).
const PARSER_DEPTH: usize = 48;

fn parse(dialect: &dyn Dialect, statement: &str) -> Result<Vec<Statement>, String> {
    Parser::new(dialect)
        .with_recursion_limit(PARSER_DEPTH)
        .try_with_sql(statement)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| format!("not valid SQL: {e}"))
}

/// Walks every query, select, table, function and expression of a statement.
struct Guard<'a> {
    grant: &'a SqlGrant,
    app_schema: &'a str,
    /// Whether names fold to lower case even when quoted (SQLite), or only
    /// when not quoted (Postgres).
    fold: bool,
    /// Names of the common table expressions in scope.
    ctes: Vec<String>,
    /// How many names each query being visited added to `ctes`.
    scopes: Vec<usize>,
}

impl Visitor for Guard<'_> {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        if !query.locks.is_empty() && self.grant.mode == SqlMode::ReadOnly {
            return ControlFlow::Break("FOR UPDATE or SHARE needs a read-write grant".into());
        }
        let mut added = 0;
        if let Some(with) = &query.with {
            let names: Vec<String> = with
                .cte_tables
                .iter()
                .map(|c| name_of(&c.alias.name, self.fold))
                .collect();
            for (i, cte) in with.cte_tables.iter().enumerate() {
                // A non-recursive CTE sees only the CTEs before it: a name of
                // its own or a later one means a real table there.
                if !with.recursive {
                    let unseen = &names[i..];
                    let fold = self.fold;
                    let inner = visit_relations(&cte.query, |r| {
                        match parts(r, fold).last().filter(|n| unseen.contains(n)) {
                            Some(n) => ControlFlow::Break(n.clone()),
                            None => ControlFlow::Continue(()),
                        }
                    });
                    if let ControlFlow::Break(n) = inner {
                        return ControlFlow::Break(format!(
                            "the CTE `{}` reads `{n}` before that name is defined",
                            names[i]
                        ));
                    }
                }
            }
            added = names.len();
            self.ctes.extend(names);
        }
        self.scopes.push(added);
        match body_refused(&query.body) {
            Some(why) => ControlFlow::Break(why),
            None => ControlFlow::Continue(()),
        }
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<String> {
        let added = self.scopes.pop().unwrap_or(0);
        self.ctes.truncate(self.ctes.len().saturating_sub(added));
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<String> {
        if select.into.is_some() {
            return ControlFlow::Break("SELECT ... INTO creates a table: not allowed".into());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<String> {
        match table_refused(name, self.grant, &self.ctes, self.app_schema, self.fold) {
            Some(why) => ControlFlow::Break(why),
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<String> {
        let refused = match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => {
                function_refused(name, TABLE_FUNCTIONS, self.fold)
            }
            TableFactor::TableFunction { .. }
            | TableFactor::JsonTable { .. }
            | TableFactor::OpenJsonTable { .. } => {
                Some("this table function is not allowed".into())
            }
            _ => None,
        };
        match refused {
            Some(why) => ControlFlow::Break(why),
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
        let refused = match expr {
            Expr::Function(f) => function_refused(&f.name, FUNCTIONS, self.fold),
            Expr::BinaryOp {
                op: BinaryOperator::Custom(_) | BinaryOperator::PGCustomBinaryOperator(_),
                ..
            } => Some("custom operators are not allowed".into()),
            Expr::Cast { data_type, .. } => type_refused(data_type),
            Expr::TypedString(t) => type_refused(&t.data_type),
            Expr::Collate { collation, .. } if collation.0.len() > 1 => {
                Some(format!("collation `{collation}` names another schema"))
            }
            _ => None,
        };
        match refused {
            Some(why) => ControlFlow::Break(why),
            None => ControlFlow::Continue(()),
        }
    }
}

/// A query's body may select, list values or combine those; it may not hide
/// a write (`WITH x AS (...) DELETE ...`) or a bare `TABLE name`.
fn body_refused(body: &SetExpr) -> Option<String> {
    match body {
        SetExpr::Select(_) | SetExpr::Values(_) | SetExpr::Query(_) => None,
        SetExpr::SetOperation { left, right, .. } => {
            body_refused(left).or_else(|| body_refused(right))
        }
        _ => Some(
            "a query may only SELECT (a write inside WITH, or TABLE name, is not allowed)".into(),
        ),
    }
}

/// A name as the database resolves it: folded to lower case, except a
/// quoted name on Postgres, which keeps its case.
fn name_of(ident: &Ident, fold: bool) -> String {
    if fold || ident.quote_style.is_none() {
        ident.value.to_lowercase()
    } else {
        ident.value.clone()
    }
}

fn parts(name: &ObjectName, fold: bool) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p.as_ident() {
            Some(ident) => name_of(ident, fold),
            None => p.to_string().to_lowercase(),
        })
        .collect()
}

/// Type names that could reach outside the application's schema are
/// refused wherever they stand (an array's element, a range, a record): a
/// qualified name (another schema's type), a `reg*` type (which looks
/// objects up by name), or the name of an engine table (its row type).
/// Built-in types pass.
fn type_refused(data_type: &DataType) -> Option<String> {
    if matches!(data_type, DataType::Regclass) {
        return Some("reg* types are not allowed".into());
    }
    names_refused(&data_type.to_string())
        .map(|why| format!("type `{data_type}` is not allowed in a step's SQL: {why}"))
}

/// Why the words of a type (or an operator class, or a column definition)
/// could name something outside the application's schema, if they could.
fn names_refused(text: &str) -> Option<&'static str> {
    let text = text.to_lowercase();
    if text.contains('.') {
        return Some("it names another schema");
    }
    let words = text.split(|c: char| !(c.is_alphanumeric() || c == '_'));
    for word in words.filter(|w| !w.is_empty()) {
        if word.starts_with("reg") {
            return Some("reg* types look objects up by name");
        }
        if ENGINE_TABLES.contains(&word) {
            return Some("it names an engine table's row type");
        }
    }
    None
}

fn table_refused(
    name: &ObjectName,
    grant: &SqlGrant,
    ctes: &[String],
    app_schema: &str,
    fold: bool,
) -> Option<String> {
    let parts = parts(name, fold);
    let (schema, table) = match parts.as_slice() {
        [table] => (None, table.as_str()),
        [schema, table] => (Some(schema.as_str()), table.as_str()),
        _ => return Some(format!("`{name}`: name tables as table or schema.table")),
    };
    if let Some(schema) = schema
        && schema != app_schema.to_lowercase()
    {
        return Some(format!(
            "`{name}`: only the application's own tables (schema {app_schema})"
        ));
    }
    if ENGINE_TABLES.contains(&table)
        || ["sqlite_", "pragma_", "pg_"]
            .iter()
            .any(|p| table.starts_with(p))
        || matches!(table, "dbstat" | "information_schema")
    {
        return Some(format!(
            "`{name}` belongs to the engine or the database, not to steps"
        ));
    }
    if schema.is_none() && ctes.iter().any(|c| c == table) {
        return None;
    }
    // Grant entries name tables as written unquoted: lower case, except on
    // SQLite, where names are not case-sensitive anyway.
    let granted = |t: &String| {
        if fold {
            t.eq_ignore_ascii_case(table)
        } else {
            *t == table
        }
    };
    if !grant.tables.is_empty() && !grant.tables.iter().any(granted) {
        return Some(format!(
            "`{name}` is not in this step's sql tables ({})",
            grant.tables.join(", ")
        ));
    }
    None
}

#[cfg(test)]
mod tests;

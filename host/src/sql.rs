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
    Expr, ObjectName, ObjectType, SetExpr, Statement, visit_expressions, visit_relations,
};
use sqlparser::dialect::{Dialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

/// The engine's tables: never readable or writable by a guest.
pub const ENGINE_TABLES: &[&str] = &[
    "runs",
    "workflows",
    "components",
    "step_events",
    "_acidic_migrations",
];

/// How much SQL a step may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SqlMode {
    /// SELECT only.
    ReadOnly,
    /// SELECT, INSERT, UPDATE and DELETE.
    ReadWrite,
}

/// A step's SQL grant, from its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Checks one guest statement against `grant`. The error says why it is refused.
pub fn check(statement: &str, grant: &SqlGrant, dialect: Dialects) -> Result<Access, String> {
    let parsed = match dialect {
        Dialects::Sqlite => parse(&SQLiteDialect {}, statement),
        Dialects::Postgres => parse(&PostgreSqlDialect {}, statement),
    }?;
    let [statement] = parsed.as_slice() else {
        return Err(format!("one statement per call, this is {}", parsed.len()));
    };
    let mut ctes: Vec<String> = Vec::new();
    let access = match statement {
        Statement::Query(query) => {
            if let Some(with) = &query.with {
                ctes.extend(
                    with.cte_tables
                        .iter()
                        .map(|c| c.alias.name.value.to_lowercase()),
                );
            }
            if let SetExpr::Select(select) = query.body.as_ref()
                && select.into.is_some()
            {
                return Err("SELECT ... INTO creates a table: not allowed".into());
            }
            Access::Read
        }
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => Access::Write,
        Statement::CreateTable(_)
        | Statement::CreateIndex(_)
        | Statement::CreateView(_)
        | Statement::AlterTable(_)
            if grant.ddl =>
        {
            Access::Ddl
        }
        Statement::Drop {
            object_type: ObjectType::Table | ObjectType::View,
            names,
            ..
        } if grant.ddl => {
            if let Some(why) = names.iter().find_map(|n| table_refused(n, grant, &ctes)) {
                return Err(why);
            }
            Access::Ddl
        }
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
    let tables = visit_relations(statement, |name| match table_refused(name, grant, &ctes) {
        Some(why) => ControlFlow::Break(why),
        None => ControlFlow::Continue(()),
    });
    if let ControlFlow::Break(why) = tables {
        return Err(why);
    }
    let functions = visit_expressions(statement, |expr| match expr {
        Expr::Function(f) => match function_refused(&f.name) {
            Some(why) => ControlFlow::Break(why),
            None => ControlFlow::Continue(()),
        },
        _ => ControlFlow::Continue(()),
    });
    if let ControlFlow::Break(why) = functions {
        return Err(why);
    }
    Ok(access)
}

fn parse(dialect: &dyn Dialect, statement: &str) -> Result<Vec<Statement>, String> {
    Parser::parse_sql(dialect, statement).map_err(|e| format!("not valid SQL: {e}"))
}

fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p.as_ident() {
            Some(ident) => ident.value.to_lowercase(),
            None => p.to_string().to_lowercase(),
        })
        .collect()
}

fn table_refused(name: &ObjectName, grant: &SqlGrant, ctes: &[String]) -> Option<String> {
    let parts = parts(name);
    let (schema, table) = match parts.as_slice() {
        [table] => (None, table.as_str()),
        [schema, table] => (Some(schema.as_str()), table.as_str()),
        _ => return Some(format!("`{name}`: name tables as table or schema.table")),
    };
    if let Some(schema) = schema
        && !matches!(schema, "main" | "public")
    {
        return Some(format!(
            "`{name}`: only the application's own tables (schema main or public)"
        ));
    }
    if schema.is_none() && ctes.iter().any(|c| c == table) {
        return None;
    }
    if ENGINE_TABLES.contains(&table)
        || ["sqlite_", "pragma_", "pg_"]
            .iter()
            .any(|p| table.starts_with(p))
    {
        return Some(format!(
            "`{name}` belongs to the engine or the database, not to steps"
        ));
    }
    if !grant.tables.is_empty() && !grant.tables.iter().any(|t| t.eq_ignore_ascii_case(table)) {
        return Some(format!(
            "`{name}` is not in this step's sql tables ({})",
            grant.tables.join(", ")
        ));
    }
    None
}

/// Functions that act outside the statement: session state, files, other
/// databases, server administration.
fn function_refused(name: &ObjectName) -> Option<String> {
    let full = parts(name).join(".");
    let last = full.rsplit('.').next().unwrap_or_default();
    let refused = ["pg_", "lo_", "dblink"].iter().any(|p| last.starts_with(p))
        || matches!(
            last,
            "set_config" | "load_extension" | "readfile" | "writefile" | "edit" | "fts3_tokenizer"
        );
    refused.then(|| format!("function `{full}` is not allowed in a step"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw() -> SqlGrant {
        SqlGrant {
            mode: SqlMode::ReadWrite,
            tables: Vec::new(),
            ddl: false,
        }
    }

    fn refused(sql: &str, grant: &SqlGrant) -> String {
        for dialect in [Dialects::Sqlite, Dialects::Postgres] {
            if let Ok(access) = check(sql, grant, dialect) {
                panic!("{sql} was allowed on {dialect:?} as {access:?}");
            }
        }
        check(sql, grant, Dialects::Sqlite).unwrap_err()
    }

    #[test]
    fn plain_dml_and_queries_are_allowed() {
        for (sql, access) in [
            ("SELECT * FROM rides WHERE id = $1", Access::Read),
            (
                "WITH r AS (SELECT id FROM rides) SELECT * FROM r",
                Access::Read,
            ),
            (
                "INSERT INTO rides (id, origin) VALUES ($1, $2)",
                Access::Write,
            ),
            ("UPDATE rides SET charged = 1 WHERE id = $1", Access::Write),
            (
                "DELETE FROM audit_records WHERE ride_id = $1",
                Access::Write,
            ),
            (
                "SELECT count(*), json_object('a', 1) FROM public.rides",
                Access::Read,
            ),
        ] {
            for dialect in [Dialects::Sqlite, Dialects::Postgres] {
                assert_eq!(
                    check(sql, &rw(), dialect),
                    Ok(access),
                    "{sql} on {dialect:?}"
                );
            }
        }
    }

    #[test]
    fn forbidden_forms_are_refused() {
        let g = rw();
        for sql in [
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "SAVEPOINT s",
            "RELEASE SAVEPOINT s",
            "SET ROLE admin",
            "SET search_path TO acidic",
            "CREATE TABLE t (x INT)",
            "DROP TABLE rides",
            "ALTER TABLE rides ADD COLUMN x INT",
            "SELECT 1; DELETE FROM rides",
            "INSERT INTO rides VALUES (1); COMMIT",
            "SELECT * INTO copy FROM rides",
        ] {
            refused(sql, &g);
        }
        // Dialect-specific forms, each refused by the parser of its database.
        assert!(check("PRAGMA journal_mode = DELETE", &g, Dialects::Sqlite).is_err());
        assert!(check("ATTACH DATABASE 'x.db' AS x", &g, Dialects::Sqlite).is_err());
        assert!(check("VACUUM", &g, Dialects::Sqlite).is_err());
    }

    #[test]
    fn engine_tables_are_never_reachable() {
        let g = rw();
        for sql in [
            "SELECT * FROM runs",
            "UPDATE runs SET status = 'succeeded'",
            "DELETE FROM step_events",
            "INSERT INTO components (digest) VALUES ('x')",
            "SELECT * FROM rides JOIN workflows ON 1 = 1",
            "SELECT * FROM rides WHERE id IN (SELECT id FROM RUNS)",
            "WITH x AS (SELECT * FROM runs) SELECT * FROM x",
            "SELECT * FROM acidic.runs",
            "SELECT * FROM acidic.rides",
            "SELECT * FROM sqlite_master",
            "SELECT * FROM pragma_table_info('runs')",
            "SELECT * FROM pg_catalog.pg_tables",
            "SELECT set_config('search_path', 'acidic', true)",
            "SELECT pg_terminate_backend(1)",
        ] {
            refused(sql, &g);
        }
    }

    #[test]
    fn grants_limit_access_and_tables() {
        let ro = SqlGrant {
            mode: SqlMode::ReadOnly,
            tables: vec!["rides".into()],
            ddl: false,
        };
        assert_eq!(
            check("SELECT * FROM rides", &ro, Dialects::Sqlite),
            Ok(Access::Read)
        );
        assert!(refused("INSERT INTO rides VALUES (1)", &ro).contains("read-only"));
        assert!(
            refused("SELECT * FROM audit_records", &ro).contains("not in this step's sql tables")
        );
    }

    #[test]
    fn ddl_needs_its_grant_and_never_reaches_the_engine() {
        assert!(refused("CREATE TABLE t (x INT)", &rw()).contains("ddl = true"));
        let ddl = SqlGrant { ddl: true, ..rw() };
        for sql in [
            "CREATE TABLE t (x INT)",
            "CREATE INDEX t_x ON t (x)",
            "ALTER TABLE t ADD COLUMN y TEXT",
            "CREATE VIEW v AS SELECT x FROM t",
            "DROP TABLE t",
            "DROP VIEW v",
        ] {
            for dialect in [Dialects::Sqlite, Dialects::Postgres] {
                assert_eq!(
                    check(sql, &ddl, dialect),
                    Ok(Access::Ddl),
                    "{sql} on {dialect:?}"
                );
            }
        }
        for sql in [
            "DROP TABLE runs",
            "ALTER TABLE runs ADD COLUMN x INT",
            "CREATE INDEX sneaky ON step_events (step)",
            "CREATE VIEW v AS SELECT * FROM runs",
            "CREATE TABLE acidic.t (x INT)",
            "DROP INDEX runs_by_key",
            "DROP SCHEMA acidic CASCADE",
            "COMMIT",
        ] {
            refused(sql, &ddl);
        }
        let ro = SqlGrant {
            mode: SqlMode::ReadOnly,
            ..ddl
        };
        assert!(refused("CREATE TABLE t (x INT)", &ro).contains("read-only"));
    }
}

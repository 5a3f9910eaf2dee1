//! Workflow manifests: the TOML a team writes to register a workflow.
//!
//! ```toml
//! name = "ride-create"
//! version = "1.0"                 # a label for people; optional
//!
//! [attributes]                    # initial attributes of every run; optional
//! ride_id = ""
//!
//! [defaults]                      # retry policy and limits for every step; optional
//! max_attempts = 5
//! backoff = "1s"                  # first retry delay, doubled per attempt, jittered
//! max_backoff = "10m"
//! timeout = "30s"                 # wall-clock deadline of one step call
//! memory = "64MiB"                # linear-memory cap of one step call
//! fuel = 1_000_000_000            # instructions (roughly) per call; optional
//! max_input = "1MiB"              # the run's args, as the step receives them
//! max_result = "1MiB"             # a finish result, and each staged run's args
//! max_attribute = "1MiB"          # each attribute value the step sets
//! max_log = "1MiB"                # log lines plus stdout and stderr of one call
//! max_attributes = 1000           # attributes a run may hold
//! max_attribute_name = "256B"     # each attribute's name
//! max_attributes_total = "8MiB"   # all attributes together (names and values)
//! max_staged = 1000               # runs one call may stage
//! max_staged_total = "8MiB"       # their args together
//! max_lineage_depth = 32          # runs staged by runs staged by ...: how deep
//!
//! [[step]]
//! name = "create_ride"
//! component = "ride_create.wasm"  # relative to this file
//! max_attempts = 3                # any `defaults` key may be overridden per step
//! # fan out: one `charge-item` run per element of the list attribute `items`;
//! # the workflow moves on when all of them succeeded
//! awaits = { workflow = "charge-item", for_each = "items" }
//! env = { REGION = "eu" }         # the only environment the step sees
//! allowed_outbound_hosts = ["https://api.stripe.com", "http://127.0.0.1:8080"]
//! sql = "read-write"              # or "read-only"; absent: no SQL at all
//! tables = ["rides", "audit_records"]  # optional: the only tables it may name
//! ddl = true                      # optional, with read-write: CREATE/ALTER/DROP of tables
//! ```

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use toml::Spanned;

use crate::error::ManifestError;
use crate::sql::{SqlGrant, SqlMode};

mod outbound;
mod policy;

pub use outbound::OutboundHost;
#[cfg(test)]
use policy::parse_size;
pub use policy::{DEFAULT_CAP, StepPolicy};
use policy::{RawPolicy, resolve_policy};

/// The recovery point of a finished run; no step may take this name.
pub const FINISHED: &str = "finished";

/// Largest memory cap a manifest may ask for (the whole 32-bit address space).
pub const MAX_MEMORY: u64 = 4 << 30;

/// A parsed, validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file it was read from.
    pub path: PathBuf,
    /// The workflow's name.
    pub name: String,
    /// The author's version label, if any.
    pub label: Option<String>,
    /// A one-line description, if any.
    pub description: Option<String>,
    /// Attributes every run starts with.
    pub attributes: Map<String, Value>,
    /// The steps, in order.
    pub steps: Vec<StepSpec>,
}

/// One step of a manifest.
#[derive(Debug, Clone)]
pub struct StepSpec {
    /// The step's name: the recovery point while it is next.
    pub name: String,
    /// The component file, resolved against the manifest's folder.
    pub component: PathBuf,
    /// The manifest line naming the component file.
    pub component_line: usize,
    /// Retry policy and limits.
    pub policy: StepPolicy,
    /// Runs the step fans out to and waits for, declared in the manifest.
    pub awaits: Option<AwaitSpec>,
    /// Environment variables the step sees (and no others).
    pub env: BTreeMap<String, String>,
    /// Where the step may send HTTP requests (`scheme://host[:port]`).
    pub allowed_outbound_hosts: Vec<String>,
    /// What SQL the step may run on the application's tables.
    pub sql: Option<SqlGrant>,
}

/// A manifest-declared fan-out: when the step succeeds, one run of
/// `workflow` is staged per element of the list attribute `for_each`, with
/// the element as its args, and the step waits for all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwaitSpec {
    /// The workflow each child runs.
    pub workflow: String,
    /// The attribute holding the list of child args.
    pub for_each: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: Spanned<String>,
    version: Option<String>,
    description: Option<String>,
    #[serde(default)]
    attributes: Map<String, Value>,
    #[serde(default)]
    defaults: RawPolicy,
    #[serde(default, rename = "step")]
    steps: Vec<RawStep>,
}

// The policy keys are repeated rather than flattened: serde cannot deny
// unknown fields through `flatten`, and a typo must be an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Spanned<String>,
    component: Spanned<String>,
    awaits: Option<Spanned<AwaitSpec>>,
    env: Option<Spanned<BTreeMap<String, String>>>,
    allowed_outbound_hosts: Option<Spanned<Vec<String>>>,
    sql: Option<Spanned<String>>,
    tables: Option<Spanned<Vec<String>>>,
    ddl: Option<Spanned<bool>>,
    max_attempts: Option<Spanned<i64>>,
    backoff: Option<Spanned<String>>,
    max_backoff: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    memory: Option<Spanned<String>>,
    fuel: Option<Spanned<i64>>,
    max_input: Option<Spanned<String>>,
    max_result: Option<Spanned<String>>,
    max_attribute: Option<Spanned<String>>,
    max_log: Option<Spanned<String>>,
    max_attributes: Option<Spanned<i64>>,
    max_attribute_name: Option<Spanned<String>>,
    max_attributes_total: Option<Spanned<String>>,
    max_staged: Option<Spanned<i64>>,
    max_staged_total: Option<Spanned<String>>,
    max_lineage_depth: Option<Spanned<i64>>,
}

impl RawStep {
    fn policy(&self) -> RawPolicy {
        RawPolicy {
            max_attempts: self.max_attempts.clone(),
            backoff: self.backoff.clone(),
            max_backoff: self.max_backoff.clone(),
            timeout: self.timeout.clone(),
            memory: self.memory.clone(),
            fuel: self.fuel.clone(),
            max_input: self.max_input.clone(),
            max_result: self.max_result.clone(),
            max_attribute: self.max_attribute.clone(),
            max_log: self.max_log.clone(),
            max_attributes: self.max_attributes.clone(),
            max_attribute_name: self.max_attribute_name.clone(),
            max_attributes_total: self.max_attributes_total.clone(),
            max_staged: self.max_staged.clone(),
            max_staged_total: self.max_staged_total.clone(),
            max_lineage_depth: self.max_lineage_depth.clone(),
        }
    }
}

/// Errors located in one manifest's text.
struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn at(
        &self,
        span: Option<Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ManifestError {
        ManifestError {
            path: self.path.to_path_buf(),
            line: span.map(|s| self.line(&s)),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A manifest's TOML as its raw form, or where and why it is not one: the
/// span, the field path (`step[2].max_attempts`, `(syntax)` for bad TOML)
/// and what is wrong, in a user's words.
fn parse_raw(text: &str) -> Result<RawManifest, (Option<Range<usize>>, String, String)> {
    let de = toml::Deserializer::parse(text).map_err(|e| {
        (
            e.span(),
            "(syntax)".to_string(),
            e.message().trim().to_string(),
        )
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = field_path(&e.path().to_string());
        let inner = e.into_inner();
        let message = inner.message().trim().to_string();
        let (field, message) = explain(path, &message);
        (inner.span(), field, message)
    })
}

/// A serde path as a manifest field: toml's span markers dropped, `.` for
/// the top level.
fn field_path(path: &str) -> String {
    let kept: Vec<&str> = path
        .split('.')
        .filter(|segment| !segment.starts_with("$__") && !segment.is_empty() && *segment != "?")
        .collect();
    kept.join(".")
}

/// serde's wording of a type error, said the way a manifest's author reads
/// it: `expected an integer, got string "three"`, `[step]` for `[[step]]`.
fn explain(path: String, message: &str) -> (String, String) {
    let field = if path.is_empty() {
        "(top level)".to_string()
    } else {
        path
    };
    if let Some((got, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.split_once(", expected "))
    {
        if field == "step" && got == "map" {
            return (
                field,
                "`[step]` declares a single table; steps are an array of tables: \
                 write `[[step]]` for each step"
                    .to_string(),
            );
        }
        return (
            field,
            format!("expected {}, got {got}", expected_words(expected)),
        );
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        // serde names the field and the allowed ones: keep both.
        let name = rest.split('`').nth(1).unwrap_or_default();
        let field = if field.ends_with(name) || name.is_empty() {
            field
        } else if field == "(top level)" {
            name.to_string()
        } else {
            format!("{field}.{name}")
        };
        return (field, message.to_string());
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        let name = rest.split('`').nth(1).unwrap_or_default();
        let field = match field.as_str() {
            "(top level)" => name.to_string(),
            _ => format!("{field}.{name}"),
        };
        return (field, message.to_string());
    }
    (field, message.to_string())
}

/// serde's name of an expected type, in words.
fn expected_words(expected: &str) -> String {
    match expected {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize" => {
            "an integer".to_string()
        }
        "a boolean" | "bool" => "a boolean (true or false)".to_string(),
        "a string" => "a string".to_string(),
        "a sequence" => "an array".to_string(),
        "a map" => "a table".to_string(),
        other => other.to_string(),
    }
}

impl Manifest {
    /// Reads and validates the manifest at `path`, including that every component file exists.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            path: path.to_path_buf(),
            line: None,
            field: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        Manifest::parse(path, &text)
    }

    /// Parses and validates manifest `text`, as read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let loc = Locator { path, text };
        let raw = parse_raw(text).map_err(|(span, field, message)| loc.at(span, field, message))?;

        let name_span = raw.name.span();
        let name = raw.name.into_inner();
        if !is_identifier(&name) {
            return Err(loc.at(
                Some(name_span),
                "name",
                format!(
                    "`{name}` is not a valid workflow name (use letters, digits, `-`, `_`, `.`)"
                ),
            ));
        }
        if raw.steps.is_empty() {
            return Err(loc.at(None, "step", "a workflow needs at least one [[step]]"));
        }

        let defaults = resolve_policy(&loc, "defaults", &raw.defaults, StepPolicy::default())?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut seen = HashSet::new();
        let mut steps = Vec::with_capacity(raw.steps.len());
        for (i, step) in raw.steps.iter().enumerate() {
            let field = |f: &str| format!("step[{i}].{f}");
            let step_name = step.name.get_ref();
            if !is_identifier(step_name) {
                return Err(loc.at(
                    Some(step.name.span()),
                    field("name"),
                    format!("`{step_name}` is not a valid step name (use letters, digits, `-`, `_`, `.`)"),
                ));
            }
            if step_name == FINISHED {
                return Err(loc.at(
                    Some(step.name.span()),
                    field("name"),
                    "`finished` is reserved",
                ));
            }
            if !seen.insert(step_name.clone()) {
                return Err(loc.at(
                    Some(step.name.span()),
                    field("name"),
                    format!("duplicate step name `{step_name}`"),
                ));
            }
            let component = dir.join(step.component.get_ref());
            if !component.is_file() {
                return Err(loc.at(
                    Some(step.component.span()),
                    field("component"),
                    format!(
                        "no component file at {} (build the guest first?)",
                        component.display()
                    ),
                ));
            }
            let policy = resolve_policy(&loc, &format!("step[{i}]"), &step.policy(), defaults)?;
            let awaits = match &step.awaits {
                Some(a) if !is_identifier(&a.get_ref().workflow) => {
                    return Err(loc.at(
                        Some(a.span()),
                        field("awaits.workflow"),
                        "not a valid workflow name",
                    ));
                }
                Some(a) if a.get_ref().for_each.is_empty() => {
                    return Err(loc.at(
                        Some(a.span()),
                        field("awaits.for_each"),
                        "names no attribute",
                    ));
                }
                Some(a) => Some(a.get_ref().clone()),
                None => None,
            };
            let (env, allowed_outbound_hosts, sql) = grants(&loc, i, step)?;
            steps.push(StepSpec {
                name: step_name.clone(),
                component,
                component_line: loc.line(&step.component.span()),
                policy,
                awaits,
                env,
                allowed_outbound_hosts,
                sql,
            });
        }

        Ok(Manifest {
            path: path.to_path_buf(),
            name,
            label: raw.version,
            description: raw.description,
            attributes: raw.attributes,
            steps,
        })
    }
}

/// A step's env, the hosts it may call, and its SQL grant.
type Grants = (BTreeMap<String, String>, Vec<String>, Option<SqlGrant>);

/// What a step's `[[step]]` grants it: its env, the hosts it may call, and
/// its SQL, each checked.
fn grants(loc: &Locator<'_>, i: usize, step: &RawStep) -> Result<Grants, ManifestError> {
    let field = |f: &str| format!("step[{i}].{f}");
    let env = match &step.env {
        Some(env) => {
            let bad = env
                .get_ref()
                .keys()
                .find(|k| k.is_empty() || k.contains('=') || k.contains('\0'));
            if let Some(k) = bad {
                return Err(loc.at(
                    Some(env.span()),
                    field("env"),
                    format!("`{k}` is not a valid variable name"),
                ));
            }
            env.get_ref().clone()
        }
        None => BTreeMap::new(),
    };
    let allowed_outbound_hosts = match &step.allowed_outbound_hosts {
        Some(hosts) => {
            for h in hosts.get_ref() {
                if let Err(why) = OutboundHost::parse(h) {
                    return Err(loc.at(
                        Some(hosts.span()),
                        field("allowed_outbound_hosts"),
                        format!("`{h}`: {why}"),
                    ));
                }
            }
            hosts.get_ref().clone()
        }
        None => Vec::new(),
    };
    let read_write = step
        .sql
        .as_ref()
        .is_some_and(|m| m.get_ref() == "read-write");
    if let (Some(d), false) = (&step.ddl, read_write) {
        return Err(loc.at(
            Some(d.span()),
            field("ddl"),
            "needs sql = \"read-write\" on the same step",
        ));
    }
    let sql = match (&step.sql, &step.tables) {
        (None, None) => None,
        (None, Some(t)) => {
            return Err(loc.at(
                Some(t.span()),
                field("tables"),
                "names tables for a step without `sql = \"read-only\"` or `\"read-write\"`",
            ));
        }
        (Some(mode), tables) => {
            let mode = match mode.get_ref().as_str() {
                "read-only" => SqlMode::ReadOnly,
                "read-write" => SqlMode::ReadWrite,
                other => {
                    return Err(loc.at(
                        Some(mode.span()),
                        field("sql"),
                        format!("`{other}` is not \"read-only\" or \"read-write\""),
                    ));
                }
            };
            let tables = tables
                .as_ref()
                .map(|t| t.get_ref().clone())
                .unwrap_or_default();
            if let Some(t) = tables
                .iter()
                .find(|t| crate::sql::ENGINE_TABLES.contains(&t.to_lowercase().as_str()))
            {
                return Err(loc.at(
                    step.tables.as_ref().map(|t| t.span()),
                    field("tables"),
                    format!("`{t}` is one of the engine's tables"),
                ));
            }
            let ddl = step.ddl.as_ref().is_some_and(|d| *d.get_ref());
            Some(SqlGrant { mode, tables, ddl })
        }
    };
    Ok((env, allowed_outbound_hosts, sql))
}

/// Workflow and step names: short, printable, unambiguous on a command line.
fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.ends_with(".toml")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = StepPolicy {
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            ..StepPolicy::default()
        };
        let first = p.backoff_after(1);
        assert!(first >= Duration::from_millis(750) && first <= Duration::from_millis(1250));
        let late = p.backoff_after(30);
        assert!(late >= Duration::from_millis(7500) && late <= Duration::from_millis(12500));
    }

    #[test]
    fn outbound_hosts_parse_and_match() {
        let h = OutboundHost::parse("https://API.stripe.com").expect("parse");
        assert!(h.allows("https", "api.stripe.com", 443));
        assert!(!h.allows("http", "api.stripe.com", 80), "scheme");
        assert!(!h.allows("https", "api.stripe.com", 8443), "port");
        assert!(!h.allows("https", "evil.com", 443));
        let local = OutboundHost::parse("http://127.0.0.1:8089").expect("parse");
        assert!(local.allows("http", "127.0.0.1", 8089));
        assert!(!local.allows("http", "127.0.0.1", 8090));
        let wild = OutboundHost::parse("https://*.example.com").expect("parse");
        assert!(wild.allows("https", "a.example.com", 443));
        assert!(!wild.allows("https", "example.com", 443));
        assert!(!wild.allows("https", "badexample.com", 443));
        for bad in [
            "ftp://x",
            "api.stripe.com",
            "https://x/path",
            "https://x:99999",
            "https://",
        ] {
            assert!(OutboundHost::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("lots"), None);
    }
}

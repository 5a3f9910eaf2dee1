//! Registered workflow definitions: a manifest with its components replaced by
//! their content digests, hashed, and stored as a numbered version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::manifest::{AwaitSpec, FINISHED, Manifest, StepPolicy};
use crate::run::{canonical_json, sha256_hex};
use crate::sql::SqlGrant;

/// A workflow as stored: what runs pin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    /// Workflow name.
    pub name: String,
    /// The author's version label.
    pub label: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Initial attributes.
    pub attributes: Map<String, Value>,
    /// Steps in order.
    pub steps: Vec<StepDef>,
}

/// One step of a stored definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDef {
    /// Step name.
    pub name: String,
    /// SHA-256 of the component's bytes.
    pub component: String,
    /// The file the component was registered from, for people.
    pub file: String,
    /// Retry policy and limits.
    pub policy: StepPolicy,
    /// Manifest-declared fan-out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaits: Option<AwaitSpec>,
    /// Environment variables the step sees.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Where the step may send HTTP requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_outbound_hosts: Vec<String>,
    /// What SQL the step may run; none means no SQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<SqlGrant>,
    /// The digest of what the component was built from, when its build
    /// left a note of it (`<component>.source`, written by `make step`)
    /// that describes these very bytes. Two builds of one source may differ
    /// in bytes (the JavaScript and Python toolchains seed their snapshot
    /// at random); registering the second keeps the first's component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Definition {
    /// The definition as shown to operators (`acidic workflows show`, the
    /// HTTP API): everything, with environment variable names but not
    /// their values.
    pub fn shown(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(steps) = value.get_mut("steps").and_then(Value::as_array_mut) {
            for step in steps {
                if let Some(step) = step.as_object_mut()
                    && let Some(Value::Object(env)) = step.remove("env")
                {
                    let names: Vec<Value> = env.keys().cloned().map(Value::String).collect();
                    step.insert("env".into(), Value::Array(names));
                }
            }
        }
        value
    }

    /// The definition of `manifest`, given the digest of each step's component.
    pub fn from_manifest(manifest: &Manifest, digests: &[(String, Option<String>)]) -> Definition {
        Definition {
            name: manifest.name.clone(),
            label: manifest.label.clone(),
            description: manifest.description.clone(),
            attributes: manifest.attributes.clone(),
            steps: manifest
                .steps
                .iter()
                .zip(digests)
                .map(|(s, (digest, source))| StepDef {
                    name: s.name.clone(),
                    component: digest.clone(),
                    source: source.clone(),
                    file: s.component.display().to_string(),
                    policy: s.policy,
                    awaits: s.awaits.clone(),
                    env: s.env.clone(),
                    allowed_outbound_hosts: s.allowed_outbound_hosts.clone(),
                    sql: s.sql.clone(),
                })
                .collect(),
        }
    }

    /// The hash that decides whether a registration is a new version. The
    /// component file paths are left out: moving a file is not a change.
    pub fn hash(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(steps) = value.get_mut("steps").and_then(Value::as_array_mut) {
            for step in steps {
                if let Some(obj) = step.as_object_mut() {
                    obj.remove("file");
                }
            }
        }
        sha256_hex(canonical_json(&value).as_bytes())
    }

    /// The step named `name`, with its index.
    pub fn step(&self, name: &str) -> Option<(usize, &StepDef)> {
        self.steps.iter().enumerate().find(|(_, s)| s.name == name)
    }

    /// The recovery point after step `index`: the next step's name, or `finished`.
    pub fn next_after(&self, index: usize) -> &str {
        self.steps
            .get(index + 1)
            .map(|s| s.name.as_str())
            .unwrap_or(FINISHED)
    }

    /// The first step's name.
    pub fn first_step(&self) -> &str {
        self.steps
            .first()
            .map(|s| s.name.as_str())
            .unwrap_or(FINISHED)
    }

    /// The longest deadline of any step, to size leases.
    pub fn max_timeout(&self) -> std::time::Duration {
        self.steps
            .iter()
            .map(|s| s.policy.timeout)
            .max()
            .unwrap_or_default()
    }
}

/// A stored version of a workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// The version number, from 1, per name.
    pub version: u32,
    /// Hash of the definition.
    pub hash: String,
    /// The definition.
    pub definition: Definition,
}

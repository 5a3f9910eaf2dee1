//! A step's policy: how it is retried and limited, with its defaults, as
//! written under `[defaults]` or a `[[step]]` and as stored.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{Locator, MAX_MEMORY};
use crate::error::ManifestError;

/// How a step is retried and limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepPolicy {
    /// Calls of the step before the run fails (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled per attempt, with jitter.
    #[serde(with = "millis")]
    pub backoff: Duration,
    /// Largest delay between retries.
    #[serde(with = "millis")]
    pub max_backoff: Duration,
    /// Wall-clock deadline of one call.
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// Linear-memory cap of one call, in bytes.
    pub memory: u64,
    /// Fuel (about one unit per Wasm instruction) one call may burn; none is unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Largest args, as JSON text, the step accepts.
    #[serde(default = "default_cap", skip_serializing_if = "is_default_cap")]
    pub max_input: u64,
    /// Largest finish result, and staged run's args, as JSON text.
    #[serde(default = "default_cap", skip_serializing_if = "is_default_cap")]
    pub max_result: u64,
    /// Largest attribute value, as JSON text, the step may set.
    #[serde(default = "default_cap", skip_serializing_if = "is_default_cap")]
    pub max_attribute: u64,
    /// Most bytes of log lines, and of stdout and stderr each, kept per call.
    #[serde(default = "default_cap", skip_serializing_if = "is_default_cap")]
    pub max_log: u64,
    /// Most attributes a run may hold after this step.
    #[serde(
        default = "default_of::<{ Caps::ATTRIBUTES }>",
        skip_serializing_if = "is_default::<{ Caps::ATTRIBUTES }>"
    )]
    pub max_attributes: u64,
    /// Longest attribute name, in bytes.
    #[serde(
        default = "default_of::<{ Caps::NAME }>",
        skip_serializing_if = "is_default::<{ Caps::NAME }>"
    )]
    pub max_attribute_name: u64,
    /// Largest total of the run's attributes (names and JSON values), in bytes.
    #[serde(
        default = "default_of::<{ Caps::TOTAL }>",
        skip_serializing_if = "is_default::<{ Caps::TOTAL }>"
    )]
    pub max_attributes_total: u64,
    /// Most runs one call of the step may stage.
    #[serde(
        default = "default_of::<{ Caps::STAGED }>",
        skip_serializing_if = "is_default::<{ Caps::STAGED }>"
    )]
    pub max_staged: u64,
    /// Largest total of the args of the runs one call stages, in bytes.
    #[serde(
        default = "default_of::<{ Caps::TOTAL }>",
        skip_serializing_if = "is_default::<{ Caps::TOTAL }>"
    )]
    pub max_staged_total: u64,
    /// Longest chain of runs staged by runs: a run at this depth (a top-level
    /// run is at 0) may not stage more.
    #[serde(
        default = "default_of::<{ Caps::DEPTH }>",
        skip_serializing_if = "is_default::<{ Caps::DEPTH }>"
    )]
    pub max_lineage_depth: u64,
}

/// The defaults of the caps on what a step produces. Each is left out of the
/// stored definition at its default (`is_default`), so a manifest registered
/// before the cap existed keeps its hash.
struct Caps;

impl Caps {
    /// Attributes per run.
    const ATTRIBUTES: u64 = 1_000;
    /// Bytes of an attribute name.
    const NAME: u64 = 256;
    /// Bytes of all attributes together, and of all args one call stages.
    const TOTAL: u64 = 8 << 20;
    /// Runs staged per call.
    const STAGED: u64 = 1_000;
    /// Depth of a chain of staged runs.
    const DEPTH: u64 = 32;
}

fn default_of<const N: u64>() -> u64 {
    N
}

fn is_default<const N: u64>(n: &u64) -> bool {
    *n == N
}

/// The default of every size cap: 1 MiB.
pub const DEFAULT_CAP: u64 = 1 << 20;

fn default_cap() -> u64 {
    DEFAULT_CAP
}

// Caps at their default are left out of the stored definition, so a manifest
// registered before they existed keeps its hash.
fn is_default_cap(n: &u64) -> bool {
    *n == DEFAULT_CAP
}

impl Default for StepPolicy {
    fn default() -> Self {
        StepPolicy {
            max_attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            timeout: Duration::from_secs(30),
            memory: 64 << 20,
            fuel: None,
            max_input: DEFAULT_CAP,
            max_result: DEFAULT_CAP,
            max_attribute: DEFAULT_CAP,
            max_log: DEFAULT_CAP,
            max_attributes: Caps::ATTRIBUTES,
            max_attribute_name: Caps::NAME,
            max_attributes_total: Caps::TOTAL,
            max_staged: Caps::STAGED,
            max_staged_total: Caps::TOTAL,
            max_lineage_depth: Caps::DEPTH,
        }
    }
}

impl StepPolicy {
    /// The delay before retry number `failed_attempts` (1 = after the first failure),
    /// exponential from `backoff`, capped at `max_backoff`, jittered by ±25%.
    pub fn backoff_after(&self, failed_attempts: u32) -> Duration {
        crate::backoff::Backoff::new(self.backoff, self.max_backoff).delay(failed_attempts)
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) max_attempts: Option<Spanned<i64>>,
    pub(super) backoff: Option<Spanned<String>>,
    pub(super) max_backoff: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) memory: Option<Spanned<String>>,
    pub(super) fuel: Option<Spanned<i64>>,
    pub(super) max_input: Option<Spanned<String>>,
    pub(super) max_result: Option<Spanned<String>>,
    pub(super) max_attribute: Option<Spanned<String>>,
    pub(super) max_log: Option<Spanned<String>>,
    pub(super) max_attributes: Option<Spanned<i64>>,
    pub(super) max_attribute_name: Option<Spanned<String>>,
    pub(super) max_attributes_total: Option<Spanned<String>>,
    pub(super) max_staged: Option<Spanned<i64>>,
    pub(super) max_staged_total: Option<Spanned<String>>,
    pub(super) max_lineage_depth: Option<Spanned<i64>>,
}

pub(super) fn resolve_policy(
    loc: &Locator<'_>,
    table: &str,
    raw: &RawPolicy,
    base: StepPolicy,
) -> Result<StepPolicy, ManifestError> {
    let mut policy = base;
    let field = |f: &str| format!("{table}.{f}");
    if let Some(n) = &raw.max_attempts {
        policy.max_attempts = u32::try_from(*n.get_ref())
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                loc.at(
                    Some(n.span()),
                    field("max_attempts"),
                    "must be a whole number from 1",
                )
            })?;
    }
    let duration = |v: &Option<Spanned<String>>,
                    name: &str,
                    into: &mut Duration|
     -> Result<(), ManifestError> {
        if let Some(s) = v {
            *into = humantime::parse_duration(s.get_ref()).map_err(|e| {
                loc.at(
                    Some(s.span()),
                    field(name),
                    format!("`{}` is not a duration like \"30s\": {e}", s.get_ref()),
                )
            })?;
        }
        Ok(())
    };
    duration(&raw.backoff, "backoff", &mut policy.backoff)?;
    duration(&raw.max_backoff, "max_backoff", &mut policy.max_backoff)?;
    duration(&raw.timeout, "timeout", &mut policy.timeout)?;
    if let Some(t) = &raw.timeout
        && policy.timeout.is_zero()
    {
        return Err(loc.at(Some(t.span()), field("timeout"), "must be more than zero"));
    }
    if let Some(m) = &raw.memory {
        policy.memory = parse_size(m.get_ref())
            .filter(|b| (1 << 16..=MAX_MEMORY).contains(b))
            .ok_or_else(|| {
                loc.at(
                    Some(m.span()),
                    field("memory"),
                    format!(
                        "`{}` is not a size from 64KiB to 4GiB like \"64MiB\"",
                        m.get_ref()
                    ),
                )
            })?;
    }
    if let Some(f) = &raw.fuel {
        policy.fuel = Some(
            u64::try_from(*f.get_ref())
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    loc.at(
                        Some(f.span()),
                        field("fuel"),
                        "must be a whole number from 1",
                    )
                })?,
        );
    }
    for (value, name, into) in [
        (&raw.max_input, "max_input", &mut policy.max_input),
        (&raw.max_result, "max_result", &mut policy.max_result),
        (
            &raw.max_attribute,
            "max_attribute",
            &mut policy.max_attribute,
        ),
        (&raw.max_log, "max_log", &mut policy.max_log),
        (
            &raw.max_attribute_name,
            "max_attribute_name",
            &mut policy.max_attribute_name,
        ),
        (
            &raw.max_attributes_total,
            "max_attributes_total",
            &mut policy.max_attributes_total,
        ),
        (
            &raw.max_staged_total,
            "max_staged_total",
            &mut policy.max_staged_total,
        ),
    ] {
        if let Some(v) = value {
            *into = parse_size(v.get_ref())
                .filter(|b| (1..=MAX_MEMORY).contains(b))
                .ok_or_else(|| {
                    loc.at(
                        Some(v.span()),
                        field(name),
                        format!(
                            "`{}` is not a size from 1 byte to 4GiB like \"1MiB\"",
                            v.get_ref()
                        ),
                    )
                })?;
        }
    }
    for (value, name, into) in [
        (
            &raw.max_attributes,
            "max_attributes",
            &mut policy.max_attributes,
        ),
        (&raw.max_staged, "max_staged", &mut policy.max_staged),
        (
            &raw.max_lineage_depth,
            "max_lineage_depth",
            &mut policy.max_lineage_depth,
        ),
    ] {
        if let Some(n) = value {
            *into = u64::try_from(*n.get_ref())
                .ok()
                .filter(|n| *n <= 1_000_000)
                .ok_or_else(|| {
                    loc.at(
                        Some(n.span()),
                        field(name),
                        "must be a whole number from 0 to 1000000",
                    )
                })?;
        }
    }
    Ok(policy)
}

/// Parses "64MiB", "512KiB", "1GiB", "65536" (bytes); also accepts MB/KB/GB as binary units.
pub(super) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

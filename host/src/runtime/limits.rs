//! The limits of one step call that hold at the host boundary: one memory
//! budget for linear memory and what the host holds for the step, fuel
//! charged for host calls, and checks on the values a guest hands the host.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use wasmtime::ResourceLimiter;

/// Deepest nesting of a JSON value a guest may hand the host (attribute
/// values, staged args, results). serde_json stops at 128 while parsing; this
/// is lower so that a map of such values, stored and read back, still parses.
pub const MAX_JSON_DEPTH: usize = 64;

/// Fuel charged for every host call, whatever it moves.
pub const FUEL_PER_CALL: u64 = 1_000;

/// Fuel charged per byte a host call moves across the boundary (either way).
pub const FUEL_PER_BYTE: u64 = 1;

/// What the host counts for each value it holds, beyond its bytes.
pub const VALUE_OVERHEAD: usize = 32;

/// One budget for a step's memory: linear memory plus what the host holds
/// for the step. Growth of either past `max` is refused and remembered, so
/// the step is reported as `memory_limit` rather than as a guest bug.
pub struct MemoryBudget {
    max: usize,
    linear: usize,
    host: usize,
    /// Whether something was refused.
    pub hit: bool,
}

impl MemoryBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> MemoryBudget {
        MemoryBudget {
            max,
            linear: 0,
            host: 0,
            hit: false,
        }
    }

    /// Holds `bytes` more on the host side; false (and nothing held) if that
    /// would exceed the budget.
    pub fn hold(&mut self, bytes: usize) -> bool {
        let total = self.linear.saturating_add(self.host).saturating_add(bytes);
        if total > self.max {
            self.hit = true;
            return false;
        }
        self.host += bytes;
        true
    }

    /// Holds `new` bytes in place of `old` held before; false (and `old`
    /// still held) if that would exceed the budget.
    pub fn replace(&mut self, old: usize, new: usize) -> bool {
        let others = self.host.saturating_sub(old);
        if self.linear.saturating_add(others).saturating_add(new) > self.max {
            self.hit = true;
            return false;
        }
        self.host = others + new;
        true
    }

    /// Gives back `bytes` held by [`MemoryBudget::hold`].
    pub fn release(&mut self, bytes: usize) {
        self.host = self.host.saturating_sub(bytes);
    }

    /// Bytes the host may still take.
    pub fn room(&self) -> usize {
        self.max
            .saturating_sub(self.linear.saturating_add(self.host))
    }

    /// The cap, in bytes.
    pub fn max(&self) -> usize {
        self.max
    }
}

/// Bytes a table element is counted as (a reference and its metadata, at
/// most, in wasmtime's tables).
pub const TABLE_ELEMENT: usize = 16;

/// Most elements one table may have, whatever the budget.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl ResourceLimiter for MemoryBudget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let linear = self.linear.saturating_sub(current).saturating_add(desired);
        if linear.saturating_add(self.host) > self.max {
            self.hit = true;
            return Ok(false);
        }
        self.linear = linear;
        Ok(true)
    }

    /// Tables are the guest's memory too: each element counts
    /// [`TABLE_ELEMENT`] bytes against the same budget.
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let linear = self
            .linear
            .saturating_sub(current.saturating_mul(TABLE_ELEMENT))
            .saturating_add(desired.saturating_mul(TABLE_ELEMENT));
        if desired > MAX_TABLE_ELEMENTS || linear.saturating_add(self.host) > self.max {
            self.hit = true;
            return Ok(false);
        }
        self.linear = linear;
        Ok(true)
    }
}

/// Fuel the host charges for its calls, counted with what the guest's Wasm
/// burnt (the store's own fuel, read at every epoch tick: the host's calls
/// cannot reach the store). The two together may not pass the budget: a
/// call made once they do does nothing, and the next tick stops the guest
/// as out of fuel. Nothing is written back into the store, so the count
/// cannot be lost between ticks.
#[derive(Clone)]
pub struct HostFuel {
    /// Units the host charged in this call, in all; shared with the output
    /// streams and the random source.
    charged: Arc<AtomicU64>,
    /// What the Wasm had burnt at the last tick.
    burnt: u64,
    /// The budget.
    budget: u64,
    /// Whether the step has a budget at all.
    metered: bool,
}

impl HostFuel {
    /// For a call with `budget` units (none: unmetered).
    pub fn new(budget: Option<u64>) -> HostFuel {
        HostFuel {
            charged: Arc::new(AtomicU64::new(0)),
            burnt: 0,
            budget: budget.unwrap_or(u64::MAX),
            metered: budget.is_some(),
        }
    }

    /// Charges one call moving `bytes`; false if the budget is gone.
    pub fn charge(&self, bytes: usize) -> bool {
        if !self.metered {
            return true;
        }
        let cost = FUEL_PER_CALL.saturating_add((bytes as u64).saturating_mul(FUEL_PER_BYTE));
        let charged = self
            .charged
            .fetch_add(cost, Ordering::Relaxed)
            .saturating_add(cost);
        charged.saturating_add(self.burnt) <= self.budget
    }

    /// Charges `bytes` moved without a call of its own (output streams).
    pub fn charge_bytes(&self, bytes: usize) {
        if self.metered {
            let cost = (bytes as u64).saturating_mul(FUEL_PER_BYTE);
            self.charged.fetch_add(cost, Ordering::Relaxed);
        }
    }

    /// Whether the host's charges and the Wasm's burn already pass the budget.
    pub fn exhausted(&self) -> bool {
        self.metered
            && self
                .charged
                .load(Ordering::Relaxed)
                .saturating_add(self.burnt)
                > self.budget
    }

    /// Takes the store's remaining fuel into the count; false once the
    /// budget is gone.
    pub fn settle(&mut self, store_fuel: u64) -> bool {
        if !self.metered {
            return true;
        }
        self.burnt = self.budget.saturating_sub(store_fuel);
        !self.exhausted()
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), with a
/// note of how much was left out.
pub fn cut_text(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let cut = text.len() - end;
        text.truncate(end);
        text.push_str(&format!("… ({cut} more bytes not kept)"));
    }
    text
}

/// Bytes a parsed JSON value counts as, per value, beside its text: a
/// `serde_json::Value` is 32 bytes, and arrays and maps grow by doubling.
pub const JSON_VALUE: usize = 48;

/// What JSON `text` takes in the host once parsed, at most: its text plus
/// [`JSON_VALUE`] per value it can hold (one, plus one per comma, `[` and
/// `{` outside strings). Counted before parsing, so a budget can refuse
/// `[0,0,0,…]` before it is built (2 bytes of text, 48 of host memory).
pub fn json_held(text: &str) -> usize {
    let (mut values, mut in_string, mut escaped) = (1usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b',' | b'[' | b'{' => values += 1,
                _ => {}
            }
        }
    }
    text.len().saturating_add(values.saturating_mul(JSON_VALUE))
}

/// Parses JSON text a guest handed over, within [`MAX_JSON_DEPTH`].
pub fn guest_json(text: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let depth = json_depth(&value);
    if depth > MAX_JSON_DEPTH {
        return Err(format!(
            "JSON nested {depth} deep; at most {MAX_JSON_DEPTH} levels are allowed"
        ));
    }
    Ok(value)
}

/// How deeply `value` nests (a scalar is 1), without recursing.
pub fn json_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, depth + 1))),
            _ => {}
        }
    }
    deepest
}

/// Checks a name the guest gives the host (a workflow, key or queue):
/// 1 to `max` bytes, no control characters (databases refuse NUL, logs
/// and terminals mangle the rest).
pub fn guest_name(what: &str, name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if name.len() > max {
        return Err(format!(
            "{what} of {} bytes is over the limit of {max} bytes",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} `{}` holds control characters", shown(name)));
    }
    Ok(())
}

/// At most 200 bytes of `text`, for error messages about guest input.
pub fn shown(text: &str) -> String {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut s: String = text[..end]
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if end < text.len() {
        s.push('…');
    }
    s
}

/// A guest's message made safe to store: no NUL or other control characters
/// but newlines and tabs, and at most `max` bytes.
pub fn stored_message(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut s: String = text[..end]
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect();
    if end < text.len() {
        s.push_str(&format!(" … ({} more bytes)", text.len() - end));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_covers_linear_memory_and_host_holdings() {
        let mut b = MemoryBudget::new(100);
        assert!(b.memory_growing(0, 60, None).expect("grow"));
        assert!(b.hold(40));
        assert!(!b.hold(1), "60 + 40 is the whole budget");
        assert!(b.hit);
        assert!(
            b.replace(40, 10),
            "a smaller value in place of a larger one"
        );
        assert!(b.replace(10, 40), "and back");
        assert!(!b.replace(40, 41));
        b.release(40);
        assert!(!b.memory_growing(60, 101, None).expect("grow"));
        assert_eq!(b.room(), 40);
    }

    #[test]
    fn json_is_counted_by_its_values_not_only_its_text() {
        assert_eq!(json_held("1"), 1 + JSON_VALUE);
        assert_eq!(
            json_held("[0,0,0]"),
            7 + 4 * JSON_VALUE,
            "the array and its 3 elements"
        );
        assert_eq!(
            json_held(r#""a,[{\",""#),
            9 + JSON_VALUE,
            "nothing in a string counts"
        );
        let zeros = format!("[{}0]", "0,".repeat(1 << 20));
        assert!(
            json_held(&zeros) > 48 << 20,
            "a small text of many values is not small"
        );
    }

    #[test]
    fn tables_count_against_the_memory_budget() {
        let mut b = MemoryBudget::new(100 * TABLE_ELEMENT);
        assert!(b.table_growing(0, 60, None).expect("grow"));
        assert_eq!(b.room(), 40 * TABLE_ELEMENT);
        assert!(
            !b.table_growing(60, 101, None).expect("grow"),
            "over the budget"
        );
        assert!(b.hit);
        assert!(b.table_growing(60, 100, None).expect("grow"), "up to it");
        assert!(!b.hold(1));
    }

    #[test]
    fn host_fuel_is_settled_against_the_store() {
        let mut f = HostFuel::new(Some(10_000));
        assert!(f.charge(100));
        assert!(f.settle(10_000), "nothing burnt, 1,100 charged");
        assert!(f.settle(2_000), "8,000 burnt and 1,100 charged");
        assert!(!f.charge(1_000), "9,000 burnt and 2,100 charged is over");
        assert!(f.exhausted());
        assert!(!f.settle(2_000), "and stays so at every tick");
        let mut g = HostFuel::new(Some(10_000));
        assert!(g.charge(100) && g.settle(10_000) && g.settle(10_000));
        g.charge_bytes(9_000);
        assert!(!g.settle(10_000), "output bytes count too");
        let unmetered = HostFuel::new(None);
        assert!(unmetered.charge(usize::MAX));
    }

    #[test]
    fn json_depth_is_measured_without_recursion() {
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(guest_json(&deep).is_err());
        let fine = format!(
            "{}1{}",
            "[".repeat(MAX_JSON_DEPTH - 1),
            "]".repeat(MAX_JSON_DEPTH - 1)
        );
        assert!(guest_json(&fine).is_ok());
        let very = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(guest_json(&very).is_err(), "serde_json's own limit");
    }

    #[test]
    fn names_and_messages_are_checked_and_cleaned() {
        assert!(guest_name("key", "a\0b", 10).is_err());
        assert!(guest_name("key", "", 10).is_err());
        assert!(guest_name("key", &"k".repeat(11), 10).is_err());
        assert!(guest_name("key", "ride-1/é", 10).is_ok());
        assert_eq!(stored_message("a\0b", 10), "a\u{fffd}b");
        assert!(stored_message(&"é".repeat(100), 11).starts_with("ééééé …"));
    }
}

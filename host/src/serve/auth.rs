//! Bearer tokens: who is calling. Each caller's idempotency keys are its own
//! (stored as `caller:key`), so two callers' equal keys are two runs.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The callers allowed in, and their tokens (kept as SHA-256 digests).
#[derive(Clone)]
pub struct Tokens {
    callers: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.callers.iter().map(|(c, _)| c.as_str()).collect();
        f.debug_struct("Tokens").field("callers", &names).finish()
    }
}

/// Longest caller name.
const MAX_CALLER: usize = 64;

/// Shortest token accepted: a guessable token is no protection.
const MIN_TOKEN: usize = 16;

impl Tokens {
    /// Parses `caller:token` entries, one per line (or separated by commas);
    /// blank lines and `#` comments are skipped. `origin` names the source in
    /// errors.
    pub fn parse(text: &str, origin: &str) -> Result<Tokens> {
        let mut callers: Vec<(String, [u8; 32])> = Vec::new();
        for (n, entry) in text
            .lines()
            .enumerate()
            .flat_map(|(n, line)| line.split(',').map(move |e| (n + 1, e.trim())))
        {
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let bad = |why: &str| Error::Serve(format!("{origin}:{n}: {why}"));
            let Some((caller, token)) = entry.split_once(':') else {
                return Err(bad("expected `caller:token`"));
            };
            let caller = caller.trim();
            let token = token.trim();
            if caller.is_empty()
                || caller.len() > MAX_CALLER
                || !caller
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            {
                return Err(bad(&format!(
                    "caller `{}` must be 1 to {MAX_CALLER} letters, digits, `_`, `.` or `-`",
                    caller.chars().take(80).collect::<String>()
                )));
            }
            if token.len() < MIN_TOKEN || !token.chars().all(|c| c.is_ascii_graphic()) {
                return Err(bad(&format!(
                    "the token of `{caller}` must be at least {MIN_TOKEN} printable ASCII characters"
                )));
            }
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            if callers.iter().any(|(c, _)| c == caller) {
                return Err(bad(&format!("caller `{caller}` is listed twice")));
            }
            if callers.iter().any(|(_, d)| *d == digest) {
                return Err(bad(&format!(
                    "the token of `{caller}` is another caller's too"
                )));
            }
            callers.push((caller.to_string(), digest));
        }
        if callers.is_empty() {
            return Err(Error::Serve(format!("{origin}: no `caller:token` entries")));
        }
        Ok(Tokens { callers })
    }

    /// The caller whose token is `token`, comparing digests in constant time.
    pub fn caller(&self, token: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (caller, known) in &self.callers {
            let diff = known
                .iter()
                .zip(digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(caller.as_str());
            }
        }
        found
    }

    /// How many callers there are.
    pub fn len(&self) -> usize {
        self.callers.len()
    }

    /// True if there are none (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.callers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_commas_and_finds_callers() {
        let t = Tokens::parse(
            "# the API's callers\nalice:aaaaaaaaaaaaaaaa1\n\nbob:bbbbbbbbbbbbbbbb2, carol:cccccccccccccccc3",
            "t",
        )
        .unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.caller("bbbbbbbbbbbbbbbb2"), Some("bob"));
        assert_eq!(t.caller("cccccccccccccccc3"), Some("carol"));
        assert_eq!(t.caller("nope"), None);
    }

    #[test]
    fn refuses_bad_entries_naming_the_line() {
        for (text, needle) in [
            ("alice", "expected `caller:token`"),
            ("al ice:aaaaaaaaaaaaaaaa1", "caller `al ice`"),
            ("alice:short", "at least 16"),
            (
                "alice:aaaaaaaaaaaaaaaa1\nalice:bbbbbbbbbbbbbbbb2",
                "listed twice",
            ),
            (
                "alice:aaaaaaaaaaaaaaaa1\nbob:aaaaaaaaaaaaaaaa1",
                "another caller's",
            ),
            ("# nothing\n", "no `caller:token`"),
        ] {
            let e = Tokens::parse(text, "tokens.txt").unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.contains("tokens.txt"), "{e}");
        }
    }
}

//! A component that misbehaves on purpose, written straight against the WIT
//! (no SDK), to check that the host contains it. The step name picks the
//! misbehaviour:
//! - `spin`: loops forever; `burn`: a long finite loop (for fuel budgets);
//! - `grow`: allocates until memory runs out; `recurse`: recurses without
//!   end, overflowing its stack;
//! - `trap`: executes `unreachable`;
//! - `huge_result`: finishes with a 50 MB result; `huge_attribute`: sets a
//!   2 MiB attribute, ignores the error, and continues;
//! - `print`: writes 3 MiB to stdout and a line to stderr, then continues;
//! - `env`: finishes with the environment it sees;
//! - anything else continues.

wit_bindgen::generate!({
    path: "../../../wit/step@0.1.0",
    world: "step",
});

use acidic::step::attributes;

struct Hostile;

// Unbounded on purpose: the host must turn the stack overflow into a trap.
#[allow(unconditional_recursion)]
#[inline(never)]
fn recurse(depth: u64, pad: &mut [u8; 256]) -> u64 {
    pad[(depth % 256) as usize] = depth as u8;
    let mut next = [0u8; 256];
    std::hint::black_box(&mut next);
    recurse(depth + 1, &mut next) + u64::from(pad[0])
}

fn json_string(s: &str) -> String {
    let escaped: String = s
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if (c as u32) < 0x20 => format!("\\u{:04x}", c as u32).chars().collect(),
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

impl Guest for Hostile {
    fn run(input: StepInput) -> Result<Outcome, StepError> {
        match input.step.as_str() {
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "burn" => {
                let mut n: u64 = 0;
                for i in 0..20_000_000_000u64 {
                    n = std::hint::black_box(n ^ i);
                }
                Ok(Outcome::Finish(n.to_string()))
            }
            "grow" => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    hog.push(vec![7u8; 1 << 20]);
                    std::hint::black_box(&hog);
                }
            }
            "recurse" => {
                let mut pad = [0u8; 256];
                Ok(Outcome::Finish(recurse(0, &mut pad).to_string()))
            }
            "trap" => {
                #[cfg(target_arch = "wasm32")]
                core::arch::wasm32::unreachable();
                #[cfg(not(target_arch = "wasm32"))]
                unreachable!()
            }
            "huge_result" => {
                // One 50 MB JSON string, built in place to stay under the 64 MiB memory cap.
                let mut result = String::with_capacity((50 << 20) + 2);
                result.push('"');
                result.extend(std::iter::repeat_n('x', 50 << 20));
                result.push('"');
                Ok(Outcome::Finish(result))
            }
            "huge_attribute" => {
                // The host refuses the write; a hostile guest carries on regardless.
                let _ = attributes::set("blob", &format!("\"{}\"", "y".repeat(2 << 20)));
                Ok(Outcome::Continue)
            }
            "print" => {
                let line = "z".repeat(1023);
                for _ in 0..3 * 1024 {
                    println!("{line}");
                }
                eprintln!("hostile: printed 3 MiB");
                Ok(Outcome::Continue)
            }
            "env" => {
                let vars: Vec<String> = std::env::vars()
                    .map(|(k, v)| json_string(&format!("{k}={v}")))
                    .collect();
                Ok(Outcome::Finish(format!("[{}]", vars.join(","))))
            }
            _ => Ok(Outcome::Continue),
        }
    }
}

export!(Hostile);

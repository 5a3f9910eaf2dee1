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
//! - at the host boundary: `far_delay` stages a run delayed by u64::MAX ms,
//!   `nul_key` one whose key holds a NUL, `long_queue` one on a 10 KB queue
//!   name (each finishes with what the host answered); `many_attributes`
//!   sets 5,000 attributes, `long_name` one with a 10 KB name,
//!   `fat_attributes` twenty of 900 KB, `deep_json` one nested 127 deep,
//!   `stage_many` stages 5,000 runs, `stage_fat` twenty with 900 KB args
//!   (each ignores the errors it gets and continues); `host_traffic` moves
//!   1 GiB through `attributes.set`;
//!   `chain` stages a run of its own workflow, which does the same;
//!   `sleep` sleeps an hour in a WASI call; `random_flood` draws 25 MiB
//!   from `wasi:random` in 256-byte calls;
//! - anything else continues.

wit_bindgen::generate!({
    path: "../../../wit/step@0.1.0",
    world: "step",
});

use acidic::step::{attributes, staging};

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

/// A run of `workflow` with `args`, staged with `change` applied.
fn stage(workflow: &str, args: &str, change: impl FnOnce(&mut staging::Job)) -> Outcome {
    let mut job = staging::Job {
        workflow: workflow.to_string(),
        args: args.to_string(),
        key: None,
        delay_ms: None,
        queue: None,
        awaits: false,
    };
    change(&mut job);
    match staging::enqueue(&job) {
        Ok(key) => Outcome::Finish(json_string(&format!("staged {key}"))),
        Err(e) => Outcome::Finish(json_string(&format!("refused: {e}"))),
    }
}

impl Guest for Hostile {
    fn run(input: StepInput) -> Result<Outcome, StepError> {
        let me = input.workflow.as_str();
        match input.step.as_str() {
            "far_delay" => Ok(stage(me, "{}", |j| j.delay_ms = Some(u64::MAX))),
            "nul_key" => Ok(stage(me, "{}", |j| j.key = Some("k\0ey".into()))),
            "long_queue" => Ok(stage(me, "{}", |j| j.queue = Some("q".repeat(10_000)))),
            "many_attributes" => {
                for i in 0..5_000 {
                    let _ = attributes::set(&format!("a{i}"), "1");
                }
                Ok(Outcome::Continue)
            }
            "long_name" => {
                let _ = attributes::set(&"n".repeat(10_000), "1");
                Ok(Outcome::Continue)
            }
            "fat_attributes" => {
                let value = format!("\"{}\"", "f".repeat(900 << 10));
                for i in 0..20 {
                    let _ = attributes::set(&format!("fat{i}"), &value);
                }
                Ok(Outcome::Continue)
            }
            "deep_json" => {
                let value = format!("{}1{}", "[".repeat(127), "]".repeat(127));
                let _ = attributes::set("deep", &value);
                Ok(Outcome::Continue)
            }
            "stage_many" => {
                for i in 0..5_000 {
                    let _ = staging::enqueue(&staging::Job {
                        workflow: me.to_string(),
                        args: format!("{{\"i\":{i}}}"),
                        key: None,
                        delay_ms: Some(3_600_000),
                        queue: None,
                        awaits: false,
                    });
                }
                Ok(Outcome::Continue)
            }
            "stage_fat" => {
                let args = format!("{{\"pad\":\"{}\"}}", "p".repeat(900 << 10));
                for i in 0..20 {
                    let _ = staging::enqueue(&staging::Job {
                        workflow: me.to_string(),
                        args: args.clone(),
                        key: Some(format!("fat-{i}")),
                        delay_ms: Some(3_600_000),
                        queue: None,
                        awaits: false,
                    });
                }
                Ok(Outcome::Continue)
            }
            "host_traffic" => {
                let value = format!("\"{}\"", "t".repeat(512 << 10));
                for _ in 0..2_048 {
                    let _ = attributes::set("traffic", &value);
                }
                Ok(Outcome::Continue)
            }
            "chain" => {
                let n = attributes::get("n")
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                let args = format!("{{\"from\":{},\"n\":{}}}", input.run_id, n + 1);
                match staging::enqueue(&staging::Job {
                    workflow: me.to_string(),
                    args,
                    key: None,
                    delay_ms: None,
                    queue: None,
                    awaits: false,
                }) {
                    Ok(_) => Ok(Outcome::Continue),
                    Err(e) => Err(StepError {
                        message: e,
                        retryable: false,
                    }),
                }
            }
            "random_flood" => {
                // 25 MiB of random bytes through wasi:random (wasi-libc's
                // `getentropy` asks the host for at most 256 per call).
                unsafe extern "C" {
                    fn getentropy(buf: *mut u8, len: usize) -> i32;
                }
                let mut buf = [0u8; 256];
                let mut sum = 0u64;
                for _ in 0..100_000 {
                    // SAFETY: `buf` is valid for 256 bytes.
                    if unsafe { getentropy(buf.as_mut_ptr(), buf.len()) } != 0 {
                        break;
                    }
                    sum = sum.wrapping_add(u64::from(buf[0]));
                }
                Ok(Outcome::Finish(sum.to_string()))
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(Outcome::Continue)
            }
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

//! Shared set-up: guests built once per test binary, a fresh database and
//! cache per test, and manifests written on the fly around the scripted guest.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use acidic::{Host, HostConfig};
use tempfile::TempDir;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Builds the Rust guest examples (once per test binary) and returns their output folder.
pub fn guests() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = root().join("guest-examples/rust");
            let target = dir.join("target");
            let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--manifest-path",
                ])
                .arg(dir.join("Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .output()
                .map_err(|e| format!("cannot run cargo: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "building the guest examples failed (is the wasm32-wasip2 target installed? \
                     `rustup target add wasm32-wasip2`):\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(target.join("wasm32-wasip2/release"))
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The path of a built guest component, e.g. `component("scripted")`.
pub fn component(name: &str) -> PathBuf {
    guests().join(format!("{}.wasm", name.replace('-', "_")))
}

/// A test's own database file and component cache.
pub struct Env {
    pub dir: TempDir,
}

impl Env {
    pub fn new() -> Env {
        guests();
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn db(&self) -> String {
        self.dir.path().join("acidic.db").display().to_string()
    }

    pub fn config(&self) -> HostConfig {
        let mut c = HostConfig::new(self.db());
        c.cache_dir = Some(self.dir.path().join("cache"));
        c
    }

    pub async fn host(&self) -> Host {
        Host::open(self.config()).await.expect("open host")
    }

    /// Writes a manifest named `name` whose steps all use the scripted guest.
    /// `steps` are (name, extra TOML lines); `defaults` is the `[defaults]` body.
    pub fn scripted(&self, name: &str, defaults: &str, steps: &[(&str, &str)]) -> PathBuf {
        let mut text = format!(
            "name = \"{name}\"\n\n[defaults]\nbackoff = \"1ms\"\nmax_backoff = \"2ms\"\n{defaults}\n"
        );
        for (step, extra) in steps {
            text.push_str(&format!(
                "\n[[step]]\nname = \"{step}\"\ncomponent = \"{}\"\n{extra}\n",
                component("scripted").display()
            ));
        }
        self.write(&format!("{name}.toml"), &text)
    }

    pub fn write(&self, file: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(file);
        std::fs::write(&path, text).expect("write file");
        path
    }
}

/// Instances created so far by `host`.
pub fn instances(host: &Host) -> u64 {
    host.metrics()
        .instantiations
        .load(std::sync::atomic::Ordering::Relaxed)
}

//! `acidic new LANGUAGE DIR`: a project of its own for a workflow whose
//! steps are in one language, outside the acidic checkout. It holds the
//! step (one component serving two steps), `workflow.toml`, a `Makefile`
//! whose `make` builds the component and `make run` runs it, a README and
//! the language's project file, which names the SDK in its installable form
//! from the checkout: the crate `acidic-guest` by path, the npm package
//! `acidic-step` as a `file:` dependency, the pip package `acidic-step` as a
//! `file://` requirement, the Go module `acidic.example/acidic` with a
//! replace, the C header on the include path. The checkout's
//! `guest-examples/build-step.sh` (through `make step`) does the build, with
//! the toolchains it pins, installed there the first time.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::json;

use super::args::Language;

/// Where the templates are: one set of files per language, and the files
/// every project has.
mod templates {
    pub const WORKFLOW: &str = include_str!("../../templates/new/workflow.toml");
    pub const MAKEFILE: &str = include_str!("../../templates/new/Makefile");
    pub const README: &str = include_str!("../../templates/new/README.md");
    pub const GITIGNORE: &str = include_str!("../../templates/new/gitignore");
    pub const RUST_CARGO: &str = include_str!("../../templates/new/rust/Cargo.toml");
    pub const RUST_LIB: &str = include_str!("../../templates/new/rust/src/lib.rs");
    pub const JS_PACKAGE: &str = include_str!("../../templates/new/js/package.json");
    pub const JS_STEP: &str = include_str!("../../templates/new/js/step.js");
    pub const JS_NPMRC: &str = include_str!("../../templates/new/js/npmrc");
    pub const PY_REQUIREMENTS: &str = include_str!("../../templates/new/python/requirements.txt");
    pub const PY_STEP: &str = include_str!("../../templates/new/python/step.py");
    pub const GO_MOD: &str = include_str!("../../templates/new/go/go.mod");
    pub const GO_MAIN: &str = include_str!("../../templates/new/go/main.go");
    pub const C_STEP: &str = include_str!("../../templates/new/c/step.c");
}

/// What one language's project is made of.
struct Kind {
    /// As people write it.
    language: &'static str,
    /// The `acidic new` argument.
    arg: &'static str,
    /// docs/steps/<doc>.md
    doc: &'static str,
    /// The files (path in the project, template), the step's code first.
    files: &'static [(&'static str, &'static str)],
    /// `make step SRC=…`, relative to the project: a file, or the folder.
    source: &'static str,
    /// What the README says of the project file.
    project_file: &'static str,
    /// Prerequisites of `make build`, and the rules that make them.
    build_needs: &'static str,
    extra_rules: &'static str,
}

fn kind(language: Language) -> Kind {
    use templates::*;
    match language {
        Language::Rust => Kind {
            language: "Rust",
            arg: "rust",
            doc: "rust",
            files: &[("src/lib.rs", RUST_LIB), ("Cargo.toml", RUST_CARGO)],
            source: "",
            project_file: "- `Cargo.toml`: the crate, a `cdylib`; it depends on the SDK crate \
                           `acidic-guest` by path. `Cargo.lock` starts from the versions acidic's \
                           own guests are built with.\n",
            build_needs: "",
            extra_rules: "",
        },
        Language::Js => Kind {
            language: "JavaScript",
            arg: "js",
            doc: "javascript",
            files: &[
                ("step.js", JS_STEP),
                ("package.json", JS_PACKAGE),
                (".npmrc", JS_NPMRC),
            ],
            source: "step.js",
            project_file: "- `package.json`: depends on the SDK package `acidic-step` (a folder \
                           of the acidic checkout), copied into `node_modules` (`.npmrc`: the \
                           build sees only this folder); `make` runs `npm install` when either \
                           changes. Pure-JavaScript packages you add are built into the component.\n",
            build_needs: " node_modules/.package-lock.json",
            extra_rules: "\n# The SDK and any other dependency in package.json, into node_modules.\n\
                          node_modules/.package-lock.json: package.json \
                          $(ACIDIC_HOME)/guest-examples/js/sdk/acidic.js\n\
                          \trm -rf node_modules/acidic-step\n\
                          \tnpm install --no-audit --no-fund --loglevel=error\n",
        },
        Language::Python => Kind {
            language: "Python",
            arg: "python",
            doc: "python",
            files: &[("step.py", PY_STEP), ("requirements.txt", PY_REQUIREMENTS)],
            source: "step.py",
            project_file: "- `requirements.txt`: what is built into the component: the SDK \
                           package `acidic-step` (a folder of the acidic checkout) and any \
                           pure-Python package you add.\n",
            build_needs: "",
            extra_rules: "",
        },
        Language::Go => Kind {
            language: "Go",
            arg: "go",
            doc: "go",
            files: &[("main.go", GO_MAIN), ("go.mod", GO_MOD)],
            source: "",
            project_file: "- `go.mod`: requires the SDK module `acidic.example/acidic`, replaced \
                           by its folder in the acidic checkout.\n",
            build_needs: "",
            extra_rules: "",
        },
        Language::C => Kind {
            language: "C",
            arg: "c",
            doc: "c",
            files: &[("step.c", C_STEP)],
            source: "step.c",
            project_file: "- the SDK is the header `acidic.h` (and `acidic.c`, compiled with the \
                           step) in the acidic checkout's `guest-examples/c/sdk`.\n",
            build_needs: "",
            extra_rules: "",
        },
    }
}

/// Writes the project; returns the exit code.
pub fn scaffold(
    language: Language,
    dir: &Path,
    name: Option<&str>,
    acidic_home: Option<&Path>,
    json: bool,
) -> anyhow::Result<u8> {
    let home = checkout(acidic_home)?;
    let name = match name {
        Some(name) => name.to_string(),
        None => dir
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .with_context(|| format!("{} names no folder: pass --name", dir.display()))?,
    };
    check_name(&name)?;
    // make cannot build in a folder whose path has spaces or quotes.
    let absolute =
        std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    path_text(&absolute)?;
    if dir.exists() {
        let mut entries = fs::read_dir(dir).with_context(|| {
            format!("{} exists and is not a folder to write into", dir.display())
        })?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty: acidic new writes into a new or empty folder",
                dir.display()
            );
        }
    }
    let exe = std::env::current_exe().context("finding this acidic's path for the Makefile")?;
    let kind = kind(language);
    let home_text = path_text(&home)?;
    let exe_text = path_text(&exe)?;
    let module = name.replace('-', "_");
    let code = kind.files[0].0;
    let fill = |template: &str| {
        template
            .replace("{{project_files}}", kind.project_file)
            .replace("{{build_needs}}", kind.build_needs)
            .replace("{{extra_rules}}", kind.extra_rules)
            .replace("{{name}}", &name)
            .replace("{{module}}", &module)
            .replace("{{language}}", kind.language)
            .replace("{{lang}}", kind.arg)
            .replace("{{doc}}", kind.doc)
            .replace("{{source}}", kind.source)
            .replace("{{code}}", code)
            .replace("{{acidic_home}}", home_text)
            .replace("{{acidic}}", exe_text)
    };

    let mut files: Vec<(String, String)> = kind
        .files
        .iter()
        .map(|(path, template)| (path.to_string(), fill(template)))
        .collect();
    files.push(("workflow.toml".into(), fill(templates::WORKFLOW)));
    files.push(("Makefile".into(), fill(templates::MAKEFILE)));
    files.push(("README.md".into(), fill(templates::README)));
    files.push((".gitignore".into(), templates::GITIGNORE.to_string()));
    if language == Language::Rust {
        // The versions acidic's own guests are built and tested with.
        let lock = home.join("guest-examples/rust/Cargo.lock");
        if let Ok(text) = fs::read_to_string(&lock) {
            files.push(("Cargo.lock".into(), text));
        }
    }

    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }

    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    if json {
        let out = json!({
            "name": name,
            "language": kind.arg,
            "dir": dir,
            "files": names,
            "acidic_home": home,
        });
        println!("{out}");
    } else {
        println!(
            "created {}: a {} workflow `{name}` ({})",
            dir.display(),
            kind.language,
            names.join(", ")
        );
        println!(
            "next: cd {} && make run",
            shell_word(&dir.display().to_string())
        );
        println!("      (builds target/{module}.wasm, then registers workflow.toml and runs it)");
    }
    Ok(0)
}

/// The acidic checkout with the SDKs and the build script.
fn checkout(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let (home, from) = match given {
        Some(home) => (home.to_path_buf(), "--acidic-home (or ACIDIC_HOME)"),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
            "the checkout this acidic was built from",
        ),
    };
    let script = home.join("guest-examples/build-step.sh");
    if !script.is_file() {
        bail!(
            "{} ({from}) is not an acidic checkout: it has no guest-examples/build-step.sh; \
             pass --acidic-home DIR or set ACIDIC_HOME to one (the SDKs and toolchains live there)",
            home.display()
        );
    }
    home.canonicalize()
        .with_context(|| format!("resolving {}", home.display()))
}

/// A workflow name that is also a crate, module, package and file name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "cannot name a workflow `{name}`: use up to 64 lowercase letters, digits, '-' and '_', \
             starting with a letter (pass --name to choose another than the folder's)"
        );
    }
    Ok(())
}

/// A path as the templates write it (into Makefiles and TOML: no quotes,
/// no spaces).
fn path_text(path: &Path) -> anyhow::Result<&str> {
    match path.to_str() {
        Some(text) if !text.contains(|c: char| c.is_whitespace() || "\"'\\$#".contains(c)) => {
            Ok(text)
        }
        _ => bail!(
            "{} has spaces, quotes or other characters a Makefile cannot hold: \
             acidic new needs its folder, the acidic checkout and this binary at plainer paths",
            path.display()
        ),
    }
}

/// `text` quoted for a shell if it needs it.
fn shell_word(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_suit_every_language() {
        for good in ["greet", "my-step", "a1_b2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Greet", "1step", "my step", "ü", &"a".repeat(65)] {
            let err = check_name(bad).expect_err(bad).to_string();
            assert!(err.contains("--name"), "{err}");
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        for language in [
            Language::Rust,
            Language::Js,
            Language::Python,
            Language::Go,
            Language::C,
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let project = dir.path().join("greet");
            scaffold(
                language,
                &project,
                None,
                Some(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))),
                true,
            )
            .expect("scaffold");
            for entry in walk(&project) {
                let text = fs::read_to_string(&entry).expect("read");
                assert!(
                    !text.contains("{{"),
                    "{} keeps a placeholder",
                    entry.display()
                );
            }
            let again = scaffold(language, &project, None, None, true)
                .expect_err("a second scaffold into the same folder")
                .to_string();
            assert!(again.contains("is not empty"), "{again}");
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }
}

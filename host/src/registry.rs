//! The registry: workflow versions and their components. Registering
//! validates a manifest and every component it names, stores the components
//! by digest and the definition as a version; lookups serve the versions
//! runs are pinned to from a cache, and components in their compiled form.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::host::{Host, Registration};
use crate::manifest::Manifest;
use crate::run::sha256_hex;
use crate::runtime::{Prepared, Runtime};
use crate::store::{Pruned, Store, WorkflowVersion};
use crate::workflow::{Definition, Workflow};

/// Workflow versions already read, by name and version (a version never
/// changes once registered, so entries never go stale).
#[derive(Default)]
pub(crate) struct WorkflowCache(Mutex<Versions>);

/// Workflow versions by name and version, and the latest version read of
/// each workflow.
#[derive(Default)]
struct Versions {
    by_version: HashMap<(String, u32), Arc<Workflow>>,
    latest: HashMap<String, Arc<Workflow>>,
}

impl WorkflowCache {
    fn get(&self, key: &(String, u32)) -> Result<Option<Arc<Workflow>>> {
        Ok(self.lock()?.by_version.get(key).cloned())
    }

    fn insert(&self, key: (String, u32), workflow: Arc<Workflow>) -> Result<()> {
        self.lock()?.by_version.insert(key, workflow);
        Ok(())
    }

    fn latest(&self, name: &str) -> Result<Option<Arc<Workflow>>> {
        Ok(self.lock()?.latest.get(name).cloned())
    }

    fn set_latest(&self, workflow: Arc<Workflow>) -> Result<()> {
        let mut versions = self.lock()?;
        let name = workflow.definition.name.clone();
        versions
            .by_version
            .insert((name.clone(), workflow.version), workflow.clone());
        versions.latest.insert(name, workflow);
        Ok(())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Versions>> {
        self.0
            .lock()
            .map_err(|_| Error::Engine("workflow cache lock poisoned".into()))
    }
}

impl Host {
    /// Validates the manifest at `path` and every component it names, stores
    /// the components by digest, and records the definition as a new version
    /// if it changed. A workflow its steps await must be registered already.
    pub async fn register(&self, path: &Path) -> Result<Registration> {
        let mut registered = self.register_all(&[path]).await?;
        registered
            .pop()
            .ok_or_else(|| Error::Engine("registering one manifest registered none".into()))
    }

    /// [`Host::register`] for several manifests at once: each is validated
    /// before any is stored, and a workflow one of them awaits may be
    /// another of them.
    pub async fn register_all(&self, paths: &[&Path]) -> Result<Vec<Registration>> {
        let manifests = paths
            .iter()
            .map(|p| Manifest::load(p))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let batch: Vec<&str> = manifests.iter().map(|m| m.name.as_str()).collect();
        for manifest in &manifests {
            for (i, step) in manifest.steps.iter().enumerate() {
                let Some(awaits) = &step.awaits else { continue };
                let known = batch.contains(&awaits.workflow.as_str())
                    || self.store.workflow(&awaits.workflow, None).await?.is_some();
                if !known {
                    return Err(Error::Manifest(crate::error::ManifestError {
                        path: manifest.path.clone(),
                        line: None,
                        field: format!("step[{i}].awaits.workflow"),
                        message: format!(
                            "`{}` is not registered: register it first, or in the same command \
                             (acidic register {} <its manifest>)",
                            awaits.workflow,
                            manifest.path.display()
                        ),
                    }));
                }
            }
        }
        let mut registered = Vec::with_capacity(manifests.len());
        for manifest in manifests {
            registered.push(self.register_manifest(manifest).await?);
        }
        Ok(registered)
    }

    async fn register_manifest(&self, manifest: Manifest) -> Result<Registration> {
        // The components the latest version has, by what they were built
        // from: a rebuild of one source keeps its component.
        let built: HashMap<String, String> = match self.latest(&manifest.name).await {
            Ok(latest) => latest
                .definition
                .steps
                .iter()
                .filter_map(|s| Some((s.source.clone()?, s.component.clone())))
                .collect(),
            Err(Error::UnknownWorkflow(_)) => HashMap::new(),
            Err(e) => return Err(e),
        };
        let mut digests = Vec::with_capacity(manifest.steps.len());
        let mut by_file: HashMap<&Path, (String, Option<String>)> = HashMap::new();
        for (i, step) in manifest.steps.iter().enumerate() {
            if let Some(d) = by_file.get(step.component.as_path()) {
                digests.push(d.clone());
                continue;
            }
            let file = step.component.display().to_string();
            let bytes = std::fs::read(&step.component).map_err(|e| Error::Component {
                path: file.clone(),
                message: format!("cannot read: {e}"),
            })?;
            let digest = sha256_hex(&bytes);
            let source = built_from(&step.component, &digest);
            if let Some(kept) = source.as_ref().and_then(|s| built.get(s)) {
                let entry = (kept.clone(), source.clone());
                by_file.insert(step.component.as_path(), entry.clone());
                digests.push(entry);
                continue;
            }
            let for_cache = bytes.clone();
            // A file that is not a step component is the manifest's error,
            // said in one line at the line that names it.
            self.runtime
                .prepare(&digest, || async move { Ok(for_cache) })
                .await
                .map_err(|e| match e {
                    Error::Component { message, .. } => {
                        Error::Manifest(crate::error::ManifestError {
                            path: manifest.path.clone(),
                            line: Some(step.component_line),
                            field: format!("step[{i}].component"),
                            message: format!("{file}: {}", not_a_component(&bytes, &message)),
                        })
                    }
                    other => other,
                })?;
            self.store.put_component(&digest, &bytes).await?;
            by_file.insert(step.component.as_path(), (digest.clone(), source.clone()));
            digests.push((digest, source));
        }
        let definition = Definition::from_manifest(&manifest, &digests);
        let (version, new) = self.store.register_workflow(&definition).await?;
        Ok(Registration {
            workflow: manifest.name,
            version,
            new,
            steps: definition.steps.len(),
        })
    }

    /// The latest registered version of workflow `name`.
    pub async fn workflow(&self, name: &str) -> Result<Arc<Workflow>> {
        self.latest(name).await
    }

    /// Version `version` of workflow `name` (its latest if `None`), with
    /// every version it has, oldest first.
    pub async fn workflow_info(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<(Arc<Workflow>, Vec<WorkflowVersion>)> {
        let versions = self.store.workflow_versions(Some(name)).await?;
        let Some(latest) = versions.last() else {
            return Err(Error::UnknownWorkflow(name.to_string()));
        };
        let version = version.unwrap_or(latest.version);
        if !versions.iter().any(|v| v.version == version) {
            let known: Vec<String> = versions.iter().map(|v| v.version.to_string()).collect();
            return Err(Error::NoSuchVersion {
                name: name.to_string(),
                version,
                known: known.join(", "),
            });
        }
        Ok((self.version(name, version).await?, versions))
    }

    /// Deletes the workflow versions no run uses (never a workflow's
    /// latest), the components no remaining version names, and their
    /// compiled forms in the cache. What changed within `grace` is kept.
    pub async fn prune_workflows(&self, grace: std::time::Duration) -> Result<Pruned> {
        let pruned = self.store.prune_workflows(grace).await?;
        for digest in &pruned.components {
            self.runtime.forget(digest)?;
        }
        Ok(pruned)
    }

    /// The registry's lookups, for the executor.
    pub(crate) fn registry(&self) -> Registry<'_> {
        Registry {
            store: &self.store,
            runtime: &self.runtime,
            cache: &self.workflows,
        }
    }

    /// See [`Registry::latest`].
    pub(crate) async fn latest(&self, name: &str) -> Result<Arc<Workflow>> {
        self.registry().latest(name).await
    }

    /// See [`Registry::version`].
    pub(crate) async fn version(&self, name: &str, version: u32) -> Result<Arc<Workflow>> {
        self.registry().version(name, version).await
    }
}

/// Lookups of workflow versions and compiled components: what the executor
/// needs of the registry.
#[derive(Clone, Copy)]
pub(crate) struct Registry<'a> {
    store: &'a Store,
    runtime: &'a Runtime,
    cache: &'a WorkflowCache,
}

impl Registry<'_> {
    /// The latest version of workflow `name`, read from the store (so a
    /// version registered by another process is seen) and cached.
    pub(crate) async fn latest(&self, name: &str) -> Result<Arc<Workflow>> {
        let workflow = self
            .store
            .workflow(name, None)
            .await?
            .ok_or_else(|| Error::UnknownWorkflow(name.to_string()))?;
        let workflow = Arc::new(workflow);
        self.cache.set_latest(workflow.clone())?;
        Ok(workflow)
    }

    /// The latest version of workflow `name` this host has read, without
    /// asking the store again; else [`Registry::latest`]. It may be stale:
    /// [`crate::store::Store::start_run`] refuses to start a new run on a
    /// version that is not the latest, and the caller reads it again.
    pub(crate) async fn latest_known(&self, name: &str) -> Result<Arc<Workflow>> {
        match self.cache.latest(name)? {
            Some(workflow) => Ok(workflow),
            None => self.latest(name).await,
        }
    }

    /// Version `version` of workflow `name`, the one a run is pinned to:
    /// from the cache, else the store.
    pub(crate) async fn version(&self, name: &str, version: u32) -> Result<Arc<Workflow>> {
        let key = (name.to_string(), version);
        if let Some(w) = self.cache.get(&key)? {
            return Ok(w);
        }
        let workflow = self
            .store
            .workflow(name, Some(version))
            .await?
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "workflow `{name}` version {version} is pinned by a run but missing"
                ))
            })?;
        let workflow = Arc::new(workflow);
        self.cache.insert(key, workflow.clone())?;
        Ok(workflow)
    }

    /// The compiled form of component `digest`, ready to instantiate: from
    /// the runtime's caches, else compiled from the bytes the store keeps.
    pub(crate) async fn prepare(&self, digest: &str) -> Result<Prepared> {
        self.runtime
            .prepare(digest, || async {
                self.store.component(digest).await?.ok_or_else(|| {
                    Error::Corrupt(format!("component {digest} is referenced but not stored"))
                })
            })
            .await
    }
}

/// Why `bytes` are not a step component, in one line: not WebAssembly at
/// all, a core module rather than a component, or the engine's first words.
fn not_a_component(bytes: &[u8], message: &str) -> String {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return "not a WebAssembly file (build the step into a .wasm component first)".to_string();
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        return "a core WebAssembly module, not a component (build for wasm32-wasip2, \
                or wrap it with `wasm-tools component new`)"
            .to_string();
    }
    let one_line: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut line = one_line.join(" ");
    if line.len() > 300 {
        let mut cut = 300;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}

/// What the component at `path` (whose bytes have `digest`) was built from,
/// if its build left a note beside it (`<file>.source`: the source file,
/// the digest of every input, the digest of the component it made) and the
/// note is about these bytes.
fn built_from(path: &Path, digest: &str) -> Option<String> {
    let mut note = path.as_os_str().to_owned();
    note.push(".source");
    let text = std::fs::read_to_string(note).ok()?;
    let mut lines = text.lines().skip(1);
    let (inputs, made) = (lines.next()?.trim(), lines.next()?.trim());
    let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    (made == digest && hex(inputs)).then(|| inputs.to_string())
}

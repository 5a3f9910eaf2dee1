//! The WebAssembly side: one engine per host, compiled components cached on
//! disk and as pre-instantiated forms in memory, and a fresh sandboxed
//! instance for every step call.
//!
//! One concern per file: `state` is a call's store data, `limits` the
//! memory budget, host-call fuel and checks on guest values, `imports` the
//! acidic imports, `compat` the 0.1.0 shims over them, `outbound` the HTTP policy,
//! `output` the guest's stdout and stderr. This file holds the engine, the
//! component cache, the epoch ticker and the call itself.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, UpdateDeadline,
};

use crate::error::{Error, Result};
use crate::manifest::{MAX_MEMORY, StepPolicy};
use crate::run::{ErrorKind, sha256_hex};

mod compat;
mod imports;
pub mod limits;
mod outbound;
mod output;
mod state;

pub use imports::{MAX_DELAY, MAX_KEY, MAX_QUEUE_NAME, MAX_STATEMENT};
pub use state::{Refusal, StagedJob, StepState};

mod bindings {
    // The world guests build against today. Its `run` has the same type in
    // 0.1.0 and 0.2.0, so one pre-instantiated form serves guests of every
    // version; only the imports differ by version, and the linker has all.
    wasmtime::component::bindgen!({
        path: "../wit/step@0.3.0",
        world: "step",
        imports: {
            "acidic:step/staging.children": async,
            "acidic:step/sql.execute": async,
            "acidic:step/sql.query": async,
        },
        exports: { default: async },
    });

    /// `acidic:step@0.2.0`, for guests built before `set-http-status` existed.
    pub mod v0_2 {
        wasmtime::component::bindgen!({
            path: "../wit/step@0.2.0",
            world: "step",
            imports: {
                "acidic:step/staging.children": async,
                "acidic:step/sql.execute": async,
                "acidic:step/sql.query": async,
            },
            exports: { default: async },
        });
    }

    /// `acidic:step@0.1.0`, for guests built before `sql` existed.
    pub mod v0_1 {
        wasmtime::component::bindgen!({
            path: "../wit/step@0.1.0",
            world: "step",
            imports: { "acidic:step/staging.children": async },
            exports: { default: async },
        });
    }
}

pub use bindings::acidic::step::context::{Outcome, StepError, StepInput};
use bindings::{Step, StepPre};

/// How often the engine's epoch advances: the granularity of step deadlines.
const TICK: Duration = Duration::from_millis(10);

/// Counters of the runtime's work, for tests and benchmarks.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Components compiled from bytes.
    pub compiles: AtomicU64,
    /// Components loaded from the on-disk cache.
    pub cache_loads: AtomicU64,
    /// Instances created (one per step call).
    pub instantiations: AtomicU64,
}

/// How a call into a step ended.
pub enum CallOutcome {
    /// The step answered.
    Returned(std::result::Result<Outcome, StepError>),
    /// The host stopped it, or it trapped.
    Aborted {
        /// Why.
        kind: ErrorKind,
        /// Details, with the Wasm backtrace for traps.
        message: String,
    },
}

/// A compiled component, ready to instantiate.
#[derive(Clone)]
pub struct Prepared(StepPre<StepState>);

/// The engine, its linker, and the compiled-component caches.
pub struct Runtime {
    engine: Engine,
    linker: Linker<StepState>,
    cache_dir: PathBuf,
    compat: String,
    prepared: Mutex<HashMap<String, Prepared>>,
    ticker_stop: Arc<AtomicBool>,
    /// Whether instances come from wasmtime's pooling allocator.
    pub pooling: bool,
    /// What the runtime has done.
    pub metrics: Metrics,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// An engine with epoch deadlines, caching compiled components under `cache_dir`.
    /// The pooling allocator is used when `pooling` is set and the host allows it.
    pub fn new(cache_dir: &Path, pooling: bool) -> Result<Runtime> {
        let (engine, pooling) = match pooling.then(|| Engine::new(&config(true))) {
            Some(Ok(engine)) => (engine, true),
            fallback => {
                if let Some(Err(e)) = fallback {
                    tracing::warn!(
                        "pooling allocator unavailable ({e}); using on-demand allocation"
                    );
                }
                let engine =
                    Engine::new(&config(false)).map_err(|e| Error::Engine(e.to_string()))?;
                (engine, false)
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| Error::Engine(e.to_string()))?;
        // Outbound HTTP for steps granted `allowed_outbound_hosts`; every
        // request passes the step's allow-list first (see `Outbound`).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| Error::Engine(e.to_string()))?;
        Step::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| Error::Engine(e.to_string()))?;
        bindings::v0_2::Step::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| Error::Engine(e.to_string()))?;
        bindings::v0_1::Step::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| Error::Engine(e.to_string()))?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compat = format!("{:016x}", hasher.finish());

        std::fs::create_dir_all(cache_dir).map_err(|source| Error::Cache {
            path: cache_dir.into(),
            source,
        })?;

        // One ticker per engine drives every store's deadline.
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (stop, ticking) = (ticker_stop.clone(), engine.clone());
        std::thread::Builder::new()
            .name("acidic-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| Error::Engine(format!("cannot start the epoch ticker: {e}")))?;

        Ok(Runtime {
            engine,
            linker,
            cache_dir: cache_dir.to_path_buf(),
            compat,
            prepared: Mutex::new(HashMap::new()),
            ticker_stop,
            pooling,
            metrics: Metrics::default(),
        })
    }

    /// The prepared form of component `digest`: from memory, else from the
    /// on-disk cache, else compiled from the bytes `load` returns (and cached).
    pub async fn prepare<F, Fut>(&self, digest: &str, load: F) -> Result<Prepared>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<u8>>>,
    {
        if let Some(p) = self.prepared.lock().map_err(|_| poisoned())?.get(digest) {
            return Ok(p.clone());
        }
        let path = self
            .cache_dir
            .join(format!("{digest}-{}.cwasm", self.compat));
        let component = match self.load_cached(&path) {
            Some(c) => c,
            None => {
                let bytes = load().await?;
                if sha256_hex(&bytes) != digest {
                    return Err(Error::Corrupt(format!(
                        "component {digest}: stored bytes do not match their digest"
                    )));
                }
                self.compile_to_cache(&bytes, &path, digest).await?
            }
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| Error::Component {
                path: digest.to_string(),
                message: format!("does not fit the acidic:step world: {e:#}"),
            })?;
        let pre = StepPre::new(pre).map_err(|e| Error::Component {
            path: digest.to_string(),
            message: format!("does not export acidic:step's `run`: {e:#}"),
        })?;
        let prepared = Prepared(pre);
        self.prepared
            .lock()
            .map_err(|_| poisoned())?
            .insert(digest.to_string(), prepared.clone());
        Ok(prepared)
    }

    /// Forgets component `digest`: its prepared form, and its compiled
    /// files in the cache (of every engine version). Returns how many files
    /// were deleted.
    pub fn forget(&self, digest: &str) -> Result<usize> {
        self.prepared.lock().map_err(|_| poisoned())?.remove(digest);
        let prefix = format!("{digest}-");
        let entries = match std::fs::read_dir(&self.cache_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(Error::Cache {
                    path: self.cache_dir.clone(),
                    source,
                });
            }
        };
        let mut deleted = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix) && name.ends_with(".cwasm") {
                std::fs::remove_file(entry.path()).map_err(|source| Error::Cache {
                    path: entry.path(),
                    source,
                })?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    fn load_cached(&self, path: &Path) -> Option<Component> {
        if !path.is_file() {
            return None;
        }
        // SAFETY: the file was written by `compile_to_cache` from
        // `Engine::precompile_component`, under a name that carries this
        // engine's compatibility hash; wasmtime checks the header again.
        match unsafe { Component::deserialize_file(&self.engine, path) } {
            Ok(c) => {
                self.metrics.cache_loads.fetch_add(1, Ordering::Relaxed);
                Some(c)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "discarding unreadable cached component: {e}");
                let _ = std::fs::remove_file(path);
                None
            }
        }
    }

    async fn compile_to_cache(&self, bytes: &[u8], path: &Path, digest: &str) -> Result<Component> {
        let engine = self.engine.clone();
        let owned = bytes.to_vec();
        let compiled = tokio::task::spawn_blocking(move || engine.precompile_component(&owned))
            .await
            .map_err(|e| Error::Engine(e.to_string()))?
            .map_err(|e| Error::Component {
                path: digest.to_string(),
                message: format!("not a valid component: {e:#}"),
            })?;
        self.metrics.compiles.fetch_add(1, Ordering::Relaxed);
        // Write then rename, so a concurrent reader never sees half a file.
        let tmp = path.with_extension(format!("tmp{}", fastrand::u32(..)));
        std::fs::write(&tmp, &compiled).map_err(|source| Error::Cache {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, path).map_err(|source| Error::Cache {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: as in `load_cached`: we just wrote this file from `precompile_component`.
        unsafe { Component::deserialize_file(&self.engine, path) }.map_err(|e| Error::Component {
            path: digest.to_string(),
            message: format!("cannot load compiled form: {e:#}"),
        })
    }

    /// For `acidic bench`: how long compiling `bytes` takes, and a mean load
    /// of the compiled form from a file under `scratch` (as the cache loads it).
    pub fn time_compile_and_load(
        &self,
        bytes: &[u8],
        scratch: &Path,
    ) -> Result<(Duration, Duration)> {
        let start = Instant::now();
        let compiled = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| Error::Engine(format!("not a valid component: {e:#}")))?;
        let compile = start.elapsed();
        let path = scratch.join("bench.cwasm");
        std::fs::write(&path, &compiled).map_err(|source| Error::Cache {
            path: path.clone(),
            source,
        })?;
        const LOADS: u32 = 20;
        let start = Instant::now();
        for _ in 0..LOADS {
            // SAFETY: written just above by `precompile_component` of this engine.
            unsafe { Component::deserialize_file(&self.engine, &path) }
                .map_err(|e| Error::Engine(format!("cannot load compiled form: {e:#}")))?;
        }
        let load = start.elapsed() / LOADS;
        let _ = std::fs::remove_file(&path);
        Ok((compile, load))
    }

    /// Instantiates `prepared` afresh and calls its `run` with `input`, under
    /// `policy`'s deadline, memory budget and fuel. Returns the state with
    /// the step's buffered effects.
    ///
    /// The deadline holds wherever the step is: running Wasm, it is stopped
    /// by the epoch; waiting in a host call (SQL, HTTP, a sleep), the whole
    /// call is dropped, which cancels the wait.
    pub async fn call(
        &self,
        prepared: &Prepared,
        mut state: StepState,
        input: &StepInput,
        policy: &StepPolicy,
    ) -> (StepState, CallOutcome) {
        state.start_clock();
        let deadline = state.deadline();
        let mut store = wasmtime::Store::new(&self.engine, state);
        store.limiter(|s| &mut s.budget);
        // Fuel is metered engine-wide; a step without a budget gets all of it.
        if let Err(e) = store.set_fuel(policy.fuel.unwrap_or(u64::MAX)) {
            let state = store.into_data();
            let message = format!("cannot set the fuel budget: {e}");
            let kind = ErrorKind::Instantiate;
            return (state, CallOutcome::Aborted { kind, message });
        }
        // Every tick the guest yields to the executor, so a busy step never
        // holds a runtime thread for long; past the deadline it is stopped.
        // The tick also settles what the host charged for its calls.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            if Instant::now() >= deadline {
                ctx.data_mut().timed_out = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            let fuel = ctx.get_fuel()?;
            if !ctx.data_mut().fuel.settle(fuel) {
                return Err(wasmtime::Trap::OutOfFuel.into());
            }
            // tokio's yield lets its I/O driver run too, so the database work of
            // other runs proceeds even on a single-threaded runtime.
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });

        let work = async {
            let instance = prepared.0.instantiate_async(&mut store).await?;
            self.metrics.instantiations.fetch_add(1, Ordering::Relaxed);
            Ok::<_, wasmtime::Error>(instance.call_run(&mut store, input).await)
        };
        // Two ticks of grace, so a guest running Wasm is stopped by its epoch
        // (the same kind, with its backtrace) before its call is dropped.
        let cut_off = tokio::time::Instant::from_std(deadline + 2 * TICK);
        let finished = tokio::time::timeout_at(cut_off, work).await;
        let fuel_left = store.get_fuel().unwrap_or(0);
        let host_fuel_gone = !store.data_mut().fuel.settle(fuel_left);
        let mut state = store.into_data();
        state.emit_output();
        let fuel_message = || {
            format!(
                "fuel budget of {} units burnt (host calls are charged too)",
                policy.fuel.unwrap_or(u64::MAX)
            )
        };
        let result = match finished {
            Err(_elapsed) => {
                let message = format!(
                    "deadline of {:?} passed while the step waited in a host call (SQL, HTTP or a sleep)",
                    policy.timeout
                );
                let kind = ErrorKind::Timeout;
                return (state, CallOutcome::Aborted { kind, message });
            }
            Ok(Err(e)) => {
                let message = format!("cannot instantiate: {e:#}");
                let kind = if state.budget.hit {
                    ErrorKind::MemoryLimit
                } else if state.timed_out {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Instantiate
                };
                return (state, CallOutcome::Aborted { kind, message });
            }
            Ok(Ok(result)) => result,
        };
        let outcome = match result {
            Ok(_) if host_fuel_gone => CallOutcome::Aborted {
                kind: ErrorKind::FuelExhausted,
                message: fuel_message(),
            },
            Ok(answer) => CallOutcome::Returned(answer),
            Err(e) => {
                let out_of_fuel =
                    e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::OutOfFuel);
                let (kind, message) = if out_of_fuel || host_fuel_gone {
                    (ErrorKind::FuelExhausted, fuel_message())
                } else if state.budget.hit {
                    (
                        ErrorKind::MemoryLimit,
                        format!(
                            "memory cap of {} bytes (linear memory and what the host holds for the step) reached: {e:#}",
                            policy.memory
                        ),
                    )
                } else if state.timed_out {
                    (
                        ErrorKind::Timeout,
                        format!("deadline of {:?} passed", policy.timeout),
                    )
                } else {
                    (ErrorKind::Trap, format!("{e:?}"))
                };
                CallOutcome::Aborted { kind, message }
            }
        };
        (state, outcome)
    }
}

fn poisoned() -> Error {
    Error::Engine("component cache lock poisoned by a panic".into())
}

fn config(pooling: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    // Metered for every step so a manifest can bound any of them; a step
    // without a `fuel` budget gets u64::MAX, which it cannot burn.
    config.consume_fuel(true);
    config.wasm_backtrace_max_frames(NonZeroUsize::new(32));
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(256)
            .total_core_instances(1024)
            .total_memories(256)
            .total_tables(1024)
            .total_stacks(256)
            .max_core_instances_per_component(64)
            .max_memories_per_component(16)
            .max_tables_per_component(64)
            .max_memory_size(usize::try_from(MAX_MEMORY).unwrap_or(usize::MAX))
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

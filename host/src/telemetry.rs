//! What the host counts for `GET /metrics`, in the Prometheus text format:
//! step calls and their durations, and how long runs wait in the queue
//! (recorded as they happen), runs by workflow, queue and status (read from
//! the database at each scrape, so every process sharing it reports the same),
//! and, once `serve` registers them, HTTP requests and idempotent outcomes.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::Result;
use crate::run::now_ms;
use crate::store::Store;

/// Labels of a step call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// Workflow.
    pub workflow: String,
    /// Step.
    pub step: String,
    /// `ok`, or the error kind of the failed call.
    pub outcome: String,
}

/// Labels of a step's duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepNameLabels {
    /// Workflow.
    pub workflow: String,
    /// Step.
    pub step: String,
}

/// A workflow.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkflowLabels {
    /// Workflow.
    pub workflow: String,
}

/// Runs of a workflow in a status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// Workflow.
    pub workflow: String,
    /// Status.
    pub status: String,
}

/// Runs of a queue in a status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// Queue.
    pub queue: String,
    /// Status.
    pub status: String,
}

/// A queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueName {
    /// Queue.
    pub queue: String,
}

fn seconds_buckets() -> Histogram {
    // 1 ms to about 9 minutes.
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

/// The host's metrics and the registry they are encoded from.
pub struct Telemetry {
    registry: Mutex<Registry>,
    // One scrape at a time rebuilds the run gauges.
    scrape: tokio::sync::Mutex<()>,
    step_calls: Family<StepLabels, Counter>,
    step_seconds: Family<StepNameLabels, Histogram>,
    queue_wait: Family<WorkflowLabels, Histogram>,
    runs: Family<RunLabels, Gauge>,
    queue_depth: Family<QueueLabels, Gauge>,
    oldest_runnable: Family<QueueName, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("acidic");
        let step_calls = Family::<StepLabels, Counter>::default();
        registry.register(
            "step_calls",
            "Step calls by workflow, step and outcome (ok or the error kind)",
            step_calls.clone(),
        );
        let step_seconds =
            Family::<StepNameLabels, Histogram>::new_with_constructor(seconds_buckets as fn() -> _);
        registry.register(
            "step_duration_seconds",
            "Duration of step calls, from call to commit or failure",
            step_seconds.clone(),
        );
        let queue_wait =
            Family::<WorkflowLabels, Histogram>::new_with_constructor(seconds_buckets as fn() -> _);
        registry.register(
            "queue_wait_seconds",
            "Time from a run's creation to its first claim",
            queue_wait.clone(),
        );
        let runs = Family::<RunLabels, Gauge>::default();
        registry.register("runs", "Runs stored, by workflow and status", runs.clone());
        let queue_depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Runs stored, by queue and status",
            queue_depth.clone(),
        );
        let oldest_runnable =
            Family::<QueueName, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "oldest_runnable_age_seconds",
            "How long the oldest due pending run of each queue has been runnable",
            oldest_runnable.clone(),
        );
        Telemetry {
            registry: Mutex::new(registry),
            scrape: tokio::sync::Mutex::new(()),
            step_calls,
            step_seconds,
            queue_wait,
            runs,
            queue_depth,
            oldest_runnable,
        }
    }
}

impl Telemetry {
    /// Counts a step call that ended as `outcome` after `seconds`.
    pub(crate) fn step(&self, workflow: &str, step: &str, outcome: &str, seconds: f64) {
        self.step_calls
            .get_or_create(&StepLabels {
                workflow: workflow.to_string(),
                step: step.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.step_seconds
            .get_or_create(&StepNameLabels {
                workflow: workflow.to_string(),
                step: step.to_string(),
            })
            .observe(seconds);
    }

    /// Records that a run of `workflow` created at `created_at` (ms) was claimed for the first time now.
    pub(crate) fn first_claim(&self, workflow: &str, created_at: i64) {
        let waited = (now_ms() - created_at).max(0) as f64 / 1000.0;
        self.queue_wait
            .get_or_create(&WorkflowLabels {
                workflow: workflow.to_string(),
            })
            .observe(waited);
    }

    /// Adds metrics of another part (the HTTP API) to the registry.
    pub fn register(&self, with: impl FnOnce(&mut Registry)) {
        if let Ok(mut registry) = self.registry.lock() {
            with(&mut registry);
        }
    }

    /// Every metric in the Prometheus text format, the run gauges read
    /// from `store` now.
    pub async fn encode(&self, store: &Store) -> Result<String> {
        let _one = self.scrape.lock().await;
        let counts = store.run_counts().await?;
        let now = now_ms();
        self.runs.clear();
        self.queue_depth.clear();
        self.oldest_runnable.clear();
        for c in &counts {
            self.runs
                .get_or_create(&RunLabels {
                    workflow: c.workflow.clone(),
                    status: c.status.clone(),
                })
                .inc_by(c.count);
            self.queue_depth
                .get_or_create(&QueueLabels {
                    queue: c.queue.clone(),
                    status: c.status.clone(),
                })
                .inc_by(c.count);
            if c.status == "pending" {
                let age = c
                    .oldest_due
                    .map_or(0.0, |due| (now - due).max(0) as f64 / 1000.0);
                let gauge = self.oldest_runnable.get_or_create(&QueueName {
                    queue: c.queue.clone(),
                });
                if age > gauge.get() {
                    gauge.set(age);
                }
            }
        }
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .map_err(|_| crate::Error::Serve("the metrics registry is poisoned".into()))?;
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .map_err(|e| crate::Error::Serve(format!("encoding metrics: {e}")))?;
        Ok(text)
    }
}

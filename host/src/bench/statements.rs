//! Counting the statements the host sends to its database, for `acidic
//! bench`: the driver (sqlx) logs each statement it runs (a batch sent as
//! one is one), the host each guest statement it runs on a SQLite handle
//! itself ([`GUEST_TARGET`]), and a log layer counts those events while
//! [`counted`] runs.
//! The layer is installed only by the bench; outside [`counted`] its filter
//! says no, so the driver does not even build the log line.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tracing::subscriber::Interest;
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, dynamic_filter_fn};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Where the driver logs every statement it runs.
const TARGET: &str = "sqlx::query";

/// Where the host logs a guest statement it runs without the driver.
pub const GUEST_TARGET: &str = "acidic::statement";

fn counted_target(target: &str) -> bool {
    target == TARGET || target == GUEST_TARGET
}

static INSTALLED: AtomicBool = AtomicBool::new(false);
static COUNTING: AtomicBool = AtomicBool::new(false);
static SENT: AtomicU64 = AtomicU64::new(0);

/// A log layer that counts the driver's statement events while [`counted`]
/// runs (and sees no other event).
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    INSTALLED.store(true, Ordering::Relaxed);
    let filter = dynamic_filter_fn(|meta, _| {
        COUNTING.load(Ordering::Relaxed) && counted_target(meta.target())
    })
    .with_callsite_filter(|meta| {
        if counted_target(meta.target()) {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    })
    .with_max_level_hint(LevelFilter::DEBUG);
    StatementCounter.with_filter(filter)
}

/// Runs `work`, counting the statements sent meanwhile (by anything in this
/// process, so nothing else should run). `None` if the counting layer is not
/// installed (the library used without the CLI).
pub async fn counted<T>(work: impl Future<Output = T>) -> (T, Option<u64>) {
    let before = SENT.load(Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let out = work.await;
    COUNTING.store(false, Ordering::Relaxed);
    let sent = SENT.load(Ordering::Relaxed).saturating_sub(before);
    (out, INSTALLED.load(Ordering::Relaxed).then_some(sent))
}

/// See [`layer`].
#[derive(Debug)]
struct StatementCounter;

impl<S: Subscriber> Layer<S> for StatementCounter {
    fn on_event(&self, _: &Event<'_>, _: Context<'_, S>) {
        SENT.fetch_add(1, Ordering::Relaxed);
    }
}

//! What a guest draws from the host as a stream: its stdout and stderr (kept
//! up to the step's `max_log`, charged to its fuel, and written to the
//! host's log after the call) and its random bytes (charged to its fuel).

use std::sync::{Arc, Mutex};

use super::limits::HostFuel;

/// A guest's stdout or stderr: kept up to its cap, the rest counted and
/// dropped (the guest's writes still succeed, so printing cannot trap it).
#[derive(Clone)]
pub struct Capture(Arc<Mutex<CaptureBuf>>, HostFuel);

#[derive(Default)]
struct CaptureBuf {
    kept: Vec<u8>,
    cap: usize,
    dropped: usize,
}

impl Capture {
    /// A stream keeping at most `cap` bytes, charging what it is sent to `fuel`.
    pub fn new(cap: u64, fuel: HostFuel) -> Capture {
        Capture(
            Arc::new(Mutex::new(CaptureBuf {
                cap: super::state::cap(cap),
                ..CaptureBuf::default()
            })),
            fuel,
        )
    }

    /// What was kept, and how many bytes were dropped; empties the stream.
    pub fn take(&self) -> (String, usize) {
        match self.0.lock() {
            Ok(mut b) => {
                let text = String::from_utf8_lossy(&b.kept).into_owned();
                b.kept.clear();
                (text, std::mem::take(&mut b.dropped))
            }
            Err(_) => (String::new(), 0),
        }
    }
}

impl wasmtime_wasi::cli::IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.1.charge_bytes(buf.len());
        if let Ok(mut b) = self.0.lock() {
            let room = b.cap.saturating_sub(b.kept.len());
            let kept = room.min(buf.len());
            b.kept.extend_from_slice(&buf[..kept]);
            b.dropped += buf.len() - kept;
        }
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Most bytes one `get-random-bytes` call may ask for (wasmtime's own
/// default is 64 MiB, made in the host before the guest's memory is asked).
pub const MAX_RANDOM_CALL: u64 = 64 << 10;

/// A step's random source: every word it makes costs the step's fuel, so a
/// loop over `get-random-bytes` is bounded like any other host call.
pub struct MeteredRandom {
    inner: Box<dyn rand_core::Rng + Send>,
    fuel: HostFuel,
}

impl MeteredRandom {
    /// A source seeded from the host's, charging `fuel`.
    pub fn new(fuel: HostFuel) -> MeteredRandom {
        MeteredRandom {
            inner: wasmtime_wasi::thread_rng(),
            fuel,
        }
    }
}

impl rand_core::TryRng for MeteredRandom {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        self.fuel.charge_bytes(4);
        self.inner.try_next_u32()
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.fuel.charge_bytes(8);
        self.inner.try_next_u64()
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.fuel.charge_bytes(dst.len());
        self.inner.try_fill_bytes(dst)
    }
}

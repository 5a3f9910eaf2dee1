//! Outbound HTTP from a step: only to the hosts its manifest allows, and
//! never for longer than the step has left.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use super::limits::HostFuel;
use crate::manifest::OutboundHost;

/// The step's outbound HTTP grant: a request to a host outside
/// `allowed_outbound_hosts` is refused with `HTTP-request-denied`, which the
/// guest sees, and remembered so a failing step is recorded as
/// `capability_denied`. An allowed request's connect, first-byte and
/// between-bytes timeouts are cut to the time left to the step's deadline,
/// whatever the guest asked for.
pub struct Outbound {
    allowed: Vec<OutboundHost>,
    /// Requests refused, as `scheme://host:port`.
    pub denied: Vec<String>,
    /// The step's deadline.
    pub deadline: Instant,
    /// A request that failed at the deadline (cut off by it), as `scheme://host:port`.
    pub cut_off: Arc<Mutex<Option<String>>>,
    /// The step's fuel: every byte of a request's and a response's body costs.
    fuel: HostFuel,
}

type HttpResult<T> = wasmtime_wasi_http::Result<T>;
type HttpIo = Box<dyn std::future::Future<Output = HttpResult<()>> + Send>;

impl Outbound {
    /// A grant of `allowed`, for a step due at `deadline`.
    pub fn new(allowed: Vec<OutboundHost>, deadline: Instant, fuel: HostFuel) -> Outbound {
        Outbound {
            allowed,
            denied: Vec::new(),
            deadline,
            cut_off: Arc::default(),
            fuel,
        }
    }
}

/// `body`, with every data frame charged to `fuel` as it passes.
fn metered(body: WasiBody, fuel: HostFuel) -> WasiBody {
    body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            fuel.charge_bytes(data.len());
        }
        frame
    })
    .boxed_unsync()
}

/// `asked`, or what is left, whichever is shorter (at least 1 ms, so a
/// request at the deadline fails as a timeout rather than waiting forever).
fn bounded(asked: Option<Duration>, left: Duration) -> Option<Duration> {
    let left = left.max(Duration::from_millis(1));
    Some(asked.map_or(left, |a| a.min(left)))
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: HttpIo,
    ) -> Box<dyn std::future::Future<Output = HttpResult<(http::Response<WasiBody>, HttpIo)>> + Send>
    {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        if !self.allowed.iter().any(|a| a.allows(&scheme, &host, port)) {
            if self.denied.is_empty() {
                self.denied.push(format!("{scheme}://{host}:{port}"));
            }
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        let asked = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: bounded(asked.connect_timeout, left),
            first_byte_timeout: bounded(asked.first_byte_timeout, left),
            between_bytes_timeout: bounded(asked.between_bytes_timeout, left),
        };
        let fuel = self.fuel.clone();
        let request = request.map(|body| metered(body, fuel.clone()));
        let sent = Box::into_pin(wasmtime_wasi_http::default_hooks().send_request(
            request,
            Some(options),
            fut,
        ));
        let (cut_off, deadline) = (self.cut_off.clone(), self.deadline);
        let target = format!("{scheme}://{host}:{port}");
        Box::new(async move {
            let answer = sent.await;
            // Failing at the deadline means failing because of it: the step is
            // recorded as a timeout, whatever the guest made of the error.
            if answer.is_err()
                && Instant::now() + Duration::from_millis(5) >= deadline
                && let Ok(mut cut) = cut_off.lock()
            {
                cut.get_or_insert(target);
            }
            answer.map(|(response, io)| (response.map(|body| metered(body, fuel)), io))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::bounded;
    use std::time::Duration;

    #[test]
    fn a_guest_cannot_wait_longer_than_the_step_has_left() {
        let left = Duration::from_millis(300);
        assert_eq!(bounded(None, left), Some(left));
        assert_eq!(bounded(Some(Duration::from_secs(3600)), left), Some(left));
        let short = Duration::from_millis(5);
        assert_eq!(bounded(Some(short), left), Some(short));
        assert_eq!(
            bounded(None, Duration::ZERO),
            Some(Duration::from_millis(1))
        );
    }
}

//! The one backoff rule, for step retries (a manifest's `backoff` and
//! `max_backoff`), the store's retries of aborted transactions, and the
//! worker's reconnects: the base delay doubled per try, capped, with ±25%
//! jitter so that colliding parties spread out.

use std::time::Duration;

/// Exponential backoff from `base`, capped at `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the first retry.
    pub base: Duration,
    /// The longest delay.
    pub cap: Duration,
}

impl Backoff {
    /// Backoff from `base` to at most `cap`.
    pub const fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff { base, cap }
    }

    /// The delay before retry number `tries` (1 = after the first failure),
    /// without jitter.
    pub fn ceiling(&self, tries: u32) -> Duration {
        let doublings = tries.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << doublings).min(self.cap)
    }

    /// The delay before retry number `tries`, jittered by ±25%.
    pub fn delay(&self, tries: u32) -> Duration {
        self.ceiling(tries).mul_f64(0.75 + fastrand::f64() * 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_the_cap_within_their_jitter() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(200));
        assert_eq!(b.ceiling(5), Duration::from_secs(1));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(1));
        for tries in 1..10 {
            let d = b.delay(tries);
            let c = b.ceiling(tries);
            assert!(
                d >= c.mul_f64(0.75) && d <= c.mul_f64(1.25),
                "{d:?} around {c:?}"
            );
        }
        let huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.ceiling(40), Duration::MAX, "saturates");
    }
}

//! Exponential backoff with full jitter, free of I/O: the caller sleeps.

use std::time::Duration;

/// Reconnect delays: `base · 2^n`, capped at `max`, each drawn uniformly from the upper half
/// of that range so that agents restarted together do not reconnect together.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// The next delay, given a random number (pass `token::random_u64()`).
    pub fn next_delay(&mut self, random: u64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX));
        let ceiling = exp.min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let span = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_micros(random % span)
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let first = b.next_delay(0);
        assert_eq!(first, Duration::from_millis(50));
        for _ in 0..30 {
            let d = b.next_delay(u64::MAX);
            assert!(d <= Duration::from_secs(5), "{d:?}");
        }
        assert!(b.next_delay(0) >= Duration::from_millis(2500));
        b.reset();
        assert!(b.next_delay(u64::MAX) <= Duration::from_millis(100));
    }
}

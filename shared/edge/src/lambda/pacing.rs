//! Pacing of mutating EC2 calls under EC2's request token buckets.
//!
//! EC2 throttles per account and region with token buckets: a bucket holds a
//! burst of tokens and refills at a steady rate (for the mutating actions
//! DeleteSnapshot and CreateTags: 200 tokens, refilled at 5 and 10 a second).
//! A run that spends a bounded burst and then calls at the refill rate never
//! empties the bucket for the account's other users: the few calls of an
//! ordinary run go at once, a large catch-up goes at the refill rate.

use std::time::Duration;

/// How calls are spaced: the first `burst` go at once, then one every
/// `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    pub burst: usize,
    pub interval: Duration,
}

impl Pacing {
    /// No pause at all (tests).
    pub const NONE: Pacing = Pacing {
        burst: usize::MAX,
        interval: Duration::ZERO,
    };
}

/// Counts one run's calls and pauses once the burst is spent.
#[derive(Debug)]
pub struct Pacer {
    pacing: Pacing,
    calls: usize,
}

impl Pacer {
    pub fn new(pacing: Pacing) -> Self {
        Self { pacing, calls: 0 }
    }

    /// Wait, if the burst is spent, before the next call.
    pub async fn ready(&mut self) {
        if self.calls >= self.pacing.burst && !self.pacing.interval.is_zero() {
            tokio::time::sleep(self.pacing.interval).await;
        }
        self.calls = self.calls.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_burst_goes_at_once_then_one_call_per_interval() {
        let mut pacer = Pacer::new(Pacing {
            burst: 3,
            interval: Duration::from_millis(200),
        });
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            pacer.ready().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        for _ in 0..4 {
            pacer.ready().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(800));
    }

    #[tokio::test(start_paused = true)]
    async fn none_never_waits() {
        let mut pacer = Pacer::new(Pacing::NONE);
        let start = tokio::time::Instant::now();
        for _ in 0..1000 {
            pacer.ready().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}

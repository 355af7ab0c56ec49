//! Pacing of mutating EC2 calls under EC2's request token buckets.
//!
//! EC2 throttles per account and region with token buckets: a bucket holds a
//! burst of tokens and refills at a steady rate (for the mutating actions
//! DeleteSnapshot and CreateTags: 200 tokens, refilled at 5 and 10 a second).
//! A run that spends a bounded burst and then calls at the refill rate never
//! empties the bucket for the account's other users: the few calls of an
//! ordinary run go at once, a large catch-up goes at the refill rate.
//!
//! [`Pacer`] spaces one sequence of calls (expiry's deletions, tag writes);
//! [`Bucket`] is shared by concurrent calls and adapts when EC2 throttles
//! anyway (create-snapshots' CreateSnapshot and CreateSnapshots).
//!
//! The table below is every pace and batch size the functions use, once,
//! each with the limit it comes from; the functions name these (their own
//! `*_PACING` and `VOLUMES_PER_BATCH` are aliases of them).

use std::time::Duration;

/// DeleteSnapshot: EC2's mutating-action bucket (200 tokens, refilled at 5
/// a second). A daily run deletes a few snapshots per volume and spends at
/// most a quarter of the bucket at once; a large catch-up then goes at the
/// refill rate, one call every 200 ms, which never drains it whatever else
/// the account is doing. expire-, copy- and vault-snapshots.
pub const DELETE_SNAPSHOT: Pacing = Pacing {
    burst: 50,
    interval: Duration::from_millis(200),
};

/// CopySnapshot: the same bucket (refilled at 5 a second); EC2 also allows
/// 20 copies in flight into a region, so a run starts at most 20 at once.
/// copy- and vault-snapshots.
pub const COPY_SNAPSHOT: Pacing = Pacing {
    burst: 20,
    interval: Duration::from_millis(200),
};

/// CreateTags: its bucket refills at 10 a second: an event's few calls go
/// at once; a backfill past the burst goes one call per 100 ms.
/// tag-snapshots.
pub const CREATE_TAGS: Pacing = Pacing {
    burst: 20,
    interval: Duration::from_millis(100),
};

/// CreateSnapshot and CreateSnapshots: EC2's bucket of 100 tokens refilled
/// at 5 a second. The run holds that pace itself, and slows down when EC2
/// throttles anyway (the account's other users draw on the same bucket),
/// instead of relying on the SDK's retries, which give up. Its burst is 80
/// of EC2's 100: calls reach EC2 a little later and less evenly than they
/// leave, and 20 tokens absorb that, so a run alone in the account is
/// never refused. create-snapshots.
pub const CREATE_SNAPSHOT: BucketPacing = BucketPacing {
    burst: 80.0,
    per_second: 5.0,
};

/// ListChangedBlocks / ListSnapshotBlocks (the EBS direct APIs): 20 a
/// second with a burst of 20, leaving room in the account's request quota
/// for other backup tools, halving on throttling. report- and
/// archive-snapshots.
pub(crate) const EBS_DIRECT_LISTS: BucketPacing = BucketPacing {
    burst: 20.0,
    per_second: 20.0,
};

/// Volumes a run works on together: DescribeSnapshots' filters take 200
/// values, so the snapshots of 200 volumes are two calls (the account's
/// and the deployment's) and all a run holds at once, whatever the
/// account's size. expire-, tag- (backfill), report-, archive- and
/// vault-snapshots.
pub const VOLUMES_PER_BATCH: usize = 200;

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

/// A token bucket like EC2's: `burst` tokens, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketPacing {
    pub burst: f64,
    pub per_second: f64,
}

impl BucketPacing {
    /// No wait at all (tests that are not about pacing).
    pub const NONE: BucketPacing = BucketPacing {
        burst: f64::MAX,
        per_second: f64::MAX,
    };
}

/// The slowest a throttled bucket goes: one call every 10 s.
const SLOWEST_PER_SECOND: f64 = 0.1;

/// A client-side token bucket shared by the concurrent calls of one run,
/// that slows down when EC2 throttles anyway (the account's bucket is
/// shared with everything else the account does) and comes back up as
/// calls succeed: halve the rate on a throttle (once a second at most),
/// add a tenth of the configured rate per success (additive increase,
/// multiplicative decrease).
/// Within the burst, calls fly at once; past it, at the rate.
#[derive(Debug)]
pub struct Bucket {
    pacing: BucketPacing,
    state: tokio::sync::Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    per_second: f64,
    at: tokio::time::Instant,
    /// When the rate was last halved: the calls in flight then all come
    /// back throttled, and one congestion is one halving.
    halved_at: Option<tokio::time::Instant>,
}

/// Throttles within this long of a halving are the same congestion.
const ONE_CONGESTION: Duration = Duration::from_secs(1);

impl Bucket {
    /// Full, as EC2's bucket is after a quiet while.
    pub fn new(pacing: BucketPacing) -> Self {
        Self {
            pacing,
            state: tokio::sync::Mutex::new(BucketState {
                tokens: pacing.burst,
                per_second: pacing.per_second,
                at: tokio::time::Instant::now(),
                halved_at: None,
            }),
        }
    }

    /// Wait for a token.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = self.state.lock().await;
                let now = tokio::time::Instant::now();
                let elapsed = now.duration_since(state.at).as_secs_f64();
                state.tokens = (state.tokens + elapsed * state.per_second).min(self.pacing.burst);
                state.at = now;
                if state.tokens >= 1.0 {
                    state.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - state.tokens) / state.per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// EC2 throttled a call: empty the bucket and halve the rate (once per
    /// congestion: the other calls in flight are throttled by the same one).
    pub async fn throttled(&self) {
        let mut state = self.state.lock().await;
        let now = tokio::time::Instant::now();
        state.tokens = 0.0;
        state.at = now;
        if state
            .halved_at
            .is_none_or(|t| now.duration_since(t) >= ONE_CONGESTION)
        {
            state.per_second = (state.per_second / 2.0).max(SLOWEST_PER_SECOND);
            state.halved_at = Some(now);
        }
    }

    /// A call went through: recover a tenth of the configured rate.
    pub async fn succeeded(&self) {
        let mut state = self.state.lock().await;
        state.per_second =
            (state.per_second + self.pacing.per_second / 10.0).min(self.pacing.per_second);
    }

    /// The rate the bucket refills at now.
    pub async fn per_second(&self) -> f64 {
        self.state.lock().await.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_lets_its_burst_go_at_once_then_holds_its_rate() {
        let bucket = Bucket::new(BucketPacing {
            burst: 100.0,
            per_second: 5.0,
        });
        let start = tokio::time::Instant::now();
        for _ in 0..100 {
            bucket.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        for _ in 0..50 {
            bucket.acquire().await;
        }
        // 50 more at 5 a second: 10 s, the bucket's floor.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((9.99..=10.01).contains(&elapsed), "{elapsed}");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_bucket() {
        let bucket = std::sync::Arc::new(Bucket::new(BucketPacing {
            burst: 10.0,
            per_second: 10.0,
        }));
        let start = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let bucket = bucket.clone();
                tokio::spawn(async move {
                    for _ in 0..5 {
                        bucket.acquire().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // 40 calls: 10 at once, 30 at 10 a second.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((2.99..=3.01).contains(&elapsed), "{elapsed}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_halves_the_rate_and_successes_bring_it_back() {
        let bucket = Bucket::new(BucketPacing {
            burst: 100.0,
            per_second: 5.0,
        });
        // Thirty-two calls in flight come back throttled together: one halving.
        for _ in 0..32 {
            bucket.throttled().await;
        }
        assert_eq!(bucket.per_second().await, 2.5);
        tokio::time::advance(Duration::from_secs(1)).await;
        bucket.throttled().await;
        assert_eq!(bucket.per_second().await, 1.25);
        // Emptied: the next call waits for a token at the lowered rate.
        let start = tokio::time::Instant::now();
        bucket.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_millis(800));
        for _ in 0..20 {
            bucket.succeeded().await;
        }
        assert_eq!(bucket.per_second().await, 5.0);
        for _ in 0..20 {
            tokio::time::advance(Duration::from_secs(1)).await;
            bucket.throttled().await;
        }
        assert_eq!(bucket.per_second().await, SLOWEST_PER_SECOND);
    }

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

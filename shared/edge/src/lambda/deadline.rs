//! The invocation deadline (a Lambda invocation lasts at most
//! 15 minutes). Functions stop *starting* work when the deadline nears, finish
//! what is in flight, and report what is left for the next run.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// Stop starting new AWS work when less than this remains: long enough for a
/// call in flight to finish (or time out) and for the summary to be published.
pub(crate) const DEFAULT_MARGIN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    margin: Duration,
}

impl Deadline {
    /// `remaining` from now, on the monotonic clock.
    pub fn after(remaining: Duration) -> Self {
        Self {
            at: Instant::now() + remaining,
            margin: DEFAULT_MARGIN,
        }
    }

    /// From the Lambda context's wall-clock deadline. Converted to the
    /// monotonic clock at once, so a wall-clock step later changes nothing.
    pub fn from_wall_clock(deadline: SystemTime) -> Self {
        let remaining = deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Self::after(remaining)
    }

    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// The same deadline, near `extra` sooner: work that must leave time
    /// for other work after it (the report's walks leave the batches left).
    pub fn reserving(self, extra: Duration) -> Self {
        self.with_margin(self.margin.saturating_add(extra))
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// True once new work should no longer be started.
    pub fn is_near(&self) -> bool {
        self.remaining() <= self.margin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_inside_the_margin_only() {
        assert!(!Deadline::after(Duration::from_secs(600)).is_near());
        assert!(Deadline::after(Duration::from_secs(10)).is_near());
        assert!(
            Deadline::after(Duration::from_secs(10))
                .with_margin(Duration::from_secs(1))
                .remaining()
                > Duration::from_secs(5)
        );
        assert!(Deadline::from_wall_clock(SystemTime::UNIX_EPOCH).is_near());
    }
}

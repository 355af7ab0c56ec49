//! `MAX_DELETIONS` over 24 hours, counted across runs (docs/functions.md,
//! "expire-snapshots", safety rule 7).
//!
//! The stack's ledger keeps, per hour, how many deletions were granted; a
//! run asks for a grant before it deletes and gives back what it did not
//! use. Retries, repeated schedules and direct invocations all draw on the
//! same 24 hours. Bounded: at most 25 hours are ever kept.
//!
//! Counting by whole hours errs on the safe side: the window is the current
//! hour and the 24 before it, so a deletion made at 10:00 or at 10:59 still
//! counts until 11:00 the next day, and two full budgets never fit in less
//! than 24 hours.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

const HOUR: i64 = 3600;
/// The current hour and the 24 before it: never less than 24 hours back.
const WINDOW_HOURS: i64 = 25;

/// Deletions granted per hour (key: seconds since the epoch at the hour's start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeletionWindow {
    pub hours: BTreeMap<i64, u32>,
}

fn hour_of(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(HOUR) * HOUR
}

impl DeletionWindow {
    /// Forget the hours that left the window.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let oldest = hour_of(now) - (WINDOW_HOURS - 1) * HOUR;
        self.hours.retain(|hour, _| *hour >= oldest);
    }

    /// Deletions granted within the window (this hour and the 24 before).
    pub fn used(&self, now: DateTime<Utc>) -> u32 {
        let oldest = hour_of(now) - (WINDOW_HOURS - 1) * HOUR;
        self.hours
            .range(oldest..)
            .map(|(_, n)| *n)
            .fold(0u32, u32::saturating_add)
    }

    /// Grant up to `wanted` deletions under `max` in the window; returns the grant.
    pub fn reserve(&mut self, now: DateTime<Utc>, wanted: u32, max: u32) -> u32 {
        self.prune(now);
        let granted = wanted.min(max.saturating_sub(self.used(now)));
        if granted > 0 {
            let slot = self.hours.entry(hour_of(now)).or_default();
            *slot = slot.saturating_add(granted);
        }
        granted
    }

    /// Give back `unused` of a grant made at `granted_at`.
    pub fn release(&mut self, granted_at: DateTime<Utc>, now: DateTime<Utc>, unused: u32) {
        if let Some(n) = self.hours.get_mut(&hour_of(granted_at)) {
            *n = n.saturating_sub(unused);
        }
        self.hours.retain(|_, n| *n > 0);
        self.prune(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        crate::keys::parse_time("2026-11-30T10:59:00Z").unwrap()
    }

    #[test]
    fn runs_share_one_budget_for_24_hours() {
        let mut w = DeletionWindow::default();
        assert_eq!(w.reserve(t0(), 30, 50), 30);
        // A retry an hour later, a direct invocation: the same budget.
        assert_eq!(w.reserve(t0() + Duration::hours(1), 30, 50), 20);
        assert_eq!(w.reserve(t0() + Duration::hours(2), 30, 50), 0);
        // 23 hours and a minute later (10:00 the next day) the first grant
        // still counts: two budgets never fit in less than 24 hours.
        assert_eq!(w.reserve(t0() + Duration::minutes(23 * 60 + 1), 100, 50), 0);
        // Its hour (10:00) leaves the window at 11:00 the next day.
        assert_eq!(
            w.reserve(t0() + Duration::minutes(24 * 60 + 1), 100, 50),
            30
        );
        assert_eq!(w.hours.len(), 2);
    }

    #[test]
    fn what_a_run_did_not_use_goes_back() {
        let mut w = DeletionWindow::default();
        assert_eq!(w.reserve(t0(), 50, 50), 50);
        w.release(t0(), t0() + Duration::minutes(5), 45);
        assert_eq!(w.used(t0() + Duration::minutes(5)), 5);
        assert_eq!(w.reserve(t0() + Duration::minutes(5), 100, 50), 45);
    }

    proptest! {
        /// Whatever runs happen, when, with whatever they give back, the
        /// grants of any 24 hours never exceed the cap, and the window
        /// never keeps more than 25 hours.
        #[test]
        fn never_more_than_the_cap_in_any_24_hours(
            runs in prop::collection::vec((0i64..200, 0u32..80, 0u32..80), 1..60),
            max in 0u32..120,
        ) {
            let mut w = DeletionWindow::default();
            let mut grants: Vec<(DateTime<Utc>, u32)> = Vec::new();
            let mut now = t0();
            for (minutes_later, wanted, unused) in runs {
                now += Duration::minutes(minutes_later * 7);
                let granted = w.reserve(now, wanted, max);
                prop_assert!(granted <= wanted);
                let back = unused.min(granted);
                w.release(now, now, back);
                grants.push((now, granted - back));
                prop_assert!(w.hours.len() <= 25);
                // Any 24 hours ending now, measured exactly.
                let in_window: u32 = grants
                    .iter()
                    .filter(|(t, _)| now - *t < Duration::hours(24))
                    .map(|(_, n)| n)
                    .sum();
                prop_assert!(in_window <= max, "{in_window} > {max}");
            }
        }
    }
}

//! Which snapshot a disaster-recovery target copies next. The rules only:
//! the policy field that names targets, and the I/O that starts, tracks and
//! expires copies, are not built yet, so no policy can ask for copies.
//!
//! Per source volume and target: the first copy is the volume's newest
//! completed snapshot; after it, a completed snapshot is copied when it is
//! newer than the target's newest copy (made or in progress) and falls in a
//! later bucket of the target's finest calendar rule (an hourly source with
//! a daily target: the first snapshot of each day, one copy a day); with
//! only `last` or `within`, every newer snapshot. Oldest first, one copy in
//! progress at a time, so each copy is incremental on the one before; at
//! most [`IN_FLIGHT_PER_REGION`] copies in progress per destination region
//! (EC2's quota), the rest wait for a later run, oldest first.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::policy::KeepRules;
use crate::retention::{bucket_of, KeepReason};

/// EC2's default quota of concurrent copies into one region.
pub const IN_FLIGHT_PER_REGION: usize = 20;

/// A completed source snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub id: String,
    pub time: DateTime<Utc>,
}

/// What a target already has of one source volume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetState {
    /// The source time of its newest copy, made or in progress.
    pub newest_copied: Option<DateTime<Utc>>,
    /// A copy of this volume is in progress.
    pub in_progress: bool,
}

/// The target's finest calendar rule, the one whose buckets decide which
/// snapshots are worth a copy; `None` for `last`/`within` only.
pub fn finest_rule(keep: &KeepRules) -> Option<KeepReason> {
    let set = |count: Option<u32>| count.is_some_and(|n| n > 0);
    [
        (
            KeepReason::Hourly,
            set(keep.hourly) || keep.within_hourly.is_some(),
        ),
        (
            KeepReason::Daily,
            set(keep.daily) || keep.within_daily.is_some(),
        ),
        (
            KeepReason::Weekly,
            set(keep.weekly) || keep.within_weekly.is_some(),
        ),
        (
            KeepReason::Monthly,
            set(keep.monthly) || keep.within_monthly.is_some(),
        ),
        (
            KeepReason::Yearly,
            set(keep.yearly) || keep.within_yearly.is_some(),
        ),
    ]
    .into_iter()
    .find(|(_, used)| *used)
    .map(|(rule, _)| rule)
}

/// The next snapshot of one volume to copy to one target, if any.
/// `sources`: the volume's completed snapshots, any order.
pub fn next_copy<'a>(
    sources: &'a [Source],
    state: &TargetState,
    keep: &KeepRules,
    tz: Tz,
) -> Option<&'a Source> {
    if state.in_progress {
        return None;
    }
    let Some(newest_copied) = state.newest_copied else {
        return sources.iter().max_by_key(|s| (s.time, &s.id));
    };
    let finest = finest_rule(keep);
    // With no calendar rule, every newer snapshot is in a later "bucket".
    let later_bucket = |t: DateTime<Utc>| {
        finest.is_none_or(|rule| {
            bucket_of(rule, &t.with_timezone(&tz))
                > bucket_of(rule, &newest_copied.with_timezone(&tz))
        })
    };
    sources
        .iter()
        .filter(|s| s.time > newest_copied && later_bucket(s.time))
        .min_by_key(|s| (s.time, &s.id))
}

/// One volume's next copy, for [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub volume_id: &'a str,
    pub source: &'a Source,
}

/// The copies one run starts into one region: each volume's next copy,
/// oldest source first, no more than the region's free places
/// (`IN_FLIGHT_PER_REGION` less the copies in progress there).
pub fn plan<'a>(mut candidates: Vec<Candidate<'a>>, in_flight: usize) -> Vec<Candidate<'a>> {
    candidates.sort_by_key(|c| (c.source.time, c.source.id.clone()));
    candidates.truncate(IN_FLIGHT_PER_REGION.saturating_sub(in_flight));
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        crate::keys::parse_time("2026-03-01T00:30:00Z").unwrap()
    }

    fn hourly(hours: i64) -> Vec<Source> {
        (0..hours)
            .map(|h| Source {
                id: format!("snap-{h:04}"),
                time: t0() + Duration::hours(h),
            })
            .collect()
    }

    fn keep(json: &str) -> KeepRules {
        let doc = format!(r#"{{"p": {{"schedule": "@hourly", "keep": {json}}}}}"#);
        crate::policy::Policies::parse(&doc)
            .unwrap()
            .get("p")
            .unwrap()
            .keep
            .clone()
    }

    /// A month of hourly snapshots, the target copying after every hourly
    /// run, each copy done within the hour: returns the sources copied.
    fn a_month(rules: &KeepRules, tz: Tz) -> Vec<String> {
        let all = hourly(24 * 31);
        let mut state = TargetState::default();
        let mut copied = Vec::new();
        for now in 1..=all.len() {
            let completed = &all[..now];
            if let Some(next) = next_copy(completed, &state, rules, tz) {
                copied.push(next.id.clone());
                state.newest_copied = Some(next.time);
            }
        }
        copied
    }

    #[test]
    fn an_hourly_source_with_a_daily_target_makes_one_copy_a_day() {
        let copied = a_month(&keep(r#"{"daily": 7, "weekly": 4}"#), Tz::UTC);
        assert_eq!(copied.len(), 31, "{copied:?}");
        // The first snapshot of each day (the first copy is the newest
        // completed, which was the first of day one).
        for (day, id) in copied.iter().enumerate() {
            assert_eq!(id, &format!("snap-{:04}", day * 24));
        }
    }

    #[test]
    fn the_finest_rule_decides_and_the_time_zone_draws_the_days() {
        assert_eq!(
            a_month(&keep(r#"{"weekly": 4, "monthly": 6}"#), Tz::UTC).len(),
            6
        );
        assert_eq!(
            a_month(&keep(r#"{"hourly": 24, "daily": 7}"#), Tz::UTC).len(),
            24 * 31
        );
        assert_eq!(a_month(&keep(r#"{"last": 3}"#), Tz::UTC).len(), 24 * 31);
        // Days in Tokyo start at 15:00 UTC: still one copy a day, at its start.
        let tokyo = a_month(&keep(r#"{"daily": 7}"#), chrono_tz::Asia::Tokyo);
        assert_eq!(tokyo.len(), 32);
        assert_eq!(tokyo[1], "snap-0015", "15:30 UTC is 00:30 in Tokyo");
    }

    #[test]
    fn one_copy_in_progress_per_volume_and_the_first_is_the_newest() {
        let all = hourly(10);
        let rules = keep(r#"{"daily": 7}"#);
        let first = next_copy(&all, &TargetState::default(), &rules, Tz::UTC).unwrap();
        assert_eq!(first.id, "snap-0009");
        let busy = TargetState {
            newest_copied: Some(first.time),
            in_progress: true,
        };
        assert_eq!(next_copy(&all, &busy, &rules, Tz::UTC), None);
        assert_eq!(
            next_copy(&[], &TargetState::default(), &rules, Tz::UTC),
            None
        );
    }

    #[test]
    fn a_run_fills_the_regions_free_places_oldest_first() {
        let sources: Vec<Source> = hourly(30);
        let volumes: Vec<String> = (0..30).map(|v| format!("vol-{v}")).collect();
        let candidates: Vec<Candidate> = volumes
            .iter()
            .zip(sources.iter().rev())
            .map(|(volume_id, source)| Candidate { volume_id, source })
            .collect();
        let planned = plan(candidates.clone(), 5);
        assert_eq!(planned.len(), 15);
        assert_eq!(planned[0].source.id, "snap-0000");
        assert!(planned
            .windows(2)
            .all(|w| w[0].source.time <= w[1].source.time));
        assert!(plan(candidates, 25).is_empty());
    }

    proptest! {
        /// Whatever the history and when runs happen: copies go oldest
        /// first (each newer than the last), never two in one bucket of
        /// the finest rule, and a bucket passed over is never copied later.
        #[test]
        fn copies_are_ordered_and_one_per_bucket(
            gaps in prop::collection::vec(1i64..600, 1..200),
            runs in prop::collection::vec(any::<bool>(), 200),
        ) {
            let mut t = t0();
            let all: Vec<Source> = gaps.iter().enumerate().map(|(i, g)| {
                t += Duration::minutes(*g);
                Source { id: format!("snap-{i:04}"), time: t }
            }).collect();
            let rules = keep(r#"{"daily": 7, "monthly": 3}"#);
            let mut state = TargetState::default();
            let mut copied: Vec<&Source> = Vec::new();
            for (n, run) in runs.iter().enumerate().take(all.len()) {
                if !run { continue; }
                if let Some(next) = next_copy(&all[..=n], &state, &rules, Tz::UTC) {
                    copied.push(next);
                    state.newest_copied = Some(next.time);
                }
            }
            let day = |s: &Source| bucket_of(KeepReason::Daily, &s.time.with_timezone(&Tz::UTC));
            for w in copied.windows(2) {
                prop_assert!(w[0].time < w[1].time);
                prop_assert!(day(w[0]) < day(w[1]));
            }
        }
    }
}

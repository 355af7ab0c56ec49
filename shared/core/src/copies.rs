//! Disaster-recovery copies to other regions, the pure rules
//! (docs/policies-and-tags.md, "Copies to other regions"): which snapshot
//! a target copies next, what a copy is tagged with, what a target holds of
//! a volume, and how a copy whose CopySnapshot answer was lost is found
//! again. The function that acts on them is `copy-snapshots`.
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

use crate::keys;
use crate::model::{Snapshot, SnapshotState, Tags};
use crate::policy::KeepRules;
use crate::retention::{bucket_of, KeepReason};

/// EC2's default quota of concurrent copies into one region.
pub(crate) const IN_FLIGHT_PER_REGION: usize = 20;

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
pub(crate) fn finest_rule(keep: &KeepRules) -> Option<KeepReason> {
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

/// When a target makes its next copy after one of a source made at `t`:
/// the schedule's first slot in a later bucket of the target's finest rule
/// (every slot with `last`/`within` only). What the labels of copies
/// project with, as a source's labels project with every slot.
pub(crate) fn next_copy_after(
    schedule: &crate::schedule::Schedule,
    keep: &KeepRules,
    t: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let Some(rule) = finest_rule(keep) else {
        return schedule.next_slot_after(t);
    };
    let tz = schedule.timezone();
    let bucket_end = crate::retention::next_bucket_start(rule, &t.with_timezone(&tz))?;
    schedule.next_slot_after(bucket_end - chrono::Duration::seconds(1))
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

/// Source tags a copy does not inherit: what is true of the source in its
/// region only (its state and labels, its links, a person's hold on it).
fn stays_with_the_source(key: &str) -> bool {
    [
        keys::STATE,
        keys::COMPLETED_AT,
        keys::RETAINED_BY,
        keys::EXPIRES_AT,
        keys::STUCK_NOTIFIED_AT,
        keys::SUPERSEDED_BY,
        keys::ENCRYPTED_COPY_OF,
        keys::COPY_OF,
        keys::SOURCE_REGION,
        keys::TARGET,
    ]
    .contains(&key)
        || key.eq_ignore_ascii_case(keys::HOLD)
        || key.starts_with(keys::AWS_PREFIX)
}

/// The tags a copy gets at creation: the source's (its identity, `Name`,
/// the policy's `copy_tags` and `tags`), `lifecycle:state=pending`, and
/// where it comes from. `lifecycle:volume-id` stays the source volume: EC2
/// gives a copy a placeholder VolumeId. Within EC2's 50 tags: the lifecycle
/// keys first, then the user's in key order.
pub fn copy_tags(source: &Snapshot, source_region: &str, target: &str) -> Tags {
    let mut tags: Tags = Tags::new();
    tags.insert(
        keys::STATE.into(),
        keys::LifecycleState::Pending.as_str().into(),
    );
    tags.insert(keys::COPY_OF.into(), source.id.clone());
    tags.insert(keys::SOURCE_REGION.into(), source_region.into());
    tags.insert(keys::TARGET.into(), target.into());
    if let Some(volume) = source.source_volume_id() {
        tags.insert(keys::VOLUME_ID.into(), volume.into());
    }
    if let Some(time) = source.retention_time() {
        tags.insert(keys::CREATED_AT.into(), keys::format_time(time));
    }
    let inherited = source
        .tags
        .iter()
        .filter(|(k, _)| !stays_with_the_source(k) && !tags.contains_key(k.as_str()));
    let (lifecycle, user): (Vec<_>, Vec<_>) =
        inherited.partition(|(k, _)| k.starts_with(keys::LIFECYCLE_PREFIX));
    for (k, v) in lifecycle.into_iter().chain(user) {
        if tags.len() >= keys::MAX_TAGS_PER_RESOURCE {
            break;
        }
        tags.insert(k.clone(), v.clone());
    }
    tags
}

/// What a target holds of one source volume, from its copies there (this
/// deployment's, proven) and whether the ledger has a copy in flight for
/// it. A failed copy holds nothing: its source may be copied again.
pub fn target_state<'a>(
    copies: impl IntoIterator<Item = &'a Snapshot>,
    in_flight: bool,
) -> TargetState {
    let mut state = TargetState {
        newest_copied: None,
        in_progress: in_flight,
    };
    for copy in copies {
        if copy.state == SnapshotState::Error {
            continue;
        }
        if copy.state == SnapshotState::Pending {
            state.in_progress = true;
        }
        let time = copy.retention_time();
        if time > state.newest_copied {
            state.newest_copied = time;
        }
    }
    state
}

/// How long after its CopySnapshot call a copy whose answer was lost may
/// appear: EC2 lists a copy (with its tags) as soon as it starts, so a
/// copy not listed this long after the call was never started.
pub const LOST_ANSWER_WINDOW: chrono::Duration = chrono::Duration::minutes(15);

/// What to do about a copy the ledger says was asked for, whose id it does
/// not know (the call's answer was lost: a timeout, a crash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostAnswer {
    /// This snapshot is the copy: adopt it.
    Found(String),
    /// Not listed yet, and it still could be: wait, start nothing for
    /// this volume.
    Wait,
    /// Not listed long after the call: never started; it may be retried.
    NeverStarted,
}

/// Find the copy of `source_snapshot_id` asked for at `asked_at` among the
/// destination's snapshots that no ledger record claims: the one with this
/// deployment's copy `description`, owned by the account, started within
/// [`LOST_ANSWER_WINDOW`] of the call (the earliest if several). A snapshot
/// somebody else made with the same Description outside that window is not
/// taken for it.
pub fn find_lost_copy<'a>(
    unrecorded: impl IntoIterator<Item = &'a Snapshot>,
    description: &str,
    account: &str,
    asked_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> LostAnswer {
    let skew = crate::ownership::CLOCK_SKEW;
    let found = unrecorded
        .into_iter()
        .filter(|s| s.description.as_deref() == Some(description))
        .filter(|s| s.owner_id.as_deref() == Some(account))
        .filter_map(|s| Some((s.start_time?, &s.id)))
        .filter(|(t, _)| *t >= asked_at - skew && *t <= asked_at + LOST_ANSWER_WINDOW)
        .min();
    match found {
        Some((_, id)) => LostAnswer::Found(id.clone()),
        None if now < asked_at + LOST_ANSWER_WINDOW => LostAnswer::Wait,
        None => LostAnswer::NeverStarted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        crate::keys::parse_time("2026-03-01T00:30:00Z").unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        crate::keys::parse_time(s).unwrap()
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

    fn snapshot(id: &str, state: SnapshotState, time: DateTime<Utc>) -> Snapshot {
        let mut tags = Tags::new();
        tags.insert(keys::MANAGED_BY.into(), "prod".into());
        tags.insert(keys::VOLUME_ID.into(), "vol-1".into());
        tags.insert(keys::CREATED_AT.into(), keys::format_time(time));
        Snapshot {
            id: id.into(),
            volume_id: Some("vol-1".into()),
            state,
            start_time: Some(time),
            volume_size_gib: Some(8),
            full_size_bytes: None,
            archived: false,
            restore_expiry: None,
            encrypted: true,
            kms_key_id: None,
            description: None,
            owner_id: Some("111111111111".into()),
            tags,
        }
    }

    #[test]
    fn a_copy_carries_the_sources_identity_not_its_state_labels_or_hold() {
        let mut source = snapshot("snap-1", SnapshotState::Completed, t0());
        for (k, v) in [
            (keys::STATE, "completed"),
            (keys::RETAINED_BY, "daily"),
            (keys::EXPIRES_AT, "never"),
            ("Lifecycle:Hold", "legal"),
            (keys::POLICY, "gold"),
            (keys::SLOT, "2026-03-01T00:00:00Z"),
            ("Name", "db"),
            ("aws:backup:source-resource", "x"),
        ] {
            source.tags.insert(k.into(), v.into());
        }
        let tags = copy_tags(&source, "eu-west-1", "eu-central-1");
        assert_eq!(tags[keys::STATE], "pending");
        assert_eq!(tags[keys::COPY_OF], "snap-1");
        assert_eq!(tags[keys::SOURCE_REGION], "eu-west-1");
        assert_eq!(tags[keys::TARGET], "eu-central-1");
        assert_eq!(tags[keys::VOLUME_ID], "vol-1");
        assert_eq!(tags[keys::POLICY], "gold");
        assert_eq!(tags["Name"], "db");
        for gone in [
            keys::RETAINED_BY,
            keys::EXPIRES_AT,
            "Lifecycle:Hold",
            "aws:backup:source-resource",
        ] {
            assert!(!tags.contains_key(gone), "{gone} was copied");
        }
        // 60 user tags: the copy keeps every lifecycle key and fills up to
        // EC2's 50 with the user's.
        for i in 0..60 {
            source.tags.insert(format!("user-{i:02}"), "v".into());
        }
        let tags = copy_tags(&source, "eu-west-1", "eu-central-1");
        assert_eq!(tags.len(), keys::MAX_TAGS_PER_RESOURCE);
        assert_eq!(tags[keys::COPY_OF], "snap-1");
        assert_eq!(tags[keys::SLOT], "2026-03-01T00:00:00Z");
    }

    #[test]
    fn a_failed_copy_holds_nothing_and_a_pending_one_blocks_the_volume() {
        let done = snapshot("snap-a", SnapshotState::Completed, t0());
        let failed = snapshot("snap-b", SnapshotState::Error, t0() + Duration::days(1));
        let pending = snapshot("snap-c", SnapshotState::Pending, t0() + Duration::days(2));
        let state = target_state([&done, &failed], false);
        assert_eq!(state.newest_copied, Some(t0()));
        assert!(!state.in_progress);
        let state = target_state([&done, &failed, &pending], false);
        assert_eq!(state.newest_copied, Some(t0() + Duration::days(2)));
        assert!(state.in_progress);
        assert!(target_state([], true).in_progress);
    }

    #[test]
    fn a_lost_answer_is_found_only_in_its_window_and_only_as_ours() {
        let asked = t0();
        let description = "ebs-lifecycle prod 111111111111/eu-west-1: copy of eu-west-1/snap-1";
        let mut late = snapshot(
            "snap-late",
            SnapshotState::Pending,
            asked + Duration::hours(2),
        );
        late.description = Some(description.into());
        let mut foreign = snapshot(
            "snap-other",
            SnapshotState::Pending,
            asked + Duration::minutes(1),
        );
        foreign.description = Some(description.into());
        foreign.owner_id = Some("999999999999".into());
        let mut ours = snapshot(
            "snap-ours",
            SnapshotState::Pending,
            asked + Duration::seconds(3),
        );
        ours.description = Some(description.into());
        let find = |list: Vec<&Snapshot>, now| {
            find_lost_copy(list, description, "111111111111", asked, now)
        };
        assert_eq!(
            find(vec![&late, &foreign, &ours], asked + Duration::hours(3)),
            LostAnswer::Found("snap-ours".into())
        );
        assert_eq!(
            find(vec![&late, &foreign], asked + Duration::minutes(5)),
            LostAnswer::Wait
        );
        assert_eq!(
            find(vec![&late, &foreign], asked + Duration::hours(3)),
            LostAnswer::NeverStarted
        );
    }

    #[test]
    fn the_next_copy_is_the_first_slot_of_the_next_bucket_of_the_finest_rule() {
        let schedule = crate::schedule::Schedule::parse("@hourly", "Europe/Berlin").unwrap();
        let at = t("2026-03-01T10:00:00Z"); // 11:00 in Berlin
        assert_eq!(
            next_copy_after(&schedule, &keep(r#"{"daily": 7}"#), at),
            Some(t("2026-03-01T23:00:00Z")), // midnight in Berlin
        );
        assert_eq!(
            next_copy_after(&schedule, &keep(r#"{"last": 3}"#), at),
            Some(t("2026-03-01T11:00:00Z"))
        );
        assert_eq!(
            next_copy_after(&schedule, &keep(r#"{"monthly": 2}"#), at),
            Some(t("2026-03-31T22:00:00Z")), // April 1st, summer time
        );
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

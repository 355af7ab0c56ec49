//! The expiry plan of a run: per volume, every managed snapshot with what the
//! retention planner says and what the safety rules say. Pure.
//!
//! Grouping is by source volume and policy: each snapshot is judged by the
//! policy its own `lifecycle:policy` tag names (safety rule 6, docs/functions.md), like restic,
//! which plans each group of snapshots on its own. Once the volume no longer
//! exists, that policy's `orphans` rules apply. Snapshots whose policy is not
//! configured are all kept. "Never the newest completed snapshot of its
//! volume" is checked across policies by the gate.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::model::{completed_copies, Snapshot, SnapshotState};
use crate::policy::{KeepRules, Policies};
use crate::retention::{self, Candidate, KeepReason};
use crate::safety::{DeletionGate, Protection};
use crate::tags;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSnapshot<'a> {
    pub snapshot: &'a Snapshot,
    /// The retention planner's reasons for a completed snapshot (empty: not
    /// kept); `None` for snapshots it does not consider (failed, pending).
    pub retention: Option<Vec<KeepReason>>,
    /// `Ok`: may be deleted (the run's cap still applies). `Err`: why not.
    pub verdict: Result<(), Protection>,
}

impl PlannedSnapshot<'_> {
    pub fn deletable(&self) -> bool {
        self.verdict.is_ok()
    }
}

/// The plan of one volume's snapshots under one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePlan<'a> {
    /// `None` for snapshots that name no volume at all.
    pub volume_id: Option<String>,
    /// The policy the group's snapshots name (`None`: not ours, or no tag).
    pub policy: Option<String>,
    /// The volume no longer exists: the orphan rules applied.
    pub orphan: bool,
    /// Newest first.
    pub snapshots: Vec<PlannedSnapshot<'a>>,
}

/// A retention group: a source volume (`None`: the snapshot names none) and
/// the policy its snapshots name (`None`: not this deployment's, or no tag).
pub(crate) type GroupKey<'s> = (Option<&'s str>, Option<&'s str>);

/// Snapshots grouped the way retention judges them: by source volume and by
/// the policy each names, each group newest first. Snapshots of other
/// deployments land in groups with no policy.
pub fn retention_groups<'a>(
    snapshots: &'a [Snapshot],
    deployment: &str,
) -> BTreeMap<GroupKey<'a>, Vec<&'a Snapshot>> {
    let mut groups: BTreeMap<GroupKey<'a>, Vec<&'a Snapshot>> = BTreeMap::new();
    for s in snapshots {
        let policy = tags::is_managed_by(&s.tags, deployment)
            .then(|| s.tags.get(tags::POLICY).map(String::as_str))
            .flatten();
        groups
            .entry((s.source_volume_id(), policy))
            .or_default()
            .push(s);
    }
    for group in groups.values_mut() {
        group.sort_by(|a, b| (b.retention_time(), &b.id).cmp(&(a.retention_time(), &a.id)));
    }
    groups
}

/// What the retention planner considers of a group: the deployment's
/// snapshots that EC2 reports completed and that have a time, at their
/// retention time. An original whose encrypted copy is completed gives way
/// to the copy (which sits at the original's time); a copy still in flight
/// does not count yet.
/// Tag keys are carried only when `rules` keep by tag.
pub fn candidates(group: &[&Snapshot], deployment: &str, rules: &KeepRules) -> Vec<Candidate> {
    let copies = completed_copies(group.iter().copied());
    group
        .iter()
        .filter(|s| tags::is_managed_by(&s.tags, deployment))
        .filter(|s| s.state == SnapshotState::Completed)
        .filter(|s| s.counts_for_retention(&copies))
        .filter_map(|s| {
            Some(Candidate {
                id: s.id.clone(),
                time: s.retention_time()?,
                tags: if rules.tags.is_empty() {
                    Vec::new()
                } else {
                    s.tags.keys().cloned().collect()
                },
            })
        })
        .collect()
}

/// True while `s`'s slot is its policy's current one (the next has not
/// begun): create-snapshots looks for a slot's snapshots by their
/// Description, which an encrypted copy does not carry, so an original
/// deleted before then would have the next tick take the slot again. Its
/// slot and policy are the proven ones (the ownership check sets them).
fn slot_open(s: &Snapshot, policies: &Policies, now: DateTime<Utc>) -> bool {
    let policy = s.tags.get(tags::POLICY).and_then(|p| policies.get(p));
    let slot = s.tags.get(tags::SLOT).and_then(|t| tags::parse_time(t));
    match (policy, slot) {
        // The slot create-snapshots fills now, exactly.
        (Some(policy), Some(slot)) => policy.schedule.slot_at(now) == Some(slot),
        _ => false,
    }
}

/// Plan every volume. `snapshots` are the deployment's snapshots; `existing`
/// the ids of volumes that still exist.
pub fn plan<'a>(
    snapshots: &'a [Snapshot],
    policies: &Policies,
    existing: &BTreeSet<String>,
    gate: &DeletionGate,
) -> Vec<VolumePlan<'a>> {
    // Only this deployment's snapshots fill retention buckets; anything else
    // (the caller should not pass it) is listed as not managed.
    let ours = |s: &Snapshot| tags::is_managed_by(&s.tags, gate.deployment());
    retention_groups(snapshots, gate.deployment())
        .into_iter()
        .map(|((volume_id, policy_name), group)| {
            let (volume_id, policy_name) =
                (volume_id.map(String::from), policy_name.map(String::from));
            let orphan = volume_id.as_ref().is_some_and(|v| !existing.contains(v));
            let rules = policy_name
                .as_deref()
                .and_then(|p| policies.get(p))
                .map(|p| {
                    (
                        if orphan { &p.orphans } else { &p.keep },
                        p.schedule.timezone(),
                    )
                });

            let reasons: HashMap<String, Vec<KeepReason>> = match rules {
                Some((keep, tz)) => {
                    let completed = candidates(&group, gate.deployment(), keep);
                    retention::plan(keep, tz, &completed)
                        .into_iter()
                        .map(|d| (d.id, d.reasons))
                        .collect()
                }
                None => HashMap::new(),
            };

            let copies = completed_copies(group.iter().copied());
            let planned = group
                .iter()
                .map(|s| {
                    let retention = reasons.get(s.id.as_str()).cloned();
                    let verdict = match (&rules, s.state) {
                        _ if !ours(s) => Err(Protection::NotManaged),
                        // Its completed encrypted copy stands in for it: no
                        // rule keeps the original, the other rules still
                        // apply, and it stays while its slot is open.
                        (_, SnapshotState::Completed) if s.is_superseded(&copies) => {
                            let open = slot_open(s, policies, gate.now());
                            gate.check(s, Some(&[])).and(if open {
                                Err(Protection::SlotOpen)
                            } else {
                                Ok(())
                            })
                        }
                        (None, _) => gate.check(s, Some(&[])).and(Err(Protection::UnknownPolicy(
                            policy_name.clone().unwrap_or_default(),
                        ))),
                        // A completed snapshot without a start time cannot be
                        // placed in the calendar: keep it.
                        (Some(_), SnapshotState::Completed) if retention.is_none() => {
                            gate.check(s, Some(&[])).and(Err(Protection::UnknownTime))
                        }
                        (Some(_), SnapshotState::Completed) => gate.check(s, retention.as_deref()),
                        (Some(_), _) => gate.check(s, None),
                    };
                    PlannedSnapshot {
                        snapshot: s,
                        retention,
                        verdict,
                    }
                })
                .collect();
            VolumePlan {
                volume_id,
                policy: policy_name,
                orphan,
                snapshots: planned,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Tags;
    use crate::safety::AccountFacts;
    use chrono::{DateTime, Duration, Utc};
    use proptest::prelude::*;

    const POLICIES: &str = r#"{
        "gfs":    {"schedule": "@daily", "timezone": "Europe/Berlin", "keep": {"last": 2, "daily": 7, "weekly": 4, "monthly": 12, "yearly": 2}},
        "hourly": {"schedule": "@hourly", "keep": {"hourly": 6, "within": "2d"}, "orphans": {"last": 2}},
        "lean":   {"schedule": "@daily", "keep": {"last": 1}}
    }"#;

    fn t0() -> DateTime<Utc> {
        crate::tags::parse_time("2026-01-01T00:00:00Z").unwrap()
    }

    #[derive(Debug, Clone)]
    struct Spec {
        volume: usize,
        hours: i64,
        state: SnapshotState,
        owner: usize, // 0 = ours, 1 = another deployment, 2 = none
        policy: usize,
        held: bool,
        ami: bool,
        locked: bool,
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (
            0usize..4,
            0i64..(24 * 500),
            prop_oneof![6 => Just(SnapshotState::Completed), 1 => Just(SnapshotState::Pending), 1 => Just(SnapshotState::Error)],
            prop_oneof![8 => Just(0usize), 1 => Just(1usize), 1 => Just(2usize)],
            0usize..4, // 3 = a policy that is not configured
            proptest::bool::weighted(0.05),
            proptest::bool::weighted(0.05),
            proptest::bool::weighted(0.05),
        )
            .prop_map(|(volume, hours, state, owner, policy, held, ami, locked)| Spec {
                volume, hours, state, owner, policy, held, ami, locked,
            })
    }

    struct World {
        snapshots: Vec<Snapshot>,
        facts: AccountFacts,
        existing: BTreeSet<String>,
    }

    fn world(specs: &[Spec], deleted_volumes: &[bool]) -> World {
        let mut facts = AccountFacts {
            deployment: "ours".into(),
            now: t0() + Duration::days(520),
            ..AccountFacts::default()
        };
        let snapshots = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let id = format!("snap-{i:05}");
                let mut tags = Tags::new();
                match s.owner {
                    0 => {
                        tags.insert(crate::tags::MANAGED_BY.into(), "ours".into());
                    }
                    1 => {
                        tags.insert(crate::tags::MANAGED_BY.into(), "theirs".into());
                    }
                    _ => {}
                }
                tags.insert(
                    crate::tags::POLICY.into(),
                    ["gfs", "hourly", "lean", "gone"][s.policy].into(),
                );
                tags.insert(crate::tags::VOLUME_ID.into(), format!("vol-{}", s.volume));
                if s.held {
                    tags.insert(crate::tags::HOLD.into(), "audit".into());
                }
                if s.ami {
                    facts.ami_snapshot_ids.insert(id.clone());
                }
                // The protected ones by a lock, a copy in progress to
                // another region, or a restore from the archive tier.
                if s.locked && s.hours % 3 == 0 {
                    facts.locked_snapshot_ids.insert(id.clone());
                } else if s.locked && s.hours % 3 == 1 {
                    facts.copying.insert(id.clone());
                } else if s.locked {
                    facts.restoring.insert(id.clone());
                }
                Snapshot {
                    id,
                    volume_id: Some(format!("vol-{}", s.volume)),
                    state: s.state,
                    start_time: Some(t0() + Duration::hours(s.hours)),
                    volume_size_gib: Some(8),
                    full_size_bytes: None,
                    archived: false,
                    restore_expiry: None,
                    encrypted: true,
                    kms_key_id: None,
                    description: None,
                    owner_id: None,
                    tags,
                }
            })
            .collect();
        let existing = (0..4)
            .filter(|v| !deleted_volumes.get(*v).copied().unwrap_or(false))
            .map(|v| format!("vol-{v}"))
            .collect();
        World {
            snapshots,
            facts,
            existing,
        }
    }

    fn run(w: &World) -> Vec<VolumePlan<'_>> {
        let policies = Policies::parse(POLICIES).unwrap();
        let gate = DeletionGate::new(w.facts.clone(), &w.snapshots, u32::MAX);
        plan(&w.snapshots, &policies, &w.existing, &gate)
    }

    fn deleted_ids(plans: &[VolumePlan]) -> BTreeSet<String> {
        plans
            .iter()
            .flat_map(|p| &p.snapshots)
            .filter(|s| s.deletable())
            .map(|s| s.snapshot.id.clone())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// The safety rules hold for every snapshot of every random history,
        /// and planning what is kept again deletes nothing.
        #[test]
        fn no_random_history_breaks_a_safety_rule(
            specs in proptest::collection::vec(spec(), 0..40),
            deleted in proptest::collection::vec(proptest::bool::weighted(0.2), 4),
        ) {
            let w = world(&specs, &deleted);
            let plans = run(&w);
            let doomed = deleted_ids(&plans);

            for s in w.snapshots.iter().filter(|s| doomed.contains(&s.id)) {
                prop_assert!(crate::tags::is_managed_by(&s.tags, "ours"), "{} is not ours", s.id);
                prop_assert!(s.state != SnapshotState::Pending, "{} is pending", s.id);
                prop_assert!(!s.tags.contains_key(crate::tags::HOLD), "{} is held", s.id);
                prop_assert!(!w.facts.ami_snapshot_ids.contains(&s.id), "{} backs an AMI", s.id);
                prop_assert!(!w.facts.locked_snapshot_ids.contains(&s.id), "{} is locked", s.id);
                prop_assert!(!w.facts.copying.contains(&s.id), "{} is being copied", s.id);
                prop_assert!(!w.facts.restoring.contains(&s.id), "{} is being restored", s.id);
                prop_assert!(s.tags[crate::tags::POLICY] != "gone", "{} has no configured policy", s.id);
            }
            // The newest completed managed snapshot of each volume survives.
            let mut newest: BTreeMap<&str, &Snapshot> = BTreeMap::new();
            for s in w.snapshots.iter().filter(|s| s.state == SnapshotState::Completed && crate::tags::is_managed_by(&s.tags, "ours")) {
                let v = s.source_volume_id().unwrap();
                if newest.get(v).is_none_or(|n| (s.start_time, &s.id) > (n.start_time, &n.id)) {
                    newest.insert(v, s);
                }
            }
            for s in newest.values() {
                prop_assert!(!doomed.contains(&s.id), "newest completed {} of its volume planned for deletion", s.id);
            }
            // Replanning the survivors deletes nothing more.
            let survivors = World {
                snapshots: w.snapshots.iter().filter(|s| !doomed.contains(&s.id)).cloned().collect(),
                facts: w.facts.clone(),
                existing: w.existing.clone(),
            };
            let again = deleted_ids(&run(&survivors));
            prop_assert!(again.is_empty(), "second plan deletes {:?}", again);
        }

        /// Adding a newer snapshot (in a later month) never takes the monthly
        /// or yearly reason from an older kept snapshot before that rule's
        /// count of buckets is exceeded.
        #[test]
        fn a_newer_snapshot_never_evicts_a_monthly_or_yearly_keeper_early(
            hours in proptest::collection::btree_set(0i64..(24 * 900), 1..60),
            extra in 1i64..(24 * 400),
        ) {
            let tz = chrono_tz::Europe::Berlin;
            let keep = Policies::parse(POLICIES).unwrap().get("gfs").unwrap().keep.clone();
            let history: Vec<Candidate> = hours.iter().map(|h| Candidate { id: format!("s{h:06}"), time: t0() + Duration::hours(*h), tags: Vec::new() }).collect();
            let newest = history.iter().map(|c| c.time).max().unwrap();
            let added = Candidate { id: "z-new".into(), time: newest + Duration::hours(extra), tags: Vec::new() };
            let before = retention::plan(&keep, tz, &history);
            let mut more = history.clone();
            more.push(added.clone());
            let after = retention::plan(&keep, tz, &more);

            let bucket = |reason: KeepReason, t: DateTime<Utc>| {
                use chrono::Datelike;
                let l = t.with_timezone(&tz);
                if reason == KeepReason::Yearly { i64::from(l.year()) } else { i64::from(l.year()) * 100 + i64::from(l.month()) }
            };
            for (reason, count) in [(KeepReason::Monthly, keep.monthly.unwrap()), (KeepReason::Yearly, keep.yearly.unwrap())] {
                for d in before.iter().filter(|d| d.reasons.contains(&reason)) {
                    let own = bucket(reason, d.time);
                    if bucket(reason, added.time) == own {
                        continue; // the new one is the newest of that bucket now: restic keeps it instead
                    }
                    let buckets_at_or_after: BTreeSet<i64> = more.iter().map(|c| bucket(reason, c.time)).filter(|b| *b >= own).collect();
                    if buckets_at_or_after.len() as u32 <= count {
                        let still = after.iter().find(|a| a.id == d.id).unwrap();
                        prop_assert!(still.reasons.contains(&reason), "{} lost {:?} early", d.id, reason);
                    }
                }
            }
        }
    }

    #[test]
    fn a_foreign_snapshot_never_makes_ours_expendable() {
        // Found by the property test: another deployment's snapshot of the
        // same volume, at the same time, must not count as "newest" nor fill
        // a retention bucket.
        let ours = Spec {
            volume: 0,
            hours: 0,
            state: SnapshotState::Completed,
            owner: 0,
            policy: 0,
            held: false,
            ami: false,
            locked: false,
        };
        let theirs = Spec {
            owner: 1,
            policy: 2,
            ..ours.clone()
        };
        let w = world(&[ours, theirs], &[]);
        let plans = run(&w);
        assert!(deleted_ids(&plans).is_empty());
        let verdicts: BTreeSet<_> = plans
            .iter()
            .flat_map(|p| &p.snapshots)
            .map(|s| s.verdict.clone().unwrap_err().kind())
            .collect();
        assert_eq!(
            verdicts,
            BTreeSet::from(["not-managed", "newest-completed"])
        );
    }

    #[test]
    fn orphans_follow_the_orphan_rules_and_failed_ones_go_after_the_grace() {
        let specs: Vec<Spec> = (0..10)
            .map(|i| Spec {
                volume: 0,
                hours: i * 24,
                state: SnapshotState::Completed,
                owner: 0,
                policy: 1,
                held: false,
                ami: false,
                locked: false,
            })
            .chain([Spec {
                volume: 0,
                hours: 1,
                state: SnapshotState::Error,
                owner: 0,
                policy: 1,
                held: false,
                ami: false,
                locked: false,
            }])
            .collect();
        let mut w = world(&specs, &[true]);
        w.facts.now = t0() + Duration::days(30);
        let plans = run(&w);
        assert!(plans[0].orphan);
        let kept: Vec<&str> = plans[0]
            .snapshots
            .iter()
            .filter(|s| !s.deletable())
            .map(|s| s.snapshot.id.as_str())
            .collect();
        // orphans: last 2 -> the two newest completed; the failed one is long past its grace.
        assert_eq!(kept, ["snap-00009", "snap-00008"]);
    }

    /// vol-0's one snapshot, ours, completed, under `lean` (keeps the last 1).
    fn only_lean_snapshot() -> Spec {
        Spec {
            volume: 0,
            hours: 10,
            state: SnapshotState::Completed,
            owner: 0,
            policy: 2,
            held: false,
            ami: false,
            locked: false,
        }
    }

    #[test]
    fn an_encrypted_copy_replaces_its_original_only_once_completed() {
        // `lean` keeps the last 1: the original is vol-0's only snapshot.
        let mut w = world(&[only_lean_snapshot()], &[]);
        let original = w.snapshots[0].clone();
        let mut copy = Snapshot {
            id: "snap-copy".into(),
            // EC2 stamps the copy when it is made, long after the original.
            start_time: Some(t0() + Duration::days(200)),
            tags: crate::encryption::copy_tags(&original),
            ..original.clone()
        };
        copy.tags.insert(
            crate::tags::CREATED_AT.into(),
            crate::tags::format_time(t0()),
        );
        w.snapshots.push(copy.clone());
        // In flight (tagged pending): the original stays, kept by `last`.
        assert!(deleted_ids(&run(&w)).is_empty());

        // complete-snapshots marks the copy completed and supersedes the original.
        w.snapshots[1]
            .tags
            .insert(crate::tags::STATE.into(), "completed".into());
        w.snapshots[0]
            .tags
            .insert(crate::tags::SUPERSEDED_BY.into(), "snap-copy".into());
        let deleted = deleted_ids(&run(&w));
        assert_eq!(deleted, BTreeSet::from([original.id.clone()]));

        // A superseded original whose copy is gone is kept again.
        w.snapshots.pop();
        assert!(deleted_ids(&run(&w)).is_empty());
    }

    /// A superseded original stays until its slot closes: the next tick
    /// finds the slot's snapshots by their Description, which the copy
    /// does not carry, and would otherwise take the slot again.
    #[test]
    fn a_superseded_original_stays_while_its_slot_is_open() {
        let mut w = world(&[only_lean_snapshot()], &[]);
        // `lean` is @daily in UTC: the original's slot is t0's midnight.
        w.snapshots[0]
            .tags
            .insert(crate::tags::SLOT.into(), crate::tags::format_time(t0()));
        let mut copy = Snapshot {
            id: "snap-copy".into(),
            start_time: Some(t0() + Duration::hours(11)),
            tags: crate::encryption::copy_tags(&w.snapshots[0]),
            ..w.snapshots[0].clone()
        };
        copy.tags
            .insert(crate::tags::STATE.into(), "completed".into());
        w.snapshots[0]
            .tags
            .insert(crate::tags::SUPERSEDED_BY.into(), "snap-copy".into());
        w.snapshots.push(copy);

        w.facts.now = t0() + Duration::hours(23);
        let plans = run(&w);
        let original = plans
            .iter()
            .flat_map(|p| &p.snapshots)
            .find(|s| s.snapshot.id == "snap-00000")
            .unwrap();
        assert_eq!(original.verdict, Err(Protection::SlotOpen));

        w.facts.now = t0() + Duration::hours(24);
        assert_eq!(
            deleted_ids(&run(&w)),
            BTreeSet::from(["snap-00000".to_string()])
        );
    }
}

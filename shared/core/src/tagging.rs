//! What tag-snapshots writes: for each managed snapshot, the tags it lacks or
//! carries with a stale value, and the CreateTags batches that write them. Pure.
//!
//! Two kinds of tags:
//! - **labels** (`lifecycle:retained-by`, `lifecycle:expires-at`) on every
//!   completed managed snapshot, from the retention planner
//!   ([`crate::retention::project`]) run per volume and policy exactly as
//!   expiry runs it ([`crate::expiry::retention_groups`]);
//! - **propagated** tags: `Name`, the policy's `copy_tags` from the volume and
//!   its instance, the policy's static `tags`, and the `lifecycle:volume-id`,
//!   `lifecycle:instance-id`, `lifecycle:device` a snapshot lacks (multi-volume
//!   snapshots get one tag set for all volumes at creation).
//!
//! Only differences are written, and nothing is ever removed: a tag a user put
//! on a snapshot by hand stays. A propagated key follows its source, though:
//! when the volume's `Owner` changes, so does its snapshots' `Owner`.
//! `lifecycle:instance-id` and `lifecycle:device` record where the volume was
//! attached when the snapshot was taken, so they are filled, never rewritten.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::expiry;
use crate::model::{Instance, Snapshot, SnapshotState, Tags, Volume};
use crate::policy::Policies;
use crate::retention::{self, Expiry};
use crate::tags::{self, SkipReason, SkippedTag};

/// `lifecycle:retained-by` of a snapshot no rule keeps (expiry deletes it
/// next, unless a safety rule protects it).
pub(crate) const RETAINED_BY_NONE: &str = "none";
/// `lifecycle:expires-at` of a snapshot that is never projected to expire.
pub(crate) const EXPIRES_NEVER: &str = "never";
/// The word `lifecycle:retained-by` lists for a user's `lifecycle:hold`.
pub(crate) const RETAINED_BY_HOLD: &str = "hold";
use crate::model::COPY_VOLUME_ID as PLACEHOLDER_VOLUME;

/// The tags one snapshot should get, split so batches can form across
/// snapshots: labels are shared by snapshots of one slot across volumes,
/// propagated tags by the snapshots of one volume.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagChange {
    pub snapshot_id: String,
    pub labels: Tags,
    pub propagated: Tags,
}

impl TagChange {
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.propagated.is_empty()
    }

    pub fn all(&self) -> Tags {
        let mut all = self.propagated.clone();
        all.extend(self.labels.clone());
        all
    }
}

/// A tag not written, on which snapshot, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedOnSnapshot {
    pub snapshot_id: String,
    #[serde(flatten)]
    pub tag: SkippedTag,
}

/// The run's plan.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct TagPlan {
    #[serde(skip)]
    pub changes: Vec<TagChange>,
    /// Managed snapshots examined.
    pub examined: usize,
    /// Snapshots whose tags are already right.
    pub unchanged: usize,
    pub skipped: Vec<SkippedOnSnapshot>,
    /// Snapshots whose volume no longer exists: labels only, under the
    /// policy's orphan rules; their propagated tags stay as they are.
    pub orphaned: Vec<String>,
    /// Volumes still attached to an instance EC2 no longer lists.
    pub missing_instances: Vec<String>,
    /// Snapshots naming a policy that is not configured: left alone.
    pub unknown_policy: Vec<String>,
}

/// What the plan reads about the account.
pub struct Sources<'a> {
    pub deployment: &'a str,
    pub policies: &'a Policies,
    /// The volumes that still exist, by id.
    pub volumes: &'a BTreeMap<String, Volume>,
    /// Their instances, by id.
    pub instances: &'a BTreeMap<String, Instance>,
    pub now: DateTime<Utc>,
}

/// Plan the tags of `snapshots`. Pass whole volumes: labels depend on every
/// snapshot of a volume, so a volume's snapshots are planned together.
pub fn plan(sources: &Sources<'_>, snapshots: &[Snapshot]) -> TagPlan {
    let mut out = TagPlan::default();
    let mut missing_instances = BTreeSet::new();
    for ((volume_id, policy_name), group) in expiry::retention_groups(snapshots, sources.deployment)
    {
        // Not ours (or no policy tag): nothing to do.
        let Some(policy_name) = policy_name else {
            continue;
        };
        out.examined += group.len();
        let Some(policy) = sources.policies.get(policy_name) else {
            out.unknown_policy
                .extend(group.iter().map(|s| s.id.clone()));
            continue;
        };
        let volume = volume_id.and_then(|v| sources.volumes.get(v));
        let instance = volume.and_then(|v| v.attachment.as_ref()).and_then(|a| {
            match sources.instances.get(&a.instance_id) {
                Some(i) => Some(i),
                None => {
                    if let Some(v) = volume {
                        missing_instances.insert(v.id.clone());
                    }
                    None
                }
            }
        });
        if volume.is_none() {
            out.orphaned.extend(group.iter().map(|s| s.id.clone()));
        }

        // Labels: the planner, as expiry runs it, and the projection.
        // No more snapshots will come for a deleted volume: its orphan rules
        // apply and nothing displaces what they keep.
        let orphan = volume.is_none();
        let projections = projections(policy, &group, sources.deployment, orphan);

        for snapshot in group {
            let labels = projections
                .get(&snapshot.id)
                .filter(|_| snapshot.state == SnapshotState::Completed)
                .map(|p| labels_of(snapshot, p, sources.now))
                .unwrap_or_default();
            let propagated = match volume {
                Some(volume) => propagated_of(snapshot, policy, volume, instance),
                None => Vec::new(),
            };
            let (change, skipped) = diff(snapshot, labels, propagated);
            out.skipped.extend(skipped);
            if change.is_empty() {
                out.unchanged += 1;
            } else {
                out.changes.push(change);
            }
        }
    }
    out.missing_instances = missing_instances.into_iter().collect();
    out
}

/// The retention planner's decision and projected expiry of each completed
/// snapshot of one retention group (one volume, one policy), as expiry plans
/// it: `orphan` (the volume is gone) applies the orphan rules, and nothing
/// displaces what they keep. What `lifecycle:retained-by` and
/// `lifecycle:expires-at` say, and what the report's archive figures use.
pub fn projections(
    policy: &crate::policy::Policy,
    group: &[&Snapshot],
    deployment: &str,
    orphan: bool,
) -> BTreeMap<String, retention::Projection> {
    let keep = if orphan {
        &policy.orphans
    } else {
        &policy.keep
    };
    retention::project(
        keep,
        policy.schedule.timezone(),
        &expiry::candidates(group, deployment, keep),
        |t| {
            if orphan {
                None
            } else {
                policy.schedule.next_slot_after(t)
            }
        },
    )
    .into_iter()
    .map(|p| (p.decision.id.clone(), p))
    .collect()
}

/// The labels of disaster-recovery copies in one region. `kept_there`:
/// the policies as that region keeps them (`Policies::as_kept_in`). Each
/// source volume's copies are labelled by the target's rules, projected
/// with a copy per bucket of its finest rule
/// ([`crate::copies::next_copy_after`]); nothing else is written on a copy.
pub fn label_copies(
    deployment: &str,
    kept_there: &Policies,
    copies: &[Snapshot],
    now: DateTime<Utc>,
) -> TagPlan {
    let mut out = TagPlan::default();
    for ((_, policy_name), group) in expiry::retention_groups(copies, deployment) {
        let Some(policy_name) = policy_name else {
            continue;
        };
        out.examined += group.len();
        let Some(policy) = kept_there.get(policy_name) else {
            out.unknown_policy
                .extend(group.iter().map(|s| s.id.clone()));
            continue;
        };
        let keep = &policy.keep;
        let projections: BTreeMap<String, retention::Projection> = retention::project(
            keep,
            policy.schedule.timezone(),
            &expiry::candidates(&group, deployment, keep),
            |t| crate::copies::next_copy_after(&policy.schedule, keep, t),
        )
        .into_iter()
        .map(|p| (p.decision.id.clone(), p))
        .collect();
        for snapshot in group {
            let labels = projections
                .get(&snapshot.id)
                .filter(|_| snapshot.state == SnapshotState::Completed)
                .map(|p| labels_of(snapshot, p, now))
                .unwrap_or_default();
            let (change, skipped) = diff(snapshot, labels, Vec::new());
            out.skipped.extend(skipped);
            if change.is_empty() {
                out.unchanged += 1;
            } else {
                out.changes.push(change);
            }
        }
    }
    out
}

/// `lifecycle:retained-by` and `lifecycle:expires-at` of one snapshot.
fn labels_of(
    snapshot: &Snapshot,
    projection: &retention::Projection,
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    let held = tags::is_held(&snapshot.tags);
    let mut reasons: Vec<&str> = projection
        .decision
        .reasons
        .iter()
        .map(|r| r.as_str())
        .collect();
    if held {
        reasons.push(RETAINED_BY_HOLD);
    }
    let retained_by = if reasons.is_empty() {
        RETAINED_BY_NONE.to_string()
    } else {
        reasons.join(",")
    };
    let expires_at = match (held, projection.expiry) {
        (true, _) | (false, Expiry::Never) => EXPIRES_NEVER.to_string(),
        (false, Expiry::At(t)) => tags::format_time(t),
        // No rule keeps it: it expired when the rules let go of it. The first
        // run that saw that recorded the time; later runs keep it, so the
        // label is stable (and a second run writes nothing).
        (false, Expiry::Due) => snapshot
            .tags
            .get(tags::EXPIRES_AT)
            .and_then(|v| tags::parse_time(v))
            .filter(|t| *t <= now)
            .map_or_else(|| tags::format_time(now), tags::format_time),
    };
    vec![
        (tags::RETAINED_BY.to_string(), retained_by),
        (tags::EXPIRES_AT.to_string(), expires_at),
    ]
}

/// The propagated tags of one snapshot, in priority order: lifecycle keys,
/// `Name`, the policy's static tags, the copied tags.
fn propagated_of(
    snapshot: &Snapshot,
    policy: &crate::policy::Policy,
    volume: &Volume,
    instance: Option<&Instance>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if !snapshot.tags.contains_key(tags::VOLUME_ID) {
        if let Some(v) = snapshot
            .volume_id
            .as_deref()
            .filter(|v| *v != PLACEHOLDER_VOLUME)
        {
            out.push((tags::VOLUME_ID.to_string(), v.to_string()));
        }
    }
    // Fill where the volume was attached, unless the snapshot says it was
    // taken on another instance than the one it is attached to now.
    if let Some(attachment) = &volume.attachment {
        let same_instance = snapshot
            .tags
            .get(tags::INSTANCE_ID)
            .is_none_or(|i| *i == attachment.instance_id);
        if same_instance {
            if !snapshot.tags.contains_key(tags::INSTANCE_ID) {
                out.push((
                    tags::INSTANCE_ID.to_string(),
                    attachment.instance_id.clone(),
                ));
            }
            if !snapshot.tags.contains_key(tags::DEVICE) && !attachment.device.is_empty() {
                out.push((tags::DEVICE.to_string(), attachment.device.clone()));
            }
        }
    }
    out.push((
        tags::NAME.to_string(),
        tags::snapshot_name(volume, instance),
    ));
    out.extend(policy.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    out.extend(tags::copied_tags(
        &policy.copy_tags,
        &volume.tags,
        instance.map(|i| &i.tags),
    ));
    out
}

/// The differing tags that fit: nothing already right, nothing EC2 would
/// refuse, and never past EC2's 50 tags (labels first, then propagation in
/// priority order). Existing tags are never removed to make room.
fn diff(
    snapshot: &Snapshot,
    labels: Vec<(String, String)>,
    propagated: Vec<(String, String)>,
) -> (TagChange, Vec<SkippedOnSnapshot>) {
    let mut change = TagChange {
        snapshot_id: snapshot.id.clone(),
        ..TagChange::default()
    };
    let mut skipped = Vec::new();
    let mut count = snapshot.tags.len();
    let wanted = labels
        .into_iter()
        .map(|kv| (true, kv))
        .chain(propagated.into_iter().map(|kv| (false, kv)));
    for (is_label, (key, value)) in wanted {
        if snapshot.tags.get(&key) == Some(&value) {
            continue;
        }
        let target = if is_label {
            &mut change.labels
        } else {
            &mut change.propagated
        };
        if target.contains_key(&key) {
            continue;
        }
        let new_key = !snapshot.tags.contains_key(&key);
        let reason = if key.starts_with(tags::AWS_PREFIX) {
            Some(SkipReason::Reserved)
        } else if key.chars().count() > tags::MAX_KEY_CHARS {
            Some(SkipReason::KeyTooLong)
        } else if value.chars().count() > tags::MAX_VALUE_CHARS {
            Some(SkipReason::ValueTooLong)
        } else if new_key && count >= tags::MAX_TAGS_PER_RESOURCE {
            Some(SkipReason::TagLimit)
        } else {
            None
        };
        match reason {
            Some(reason) => skipped.push(SkippedOnSnapshot {
                snapshot_id: snapshot.id.clone(),
                tag: SkippedTag { key, reason },
            }),
            None => {
                count += usize::from(new_key);
                target.insert(key, value);
            }
        }
    }
    (change, skipped)
}

/// The only lifecycle keys tag-snapshots writes (its role's allow-list,
/// template.yaml `TagOwnSnapshotsLabels`, is tested against this list).
pub const LIFECYCLE_KEYS_WRITTEN: [&str; 5] = [
    tags::RETAINED_BY,
    tags::EXPIRES_AT,
    tags::VOLUME_ID,
    tags::INSTANCE_ID,
    tags::DEVICE,
];

/// One CreateTags: the same tags on many snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagBatch {
    pub tags: Tags,
    pub snapshot_ids: Vec<String>,
}

/// CreateTags calls for the changes, `batch_size` snapshots per call at most.
///
/// A call carries either `lifecycle:` keys only or none at all: the role
/// may write only the lifecycle keys tag-snapshots owns, and any other key
/// (`copy_tags` can name any), so IAM can allow-list the first kind
/// (docs/permissions.md). Within that, two groupings are tried and the one
/// with fewer calls wins: the lifecycle keys of a snapshot together (best
/// when many snapshots change alike), or its retention labels apart from the
/// lifecycle keys it takes from its volume (best on a first run, when every
/// slot's snapshots share labels and every volume's its volume id).
pub fn batches(changes: &[TagChange], batch_size: usize) -> Vec<TagBatch> {
    let batch_size = batch_size.max(1);
    // Grouped as they are made: only the distinct tag sets are kept, with
    // their snapshot ids, never a tag set per snapshot (memory on a large
    // account).
    type Groups = BTreeMap<Tags, Vec<String>>;
    let add = |groups: &mut Groups, tags: Tags, id: &str| {
        if !tags.is_empty() {
            groups.entry(tags).or_default().push(id.to_string());
        }
    };
    let is_lifecycle = |k: &String| k.starts_with(tags::LIFECYCLE_PREFIX);
    let mut together = Groups::new();
    let mut apart = Groups::new();
    for c in changes {
        let id = c.snapshot_id.as_str();
        let (from_volume, other): (Tags, Tags) = c
            .propagated
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .partition(|(k, _)| is_lifecycle(k));
        let mut lifecycle = c.labels.clone();
        lifecycle.extend(from_volume.iter().map(|(k, v)| (k.clone(), v.clone())));
        add(&mut together, lifecycle, id);
        add(&mut together, other.clone(), id);
        add(&mut apart, c.labels.clone(), id);
        add(&mut apart, from_volume, id);
        add(&mut apart, other, id);
    }
    let calls = |groups: &Groups| {
        groups
            .values()
            .map(|ids| ids.len().div_ceil(batch_size))
            .sum::<usize>()
    };
    let chosen = if calls(&apart) < calls(&together) {
        apart
    } else {
        together
    };
    chosen
        .into_iter()
        .flat_map(|(tags, mut ids)| {
            ids.sort();
            ids.chunks(batch_size)
                .map(|chunk| TagBatch {
                    tags: tags.clone(),
                    snapshot_ids: chunk.to_vec(),
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{format_time, parse_time};
    use crate::model::Attachment;
    use chrono::Duration;
    use proptest::prelude::*;

    const POLICIES: &str = r#"{
        "gold": {"schedule": "@daily", "keep": {"last": 2, "daily": 3, "weekly": 2},
                 "copy_tags": ["Owner", "CostCenter", "Team"], "tags": {"Tier": "gold"}},
        "all":  {"schedule": "@daily", "keep": {"daily": 7}, "copy_tags": ["*"]}
    }"#;

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A completed managed snapshot of `volume` taken `day` days after Jan 1.
    fn snapshot(id: &str, volume: &str, policy: &str, day: i64) -> Snapshot {
        let time = t("2026-01-01T00:03:00Z") + Duration::days(day);
        Snapshot {
            id: id.into(),
            volume_id: Some(volume.into()),
            state: SnapshotState::Completed,
            start_time: Some(time),
            volume_size_gib: Some(8),
            full_size_bytes: None,
            archived: false,
            restore_expiry: None,
            encrypted: true,
            kms_key_id: None,
            description: None,
            owner_id: None,
            tags: tags(&[
                (tags::MANAGED_BY, "prod"),
                (tags::POLICY, policy),
                (tags::SLOT, &format_time(time - Duration::minutes(3))),
                (tags::STATE, "completed"),
                (tags::VOLUME_ID, volume),
                (tags::CREATED_AT, &format_time(time)),
                (tags::CONSISTENCY, "crash"),
            ]),
        }
    }

    fn volume(id: &str, pairs: &[(&str, &str)], attached: Option<(&str, &str)>) -> Volume {
        Volume {
            volume_type: None,
            id: id.into(),
            size_gib: 8,
            encrypted: true,
            tags: tags(pairs),
            attachment: attached.map(|(i, d)| Attachment {
                instance_id: i.into(),
                device: d.into(),
            }),
        }
    }

    fn instance(id: &str, pairs: &[(&str, &str)]) -> Instance {
        Instance {
            id: id.into(),
            state: "running".into(),
            state_reason: None,
            root_device: Some("/dev/xvda".into()),
            stopped_at: None,
            tags: tags(pairs),
            volumes: Vec::new(),
        }
    }

    struct World {
        policies: Policies,
        volumes: BTreeMap<String, Volume>,
        instances: BTreeMap<String, Instance>,
        now: DateTime<Utc>,
    }

    impl World {
        fn new(volumes: Vec<Volume>, instances: Vec<Instance>) -> Self {
            Self {
                policies: Policies::parse(POLICIES).unwrap(),
                volumes: volumes.into_iter().map(|v| (v.id.clone(), v)).collect(),
                instances: instances.into_iter().map(|i| (i.id.clone(), i)).collect(),
                now: t("2026-02-01T12:00:00Z"),
            }
        }

        fn plan(&self, snapshots: &[Snapshot]) -> TagPlan {
            plan(
                &Sources {
                    deployment: "prod",
                    policies: &self.policies,
                    volumes: &self.volumes,
                    instances: &self.instances,
                    now: self.now,
                },
                snapshots,
            )
        }
    }

    fn change_of<'p>(plan: &'p TagPlan, id: &str) -> &'p TagChange {
        plan.changes.iter().find(|c| c.snapshot_id == id).unwrap()
    }

    /// Write a plan's changes onto the snapshots, as EC2 would.
    fn apply(plan: &TagPlan, snapshots: &mut [Snapshot]) {
        for change in &plan.changes {
            let s = snapshots
                .iter_mut()
                .find(|s| s.id == change.snapshot_id)
                .unwrap();
            s.tags.extend(change.all());
        }
    }

    #[test]
    fn copies_from_volume_and_instance_with_the_volume_winning() {
        let world = World::new(
            vec![volume(
                "vol-1",
                &[("Owner", "alice"), ("Backup", "gold"), ("Other", "x")],
                Some(("i-1", "/dev/xvdf")),
            )],
            vec![instance(
                "i-1",
                &[("Name", "web"), ("Owner", "bob"), ("CostCenter", "42")],
            )],
        );
        let plan = world.plan(&[snapshot("snap-1", "vol-1", "gold", 0)]);
        let change = change_of(&plan, "snap-1");
        assert_eq!(
            change.propagated,
            tags(&[
                ("Name", "web:/dev/xvdf"),
                ("Owner", "alice"),
                ("CostCenter", "42"),
                ("Tier", "gold"),
                (tags::INSTANCE_ID, "i-1"),
                (tags::DEVICE, "/dev/xvdf"),
            ])
        );
        assert_eq!(change.labels[tags::RETAINED_BY], "last,daily,weekly");
    }

    #[test]
    fn a_second_plan_after_writing_the_first_changes_nothing() {
        let world = World::new(
            vec![volume("vol-1", &[("Owner", "alice")], None)],
            Vec::new(),
        );
        let mut snapshots: Vec<Snapshot> = (0..20)
            .map(|d| snapshot(&format!("snap-{d:02}"), "vol-1", "gold", d))
            .collect();
        let first = world.plan(&snapshots);
        assert_eq!(first.changes.len(), 20);
        apply(&first, &mut snapshots);
        let second = world.plan(&snapshots);
        assert!(second.changes.is_empty(), "{:?}", second.changes);
        assert_eq!(second.unchanged, 20);
    }

    #[test]
    fn labels_are_the_planners_decisions_and_projection() {
        let world = World::new(vec![volume("vol-1", &[], None)], Vec::new());
        let snapshots: Vec<Snapshot> = (0..10)
            .map(|d| snapshot(&format!("snap-{d:02}"), "vol-1", "gold", d))
            .collect();
        let plan = world.plan(&snapshots);
        let candidates: Vec<retention::Candidate> = snapshots
            .iter()
            .map(|s| retention::Candidate {
                id: s.id.clone(),
                time: s.start_time.unwrap(),
                tags: Vec::new(),
            })
            .collect();
        let gold = world.policies.get("gold").unwrap();
        for decision in retention::plan(&gold.keep, chrono_tz::Tz::UTC, &candidates) {
            let labels = &change_of(&plan, &decision.id).labels;
            let expected = if decision.keep() {
                decision.retained_by()
            } else {
                RETAINED_BY_NONE.to_string()
            };
            assert_eq!(labels[tags::RETAINED_BY], expected, "{}", decision.id);
        }
        // The newest (Jan 10) is kept by last, daily and weekly; daily 3 lets
        // go of it when the third new day opens (Jan 13's slot).
        assert_eq!(
            change_of(&plan, "snap-09").labels[tags::EXPIRES_AT],
            "2026-01-13T00:00:00Z"
        );
        // Not kept: expired now, and the label stays put on later runs.
        assert_eq!(
            change_of(&plan, "snap-00").labels[tags::EXPIRES_AT],
            format_time(world.now)
        );
    }

    #[test]
    fn drift_updates_copied_tags_and_never_removes_hand_added_ones() {
        let mut world = World::new(
            vec![volume("vol-1", &[("Owner", "alice"), ("Team", "db")], None)],
            Vec::new(),
        );
        let mut snapshots = vec![snapshot("snap-1", "vol-1", "gold", 0)];
        snapshots[0]
            .tags
            .insert("Ticket".into(), "OPS-7 keep for audit".into());
        let first = world.plan(&snapshots);
        apply(&first, &mut snapshots);

        // The owner changes and the Team tag is removed from the volume.
        world
            .volumes
            .insert("vol-1".into(), volume("vol-1", &[("Owner", "carol")], None));
        let second = world.plan(&snapshots);
        assert_eq!(
            change_of(&second, "snap-1").all(),
            tags(&[("Owner", "carol")])
        );
        apply(&second, &mut snapshots);
        assert_eq!(snapshots[0].tags["Ticket"], "OPS-7 keep for audit");
        assert_eq!(snapshots[0].tags["Team"], "db", "tags are never removed");
    }

    #[test]
    fn fifty_tags_at_most_with_lifecycle_tags_winning() {
        let many: Vec<(String, String)> = (0..60)
            .map(|i| (format!("Key{i:02}"), format!("v{i}")))
            .collect();
        let many_ref: Vec<(&str, &str)> =
            many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let world = World::new(
            vec![volume("vol-1", &many_ref, Some(("i-1", "/dev/sdb")))],
            vec![instance("i-1", &[("Name", "db")])],
        );
        let mut snapshots = vec![snapshot("snap-1", "all", "all", 0)];
        snapshots[0].volume_id = Some("vol-1".into());
        snapshots[0]
            .tags
            .insert(tags::VOLUME_ID.into(), "vol-1".into());
        let plan = world.plan(&snapshots);
        let change = change_of(&plan, "snap-1");
        let total = snapshots[0].tags.len() + change.all().len();
        assert_eq!(total, tags::MAX_TAGS_PER_RESOURCE);
        for key in [tags::RETAINED_BY, tags::EXPIRES_AT] {
            assert!(change.labels.contains_key(key));
        }
        for key in [tags::INSTANCE_ID, tags::DEVICE, "Name"] {
            assert!(change.propagated.contains_key(key), "{key}");
        }
        let dropped = plan
            .skipped
            .iter()
            .filter(|s| s.tag.reason == SkipReason::TagLimit)
            .count();
        assert_eq!(dropped, 60 + snapshots[0].tags.len() + 5 - 50);
    }

    #[test]
    fn overlong_values_are_skipped_and_reported() {
        let long = "x".repeat(300);
        let world = World::new(
            vec![volume("vol-1", &[("Owner", &long), ("Team", "db")], None)],
            Vec::new(),
        );
        let plan = world.plan(&[snapshot("snap-1", "vol-1", "gold", 0)]);
        assert_eq!(
            plan.skipped,
            [SkippedOnSnapshot {
                snapshot_id: "snap-1".into(),
                tag: SkippedTag {
                    key: "Owner".into(),
                    reason: SkipReason::ValueTooLong
                }
            }]
        );
        assert_eq!(change_of(&plan, "snap-1").propagated["Team"], "db");
    }

    #[test]
    fn orphans_get_orphan_labels_and_keep_their_tags() {
        let world = World::new(Vec::new(), Vec::new());
        let snapshots: Vec<Snapshot> = (0..3)
            .map(|d| snapshot(&format!("snap-{d}"), "vol-gone", "gold", d))
            .collect();
        let plan = world.plan(&snapshots);
        assert_eq!(plan.orphaned.len(), 3);
        let newest = change_of(&plan, "snap-2");
        assert!(newest.propagated.is_empty());
        assert_eq!(newest.labels[tags::RETAINED_BY], "last");
        assert_eq!(newest.labels[tags::EXPIRES_AT], EXPIRES_NEVER);
        assert_eq!(change_of(&plan, "snap-1").labels[tags::RETAINED_BY], "none");
    }

    #[test]
    fn held_snapshots_say_so_and_never_expire() {
        let world = World::new(vec![volume("vol-1", &[], None)], Vec::new());
        let mut snapshots: Vec<Snapshot> = (0..10)
            .map(|d| snapshot(&format!("snap-{d}"), "vol-1", "gold", d))
            .collect();
        snapshots[0].tags.insert(tags::HOLD.into(), "legal".into());
        let plan = world.plan(&snapshots);
        let labels = &change_of(&plan, "snap-0").labels;
        assert_eq!(labels[tags::RETAINED_BY], "hold");
        assert_eq!(labels[tags::EXPIRES_AT], EXPIRES_NEVER);
    }

    #[test]
    fn multi_volume_snapshots_get_their_volume_and_device() {
        let world = World::new(
            vec![volume("vol-1", &[], Some(("i-1", "/dev/sdc")))],
            vec![instance("i-1", &[])],
        );
        let mut s = snapshot("snap-1", "vol-1", "gold", 0);
        s.tags.remove(tags::VOLUME_ID);
        s.tags.insert(tags::INSTANCE_ID.into(), "i-1".into());
        let plan = world.plan(&[s]);
        let change = change_of(&plan, "snap-1");
        assert_eq!(change.propagated[tags::VOLUME_ID], "vol-1");
        assert_eq!(change.propagated[tags::DEVICE], "/dev/sdc");
        assert_eq!(change.propagated["Name"], "vol-1");
    }

    #[test]
    fn unknown_policies_and_other_deployments_are_left_alone() {
        let world = World::new(vec![volume("vol-1", &[], None)], Vec::new());
        let mut other = snapshot("snap-other", "vol-1", "gold", 1);
        other.tags.insert(tags::MANAGED_BY.into(), "staging".into());
        let plan = world.plan(&[snapshot("snap-1", "vol-1", "silver", 0), other]);
        assert!(plan.changes.is_empty());
        assert_eq!(plan.unknown_policy, ["snap-1"]);
    }

    fn change(id: &str, labels: &[(&str, &str)], propagated: &[(&str, &str)]) -> TagChange {
        TagChange {
            snapshot_id: id.into(),
            labels: tags(labels),
            propagated: tags(propagated),
        }
    }

    #[test]
    fn no_call_mixes_lifecycle_keys_with_other_keys() {
        let changes: Vec<TagChange> = (0..40)
            .map(|i| {
                change(
                    &format!("snap-{i}"),
                    &[
                        (tags::RETAINED_BY, if i % 2 == 0 { "last" } else { "daily" }),
                        (tags::EXPIRES_AT, "never"),
                    ],
                    &[
                        (tags::VOLUME_ID, &format!("vol-{}", i % 3)),
                        (tags::NAME, "db"),
                        ("Owner", if i % 5 == 0 { "ana" } else { "li" }),
                    ],
                )
            })
            .collect();
        let batches = batches(&changes, 500);
        for b in &batches {
            let lifecycle = b
                .tags
                .keys()
                .filter(|k| k.starts_with("lifecycle:"))
                .count();
            assert!(lifecycle == 0 || lifecycle == b.tags.len(), "{:?}", b.tags);
            assert!(b
                .tags
                .keys()
                .filter(|k| k.starts_with("lifecycle:"))
                .all(|k| LIFECYCLE_KEYS_WRITTEN.contains(&k.as_str())));
        }
        // Every change is written whole, across its calls.
        for c in &changes {
            let mut written = Tags::new();
            for b in batches
                .iter()
                .filter(|b| b.snapshot_ids.contains(&c.snapshot_id))
            {
                written.extend(b.tags.clone());
            }
            assert_eq!(written, c.all());
        }
    }

    #[test]
    fn identical_changes_take_ceil_n_over_batch_size_calls() {
        for n in [1usize, 499, 500, 501, 1234] {
            let changes: Vec<TagChange> = (0..n)
                .map(|i| change(&format!("snap-{i}"), &[], &[("Owner", "carol")]))
                .collect();
            let batches = batches(&changes, 500);
            assert_eq!(batches.len(), n.div_ceil(500), "n = {n}");
            let covered: usize = batches.iter().map(|b| b.snapshot_ids.len()).sum();
            assert_eq!(covered, n);
        }
    }

    #[test]
    fn a_first_run_batches_labels_by_slot_and_propagation_by_volume() {
        // 3 volumes x 4 slots: no two snapshots share both, but each slot's
        // labels and each volume's propagated tags are shared.
        let mut changes = Vec::new();
        for v in 0..3 {
            for slot in 0..4 {
                let expires = format!("2026-02-0{slot}T00:00:00Z");
                changes.push(change(
                    &format!("snap-{v}-{slot}"),
                    &[(tags::EXPIRES_AT, &expires)],
                    &[("Name", &format!("vol-{v}"))],
                ));
            }
        }
        let batches = batches(&changes, 500);
        assert_eq!(batches.len(), 4 + 3);
    }

    proptest! {
        /// Whatever the tags and history, writing the plan converges: the
        /// next plan writes nothing, no tag is ever removed, and no snapshot
        /// ends with more than 50 tags.
        #[test]
        fn writing_the_plan_converges_within_ec2_limits(
            days in proptest::collection::vec(0i64..60, 1..15),
            volume_tags in proptest::collection::vec(0usize..70, 0..4),
            hand_added in 0usize..48,
        ) {
            let volume_pairs: Vec<(String, String)> = volume_tags
                .iter()
                .map(|n| (format!("K{n}"), "v".repeat(*n * 4)))
                .collect();
            let refs: Vec<(&str, &str)> = volume_pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let world = World::new(
                vec![volume("vol-1", &refs, Some(("i-1", "/dev/sdf")))],
                vec![instance("i-1", &[("Name", "app"), ("K1", "instance")])],
            );
            let mut snapshots: Vec<Snapshot> = days
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let mut s = snapshot(&format!("snap-{i:02}"), "vol-1", "all", *d);
                    for h in 0..hand_added {
                        s.tags.insert(format!("hand{h}"), "x".into());
                    }
                    s
                })
                .collect();
            let before: Vec<Tags> = snapshots.iter().map(|s| s.tags.clone()).collect();
            let first = world.plan(&snapshots);
            apply(&first, &mut snapshots);
            for (s, old) in snapshots.iter().zip(&before) {
                prop_assert!(s.tags.len() <= tags::MAX_TAGS_PER_RESOURCE || s.tags.len() == old.len());
                prop_assert!(old.keys().all(|k| s.tags.contains_key(k)));
            }
            let second = world.plan(&snapshots);
            prop_assert!(second.changes.is_empty(), "{:?}", second.changes);
        }
    }
}

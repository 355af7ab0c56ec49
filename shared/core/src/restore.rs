//! Restore (docs/restore.md): which snapshot brings a volume back to a
//! moment, and the volume to make from it. Nothing restores by itself: the
//! operator's command-line tool asks these rules, then acts.
//!
//! The choice is made among snapshots the ownership check proved
//! ([`crate::ownership::sift`]'s `owned`, their identity tags set from the
//! proof), never on a tag's word: a snapshot made by hand with a copied
//! Description and tags is not a candidate, however new.

use chrono::{DateTime, Utc};

use crate::keys;
use crate::model::{Snapshot, SnapshotState, Tags};

/// The moment a proven snapshot holds the data of: a scheduled snapshot's
/// EC2 StartTime, a copy's original's (the ledger's record, set by the
/// proof onto `lifecycle:created-at`).
pub fn data_time(s: &Snapshot) -> Option<DateTime<Utc>> {
    s.retention_time()
}

/// A volume and the volumes its data came from: `[0]` is the volume now,
/// then, if EC2 says it was created from a snapshot (its `SnapshotId`),
/// that snapshot's volume, and so on (a volume restored once, and restored
/// again). Its history is theirs.
pub(crate) type Lineage = [String];

/// The newest snapshot of the lineage's volumes among `owned` that EC2
/// says is completed and holds the data of `at` or earlier (ties: the
/// larger id, so the choice does not depend on listing order). A pending
/// or failed snapshot is never chosen. One in the archive tier is chosen
/// all the same (it is the right moment); [`needs_tier_restore`] says
/// whether EC2 will refuse a volume from it until its tier is restored.
pub fn choose<'a>(
    owned: &'a [Snapshot],
    lineage: &Lineage,
    at: DateTime<Utc>,
) -> Option<&'a Snapshot> {
    owned
        .iter()
        .filter(|s| of_lineage(s, lineage))
        .filter(|s| s.state == SnapshotState::Completed)
        .filter_map(|s| data_time(s).filter(|t| *t <= at).map(|t| (t, s)))
        .max_by(|(a, x), (b, y)| a.cmp(b).then_with(|| x.id.cmp(&y.id)))
        .map(|(_, s)| s)
}

fn of_lineage(s: &Snapshot, lineage: &Lineage) -> bool {
    s.source_volume_id()
        .is_some_and(|v| lineage.iter().any(|l| l == v))
}

/// True for a snapshot in the archive tier that is not restored for now:
/// CreateVolume refuses it until RestoreSnapshotTier has run (hours).
pub fn needs_tier_restore(s: &Snapshot) -> bool {
    s.archived && s.restore_expiry.is_none()
}

/// What `restore instance` brings back: one snapshot per volume, from one
/// slot when the deployment has one that covers every volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceChoice<'a> {
    /// (volume, its snapshot), in the order the volumes were given.
    pub chosen: Vec<(String, &'a Snapshot)>,
    /// Every snapshot is of one policy's slot.
    pub one_slot: bool,
    /// ... and they were taken together as one multi-volume set
    /// (CreateSnapshots): crash-consistent across the volumes.
    pub consistent_set: bool,
    /// Between the oldest and the newest data moment chosen.
    pub spread: chrono::Duration,
}

/// The snapshots that bring an instance's volumes (each with its
/// [`Lineage`]) back to `at`: the newest slot (policy and slot, as the
/// proof set them) at or before `at` in which every volume has a completed
/// snapshot; failing that, each volume's newest ([`choose`]), the spread
/// between them said. `sets` names the snapshots proven to be of this
/// instance's multi-volume sets. `Err` lists the volumes with no snapshot
/// at all.
pub fn choose_for_instance<'a>(
    owned: &'a [Snapshot],
    sets: &std::collections::BTreeSet<String>,
    volumes: &[Vec<String>],
    at: DateTime<Utc>,
) -> Result<InstanceChoice<'a>, Vec<String>> {
    use std::collections::BTreeMap;
    let slot_of = |s: &Snapshot| -> Option<(DateTime<Utc>, String)> {
        let slot = keys::parse_time(s.tags.get(keys::SLOT)?)?;
        Some((slot, s.tags.get(keys::POLICY)?.clone()))
    };
    let now_id = |lineage: &Vec<String>| lineage.first().cloned().unwrap_or_default();
    // (slot, policy) -> volume (its index) -> its snapshot of that slot.
    let mut slots: BTreeMap<(DateTime<Utc>, String), BTreeMap<usize, &'a Snapshot>> =
        BTreeMap::new();
    for (i, lineage) in volumes.iter().enumerate() {
        let eligible = owned
            .iter()
            .filter(|s| of_lineage(s, lineage))
            .filter(|s| s.state == SnapshotState::Completed)
            .filter(|s| data_time(s).is_some_and(|t| t <= at));
        for s in eligible {
            if let Some(key) = slot_of(s) {
                let entry = slots.entry(key).or_default().entry(i).or_insert(s);
                if s.id > entry.id {
                    *entry = s;
                }
            }
        }
    }
    let full = slots
        .iter()
        .rev()
        .find(|(_, by_volume)| (0..volumes.len()).all(|i| by_volume.contains_key(&i)));
    let (chosen, one_slot): (Vec<(String, &'a Snapshot)>, bool) = match full {
        Some((_, by_volume)) => (
            volumes
                .iter()
                .enumerate()
                .map(|(i, v)| (now_id(v), by_volume[&i]))
                .collect(),
            true,
        ),
        None => {
            let mut chosen = Vec::new();
            let mut missing = Vec::new();
            for v in volumes {
                match choose(owned, v, at) {
                    Some(s) => chosen.push((now_id(v), s)),
                    None => missing.push(now_id(v)),
                }
            }
            if !missing.is_empty() {
                return Err(missing);
            }
            (chosen, false)
        }
    };
    let times: Vec<DateTime<Utc>> = chosen.iter().filter_map(|(_, s)| data_time(s)).collect();
    let spread = match (times.iter().min(), times.iter().max()) {
        (Some(a), Some(b)) => *b - *a,
        _ => chrono::Duration::zero(),
    };
    let consistent_set = one_slot && chosen.iter().all(|(_, s)| sets.contains(&s.id));
    Ok(InstanceChoice {
        chosen,
        one_slot,
        consistent_set,
        spread,
    })
}

/// The volume a restore starts from, as EC2 describes it (if it still
/// exists): what the new one copies unless told otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceVolume {
    pub id: String,
    pub availability_zone: String,
    pub volume_type: String,
    pub size_gib: i32,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    pub tags: Tags,
    /// EC2's `SnapshotId`: the snapshot the volume was created from (EC2
    /// records it; no call changes it). What a [`Lineage`] follows.
    pub snapshot_id: Option<String>,
}

/// What the operator asked to differ from the source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub availability_zone: Option<String>,
    pub volume_type: Option<String>,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    pub kms_key: Option<String>,
}

/// The volume to create: everything CreateVolume is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    pub snapshot_id: String,
    pub availability_zone: String,
    pub volume_type: String,
    /// At least the snapshot's size (EC2 refuses less).
    pub size_gib: i32,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    /// `None`: the snapshot's own key (an unencrypted snapshot gives an
    /// unencrypted volume unless the account encrypts by default).
    pub kms_key: Option<String>,
    pub tags: Tags,
    /// CreateVolume's client token: the same token makes one volume however
    /// often it is asked (a drill's, across runs). `None`: the SDK's own,
    /// per call.
    pub client_token: Option<String>,
}

/// Why no volume can be specified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("the source volume {0} no longer exists: give the zone with --az")]
    NoZone(String),
    #[error("--iops is for io1, io2 and gp3 volumes, not {0}")]
    IopsNotAllowed(String),
    #[error("--throughput is for gp3 volumes, not {0}")]
    ThroughputNotAllowed(String),
}

/// The type a restore uses when the source volume is gone: EC2's current
/// general-purpose default.
pub(crate) const DEFAULT_TYPE: &str = "gp3";

/// Whether the new volume takes the source's place (`restore instance
/// --replace`: it carries the source's selector tag, so its backups go on)
/// or stands beside it (it does not opt in by itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Beside,
    Replacing,
}

/// The new volume for `snapshot` of `volume_id`: the source's zone, type,
/// size, IOPS and throughput unless overridden (IOPS and throughput only
/// where the type takes them), at least the snapshot's size; tagged
/// `lifecycle:restored-from`/`-at`, `lifecycle:restore-pending` (removed
/// when the restore is done), `Name` and the source's own tags, never a
/// `lifecycle:` or `aws:` key, nor the selector tag unless it replaces the
/// source.
pub fn volume_spec(
    snapshot: &Snapshot,
    volume_id: &str,
    source: Option<&SourceVolume>,
    overrides: &Overrides,
    selector_tag_key: &str,
    placement: Placement,
    now: DateTime<Utc>,
) -> Result<VolumeSpec, SpecError> {
    let availability_zone = overrides
        .availability_zone
        .clone()
        .or_else(|| source.map(|s| s.availability_zone.clone()))
        .ok_or_else(|| SpecError::NoZone(volume_id.to_string()))?;
    let volume_type = overrides
        .volume_type
        .clone()
        .or_else(|| source.map(|s| s.volume_type.clone()))
        .unwrap_or_else(|| DEFAULT_TYPE.to_string());
    let takes_iops = matches!(volume_type.as_str(), "io1" | "io2" | "gp3");
    let takes_throughput = volume_type == "gp3";
    if overrides.iops.is_some() && !takes_iops {
        return Err(SpecError::IopsNotAllowed(volume_type));
    }
    if overrides.throughput.is_some() && !takes_throughput {
        return Err(SpecError::ThroughputNotAllowed(volume_type));
    }
    // The source's settings carry over only to a volume of the same type.
    let same_type = source.is_some_and(|s| s.volume_type == volume_type);
    let iops = overrides
        .iops
        .or_else(|| same_type.then(|| source.and_then(|s| s.iops)).flatten())
        .filter(|_| takes_iops);
    let throughput = overrides
        .throughput
        .or_else(|| {
            same_type
                .then(|| source.and_then(|s| s.throughput))
                .flatten()
        })
        .filter(|_| takes_throughput);
    let size_gib = source
        .map(|s| s.size_gib)
        .into_iter()
        .chain(snapshot.volume_size_gib)
        .max()
        .unwrap_or(1);
    let mut tags = Tags::new();
    if let Some(source) = source {
        for (k, v) in &source.tags {
            let ours = k.starts_with(keys::LIFECYCLE_PREFIX) || k.starts_with(keys::AWS_PREFIX);
            if !ours && (k != selector_tag_key || placement == Placement::Replacing) {
                tags.insert(k.clone(), v.clone());
            }
        }
    }
    tags.entry(keys::NAME.to_string())
        .or_insert_with(|| format!("restored {volume_id}"));
    tags.insert(keys::RESTORED_FROM.into(), snapshot.id.clone());
    tags.insert(keys::RESTORED_AT.into(), keys::format_time(now));
    tags.insert(keys::RESTORE_PENDING.into(), keys::format_time(now));
    Ok(VolumeSpec {
        snapshot_id: snapshot.id.clone(),
        availability_zone,
        volume_type,
        size_gib,
        iops,
        throughput,
        kms_key: overrides.kms_key.clone(),
        tags,
        client_token: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        keys::parse_time(s).unwrap()
    }

    fn snap(id: &str, volume: &str, start: &str, state: SnapshotState) -> Snapshot {
        Snapshot {
            id: id.into(),
            volume_id: Some(volume.into()),
            state,
            start_time: Some(t(start)),
            volume_size_gib: Some(8),
            full_size_bytes: None,
            archived: false,
            restore_expiry: None,
            encrypted: true,
            kms_key_id: None,
            description: None,
            owner_id: None,
            tags: Tags::new(),
        }
    }

    fn source() -> SourceVolume {
        SourceVolume {
            id: "vol-1".into(),
            availability_zone: "eu-west-1b".into(),
            volume_type: "io2".into(),
            size_gib: 20,
            iops: Some(4000),
            throughput: None,
            tags: [
                ("Name", "db"),
                ("Backup", "gold"),
                ("Owner", "team-a"),
                ("lifecycle:hold", "x"),
                ("aws:cloudformation:stack-name", "s"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            snapshot_id: None,
        }
    }

    #[test]
    fn the_newest_completed_snapshot_at_or_before_the_moment_of_that_volume() {
        use SnapshotState::*;
        let mut copy = snap(
            "snap-copy",
            "vol-ffffffff",
            "2026-03-05T09:00:00Z",
            Completed,
        );
        // A copy made on the 5th of the original of the 2nd (the proof set
        // its volume and time).
        copy.tags.insert(keys::VOLUME_ID.into(), "vol-1".into());
        copy.tags.insert(keys::COPY_OF.into(), "snap-2".into());
        copy.tags
            .insert(keys::CREATED_AT.into(), "2026-03-02T00:01:00Z".into());
        let owned = vec![
            snap("snap-1", "vol-1", "2026-03-01T00:01:00Z", Completed),
            snap("snap-3", "vol-1", "2026-03-03T00:01:00Z", Pending),
            snap("snap-4", "vol-1", "2026-03-04T00:01:00Z", Error),
            snap("snap-other", "vol-2", "2026-03-03T12:00:00Z", Completed),
            copy,
        ];
        let one = ["vol-1".to_string()];
        let at = |s: &str| choose(&owned, &one, t(s)).map(|s| s.id.as_str());
        assert_eq!(at("2026-02-28T00:00:00Z"), None);
        assert_eq!(
            at("2026-03-01T00:01:00Z"),
            Some("snap-1"),
            "at the moment itself"
        );
        // Pending and failed ones are passed over; the copy stands for the 2nd.
        assert_eq!(at("2026-03-04T12:00:00Z"), Some("snap-copy"));
        assert_eq!(at("2026-03-02T00:00:59Z"), Some("snap-1"));
        assert_eq!(
            choose(&owned, &["vol-3".to_string()], t("2027-01-01T00:00:00Z")),
            None
        );
        // A volume restored from vol-1's snapshot has vol-1's history.
        let lineage = ["vol-restored".to_string(), "vol-1".to_string()];
        assert_eq!(
            choose(&owned, &lineage, t("2026-03-04T12:00:00Z")).map(|s| s.id.as_str()),
            Some("snap-copy")
        );
    }

    #[test]
    fn an_archived_snapshot_is_chosen_for_its_moment_and_needs_its_tier_restored_first() {
        let mut archived = snap(
            "snap-a",
            "vol-1",
            "2026-03-02T00:00:00Z",
            SnapshotState::Completed,
        );
        archived.archived = true;
        let owned = vec![
            snap(
                "snap-1",
                "vol-1",
                "2026-03-01T00:00:00Z",
                SnapshotState::Completed,
            ),
            archived.clone(),
        ];
        let now = t("2026-04-01T00:00:00Z");
        let chosen = choose(&owned, &["vol-1".to_string()], now).unwrap();
        assert_eq!(
            chosen.id, "snap-a",
            "an older one is not silently taken instead"
        );
        assert!(needs_tier_restore(chosen));
        archived.restore_expiry = Some(now);
        assert!(!needs_tier_restore(&archived));
    }

    #[test]
    fn the_new_volume_copies_the_source_but_never_its_selector_or_lifecycle_tags() {
        let s = snap(
            "snap-1",
            "vol-1",
            "2026-03-01T00:00:00Z",
            SnapshotState::Completed,
        );
        let now = t("2026-04-01T10:00:00Z");
        let spec = volume_spec(
            &s,
            "vol-1",
            Some(&source()),
            &Overrides::default(),
            "Backup",
            Placement::Beside,
            now,
        )
        .unwrap();
        assert_eq!(spec.availability_zone, "eu-west-1b");
        assert_eq!(
            (spec.volume_type.as_str(), spec.size_gib, spec.iops),
            ("io2", 20, Some(4000))
        );
        assert_eq!(spec.throughput, None);
        let tags: Vec<(&str, &str)> = spec
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            tags,
            [
                ("Name", "db"),
                ("Owner", "team-a"),
                ("lifecycle:restore-pending", "2026-04-01T10:00:00Z"),
                ("lifecycle:restored-at", "2026-04-01T10:00:00Z"),
                ("lifecycle:restored-from", "snap-1"),
            ]
        );
        // Taking the source's place, it carries the selector on.
        let replacing = volume_spec(
            &s,
            "vol-1",
            Some(&source()),
            &Overrides::default(),
            "Backup",
            Placement::Replacing,
            now,
        )
        .unwrap();
        assert_eq!(
            replacing.tags.get("Backup").map(String::as_str),
            Some("gold")
        );
    }

    #[test]
    fn overrides_win_and_settings_follow_the_type() {
        let mut s = snap(
            "snap-1",
            "vol-1",
            "2026-03-01T00:00:00Z",
            SnapshotState::Completed,
        );
        s.volume_size_gib = Some(50);
        let gp3 = Overrides {
            availability_zone: Some("eu-west-1a".into()),
            volume_type: Some("gp3".into()),
            throughput: Some(250),
            kms_key: Some("arn:aws:kms:eu-west-1:1:key/k".into()),
            ..Overrides::default()
        };
        let now = t("2026-04-01T10:00:00Z");
        let spec = volume_spec(
            &s,
            "vol-1",
            Some(&source()),
            &gp3,
            "Backup",
            Placement::Beside,
            now,
        )
        .unwrap();
        // io2's IOPS do not carry over to gp3; the snapshot is larger than
        // the source volume is now.
        assert_eq!(
            (
                spec.availability_zone.as_str(),
                spec.volume_type.as_str(),
                spec.size_gib,
                spec.iops,
                spec.throughput
            ),
            ("eu-west-1a", "gp3", 50, None, Some(250))
        );
        assert_eq!(
            spec.kms_key.as_deref(),
            Some("arn:aws:kms:eu-west-1:1:key/k")
        );
        let st1 = Overrides {
            volume_type: Some("st1".into()),
            iops: Some(3000),
            ..Overrides::default()
        };
        assert_eq!(
            volume_spec(
                &s,
                "vol-1",
                Some(&source()),
                &st1,
                "Backup",
                Placement::Beside,
                now
            ),
            Err(SpecError::IopsNotAllowed("st1".into()))
        );
        // The source volume is gone: the zone must be given; gp3 by default.
        assert_eq!(
            volume_spec(
                &s,
                "vol-1",
                None,
                &Overrides::default(),
                "Backup",
                Placement::Beside,
                now
            ),
            Err(SpecError::NoZone("vol-1".into()))
        );
        let zone = Overrides {
            availability_zone: Some("eu-west-1c".into()),
            ..Overrides::default()
        };
        let spec = volume_spec(&s, "vol-1", None, &zone, "Backup", Placement::Beside, now).unwrap();
        assert_eq!((spec.volume_type.as_str(), spec.size_gib), ("gp3", 50));
        assert_eq!(spec.tags["Name"], "restored vol-1");
    }

    fn of_slot(id: &str, volume: &str, slot: &str, start: &str) -> Snapshot {
        let mut s = snap(id, volume, start, SnapshotState::Completed);
        s.tags.insert(keys::POLICY.into(), "gold".into());
        s.tags.insert(keys::SLOT.into(), slot.into());
        s
    }

    #[test]
    fn an_instance_comes_back_from_the_newest_slot_that_covers_every_volume() {
        let volumes = vec![vec!["vol-root".to_string()], vec!["vol-data".to_string()]];
        let owned = vec![
            of_slot(
                "snap-r1",
                "vol-root",
                "2026-03-01T00:00:00Z",
                "2026-03-01T00:00:10Z",
            ),
            of_slot(
                "snap-d1",
                "vol-data",
                "2026-03-01T00:00:00Z",
                "2026-03-01T00:00:10Z",
            ),
            of_slot(
                "snap-r2",
                "vol-root",
                "2026-03-02T00:00:00Z",
                "2026-03-02T00:00:10Z",
            ),
            // The data volume's snapshot of the 2nd failed; its 3rd is there.
            of_slot(
                "snap-d3",
                "vol-data",
                "2026-03-03T00:00:00Z",
                "2026-03-03T00:00:10Z",
            ),
        ];
        let sets: std::collections::BTreeSet<String> = ["snap-r1", "snap-d1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let now = t("2026-03-04T00:00:00Z");
        let c = choose_for_instance(&owned, &sets, &volumes, now).unwrap();
        let ids: Vec<&str> = c.chosen.iter().map(|(_, s)| s.id.as_str()).collect();
        assert_eq!(ids, ["snap-r1", "snap-d1"]);
        assert!(c.one_slot && c.consistent_set);
        assert_eq!(c.spread, chrono::Duration::zero());
        // Before the 1st: nothing for either volume.
        assert_eq!(
            choose_for_instance(&owned, &sets, &volumes, t("2026-02-01T00:00:00Z")),
            Err(vec!["vol-root".to_string(), "vol-data".to_string()])
        );
        // Without the 1st's set: each volume's newest, the spread said.
        let c = choose_for_instance(&owned[2..], &sets, &volumes, now).unwrap();
        let ids: Vec<&str> = c.chosen.iter().map(|(_, s)| s.id.as_str()).collect();
        assert_eq!(ids, ["snap-r2", "snap-d3"]);
        assert!(!c.one_slot && !c.consistent_set);
        assert_eq!(c.spread, chrono::Duration::days(1));
    }

    proptest! {
        /// Whatever the history: the choice is completed, of that volume,
        /// at or before the moment, and no other such snapshot is newer.
        #[test]
        fn the_choice_is_the_newest_eligible(
            history in prop::collection::vec((0u8..3, 0u8..4, 0i64..1000), 0..40),
            at in 0i64..1000,
        ) {
            let base = t("2026-01-01T00:00:00Z");
            let owned: Vec<Snapshot> = history
                .iter()
                .enumerate()
                .map(|(i, (v, st, minutes))| {
                    let state = match st {
                        0 => SnapshotState::Pending,
                        1 => SnapshotState::Error,
                        _ => SnapshotState::Completed,
                    };
                    let mut s = snap(&format!("snap-{i:03}"), &format!("vol-{v}"), "2026-01-01T00:00:00Z", state);
                    s.start_time = Some(base + chrono::Duration::minutes(*minutes));
                    s
                })
                .collect();
            let at = base + chrono::Duration::minutes(at);
            let eligible: Vec<&Snapshot> = owned
                .iter()
                .filter(|s| s.volume_id.as_deref() == Some("vol-0"))
                .filter(|s| s.state == SnapshotState::Completed && s.start_time.unwrap() <= at)
                .collect();
            match choose(&owned, &["vol-0".to_string()], at) {
                None => prop_assert!(eligible.is_empty()),
                Some(c) => {
                    prop_assert!(eligible.iter().any(|e| e.id == c.id));
                    prop_assert!(eligible.iter().all(|e| e.start_time <= c.start_time));
                }
            }
        }
    }
}

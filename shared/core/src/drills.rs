//! Restore drills (docs/restore.md, "Restore drills"): which snapshots a
//! run drills, which blocks a drill reads, and what makes a drill fail.
//!
//! A drill restores a snapshot into a volume, checks the volume against the
//! snapshot, reads a sample of the snapshot's blocks and checks each against
//! the SHA-256 checksum EBS returns with it, and checks the incremental
//! chain: a block EBS says did not change since an older kept snapshot reads
//! the same from both. Everything here is pure; the drill's calls are the
//! edge's (`services::drills`).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::{Snapshot, SnapshotState};

/// Blocks read and checked against their checksum per drill.
pub const BLOCKS_PER_DRILL: usize = 16;
/// Blocks read from both snapshots for the chain check per drill.
pub const CHAIN_BLOCKS_PER_DRILL: usize = 8;
/// The block indexes a drill lists per page: a window of the volume at a
/// seeded offset, so successive drills read different parts of it.
pub const WINDOW_BLOCKS: u32 = 1_000;

/// A run's bounds (`RESTORE_DRILLS_PER_RUN`, `RESTORE_DRILL_MAX_GIB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub drills: usize,
    pub max_gib: u64,
}

/// Why a snapshot is drilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pick {
    /// The newest completed snapshot of a volume whose last passed drill is
    /// oldest (or never was).
    Newest,
    /// One older kept snapshot, chosen at random: the chain behind the
    /// newest is not all that must restore.
    Older,
    /// Asked for by name (`ebs-lifecycle verify`).
    Asked,
}

/// One drill to run: the snapshot, and the older kept snapshot of the same
/// volume whose shared blocks must read the same (none: no chain check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drill {
    pub snapshot_id: String,
    pub volume_id: String,
    pub older_id: Option<String>,
    pub size_gib: u64,
    pub pick: Pick,
}

/// What a run drills, and what its bounds left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub drills: Vec<Drill>,
    /// Volumes next in line that the bounds left for a later run.
    pub left: usize,
    /// Snapshots larger than `RESTORE_DRILL_MAX_GIB` on their own: never
    /// drilled by the function (`ebs-lifecycle verify` can).
    pub too_large: Vec<String>,
}

/// The volume's last passed drill, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    /// The volume the snapshot is of; for a disaster-recovery copy, its
    /// [`copy_key`] (the copies of a volume in a region are drilled in
    /// their own rotation, and their pass says nothing of the home
    /// snapshots').
    pub volume_id: String,
    pub at: DateTime<Utc>,
    pub snapshot_id: String,
    pub seconds: f64,
}

/// A drill in progress, recorded before CreateVolume: what a later run
/// needs to find and delete a volume a killed run left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillRecord {
    /// The drill's token: CreateVolume's client token and the value of the
    /// volume's `lifecycle:drill` tag.
    pub token: String,
    pub snapshot_id: String,
    pub started_at: DateTime<Utc>,
    /// The drill volume, once EC2 has answered.
    pub drill_volume: Option<String>,
    /// Where the drill volume is: `None` the stack's region, else the
    /// disaster-recovery region of the copy drilled.
    pub region: Option<String>,
}

/// The key of a volume's copies in `region` among the verifications:
/// `<region>/<volume-id>` (no volume id has a `/`).
pub fn copy_key(region: &str, volume_id: &str) -> String {
    format!("{region}/{volume_id}")
}

/// A drill's token: unique per snapshot and run, at most 64 characters
/// (CreateVolume's client token).
pub fn token(snapshot_id: &str, now: DateTime<Utc>) -> String {
    let mut t = format!("drill-{}-{}", now.timestamp(), snapshot_id);
    t.truncate(64);
    t
}

/// The volumes in the order drills take them: never verified first, then
/// the oldest last passed drill first. The never-verified ones are taken
/// by id from `turn` on (wrapping round): a run lists only the first few
/// hundred in line, and ids with nothing to drill (a volume's snapshots all
/// too large or archived, ids a tag writer made up) must not hold the head
/// of the line for ever; with `turn` moving a batch a run, each comes to
/// the head within as many runs as there are batches of them.
pub fn volume_order(
    volumes: &BTreeSet<String>,
    verified: &BTreeMap<String, DateTime<Utc>>,
    turn: usize,
) -> Vec<String> {
    let (mut never, mut done): (Vec<&String>, Vec<&String>) =
        volumes.iter().partition(|v| !verified.contains_key(*v));
    if !never.is_empty() {
        let start = turn % never.len();
        never.rotate_left(start);
    }
    done.sort_by_key(|v| (verified.get(*v).copied(), *v));
    never.into_iter().chain(done).cloned().collect()
}

/// A snapshot a drill can restore: completed, in the standard tier (a
/// snapshot in the archive tier restores only after a tier restore of
/// hours).
pub fn drillable(s: &Snapshot) -> bool {
    s.state == SnapshotState::Completed && !s.in_archive_tier() && s.start_time.is_some()
}

/// A small deterministic generator (splitmix64): the run's "random" picks
/// follow from its time, so a run can be replayed.
#[derive(Debug, Clone)]
pub struct Picker(u64);

impl Picker {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn from_time(now: DateTime<Utc>) -> Self {
        Self(now.timestamp() as u64 ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// In `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// The snapshots of one volume a drill may use, oldest first.
fn history(snapshots: &[Snapshot]) -> Vec<&Snapshot> {
    let mut h: Vec<&Snapshot> = snapshots.iter().filter(|s| drillable(s)).collect();
    h.sort_by(|a, b| (a.start_time, &a.id).cmp(&(b.start_time, &b.id)));
    h
}

fn drill_of(s: &Snapshot, older: Option<&Snapshot>, volume: &str, pick: Pick) -> Drill {
    Drill {
        snapshot_id: s.id.clone(),
        volume_id: volume.to_string(),
        older_id: older.map(|o| o.id.clone()),
        size_gib: s.volume_size_gib.unwrap_or(0).max(0) as u64,
        pick,
    }
}

/// What a run drills: volumes in `order`, the newest drillable snapshot of
/// each (its chain checked against the one before it), until the bounds
/// are reached; with two drills or more allowed, the last is one older kept
/// snapshot of a volume drilled this run, chosen by `picker`. `snapshots`:
/// the proven snapshots of each volume (copies excluded).
pub fn select(
    order: &[String],
    snapshots: &BTreeMap<String, Vec<Snapshot>>,
    bounds: Bounds,
    picker: &mut Picker,
) -> Selection {
    let mut out = Selection::default();
    let newest_slots = if bounds.drills >= 2 {
        bounds.drills - 1
    } else {
        bounds.drills
    };
    let mut gib = 0u64;
    let mut older_choices: Vec<(String, usize)> = Vec::new();
    for (i, volume) in order.iter().enumerate() {
        let Some(h) = snapshots.get(volume).map(|s| history(s)) else {
            continue;
        };
        let Some((newest, before)) = h.split_last() else {
            continue;
        };
        let drill = drill_of(newest, before.last().copied(), volume, Pick::Newest);
        if drill.size_gib > bounds.max_gib {
            out.too_large.push(drill.snapshot_id);
            continue;
        }
        if out.drills.len() >= newest_slots || gib + drill.size_gib > bounds.max_gib {
            out.left = order.len() - i;
            break;
        }
        gib += drill.size_gib;
        if !before.is_empty() {
            older_choices.push((volume.clone(), before.len()));
        }
        out.drills.push(drill);
    }
    if out.drills.len() < bounds.drills && !older_choices.is_empty() {
        let (volume, n) = &older_choices[picker.below(older_choices.len())];
        let h = history(&snapshots[volume]);
        let i = picker.below(*n);
        let drill = drill_of(h[i], i.checked_sub(1).map(|j| h[j]), volume, Pick::Older);
        if gib + drill.size_gib <= bounds.max_gib {
            out.drills.push(drill);
        }
    }
    out
}

/// The proven snapshot before `snapshot` of its volume (the chain a drill
/// of it checks), among `history`.
pub fn older_than<'a>(
    snapshot: &Snapshot,
    history_of_volume: &'a [Snapshot],
) -> Option<&'a Snapshot> {
    history(history_of_volume).into_iter().rfind(|s| {
        s.id != snapshot.id && (s.start_time, &s.id) < (snapshot.start_time, &snapshot.id)
    })
}

/// Where in the volume a drill reads: the first block index of its window,
/// chosen by `picker` among the volume's windows.
pub fn window_start(size_gib: u64, picker: &mut Picker) -> u32 {
    let blocks = size_gib.saturating_mul(2048).min(u64::from(u32::MAX));
    let windows = (blocks / u64::from(WINDOW_BLOCKS)).max(1) as usize;
    (picker.below(windows) as u32).saturating_mul(WINDOW_BLOCKS)
}

/// Up to `count` of `indexes` (sorted, distinct), spread by `picker`: the
/// first and last always, the rest at random.
pub fn sample(indexes: &[u32], count: usize, picker: &mut Picker) -> Vec<u32> {
    let mut set: BTreeSet<u32> = BTreeSet::new();
    if indexes.is_empty() || count == 0 {
        return Vec::new();
    }
    set.insert(indexes[0]);
    if count > 1 {
        set.insert(indexes[indexes.len() - 1]);
    }
    let mut tries = 0;
    while set.len() < count.min(indexes.len()) && tries < count * 8 {
        set.insert(indexes[picker.below(indexes.len())]);
        tries += 1;
    }
    set.into_iter().collect()
}

/// One page of a listing: the indexes, and the last index it covers when
/// more pages follow (`None`: it reaches the end of the volume).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub indexes: Vec<u32>,
    pub last_if_more: Option<u32>,
}

/// The blocks both snapshots hold that EBS says did not change between
/// them, within what all three pages cover.
pub fn unchanged(older: &Page, newer: &Page, changed: &Page) -> Vec<u32> {
    let end = [older, newer, changed]
        .iter()
        .filter_map(|p| p.last_if_more)
        .min()
        .unwrap_or(u32::MAX);
    let newer: BTreeSet<u32> = newer.indexes.iter().copied().collect();
    let changed: BTreeSet<u32> = changed.indexes.iter().copied().collect();
    let mut out: Vec<u32> = older
        .indexes
        .iter()
        .copied()
        .filter(|i| *i <= end && newer.contains(i) && !changed.contains(i))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The block's data matches the checksum EBS returned with it (base64 of
/// its SHA-256, the only algorithm EBS uses).
pub fn block_intact(data: &[u8], checksum: &str, algorithm: &str) -> bool {
    algorithm.eq_ignore_ascii_case("SHA256")
        && base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data)) == checksum
}

/// The drill volume as EC2 describes it once available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFacts {
    pub volume_id: String,
    pub state: String,
    pub size_gib: i32,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    /// EC2's `SnapshotId`: what it was made from.
    pub snapshot_id: Option<String>,
    pub attached: bool,
    pub drill_token: Option<String>,
    /// EC2's `CreateTime`.
    pub created: Option<DateTime<Utc>>,
}

/// Why a drill failed: the snapshot does not restore as it should.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Failure {
    #[error("EC2 refused to make a volume of it: {message}")]
    CreateRefused { message: String },
    #[error("the volume made from it went to state {state}")]
    VolumeFailed { state: String },
    #[error("the volume made from it was not available after {seconds} s")]
    NotAvailable { seconds: u64 },
    #[error("the volume is {volume_gib} GiB, the snapshot {snapshot_gib} GiB")]
    Size { volume_gib: i32, snapshot_gib: i32 },
    #[error("the volume is {}encrypted, the snapshot {}", if *volume { "" } else { "not " }, if *snapshot { "is" } else { "is not" })]
    Encryption { volume: bool, snapshot: bool },
    #[error("the volume's key is {volume:?}, the snapshot's {snapshot:?}")]
    Key {
        volume: Option<String>,
        snapshot: Option<String>,
    },
    #[error("block {block}'s data does not match the checksum EBS returned with it")]
    Checksum { block: u32 },
    #[error("block {block}, unchanged since {older} by EBS's account, reads differently from it (a broken incremental chain)")]
    Chain { block: u32, older: String },
    #[error("its blocks cannot be read: {message}")]
    Unreadable { message: String },
}

/// The volume restored from `snapshot` is what it should be: its size at
/// least the snapshot's, encrypted if the snapshot is, under its key (a
/// volume from an unencrypted snapshot may be encrypted: the account's
/// encryption by default).
pub fn check_volume(snapshot: &Snapshot, volume: &VolumeFacts) -> Result<(), Failure> {
    let snapshot_gib = snapshot.volume_size_gib.unwrap_or(0);
    if volume.size_gib < snapshot_gib {
        return Err(Failure::Size {
            volume_gib: volume.size_gib,
            snapshot_gib,
        });
    }
    if snapshot.encrypted && !volume.encrypted {
        return Err(Failure::Encryption {
            volume: volume.encrypted,
            snapshot: snapshot.encrypted,
        });
    }
    if snapshot.encrypted && !same_key(volume.kms_key_id.as_deref(), snapshot.kms_key_id.as_deref())
    {
        return Err(Failure::Key {
            volume: volume.kms_key_id.clone(),
            snapshot: snapshot.kms_key_id.clone(),
        });
    }
    Ok(())
}

/// Two key references are one key: EC2 reports ARNs, but an id and its ARN
/// name the same key.
fn same_key(a: Option<&str>, b: Option<&str>) -> bool {
    let id = |k: &str| k.rsplit('/').next().unwrap_or(k).to_string();
    match (a, b) {
        (Some(a), Some(b)) => a == b || id(a) == id(b),
        (None, None) => true,
        _ => false,
    }
}

/// How long after its record a drill's CreateVolume can have been made: a
/// drill older than this is a killed run's (a Lambda run lasts at most 15
/// minutes, `ebs-lifecycle verify` waits at most 15).
pub const DRILL_WINDOW_MINUTES: i64 = 20;

/// A volume a cleanup may delete as a drill's leftover: made from the
/// recorded snapshot and attached to nothing; and either the volume EC2
/// named in its answer to the drill's CreateVolume (`recorded`), or one
/// carrying the recorded token that EC2 says was created within the
/// drill's window. Anything else a record or a tag names is left alone (a
/// forged tag on another volume, even an unattached restore of the same
/// snapshot, never gets it deleted).
pub fn is_leftover(record: &DrillRecord, volume: &VolumeFacts, recorded: bool) -> bool {
    let from_snapshot = volume.snapshot_id.as_deref() == Some(record.snapshot_id.as_str());
    let in_window = volume.created.is_some_and(|c| {
        c >= record.started_at - chrono::Duration::minutes(1)
            && c <= record.started_at + chrono::Duration::minutes(DRILL_WINDOW_MINUTES)
    });
    let tagged = volume.drill_token.as_deref() == Some(record.token.as_str());
    from_snapshot && !volume.attached && (recorded || (tagged && in_window))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Tags;
    use proptest::prelude::*;

    fn t(days: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_790_000_000 + days * 86_400, 0).unwrap()
    }

    fn snap(id: &str, volume: &str, day: i64, gib: i32) -> Snapshot {
        Snapshot {
            id: id.into(),
            volume_id: Some(volume.into()),
            state: SnapshotState::Completed,
            start_time: Some(t(day)),
            volume_size_gib: Some(gib),
            full_size_bytes: None,
            archived: false,
            restore_expiry: None,
            encrypted: true,
            kms_key_id: Some("arn:aws:kms:us-east-1:111122223333:key/k1".into()),
            description: None,
            owner_id: None,
            tags: Tags::new(),
        }
    }

    fn account(volumes: usize, per_volume: usize, gib: i32) -> BTreeMap<String, Vec<Snapshot>> {
        (0..volumes)
            .map(|v| {
                let vol = format!("vol-{v:03}");
                let snaps = (0..per_volume)
                    .map(|d| snap(&format!("snap-{v:03}-{d:03}"), &vol, d as i64, gib))
                    .collect();
                (vol, snaps)
            })
            .collect()
    }

    #[test]
    fn never_verified_volumes_come_first_then_the_oldest_verification() {
        let volumes: BTreeSet<String> = ["vol-a", "vol-b", "vol-c", "vol-d"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let verified = BTreeMap::from([("vol-a".to_string(), t(5)), ("vol-c".to_string(), t(1))]);
        assert_eq!(
            volume_order(&volumes, &verified, 0),
            ["vol-b", "vol-d", "vol-c", "vol-a"]
        );
        // The next turn starts the never-verified ones one further on.
        assert_eq!(
            volume_order(&volumes, &verified, 1),
            ["vol-d", "vol-b", "vol-c", "vol-a"]
        );
    }

    proptest! {
        /// However many never-verified ids stand in line (made-up ones
        /// among them), a batch a turn brings every one of them to the
        /// head within as many turns as there are batches of them, and the
        /// verified ones keep their order behind.
        #[test]
        fn every_never_verified_volume_reaches_the_head_in_turn(
            n in 1usize..700,
            batch in 1usize..250,
            verified_n in 0usize..20,
        ) {
            let volumes: BTreeSet<String> = (0..n + verified_n).map(|i| format!("vol-{i:05}")).collect();
            let verified: BTreeMap<String, DateTime<Utc>> = (0..verified_n)
                .map(|i| (format!("vol-{:05}", n + i), t(i as i64)))
                .collect();
            let mut reached = BTreeSet::new();
            for run in 0..n.div_ceil(batch) {
                let order = volume_order(&volumes, &verified, run * batch);
                prop_assert_eq!(order.len(), volumes.len());
                reached.extend(order.iter().take(batch).filter(|v| !verified.contains_key(*v)).cloned());
                let tail: Vec<&String> = order.iter().skip(n).collect();
                let mut sorted = tail.clone();
                sorted.sort_by_key(|v| verified[*v]);
                prop_assert_eq!(tail, sorted);
            }
            prop_assert_eq!(reached.len(), n);
        }
    }

    #[test]
    fn a_run_drills_the_newest_of_each_volume_in_order_and_one_older_snapshot() {
        let snapshots = account(6, 4, 10);
        let order: Vec<String> = snapshots.keys().cloned().collect();
        let s = select(
            &order,
            &snapshots,
            Bounds {
                drills: 5,
                max_gib: 500,
            },
            &mut Picker::new(7),
        );
        let newest: Vec<_> = s.drills.iter().filter(|d| d.pick == Pick::Newest).collect();
        assert_eq!(newest.len(), 4);
        for (d, v) in newest.iter().zip(&order) {
            assert_eq!(&d.volume_id, v);
            assert_eq!(d.snapshot_id, format!("snap-{}-003", &v[4..]));
            assert_eq!(
                d.older_id.as_deref(),
                Some(&*format!("snap-{}-002", &v[4..]))
            );
        }
        let older = s.drills.last().unwrap();
        assert_eq!(older.pick, Pick::Older);
        assert!(newest.iter().any(|d| d.volume_id == older.volume_id));
        assert!(!older.snapshot_id.ends_with("-003"));
        assert_eq!(s.left, 2);
    }

    #[test]
    fn pending_archived_and_too_large_snapshots_are_never_drilled() {
        let mut snapshots = account(3, 2, 10);
        snapshots.get_mut("vol-000").unwrap()[1].state = SnapshotState::Pending;
        snapshots.get_mut("vol-001").unwrap()[1].archived = true;
        snapshots.get_mut("vol-002").unwrap()[1].volume_size_gib = Some(600);
        let order: Vec<String> = snapshots.keys().cloned().collect();
        let s = select(
            &order,
            &snapshots,
            Bounds {
                drills: 1,
                max_gib: 500,
            },
            &mut Picker::new(1),
        );
        assert_eq!(s.drills[0].snapshot_id, "snap-000-000");
        let s = select(
            &order[2..],
            &snapshots,
            Bounds {
                drills: 3,
                max_gib: 500,
            },
            &mut Picker::new(1),
        );
        assert!(s.drills.is_empty());
        assert_eq!(s.too_large, ["snap-002-001"]);
    }

    proptest! {
        #[test]
        fn a_selection_keeps_its_bounds_and_drills_only_drillable_snapshots(
            volumes in 0usize..12, per in 0usize..5, gib in 1i32..300,
            drills in 0usize..8, max_gib in 0u64..1500, seed in any::<u64>()
        ) {
            let snapshots = account(volumes, per, gib);
            let order: Vec<String> = snapshots.keys().cloned().collect();
            let s = select(&order, &snapshots, Bounds { drills, max_gib }, &mut Picker::new(seed));
            prop_assert!(s.drills.len() <= drills);
            prop_assert!(s.drills.iter().map(|d| d.size_gib).sum::<u64>() <= max_gib);
            let ids: BTreeSet<_> = s.drills.iter().map(|d| &d.snapshot_id).collect();
            prop_assert_eq!(ids.len(), s.drills.len(), "a snapshot drilled twice in a run");
            for d in &s.drills {
                let of_volume = &snapshots[&d.volume_id];
                prop_assert!(of_volume.iter().any(|x| x.id == d.snapshot_id));
                if let Some(o) = &d.older_id {
                    let (a, b) = (
                        of_volume.iter().find(|x| &x.id == o).unwrap(),
                        of_volume.iter().find(|x| x.id == d.snapshot_id).unwrap(),
                    );
                    prop_assert!(a.start_time < b.start_time);
                }
            }
        }

        #[test]
        fn a_sample_is_distinct_sorted_within_the_listing_and_bounded(
            mut indexes in proptest::collection::vec(0u32..5000, 0..300),
            count in 0usize..40, seed in any::<u64>()
        ) {
            indexes.sort_unstable();
            indexes.dedup();
            let s = sample(&indexes, count, &mut Picker::new(seed));
            prop_assert!(s.len() <= count);
            prop_assert!(s.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(s.iter().all(|i| indexes.contains(i)));
            if !indexes.is_empty() && count > 0 {
                prop_assert_eq!(s[0], indexes[0]);
            }
        }
    }

    #[test]
    fn unchanged_blocks_are_held_by_both_not_changed_and_within_every_page() {
        let older = Page {
            indexes: vec![1, 2, 3, 4, 8, 9],
            last_if_more: None,
        };
        let newer = Page {
            indexes: vec![1, 2, 3, 5, 8, 9],
            last_if_more: Some(8),
        };
        let changed = Page {
            indexes: vec![2, 5],
            last_if_more: None,
        };
        assert_eq!(unchanged(&older, &newer, &changed), [1, 3, 8]);
    }

    #[test]
    fn a_block_is_intact_only_when_its_data_matches_its_sha256() {
        let data = vec![7u8; 1024];
        let sum = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&data));
        assert!(block_intact(&data, &sum, "SHA256"));
        let mut bad = data.clone();
        bad[10] ^= 1;
        assert!(!block_intact(&bad, &sum, "SHA256"));
        assert!(!block_intact(&data, &sum, "CRC32"));
    }

    fn facts(snapshot: &str, token: &str) -> VolumeFacts {
        VolumeFacts {
            volume_id: "vol-drill".into(),
            state: "available".into(),
            size_gib: 10,
            encrypted: true,
            kms_key_id: Some("arn:aws:kms:us-east-1:111122223333:key/k1".into()),
            snapshot_id: Some(snapshot.into()),
            attached: false,
            drill_token: Some(token.into()),
            created: Some(t(0) + chrono::Duration::minutes(1)),
        }
    }

    #[test]
    fn the_volume_must_match_the_snapshot_in_size_encryption_and_key() {
        let s = snap("snap-1", "vol-1", 0, 10);
        assert_eq!(check_volume(&s, &facts("snap-1", "x")), Ok(()));
        let mut v = facts("snap-1", "x");
        v.kms_key_id = Some("k1".into());
        assert_eq!(
            check_volume(&s, &v),
            Ok(()),
            "an id and its ARN are one key"
        );
        v.kms_key_id = Some("arn:aws:kms:us-east-1:111122223333:key/k2".into());
        assert!(matches!(check_volume(&s, &v), Err(Failure::Key { .. })));
        v.encrypted = false;
        assert!(matches!(
            check_volume(&s, &v),
            Err(Failure::Encryption { .. })
        ));
        // An unencrypted snapshot restored under encryption by default.
        let mut plain = snap("snap-2", "vol-1", 0, 10);
        plain.encrypted = false;
        plain.kms_key_id = None;
        assert_eq!(check_volume(&plain, &facts("snap-2", "x")), Ok(()));
        let mut v = facts("snap-1", "x");
        v.size_gib = 8;
        assert!(matches!(check_volume(&s, &v), Err(Failure::Size { .. })));
    }

    #[test]
    fn only_an_unattached_volume_of_the_recorded_snapshot_and_token_is_a_leftover() {
        let record = DrillRecord {
            token: "drill-1-snap-1".into(),
            snapshot_id: "snap-1".into(),
            started_at: t(0),
            drill_volume: None,
            region: None,
        };
        assert!(is_leftover(
            &record,
            &facts("snap-1", "drill-1-snap-1"),
            false
        ));
        assert!(!is_leftover(
            &record,
            &facts("snap-2", "drill-1-snap-1"),
            false
        ));
        assert!(!is_leftover(
            &record,
            &facts("snap-1", "drill-2-snap-1"),
            false
        ));
        let mut attached = facts("snap-1", "drill-1-snap-1");
        attached.attached = true;
        assert!(!is_leftover(&record, &attached, false));
        assert!(
            !is_leftover(&record, &attached, true),
            "never an attached one"
        );
        // The token copied onto an operator's restore of the snapshot made
        // a day later: not the drill's.
        let mut later = facts("snap-1", "drill-1-snap-1");
        later.created = Some(t(1));
        assert!(!is_leftover(&record, &later, false));
        // The volume EC2 named in its answer needs no tag (one removed).
        let mut untagged = facts("snap-1", "");
        untagged.drill_token = None;
        assert!(is_leftover(&record, &untagged, true));
        assert!(!is_leftover(&record, &untagged, false));
    }

    #[test]
    fn a_token_fits_a_client_token_and_differs_per_run() {
        let a = token("snap-0123456789abcdef0", t(0));
        assert!(a.len() <= 64);
        assert_ne!(a, token("snap-0123456789abcdef0", t(7)));
    }
}

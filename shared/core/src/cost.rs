//! What snapshots cost (docs/report.md, "Cost"). Pure: the report function
//! walks EC2's changed blocks and hands the block sets here.
//!
//! EBS snapshots are incremental: a volume's snapshots share blocks, and the
//! account pays once per stored block. AWS's recipe for what one snapshot
//! alone holds (what deleting it frees): the blocks it holds that changed
//! both from the previous snapshot of its volume and to the next one
//! ([`sizes`]). What it added (its incremental size) is the blocks it holds
//! that changed from the previous one; summed along a volume's snapshots,
//! oldest first, that is exactly what the volume's snapshots store, since a
//! block written once is added once.
//!
//! Both figures depend on the neighbours, so they are cached on the
//! snapshot with the neighbours they were computed between
//! (`lifecycle:unique-bytes`, `lifecycle:unique-basis`) and computed again
//! only when a neighbour changes ([`Sizes::is_current`]).

use std::collections::BTreeMap;

use roaring::RoaringBitmap;
use serde::Serialize;

use crate::keys;
use crate::model::{Snapshot, SnapshotState, Tags};

/// EBS snapshot blocks are 512 KiB.
pub const BLOCK_BYTES: u64 = 512 * 1024;
/// Prices are per GB-month; AWS's GB is 2^30 bytes.
pub const GB: f64 = 1_073_741_824.0;
/// The archive tier bills at least 90 days.
pub(crate) const ARCHIVE_MINIMUM_DAYS: f64 = 90.0;
/// Days in a billing month, as AWS prorates GB-months.
pub(crate) const DAYS_PER_MONTH: f64 = 30.0;

/// Prices in USD: storage per GB-month per tier, restore per GB.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prices {
    pub standard: f64,
    pub archive: f64,
    pub restore: f64,
}

impl Default for Prices {
    /// us-east-1's.
    fn default() -> Self {
        Self {
            standard: 0.05,
            archive: 0.0125,
            restore: 0.03,
        }
    }
}

impl Prices {
    /// A month of `standard_bytes` in the standard tier and `archive_bytes`
    /// in the archive tier.
    pub fn monthly(&self, standard_bytes: u64, archive_bytes: u64) -> f64 {
        standard_bytes as f64 / GB * self.standard + archive_bytes as f64 / GB * self.archive
    }
}

/// The blocks that differ between one snapshot of a volume and the next
/// (ListChangedBlocks), by which side holds them; for the oldest snapshot,
/// every block it holds is on the `newer` side (ListSnapshotBlocks).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diff {
    /// Changed blocks the older snapshot holds.
    pub older: RoaringBitmap,
    /// Changed blocks the newer snapshot holds.
    pub newer: RoaringBitmap,
}

impl Diff {
    /// Add one changed block as ListChangedBlocks reports it: a side holds
    /// the block when it has a token for it.
    pub fn add(&mut self, index: u32, in_older: bool, in_newer: bool) {
        if in_older {
            self.older.insert(index);
        }
        if in_newer {
            self.newer.insert(index);
        }
    }
}

/// `(unique, added)` bytes of a snapshot from its diff with the previous
/// snapshot and, unless it is the newest, with the next one.
pub fn sizes(from_previous: &Diff, to_next: Option<&Diff>) -> (u64, u64) {
    let added = from_previous.newer.len();
    let unique = match to_next {
        Some(next) => from_previous.newer.intersection_len(&next.older),
        None => added,
    };
    (unique * BLOCK_BYTES, added * BLOCK_BYTES)
}

/// A snapshot's cached figures and the neighbours they hold for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sizes {
    pub unique_bytes: u64,
    pub added_bytes: u64,
    pub previous: Option<String>,
    pub next: Option<String>,
}

const NONE: &str = "-";

impl Sizes {
    /// Read from `lifecycle:unique-bytes` (a number) and
    /// `lifecycle:unique-basis` (`<added bytes> <previous id|-> <next id|->`).
    /// Anything else reads as not cached. Anyone may write these tags: they
    /// only ever change what the report says a snapshot costs.
    pub fn from_tags(tags: &Tags) -> Option<Self> {
        let unique_bytes = tags.get(keys::UNIQUE_BYTES)?.parse().ok()?;
        let basis = tags.get(keys::UNIQUE_BASIS)?;
        let mut parts = basis.split(' ');
        let added_bytes = parts.next()?.parse().ok()?;
        let neighbour = |p: Option<&str>| match p {
            Some(NONE) => Some(None),
            Some(id) if id.starts_with("snap-") => Some(Some(id.to_string())),
            _ => None,
        };
        let previous = neighbour(parts.next())?;
        let next = neighbour(parts.next())?;
        if parts.next().is_some() || unique_bytes > added_bytes {
            return None;
        }
        Some(Self {
            unique_bytes,
            added_bytes,
            previous,
            next,
        })
    }

    pub fn to_tags(&self) -> Tags {
        let id = |n: &Option<String>| n.clone().unwrap_or_else(|| NONE.to_string());
        Tags::from([
            (
                keys::UNIQUE_BYTES.to_string(),
                self.unique_bytes.to_string(),
            ),
            (
                keys::UNIQUE_BASIS.to_string(),
                format!(
                    "{} {} {}",
                    self.added_bytes,
                    id(&self.previous),
                    id(&self.next)
                ),
            ),
        ])
    }

    /// Whether the figures still hold: computed between these neighbours.
    pub fn is_current(&self, previous: Option<&str>, next: Option<&str>) -> bool {
        self.previous.as_deref() == previous && self.next.as_deref() == next
    }
}

/// Which positions of a lineage (oldest first) need their figures computed:
/// those with none cached, or cached between other neighbours. A new
/// snapshot makes its predecessor stale; a deletion, both its neighbours.
pub fn stale(ids: &[&str], cached: &[Option<Sizes>]) -> Vec<bool> {
    (0..ids.len())
        .map(|i| {
            let previous = i.checked_sub(1).map(|p| ids[p]);
            let next = ids.get(i + 1).copied();
            !cached
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.is_current(previous, next))
        })
        .collect()
}

/// What archiving a snapshot for the rest of its projected life saves, in
/// USD (negative: it would cost more). The standard tier bills only its
/// unique blocks (the rest stay with its neighbours); the archive tier bills
/// its full size for at least 90 days. Archive when
/// `full x archive x max(90, remaining) < unique x standard x remaining`
/// (docs/report.md, "What archiving saves").
pub(crate) fn archive_saving(
    full_bytes: u64,
    unique_bytes: u64,
    remaining_days: f64,
    p: &Prices,
) -> f64 {
    let months = |days: f64| days / DAYS_PER_MONTH;
    let standard = unique_bytes as f64 / GB * p.standard * months(remaining_days);
    let archive =
        full_bytes as f64 / GB * p.archive * months(remaining_days.max(ARCHIVE_MINIMUM_DAYS));
    standard - archive
}

/// A volume's lineage as EC2 keeps it: its completed standard-tier
/// snapshots (anyone's: a hand-made snapshot shares blocks with ours),
/// oldest first. Copies are not in it (their blocks are their own), nor
/// archived snapshots (their blocks left the standard tier; what they shared
/// stays with their neighbours).
pub fn lineages(snapshots: &[Snapshot]) -> BTreeMap<String, Vec<&Snapshot>> {
    let mut out: BTreeMap<String, Vec<&Snapshot>> = BTreeMap::new();
    for s in snapshots {
        let in_lineage = s.state == SnapshotState::Completed
            && !s.archived
            && s.start_time.is_some()
            && s.encrypted_copy_of().is_none()
            && s.copy_of().is_none();
        match s.volume_id.as_deref() {
            Some(v) if in_lineage && v != crate::model::COPY_VOLUME_ID => {
                out.entry(v.to_string()).or_default().push(s)
            }
            _ => {}
        }
    }
    for l in out.values_mut() {
        l.sort_by(|a, b| (a.start_time, &a.id).cmp(&(b.start_time, &b.id)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn diff(older: &[u32], newer: &[u32]) -> Diff {
        Diff {
            older: older.iter().copied().collect(),
            newer: newer.iter().copied().collect(),
        }
    }

    #[test]
    fn unique_blocks_changed_both_from_the_previous_and_to_the_next() {
        // Hand-computed lineage of one volume: A writes 0-99, B rewrites
        // 50-59, C rewrites 55-69.
        let a_blocks: Vec<u32> = (0..100).collect();
        let first = diff(&[], &a_blocks);
        let a_to_b = diff(&(50..60).collect::<Vec<_>>(), &(50..60).collect::<Vec<_>>());
        let b_to_c = diff(&(55..70).collect::<Vec<_>>(), &(55..70).collect::<Vec<_>>());
        // A: its 50-59 were rewritten by B; 55-69 of what A holds were
        // rewritten by C, but C's diff is against B, not A: A's blocks
        // 60-69 are still B's too, so only 50-59 are A's alone.
        assert_eq!(
            sizes(&first, Some(&a_to_b)),
            (10 * BLOCK_BYTES, 100 * BLOCK_BYTES)
        );
        // B: wrote 50-59, C rewrote 55-59 of them: 5 blocks B alone holds.
        assert_eq!(
            sizes(&a_to_b, Some(&b_to_c)),
            (5 * BLOCK_BYTES, 10 * BLOCK_BYTES)
        );
        // C, the newest: everything it added is its own.
        assert_eq!(sizes(&b_to_c, None), (15 * BLOCK_BYTES, 15 * BLOCK_BYTES));
    }

    #[test]
    fn a_block_the_next_snapshot_trimmed_is_unique_but_one_it_added_is_not() {
        // Next holds block 7 anew (not in this one) and dropped block 3.
        let from_previous = diff(&[], &[3, 4]);
        let to_next = diff(&[3], &[7]);
        assert_eq!(sizes(&from_previous, Some(&to_next)).0, BLOCK_BYTES);
    }

    #[test]
    fn cached_sizes_round_trip_and_reject_what_they_cannot_be() {
        let s = Sizes {
            unique_bytes: 5 * BLOCK_BYTES,
            added_bytes: 10 * BLOCK_BYTES,
            previous: Some("snap-0a".into()),
            next: None,
        };
        let tags = s.to_tags();
        assert_eq!(tags[keys::UNIQUE_BASIS], "5242880 snap-0a -");
        assert_eq!(Sizes::from_tags(&tags), Some(s.clone()));
        assert!(s.is_current(Some("snap-0a"), None));
        assert!(!s.is_current(Some("snap-0a"), Some("snap-0b")));
        for (unique, basis) in [
            ("x", "1 - -"),
            ("5", "4 - -"),
            ("1", "1 snap-0a"),
            ("1", "1 vol-1 -"),
            ("1", "1 - - extra"),
        ] {
            let tags = Tags::from([
                (keys::UNIQUE_BYTES.to_string(), unique.to_string()),
                (keys::UNIQUE_BASIS.to_string(), basis.to_string()),
            ]);
            assert_eq!(Sizes::from_tags(&tags), None, "{unique} / {basis}");
        }
    }

    #[test]
    fn a_new_snapshot_makes_its_predecessor_stale_and_a_deletion_both_neighbours() {
        let cached = |p: Option<&str>, n: Option<&str>| {
            Some(Sizes {
                unique_bytes: 0,
                added_bytes: 0,
                previous: p.map(String::from),
                next: n.map(String::from),
            })
        };
        // a, b cached as a lineage of two; c is new.
        let ids = ["snap-a", "snap-b", "snap-c"];
        let c = [
            cached(None, Some("snap-b")),
            cached(Some("snap-a"), None),
            None,
        ];
        assert_eq!(stale(&ids, &c), [false, true, true]);
        // b deleted from a, b, c: a and c are stale.
        let ids = ["snap-a", "snap-c"];
        let c = [cached(None, Some("snap-b")), cached(Some("snap-b"), None)];
        assert_eq!(stale(&ids, &c), [true, true]);
    }

    #[test]
    fn archiving_pays_only_when_the_snapshot_holds_most_of_its_blocks_alone() {
        let p = Prices::default();
        let gib = 1u64 << 30;
        // 100 GiB full, 80 GiB its own, a year left: 80 x 0.05 x 12.17 =
        // 48.67 standard against 100 x 0.0125 x 12.17 = 15.21 archived.
        let saving = archive_saving(100 * gib, 80 * gib, 365.0, &p);
        assert!((saving - (48.666 - 15.208)).abs() < 0.01, "{saving}");
        // Its blocks all shared with neighbours: archiving only adds.
        assert!(archive_saving(100 * gib, 0, 365.0, &p) < 0.0);
        // 30 days left still pays 90 days of archive.
        let short = archive_saving(100 * gib, 30 * gib, 30.0, &p);
        assert!((short - (1.5 - 3.75)).abs() < 1e-9, "{short}");
    }

    proptest! {
        /// Stored bytes (the sum of what each added) equal the blocks held
        /// by any of them, and no snapshot's unique bytes exceed what it
        /// added, for any write history.
        #[test]
        fn added_bytes_sum_to_the_blocks_stored(
            writes in proptest::collection::vec(proptest::collection::btree_set(0u32..64, 0..20), 1..8)
        ) {
            // Each snapshot: a block -> writer map inherited from the last.
            let mut maps: Vec<std::collections::BTreeMap<u32, usize>> = Vec::new();
            for (i, w) in writes.iter().enumerate() {
                let mut m = maps.last().cloned().unwrap_or_default();
                for b in w { m.insert(*b, i); }
                maps.push(m);
            }
            let diff_of = |older: Option<&std::collections::BTreeMap<u32, usize>>, newer: &std::collections::BTreeMap<u32, usize>| {
                let mut d = Diff::default();
                let empty = std::collections::BTreeMap::new();
                let older = older.unwrap_or(&empty);
                for b in older.keys().chain(newer.keys()) {
                    if older.get(b) != newer.get(b) {
                        d.add(*b, older.contains_key(b), newer.contains_key(b));
                    }
                }
                d
            };
            let diffs: Vec<Diff> = (0..maps.len()).map(|i| diff_of(i.checked_sub(1).map(|p| &maps[p]), &maps[i])).collect();
            let stored: std::collections::BTreeSet<(u32, usize)> = maps.iter().flat_map(|m| m.iter().map(|(b, w)| (*b, *w))).collect();
            let mut added_total = 0;
            for i in 0..maps.len() {
                let (unique, added) = sizes(&diffs[i], diffs.get(i + 1));
                prop_assert!(unique <= added);
                // Unique: the (block, writer) pairs only this snapshot holds.
                let alone = maps[i].iter().filter(|(b, w)| maps.iter().enumerate().all(|(j, m)| j == i || m.get(b) != Some(w))).count() as u64;
                prop_assert_eq!(unique, alone * BLOCK_BYTES);
                added_total += added;
            }
            prop_assert_eq!(added_total, stored.len() as u64 * BLOCK_BYTES);
        }
    }
}

//! The cost part of a run (docs/report.md, "Cost"): per volume, the
//! snapshots' unique and added bytes from the EBS direct APIs (only what is
//! not cached between the same neighbours, paced, until the deadline; what
//! is left is done by the next run), cached on this deployment's snapshots;
//! then per volume and policy what its snapshots store, cost a month, what
//! the next expiry frees (the expiry plan, dry) and what archiving saves.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::ports::blocks::{SnapshotBlocks, Walked};
use ebs_lifecycle::ports::ec2::SnapshotTagger;
use ebs_lifecycle_core::cost::{self, Prices, Sizes};
use ebs_lifecycle_core::expiry::VolumePlan;
use ebs_lifecycle_core::model::{Snapshot, SnapshotState};
use ebs_lifecycle_core::policy::{ArchiveRule, KeepWithin, Policies};
use ebs_lifecycle_core::retention::{Expiry, KeepReason};
use ebs_lifecycle_core::safety::DeletionGate;
use ebs_lifecycle_core::{archive, expiry, tagging, tags};

use crate::rows::TIMELINES;
pub use crate::rows::{SnapshotCost, VolumeCost};
pub use crate::spool::CostVolumes;

/// Errors listed in the summary, at most.
const ERRORS_LISTED: usize = 10;

#[derive(Clone, Copy)]
pub struct CostPorts<'a> {
    pub blocks: &'a dyn SnapshotBlocks,
    pub tagger: &'a dyn SnapshotTagger,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CostSummary {
    pub prices: Option<Prices>,
    /// This deployment's completed snapshots priced.
    pub snapshots: usize,
    /// Figures computed this run (the rest were cached or are left).
    pub computed: usize,
    /// Left for the next run (out of time, or the APIs throttled).
    pub left: usize,
    /// Snapshots whose blocks could not be read (archived neighbours,
    /// copies, a key refused).
    pub unreadable: usize,
    /// Measured but not cached: no room for two more tags (EC2 allows 50).
    pub not_cached: usize,
    /// ListChangedBlocks and ListSnapshotBlocks requests this run.
    pub requests: u32,
    pub standard_bytes: u64,
    pub archive_bytes: u64,
    pub monthly_usd: f64,
    pub expiry_frees_bytes: u64,
    pub archive_saves_usd: f64,
    pub archive_candidates: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Per volume and policy (the report's files; the response keeps a
    /// sample). Their snapshots are spooled to files batch by batch.
    pub volumes: CostVolumes,
    /// Per policy, what its kept snapshots added, per day (UTC, as Unix
    /// seconds): the page's storage chart, bounded by the kept history.
    #[serde(skip)]
    pub storage: BTreeMap<String, BTreeMap<i64, u64>>,
    /// The costliest volumes with their snapshots, at most
    /// [`TIMELINES`]: the page's timelines.
    #[serde(skip)]
    pub timelines: Vec<VolumeCost>,
}

impl CostSummary {
    /// Count `volume` in: the totals, its snapshots' count, the storage
    /// chart's days and, if it is among the costliest, the timelines.
    pub fn add(&mut self, mut volume: VolumeCost) {
        volume.snapshot_count = volume.snapshots.len();
        self.snapshots += volume.snapshot_count;
        self.standard_bytes += volume.standard_bytes;
        self.archive_bytes += volume.archive_bytes;
        self.expiry_frees_bytes += volume.expiry_frees_bytes;
        self.archive_saves_usd += volume.archive_saves_usd;
        const DAY: i64 = 86_400;
        for c in &volume.snapshots {
            let (Some(t), Some(added)) = (tags::parse_time(&c.time), c.added_bytes) else {
                continue;
            };
            let day = t.timestamp().div_euclid(DAY) * DAY;
            *self
                .storage
                .entry(volume.policy.clone())
                .or_default()
                .entry(day)
                .or_default() += added;
        }
        let at = self
            .timelines
            .partition_point(|t| t.costliest_first(&volume).is_le());
        if at < TIMELINES {
            self.timelines.insert(at, volume.clone());
            self.timelines.truncate(TIMELINES);
        }
        self.volumes.push(volume);
    }

    /// The totals, and the `costliest` volumes without their snapshots.
    pub fn totals(&self, costliest: usize) -> CostSummary {
        let mut volumes: Vec<&VolumeCost> = self.volumes.iter().collect();
        volumes.sort_by(|a, b| a.costliest_first(b));
        CostSummary {
            prices: self.prices,
            errors: self.errors.clone(),
            storage: BTreeMap::new(),
            timelines: Vec::new(),
            volumes: volumes
                .into_iter()
                .take(costliest)
                .map(|v| VolumeCost {
                    snapshots: Vec::new(),
                    volume_id: v.volume_id.clone(),
                    policy: v.policy.clone(),
                    ..*v
                })
                .collect(),
            ..*self
        }
    }
}

pub use ebs_lifecycle_core::cost::lineages;

/// Compute what is stale among `ours` in every lineage and cache it on the
/// snapshot. Returns every snapshot's current figures.
pub async fn figures(
    ports: CostPorts<'_>,
    lineages: &BTreeMap<String, Vec<&Snapshot>>,
    ours: &BTreeSet<String>,
    deadline: &Deadline,
    summary: &mut CostSummary,
) -> BTreeMap<String, Sizes> {
    let mut out = BTreeMap::new();
    let mut stop = false;
    for lineage in lineages.values() {
        let ids: Vec<&str> = lineage.iter().map(|s| s.id.as_str()).collect();
        let cached: Vec<Option<Sizes>> =
            lineage.iter().map(|s| Sizes::from_tags(&s.tags)).collect();
        let stale: Vec<bool> = cost::stale(&ids, &cached)
            .into_iter()
            .zip(&ids)
            .map(|(stale, id)| stale && ours.contains(*id))
            .collect();
        for (i, c) in cached.iter().enumerate() {
            if let Some(c) = c.as_ref().filter(|_| !stale[i]) {
                out.insert(ids[i].to_string(), c.clone());
            }
        }
        let wanted = stale.iter().filter(|s| **s).count();
        if wanted == 0 {
            continue;
        }
        if stop || deadline.is_near() {
            stop = true;
            summary.left += wanted;
            continue;
        }
        // Oldest first, each pair walked once and dropped once both its
        // snapshots are done: at most two diffs of a volume in memory.
        let mut diffs: BTreeMap<(Option<usize>, usize), Option<Walked>> = BTreeMap::new();
        for (i, is_stale) in stale.iter().enumerate() {
            diffs.retain(|(_, newer), _| *newer >= i);
            if !is_stale {
                continue;
            }
            let mut pairs = vec![(i.checked_sub(1), i)];
            if i + 1 < ids.len() {
                pairs.push((Some(i), i + 1));
            }
            for (older, newer) in pairs {
                if diffs.contains_key(&(older, newer)) {
                    continue;
                }
                if stop || deadline.is_near() {
                    stop = true;
                    break;
                }
                match ports.blocks.diff(older.map(|o| ids[o]), ids[newer]).await {
                    Ok(w) => {
                        summary.requests += w.requests;
                        diffs.insert((older, newer), Some(w));
                    }
                    // The account's limits or permissions: no more walks this
                    // run; what needed this pair is left for the next.
                    Err(e) if e.stops_the_walks() => {
                        note(summary, e.to_string());
                        stop = true;
                    }
                    // This pair cannot be compared (a snapshot gone or
                    // archived meanwhile): its snapshots are unreadable now.
                    Err(e) => {
                        note(summary, e.to_string());
                        diffs.insert((older, newer), None);
                    }
                }
            }
            let from_previous = diffs.get(&(i.checked_sub(1), i));
            let to_next = (i + 1 < ids.len()).then(|| diffs.get(&(Some(i), i + 1)));
            let (from_previous, to_next) = match (from_previous, to_next) {
                (Some(Some(f)), None) => (f, None),
                (Some(Some(f)), Some(Some(Some(t)))) => (f, Some(t)),
                (None, _) | (_, Some(None)) => {
                    summary.left += 1;
                    continue;
                }
                _ => {
                    summary.unreadable += 1;
                    continue;
                }
            };
            let (unique_bytes, added_bytes) =
                cost::sizes(&from_previous.diff, to_next.map(|t| &t.diff));
            let sizes = Sizes {
                unique_bytes,
                added_bytes,
                previous: i.checked_sub(1).map(|p| ids[p].to_string()),
                next: ids.get(i + 1).map(|n| n.to_string()),
            };
            // EC2 allows 50 tags: a snapshot with no room for the two keys
            // keeps no cache (measured again each run; counted, no error).
            let cache = sizes.to_tags();
            let new_keys = cache
                .keys()
                .filter(|k| !lineage[i].tags.contains_key(*k))
                .count();
            if lineage[i].tags.len() + new_keys > tags::MAX_TAGS_PER_RESOURCE {
                summary.not_cached += 1;
            } else if let Err(e) = ports
                .tagger
                .tag_snapshots(&[ids[i].to_string()], &cache)
                .await
            {
                // The figure stands for this report; the next run computes it again.
                note(
                    summary,
                    format!("could not cache the figures of {}: {e}", ids[i]),
                );
            }
            summary.computed += 1;
            out.insert(ids[i].to_string(), sizes);
        }
    }
    out
}

fn note(summary: &mut CostSummary, error: String) {
    tracing::warn!(%error, "cost analysis");
    if summary.errors.len() < ERRORS_LISTED {
        summary.errors.push(error);
    }
}

/// What the report prices for a policy without an `archive` rule: the
/// usual one (monthly and yearly snapshots, after 90 days).
fn default_archive_rule() -> ArchiveRule {
    ArchiveRule {
        after: KeepWithin {
            days: 90,
            ..KeepWithin::default()
        },
        rules: ["monthly", "yearly", "within_monthly", "within_yearly"]
            .map(String::from)
            .to_vec(),
    }
}

/// What pricing reads besides the snapshots.
pub struct Pricing<'a> {
    pub policies: &'a Policies,
    pub deployment: &'a str,
    /// Volumes that exist (the others' snapshots are judged as orphans).
    pub existing: &'a BTreeSet<String>,
    pub prices: &'a Prices,
    pub now: DateTime<Utc>,
    /// The dry expiry plan's gate: what protects a snapshot (an AMI, a
    /// lock, a copy or restore in progress, a hold, held for review).
    pub gate: &'a DeletionGate,
}

/// Price every volume and policy of `owned` (this deployment's proven
/// snapshots) from `figures`, the dry expiry `plans` and the projections.
pub fn price(
    owned: &[Snapshot],
    figures: &BTreeMap<String, Sizes>,
    plans: &[VolumePlan<'_>],
    context: &Pricing<'_>,
    summary: &mut CostSummary,
) {
    let Pricing {
        policies,
        deployment,
        existing,
        prices,
        now,
        gate,
    } = *context;
    let deleted: BTreeSet<&str> = plans
        .iter()
        .flat_map(|p| &p.snapshots)
        .filter(|p| p.deletable())
        .map(|p| p.snapshot.id.as_str())
        .collect();
    summary.prices = Some(*prices);
    for ((volume_id, policy_name), group) in expiry::retention_groups(owned, deployment) {
        let (Some(volume_id), Some(policy_name)) = (volume_id, policy_name) else {
            continue;
        };
        let projections = policies
            .get(policy_name)
            .map(|p| tagging::projections(p, &group, deployment, !existing.contains(volume_id)))
            .unwrap_or_default();
        let mut completed: Vec<&Snapshot> = group
            .iter()
            .copied()
            .filter(|s| s.state == SnapshotState::Completed && s.start_time.is_some())
            .collect();
        if completed.is_empty() {
            continue;
        }
        completed.sort_by_key(|s| (s.start_time, &s.id));
        // What archiving would save: the policy's `archive` rule, or, for a
        // policy without one, what the usual rule would do (monthly and
        // yearly snapshots after 90 days), as `crate::archive` judges it.
        let savings: BTreeMap<String, f64> = {
            let policy = policies.get(policy_name);
            let rule = policy
                .and_then(|p| p.archive.clone())
                .unwrap_or_else(default_archive_rule);
            let candidates = archive::candidates(
                &completed,
                &projections,
                |s| {
                    if s.archived {
                        archive::Tier::Archived
                    } else {
                        archive::Tier::Standard
                    }
                },
                |id| figures.get(id).map(|z| z.unique_bytes),
                |s| gate.protection(s).map(|p| p.kind()),
            );
            let tz = policy.map_or(chrono_tz::Tz::UTC, |p| p.schedule.timezone());
            archive::judge(&rule, tz, &candidates, prices, now)
                .into_iter()
                .filter_map(|d| match d.verdict {
                    Ok(usd) => Some((d.id, usd)),
                    Err(archive::Stay::CostsMore { usd }) => Some((d.id, -usd)),
                    Err(_) => None,
                })
                .collect()
        };
        let mut volume = VolumeCost {
            volume_id: volume_id.to_string(),
            policy: policy_name.to_string(),
            standard_bytes: 0,
            archive_bytes: 0,
            monthly_usd: 0.0,
            expiry_frees_bytes: 0,
            archive_saves_usd: 0.0,
            snapshot_count: 0,
            snapshots: Vec::new(),
        };
        for s in completed {
            let sizes = figures.get(&s.id);
            let projection = projections.get(&s.id);
            let reasons: Vec<KeepReason> = projection
                .map(|p| p.decision.reasons.clone())
                .unwrap_or_default();
            let expiry = projection.map_or(Expiry::Due, |p| p.expiry);
            let expires = match expiry {
                Expiry::At(t) => tags::format_time(t),
                Expiry::Never => "never".to_string(),
                Expiry::Due => "due".to_string(),
            };
            let saving = savings.get(&s.id).copied();
            if s.archived {
                volume.archive_bytes += s.full_size_bytes.unwrap_or(0);
            } else if let Some(sizes) = sizes {
                volume.standard_bytes += sizes.added_bytes;
            }
            let expiry_deletes = deleted.contains(s.id.as_str());
            if expiry_deletes {
                volume.expiry_frees_bytes += sizes.map_or(0, |z| z.unique_bytes);
            }
            if let Some(saving) = saving.filter(|s| *s > 0.0) {
                summary.archive_candidates += 1;
                volume.archive_saves_usd += saving;
            }
            volume.snapshots.push(SnapshotCost {
                id: s.id.clone(),
                time: s.start_time.map(tags::format_time).unwrap_or_default(),
                tier: if s.archived { "archive" } else { "standard" },
                full_bytes: s.full_size_bytes,
                unique_bytes: sizes.map(|z| z.unique_bytes),
                added_bytes: sizes.map(|z| z.added_bytes),
                retained_by: reasons.iter().map(|r| r.as_str()).collect(),
                expires,
                expiry_deletes,
                archive_saving_usd: saving,
            });
        }
        volume.monthly_usd = prices.monthly(volume.standard_bytes, volume.archive_bytes);
        summary.add(volume);
    }
    summary.monthly_usd = prices.monthly(summary.standard_bytes, summary.archive_bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebs_lifecycle::ports::blocks::BlocksError;
    use ebs_lifecycle::ports::ec2::Ec2Error;
    use ebs_lifecycle_core::cost::{Diff, BLOCK_BYTES};
    use ebs_lifecycle_core::model::Tags;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Ten snapshots of one volume; snapshot k rewrites block k (and the
    /// first holds blocks 0-9). Each request takes a second.
    struct Volume {
        requests: Mutex<u32>,
        throttle_after: Option<u32>,
    }

    #[async_trait::async_trait]
    impl SnapshotBlocks for Volume {
        async fn diff(&self, older: Option<&str>, newer: &str) -> Result<Walked, BlocksError> {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let n = {
                let mut r = self.requests.lock().unwrap();
                *r += 1;
                *r
            };
            if self.throttle_after.is_some_and(|t| n > t) {
                return Err(BlocksError::Throttled("RequestThrottledException".into()));
            }
            let k = |id: &str| id.trim_start_matches("snap-").parse::<u32>().unwrap();
            let mut diff = Diff::default();
            match older {
                None => (0..10).for_each(|b| diff.add(b, false, true)),
                Some(o) => {
                    // Blocks rewritten after `o` up to `newer`.
                    for b in k(o) + 1..=k(newer) {
                        diff.add(b, true, true);
                    }
                }
            }
            Ok(Walked { diff, requests: 1 })
        }
    }

    #[derive(Default)]
    struct Tagger(Mutex<BTreeMap<String, Tags>>);

    #[async_trait::async_trait]
    impl SnapshotTagger for Tagger {
        async fn tag_snapshots(&self, ids: &[String], tags: &Tags) -> Result<(), Ec2Error> {
            let mut all = self.0.lock().unwrap();
            for id in ids {
                all.entry(id.clone()).or_default().extend(tags.clone());
            }
            Ok(())
        }
    }

    fn lineage(tagger: &Tagger) -> Vec<Snapshot> {
        let tags = tagger.0.lock().unwrap();
        (0..10)
            .map(|k| Snapshot {
                id: format!("snap-{k}"),
                volume_id: Some("vol-1".into()),
                state: SnapshotState::Completed,
                start_time: chrono::DateTime::from_timestamp(1_767_225_600 + k * 86_400, 0),
                volume_size_gib: Some(1),
                full_size_bytes: Some(10 * BLOCK_BYTES),
                archived: false,
                restore_expiry: None,
                encrypted: true,
                kms_key_id: None,
                description: None,
                owner_id: None,
                tags: tags.get(&format!("snap-{k}")).cloned().unwrap_or_default(),
            })
            .collect()
    }

    async fn run(blocks: &Volume, tagger: &Tagger, seconds: u64) -> CostSummary {
        let snapshots = lineage(tagger);
        let ours: BTreeSet<String> = snapshots.iter().map(|s| s.id.clone()).collect();
        let mut summary = CostSummary::default();
        let ports = CostPorts { blocks, tagger };
        let deadline = Deadline::after(Duration::from_secs(seconds)).with_margin(Duration::ZERO);
        figures(ports, &lineages(&snapshots), &ours, &deadline, &mut summary).await;
        summary
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_out_of_time_leaves_the_rest_and_the_next_continues_where_it_stopped() {
        let blocks = Volume {
            requests: Mutex::new(0),
            throttle_after: None,
        };
        let tagger = Tagger::default();
        // Four seconds: four walks, (-, 0), (0, 1), (1, 2), (2, 3): three
        // snapshots measured, seven left.
        let first = run(&blocks, &tagger, 4).await;
        assert_eq!((first.computed, first.left, first.requests), (3, 7, 4));
        // The next run asks only for what is left: one walk per pair.
        let second = run(&blocks, &tagger, 60).await;
        assert_eq!((second.computed, second.left, second.requests), (7, 0, 7));
        // By the recipe: snapshot 0 alone holds the first version of block
        // 1 (snapshot 1 rewrote it); snapshot 5's block 5 lives on in 6 to
        // 9, so it holds nothing alone; the newest holds its block 9.
        let cached = tagger.0.lock().unwrap().clone();
        let unique = |k: usize| cached[&format!("snap-{k}")]["lifecycle:unique-bytes"].clone();
        assert_eq!(unique(0), BLOCK_BYTES.to_string());
        assert_eq!(unique(5), "0");
        assert_eq!(unique(9), BLOCK_BYTES.to_string());
        assert_eq!(
            cached["snap-0"]["lifecycle:unique-basis"],
            format!("{} - snap-1", 10 * BLOCK_BYTES)
        );
        // Nothing changed: nothing asked.
        let third = run(&blocks, &tagger, 60).await;
        assert_eq!((third.computed, third.requests), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_snapshot_with_no_room_for_the_cache_is_measured_but_not_tagged() {
        let blocks = Volume {
            requests: Mutex::new(0),
            throttle_after: None,
        };
        let tagger = Tagger::default();
        let full: Tags = (0..49).map(|n| (format!("k{n}"), String::new())).collect();
        tagger.0.lock().unwrap().insert("snap-4".into(), full);
        let summary = run(&blocks, &tagger, 600).await;
        assert_eq!((summary.computed, summary.not_cached), (10, 1));
        assert!(summary.errors.is_empty(), "{:?}", summary.errors);
        let tagged = tagger.0.lock().unwrap().clone();
        assert!(!tagged["snap-4"].contains_key("lifecycle:unique-bytes"));
        assert!(tagged["snap-5"].contains_key("lifecycle:unique-bytes"));
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_through_the_retries_stops_the_walks_and_leaves_the_rest() {
        let blocks = Volume {
            requests: Mutex::new(0),
            throttle_after: Some(2),
        };
        let tagger = Tagger::default();
        let summary = run(&blocks, &tagger, 600).await;
        assert_eq!(summary.computed, 1);
        assert_eq!(summary.left, 9);
        assert_eq!(
            *blocks.requests.lock().unwrap(),
            3,
            "no request after the throttle"
        );
        assert!(
            summary.errors[0].contains("throttling"),
            "{:?}",
            summary.errors
        );
    }
}

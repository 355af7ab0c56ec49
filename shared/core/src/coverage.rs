//! Coverage of every EBS volume of the region (docs/operations.md,
//! "Coverage"): what protects it, and whether this deployment's protection
//! has a gap. AWS's own coverage checks count only AWS Backup recovery
//! points; this counts every kind a snapshot can show.
//!
//! A volume is protected
//! - by this deployment when a policy covers it (its opt-in tag, resolved
//!   by [`crate::targets`]); it is in a gap when its newest completed
//!   snapshot the deployment provably made (or, with none yet, the moment
//!   the volume was first seen opted in) is older than twice its policy's
//!   interval: a stopped schedule or a failing function is noticed within
//!   a day. Past four intervals the gap is critical. It stays classed as
//!   protected by this deployment, flagged;
//! - otherwise by Data Lifecycle Manager or AWS Backup when a snapshot of it
//!   carries their `aws:dlm:` / `aws:backup:` tags (only those services can
//!   write `aws:` tags);
//! - otherwise by hand when it has any snapshot the account owns;
//! - otherwise not at all;
//! - or it was not checked: a run its deadline stopped before it reached
//!   the volume says so (never "unprotected", never "no gap": it does not
//!   know), and the next run starts there.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::model::{Snapshot, SnapshotState, Volume};
use crate::notify::Severity;
use crate::policy::Policies;

/// What protects a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cover {
    Deployment,
    DataLifecycleManager,
    AwsBackup,
    HandMade,
    Unprotected,
    /// The run ran out of time before it read the volume's snapshots.
    NotChecked,
}

impl Cover {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "deployment",
            Self::DataLifecycleManager => "data-lifecycle-manager",
            Self::AwsBackup => "aws-backup",
            Self::HandMade => "hand-made",
            Self::Unprotected => "unprotected",
            Self::NotChecked => "not-checked",
        }
    }
}

/// A gap in this deployment's protection of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// Since when the volume has no recent enough snapshot: its newest
    /// completed snapshot's time, or when it was first seen opted in.
    pub since: DateTime<Utc>,
    /// How many of the policy's intervals that is.
    pub intervals: i64,
    pub severity: Severity,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeCoverage {
    pub volume_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub cover: Cover,
    /// The policy covering it, for this deployment's volumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The newest completed snapshot of the kind that protects it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap: Option<Gap>,
    /// For this deployment's volumes: the last verified restore, and
    /// whether that is too long ago ([`with_restores`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreStatus>,
    /// Why this deployment does not snapshot it although its instance opts
    /// in or the default policy covers it: `policy fleet excludes it (boot
    /// volume)` ([`with_exclusions`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded: Option<String>,
}

/// Mark each volume a policy's `exclude` leaves out with the reason
/// (`crate::targets::Excluded::describe`), so the report says why a volume
/// of an opted-in instance has no snapshot of ours.
pub fn with_exclusions(coverage: &mut [VolumeCoverage], excluded: &BTreeMap<String, String>) {
    for c in coverage {
        c.excluded = excluded.get(&c.volume_id).cloned();
    }
}

/// A volume's last passed restore drill (docs/restore.md, "Restore
/// drills"), and whether it is `restore-unverified`: never drilled, or
/// last verified more than `RESTORE_DRILL_MAX_AGE_DAYS` ago.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Seconds the drill's volume took to become available (rounded up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    pub unverified: bool,
}

/// Each of this deployment's volumes gets its restore status from
/// `verified` (volume id -> (when, snapshot, seconds)): `restore-unverified`
/// when it has none, or one older than `max_age`. The others get none.
/// Returns how many are restore-unverified.
pub fn with_restores(
    coverage: &mut [VolumeCoverage],
    verified: &BTreeMap<String, (DateTime<Utc>, String, u64)>,
    max_age: Duration,
    now: DateTime<Utc>,
) -> usize {
    let mut unverified = 0;
    for c in coverage.iter_mut().filter(|c| c.cover == Cover::Deployment) {
        let last = verified.get(&c.volume_id);
        let stale = last.is_none_or(|(at, _, _)| now - *at > max_age);
        unverified += usize::from(stale);
        c.restore = Some(RestoreStatus {
            verified_at: last.map(|(at, _, _)| *at),
            snapshot_id: last.map(|(_, s, _)| s.clone()),
            seconds: last.map(|(_, _, secs)| *secs),
            unverified: stale,
        });
    }
    unverified
}

/// What the rules need to know of one volume's snapshots.
#[derive(Debug, Clone, Default)]
pub struct VolumeSnapshots {
    /// The newest completed snapshot this deployment provably made.
    pub ours: Option<DateTime<Utc>>,
    pub dlm: Option<DateTime<Utc>>,
    pub backup: Option<DateTime<Utc>>,
    /// Any other snapshot the account owns.
    pub other: Option<DateTime<Utc>>,
}

fn newer(slot: &mut Option<DateTime<Utc>>, t: Option<DateTime<Utc>>) {
    if t > *slot {
        *slot = t;
    }
}

/// Fold the account's snapshots into per-volume facts. `ours`: the ids of
/// the snapshots the ownership check proved this deployment's (a forged
/// tag makes no volume look protected).
pub fn fold(
    snapshots: &[Snapshot],
    ours: &std::collections::BTreeSet<String>,
) -> BTreeMap<String, VolumeSnapshots> {
    let mut out: BTreeMap<String, VolumeSnapshots> = BTreeMap::new();
    for s in snapshots {
        if s.state != SnapshotState::Completed {
            continue;
        }
        let Some(volume) = (if ours.contains(&s.id) {
            s.source_volume_id()
        } else {
            s.volume_id.as_deref()
        }) else {
            continue;
        };
        let facts = out.entry(volume.to_string()).or_default();
        let tagged = |prefix: &str| s.tags.keys().any(|k| k.starts_with(prefix));
        if ours.contains(&s.id) {
            newer(&mut facts.ours, s.start_time);
        } else if tagged("aws:dlm:") {
            newer(&mut facts.dlm, s.start_time);
        } else if tagged("aws:backup:") {
            newer(&mut facts.backup, s.start_time);
        } else {
            newer(&mut facts.other, s.start_time);
        }
    }
    out
}

/// The length of the policy's slot around `now` (its interval).
pub fn interval(policies: &Policies, policy: &str, now: DateTime<Utc>) -> Option<Duration> {
    let schedule = &policies.get(policy)?.schedule;
    let slot = schedule.slot_at(now)?;
    let next = schedule.next_slot_after(slot)?;
    Some(next - slot)
}

/// Classify every volume. `covered`: the volumes a policy of this
/// deployment covers, with the policy; `first_seen`: when each was first
/// seen opted in (for a volume with no snapshot of ours yet);
/// `not_checked`: the volumes whose snapshots the run did not read.
pub fn classify(
    volumes: &[Volume],
    covered: &BTreeMap<String, String>,
    snapshots: &BTreeMap<String, VolumeSnapshots>,
    policies: &Policies,
    first_seen: &BTreeMap<String, DateTime<Utc>>,
    not_checked: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> Vec<VolumeCoverage> {
    let none = VolumeSnapshots::default();
    volumes
        .iter()
        .map(|v| {
            let facts = snapshots.get(&v.id).unwrap_or(&none);
            let name = v.name().map(String::from);
            if not_checked.contains(&v.id) {
                return VolumeCoverage {
                    volume_id: v.id.clone(),
                    name,
                    cover: Cover::NotChecked,
                    policy: covered.get(&v.id).cloned(),
                    newest: None,
                    gap: None,
                    restore: None,
                    excluded: None,
                };
            }
            if let Some(policy) = covered.get(&v.id) {
                let since = facts.ours.or_else(|| first_seen.get(&v.id).copied());
                let gap = match (since, interval(policies, policy, now)) {
                    (Some(since), Some(interval)) if interval > Duration::zero() => {
                        let intervals = (now - since).num_seconds() / interval.num_seconds();
                        (now - since > interval * 2).then_some(Gap {
                            since,
                            intervals,
                            severity: if now - since > interval * 4 {
                                Severity::Critical
                            } else {
                                Severity::Warning
                            },
                        })
                    }
                    _ => None,
                };
                return VolumeCoverage {
                    volume_id: v.id.clone(),
                    name,
                    cover: Cover::Deployment,
                    policy: Some(policy.clone()),
                    newest: facts.ours,
                    gap,
                    restore: None,
                    excluded: None,
                };
            }
            let (cover, newest) = if facts.dlm.is_some() {
                (Cover::DataLifecycleManager, facts.dlm)
            } else if facts.backup.is_some() {
                (Cover::AwsBackup, facts.backup)
            } else if facts.other.is_some() {
                (Cover::HandMade, facts.other)
            } else {
                (Cover::Unprotected, None)
            };
            VolumeCoverage {
                volume_id: v.id.clone(),
                name,
                cover,
                policy: None,
                newest,
                gap: None,
                restore: None,
                excluded: None,
            }
        })
        .collect()
}

/// Volumes per kind of protection, and how many of this deployment's are
/// in a gap.
pub fn counts(coverage: &[VolumeCoverage]) -> (BTreeMap<&'static str, usize>, usize) {
    let mut by_cover: BTreeMap<&'static str, usize> = BTreeMap::new();
    for c in coverage {
        *by_cover.entry(c.cover.as_str()).or_default() += 1;
    }
    let gaps = coverage.iter().filter(|c| c.gap.is_some()).count();
    (by_cover, gaps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Tags;
    use std::collections::BTreeSet;

    fn t(s: &str) -> DateTime<Utc> {
        crate::keys::parse_time(s).unwrap()
    }

    fn volume(id: &str) -> Volume {
        Volume {
            volume_type: None,
            id: id.into(),
            size_gib: 8,
            encrypted: true,
            tags: Tags::new(),
            attachment: None,
        }
    }

    fn snapshot(id: &str, volume: &str, at: &str, tags: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            id: id.into(),
            volume_id: Some(volume.into()),
            state: SnapshotState::Completed,
            start_time: Some(t(at)),
            volume_size_gib: Some(8),
            full_size_bytes: None,
            archived: false,
            restore_expiry: None,
            encrypted: true,
            kms_key_id: None,
            description: None,
            owner_id: None,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn policies() -> Policies {
        Policies::parse(r#"{"daily": {"schedule": "@daily", "keep": {"last": 3}}}"#).unwrap()
    }

    #[test]
    fn every_volume_is_classed_by_what_protects_it_and_ours_by_its_age() {
        let now = t("2026-03-10T12:00:00Z");
        let volumes: Vec<Volume> = [
            "vol-ok",
            "vol-late",
            "vol-stopped",
            "vol-new",
            "vol-dlm",
            "vol-backup",
            "vol-hand",
            "vol-none",
            "vol-unread",
            "vol-unread-ours",
        ]
        .iter()
        .map(|v| volume(v))
        .collect();
        let snapshots = vec![
            snapshot("snap-1", "vol-ok", "2026-03-10T00:00:12Z", &[]),
            snapshot("snap-2", "vol-late", "2026-03-08T00:00:12Z", &[]),
            snapshot("snap-3", "vol-stopped", "2026-03-01T00:00:12Z", &[]),
            snapshot(
                "snap-4",
                "vol-dlm",
                "2026-03-09T00:00:00Z",
                &[("aws:dlm:lifecycle-policy-id", "p")],
            ),
            snapshot(
                "snap-5",
                "vol-backup",
                "2026-03-09T00:00:00Z",
                &[("aws:backup:source-resource", "x")],
            ),
            snapshot("snap-6", "vol-hand", "2025-01-01T00:00:00Z", &[]),
            // A snapshot carrying our tags that the ownership check did not
            // prove makes nothing look protected.
            snapshot(
                "snap-7",
                "vol-new",
                "2026-03-10T00:00:12Z",
                &[("lifecycle:managed-by", "prod")],
            ),
        ];
        let ours: BTreeSet<String> = ["snap-1", "snap-2", "snap-3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let covered: BTreeMap<String, String> = [
            "vol-ok",
            "vol-late",
            "vol-stopped",
            "vol-new",
            "vol-unread-ours",
        ]
        .iter()
        .map(|v| (v.to_string(), "daily".to_string()))
        .collect();
        // vol-unread-ours would be in a gap, were it read.
        let first_seen = BTreeMap::from([
            ("vol-new".to_string(), t("2026-03-07T00:00:00Z")),
            ("vol-unread-ours".to_string(), t("2026-03-01T00:00:00Z")),
        ]);
        let coverage = classify(
            &volumes,
            &covered,
            &fold(&snapshots, &ours),
            &policies(),
            &first_seen,
            &BTreeSet::from(["vol-unread".to_string(), "vol-unread-ours".to_string()]),
            now,
        );
        let by_id: BTreeMap<&str, &VolumeCoverage> =
            coverage.iter().map(|c| (c.volume_id.as_str(), c)).collect();

        assert_eq!(by_id["vol-ok"].gap, None);
        // 60 hours without a snapshot of a daily policy: a gap, a warning.
        let late = by_id["vol-late"].gap.as_ref().unwrap();
        assert_eq!((late.intervals, late.severity), (2, Severity::Warning));
        // Nine days: critical.
        assert_eq!(
            by_id["vol-stopped"].gap.as_ref().unwrap().severity,
            Severity::Critical
        );
        // Never snapshotted by us since it was opted in three and a half days ago.
        let new = &by_id["vol-new"];
        assert_eq!((new.cover, new.newest), (Cover::Deployment, None));
        assert_eq!(new.gap.as_ref().unwrap().since, t("2026-03-07T00:00:00Z"));
        assert_eq!(by_id["vol-dlm"].cover, Cover::DataLifecycleManager);
        assert_eq!(by_id["vol-backup"].cover, Cover::AwsBackup);
        assert_eq!(by_id["vol-hand"].cover, Cover::HandMade);
        assert_eq!(by_id["vol-none"].cover, Cover::Unprotected);
        // Not reached this run: said so, whether or not a policy covers it,
        // and no gap claimed either way.
        let unread = by_id["vol-unread"];
        assert_eq!(
            (unread.cover, unread.policy.as_deref()),
            (Cover::NotChecked, None)
        );
        let unread = by_id["vol-unread-ours"];
        assert_eq!(
            (unread.cover, unread.policy.as_deref(), &unread.gap),
            (Cover::NotChecked, Some("daily"), &None)
        );

        let (by_cover, gaps) = counts(&coverage);
        assert_eq!(by_cover["deployment"], 4, "not-checked ones apart");
        assert_eq!(by_cover["unprotected"], 1);
        assert_eq!(by_cover["not-checked"], 2);
        assert_eq!(gaps, 3);
    }

    #[test]
    fn an_hourly_policy_has_an_hour_for_interval() {
        let p = Policies::parse(r#"{"h": {"schedule": "@hourly", "keep": {"last": 3}}}"#).unwrap();
        assert_eq!(
            interval(&p, "h", t("2026-03-10T12:30:00Z")),
            Some(Duration::hours(1))
        );
        assert_eq!(interval(&p, "missing", t("2026-03-10T12:30:00Z")), None);
    }

    #[test]
    fn a_volume_of_ours_never_or_long_ago_verified_is_restore_unverified() {
        let now = t("2026-06-01T00:00:00Z");
        let ours = |id: &str| VolumeCoverage {
            volume_id: id.into(),
            name: None,
            cover: Cover::Deployment,
            policy: Some("default".into()),
            newest: None,
            gap: None,
            restore: None,
            excluded: None,
        };
        let mut coverage = vec![ours("vol-never"), ours("vol-fresh"), ours("vol-stale")];
        coverage.push(VolumeCoverage {
            cover: Cover::Unprotected,
            policy: None,
            ..ours("vol-foreign")
        });
        let verified = BTreeMap::from([
            (
                "vol-fresh".to_string(),
                (t("2026-05-20T00:00:00Z"), "snap-f".to_string(), 42),
            ),
            (
                "vol-stale".to_string(),
                (t("2026-04-01T00:00:00Z"), "snap-s".to_string(), 40),
            ),
        ]);
        assert_eq!(
            with_restores(&mut coverage, &verified, Duration::days(35), now),
            2
        );
        let by_id: BTreeMap<&str, &VolumeCoverage> =
            coverage.iter().map(|c| (c.volume_id.as_str(), c)).collect();
        assert!(by_id["vol-never"].restore.as_ref().unwrap().unverified);
        assert!(!by_id["vol-fresh"].restore.as_ref().unwrap().unverified);
        assert_eq!(
            by_id["vol-fresh"].restore.as_ref().unwrap().seconds,
            Some(42)
        );
        assert!(by_id["vol-stale"].restore.as_ref().unwrap().unverified);
        assert_eq!(
            by_id["vol-foreign"].restore, None,
            "only this deployment's volumes"
        );
    }
}

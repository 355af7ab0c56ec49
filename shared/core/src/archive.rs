//! Which snapshots move to the archive tier, and what deleting an archived
//! one early costs (docs/policies-and-tags.md, "Archive"). Pure.
//!
//! A completed snapshot is archived when all of these hold: its policy has
//! an `archive` rule; it is older than `after`; the rules that keep it are
//! all among the rule's `rules`; it is neither the oldest nor the newest of
//! its volume; nothing protects it (an AMI, a copy in progress, a lock, a
//! hold for review); and archiving saves money over its projected
//! remaining life ([`crate::cost::archive_saving`] > 0, with unique bytes
//! measured by the run itself, never read from a tag anyone can write).
//! EC2's quotas are kept across runs: at most [`MAX_ARCHIVED_PER_VOLUME`]
//! archived (or archiving) per volume, [`MAX_ARCHIVALS_IN_PROGRESS`]
//! archivals in progress per account; when the account's budget is short,
//! the largest savings go first.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::cost::{self, Prices, ARCHIVE_MINIMUM_DAYS, DAYS_PER_MONTH, GB};
use crate::model::Snapshot;
use crate::policy::ArchiveRule;
use crate::retention::{Expiry, KeepReason, Projection};

/// EC2: archived snapshots per volume.
pub(crate) const MAX_ARCHIVED_PER_VOLUME: usize = 25;
/// EC2: archivals in progress per account (and region).
pub const MAX_ARCHIVALS_IN_PROGRESS: usize = 25;
/// A projected life with no end is priced over this many days.
pub(crate) const HORIZON_DAYS: f64 = 365.0;

/// The `keep` document's name of the rule behind a reason.
pub(crate) fn rule_name(reason: KeepReason) -> &'static str {
    use KeepReason::*;
    match reason {
        Last => "last",
        Within => "within",
        Tag => "tags",
        Hourly | OldestHourly => "hourly",
        Daily | OldestDaily => "daily",
        Weekly | OldestWeekly => "weekly",
        Monthly | OldestMonthly => "monthly",
        Yearly | OldestYearly => "yearly",
        WithinHourly | OldestWithinHourly => "within_hourly",
        WithinDaily | OldestWithinDaily => "within_daily",
        WithinWeekly | OldestWithinWeekly => "within_weekly",
        WithinMonthly | OldestWithinMonthly => "within_monthly",
        WithinYearly | OldestWithinYearly => "within_yearly",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    Standard,
    /// An archival EC2 has not finished.
    Archiving,
    Archived,
}

/// One completed snapshot of a volume as the plan sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    pub time: DateTime<Utc>,
    /// The retention planner's reasons (empty: no rule keeps it).
    pub reasons: Vec<KeepReason>,
    pub expiry: Expiry,
    pub tier: Tier,
    /// EC2's `FullSnapshotSizeInBytes`.
    pub full_bytes: Option<u64>,
    /// Measured this run (EBS direct APIs), `None` if not.
    pub unique_bytes: Option<u64>,
    /// What protects it from being touched, if anything (an AMI, a copy in
    /// progress, a lock, held for review).
    pub protected: Option<&'static str>,
}

/// One retention group's completed snapshots (a volume under one policy,
/// oldest first) as [`judge`] sees them: reasons and expiry from the
/// retention projection (`lifecycle:expires-at`'s), the tier as the caller
/// knows it, the unique bytes it measured, what protects each one.
pub fn candidates(
    completed: &[&Snapshot],
    projections: &BTreeMap<String, Projection>,
    tier: impl Fn(&Snapshot) -> Tier,
    unique_bytes: impl Fn(&str) -> Option<u64>,
    protected: impl Fn(&Snapshot) -> Option<&'static str>,
) -> Vec<Candidate> {
    completed
        .iter()
        .filter_map(|s| {
            let projection = projections.get(&s.id);
            Some(Candidate {
                id: s.id.clone(),
                time: s.start_time?,
                reasons: projection
                    .map(|p| p.decision.reasons.clone())
                    .unwrap_or_default(),
                expiry: projection.map_or(Expiry::Due, |p| p.expiry),
                tier: tier(s),
                full_bytes: s.full_size_bytes,
                unique_bytes: unique_bytes(&s.id),
                protected: protected(s),
            })
        })
        .collect()
}

/// Why a snapshot stays where it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "why")]
pub enum Stay {
    AlreadyArchived,
    Archiving,
    /// Younger than `after`.
    TooYoung,
    /// No rule keeps it: expiry deletes it, archiving would only add.
    NotKept,
    /// A rule outside `archive.rules` keeps it.
    KeptBy {
        rule: &'static str,
    },
    Oldest,
    Newest,
    Protected {
        by: &'static str,
    },
    /// Its sizes are not measured (yet).
    SizesUnknown,
    /// Archiving would cost this much more (USD) over its remaining life.
    CostsMore {
        usd: f64,
    },
    /// The volume has its 25 archived snapshots.
    VolumeQuota,
    /// The account has 25 archivals in progress (this run's included).
    AccountQuota,
}

impl Stay {
    /// A short stable name, for counts in summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AlreadyArchived => "already-archived",
            Self::Archiving => "archiving",
            Self::TooYoung => "too-young",
            Self::NotKept => "not-kept",
            Self::KeptBy { .. } => "kept-by-other-rule",
            Self::Oldest => "oldest",
            Self::Newest => "newest",
            Self::Protected { .. } => "protected",
            Self::SizesUnknown => "sizes-unknown",
            Self::CostsMore { .. } => "costs-more",
            Self::VolumeQuota => "volume-quota",
            Self::AccountQuota => "account-quota",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub id: String,
    /// `Ok(saving in USD)`: archive it. `Err`: why not.
    pub verdict: Result<f64, Stay>,
}

/// Days from `now` to the projected end of its life.
fn remaining_days(expiry: Expiry, now: DateTime<Utc>) -> f64 {
    match expiry {
        Expiry::At(t) => (t - now).num_seconds().max(0) as f64 / 86_400.0,
        Expiry::Never => HORIZON_DAYS,
        Expiry::Due => 0.0,
    }
}

/// One volume's snapshots under one policy's archive rule, oldest first.
/// Quotas are not applied here ([`apply_quotas`] does, across volumes).
pub fn judge(
    rule: &ArchiveRule,
    tz: Tz,
    snapshots: &[Candidate],
    prices: &Prices,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let cutoff = crate::retention::within_cutoff(now, &rule.after, tz);
    let last = snapshots.len().saturating_sub(1);
    snapshots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let verdict = (|| {
                match s.tier {
                    Tier::Archived => return Err(Stay::AlreadyArchived),
                    Tier::Archiving => return Err(Stay::Archiving),
                    Tier::Standard => {}
                }
                if s.time > cutoff {
                    return Err(Stay::TooYoung);
                }
                if s.reasons.is_empty() || s.expiry == Expiry::Due {
                    return Err(Stay::NotKept);
                }
                if let Some(other) = s
                    .reasons
                    .iter()
                    .map(|r| rule_name(*r))
                    .find(|r| !rule.rules.iter().any(|a| a == r))
                {
                    return Err(Stay::KeptBy { rule: other });
                }
                if i == 0 {
                    return Err(Stay::Oldest);
                }
                if i == last {
                    return Err(Stay::Newest);
                }
                if let Some(by) = s.protected {
                    return Err(Stay::Protected { by });
                }
                let (Some(full), Some(unique)) = (s.full_bytes, s.unique_bytes) else {
                    return Err(Stay::SizesUnknown);
                };
                let saving =
                    cost::archive_saving(full, unique, remaining_days(s.expiry, now), prices);
                if saving > 0.0 {
                    Ok(saving)
                } else {
                    Err(Stay::CostsMore { usd: -saving })
                }
            })();
            Decision {
                id: s.id.clone(),
                verdict,
            }
        })
        .collect()
}

/// Apply EC2's quotas to the archivals of a run: per volume, what is
/// archived or archiving already counts against 25; per account, what is in
/// progress counts against 25. The largest savings go first.
/// `volumes`: each volume's decisions and its snapshots already archived
/// or archiving; `in_progress`: the account's archivals in progress.
pub fn apply_quotas(volumes: &mut [(Vec<Decision>, usize)], in_progress: usize) {
    for (decisions, held) in volumes.iter_mut() {
        let mut room = MAX_ARCHIVED_PER_VOLUME.saturating_sub(*held);
        // Within a volume, the largest savings too.
        let mut order: Vec<usize> = (0..decisions.len())
            .filter(|i| decisions[*i].verdict.is_ok())
            .collect();
        order.sort_by(|a, b| saving(&decisions[*b]).total_cmp(&saving(&decisions[*a])));
        for i in order {
            if room == 0 {
                decisions[i].verdict = Err(Stay::VolumeQuota);
            } else {
                room -= 1;
            }
        }
    }
    let mut budget = MAX_ARCHIVALS_IN_PROGRESS.saturating_sub(in_progress);
    let mut all: Vec<(usize, usize)> = volumes
        .iter()
        .enumerate()
        .flat_map(|(v, (d, _))| {
            (0..d.len())
                .filter(move |i| d[*i].verdict.is_ok())
                .map(move |i| (v, i))
        })
        .collect();
    all.sort_by(|a, b| saving(&volumes[b.0].0[b.1]).total_cmp(&saving(&volumes[a.0].0[a.1])));
    for (v, i) in all {
        if budget == 0 {
            volumes[v].0[i].verdict = Err(Stay::AccountQuota);
        } else {
            budget -= 1;
        }
    }
}

fn saving(d: &Decision) -> f64 {
    d.verdict.as_ref().copied().unwrap_or(f64::MIN)
}

/// Whether an archived snapshot is being restored or is restored for a
/// while, from EC2's tier status (`LastTieringOperationStatus`,
/// `RestoreExpiryTime`): someone means to use it, so it is not deleted.
pub fn is_being_restored(
    last_operation: Option<&str>,
    restore_expiry: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    matches!(
        last_operation,
        Some("temporary-restore-in-progress" | "permanent-restore-in-progress")
    ) || restore_expiry.is_some_and(|t| t > now)
}

/// What deleting an archived snapshot now costs beyond what it has been
/// billed: the archive tier bills at least 90 days, so the days short of
/// 90 are charged at deletion (USD).
pub fn early_deletion_charge(
    full_bytes: u64,
    archived_at: DateTime<Utc>,
    now: DateTime<Utc>,
    prices: &Prices,
) -> f64 {
    let days = (now - archived_at).num_seconds().max(0) as f64 / 86_400.0;
    let short = (ARCHIVE_MINIMUM_DAYS - days).max(0.0);
    full_bytes as f64 / GB * prices.archive * short / DAYS_PER_MONTH
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::KeepWithin;
    use chrono::Duration;

    const GIB: u64 = 1 << 30;

    fn t(s: &str) -> DateTime<Utc> {
        crate::tags::parse_time(s).unwrap()
    }

    fn rule() -> ArchiveRule {
        ArchiveRule {
            after: KeepWithin::parse("90d").unwrap(),
            rules: vec!["monthly".into(), "yearly".into()],
        }
    }

    fn snapshot(id: &str, time: &str, reasons: &[KeepReason], unique_gib: u64) -> Candidate {
        Candidate {
            id: id.into(),
            time: t(time),
            reasons: reasons.to_vec(),
            expiry: Expiry::At(t("2027-06-01T00:00:00Z")),
            tier: Tier::Standard,
            full_bytes: Some(100 * GIB),
            unique_bytes: Some(unique_gib * GIB),
            protected: None,
        }
    }

    /// Verdicts with money to the cent.
    fn verdicts(d: &[Decision]) -> Vec<Result<f64, Stay>> {
        let cents = |usd: f64| (usd * 100.0).round() / 100.0;
        d.iter()
            .map(|d| match d.verdict.clone() {
                Ok(usd) => Ok(cents(usd)),
                Err(Stay::CostsMore { usd }) => Err(Stay::CostsMore { usd: cents(usd) }),
                Err(other) => Err(other),
            })
            .collect()
    }

    #[test]
    fn only_what_the_listed_rules_alone_keep_and_what_pays_is_archived() {
        use KeepReason::*;
        let now = t("2026-06-01T00:00:00Z");
        let snapshots = [
            snapshot("oldest", "2025-01-01T00:00:00Z", &[Yearly], 80),
            // A year left (365 days to 2027-06-01): 80 GiB alone x 0.05 x
            // 12.17 months = 48.67 standard, 100 GiB x 0.0125 x 12.17 =
            // 15.21 archived: saves 33.46.
            snapshot("pays", "2025-06-01T00:00:00Z", &[Monthly, OldestYearly], 80),
            // Every block shared with its neighbours: archiving only adds
            // the full size (15.21).
            snapshot("shared", "2025-07-01T00:00:00Z", &[Monthly], 0),
            snapshot("daily-too", "2025-08-01T00:00:00Z", &[Monthly, Daily], 80),
            snapshot("young", "2026-04-01T00:00:00Z", &[Monthly], 80),
            snapshot("newest", "2026-05-31T00:00:00Z", &[Last], 80),
        ];
        let decisions = judge(&rule(), Tz::UTC, &snapshots, &Prices::default(), now);
        assert_eq!(
            verdicts(&decisions),
            [
                Err(Stay::Oldest),
                Ok(33.46),
                Err(Stay::CostsMore { usd: 15.21 }),
                Err(Stay::KeptBy { rule: "daily" }),
                Err(Stay::TooYoung),
                Err(Stay::TooYoung),
            ]
        );
    }

    #[test]
    fn protected_unmeasured_unkept_and_already_archived_snapshots_stay() {
        use KeepReason::*;
        let now = t("2026-06-01T00:00:00Z");
        let mut protected = snapshot("ami", "2025-06-01T00:00:00Z", &[Monthly], 80);
        protected.protected = Some("ami");
        let mut unmeasured = snapshot("unmeasured", "2025-07-01T00:00:00Z", &[Monthly], 80);
        unmeasured.unique_bytes = None;
        let mut due = snapshot("due", "2025-08-01T00:00:00Z", &[], 80);
        due.expiry = Expiry::Due;
        let mut archived = snapshot("archived", "2025-09-01T00:00:00Z", &[Monthly], 80);
        archived.tier = Tier::Archived;
        let snapshots = [
            snapshot("oldest", "2025-01-01T00:00:00Z", &[Yearly], 80),
            protected,
            unmeasured,
            due,
            archived,
            snapshot("newest", "2026-05-31T00:00:00Z", &[Last], 80),
        ];
        let decisions = judge(&rule(), Tz::UTC, &snapshots, &Prices::default(), now);
        assert_eq!(
            verdicts(&decisions)[1..5],
            [
                Err(Stay::Protected { by: "ami" }),
                Err(Stay::SizesUnknown),
                Err(Stay::NotKept),
                Err(Stay::AlreadyArchived),
            ]
        );
    }

    #[test]
    fn a_short_remaining_life_still_pays_ninety_days_of_archive() {
        let now = t("2026-06-01T00:00:00Z");
        let mut s = snapshot("s", "2025-06-01T00:00:00Z", &[KeepReason::Monthly], 100);
        // 30 days left: 100 x 0.05 x 1 = 5.00 standard against 100 x
        // 0.0125 x 3 = 3.75: still pays 1.25.
        s.expiry = Expiry::At(now + Duration::days(30));
        let decisions = judge(
            &rule(),
            Tz::UTC,
            &[
                snapshot("o", "2025-01-01T00:00:00Z", &[KeepReason::Yearly], 1),
                s,
                snapshot("n", "2026-05-31T00:00:00Z", &[KeepReason::Last], 1),
            ],
            &Prices::default(),
            now,
        );
        assert_eq!(verdicts(&decisions)[1], Ok(1.25));
    }

    #[test]
    fn quotas_hold_per_volume_and_per_account_largest_savings_first() {
        let ok = |id: &str, usd: f64| Decision {
            id: id.into(),
            verdict: Ok(usd),
        };
        // Volume a holds 24 archived: room for one, its best (a2).
        // The account has 23 in progress: two more, the best of the rest.
        let mut volumes = vec![
            (vec![ok("a1", 1.0), ok("a2", 5.0)], 24),
            (vec![ok("b1", 2.0), ok("b2", 4.0), ok("b3", 3.0)], 0),
        ];
        apply_quotas(&mut volumes, 23);
        let got: Vec<(&str, Result<f64, Stay>)> = volumes
            .iter()
            .flat_map(|(d, _)| d.iter().map(|d| (d.id.as_str(), d.verdict.clone())))
            .collect();
        assert_eq!(
            got,
            [
                ("a1", Err(Stay::VolumeQuota)),
                ("a2", Ok(5.0)),
                ("b1", Err(Stay::AccountQuota)),
                ("b2", Ok(4.0)),
                ("b3", Err(Stay::AccountQuota)),
            ]
        );
    }

    #[test]
    fn a_restore_in_progress_or_in_effect_is_being_restored() {
        let now = t("2026-06-01T00:00:00Z");
        for (op, expiry, want) in [
            (Some("temporary-restore-in-progress"), None, true),
            (Some("permanent-restore-in-progress"), None, true),
            (
                Some("temporary-restore-completed"),
                Some(now + Duration::days(2)),
                true,
            ),
            (
                Some("temporary-restore-completed"),
                Some(now - Duration::days(1)),
                false,
            ),
            (Some("permanent-restore-completed"), None, false),
            (Some("archival-completed"), None, false),
            (Some("archival-in-progress"), None, false),
            (None, None, false),
        ] {
            assert_eq!(
                is_being_restored(op, expiry, now),
                want,
                "{op:?} {expiry:?}"
            );
        }
    }

    #[test]
    fn deleting_before_ninety_days_in_archive_charges_the_days_short() {
        let p = Prices::default();
        let at = t("2026-01-01T00:00:00Z");
        // 100 GiB, 30 days in: 60 days short = 2 months x 1.25 = 2.50.
        let charge = early_deletion_charge(100 * GIB, at, at + Duration::days(30), &p);
        assert!((charge - 2.5).abs() < 1e-9, "{charge}");
        assert_eq!(
            early_deletion_charge(100 * GIB, at, at + Duration::days(90), &p),
            0.0
        );
    }

    #[test]
    fn every_reason_names_a_rule_the_archive_field_accepts() {
        for r in KeepReason::ALL {
            assert!(
                crate::policy::ARCHIVE_RULE_NAMES.contains(&rule_name(r)),
                "{r}"
            );
        }
    }
}

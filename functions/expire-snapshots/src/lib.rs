//! expire-snapshots: on a daily tick, delete what the retention policy no
//! longer keeps, under the safety rules.
//!
//! One run:
//! 1. list the deployment's snapshots (server-side filter, paginated) and
//!    keep only what the deployment provably made
//!    (`ebs_lifecycle::lambda::ownership`; the suspects are reported once);
//! 2. gather, once, what protects snapshots beyond their tags: the snapshots
//!    behind AMIs the account owns, snapshot locks, which volumes still exist;
//! 3. plan per volume and policy (`ebs_lifecycle_core::expiry`): restic-`forget`
//!    retention, then every safety rule (`ebs_lifecycle_core::safety`);
//! 4. delete the deletable ones, oldest first, paced under EC2's
//!    DeleteSnapshot token bucket, each one authorized by the safety gate
//!    within the grant the stack's ledger gives (`MAX_DELETIONS` over 24
//!    hours, across runs), never a source whose copy to another region
//!    is in flight (the ledger's record); `DRY_RUN` walks the same plan and deletes nothing;
//! 5. log and return a plan users can read, emit metrics, notify.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::{json, Value};

use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::metrics::{self, Metric};
use ebs_lifecycle::lambda::ownership;
use ebs_lifecycle::lambda::pacing::Pacer;
pub use ebs_lifecycle::lambda::pacing::Pacing;
use ebs_lifecycle::lambda::run::{self, RunHeader};
use ebs_lifecycle::ports::ec2::{
    Ec2Error, SnapshotCatalog, SnapshotDeleter, SnapshotProtections, VolumeInventory,
};
use ebs_lifecycle::ports::ledger::{Ledger, LedgerError};
use ebs_lifecycle::ports::notifier::Notifier;
use ebs_lifecycle_core::archive;
use ebs_lifecycle_core::cost::Prices;
use ebs_lifecycle_core::events::{EventError, Tick};
use ebs_lifecycle_core::expiry::{self, VolumePlan};
use ebs_lifecycle_core::notify::{Notification, NotificationKind, Severity};
use ebs_lifecycle_core::ownership::Scope;
use ebs_lifecycle_core::safety::{AccountFacts, DeletionGate, Protection};
use ebs_lifecycle_core::tags;

pub const FUNCTION: &str = "expire-snapshots";

/// DeleteSnapshot draws on EC2's mutating-action token bucket (200 tokens,
/// refilled at 5 per second). A daily run deletes a few snapshots per volume
/// and spends at most a quarter of the bucket at once; a large catch-up then
/// goes at the refill rate, one call every 200 ms, which never drains it
/// whatever else the account is doing.
pub const DELETE_PACING: Pacing = Pacing {
    burst: 50,
    interval: Duration::from_millis(200),
};

#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub catalog: &'a dyn SnapshotCatalog,
    pub inventory: &'a dyn VolumeInventory,
    pub protections: &'a dyn SnapshotProtections,
    pub deleter: &'a dyn SnapshotDeleter,
    pub notifier: &'a dyn Notifier,
    /// The stack's own record: copies, and deletions over 24 hours.
    pub ledger: &'a dyn Ledger,
    /// How deletions are spaced: [`DELETE_PACING`] in production, shorter
    /// in tests.
    pub pacing: Pacing,
}

#[derive(Debug, thiserror::Error)]
pub enum ExpireError {
    #[error("rejected event: {0}")]
    InvalidEvent(#[from] EventError),
    /// Without the full picture (snapshots, AMIs, volumes) nothing is deleted.
    #[error("could not gather what protects snapshots, nothing deleted: {0}")]
    FactsUnavailable(Ec2Error),
    /// Without the ledger, neither ownership of copies nor the 24-hour
    /// budget is known: nothing is deleted.
    #[error("could not use the stack's ledger, nothing deleted: {0}")]
    LedgerUnavailable(#[from] LedgerError),
}

impl From<ExpireError> for Diagnostic {
    fn from(error: ExpireError) -> Self {
        let error_type = match error {
            ExpireError::InvalidEvent(_) => "InvalidEvent",
            ExpireError::FactsUnavailable(_) => "FactsUnavailable",
            ExpireError::LedgerUnavailable(_) => "LedgerUnavailable",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

/// A snapshot that stays, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub snapshot_id: String,
    pub start_time: Option<String>,
    /// `kept-by-policy` (with `retained_by`), `newest-completed`, `held`, ...
    pub why: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained_by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    pub snapshot_id: String,
    pub start_time: Option<String>,
    pub volume_size_gib: i32,
    /// An archived snapshot deleted before its 90 days in the archive tier:
    /// the days short, charged at deletion (USD, at `ARCHIVE_PRICE_GB_MONTH`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_deletion_usd: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedDeletion {
    pub snapshot_id: String,
    pub error_kind: String,
    pub error: String,
}

/// What happened to one volume's snapshots under one policy.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeReport {
    pub volume_id: Option<String>,
    pub policy: Option<String>,
    pub orphan: bool,
    pub kept: Vec<Kept>,
    /// Deleted, or in a dry run: would have been deleted.
    pub deleted: Vec<Deleted>,
    pub failed: Vec<FailedDeletion>,
    /// Deletable, not reached: the cap or the deadline stopped the run.
    pub left_for_later: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub snapshots: usize,
    pub kept: usize,
    pub deleted: usize,
    pub failed: usize,
    pub left_for_later: usize,
    /// Sum of the source volume sizes of the deleted snapshots. Snapshots are
    /// incremental: the storage actually freed (and billed) is usually far
    /// smaller. A count of what was removed, not a saving.
    pub source_volume_gib_of_deleted: i64,
    /// What deleting archived snapshots early was charged (USD).
    pub early_deletion_usd: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    #[serde(flatten)]
    pub header: RunHeader,
    pub dry_run: bool,
    pub max_deletions: u32,
    /// What the ledger granted this run: `MAX_DELETIONS` less what runs of
    /// the last 24 hours used.
    pub deletions_granted: u32,
    pub cap_reached: bool,
    /// False when the snapshot-lock API could not be asked (the local
    /// emulator lacks it); EC2 itself refuses to delete a locked snapshot.
    pub locks_checked: bool,
    pub counts: Counts,
    pub volumes: Vec<VolumeReport>,
}

/// Run one daily tick: gather the facts, plan, delete what the plan and the
/// gate allow, summarise, notify.
pub async fn handle(
    ports: Ports<'_>,
    config: &Config,
    event: &Value,
    now: DateTime<Utc>,
    deadline: Deadline,
) -> Result<RunSummary, ExpireError> {
    Tick::parse(event)?;
    let facts_error = ExpireError::FactsUnavailable;
    let listed = ports
        .catalog
        .managed_snapshots(&config.deployment_name)
        .await
        .map_err(facts_error)?;
    let listed_count = listed.len();
    let sifted = ownership::sift(ports.ledger, config, listed, Scope::WholeVolumes).await?;
    let held_for_review = sifted.held_for_review();
    let (snapshots, suspects) = (sifted.owned, sifted.suspects);
    let ami_snapshot_ids = ports
        .protections
        .ami_snapshot_ids()
        .await
        .map_err(facts_error)?;
    let ids: Vec<String> = snapshots.iter().map(|s| s.id.clone()).collect();
    let (locked_snapshot_ids, locks_checked) = match ports
        .protections
        .locked_snapshot_ids(&ids)
        .await
    {
        Ok(locked) => (locked, true),
        Err(e) => {
            tracing::warn!(error = %e, "snapshot locks could not be checked; EC2 still refuses to delete a locked snapshot");
            (BTreeSet::new(), false)
        }
    };
    let volume_ids: Vec<String> = snapshots
        .iter()
        .filter_map(|s| s.source_volume_id().map(String::from))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let existing: BTreeSet<String> = ports
        .inventory
        .volumes_by_id(&volume_ids)
        .await
        .map_err(facts_error)?
        .into_iter()
        .map(|v| v.id)
        .collect();

    // A copy to another region reads its source until it completes.
    let copying = ports
        .ledger
        .copies_in_flight()
        .await?
        .into_iter()
        .map(|c| c.source_snapshot_id)
        .collect();
    // Archived snapshots: a restore in progress or in effect protects one
    // (someone means to use it), and deleting one within 90 days of its
    // archival is charged. Asked only when there are archived snapshots;
    // if EC2's tier status cannot be read, every archived one is kept.
    let tiered: Vec<&ebs_lifecycle_core::model::Snapshot> =
        snapshots.iter().filter(|s| s.in_archive_tier()).collect();
    let (restoring, archived_at) = if tiered.is_empty() {
        (BTreeSet::new(), BTreeMap::new())
    } else {
        match ports.protections.tier_statuses().await {
            Ok(statuses) => {
                let mut restoring: BTreeSet<String> = tiered
                    .iter()
                    .filter(|s| archive::is_being_restored(None, s.restore_expiry, now))
                    .map(|s| s.id.clone())
                    .collect();
                let mut archived_at = BTreeMap::new();
                for t in statuses {
                    if archive::is_being_restored(
                        t.last_operation.as_deref(),
                        t.restore_expiry,
                        now,
                    ) {
                        restoring.insert(t.snapshot_id.clone());
                    }
                    if let Some(at) = t.archived_at {
                        archived_at.insert(t.snapshot_id, at);
                    }
                }
                (restoring, archived_at)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the archive tier status could not be read; every archived snapshot is kept this run");
                (
                    tiered.iter().map(|s| s.id.clone()).collect(),
                    BTreeMap::new(),
                )
            }
        }
    };
    let facts = AccountFacts {
        restoring,
        deployment: config.deployment_name.clone(),
        ami_snapshot_ids,
        locked_snapshot_ids,
        held_for_review,
        copying,
        now,
    };
    let planning = DeletionGate::new(facts.clone(), &snapshots, config.max_deletions);
    let plans = expiry::plan(&snapshots, &config.policies, &existing, &planning);
    // MAX_DELETIONS is a budget over 24 hours shared by every run: ask the
    // ledger for this run's part before deleting anything.
    let deletable = plans
        .iter()
        .flat_map(|p| &p.snapshots)
        .filter(|p| p.deletable())
        .count();
    let wanted = u32::try_from(deletable).unwrap_or(u32::MAX);
    let granted = ports
        .ledger
        .reserve_deletions(now, wanted, config.max_deletions)
        .await?;
    let gate = DeletionGate::new(facts, &snapshots, granted);

    let mut summary = RunSummary {
        header: RunHeader::new(FUNCTION, config, now, "daily"),
        dry_run: config.dry_run,
        max_deletions: config.max_deletions,
        deletions_granted: granted,
        locks_checked,
        ..RunSummary::default()
    };
    summary.counts.snapshots = listed_count;
    let mut execution = Execution {
        ports,
        dry_run: config.dry_run,
        gate,
        deadline,
        pacer: Pacer::new(ports.pacing),
        cap_reached: false,
        attempted: 0,
        archived_at,
        prices: config.prices,
        now,
    };
    for plan in &plans {
        let report = execution.volume(plan).await;
        summary.volumes.push(report);
    }
    summary.cap_reached = execution.cap_reached || (granted < wanted);
    // What was granted and not deleted goes back (a dry run deletes nothing).
    let used = if config.dry_run {
        0
    } else {
        execution.attempted
    };
    if let Err(e) = ports
        .ledger
        .release_deletions(now, now, granted.saturating_sub(used))
        .await
    {
        tracing::warn!(error = %e, "could not give back the unused deletions; they count against the next 24 hours");
    }
    count(&mut summary);
    emit_metrics(config, &summary, suspects.len());
    log(&summary);
    let mut notifications =
        ownership::report(ports.ledger, config, &suspects, now, &mut summary.header).await;
    notifications.extend(self::notifications(config, &summary));
    run::publish(ports.notifier, &notifications, &mut summary.header).await;
    Ok(summary)
}

/// What one run carries from volume to volume while it deletes.
struct Execution<'p> {
    ports: Ports<'p>,
    dry_run: bool,
    gate: DeletionGate,
    deadline: Deadline,
    pacer: Pacer,
    /// MAX_DELETIONS was reached: nothing more is deleted this run.
    cap_reached: bool,
    /// DeleteSnapshot calls made: what the grant was used for.
    attempted: u32,
    /// When each archived snapshot was archived (EC2's tier status).
    archived_at: BTreeMap<String, DateTime<Utc>>,
    prices: Prices,
    now: DateTime<Utc>,
}

impl Execution<'_> {
    /// Carry out one volume's plan.
    async fn volume(&mut self, plan: &VolumePlan<'_>) -> VolumeReport {
        let mut report = VolumeReport {
            volume_id: plan.volume_id.clone(),
            policy: plan.policy.clone(),
            orphan: plan.orphan,
            kept: Vec::new(),
            deleted: Vec::new(),
            failed: Vec::new(),
            left_for_later: Vec::new(),
        };
        // Oldest first: if the run stops early, the oldest went first.
        for planned in plan.snapshots.iter().rev() {
            let s = planned.snapshot;
            let start_time = s.start_time.map(tags::format_time);
            if let Err(protection) = &planned.verdict {
                report.kept.push(Kept {
                    snapshot_id: s.id.clone(),
                    start_time,
                    why: protection.kind().to_string(),
                    retained_by: match protection {
                        Protection::KeptByPolicy(reasons) => Some(
                            reasons
                                .iter()
                                .map(|r| r.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                        ),
                        _ => None,
                    },
                });
                continue;
            }
            if self.cap_reached || self.deadline.is_near() {
                report.left_for_later.push(s.id.clone());
                continue;
            }
            // Every deletion passes the gate again here: it re-checks every rule
            // and counts toward MAX_DELETIONS.
            let authorized = match self.gate.authorize(s, planned.retention.as_deref()) {
                Ok(a) => a,
                Err(Protection::CapReached) => {
                    self.cap_reached = true;
                    report.left_for_later.push(s.id.clone());
                    continue;
                }
                Err(other) => {
                    report.kept.push(Kept {
                        snapshot_id: s.id.clone(),
                        start_time,
                        why: other.kind().into(),
                        retained_by: None,
                    });
                    continue;
                }
            };
            let early_deletion_usd = self
                .archived_at
                .get(&s.id)
                .filter(|_| s.archived)
                .map(|at| {
                    // Without EC2's full size, the volume's: an upper bound.
                    let full = s.full_size_bytes.unwrap_or_else(|| {
                        u64::try_from(s.volume_size_gib.unwrap_or_default()).unwrap_or(0) << 30
                    });
                    archive::early_deletion_charge(full, *at, self.now, &self.prices)
                })
                .filter(|usd| *usd > 0.0);
            let deleted = Deleted {
                snapshot_id: s.id.clone(),
                start_time,
                volume_size_gib: s.volume_size_gib.unwrap_or_default(),
                early_deletion_usd,
            };
            if self.dry_run {
                report.deleted.push(deleted);
                continue;
            }
            self.pacer.ready().await;
            self.attempted += 1;
            match self.ports.deleter.delete_snapshot(&authorized).await {
                // Gone (now, or by hand, or by an earlier attempt whose
                // answer was lost): the goal is reached. A copy's record
                // goes with it.
                Ok(()) | Err(Ec2Error::SnapshotNotFound) => {
                    if s.encrypted_copy_of().is_some() {
                        if let Err(e) = self.ports.ledger.forget_copy(&s.id).await {
                            tracing::warn!(snapshot_id = %s.id, error = %e, "could not forget a deleted copy's record (harmless: its id is never reused)");
                        }
                    }
                    report.deleted.push(deleted);
                }
                Err(e) => report.failed.push(FailedDeletion {
                    snapshot_id: s.id.clone(),
                    error_kind: e.kind().into(),
                    error: e.to_string(),
                }),
            }
        }
        report
    }
}

/// The counts, from the volume reports.
fn count(summary: &mut RunSummary) {
    let c = &mut summary.counts;
    for v in &summary.volumes {
        c.kept += v.kept.len();
        c.deleted += v.deleted.len();
        c.failed += v.failed.len();
        c.left_for_later += v.left_for_later.len();
        c.source_volume_gib_of_deleted += v
            .deleted
            .iter()
            .map(|d| i64::from(d.volume_size_gib))
            .sum::<i64>();
        c.early_deletion_usd += v
            .deleted
            .iter()
            .filter_map(|d| d.early_deletion_usd)
            .sum::<f64>();
    }
}

fn headline(summary: &RunSummary) -> String {
    let counts = &summary.counts;
    let verb = if summary.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    format!(
        "expire-snapshots: {verb} {}, kept {}, failed {}{}",
        counts.deleted,
        counts.kept,
        counts.failed,
        if summary.cap_reached {
            ", stopped at MAX_DELETIONS"
        } else {
            ""
        }
    )
}

fn emit_metrics(config: &Config, summary: &RunSummary, suspects: usize) {
    let counts = &summary.counts;
    // In a dry run nothing is deleted, so the metric counts nothing.
    let deleted_metric = if summary.dry_run {
        0
    } else {
        counts.deleted as u64
    };
    metrics::emit_for_run(
        config,
        FUNCTION,
        &[
            (Metric::SnapshotsDeleteCompleted, deleted_metric),
            (Metric::SnapshotsDeleteFailed, counts.failed as u64),
            (Metric::TamperingSuspected, suspects as u64),
        ],
    );
}

/// What the run tells people, from its summary alone.
pub fn notifications(config: &Config, summary: &RunSummary) -> Vec<Notification> {
    let counts = &summary.counts;
    let mut notifications = Vec::new();
    if summary.cap_reached {
        notifications.push(Notification {
            kind: NotificationKind::DeletionCapReached,
            severity: Severity::Warning,
            deployment: config.deployment_name.clone(),
            summary: format!(
                "expire-snapshots stopped at MAX_DELETIONS={} over 24 hours ({} granted to this run); {} left for a later run",
                summary.max_deletions, summary.deletions_granted, counts.left_for_later
            ),
            details: json!({
                "max_deletions": summary.max_deletions,
                "deletions_granted": summary.deletions_granted,
                "left_for_later": counts.left_for_later,
                "next": "The next daily run continues. If this is expected (a new, stricter policy), raise MaxDeletions; if not, check the policy before it runs again.",
            }),
        });
    }
    if counts.deleted > 0 || counts.failed > 0 {
        notifications.push(Notification {
            kind: NotificationKind::RunSummary,
            severity: if counts.failed > 0 {
                Severity::Warning
            } else {
                Severity::Info
            },
            deployment: config.deployment_name.clone(),
            summary: headline(summary),
            details: json!(summary),
        });
    }
    notifications
}

fn log(summary: &RunSummary) {
    let counts = &summary.counts;
    tracing::info!(
        dry_run = summary.dry_run,
        deleted = counts.deleted,
        kept = counts.kept,
        failed = counts.failed,
        left_for_later = counts.left_for_later,
        summary = %run::for_log(summary),
        "{}",
        headline(summary)
    );
    // The whole plan, a line per volume: the summary above (and the
    // invocation's response) keep a sample of volumes on a large account.
    for volume in &summary.volumes {
        tracing::info!(
            volume_id = volume.volume_id.as_deref().unwrap_or_default(),
            policy = volume.policy.as_deref().unwrap_or_default(),
            deleted = volume.deleted.len(),
            kept = volume.kept.len(),
            report = %run::for_log(volume),
            "expire-snapshots: volume plan"
        );
    }
}

//! copy-snapshots: disaster-recovery copies in other regions of the same
//! account, each target with its own retention (docs/policies-and-tags.md,
//! "Copies to other regions"; docs/functions.md).
//!
//! On every tick (hourly), from the one stack in the source region; nothing
//! is deployed in a destination. Per destination region ([`region`]):
//! 1. **prove**: list the deployment's copies there from this region and
//!    keep only those the stack's ledger records; a copy whose CopySnapshot
//!    answer was lost (timeout, crash) is found by its Description within
//!    minutes of the ask, or proven never started;
//! 2. **track**: pending -> completed (tags, `CrossRegionCopyCompleted`) or
//!    failed (tags, `copy-failed` once, `CrossRegionCopyFailed`), by polling:
//!    the destination's events do not reach this region;
//! 3. **choose** (`ebs_lifecycle_core::copies`): per policy target and
//!    source volume, the next snapshot worth a copy by the target's finest
//!    rule, one in flight per volume, oldest first, at most 20 in flight per
//!    region;
//! 4. **start**: the ledger's in-flight record first (CopySnapshot has no
//!    idempotency token), then CopySnapshot encrypted with the target's key,
//!    every tag at creation, the deployment's Description;
//! 5. **keep**: the target's `keep` per source volume under every safety
//!    rule, within the 24-hour `MAX_DELETIONS` budget expire-snapshots
//!    shares; `DRY_RUN` deletes nothing;
//! 6. **label**: `lifecycle:retained-by` and `lifecycle:expires-at`.
//!
//! Then one summary, metrics and notifications, as every function. Vault
//! account targets are shared, not copied ([`share`]): the vault copies.

mod region;
mod share;

pub use share::ShareReport;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::{json, Value};

use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::function::{
    self, ErrorType, Function, Ran, Run as FunctionRun, Summary,
};
use ebs_lifecycle::lambda::metrics::Metric;
use ebs_lifecycle::lambda::run::RunHeader;
pub use ebs_lifecycle::pacing::Pacing;
use ebs_lifecycle::ports::ec2::{
    Ec2Error, SnapshotCatalog, SnapshotCopier, SnapshotDeleter, SnapshotProtections,
    SnapshotSharing, SnapshotTagger,
};
use ebs_lifecycle::ports::keys::KeySharing;
use ebs_lifecycle::ports::ledger::{CopyInFlight, Ledger, LedgerError};
use ebs_lifecycle::ports::notifier::Notifier;
use ebs_lifecycle::services::ownership;
use ebs_lifecycle_core::events::{EventError, Tick};
use ebs_lifecycle_core::model::{completed_copies, Snapshot, SnapshotState};
use ebs_lifecycle_core::notify::{Notification, NotificationKind, Severity};
use ebs_lifecycle_core::ownership::{Scope, Suspect};

pub const FUNCTION: &str = "copy-snapshots";

/// CopySnapshot draws on EC2's mutating-action bucket of the destination
/// region; a run starts at most 20 per region (`ebs_lifecycle::pacing`).
pub const COPY_PACING: Pacing = ebs_lifecycle::pacing::COPY_SNAPSHOT;

/// DeleteSnapshot in a destination, as expire-snapshots paces it.
pub const DELETE_PACING: Pacing = ebs_lifecycle::pacing::DELETE_SNAPSHOT;

/// What the function needs of one destination region: its EC2.
#[derive(Clone, Copy)]
pub struct Destination<'a> {
    pub catalog: &'a dyn SnapshotCatalog,
    pub protections: &'a dyn SnapshotProtections,
    pub copier: &'a dyn SnapshotCopier,
    pub deleter: &'a dyn SnapshotDeleter,
    pub tagger: &'a dyn SnapshotTagger,
}

#[derive(Clone, Copy)]
pub struct Ports<'a> {
    /// EC2 of the source region (where the stack runs).
    pub catalog: &'a dyn SnapshotCatalog,
    /// Sharing with vault accounts, in the source region.
    pub sharing: &'a dyn SnapshotSharing,
    /// Whether a vault target's key can be shared.
    pub keys: &'a dyn KeySharing,
    /// EC2 of every region a policy copies to, by region.
    pub destinations: &'a BTreeMap<String, Destination<'a>>,
    pub notifier: &'a dyn Notifier,
    /// The stack's own record: copies made and in flight, deletions.
    pub ledger: &'a dyn Ledger,
    pub copy_pacing: Pacing,
    pub delete_pacing: Pacing,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("rejected event: {0}")]
    InvalidEvent(#[from] EventError),
    /// Without the source's snapshots nothing is chosen.
    #[error("could not list this region's snapshots, nothing copied: {0}")]
    SourceUnavailable(Ec2Error),
    /// Without the ledger no copy is proven and none may start.
    #[error("could not use the stack's ledger, nothing copied: {0}")]
    LedgerUnavailable(#[from] LedgerError),
}

impl ErrorType for CopyError {
    fn error_type(&self) -> &'static str {
        match self {
            CopyError::InvalidEvent(_) => "InvalidEvent",
            CopyError::SourceUnavailable(_) => "SourceUnavailable",
            CopyError::LedgerUnavailable(_) => "LedgerUnavailable",
        }
    }
}

impl From<CopyError> for Diagnostic {
    fn from(error: CopyError) -> Self {
        function::diagnostic(&error)
    }
}

/// A copy started this run.
#[derive(Debug, Clone, Serialize)]
pub struct Started {
    pub source_snapshot_id: String,
    pub copy_id: String,
    pub volume_id: String,
    pub policy: String,
}

/// A copy that failed, or that EC2 refused to start (shared with
/// vault-snapshots).
pub use ebs_lifecycle::services::copying::CopyFailure as Failed;

/// A copy deleted by the target's retention, or its failure.
#[derive(Debug, Clone, Serialize)]
pub struct Deletion {
    pub copy_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What one run did in one destination region.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RegionReport {
    pub region: String,
    /// The region could not be worked on this run (listing, ledger): the
    /// next run tries again; other regions go on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub started: Vec<Started>,
    /// Copies seen completed this run.
    pub completed: Vec<String>,
    pub failed: Vec<Failed>,
    /// Copies found after their CopySnapshot answer was lost.
    pub adopted: Vec<String>,
    /// Asked, answer lost, not listed yet: looked for again next run.
    pub unknown: Vec<String>,
    /// Copies in progress after this run.
    pub in_flight: usize,
    /// Worth a copy, not started: the region's 20 in flight, throttling,
    /// the quota (`ResourceLimitExceeded`) or the deadline. Next run.
    pub waiting: usize,
    /// The deployment's copies there, proven.
    pub copies: usize,
    /// Deleted (in a dry run: would be) by the targets' retention.
    pub deleted: Vec<Deletion>,
    pub delete_failed: Vec<Deletion>,
    /// Deletable, not reached: `MAX_DELETIONS` or the deadline.
    pub left_for_later: usize,
    /// Copies whose labels changed.
    pub labelled: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Completed source snapshots of policies with copies.
    pub sources: usize,
    pub started: usize,
    pub completed: usize,
    pub failed: usize,
    pub in_flight: usize,
    pub waiting: usize,
    pub deleted: usize,
    pub delete_failed: usize,
    pub regions_failed: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    #[serde(flatten)]
    pub header: RunHeader,
    pub dry_run: bool,
    pub counts: Counts,
    pub regions: Vec<RegionReport>,
    /// Vault account targets: what was shared and taken back.
    pub vaults: Vec<ShareReport>,
}

/// copy-snapshots, as the skeleton runs it ([`Function`]).
pub struct CopySnapshots;

impl Function for CopySnapshots {
    const NAME: &'static str = FUNCTION;
    type Ports<'p> = Ports<'p>;
    type Trigger = Tick;
    type Summary = RunSummary;
    type Error = CopyError;

    fn ledger<'p>(ports: &Self::Ports<'p>) -> &'p dyn Ledger {
        ports.ledger
    }

    fn notifier<'p>(ports: &Self::Ports<'p>) -> &'p dyn Notifier {
        ports.notifier
    }

    fn open(run: &FunctionRun<'_>, event: &Value) -> Result<(Tick, RunSummary), CopyError> {
        let tick = Tick::parse(event)?;
        let summary = RunSummary {
            header: RunHeader::new(FUNCTION, run.config, run.now, "tick"),
            dry_run: run.config.dry_run,
            ..RunSummary::default()
        };
        Ok((tick, summary))
    }

    async fn execute(
        ports: Self::Ports<'_>,
        run: &FunctionRun<'_>,
        _tick: Tick,
        summary: &mut RunSummary,
    ) -> Result<Ran, CopyError> {
        let (config, now) = (run.config, run.now);
        let regions = config.policies.copy_regions();
        let vaults = config.policies.vault_targets();
        if regions.is_empty() && vaults.is_empty() {
            tracing::info!("copy-snapshots: no policy has copy targets; nothing to do");
            return Ok(Ran::Nothing);
        }

        // Only what a policy with targets made: on an account where a few
        // policies copy, most snapshots are never listed.
        let copying: Vec<String> = config
            .policies
            .iter()
            .filter(|p| !p.copies.is_empty())
            .map(|p| p.name.clone())
            .collect();
        let listed = ports
            .catalog
            .managed_snapshots_of_policies(config.deployment_name(), &copying)
            .await
            .map_err(CopyError::SourceUnavailable)?;
        let sifted =
            ownership::sift(ports.ledger, config, listed, Scope::WholeVolumes, now).await?;
        let mut suspects: Vec<Suspect> = sifted.suspects;
        let sources = sources(config, sifted.owned);
        summary.counts.sources = sources.values().map(Vec::len).sum();
        let in_flight = ports.ledger.copies_in_flight().await?;

        for region_name in regions {
            let in_flight_here: Vec<_> = in_flight
                .iter()
                .filter(|c| c.target == region_name)
                .cloned()
                .collect();
            let report = copy_to_region(
                ports,
                run,
                region_name,
                &sources,
                in_flight_here,
                &mut suspects,
            )
            .await;
            summary.regions.push(report);
        }
        for name in &vaults {
            let target = config
                .policies
                .iter()
                .flat_map(|p| p.copies.iter())
                .find(|t| t.name() == *name);
            if let Some(target) = target {
                summary
                    .vaults
                    .push(share::share(ports, config, &sources, target, run.now).await);
            }
        }
        count(summary);
        Ok(Ran::Done { suspects })
    }

    async fn notifications(
        _ports: Self::Ports<'_>,
        run: &FunctionRun<'_>,
        summary: &mut RunSummary,
    ) -> Vec<Notification> {
        notifications(run.config, summary)
    }
}

/// One destination region's copies: start, track, keep; a failure there
/// leaves the region for the next run (the others go on).
async fn copy_to_region(
    ports: Ports<'_>,
    run: &FunctionRun<'_>,
    region_name: &str,
    sources: &Sources,
    in_flight: Vec<CopyInFlight>,
    suspects: &mut Vec<Suspect>,
) -> RegionReport {
    let mut report = RegionReport {
        region: region_name.to_string(),
        ..RegionReport::default()
    };
    let Some(destination) = ports.destinations.get(region_name) else {
        report.error = Some("no EC2 client for this region (a start-up bug)".into());
        return report;
    };
    let work = region::Region {
        ports,
        destination: *destination,
        config: run.config,
        name: region_name,
        now: run.now,
        deadline: run.deadline,
    };
    if let Err(e) = work.run(sources, in_flight, &mut report, suspects).await {
        tracing::warn!(region = region_name, error = %e, "copy-snapshots: region left for the next run");
        report.error = Some(e);
    }
    report
}

/// Handle one tick: copy, track, keep; summarise, notify.
pub async fn handle(
    ports: Ports<'_>,
    config: &Config,
    event: &Value,
    now: DateTime<Utc>,
    deadline: Deadline,
) -> Result<RunSummary, CopyError> {
    function::invoke::<CopySnapshots>(ports, config, event, now, deadline).await
}

/// A source snapshot worth copying: completed, counted by retention (an
/// original whose encrypted copy is done gives way to the copy), of a
/// policy with targets. By (policy, source volume).
pub(crate) type Sources = BTreeMap<(String, String), Vec<Snapshot>>;

fn sources(config: &Config, owned: Vec<Snapshot>) -> Sources {
    let copies: BTreeSet<String> = completed_copies(owned.iter())
        .into_iter()
        .map(String::from)
        .collect();
    let copies: BTreeSet<&str> = copies.iter().map(String::as_str).collect();
    let mut out: Sources = BTreeMap::new();
    for s in &owned {
        let Some(policy) = s.tags.get(ebs_lifecycle_core::tags::POLICY) else {
            continue;
        };
        let with_targets = config
            .policies
            .get(policy)
            .is_some_and(|p| !p.copies.is_empty());
        if !with_targets
            || s.state != SnapshotState::Completed
            || !s.counts_for_retention(&copies)
            || s.retention_time().is_none()
        {
            continue;
        }
        let Some(volume) = s.source_volume_id() else {
            continue;
        };
        out.entry((policy.clone(), volume.to_string()))
            .or_default()
            .push(s.clone());
    }
    out
}

fn count(summary: &mut RunSummary) {
    let c = &mut summary.counts;
    for r in &summary.regions {
        c.started += r.started.len();
        c.completed += r.completed.len();
        c.failed += r.failed.len();
        c.in_flight += r.in_flight;
        c.waiting += r.waiting;
        c.deleted += r.deleted.len();
        c.delete_failed += r.delete_failed.len();
        c.regions_failed += usize::from(r.error.is_some());
    }
}

fn headline(summary: &RunSummary) -> String {
    let c = &summary.counts;
    format!(
        "copy-snapshots: started {}, completed {}, failed {}, in flight {}, waiting {}, {} {} old copies{}",
        c.started,
        c.completed,
        c.failed,
        c.in_flight,
        c.waiting,
        if summary.dry_run { "would delete" } else { "deleted" },
        c.deleted,
        if c.regions_failed > 0 {
            format!(", {} regions left for the next run", c.regions_failed)
        } else {
            String::new()
        }
    )
}

impl Summary for RunSummary {
    fn header(&mut self) -> &mut RunHeader {
        &mut self.header
    }

    fn headline(&self) -> String {
        headline(self)
    }

    fn metrics(&self, suspects: usize) -> Vec<(Metric, u64)> {
        let c = &self.counts;
        vec![
            (Metric::CrossRegionCopyCompleted, c.completed as u64),
            (Metric::CrossRegionCopyFailed, c.failed as u64),
            (
                Metric::SnapshotsDeleteCompleted,
                if self.dry_run { 0 } else { c.deleted as u64 },
            ),
            (Metric::SnapshotsDeleteFailed, c.delete_failed as u64),
            (Metric::TamperingSuspected, suspects as u64),
        ]
    }
}

/// What the run tells people, from its summary alone: one `copy-failed`
/// per failed copy (each is seen failing once: its tags then say so) and
/// per refused start (the ledger remembers it was reported), and a warning
/// when a region could not be worked on or a deletion failed.
pub fn notifications(config: &Config, summary: &RunSummary) -> Vec<Notification> {
    let mut out = Vec::new();
    for r in &summary.regions {
        for f in r.failed.iter().filter(|f| f.first_report) {
            out.push(Notification {
                kind: NotificationKind::CopyFailed,
                severity: Severity::Warning,
                deployment: config.deployment_name().to_string(),
                summary: format!(
                    "copy of {} to {} failed: {}",
                    f.source_snapshot_id, r.region, f.error_kind
                ),
                details: json!({
                    "region": r.region,
                    "source_snapshot_id": f.source_snapshot_id,
                    "copy_id": f.copy_id,
                    "error_kind": f.error_kind,
                    "error": f.error,
                    "next": match f.error_kind.as_str() {
                        "key-unusable" => "Fix the target's KMS key (enabled, in that region, its key policy letting this stack's role use it); the next run copies again.",
                        _ => "The next run copies this volume again from its next eligible snapshot; the failed copy is removed after 72 hours.",
                    },
                }),
            });
        }
    }
    for v in &summary.vaults {
        if let (Some(error), true) = (&v.error, v.error_first_today) {
            out.push(Notification {
                kind: NotificationKind::ConfigError,
                severity: Severity::Critical,
                deployment: config.deployment_name().to_string(),
                summary: format!("vault target {} cannot be shared with: {error}", v.target),
                details: json!({
                    "target": v.target,
                    "error": error,
                    "next": "Nothing is shared with the vault until this is fixed (docs/operations.md, \"A vault account\"); reported once a day.",
                }),
            });
        }
        for id in &v.wrong_key_first {
            out.push(Notification {
                kind: NotificationKind::CopyFailed,
                severity: Severity::Warning,
                deployment: config.deployment_name().to_string(),
                summary: format!("{id} is not under the key of vault target {}: not shared", v.target),
                details: json!({
                    "target": v.target,
                    "source_snapshot_id": id,
                    "error_kind": "wrong-key",
                    "next": "Encrypt the volume with the target's key (snapshots take their volume's key); its later snapshots are shared.",
                }),
            });
        }
    }
    let c = &summary.counts;
    if c.regions_failed > 0 || c.delete_failed > 0 {
        out.push(Notification {
            kind: NotificationKind::RunSummary,
            severity: Severity::Warning,
            deployment: config.deployment_name().to_string(),
            summary: headline(summary),
            details: json!(summary),
        });
    }
    // Copies started and completed are the hourly routine: metrics and the
    // log tell them, not a message every hour.
    out
}

//! expire-snapshots: on a daily tick, delete what the retention policy no
//! longer keeps, under the safety rules.
//!
//! One run:
//! 1. list the source volumes of the deployment's snapshots (ids only, page
//!    by page) and gather, once, what protects snapshots beyond their tags:
//!    the snapshots behind AMIs the account owns, snapshot locks, copies to
//!    another region in flight (the ledger), EC2's tier status when an
//!    archived snapshot shows up;
//! 2. then 200 volumes at a time ([`VOLUMES_PER_BATCH`]: all a run holds,
//!    whatever the account's size): list their snapshots, keep only what
//!    the deployment provably made (`ebs_lifecycle::services::ownership`; the
//!    suspects are reported once), plan per volume and policy
//!    (`ebs_lifecycle_core::expiry`: restic-`forget` retention, then every
//!    safety rule, `ebs_lifecycle_core::safety`), and delete the deletable
//!    ones, oldest first, paced under EC2's DeleteSnapshot token bucket,
//!    each one authorized by the safety gate within the grant the stack's
//!    ledger gives (`MAX_DELETIONS` over 24 hours, across runs and
//!    batches), never a source whose copy to another region is in flight;
//!    `DRY_RUN` walks the same plan and deletes nothing; a run its deadline
//!    stops records where (`ebs_lifecycle::services::resume`) and the next
//!    run starts there;
//! 3. log each volume's plan (a line each), return the counts and the first
//!    [`VOLUMES_LISTED`] volumes' plans, emit metrics, notify.

use std::collections::BTreeMap;

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
use ebs_lifecycle::lambda::run::{self, RunHeader};
use ebs_lifecycle::pacing::Pacer;
pub use ebs_lifecycle::pacing::Pacing;
use ebs_lifecycle::ports::ec2::{
    Ec2Error, SnapshotCatalog, SnapshotDeleter, SnapshotProtections, VolumeInventory,
};
use ebs_lifecycle::ports::ledger::{Ledger, LedgerError};
use ebs_lifecycle::ports::notifier::Notifier;
use ebs_lifecycle::services::deletion::{
    Batch, Deleter, Deleting, Deletion, Locks, Protected, Protections, Records, Tiers, Unread,
};
use ebs_lifecycle::services::ownership;
use ebs_lifecycle::services::resume::{Progress, Walk};
use ebs_lifecycle_core::archive;
use ebs_lifecycle_core::cost::Prices;
use ebs_lifecycle_core::events::{EventError, Tick};
use ebs_lifecycle_core::expiry::{self, VolumePlan};
use ebs_lifecycle_core::model::{Snapshot, Volume};
use ebs_lifecycle_core::notify::{Notification, NotificationKind, Severity};
use ebs_lifecycle_core::ownership::Suspect;
use ebs_lifecycle_core::safety::{DeletionGate, Protection};
use ebs_lifecycle_core::tags;
use ebs_lifecycle_core::text;

pub const FUNCTION: &str = "expire-snapshots";

/// DeleteSnapshot draws on EC2's mutating-action token bucket
/// (`ebs_lifecycle::pacing::DELETE_SNAPSHOT` says how and why).
pub const DELETE_PACING: Pacing = ebs_lifecycle::pacing::DELETE_SNAPSHOT;

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

impl From<Unread> for ExpireError {
    fn from(unread: Unread) -> Self {
        match unread {
            Unread::Amis(e) | Unread::Locks(e) => ExpireError::FactsUnavailable(e),
            Unread::Copies(e) | Unread::Holds(e) => ExpireError::LedgerUnavailable(e),
        }
    }
}

impl ErrorType for ExpireError {
    fn error_type(&self) -> &'static str {
        match self {
            ExpireError::InvalidEvent(_) => "InvalidEvent",
            ExpireError::FactsUnavailable(_) => "FactsUnavailable",
            ExpireError::LedgerUnavailable(_) => "LedgerUnavailable",
        }
    }
}

impl From<ExpireError> for Diagnostic {
    fn from(error: ExpireError) -> Self {
        function::diagnostic(&error)
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
    /// The first 100 volumes' plans (each volume's is in the log, a line
    /// each).
    pub volumes: Vec<VolumeReport>,
    /// Volumes planned but not listed above.
    pub volumes_not_listed: usize,
    /// Volumes the run did not reach before its deadline (the next run
    /// starts on them).
    pub volumes_not_reached: usize,
    /// Policies the deployment's snapshots name that the policy document
    /// does not (renamed or removed), with how many of their snapshots
    /// stay for that reason: nothing is deleted on a guess.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown_policies: BTreeMap<String, usize>,
    /// Those of them not reported before (each is reported once).
    #[serde(skip)]
    pub unknown_policies_new: Vec<String>,
    #[serde(flatten)]
    pub progress: Progress,
}

/// Volumes planned together (`ebs_lifecycle::pacing::VOLUMES_PER_BATCH`):
/// all a run holds at once, whatever the account's size.
pub const VOLUMES_PER_BATCH: usize = ebs_lifecycle::pacing::VOLUMES_PER_BATCH;
/// Volume reports kept in the summary; past them only counts (every
/// volume's plan is in the log, a line each).
pub(crate) const VOLUMES_LISTED: usize = 100;

/// expire-snapshots, as the skeleton runs it ([`Function`]).
pub struct ExpireSnapshots;

impl Function for ExpireSnapshots {
    const NAME: &'static str = FUNCTION;
    type Ports<'p> = Ports<'p>;
    type Trigger = Tick;
    type Summary = RunSummary;
    type Error = ExpireError;

    fn ledger<'p>(ports: &Self::Ports<'p>) -> &'p dyn Ledger {
        ports.ledger
    }

    fn notifier<'p>(ports: &Self::Ports<'p>) -> &'p dyn Notifier {
        ports.notifier
    }

    fn open(run: &FunctionRun<'_>, event: &Value) -> Result<(Tick, RunSummary), ExpireError> {
        let tick = Tick::parse(event)?;
        let summary = RunSummary {
            header: RunHeader::new(FUNCTION, run.config, run.now, "daily"),
            dry_run: run.config.dry_run,
            max_deletions: run.config.max_deletions,
            ..RunSummary::default()
        };
        Ok((tick, summary))
    }

    /// Gather the facts, then plan and delete a batch of volumes at a time
    /// (memory bounded by a batch, not by the account), resumed where the
    /// last run stopped (wrapping round: every volume is visited within a
    /// few runs at any size).
    async fn execute(
        ports: Self::Ports<'_>,
        run: &FunctionRun<'_>,
        _tick: Tick,
        summary: &mut RunSummary,
    ) -> Result<Ran, ExpireError> {
        let config = run.config;
        // The volumes first (ids only), then their snapshots a batch at a time.
        let volume_ids = ports
            .catalog
            .managed_volume_ids(config.deployment_name())
            .await
            .map_err(ExpireError::FactsUnavailable)?;
        let facts = Protections::read(ports.protections, ports.ledger, Locks::All, true, run.now)
            .await
            .for_deletion(false)?;
        summary.locks_checked = facts.locks_checked;
        let mut walk = Walk::start(ports.ledger, FUNCTION, volume_ids.into_iter().collect()).await;
        let mut pacer = Pacer::new(ports.pacing);
        let mut expiry = Expiry {
            ports,
            run,
            facts,
            pacer: &mut pacer,
            tiers: None,
            cap_reached: false,
            suspects: Vec::new(),
        };
        while let Some(batch) = walk.next_batch(&run.deadline) {
            let listed = match tokio::try_join!(
                ports
                    .catalog
                    .managed_snapshots_of_volumes(config.deployment_name(), &batch),
                ports.inventory.volumes_by_id(&batch),
            ) {
                Ok(read) => read,
                // After a batch or more, the run stops here as at its deadline.
                Err(e) => {
                    walk.failed(e).map_err(ExpireError::FactsUnavailable)?;
                    break;
                }
            };
            let left = expiry.batch(&batch, listed, summary).await?;
            // Left by the deadline (the cap's leftovers wait for the budget,
            // not for this batch to come round again).
            if left && run.deadline.is_near() {
                walk.cut_short();
            }
        }
        summary.cap_reached = expiry.cap_reached;
        summary.volumes_not_reached = walk.not_reached().len();
        summary.progress = walk.conclude(ports.ledger).await;
        summary.unknown_policies_new = ownership::not_reported_before(
            ports.ledger,
            summary
                .unknown_policies
                .keys()
                .map(|p| format!("unknown-policy/{p}")),
            run.now,
        )
        .await
        .into_iter()
        .filter_map(|k| k.strip_prefix("unknown-policy/").map(String::from))
        .collect();
        Ok(Ran::Done {
            suspects: expiry.suspects,
        })
    }

    async fn notifications(
        _ports: Self::Ports<'_>,
        run: &FunctionRun<'_>,
        summary: &mut RunSummary,
    ) -> Vec<Notification> {
        notifications(run.config, summary)
    }
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
    function::invoke::<ExpireSnapshots>(ports, config, event, now, deadline).await
}

/// One run's expiry across its batches.
struct Expiry<'e, 'p> {
    ports: Ports<'p>,
    run: &'e FunctionRun<'e>,
    facts: Protected,
    pacer: &'e mut Pacer,
    /// EC2's tier status, read once, the first time a batch holds an
    /// archived snapshot.
    tiers: Option<Tiers>,
    cap_reached: bool,
    suspects: Vec<Suspect>,
}

impl Expiry<'_, '_> {
    /// Plan one batch of volumes and delete what the plan and the budget
    /// allow. True when some deletions were left for later.
    async fn batch(
        &mut self,
        batch: &[String],
        (listed, existing): (Vec<Snapshot>, Vec<Volume>),
        summary: &mut RunSummary,
    ) -> Result<bool, ExpireError> {
        let (ports, config, now) = (self.ports, self.run.config, self.run.now);
        summary.counts.snapshots += listed.len();
        let mut read = Batch::read(
            ports.ledger,
            ports.protections,
            config,
            &self.facts,
            &mut self.tiers,
            (batch, listed, existing),
            now,
        )
        .await?;
        self.suspects.append(&mut read.suspects);
        let (snapshots, existing, facts) = (&read.snapshots, &read.existing, read.facts);
        let planning = DeletionGate::new(facts.clone(), snapshots, config.max_deletions);
        let plans = expiry::plan(snapshots, &config.policies, existing, &planning);
        // MAX_DELETIONS is a budget over 24 hours shared by every run: the
        // deleter asks the ledger for this batch's part before deleting.
        let deleting = Deleting {
            deleter: ports.deleter,
            ledger: ports.ledger,
            pacer: &mut *self.pacer,
            deadline: self.run.deadline,
            dry_run: config.dry_run,
            max_deletions: config.max_deletions,
            records: Records::Source,
            now,
        };
        let mut deleter =
            Deleter::reserve(deleting, facts, snapshots, &plans, self.cap_reached).await?;
        summary.deletions_granted += deleter.granted();
        let mut execution = Execution {
            deleter: &mut deleter,
            archived_at: read.archived_at,
            prices: config.prices,
            now,
        };
        let mut left = false;
        for plan in &plans {
            let report = execution.volume(plan).await;
            left |= !report.left_for_later.is_empty();
            add(summary, report);
        }
        self.cap_reached |= deleter.cap_reached();
        deleter.give_back().await;
        Ok(left)
    }
}

/// Count one volume's report, and keep it in the summary while there is
/// room; its whole plan is logged either way.
fn add(summary: &mut RunSummary, report: VolumeReport) {
    let unknown_policy = Protection::UnknownPolicy(String::new());
    let unknown = report
        .kept
        .iter()
        .filter(|k| k.why == unknown_policy.kind())
        .count();
    if unknown > 0 {
        *summary
            .unknown_policies
            .entry(report.policy.clone().unwrap_or_default())
            .or_default() += unknown;
    }
    let c = &mut summary.counts;
    c.kept += report.kept.len();
    c.deleted += report.deleted.len();
    c.failed += report.failed.len();
    c.left_for_later += report.left_for_later.len();
    c.source_volume_gib_of_deleted += report
        .deleted
        .iter()
        .map(|d| i64::from(d.volume_size_gib))
        .sum::<i64>();
    c.early_deletion_usd += report
        .deleted
        .iter()
        .filter_map(|d| d.early_deletion_usd)
        .sum::<f64>();
    tracing::info!(
        volume_id = report.volume_id.as_deref().unwrap_or_default(),
        policy = report.policy.as_deref().unwrap_or_default(),
        deleted = report.deleted.len(),
        kept = report.kept.len(),
        report = %run::for_log(&report),
        "expire-snapshots: volume plan"
    );
    if summary.volumes.len() < VOLUMES_LISTED {
        summary.volumes.push(report);
    } else {
        summary.volumes_not_listed += 1;
    }
}

/// What one batch carries from volume to volume while it deletes.
/// One batch's deletions, volume by volume, through the budgeted deleter.
struct Execution<'x, 'd> {
    deleter: &'x mut Deleter<'d>,
    /// When each archived snapshot was archived (EC2's tier status).
    archived_at: BTreeMap<String, DateTime<Utc>>,
    prices: Prices,
    now: DateTime<Utc>,
}

impl Execution<'_, '_> {
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
            // Every deletion passes the gate again: it re-checks every rule
            // and counts toward MAX_DELETIONS.
            match self.deleter.delete(planned).await {
                Deletion::Deleted => report.deleted.push(Deleted {
                    snapshot_id: s.id.clone(),
                    start_time,
                    volume_size_gib: s.volume_size_gib.unwrap_or_default(),
                    early_deletion_usd: self.early_deletion_usd(s),
                }),
                Deletion::Left => report.left_for_later.push(s.id.clone()),
                Deletion::Kept(other) => report.kept.push(Kept {
                    snapshot_id: s.id.clone(),
                    start_time,
                    why: other.kind().into(),
                    retained_by: None,
                }),
                Deletion::Failed(e) => report.failed.push(FailedDeletion {
                    snapshot_id: s.id.clone(),
                    error_kind: e.kind().into(),
                    error: e.to_string(),
                }),
            }
        }
        report
    }

    /// An archived snapshot deleted before its 90 days in the archive tier:
    /// the days short, charged at deletion.
    fn early_deletion_usd(&self, s: &Snapshot) -> Option<f64> {
        self.archived_at
            .get(&s.id)
            .filter(|_| s.archived)
            .map(|at| {
                // Without EC2's full size, the volume's: an upper bound.
                let full = s.full_size_bytes.unwrap_or_else(|| {
                    u64::try_from(s.volume_size_gib.unwrap_or_default()).unwrap_or(0) << 30
                });
                archive::early_deletion_charge(full, *at, self.now, &self.prices)
            })
            .filter(|usd| *usd > 0.0)
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

impl Summary for RunSummary {
    fn header(&mut self) -> &mut RunHeader {
        &mut self.header
    }

    fn headline(&self) -> String {
        headline(self)
    }

    fn metrics(&self, suspects: usize) -> Vec<(Metric, u64)> {
        let counts = &self.counts;
        // In a dry run nothing is deleted, so the metric counts nothing.
        let deleted_metric = if self.dry_run {
            0
        } else {
            counts.deleted as u64
        };
        vec![
            (Metric::SnapshotsDeleteCompleted, deleted_metric),
            (Metric::SnapshotsDeleteFailed, counts.failed as u64),
            (Metric::TamperingSuspected, suspects as u64),
        ]
    }
}

/// What the run tells people, from its summary alone.
pub fn notifications(config: &Config, summary: &RunSummary) -> Vec<Notification> {
    let counts = &summary.counts;
    let mut notifications = Vec::new();
    if summary.cap_reached {
        notifications.push(Notification {
            kind: NotificationKind::DeletionCapReached,
            severity: Severity::Warning,
            deployment: config.deployment_name().to_string(),
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
    if !summary.unknown_policies_new.is_empty() {
        let named: Vec<String> = summary
            .unknown_policies_new
            .iter()
            .map(|p| {
                format!(
                    "`{}` ({} snapshots)",
                    text::excerpt(p),
                    summary.unknown_policies.get(p).copied().unwrap_or(0)
                )
            })
            .collect();
        notifications.push(Notification {
            kind: NotificationKind::ConfigError,
            severity: Severity::Warning,
            deployment: config.deployment_name().to_string(),
            summary: format!(
                "snapshots of policies not in the policy document are kept by no rule: {}",
                named.join(", ")
            ),
            details: json!({
                "policies": summary.unknown_policies_new,
                "snapshots_kept": summary.unknown_policies,
                "next": "A policy renamed or removed: its snapshots are never deleted on a guess. Put it back in the document (same name) with the keep rules they should age out by, or delete them by hand (docs/policies-and-tags.md, \"Changing a schedule\").",
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
            deployment: config.deployment_name().to_string(),
            summary: headline(summary),
            details: json!(summary),
        });
    }
    notifications
}

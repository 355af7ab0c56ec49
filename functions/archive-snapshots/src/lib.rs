//! archive-snapshots: daily, move to the archive tier the long-kept
//! snapshots whose numbers say it pays, and follow every move to its end
//! (docs/functions.md, "archive-snapshots"; docs/policies-and-tags.md,
//! "Archive").
//!
//! One daily run:
//! 1. read EC2's tier status of the account's tiered snapshots, and of
//!    those the deployment's, proven by their Description
//!    (`ebs_lifecycle::services::ownership`);
//! 2. reconcile ([`reconcile`]): an archival EC2 finished is tagged
//!    `lifecycle:tier=archive` with `lifecycle:archived-at`; one that failed
//!    is tagged `standard` and notified once (`archive-failed`); a
//!    permanent restore is tagged `standard`;
//! 3. plan, for policies with an `archive` rule, 200 volumes at a time
//!    ([`VOLUMES_PER_BATCH`]: the deployment's snapshots of the batch and
//!    anyone's, for the lineages; a run never holds the account), from the
//!    volume the last run stopped at: per volume and policy the
//!    retention projection (`lifecycle:expires-at`'s) and what protects each
//!    snapshot; the snapshots that pass every other rule are measured here,
//!    from the EBS direct APIs (never from the report's cache tags, which
//!    anyone can write), then judged (`ebs_lifecycle_core::archive::judge`)
//!    and held to EC2's quotas across runs (25 archived per volume, 25
//!    archivals in progress per account; the largest savings first);
//! 4. ModifySnapshotTier each one (`DRY_RUN`: none), tagged
//!    `lifecycle:tier=archiving`;
//! 5. the summary (what moved, what it saves, why the others stay),
//!    notifications.
//!
//! An `archiveSnapshot` event (EC2's word that a move ended) runs step 2
//! for its snapshot only.

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
use ebs_lifecycle::ports::blocks::{BlocksError, SnapshotBlocks};
use ebs_lifecycle::ports::ec2::{
    Ec2Error, SnapshotArchiver, SnapshotCatalog, SnapshotProtections, SnapshotTagger, TierStatus,
    VolumeInventory,
};
use ebs_lifecycle::ports::ledger::{Ledger, LedgerError};
use ebs_lifecycle::ports::notifier::Notifier;
use ebs_lifecycle::services::deletion::{Locks, Protected, Protections, Unread};
use ebs_lifecycle::services::ownership;
use ebs_lifecycle::services::resume::Walk;
use ebs_lifecycle_core::archive::{self, Decision, Stay, Tier};
use ebs_lifecycle_core::cost;
use ebs_lifecycle_core::events::{EventError, SnapshotEvent, SnapshotOperation, Tick};
use ebs_lifecycle_core::expiry;
use ebs_lifecycle_core::model::{Snapshot, SnapshotState, Tags};
use ebs_lifecycle_core::notify::{Notification, NotificationKind, Severity};
use ebs_lifecycle_core::ownership::Scope;
use ebs_lifecycle_core::policy::{ArchiveRule, Policy};
use ebs_lifecycle_core::safety::DeletionGate;
use ebs_lifecycle_core::{tagging, tags};

pub const FUNCTION: &str = "archive-snapshots";

/// `lifecycle:tier` values (describing only; decisions read EC2).
pub(crate) const TIER_ARCHIVING: &str = "archiving";
pub(crate) const TIER_ARCHIVE: &str = "archive";
pub(crate) const TIER_STANDARD: &str = "standard";

/// Snapshots that stay listed in the summary with their reason, at most
/// (the counts per reason are whole).
const STAYS_LISTED: usize = 50;
/// Errors listed in the summary, at most.
const ERRORS_LISTED: usize = 20;

#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub catalog: &'a dyn SnapshotCatalog,
    /// Which volumes still exist (a deleted volume's snapshots follow the
    /// orphan rule).
    pub inventory: &'a dyn VolumeInventory,
    /// AMIs, locks and EC2's tier status.
    pub protections: &'a dyn SnapshotProtections,
    /// The EBS direct APIs: unique bytes, measured here.
    pub blocks: &'a dyn SnapshotBlocks,
    pub archiver: &'a dyn SnapshotArchiver,
    pub tagger: &'a dyn SnapshotTagger,
    pub notifier: &'a dyn Notifier,
    /// Copy records (ownership), copies in flight, failures reported.
    pub ledger: &'a dyn Ledger,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("rejected event: {0}")]
    InvalidEvent(#[from] EventError),
    /// Without the full picture (snapshots, tier status, AMIs, locks)
    /// nothing is archived.
    #[error("could not gather the snapshots and what protects them, nothing archived: {0}")]
    FactsUnavailable(#[from] Ec2Error),
    #[error("could not use the stack's ledger, nothing archived: {0}")]
    LedgerUnavailable(#[from] LedgerError),
}

impl ErrorType for ArchiveError {
    fn error_type(&self) -> &'static str {
        match self {
            ArchiveError::InvalidEvent(_) => "InvalidEvent",
            ArchiveError::FactsUnavailable(_) => "FactsUnavailable",
            ArchiveError::LedgerUnavailable(_) => "LedgerUnavailable",
        }
    }
}

impl From<ArchiveError> for Diagnostic {
    fn from(error: ArchiveError) -> Self {
        function::diagnostic(&error)
    }
}

/// A snapshot moved (or, in a dry run, that would be).
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    pub snapshot_id: String,
    pub volume_id: String,
    pub policy: String,
    /// What archiving saves over its projected remaining life (USD).
    pub saving_usd: f64,
    pub full_bytes: u64,
    pub unique_bytes: u64,
}

/// A snapshot that stays in the standard tier, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Stayed {
    pub snapshot_id: String,
    pub volume_id: String,
    #[serde(flatten)]
    pub why: Stay,
}

/// An archival EC2 could not finish.
#[derive(Debug, Clone, Serialize)]
pub struct Failed {
    pub snapshot_id: String,
    pub cause: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveSummary {
    #[serde(flatten)]
    pub header: RunHeader,
    pub dry_run: bool,
    /// Completed snapshots under a policy with an `archive` rule.
    pub considered: usize,
    /// Unique bytes measured this run (only what passed every other rule).
    pub measured: usize,
    /// ListChangedBlocks and ListSnapshotBlocks requests.
    pub block_requests: u32,
    /// Candidates not measured: out of time, or the APIs throttled. The
    /// next run starts with them.
    pub left: usize,
    /// Volumes not reached before the deadline: the next run starts there.
    pub volumes_not_reached: usize,
    /// Candidates the report's current figures say cost more: not walked
    /// again (a figure that says a snapshot pays is always measured anew).
    pub from_report: usize,
    /// Moves started this run (or, dry, that would be).
    pub archive_started: Vec<Moved>,
    /// Their savings over their projected remaining lives (USD).
    pub saving_usd: f64,
    /// Moves EC2 finished, seen this run.
    pub archive_completed: Vec<String>,
    /// Moves EC2 could not finish, seen this run.
    pub archive_failed: Vec<Failed>,
    /// Snapshots restored to the standard tier for good, seen this run.
    pub restored: Vec<String>,
    /// The account's archivals in progress after this run.
    pub in_progress: usize,
    /// Why the others stay, counted (`too-young`, `kept-by-other-rule`,
    /// `costs-more`, `volume-quota`...).
    pub stays: BTreeMap<&'static str, usize>,
    /// The snapshots archiving would cost more for, the quotas held back
    /// and the protected, with their reasons (at most 50).
    pub refused: Vec<Stayed>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Failures not reported before (notified).
    #[serde(skip)]
    pub new_failures: Vec<Failed>,
}

impl ArchiveSummary {
    fn note(&mut self, error: String) {
        tracing::warn!(%error, "archive-snapshots");
        if self.errors.len() < ERRORS_LISTED {
            self.errors.push(error);
        }
    }
}

/// What starts a run of archive-snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveTrigger {
    /// The daily run: reconcile every tiered snapshot, then plan and archive.
    Daily,
    /// `archiveSnapshot` results: reconcile these snapshots (id, cause).
    Archived(BTreeMap<String, String>),
    /// Another event: the header says which.
    NotActedOn,
}

/// archive-snapshots, as the skeleton runs it ([`Function`]).
pub struct ArchiveSnapshots;

impl Function for ArchiveSnapshots {
    const NAME: &'static str = FUNCTION;
    /// A minute kept for the archivals themselves and the summary once the
    /// block walks stop.
    const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);
    type Ports<'p> = Ports<'p>;
    type Trigger = ArchiveTrigger;
    type Summary = ArchiveSummary;
    type Error = ArchiveError;

    fn ledger<'p>(ports: &Self::Ports<'p>) -> &'p dyn Ledger {
        ports.ledger
    }

    fn notifier<'p>(ports: &Self::Ports<'p>) -> &'p dyn Notifier {
        ports.notifier
    }

    fn open(
        run: &FunctionRun<'_>,
        event: &Value,
    ) -> Result<(ArchiveTrigger, ArchiveSummary), ArchiveError> {
        let (config, now) = (run.config, run.now);
        let mut summary = ArchiveSummary {
            dry_run: config.dry_run,
            ..ArchiveSummary::default()
        };
        if Tick::is_tick(event) {
            Tick::parse(event)?;
            summary.header = RunHeader::new(FUNCTION, config, now, "daily");
            return Ok((ArchiveTrigger::Daily, summary));
        }
        summary.header = RunHeader::new(FUNCTION, config, now, "event");
        let trigger = match SnapshotEvent::parse(event)? {
            SnapshotEvent::Results {
                operation: SnapshotOperation::ArchiveSnapshot,
                results,
            } => {
                summary.header.event = Some(SnapshotOperation::ArchiveSnapshot.as_str().into());
                ArchiveTrigger::Archived(
                    results
                        .into_iter()
                        .map(|r| (r.snapshot_id, r.cause))
                        .collect(),
                )
            }
            SnapshotEvent::Results { operation, .. } => {
                summary.header.event = Some(format!("ignored: {}", operation.as_str()));
                ArchiveTrigger::NotActedOn
            }
            SnapshotEvent::Ignored { detail_type, event } => {
                summary.header.event = Some(format!("ignored: {detail_type} / {event}"));
                ArchiveTrigger::NotActedOn
            }
        };
        Ok((trigger, summary))
    }

    async fn execute(
        ports: Self::Ports<'_>,
        run: &FunctionRun<'_>,
        trigger: ArchiveTrigger,
        summary: &mut ArchiveSummary,
    ) -> Result<Ran, ArchiveError> {
        let (config, now, deadline) = (run.config, run.now, run.deadline);
        let only = match trigger {
            ArchiveTrigger::Daily => None,
            ArchiveTrigger::Archived(ids) => Some(ids),
            ArchiveTrigger::NotActedOn => return Ok(Ran::Nothing),
        };
        let statuses: BTreeMap<String, TierStatus> = ports
            .protections
            .tier_statuses()
            .await?
            .into_iter()
            .map(|s| (s.snapshot_id.clone(), s))
            .collect();
        // What to reconcile: the event's snapshots, or every snapshot EC2 has
        // a tier status for (the account's tiered ones, not the account).
        let ids: Vec<String> = match &only {
            Some(ids) => ids.keys().cloned().collect(),
            None => statuses.keys().cloned().collect(),
        };
        let managed = if ids.is_empty() {
            Vec::new()
        } else {
            ports
                .catalog
                .snapshots_by_id(&ids)
                .await?
                .into_iter()
                .filter(|s| tags::is_managed_by(&s.tags, config.deployment_name()))
                .collect()
        };
        let sifted =
            ownership::sift(ports.ledger, config, managed, Scope::SomeSnapshots, now).await?;
        let mut suspects = sifted.suspects;
        reconcile(ports, &sifted.owned, &statuses, only.as_ref(), now, summary).await;

        let archives = config.policies.iter().any(|p| p.archive.is_some());
        if only.is_none() && archives {
            suspects
                .extend(plan_and_archive(ports, config, &statuses, now, &deadline, summary).await?);
        }
        summary.in_progress = statuses.values().filter(|s| s.archiving()).count()
            + if config.dry_run {
                0
            } else {
                summary.archive_started.len()
            };
        Ok(Ran::Done { suspects })
    }

    async fn notifications(
        _ports: Self::Ports<'_>,
        run: &FunctionRun<'_>,
        summary: &mut ArchiveSummary,
    ) -> Vec<Notification> {
        notifications(run.config, summary)
    }
}

/// Handle one invocation: the daily run or an `archiveSnapshot` event.
pub async fn handle(
    ports: Ports<'_>,
    config: &Config,
    event: &Value,
    now: DateTime<Utc>,
    deadline: Deadline,
) -> Result<ArchiveSummary, ArchiveError> {
    function::invoke::<ArchiveSnapshots>(ports, config, event, now, deadline).await
}

/// Bring the `lifecycle:tier` tags of the deployment's snapshots in line
/// with EC2's tier status, and report each failed archival once. `only`:
/// an event's snapshots, with EC2's words on each (a failure's cause).
pub async fn reconcile(
    ports: Ports<'_>,
    owned: &[Snapshot],
    statuses: &BTreeMap<String, TierStatus>,
    only: Option<&BTreeMap<String, String>>,
    now: DateTime<Utc>,
    summary: &mut ArchiveSummary,
) {
    let mut archiving = Vec::new();
    let mut standard = Vec::new();
    for s in owned {
        let tag = s.tags.get(tags::TIER).map(String::as_str);
        let status = statuses.get(&s.id);
        let operation = status.and_then(|t| t.last_operation.as_deref());
        match operation {
            Some(
                "archival-completed"
                | "temporary-restore-in-progress"
                | "temporary-restore-completed"
                | "temporary-restore-failed"
                | "permanent-restore-in-progress"
                | "permanent-restore-failed",
            ) if s.archived && tag != Some(TIER_ARCHIVE) => {
                let at = status.and_then(|t| t.archived_at).unwrap_or(now);
                let labels = Tags::from([
                    (tags::TIER.to_string(), TIER_ARCHIVE.to_string()),
                    (tags::ARCHIVED_AT.to_string(), tags::format_time(at)),
                ]);
                match ports
                    .tagger
                    .tag_snapshots(std::slice::from_ref(&s.id), &labels)
                    .await
                {
                    Ok(()) => summary.archive_completed.push(s.id.clone()),
                    Err(e) => summary.note(format!("could not tag {} archived: {e}", s.id)),
                }
            }
            Some("archival-in-progress") if tag != Some(TIER_ARCHIVING) => {
                archiving.push(s.id.clone())
            }
            Some("archival-failed") if tag != Some(TIER_STANDARD) => {
                let cause = status
                    .and_then(|t| t.detail.clone())
                    .filter(|d| !d.is_empty())
                    .or_else(|| only.and_then(|o| o.get(&s.id)).cloned())
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| "EC2 gave no reason".to_string());
                let failure = Failed {
                    snapshot_id: s.id.clone(),
                    cause,
                };
                // Once per snapshot: a later run tries it again, and a
                // snapshot that keeps failing is not reported every day.
                let key = format!("archive-failed/{}", s.id);
                if ports.ledger.first_report(&key, now).await.unwrap_or(true) {
                    summary.new_failures.push(failure.clone());
                }
                summary.archive_failed.push(failure);
                standard.push(s.id.clone());
            }
            Some("permanent-restore-completed") if !s.archived && tag == Some(TIER_ARCHIVE) => {
                summary.restored.push(s.id.clone());
                standard.push(s.id.clone());
            }
            _ => {}
        }
    }
    for (ids, tier) in [(archiving, TIER_ARCHIVING), (standard, TIER_STANDARD)] {
        if ids.is_empty() {
            continue;
        }
        let labels = Tags::from([(tags::TIER.to_string(), tier.to_string())]);
        if let Err(e) = ports.tagger.tag_snapshots(&ids, &labels).await {
            summary.note(format!("could not tag {} snapshots {tier}: {e}", ids.len()));
        }
    }
}

/// Volumes planned together: all a run holds at once (the deployment's
/// snapshots of 200 volumes and anyone's snapshots of them).
pub const VOLUMES_PER_BATCH: usize = ebs_lifecycle::pacing::VOLUMES_PER_BATCH;

/// Where the walks of a run stand, across batches.
struct BlockWalks {
    /// No more walks this run (deadline, throttling, refused).
    stop: bool,
    /// The volume the walks stopped at: the next run starts there.
    stopped_at: Option<String>,
    /// The account's moves in progress, this run's included.
    in_progress: usize,
}

/// Steps 3 and 4 of a daily run, 200 volumes at a time (from the volume
/// the last run stopped at). Returns the suspects the batches met.
async fn plan_and_archive(
    ports: Ports<'_>,
    config: &Config,
    statuses: &BTreeMap<String, TierStatus>,
    now: DateTime<Utc>,
    deadline: &Deadline,
    summary: &mut ArchiveSummary,
) -> Result<Vec<ebs_lifecycle_core::ownership::Suspect>, ArchiveError> {
    let deployment = config.deployment_name();
    let volume_ids = ports.catalog.managed_volume_ids(deployment).await?;
    // A run that ran out of time resumes at the volume where it stopped,
    // so every volume is measured within a few days at any size.
    let mut walk = Walk::start(ports.ledger, FUNCTION, volume_ids.into_iter().collect()).await;
    // What protects snapshots, by the deletion service's policy: every
    // fact read, the locks included (archiving moves what a lock or a hold
    // keeps where it is).
    let shared = Protections::read(ports.protections, ports.ledger, Locks::All, true, now)
        .await
        .for_deletion(true)
        .map_err(|unread| match unread {
            Unread::Amis(e) | Unread::Locks(e) => ArchiveError::FactsUnavailable(e),
            Unread::Copies(e) | Unread::Holds(e) => ArchiveError::LedgerUnavailable(e),
        })?;
    let mut walks = BlockWalks {
        stop: false,
        stopped_at: None,
        in_progress: statuses.values().filter(|s| s.archiving()).count(),
    };
    let mut suspects = Vec::new();
    while let Some(batch) = walk.next_batch(deadline) {
        // Anyone's snapshots of the volumes (they share blocks with ours,
        // and EC2's 25 archived per volume counts them all) and ours.
        let ((everything, listed), existing) = match tokio::try_join!(
            ports.catalog.snapshots_of_volumes(deployment, &batch),
            ports.inventory.volumes_by_id(&batch),
        ) {
            Ok(read) => read,
            // After a batch or more, the run stops here as at its deadline.
            Err(e) => {
                summary.note(walk.failed(e)?);
                break;
            }
        };
        let sifted =
            ownership::sift(ports.ledger, config, listed, Scope::WholeVolumes, now).await?;
        let held_for_review = sifted.held_for_review();
        suspects.extend(sifted.suspects);
        let in_batch: BTreeSet<&str> = batch.iter().map(String::as_str).collect();
        let owned: Vec<Snapshot> = sifted
            .owned
            .into_iter()
            .filter(|s| s.source_volume_id().is_none_or(|v| in_batch.contains(v)))
            .collect();
        let existing: BTreeSet<String> = existing.into_iter().map(|v| v.id).collect();
        plan_batch(
            ports,
            config,
            Batch {
                shared: &shared,
                owned: &owned,
                held_for_review,
                everything: &everything,
                existing: &existing,
                statuses,
            },
            now,
            deadline,
            &mut walks,
            summary,
        )
        .await;
        // The block walks stopped inside the batch: the next run starts
        // at the volume they stopped at.
        if let Some(v) = walks.stopped_at.as_deref() {
            walk.stop_at(v);
        }
    }
    summary.volumes_not_reached = walk.not_reached().len();
    if let Some(unrecorded) = walk.conclude(ports.ledger).await.unrecorded {
        summary.note(unrecorded);
    }
    Ok(suspects)
}

/// What one batch is planned from.
struct Batch<'b> {
    shared: &'b Protected,
    /// The deployment's proven snapshots of the batch's volumes.
    owned: &'b [Snapshot],
    held_for_review: BTreeSet<String>,
    /// Anyone's snapshots of the batch's volumes.
    everything: &'b [Snapshot],
    /// Which of the batch's volumes still exist.
    existing: &'b BTreeSet<String>,
    statuses: &'b BTreeMap<String, TierStatus>,
}

/// Plan, measure and move one batch's snapshots.
async fn plan_batch(
    ports: Ports<'_>,
    config: &Config,
    batch: Batch<'_>,
    now: DateTime<Utc>,
    deadline: &Deadline,
    walk: &mut BlockWalks,
    summary: &mut ArchiveSummary,
) {
    let Batch {
        shared,
        owned,
        held_for_review,
        everything,
        existing,
        statuses,
    } = batch;
    let restoring = owned
        .iter()
        .filter(|s| {
            let t = statuses.get(&s.id);
            archive::is_being_restored(
                t.and_then(|t| t.last_operation.as_deref()),
                t.and_then(|t| t.restore_expiry).or(s.restore_expiry),
                now,
            )
        })
        .map(|s| s.id.clone())
        .collect();
    let facts = shared.facts(config.deployment_name(), held_for_review, restoring, now);
    let gate = DeletionGate::new(facts, owned, config.max_deletions);
    let tier = |s: &Snapshot| tier_of(s, statuses);
    // EC2's per-volume count: archived or archiving, anyone's.
    let mut held: BTreeMap<&str, usize> = BTreeMap::new();
    for s in everything {
        if let (Some(v), Tier::Archived | Tier::Archiving) = (s.volume_id.as_deref(), tier(s)) {
            *held.entry(v).or_default() += 1;
        }
    }
    let lineages = cost::lineages(everything);
    let mut measured: BTreeMap<String, u64> = BTreeMap::new();
    // (volume, policy, decisions) per retention group, and each volume's
    // decisions with what it holds already, for the quotas.
    let mut groups: Vec<(String, String, Vec<Decision>)> = Vec::new();
    let mut full: BTreeMap<String, u64> = BTreeMap::new();
    for ((volume_id, policy_name), group) in
        expiry::retention_groups(owned, config.deployment_name())
    {
        let (Some(volume_id), Some(policy_name)) = (volume_id, policy_name) else {
            continue;
        };
        let Some(policy) = config.policies.get(policy_name) else {
            continue;
        };
        let Some(rule) = &policy.archive else {
            continue;
        };
        let judging = Judging {
            ports,
            config,
            gate: &gate,
            statuses,
            lineages: &lineages,
            now,
            deadline,
        };
        let decisions = judging
            .group(
                (volume_id, policy, rule),
                &group,
                !existing.contains(volume_id),
                (walk, &mut measured, &mut full),
                summary,
            )
            .await;
        groups.push((volume_id.to_string(), policy_name.to_string(), decisions));
    }
    let chosen = choose(&groups, &held, &full, &measured, walk.in_progress, summary);
    start_moves(ports, config, chosen, walk, summary).await;
}

/// Where a snapshot is: archived, moving, or in the standard tier.
fn tier_of(s: &Snapshot, statuses: &BTreeMap<String, TierStatus>) -> Tier {
    if s.archived {
        Tier::Archived
    } else if statuses.get(&s.id).is_some_and(TierStatus::archiving) {
        Tier::Archiving
    } else {
        Tier::Standard
    }
}

// The report's figures, where current, spare walks for what they say
// costs more (a forged figure can only keep a snapshot in the standard
// tier); what may pay is measured here before it moves.
fn cached_unique(s: &Snapshot, lineages: &BTreeMap<String, Vec<&Snapshot>>) -> Option<u64> {
    let lineage = lineages.get(s.volume_id.as_deref()?)?;
    let i = lineage.iter().position(|l| l.id == s.id)?;
    let sizes = cost::Sizes::from_tags(&s.tags)?;
    let previous = i.checked_sub(1).map(|p| lineage[p].id.as_str());
    let next = lineage.get(i + 1).map(|n| n.id.as_str());
    sizes
        .is_current(previous, next)
        .then_some(sizes.unique_bytes)
}

/// What judging one batch's retention groups needs.
struct Judging<'j> {
    ports: Ports<'j>,
    config: &'j Config,
    gate: &'j DeletionGate,
    statuses: &'j BTreeMap<String, TierStatus>,
    lineages: &'j BTreeMap<String, Vec<&'j Snapshot>>,
    now: DateTime<Utc>,
    deadline: &'j Deadline,
}

impl Judging<'_> {
    /// One retention group's decisions: judged first without sizes (only
    /// what passes every other rule is measured), then with the report's
    /// figures (only what they do not turn down is walked), then with what
    /// was measured.
    async fn group(
        &self,
        (volume_id, policy, rule): (&str, &Policy, &ArchiveRule),
        group: &[&Snapshot],
        orphan: bool,
        (walk, measured, full): (
            &mut BlockWalks,
            &mut BTreeMap<String, u64>,
            &mut BTreeMap<String, u64>,
        ),
        summary: &mut ArchiveSummary,
    ) -> Vec<Decision> {
        let (ports, config, gate, lineages, now, deadline) = (
            self.ports,
            self.config,
            self.gate,
            self.lineages,
            self.now,
            self.deadline,
        );
        let statuses = self.statuses;
        let tier = |s: &Snapshot| tier_of(s, statuses);
        let cached = |s: &Snapshot| cached_unique(s, lineages);
        let projections = tagging::projections(policy, group, config.deployment_name(), orphan);
        let mut completed: Vec<&Snapshot> = group
            .iter()
            .copied()
            .filter(|s| s.state == SnapshotState::Completed && s.start_time.is_some())
            .collect();
        completed.sort_by_key(|s| (s.start_time, &s.id));
        summary.considered += completed.len();
        let tz = policy.schedule.timezone();
        let protected = |s: &Snapshot| gate.protection(s).map(|p| p.kind());
        let judge = |unique: &dyn Fn(&str) -> Option<u64>| {
            archive::judge(
                rule,
                tz,
                &archive::candidates(&completed, &projections, tier, unique, protected),
                &config.prices,
                now,
            )
        };
        // First without sizes: only what passes every other rule is
        // measured; then with the report's figures: only what they do not
        // turn down.
        let unmeasured: BTreeSet<String> = judge(&|_| None)
            .into_iter()
            .filter(|d| d.verdict == Err(Stay::SizesUnknown))
            .map(|d| d.id)
            .collect();
        let by_cache: BTreeMap<String, u64> = completed
            .iter()
            .filter(|s| unmeasured.contains(&s.id))
            .filter_map(|s| Some((s.id.clone(), cached(s)?)))
            .collect();
        let turned_down: BTreeMap<String, u64> = judge(&|id| by_cache.get(id).copied())
            .into_iter()
            .filter(|d| matches!(d.verdict, Err(Stay::CostsMore { .. })))
            .filter_map(|d| Some((d.id.clone(), *by_cache.get(&d.id)?)))
            .collect();
        summary.from_report += turned_down.len();
        for s in completed
            .iter()
            .filter(|s| unmeasured.contains(&s.id) && !turned_down.contains_key(&s.id))
        {
            if walk.stop || deadline.is_near() {
                walk.stop = true;
                walk.stopped_at.get_or_insert_with(|| volume_id.to_string());
                summary.left += 1;
                continue;
            }
            match measure(ports.blocks, lineages, s, summary).await {
                Ok(Some(unique)) => {
                    summary.measured += 1;
                    measured.insert(s.id.clone(), unique);
                }
                Ok(None) => {}
                Err(e) => {
                    summary.note(e.to_string());
                    walk.stopped_at.get_or_insert_with(|| volume_id.to_string());
                    summary.left += 1;
                    walk.stop = true;
                }
            }
        }
        for s in &completed {
            full.insert(s.id.clone(), s.full_size_bytes.unwrap_or(0));
        }
        let decisions = judge(&|id| measured.get(id).or_else(|| turned_down.get(id)).copied());
        decisions
    }
}

/// The moves the quotas allow (EC2's per volume, the account's), each with
/// its saving; why the others stay, counted (and the notable ones listed).
fn choose(
    groups: &[(String, String, Vec<Decision>)],
    held: &BTreeMap<&str, usize>,
    full: &BTreeMap<String, u64>,
    measured: &BTreeMap<String, u64>,
    in_progress: usize,
    summary: &mut ArchiveSummary,
) -> Vec<Moved> {
    // Quotas per EC2 volume (a volume's groups together) and per account.
    let mut by_volume: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (volume_id, _, _)) in groups.iter().enumerate() {
        by_volume.entry(volume_id.clone()).or_default().push(i);
    }
    let mut quota_input: Vec<(Vec<Decision>, usize)> = by_volume
        .iter()
        .map(|(v, members)| {
            let decisions = members
                .iter()
                .flat_map(|i| groups[*i].2.iter().cloned())
                .collect();
            (decisions, held.get(v.as_str()).copied().unwrap_or(0))
        })
        .collect();
    archive::apply_quotas(&mut quota_input, in_progress);
    let mut chosen: Vec<Moved> = Vec::new();
    for ((volume_id, members), (decisions, _)) in by_volume.iter().zip(quota_input) {
        let policy_of: BTreeMap<&str, &str> = members
            .iter()
            .flat_map(|i| {
                groups[*i]
                    .2
                    .iter()
                    .map(|d| (d.id.as_str(), groups[*i].1.as_str()))
            })
            .collect();
        for d in decisions {
            match d.verdict {
                Ok(saving_usd) => {
                    let policy = policy_of.get(d.id.as_str()).copied().unwrap_or_default();
                    chosen.push(Moved {
                        snapshot_id: d.id.clone(),
                        volume_id: volume_id.clone(),
                        policy: policy.to_string(),
                        saving_usd,
                        full_bytes: full.get(&d.id).copied().unwrap_or(0),
                        unique_bytes: measured.get(&d.id).copied().unwrap_or(0),
                    });
                }
                Err(why) => {
                    *summary.stays.entry(why.kind()).or_default() += 1;
                    let listed = matches!(
                        why,
                        Stay::CostsMore { .. }
                            | Stay::VolumeQuota
                            | Stay::AccountQuota
                            | Stay::Protected { .. }
                    );
                    if listed && summary.refused.len() < STAYS_LISTED {
                        summary.refused.push(Stayed {
                            snapshot_id: d.id,
                            volume_id: volume_id.clone(),
                            why,
                        });
                    }
                }
            }
        }
    }
    chosen
}

/// Start the chosen moves, the largest savings first, and label them
/// `archiving`.
async fn start_moves(
    ports: Ports<'_>,
    config: &Config,
    mut chosen: Vec<Moved>,
    walk: &mut BlockWalks,
    summary: &mut ArchiveSummary,
) {
    // The largest savings first: if EC2 refuses part way, the best went.
    chosen.sort_by(|a, b| b.saving_usd.total_cmp(&a.saving_usd));
    let mut started = Vec::new();
    for moved in chosen {
        if config.dry_run {
            // Counted as moving, so the quotas of the later batches are
            // what a real run would meet.
            walk.in_progress += 1;
            summary.saving_usd += moved.saving_usd;
            summary.archive_started.push(moved);
            continue;
        }
        match ports.archiver.archive_snapshot(&moved.snapshot_id).await {
            Ok(()) => {
                walk.in_progress += 1;
                started.push(moved.snapshot_id.clone());
                summary.saving_usd += moved.saving_usd;
                summary.archive_started.push(moved);
            }
            // The account's quota, reached by someone else meanwhile: the
            // rest waits for a later run.
            Err(Ec2Error::ResourceLimitExceeded) => {
                summary.note(format!(
                    "EC2's archival quota is reached; {} and the rest wait for a later run",
                    moved.snapshot_id
                ));
                *summary.stays.entry(Stay::AccountQuota.kind()).or_default() += 1;
                walk.in_progress = walk.in_progress.max(archive::MAX_ARCHIVALS_IN_PROGRESS);
                break;
            }
            Err(e) => summary.note(format!("could not archive {}: {e}", moved.snapshot_id)),
        }
    }
    if !started.is_empty() {
        let labels = Tags::from([(tags::TIER.to_string(), TIER_ARCHIVING.to_string())]);
        if let Err(e) = ports.tagger.tag_snapshots(&started, &labels).await {
            summary.note(format!(
                "could not tag {} snapshots archiving: {e}",
                started.len()
            ));
        }
    }
}

/// One snapshot's unique bytes: the blocks it holds that changed both from
/// the previous snapshot of its volume and to the next (two walks).
/// `Ok(None)`: it cannot be measured (not in a lineage: a copy; a pair
/// unreadable). `Err`: stop measuring this run (throttled, refused).
async fn measure(
    blocks: &dyn SnapshotBlocks,
    lineages: &BTreeMap<String, Vec<&Snapshot>>,
    snapshot: &Snapshot,
    summary: &mut ArchiveSummary,
) -> Result<Option<u64>, BlocksError> {
    let Some(lineage) = snapshot.volume_id.as_deref().and_then(|v| lineages.get(v)) else {
        return Ok(None);
    };
    let Some(i) = lineage.iter().position(|s| s.id == snapshot.id) else {
        return Ok(None);
    };
    let previous = i.checked_sub(1).map(|p| lineage[p].id.as_str());
    let next = lineage.get(i + 1).map(|n| n.id.as_str());
    // A pair that cannot be compared leaves this snapshot unmeasured; the
    // account's limits stop every walk.
    let mut walk = async |older: Option<&str>, newer: &str| match blocks.diff(older, newer).await {
        Ok(w) => {
            summary.block_requests += w.requests;
            Ok(Some(w))
        }
        Err(e) if e.stops_the_walks() => Err(e),
        Err(e) => {
            summary.note(e.to_string());
            Ok(None)
        }
    };
    let Some(from_previous) = walk(previous, &snapshot.id).await? else {
        return Ok(None);
    };
    let to_next = match next {
        None => None,
        Some(next) => match walk(Some(&snapshot.id), next).await? {
            Some(w) => Some(w),
            None => return Ok(None),
        },
    };
    let (unique, _) = cost::sizes(&from_previous.diff, to_next.as_ref().map(|w| &w.diff));
    Ok(Some(unique))
}

impl Summary for ArchiveSummary {
    fn header(&mut self) -> &mut RunHeader {
        &mut self.header
    }

    fn headline(&self) -> String {
        headline(self)
    }

    fn metrics(&self, suspects: usize) -> Vec<(Metric, u64)> {
        vec![
            (
                Metric::SnapshotsArchiveStarted,
                if self.dry_run {
                    0
                } else {
                    self.archive_started.len() as u64
                },
            ),
            (
                Metric::SnapshotsArchiveCompleted,
                self.archive_completed.len() as u64,
            ),
            (
                Metric::SnapshotsArchiveFailed,
                self.archive_failed.len() as u64,
            ),
            (Metric::TamperingSuspected, suspects as u64),
        ]
    }
}

fn headline(s: &ArchiveSummary) -> String {
    format!(
        "{FUNCTION}: {} archival{} {} (saving {:.2} USD over their remaining lives), {} completed, {} failed; {} considered, {} measured, {} left",
        s.archive_started.len(),
        if s.archive_started.len() == 1 { "" } else { "s" },
        if s.dry_run { "planned (dry run)" } else { "started" },
        s.saving_usd,
        s.archive_completed.len(),
        s.archive_failed.len(),
        s.considered,
        s.measured,
        s.left,
    )
}

/// One `archive-failed` per failed archival not reported before.
pub fn notifications(config: &Config, s: &ArchiveSummary) -> Vec<Notification> {
    if s.new_failures.is_empty() {
        return Vec::new();
    }
    let ids: Vec<&str> = s
        .new_failures
        .iter()
        .map(|f| f.snapshot_id.as_str())
        .collect();
    vec![Notification {
        kind: NotificationKind::ArchiveFailed,
        severity: Severity::Warning,
        deployment: config.deployment_name().to_string(),
        summary: format!(
            "{} snapshot{} could not be moved to the archive tier: {}",
            ids.len(),
            if ids.len() == 1 { "" } else { "s" },
            ids.iter().take(5).copied().collect::<Vec<_>>().join(", ")
        ),
        details: json!({
            "failures": s.new_failures.iter().take(ownership::LISTED).collect::<Vec<_>>(),
            "count": s.new_failures.len(),
            "next": "They stay in the standard tier (tagged lifecycle:tier=standard); the next daily run considers them again. EC2's cause is given per snapshot.",
        }),
    }]
}

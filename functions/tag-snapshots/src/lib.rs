//! tag-snapshots: every managed snapshot says where it came from and why it
//! is still kept.
//!
//! Two triggers:
//! - **completion events** (`createSnapshot`, `copySnapshot`,
//!   `createSnapshots`): the snapshots named are looked up in one call (which
//!   also drops foreign ones); then every managed snapshot of their volumes is
//!   re-planned, because a new snapshot changes why the older ones are kept;
//! - **a daily tick** (backfill): every managed snapshot of the deployment,
//!   200 volumes at a time ([`VOLUMES_PER_BATCH`]): the volumes' ids first,
//!   then each batch's snapshots, so a run holds one batch, never the
//!   account; a run out of time leaves the rest to the next.
//!
//! Either way: volumes and instances are described once per set, the pure
//! plan ([`ebs_lifecycle_core::tagging`]) says which tags differ, and CreateTags
//! writes them in batches of many snapshots per call, paced under EC2's
//! CreateTags rate. A run that writes the plan and a second run right after
//! writes nothing. A batch EC2 refuses is split (a snapshot deleted meanwhile,
//! or one tag EC2 will not take, must not cost the others their tags).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::function::{self, Function, Ran, Run as FunctionRun, Summary};
use ebs_lifecycle::lambda::invocation;
use ebs_lifecycle::lambda::metrics::Metric;
use ebs_lifecycle::lambda::run::RunHeader;
use ebs_lifecycle::pacing::Pacer;
pub use ebs_lifecycle::pacing::Pacing;
use ebs_lifecycle::ports::ec2::{
    Ec2Error, SnapshotCatalog, SnapshotTagger, VolumeInventory, TAG_BATCH,
};
use ebs_lifecycle::ports::ledger::Ledger;
use ebs_lifecycle::ports::notifier::Notifier;
use ebs_lifecycle::services::ownership;
use ebs_lifecycle::services::resume::{Progress, Walk};
use ebs_lifecycle_core::events::{self, SnapshotResult, Trigger};
use ebs_lifecycle_core::model::{Snapshot, Tags};
use ebs_lifecycle_core::notify::{Notification, NotificationKind, Severity};
use ebs_lifecycle_core::ownership::{Scope, Suspect};
use ebs_lifecycle_core::tagging::{self, SkippedOnSnapshot, Sources, TagBatch, TagPlan};
use ebs_lifecycle_core::tags::{self, SkipReason, SkippedTag};

pub const FUNCTION: &str = "tag-snapshots";

/// CreateTags draws on EC2's bucket (`ebs_lifecycle::pacing::CREATE_TAGS`).
pub const CREATE_TAGS_PACING: Pacing = ebs_lifecycle::pacing::CREATE_TAGS;

#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub catalog: &'a dyn SnapshotCatalog,
    pub inventory: &'a dyn VolumeInventory,
    pub tagger: &'a dyn SnapshotTagger,
    pub notifier: &'a dyn Notifier,
    /// The stack's own record, for the ownership of copies.
    pub ledger: &'a dyn Ledger,
    /// How CreateTags calls are spaced: [`CREATE_TAGS_PACING`] in
    /// production, [`Pacing::NONE`] in tests.
    pub pacing: Pacing,
}

/// How an invocation fails (stable `errorType`s), shared by the
/// event-driven functions.
pub use ebs_lifecycle::lambda::invocation::InvocationError;

/// Tags that could not be written on some snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedWrite {
    pub snapshot_ids: Vec<String>,
    pub tags: Tags,
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    #[serde(flatten)]
    pub header: RunHeader,
    /// Snapshots named by the event that this deployment does not manage.
    pub foreign: usize,
    #[serde(flatten)]
    pub plan: TagPlan,
    /// Snapshots that got at least one tag written.
    pub tagged: usize,
    /// CreateTags calls made.
    pub create_tags_calls: usize,
    /// Snapshots deleted between the plan and the write.
    pub gone: Vec<String>,
    pub failed: Vec<FailedWrite>,
    /// Snapshots not written because the deadline came near: the next run
    /// writes them.
    pub left_for_later: usize,
    /// Volumes the backfill did not reach before its deadline (the next
    /// run labels them).
    pub volumes_not_reached: usize,
    #[serde(flatten)]
    pub progress: Progress,
    /// The whole counts of the plan's lists (each listed up to 100).
    pub totals: Totals,
}

/// Volumes labelled together by the daily backfill: their snapshots (two
/// DescribeSnapshots, EC2's filters take 200 values) are all a run holds.
pub const VOLUMES_PER_BATCH: usize = ebs_lifecycle::pacing::VOLUMES_PER_BATCH;
/// Snapshots listed by name in each of the summary's lists (skipped tags,
/// orphans, unknown policies, missing instances); the totals are whole.
pub const LISTED: usize = 100;

/// The whole counts of the summary's bounded lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub skipped: usize,
    pub orphaned: usize,
    pub missing_instances: usize,
    pub unknown_policy: usize,
}

/// tag-snapshots, as the skeleton runs it ([`Function`]).
pub struct TagSnapshots;

impl Function for TagSnapshots {
    const NAME: &'static str = FUNCTION;
    type Ports<'p> = Ports<'p>;
    type Trigger = Trigger;
    type Summary = RunSummary;
    type Error = InvocationError;

    fn ledger<'p>(ports: &Self::Ports<'p>) -> &'p dyn Ledger {
        ports.ledger
    }

    fn notifier<'p>(ports: &Self::Ports<'p>) -> &'p dyn Notifier {
        ports.notifier
    }

    fn open(
        run: &FunctionRun<'_>,
        event: &Value,
    ) -> Result<(Trigger, RunSummary), InvocationError> {
        invocation::open_trigger(FUNCTION, run, event)
    }

    async fn execute(
        ports: Self::Ports<'_>,
        run: &FunctionRun<'_>,
        trigger: Trigger,
        summary: &mut RunSummary,
    ) -> Result<Ran, InvocationError> {
        let mut pacer = Pacer::new(ports.pacing);
        let mut suspects = Vec::new();
        let mut labelling = Labelling {
            ports,
            run,
            pacer: &mut pacer,
            summary,
            suspects: &mut suspects,
        };
        match trigger {
            // The backfill: 200 volumes at a time, so a run holds one
            // batch's snapshots, never the account's.
            Trigger::Tick(_) => backfill(&mut labelling).await?,
            // A failed snapshot has nothing to label; complete-snapshots
            // reports it.
            Trigger::Snapshots { results, .. } if events::succeeded_ids(&results).is_empty() => {
                return Ok(Ran::Nothing)
            }
            Trigger::Snapshots { results, .. } => {
                let deployment = run.config.deployment_name();
                let snapshots =
                    snapshots_of_event(ports, deployment, &results, run.now, labelling.summary)
                        .await?;
                labelling.label(snapshots, None).await?;
            }
            // The run header logged it.
            Trigger::Ignored { .. } => return Ok(Ran::Nothing),
        }
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

/// Handle one invocation: a daily backfill tick or a completion event.
pub async fn handle(
    ports: Ports<'_>,
    config: &Config,
    event: &Value,
    now: DateTime<Utc>,
    deadline: Deadline,
) -> Result<RunSummary, InvocationError> {
    function::invoke::<TagSnapshots>(ports, config, event, now, deadline).await
}

/// One run's labelling: what every batch (or the event's snapshots) is
/// labelled with, and what it adds to.
struct Labelling<'l, 'p> {
    ports: Ports<'p>,
    run: &'l FunctionRun<'l>,
    pacer: &'l mut Pacer,
    summary: &'l mut RunSummary,
    suspects: &'l mut Vec<Suspect>,
}

impl Labelling<'_, '_> {
    async fn label(
        &mut self,
        listed: Vec<Snapshot>,
        in_batch: Option<&BTreeSet<&str>>,
    ) -> Result<(), InvocationError> {
        label(
            self.ports,
            self.run.config,
            listed,
            in_batch,
            self.run.now,
            self.run.deadline,
            self.pacer,
            self.summary,
            self.suspects,
        )
        .await
    }
}

/// The daily backfill: every managed snapshot of the deployment, a batch of
/// volumes at a time, resumed where the last run stopped (wrapping round:
/// every volume is labelled within a few runs at any size).
async fn backfill(labelling: &mut Labelling<'_, '_>) -> Result<(), InvocationError> {
    let ports = labelling.ports;
    let deployment = labelling.run.config.deployment_name();
    let volume_ids = ports.catalog.managed_volume_ids(deployment).await?;
    let mut walk = Walk::start(ports.ledger, FUNCTION, volume_ids.into_iter().collect()).await;
    while let Some(batch) = walk.next_batch(&labelling.run.deadline) {
        let listed = match ports
            .catalog
            .managed_snapshots_of_volumes(deployment, &batch)
            .await
        {
            Ok(listed) => listed,
            // After a batch or more, the run stops here as at its deadline.
            Err(e) => {
                walk.failed(e)?;
                break;
            }
        };
        let in_batch: BTreeSet<&str> = batch.iter().map(String::as_str).collect();
        labelling.label(listed, Some(&in_batch)).await?;
        // Writes cut short by the deadline: the next run starts at this
        // batch.
        if labelling.summary.left_for_later > 0 {
            walk.cut_short();
        }
    }
    labelling.summary.volumes_not_reached = walk.not_reached().len();
    labelling.summary.progress = walk.conclude(ports.ledger).await;
    Ok(())
}

/// Plan and write the tags of `snapshots` (whole volumes), adding to the
/// summary. `in_batch`: the volumes of a backfill batch; a snapshot whose
/// proof names another volume is labelled with that volume's batch.
#[allow(clippy::too_many_arguments)]
async fn label(
    ports: Ports<'_>,
    config: &Config,
    snapshots: Vec<Snapshot>,
    in_batch: Option<&BTreeSet<&str>>,
    now: DateTime<Utc>,
    deadline: Deadline,
    pacer: &mut Pacer,
    summary: &mut RunSummary,
    suspects: &mut Vec<ebs_lifecycle_core::ownership::Suspect>,
) -> Result<(), InvocationError> {
    // Only what the deployment provably made is labelled or counted.
    let sifted = ownership::sift(ports.ledger, config, snapshots, Scope::WholeVolumes, now).await?;
    suspects.extend(sifted.suspects);
    // One listed by its Description whose `managed-by` is gone is held and
    // reported by the sift; its role may not tag it (the condition on its
    // `CreateTags`), so it is not labelled either.
    let snapshots: Vec<Snapshot> = sifted
        .owned
        .into_iter()
        .filter(|s| tags::is_managed_by(&s.tags, config.deployment_name()))
        .filter(|s| in_batch.is_none_or(|b| s.source_volume_id().is_none_or(|v| b.contains(v))))
        .collect();

    // Volumes and instances: described once for the set.
    let volume_ids: BTreeSet<String> = snapshots
        .iter()
        .filter_map(|s| s.source_volume_id().map(String::from))
        .collect();
    let volumes: BTreeMap<String, _> = ports
        .inventory
        .volumes_by_id(&volume_ids.into_iter().collect::<Vec<_>>())
        .await?
        .into_iter()
        .map(|v| (v.id.clone(), v))
        .collect();
    let instance_ids: BTreeSet<String> = volumes
        .values()
        .filter_map(|v| v.attachment.as_ref().map(|a| a.instance_id.clone()))
        .collect();
    let instances: BTreeMap<String, _> = if instance_ids.is_empty() {
        BTreeMap::new()
    } else {
        ports
            .inventory
            .instances_by_id(&instance_ids.into_iter().collect::<Vec<_>>())
            .await?
            .into_iter()
            .map(|i| (i.id.clone(), i))
            .collect()
    };

    let plan = tagging::plan(
        &Sources {
            deployment: config.deployment_name(),
            policies: &config.policies,
            volumes: &volumes,
            instances: &instances,
            now,
        },
        &snapshots,
    );
    let batches = tagging::batches(&plan.changes, TAG_BATCH);
    merge(summary, plan);
    write(ports, batches, deadline, pacer, summary).await;
    Ok(())
}

/// Add one set's plan to the summary: counts whole, lists bounded.
fn merge(summary: &mut RunSummary, plan: TagPlan) {
    let TagPlan {
        changes: _,
        examined,
        unchanged,
        skipped,
        orphaned,
        missing_instances,
        unknown_policy,
    } = plan;
    let into = &mut summary.plan;
    into.examined += examined;
    into.unchanged += unchanged;
    let totals = &mut summary.totals;
    for s in &skipped {
        tracing::warn!(snapshot = %s.snapshot_id, key = %s.tag.key, reason = %s.tag.reason, "tag not written");
    }
    totals.skipped += skipped.len();
    totals.orphaned += orphaned.len();
    totals.missing_instances += missing_instances.len();
    totals.unknown_policy += unknown_policy.len();
    fn bounded<T>(into: &mut Vec<T>, from: Vec<T>) {
        let room = LISTED.saturating_sub(into.len());
        into.extend(from.into_iter().take(room));
    }
    bounded(&mut into.skipped, skipped);
    bounded(&mut into.orphaned, orphaned);
    bounded(&mut into.missing_instances, missing_instances);
    bounded(&mut into.unknown_policy, unknown_policy);
}

/// The event's snapshots, if this deployment manages them, and every other
/// managed snapshot of their volumes.
///
/// Snapshot events name each snapshot's source volume, so the volume query
/// usually finds the event's own snapshots too: two DescribeSnapshots per
/// event. Only snapshots it does not find (foreign ones, copies, whose
/// source is a snapshot) are described by id.
async fn snapshots_of_event(
    ports: Ports<'_>,
    deployment: &str,
    results: &[SnapshotResult],
    now: DateTime<Utc>,
    summary: &mut RunSummary,
) -> Result<Vec<Snapshot>, InvocationError> {
    let ids = events::succeeded_ids(results);
    let event_volumes: BTreeSet<String> = results
        .iter()
        .filter(|r| r.not_failed())
        .filter_map(|r| r.volume_id.clone())
        .collect();
    let mut all: BTreeMap<String, Snapshot> = BTreeMap::new();
    if !event_volumes.is_empty() {
        let volumes: Vec<String> = event_volumes.iter().cloned().collect();
        for s in ports
            .catalog
            .managed_snapshots_of_volumes(deployment, &volumes)
            .await?
        {
            all.insert(s.id.clone(), s);
        }
    }
    let unseen: Vec<String> = ids
        .iter()
        .filter(|id| !all.contains_key(*id))
        .cloned()
        .collect();
    if unseen.is_empty() {
        return Ok(all.into_values().collect());
    }
    let named = invocation::snapshots_named(ports.catalog, results, &unseen, now).await?;
    summary.header.snapshots_gone.extend(named.gone);
    let found = named.found;
    let (ours, foreign): (Vec<Snapshot>, Vec<Snapshot>) = found
        .into_iter()
        .partition(|s| tags::is_managed_by(&s.tags, deployment));
    summary.foreign = foreign.len();
    if ours.is_empty() && unseen.len() == ids.len() {
        // None of the event's snapshots is ours: their volumes' snapshots
        // are not this event's business.
        return Ok(Vec::new());
    }
    // Copies and snapshots whose volume the event did not name: their
    // volumes' other snapshots too.
    let more_volumes: Vec<String> = ours
        .iter()
        .filter_map(|s| s.source_volume_id().map(String::from))
        .filter(|v| !event_volumes.contains(v))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !more_volumes.is_empty() {
        for s in ports
            .catalog
            .managed_snapshots_of_volumes(deployment, &more_volumes)
            .await?
        {
            all.insert(s.id.clone(), s);
        }
    }
    // The event's own snapshots as just described win over the volume query.
    for s in ours {
        all.insert(s.id.clone(), s);
    }
    Ok(all.into_values().collect())
}

/// Write the batches, paced, until done or the deadline comes near. A
/// failed batch is split, skipped or recorded by [`after_failure`].
async fn write(
    ports: Ports<'_>,
    batches: Vec<TagBatch>,
    deadline: Deadline,
    pacer: &mut Pacer,
    summary: &mut RunSummary,
) {
    let mut tagged = BTreeSet::new();
    let mut queue: VecDeque<TagBatch> = batches.into();
    while let Some(batch) = queue.pop_front() {
        if deadline.is_near() {
            queue.push_front(batch);
            summary.left_for_later = snapshots_in(&queue);
            break;
        }
        pacer.ready().await;
        summary.create_tags_calls += 1;
        let error = match ports
            .tagger
            .tag_snapshots(&batch.snapshot_ids, &batch.tags)
            .await
        {
            Ok(()) => {
                tagged.extend(batch.snapshot_ids);
                continue;
            }
            Err(e) => e,
        };
        match after_failure(batch, &error) {
            // Splits go first in the queue, in their order.
            AfterFailure::Retry(parts) => {
                for part in parts.into_iter().rev() {
                    queue.push_front(part);
                }
            }
            // Gone: no call of this run names it again.
            AfterFailure::Gone(ids) => {
                for queued in queue.iter_mut() {
                    queued.snapshot_ids.retain(|id| !ids.contains(id));
                }
                queue.retain(|b| !b.snapshot_ids.is_empty());
                for id in ids {
                    if !summary.gone.contains(&id) {
                        summary.gone.push(id);
                    }
                }
            }
            AfterFailure::Refused(skipped) => {
                for s in &skipped {
                    tracing::warn!(snapshot = %s.snapshot_id, key = %s.tag.key, error = %error, "EC2 refused a tag; skipped");
                }
                summary.totals.skipped += skipped.len();
                let room = LISTED.saturating_sub(summary.plan.skipped.len());
                summary.plan.skipped.extend(skipped.into_iter().take(room));
            }
            // EC2 kept throttling through every retry: more calls now would
            // only be throttled too. The next run writes the rest.
            AfterFailure::Stop(failed) => {
                tracing::warn!(error = %error, "CreateTags throttled past every retry; stopping");
                summary.left_for_later = snapshots_in(&queue);
                summary.failed.push(failed);
                break;
            }
            AfterFailure::Failed(failed) => {
                tracing::warn!(snapshots = ?failed.snapshot_ids, error = %error, "CreateTags failed");
                summary.failed.push(failed);
            }
        }
    }
    summary.tagged += tagged.len();
}

/// Distinct snapshots in the batches not yet written.
fn snapshots_in(queue: &VecDeque<TagBatch>) -> usize {
    queue
        .iter()
        .flat_map(|b| b.snapshot_ids.iter())
        .collect::<BTreeSet<_>>()
        .len()
}

/// What becomes of a batch CreateTags refused.
enum AfterFailure {
    /// Split so the other snapshots (or tags) still get written.
    Retry(Vec<TagBatch>),
    /// The snapshots were deleted meanwhile.
    Gone(Vec<String>),
    /// EC2 will never take this tag on this snapshot.
    Refused(Vec<SkippedOnSnapshot>),
    /// Throttled past every retry: stop the run here.
    Stop(FailedWrite),
    Failed(FailedWrite),
}

fn after_failure(batch: TagBatch, error: &Ec2Error) -> AfterFailure {
    let refused = matches!(error, Ec2Error::Service { code, .. } if refuses_tag(code));
    let gone = matches!(error, Ec2Error::SnapshotNotFound);
    let failed = |batch: TagBatch| FailedWrite {
        snapshot_ids: batch.snapshot_ids,
        tags: batch.tags,
        error: error.to_string(),
    };
    if (gone || refused) && batch.snapshot_ids.len() > 1 {
        // One snapshot of many is gone, or one tag is refused somewhere.
        let TagBatch { snapshot_ids, tags } = batch;
        return AfterFailure::Retry(
            snapshot_ids
                .into_iter()
                .map(|id| TagBatch {
                    tags: tags.clone(),
                    snapshot_ids: vec![id],
                })
                .collect(),
        );
    }
    if gone {
        return AfterFailure::Gone(batch.snapshot_ids);
    }
    if refused && batch.tags.len() > 1 {
        let TagBatch { snapshot_ids, tags } = batch;
        return AfterFailure::Retry(
            tags.into_iter()
                .map(|(key, value)| TagBatch {
                    tags: Tags::from([(key, value)]),
                    snapshot_ids: snapshot_ids.clone(),
                })
                .collect(),
        );
    }
    if refused {
        return AfterFailure::Refused(
            batch
                .snapshot_ids
                .iter()
                .flat_map(|id| {
                    batch.tags.keys().map(move |key| SkippedOnSnapshot {
                        snapshot_id: id.clone(),
                        tag: SkippedTag {
                            key: key.clone(),
                            reason: SkipReason::Refused,
                        },
                    })
                })
                .collect(),
        );
    }
    match error {
        Ec2Error::Throttled { .. } => AfterFailure::Stop(failed(batch)),
        _ => AfterFailure::Failed(failed(batch)),
    }
}

/// EC2 error codes that mean "this tag is not acceptable" rather than "try later".
fn refuses_tag(code: &str) -> bool {
    code.starts_with("InvalidParameter")
        || code.starts_with("InvalidTag")
        || code == "TagLimitExceeded"
}

impl Summary for RunSummary {
    fn header(&mut self) -> &mut RunHeader {
        &mut self.header
    }

    fn headline(&self) -> String {
        format!(
            "tag-snapshots ({}): {} snapshots tagged in {} CreateTags calls, {} already right, {} examined, {} tags skipped, {} writes failed",
            self.header.trigger,
            self.tagged,
            self.create_tags_calls,
            self.plan.unchanged,
            self.plan.examined,
            self.totals.skipped,
            self.failed.len()
        )
    }

    fn metrics(&self, suspects: usize) -> Vec<(Metric, u64)> {
        vec![(Metric::TamperingSuspected, suspects as u64)]
    }
}

/// What the run tells people, from its summary alone.
pub fn notifications(config: &Config, summary: &RunSummary) -> Vec<Notification> {
    // Skipped tags recur every day until the source changes, so they stay in
    // the logs and the summary; failed writes are news and are notified.
    if summary.failed.is_empty() {
        return Vec::new();
    }
    let failed: usize = summary.failed.iter().map(|f| f.snapshot_ids.len()).sum();
    vec![Notification {
        kind: NotificationKind::RunSummary,
        severity: Severity::Warning,
        deployment: config.deployment_name().to_string(),
        summary: format!("tag-snapshots could not tag {failed} snapshots"),
        details: json!({
            "function": FUNCTION,
            "failed": summary.failed,
            "tagged": summary.tagged,
            "next": "The next run retries: only tags that differ are written.",
        }),
    }]
}

//! tag-snapshots: every managed snapshot says where it came from and why it
//! is still kept.
//!
//! Two triggers:
//! - **completion events** (`createSnapshot`, `copySnapshot`,
//!   `createSnapshots`): the snapshots named are looked up in one call (which
//!   also drops foreign ones); then every managed snapshot of their volumes is
//!   re-planned, because a new snapshot changes why the older ones are kept;
//! - **a daily tick** (backfill): every managed snapshot of the deployment.
//!
//! Either way: volumes and instances are described once per run, the pure
//! plan ([`ebs_lifecycle_core::tagging`]) says which tags differ, and CreateTags
//! writes them in batches of many snapshots per call, paced under EC2's
//! CreateTags rate. A run that writes the plan and a second run right after
//! writes nothing. A batch EC2 refuses is split (a snapshot deleted meanwhile,
//! or one tag EC2 will not take, must not cost the others their tags).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::invocation;
use ebs_lifecycle::lambda::pacing::Pacer;
pub use ebs_lifecycle::lambda::pacing::Pacing;
use ebs_lifecycle::ports::ec2::{
    Ec2Error, SnapshotCatalog, SnapshotTagger, VolumeInventory, TAG_BATCH,
};
use ebs_lifecycle::ports::notifier::Notifier;
use ebs_lifecycle_core::events::{self, SnapshotEvent, SnapshotResult, Tick};
use ebs_lifecycle_core::model::{Snapshot, Tags};
use ebs_lifecycle_core::notify::{Notification, NotificationKind, Severity};
use ebs_lifecycle_core::tagging::{self, SkippedOnSnapshot, Sources, TagBatch, TagPlan};
use ebs_lifecycle_core::tags::{self, SkipReason, SkippedTag};

pub const FUNCTION: &str = "tag-snapshots";

/// CreateTags draws on EC2's mutating-action bucket, refilled at 10 a
/// second: an event's few calls go at once; a backfill past the burst goes
/// one call per 100 ms.
pub const CREATE_TAGS_PACING: Pacing = Pacing {
    burst: 20,
    interval: Duration::from_millis(100),
};

#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub catalog: &'a dyn SnapshotCatalog,
    pub inventory: &'a dyn VolumeInventory,
    pub tagger: &'a dyn SnapshotTagger,
    pub notifier: &'a dyn Notifier,
}

/// How an invocation fails (stable `errorType`s).
pub use ebs_lifecycle::lambda::invocation::InvocationError as TagError;

/// Tags that could not be written on some snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedWrite {
    pub snapshot_ids: Vec<String>,
    pub tags: Tags,
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    pub function: &'static str,
    pub deployment: String,
    pub time: String,
    /// `event` or `backfill`.
    pub trigger: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notification_errors: Vec<String>,
}

/// Handle one invocation, pacing CreateTags as production does.
pub async fn handle(
    ports: Ports<'_>,
    config: &Config,
    event: &Value,
    now: DateTime<Utc>,
    deadline: Deadline,
) -> Result<RunSummary, TagError> {
    handle_paced(ports, config, event, now, deadline, CREATE_TAGS_PACING).await
}

/// [`handle`] with the pacing of CreateTags calls given (tests pass [`Pacing::NONE`]).
pub async fn handle_paced(
    ports: Ports<'_>,
    config: &Config,
    event: &Value,
    now: DateTime<Utc>,
    deadline: Deadline,
    pacing: Pacing,
) -> Result<RunSummary, TagError> {
    let mut summary = RunSummary {
        function: FUNCTION,
        deployment: config.deployment_name.clone(),
        time: tags::format_time(now),
        ..RunSummary::default()
    };
    let deployment = config.deployment_name.as_str();
    let snapshots = if Tick::is_tick(event) {
        Tick::parse(event)?;
        summary.trigger = "backfill";
        ports.catalog.managed_snapshots(deployment).await?
    } else {
        summary.trigger = "event";
        match SnapshotEvent::parse(event)? {
            SnapshotEvent::Ignored { detail_type, event } => {
                tracing::debug!(detail_type, event, "EBS event not handled; ignored");
                summary.event = Some(format!("ignored: {detail_type} / {event}"));
                return Ok(summary);
            }
            SnapshotEvent::Results { operation, results } => {
                summary.event = Some(operation.as_str().to_string());
                // A failed snapshot has nothing to label; complete-snapshots
                // reports it.
                if events::succeeded_ids(&results).is_empty() {
                    return Ok(summary);
                }
                snapshots_of_event(ports, deployment, &results, &mut summary).await?
            }
        }
    };

    // Volumes and instances: described once for the whole run.
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

    summary.plan = tagging::plan(
        &Sources {
            deployment,
            policies: &config.policies,
            volumes: &volumes,
            instances: &instances,
            now,
        },
        &snapshots,
    );
    let batches = tagging::batches(&summary.plan.changes, TAG_BATCH);
    write(ports, batches, deadline, pacing, &mut summary).await;
    finish(ports, config, &mut summary).await;
    Ok(summary)
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
    summary: &mut RunSummary,
) -> Result<Vec<Snapshot>, TagError> {
    let ids = events::succeeded_ids(results);
    let event_volumes: BTreeSet<String> = results
        .iter()
        .filter(|r| r.succeeded)
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
    let found = invocation::snapshots_named(ports.catalog, &unseen).await?;
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

/// Write the batches, paced, until done or the deadline comes near.
async fn write(
    ports: Ports<'_>,
    batches: Vec<TagBatch>,
    deadline: Deadline,
    pacing: Pacing,
    summary: &mut RunSummary,
) {
    let mut tagged = BTreeSet::new();
    let mut queue: std::collections::VecDeque<TagBatch> = batches.into();
    let mut pacer = Pacer::new(pacing);
    while let Some(batch) = queue.pop_front() {
        if deadline.is_near() {
            let mut left: BTreeSet<&String> = batch.snapshot_ids.iter().collect();
            left.extend(queue.iter().flat_map(|b| b.snapshot_ids.iter()));
            summary.left_for_later = left.len();
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
        let refused = matches!(&error, Ec2Error::Service { code, .. } if refuses_tag(code));
        match (&error, batch.snapshot_ids.len(), batch.tags.len()) {
            // One snapshot of many is gone, or one tag is refused: split so
            // the others still get their tags. Splits go first in the queue.
            (Ec2Error::SnapshotNotFound, n, _) | (Ec2Error::Service { .. }, n, _)
                if n > 1 && (refused || matches!(error, Ec2Error::SnapshotNotFound)) =>
            {
                for id in batch.snapshot_ids.into_iter().rev() {
                    queue.push_front(TagBatch {
                        tags: batch.tags.clone(),
                        snapshot_ids: vec![id],
                    });
                }
            }
            (Ec2Error::SnapshotNotFound, _, _) => summary.gone.extend(batch.snapshot_ids),
            (Ec2Error::Service { .. }, _, k) if refused && k > 1 => {
                for (key, value) in batch.tags.into_iter().rev() {
                    queue.push_front(TagBatch {
                        tags: Tags::from([(key, value)]),
                        snapshot_ids: batch.snapshot_ids.clone(),
                    });
                }
            }
            (Ec2Error::Service { .. }, _, _) if refused => {
                for id in batch.snapshot_ids {
                    for key in batch.tags.keys() {
                        tracing::warn!(snapshot = %id, key, error = %error, "EC2 refused a tag; skipped");
                        summary.plan.skipped.push(SkippedOnSnapshot {
                            snapshot_id: id.clone(),
                            tag: SkippedTag {
                                key: key.clone(),
                                reason: SkipReason::Refused,
                            },
                        });
                    }
                }
            }
            // EC2 kept throttling through every retry: more calls now would
            // only be throttled too. The next run writes the rest.
            (Ec2Error::Throttled { .. }, _, _) => {
                tracing::warn!(error = %error, "CreateTags throttled past every retry; stopping");
                let left: BTreeSet<&String> =
                    queue.iter().flat_map(|b| b.snapshot_ids.iter()).collect();
                summary.left_for_later = left.len();
                summary.failed.push(FailedWrite {
                    snapshot_ids: batch.snapshot_ids,
                    tags: batch.tags,
                    error: error.to_string(),
                });
                break;
            }
            _ => {
                tracing::warn!(snapshots = ?batch.snapshot_ids, error = %error, "CreateTags failed");
                summary.failed.push(FailedWrite {
                    snapshot_ids: batch.snapshot_ids,
                    tags: batch.tags,
                    error: error.to_string(),
                });
            }
        }
    }
    summary.tagged = tagged.len();
}

/// EC2 error codes that mean "this tag is not acceptable" rather than "try later".
fn refuses_tag(code: &str) -> bool {
    code.starts_with("InvalidParameter")
        || code.starts_with("InvalidTag")
        || code == "TagLimitExceeded"
}

async fn finish(ports: Ports<'_>, config: &Config, summary: &mut RunSummary) {
    tracing::info!(
        trigger = summary.trigger,
        examined = summary.plan.examined,
        tagged = summary.tagged,
        unchanged = summary.plan.unchanged,
        calls = summary.create_tags_calls,
        skipped = summary.plan.skipped.len(),
        failed = summary.failed.len(),
        summary = %json!(summary),
        "tag-snapshots: {} snapshots tagged in {} CreateTags calls, {} already right",
        summary.tagged,
        summary.create_tags_calls,
        summary.plan.unchanged
    );
    for skipped in &summary.plan.skipped {
        tracing::warn!(snapshot = %skipped.snapshot_id, key = %skipped.tag.key, reason = %skipped.tag.reason, "tag not written");
    }
    // Skipped tags recur every day until the source changes, so they stay in
    // the logs and the summary; failed writes are news and are notified.
    if summary.failed.is_empty() {
        return;
    }
    let failed: usize = summary.failed.iter().map(|f| f.snapshot_ids.len()).sum();
    let notification = Notification {
        kind: NotificationKind::RunSummary,
        severity: Severity::Warning,
        deployment: config.deployment_name.clone(),
        summary: format!("tag-snapshots could not tag {failed} snapshots"),
        details: json!({
            "function": FUNCTION,
            "failed": summary.failed,
            "tagged": summary.tagged,
            "next": "The next run retries: only tags that differ are written.",
        }),
    };
    if let Err(e) = ports.notifier.publish(&notification).await {
        summary.notification_errors.push(e.to_string());
    }
}

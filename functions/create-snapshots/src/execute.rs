//! Step 5 of a run: carrying out the units of work the plan made, one
//! CreateSnapshot or CreateSnapshots each, with every tag at creation.
//! [`crate::consistent`] builds on [`take_instance_snapshots`] for the
//! instances that are frozen or stopped first; the crate's root chooses
//! which does a unit of work.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::ports::ec2::{
    CreateInstanceSnapshotsRequest, CreateSnapshotRequest, Ec2Error, StartedSnapshot,
};
use ebs_lifecycle::ports::ledger::{CreationIntent, CreationRecord, Ledger, StopRecord};
use ebs_lifecycle::services::commands::PacedRunner;
use ebs_lifecycle_core::model::{Snapshot, Tags};
use ebs_lifecycle_core::ownership::{AskedKey, LostAnswer, Subject};
use ebs_lifecycle_core::policy::{Consistency, Policy};
use ebs_lifecycle_core::tags::{
    self, compose_snapshot_tags, copied_tags, snapshot_name, ConsistencyLabel, LifecycleLabels,
    LifecycleState,
};
use ebs_lifecycle_core::targets::{InstanceTarget, VolumeTarget};

use crate::{ConsistencyFailure, Created, Failed, LeftForLater, Ports, SkippedTags};

/// A unit of work: one CreateSnapshot or one CreateSnapshots call.
pub(crate) enum Work<'p> {
    Volume {
        target: VolumeTarget,
        policy: &'p Policy,
        slot: DateTime<Utc>,
    },
    Instance {
        target: InstanceTarget,
        /// The member volumes still due (the rest already have a snapshot).
        due: Vec<String>,
        policy: &'p Policy,
        slot: DateTime<Utc>,
    },
}

pub(crate) enum Outcome {
    Created(Vec<Created>),
    Failed(Vec<Failed>),
    Left(Vec<LeftForLater>),
}

/// What one unit of work did.
pub(crate) struct Done {
    pub(crate) outcome: Outcome,
    pub(crate) skipped: Option<SkippedTags>,
    pub(crate) consistency_failures: Vec<ConsistencyFailure>,
}

impl From<(Outcome, Option<SkippedTags>)> for Done {
    fn from((outcome, skipped): (Outcome, Option<SkippedTags>)) -> Self {
        Done {
            outcome,
            skipped,
            consistency_failures: Vec::new(),
        }
    }
}

/// One run's shared context: what every unit of work needs.
pub(crate) struct Run<'a> {
    pub(crate) ports: Ports<'a>,
    pub(crate) config: &'a Config,
    pub(crate) now: DateTime<Utc>,
    pub(crate) deadline: Deadline,
    /// The instances this deployment stopped and has not started again, by
    /// the stack's ledger (read once at the start of the run).
    pub(crate) stops: Vec<StopRecord>,
    /// Every SSM call of the run goes through this, at the run's pace.
    pub(crate) commands: PacedRunner<'a>,
    /// At most [`CONSISTENCY_CONCURRENCY`] instances frozen or stopped at once.
    pub(crate) consistency_slots: tokio::sync::Semaphore,
}

/// One creation, as the ledger must see it (docs/policies-and-tags.md,
/// "Ownership"): from the first record on, a scheduled snapshot without its
/// record is not the deployment's. So the intent is written first (no call
/// without it: a ledger that cannot be written would otherwise leave a
/// snapshot no later run can prove), then the call, then a record per
/// snapshot EC2 started, the moment it answers, so that a completion event
/// finds it. The intent goes once every answer is recorded or when nothing
/// was started; it stays when the answer was lost (a timeout, a reset, a
/// 5xx after EC2 may have acted), and proves that snapshot.
struct Creation<'c> {
    subject: Subject,
    policy: &'c Policy,
    slot: DateTime<Utc>,
    /// The volumes the call snapshots.
    due: &'c [String],
    instance_id: Option<String>,
    consistency: ConsistencyLabel,
}

impl Creation<'_> {
    async fn make<F, Fut>(&self, run: &Run<'_>, call: F) -> Outcome
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<StartedSnapshot>, Ec2Error>>,
    {
        let ledger = run.ports.ledger;
        let intent = CreationIntent {
            claim: (
                self.subject.as_str().to_string(),
                self.policy.name.clone(),
                self.slot,
            ),
            asked_at: run.now,
        };
        if let Err(e) = ledger.ask_creation(&intent).await {
            return failed_all(
                self.due,
                self.policy,
                self.instance_id.as_deref(),
                e.kind(),
                format!("the ledger could not record the intent to snapshot, so none was asked for: {e}"),
            );
        }
        match paced(run, call).await {
            Ok(started) => {
                let made: Vec<Created> = started.into_iter().map(|s| self.created(s)).collect();
                if self.record(run, &made).await {
                    forget(run, &intent).await;
                }
                Outcome::Created(made)
            }
            // Throttled with no time left: nothing started, the next tick takes it.
            Err(Ec2Error::Throttled { .. }) => {
                forget(run, &intent).await;
                left(self.due, self.policy)
            }
            Err(e) => failed_all(
                self.due,
                self.policy,
                self.instance_id.as_deref(),
                e.kind(),
                e.to_string(),
            ),
        }
    }

    fn created(&self, s: StartedSnapshot) -> Created {
        Created {
            volume_id: s.volume_id,
            snapshot_id: s.snapshot_id,
            policy: self.policy.name.clone(),
            slot: tags::format_time(self.slot),
            instance_id: self.instance_id.clone(),
            consistency: self.consistency.as_str(),
        }
    }

    /// True when every snapshot is recorded. One that is not stays proven by
    /// the intent, which then stays too.
    async fn record(&self, run: &Run<'_>, made: &[Created]) -> bool {
        let mut all = true;
        for c in made {
            let record = CreationRecord {
                snapshot_id: c.snapshot_id.clone(),
                volume_id: c.volume_id.clone(),
                policy: c.policy.clone(),
                slot: self.slot,
                created_at: run.now,
            };
            if let Err(e) = run.ports.ledger.record_creation(&record).await {
                tracing::warn!(snapshot_id = %c.snapshot_id, error = %e, "the snapshot started but its creation could not be recorded; its intent stays and proves it");
                all = false;
            }
        }
        all
    }
}

/// Records the snapshots an earlier run's lost answers made (proven by
/// their intents alone, found in the slot check), then forgets each intent
/// whose snapshots are all recorded: the proof then lasts as long as the
/// snapshot, however long its rules keep it, not as long as the intent's
/// TTL. Only once the lost call's window has passed (every snapshot it can
/// have made started and listed). A failed write leaves the intent, which
/// still proves them; the next tick tries again. Returns how many were
/// recorded.
pub(crate) async fn record_lost_answers(
    ledger: &dyn Ledger,
    owned: &[Snapshot],
    lost: Vec<LostAnswer>,
    now: DateTime<Utc>,
) -> usize {
    let mut by_claim: BTreeMap<AskedKey, Vec<LostAnswer>> = BTreeMap::new();
    for l in lost.into_iter().filter(|l| l.settled(now)) {
        by_claim.entry(l.claim.clone()).or_default().push(l);
    }
    let mut recorded = 0;
    for (claim, answers) in by_claim {
        let mut all = true;
        for l in &answers {
            let Some(s) = owned.iter().find(|s| s.id == l.snapshot_id) else {
                all = false;
                continue;
            };
            let (Some(volume_id), Some(started)) = (s.volume_id.clone(), s.start_time) else {
                all = false;
                continue;
            };
            let record = CreationRecord {
                snapshot_id: s.id.clone(),
                volume_id,
                policy: claim.1.clone(),
                slot: claim.2,
                created_at: started,
            };
            match ledger.record_creation(&record).await {
                Ok(()) => recorded += 1,
                Err(e) => {
                    tracing::warn!(snapshot_id = %s.id, error = %e, "could not record a lost answer's snapshot; its intent stays and proves it");
                    all = false;
                }
            }
        }
        if all {
            if let Err(e) = ledger.forget_ask(&claim).await {
                tracing::warn!(error = %e, "could not remove a creation intent (harmless)");
            }
        }
    }
    recorded
}

/// The intent is no longer needed. Left behind, it only proves what its
/// claim's run could have started, and expires with the table's TTL.
async fn forget(run: &Run<'_>, intent: &CreationIntent) {
    if let Err(e) = run.ports.ledger.forget_ask(&intent.claim).await {
        tracing::warn!(error = %e, "could not remove a creation intent (harmless)");
    }
}

/// One creation call under the run's bucket. A call EC2 throttled past the
/// SDK's retries did not start anything (`RequestLimitExceeded` refuses the
/// request), so it is made again once the slowed bucket allows, while the
/// run has time; any other answer is final.
async fn paced<T, Fut>(run: &Run<'_>, call: impl Fn() -> Fut) -> Result<T, Ec2Error>
where
    Fut: std::future::Future<Output = Result<T, Ec2Error>>,
{
    loop {
        run.ports.bucket.acquire().await;
        match call().await {
            Err(Ec2Error::Throttled { .. }) if !run.deadline.is_near() => {
                run.ports.bucket.throttled().await;
            }
            answer => {
                if answer.is_ok() {
                    run.ports.bucket.succeeded().await;
                }
                return answer;
            }
        }
    }
}

fn labels(
    config: &Config,
    policy: &Policy,
    slot: DateTime<Utc>,
    now: DateTime<Utc>,
    consistency: ConsistencyLabel,
) -> LifecycleLabels {
    LifecycleLabels {
        managed_by: config.deployment_name().to_string(),
        policy: policy.name.clone(),
        slot,
        state: LifecycleState::Pending,
        volume_id: None,
        instance_id: None,
        device: None,
        created_at: now,
        completed_at: None,
        consistency,
        retained_by: None,
        expires_at: None,
        hold: false,
    }
}

/// The Description that proves the snapshot is this deployment's
/// (docs/policies-and-tags.md, "Ownership"): EC2 never lets it change.
fn description(config: &Config, subject: Subject, policy: &Policy, slot: DateTime<Utc>) -> String {
    config.identity.scheduled(&subject, &policy.name, slot)
}

/// Step 5 for a volume opted in on its own: one CreateSnapshot, unless the
/// deadline is near.
pub(crate) async fn volume(
    run: &Run<'_>,
    target: VolumeTarget,
    policy: &Policy,
    slot: DateTime<Utc>,
) -> Done {
    let volume = &target.volume;
    if run.deadline.is_near() {
        return (left(std::slice::from_ref(&volume.id), policy), None).into();
    }
    // `application` and `stopped` act on opted-in instances; a volume
    // opted in on its own is taken crash-consistent, and says so.
    let consistency = match policy.consistency {
        Consistency::Application | Consistency::Stopped => ConsistencyLabel::CrashFallback,
        _ => ConsistencyLabel::Crash,
    };
    let mut l = labels(run.config, policy, slot, run.now, consistency);
    l.volume_id = Some(volume.id.clone());
    l.instance_id = volume.attachment.as_ref().map(|a| a.instance_id.clone());
    l.device = volume.attachment.as_ref().map(|a| a.device.clone());
    let instance_tags = target.instance.as_ref().map(|i| &i.tags);
    let set = compose_snapshot_tags(
        &l,
        &snapshot_name(volume, target.instance.as_ref()),
        policy,
        &copied_tags(&policy.copy_tags, &volume.tags, instance_tags),
    );
    let skipped = skipped(&volume.id, &set.skipped);
    let request = CreateSnapshotRequest {
        volume_id: volume.id.clone(),
        description: description(run.config, Subject::Volume(volume.id.clone()), policy, slot),
        tags: set.tags,
    };
    let creation = Creation {
        subject: Subject::Volume(volume.id.clone()),
        policy,
        slot,
        due: std::slice::from_ref(&volume.id),
        instance_id: l.instance_id,
        consistency,
    };
    let outcome = creation
        .make(run, || async {
            run.ports
                .creator
                .create_snapshot(&request)
                .await
                .map(|s| vec![s])
        })
        .await;
    (outcome, skipped).into()
}

/// The due volumes, left for the next tick.
pub(crate) fn left(due: &[String], policy: &Policy) -> Outcome {
    Outcome::Left(
        due.iter()
            .map(|volume_id| LeftForLater {
                volume_id: volume_id.clone(),
                policy: policy.name.clone(),
            })
            .collect(),
    )
}

/// One CreateSnapshots call for the instance's due volumes, labelled with
/// how they were taken.
pub(crate) async fn take_instance_snapshots(
    run: &Run<'_>,
    target: &InstanceTarget,
    due: &[String],
    policy: &Policy,
    slot: DateTime<Utc>,
    consistency: ConsistencyLabel,
) -> (Outcome, Option<SkippedTags>) {
    let instance = &target.instance;
    let mut l = labels(run.config, policy, slot, run.now, consistency);
    l.instance_id = Some(instance.id.clone());
    // One tag set covers every volume of the set, so per-volume tags
    // (volume id, device, the volume's own tags) cannot be given here;
    // EC2's VolumeId attribute identifies each snapshot's volume.
    let name = instance
        .name()
        .filter(|n| !n.is_empty())
        .unwrap_or(&instance.id);
    let set = compose_snapshot_tags(
        &l,
        name,
        policy,
        &copied_tags(&policy.copy_tags, &Tags::new(), Some(&instance.tags)),
    );
    let skipped = skipped(&instance.id, &set.skipped);
    let description = description(
        run.config,
        Subject::Instance(instance.id.clone()),
        policy,
        slot,
    );
    let request = instance_request(target, due, description, set.tags);
    let creation = Creation {
        subject: Subject::Instance(instance.id.clone()),
        policy,
        slot,
        due,
        instance_id: Some(instance.id.clone()),
        consistency,
    };
    let outcome = creation
        .make(run, || {
            run.ports.creator.create_instance_snapshots(&request)
        })
        .await;
    (outcome, skipped)
}

/// CreateSnapshots takes the boot volume out with a flag and data volumes by id.
fn instance_request(
    target: &InstanceTarget,
    due: &[String],
    description: String,
    tags: Tags,
) -> CreateInstanceSnapshotsRequest {
    let instance = &target.instance;
    let root_volume = instance
        .volumes
        .iter()
        .find(|b| Some(&b.device) == instance.root_device.as_ref())
        .map(|b| b.volume_id.as_str());
    let attached: BTreeSet<&str> = instance
        .volumes
        .iter()
        .map(|b| b.volume_id.as_str())
        .chain(target.volumes.iter().map(|v| v.id.as_str()))
        .chain(target.excluded_volume_ids.iter().map(String::as_str))
        .collect();
    let excluded: Vec<&str> = attached
        .into_iter()
        .filter(|id| !due.iter().any(|d| d == id))
        .collect();
    CreateInstanceSnapshotsRequest {
        instance_id: instance.id.clone(),
        exclude_boot_volume: root_volume.is_some_and(|r| excluded.contains(&r)),
        exclude_volume_ids: excluded
            .into_iter()
            .filter(|id| Some(*id) != root_volume)
            .map(String::from)
            .collect(),
        description,
        tags,
    }
}

/// Every due volume failed for one reason: they stay due.
pub(crate) fn failed_all(
    due: &[String],
    policy: &Policy,
    instance_id: Option<&str>,
    kind: &str,
    error: String,
) -> Outcome {
    Outcome::Failed(
        due.iter()
            .map(|volume_id| Failed {
                volume_id: volume_id.clone(),
                policy: policy.name.clone(),
                instance_id: instance_id.map(String::from),
                error_kind: kind.to_string(),
                error: error.clone(),
            })
            .collect(),
    )
}

fn skipped(resource_id: &str, skipped: &[tags::SkippedTag]) -> Option<SkippedTags> {
    (!skipped.is_empty()).then(|| SkippedTags {
        resource_id: resource_id.to_string(),
        tags: skipped.to_vec(),
    })
}

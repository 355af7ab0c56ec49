//! create-snapshots: on every scheduler tick, snapshot each opted-in volume
//! that is due in its policy's current slot.
//!
//! One run, in order:
//! 1. list opted-in volumes and instances (server-side tag filters), and the
//!    volumes attached to those instances;
//! 2. resolve each to its policy (`ebs_lifecycle_core::targets`); unknown policies
//!    are reported;
//! 3. for each policy, find the current slot and ask EC2 once which volumes
//!    already have a pending or completed snapshot for it (steps 1 to 3 are
//!    `ebs_lifecycle::services::due`, which `ebs-lifecycle plan` reads too);
//! 4. restart any instance an earlier run stopped for a `stopped` snapshot
//!    and did not start again (a crash, a stop slower than the deadline);
//! 5. start a snapshot for every volume that has none ([`execute`]), with every tag at
//!    creation, a bounded number at a time, until the deadline nears.
//!    Instances under an `application` or `stopped` policy go through
//!    [`consistent`] (freeze and thaw through SSM, or stop and start), a
//!    few instances at a time;
//! 6. log and return a run summary, emit metrics, and notify when anything
//!    failed or named an unknown policy, and once per instance whose
//!    snapshot could not be taken as consistently as asked.
//!
//! The handler is a plain async function of its ports, so tests drive it
//! directly against moto or against mocked SDK clients.

mod consistent;
mod execute;

use ebs_lifecycle_core::tags::ConsistencyLabel;
use execute::{take_instance_snapshots, Done, Outcome, Run, Work};

pub use consistent::ConsistencyFailure;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
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
pub use ebs_lifecycle::pacing::Bucket;
pub use ebs_lifecycle::pacing::BucketPacing;
use ebs_lifecycle::ports::commands::CommandRunner;
use ebs_lifecycle::ports::ec2::{
    Ec2Error, InstanceControl, SnapshotCatalog, SnapshotCreator, VolumeInventory,
};
use ebs_lifecycle::ports::ledger::Ledger;
use ebs_lifecycle::ports::notifier::Notifier;
use ebs_lifecycle::services::commands::PacedRunner;
use ebs_lifecycle::services::due::{self, Due};
use ebs_lifecycle_core::events::{EventError, Tick};
use ebs_lifecycle_core::notify::{DailyMemo, Notification, NotificationKind, Severity};
use ebs_lifecycle_core::policy::Consistency;
use ebs_lifecycle_core::tags;
use ebs_lifecycle_core::targets::{Target, UnknownPolicy};

pub const FUNCTION: &str = "create-snapshots";

/// Creation calls in flight at once. The bucket ([`CREATE_PACING`]) decides
/// the pace; this only bounds what waits on it: within the burst, 32 calls
/// at 60 ms latency start 100 snapshots in about 0.2 s.
pub const CONCURRENCY: usize = 32;

/// CreateSnapshot and CreateSnapshots share EC2's bucket
/// (`ebs_lifecycle::pacing::CREATE_SNAPSHOT` says how and why).
pub const CREATE_PACING: BucketPacing = ebs_lifecycle::pacing::CREATE_SNAPSHOT;

/// Instances frozen or stopped at once. Each holds a few SSM or EC2 calls a
/// second while it waits; four keeps the run's SSM calls inside
/// [`Waits::PRODUCTION`]'s pace and bounds how many applications are held
/// at once if something goes wrong.
pub(crate) const CONSISTENCY_CONCURRENCY: usize = 4;

/// The ports this function uses.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub inventory: &'a dyn VolumeInventory,
    pub catalog: &'a dyn SnapshotCatalog,
    pub creator: &'a dyn SnapshotCreator,
    pub notifier: &'a dyn Notifier,
    /// SSM Run Command, for `application` policies.
    pub commands: &'a dyn CommandRunner,
    /// Stopping and starting instances, for `stopped` policies.
    pub instances: &'a dyn InstanceControl,
    /// The stack's own record of the instances it stopped: the only thing
    /// that lets a run start an instance (a tag anyone could write).
    pub ledger: &'a dyn Ledger,
    pub waits: Waits,
    /// The pace of CreateSnapshot(s): a bucket of [`CREATE_PACING`] kept
    /// by the execution environment, so a tick that follows one which
    /// spent EC2's bucket does not start with a full one.
    pub bucket: &'a Bucket,
    /// What this execution environment notified in the last day (a repeating
    /// condition is notified once a day).
    pub memo: &'a DailyMemo,
}

/// How often the function looks, and how long it waits, while an instance
/// is frozen or stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    /// Between two reads of a command's status.
    pub command_poll: Duration,
    /// Between two SSM calls of the whole run (SendCommand and
    /// GetCommandInvocation are throttled per account and region).
    pub ssm_spacing: Duration,
    /// Between two reads of a stopping instance's state.
    pub instance_poll: Duration,
    /// How long a stop may take before the run gives up on the instance
    /// (it is then started by a later run, never left stopped).
    pub stop_timeout: Duration,
    /// How long after the default freeze command was sent a snapshot may
    /// still start and be labelled `application`: the freeze's watchdog
    /// thaws `FREEZE_WATCHDOG` after the last freeze, which is no earlier
    /// than the send; a margin is kept for the call itself.
    pub freeze_window: Duration,
}

impl Waits {
    /// Lambda's values: 10 SSM calls a second for the whole run at most,
    /// instance state every 5 s (EC2's own waiters poll every 15 s), stops
    /// of up to 5 minutes (most take under one).
    pub const PRODUCTION: Waits = Waits {
        command_poll: Duration::from_secs(1),
        ssm_spacing: Duration::from_millis(100),
        instance_poll: Duration::from_secs(5),
        stop_timeout: Duration::from_secs(300),
        freeze_window: Duration::from_secs(
            ebs_lifecycle_core::consistency::FREEZE_WATCHDOG.as_secs() - 15,
        ),
    };
}

/// Why a whole run failed. Per-volume failures are not errors: they are in
/// the summary and the run goes on.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("rejected event: {0}")]
    InvalidEvent(#[from] EventError),
    #[error("could not list the opted-in volumes and instances: {0}")]
    InventoryUnavailable(Ec2Error),
}

impl ErrorType for CreateError {
    fn error_type(&self) -> &'static str {
        match self {
            CreateError::InvalidEvent(_) => "InvalidEvent",
            CreateError::InventoryUnavailable(_) => "InventoryUnavailable",
        }
    }
}

impl From<CreateError> for Diagnostic {
    fn from(error: CreateError) -> Self {
        function::diagnostic(&error)
    }
}

/// One snapshot started by this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Created {
    pub volume_id: String,
    pub snapshot_id: String,
    pub policy: String,
    pub slot: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// How it was taken (`lifecycle:consistency`).
    pub consistency: &'static str,
}

/// A volume not snapshotted this run because something failed. It stays due,
/// so the next tick tries again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failed {
    pub volume_id: String,
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Stable short name, e.g. `volume-not-found`, `concurrent-snapshot-limit`.
    pub error_kind: String,
    pub error: String,
}

/// A due volume not started because the invocation's deadline came near.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeftForLater {
    pub volume_id: String,
    pub policy: String,
}

/// The tags that could not be put on the snapshot(s) of one volume or instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedTags {
    /// The volume, or the instance for a multi-volume set.
    pub resource_id: String,
    pub tags: Vec<tags::SkippedTag>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Volumes covered by a known policy.
    pub targeted: usize,
    pub created: usize,
    pub not_due: usize,
    pub failed: usize,
    /// Resources whose selector tag names no policy.
    pub unknown_policy: usize,
    pub left_for_later: usize,
    /// Instances whose snapshot could not be taken as consistently as asked,
    /// or whose stop or start failed.
    pub consistency_failed: usize,
    /// Instances an earlier run left stopped, started again by this one.
    pub restarted: usize,
}

/// What one run did, returned as the invocation's result and logged.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    /// `time` is the run's clock reading, which decides the current slots.
    #[serde(flatten)]
    pub header: RunHeader,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<String>,
    pub counts: Counts,
    pub created: Vec<Created>,
    pub failed: Vec<Failed>,
    pub unknown_policies: Vec<UnknownPolicy>,
    pub left_for_later: Vec<LeftForLater>,
    pub skipped_tags: Vec<SkippedTags>,
    pub consistency_failures: Vec<ConsistencyFailure>,
    /// Instances an earlier run stopped for a snapshot and left stopped.
    pub restarted: Vec<String>,
    /// Snapshots whose CreateSnapshot(s) answer an earlier run lost, proven
    /// by its intent alone until this run recorded them.
    #[serde(skip_serializing_if = "is_zero")]
    pub lost_answers_recorded: usize,
    /// Failed volumes and unknown policy names not notified because the
    /// same condition was notified in the last 24 hours (they are in this summary).
    #[serde(skip_serializing_if = "is_zero")]
    pub repeats_not_notified: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// create-snapshots, as the skeleton runs it ([`Function`]).
pub struct CreateSnapshots;

impl Function for CreateSnapshots {
    const NAME: &'static str = FUNCTION;
    type Ports<'p> = Ports<'p>;
    type Trigger = Tick;
    type Summary = RunSummary;
    type Error = CreateError;

    fn ledger<'p>(ports: &Self::Ports<'p>) -> &'p dyn Ledger {
        ports.ledger
    }

    fn notifier<'p>(ports: &Self::Ports<'p>) -> &'p dyn Notifier {
        ports.notifier
    }

    fn open(run: &FunctionRun<'_>, event: &Value) -> Result<(Tick, RunSummary), CreateError> {
        let tick = Tick::parse(event)?;
        let summary = RunSummary {
            header: RunHeader::new(FUNCTION, run.config, run.now, "tick"),
            scheduled_time: tick.scheduled_time.map(tags::format_time),
            ..RunSummary::default()
        };
        Ok((tick, summary))
    }

    async fn execute(
        ports: Self::Ports<'_>,
        run: &FunctionRun<'_>,
        _tick: Tick,
        summary: &mut RunSummary,
    ) -> Result<Ran, CreateError> {
        let (config, now, deadline) = (run.config, run.now, run.deadline);
        // Before a snapshot is made on a schedule, the stack records that
        // schedule: after a change, the history made under the old one stays
        // proven by this record.
        ebs_lifecycle::services::ownership::record_schedules(ports.ledger, config, now).await;
        // And every snapshot it makes is recorded as it is made, from the
        // first run on: a snapshot made by hand with a slot's Description then
        // proves nothing (docs/policies-and-tags.md, "Ownership").
        if let Err(e) = ports.ledger.begin_creations(now).await {
            tracing::warn!(error = %e, "could not mark when creation records began; marked next tick");
        }

        let resolution = due::discover(ports.inventory, config)
            .await
            .map_err(CreateError::InventoryUnavailable)?;
        summary.counts.targeted = resolution.volume_count();
        summary.unknown_policies = resolution.unknown_policies;

        let work = plan(
            ports.catalog,
            ports.ledger,
            config,
            resolution.targets,
            now,
            deadline,
            summary,
        )
        .await;

        carry_out(ports, config, now, deadline, work, summary).await;
        count(summary);
        Ok(Ran::done())
    }

    async fn notifications(
        ports: Self::Ports<'_>,
        run: &FunctionRun<'_>,
        summary: &mut RunSummary,
    ) -> Vec<Notification> {
        notifications(run.config, summary, ports.memo, run.now)
    }
}

/// Carry out the planned work: first restart what this deployment stopped
/// and left stopped (but for instances this run stops itself), then every
/// snapshot, [`CONCURRENCY`] at a time.
async fn carry_out(
    ports: Ports<'_>,
    config: &Config,
    now: DateTime<Utc>,
    deadline: Deadline,
    work: Vec<Work<'_>>,
    summary: &mut RunSummary,
) {
    // What this deployment stopped, by its own record.
    let stops = match ports.ledger.stops().await {
        Ok(stops) => stops,
        Err(e) => {
            tracing::error!(error = %e, "could not read the instances this deployment stopped; none is started this run, the next run looks again");
            Vec::new()
        }
    };
    let run = Run {
        ports,
        config,
        now,
        deadline,
        stops,
        commands: PacedRunner::new(ports.commands, ports.waits.ssm_spacing),
        consistency_slots: tokio::sync::Semaphore::new(CONSISTENCY_CONCURRENCY),
    };

    // Instances this run will stop and start itself are left to that work.
    let stopping_now: BTreeSet<String> = work
        .iter()
        .filter_map(|w| match w {
            Work::Instance { target, policy, .. } if policy.consistency == Consistency::Stopped => {
                Some(target.instance.id.clone())
            }
            _ => None,
        })
        .collect();
    let (restarted, failures) = consistent::restart_left_stopped(&run, &stopping_now).await;
    summary.restarted = restarted;
    summary.consistency_failures = failures;

    let mut outcomes = stream::iter(work)
        .map(|w| carry(&run, w))
        .buffer_unordered(CONCURRENCY);
    while let Some(done) = outcomes.next().await {
        summary.skipped_tags.extend(done.skipped);
        summary
            .consistency_failures
            .extend(done.consistency_failures);
        match done.outcome {
            Outcome::Created(c) => summary.created.extend(c),
            Outcome::Failed(f) => summary.failed.extend(f),
            Outcome::Left(l) => summary.left_for_later.extend(l),
        }
    }
    drop(outcomes);
}

/// Step 5: one unit of work, one call to EC2 (around it, for
/// `application` and `stopped` instances, the commands or the stop and
/// start), unless the deadline is near.
async fn carry(run: &Run<'_>, work: Work<'_>) -> Done {
    match work {
        Work::Volume {
            target,
            policy,
            slot,
        } => execute::volume(run, target, policy, slot).await,
        Work::Instance {
            target,
            due,
            policy,
            slot,
        } => {
            // `stopped` watches the deadline itself: an instance an earlier
            // run left stopped is started even when this one has no time.
            if run.deadline.is_near() && policy.consistency != Consistency::Stopped {
                return (execute::left(&due, policy), None).into();
            }
            match (policy.consistency, &policy.application) {
                (Consistency::Application, Some(commands)) => {
                    consistent::application(run, &target, &due, policy, slot, commands).await
                }
                (Consistency::Stopped, _) => {
                    consistent::stopped(run, &target, &due, policy, slot).await
                }
                _ => take_instance_snapshots(
                    run,
                    &target,
                    &due,
                    policy,
                    slot,
                    ConsistencyLabel::Instance,
                )
                .await
                .into(),
            }
        }
    }
}

/// Handle one tick: discover, plan, create, summarise, notify.
pub async fn handle(
    ports: Ports<'_>,
    config: &Config,
    event: &Value,
    now: DateTime<Utc>,
    deadline: Deadline,
) -> Result<RunSummary, CreateError> {
    function::invoke::<CreateSnapshots>(ports, config, event, now, deadline).await
}

/// Step 3: per policy, its current slot and what of it is still to be
/// made (`services::due`), as work for step 5.
async fn plan<'p>(
    catalog: &dyn SnapshotCatalog,
    ledger: &dyn Ledger,
    config: &'p Config,
    targets: Vec<Target>,
    now: DateTime<Utc>,
    deadline: Deadline,
    summary: &mut RunSummary,
) -> Vec<Work<'p>> {
    let mut work = Vec::new();
    for (name, targets) in due::by_policy(targets) {
        // Resolution only yields targets of known policies.
        let Some(policy) = config.policies.get(&name) else {
            continue;
        };
        let all_volumes = || {
            targets
                .iter()
                .flat_map(|t| t.volume_ids())
                .map(String::from)
        };
        if deadline.is_near() {
            summary
                .left_for_later
                .extend(all_volumes().map(|volume_id| LeftForLater {
                    volume_id,
                    policy: name.clone(),
                }));
            continue;
        }
        let Some(slot) = policy.schedule.slot_at(now) else {
            summary.failed.extend(all_volumes().map(|volume_id| Failed {
                volume_id,
                policy: name.clone(),
                instance_id: None,
                error_kind: "no-slot".into(),
                error: format!(
                    "schedule `{}` has no slot before now",
                    policy.schedule.expression()
                ),
            }));
            continue;
        };
        let filled = match due::filled(catalog, ledger, config, &name, slot, now).await {
            Ok(mut filled) => {
                let lost = std::mem::take(&mut filled.lost_answers);
                summary.lost_answers_recorded +=
                    execute::record_lost_answers(ledger, &filled.owned, lost, now).await;
                filled.volume_ids
            }
            Err(e) => {
                // Without knowing what exists, creating could duplicate: skip, retry next tick.
                summary.failed.extend(all_volumes().map(|volume_id| Failed {
                    volume_id,
                    policy: name.clone(),
                    instance_id: None,
                    error_kind: e.kind().into(),
                    error: e.to_string(),
                }));
                continue;
            }
        };
        let (due, not_due) = due::due(targets, &filled);
        summary.counts.not_due += not_due;
        work.extend(due.into_iter().map(|d| match d {
            Due::Volume(target) => Work::Volume {
                target,
                policy,
                slot,
            },
            Due::Instance { target, due } => Work::Instance {
                target,
                due,
                policy,
                slot,
            },
        }));
    }
    work
}

/// Step 5: counts, metrics, log, notifications.
fn count(summary: &mut RunSummary) {
    summary
        .created
        .sort_by(|a, b| a.volume_id.cmp(&b.volume_id));
    summary.failed.sort_by(|a, b| a.volume_id.cmp(&b.volume_id));
    summary
        .left_for_later
        .sort_by(|a, b| a.volume_id.cmp(&b.volume_id));
    summary.counts.created = summary.created.len();
    summary.counts.failed = summary.failed.len();
    summary.counts.unknown_policy = summary.unknown_policies.len();
    summary.counts.left_for_later = summary.left_for_later.len();
    summary
        .consistency_failures
        .sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    summary.counts.consistency_failed = summary
        .consistency_failures
        .iter()
        .map(|f| f.instance_id.as_str())
        .collect::<BTreeSet<_>>()
        .len();
    summary.counts.restarted = summary.restarted.len();
}

impl Summary for RunSummary {
    fn header(&mut self) -> &mut RunHeader {
        &mut self.header
    }

    fn headline(&self) -> String {
        headline(&self.counts)
    }

    fn metrics(&self, _suspects: usize) -> Vec<(Metric, u64)> {
        let c = self.counts;
        vec![
            (Metric::ResourcesTargeted, c.targeted as u64),
            (Metric::SnapshotsCreateStarted, c.created as u64),
            (Metric::SnapshotsCreateFailed, c.failed as u64),
        ]
    }
}

/// What the run tells people, from its summary: one `consistency-failed`
/// per instance (its owner needs the command's output and what became of
/// the snapshot, not the whole run), and a `run-summary` when a volume
/// failed or a tag named an unknown policy, if one of those conditions was
/// not notified in the last 24 hours (a typo in a tag would otherwise alert at
/// every tick).
pub fn notifications(
    config: &Config,
    summary: &mut RunSummary,
    memo: &DailyMemo,
    now: DateTime<Utc>,
) -> Vec<Notification> {
    let mut out: Vec<Notification> = summary
        .consistency_failures
        .iter()
        .map(|f| f.notification(config.deployment_name()))
        .collect();
    let conditions = summary
        .failed
        .iter()
        .map(|f| format!("failed {} {}", f.volume_id, f.error_kind))
        .chain(
            summary
                .unknown_policies
                .iter()
                .map(|u| format!("unknown-policy {} {}", u.resource_id, u.policy)),
        );
    let (new, repeats) = memo.sort_out(conditions, now);
    summary.repeats_not_notified = repeats;
    if new > 0 {
        out.push(Notification {
            kind: NotificationKind::RunSummary,
            severity: Severity::Warning,
            deployment: config.deployment_name().to_string(),
            summary: headline(&summary.counts),
            details: json!(summary),
        });
    }
    out
}

/// One human line: what a person reading the subject needs first.
pub fn headline(c: &Counts) -> String {
    let mut parts = vec![format!("{} snapshots started", c.created)];
    if c.failed > 0 {
        parts.push(format!("{} volumes failed", c.failed));
    }
    if c.unknown_policy > 0 {
        parts.push(format!("{} with an unknown policy", c.unknown_policy));
    }
    if c.left_for_later > 0 {
        parts.push(format!("{} left for the next tick", c.left_for_later));
    }
    if c.consistency_failed > 0 {
        parts.push(format!(
            "{} instances not as consistent as asked",
            c.consistency_failed
        ));
    }
    if c.restarted > 0 {
        parts.push(format!("{} stopped instances started again", c.restarted));
    }
    format!("create-snapshots: {}", parts.join(", "))
}

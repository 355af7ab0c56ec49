//! `application` and `stopped` snapshots of an instance: what happens
//! around the one CreateSnapshots call, and the promise that nothing is
//! left frozen or stopped.
//!
//! - `application`: the pre command (flush and freeze, or the user's own)
//!   through SSM, then CreateSnapshots, then the post command (thaw) on
//!   every path once a pre command was sent: after a failed or timed-out
//!   pre command (it may have frozen part-way), after a failed
//!   CreateSnapshots, and when the deadline came near. The default freeze
//!   carries its own watchdog on the instance for the one path code cannot
//!   cover: the function dying between the two commands.
//! - `stopped`: only for instances tagged `lifecycle:allow-stop=true`.
//!   The stop is recorded in the stack's ledger (and the instance marked
//!   `lifecycle:stopped-for-snapshot`, for people) *before* it is stopped,
//!   and both go once it runs again, so a run that dies in between leaves a
//!   record that every later run looks for ([`restart_left_stopped`]). Only
//!   the record starts an instance: the tag anyone can write. An instance
//!   its owner had stopped is snapshotted as it is and left stopped.
//!
//! Every departure from what the policy asked is a [`ConsistencyFailure`],
//! published as one `consistency-failed` notification per instance.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use ebs_lifecycle::ports::commands::InstanceCommand;
use ebs_lifecycle::ports::ec2::Ec2Error;
use ebs_lifecycle::ports::ledger::StopRecord;
use ebs_lifecycle::services::commands::run_command;
use ebs_lifecycle_core::consistency::{
    decide, freeze_script, needs_thaw, stop_plan, thaw_script, CommandOutcome, Decision,
    FreezeParameters, FrozenVolume, StopPlan, FREEZE_WATCHDOG,
};
use ebs_lifecycle_core::notify::{Notification, NotificationKind, Severity};
use ebs_lifecycle_core::policy::{ApplicationCommands, Policy};
use ebs_lifecycle_core::tags::{self, ConsistencyLabel};
use ebs_lifecycle_core::targets::InstanceTarget;

use crate::execute::{failed_all, left, take_instance_snapshots, Done, Outcome, Run};

/// `Failed.error_kind` of volumes a policy with `on_command_failure: skip`
/// did not snapshot.
pub(crate) const SKIPPED_KIND: &str = "consistency-skipped";

/// Time kept after a stop for the snapshot and the start.
const AFTER_STOP: std::time::Duration = std::time::Duration::from_secs(60);

/// One instance whose snapshot was not taken as consistently as its policy
/// asked, or whose stop or start failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsistencyFailure {
    pub instance_id: String,
    pub policy: String,
    /// `pre-command`, `post-command`, `stop` or `start`.
    pub step: &'static str,
    /// Why, in a stable short word: `failed`, `timed-out`, `not-managed`,
    /// `not-allowed`, `not-stopped-in-time`, or an EC2 error kind.
    pub reason: String,
    /// The command's output (its end), or the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// What became of the snapshot and of the instance.
    pub outcome: String,
}

impl ConsistencyFailure {
    /// An instance possibly left stopped is critical; the rest is a warning.
    fn severity(&self) -> Severity {
        match self.step {
            "start" | "stop" if self.reason != "not-allowed" => Severity::Critical,
            _ => Severity::Warning,
        }
    }

    pub fn notification(&self, deployment: &str) -> Notification {
        Notification {
            kind: NotificationKind::ConsistencyFailed,
            severity: self.severity(),
            deployment: deployment.to_string(),
            summary: format!(
                "{} ({}): {} {}; {}",
                self.instance_id, self.policy, self.step, self.reason, self.outcome
            ),
            details: json!(self),
        }
    }
}

/// What became of the snapshot, in words for the failure's `outcome`.
fn snapshot_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Created(c) => match c.first() {
            Some(first) => format!("{} snapshot taken", first.consistency),
            None => "no volume was snapshotted".into(),
        },
        Outcome::Failed(f) if f.iter().any(|f| f.error_kind == SKIPPED_KIND) => {
            "skipped (on_command_failure: skip); the next tick tries again".into()
        }
        Outcome::Failed(f) => format!(
            "snapshot failed ({}); the next tick tries again",
            f.first()
                .map(|f| f.error_kind.as_str())
                .unwrap_or("unknown")
        ),
        Outcome::Left(_) => "left for the next tick (deadline)".into(),
    }
}

fn failure(
    target: &InstanceTarget,
    step: &'static str,
    reason: impl Into<String>,
    output: Option<String>,
    outcome: String,
) -> ConsistencyFailure {
    ConsistencyFailure {
        instance_id: target.instance.id.clone(),
        policy: target.policy.clone(),
        step,
        reason: reason.into(),
        output,
        outcome,
    }
}

/// The pre and post commands of a policy for this set of volumes.
fn commands_for(
    target: &InstanceTarget,
    due: &[String],
    commands: &ApplicationCommands,
    stack_document: Option<&str>,
) -> (Option<InstanceCommand>, InstanceCommand) {
    if let Some(name) = &commands.document {
        return (
            Some(InstanceCommand::Document {
                name: name.clone(),
                phase: "pre-script",
            }),
            InstanceCommand::Document {
                name: name.clone(),
                phase: "post-script",
            },
        );
    }
    let frozen = || -> Vec<FrozenVolume> {
        target
            .volumes
            .iter()
            .filter(|v| due.contains(&v.id))
            .filter_map(|v| {
                Some(FrozenVolume {
                    volume_id: v.id.clone(),
                    device: v.attachment.as_ref()?.device.clone(),
                })
            })
            .collect()
    };
    // The default freeze and thaw: the stack's own document when the
    // template gave one (the role may then run nothing else by default).
    if let (None, None, Some(name)) = (
        &commands.pre_command,
        &commands.post_command,
        stack_document,
    ) {
        let pre = FreezeParameters::of(&frozen(), FREEZE_WATCHDOG).map(|p| {
            InstanceCommand::StackDocument {
                name: name.to_string(),
                parameters: vec![
                    ("action", "freeze".into()),
                    ("serials", p.serials),
                    ("devices", p.devices),
                    ("watchdog", p.watchdog),
                ],
            }
        });
        let post = InstanceCommand::StackDocument {
            name: name.to_string(),
            parameters: vec![("action", "thaw".into())],
        };
        return (pre, post);
    }
    let pre = match &commands.pre_command {
        Some(script) => Some(script.clone()),
        None => freeze_script(&frozen(), FREEZE_WATCHDOG),
    };
    let post = commands.post_command.clone().unwrap_or_else(thaw_script);
    (
        pre.map(InstanceCommand::Shell),
        InstanceCommand::Shell(post),
    )
}

/// `consistency: application` for one instance.
pub(crate) async fn application(
    run: &Run<'_>,
    target: &InstanceTarget,
    due: &[String],
    policy: &Policy,
    slot: DateTime<Utc>,
    commands: &ApplicationCommands,
) -> Done {
    let instance = &target.instance;
    // The semaphore is never closed; without a permit, go on regardless.
    let _permit = run.consistency_slots.acquire().await.ok();
    if run.deadline.is_near() {
        return (left(due, policy), None).into();
    }
    if instance.state == "stopped" {
        // Nothing runs, nothing is mounted: consistent as it is.
        return take_instance_snapshots(run, target, due, policy, slot, ConsistencyLabel::Stopped)
            .await
            .into();
    }

    let (pre, post) = commands_for(
        target,
        due,
        commands,
        run.config.consistency_document.as_deref(),
    );
    // The default freeze is thawed by its watchdog FREEZE_WATCHDOG after the
    // last freeze, and no freeze is earlier than this.
    let sent_at = tokio::time::Instant::now();
    let default_freeze = commands.pre_command.is_none() && commands.document.is_none();
    let pre_outcome = match &pre {
        Some(command) => {
            run_command(
                &run.commands,
                &instance.id,
                command,
                commands.timeout,
                run.deadline,
                run.ports.waits.command_poll,
            )
            .await
        }
        // Not sent: nothing to thaw afterwards.
        None => CommandOutcome::Failed {
            output: "the freeze script was not built: a volume id or device name holds characters a script must not get".into(),
        },
    };

    let mut late_freeze = None;
    let (outcome, skipped) = match decide(&pre_outcome, commands.on_failure) {
        // The wait may have used the invocation up; thaw and leave it.
        _ if run.deadline.is_near() => (left(due, policy), None),
        Decision::Snapshot(ConsistencyLabel::Application)
            if default_freeze && sent_at.elapsed() >= run.ports.waits.freeze_window =>
        {
            // The freeze may already be undone: not provably application-
            // consistent, so say what it is.
            late_freeze = Some(sent_at.elapsed());
            take_instance_snapshots(
                run,
                target,
                due,
                policy,
                slot,
                ConsistencyLabel::CrashFallback,
            )
            .await
        }
        Decision::Snapshot(label) => {
            take_instance_snapshots(run, target, due, policy, slot, label).await
        }
        Decision::Skip => (
            failed_all(
                due,
                policy,
                Some(&instance.id),
                SKIPPED_KIND,
                format!(
                    "the pre command {} and the policy says skip",
                    pre_outcome.kind()
                ),
            ),
            None,
        ),
    };

    let mut failures = Vec::new();
    if pre.is_some() && needs_thaw(&pre_outcome) {
        let post_outcome = run_command(
            &run.commands,
            &instance.id,
            &post,
            commands.timeout,
            run.deadline,
            run.ports.waits.command_poll,
        )
        .await;
        if post_outcome != CommandOutcome::Succeeded {
            tracing::error!(instance = %instance.id, outcome = post_outcome.kind(), "the post command did not succeed");
            failures.push(failure(
                target,
                "post-command",
                post_outcome.kind(),
                post_outcome.output().map(String::from),
                format!(
                    "{}; anything the default pre command froze is thawed by its watchdog {} s after the freeze",
                    snapshot_outcome(&outcome),
                    FREEZE_WATCHDOG.as_secs()
                ),
            ));
        }
    }
    if let Some(took) = late_freeze {
        failures.insert(
            0,
            failure(
                target,
                "pre-command",
                "freeze-window-passed",
                None,
                format!(
                    "{}; the freeze took {} s to report, and its watchdog may have thawed before the snapshot ({} s after the freeze): taken crash-consistent",
                    snapshot_outcome(&outcome),
                    took.as_secs(),
                    FREEZE_WATCHDOG.as_secs()
                ),
            ),
        );
    }
    if pre_outcome != CommandOutcome::Succeeded {
        failures.insert(
            0,
            failure(
                target,
                "pre-command",
                pre_outcome.kind(),
                pre_outcome.output().map(String::from),
                snapshot_outcome(&outcome),
            ),
        );
    }
    Done {
        outcome,
        skipped,
        consistency_failures: failures,
    }
}

/// `consistency: stopped` for one instance.
pub(crate) async fn stopped(
    run: &Run<'_>,
    target: &InstanceTarget,
    due: &[String],
    policy: &Policy,
    slot: DateTime<Utc>,
) -> Done {
    let instance = &target.instance;
    let id = instance.id.as_str();
    let _permit = run.consistency_slots.acquire().await.ok();
    // The stack's ledger, never the tag, says whether this deployment stopped it.
    let record = run.stops.iter().find(|r| r.instance_id == id);
    let ours = record.is_some_and(|r| stopped_by_us(r, instance.stopped_at));
    if record.is_some() && !ours && instance.state == "stopped" {
        // Someone else stopped it after our record went stale.
        forget_stop(run, id).await;
    }
    if run.deadline.is_near() {
        // Left for the next tick, but not left down: the restart pass
        // skipped this instance because this work was to handle it.
        let restart_failure = match (ours, instance.state.as_str()) {
            (true, "stopped") => {
                start_again(run, target, "left for the next tick (deadline)").await
            }
            _ => None,
        };
        return Done {
            outcome: left(due, policy),
            skipped: None,
            consistency_failures: restart_failure.into_iter().collect(),
        };
    }
    // The state listed at the start of the run may be minutes old.
    let state = match run.ports.instances.instance(id).await {
        Ok(Some(instance)) => instance.state,
        Ok(None) => {
            let e = Ec2Error::InstanceNotFound;
            return (
                failed_all(due, policy, Some(id), e.kind(), e.to_string()),
                None,
            )
                .into();
        }
        Err(e) => {
            return (
                failed_all(due, policy, Some(id), e.kind(), e.to_string()),
                None,
            )
                .into()
        }
    };

    match stop_plan(&state, tags::allows_stop(&instance.tags), ours) {
        StopPlan::SnapshotAsIs => {
            take_instance_snapshots(run, target, due, policy, slot, ConsistencyLabel::Stopped)
                .await
                .into()
        }
        StopPlan::Busy => (
            failed_all(
                due,
                policy,
                Some(id),
                "instance-busy",
                format!("the instance is {state}; the next tick tries again"),
            ),
            None,
        )
            .into(),
        StopPlan::NotAllowed => {
            let (outcome, skipped) = take_instance_snapshots(
                run,
                target,
                due,
                policy,
                slot,
                ConsistencyLabel::CrashFallback,
            )
            .await;
            let note = failure(
                target,
                "stop",
                "not-allowed",
                None,
                format!(
                    "{}; the instance was not stopped: tag it {}=true to allow it",
                    snapshot_outcome(&outcome),
                    tags::ALLOW_STOP
                ),
            );
            Done {
                outcome,
                skipped,
                consistency_failures: vec![note],
            }
        }
        StopPlan::StopAndRestart => {
            stop_snapshot_start(run, target, due, policy, slot, &state).await
        }
    }
}

async fn stop_snapshot_start(
    run: &Run<'_>,
    target: &InstanceTarget,
    due: &[String],
    policy: &Policy,
    slot: DateTime<Utc>,
    state: &str,
) -> Done {
    let id = target.instance.id.as_str();
    let control = run.ports.instances;
    let waits = run.ports.waits;
    let mut failures = Vec::new();

    // Not enough time left to stop, snapshot and start within this
    // invocation: do not begin. An instance an earlier run stopped is
    // started again now rather than kept down until the next tick.
    if run.deadline.remaining() < waits.stop_timeout + AFTER_STOP {
        if state == "stopped" {
            failures.extend(start_again(run, target, "left for the next tick (deadline)").await);
        }
        return Done {
            outcome: left(due, policy),
            skipped: None,
            consistency_failures: failures,
        };
    }

    if !matches!(state, "stopping" | "stopped") {
        // The record first: a run that dies after the stop leaves it
        // behind, and a later run starts the instance on its word alone.
        let record = StopRecord {
            instance_id: id.to_string(),
            policy: policy.name.clone(),
            stopped_at: run.now,
        };
        if let Err(e) = run.ports.ledger.record_stop(&record).await {
            return (
                failed_all(
                    due,
                    policy,
                    Some(id),
                    e.kind(),
                    format!("not stopped: could not record the stop first: {e}"),
                ),
                None,
            )
                .into();
        }
        // The tag is for people looking at the instance; it authorises nothing.
        if let Err(e) = control.mark_stopped(id, run.config.deployment_name()).await {
            tracing::warn!(instance = id, error = %e, "could not put the human-readable stop mark");
        }
        if let Err(e) = control.stop_instance(id).await {
            forget_stop(run, id).await;
            let outcome = failed_all(
                due,
                policy,
                Some(id),
                e.kind(),
                format!("could not stop it: {e}"),
            );
            failures.push(failure(
                target,
                "stop",
                e.kind(),
                Some(e.to_string()),
                snapshot_outcome(&outcome),
            ));
            return Done {
                outcome,
                skipped: None,
                consistency_failures: failures,
            };
        }
        tracing::info!(instance = id, "stopped for a snapshot");
    }

    if let Err(last) = wait_until_stopped(run, id).await {
        let outcome = failed_all(
            due,
            policy,
            Some(id),
            "not-stopped-in-time",
            format!("still {last} after {} s", waits.stop_timeout.as_secs()),
        );
        failures.push(failure(
            target,
            "stop",
            "not-stopped-in-time",
            Some(format!("state: {last}")),
            format!(
                "{}; the stack's ledger keeps its stop record and a later run starts it again",
                snapshot_outcome(&outcome)
            ),
        ));
        return Done {
            outcome,
            skipped: None,
            consistency_failures: failures,
        };
    }

    let (outcome, skipped) =
        take_instance_snapshots(run, target, due, policy, slot, ConsistencyLabel::Stopped).await;
    // Started again whatever became of the snapshot.
    let what = snapshot_outcome(&outcome);
    failures.extend(start_again(run, target, &what).await);
    Done {
        outcome,
        skipped,
        consistency_failures: failures,
    }
}

/// Read the instance every `instance_poll` until `judge` decides (given
/// what EC2 describes, `None` once it is gone), for at most `stop_timeout`
/// and never past the deadline. A failed read is not the instance's
/// failure: it is logged and the watch goes on. `Err` holds the last state
/// seen when time ran out.
async fn watch_instance<T>(
    run: &Run<'_>,
    id: &str,
    mut judge: impl FnMut(Option<ebs_lifecycle_core::model::Instance>) -> Option<T>,
) -> Result<T, String> {
    let waits = run.ports.waits;
    let give_up = tokio::time::Instant::now() + waits.stop_timeout;
    let mut last = String::from("unknown");
    loop {
        match run.ports.instances.instance(id).await {
            Ok(found) => {
                if let Some(i) = &found {
                    last.clone_from(&i.state);
                }
                if let Some(decided) = judge(found) {
                    return Ok(decided);
                }
            }
            Err(e) => {
                tracing::warn!(instance = id, error = %e, "reading the instance state failed")
            }
        }
        if tokio::time::Instant::now() + waits.instance_poll >= give_up || run.deadline.is_near() {
            return Err(last);
        }
        tokio::time::sleep(waits.instance_poll).await;
    }
}

/// Poll until the instance is stopped. `Err` holds the last state seen, or
/// `gone`.
async fn wait_until_stopped(run: &Run<'_>, id: &str) -> Result<(), String> {
    watch_instance(run, id, |found| match found {
        None => Some(Err("gone".to_string())),
        Some(i) if i.state == "stopped" => Some(Ok(())),
        Some(_) => None,
    })
    .await
    .and_then(|stopped| stopped)
}

/// Why a start did not end `running`: a stable kind and EC2's words.
struct NotStarted {
    kind: &'static str,
    detail: String,
}

/// Start an instance and wait until EC2 reports it `running`, for at most
/// `stop_timeout` and never past the deadline. EC2 accepts StartInstances
/// and may still fall back to `stopped` (a volume under a KMS key the
/// role may not grant EC2: `Client.InternalError`): an accepted call is not
/// a started instance.
async fn start_and_wait(run: &Run<'_>, id: &str) -> Result<(), NotStarted> {
    if let Err(e) = run.ports.instances.start_instance(id).await {
        return Err(NotStarted {
            kind: e.kind(),
            detail: e.to_string(),
        });
    }
    let mut seen_pending = false;
    let watched = watch_instance(run, id, |found| {
        let Some(i) = found else {
            return Some(Err(NotStarted {
                kind: "instance-not-found",
                detail: "the instance is gone".into(),
            }));
        };
        if i.state == "running" {
            return Some(Ok(()));
        }
        let reason = i.state_reason.unwrap_or_default();
        // Back to stopped after it was pending, or with EC2's launch error.
        // A stopped state with the reason of the last stop is only EC2 not
        // having moved yet: keep looking.
        if matches!(i.state.as_str(), "stopping" | "stopped")
            && (seen_pending || reason.contains("InternalError"))
        {
            return Some(Err(NotStarted {
                kind: "fell-back-to-stopped",
                detail: format!(
                    "EC2 accepted the start, then the instance went back to {}: {reason}",
                    i.state
                ),
            }));
        }
        seen_pending |= i.state == "pending";
        None
    })
    .await;
    match watched {
        Ok(started) => started,
        Err(last) => Err(NotStarted {
            kind: "start-timeout",
            detail: format!(
                "still {last} {} s after the start",
                run.ports.waits.stop_timeout.as_secs()
            ),
        }),
    }
}

/// Start an instance this deployment stopped, then remove its mark once EC2
/// reports it running. A start that fails or falls back keeps the mark, so
/// a later run tries again, and is critical.
async fn start_again(
    run: &Run<'_>,
    target: &InstanceTarget,
    snapshot: &str,
) -> Option<ConsistencyFailure> {
    let id = target.instance.id.as_str();
    match start_and_wait(run, id).await {
        Ok(()) => {
            tracing::info!(instance = id, "started again after its snapshot");
            forget_stop(run, id).await;
            None
        }
        Err(e) => Some(failure(
            target,
            "start",
            e.kind,
            Some(e.detail),
            format!(
                "{snapshot}; THE INSTANCE IS STILL STOPPED: every later run tries to start it (the stack's ledger keeps its record; its {} mark stays too)",
                tags::STOPPED_FOR_SNAPSHOT
            ),
        )),
    }
}

/// How long after its record a stop can be this deployment's: the record
/// is written just before StopInstances. A stop EC2 dates outside
/// [record - 1 minute, record + 10 minutes] was somebody else's (the record
/// outlived a stop that never happened, or a start whose record could not
/// be forgotten), and that instance is not ours to start.
fn stopped_by_us(record: &StopRecord, stopped_at: Option<DateTime<Utc>>) -> bool {
    stopped_at.is_none_or(|t| {
        t >= record.stopped_at - chrono::Duration::minutes(1)
            && t <= record.stopped_at + chrono::Duration::minutes(10)
    })
}

/// The instance runs again (or never stopped): forget the record, then
/// the human-readable mark. Either failing is harmless: a later run sees
/// the instance running and forgets it then.
async fn forget_stop(run: &Run<'_>, id: &str) {
    if let Err(e) = run.ports.ledger.forget_stop(id).await {
        tracing::warn!(instance = id, error = %e, "could not forget the stop record; a later run does");
    }
    if let Err(e) = run.ports.instances.clear_stopped_mark(id).await {
        tracing::warn!(instance = id, error = %e, "could not remove the stop mark");
    }
}

/// Step 4: every instance the stack's ledger says this deployment stopped,
/// and that this run is not stopping itself, is started again (stopped) or
/// forgotten (running again already, or gone). Stopping ones are looked at
/// again next run. A `lifecycle:stopped-for-snapshot` tag alone starts
/// nothing: anyone can write it.
pub(crate) async fn restart_left_stopped(
    run: &Run<'_>,
    stopping_now: &BTreeSet<String>,
) -> (Vec<String>, Vec<ConsistencyFailure>) {
    let control = run.ports.instances;
    let mut restarted = Vec::new();
    let mut failures = Vec::new();
    for record in run
        .stops
        .iter()
        .filter(|r| !stopping_now.contains(&r.instance_id))
    {
        let id = record.instance_id.as_str();
        let instance = match control.instance(id).await {
            Ok(Some(instance)) => instance,
            Ok(None) => {
                forget_stop(run, id).await;
                continue;
            }
            Err(e) => {
                tracing::error!(instance = id, error = %e, "could not read an instance this deployment stopped; the next run looks again");
                continue;
            }
        };
        match instance.state.as_str() {
            "stopped" if !stopped_by_us(record, instance.stopped_at) => {
                tracing::warn!(
                    instance = id,
                    recorded = %tags::format_time(record.stopped_at),
                    "stopped by someone else after this deployment's record: left stopped, record forgotten"
                );
                forget_stop(run, id).await;
            }
            "stopped" => match start_and_wait(run, id).await {
                Ok(()) => {
                    tracing::warn!(instance = id, "started an instance an earlier run left stopped");
                    forget_stop(run, id).await;
                    restarted.push(id.to_string());
                }
                Err(e) => failures.push(ConsistencyFailure {
                    instance_id: id.to_string(),
                    policy: record.policy.clone(),
                    step: "start",
                    reason: e.kind.into(),
                    output: Some(e.detail),
                    outcome: "an earlier run stopped it for a snapshot; it is STILL STOPPED and the next run tries again".into(),
                }),
            },
            // Only running: a pending instance may still fall back to
            // stopped, and then the record must still be there.
            "running" => forget_stop(run, id).await,
            _ => {}
        }
    }
    (restarted, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure_at(step: &'static str, reason: &str) -> ConsistencyFailure {
        ConsistencyFailure {
            instance_id: "i-1".into(),
            policy: "db".into(),
            step,
            reason: reason.into(),
            output: Some("fsfreeze: /data: Device or resource busy".into()),
            outcome: "crash-fallback snapshot taken".into(),
        }
    }

    #[test]
    fn an_instance_possibly_left_stopped_is_critical() {
        assert_eq!(
            failure_at("start", "service-error").severity(),
            Severity::Critical
        );
        assert_eq!(
            failure_at("stop", "not-stopped-in-time").severity(),
            Severity::Critical
        );
        assert_eq!(
            failure_at("stop", "not-allowed").severity(),
            Severity::Warning
        );
        assert_eq!(
            failure_at("pre-command", "failed").severity(),
            Severity::Warning
        );
    }

    #[test]
    fn the_notification_names_the_instance_the_output_and_the_outcome() {
        let n = failure_at("pre-command", "failed").notification("prod");
        assert_eq!(n.kind, NotificationKind::ConsistencyFailed);
        assert!(n.summary.contains("i-1") && n.summary.contains("crash-fallback snapshot taken"));
        assert_eq!(
            n.details["output"],
            "fsfreeze: /data: Device or resource busy"
        );
        assert_eq!(n.details["step"], "pre-command");
    }
}

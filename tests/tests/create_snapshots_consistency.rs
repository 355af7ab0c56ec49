//! create-snapshots with `application` and `stopped` policies (issue 10):
//! freeze, one multi-volume snapshot, thaw, in that order and on every path;
//! stop, snapshot, start, leaving each instance as it was found, and
//! restarting one an earlier run left stopped.
//!
//! EC2 and SSM Run Command are moto's (it records each command and reports
//! it successful at once; it stops and starts instances at once). What moto
//! cannot answer (a failed, slow or undeliverable pre command) comes from
//! aws-smithy-mocks on the real SSM client.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput;
use aws_sdk_ssm::operation::send_command::{SendCommandError, SendCommandOutput};
use aws_sdk_ssm::types::{Command, CommandInvocationStatus};
use aws_smithy_mocks::{mock, Rule, RuleMode};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use create_snapshots::{handle, RunSummary};
use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::aws::ssm::SsmAdapter;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::ports::commands::{CommandRunner, SHELL_DOCUMENT};
use ebs_lifecycle::ports::ledger::{Ledger, StopRecord};
use ebs_lifecycle_core::consistency::{freeze_script, thaw_script, FrozenVolume, FREEZE_WATCHDOG};
use ebs_lifecycle_core::notify::NotificationKind;
use ebs_lifecycle_core::tags;
use integration_tests::fault_proxy::{Fault, FaultProxy};
use integration_tests::*;

const POLICIES: &str = r#"{
  "db":      {"schedule": "@daily", "keep": {"last": 3}, "consistency": "application"},
  "db-skip": {"schedule": "@daily", "keep": {"last": 3}, "consistency": "application",
              "command_timeout": "1s", "on_command_failure": "skip"},
  "batch":   {"schedule": "@daily", "keep": {"last": 3}, "consistency": "stopped"}
}"#;

fn now() -> DateTime<Utc> {
    tags::parse_time("2026-03-01T00:05:00Z").unwrap()
}

fn plenty() -> Deadline {
    Deadline::after(Duration::from_secs(600))
}

/// One tick at [`now`] with this moto's ledger, moto's clock at `now` too.
async fn run(
    moto: &Moto,
    ec2: &Ec2Adapter,
    commands: &dyn CommandRunner,
    notifier: &RecordingNotifier,
) -> RunSummary {
    moto.set_clock(Some(now()));
    let summary = handle(
        create_ports(ec2, commands, notifier, moto.ledger()),
        &config(POLICIES),
        &json!({"kind": "tick"}),
        now(),
        plenty(),
    )
    .await
    .expect("the run succeeds");
    moto.set_clock(None);
    summary
}

/// What a run that stopped `instance` and died wrote in the stack's ledger.
async fn recorded_stop(moto: &Moto, instance: &str) {
    moto.ledger()
        .record_stop(&StopRecord {
            instance_id: instance.into(),
            policy: "batch".into(),
            stopped_at: now(),
        })
        .await
        .unwrap();
}

/// An instance with its root volume and two data volumes; the volumes in
/// id order with their devices.
async fn instance_with_data(
    ec2: &aws_sdk_ec2::Client,
    tags: &[(&str, &str)],
) -> (String, Vec<FrozenVolume>) {
    let (instance, root) = run_instance(ec2, tags).await;
    let mut volumes = vec![FrozenVolume {
        volume_id: root,
        device: "/dev/sda1".into(),
    }];
    for (size, device) in [(10, "/dev/sdf"), (20, "/dev/sdg")] {
        let id = create_volume(ec2, size, &[]).await;
        attach(ec2, &id, &instance, device).await;
        volumes.push(FrozenVolume {
            volume_id: id,
            device: device.into(),
        });
    }
    volumes.sort_by(|a, b| a.volume_id.cmp(&b.volume_id));
    (instance, volumes)
}

fn ids(volumes: &[FrozenVolume]) -> Vec<String> {
    volumes.iter().map(|v| v.volume_id.clone()).collect()
}

/// The snapshots of these volumes: (volume, `lifecycle:consistency`).
async fn labels_of(ec2: &aws_sdk_ec2::Client, volumes: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<_> = snapshots(ec2)
        .await
        .into_iter()
        .filter_map(|s| {
            let volume = s.volume_id.clone()?;
            volumes.contains(&volume).then(|| {
                (
                    volume,
                    s.tags.get(tags::CONSISTENCY).cloned().unwrap_or_default(),
                )
            })
        })
        .collect();
    out.sort();
    out
}

/// Every one of `volumes` has exactly one snapshot, labelled `label`.
async fn assert_labelled(ec2: &aws_sdk_ec2::Client, volumes: &[String], label: &str) {
    let expected: Vec<(String, String)> =
        volumes.iter().map(|v| (v.clone(), label.into())).collect();
    assert_eq!(labels_of(ec2, volumes).await, expected);
}

/// Positions of `operation` in the request sequence.
fn positions(sequence: &[String], operation: &str) -> Vec<usize> {
    sequence
        .iter()
        .enumerate()
        .filter(|(_, op)| *op == operation)
        .map(|(i, _)| i)
        .collect()
}

async fn instance_state(ec2: &aws_sdk_ec2::Client, instance: &str) -> (String, Option<String>) {
    let out = ec2
        .describe_instances()
        .instance_ids(instance)
        .send()
        .await
        .unwrap();
    let i = &out.reservations()[0].instances()[0];
    let state = i.state().unwrap().name().unwrap().as_str().to_string();
    let mark = i
        .tags()
        .iter()
        .find(|t| t.key() == Some(tags::STOPPED_FOR_SNAPSHOT))
        .and_then(|t| t.value().map(String::from));
    (state, mark)
}

#[tokio::test]
async fn an_application_instance_gets_one_snapshot_set_between_freeze_and_thaw() {
    let moto = Moto::start();
    let (ec2, counter) = moto.counted_ec2();
    let (instance, volumes) = instance_with_data(&ec2, &[("Backup", "db"), ("Name", "db-1")]).await;
    let adapter = Ec2Adapter::new(ec2.clone());
    let ssm = SsmAdapter::new(moto.counted_ssm(&counter));
    let notifier = RecordingNotifier::default();
    counter.reset();

    let summary = run(&moto, &adapter, &ssm, &notifier).await;

    assert_labelled(&ec2, &ids(&volumes), "application").await;
    assert_eq!(counter.count("CreateSnapshots"), 1, "one multi-volume set");
    assert!(summary
        .created
        .iter()
        .all(|c| c.consistency == "application"));
    assert!(summary.consistency_failures.is_empty());
    assert!(
        notifier.sent().is_empty(),
        "nothing to tell: {:?}",
        notifier.sent()
    );

    // The freeze of exactly these volumes, then the snapshot, then the thaw.
    assert_eq!(
        moto.commands_sent().await,
        vec![
            (
                SHELL_DOCUMENT.to_string(),
                vec![instance.clone()],
                vec![freeze_script(&volumes, FREEZE_WATCHDOG).unwrap()]
            ),
            (
                SHELL_DOCUMENT.to_string(),
                vec![instance.clone()],
                vec![thaw_script()]
            ),
        ]
    );
    let sequence = counter.sequence();
    let sends = positions(&sequence, "SendCommand");
    let create = positions(&sequence, "CreateSnapshots");
    assert_eq!(sends.len(), 2, "{sequence:?}");
    assert!(
        sends[0] < create[0] && create[0] < sends[1],
        "freeze, snapshot, thaw: {sequence:?}"
    );
    // The pre command's success was read before the snapshot was taken.
    assert!(
        positions(&sequence, "GetCommandInvocation")
            .iter()
            .any(|&p| sends[0] < p && p < create[0]),
        "{sequence:?}"
    );

    // The slot is fulfilled: the next tick neither freezes nor snapshots.
    counter.reset();
    let again = run(&moto, &adapter, &ssm, &notifier).await;
    assert!(again.created.is_empty());
    assert_eq!(counter.count("SendCommand"), 0);
}

#[tokio::test]
async fn a_create_that_fails_between_freeze_and_thaw_still_thaws() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (instance, volumes) = instance_with_data(&ec2, &[("Backup", "db")]).await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    proxy.inject("CreateSnapshots", 1, Fault::InternalError);
    let counter = RequestCounter::default();
    let faulty = Ec2Adapter::new(aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(&proxy.sdk_config(Duration::from_secs(5)))
            .interceptor(counter.clone())
            .build(),
    ));
    let ssm = SsmAdapter::new(moto.counted_ssm(&counter));
    let notifier = RecordingNotifier::default();

    let first = run(&moto, &faulty, &ssm, &notifier).await;

    assert_eq!(proxy.faults_applied().len(), 1);
    assert!(snapshots(&ec2).await.is_empty());
    assert_eq!(first.failed.len(), volumes.len());
    assert!(first.failed.iter().all(|f| f.error_kind == "service-error"));
    let sequence = counter.sequence();
    let sends = positions(&sequence, "SendCommand");
    let create = positions(&sequence, "CreateSnapshots");
    assert_eq!(create.len(), 1, "not retried: {sequence:?}");
    assert!(
        sends.len() == 2 && sends[0] < create[0] && create[0] < sends[1],
        "{sequence:?}"
    );
    let sent = moto.commands_sent().await;
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[1],
        (
            SHELL_DOCUMENT.into(),
            vec![instance.clone()],
            vec![thaw_script()]
        )
    );
    // The failure is reported in the run summary (the volumes stay due).
    let kinds: Vec<_> = notifier.sent().iter().map(|n| n.kind).collect();
    assert_eq!(kinds, vec![NotificationKind::RunSummary]);

    // The next tick freezes, snapshots and thaws again.
    let second = run(&moto, &faulty, &ssm, &notifier).await;
    assert_eq!(second.created.len(), volumes.len());
    assert_labelled(&ec2, &ids(&volumes), "application").await;
    assert_eq!(moto.commands_sent().await.len(), 4);
}

/// SendCommand answered with a command id that says which command it is.
fn sends() -> Rule {
    mock!(aws_sdk_ssm::Client::send_command).then_output(|| {
        SendCommandOutput::builder()
            .command(Command::builder().command_id("cmd").build())
            .build()
    })
}

fn cancels() -> Rule {
    mock!(aws_sdk_ssm::Client::cancel_command).then_output(|| {
        aws_sdk_ssm::operation::cancel_command::CancelCommandOutput::builder().build()
    })
}

/// An SSM whose commands are sent but never finish (and can be
/// cancelled): the SendCommand and CancelCommand rules, and the port.
fn never_answering() -> (Rule, Rule, SsmAdapter) {
    let send = sends();
    let running = mock!(aws_sdk_ssm::Client::get_command_invocation)
        .then_output(|| invocation(CommandInvocationStatus::InProgress, ""));
    let cancel = cancels();
    let ssm = SsmAdapter::new(mocked_ssm(RuleMode::MatchAny, &[&send, &running, &cancel]));
    (send, cancel, ssm)
}

fn invocation(status: CommandInvocationStatus, stderr: &str) -> GetCommandInvocationOutput {
    GetCommandInvocationOutput::builder()
        .status(status)
        .standard_output_content("")
        .standard_error_content(stderr)
        .build()
}

/// The pre command fails on the instance, the post command succeeds (the
/// status rules follow the order of the commands: SSM's answers for the
/// freeze first, then for the thaw).
#[tokio::test]
async fn a_failed_freeze_falls_back_to_crash_consistent_and_says_so() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (instance, volumes) = instance_with_data(&ec2, &[("Backup", "db")]).await;
    let (send_freeze, send_thaw) = (sends(), sends());
    let failed = mock!(aws_sdk_ssm::Client::get_command_invocation).then_output(|| {
        invocation(
            CommandInvocationStatus::Failed,
            "could not freeze /data; thawing\nfsfreeze: /data: Device or resource busy",
        )
    });
    let thawed = mock!(aws_sdk_ssm::Client::get_command_invocation)
        .then_output(|| invocation(CommandInvocationStatus::Success, ""));
    let ssm = SsmAdapter::new(mocked_ssm(
        RuleMode::Sequential,
        &[&send_freeze, &failed, &send_thaw, &thawed],
    ));
    let notifier = RecordingNotifier::default();

    let summary = run(&moto, &Ec2Adapter::new(ec2.clone()), &ssm, &notifier).await;

    assert_labelled(&ec2, &ids(&volumes), "crash-fallback").await;
    assert_eq!(
        (
            send_freeze.num_calls(),
            send_thaw.num_calls(),
            thawed.num_calls()
        ),
        (1, 1, 1),
        "the thaw is sent after a failed freeze"
    );
    assert_eq!(summary.counts.consistency_failed, 1);
    let sent = notifier.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let n = &sent[0];
    assert_eq!(n.kind, NotificationKind::ConsistencyFailed);
    assert!(n.summary.contains(&instance), "{}", n.summary);
    assert_eq!(n.details["instance_id"], Value::from(instance.clone()));
    assert_eq!(n.details["step"], "pre-command");
    assert_eq!(n.details["reason"], "failed");
    assert_eq!(n.details["outcome"], "crash-fallback snapshot taken");
    assert!(
        n.details["output"]
            .as_str()
            .unwrap()
            .ends_with("fsfreeze: /data: Device or resource busy"),
        "{}",
        n.details["output"]
    );
}

/// Deployed, the default freeze and thaw go through the stack's own SSM
/// document (CONSISTENCY_DOCUMENT), not AWS-RunShellScript: the freeze with
/// the set's serials, devices and watchdog as parameters, the thaw with
/// `action=thaw`; no script text travels.
#[tokio::test]
async fn deployed_the_freeze_and_thaw_are_the_stacks_document_with_parameters() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (_instance, volumes) = instance_with_data(&ec2, &[("Backup", "db")]).await;
    let serials: String = ids(&volumes)
        .iter()
        .map(|v| v.replace('-', ""))
        .collect::<Vec<_>>()
        .join(" ");
    let is = |action: &'static str| {
        move |r: &aws_sdk_ssm::operation::send_command::SendCommandInput| {
            r.document_name() == Some("itest-FreezeThaw")
                && r.parameters()
                    .and_then(|p| p.get("action"))
                    .is_some_and(|a| a == &vec![action.to_string()])
                && r.parameters().is_some_and(|p| !p.contains_key("commands"))
        }
    };
    let expected_serials = serials.clone();
    let freeze = mock!(aws_sdk_ssm::Client::send_command)
        .match_requests(move |r| {
            is("freeze")(r)
                && r.parameters().and_then(|p| p.get("serials"))
                    == Some(&vec![expected_serials.clone()])
                && r.parameters().and_then(|p| p.get("watchdog"))
                    == Some(&vec![FREEZE_WATCHDOG.as_secs().to_string()])
        })
        .then_output(|| {
            SendCommandOutput::builder()
                .command(Command::builder().command_id("freeze").build())
                .build()
        });
    let thaw = mock!(aws_sdk_ssm::Client::send_command)
        .match_requests(is("thaw"))
        .then_output(|| {
            SendCommandOutput::builder()
                .command(Command::builder().command_id("thaw").build())
                .build()
        });
    let done = mock!(aws_sdk_ssm::Client::get_command_invocation)
        .then_output(|| invocation(CommandInvocationStatus::Success, ""));
    let ssm = SsmAdapter::new(mocked_ssm(RuleMode::MatchAny, &[&freeze, &thaw, &done]));
    let notifier = RecordingNotifier::default();
    let adapter = Ec2Adapter::new(ec2.clone());

    let summary = handle(
        create_ports(&adapter, &ssm, &notifier, moto.ledger()),
        &config_with(POLICIES, &[("CONSISTENCY_DOCUMENT", "itest-FreezeThaw")]),
        &json!({"kind": "tick"}),
        now(),
        plenty(),
    )
    .await
    .unwrap();

    assert_eq!((freeze.num_calls(), thaw.num_calls()), (1, 1));
    assert!(
        summary.consistency_failures.is_empty(),
        "{:?}",
        summary.consistency_failures
    );
    assert_labelled(&ec2, &ids(&volumes), "application").await;
}

/// The freeze reports success only after its watchdog's window (here made
/// short): the file systems may already be thawed when the snapshot starts,
/// so the set is labelled `crash-fallback`, not `application`, and a
/// consistency-failed notification says why; the thaw is still sent.
#[tokio::test]
async fn a_freeze_that_reports_after_its_watchdog_window_is_not_labelled_application() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (_instance, volumes) = instance_with_data(&ec2, &[("Backup", "db")]).await;
    let (send_freeze, send_thaw) = (sends(), sends());
    let slow = mock!(aws_sdk_ssm::Client::get_command_invocation)
        .sequence()
        .output(|| invocation(CommandInvocationStatus::InProgress, ""))
        .times(5)
        .output(|| invocation(CommandInvocationStatus::Success, ""))
        .build();
    let thawed = mock!(aws_sdk_ssm::Client::get_command_invocation)
        .then_output(|| invocation(CommandInvocationStatus::Success, ""));
    let ssm = SsmAdapter::new(mocked_ssm(
        RuleMode::Sequential,
        &[&send_freeze, &slow, &send_thaw, &thawed],
    ));
    let notifier = RecordingNotifier::default();
    let adapter = Ec2Adapter::new(ec2.clone());
    let ports = create_snapshots::Ports {
        waits: create_snapshots::Waits {
            freeze_window: Duration::from_millis(50),
            ..TEST_WAITS
        },
        ..create_ports(&adapter, &ssm, &notifier, moto.ledger())
    };

    let summary = handle(
        ports,
        &config(POLICIES),
        &json!({"kind": "tick"}),
        now(),
        plenty(),
    )
    .await
    .unwrap();

    assert_labelled(&ec2, &ids(&volumes), "crash-fallback").await;
    assert_eq!(send_thaw.num_calls(), 1, "thawed all the same");
    let failure = &summary.consistency_failures[0];
    assert_eq!(failure.reason, "freeze-window-passed");
    assert!(
        failure.outcome.contains("crash-consistent"),
        "{}",
        failure.outcome
    );
    assert_eq!(notifier.sent().len(), 1);
}

#[tokio::test]
async fn a_freeze_that_never_answers_is_skipped_when_the_policy_says_skip_and_still_thawed() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (instance, volumes) = instance_with_data(&ec2, &[("Backup", "db-skip")]).await;
    let (send, cancel, ssm) = never_answering();
    let notifier = RecordingNotifier::default();

    let started = Instant::now();
    let summary = run(&moto, &Ec2Adapter::new(ec2.clone()), &ssm, &notifier).await;
    let took = started.elapsed();

    assert!(
        labels_of(&ec2, &ids(&volumes)).await.is_empty(),
        "no snapshot"
    );
    assert_eq!(summary.failed.len(), volumes.len());
    assert!(summary
        .failed
        .iter()
        .all(|f| f.error_kind == "consistency-skipped"));
    assert_eq!(
        send.num_calls(),
        2,
        "the thaw is sent after a timed-out freeze"
    );
    assert_eq!(
        cancel.num_calls(),
        2,
        "the freeze and the thaw given up on are cancelled"
    );
    // command_timeout 1s, for the freeze and again for the thaw.
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(8),
        "{took:?}"
    );
    let pre = summary
        .consistency_failures
        .iter()
        .find(|f| f.step == "pre-command")
        .unwrap();
    assert_eq!(pre.instance_id, instance);
    assert_eq!(pre.reason, "timed-out");
    assert!(pre.outcome.starts_with("skipped"), "{}", pre.outcome);
    let kinds: Vec<_> = notifier.sent().iter().map(|n| n.kind).collect();
    assert!(
        kinds.contains(&NotificationKind::ConsistencyFailed),
        "{kinds:?}"
    );
    assert!(kinds.contains(&NotificationKind::RunSummary), "{kinds:?}");
}

#[tokio::test]
async fn an_instance_without_the_ssm_agent_is_reported_and_snapshotted_crash_consistent() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (_instance, volumes) = instance_with_data(&ec2, &[("Backup", "db")]).await;
    let refused = mock!(aws_sdk_ssm::Client::send_command).then_error(|| {
        SendCommandError::InvalidInstanceId(
            aws_sdk_ssm::types::error::InvalidInstanceId::builder()
                .message("Instances not in a valid state for account")
                .build(),
        )
    });
    let ssm = SsmAdapter::new(mocked_ssm(RuleMode::MatchAny, &[&refused]));
    let notifier = RecordingNotifier::default();

    let summary = run(&moto, &Ec2Adapter::new(ec2.clone()), &ssm, &notifier).await;

    assert_labelled(&ec2, &ids(&volumes), "crash-fallback").await;
    assert_eq!(
        refused.num_calls(),
        1,
        "nothing was frozen, nothing to thaw"
    );
    assert_eq!(summary.consistency_failures.len(), 1);
    assert_eq!(summary.consistency_failures[0].reason, "not-managed");
}

#[tokio::test]
async fn a_stopped_policy_leaves_each_instance_as_it_found_it() {
    let moto = Moto::start();
    let (ec2, counter) = moto.counted_ec2();
    let allow = (tags::ALLOW_STOP, "true");
    let (running, running_volumes) = instance_with_data(&ec2, &[("Backup", "batch"), allow]).await;
    let (parked, parked_volumes) = instance_with_data(&ec2, &[("Backup", "batch"), allow]).await;
    ec2.stop_instances()
        .instance_ids(&parked)
        .send()
        .await
        .unwrap();
    let (no_opt_in, no_opt_in_volumes) = instance_with_data(&ec2, &[("Backup", "batch")]).await;
    let adapter = Ec2Adapter::new(ec2.clone());
    let notifier = RecordingNotifier::default();
    counter.reset();

    let summary = run(&moto, &adapter, &no_commands(), &notifier).await;

    // Each as it was found, and no mark left behind.
    assert_eq!(
        instance_state(&ec2, &running).await,
        ("running".into(), None)
    );
    assert_eq!(
        instance_state(&ec2, &parked).await,
        ("stopped".into(), None)
    );
    assert_eq!(
        instance_state(&ec2, &no_opt_in).await,
        ("running".into(), None)
    );
    // Only the opted-in running instance was stopped and started, around its snapshot.
    let sequence = counter.sequence();
    assert_eq!(
        positions(&sequence, "StopInstances").len(),
        1,
        "{sequence:?}"
    );
    assert_eq!(
        positions(&sequence, "StartInstances").len(),
        1,
        "{sequence:?}"
    );
    let (stop, start) = (
        positions(&sequence, "StopInstances")[0],
        positions(&sequence, "StartInstances")[0],
    );
    assert!(
        positions(&sequence, "CreateSnapshots")
            .iter()
            .any(|&p| stop < p && p < start),
        "{sequence:?}"
    );
    assert!(
        positions(&sequence, "CreateTags").iter().any(|&p| p < stop),
        "marked before the stop: {sequence:?}"
    );

    assert_labelled(&ec2, &ids(&running_volumes), "stopped").await;
    assert_labelled(&ec2, &ids(&parked_volumes), "stopped").await;
    assert_labelled(&ec2, &ids(&no_opt_in_volumes), "crash-fallback").await;
    let failures = &summary.consistency_failures;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        (
            failures[0].instance_id.as_str(),
            failures[0].reason.as_str()
        ),
        (no_opt_in.as_str(), "not-allowed")
    );
    assert_eq!(summary.created.len(), 9);
}

#[tokio::test]
async fn an_instance_an_earlier_run_left_stopped_is_started_again() {
    let moto = Moto::start();
    let (ec2, counter) = moto.counted_ec2();
    let mark = (tags::STOPPED_FOR_SNAPSHOT, "itest");
    // Stopped by a run that died before its snapshot: still due.
    let (due, due_volumes) = instance_with_data(
        &ec2,
        &[("Backup", "batch"), (tags::ALLOW_STOP, "true"), mark],
    )
    .await;
    // Stopped by a run that died after it; no longer opted in at all.
    let (left, _) = instance_with_data(&ec2, &[mark]).await;
    // Another deployment's: not ours to start.
    let (foreign, _) =
        instance_with_data(&ec2, &[(tags::STOPPED_FOR_SNAPSHOT, "other-stack")]).await;
    // Stopped by someone else (incident response, say) and tagged with our
    // mark by anyone allowed to tag: the ledger has no record, so it stays down.
    let (forged, _) = instance_with_data(&ec2, &[mark]).await;
    // Stopped at the time of the record, as a run that died would leave them.
    moto.set_clock(Some(now()));
    for id in [&due, &left, &foreign, &forged] {
        ec2.stop_instances().instance_ids(id).send().await.unwrap();
    }
    moto.set_clock(None);
    for id in [&due, &left] {
        recorded_stop(&moto, id).await;
    }
    let adapter = Ec2Adapter::new(ec2.clone());
    let notifier = RecordingNotifier::default();
    counter.reset();

    let summary = run(&moto, &adapter, &no_commands(), &notifier).await;

    assert_eq!(instance_state(&ec2, &due).await, ("running".into(), None));
    assert_eq!(instance_state(&ec2, &left).await, ("running".into(), None));
    assert_eq!(
        instance_state(&ec2, &foreign).await,
        ("stopped".into(), Some("other-stack".into()))
    );
    assert_eq!(
        instance_state(&ec2, &forged).await,
        ("stopped".into(), Some("itest".into())),
        "a tag alone starts nothing"
    );
    assert_eq!(summary.restarted, vec![left.clone()]);
    assert_labelled(&ec2, &ids(&due_volumes), "stopped").await;
    assert_eq!(counter.count("StopInstances"), 0, "already stopped");
    assert_eq!(counter.count("StartInstances"), 2);
    assert!(summary.consistency_failures.is_empty());

    // Nothing left to restart or snapshot.
    counter.reset();
    let again = run(&moto, &adapter, &no_commands(), &notifier).await;
    assert!(again.restarted.is_empty() && again.created.is_empty());
    assert_eq!(counter.count("StartInstances"), 0);
}

#[tokio::test]
async fn the_deadline_during_the_freeze_leaves_the_set_for_later_and_still_thaws() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (_instance, volumes) = instance_with_data(&ec2, &[("Backup", "db")]).await;
    let (send, cancel, ssm) = never_answering();
    let notifier = RecordingNotifier::default();
    // The freeze would be waited for 60 s; the invocation ends well before.
    let deadline = Deadline::after(Duration::from_secs(3)).with_margin(Duration::from_secs(2));

    let summary = handle(
        create_ports(
            &Ec2Adapter::new(ec2.clone()),
            &ssm,
            &notifier,
            moto.ledger(),
        ),
        &config(POLICIES),
        &json!({"kind": "tick"}),
        now(),
        deadline,
    )
    .await
    .unwrap();

    assert!(labels_of(&ec2, &ids(&volumes)).await.is_empty());
    assert_eq!(summary.left_for_later.len(), volumes.len());
    assert_eq!(send.num_calls(), 2, "the thaw is sent even at the deadline");
    assert_eq!(
        cancel.num_calls(),
        2,
        "both commands given up on are cancelled"
    );
    assert_eq!(summary.consistency_failures[0].reason, "timed-out");
    assert_eq!(
        summary.consistency_failures[0].outcome,
        "left for the next tick (deadline)"
    );
}

/// The start comes after the snapshot whatever became of it; a start that
/// fails keeps the mark, is critical, and the next run starts the instance.
#[tokio::test]
async fn a_failed_snapshot_still_starts_the_instance_and_a_failed_start_is_retried_next_run() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (instance, volumes) =
        instance_with_data(&ec2, &[("Backup", "batch"), (tags::ALLOW_STOP, "true")]).await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    proxy.inject("CreateSnapshots", 1, Fault::InternalError);
    // Every attempt of the SDK's retry policy fails.
    proxy.inject(
        "StartInstances",
        ebs_lifecycle::aws::MAX_ATTEMPTS as usize,
        Fault::InternalError,
    );
    let faulty = Ec2Adapter::new(aws_sdk_ec2::Client::new(
        &proxy.sdk_config(Duration::from_secs(5)),
    ));
    let notifier = RecordingNotifier::default();

    let first = run(&moto, &faulty, &no_commands(), &notifier).await;

    assert_eq!(
        proxy.requests("StartInstances"),
        ebs_lifecycle::aws::MAX_ATTEMPTS as usize
    );
    assert_eq!(
        instance_state(&ec2, &instance).await,
        ("stopped".into(), Some("itest".into())),
        "still stopped, and marked for the next run"
    );
    assert_eq!(first.failed.len(), volumes.len());
    let start = first
        .consistency_failures
        .iter()
        .find(|f| f.step == "start")
        .unwrap();
    assert!(start.outcome.contains("STILL STOPPED"), "{}", start.outcome);
    let critical: Vec<_> = notifier
        .sent()
        .into_iter()
        .filter(|n| n.kind == NotificationKind::ConsistencyFailed)
        .map(|n| n.severity)
        .collect();
    assert_eq!(
        critical,
        vec![ebs_lifecycle_core::notify::Severity::Critical]
    );

    // The next run: still due and stopped by us, so snapshotted as it is and started.
    let second = run(&moto, &faulty, &no_commands(), &notifier).await;
    assert_eq!(
        instance_state(&ec2, &instance).await,
        ("running".into(), None)
    );
    assert_eq!(second.created.len(), volumes.len());
    assert!(second.consistency_failures.is_empty());
    assert_labelled(&ec2, &ids(&volumes), "stopped").await;
}

/// The deadline comes near after the plan (a slow DescribeSnapshots): an
/// instance an earlier run left stopped is not snapshotted now, but it is
/// started now, not at the next tick.
#[tokio::test]
async fn an_instance_left_stopped_is_started_even_when_the_deadline_leaves_its_snapshot_for_later()
{
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (instance, volumes) = instance_with_data(
        &ec2,
        &[
            ("Backup", "batch"),
            (tags::ALLOW_STOP, "true"),
            (tags::STOPPED_FOR_SNAPSHOT, "itest"),
        ],
    )
    .await;
    moto.set_clock(Some(now()));
    ec2.stop_instances()
        .instance_ids(&instance)
        .send()
        .await
        .unwrap();
    moto.set_clock(None);
    recorded_stop(&moto, &instance).await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    proxy.inject(
        "DescribeSnapshots",
        1,
        Fault::Delay(Duration::from_millis(600)),
    );
    let slow = Ec2Adapter::new(aws_sdk_ec2::Client::new(
        &proxy.sdk_config(Duration::from_secs(5)),
    ));
    let notifier = RecordingNotifier::default();
    let deadline =
        Deadline::after(Duration::from_millis(2_300)).with_margin(Duration::from_secs(2));

    let summary = handle(
        create_ports(&slow, &no_commands(), &notifier, moto.ledger()),
        &config(POLICIES),
        &json!({"kind": "tick"}),
        now(),
        deadline,
    )
    .await
    .unwrap();

    assert_eq!(proxy.faults_applied().len(), 1);
    assert_eq!(summary.left_for_later.len(), volumes.len());
    assert!(summary.created.is_empty());
    assert_eq!(
        instance_state(&ec2, &instance).await,
        ("running".into(), None)
    );
}

/// The ledger's record outlived its stop (a run died between the record and
/// StopInstances, or could not forget the record after the start), and a
/// day later someone stops the instance for their own reasons: EC2 dates
/// that stop long after the record, so it is not this deployment's to
/// start. It stays stopped and the stale record is forgotten.
#[tokio::test]
async fn a_stale_stop_record_does_not_start_an_instance_someone_else_stopped() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (instance, _) = instance_with_data(&ec2, &[("Name", "quarantined")]).await;
    moto.ledger()
        .record_stop(&StopRecord {
            instance_id: instance.clone(),
            policy: "batch".into(),
            stopped_at: now() - chrono::Duration::days(1),
        })
        .await
        .unwrap();
    moto.set_clock(Some(now() - chrono::Duration::minutes(30)));
    ec2.stop_instances()
        .instance_ids(&instance)
        .send()
        .await
        .unwrap();
    moto.set_clock(None);
    let notifier = RecordingNotifier::default();

    let summary = run(
        &moto,
        &Ec2Adapter::new(ec2.clone()),
        &no_commands(),
        &notifier,
    )
    .await;

    assert!(summary.restarted.is_empty());
    assert_eq!(instance_state(&ec2, &instance).await.0, "stopped");
    assert!(
        moto.ledger().stops().await.unwrap().is_empty(),
        "the stale record is forgotten"
    );
}

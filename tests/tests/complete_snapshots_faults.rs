//! complete-snapshots where moto cannot go: EC2 states `error` and long
//! `pending`, failing SNS, and a corpus of malformed events, on the real SDK
//! client answered by aws-smithy-mocks.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::operation::create_tags::CreateTagsOutput;
use aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput;
use aws_sdk_ec2::primitives::DateTime as AwsTime;
use aws_sdk_ec2::types::{Snapshot, SnapshotState, Tag};
use aws_sdk_ec2::Client;
use aws_smithy_mocks::{mock, Rule, RuleMode};
use serde_json::{json, Value};

use complete_snapshots::{handle, InvocationError, RunSummary};
use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::ports::notifier::{Notifier, NotifyError};
use ebs_lifecycle_core::notify::{Notification, NotificationKind};
use ebs_lifecycle_core::ownership::Subject;
use integration_tests::{
    complete_ports, config, identity, mocked_ec2, mocked_ledger, workspace_root, RecordingNotifier,
};

const POLICIES: &str = r#"{"default": {"schedule": "@daily", "keep": {"last": 3}}}"#;

fn snapshot(
    state: SnapshotState,
    lifecycle_state: &str,
    started: &str,
    extra: &[(&str, &str)],
) -> Snapshot {
    snapshot_of("vol-0aaa", state, lifecycle_state, started, extra)
}

/// A snapshot of `volume` as create-snapshots made it in the daily slot of
/// `started` (its Description included), in `state`, tagged `lifecycle_state`.
fn snapshot_of(
    volume: &str,
    state: SnapshotState,
    lifecycle_state: &str,
    started: &str,
    extra: &[(&str, &str)],
) -> Snapshot {
    // The daily slot it was taken in, and the Description that proves it ours.
    let slot = format!("{}T00:00:00Z", &started[..10]);
    let description = identity("itest").scheduled(
        &Subject::Volume(volume.into()),
        "default",
        ebs_lifecycle_core::tags::parse_time(&slot).unwrap(),
    );
    let mut tags = vec![
        ("lifecycle:managed-by", "itest"),
        ("lifecycle:policy", "default"),
        ("lifecycle:slot", slot.as_str()),
        ("lifecycle:state", lifecycle_state),
        ("lifecycle:volume-id", volume),
        ("lifecycle:created-at", started),
        ("lifecycle:consistency", "crash"),
    ];
    tags.extend_from_slice(extra);
    let start = ebs_lifecycle_core::tags::parse_time(started).unwrap();
    Snapshot::builder()
        .snapshot_id("snap-0aaa")
        .volume_id(volume)
        .description(description)
        .state(state)
        .start_time(AwsTime::from_secs(start.timestamp()))
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                .collect(),
        ))
        .build()
}

fn describing(snapshots: Vec<Snapshot>) -> Rule {
    mock!(Client::describe_snapshots).then_output(move || {
        DescribeSnapshotsOutput::builder()
            .set_snapshots(Some(snapshots.clone()))
            .build()
    })
}

fn tag_write(key: &'static str, value: Option<&'static str>) -> Rule {
    mock!(Client::create_tags)
        .match_requests(move |r| {
            r.resources() == ["snap-0aaa"]
                && r.tags()
                    .iter()
                    .any(|t| t.key() == Some(key) && value.is_none_or(|v| t.value() == Some(v)))
        })
        .then_output(|| CreateTagsOutput::builder().build())
}

fn failed_event() -> Value {
    let text = std::fs::read_to_string(
        workspace_root().join("tests/fixtures/events/create-snapshot-failed.json"),
    )
    .unwrap();
    serde_json::from_str(
        &text
            .replace("snap-01234568", "snap-0aaa")
            .replace("vol-01234568", "vol-0aaa"),
    )
    .unwrap()
}

async fn run(
    client: Client,
    notifier: &dyn Notifier,
    event: &Value,
    now: &str,
) -> Result<RunSummary, InvocationError> {
    run_with_ledger(client, notifier, event, now, mocked_ledger()).await
}

async fn run_with_ledger(
    client: Client,
    notifier: &dyn Notifier,
    event: &Value,
    now: &str,
    ledger: &'static ebs_lifecycle::aws::ledger::DynamoLedger,
) -> Result<RunSummary, InvocationError> {
    let adapter = Ec2Adapter::new(client);
    let ports = complete_ports(&adapter, notifier, ledger);
    let now = ebs_lifecycle_core::tags::parse_time(now).unwrap();
    handle(
        ports,
        &config(POLICIES),
        event,
        now,
        Deadline::after(Duration::from_secs(600)),
    )
    .await
}

#[tokio::test]
async fn a_failure_is_tagged_and_notified_once_with_volume_policy_cause_and_what_next() {
    let describe = describing(vec![snapshot(
        SnapshotState::Error,
        "pending",
        "2026-03-01T03:00:13Z",
        &[],
    )]);
    let write = tag_write("lifecycle:state", Some("failed"));
    let notifier = RecordingNotifier::default();

    let summary = run(
        mocked_ec2(RuleMode::MatchAny, &[&describe, &write]),
        &notifier,
        &failed_event(),
        "2026-03-01T03:10:00Z",
    )
    .await
    .unwrap();

    assert_eq!(write.num_calls(), 1);
    assert_eq!(summary.failed.len(), 1);
    let sent = notifier.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, NotificationKind::SnapshotFailed);
    let d = &sent[0].details;
    assert_eq!(d["volume_id"], "vol-0aaa");
    assert_eq!(d["policy"], "default");
    assert_eq!(d["cause"], "Source volume vol-0aaa is no longer available");
    assert!(d["next"]
        .as_str()
        .unwrap()
        .contains("next create-snapshots tick"));

    // The same event again: the stack's ledger holds the alert, nobody is
    // paged twice.
    let describe = describing(vec![snapshot(
        SnapshotState::Error,
        "failed",
        "2026-03-01T03:00:13Z",
        &[],
    )]);
    let write = tag_write("lifecycle:state", None);
    let again = run_with_ledger(
        mocked_ec2(RuleMode::MatchAny, &[&describe, &write]),
        &notifier,
        &failed_event(),
        "2026-03-01T03:20:00Z",
        ledger_holding("failed/snap-0aaa"),
    )
    .await
    .unwrap();
    assert_eq!(again.unchanged, 1);
    assert_eq!(write.num_calls(), 0);
    assert_eq!(notifier.sent().len(), 1);

    // A `lifecycle:state` someone set to `completed` before the event
    // silences nothing: EC2 says error and the ledger has no alert.
    let forged = describing(vec![snapshot(
        SnapshotState::Error,
        "completed",
        "2026-03-01T03:00:13Z",
        &[],
    )]);
    let write = tag_write("lifecycle:state", Some("failed"));
    let paged = RecordingNotifier::default();
    run(
        mocked_ec2(RuleMode::MatchAny, &[&forged, &write]),
        &paged,
        &failed_event(),
        "2026-03-01T03:10:00Z",
    )
    .await
    .unwrap();
    assert_eq!(write.num_calls(), 1);
    assert_eq!(paged.sent().len(), 1);
    assert_eq!(paged.sent()[0].kind, NotificationKind::SnapshotFailed);
}

/// A mocked ledger that holds one report (`failed/<id>`, `stuck/<id>`).
fn ledger_holding(key: &'static str) -> &'static ebs_lifecycle::aws::ledger::DynamoLedger {
    let rule = mock!(aws_sdk_dynamodb::Client::batch_get_item).then_output(move || {
        use aws_sdk_dynamodb::types::AttributeValue;
        aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput::builder()
            .responses(
                integration_tests::LEDGER_TABLE,
                vec![std::collections::HashMap::from([
                    ("pk".to_string(), AttributeValue::S("report".into())),
                    ("sk".to_string(), AttributeValue::S(key.into())),
                ])],
            )
            .build()
    });
    integration_tests::mocked_ledger_with(&[Box::leak(Box::new(rule))])
}

struct FailingNotifier;

#[async_trait]
impl Notifier for FailingNotifier {
    async fn publish(&self, _: &Notification) -> Result<(), NotifyError> {
        Err(NotifyError {
            code: "InternalError".into(),
            message: "SNS is down".into(),
        })
    }
}

#[tokio::test]
async fn when_the_failure_cannot_be_notified_the_tag_stays_pending_for_a_retry() {
    let describe = describing(vec![snapshot(
        SnapshotState::Error,
        "pending",
        "2026-03-01T03:00:13Z",
        &[],
    )]);
    let write = tag_write("lifecycle:state", None);

    let err = run(
        mocked_ec2(RuleMode::MatchAny, &[&describe, &write]),
        &FailingNotifier,
        &failed_event(),
        "2026-03-01T03:10:00Z",
    )
    .await
    .unwrap_err();

    assert!(
        matches!(err, InvocationError::NotificationFailed(_)),
        "{err}"
    );
    assert_eq!(
        write.num_calls(),
        0,
        "written after notifying, so a retry notifies"
    );
}

#[tokio::test]
async fn reconcile_marks_errors_failed_and_alerts_a_stuck_snapshot_once() {
    let errored = describing(vec![snapshot(
        SnapshotState::Error,
        "pending",
        "2026-03-01T03:00:00Z",
        &[],
    )]);
    let write = tag_write("lifecycle:state", Some("failed"));
    let notifier = RecordingNotifier::default();
    let summary = run(
        mocked_ec2(RuleMode::MatchAny, &[&errored, &write]),
        &notifier,
        &json!({"kind": "tick"}),
        "2026-03-02T04:00:00Z",
    )
    .await
    .unwrap();
    assert_eq!((summary.failed.len(), write.num_calls()), (1, 1));
    assert_eq!(notifier.sent()[0].kind, NotificationKind::SnapshotFailed);

    // Pending for 25 hours (limit 240 minutes): one alert, and a marker so it is not repeated.
    let stuck = describing(vec![snapshot(
        SnapshotState::Pending,
        "pending",
        "2026-03-01T03:00:00Z",
        &[],
    )]);
    let marker = tag_write("lifecycle:stuck-notified-at", Some("2026-03-02T04:00:00Z"));
    let notifier = RecordingNotifier::default();
    let summary = run(
        mocked_ec2(RuleMode::MatchAny, &[&stuck, &marker]),
        &notifier,
        &json!({"kind": "tick"}),
        "2026-03-02T04:00:00Z",
    )
    .await
    .unwrap();
    assert_eq!(summary.stuck.len(), 1);
    assert!(summary.stuck[0].notified_now);
    assert_eq!(marker.num_calls(), 1);
    let sent = notifier.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, NotificationKind::SnapshotStuck);

    // A `stuck-notified-at` written by someone else silences nothing: the
    // stack's ledger has no record of the alert, so it is sent.
    let forged = describing(vec![snapshot(
        SnapshotState::Pending,
        "pending",
        "2026-03-01T03:00:00Z",
        &[("lifecycle:stuck-notified-at", "2026-03-02T00:00:00Z")],
    )]);
    let marker = tag_write("lifecycle:stuck-notified-at", Some("2026-03-02T04:00:00Z"));
    let silenced = RecordingNotifier::default();
    let summary = run(
        mocked_ec2(RuleMode::MatchAny, &[&forged, &marker]),
        &silenced,
        &json!({"kind": "tick"}),
        "2026-03-02T04:00:00Z",
    )
    .await
    .unwrap();
    assert!(summary.stuck[0].notified_now);
    assert_eq!(silenced.sent().len(), 1);

    // Next day, still stuck, already alerted (the ledger's record):
    // reported in the summary, not re-alerted.
    let still = describing(vec![snapshot(
        SnapshotState::Pending,
        "pending",
        "2026-03-01T03:00:00Z",
        &[("lifecycle:stuck-notified-at", "2026-03-02T04:00:00Z")],
    )]);
    let marker = tag_write("lifecycle:stuck-notified-at", None);
    let summary = run_with_ledger(
        mocked_ec2(RuleMode::MatchAny, &[&still, &marker]),
        &notifier,
        &json!({"kind": "tick"}),
        "2026-03-03T04:00:00Z",
        ledger_holding("stuck/snap-0aaa"),
    )
    .await
    .unwrap();
    assert_eq!(summary.stuck.len(), 1);
    assert!(!summary.stuck[0].notified_now);
    assert_eq!(marker.num_calls(), 0);
    assert_eq!(notifier.sent().len(), 1);

    // Young pending snapshots are neither stuck nor touched.
    let young = describing(vec![snapshot(
        SnapshotState::Pending,
        "pending",
        "2026-03-03T03:00:00Z",
        &[],
    )]);
    let summary = run(
        mocked_ec2(RuleMode::MatchAny, &[&young]),
        &notifier,
        &json!({"kind": "tick"}),
        "2026-03-03T04:00:00Z",
    )
    .await
    .unwrap();
    assert_eq!((summary.still_pending, summary.stuck.len()), (1, 0));
}

/// The daily reconcile on 2026-03-02 at 04:00, EC2 answered by `rules`.
async fn reconcile(rules: &[&Rule], notifier: &RecordingNotifier) -> RunSummary {
    run(
        mocked_ec2(RuleMode::MatchAny, rules),
        notifier,
        &json!({"kind": "tick"}),
        "2026-03-02T04:00:00Z",
    )
    .await
    .unwrap()
}

/// `snapshot` with these tags removed (the attacker's other move).
fn without(snapshot: Snapshot, keys: &[&str]) -> Snapshot {
    let tags: Vec<Tag> = snapshot
        .tags()
        .iter()
        .filter(|t| !keys.contains(&t.key().unwrap_or_default()))
        .cloned()
        .collect();
    Snapshot::builder()
        .snapshot_id(snapshot.snapshot_id().unwrap())
        .volume_id(snapshot.volume_id().unwrap())
        .description(snapshot.description().unwrap())
        .state(snapshot.state().unwrap().clone())
        .set_start_time(snapshot.start_time().cloned())
        .set_tags(Some(tags))
        .build()
}

/// The failure and stuck alerts sent (a removed `managed-by` is also
/// reported as `tampering-suspected`, by the ownership check).
fn alerts(notifier: &RecordingNotifier) -> Vec<Notification> {
    notifier
        .sent()
        .into_iter()
        .filter(|n| n.kind != NotificationKind::TamperingSuspected)
        .collect()
}

/// Any tag write at all (none may happen here).
fn any_tag_write() -> Rule {
    mock!(Client::create_tags).then_output(|| CreateTagsOutput::builder().build())
}

/// Removing `lifecycle:managed-by` (or every lifecycle label) from a
/// snapshot the deployment made silences no alert: its Description proves
/// it, EC2's state decides, the ledger makes it once. Its tags are not
/// written (the roles may tag only what carries the deployment's tag).
#[tokio::test]
async fn removing_the_labels_silences_no_failure_or_stuck_alert() {
    let labels = [
        "lifecycle:managed-by",
        "lifecycle:state",
        "lifecycle:policy",
        "lifecycle:slot",
        "lifecycle:volume-id",
        "lifecycle:created-at",
        "lifecycle:consistency",
    ];
    // The event path: the failure event for a snapshot without managed-by.
    for removed in [&labels[..1], &labels[..]] {
        let describe = describing(vec![without(
            snapshot(SnapshotState::Error, "pending", "2026-03-01T03:00:13Z", &[]),
            removed,
        )]);
        let writes = any_tag_write();
        let notifier = RecordingNotifier::default();
        let summary = run(
            mocked_ec2(RuleMode::MatchAny, &[&describe, &writes]),
            &notifier,
            &failed_event(),
            "2026-03-01T03:10:00Z",
        )
        .await
        .unwrap();
        let sent = alerts(&notifier);
        assert_eq!(sent.len(), 1, "{removed:?}");
        assert_eq!(sent[0].kind, NotificationKind::SnapshotFailed);
        assert_eq!(sent[0].details["volume_id"], "vol-0aaa", "from the proof");
        assert_eq!(sent[0].details["policy"], "default", "from the proof");
        assert_eq!(summary.failed.len(), 1);
        assert_eq!(writes.num_calls(), 0, "no tag written");

        // Alerted already (the ledger): not again.
        let describe = describing(vec![without(
            snapshot(SnapshotState::Error, "pending", "2026-03-01T03:00:13Z", &[]),
            removed,
        )]);
        let again = run_with_ledger(
            mocked_ec2(RuleMode::MatchAny, &[&describe]),
            &notifier,
            &failed_event(),
            "2026-03-01T03:20:00Z",
            ledger_holding("failed/snap-0aaa"),
        )
        .await
        .unwrap();
        assert!(again.failed.is_empty());
        assert_eq!(alerts(&notifier).len(), 1);
    }

    // The daily reconcile finds them by Description and EC2's state.
    let errored = describing(vec![without(
        snapshot(SnapshotState::Error, "pending", "2026-03-01T03:00:00Z", &[]),
        &labels,
    )]);
    let writes = any_tag_write();
    let notifier = RecordingNotifier::default();
    reconcile(&[&errored, &writes], &notifier).await;
    assert_eq!(alerts(&notifier).len(), 1);
    assert_eq!(alerts(&notifier)[0].kind, NotificationKind::SnapshotFailed);
    assert_eq!(writes.num_calls(), 0);

    let stuck = describing(vec![without(
        snapshot(
            SnapshotState::Pending,
            "pending",
            "2026-03-01T03:00:00Z",
            &[],
        ),
        &labels,
    )]);
    let writes = any_tag_write();
    let notifier = RecordingNotifier::default();
    let summary = reconcile(&[&stuck, &writes], &notifier).await;
    assert_eq!(summary.stuck.len(), 1);
    assert!(summary.stuck[0].notified_now);
    assert_eq!(summary.stuck[0].volume_id.as_deref(), Some("vol-0aaa"));
    assert_eq!(alerts(&notifier).len(), 1);
    assert_eq!(alerts(&notifier)[0].kind, NotificationKind::SnapshotStuck);
    assert_eq!(
        writes.num_calls(),
        0,
        "no marker on a snapshot without its labels"
    );

    // `lifecycle:state=completed` written on a snapshot EC2 still says is
    // pending: still stuck, alerted, and marked (it carries the deployment's tag).
    let forged = describing(vec![snapshot(
        SnapshotState::Pending,
        "completed",
        "2026-03-01T03:00:00Z",
        &[],
    )]);
    let marker = tag_write("lifecycle:stuck-notified-at", Some("2026-03-02T04:00:00Z"));
    let notifier = RecordingNotifier::default();
    let summary = reconcile(&[&forged, &marker], &notifier).await;
    assert_eq!(summary.stuck.len(), 1);
    assert_eq!(alerts(&notifier).len(), 1);
    assert_eq!(marker.num_calls(), 1);

    // And one tagged `completed` that EC2 says failed: alerted, tag set true.
    let forged = describing(vec![snapshot(
        SnapshotState::Error,
        "completed",
        "2026-03-01T03:00:00Z",
        &[],
    )]);
    let write = tag_write("lifecycle:state", Some("failed"));
    let notifier = RecordingNotifier::default();
    let summary = reconcile(&[&forged, &write], &notifier).await;
    assert_eq!(summary.failed.len(), 1);
    assert_eq!(alerts(&notifier).len(), 1);
    assert_eq!(write.num_calls(), 1);
}

#[tokio::test]
async fn every_malformed_event_is_rejected_naming_its_field_with_no_aws_call() {
    let text =
        std::fs::read_to_string(workspace_root().join("tests/fixtures/malformed-events.json"))
            .unwrap();
    let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert!(cases.len() >= 30);
    for case in cases {
        let describe = describing(vec![snapshot(
            SnapshotState::Completed,
            "pending",
            "2026-03-01T03:00:00Z",
            &[],
        )]);
        let write = tag_write("lifecycle:state", None);
        let notifier = RecordingNotifier::default();
        let why = case["why"].as_str().unwrap();

        let err = run(
            mocked_ec2(RuleMode::MatchAny, &[&describe, &write]),
            &notifier,
            &case["event"],
            "2026-03-01T03:10:00Z",
        )
        .await
        .expect_err(why);

        let InvocationError::InvalidEvent(e) = &err else {
            panic!("{why}: {err}")
        };
        assert_eq!(e.field(), case["field"].as_str(), "{why}: {e}");
        assert!(
            err.to_string().len() < 400,
            "{why}: the message stays short even for huge input"
        );
        assert_eq!(
            (describe.num_calls(), write.num_calls()),
            (0, 0),
            "{why}: no AWS call"
        );
        assert!(notifier.sent().is_empty(), "{why}");
        let diagnostic: lambda_runtime::Diagnostic = err.into();
        assert_eq!(diagnostic.error_type, "InvalidEvent");
    }
}

#[tokio::test]
async fn a_multi_volume_failure_fails_only_the_snapshot_that_failed() {
    let text = std::fs::read_to_string(
        workspace_root().join("tests/fixtures/events/create-snapshots-completed.json"),
    )
    .unwrap();
    let mut event: Value = serde_json::from_str(
        &text
            .replace("snap-01234569", "snap-0aaa")
            .replace("snap-0123456a", "snap-0bbb"),
    )
    .unwrap();
    event["detail"]["result"] = json!("failed");
    event["detail"]["cause"] = json!("Internal error while snapshotting vol-0123456a");
    event["detail"]["snapshots"][1]["status"] = json!("failed");
    let mut other = snapshot(SnapshotState::Error, "pending", "2026-03-01T03:00:14Z", &[]);
    other.snapshot_id = Some("snap-0bbb".into());
    let describe = describing(vec![
        snapshot(
            SnapshotState::Completed,
            "pending",
            "2026-03-01T03:00:14Z",
            &[],
        ),
        other,
    ]);
    let completed = mock!(Client::create_tags)
        .match_requests(|r| {
            r.resources() == ["snap-0aaa"]
                && r.tags().iter().any(|t| t.value() == Some("completed"))
        })
        .then_output(|| CreateTagsOutput::builder().build());
    let failed = mock!(Client::create_tags)
        .match_requests(|r| {
            r.resources() == ["snap-0bbb"] && r.tags().iter().any(|t| t.value() == Some("failed"))
        })
        .then_output(|| CreateTagsOutput::builder().build());
    let notifier = RecordingNotifier::default();

    let summary = run(
        mocked_ec2(RuleMode::MatchAny, &[&describe, &completed, &failed]),
        &notifier,
        &event,
        "2026-03-01T03:12:30Z",
    )
    .await
    .unwrap();

    assert_eq!((completed.num_calls(), failed.num_calls()), (1, 1));
    assert_eq!(summary.completed.len(), 1);
    assert_eq!(summary.failed.len(), 1);
    let sent = notifier.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].details["snapshot_id"], "snap-0bbb");
    assert_eq!(
        sent[0].details["cause"],
        "Internal error while snapshotting vol-0123456a"
    );
}

/// AWS's own documented failed `createSnapshots` event (per-snapshot
/// `"status": "error"`, placeholder times): both snapshots, still pending in
/// EC2's describe (it can lag the event), become `failed` and are alerted
/// once each, on the event itself rather than at the next reconcile.
#[tokio::test]
async fn the_documented_failed_multi_volume_event_fails_each_snapshot_at_once() {
    let text = std::fs::read_to_string(
        workspace_root().join("tests/fixtures/events/aws-docs/create-snapshots-failed.json"),
    )
    .unwrap();
    let event: Value = serde_json::from_str(&text).unwrap();
    let pending = |id: &str, volume: &str| {
        let mut s = snapshot_of(
            volume,
            SnapshotState::Pending,
            "pending",
            "2026-03-01T03:00:14Z",
            &[],
        );
        s.snapshot_id = Some(id.into());
        s
    };
    let describe = describing(vec![
        pending("snap-01234567", "vol-01234567"),
        pending("snap-012345678", "vol-012345678"),
    ]);
    let failed = mock!(Client::create_tags)
        .match_requests(|r| r.tags().iter().any(|t| t.value() == Some("failed")))
        .then_output(|| CreateTagsOutput::builder().build());
    let notifier = RecordingNotifier::default();

    let summary = run(
        mocked_ec2(RuleMode::MatchAny, &[&describe, &failed]),
        &notifier,
        &event,
        "2026-03-01T03:12:30Z",
    )
    .await
    .expect("AWS's documented event is processed, not rejected");

    assert_eq!(failed.num_calls(), 2, "each snapshot is tagged failed");
    assert_eq!(summary.failed.len(), 2);
    assert!(summary.completed.is_empty());
    let sent = notifier.sent();
    assert_eq!(sent.len(), 2, "one snapshot-failed alert per snapshot");
    assert!(sent
        .iter()
        .all(|n| n.details["cause"] == "Snapshot snap-01234567 is in status error"));
}

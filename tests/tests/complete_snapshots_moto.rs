//! complete-snapshots against moto, fed the documented event samples
//! (tests/fixtures/events, copied from the team's shared/events) with their
//! ids replaced by real snapshots.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use complete_snapshots::{handle, InvocationError, RunSummary};
use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle_core::tags::{self, LifecycleState};
use integration_tests::*;

fn at(s: &str) -> DateTime<Utc> {
    tags::parse_time(s).unwrap()
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(workspace_root().join("tests/fixtures/events").join(name)).unwrap()
}

/// The fixture with its sample ids replaced by ours.
fn event(name: &str, replace: &[(&str, &str)]) -> Value {
    let mut text = fixture(name);
    for (from, to) in replace {
        text = text.replace(from, to);
    }
    serde_json::from_str(&text).unwrap()
}

/// A snapshot as create-snapshots leaves it: tagged pending by
/// `deployment`, with its Description, taken in its slot.
async fn pending_snapshot(moto: &Moto, deployment: &str) -> (String, String) {
    let volume = create_volume(&moto.ec2(), 8, &[("Backup", "default")]).await;
    let mut labels = labels_for(&volume, deployment, "default", moto.next_slot());
    labels.state = LifecycleState::Pending;
    labels.completed_at = None;
    let snapshot = snapshot_as_created(moto, &volume, &labels, &[]).await;
    (snapshot, volume)
}

async fn deliver(
    moto: &Moto,
    notifier: &RecordingNotifier,
    event: &Value,
    now: &str,
) -> Result<RunSummary, InvocationError> {
    let adapter = Ec2Adapter::new(moto.ec2());
    let ports = complete_ports(&adapter, notifier, moto.ledger());
    handle(
        ports,
        &config("{\"default\":{\"schedule\":\"@daily\",\"keep\":{\"last\":3}}}"),
        event,
        at(now),
        Deadline::after(Duration::from_secs(600)),
    )
    .await
}

async fn tags_of(moto: &Moto, id: &str) -> ebs_lifecycle_core::Tags {
    snapshots(&moto.ec2())
        .await
        .into_iter()
        .find(|s| s.id == id)
        .unwrap()
        .tags
}

#[tokio::test]
async fn create_snapshot_succeeded_completes_the_snapshot_with_the_events_end_time() {
    let moto = Moto::start();
    let (snap, vol) = pending_snapshot(&moto, "itest").await;
    let notifier = RecordingNotifier::default();
    let e = event(
        "create-snapshot-succeeded.json",
        &[("snap-01234567", &snap), ("vol-01234567", &vol)],
    );

    let summary = deliver(&moto, &notifier, &e, "2026-03-01T03:08:00Z")
        .await
        .unwrap();

    assert_eq!(summary.completed.len(), 1);
    let t = tags_of(&moto, &snap).await;
    assert_eq!(t[tags::STATE], "completed");
    assert_eq!(t[tags::COMPLETED_AT], "2026-03-01T03:07:40Z");
    assert!(notifier.sent().is_empty());
}

#[tokio::test]
async fn the_multi_volume_event_completes_every_snapshot_it_lists() {
    let moto = Moto::start();
    let (a, va) = pending_snapshot(&moto, "itest").await;
    let (b, vb) = pending_snapshot(&moto, "itest").await;
    let e = event(
        "create-snapshots-completed.json",
        &[
            ("snap-01234569", &a),
            ("vol-01234569", &va),
            ("snap-0123456a", &b),
            ("vol-0123456a", &vb),
        ],
    );

    let summary = deliver(
        &moto,
        &RecordingNotifier::default(),
        &e,
        "2026-03-01T03:12:30Z",
    )
    .await
    .unwrap();

    assert_eq!(summary.completed.len(), 2);
    for id in [&a, &b] {
        let t = tags_of(&moto, id).await;
        assert_eq!(t[tags::STATE], "completed");
        assert_eq!(t[tags::COMPLETED_AT], "2026-03-01T03:11:58Z");
    }
}

#[tokio::test]
async fn a_copy_snapshot_event_completes_the_copy() {
    let moto = Moto::start();
    let (copy, _) = pending_snapshot(&moto, "itest").await;
    let mut e = event(
        "create-snapshot-succeeded.json",
        &[("snap-01234567", &copy)],
    );
    e["detail"]["event"] = json!("copySnapshot");
    e["detail"]["source"] = json!("arn:aws:ec2::us-west-2:snapshot/snap-0fromelsewhere");

    let summary = deliver(
        &moto,
        &RecordingNotifier::default(),
        &e,
        "2026-03-01T03:08:00Z",
    )
    .await
    .unwrap();
    assert_eq!(summary.header.event.as_deref(), Some("copySnapshot"));
    assert_eq!(tags_of(&moto, &copy).await[tags::STATE], "completed");
}

#[tokio::test]
async fn an_event_contradicting_ec2_loses_to_ec2() {
    // moto's snapshots are completed at once; a "failed" event for one must
    // not make the tag lie, nor page anyone.
    let moto = Moto::start();
    let (snap, vol) = pending_snapshot(&moto, "itest").await;
    let notifier = RecordingNotifier::default();
    let e = event(
        "create-snapshot-failed.json",
        &[("snap-01234568", &snap), ("vol-01234568", &vol)],
    );

    let summary = deliver(&moto, &notifier, &e, "2026-03-01T03:10:00Z")
        .await
        .unwrap();
    assert_eq!(summary.completed.len(), 1);
    assert!(summary.failed.is_empty());
    assert_eq!(tags_of(&moto, &snap).await[tags::STATE], "completed");
    assert!(notifier.sent().is_empty());
}

#[tokio::test]
async fn repeated_and_late_events_change_nothing() {
    let moto = Moto::start();
    let (snap, vol) = pending_snapshot(&moto, "itest").await;
    let notifier = RecordingNotifier::default();
    let e = event(
        "create-snapshot-succeeded.json",
        &[("snap-01234567", &snap), ("vol-01234567", &vol)],
    );

    // Reconcile got there first, then the event arrives late, twice.
    let reconciled = deliver(
        &moto,
        &notifier,
        &json!({"kind": "tick"}),
        "2026-03-02T04:00:00Z",
    )
    .await
    .unwrap();
    assert_eq!(reconciled.completed.len(), 1);
    for _ in 0..2 {
        let late = deliver(&moto, &notifier, &e, "2026-03-02T05:00:00Z")
            .await
            .unwrap();
        assert_eq!(late.unchanged, 1);
        assert!(late.completed.is_empty());
    }
    let t = tags_of(&moto, &snap).await;
    assert_eq!(
        t[tags::COMPLETED_AT],
        "2026-03-02T04:00:00Z",
        "the first writer's time stays"
    );
    assert!(notifier.sent().is_empty());
}

#[tokio::test]
async fn foreign_snapshots_are_ignored_and_untouched() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (theirs, vol) = pending_snapshot(&moto, "another-stack").await;
    let untagged = ec2
        .create_snapshot()
        .volume_id(&vol)
        .send()
        .await
        .unwrap()
        .snapshot_id()
        .unwrap()
        .to_string();
    let notifier = RecordingNotifier::default();

    for id in [&theirs, &untagged] {
        let e = event("create-snapshot-succeeded.json", &[("snap-01234567", id)]);
        let summary = deliver(&moto, &notifier, &e, "2026-03-01T03:08:00Z")
            .await
            .unwrap();
        assert_eq!(summary.foreign, 1);
        assert!(summary.completed.is_empty());
    }
    assert_eq!(
        tags_of(&moto, &theirs).await[tags::STATE],
        "pending",
        "another deployment's tag is theirs"
    );
    assert!(tags_of(&moto, &untagged).await.is_empty());
}

#[tokio::test]
async fn a_snapshot_not_visible_yet_fails_the_invocation_for_a_retry() {
    let moto = Moto::start();
    let e = event(
        "create-snapshot-succeeded.json",
        &[("snap-01234567", "snap-0notyetvisible0")],
    );
    let err = deliver(
        &moto,
        &RecordingNotifier::default(),
        &e,
        "2026-03-01T03:08:00Z",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, InvocationError::SnapshotNotVisible(ref ids) if ids == &["snap-0notyetvisible0"]),
        "{err}"
    );
    let diagnostic: lambda_runtime::Diagnostic = err.into();
    assert_eq!(diagnostic.error_type, "SnapshotNotVisible");
}

#[tokio::test]
async fn reconcile_corrects_a_pending_tag_that_ec2_says_is_completed() {
    let moto = Moto::start();
    let (ours, _) = pending_snapshot(&moto, "itest").await;
    let (theirs, _) = pending_snapshot(&moto, "another-stack").await;
    let notifier = RecordingNotifier::default();

    let summary = deliver(
        &moto,
        &notifier,
        &json!({"kind": "tick"}),
        "2026-03-02T04:00:00Z",
    )
    .await
    .unwrap();

    assert_eq!(summary.header.trigger, "daily");
    assert_eq!(summary.completed.len(), 1);
    assert_eq!(tags_of(&moto, &ours).await[tags::STATE], "completed");
    assert_eq!(tags_of(&moto, &theirs).await[tags::STATE], "pending");
    // A second reconcile finds nothing left to do.
    let again = deliver(
        &moto,
        &notifier,
        &json!({"kind": "tick"}),
        "2026-03-03T04:00:00Z",
    )
    .await
    .unwrap();
    assert!(again.completed.is_empty() && again.failed.is_empty());
}

#[tokio::test]
async fn well_formed_ebs_events_it_does_not_handle_are_ignored() {
    let moto = Moto::start();
    let (snap, _) = pending_snapshot(&moto, "itest").await;
    let mut e = event(
        "create-snapshot-succeeded.json",
        &[("snap-01234567", &snap)],
    );
    e["detail"]["event"] = json!("shareSnapshot");
    let summary = deliver(
        &moto,
        &RecordingNotifier::default(),
        &e,
        "2026-03-01T03:08:00Z",
    )
    .await
    .unwrap();
    assert!(summary.header.event.unwrap().starts_with("ignored"));
    assert_eq!(tags_of(&moto, &snap).await[tags::STATE], "pending");
}

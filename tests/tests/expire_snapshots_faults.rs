//! expire-snapshots where moto cannot go, on the real SDK client answered by
//! aws-smithy-mocks: EC2 refusing a delete, a snapshot already gone,
//! throttling that outlasts retries, a failed fact lookup, and the pacing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use aws_sdk_ec2::operation::delete_snapshot::DeleteSnapshotOutput;
use aws_sdk_ec2::operation::describe_images::DescribeImagesOutput;
use aws_sdk_ec2::operation::describe_locked_snapshots::DescribeLockedSnapshotsOutput;
use aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput;
use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput;
use aws_sdk_ec2::primitives::DateTime as AwsTime;
use aws_sdk_ec2::types::{Snapshot, SnapshotState, Tag, Volume};
use aws_sdk_ec2::Client;
use aws_smithy_mocks::{mock, Rule, RuleMode};
use serde_json::json;

use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::aws::MAX_ATTEMPTS;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle_core::ownership::Subject;
use expire_snapshots::{handle, ExpireError, Pacing, Ports, RunSummary, DELETE_PACING};
use integration_tests::{
    config, ec2_error, expire_ports, identity, mocked_ec2, mocked_ledger, RecordingNotifier,
};

const POLICIES: &str = r#"{"lean": {"schedule": "@daily", "keep": {"last": 1}}}"#;

/// Four completed managed snapshots of vol-1, a day apart; `last 1` keeps
/// snap-3 (the newest), so snap-0, snap-1, snap-2 are deletable.
fn history() -> Rule {
    mock!(Client::describe_snapshots).then_output(|| {
        let snaps = (0..4)
            .map(|i| {
                // Taken 12 s into its daily slot, with the Description that
                // proves it ours.
                let slot =
                    chrono::DateTime::from_timestamp(1_772_323_200 + i64::from(i) * 86_400, 0)
                        .unwrap();
                let slot_text = ebs_lifecycle_core::tags::format_time(slot);
                let description =
                    identity("itest").scheduled(&Subject::Volume("vol-1".into()), "lean", slot);
                let tags = [
                    ("lifecycle:managed-by", "itest"),
                    ("lifecycle:policy", "lean"),
                    ("lifecycle:slot", slot_text.as_str()),
                    ("lifecycle:state", "completed"),
                    ("lifecycle:volume-id", "vol-1"),
                    ("lifecycle:created-at", "2026-03-01T00:00:00Z"),
                    ("lifecycle:consistency", "crash"),
                ];
                Snapshot::builder()
                    .snapshot_id(format!("snap-{i}"))
                    .volume_id("vol-1")
                    .description(description)
                    .volume_size(100)
                    .state(SnapshotState::Completed)
                    .start_time(AwsTime::from_secs(slot.timestamp() + 12))
                    .set_tags(Some(
                        tags.iter()
                            .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                            .collect(),
                    ))
                    .build()
            })
            .collect();
        DescribeSnapshotsOutput::builder()
            .set_snapshots(Some(snaps))
            .build()
    })
}

fn no_images() -> Rule {
    mock!(Client::describe_images).then_output(|| DescribeImagesOutput::builder().build())
}

fn no_locks() -> Rule {
    mock!(Client::describe_locked_snapshots)
        .then_output(|| DescribeLockedSnapshotsOutput::builder().build())
}

fn volume_exists() -> Rule {
    mock!(Client::describe_volumes).then_output(|| {
        DescribeVolumesOutput::builder()
            .volumes(Volume::builder().volume_id("vol-1").build())
            .build()
    })
}

fn delete(
    id: &'static str,
) -> aws_smithy_mocks::RuleBuilder<
    aws_sdk_ec2::operation::delete_snapshot::DeleteSnapshotInput,
    DeleteSnapshotOutput,
    aws_sdk_ec2::operation::delete_snapshot::DeleteSnapshotError,
> {
    mock!(Client::delete_snapshot).match_requests(move |r| r.snapshot_id() == Some(id))
}

async fn run(client: Client, notifier: &RecordingNotifier) -> Result<RunSummary, ExpireError> {
    let adapter = Ec2Adapter::new(client);
    let ports = expire_ports(&adapter, notifier, mocked_ledger());
    let now = ebs_lifecycle_core::tags::parse_time("2026-03-10T04:00:00Z").unwrap();
    handle(
        Ports {
            pacing: Pacing::NONE,
            ..ports
        },
        &config(POLICIES),
        &json!({"kind": "tick"}),
        now,
        Deadline::after(Duration::from_secs(600)),
    )
    .await
}

#[tokio::test]
async fn refusals_and_throttling_are_reported_per_snapshot_and_the_run_goes_on() {
    let (snaps, images, locks, volumes) = (history(), no_images(), no_locks(), volume_exists());
    let in_use = delete("snap-0").then_http_response(|| ec2_error(400, "InvalidSnapshot.InUse"));
    let throttled = delete("snap-1")
        .sequence()
        .http_response(|| ec2_error(503, "RequestLimitExceeded"))
        .repeatedly()
        .build();
    let gone = delete("snap-2").then_http_response(|| ec2_error(400, "InvalidSnapshot.NotFound"));
    let newest = delete("snap-3").then_output(|| DeleteSnapshotOutput::builder().build());
    let client = mocked_ec2(
        RuleMode::MatchAny,
        &[
            &snaps, &images, &locks, &volumes, &in_use, &throttled, &gone, &newest,
        ],
    );
    let notifier = RecordingNotifier::default();

    let summary = run(client, &notifier).await.unwrap();

    assert_eq!(
        newest.num_calls(),
        0,
        "the newest snapshot is never even tried"
    );
    assert_eq!(in_use.num_calls(), 1, "a refusal is not retried");
    assert_eq!(throttled.num_calls(), MAX_ATTEMPTS as usize);
    let v = &summary.volumes[0];
    let failed: Vec<(&str, &str)> = v
        .failed
        .iter()
        .map(|f| (f.snapshot_id.as_str(), f.error_kind.as_str()))
        .collect();
    assert_eq!(
        failed,
        [("snap-0", "snapshot-in-use"), ("snap-1", "throttled")]
    );
    assert_eq!(
        v.deleted
            .iter()
            .map(|d| d.snapshot_id.as_str())
            .collect::<Vec<_>>(),
        ["snap-2"],
        "already gone counts as done"
    );
    let sent = notifier.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].severity,
        ebs_lifecycle_core::notify::Severity::Warning
    );
}

#[tokio::test]
async fn without_the_ami_list_nothing_is_deleted() {
    let (snaps, locks, volumes) = (history(), no_locks(), volume_exists());
    let images = mock!(Client::describe_images)
        .sequence()
        .http_response(|| ec2_error(503, "Unavailable"))
        .repeatedly()
        .build();
    let any_delete =
        mock!(Client::delete_snapshot).then_output(|| DeleteSnapshotOutput::builder().build());
    let client = mocked_ec2(
        RuleMode::MatchAny,
        &[&snaps, &images, &locks, &volumes, &any_delete],
    );

    let err = run(client, &RecordingNotifier::default())
        .await
        .unwrap_err();

    assert!(matches!(err, ExpireError::FactsUnavailable(_)), "{err}");
    assert_eq!(any_delete.num_calls(), 0);
    let diagnostic: lambda_runtime::Diagnostic = err.into();
    assert_eq!(diagnostic.error_type, "FactsUnavailable");
}

/// Expiry over `history()` (three deletable snapshots) with these lock and
/// delete answers.
async fn expire_history(locks: &Rule, deletes: &Rule, pacing: Pacing) -> RunSummary {
    let (snaps, images, volumes) = (history(), no_images(), volume_exists());
    let client = mocked_ec2(
        RuleMode::MatchAny,
        &[&snaps, &images, locks, &volumes, deletes],
    );
    let adapter = Ec2Adapter::new(client);
    let notifier = RecordingNotifier::default();
    let ports = expire_ports(&adapter, &notifier, mocked_ledger());
    handle(
        Ports { pacing, ..ports },
        &config(POLICIES),
        &json!({"kind": "tick"}),
        ebs_lifecycle_core::tags::parse_time("2026-03-10T04:00:00Z").unwrap(),
        Deadline::after(Duration::from_secs(600)),
    )
    .await
    .unwrap()
}

fn deletes_succeed() -> Rule {
    mock!(Client::delete_snapshot).then_output(|| DeleteSnapshotOutput::builder().build())
}

// On tokio's paused clock (the mocks answer at once, so only the pacer's
// sleeps move it): the pauses measured are the pacer's, never the
// machine's load.
#[tokio::test(start_paused = true)]
async fn deletions_burst_then_go_at_the_delete_snapshot_refill_rate() {
    use tokio::time::Instant;
    // A daily run's few deletions fit the burst: no pause at all.
    const { assert!(DELETE_PACING.burst >= 3) };
    let started = Instant::now();
    let summary = expire_history(&no_locks(), &deletes_succeed(), DELETE_PACING).await;
    assert_eq!(summary.counts.deleted, 3);
    assert!(
        started.elapsed() < DELETE_PACING.interval,
        "{:?}",
        started.elapsed()
    );

    // Past the burst, one call per interval: 3 deletions with a burst of 1
    // take two pauses of 200 ms (at most 5 per second).
    let deletes = deletes_succeed();
    let started = Instant::now();
    let summary = expire_history(
        &no_locks(),
        &deletes,
        Pacing {
            burst: 1,
            interval: DELETE_PACING.interval,
        },
    )
    .await;
    assert_eq!(summary.counts.deleted, 3);
    assert_eq!(summary.counts.source_volume_gib_of_deleted, 300);
    assert_eq!(deletes.num_calls(), 3);
    assert!(
        started.elapsed() >= 2 * DELETE_PACING.interval,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn locks_that_cannot_be_read_are_reported_and_deletion_goes_on() {
    // EC2 itself refuses to delete a locked snapshot, so an unreadable lock
    // list costs nothing but the report.
    let locks = mock!(Client::describe_locked_snapshots)
        .then_http_response(|| ec2_error(400, "UnsupportedOperation"));
    let deletes = deletes_succeed();
    let summary = expire_history(&locks, &deletes, Pacing::NONE).await;
    assert!(!summary.locks_checked);
    assert_eq!(summary.counts.deleted, 3);
    assert_eq!(deletes.num_calls(), 3);
}

/// Locks come from one unfiltered, paged listing of the account's locked
/// snapshots: a locked snapshot of this history is kept (on the second
/// page), snapshots of others in the listing change nothing, and the
/// listing is not asked per snapshot.
#[tokio::test]
async fn a_locked_snapshot_is_kept_from_one_paged_listing() {
    use aws_sdk_ec2::types::LockedSnapshotsInfo;
    let locked = |id: &str| LockedSnapshotsInfo::builder().snapshot_id(id).build();
    let locks = mock!(Client::describe_locked_snapshots)
        .sequence()
        .output(move || {
            DescribeLockedSnapshotsOutput::builder()
                .snapshots(locked("snap-elsewhere"))
                .next_token("page-2")
                .build()
        })
        .output(move || {
            DescribeLockedSnapshotsOutput::builder()
                .snapshots(locked("snap-1"))
                .build()
        })
        .build();
    let deletes = deletes_succeed();
    let summary = expire_history(&locks, &deletes, Pacing::NONE).await;
    assert!(summary.locks_checked);
    assert_eq!(locks.num_calls(), 2, "two pages, not a call per snapshot");
    assert_eq!(
        summary.counts.deleted, 2,
        "snap-0 and snap-2; snap-1 is locked"
    );
    let kept: Vec<(&str, &str)> = summary
        .volumes
        .iter()
        .flat_map(|v| v.kept.iter())
        .map(|k| (k.snapshot_id.as_str(), k.why.as_str()))
        .collect();
    assert!(kept.contains(&("snap-1", "locked")), "{kept:?}");
}

/// Whether a DescribeSnapshots asks for a batch's volumes (`volume-id` or
/// `tag:lifecycle:volume-id`), and for `volume` if given.
fn asks_for_volumes(
    r: &aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsInput,
    volume: Option<&str>,
) -> bool {
    r.filters().iter().any(|f| {
        f.name().is_some_and(|n| n.ends_with("volume-id"))
            && volume.is_none_or(|v| f.values().iter().any(|x| x == v))
    })
}

/// 201 volumes of the deployment (two batches: vol-000..vol-199 and
/// vol-200), named by the listing at the start; the batches' describes find
/// nothing, except that those of the batch holding `failing` fail (503, on
/// every attempt).
fn two_batches(failing: &'static str) -> [Rule; 3] {
    let failed_batch = mock!(Client::describe_snapshots)
        .match_requests(move |r| asks_for_volumes(r, Some(failing)))
        .sequence()
        .http_response(|| ec2_error(503, "Unavailable"))
        .repeatedly()
        .build();
    let batches = mock!(Client::describe_snapshots)
        .match_requests(|r| asks_for_volumes(r, None))
        .then_output(|| DescribeSnapshotsOutput::builder().build());
    let listing = mock!(Client::describe_snapshots).then_output(|| {
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        DescribeSnapshotsOutput::builder()
            .set_snapshots(Some(
                (0..201)
                    .map(|i| {
                        let volume = format!("vol-{i:03}");
                        Snapshot::builder()
                            .snapshot_id(format!("snap-{i:03}"))
                            .volume_id(&volume)
                            .state(SnapshotState::Completed)
                            .tags(tag("lifecycle:managed-by", "itest"))
                            .tags(tag("lifecycle:volume-id", &volume))
                            .build()
                    })
                    .collect(),
            ))
            .build()
    });
    [failed_batch, batches, listing]
}

/// A batch EC2 will not list stops the run there, as the deadline does:
/// the next run starts at it, and the summary says why. On the run's first
/// batch there is nothing to show, so the run fails.
#[tokio::test]
async fn a_batch_ec2_will_not_list_stops_the_run_unless_it_is_the_first() {
    let none =
        mock!(Client::describe_volumes).then_output(|| DescribeVolumesOutput::builder().build());
    for (failing, stopped) in [("vol-200", true), ("vol-000", false)] {
        let [failed_batch, batches, listing] = two_batches(failing);
        let (images, locks) = (no_images(), no_locks());
        let client = mocked_ec2(
            RuleMode::MatchAny,
            &[&failed_batch, &batches, &listing, &images, &locks, &none],
        );
        let result = run(client, &RecordingNotifier::default()).await;
        assert!(
            failed_batch.num_calls() >= MAX_ATTEMPTS as usize,
            "retried first: {}",
            failed_batch.num_calls()
        );
        if stopped {
            let summary = result.unwrap();
            assert_eq!(summary.progress.stopped_at.as_deref(), Some("vol-200"));
            assert_eq!(summary.volumes_not_reached, 1);
            let why = summary.progress.stopped_by_error.unwrap_or_default();
            assert!(why.starts_with("stopped at vol-200: "), "{why}");
        } else {
            let err = result.unwrap_err();
            assert!(matches!(err, ExpireError::FactsUnavailable(_)), "{err}");
        }
    }
}

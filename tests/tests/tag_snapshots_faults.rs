//! tag-snapshots where moto cannot go, on the real SDK client answered by
//! aws-smithy-mocks: a snapshot deleted between the plan and the write, a tag
//! EC2 refuses, and throttling that outlasts every retry.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use aws_sdk_ec2::operation::create_tags::CreateTagsOutput;
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
use aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput;
use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput;
use aws_sdk_ec2::primitives::DateTime as AwsTime;
use aws_sdk_ec2::types::{Snapshot, SnapshotState, Tag, Volume};
use aws_sdk_ec2::Client;
use aws_smithy_mocks::{mock, Rule, RuleMode};
use serde_json::json;

use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle_core::notify::NotificationKind;
use ebs_lifecycle_core::ownership::Subject;
use ebs_lifecycle_core::tags::SkipReason;
use integration_tests::{
    config, ec2_error, identity, mocked_ec2, mocked_ledger, tag_ports, RecordingNotifier,
};
use tag_snapshots::{handle, Pacing, Ports, RunSummary};

/// `Owner` is copied from the volume; `Tier` is the policy's static tag.
/// `within` keeps snapshots of one instant alike, so all three need the very
/// same tags and the plan is one CreateTags batch. Every minute is a slot, so
/// three slots' snapshots can start at one instant.
const POLICIES: &str = r#"{"gold": {"schedule": "* * * * *", "keep": {"within": "30d"},
    "copy_tags": ["Owner"], "tags": {"Tier": "gold"}}}"#;

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

/// Three completed managed snapshots of vol-1, for the slots of 00:00,
/// 00:01 and 00:02, all started at 00:02:30 (it makes their labels equal).
fn three_snapshots() -> Rule {
    mock!(Client::describe_snapshots).then_output(|| {
        let snaps = (0..3)
            .map(|i| {
                let slot = chrono::DateTime::from_timestamp(1_772_323_200 + i * 60, 0).unwrap();
                Snapshot::builder()
                    .snapshot_id(format!("snap-{i}"))
                    .volume_id("vol-1")
                    .description(identity("itest").scheduled(
                        &Subject::Volume("vol-1".into()),
                        "gold",
                        slot,
                    ))
                    .state(SnapshotState::Completed)
                    .start_time(AwsTime::from_secs(1_772_323_200 + 150))
                    .tags(tag("lifecycle:managed-by", "itest"))
                    .tags(tag("lifecycle:policy", "gold"))
                    .tags(tag("lifecycle:volume-id", "vol-1"))
                    .build()
            })
            .collect();
        DescribeSnapshotsOutput::builder()
            .set_snapshots(Some(snaps))
            .build()
    })
}

fn the_volume() -> Rule {
    mock!(Client::describe_volumes).then_output(|| {
        DescribeVolumesOutput::builder()
            .volumes(
                Volume::builder()
                    .volume_id("vol-1")
                    .tags(tag("Owner", "alice"))
                    .build(),
            )
            .build()
    })
}

fn no_instances() -> Rule {
    mock!(Client::describe_instances).then_output(|| DescribeInstancesOutput::builder().build())
}

async fn run(client: Client, notifier: &RecordingNotifier) -> RunSummary {
    let adapter = Ec2Adapter::new(client);
    let ports = tag_ports(&adapter, notifier, mocked_ledger());
    handle(
        Ports {
            pacing: Pacing::NONE,
            ..ports
        },
        &config(POLICIES),
        &json!({"kind": "tick"}),
        chrono::Utc::now(),
        Deadline::after(Duration::from_secs(600)),
    )
    .await
    .unwrap()
}

fn create_tags_output() -> CreateTagsOutput {
    CreateTagsOutput::builder().build()
}

#[tokio::test]
async fn a_snapshot_deleted_meanwhile_does_not_cost_the_others_their_tags() {
    let (snaps, volume, instances) = (three_snapshots(), the_volume(), no_instances());
    // The batch names a deleted snapshot: EC2 refuses the whole call.
    let batch = mock!(Client::create_tags)
        .match_requests(|r| r.resources().len() > 1)
        .then_http_response(|| ec2_error(400, "InvalidSnapshot.NotFound"));
    let gone = mock!(Client::create_tags)
        .match_requests(|r| r.resources() == ["snap-1"])
        .then_http_response(|| ec2_error(400, "InvalidSnapshot.NotFound"));
    let single = mock!(Client::create_tags)
        .match_requests(|r| r.resources().len() == 1)
        .then_output(create_tags_output);
    let client = mocked_ec2(
        RuleMode::MatchAny,
        &[&snaps, &volume, &instances, &batch, &gone, &single],
    );
    let notifier = RecordingNotifier::default();
    let summary = run(client, &notifier).await;

    assert_eq!(summary.gone, ["snap-1"]);
    assert_eq!(summary.tagged, 2);
    assert!(summary.failed.is_empty());
    assert_eq!(
        single.num_calls(),
        4,
        "snap-0 and snap-2 written one by one: their labels, then their other tags"
    );
    assert!(
        notifier.sent().is_empty(),
        "a deleted snapshot is not a failure"
    );
}

#[tokio::test]
async fn a_tag_ec2_refuses_is_reported_and_the_rest_is_written() {
    let (snaps, volume, instances) = (three_snapshots(), the_volume(), no_instances());
    let refused = |r: &aws_sdk_ec2::operation::create_tags::CreateTagsInput| {
        r.tags().iter().any(|t| t.key() == Some("Owner"))
    };
    let refuse = mock!(Client::create_tags)
        .match_requests(refused)
        .then_http_response(|| ec2_error(400, "InvalidParameterValue"));
    let accept = mock!(Client::create_tags)
        .match_requests(move |r| !refused(r))
        .then_output(create_tags_output);
    let client = mocked_ec2(
        RuleMode::MatchAny,
        &[&snaps, &volume, &instances, &refuse, &accept],
    );
    let notifier = RecordingNotifier::default();
    let summary = run(client, &notifier).await;

    let refused: Vec<(&str, &str)> = summary
        .plan
        .skipped
        .iter()
        .filter(|s| s.tag.reason == SkipReason::Refused)
        .map(|s| (s.snapshot_id.as_str(), s.tag.key.as_str()))
        .collect();
    assert_eq!(
        refused,
        [
            ("snap-0", "Owner"),
            ("snap-1", "Owner"),
            ("snap-2", "Owner")
        ]
    );
    assert_eq!(
        summary.tagged, 3,
        "the other tags were still written on all three"
    );
    // The labels in one call for the three (lifecycle keys travel apart);
    // Name and Tier isolated key by key on each snapshot.
    assert_eq!(accept.num_calls(), 1 + 3 * 2);
    assert!(summary.failed.is_empty());
}

#[tokio::test]
async fn throttling_past_every_retry_is_a_failed_write_and_one_notification() {
    let (snaps, volume, instances) = (three_snapshots(), the_volume(), no_instances());
    let throttled = mock!(Client::create_tags)
        .sequence()
        .http_response(|| ec2_error(503, "RequestLimitExceeded"))
        .repeatedly()
        .build();
    let client = mocked_ec2(
        RuleMode::MatchAny,
        &[&snaps, &volume, &instances, &throttled],
    );
    let notifier = RecordingNotifier::default();
    let summary = run(client, &notifier).await;

    assert_eq!(summary.tagged, 0);
    assert_eq!(summary.failed.len(), 1);
    assert_eq!(
        summary.failed[0].snapshot_ids,
        ["snap-0", "snap-1", "snap-2"]
    );
    assert_eq!(
        throttled.num_calls(),
        ebs_lifecycle::aws::MAX_ATTEMPTS as usize,
        "one batch, retried by the SDK, and no call after"
    );
    let sent = notifier.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, NotificationKind::RunSummary);
}

//! What moto cannot produce, on the real SDK client with `aws-smithy-mocks`:
//! throttling, per-volume limits, failures of the due check, and pagination.
//! Errors are real EC2 error responses (status and XML body) so they go
//! through the SDK's deserializer and retry classifier as in production.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use aws_sdk_ec2::operation::create_snapshot::CreateSnapshotOutput;
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
use aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput;
use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput;
use aws_sdk_ec2::types::{SnapshotState, Tag, Volume, VolumeState};
use aws_sdk_ec2::Client;
use aws_smithy_mocks::{mock, Rule, RuleMode};
use serde_json::json;

use aws_sdk_dynamodb::types::AttributeValue;
use create_snapshots::{handle, CreateError, RunSummary};
use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::aws::MAX_ATTEMPTS;
use ebs_lifecycle::lambda::deadline::Deadline;
use integration_tests::{
    config, create_ports, ec2_error, mocked_ec2, mocked_ledger, mocked_ledger_with, no_commands,
    RecordingNotifier,
};

const POLICIES: &str = r#"{"default": {"schedule": "@daily", "keep": {"last": 3}}}"#;

fn volume(id: &str) -> Volume {
    Volume::builder()
        .volume_id(id)
        .size(8)
        .state(VolumeState::Available)
        .encrypted(true)
        .tags(Tag::builder().key("Backup").value("default").build())
        .build()
}

fn volumes_rule(ids: &'static [&'static str]) -> Rule {
    mock!(Client::describe_volumes).then_output(move || {
        DescribeVolumesOutput::builder()
            .set_volumes(Some(ids.iter().map(|id| volume(id)).collect()))
            .build()
    })
}

fn no_instances() -> Rule {
    mock!(Client::describe_instances).then_output(|| DescribeInstancesOutput::builder().build())
}

fn no_snapshots() -> Rule {
    mock!(Client::describe_snapshots).then_output(|| DescribeSnapshotsOutput::builder().build())
}

fn created(volume_id: &str) -> CreateSnapshotOutput {
    CreateSnapshotOutput::builder()
        .snapshot_id(format!("snap-for-{volume_id}"))
        .volume_id(volume_id)
        .state(SnapshotState::Pending)
        .build()
}

fn create_for(
    volume_id: &'static str,
) -> aws_smithy_mocks::RuleBuilder<
    aws_sdk_ec2::operation::create_snapshot::CreateSnapshotInput,
    CreateSnapshotOutput,
    aws_sdk_ec2::operation::create_snapshot::CreateSnapshotError,
> {
    mock!(Client::create_snapshot).match_requests(move |r| r.volume_id() == Some(volume_id))
}

async fn run(client: Client, notifier: &RecordingNotifier) -> Result<RunSummary, CreateError> {
    run_with_ledger(client, notifier, mocked_ledger()).await
}

async fn run_with_ledger(
    client: Client,
    notifier: &RecordingNotifier,
    ledger: &dyn ebs_lifecycle::ports::ledger::Ledger,
) -> Result<RunSummary, CreateError> {
    let adapter = Ec2Adapter::new(client);
    let no_commands = no_commands();
    let ports = create_ports(&adapter, &no_commands, notifier, ledger);
    let now = ebs_lifecycle_core::tags::parse_time("2026-03-01T10:15:00Z").unwrap();
    handle(
        ports,
        &config(POLICIES),
        &json!({"kind": "tick"}),
        now,
        Deadline::after(Duration::from_secs(600)),
    )
    .await
}

#[tokio::test]
async fn request_limit_exceeded_is_retried_with_backoff_and_the_snapshot_is_made() {
    let volumes = volumes_rule(&["vol-a"]);
    let (instances, snaps) = (no_instances(), no_snapshots());
    let create = create_for("vol-a")
        .sequence()
        .http_response(|| ec2_error(503, "RequestLimitExceeded"))
        .times(2)
        .output(|| created("vol-a"))
        .build();
    let client = mocked_ec2(RuleMode::MatchAny, &[&volumes, &instances, &snaps, &create]);
    let notifier = RecordingNotifier::default();

    let summary = run(client, &notifier).await.unwrap();

    assert_eq!(
        create.num_calls(),
        3,
        "two throttled attempts, then success"
    );
    assert_eq!(summary.counts.created, 1);
    assert_eq!(summary.created[0].snapshot_id, "snap-for-vol-a");
    assert!(summary.failed.is_empty());
    assert!(notifier.sent().is_empty());
}

#[tokio::test]
async fn throttling_that_outlasts_the_run_leaves_the_volume_for_the_next_tick() {
    let volumes = volumes_rule(&["vol-a", "vol-b"]);
    let (instances, snaps) = (no_instances(), no_snapshots());
    let throttled = create_for("vol-a")
        .sequence()
        .http_response(|| ec2_error(503, "RequestLimitExceeded"))
        .repeatedly()
        .build();
    let fine = create_for("vol-b").then_output(|| created("vol-b"));
    let client = mocked_ec2(
        RuleMode::MatchAny,
        &[&volumes, &instances, &snaps, &throttled, &fine],
    );
    let notifier = RecordingNotifier::default();
    let adapter = Ec2Adapter::new(client);
    let no_commands = no_commands();
    let ports = create_snapshots::Ports {
        bucket: &create_snapshots::Bucket::new(create_snapshots::BucketPacing {
            burst: 10.0,
            per_second: 20.0,
        }),
        ..create_ports(&adapter, &no_commands, &notifier, mocked_ledger())
    };
    // The run has about a second before its deadline's margin.
    let deadline =
        Deadline::after(Duration::from_millis(2_200)).with_margin(Duration::from_secs(1));

    let summary = handle(
        ports,
        &config(POLICIES),
        &json!({"kind": "tick"}),
        ebs_lifecycle_core::tags::parse_time("2026-03-01T10:15:00Z").unwrap(),
        deadline,
    )
    .await
    .unwrap();

    assert!(
        throttled.num_calls() > 2 * MAX_ATTEMPTS as usize,
        "tried again past the SDK's retries, at a slowed pace: {}",
        throttled.num_calls()
    );
    assert_eq!(summary.counts.created, 1);
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(summary.left_for_later.len(), 1);
    assert_eq!(summary.left_for_later[0].volume_id, "vol-a");
}

#[tokio::test]
async fn per_volume_limits_are_recorded_once_each_and_not_retried() {
    let volumes = volumes_rule(&["vol-a", "vol-b", "vol-c"]);
    let (instances, snaps) = (no_instances(), no_snapshots());
    let concurrent = create_for("vol-a")
        .then_http_response(|| ec2_error(400, "ConcurrentSnapshotLimitExceeded"));
    let rate = create_for("vol-b")
        .then_http_response(|| ec2_error(400, "SnapshotCreationPerVolumeRateExceeded"));
    let fine = create_for("vol-c").then_output(|| created("vol-c"));
    let client = mocked_ec2(
        RuleMode::MatchAny,
        &[&volumes, &instances, &snaps, &concurrent, &rate, &fine],
    );
    let notifier = RecordingNotifier::default();

    let summary = run(client, &notifier).await.unwrap();

    assert_eq!(
        (concurrent.num_calls(), rate.num_calls()),
        (1, 1),
        "per-volume limits wait for the next tick"
    );
    let kinds: Vec<(&str, &str)> = summary
        .failed
        .iter()
        .map(|f| (f.volume_id.as_str(), f.error_kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("vol-a", "concurrent-snapshot-limit"),
            ("vol-b", "per-volume-rate")
        ]
    );
    assert_eq!(summary.counts.created, 1);
    let sent = notifier.sent();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].summary.contains("2 volumes failed"),
        "{}",
        sent[0].summary
    );
}

#[tokio::test]
async fn more_than_one_page_of_volumes_is_followed_with_max_results_set() {
    let first = mock!(Client::describe_volumes)
        .match_requests(|r| r.next_token().is_none() && r.max_results() == Some(500))
        .then_output(|| {
            DescribeVolumesOutput::builder()
                .set_volumes(Some(vec![volume("vol-1"), volume("vol-2")]))
                .next_token("page-2")
                .build()
        });
    let second = mock!(Client::describe_volumes)
        .match_requests(|r| r.next_token() == Some("page-2") && r.max_results() == Some(500))
        .then_output(|| {
            DescribeVolumesOutput::builder()
                .set_volumes(Some(vec![volume("vol-3")]))
                .build()
        });
    let (instances, snaps) = (no_instances(), no_snapshots());
    let create = mock!(Client::create_snapshot)
        .then_compute_output(|r| created(r.volume_id().unwrap_or_default()));
    let client = mocked_ec2(
        RuleMode::MatchAny,
        &[&first, &second, &instances, &snaps, &create],
    );

    let summary = run(client, &RecordingNotifier::default()).await.unwrap();

    assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
    assert_eq!(summary.counts.targeted, 3);
    let made: Vec<&str> = summary
        .created
        .iter()
        .map(|c| c.volume_id.as_str())
        .collect();
    assert_eq!(made, ["vol-1", "vol-2", "vol-3"]);
    assert_eq!(create.num_calls(), 3);
}

#[tokio::test]
async fn one_describe_snapshots_per_policy_and_slot_not_per_volume() {
    let volumes = volumes_rule(&["vol-1", "vol-2", "vol-3", "vol-4"]);
    let instances = no_instances();
    let snaps = mock!(Client::describe_snapshots)
        .match_requests(|r| {
            r.owner_ids() == ["self"]
                && r.max_results() == Some(1000)
                // The slot's snapshots by their Description, whatever
                // their tags (a slot's snapshot stripped of its tags still
                // fills it).
                && r.filters()
                    == [aws_sdk_ec2::types::Filter::builder()
                        .name("description")
                        .values(
                            "ebs-lifecycle itest 123456789012/us-east-1: * policy default slot 2026-03-01T00:00:00Z",
                        )
                        .build()]
        })
        .then_output(|| DescribeSnapshotsOutput::builder().build());
    let create = mock!(Client::create_snapshot)
        .then_compute_output(|r| created(r.volume_id().unwrap_or_default()));
    let client = mocked_ec2(RuleMode::MatchAny, &[&volumes, &instances, &snaps, &create]);

    let summary = run(client, &RecordingNotifier::default()).await.unwrap();

    assert_eq!(snaps.num_calls(), 1);
    assert_eq!(create.num_calls(), 4);
    assert_eq!(summary.counts.created, 4);
}

#[tokio::test]
async fn when_existing_snapshots_cannot_be_checked_nothing_is_created() {
    let volumes = volumes_rule(&["vol-a"]);
    let instances = no_instances();
    let broken = mock!(Client::describe_snapshots)
        .sequence()
        .http_response(|| ec2_error(500, "InternalError"))
        .repeatedly()
        .build();
    let create = mock!(Client::create_snapshot)
        .then_compute_output(|r| created(r.volume_id().unwrap_or_default()));
    let client = mocked_ec2(
        RuleMode::MatchAny,
        &[&volumes, &instances, &broken, &create],
    );
    let notifier = RecordingNotifier::default();

    let summary = run(client, &notifier).await.unwrap();

    assert_eq!(broken.num_calls(), MAX_ATTEMPTS as usize, "5xx is retried");
    assert_eq!(
        create.num_calls(),
        0,
        "a duplicate is worse than a snapshot one tick late"
    );
    assert_eq!(summary.failed.len(), 1);
    assert!(summary.failed[0]
        .error
        .contains("could not check existing snapshots"));
    assert_eq!(notifier.sent().len(), 1);
}

#[tokio::test]
async fn when_volumes_cannot_be_listed_the_run_fails_as_a_whole() {
    let broken = mock!(Client::describe_volumes)
        .sequence()
        .http_response(|| ec2_error(503, "Unavailable"))
        .repeatedly()
        .build();
    let instances = no_instances();
    let client = mocked_ec2(RuleMode::MatchAny, &[&broken, &instances]);

    let err = run(client, &RecordingNotifier::default())
        .await
        .unwrap_err();
    assert!(matches!(err, CreateError::InventoryUnavailable(_)), "{err}");
    let diagnostic: lambda_runtime::Diagnostic = err.into();
    assert_eq!(diagnostic.error_type, "InventoryUnavailable");
}

/// An instance this deployment stopped and marked (lifecycle:stopped-for-
/// snapshot), as DescribeInstances shows it at the given moment.
fn marked_instance(
    state: aws_sdk_ec2::types::InstanceStateName,
    reason: &str,
) -> aws_sdk_ec2::types::Instance {
    use aws_sdk_ec2::types::{Instance, InstanceState, StateReason};
    Instance::builder()
        .instance_id("i-0kms")
        .state(InstanceState::builder().name(state).build())
        .state_reason(StateReason::builder().message(reason).build())
        .tags(
            Tag::builder()
                .key(ebs_lifecycle_core::tags::STOPPED_FOR_SNAPSHOT)
                .value("itest")
                .build(),
        )
        .build()
}

fn described(instance: aws_sdk_ec2::types::Instance) -> DescribeInstancesOutput {
    DescribeInstancesOutput::builder()
        .reservations(
            aws_sdk_ec2::types::Reservation::builder()
                .instances(instance)
                .build(),
        )
        .build()
}

/// EC2 accepts StartInstances, then the instance falls back to stopped
/// (its volume's customer managed key cannot be granted to EC2:
/// `Client.InternalError`). The start is not counted: the failure is
/// critical and names EC2's reason, and the mark stays, so the next run
/// tries again (before: the mark was cleared on the accepted call and the
/// instance stayed down with no alert).
#[tokio::test]
async fn a_start_that_falls_back_to_stopped_is_critical_and_keeps_the_mark() {
    use aws_sdk_ec2::operation::delete_tags::DeleteTagsOutput;
    use aws_sdk_ec2::operation::start_instances::StartInstancesOutput;
    use aws_sdk_ec2::types::InstanceStateName;
    let volumes =
        mock!(Client::describe_volumes).then_output(|| DescribeVolumesOutput::builder().build());
    let snaps = no_snapshots();
    let is_marked_query =
        |r: &aws_sdk_ec2::operation::describe_instances::DescribeInstancesInput| {
            r.filters()
                .iter()
                .any(|f| f.name() == Some("tag:lifecycle:stopped-for-snapshot"))
        };
    let marked = mock!(Client::describe_instances)
        .match_requests(move |r| is_marked_query(r))
        .then_output(|| {
            described(marked_instance(
                InstanceStateName::Stopped,
                "Client.UserInitiatedShutdown: User initiated shutdown",
            ))
        });
    // The stack's ledger says this deployment stopped it.
    let recorded = mock!(aws_sdk_dynamodb::Client::query).then_output(|| {
        aws_sdk_dynamodb::operation::query::QueryOutput::builder()
            .items(std::collections::HashMap::from([
                ("pk".to_string(), AttributeValue::S("stop".into())),
                ("sk".to_string(), AttributeValue::S("i-0kms".into())),
                ("policy".to_string(), AttributeValue::S("batch".into())),
                (
                    "stopped_at".to_string(),
                    AttributeValue::S("2026-03-01T10:00:00Z".into()),
                ),
            ]))
            .build()
    });
    let forgotten = mock!(aws_sdk_dynamodb::Client::delete_item).then_output(|| {
        aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput::builder().build()
    });
    let after_start = mock!(Client::describe_instances)
        .match_requests(|r| r.filters().iter().any(|f| f.name() == Some("instance-id")))
        .sequence()
        .output(|| {
            described(marked_instance(
                InstanceStateName::Stopped,
                "Client.UserInitiatedShutdown: User initiated shutdown",
            ))
        })
        .output(|| described(marked_instance(InstanceStateName::Pending, "")))
        .output(|| {
            described(marked_instance(
                InstanceStateName::Stopped,
                "Client.InternalError: Client error on launch",
            ))
        })
        .repeatedly()
        .build();
    let other_instances = no_instances();
    let start =
        mock!(Client::start_instances).then_output(|| StartInstancesOutput::builder().build());
    let unmark = mock!(Client::delete_tags).then_output(|| DeleteTagsOutput::builder().build());
    let client = mocked_ec2(
        RuleMode::MatchAny,
        &[
            &volumes,
            &snaps,
            &marked,
            &after_start,
            &other_instances,
            &start,
            &unmark,
        ],
    );
    let notifier = RecordingNotifier::default();

    let ledger = mocked_ledger_with(&[&recorded, &forgotten]);
    let summary = run_with_ledger(client, &notifier, ledger).await.unwrap();

    assert_eq!(start.num_calls(), 1);
    assert_eq!(unmark.num_calls(), 0, "the mark stays for the next run");
    assert_eq!(forgotten.num_calls(), 0, "and so does the ledger's record");
    assert!(summary.restarted.is_empty(), "not counted as started");
    let failure = &summary.consistency_failures[0];
    assert_eq!(
        (failure.step, failure.reason.as_str()),
        ("start", "fell-back-to-stopped")
    );
    assert!(
        failure
            .output
            .as_deref()
            .unwrap_or_default()
            .contains("Client.InternalError"),
        "{failure:?}"
    );
    let sent = notifier.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].severity,
        ebs_lifecycle_core::notify::Severity::Critical
    );
}

/// The stack's ledger refuses to write. Refusing the intent: no snapshot
/// is asked for (one made then could never be proven), the volume is
/// reported and stays due. Refusing the record after EC2 answered: the
/// snapshot counts, and its intent stays to prove it (it is not removed).
#[tokio::test]
async fn no_snapshot_is_asked_for_without_its_intent_and_an_unrecorded_one_keeps_it() {
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_sdk_dynamodb::types::error::ResourceNotFoundException;
    fn sk_starts(
        item: Option<&std::collections::HashMap<String, AttributeValue>>,
        prefix: &str,
    ) -> bool {
        item.and_then(|i| i.get("sk"))
            .and_then(|v| v.as_s().ok())
            .is_some_and(|sk| sk.starts_with(prefix))
    }
    let refusal = || {
        PutItemError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("Requested resource not found")
                .build(),
        )
    };
    for refused_prefix in ["intent/", "snap-"] {
        let volumes = volumes_rule(&["vol-a"]);
        let (instances, snaps) = (no_instances(), no_snapshots());
        let create = create_for("vol-a").then_output(|| created("vol-a"));
        let client = mocked_ec2(RuleMode::MatchAny, &[&volumes, &instances, &snaps, &create]);
        let refused = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(move |r| sk_starts(r.item(), refused_prefix))
            .then_error(refusal);
        let forgotten = mock!(aws_sdk_dynamodb::Client::delete_item)
            .match_requests(|r| sk_starts(r.key(), "intent/"))
            .then_output(|| DeleteItemOutput::builder().build());
        let notifier = RecordingNotifier::default();

        let ledger = mocked_ledger_with(&[&refused, &forgotten]);
        let summary = run_with_ledger(client, &notifier, ledger).await.unwrap();

        assert_eq!(refused.num_calls(), 1, "{refused_prefix}");
        if refused_prefix == "intent/" {
            assert_eq!(create.num_calls(), 0, "no call without the intent");
            assert_eq!(summary.counts.created, 0);
            assert_eq!(summary.failed.len(), 1);
            assert_eq!(summary.failed[0].error_kind, "ledger-unavailable");
        } else {
            assert_eq!(create.num_calls(), 1);
            assert_eq!(summary.counts.created, 1, "EC2 started it");
            assert!(summary.failed.is_empty(), "{:?}", summary.failed);
            assert_eq!(forgotten.num_calls(), 0, "the intent stays and proves it");
        }
    }
}

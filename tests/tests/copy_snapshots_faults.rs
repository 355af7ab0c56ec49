//! What EC2 answers to a CopySnapshot, and what becomes of the copy and of
//! the stack's ledger: EC2 answers by aws-smithy-mocks on the real SDK
//! client (moto never refuses a copy), the ledger is moto's DynamoDB, so
//! what is left in it is what a later run reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_ec2::operation::copy_snapshot::CopySnapshotOutput;
use aws_sdk_ec2::Client;
use aws_smithy_mocks::{mock, RuleMode};
use chrono::{DateTime, Utc};

use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::pacing::{Pacer, Pacing};
use ebs_lifecycle::ports::ec2::CopySnapshotRequest;
use ebs_lifecycle::ports::ledger::{CopyInFlight, Ledger};
use ebs_lifecycle::services::copying::{self, CopyPorts, Started};
use ebs_lifecycle_core::model::Tags;
use ebs_lifecycle_core::tags;
use integration_tests::*;

fn t(s: &str) -> DateTime<Utc> {
    tags::parse_time(s).unwrap()
}

fn flight(source: &str) -> CopyInFlight {
    CopyInFlight {
        source_snapshot_id: source.into(),
        target: "eu-central-1".into(),
        volume_id: "vol-1".into(),
        policy: "gold".into(),
        slot: t("2026-03-01T00:00:00Z"),
        created_at: t("2026-03-01T00:00:12Z"),
        asked_at: t("2026-03-01T00:20:00Z"),
        copy_id: None,
    }
}

fn request(source: &str) -> CopySnapshotRequest {
    CopySnapshotRequest {
        source_snapshot_id: source.into(),
        source_region: Some(REGION.into()),
        kms_key_id: Some("arn:aws:kms:eu-central-1:123456789012:key/k".into()),
        description: identity("itest").copy(REGION, source),
        tags: Tags::new(),
    }
}

/// One CopySnapshot answered by `status`/`code` every time it is asked.
async fn start_answered(moto: &Moto, source: &str, answer: Option<(u16, &str)>) -> Started {
    let rule = match answer {
        Some((status, code)) => {
            let code = code.to_string();
            mock!(Client::copy_snapshot).then_http_response(move || ec2_error(status, &code))
        }
        None => mock!(Client::copy_snapshot).then_output(|| {
            CopySnapshotOutput::builder()
                .snapshot_id("snap-copy")
                .build()
        }),
    };
    let ec2 = Ec2Adapter::new(mocked_ec2(RuleMode::MatchAny, &[&rule]));
    let ports = CopyPorts {
        protections: &ec2,
        copier: &ec2,
        deleter: &ec2,
        tagger: &ec2,
        ledger: moto.ledger(),
    };
    let mut pacer = Pacer::new(Pacing {
        burst: 10,
        interval: std::time::Duration::from_millis(1),
    });
    copying::start(
        ports,
        flight(source),
        &request(source),
        &mut pacer,
        t("2026-03-01T00:20:00Z"),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn every_answer_to_a_copy_ends_as_a_clear_outcome_and_leaves_the_ledger_right() {
    let moto = Moto::start();
    let in_flight = || async { moto.ledger().copies_in_flight().await.unwrap() };

    // Started: recorded as the stack's copy, in flight with its id.
    assert_eq!(
        start_answered(&moto, "snap-a", None).await,
        Started::Copy("snap-copy".into())
    );
    let records = moto.ledger().copies(&["snap-copy".into()]).await.unwrap();
    assert_eq!(records[0].target.as_deref(), Some("eu-central-1"));
    assert_eq!(in_flight().await[0].copy_id.as_deref(), Some("snap-copy"));
    moto.ledger()
        .end_copy("snap-a", "eu-central-1")
        .await
        .unwrap();

    // The region's quota, and throttling through every retry: not started,
    // nothing left in flight, wait for the next run.
    for (status, code) in [
        (400, "ResourceLimitExceeded"),
        (503, "RequestLimitExceeded"),
    ] {
        assert_eq!(
            start_answered(&moto, "snap-b", Some((status, code))).await,
            Started::Wait,
            "{code}"
        );
        assert!(in_flight().await.is_empty(), "{code} left a record");
    }

    // A key the account cannot use: refused, reported once, and no more
    // copies into that region this run.
    let refused = start_answered(&moto, "snap-c", Some((400, "KMSKeyNotAccessibleFault"))).await;
    let Started::Refused { failure, stop } = refused else {
        panic!("{refused:?}");
    };
    assert_eq!(
        (failure.error_kind.as_str(), failure.first_report, stop),
        ("key-unusable", true, true)
    );
    assert_eq!(failure.source_snapshot_id, "snap-c");
    let again = start_answered(&moto, "snap-c", Some((400, "KMSKeyNotAccessibleFault"))).await;
    assert!(
        matches!(
            &again,
            Started::Refused { failure, .. } if !failure.first_report
        ),
        "{again:?}"
    );
    assert!(in_flight().await.is_empty());

    // The source went meanwhile.
    assert_eq!(
        start_answered(&moto, "snap-d", Some((400, "InvalidSnapshot.NotFound"))).await,
        Started::SourceGone
    );
    assert!(in_flight().await.is_empty());
}

/// A copy EC2 failed is reported once, by the ledger's record: a
/// `lifecycle:state=failed` someone wrote on it while it was pending
/// silences nothing, and a second run reports nothing new.
#[tokio::test]
async fn a_failed_copy_is_reported_once_whatever_its_state_tag_says() {
    let moto = Moto::start();
    let adapter = Ec2Adapter::new(moto.ec2());
    let copy = |id: &str, state: &str| ebs_lifecycle_core::model::Snapshot {
        id: id.into(),
        volume_id: Some(ebs_lifecycle_core::model::COPY_VOLUME_ID.into()),
        state: ebs_lifecycle_core::model::SnapshotState::Error,
        start_time: Some(t("2026-03-01T00:20:05Z")),
        volume_size_gib: Some(8),
        full_size_bytes: None,
        archived: false,
        restore_expiry: None,
        encrypted: true,
        kms_key_id: None,
        description: None,
        owner_id: None,
        tags: Tags::from([
            (tags::MANAGED_BY.to_string(), "itest".to_string()),
            (tags::STATE.to_string(), state.to_string()),
            (tags::COPY_OF.to_string(), "snap-0source".to_string()),
        ]),
    };
    let mut copies = vec![
        copy("snap-0forged", "failed"),
        copy("snap-0plain", "pending"),
    ];
    let now = t("2026-03-01T02:00:00Z");
    let first = copying::track(&adapter, moto.ledger(), &mut copies, now).await;
    let mut failed: Vec<String> = first
        .failed
        .iter()
        .filter_map(|f| f.copy_id.clone())
        .collect();
    failed.sort();
    assert_eq!(failed, ["snap-0forged", "snap-0plain"]);
    assert!(first
        .failed
        .iter()
        .all(|f| f.source_snapshot_id == "snap-0source"));

    let again = copying::track(&adapter, moto.ledger(), &mut copies, now).await;
    assert!(again.failed.is_empty(), "{:?}", again.failed);
}

//! check-encryption where moto cannot go, on the real SDK client answered by
//! aws-smithy-mocks: a permission read throttled past every retry, and a
//! remedy EC2 refuses. Neither may blind the run to the other snapshots.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
use aws_sdk_ec2::operation::describe_snapshot_attribute::DescribeSnapshotAttributeOutput;
use aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput;
use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput;
use aws_sdk_ec2::operation::get_ebs_encryption_by_default::GetEbsEncryptionByDefaultOutput;
use aws_sdk_ec2::types::{CreateVolumePermission, PermissionGroup, Snapshot, SnapshotState};
use aws_sdk_ec2::Client;
use aws_smithy_mocks::{mock, RuleMode};
use serde_json::json;

use check_encryption::handle;
use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::ports::keys::{KeyDirectory, KmsError};
use ebs_lifecycle_core::encryption::{FindingKind, Fix};
use integration_tests::{
    check_ports, config_with, ec2_error, mocked_ec2, mocked_ledger, RecordingNotifier,
};

/// KMS knows no key: every snapshot's permissions are read.
struct NoKeys;

#[async_trait]
impl KeyDirectory for NoKeys {
    async fn key_arn(&self, _: &str) -> Result<Option<String>, KmsError> {
        Ok(None)
    }
}

#[tokio::test]
async fn a_failed_read_is_not_checked_and_a_refused_fix_is_failed_and_the_run_goes_on() {
    let snapshots = mock!(Client::describe_snapshots).then_output(|| {
        let s = |id: &str| {
            Snapshot::builder()
                .snapshot_id(id)
                .volume_id("vol-1")
                .state(SnapshotState::Completed)
                .encrypted(false)
                .build()
        };
        DescribeSnapshotsOutput::builder()
            .snapshots(s("snap-public"))
            .snapshots(s("snap-unreadable"))
            .build()
    });
    let public = mock!(Client::describe_snapshot_attribute)
        .match_requests(|r| r.snapshot_id() == Some("snap-public"))
        .then_output(|| {
            DescribeSnapshotAttributeOutput::builder()
                .snapshot_id("snap-public")
                .create_volume_permissions(
                    CreateVolumePermission::builder()
                        .group(PermissionGroup::All)
                        .build(),
                )
                .build()
        });
    let throttled = mock!(Client::describe_snapshot_attribute)
        .match_requests(|r| r.snapshot_id() == Some("snap-unreadable"))
        .sequence()
        .http_response(|| ec2_error(503, "RequestLimitExceeded"))
        .repeatedly()
        .build();
    let refused = mock!(Client::modify_snapshot_attribute)
        .then_http_response(|| ec2_error(403, "UnauthorizedOperation"));
    let instances = mock!(Client::describe_instances)
        .then_output(|| DescribeInstancesOutput::builder().build());
    let volumes =
        mock!(Client::describe_volumes).then_output(|| DescribeVolumesOutput::builder().build());
    let by_default = mock!(Client::get_ebs_encryption_by_default).then_output(|| {
        GetEbsEncryptionByDefaultOutput::builder()
            .ebs_encryption_by_default(true)
            .build()
    });
    // A region without the API (or a denied call): the setting is reported
    // not checked, and the run goes on.
    let block = mock!(Client::get_snapshot_block_public_access_state)
        .then_http_response(|| ec2_error(400, "UnsupportedOperation"));
    let client = mocked_ec2(
        RuleMode::MatchAny,
        &[
            &snapshots,
            &public,
            &throttled,
            &refused,
            &instances,
            &volumes,
            &by_default,
            &block,
        ],
    );
    let adapter = Ec2Adapter::new(client);
    let notifier = RecordingNotifier::default();
    let ports = check_ports(&adapter, &NoKeys, &notifier, mocked_ledger());
    let config = config_with(
        r#"{"default": {"schedule": "@daily", "keep": {"last": 1}}}"#,
        &[("REMEDIATE", "public")],
    );
    let summary = handle(
        ports,
        &config,
        &json!({"kind": "tick"}),
        chrono::Utc::now(),
        Deadline::after(Duration::from_secs(600)),
    )
    .await
    .unwrap();

    let find = |kind: FindingKind, id: &str| {
        summary
            .findings
            .iter()
            .find(|f| f.kind == kind && f.snapshot_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no {kind:?} for {id}: {:?}", summary.findings))
    };
    assert!(matches!(
        find(FindingKind::PublicSnapshot, "snap-public").fix,
        Fix::Failed(_)
    ));
    find(FindingKind::NotChecked, "snap-unreadable");
    assert!(
        summary
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::NotChecked
                && f.snapshot_id.is_none()
                && f.detail.contains("UnsupportedOperation")),
        "{:?}",
        summary.findings
    );
    // Both are still reported unencrypted: the failed read hid nothing else.
    find(FindingKind::UnencryptedSnapshot, "snap-public");
    find(FindingKind::UnencryptedSnapshot, "snap-unreadable");
    assert_eq!(summary.permissions_read, 1);
    assert_eq!(
        refused.num_calls(),
        1,
        "a refused fix is not retried blindly"
    );
    let sent = notifier.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].severity,
        ebs_lifecycle_core::notify::Severity::Critical
    );
}

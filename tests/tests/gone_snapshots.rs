//! Events about snapshots that are gone (docs/functions.md,
//! "complete-snapshots", "Events about snapshots that are gone"): AWS's own
//! documented samples, whose snapshots exist nowhere, and a real snapshot
//! deleted before its event is handled. Through the three event handlers on
//! moto: each run completes, names the gone snapshots in its summary and
//! fails nothing, so neither Lambda's retries nor the failure queue see the
//! event. A snapshot missing within minutes of its end is still retried.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::aws::kms::KmsAdapter;
use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::invocation::InvocationError;
use ebs_lifecycle::lambda::run::RunHeader;
use ebs_lifecycle_core::tags;
use integration_tests::*;

const POLICIES: &str = r#"{"lean": {"schedule": "@daily", "keep": {"last": 3}}}"#;

fn plenty() -> Deadline {
    Deadline::after(Duration::from_secs(600))
}

fn sample(name: &str) -> Value {
    let path = workspace_root()
        .join("tests/fixtures/events/aws-docs")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The run headers of complete-snapshots, tag-snapshots and
/// check-encryption for `event`, or the first invocation error.
async fn deliver(
    moto: &Moto,
    config: &Config,
    event: &Value,
    now: DateTime<Utc>,
) -> Result<Vec<RunHeader>, InvocationError> {
    let adapter = Ec2Adapter::new(moto.ec2());
    let kms = KmsAdapter::new(aws_sdk_kms::Client::new(&moto.sdk_config()));
    let notifier = RecordingNotifier::default();
    let complete = complete_snapshots::handle(
        complete_ports(&adapter, &notifier, moto.ledger()),
        config,
        event,
        now,
        plenty(),
    )
    .await?;
    let tag = tag_snapshots::handle(
        tag_ports(&adapter, &notifier, moto.ledger()),
        config,
        event,
        now,
        plenty(),
    )
    .await?;
    let check = check_encryption::handle(
        check_ports(&adapter, &kms, &notifier, moto.ledger()),
        config,
        event,
        now,
        plenty(),
    )
    .await?;
    assert!(notifier.sent().is_empty(), "{:?}", notifier.sent());
    Ok(vec![complete.header, tag.header, check.header])
}

#[tokio::test]
async fn aws_documented_samples_about_snapshots_nobody_has_complete_every_handler() {
    let moto = Moto::start();
    let config = config(POLICIES);
    let now = Utc::now();
    // (sample, its snapshots each handler reports gone: complete-snapshots
    // looks at every one, tag-snapshots and check-encryption at those that
    // succeeded)
    for (name, all, succeeded) in [
        (
            "create-snapshot-succeeded.json",
            vec!["snap-01234567"],
            vec!["snap-01234567"],
        ),
        (
            "create-snapshots-succeeded.json",
            vec!["snap-01234567", "snap-012345678"],
            vec!["snap-01234567", "snap-012345678"],
        ),
        (
            "create-snapshots-failed.json",
            vec!["snap-01234567", "snap-012345678"],
            vec![],
        ),
        (
            "copy-snapshot-succeeded.json",
            vec!["snap-01234567"],
            vec!["snap-01234567"],
        ),
        ("copy-snapshot-failed.json", vec!["snap-01234567"], vec![]),
    ] {
        let headers = deliver(&moto, &config, &sample(name), now)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(headers[0].snapshots_gone, all, "{name}: complete-snapshots");
        assert_eq!(
            headers[1].snapshots_gone, succeeded,
            "{name}: tag-snapshots"
        );
        assert_eq!(
            headers[2].snapshots_gone, succeeded,
            "{name}: check-encryption"
        );
    }
}

#[tokio::test]
async fn a_snapshot_deleted_before_its_event_is_gone_not_an_error() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let config = config(POLICIES);
    let volume = create_volume(&ec2, 8, &[("Backup", "lean")]).await;
    let id = managed_snapshot(&moto, &volume, "itest", "lean", &[]).await;
    ec2.delete_snapshot().snapshot_id(&id).send().await.unwrap();

    let now = Utc::now();
    let event = |ended: DateTime<Utc>| {
        let mut e: Value = serde_json::from_str(
            &std::fs::read_to_string(
                workspace_root().join("tests/fixtures/events/create-snapshot-succeeded.json"),
            )
            .unwrap()
            .replace("snap-01234567", &id)
            .replace("vol-01234567", &volume),
        )
        .unwrap();
        e["detail"]["endTime"] = json!(tags::format_time(ended));
        e
    };

    // Reported done ten minutes ago and not there: deleted meanwhile.
    let headers = deliver(
        &moto,
        &config,
        &event(now - chrono::Duration::minutes(10)),
        now,
    )
    .await
    .unwrap();
    for header in &headers {
        assert_eq!(
            header.snapshots_gone,
            std::slice::from_ref(&id),
            "{}",
            header.function
        );
    }
    // Reported done a minute ago: EC2 may not show it yet, so the event is
    // retried (Lambda delivers it again; the daily runs are the backstop).
    let err = deliver(
        &moto,
        &config,
        &event(now - chrono::Duration::minutes(1)),
        now,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, InvocationError::SnapshotNotVisible(ref ids) if ids == std::slice::from_ref(&id)),
        "{err}"
    );
}

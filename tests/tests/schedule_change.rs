//! An operator changes a policy's schedule and time zone: the history made
//! under the old one stays the deployment's (proven by the schedule
//! create-snapshots recorded in the stack's ledger when it ran with it), so
//! expiry keeps deleting it by its rules and nothing is reported as
//! tampered with (docs/policies-and-tags.md, "Changing a schedule").

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle_core::notify::NotificationKind;
use ebs_lifecycle_core::tags;
use integration_tests::*;

const BEFORE: &str = r#"{"daily": {"schedule": "0 3 * * *", "keep": {"last": 3}}}"#;
const AFTER: &str =
    r#"{"daily": {"schedule": "0 1 * * *", "timezone": "Europe/Berlin", "keep": {"last": 3}}}"#;

fn t(s: &str) -> DateTime<Utc> {
    tags::parse_time(s).unwrap()
}

async fn create(moto: &Moto, config: &Config, notifier: &RecordingNotifier, now: DateTime<Utc>) {
    let adapter = Ec2Adapter::new(moto.ec2());
    let commands = no_commands();
    let ports = create_ports(&adapter, &commands, notifier, moto.ledger());
    moto.set_clock(Some(now));
    let summary = create_snapshots::handle(
        ports,
        config,
        &json!({"kind": "tick"}),
        now,
        Deadline::after(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    moto.set_clock(None);
    assert_eq!(summary.created.len(), 1, "{now}: one snapshot a slot");
}

async fn expire(
    moto: &Moto,
    config: &Config,
    notifier: &RecordingNotifier,
    now: DateTime<Utc>,
) -> expire_snapshots::RunSummary {
    let adapter = Ec2Adapter::new(moto.ec2());
    expire_snapshots::handle(
        expire_ports(&adapter, notifier, moto.ledger()),
        config,
        &json!({"kind": "tick"}),
        now,
        Deadline::after(Duration::from_secs(600)),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_changed_schedule_and_time_zone_leave_the_history_proven_and_expiring() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let volume = create_volume(&ec2, 8, &[("Backup", "daily")]).await;
    let notifier = RecordingNotifier::default();
    let before = config(BEFORE);
    // Four days at 03:00 UTC...
    for day in 1..=4 {
        create(
            &moto,
            &before,
            &notifier,
            t(&format!("2026-12-0{day}T03:05:00Z")),
        )
        .await;
    }
    let old: BTreeSet<String> = snapshots(&ec2).await.into_iter().map(|s| s.id).collect();
    assert_eq!(old.len(), 4);
    // ...then the operator deploys 01:00 in Berlin (00:00 UTC in winter):
    // two days of it.
    let after = config(AFTER);
    for day in 6..=7 {
        create(
            &moto,
            &after,
            &notifier,
            t(&format!("2026-12-0{day}T00:05:00Z")),
        )
        .await;
    }

    let summary = expire(&moto, &after, &notifier, t("2026-12-07T06:00:00Z")).await;

    // Keep the last 3: the two new ones and the newest old one; the three
    // oldest go, proven the deployment's by the recorded old schedule.
    let left: BTreeSet<String> = snapshots(&ec2).await.into_iter().map(|s| s.id).collect();
    assert_eq!(left.len(), 3, "{summary:?}");
    assert_eq!(old.difference(&left).count(), 3);
    assert_eq!(summary.counts.deleted, 3);
    assert!(
        summary.header.tampering_suspected.is_empty(),
        "{:?}",
        summary.header.tampering_suspected
    );
    assert!(
        !notifier
            .sent()
            .iter()
            .any(|n| n.kind == NotificationKind::TamperingSuspected),
        "nothing reported as tampered with"
    );
    let _ = volume;
}

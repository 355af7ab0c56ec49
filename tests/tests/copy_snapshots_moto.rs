//! copy-snapshots end to end on moto: a source region and a destination
//! region of one server (moto keeps regions apart), copies pending for 30
//! minutes of moto's clock (scripts/moto_ebs_fixes.py), the ledger on
//! moto's DynamoDB.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use copy_snapshots::{Destination, Ports, RunSummary};
use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::ports::ledger::Ledger;
use ebs_lifecycle_core::model::{Snapshot, SnapshotState};
use ebs_lifecycle_core::notify::NotificationKind;
use ebs_lifecycle_core::tags;
use integration_tests::fault_proxy::{Fault, FaultProxy};
use integration_tests::*;

const DESTINATION: &str = "eu-central-1";

fn t(s: &str) -> DateTime<Utc> {
    tags::parse_time(s).unwrap()
}

struct World {
    moto: Moto,
    source: Ec2Adapter,
    keys: ebs_lifecycle::aws::kms::KmsAdapter,
    destination: Ec2Adapter,
    notifier: RecordingNotifier,
}

impl World {
    fn new() -> Self {
        let moto = Moto::start();
        let destination = Ec2Adapter::new(moto.ec2_in(DESTINATION));
        Self::with_destination(moto, destination)
    }

    fn with_destination(moto: Moto, destination: Ec2Adapter) -> Self {
        let source = Ec2Adapter::new(moto.ec2());
        let keys =
            ebs_lifecycle::aws::kms::KmsAdapter::new(aws_sdk_kms::Client::new(&moto.sdk_config()));
        Self {
            keys,
            moto,
            source,
            destination,
            notifier: RecordingNotifier::default(),
        }
    }

    /// One run of copy-snapshots at `now` (moto's clock set there).
    async fn copy(&self, config: &Config, now: DateTime<Utc>) -> RunSummary {
        self.moto.set_clock(Some(now));
        let destinations = BTreeMap::from([(
            DESTINATION.to_string(),
            Destination {
                catalog: &self.destination,
                protections: &self.destination,
                copier: &self.destination,
                deleter: &self.destination,
                tagger: &self.destination,
            },
        )]);
        let ports = Ports {
            catalog: &self.source,
            sharing: &self.source,
            keys: &self.keys,
            destinations: &destinations,
            notifier: &self.notifier,
            ledger: self.moto.ledger(),
            copy_pacing: copy_snapshots::COPY_PACING,
            delete_pacing: copy_snapshots::DELETE_PACING,
        };
        let summary = copy_snapshots::handle(
            ports,
            config,
            &json!({"kind": "tick"}),
            now,
            Deadline::after(std::time::Duration::from_secs(600)),
        )
        .await
        .unwrap();
        self.moto.set_clock(None);
        summary
    }

    /// The deployment's copies in the destination, as EC2 lists them.
    async fn copies(&self) -> Vec<Snapshot> {
        snapshots(&self.moto.ec2_in(DESTINATION))
            .await
            .into_iter()
            .filter(|s| s.tags.contains_key(tags::COPY_OF))
            .collect()
    }
}

fn policies(key: &str, source_keep: &str, target_keep: &str) -> String {
    json!({"gold": {
        "schedule": "@hourly",
        "keep": serde_json::from_str::<serde_json::Value>(source_keep).unwrap(),
        "copies": [{"region": DESTINATION, "kms_key": key,
                    "keep": serde_json::from_str::<serde_json::Value>(target_keep).unwrap()}]
    }})
    .to_string()
}

#[tokio::test]
async fn an_hourly_source_with_a_daily_target_gets_one_copy_a_day_tracked_and_kept_by_the_targets_rules(
) {
    let world = World::new();
    let ec2 = world.moto.ec2();
    let volume = create_volume(&ec2, 8, &[("Backup", "gold")]).await;
    let key = world.moto.kms_key_in(DESTINATION).await;
    let config = config(&policies(&key, r#"{"last": 500}"#, r#"{"daily": 3}"#));

    // Six days of hourly snapshots, copy-snapshots 20 minutes past every hour.
    let start = t("2026-03-01T00:00:00Z");
    let mut by_slot: BTreeMap<DateTime<Utc>, String> = BTreeMap::new();
    let (mut started, mut completed, mut deleted) = (0, 0, 0);
    for hour in 0..(6 * 24) {
        let slot = start + Duration::hours(hour);
        let labels = labels_for(&volume, "itest", "gold", slot);
        by_slot.insert(
            slot,
            snapshot_as_created(&world.moto, &volume, &labels, &[]).await,
        );
        let summary = world.copy(&config, slot + Duration::minutes(20)).await;
        let region = &summary.regions[0];
        assert_eq!(region.error, None, "{summary:?}");
        started += region.started.len();
        completed += region.completed.len();
        deleted += region.deleted.len();
        // One copy at a time per volume: never a second while one is pending.
        assert!(region.in_flight <= 1, "hour {hour}: {region:?}");
    }
    assert_eq!((started, completed, deleted), (6, 6, 3));

    let copies = world.copies().await;
    let day = |d: i64| by_slot[&(start + Duration::days(d))].clone();
    let copied: BTreeSet<String> = copies
        .iter()
        .map(|c| c.tags[tags::COPY_OF].clone())
        .collect();
    assert_eq!(
        copied,
        BTreeSet::from([day(3), day(4), day(5)]),
        "the first snapshot of each of the last three days"
    );
    let identity = identity("itest");
    for copy in &copies {
        let source = &copy.tags[tags::COPY_OF];
        assert_eq!(copy.state, SnapshotState::Completed);
        assert!(copy.encrypted);
        assert_eq!(copy.kms_key_id.as_deref(), Some(key.as_str()));
        assert_eq!(
            copy.description.as_deref(),
            Some(identity.copy("us-east-1", source).as_str())
        );
        assert_eq!(copy.volume_id.as_deref(), Some("vol-ffffffff"));
        assert_eq!(copy.tags[tags::VOLUME_ID], volume);
        assert_eq!(copy.tags[tags::SOURCE_REGION], "us-east-1");
        assert_eq!(copy.tags[tags::TARGET], DESTINATION);
        assert_eq!(copy.tags[tags::STATE], "completed");
        assert_eq!(copy.tags[tags::POLICY], "gold");
        assert_eq!(copy.tags[tags::RETAINED_BY], "daily");
    }
    // The oldest kept copy goes when the fourth day's copy after it
    // completes: one copy a day, from the first slot of the next day.
    let oldest = copies
        .iter()
        .find(|c| c.tags[tags::COPY_OF] == day(3))
        .unwrap();
    assert_eq!(oldest.tags[tags::EXPIRES_AT], "2026-03-07T00:00:00Z");
    // Every source snapshot is still there (the source keeps the last 500).
    assert_eq!(
        snapshots(&ec2)
            .await
            .iter()
            .filter(|s| s.tags.contains_key(tags::SLOT))
            .count(),
        144
    );
    assert!(
        world.notifier.sent().is_empty(),
        "{:?}",
        world.notifier.sent()
    );
    // The ledger holds nothing in flight once every copy completed.
    assert!(world
        .moto
        .ledger()
        .copies_in_flight()
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_source_being_copied_is_not_expired_and_a_failed_copy_is_reported_once() {
    let world = World::new();
    let ec2 = world.moto.ec2();
    let volume = create_volume(&ec2, 8, &[("Backup", "gold")]).await;
    let key = world.moto.kms_key_in(DESTINATION).await;
    let config = config(&policies(&key, r#"{"last": 1}"#, r#"{"daily": 7}"#));

    let first = managed_snapshot(&world.moto, &volume, "itest", "gold", &[]).await;
    let at = t("2026-03-01T00:20:00Z");
    let summary = world.copy(&config, at).await;
    assert_eq!(summary.regions[0].started.len(), 1, "{summary:?}");
    // A newer snapshot: the first is no longer the newest, and the policy
    // keeps only the last one, but its copy is in flight.
    let second = managed_snapshot(&world.moto, &volume, "itest", "gold", &[]).await;
    let expire = |now: DateTime<Utc>| {
        let world = &world;
        let config = &config;
        async move {
            expire_snapshots::handle(
                expire_ports(&world.source, &world.notifier, world.moto.ledger()),
                config,
                &json!({"kind": "tick"}),
                now,
                Deadline::after(std::time::Duration::from_secs(600)),
            )
            .await
            .unwrap()
        }
    };
    let run = expire(t("2026-03-02T01:00:00Z")).await;
    let kept: Vec<_> = run.volumes.iter().flat_map(|v| &v.kept).collect();
    assert!(
        kept.iter()
            .any(|k| k.snapshot_id == first && k.why == "copy-in-progress"),
        "{run:?}"
    );
    assert_eq!(run.counts.deleted, 0);

    // The target's key is disabled before the copy completes: EC2 fails it.
    aws_sdk_kms::Client::new(&world.moto.sdk_config_in(DESTINATION))
        .disable_key()
        .key_id(key.rsplit('/').next().unwrap())
        .send()
        .await
        .unwrap();
    let failed_at = t("2026-03-02T01:20:00Z");
    let summary = world.copy(&config, failed_at).await;
    let region = &summary.regions[0];
    assert_eq!(region.failed.len(), 1, "{summary:?}");
    assert_eq!(region.failed[0].source_snapshot_id, first);
    let failures = |world: &World| {
        world
            .notifier
            .sent()
            .into_iter()
            .filter(|n| n.kind == NotificationKind::CopyFailed)
            .count()
    };
    assert_eq!(failures(&world), 1);
    // A failed copy holds nothing: the volume's newest snapshot is copied
    // next. Someone fixes the key meanwhile: that copy completes.
    assert_eq!(region.started.len(), 1);
    assert_eq!(region.started[0].source_snapshot_id, second);
    aws_sdk_kms::Client::new(&world.moto.sdk_config_in(DESTINATION))
        .enable_key()
        .key_id(key.rsplit('/').next().unwrap())
        .send()
        .await
        .unwrap();
    let again = world.copy(&config, failed_at + Duration::hours(1)).await;
    assert!(again.regions[0].failed.is_empty(), "{again:?}");
    assert_eq!(again.regions[0].completed.len(), 1);
    // The failure was reported once, not at every run that sees it.
    assert_eq!(failures(&world), 1);

    // Nothing in flight for the first any more: expiry may delete it now.
    let run = expire(t("2026-03-03T01:00:00Z")).await;
    let deleted: Vec<_> = run
        .volumes
        .iter()
        .flat_map(|v| &v.deleted)
        .map(|d| d.snapshot_id.clone())
        .collect();
    assert_eq!(deleted, [first], "{run:?}");
    // A failed copy stays 72 hours for people to look at, then goes; the
    // completed one stays (the volume's newest copy).
    assert_eq!(world.copies().await.len(), 2);
    world.copy(&config, failed_at + Duration::hours(80)).await;
    let left: Vec<String> = world
        .copies()
        .await
        .iter()
        .map(|c| c.tags[tags::COPY_OF].clone())
        .collect();
    assert_eq!(left, [second]);
}

#[tokio::test]
async fn a_lost_answer_is_found_again_and_throttling_waits_never_a_copy_twice() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let through_proxy = proxy
        .sdk_config(std::time::Duration::from_secs(5))
        .into_builder()
        .region(aws_sdk_ec2::config::Region::new(DESTINATION))
        .build();
    let world = World::with_destination(
        moto,
        Ec2Adapter::new(aws_sdk_ec2::Client::new(&through_proxy)),
    );
    let ec2 = world.moto.ec2();
    let key = world.moto.kms_key_in(DESTINATION).await;
    let config = config(&policies(&key, r#"{"last": 10}"#, r#"{"last": 3}"#));
    let a = create_volume(&ec2, 8, &[("Backup", "gold")]).await;
    let b = create_volume(&ec2, 8, &[("Backup", "gold")]).await;
    let a1 = managed_snapshot(&world.moto, &a, "itest", "gold", &[]).await;
    let b1 = managed_snapshot(&world.moto, &b, "itest", "gold", &[]).await;

    // EC2 starts the first copy and the answer is lost; the second is
    // throttled through every retry.
    proxy.inject("CopySnapshot", 1, Fault::ResetAfterForward);
    proxy.inject(
        "CopySnapshot",
        ebs_lifecycle::aws::MAX_ATTEMPTS as usize,
        Fault::Throttle,
    );
    let now = t("2026-03-03T00:20:00Z");
    let first = world.copy(&config, now).await;
    let region = &first.regions[0];
    assert!(region.started.is_empty(), "{first:?}");
    assert_eq!(region.unknown, std::slice::from_ref(&a1));
    assert_eq!(region.waiting, 1);
    assert_eq!(world.copies().await.len(), 1, "EC2 did start the first");
    let in_flight = world.moto.ledger().copies_in_flight().await.unwrap();
    assert_eq!(in_flight.len(), 1, "the throttled one left no record");
    assert_eq!(in_flight[0].copy_id, None);

    // The next run finds the copy by its Description instead of copying
    // again, and starts the throttled one.
    let copies_asked = proxy.requests("CopySnapshot");
    let second = world.copy(&config, now + Duration::hours(1)).await;
    let region = &second.regions[0];
    assert_eq!(region.adopted.len(), 1, "{second:?}");
    assert_eq!(
        region.completed, region.adopted,
        "and it completed meanwhile"
    );
    assert_eq!(region.started.len(), 1, "{second:?}");
    assert_eq!(region.started[0].source_snapshot_id, b1);
    assert_eq!(proxy.requests("CopySnapshot"), copies_asked + 1);
    let copied: Vec<String> = world
        .copies()
        .await
        .iter()
        .map(|c| c.tags[tags::COPY_OF].clone())
        .collect();
    assert_eq!(copied.len(), 2);
    assert!(copied.contains(&a1) && copied.contains(&b1));
    // The adopted copy is proven like any other: no tampering reported.
    assert!(second.header.tampering_suspected.is_empty());
    assert!(
        world.notifier.sent().is_empty(),
        "{:?}",
        world.notifier.sent()
    );
}

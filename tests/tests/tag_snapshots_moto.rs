//! tag-snapshots against moto: propagation from volume and instance, drift,
//! hand-added tags, labels equal to the planner's, the 50-tag ceiling, the
//! event path, and the number of requests a run costs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use ebs_lifecycle::aws::ec2::Ec2Adapter;

use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::ports::ec2::TAG_BATCH;
use ebs_lifecycle_core::model::Snapshot;
use ebs_lifecycle_core::retention::{self, Candidate, Expiry};
use ebs_lifecycle_core::tags;
use integration_tests::*;
use tag_snapshots::{handle, Pacing, Ports, RunSummary};

const POLICIES: &str = r#"{
    "gold": {"schedule": "@daily", "keep": {"last": 2, "daily": 7},
             "copy_tags": ["Owner", "CostCenter", "Team"], "tags": {"Tier": "gold"}}
}"#;

fn now() -> DateTime<Utc> {
    Utc::now()
}

async fn run_with(ec2: aws_sdk_ec2::Client, config: &Config, event: &Value) -> RunSummary {
    let adapter = Ec2Adapter::new(ec2);
    let notifier = RecordingNotifier::default();
    let ports = tag_ports(&adapter, &notifier, mocked_ledger());
    let summary = handle(
        Ports {
            pacing: Pacing::NONE,
            ..ports
        },
        config,
        event,
        now(),
        Deadline::after(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    summary
}

async fn backfill(ec2: aws_sdk_ec2::Client) -> RunSummary {
    run_with(ec2, &config(POLICIES), &json!({"kind": "tick"})).await
}

/// The sample createSnapshot-succeeded event for snapshot `id` of `volume`.
fn completion_event(id: &str, volume: &str) -> Value {
    let text = std::fs::read_to_string(
        workspace_root().join("tests/fixtures/events/create-snapshot-succeeded.json"),
    )
    .unwrap()
    .replace("snap-01234567", id)
    .replace("vol-01234567", volume);
    serde_json::from_str::<Value>(&text).unwrap()
}

fn by_id(snapshots: Vec<Snapshot>) -> BTreeMap<String, Snapshot> {
    snapshots.into_iter().map(|s| (s.id.clone(), s)).collect()
}

#[tokio::test]
async fn one_backfill_says_where_each_snapshot_came_from_and_a_second_writes_nothing() {
    let moto = Moto::start();
    let (ec2, counter) = moto.counted_ec2();
    let (instance, _root) = run_instance(
        &ec2,
        &[
            ("Name", "web-1"),
            ("Owner", "instance-team"),
            ("CostCenter", "cc-42"),
        ],
    )
    .await;
    let data = create_volume(&ec2, 20, &[("Owner", "alice"), ("aws-like", "x")]).await;
    attach(&ec2, &data, &instance, "/dev/sdf").await;
    let loose = create_volume(&ec2, 8, &[("Name", "scratch"), ("Team", "db")]).await;
    let mut ids = Vec::new();
    for volume in [&data, &data, &loose] {
        ids.push(managed_snapshot(&moto, volume, "itest", "gold", &[]).await);
    }
    // Someone else's snapshot on the same volume is never touched.
    let foreign = managed_snapshot(&moto, &data, "other-stack", "gold", &[]).await;
    counter.reset();

    let first = backfill(ec2.clone()).await;
    assert_eq!(first.plan.examined, 3);
    assert_eq!(first.tagged, 3);
    // One describe of each kind, whatever the number of snapshots: but
    // snapshots three (the volumes' ids, then the batch's snapshots by tag
    // and by VolumeId).
    assert_eq!(counter.count("DescribeSnapshots"), 3);
    assert_eq!(counter.count("DescribeVolumes"), 1);
    assert_eq!(counter.count("DescribeInstances"), 1);
    assert_eq!(counter.count("CreateTags"), first.create_tags_calls);

    let after = by_id(snapshots(&ec2).await);
    let attached = &after[&ids[0]].tags;
    assert_eq!(attached["Name"], "web-1:/dev/sdf");
    assert_eq!(attached["Owner"], "alice", "the volume's value wins");
    assert_eq!(
        attached["CostCenter"], "cc-42",
        "the instance fills what the volume lacks"
    );
    assert_eq!(attached["Tier"], "gold");
    assert_eq!(attached[tags::INSTANCE_ID], instance);
    assert_eq!(attached[tags::DEVICE], "/dev/sdf");
    assert!(!attached.contains_key("aws-like"), "not in copy_tags");
    let unattached = &after[&ids[2]].tags;
    assert_eq!(unattached["Name"], "scratch");
    assert_eq!(unattached["Team"], "db");
    assert!(!unattached.contains_key(tags::INSTANCE_ID));
    for id in &ids {
        let t = &after[id].tags;
        assert!(
            t.contains_key(tags::RETAINED_BY) && t.contains_key(tags::EXPIRES_AT),
            "{id}"
        );
    }
    assert_eq!(
        after[&foreign].tags.get("Name"),
        None,
        "another deployment's snapshot"
    );

    counter.reset();
    let second = backfill(ec2.clone()).await;
    assert_eq!(second.tagged, 0);
    assert_eq!(second.plan.unchanged, 3);
    assert_eq!(
        counter.count("CreateTags"),
        0,
        "a second run writes nothing"
    );
}

#[tokio::test]
async fn labels_are_what_the_retention_planner_decides() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let volume = create_volume(&ec2, 8, &[]).await;
    for _ in 0..4 {
        managed_snapshot(&moto, &volume, "itest", "gold", &[]).await;
    }
    backfill(ec2.clone()).await;

    let ours: Vec<Snapshot> = snapshots(&ec2).await;
    let candidates: Vec<Candidate> = ours
        .iter()
        .map(|s| Candidate {
            id: s.id.clone(),
            time: s.start_time.unwrap(),
            tags: Vec::new(),
        })
        .collect();
    let config = config(POLICIES);
    let gold = config.policies.get("gold").unwrap();
    let projections = retention::project(&gold.keep, chrono_tz::Tz::UTC, &candidates, |t| {
        gold.schedule.next_slot_after(t)
    });
    assert_eq!(projections.len(), 4);
    let tagged = by_id(ours);
    for p in projections {
        let t = &tagged[&p.decision.id].tags;
        let retained = if p.decision.keep() {
            p.decision.retained_by()
        } else {
            "none".to_string()
        };
        assert_eq!(t[tags::RETAINED_BY], retained, "{}", p.decision.id);
        match p.expiry {
            Expiry::At(at) => assert_eq!(t[tags::EXPIRES_AT], tags::format_time(at)),
            Expiry::Never => assert_eq!(t[tags::EXPIRES_AT], "never"),
            Expiry::Due => assert!(tags::parse_time(&t[tags::EXPIRES_AT]).unwrap() <= now()),
        }
    }
    // Four snapshots of four daily slots: `last 2` keeps the newest two,
    // `daily 7` every one of the four days.
    let mut labels: Vec<&str> = tagged
        .values()
        .map(|s| s.tags[tags::RETAINED_BY].as_str())
        .collect();
    labels.sort_unstable();
    assert_eq!(labels, ["daily", "daily", "last,daily", "last,daily"]);
}

#[tokio::test]
async fn drift_follows_the_volume_and_hand_added_tags_survive() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let volume = create_volume(&ec2, 8, &[("Owner", "alice"), ("Team", "db")]).await;
    let snapshot = managed_snapshot(&moto, &volume, "itest", "gold", &[]).await;
    backfill(ec2.clone()).await;

    put_tags(
        &ec2,
        &snapshot,
        &[("Ticket", "OPS-7"), ("Owner-note", "by hand")],
    )
    .await;
    put_tags(&ec2, &volume, &[("Owner", "carol"), ("Name", "orders-db")]).await;
    ec2.delete_tags()
        .resources(&volume)
        .tags(aws_sdk_ec2::types::Tag::builder().key("Team").build())
        .send()
        .await
        .unwrap();
    let run = backfill(ec2.clone()).await;
    assert_eq!(run.tagged, 1);

    let t = &by_id(snapshots(&ec2).await)[&snapshot].tags;
    assert_eq!(t["Owner"], "carol");
    assert_eq!(t["Name"], "orders-db");
    assert_eq!(t["Ticket"], "OPS-7");
    assert_eq!(t["Owner-note"], "by hand");
    assert_eq!(
        t["Team"], "db",
        "a tag gone from the volume is not removed from snapshots"
    );
}

#[tokio::test]
async fn never_more_than_fifty_tags_and_lifecycle_tags_win() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let many: Vec<(String, String)> = (0..45)
        .map(|i| (format!("Key{i:02}"), format!("v{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let volume = create_volume(&ec2, 8, &refs).await;
    let snapshot = managed_snapshot(&moto, &volume, "itest", "all", &[]).await;
    let config =
        config(r#"{"all": {"schedule": "@daily", "keep": {"last": 3}, "copy_tags": ["*"]}}"#);

    let run = run_with(ec2.clone(), &config, &json!({"kind": "tick"})).await;
    let t = &by_id(snapshots(&ec2).await)[&snapshot].tags;
    assert_eq!(t.len(), 50);
    assert!(t.contains_key(tags::RETAINED_BY) && t.contains_key(tags::EXPIRES_AT));
    assert!(t.contains_key("Name"));
    // 8 lifecycle labels + 2 retention labels + Name = 11; 39 of 45 copied fit.
    assert_eq!(run.plan.skipped.len(), 45 - 39);
    assert!(run
        .plan
        .skipped
        .iter()
        .all(|s| s.tag.reason == tags::SkipReason::TagLimit));

    let again = run_with(ec2.clone(), &config, &json!({"kind": "tick"})).await;
    assert_eq!(again.tagged, 0);
}

#[tokio::test]
async fn n_identical_changes_cost_ceil_n_over_batch_size_create_tags() {
    let moto = Moto::start();
    let (ec2, counter) = moto.counted_ec2();
    let volume = create_volume(&ec2, 8, &[]).await;
    let n = TAG_BATCH + 1;
    for _ in 0..n {
        managed_snapshot(&moto, &volume, "itest", "gold", &[]).await;
    }
    backfill(ec2.clone()).await;

    // The policy's static tag changes: every snapshot needs the same change.
    counter.reset();
    let changed = config(&POLICIES.replace(r#""Tier": "gold""#, r#""Tier": "platinum""#));
    let run = run_with(ec2.clone(), &changed, &json!({"kind": "tick"})).await;
    assert_eq!(run.tagged, n);
    assert_eq!(counter.count("CreateTags"), n.div_ceil(TAG_BATCH));
    assert_eq!(counter.count("DescribeSnapshots"), 3);
    let platinum = snapshots(&ec2)
        .await
        .iter()
        .filter(|s| s.tags.get("Tier").map(String::as_str) == Some("platinum"))
        .count();
    assert_eq!(platinum, n);
}

#[tokio::test]
async fn a_completion_event_tags_its_snapshot_and_refreshes_its_volume_only() {
    let moto = Moto::start();
    let (ec2, counter) = moto.counted_ec2();
    let volume = create_volume(&ec2, 8, &[("Owner", "alice")]).await;
    let other_volume = create_volume(&ec2, 8, &[]).await;
    let older = managed_snapshot(&moto, &volume, "itest", "gold", &[]).await;
    let untouched = managed_snapshot(&moto, &other_volume, "itest", "gold", &[]).await;
    let fresh = managed_snapshot(&moto, &volume, "itest", "gold", &[]).await;
    let event_for = |id: &str| completion_event(id, &volume);

    counter.reset();
    let run = run_with(ec2.clone(), &config(POLICIES), &event_for(&fresh)).await;
    assert_eq!(run.header.trigger, "event");
    assert_eq!(
        run.tagged, 2,
        "the new snapshot and the older one of its volume"
    );
    // The volume query finds the event's own snapshot: no describe by id.
    assert_eq!(counter.count("DescribeSnapshots"), 2);
    let after = by_id(snapshots(&ec2).await);
    assert_eq!(after[&fresh].tags["Owner"], "alice");
    assert!(after[&older].tags.contains_key(tags::RETAINED_BY));
    assert!(!after[&untouched].tags.contains_key(tags::RETAINED_BY));

    // A foreign snapshot's event costs three describes (the volume query
    // misses it, so it is described by id) and writes nothing, not even
    // to the managed snapshots of the volume it names.
    let foreign = managed_snapshot(&moto, &volume, "other-stack", "gold", &[]).await;
    counter.reset();
    let run = run_with(ec2.clone(), &config(POLICIES), &event_for(&foreign)).await;
    assert_eq!(run.foreign, 1);
    assert_eq!(run.tagged, 0);
    assert_eq!(
        counter.all(),
        BTreeMap::from([("DescribeSnapshots".to_string(), 3)])
    );
}

#[tokio::test]
async fn snapshots_of_a_deleted_volume_keep_their_tags_and_get_orphan_labels() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let volume = create_volume(&ec2, 8, &[("Owner", "alice")]).await;
    let a = managed_snapshot(&moto, &volume, "itest", "gold", &[]).await;
    let b = managed_snapshot(&moto, &volume, "itest", "gold", &[]).await;
    ec2.delete_volume().volume_id(&volume).send().await.unwrap();

    let run = backfill(ec2.clone()).await;
    assert_eq!(run.plan.orphaned.len(), 2);
    let after = by_id(snapshots(&ec2).await);
    // The orphan rule (default `last 1`) keeps the newest, forever.
    let labels: Vec<(String, String)> = [&a, &b]
        .iter()
        .map(|id| {
            let t = &after[*id].tags;
            (t[tags::RETAINED_BY].clone(), t[tags::EXPIRES_AT].clone())
        })
        .collect();
    assert!(
        labels.contains(&("last".to_string(), "never".to_string())),
        "{labels:?}"
    );
    assert!(labels.iter().any(|(r, _)| r == "none"), "{labels:?}");
    assert!(
        !after[&a].tags.contains_key("Owner"),
        "nothing to copy from"
    );
}

#[tokio::test]
async fn a_multi_volume_event_labels_every_volume_in_two_describes() {
    let moto = Moto::start();
    let (ec2, counter) = moto.counted_ec2();
    let (instance, _root) = run_instance(&ec2, &[("Owner", "bob")]).await;
    let data = create_volume(&ec2, 8, &[]).await;
    let logs = create_volume(&ec2, 8, &[]).await;
    attach(&ec2, &data, &instance, "/dev/sdf").await;
    attach(&ec2, &logs, &instance, "/dev/sdg").await;
    let elsewhere = create_volume(&ec2, 8, &[]).await;
    let untouched = managed_snapshot(&moto, &elsewhere, "itest", "gold", &[]).await;
    // CreateSnapshots tags every snapshot of the set alike: no volume id yet.
    let mut set = Vec::new();
    for volume in [&data, &logs] {
        let id = managed_snapshot(&moto, volume, "itest", "gold", &[]).await;
        ec2.delete_tags()
            .resources(&id)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key(tags::VOLUME_ID)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        set.push((id, volume.clone()));
    }
    let text = std::fs::read_to_string(
        workspace_root().join("tests/fixtures/events/create-snapshots-completed.json"),
    )
    .unwrap()
    .replace("snap-01234569", &set[0].0)
    .replace("vol-01234569", &set[0].1)
    .replace("snap-0123456a", &set[1].0)
    .replace("vol-0123456a", &set[1].1);
    let event: Value = serde_json::from_str(&text).unwrap();

    counter.reset();
    let run = run_with(ec2.clone(), &config(POLICIES), &event).await;
    assert_eq!(run.tagged, 2);
    assert_eq!(
        counter.count("DescribeSnapshots"),
        2,
        "one query by tag and one by volume for both volumes together"
    );
    let after = by_id(snapshots(&ec2).await);
    for (id, volume) in &set {
        assert_eq!(&after[id].tags[tags::VOLUME_ID], volume);
        assert_eq!(after[id].tags["Owner"], "bob", "copied from the instance");
        assert!(after[id].tags.contains_key(tags::RETAINED_BY));
    }
    assert!(!after[&untouched].tags.contains_key(tags::RETAINED_BY));
}

/// At-least-once delivery: events out of order and delivered twice leave
/// the labels a full backfill would write, and a repeat writes nothing.
#[tokio::test]
async fn events_out_of_order_or_twice_end_where_a_backfill_would() {
    let moto = Moto::start();
    let (ec2, counter) = moto.counted_ec2();
    let volume = create_volume(&ec2, 8, &[("Owner", "alice")]).await;
    let first = managed_snapshot(&moto, &volume, "itest", "gold", &[]).await;
    let second = managed_snapshot(&moto, &volume, "itest", "gold", &[]).await;
    let event_for = |id: &str| completion_event(id, &volume);

    run_with(ec2.clone(), &config(POLICIES), &event_for(&second)).await;
    run_with(ec2.clone(), &config(POLICIES), &event_for(&first)).await;
    let settled = by_id(snapshots(&ec2).await);

    counter.reset();
    let repeat = run_with(ec2.clone(), &config(POLICIES), &event_for(&first)).await;
    assert_eq!(repeat.tagged, 0);
    assert_eq!(
        counter.count("CreateTags"),
        0,
        "a redelivery writes nothing"
    );
    let converged = backfill(ec2.clone()).await;
    assert_eq!(
        converged.tagged, 0,
        "the events left what a backfill writes"
    );
    assert_eq!(by_id(snapshots(&ec2).await), settled);
}

/// The deadline comes mid-backfill: the CreateTags in flight completes, no
/// new one starts, the rest is reported, and the next run writes the rest.
#[tokio::test]
async fn a_deadline_mid_backfill_leaves_the_rest_for_the_next_run() {
    use integration_tests::fault_proxy::{Fault, FaultProxy};
    let moto = Moto::start();
    let ec2 = moto.ec2();
    for _ in 0..3 {
        let volume = create_volume(&ec2, 8, &[("Owner", "alice")]).await;
        for _ in 0..4 {
            managed_snapshot(&moto, &volume, "itest", "gold", &[]).await;
        }
    }
    let proxy = FaultProxy::start(&moto.endpoint).await;
    proxy.inject("CreateTags", 100, Fault::Delay(Duration::from_millis(250)));
    let slow = aws_sdk_ec2::Client::new(&proxy.sdk_config(Duration::from_secs(5)));
    let adapter = Ec2Adapter::new(slow);
    let notifier = RecordingNotifier::default();
    let ports = tag_ports(&adapter, &notifier, mocked_ledger());
    let first = handle(
        Ports {
            pacing: Pacing::NONE,
            ..ports
        },
        &config(POLICIES),
        &json!({"kind": "tick"}),
        now(),
        Deadline::after(Duration::from_millis(600)).with_margin(Duration::ZERO),
    )
    .await
    .unwrap();

    assert!(first.tagged >= 1, "{first:?}");
    assert!(first.left_for_later >= 1, "{first:?}");
    // A snapshot may be in several batches (one per distinct change), so
    // it can be both partly written and left.
    assert!(first.left_for_later <= 12);
    assert!(first.failed.is_empty());
    assert_eq!(proxy.requests("CreateTags"), first.create_tags_calls);
    // The one batch was cut short: the next run starts at its first volume.
    let volumes: BTreeSet<String> = snapshots(&ec2)
        .await
        .into_iter()
        .filter_map(|s| s.volume_id)
        .collect();
    assert_eq!(first.progress.stopped_at.as_ref(), volumes.first());

    let next = backfill(ec2.clone()).await;
    assert_eq!(next.tagged, first.left_for_later);
    assert_eq!(backfill(ec2.clone()).await.tagged, 0, "all written");
}

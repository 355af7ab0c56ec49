//! create-snapshots end to end against moto: real SDK calls, real filters,
//! real tags read back.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;

use create_snapshots::{handle, Ports, RunSummary};
use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::aws::sns::SnsNotifier;
use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::ports::ec2::{Ec2Error, VolumeInventory};
use ebs_lifecycle::ports::notifier::Notifier;
use ebs_lifecycle_core::model::{Instance, Volume};
use ebs_lifecycle_core::notify::NotificationKind;
use integration_tests::*;

const POLICIES: &str = r#"{
  "default": { "schedule": "@daily", "timezone": "UTC",
               "keep": { "last": 3, "daily": 7 },
               "copy_tags": ["Owner", "CostCenter"], "tags": { "Tier": "gold" } },
  "fleet":   { "schedule": "0 * * * *", "timezone": "Europe/Berlin",
               "keep": { "hourly": 24 }, "consistency": "instance", "copy_tags": ["*"] },
  "everything": { "schedule": "@daily", "keep": { "last": 1 }, "copy_tags": ["*"], "tags": { "Tier": "gold" } }
}"#;

fn at(s: &str) -> DateTime<Utc> {
    ebs_lifecycle_core::tags::parse_time(s).unwrap()
}

fn tick() -> serde_json::Value {
    json!({"kind": "tick", "scheduled_time": "2026-03-01T10:15:00Z"})
}

fn plenty() -> Deadline {
    Deadline::after(Duration::from_secs(600))
}

/// One run at `now`, with moto's clock at `now` too (EC2 stamps what it
/// creates with the time the function believes it is).
async fn run_with(
    moto: &Moto,
    inventory: &dyn VolumeInventory,
    adapter: &Ec2Adapter,
    notifier: &dyn Notifier,
    config: &Config,
    now: DateTime<Utc>,
    deadline: Deadline,
) -> RunSummary {
    let no_commands = no_commands();
    let ports = Ports {
        inventory,
        ..create_ports(adapter, &no_commands, notifier, moto.ledger())
    };
    moto.set_clock(Some(now));
    let summary = handle(ports, config, &tick(), now, deadline)
        .await
        .expect("the run succeeds");
    moto.set_clock(None);
    summary
}

async fn run(moto: &Moto, notifier: &RecordingNotifier, now: DateTime<Utc>) -> RunSummary {
    run_configured(moto, notifier, &config(POLICIES), now).await
}

/// [`run`] under another configuration.
async fn run_configured(
    moto: &Moto,
    notifier: &RecordingNotifier,
    config: &Config,
    now: DateTime<Utc>,
) -> RunSummary {
    let adapter = Ec2Adapter::new(moto.ec2());
    run_with(moto, &adapter, &adapter, notifier, config, now, plenty()).await
}

#[tokio::test]
async fn a_due_volume_gets_one_snapshot_with_exactly_the_documented_tags() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let volume = create_volume(
        &ec2,
        20,
        &[
            ("Backup", "default"),
            ("Name", "db-data"),
            ("Owner", "ana"),
            ("Unrelated", "x"),
        ],
    )
    .await;
    let _not_opted_in = create_volume(&ec2, 5, &[("Name", "scratch")]).await;
    let notifier = RecordingNotifier::default();

    let summary = run(&moto, &notifier, at("2026-03-01T10:15:00Z")).await;

    assert_eq!(summary.counts.targeted, 1);
    assert_eq!(summary.counts.created, 1);
    assert!(summary.failed.is_empty() && summary.unknown_policies.is_empty());
    assert!(
        notifier.sent().is_empty(),
        "nothing failed, nobody is paged"
    );

    let snaps = snapshots(&ec2).await;
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].id, summary.created[0].snapshot_id);
    assert_eq!(snaps[0].volume_id.as_deref(), Some(volume.as_str()));
    let expected: BTreeMap<String, String> = [
        ("lifecycle:managed-by", "itest"),
        ("lifecycle:policy", "default"),
        ("lifecycle:slot", "2026-03-01T00:00:00Z"),
        ("lifecycle:state", "pending"),
        ("lifecycle:volume-id", volume.as_str()),
        ("lifecycle:created-at", "2026-03-01T10:15:00Z"),
        ("lifecycle:consistency", "crash"),
        ("Name", "db-data"),
        ("Owner", "ana"),
        ("Tier", "gold"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(snaps[0].tags, expected);
    // The Description proves it this deployment's, in this account and region.
    assert_eq!(
        snaps[0].description.as_deref(),
        Some(
            format!(
                "ebs-lifecycle itest 123456789012/us-east-1: {volume} policy default slot 2026-03-01T00:00:00Z"
            )
            .as_str()
        )
    );
}

#[tokio::test]
async fn a_second_tick_in_the_same_slot_creates_nothing_and_the_next_slot_does() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    create_volume(&ec2, 8, &[("Backup", "default")]).await;
    create_volume(&ec2, 8, &[("Backup", "")]).await; // empty value: the default policy
    let notifier = RecordingNotifier::default();

    let first = run(&moto, &notifier, at("2026-03-01T00:05:00Z")).await;
    assert_eq!(first.counts.created, 2);
    let again = run(&moto, &notifier, at("2026-03-01T23:59:00Z")).await;
    assert_eq!(again.counts.created, 0);
    assert_eq!(again.counts.not_due, 2);
    assert_eq!(snapshots(&ec2).await.len(), 2);

    // A missed day is caught up once by the next tick, in the new slot only.
    let later = run(&moto, &notifier, at("2026-03-03T06:00:00Z")).await;
    assert_eq!(later.counts.created, 2);
    assert!(later
        .created
        .iter()
        .all(|c| c.slot == "2026-03-03T00:00:00Z"));
    assert_eq!(snapshots(&ec2).await.len(), 4);
}

#[tokio::test]
async fn instance_consistency_snapshots_the_instance_volumes_together() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (instance, root) = run_instance(
        &ec2,
        &[("Backup", "fleet"), ("Name", "web-1"), ("Team", "web")],
    )
    .await;
    let data = create_volume(&ec2, 50, &[]).await;
    attach(&ec2, &data, &instance, "/dev/sdf").await;
    let notifier = RecordingNotifier::default();

    // 10:15Z is 11:15 in Berlin; the hourly slot opened at 10:00Z.
    let summary = run(&moto, &notifier, at("2026-03-01T10:15:00Z")).await;
    assert_eq!(summary.counts.targeted, 2);
    assert_eq!(summary.counts.created, 2);
    let mut volumes: Vec<&str> = summary
        .created
        .iter()
        .map(|c| c.volume_id.as_str())
        .collect();
    volumes.sort();
    let mut expected = vec![root.as_str(), data.as_str()];
    expected.sort();
    assert_eq!(volumes, expected);

    for snap in snapshots(&ec2).await {
        assert_eq!(snap.tags["lifecycle:consistency"], "instance");
        assert_eq!(snap.tags["lifecycle:instance-id"], instance);
        assert_eq!(snap.tags["lifecycle:slot"], "2026-03-01T10:00:00Z");
        assert_eq!(snap.tags["Name"], "web-1");
        assert_eq!(
            snap.tags["Team"], "web",
            "copy_tags * copies the instance's tags"
        );
        assert!(!snap.tags.contains_key("Backup") || snap.tags["Backup"] == "fleet");
    }

    // The set is found again through EC2's VolumeId: nothing is duplicated.
    let again = run(&moto, &notifier, at("2026-03-01T10:45:00Z")).await;
    assert_eq!(again.counts.created, 0);
    assert_eq!(again.counts.not_due, 2);
}

#[tokio::test]
async fn exclusions_leave_the_boot_scratch_and_throughput_volumes_out_of_the_instance_set() {
    const LEAN: &str = r#"{
      "lean": { "schedule": "@daily", "keep": { "last": 3 }, "consistency": "instance",
                "exclude": { "boot_volumes": true, "volume_types": ["st1"], "tags": { "Scratch": "yes" } } }
    }"#;
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (instance, root) = run_instance(&ec2, &[("Backup", "lean")]).await;
    let data = create_volume(&ec2, 50, &[]).await;
    let scratch = create_volume(&ec2, 50, &[("Scratch", "yes")]).await;
    let logs = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(500)
        .volume_type(aws_sdk_ec2::types::VolumeType::St1)
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string();
    // Scratch=yes, but its own tag asks for the policy: it is snapshotted.
    let chosen = create_volume(&ec2, 20, &[("Scratch", "yes"), ("Backup", "lean")]).await;
    for (volume, device) in [
        (&data, "/dev/sdf"),
        (&scratch, "/dev/sdg"),
        (&logs, "/dev/sdh"),
        (&chosen, "/dev/sdi"),
    ] {
        attach(&ec2, volume, &instance, device).await;
    }
    let notifier = RecordingNotifier::default();
    let summary = run_configured(&moto, &notifier, &config(LEAN), at("2026-03-01T00:15:00Z")).await;

    let mut created: Vec<&str> = summary
        .created
        .iter()
        .map(|c| c.volume_id.as_str())
        .collect();
    created.sort();
    let mut expected = vec![data.as_str(), chosen.as_str()];
    expected.sort();
    assert_eq!(created, expected, "{:?}", summary.failed);
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    // What EC2 (moto) holds: snapshots of exactly those two volumes, one
    // CreateSnapshots set; the root, the st1 and the scratch volumes none.
    let mut snapshotted: Vec<String> = snapshots(&ec2)
        .await
        .into_iter()
        .filter_map(|s| s.volume_id)
        .collect();
    snapshotted.sort();
    assert_eq!(snapshotted, expected);
    assert!(!snapshotted.contains(&root));
}

#[tokio::test]
async fn a_default_policy_snapshots_the_volume_nobody_tagged_and_leaves_the_opted_out() {
    const DOC: &str = r#"{
      "gold":  { "schedule": "@daily", "keep": { "last": 3 } },
      "catch": { "schedule": "@daily", "keep": { "last": 3 }, "exclude": { "boot_volumes": true } }
    }"#;
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let forgotten = create_volume(&ec2, 10, &[("Name", "new-disk")]).await;
    let tagged = create_volume(&ec2, 10, &[("Backup", "gold")]).await;
    let opted_out = create_volume(&ec2, 10, &[("Backup", "none")]).await;
    // An instance nobody tagged: its data volume is covered, its root
    // volume excluded by the default policy's exclude.
    let (instance, root) = run_instance(&ec2, &[]).await;
    let data = create_volume(&ec2, 10, &[]).await;
    attach(&ec2, &data, &instance, "/dev/sdf").await;
    let notifier = RecordingNotifier::default();
    let summary = run_configured(
        &moto,
        &notifier,
        &config_with(DOC, &[("DEFAULT_POLICY", "catch")]),
        at("2026-03-01T00:15:00Z"),
    )
    .await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    let mut by_volume: Vec<(String, String)> = snapshots(&ec2)
        .await
        .into_iter()
        .filter_map(|s| Some((s.volume_id?, s.tags.get("lifecycle:policy")?.clone())))
        .collect();
    by_volume.sort();
    let mut expected = vec![
        (forgotten.clone(), "catch".to_string()),
        (data.clone(), "catch".to_string()),
        (tagged.clone(), "gold".to_string()),
    ];
    expected.sort();
    assert_eq!(by_volume, expected);
    let snapshotted: Vec<&str> = by_volume.iter().map(|(v, _)| v.as_str()).collect();
    assert!(!snapshotted.contains(&opted_out.as_str()));
    assert!(!snapshotted.contains(&root.as_str()));
}

#[tokio::test]
async fn a_volume_naming_an_unknown_policy_is_reported_and_notified() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let typo = create_volume(&ec2, 8, &[("Backup", "dialy")]).await;
    create_volume(&ec2, 8, &[("Backup", "default")]).await;
    let notifier = RecordingNotifier::default();

    let summary = run(&moto, &notifier, at("2026-03-01T10:15:00Z")).await;

    assert_eq!(
        summary.counts.created, 1,
        "the good volume is still snapshotted"
    );
    assert_eq!(summary.unknown_policies.len(), 1);
    assert_eq!(summary.unknown_policies[0].resource_id, typo);
    assert_eq!(summary.unknown_policies[0].policy, "dialy");
    let sent = notifier.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, NotificationKind::RunSummary);
    assert!(sent[0].details.to_string().contains(&typo));
}

/// Deletes one volume between listing and creating: the race a real account has.
struct DeletesAfterListing<'a> {
    inner: &'a Ec2Adapter,
    ec2: aws_sdk_ec2::Client,
    victim: String,
}

#[async_trait]
impl VolumeInventory for DeletesAfterListing<'_> {
    async fn all_volumes(&self) -> Result<Vec<Volume>, Ec2Error> {
        self.inner.all_volumes().await
    }
    async fn volumes_tagged(&self, key: &str) -> Result<Vec<Volume>, Ec2Error> {
        let listed = self.inner.volumes_tagged(key).await?;
        self.ec2
            .delete_volume()
            .volume_id(&self.victim)
            .send()
            .await
            .unwrap();
        Ok(listed)
    }
    async fn instances_tagged(&self, key: &str) -> Result<Vec<Instance>, Ec2Error> {
        self.inner.instances_tagged(key).await
    }
    async fn volumes_attached_to(&self, ids: &[String]) -> Result<Vec<Volume>, Ec2Error> {
        self.inner.volumes_attached_to(ids).await
    }
    async fn volumes_by_id(&self, ids: &[String]) -> Result<Vec<Volume>, Ec2Error> {
        self.inner.volumes_by_id(ids).await
    }
    async fn instances_by_id(&self, ids: &[String]) -> Result<Vec<Instance>, Ec2Error> {
        self.inner.instances_by_id(ids).await
    }
}

#[tokio::test]
async fn a_volume_deleted_mid_run_is_recorded_and_the_run_goes_on() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let doomed = create_volume(&ec2, 8, &[("Backup", "default")]).await;
    let survivor = create_volume(&ec2, 8, &[("Backup", "default")]).await;
    let adapter = Ec2Adapter::new(ec2.clone());
    let inventory = DeletesAfterListing {
        inner: &adapter,
        ec2: ec2.clone(),
        victim: doomed.clone(),
    };
    let notifier = RecordingNotifier::default();

    let summary = run_with(
        &moto,
        &inventory,
        &adapter,
        &notifier,
        &config(POLICIES),
        at("2026-03-01T10:15:00Z"),
        plenty(),
    )
    .await;

    assert_eq!(summary.counts.created, 1);
    assert_eq!(summary.created[0].volume_id, survivor);
    assert_eq!(summary.failed.len(), 1);
    assert_eq!(summary.failed[0].volume_id, doomed);
    assert_eq!(summary.failed[0].error_kind, "volume-not-found");
    assert_eq!(notifier.sent().len(), 1, "a failure sends one run summary");
}

#[tokio::test]
async fn near_the_deadline_nothing_is_started_and_everything_is_left_for_the_next_tick() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    create_volume(&ec2, 8, &[("Backup", "default")]).await;
    create_volume(&ec2, 8, &[("Backup", "default")]).await;
    let adapter = Ec2Adapter::new(ec2.clone());
    let notifier = RecordingNotifier::default();

    let short = Deadline::after(Duration::from_secs(5));
    let summary = run_with(
        &moto,
        &adapter,
        &adapter,
        &notifier,
        &config(POLICIES),
        at("2026-03-01T10:15:00Z"),
        short,
    )
    .await;
    assert_eq!(summary.counts.created, 0);
    assert_eq!(summary.counts.left_for_later, 2);
    assert!(snapshots(&ec2).await.is_empty());

    // The next tick, with time to spare, completes the work.
    let next = run_with(
        &moto,
        &adapter,
        &adapter,
        &notifier,
        &config(POLICIES),
        at("2026-03-01T10:30:00Z"),
        plenty(),
    )
    .await;
    assert_eq!(next.counts.created, 2);
}

#[tokio::test]
async fn a_malformed_event_is_rejected_before_any_aws_call() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    create_volume(&ec2, 8, &[("Backup", "default")]).await;
    let adapter = Ec2Adapter::new(ec2.clone());
    let notifier = RecordingNotifier::default();
    let no_commands = no_commands();
    let ports = create_ports(&adapter, &no_commands, &notifier, moto.ledger());
    let config = config(POLICIES);
    for event in [
        json!(null),
        json!({"kind": "tock"}),
        json!({"kind": "tick", "scheduled_time": 5}),
    ] {
        let err = handle(ports, &config, &event, at("2026-03-01T10:15:00Z"), plenty())
            .await
            .unwrap_err();
        let diagnostic: lambda_runtime::Diagnostic = err.into();
        assert_eq!(diagnostic.error_type, "InvalidEvent");
    }
    assert!(snapshots(&ec2).await.is_empty());
}

#[tokio::test]
async fn notifications_reach_the_sns_topic() {
    let moto = Moto::start();
    let sns = moto.sns();
    let topic = sns
        .create_topic()
        .name("alerts")
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string();
    let ec2 = moto.ec2();
    create_volume(&ec2, 8, &[("Backup", "missing-policy")]).await;
    let adapter = Ec2Adapter::new(ec2);
    let notifier = SnsNotifier::new(sns, topic);

    let summary = run_with(
        &moto,
        &adapter,
        &adapter,
        &notifier,
        &config(POLICIES),
        at("2026-03-01T10:15:00Z"),
        plenty(),
    )
    .await;
    assert_eq!(summary.counts.unknown_policy, 1);
    assert!(summary.header.notification_errors.is_empty());

    // A topic that does not exist is reported in the summary, not fatal.
    let gone = SnsNotifier::new(moto.sns(), "arn:aws:sns:us-east-1:123456789012:gone".into());
    let summary = run_with(
        &moto,
        &adapter,
        &adapter,
        &gone,
        &config(POLICIES),
        at("2026-03-01T10:15:00Z"),
        plenty(),
    )
    .await;
    assert!(!summary.header.notification_errors.is_empty());
}

#[tokio::test]
async fn ec2s_fifty_tag_ceiling_keeps_lifecycle_tags_and_reports_the_rest() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let many: Vec<(String, String)> = (0..44)
        .map(|i| (format!("Label{i:02}"), format!("v{i}")))
        .collect();
    let mut tags: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    tags.push(("Backup", "everything"));
    create_volume(&ec2, 8, &tags).await;
    let notifier = RecordingNotifier::default();

    let summary = run(&moto, &notifier, at("2026-03-01T10:15:00Z")).await;

    assert_eq!(summary.counts.created, 1);
    let snap = &snapshots(&ec2).await[0];
    assert_eq!(snap.tags.len(), 50, "EC2's ceiling, exactly");
    assert_eq!(snap.tags["lifecycle:managed-by"], "itest");
    assert_eq!(snap.tags["lifecycle:slot"], "2026-03-01T00:00:00Z");
    assert_eq!(
        snap.tags["Tier"], "gold",
        "the policy's own tags come before copied ones"
    );
    // 7 lifecycle + Name + Tier + 45 copied = 54: four copied tags are left out, and said so.
    assert_eq!(summary.skipped_tags.len(), 1);
    assert_eq!(summary.skipped_tags[0].tags.len(), 4);
    for skipped in &summary.skipped_tags[0].tags {
        assert!(!snap.tags.contains_key(&skipped.key));
    }
}

/// Through the fault proxy: throttling and 5xx on reads are retried; on
/// CreateSnapshot only throttling is. A create whose answer is lost after
/// EC2 made the snapshot is reported, not retried (CreateSnapshot has no
/// idempotency token: a retry would make a second snapshot), and the next
/// tick finds the snapshot and creates nothing more. A reset before EC2
/// saw the call is reported too, and the next tick makes that snapshot.
#[tokio::test]
async fn faults_never_make_a_second_snapshot_and_never_drop_a_volume() {
    use integration_tests::fault_proxy::{Fault, FaultProxy};
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let mut volumes = Vec::new();
    for _ in 0..4 {
        volumes.push(create_volume(&ec2, 8, &[("Backup", "default")]).await);
    }
    let proxy = FaultProxy::start(&moto.endpoint).await;
    proxy.inject("DescribeVolumes", 1, Fault::ResetBeforeForward);
    proxy.inject(
        "DescribeInstances",
        1,
        Fault::Delay(Duration::from_millis(900)),
    );
    proxy.inject("DescribeSnapshots", 1, Fault::InternalError);
    proxy.inject("CreateSnapshot", 2, Fault::Throttle);
    proxy.inject("CreateSnapshot", 1, Fault::ResetAfterForward);
    proxy.inject("CreateSnapshot", 1, Fault::ResetBeforeForward);
    let faulty = Ec2Adapter::new(aws_sdk_ec2::Client::new(
        &proxy.sdk_config(Duration::from_millis(400)),
    ));
    let notifier = RecordingNotifier::default();
    let now = at("2026-03-01T00:05:00Z");
    // A deployment that ran before: its creation records began a day ago,
    // so the lost answer's snapshot needs more than its Description.
    ebs_lifecycle::ports::ledger::Ledger::begin_creations(
        moto.ledger(),
        now - chrono::Duration::days(1),
    )
    .await
    .unwrap();

    let first = run_with(
        &moto,
        &faulty,
        &faulty,
        &notifier,
        &config(POLICIES),
        now,
        plenty(),
    )
    .await;

    assert_eq!(
        proxy.faults_applied().len(),
        7,
        "{:?}",
        proxy.faults_applied()
    );
    assert_eq!(
        proxy.requests("CreateSnapshot"),
        6,
        "two throttled retries, then one call per volume: the lost answer and the reset are not retried"
    );
    assert_eq!(first.counts.created, 2);
    assert_eq!(first.counts.failed, 2, "{:?}", first.failed);
    assert!(first
        .failed
        .iter()
        .all(|f| f.error_kind == "transport-error"));
    let listed = snapshots(&ec2).await;
    assert_eq!(listed.len(), 3, "the lost answer's snapshot exists, once");
    let lost = listed
        .iter()
        .find(|s| !first.created.iter().any(|c| c.snapshot_id == s.id))
        .unwrap()
        .id
        .clone();
    let claim = (
        listed
            .iter()
            .find(|s| s.id == lost)
            .unwrap()
            .volume_id
            .clone()
            .unwrap(),
        "default".to_string(),
        at("2026-03-01T00:00:00Z"),
    );
    let ledger = moto.ledger();
    use ebs_lifecycle::ports::ledger::Ledger as _;
    assert_eq!(
        ledger
            .asked(std::slice::from_ref(&claim))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(ledger
        .creations(std::slice::from_ref(&lost))
        .await
        .unwrap()
        .is_empty());

    // The next tick in the slot: the lost-answer volume is covered, the
    // reset one is snapshotted now; every volume ends with exactly one.
    let adapter = Ec2Adapter::new(ec2.clone());
    let next = run_with(
        &moto,
        &adapter,
        &adapter,
        &notifier,
        &config(POLICIES),
        at("2026-03-01T00:20:00Z"),
        plenty(),
    )
    .await;
    assert_eq!(next.counts.created, 1);
    assert_eq!(next.counts.not_due, 3);
    let mut per_volume: BTreeMap<String, usize> = BTreeMap::new();
    for s in snapshots(&ec2).await {
        *per_volume.entry(s.volume_id.unwrap()).or_default() += 1;
    }
    assert_eq!(per_volume.len(), 4);
    assert!(per_volume.values().all(|n| *n == 1), "{per_volume:?}");
    // And none of them is taken for someone else's.
    let suspected: Vec<_> = notifier
        .sent()
        .into_iter()
        .filter(|n| n.kind == NotificationKind::TamperingSuspected)
        .collect();
    assert!(suspected.is_empty(), "{suspected:?}");
    assert_eq!(
        next.lost_answers_recorded, 0,
        "the lost call's window is open"
    );

    // Once the lost call's window has passed, a tick records the snapshot
    // its intent proved and forgets the intent: the proof now lasts as
    // long as the snapshot, not as long as the intent's TTL.
    let later = run_with(
        &moto,
        &adapter,
        &adapter,
        &notifier,
        &config(POLICIES),
        at("2026-03-01T00:35:00Z"),
        plenty(),
    )
    .await;
    assert_eq!(later.lost_answers_recorded, 1, "{later:?}");
    assert_eq!(later.counts.created, 0);
    assert!(ledger
        .asked(std::slice::from_ref(&claim))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        ledger.creations(std::slice::from_ref(&lost)).await.unwrap(),
        std::slice::from_ref(&lost)
    );
    // And it stays the volume's, proven by its record alone.
    let last = run_with(
        &moto,
        &adapter,
        &adapter,
        &notifier,
        &config(POLICIES),
        at("2026-03-01T00:50:00Z"),
        plenty(),
    )
    .await;
    assert_eq!((last.counts.created, last.lost_answers_recorded), (0, 0));
    assert!(notifier
        .sent()
        .iter()
        .all(|n| n.kind != NotificationKind::TamperingSuspected));
}

/// The deadline comes while calls are in flight: those finish, nothing new
/// starts, the rest is reported, and the next tick completes the slot.
#[tokio::test]
async fn a_deadline_mid_run_finishes_what_is_in_flight_and_the_next_tick_the_rest() {
    use integration_tests::fault_proxy::{Fault, FaultProxy};
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let n = create_snapshots::CONCURRENCY + 4;
    for _ in 0..n {
        create_volume(&ec2, 8, &[("Backup", "default")]).await;
    }
    let proxy = FaultProxy::start(&moto.endpoint).await;
    // The first wave of creates answers slowly; the deadline passes meanwhile.
    proxy.inject(
        "CreateSnapshot",
        create_snapshots::CONCURRENCY,
        Fault::Delay(Duration::from_millis(800)),
    );
    let slow = Ec2Adapter::new(aws_sdk_ec2::Client::new(
        &proxy.sdk_config(Duration::from_secs(5)),
    ));
    let notifier = RecordingNotifier::default();
    let deadline = Deadline::after(Duration::from_millis(400)).with_margin(Duration::ZERO);

    let first = run_with(
        &moto,
        &slow,
        &slow,
        &notifier,
        &config(POLICIES),
        at("2026-03-01T00:05:00Z"),
        deadline,
    )
    .await;

    assert_eq!(
        first.counts.created,
        create_snapshots::CONCURRENCY,
        "the calls in flight finished"
    );
    assert_eq!(
        first.counts.left_for_later, 4,
        "the rest is reported, not dropped"
    );
    assert_eq!(first.counts.failed, 0);
    assert_eq!(snapshots(&ec2).await.len(), create_snapshots::CONCURRENCY);

    let next = run(&moto, &notifier, at("2026-03-01T00:20:00Z")).await;
    assert_eq!(next.counts.created, 4);
    assert_eq!(snapshots(&ec2).await.len(), n, "one per volume");
}

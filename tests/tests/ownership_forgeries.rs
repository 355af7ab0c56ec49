//! An attacker holding `ec2:CreateTags` (and, for two forgeries,
//! `ec2:CreateSnapshot` and `ec2:CopySnapshot`) against a history that
//! create-snapshots itself made on moto (docs/policies-and-tags.md,
//! "Ownership"). Every forgery copies the tags of a real managed snapshot
//! rather than building them by hand:
//!
//! 1. a golden snapshot given a real snapshot's lifecycle tags;
//! 2. a real snapshot given `superseded-by` (itself) and `encrypted-copy-of`;
//! 3. a hand-made snapshot tagged a completed encrypted copy of the volume's
//!    newest, which is tagged `superseded-by` it;
//! 4. a hand-made snapshot tagged a pending encrypted copy of a real one,
//!    then its copySnapshot event delivered;
//! 5. an instance stopped by someone else, given the stop mark;
//! 6. hand-made snapshots with a real snapshot's Description (a) copied as
//!    is, (b) claiming the newest slot again;
//! 7. a copy of the golden snapshot made with the deployment's copy
//!    Description.
//!
//! Nothing the deployment did not make is deleted, the expiry plan of the
//! real snapshots is the one before the forgeries, every real snapshot keeps
//! its retention label, the instance stays stopped, and each forged snapshot
//! is reported once (`tampering-suspected`) however many runs see it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::aws::kms::KmsAdapter;
use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle_core::notify::NotificationKind;
use ebs_lifecycle_core::tags;
use integration_tests::*;

const POLICIES: &str = r#"{"lean": {"schedule": "@daily", "keep": {"last": 3}}}"#;

fn day(n: i64) -> DateTime<Utc> {
    tags::parse_time("2026-03-01T00:05:00Z").unwrap() + chrono::Duration::days(n)
}

fn plenty() -> Deadline {
    Deadline::after(Duration::from_secs(600))
}

fn tick() -> Value {
    json!({"kind": "tick"})
}

fn config_for(dry_run: bool) -> Config {
    config_with(
        POLICIES,
        &[
            ("DRY_RUN", if dry_run { "true" } else { "false" }),
            ("MAX_DELETIONS", "50"),
        ],
    )
}

/// The five functions on one moto, its ledger, one notifier; moto's clock
/// at the time of each run.
struct Stack<'m> {
    moto: &'m Moto,
    adapter: Ec2Adapter,
    kms: KmsAdapter,
    notifier: RecordingNotifier,
}

impl<'m> Stack<'m> {
    fn new(moto: &'m Moto) -> Self {
        Self {
            moto,
            adapter: Ec2Adapter::new(moto.ec2()),
            kms: KmsAdapter::new(aws_sdk_kms::Client::new(&moto.sdk_config())),
            notifier: RecordingNotifier::default(),
        }
    }

    async fn create(&self, now: DateTime<Utc>) -> create_snapshots::RunSummary {
        self.moto.set_clock(Some(now));
        let no_commands = no_commands();
        let summary = create_snapshots::handle(
            create_ports(
                &self.adapter,
                &no_commands,
                &self.notifier,
                self.moto.ledger(),
            ),
            &config_for(false),
            &tick(),
            now,
            plenty(),
        )
        .await
        .unwrap();
        self.moto.set_clock(None);
        summary
    }

    async fn complete(&self, event: &Value, now: DateTime<Utc>) -> complete_snapshots::RunSummary {
        complete_snapshots::handle(
            complete_ports(&self.adapter, &self.notifier, self.moto.ledger()),
            &config_for(false),
            event,
            now,
            plenty(),
        )
        .await
        .unwrap()
    }

    async fn tag(&self, now: DateTime<Utc>) -> tag_snapshots::RunSummary {
        tag_snapshots::handle(
            tag_snapshots::Ports {
                pacing: tag_snapshots::Pacing::NONE,
                ..tag_ports(&self.adapter, &self.notifier, self.moto.ledger())
            },
            &config_for(false),
            &tick(),
            now,
            plenty(),
        )
        .await
        .unwrap()
    }

    async fn check(&self, now: DateTime<Utc>) -> check_encryption::RunSummary {
        check_encryption::handle(
            check_ports(&self.adapter, &self.kms, &self.notifier, self.moto.ledger()),
            &config_for(false),
            &tick(),
            now,
            plenty(),
        )
        .await
        .unwrap()
    }

    async fn expire(&self, now: DateTime<Utc>, dry_run: bool) -> expire_snapshots::RunSummary {
        expire_snapshots::handle(
            expire_snapshots::Ports {
                pacing: expire_snapshots::Pacing::NONE,
                ..expire_ports(&self.adapter, &self.notifier, self.moto.ledger())
            },
            &config_for(dry_run),
            &tick(),
            now,
            plenty(),
        )
        .await
        .unwrap()
    }

    /// Snapshot ids reported `tampering-suspected`, with how many times.
    fn reported(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for n in self.notifier.sent() {
            if n.kind == NotificationKind::TamperingSuspected {
                for s in n.details["snapshots"].as_array().unwrap() {
                    *out.entry(s["snapshot_id"].as_str().unwrap().to_string())
                        .or_default() += 1;
                }
            }
        }
        out
    }
}

/// (deleted, kept) snapshot ids of an expiry run.
fn plan(summary: &expire_snapshots::RunSummary) -> (BTreeSet<String>, BTreeSet<String>) {
    let deleted = summary
        .volumes
        .iter()
        .flat_map(|v| v.deleted.iter().map(|d| d.snapshot_id.clone()))
        .collect();
    let kept = summary
        .volumes
        .iter()
        .flat_map(|v| v.kept.iter().map(|k| k.snapshot_id.clone()))
        .collect();
    (deleted, kept)
}

async fn all_snapshots(moto: &Moto) -> BTreeMap<String, ebs_lifecycle_core::model::Snapshot> {
    snapshots(&moto.ec2())
        .await
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect()
}

/// The lifecycle tags of `from`, as an attacker reads them off the console.
fn lifecycle_tags(from: &ebs_lifecycle_core::model::Snapshot) -> Vec<(String, String)> {
    from.tags
        .iter()
        .filter(|(k, _)| k.starts_with("lifecycle:"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

async fn tag_with(moto: &Moto, id: &str, pairs: &[(String, String)]) {
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    put_tags(&moto.ec2(), id, &refs).await;
}

async fn snapshot_by_hand(
    moto: &Moto,
    volume: &str,
    description: &str,
    at: DateTime<Utc>,
) -> String {
    moto.set_clock(Some(at));
    let id = moto
        .ec2()
        .create_snapshot()
        .volume_id(volume)
        .description(description)
        .send()
        .await
        .unwrap()
        .snapshot_id()
        .unwrap()
        .to_string();
    moto.set_clock(None);
    id
}

#[tokio::test]
async fn no_forgery_deletes_links_displaces_or_starts_anything() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let stack = Stack::new(&moto);
    let volume = create_volume(&ec2, 8, &[("Backup", "lean")]).await;
    let golden_volume = create_volume(&ec2, 8, &[("Name", "golden")]).await;
    let golden =
        snapshot_by_hand(&moto, &golden_volume, "golden image, never delete", day(0)).await;

    // Six days of history, made by create-snapshots and completed by the
    // daily reconcile, as in production.
    let mut real = Vec::new();
    for d in 0..6 {
        let created = stack.create(day(d)).await;
        assert_eq!(created.created.len(), 1, "day {d}");
        real.push(created.created[0].snapshot_id.clone());
        stack
            .complete(&tick(), day(d) + chrono::Duration::hours(1))
            .await;
    }
    let now = day(6);
    stack.tag(now).await;
    let labels_before: BTreeMap<String, String> = all_snapshots(&moto)
        .await
        .into_iter()
        .filter(|(id, _)| real.contains(id))
        .map(|(id, s)| (id, s.tags[tags::RETAINED_BY].clone()))
        .collect();
    let (deleted_before, kept_before) = plan(&stack.expire(now, true).await);
    assert_eq!(deleted_before, real[..3].iter().cloned().collect());
    assert_eq!(kept_before, real[3..].iter().cloned().collect());
    assert!(stack.reported().is_empty(), "nothing to suspect yet");

    let history = all_snapshots(&moto).await;
    let oldest = &history[&real[0]];
    let newest = &history[&real[5]];

    // 1. The golden snapshot wears the oldest real snapshot's tags.
    tag_with(&moto, &golden, &lifecycle_tags(oldest)).await;
    // 2. A real snapshot, kept by the plan, claims to be its own copy.
    tag_with(
        &moto,
        &real[4],
        &[
            (tags::SUPERSEDED_BY.into(), real[4].clone()),
            (tags::ENCRYPTED_COPY_OF.into(), real[4].clone()),
        ],
    )
    .await;
    // 3. A hand-made "completed encrypted copy" of the newest, which is
    //    tagged superseded by it.
    let fake_copy = snapshot_by_hand(&moto, &volume, "my copy", now).await;
    let mut copy_tags = lifecycle_tags(newest);
    copy_tags.push((tags::ENCRYPTED_COPY_OF.into(), real[5].clone()));
    copy_tags.push((tags::STATE.into(), "completed".into()));
    tag_with(&moto, &fake_copy, &copy_tags).await;
    tag_with(
        &moto,
        &real[5],
        &[(tags::SUPERSEDED_BY.into(), fake_copy.clone())],
    )
    .await;
    // 4. A hand-made "pending encrypted copy" of a kept real snapshot, and
    //    its copySnapshot event.
    let pending_copy = snapshot_by_hand(&moto, &volume, "another copy", now).await;
    let mut pending_tags = lifecycle_tags(&history[&real[3]]);
    pending_tags.push((tags::ENCRYPTED_COPY_OF.into(), real[3].clone()));
    pending_tags.push((tags::STATE.into(), "pending".into()));
    tag_with(&moto, &pending_copy, &pending_tags).await;
    // 5. An instance stopped by its owner (incident response), given our mark.
    let (quarantined, _) = run_instance(&ec2, &[("Name", "suspect-host")]).await;
    ec2.stop_instances()
        .instance_ids(&quarantined)
        .send()
        .await
        .unwrap();
    put_tags(&ec2, &quarantined, &[(tags::STOPPED_FOR_SNAPSHOT, "itest")]).await;
    // 6a. A hand-made snapshot with the oldest real snapshot's Description
    //     and tags, taken now.
    let same_description =
        snapshot_by_hand(&moto, &volume, oldest.description.as_deref().unwrap(), now).await;
    tag_with(&moto, &same_description, &lifecycle_tags(oldest)).await;
    // 6b. One claiming the newest slot again, within its window.
    let second_in_slot = snapshot_by_hand(
        &moto,
        &volume,
        newest.description.as_deref().unwrap(),
        day(5) + chrono::Duration::hours(2),
    )
    .await;
    tag_with(&moto, &second_in_slot, &lifecycle_tags(newest)).await;
    // 7. A copy of the golden snapshot, with the deployment's copy Description.
    moto.set_clock(Some(now));
    let golden_copy = ec2
        .copy_snapshot()
        .source_region(REGION)
        .source_snapshot_id(&golden)
        .description(identity("itest").copy(REGION, &golden))
        .send()
        .await
        .unwrap()
        .snapshot_id()
        .unwrap()
        .to_string();
    moto.set_clock(None);
    let mut golden_copy_tags = lifecycle_tags(oldest);
    golden_copy_tags.push((tags::ENCRYPTED_COPY_OF.into(), golden.clone()));
    tag_with(&moto, &golden_copy, &golden_copy_tags).await;

    let forged: BTreeSet<String> = [
        &golden,
        &fake_copy,
        &pending_copy,
        &same_description,
        &second_in_slot,
        &golden_copy,
    ]
    .into_iter()
    .cloned()
    .collect();

    // Every function runs, some twice, over the forgeries.
    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(
            workspace_root().join("tests/fixtures/events/create-snapshot-succeeded.json"),
        )
        .unwrap()
        .replace("snap-01234567", &pending_copy),
    )
    .unwrap();
    event["detail"]["event"] = json!("copySnapshot");
    event["detail"]["source"] = json!(format!("arn:aws:ec2::{REGION}:snapshot/{}", real[3]));
    let completed = stack.complete(&event, now).await;
    assert!(completed.superseded.is_empty() && completed.completed.is_empty());
    // A tick in the newest slot: covered by the real snapshot, so nothing
    // is created, and nothing is started.
    let created = stack.create(day(5) + chrono::Duration::hours(3)).await;
    assert!(created.restarted.is_empty() && created.created.is_empty());
    stack.tag(now).await;
    stack.check(now).await;
    let dry = stack.expire(now, true).await;
    let run = stack.expire(now, false).await;
    stack.tag(now).await;

    // The real snapshots' plan is the one before the forgeries.
    let (deleted, kept) = plan(&run);
    assert_eq!(deleted, deleted_before, "{run:#?}");
    assert_eq!(plan(&dry).0, deleted_before);
    assert!(kept.is_superset(&kept_before));
    assert!(deleted.is_disjoint(&forged));
    let left = all_snapshots(&moto).await;
    for id in &forged {
        assert!(left.contains_key(id), "{id} was deleted");
    }
    // ...and no real snapshot lost its place: the same retention labels.
    for (id, label) in &labels_before {
        if let Some(s) = left.get(id) {
            assert_eq!(&s.tags[tags::RETAINED_BY], label, "{id}");
        }
    }
    // The pending "copy" completed nothing and linked nothing.
    assert_eq!(
        left[&real[3]].tags.get(tags::SUPERSEDED_BY),
        None,
        "no link written onto a real snapshot"
    );
    // The quarantined instance is still stopped.
    let state = ec2
        .describe_instances()
        .instance_ids(&quarantined)
        .send()
        .await
        .unwrap()
        .reservations()[0]
        .instances()[0]
        .state()
        .unwrap()
        .name()
        .unwrap()
        .as_str()
        .to_string();
    assert_eq!(state, "stopped");

    // Each forged snapshot, and each real one tampered with, reported once
    // across every run that saw it.
    let reported = stack.reported();
    let mut expected: BTreeSet<String> = forged.clone();
    expected.insert(real[4].clone());
    expected.insert(real[5].clone());
    assert_eq!(
        reported.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "{reported:?}"
    );
    assert!(reported.values().all(|n| *n == 1), "{reported:?}");
    let suspects_in_summary: BTreeSet<String> = run
        .header
        .tampering_suspected
        .iter()
        .map(|s| s.snapshot_id.clone())
        .collect();
    assert_eq!(suspects_in_summary, expected);
}

/// What forged snapshots cost an expiry run, in requests: the same EC2
/// calls, a share of one ledger batch read per 100, and one ledger write
/// for a first report only.
#[tokio::test]
async fn forged_snapshots_cost_an_expiry_run_one_batch_read_and_a_write_only_when_first_seen() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let volume = create_volume(&ec2, 8, &[("Backup", "lean")]).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(managed_snapshot(&moto, &volume, "itest", "lean", &[]).await);
    }
    let real = all_snapshots(&moto).await;
    let (counted, ec2_counter) = moto.counted_ec2();
    let dynamodb_counter = RequestCounter::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&moto.sdk_config())
            .interceptor(dynamodb_counter.clone())
            .build(),
    );
    let ledger = ebs_lifecycle::aws::ledger::DynamoLedger::new(dynamodb, LEDGER_TABLE);
    let adapter = Ec2Adapter::new(counted);
    let notifier = RecordingNotifier::default();
    let run = |ledger: &'static ebs_lifecycle::aws::ledger::DynamoLedger| {
        let (adapter, notifier) = (&adapter, &notifier);
        async move {
            expire_snapshots::handle(
                expire_snapshots::Ports {
                    pacing: expire_snapshots::Pacing::NONE,
                    ..expire_ports(adapter, notifier, ledger)
                },
                &config_for(true),
                &tick(),
                Utc::now(),
                plenty(),
            )
            .await
            .unwrap()
        }
    };
    let ledger: &'static _ = Box::leak(Box::new(ledger));
    run(ledger).await;
    let clean = (ec2_counter.all(), dynamodb_counter.all());

    for _ in 0..10 {
        let forged = snapshot_by_hand(&moto, &volume, "forged", Utc::now()).await;
        tag_with(&moto, &forged, &lifecycle_tags(&real[&ids[0]])).await;
    }
    ec2_counter.reset();
    dynamodb_counter.reset();
    let first = run(ledger).await;
    assert_eq!(first.header.tampering_suspected.len(), 10);
    let forged_first = (ec2_counter.all(), dynamodb_counter.all());
    ec2_counter.reset();
    dynamodb_counter.reset();
    run(ledger).await;
    let forged_again = (ec2_counter.all(), dynamodb_counter.all());
    eprintln!("ownership cost: clean {clean:?}\n  10 forged, first run {forged_first:?}\n  10 forged, next run {forged_again:?}");

    assert_eq!(forged_first.0, clean.0, "EC2 requests do not grow");
    let puts = |c: &BTreeMap<String, usize>| c.get("PutItem").copied().unwrap_or(0);
    assert_eq!(
        puts(&forged_first.1),
        puts(&clean.1) + 10,
        "one report each"
    );
    let reads = |c: &BTreeMap<String, usize>| c.get("BatchGetItem").copied().unwrap_or(0);
    assert_eq!(
        reads(&forged_first.1),
        reads(&clean.1) + 1,
        "one batch read"
    );
    assert_eq!(
        puts(&forged_again.1),
        puts(&clean.1),
        "seen again: no write"
    );
    assert_eq!(
        reads(&forged_again.1),
        reads(&clean.1) + 1,
        "one batch read"
    );
    assert_eq!(
        notifier
            .sent()
            .iter()
            .filter(|n| n.kind == NotificationKind::TamperingSuspected)
            .count(),
        1,
        "one notification for the ten, none on the next run"
    );
}

/// The pre-emption (issue of the adversary): a snapshot made by hand with
/// the Description of the slot about to be taken, started before the tick,
/// used to fill the slot, so no backup was taken (no freeze, a set split).
/// From the deployment's first run its creation records decide: the tick
/// takes the slot as if nothing was there, the hand-made snapshot is
/// reported once (`creation-not-recorded`), and expiry, keeping the last
/// three of the deployment's, never deletes it.
#[tokio::test]
async fn a_snapshot_made_by_hand_for_the_slot_about_to_be_taken_neither_cancels_nor_replaces_it() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let stack = Stack::new(&moto);
    let volume = create_volume(&ec2, 8, &[("Backup", "lean")]).await;
    let me = ebs_lifecycle_core::ownership::Identity {
        deployment: "itest".into(),
        account: ACCOUNT.into(),
        region: REGION.into(),
    };
    let mut ours = Vec::new();
    let mut by_hand = Vec::new();
    for d in 0..6 {
        if d > 0 {
            // A minute before the tick, in the slot's window.
            let slot = day(d) - chrono::Duration::minutes(5);
            let description = me.scheduled(
                &ebs_lifecycle_core::ownership::Subject::Volume(volume.clone()),
                "lean",
                slot,
            );
            let id = snapshot_by_hand(
                &moto,
                &volume,
                &description,
                day(d) - chrono::Duration::minutes(1),
            )
            .await;
            let copied: Vec<(String, String)> = [
                (tags::MANAGED_BY, "itest".to_string()),
                (tags::POLICY, "lean".into()),
                (tags::SLOT, tags::format_time(slot)),
                (tags::VOLUME_ID, volume.clone()),
                (tags::STATE, "completed".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            tag_with(&moto, &id, &copied).await;
            by_hand.push(id);
        }
        let created = stack.create(day(d)).await;
        assert_eq!(created.created.len(), 1, "day {d}: the slot is taken");
        ours.push(created.created[0].snapshot_id.clone());
        stack
            .complete(&tick(), day(d) + chrono::Duration::hours(1))
            .await;
    }
    let expired = stack.expire(day(6), false).await;
    let (deleted, kept) = plan(&expired);
    assert_eq!(deleted, ours[..3].iter().cloned().collect());
    assert_eq!(kept, ours[3..].iter().cloned().collect());
    let left = all_snapshots(&moto).await;
    for id in &by_hand {
        assert!(
            left.contains_key(id),
            "{id}, made by hand, is never deleted"
        );
    }
    let reported = stack.reported();
    for id in &by_hand {
        assert_eq!(
            reported.get(id),
            Some(&1),
            "{id} reported once: {reported:?}"
        );
    }
    let findings: Vec<String> = stack
        .notifier
        .sent()
        .iter()
        .filter(|n| n.kind == NotificationKind::TamperingSuspected)
        .flat_map(|n| n.details["snapshots"].as_array().unwrap().clone())
        .flat_map(|s| s["findings"].as_array().unwrap().clone())
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(
        findings.iter().all(|k| k == "creation-not-recorded"),
        "{findings:?}"
    );
}

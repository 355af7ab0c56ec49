//! expire-snapshots against a real (emulated) account: only what may go goes.
//!
//! moto stamps every snapshot with its own clock, so these snapshots all
//! share one day; the calendar rules are proven by the planner's hand-worked
//! and property tests. Here the policy is `last 1` and the point is the
//! safety rules with real EC2 calls: foreign, untagged, held, AMI-backed,
//! orphaned snapshots, dry run and the cap.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;

use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::ports::ledger::Ledger;
use ebs_lifecycle_core::holds::Hold;
use ebs_lifecycle_core::model::Snapshot;
use ebs_lifecycle_core::notify::NotificationKind;
use ebs_lifecycle_core::tags;
use expire_snapshots::{handle, Pacing, Ports, RunSummary};
use integration_tests::*;

const POLICIES: &str = r#"{"lean": {"schedule": "@daily", "keep": {"last": 1}}}"#;

/// A snapshot of `volume` for the next slot: as create-snapshots made it
/// for `deployment`, or made by hand (`None`), plus `extra` tags.
async fn snapshot(
    moto: &Moto,
    volume: &str,
    deployment: Option<&str>,
    extra: &[(&str, &str)],
) -> String {
    let slot = moto.next_slot();
    if let Some(deployment) = deployment {
        let labels = labels_for(volume, deployment, "lean", slot);
        return snapshot_as_created(moto, volume, &labels, extra).await;
    }
    let mut request = moto.ec2().create_snapshot().volume_id(volume);
    if !extra.is_empty() {
        request =
            request.tag_specifications(tag_spec(aws_sdk_ec2::types::ResourceType::Snapshot, extra));
    }
    request
        .send()
        .await
        .unwrap()
        .snapshot_id()
        .unwrap()
        .to_string()
}

/// The account of the scenario, and the snapshots that may be deleted.
struct Account {
    may_go: BTreeSet<String>,
    all: BTreeSet<String>,
    /// Protected whatever their age: held, AMI-backed, another deployment's, untagged.
    protected: Vec<String>,
    /// The deleted volume whose snapshots are orphans, and those of them
    /// that may go.
    doomed: String,
    orphans_may_go: BTreeSet<String>,
}

async fn seed(moto: &Moto) -> Account {
    let ec2 = moto.ec2();
    let live = create_volume(&ec2, 10, &[("Backup", "lean")]).await;
    let doomed = create_volume(&ec2, 20, &[("Backup", "lean")]).await;

    let mut ours_live = Vec::new();
    for _ in 0..4 {
        ours_live.push(snapshot(moto, &live, Some("itest"), &[]).await);
    }
    let held = snapshot(moto, &live, Some("itest"), &[("lifecycle:hold", "legal")]).await;
    // An AMI registered from a managed snapshot (moto, with
    // scripts/moto_ebs_fixes.py, backs it by that snapshot as EC2 does).
    let source = snapshot(moto, &live, Some("itest"), &[]).await;
    let image = ec2
        .register_image()
        .name("golden-image")
        .root_device_name("/dev/xvda")
        .block_device_mappings(
            aws_sdk_ec2::types::BlockDeviceMapping::builder()
                .device_name("/dev/xvda")
                .ebs(
                    aws_sdk_ec2::types::EbsBlockDevice::builder()
                        .snapshot_id(&source)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let images = ec2
        .describe_images()
        .image_ids(image.image_id().unwrap())
        .send()
        .await
        .unwrap();
    let ami_backed = images.images()[0].block_device_mappings()[0]
        .ebs()
        .unwrap()
        .snapshot_id()
        .unwrap()
        .to_string();
    assert_eq!(ami_backed, source, "DescribeImages names the snapshot");
    let theirs = snapshot(moto, &live, Some("another-stack"), &[]).await;
    let untagged = snapshot(moto, &live, None, &[]).await;
    let mut orphans = Vec::new();
    for _ in 0..3 {
        orphans.push(snapshot(moto, &doomed, Some("itest"), &[]).await);
    }
    ec2.delete_volume().volume_id(&doomed).send().await.unwrap();

    // Newest first by (start time, id), as the planner orders them.
    let all_snaps = snapshots(&ec2).await;
    let newest_of = |ids: &[String]| -> String {
        let mut mine: Vec<&Snapshot> = all_snaps.iter().filter(|s| ids.contains(&s.id)).collect();
        mine.sort_by(|a, b| (b.start_time, &b.id).cmp(&(a.start_time, &a.id)));
        mine[0].id.clone()
    };
    let mut live_managed = ours_live.clone();
    live_managed.push(held.clone());
    live_managed.push(ami_backed.clone());
    let keep_live = newest_of(&live_managed);
    let keep_orphan = newest_of(&orphans);
    let may_go: BTreeSet<String> = ours_live
        .iter()
        .chain(&orphans)
        .filter(|id| **id != keep_live && **id != keep_orphan)
        .cloned()
        .collect();
    let all = all_snaps.iter().map(|s| s.id.clone()).collect();
    let orphans_may_go = orphans
        .iter()
        .filter(|id| **id != keep_orphan)
        .cloned()
        .collect();
    Account {
        may_go,
        all,
        protected: vec![held, ami_backed, theirs, untagged],
        doomed,
        orphans_may_go,
    }
}

async fn expire(moto: &Moto, config: &Config, notifier: &RecordingNotifier) -> RunSummary {
    expire_on(moto.ec2(), config, notifier).await
}

/// The time of every run here.
const NOW: &str = "2026-11-21T04:00:00Z";

/// [`expire`] with the EC2 client given (one behind the fault proxy, say).
async fn expire_on(
    ec2: aws_sdk_ec2::Client,
    config: &Config,
    notifier: &RecordingNotifier,
) -> RunSummary {
    expire_with_ledger(ec2, config, notifier, mocked_ledger()).await
}

/// [`expire_on`] with the ledger given (moto's DynamoDB, say).
async fn expire_with_ledger(
    ec2: aws_sdk_ec2::Client,
    config: &Config,
    notifier: &RecordingNotifier,
    ledger: &dyn Ledger,
) -> RunSummary {
    let adapter = Ec2Adapter::new(ec2);
    let ports = expire_ports(&adapter, notifier, ledger);
    let now = tags::parse_time(NOW).unwrap();
    handle(
        Ports {
            pacing: Pacing {
                burst: 1,
                interval: Duration::from_millis(1),
            },
            ..ports
        },
        config,
        &json!({"kind": "tick"}),
        now,
        Deadline::after(Duration::from_secs(600)),
    )
    .await
    .unwrap()
}

async fn remaining(moto: &Moto) -> BTreeSet<String> {
    snapshots(&moto.ec2())
        .await
        .into_iter()
        .map(|s| s.id)
        .collect()
}

#[tokio::test]
async fn only_what_may_go_goes() {
    let moto = Moto::start();
    let account = seed(&moto).await;
    assert!(
        account.may_go.len() >= 4,
        "the scenario has something to delete"
    );
    let notifier = RecordingNotifier::default();

    let summary = expire(&moto, &config(POLICIES), &notifier).await;

    let expected: BTreeSet<String> = account.all.difference(&account.may_go).cloned().collect();
    assert_eq!(remaining(&moto).await, expected);
    assert_eq!(summary.counts.deleted, account.may_go.len());
    assert_eq!(summary.counts.failed, 0);
    assert!(
        summary.locks_checked,
        "moto (with scripts/moto_ebs_fixes.py) answers DescribeLockedSnapshots"
    );
    let left = remaining(&moto).await;
    for id in &account.protected {
        assert!(left.contains(id), "protected {id} was deleted");
    }
    assert!(summary.volumes.iter().any(|v| v.orphan));
    let sent = notifier.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, NotificationKind::RunSummary);

    // The next run finds nothing more to do.
    let again = expire(&moto, &config(POLICIES), &notifier).await;
    assert_eq!(again.counts.deleted, 0);
    assert_eq!(notifier.sent().len(), 1, "nothing deleted, nobody notified");
}

/// A hold in the stack's ledger keeps a snapshot, or every snapshot of a
/// volume, whatever its tags say (its `lifecycle:hold` tag removed, here)
/// until it ends or is released; an ended hold keeps nothing; the summary
/// says why each stays.
#[tokio::test]
async fn a_ledger_hold_keeps_what_removing_a_tag_cannot_lift() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let account = seed(&moto).await;
    let ledger = moto.ledger();
    let now = tags::parse_time(NOW).unwrap();
    let live_may_go: Vec<String> = account
        .may_go
        .difference(&account.orphans_may_go)
        .cloned()
        .collect();
    assert!(live_may_go.len() >= 2 && !account.orphans_may_go.is_empty());
    let (held, ended) = (&live_may_go[0], &live_may_go[1]);
    let hold = |id: &str, until: chrono::DateTime<chrono::Utc>| {
        Hold::new(
            id,
            until,
            "incident 42",
            "arn:aws:iam::123456789012:user/ann",
            now - chrono::Duration::days(2),
        )
        .unwrap()
    };
    ledger
        .set_hold(&hold(held, now + chrono::Duration::days(30)))
        .await
        .unwrap();
    ledger
        .set_hold(&hold(&account.doomed, now + chrono::Duration::days(30)))
        .await
        .unwrap();
    ledger
        .set_hold(&hold(ended, now - chrono::Duration::days(1)))
        .await
        .unwrap();
    // The attacker's move: the tag hold lifted.
    let tag_held = &account.protected[0];
    ec2.delete_tags()
        .resources(tag_held)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("lifecycle:hold")
                .build(),
        )
        .send()
        .await
        .unwrap();
    ledger
        .set_hold(&hold(tag_held, now + chrono::Duration::days(30)))
        .await
        .unwrap();

    let notifier = RecordingNotifier::default();
    let summary = expire_with_ledger(ec2.clone(), &config(POLICIES), &notifier, ledger).await;

    let left = remaining(&moto).await;
    for id in [held, tag_held].into_iter().chain(&account.orphans_may_go) {
        assert!(left.contains(id), "{id} is held in the ledger");
    }
    assert!(!left.contains(ended), "an ended hold keeps nothing");
    let why: BTreeMap<&str, &str> = summary
        .volumes
        .iter()
        .flat_map(|v| &v.kept)
        .map(|k| (k.snapshot_id.as_str(), k.why.as_str()))
        .collect();
    assert_eq!(why.get(held.as_str()), Some(&"held-in-ledger"));
    assert_eq!(why.get(tag_held.as_str()), Some(&"held-in-ledger"));
    for id in &account.orphans_may_go {
        assert_eq!(
            why.get(id.as_str()),
            Some(&"held-in-ledger"),
            "{id}: its volume is held"
        );
    }
    let deleted_first = summary.counts.deleted;
    assert_eq!(
        deleted_first,
        account.may_go.len() - 1 - account.orphans_may_go.len()
    );

    // Released: the next run lets it go; the volume's hold still keeps the orphans.
    ledger.release_hold(held).await.unwrap();
    let again = expire_with_ledger(ec2, &config(POLICIES), &notifier, ledger).await;
    assert_eq!(again.counts.deleted, 1);
    let left = remaining(&moto).await;
    assert!(!left.contains(held));
    assert!(account.orphans_may_go.iter().all(|id| left.contains(id)));
}

/// A hold item written by hand that does not read (an id in capitals, a
/// date that is not one) is not skipped: reading the holds fails, and
/// expiry deletes nothing until it is put right.
#[tokio::test]
async fn a_hold_that_does_not_read_stops_deletions_rather_than_being_skipped() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let moto = Moto::start();
    let account = seed(&moto).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&moto.sdk_config());
    for (sk, until) in [
        ("SNAP-0123456789abcdef0", "2027-01-01T00:00:00Z"),
        ("vol-0123456789abcdef0", "next tuesday"),
    ] {
        dynamo
            .put_item()
            .table_name(LEDGER_TABLE)
            .item("pk", AttributeValue::S("hold".into()))
            .item("sk", AttributeValue::S(sk.into()))
            .item("until", AttributeValue::S(until.into()))
            .send()
            .await
            .unwrap();
        let err = moto.ledger().holds().await.unwrap_err();
        assert!(err.to_string().contains(sk), "{err}");
        let adapter = Ec2Adapter::new(moto.ec2());
        let notifier = RecordingNotifier::default();
        let run = handle(
            expire_ports(&adapter, &notifier, moto.ledger()),
            &config(POLICIES),
            &json!({"kind": "tick"}),
            tags::parse_time(NOW).unwrap(),
            Deadline::after(Duration::from_secs(600)),
        )
        .await;
        assert!(run.is_err(), "the run stops");
        assert_eq!(remaining(&moto).await, account.all, "nothing deleted");
        dynamo
            .delete_item()
            .table_name(LEDGER_TABLE)
            .key("pk", AttributeValue::S("hold".into()))
            .key("sk", AttributeValue::S(sk.into()))
            .send()
            .await
            .unwrap();
    }
    assert!(moto.ledger().holds().await.unwrap().is_empty());
}

/// A policy renamed in the document: its snapshots are deleted on no
/// guess, and the run says so once (`config-error`, naming the policy and
/// how many snapshots it keeps), not every day.
#[tokio::test]
async fn a_renamed_policy_keeps_its_snapshots_and_is_reported_once() {
    let moto = Moto::start();
    let account = seed(&moto).await;
    let notifier = RecordingNotifier::default();
    let renamed = config(r#"{"slim": {"schedule": "@daily", "keep": {"last": 1}}}"#);
    let adapter = Ec2Adapter::new(moto.ec2());
    let run = || async {
        handle(
            expire_ports(&adapter, &notifier, moto.ledger()),
            &renamed,
            &json!({"kind": "tick"}),
            tags::parse_time(NOW).unwrap(),
            Deadline::after(Duration::from_secs(600)),
        )
        .await
        .unwrap()
    };
    let first = run().await;
    assert_eq!(remaining(&moto).await, account.all, "nothing deleted");
    assert!(first
        .unknown_policies
        .get("lean")
        .is_some_and(|n| *n >= account.may_go.len()));
    let reported = |n: &RecordingNotifier| -> Vec<String> {
        n.sent()
            .into_iter()
            .filter(|n| n.kind == NotificationKind::ConfigError)
            .map(|n| n.summary)
            .collect()
    };
    let sent = reported(&notifier);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains("`lean`"), "{}", sent[0]);

    run().await;
    assert_eq!(reported(&notifier).len(), 1, "once");
}

#[tokio::test]
async fn a_dry_run_plans_the_same_and_deletes_nothing() {
    let moto = Moto::start();
    let account = seed(&moto).await;
    let notifier = RecordingNotifier::default();

    let dry = expire(
        &moto,
        &config_with(POLICIES, &[("DRY_RUN", "true")]),
        &notifier,
    )
    .await;

    assert!(dry.dry_run);
    assert_eq!(remaining(&moto).await, account.all);
    let would: BTreeSet<String> = dry
        .volumes
        .iter()
        .flat_map(|v| &v.deleted)
        .map(|d| d.snapshot_id.clone())
        .collect();
    assert_eq!(would, account.may_go);
}

#[tokio::test]
async fn the_cap_stops_the_run_and_alerts() {
    let moto = Moto::start();
    let account = seed(&moto).await;
    let notifier = RecordingNotifier::default();

    let summary = expire(
        &moto,
        &config_with(POLICIES, &[("MAX_DELETIONS", "2")]),
        &notifier,
    )
    .await;

    assert!(summary.cap_reached);
    assert_eq!(summary.counts.deleted, 2);
    assert_eq!(summary.counts.left_for_later, account.may_go.len() - 2);
    assert_eq!(remaining(&moto).await.len(), account.all.len() - 2);
    let kinds: Vec<NotificationKind> = notifier.sent().iter().map(|n| n.kind).collect();
    assert!(
        kinds.contains(&NotificationKind::DeletionCapReached),
        "{kinds:?}"
    );

    // Zero means: delete nothing at all.
    let none = expire(
        &moto,
        &config_with(POLICIES, &[("MAX_DELETIONS", "0")]),
        &notifier,
    )
    .await;
    assert_eq!(none.counts.deleted, 0);
    assert_eq!(remaining(&moto).await.len(), account.all.len() - 2);
}

#[tokio::test]
async fn through_throttling_errors_resets_and_lost_answers_only_what_may_go_goes() {
    use integration_tests::fault_proxy::{Fault, FaultProxy};
    let moto = Moto::start();
    let account = seed(&moto).await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    // Describes: a reset and a 500, retried. Deletions: a burst of
    // throttling, a 500, a reset before EC2 sees the call, one whose answer
    // is lost after EC2 deleted (the retry then hears NotFound: gone is
    // what was wanted), and an answer slower than the attempt timeout.
    proxy.inject("DescribeSnapshots", 1, Fault::ResetBeforeForward);
    proxy.inject("DescribeImages", 1, Fault::InternalError);
    // Deletions run one after another; a pass between faults moves them to
    // the next deletion (five faults in a row would exhaust one call's five
    // attempts, which the smithy-mocks fault tests cover).
    proxy.inject("DeleteSnapshot", 3, Fault::Throttle);
    proxy.inject("DeleteSnapshot", 1, Fault::Pass);
    proxy.inject("DeleteSnapshot", 1, Fault::InternalError);
    proxy.inject("DeleteSnapshot", 1, Fault::Pass);
    proxy.inject("DeleteSnapshot", 1, Fault::ResetBeforeForward);
    proxy.inject("DeleteSnapshot", 1, Fault::Pass);
    proxy.inject("DeleteSnapshot", 1, Fault::ResetAfterForward);
    proxy.inject("DeleteSnapshot", 1, Fault::Pass);
    proxy.inject(
        "DeleteSnapshot",
        1,
        Fault::Delay(Duration::from_millis(900)),
    );
    let ec2 = aws_sdk_ec2::Client::new(&proxy.sdk_config(Duration::from_millis(400)));
    let notifier = RecordingNotifier::default();

    let started = std::time::Instant::now();
    let summary = expire_on(ec2, &config(POLICIES), &notifier).await;

    assert_eq!(
        proxy.faults_applied().len(),
        9,
        "every planned fault was met: {:?}",
        proxy.faults_applied()
    );
    let expected: BTreeSet<String> = account.all.difference(&account.may_go).cloned().collect();
    assert_eq!(remaining(&moto).await, expected, "exactly what may go went");
    assert_eq!(summary.counts.deleted, account.may_go.len());
    assert_eq!(summary.counts.failed, 0, "every fault was retried through");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "retries stay well inside an invocation: {:?}",
        started.elapsed()
    );
}

/// The deadline comes mid-run: the deletion in flight completes, no new one
/// starts, the rest is reported, and the next run deletes exactly that.
#[tokio::test]
async fn a_deadline_mid_run_leaves_the_rest_for_the_next_run() {
    use integration_tests::fault_proxy::{Fault, FaultProxy};
    let moto = Moto::start();
    let account = seed(&moto).await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    proxy.inject(
        "DeleteSnapshot",
        100,
        Fault::Delay(Duration::from_millis(250)),
    );
    let adapter = Ec2Adapter::new(aws_sdk_ec2::Client::new(
        &proxy.sdk_config(Duration::from_secs(5)),
    ));
    let notifier = RecordingNotifier::default();
    let ports = expire_ports(&adapter, &notifier, moto.ledger());
    let now = tags::parse_time("2026-11-21T04:00:00Z").unwrap();
    let first = handle(
        Ports {
            pacing: Pacing::NONE,
            ..ports
        },
        &config(POLICIES),
        &json!({"kind": "tick"}),
        now,
        Deadline::after(Duration::from_millis(600)).with_margin(Duration::ZERO),
    )
    .await
    .unwrap();

    assert!(first.counts.deleted >= 1, "{:?}", first.counts);
    assert!(first.counts.left_for_later >= 1, "{:?}", first.counts);
    assert_eq!(
        first.counts.deleted + first.counts.left_for_later,
        account.may_go.len()
    );
    assert_eq!(first.counts.failed, 0);
    assert_eq!(
        proxy.requests("DeleteSnapshot"),
        first.counts.deleted,
        "nothing started after the deadline"
    );

    // Where it stopped is in the ledger; the next run starts there and,
    // going all the way round, clears it.
    let stopped_at = first
        .progress
        .stopped_at
        .clone()
        .expect("the run records where it stopped");
    assert_eq!(
        moto.ledger().cursor("expire-snapshots").await.unwrap(),
        Some(stopped_at.clone())
    );
    let adapter = Ec2Adapter::new(moto.ec2());
    let next = handle(
        Ports {
            pacing: Pacing::NONE,
            ..expire_ports(&adapter, &notifier, moto.ledger())
        },
        &config(POLICIES),
        &json!({"kind": "tick"}),
        now,
        Deadline::after(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    assert_eq!(next.progress.resumed_at, Some(stopped_at));
    assert_eq!(next.progress.stopped_at, None);
    assert_eq!(
        moto.ledger().cursor("expire-snapshots").await.unwrap(),
        None
    );
    assert_eq!(next.counts.deleted, first.counts.left_for_later);
    let expected: BTreeSet<String> = account.all.difference(&account.may_go).cloned().collect();
    assert_eq!(remaining(&moto).await, expected);
}

/// Archived snapshots no rule keeps: one being restored (someone means to
/// use it) stays; the other goes, and the days it falls short of the
/// archive tier's 90 are charged in the summary.
#[tokio::test]
async fn an_archived_snapshot_being_restored_stays_and_early_deletion_is_charged() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let volume = create_volume(&ec2, 8, &[("Backup", "lean")]).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(snapshot(&moto, &volume, Some("itest"), &[]).await);
    }
    // `last 1` keeps the newest; the two older are due. Both archived
    // (archivals take hours: moto's clock goes there, and comes back after),
    // one restored for three days.
    for id in &ids[..2] {
        ec2.modify_snapshot_tier()
            .snapshot_id(id)
            .storage_tier(aws_sdk_ec2::types::TargetStorageTier::Archive)
            .send()
            .await
            .unwrap();
    }
    moto.set_clock(Some(chrono::Utc::now() + chrono::Duration::hours(7)));
    assert!(snapshots(&ec2).await.iter().filter(|s| s.archived).count() == 2);
    ec2.restore_snapshot_tier()
        .snapshot_id(&ids[1])
        .temporary_restore_days(3)
        .send()
        .await
        .unwrap();
    moto.set_clock(None);
    let full = snapshots(&ec2)
        .await
        .into_iter()
        .find(|s| s.id == ids[0])
        .and_then(|s| s.full_size_bytes)
        .unwrap();

    let notifier = RecordingNotifier::default();
    let summary = expire(&moto, &config(POLICIES), &notifier).await;
    let v = &summary.volumes[0];
    let deleted: Vec<&str> = v.deleted.iter().map(|d| d.snapshot_id.as_str()).collect();
    assert_eq!(deleted, [ids[0].as_str()]);
    let restoring = v.kept.iter().find(|k| k.snapshot_id == ids[1]).unwrap();
    assert_eq!(restoring.why, "being-restored");
    // Archived hours from now (moto's clock was ahead): all 90 days short,
    // three months of its full size at 0.0125 USD per GB-month.
    let want = full as f64 / (1u64 << 30) as f64 * 0.0125 * 3.0;
    let charged = v.deleted[0].early_deletion_usd.unwrap();
    assert!((charged - want).abs() < 1e-9, "{charged} vs {want}");
    assert!((summary.counts.early_deletion_usd - want).abs() < 1e-9);
    assert!(remaining(&moto).await.contains(&ids[1]));
}

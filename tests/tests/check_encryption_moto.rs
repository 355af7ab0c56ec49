//! check-encryption against moto (with scripts/moto_ebs_fixes.py): one
//! snapshot of each kind, every REMEDIATE mode, the copy-then-supersede flow
//! end to end through complete-snapshots and expire-snapshots, allowed-key
//! lists in every form, the "not checked" path, and that a foreign snapshot
//! is never copied or tagged.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::{OperationType, SnapshotAttributeName};
use serde_json::{json, Value};

use check_encryption::{handle, RunSummary};
use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::aws::kms::KmsAdapter;
use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::ports::ledger::Ledger;
use ebs_lifecycle_core::encryption::{FindingKind, Fix};
use ebs_lifecycle_core::model::Snapshot;
use ebs_lifecycle_core::notify::{NotificationKind, Severity};
use ebs_lifecycle_core::tags;
use integration_tests::*;

const POLICIES: &str = r#"{"default": {"schedule": "@daily", "keep": {"last": 3}}}"#;
const ALLOWED_KEY: &str =
    "arn:aws:kms:us-east-1:123456789012:key/11111111-aaaa-4bbb-8ccc-000000000001";
const OTHER_KEY: &str =
    "arn:aws:kms:us-east-1:123456789012:key/22222222-aaaa-4bbb-8ccc-000000000002";
const ALLOWED_ACCOUNT: &str = "222222222222";
const STRANGER: &str = "111111111111";

/// The seeded account: one snapshot of each kind.
struct Account {
    unencrypted_managed: String,
    unencrypted_foreign: String,
    wrong_key: String,
    good: String,
    public_foreign: String,
    shared_managed: String,
    shared_foreign: String,
    aws_managed_key: String,
    plain_volume: String,
}

async fn encrypted_volume(ec2: &aws_sdk_ec2::Client, key: &str, tags: &[(&str, &str)]) -> String {
    let mut request = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(8)
        .encrypted(true)
        .kms_key_id(key);
    if !tags.is_empty() {
        request =
            request.tag_specifications(tag_spec(aws_sdk_ec2::types::ResourceType::Volume, tags));
    }
    request
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string()
}

async fn share(ec2: &aws_sdk_ec2::Client, snapshot: &str, group_all: bool, accounts: &[&str]) {
    let mut request = ec2
        .modify_snapshot_attribute()
        .snapshot_id(snapshot)
        .attribute(SnapshotAttributeName::CreateVolumePermission)
        .operation_type(OperationType::Add);
    if group_all {
        request = request.group_names("all");
    }
    for a in accounts {
        request = request.user_ids(*a);
    }
    request.send().await.unwrap();
}

async fn seed(moto: &Moto) -> Account {
    let ec2 = &moto.ec2();
    let plain_volume = create_volume(ec2, 8, &[("Backup", "default")]).await;
    let good_volume = encrypted_volume(ec2, ALLOWED_KEY, &[("Backup", "default")]).await;
    let other_volume = encrypted_volume(ec2, OTHER_KEY, &[]).await;
    let unencrypted_managed = managed_snapshot(moto, &plain_volume, "itest", "default", &[]).await;
    let unencrypted_foreign = hand_made_snapshot(ec2, &plain_volume).await;
    let wrong_key = managed_snapshot(moto, &other_volume, "itest", "default", &[]).await;
    let good = managed_snapshot(moto, &good_volume, "itest", "default", &[]).await;
    let public_foreign = hand_made_snapshot(ec2, &good_volume).await;
    share(ec2, &public_foreign, true, &[]).await;
    let shared_managed = managed_snapshot(moto, &good_volume, "itest", "default", &[]).await;
    share(ec2, &shared_managed, false, &[STRANGER, ALLOWED_ACCOUNT]).await;
    let shared_foreign = hand_made_snapshot(ec2, &good_volume).await;
    share(ec2, &shared_foreign, false, &[STRANGER]).await;
    // Encrypted with the region's default key, the AWS managed alias/aws/ebs.
    let default_volume = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(8)
        .encrypted(true)
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string();
    let aws_managed_key = managed_snapshot(moto, &default_volume, "itest", "default", &[]).await;
    Account {
        aws_managed_key,
        unencrypted_managed,
        unencrypted_foreign,
        wrong_key,
        good,
        public_foreign,
        shared_managed,
        shared_foreign,
        plain_volume,
    }
}

fn config_for(remediate: &str) -> Config {
    config_with(
        POLICIES,
        &[
            ("REMEDIATE", remediate),
            (
                "ALLOWED_KMS_KEY_IDS",
                "11111111-aaaa-4bbb-8ccc-000000000001",
            ),
            ("ALLOWED_SHARE_ACCOUNTS", ALLOWED_ACCOUNT),
            ("ENCRYPTION_KMS_KEY_ID", ALLOWED_KEY),
        ],
    )
}

async fn run(
    moto: &Moto,
    config: &Config,
    event: &Value,
    notifier: &RecordingNotifier,
) -> RunSummary {
    run_on(moto.ec2(), moto, config, event, notifier).await
}

/// [`run`] with the EC2 client given (a counted one, say).
async fn run_on(
    ec2: aws_sdk_ec2::Client,
    moto: &Moto,
    config: &Config,
    event: &Value,
    notifier: &RecordingNotifier,
) -> RunSummary {
    let adapter = Ec2Adapter::new(ec2);
    let kms = KmsAdapter::new(aws_sdk_kms::Client::new(&moto.sdk_config()));
    let ports = check_ports(&adapter, &kms, notifier, moto.ledger());
    handle(
        ports,
        config,
        event,
        chrono::Utc::now(),
        Deadline::after(Duration::from_secs(600)),
    )
    .await
    .unwrap()
}

fn daily() -> Value {
    json!({"kind": "tick"})
}

/// (kind, snapshot or volume) of every finding, sorted.
fn kinds(summary: &RunSummary) -> Vec<(FindingKind, String)> {
    let mut out: Vec<(FindingKind, String)> = summary
        .findings
        .iter()
        .map(|f| {
            (
                f.kind,
                f.snapshot_id
                    .clone()
                    .or_else(|| f.volume_id.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn permissions(ec2: &aws_sdk_ec2::Client, snapshot: &str) -> (bool, Vec<String>) {
    let out = ec2
        .describe_snapshot_attribute()
        .snapshot_id(snapshot)
        .attribute(SnapshotAttributeName::CreateVolumePermission)
        .send()
        .await
        .unwrap();
    let public = out
        .create_volume_permissions()
        .iter()
        .any(|p| p.group().map(|g| g.as_str()) == Some("all"));
    let mut accounts: Vec<String> = out
        .create_volume_permissions()
        .iter()
        .filter_map(|p| p.user_id().map(String::from))
        .collect();
    accounts.sort();
    (public, accounts)
}

fn by_id(snapshots: Vec<Snapshot>) -> BTreeMap<String, Snapshot> {
    snapshots.into_iter().map(|s| (s.id.clone(), s)).collect()
}

#[tokio::test]
async fn every_kind_of_finding_in_one_notification_and_off_changes_nothing() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let account = seed(&moto).await;
    let before = by_id(snapshots(&ec2).await);
    let notifier = RecordingNotifier::default();

    let summary = run(&moto, &config_for("off"), &daily(), &notifier).await;

    let mut expected = vec![
        (
            FindingKind::UnencryptedSnapshot,
            account.unencrypted_managed.clone(),
        ),
        (
            FindingKind::UnencryptedSnapshot,
            account.unencrypted_foreign.clone(),
        ),
        (FindingKind::DisallowedKey, account.wrong_key.clone()),
        (FindingKind::DisallowedKey, account.aws_managed_key.clone()),
        (FindingKind::PublicSnapshot, account.public_foreign.clone()),
        (FindingKind::DisallowedShare, account.shared_managed.clone()),
        (FindingKind::DisallowedShare, account.shared_foreign.clone()),
        (FindingKind::UnencryptedVolume, account.plain_volume.clone()),
        (FindingKind::EncryptionByDefaultOff, String::new()),
        // moto (with scripts/moto_ebs_fixes.py) answers EC2's default.
        (FindingKind::BlockPublicAccessOff, String::new()),
    ];
    expected.sort();
    assert_eq!(kinds(&summary), expected);
    assert!(!kinds(&summary).iter().any(|(_, id)| id == &account.good));
    assert!(summary
        .findings
        .iter()
        .all(|f| matches!(f.fix, Fix::Advised(_))));

    let sent = notifier.sent();
    assert_eq!(sent.len(), 1, "one notification per run");
    assert_eq!(sent[0].kind, NotificationKind::EncryptionFindings);
    assert_eq!(
        sent[0].severity,
        Severity::Critical,
        "a public snapshot is the worst finding"
    );
    assert_eq!(
        sent[0].details["findings"].as_array().unwrap().len(),
        expected.len()
    );

    // Nothing changed: same snapshots, same tags, same permissions.
    assert_eq!(by_id(snapshots(&ec2).await), before);
    assert!(permissions(&ec2, &account.public_foreign).await.0);
    assert_eq!(
        permissions(&ec2, &account.shared_managed).await.1,
        [STRANGER.to_string(), ALLOWED_ACCOUNT.to_string()]
    );
    // Only snapshots that can be shared had their permissions read: not the
    // one under the AWS managed key, which EC2 refuses to share.
    assert_eq!(summary.permissions_read, summary.snapshots_checked - 1);
}

#[tokio::test]
async fn public_removes_public_access_everywhere_and_bad_shares_only_on_managed() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let account = seed(&moto).await;
    let notifier = RecordingNotifier::default();

    let summary = run(&moto, &config_for("public"), &daily(), &notifier).await;

    assert_eq!(
        permissions(&ec2, &account.public_foreign).await,
        (false, vec![])
    );
    assert_eq!(
        permissions(&ec2, &account.shared_managed).await,
        (false, vec![ALLOWED_ACCOUNT.to_string()])
    );
    assert_eq!(
        permissions(&ec2, &account.shared_foreign).await,
        (false, vec![STRANGER.to_string()]),
        "a foreign snapshot's shares are advised, not changed"
    );
    let fix_of = |kind, id: &str| {
        summary
            .findings
            .iter()
            .find(|f| f.kind == kind && f.snapshot_id.as_deref() == Some(id))
            .unwrap()
            .fix
            .clone()
    };
    assert!(matches!(
        fix_of(FindingKind::PublicSnapshot, &account.public_foreign),
        Fix::Applied(_)
    ));
    assert!(matches!(
        fix_of(FindingKind::DisallowedShare, &account.shared_managed),
        Fix::Applied(_)
    ));
    assert!(matches!(
        fix_of(FindingKind::DisallowedShare, &account.shared_foreign),
        Fix::Advised(_)
    ));
    assert!(summary.copies_started.is_empty(), "public does not copy");
}

#[tokio::test]
async fn all_copies_unencrypted_managed_snapshots_which_supersede_them_once_completed() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let account = seed(&moto).await;
    let notifier = RecordingNotifier::default();
    let foreign_before = by_id(snapshots(&ec2).await)[&account.unencrypted_foreign].clone();

    let first = run(&moto, &config_for("all"), &daily(), &notifier).await;
    assert_eq!(first.copies_started.len(), 1);
    let copy_id = first.copies_started[0].clone();
    let all = by_id(snapshots(&ec2).await);
    let copy = &all[&copy_id];
    let original = &all[&account.unencrypted_managed];
    assert!(copy.encrypted);
    assert_eq!(copy.kms_key_id.as_deref(), Some(ALLOWED_KEY));
    assert_eq!(
        copy.tags[tags::ENCRYPTED_COPY_OF],
        account.unencrypted_managed
    );
    assert_eq!(copy.tags[tags::STATE], "pending");
    for key in [
        tags::MANAGED_BY,
        tags::POLICY,
        tags::SLOT,
        tags::VOLUME_ID,
        tags::CREATED_AT,
    ] {
        assert_eq!(copy.tags[key], original.tags[key], "{key}");
    }
    assert!(
        !original.tags.contains_key(tags::SUPERSEDED_BY),
        "not before the copy completes"
    );
    assert_eq!(
        all[&account.unencrypted_foreign], foreign_before,
        "a foreign snapshot is never copied or tagged"
    );
    assert_eq!(
        all.values()
            .filter(|s| s.encrypted_copy_of().is_some())
            .count(),
        1,
        "only the managed snapshot is copied"
    );
    for id in [&account.public_foreign, &account.shared_managed] {
        assert!(!permissions(&ec2, id).await.0, "no public snapshot is left");
    }
    assert_eq!(notifier.sent().len(), 1);

    // A second run does not copy again.
    let second = run(&moto, &config_for("all"), &daily(), &notifier).await;
    assert!(second.copies_started.is_empty());

    // Before the copy completes, expiry keeps the original (it is the volume's newest).
    let expire_plan = expire_dry_run(&moto).await;
    assert!(!expire_plan.contains(&account.unencrypted_managed));

    // EC2 reports the copy complete: complete-snapshots marks it and supersedes the original.
    let event = copy_event(&copy_id, &account.unencrypted_managed);
    let adapter = Ec2Adapter::new(moto.ec2());
    let completed = complete_snapshots::handle(
        complete_ports(&adapter, &notifier, moto.ledger()),
        &config_for("all"),
        &event,
        chrono::Utc::now(),
        Deadline::after(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    assert_eq!(completed.superseded.len(), 1);
    let all = by_id(snapshots(&ec2).await);
    assert_eq!(all[&copy_id].tags[tags::STATE], "completed");
    assert_eq!(
        all[&account.unencrypted_managed].tags[tags::SUPERSEDED_BY],
        copy_id
    );

    // Now expiry may delete the original, and keeps the copy.
    let expire_plan = expire_dry_run(&moto).await;
    assert!(expire_plan.contains(&account.unencrypted_managed));
    assert!(!expire_plan.contains(&copy_id));

    // The daily check reports the original as replaced, not as a new problem to fix.
    let third = run(&moto, &config_for("all"), &daily(), &notifier).await;
    assert!(third.copies_started.is_empty());
    let original_finding = third
        .findings
        .iter()
        .find(|f| f.snapshot_id.as_deref() == Some(account.unencrypted_managed.as_str()))
        .unwrap();
    assert!(matches!(original_finding.fix, Fix::Applied(_)));
}

/// The snapshot ids a dry expire run would delete.
async fn expire_dry_run(moto: &Moto) -> Vec<String> {
    let adapter = Ec2Adapter::new(moto.ec2());
    let notifier = RecordingNotifier::default();
    let summary = expire_snapshots::handle(
        expire_ports(&adapter, &notifier, moto.ledger()),
        &config_with(POLICIES, &[("DRY_RUN", "true")]),
        &daily(),
        chrono::Utc::now(),
        Deadline::after(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    let value = serde_json::to_value(&summary).unwrap();
    value["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v["deleted"].as_array().unwrap().iter())
        .map(|d| d["snapshot_id"].as_str().unwrap().to_string())
        .collect()
}

/// A copySnapshot completion, in the documented EBS Snapshot Notification shape.
/// The sample createSnapshot-succeeded event, naming snapshot `id`.
fn completion_event(id: &str) -> Value {
    let text = std::fs::read_to_string(
        workspace_root().join("tests/fixtures/events/create-snapshot-succeeded.json"),
    )
    .unwrap();
    serde_json::from_str::<Value>(&text.replace("snap-01234567", id)).unwrap()
}

fn copy_event(copy: &str, source: &str) -> Value {
    let text = std::fs::read_to_string(
        workspace_root().join("tests/fixtures/events/create-snapshot-succeeded.json"),
    )
    .unwrap();
    let mut event: Value = serde_json::from_str(&text.replace("snap-01234567", copy)).unwrap();
    event["detail"]["event"] = json!("copySnapshot");
    event["detail"]["source"] = json!(format!("arn:aws:ec2::us-east-1:snapshot/{source}"));
    event
}

#[tokio::test]
async fn a_completion_event_checks_only_that_snapshot_and_alerts_only_on_findings() {
    let moto = Moto::start();
    let account = seed(&moto).await;

    let notifier = RecordingNotifier::default();
    let (counted, counter) = moto.counted_ec2();
    let clean = run_on(
        counted,
        &moto,
        &config_for("off"),
        &completion_event(&account.good),
        &notifier,
    )
    .await;
    assert_eq!(clean.snapshots_checked, 1);
    assert_eq!(
        counter.count("DescribeSnapshots"),
        1,
        "an encrypted snapshot has no copy to look for"
    );
    assert!(clean.findings.is_empty());
    assert!(
        notifier.sent().is_empty(),
        "nothing to say about a good snapshot"
    );

    let bad = run(
        &moto,
        &config_for("all"),
        &completion_event(&account.unencrypted_managed),
        &notifier,
    )
    .await;
    assert_eq!(
        kinds(&bad),
        [(
            FindingKind::UnencryptedSnapshot,
            account.unencrypted_managed.clone()
        )]
    );
    assert_eq!(
        bad.copies_started.len(),
        1,
        "remediation applies on the event path too"
    );
    assert_eq!(notifier.sent().len(), 1);
    assert_eq!(notifier.sent()[0].severity, Severity::Warning);
}

#[tokio::test]
async fn allowed_keys_may_be_given_as_ids_arns_or_aliases() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let kms = aws_sdk_kms::Client::new(&moto.sdk_config());
    let key = kms.create_key().send().await.unwrap();
    let key_arn = key.key_metadata().unwrap().arn().unwrap().to_string();
    let key_id = key.key_metadata().unwrap().key_id().to_string();
    kms.create_alias()
        .alias_name("alias/backups")
        .target_key_id(&key_id)
        .send()
        .await
        .unwrap();
    let volume = encrypted_volume(&ec2, &key_arn, &[]).await;
    let snapshot = managed_snapshot(&moto, &volume, "itest", "default", &[]).await;

    for allowed in [
        key_id.as_str(),
        key_arn.as_str(),
        "alias/backups",
        "alias/nope",
    ] {
        let config = config_with(POLICIES, &[("ALLOWED_KMS_KEY_IDS", allowed)]);
        let notifier = RecordingNotifier::default();
        let summary = run(&moto, &config, &daily(), &notifier).await;
        let flagged = summary.findings.iter().any(|f| {
            f.kind == FindingKind::DisallowedKey
                && f.snapshot_id.as_deref() == Some(snapshot.as_str())
        });
        assert_eq!(flagged, allowed == "alias/nope", "{allowed}");
        if allowed == "alias/nope" {
            assert!(summary
                .findings
                .iter()
                .any(|f| f.kind == FindingKind::NotChecked && f.detail.contains("alias/nope")));
        }
    }
}

#[tokio::test]
async fn the_copy_key_is_allowed_even_when_the_list_omits_it() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let volume = create_volume(&ec2, 8, &[]).await;
    managed_snapshot(&moto, &volume, "itest", "default", &[]).await;
    let config = config_with(
        POLICIES,
        &[
            ("REMEDIATE", "all"),
            ("ALLOWED_KMS_KEY_IDS", OTHER_KEY),
            ("ENCRYPTION_KMS_KEY_ID", ALLOWED_KEY),
        ],
    );
    let notifier = RecordingNotifier::default();
    let first = run(&moto, &config, &daily(), &notifier).await;
    assert_eq!(first.copies_started.len(), 1);
    let copy = first.copies_started[0].clone();
    let text = std::fs::read_to_string(
        workspace_root().join("tests/fixtures/events/create-snapshot-succeeded.json"),
    )
    .unwrap();
    let event: Value = serde_json::from_str(&text.replace("snap-01234567", &copy)).unwrap();
    let checked = run(&moto, &config, &event, &notifier).await;
    assert!(checked.findings.is_empty(), "{:?}", checked.findings);
}

/// At-least-once delivery: the same event twice fixes once, copies once and
/// alerts once; the second delivery finds nothing left to say.
#[tokio::test]
async fn an_event_delivered_twice_fixes_copies_and_alerts_once() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let account = seed(&moto).await;
    let notifier = RecordingNotifier::default();

    for event in [
        completion_event(&account.public_foreign),
        completion_event(&account.unencrypted_managed),
    ] {
        let first = run(&moto, &config_for("all"), &event, &notifier).await;
        assert_eq!(first.findings.len(), 1, "{:?}", first.findings);
        let again = run(&moto, &config_for("all"), &event, &notifier).await;
        assert!(
            again.copies_started.is_empty(),
            "no second copy of a snapshot whose copy is under way"
        );
        assert!(again
            .findings
            .iter()
            .all(|f| !matches!(f.fix, Fix::Applied(_))));
    }
    assert!(
        !permissions(&ec2, &account.public_foreign).await.0,
        "made private"
    );
    let copies = snapshots(&ec2)
        .await
        .into_iter()
        .filter(|s| s.encrypted_copy_of() == Some(account.unencrypted_managed.as_str()))
        .count();
    assert_eq!(copies, 1);
    assert_eq!(
        notifier.sent().len(),
        2,
        "the public fix and the copy each alert once: {:?}",
        notifier
            .sent()
            .iter()
            .map(|n| &n.summary)
            .collect::<Vec<_>>()
    );
}

/// The deadline comes while permission reads are in flight: they finish,
/// no new read starts, the unread snapshots are counted as left, and the
/// next daily run reads every one.
#[tokio::test]
async fn a_deadline_mid_check_counts_what_was_not_read() {
    use integration_tests::fault_proxy::{Fault, FaultProxy};
    let moto = Moto::start();
    let ec2 = moto.ec2();
    seed(&moto).await;
    let volume = create_volume(&ec2, 8, &[]).await;
    for _ in 0..10 {
        hand_made_snapshot(&ec2, &volume).await;
    }
    let proxy = FaultProxy::start(&moto.endpoint).await;
    proxy.inject(
        "DescribeSnapshotAttribute",
        check_encryption::PERMISSION_READS,
        Fault::Delay(Duration::from_millis(800)),
    );
    let adapter = Ec2Adapter::new(aws_sdk_ec2::Client::new(
        &proxy.sdk_config(Duration::from_secs(5)),
    ));
    let kms = KmsAdapter::new(aws_sdk_kms::Client::new(&moto.sdk_config()));
    let notifier = RecordingNotifier::default();
    let first = handle(
        check_ports(&adapter, &kms, &notifier, moto.ledger()),
        &config_for("off"),
        &daily(),
        chrono::Utc::now(),
        Deadline::after(Duration::from_millis(400)).with_margin(Duration::ZERO),
    )
    .await
    .unwrap();

    assert_eq!(
        proxy.requests("DescribeSnapshotAttribute"),
        check_encryption::PERMISSION_READS,
        "only the first wave started"
    );
    assert!(first.left_for_later >= 1, "{}", first.left_for_later);
    // Where it stopped is in the stack's ledger: the last of the first wave
    // in snapshot-id order.
    let all: Vec<String> = snapshots(&ec2).await.into_iter().map(|s| s.id).collect();
    let stopped_at = moto
        .ledger()
        .cursor(check_encryption::FUNCTION)
        .await
        .unwrap();
    let stopped_at = stopped_at.expect("the cut run left a cursor");
    assert!(all.contains(&stopped_at));

    let (counted, counter) = moto.counted_ec2();
    let next = run_on(counted, &moto, &config_for("off"), &daily(), &notifier).await;
    assert_eq!(next.left_for_later, 0);
    assert_eq!(
        moto.ledger()
            .cursor(check_encryption::FUNCTION)
            .await
            .unwrap(),
        None,
        "a run that read everything starts the next from the beginning"
    );
    assert_eq!(
        counter.count("DescribeSnapshotAttribute"),
        check_encryption::PERMISSION_READS + first.left_for_later,
        "what was read plus what was left is every shareable snapshot"
    );
}

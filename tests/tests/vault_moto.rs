//! A vault account end to end on one moto: the source stack (default
//! account) shares what its account target selects; the vault stack (a
//! second account, acting with a role of it) copies what it accepts,
//! locks and keeps the copies by its own rules. moto lets shares through
//! and locks snapshots as EC2 does by scripts/moto_ebs_fixes.py.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::aws::kms::KmsAdapter;
use ebs_lifecycle::aws::ledger::DynamoLedger;
use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle_core::model::SnapshotState;
use ebs_lifecycle_core::notify::NotificationKind;
use ebs_lifecycle_core::tags;
use integration_tests::*;

const VAULT: &str = "210987654321";
const STRANGER: &str = "333333333333";

fn t(s: &str) -> DateTime<Utc> {
    tags::parse_time(s).unwrap()
}

struct Source {
    ec2: Ec2Adapter,
    keys: KmsAdapter,
    config: Config,
    notifier: RecordingNotifier,
}

struct Vault {
    ec2: Ec2Adapter,
    client: aws_sdk_ec2::Client,
    ledger: &'static DynamoLedger,
    config: Config,
    notifier: RecordingNotifier,
    counter: RequestCounter,
}

async fn share_run(moto: &Moto, source: &Source, now: DateTime<Utc>) -> copy_snapshots::RunSummary {
    moto.set_clock(Some(now));
    let destinations = std::collections::BTreeMap::new();
    let ports = copy_snapshots::Ports {
        catalog: &source.ec2,
        sharing: &source.ec2,
        keys: &source.keys,
        destinations: &destinations,
        notifier: &source.notifier,
        ledger: moto.ledger(),
        copy_pacing: copy_snapshots::COPY_PACING,
        delete_pacing: copy_snapshots::DELETE_PACING,
    };
    let summary = copy_snapshots::handle(
        ports,
        &source.config,
        &json!({"kind": "tick"}),
        now,
        Deadline::after(std::time::Duration::from_secs(600)),
    )
    .await
    .unwrap();
    moto.set_clock(None);
    summary
}

/// The vault account's credentials, its ledger (table made) and a
/// customer managed key (ARN) for its copies.
async fn vault_account(moto: &Moto) -> (aws_config::SdkConfig, String, &'static DynamoLedger) {
    let sdk = moto.sdk_config_as(VAULT).await;
    create_ledger_table(&sdk);
    let key = create_kms_key(&sdk).await;
    let ledger = Box::leak(Box::new(DynamoLedger::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        LEDGER_TABLE,
    )));
    (sdk, key, ledger)
}

async fn vault_run(
    moto: &Moto,
    vault: &Vault,
    now: DateTime<Utc>,
) -> vault_snapshots::VaultSummary {
    vault_run_until(
        moto,
        vault,
        now,
        Deadline::after(std::time::Duration::from_secs(600)),
    )
    .await
}

async fn vault_run_until(
    moto: &Moto,
    vault: &Vault,
    now: DateTime<Utc>,
    deadline: Deadline,
) -> vault_snapshots::VaultSummary {
    moto.set_clock(Some(now));
    let ports = vault_snapshots::Ports {
        catalog: &vault.ec2,
        protections: &vault.ec2,
        copier: &vault.ec2,
        deleter: &vault.ec2,
        tagger: &vault.ec2,
        locker: &vault.ec2,
        notifier: &vault.notifier,
        ledger: vault.ledger,
        copy_pacing: vault_snapshots::COPY_PACING,
        delete_pacing: vault_snapshots::DELETE_PACING,
    };
    let summary = vault_snapshots::handle(
        ports,
        &vault.config,
        &json!({"kind": "tick"}),
        now,
        deadline,
    )
    .await
    .unwrap();
    moto.set_clock(None);
    summary
}

#[tokio::test]
async fn ten_days_of_life_the_vault_keeps_what_its_rules_keep_and_nothing_in_the_source_can_touch_it(
) {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let kms = aws_sdk_kms::Client::new(&moto.sdk_config());
    // The source's volumes are under a customer managed key; its policy
    // does not name the vault yet.
    let key = create_kms_key(&moto.sdk_config()).await;
    let volume = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(8)
        .encrypted(true)
        .kms_key_id(&key)
        .tag_specifications(tag_spec(
            aws_sdk_ec2::types::ResourceType::Volume,
            &[("Backup", "gold")],
        ))
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string();
    let policies = json!({"gold": {
        "schedule": "@daily", "keep": {"last": 30},
        "copies": [{"account": VAULT, "region": REGION, "kms_key": key, "keep": {"daily": 7}}]
    }})
    .to_string();
    let (source_client, source_counter) = moto.counted_ec2();
    let source = Source {
        ec2: Ec2Adapter::new(source_client),
        keys: KmsAdapter::new(kms.clone()),
        config: config(&policies),
        notifier: RecordingNotifier::default(),
    };

    let (vault_sdk, vault_key, vault_ledger) = vault_account(&moto).await;
    let (counted, counter) = {
        let (client, counter) = moto.counted_ec2();
        // The counted client, acting as the vault.
        let client = aws_sdk_ec2::Client::from_conf(
            client
                .config()
                .to_builder()
                .credentials_provider(vault_sdk.credentials_provider().unwrap())
                .build(),
        );
        (client, counter)
    };
    let vault = Vault {
        ec2: Ec2Adapter::new(counted),
        client: aws_sdk_ec2::Client::new(&vault_sdk),
        ledger: vault_ledger,
        config: config_with(
            "{\"gold\": {\"schedule\": \"@daily\", \"keep\": {\"last\": 1}}}",
            &[
                ("DEPLOYMENT_NAME", "vault"),
                ("ACCOUNT_ID", VAULT),
                ("VAULT_FOR_ACCOUNTS", ACCOUNT),
                ("VAULT_POLICIES", r#"{"gold": {"daily": 3}}"#),
                ("VAULT_KMS_KEY_ID", &vault_key),
                ("VAULT_LOCK_DAYS", "2"),
            ],
        ),
        notifier: RecordingNotifier::default(),
        counter,
    };

    // Day 0: the key's policy does not let the vault in: nothing shared,
    // one config-error.
    let first = managed_snapshot(&moto, &volume, "itest", "gold", &[]).await;
    let day0 = t("2026-03-01T00:00:00Z");
    let run = share_run(&moto, &source, day0 + Duration::hours(1)).await;
    assert!(run.vaults[0].error.is_some(), "{run:?}");
    assert!(run.vaults[0].shared.is_empty());
    let config_errors = |n: &RecordingNotifier| {
        n.sent()
            .iter()
            .filter(|n| n.kind == NotificationKind::ConfigError)
            .count()
    };
    assert_eq!(config_errors(&source.notifier), 1);
    share_run(&moto, &source, day0 + Duration::hours(2)).await;
    assert_eq!(config_errors(&source.notifier), 1, "once a day");
    // Someone fixes the key policy.
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{VAULT}:root")},
         "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:CreateGrant", "kms:ReEncrypt*"], "Resource": "*"}
    ]});
    kms.put_key_policy()
        .key_id(key.rsplit('/').next().unwrap())
        .policy_name("default")
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();

    // A stranger shares a snapshot with the vault; the source shares a
    // hand-made one (not a deployment's) by hand.
    let stranger_sdk = moto.sdk_config_as(STRANGER).await;
    let stranger = aws_sdk_ec2::Client::new(&stranger_sdk);
    let theirs = create_volume(&stranger, 8, &[]).await;
    let theirs = hand_made_snapshot(&stranger, &theirs).await;
    share(&stranger, &theirs, VAULT).await;
    let forged = hand_made_snapshot(&ec2, &volume).await;
    share(&ec2, &forged, VAULT).await;

    // Ten days: a snapshot a day, the source shares an hour later, the
    // vault runs two hours later.
    let mut sources = vec![first];
    for day in 0..10 {
        let at = day0 + Duration::days(day);
        if day > 0 {
            sources.push(managed_snapshot(&moto, &volume, "itest", "gold", &[]).await);
        }
        let run = share_run(&moto, &source, at + Duration::hours(1)).await;
        assert_eq!(run.vaults[0].error, None, "{run:?}");
        assert_eq!(
            run.vaults[0].shared,
            [sources.last().unwrap().clone()],
            "day {day}: {run:?}"
        );
        vault_run(&moto, &vault, at + Duration::hours(2)).await;
    }
    let last = vault_run(&moto, &vault, day0 + Duration::days(10)).await;
    assert_eq!(last.late, Vec::<String>::new(), "{last:?}");

    // The vault holds exactly what its rules keep: the last three days.
    let copies = snapshots(&vault.client).await;
    let copied: BTreeSet<String> = copies
        .iter()
        .map(|c| c.tags[tags::COPY_OF].clone())
        .collect();
    assert_eq!(
        copied,
        sources[7..].iter().cloned().collect::<BTreeSet<_>>(),
        "{last:?}"
    );
    for c in &copies {
        assert_eq!(c.state, SnapshotState::Completed);
        assert_eq!(c.owner_id.as_deref(), Some(VAULT));
        assert_eq!(c.kms_key_id.as_deref(), Some(vault_key.as_str()));
        assert_eq!(c.tags[tags::SOURCE_ACCOUNT], ACCOUNT);
        assert_eq!(c.tags[tags::VOLUME_ID], volume);
        assert_eq!(c.tags[tags::RETAINED_BY], "daily");
    }
    // The stranger's share was never looked at; the hand-made one was
    // refused and reported once.
    assert!(!copied.contains(&theirs));
    let refused: Vec<_> = last.refused.iter().map(|r| r.snapshot_id.clone()).collect();
    assert_eq!(refused, std::slice::from_ref(&forged));
    let reported = vault
        .notifier
        .sent()
        .iter()
        .filter(|n| n.kind == NotificationKind::TamperingSuspected)
        .count();
    assert_eq!(reported, 1);

    // A locked copy survives a delete attempt by the vault's own role.
    let newest = copies
        .iter()
        .find(|c| c.tags[tags::COPY_OF] == sources[9])
        .unwrap();
    moto.set_clock(Some(day0 + Duration::days(10) + Duration::hours(1)));
    let refused = vault
        .client
        .delete_snapshot()
        .snapshot_id(&newest.id)
        .send()
        .await;
    assert!(refused.is_err(), "a locked copy was deleted");
    // Nor can it be unlocked (compliance mode, no cooling-off).
    let unlock = vault
        .client
        .unlock_snapshot()
        .snapshot_id(&newest.id)
        .send()
        .await;
    assert!(unlock.is_err(), "a compliance lock was lifted");
    moto.set_clock(None);

    // The source deletes every snapshot it has: the vault is untouched.
    for s in snapshots(&ec2).await {
        ec2.delete_snapshot()
            .snapshot_id(&s.id)
            .send()
            .await
            .unwrap();
    }
    let after = vault_run(&moto, &vault, day0 + Duration::days(11)).await;
    assert_eq!(after.shares, 0);
    assert_eq!(snapshots(&vault.client).await.len(), 3, "{after:?}");

    eprintln!(
        "source requests over {} shares: {:?}",
        sources.len(),
        source_counter.all()
    );
    eprintln!(
        "vault requests over {} copies: {:?}",
        sources.len(),
        vault.counter.all()
    );
}

async fn share(ec2: &aws_sdk_ec2::Client, snapshot: &str, account: &str) {
    ec2.modify_snapshot_attribute()
        .snapshot_id(snapshot)
        .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
        .operation_type(aws_sdk_ec2::types::OperationType::Add)
        .user_ids(account)
        .send()
        .await
        .unwrap();
}

/// More source volumes than a batch: the vault works through them 200 at
/// a time, and its 20 copies in flight go to the oldest shares of the
/// whole vault (here the last volume's, in the second batch), not to the
/// first batch's.
#[tokio::test]
async fn the_copies_in_flight_go_to_the_oldest_shares_across_batches() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let mut volumes = Vec::new();
    for _ in 0..vault_snapshots::VOLUMES_PER_BATCH + 5 {
        volumes.push(create_volume(&ec2, 8, &[("Backup", "gold")]).await);
    }
    volumes.sort();
    let day0 = t("2026-03-01T00:00:00Z");
    let oldest_volume = volumes.last().unwrap().clone();
    // Every share of the same slot but the last volume's, a day older.
    for volume in &volumes {
        let slot = if *volume == oldest_volume {
            day0 - Duration::days(1)
        } else {
            day0
        };
        let labels = labels_for(volume, "itest", "gold", slot);
        let id = snapshot_as_created(&moto, volume, &labels, &[]).await;
        share(&ec2, &id, VAULT).await;
    }

    let (vault, _) = gold_vault(&moto, &[]).await;

    // A run whose deadline leaves no time for a batch reaches no volume,
    // starts nothing and records where the next run starts.
    let cut = vault_run_until(
        &moto,
        &vault,
        day0 + Duration::hours(1),
        Deadline::after(vault_snapshots::START_RESERVE),
    )
    .await;
    assert_eq!(cut.volumes_not_reached, volumes.len(), "{cut:?}");
    assert_eq!(
        cut.progress.stopped_at.as_deref(),
        Some(volumes[0].as_str())
    );
    assert!(cut.started.is_empty());

    let first = vault_run(&moto, &vault, day0 + Duration::hours(2)).await;
    assert_eq!(
        first.progress.resumed_at.as_deref(),
        Some(volumes[0].as_str())
    );
    assert_eq!(first.progress.stopped_at, None);
    assert_eq!(first.volumes_not_reached, 0);
    assert_eq!(first.shares, volumes.len());
    assert_eq!(first.started.len(), 20, "{first:?}");
    assert_eq!(first.waiting, volumes.len() - 20);
    let copied_volumes: BTreeSet<String> = snapshots(&vault.client)
        .await
        .into_iter()
        .filter_map(|s| s.tags.get(tags::VOLUME_ID).cloned())
        .collect();
    assert_eq!(copied_volumes.len(), 20);
    assert!(
        copied_volumes.contains(&oldest_volume),
        "the oldest share, in the second batch, is among the first copied"
    );

    // The next run proves and counts the copies of both batches, and
    // copies 20 more (moto completes copies at once).
    let second = vault_run(&moto, &vault, day0 + Duration::hours(3)).await;
    assert_eq!(second.copies, 20, "{second:?}");
    assert_eq!(second.started.len(), 20);
    assert_eq!(snapshots(&vault.client).await.len(), 40);
}

/// Any account can share with the vault: a share event from one the vault
/// does not accept starts no run; one from an accepted account does (AWS
/// writes `detail.source` as a number).
#[tokio::test]
async fn a_share_event_from_an_account_the_vault_does_not_accept_starts_no_run() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let volume = create_volume(&ec2, 8, &[("Backup", "gold")]).await;
    let day0 = t("2026-03-01T00:00:00Z");
    let id = snapshot_as_created(
        &moto,
        &volume,
        &labels_for(&volume, "itest", "gold", day0),
        &[],
    )
    .await;
    share(&ec2, &id, VAULT).await;
    let (vault_sdk, vault_key, vault_ledger) = vault_account(&moto).await;
    let (counted, counter) = {
        let counter = RequestCounter::default();
        let counted = aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::config::Builder::from(&vault_sdk)
                .interceptor(counter.clone())
                .build(),
        );
        (counted, counter)
    };
    let config = gold_vault_config(&vault_key);
    let adapter = Ec2Adapter::new(counted);
    let notifier = RecordingNotifier::default();
    let deliver = |source: Value| {
        let (adapter, notifier, config) = (&adapter, &notifier, &config);
        let mut event: Value = serde_json::from_str(
            &std::fs::read_to_string(
                workspace_root().join("tests/fixtures/events/aws-docs/share-snapshot.json"),
            )
            .unwrap(),
        )
        .unwrap();
        event["detail"]["source"] = source;
        async move {
            vault_snapshots::handle(
                vault_snapshots::Ports {
                    catalog: adapter,
                    protections: adapter,
                    copier: adapter,
                    deleter: adapter,
                    tagger: adapter,
                    locker: adapter,
                    notifier,
                    ledger: vault_ledger,
                    copy_pacing: vault_snapshots::COPY_PACING,
                    delete_pacing: vault_snapshots::DELETE_PACING,
                },
                config,
                &event,
                day0 + Duration::hours(1),
                Deadline::after(std::time::Duration::from_secs(600)),
            )
            .await
            .unwrap()
        }
    };

    let refused = deliver(json!(999_999_999_999u64)).await;
    assert!(!refused.vault && refused.started.is_empty(), "{refused:?}");
    assert_eq!(counter.all().values().sum::<usize>(), 0, "no EC2 call");

    let accepted = deliver(json!(ACCOUNT.parse::<u64>().unwrap())).await;
    assert!(accepted.vault, "{accepted:?}");
    assert_eq!(accepted.started.len(), 1, "{accepted:?}");
}

/// The vault account with [`gold_vault_config_with`]`(more)`, acting
/// through its own EC2 client; and its SDK configuration.
async fn gold_vault(moto: &Moto, more: &[(&str, &str)]) -> (Vault, aws_config::SdkConfig) {
    let (vault_sdk, vault_key, vault_ledger) = vault_account(moto).await;
    let client = aws_sdk_ec2::Client::new(&vault_sdk);
    let vault = Vault {
        ec2: Ec2Adapter::new(client.clone()),
        client,
        ledger: vault_ledger,
        config: gold_vault_config_with(&vault_key, more),
        notifier: RecordingNotifier::default(),
        counter: moto.counted_ec2().1,
    };
    (vault, vault_sdk)
}

/// A vault for the source account's `gold` policy (3 daily), unlocked.
fn gold_vault_config(vault_key: &str) -> Config {
    gold_vault_config_with(vault_key, &[])
}

/// [`gold_vault_config`] with more of the vault's settings.
fn gold_vault_config_with(vault_key: &str, more: &[(&str, &str)]) -> Config {
    let mut settings = vec![
        ("DEPLOYMENT_NAME", "vault"),
        ("ACCOUNT_ID", VAULT),
        ("VAULT_FOR_ACCOUNTS", ACCOUNT),
        ("VAULT_POLICIES", r#"{"gold": {"daily": 3}}"#),
        ("VAULT_KMS_KEY_ID", vault_key),
        ("VAULT_LOCK_DAYS", "0"),
    ];
    settings.extend_from_slice(more);
    config_with(
        "{\"gold\": {\"schedule\": \"@daily\", \"keep\": {\"last\": 1}}}",
        &settings,
    )
}

/// What one accepted source account can make the vault do is bounded: only
/// the policies the vault keeps and the deployments it accepts are copied
/// (the rest refused, reported once, in one message a run), at most
/// `VAULT_MAX_COPIES_PER_VOLUME_PER_DAY` copies of a source volume and
/// `VAULT_MAX_COPIES_PER_ACCOUNT_PER_DAY` of the account in 24 hours
/// (the account's counted in the vault's ledger, across runs).
#[tokio::test]
async fn a_source_account_makes_the_vault_copy_only_within_its_bounds() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let day0 = t("2026-03-01T00:00:00Z");
    // Three volumes, two gold shares each (a day apart); one share of a
    // policy the vault keeps no rules for; one of another deployment.
    for hour in [0, 1, 2] {
        let volume = create_volume(&ec2, 8, &[("Backup", "gold")]).await;
        for day in [0, 1] {
            let slot = day0 - Duration::days(2) + Duration::days(day) + Duration::hours(hour);
            let id = snapshot_as_created(
                &moto,
                &volume,
                &labels_for(&volume, "itest", "gold", slot),
                &[],
            )
            .await;
            share(&ec2, &id, VAULT).await;
        }
    }
    let other = create_volume(&ec2, 8, &[("Backup", "silver")]).await;
    let silver = snapshot_as_created(
        &moto,
        &other,
        &labels_for(&other, "itest", "silver", day0),
        &[],
    )
    .await;
    share(&ec2, &silver, VAULT).await;
    let stranger = snapshot_as_created(
        &moto,
        &other,
        &labels_for(&other, "staging", "gold", day0),
        &[],
    )
    .await;
    share(&ec2, &stranger, VAULT).await;

    let (vault, _) = gold_vault(
        &moto,
        &[
            ("VAULT_FOR_DEPLOYMENTS", "itest"),
            ("VAULT_MAX_COPIES_PER_VOLUME_PER_DAY", "1"),
            ("VAULT_MAX_COPIES_PER_ACCOUNT_PER_DAY", "2"),
        ],
    )
    .await;
    let refusals = |n: &RecordingNotifier| -> Vec<ebs_lifecycle_core::notify::Notification> {
        n.sent()
            .into_iter()
            .filter(|n| n.kind == NotificationKind::TamperingSuspected)
            .collect()
    };

    // Three volumes' oldest shares wanted, two the account's day allows.
    let first = vault_run(&moto, &vault, day0 + Duration::hours(1)).await;
    assert_eq!(first.started.len(), 2, "{first:?}");
    assert_eq!(first.over_account_quota, 1);
    let mut kinds: Vec<&str> = first.refused.iter().map(|r| r.why.kind()).collect();
    kinds.sort();
    assert_eq!(kinds, ["deployment-not-accepted", "policy-not-kept"]);
    let sent = refusals(&vault.notifier);
    assert_eq!(sent.len(), 1, "one message for both refusals");
    assert_eq!(sent[0].details["refused"].as_array().unwrap().len(), 2);

    // An hour later: the two volumes copied have had their copy today,
    // the third waits for the account's quota; refusals not reported again.
    let second = vault_run(&moto, &vault, day0 + Duration::hours(2)).await;
    assert_eq!(second.started.len(), 0, "{second:?}");
    assert_eq!(second.over_daily_quota, 2);
    assert_eq!(second.over_account_quota, 1);
    assert_eq!(second.refused.len(), 2);
    assert_eq!(refusals(&vault.notifier).len(), 1);

    // The next day both quotas have room again.
    let third = vault_run(&moto, &vault, day0 + Duration::hours(27)).await;
    assert_eq!(third.started.len(), 2, "{third:?}");
    assert_eq!(snapshots(&vault.client).await.len(), 4);
}

/// A vault stack drills its own copies (all it holds): the vault's copy of
/// what a source shared, proven by the vault's ledger, made into a volume
/// of the vault account, read against EBS's checksums, deleted; its pass
/// recorded in the vault's ledger under the source volume. A copy the
/// vault's ledger does not back is never drilled.
#[tokio::test]
async fn a_vault_stack_drills_its_own_copies() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let volume = create_volume(&ec2, 1, &[("Backup", "gold")]).await;
    let day0 = t("2026-03-01T00:00:00Z");
    let labels = labels_for(&volume, "itest", "gold", day0);
    let source = snapshot_as_created(&moto, &volume, &labels, &[]).await;
    share(&ec2, &source, VAULT).await;
    let (vault, vault_sdk) = gold_vault(&moto, &[]).await;
    let copied = vault_run(&moto, &vault, day0 + Duration::hours(1)).await;
    assert_eq!(copied.started.len(), 1, "{copied:?}");
    let copy = snapshots(&vault.client).await[0].id.clone();

    let blocks = ebs_lifecycle::aws::ebs::EbsBlocks::new(
        aws_sdk_ebs::Client::new(&vault_sdk),
        ebs_lifecycle::pacing::BucketPacing::NONE,
    );
    let notifier = RecordingNotifier::default();
    let now = day0 + Duration::days(7);
    moto.set_clock(Some(now));
    let summary = verify_restores::handle(
        verify_restores::Ports {
            catalog: &vault.ec2,
            volumes: &vault.ec2,
            blocks: &blocks,
            copies: &std::collections::BTreeMap::new(),
            ledger: vault.ledger,
            drills: vault.ledger,
            notifier: &notifier,
        },
        &vault.config,
        &json!({"kind": "tick"}),
        now,
        Deadline::after(std::time::Duration::from_secs(900)),
    )
    .await
    .unwrap();
    moto.set_clock(None);
    assert_eq!(summary.drills.len(), 1, "{summary:#?}");
    let drill = &summary.drills[0];
    assert_eq!(drill.snapshot_id, copy);
    assert_eq!(
        drill.volume_id, volume,
        "the source volume, as the vault knows it"
    );
    assert_eq!(
        drill.verdict,
        ebs_lifecycle::services::drills::Verdict::Verified,
        "{drill:#?}"
    );
    assert!(drill.blocks_read > 0);
    use ebs_lifecycle::ports::ledger::DrillLedger;
    let recorded = vault
        .ledger
        .verifications(std::slice::from_ref(&volume))
        .await
        .unwrap();
    assert_eq!(recorded[0].snapshot_id, copy);
    assert!(
        drill_volumes(&vault.client).await.is_empty(),
        "no drill volume left in the vault"
    );
}

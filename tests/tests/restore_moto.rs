//! `ebs-lifecycle restore volume`, `hold` and `release` against moto
//! (docs/restore.md): the command line parsed as the binary parses it, the
//! stack's configuration from its arguments and STS, then EC2 and the
//! ledger on moto. What a user would see: which snapshot is chosen (never a
//! forged, foreign or pending one), the volume made from it (zone, type,
//! IOPS, tags; never the selector tag), a dry run making nothing, a DR copy
//! restored in its region, a hold written to the ledger; `plan` agreeing
//! with what create-snapshots and expire-snapshots then do.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use chrono::{DateTime, Duration, Utc};
use clap::Parser;
use serde_json::Value;

use ebs_lifecycle::ports::ledger::Ledger;
use ebs_lifecycle_cli::args::Cli;
use ebs_lifecycle_core::ownership::CopyRecord;
use ebs_lifecycle_core::tags;
use integration_tests::*;

const DR: &str = "us-west-2";

fn t(s: &str) -> DateTime<Utc> {
    tags::parse_time(s).unwrap()
}

/// `ebs-lifecycle <args>` against moto, as the stack `itest`: its result
/// (JSON parsed) or its error's line, and the progress lines.
async fn cli(moto: &Moto, args: &[&str]) -> (Result<Value, String>, Vec<String>) {
    cli_with(&moto.sdk_config(), args).await
}

/// [`cli`] through another SDK configuration (the fault proxy's).
async fn cli_with(
    sdk: &aws_config::SdkConfig,
    args: &[&str],
) -> (Result<Value, String>, Vec<String>) {
    cli_as(sdk, "itest", args).await
}

/// [`cli_with`] for the stack `stack`.
async fn cli_as(
    sdk: &aws_config::SdkConfig,
    stack: &str,
    args: &[&str],
) -> (Result<Value, String>, Vec<String>) {
    let mut argv = vec![
        "ebs-lifecycle",
        "--stack",
        stack,
        "--ledger-table",
        LEDGER_TABLE,
        "--region",
        REGION,
        "--output",
        "json",
    ];
    argv.extend_from_slice(args);
    let parsed = Cli::try_parse_from(argv).unwrap();
    let mut lines = Vec::new();
    let out = ebs_lifecycle_cli::run(&parsed, sdk, &mut |l| lines.push(l)).await;
    (
        out.map(|o| serde_json::from_str(&o).unwrap())
            .map_err(|e| e.to_string()),
        lines,
    )
}

async fn volume_count(ec2: &aws_sdk_ec2::Client) -> usize {
    ec2.describe_volumes().send().await.unwrap().volumes().len()
}

#[tokio::test]
async fn restore_volume_makes_the_newest_proven_snapshot_at_the_moment_into_a_volume_like_its_source(
) {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let volume = ec2
        .create_volume()
        .availability_zone("us-east-1b")
        .size(20)
        .volume_type(aws_sdk_ec2::types::VolumeType::Io1)
        .iops(3000)
        .tag_specifications(tag_spec(
            aws_sdk_ec2::types::ResourceType::Volume,
            &[("Backup", "gold"), ("Name", "db"), ("Owner", "team-a")],
        ))
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string();
    // Three days of the deployment's snapshots (slots 2026-03-01..03).
    let mut days = Vec::new();
    for _ in 0..3 {
        days.push(managed_snapshot(&moto, &volume, "itest", "gold", &[]).await);
    }
    // Someone copies the newest one's Description and tags onto a snapshot
    // made later, by hand; another carries the tags only.
    let newest = snapshots(&ec2)
        .await
        .into_iter()
        .find(|s| s.id == days[2])
        .unwrap();
    moto.set_clock(Some(t("2026-03-03T06:00:00Z")));
    let forged = ec2
        .create_snapshot()
        .volume_id(&volume)
        .description(newest.description.clone().unwrap())
        .send()
        .await
        .unwrap()
        .snapshot_id()
        .unwrap()
        .to_string();
    moto.set_clock(Some(t("2026-03-04T06:00:00Z")));
    let tagged = hand_made_snapshot(&ec2, &volume).await;
    moto.set_clock(None);
    for id in [&forged, &tagged] {
        let pairs: Vec<(&str, &str)> = newest
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        put_tags(&ec2, id, &pairs).await;
    }

    // A dry run: the choice, nothing made.
    let before = volume_count(&ec2).await;
    let (dry, _) = cli(&moto, &["restore", "volume", &volume, "--dry-run"]).await;
    let dry = dry.unwrap();
    assert_eq!(dry["snapshot_id"], days[2].as_str(), "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["volume_id"], Value::Null);
    assert_eq!(volume_count(&ec2).await, before, "a dry run makes nothing");

    // Now, and at a moment in the past.
    let (now, _) = cli(&moto, &["restore", "volume", &volume]).await;
    let now = now.unwrap();
    assert_eq!(
        now["snapshot_id"],
        days[2].as_str(),
        "never the forged ones: {now}"
    );
    let (past, _) = cli(
        &moto,
        &["restore", "volume", &volume, "--at", "2026-03-02T12:00:00Z"],
    )
    .await;
    let past = past.unwrap();
    assert_eq!(past["snapshot_id"], days[1].as_str());
    assert_eq!(past["snapshot_time"], "2026-03-02T00:00:12Z");
    let (before_any, _) = cli(
        &moto,
        &["restore", "volume", &volume, "--at", "2026-02-01T00:00:00Z"],
    )
    .await;
    assert!(before_any
        .unwrap_err()
        .contains("no completed snapshot this deployment made"),);

    // The volume made: the source's zone, type, IOPS and size, its tags
    // but the selector, labelled with what it came from; available.
    let made = now["volume_id"].as_str().unwrap();
    let answer = ec2
        .describe_volumes()
        .volume_ids(made)
        .send()
        .await
        .unwrap();
    let v = &answer.volumes()[0];
    assert_eq!(v.availability_zone(), Some("us-east-1b"));
    assert_eq!(v.volume_type().map(|t| t.as_str()), Some("io1"));
    assert_eq!((v.iops(), v.size()), (Some(3000), Some(20)));
    assert_eq!(v.snapshot_id(), Some(days[2].as_str()));
    assert_eq!(v.state().map(|s| s.as_str()), Some("available"));
    let tag = |k: &str| {
        v.tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(String::from)
    };
    assert_eq!(
        tag("Backup"),
        None,
        "a restored volume does not opt in by itself"
    );
    assert_eq!(tag("Owner").as_deref(), Some("team-a"));
    assert_eq!(tag("Name").as_deref(), Some("db"));
    assert_eq!(tag(tags::RESTORED_FROM).as_deref(), Some(days[2].as_str()));
    assert_eq!(
        tag(tags::RESTORE_PENDING),
        None,
        "a finished restore drops its pending mark (the rollback's only DeleteVolume key)"
    );

    // A snapshot named directly: the deployment's is restored, attached
    // where asked; the forged one is refused, naming why.
    let (instance, _) = run_instance(&ec2, &[]).await;
    let (one, _) = cli(
        &moto,
        &[
            "restore",
            "volume",
            &days[0],
            "--az",
            "us-east-1a",
            "--type",
            "gp3",
            "--attach",
            &instance,
            "--device",
            "/dev/sdf",
        ],
    )
    .await;
    let one = one.unwrap();
    assert_eq!(one["snapshot_id"], days[0].as_str());
    assert_eq!(one["volume_type"], "gp3");
    assert_eq!(
        one["iops"],
        Value::Null,
        "io1's IOPS do not carry over to gp3"
    );
    assert_eq!(one["attached"]["instance_id"], instance.as_str());
    for id in [&forged, &tagged] {
        let (refused, _) = cli(&moto, &["restore", "volume", id]).await;
        let refused = refused.unwrap_err();
        assert!(
            refused.contains("is not a snapshot this deployment made"),
            "{refused}"
        );
    }
}

#[tokio::test]
async fn restore_from_the_dr_region_takes_the_newest_completed_copy_never_a_pending_one() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let volume = create_volume(&ec2, 8, &[("Backup", "gold")]).await;
    let dr = moto.ec2_in(DR);
    // Two days, each copied an hour after its slot, as copy-snapshots does.
    let (sources, copies) = copied_history(&moto, DR, (&volume, "gold"), 2).await;
    // Ten minutes after the second copy began, it is still pending (moto,
    // as EC2, takes 30 minutes): the first is restored.
    moto.set_clock(Some(t("2026-03-02T01:10:00Z")));
    let (pending, _) = cli(
        &moto,
        &[
            "restore",
            "volume",
            &volume,
            "--from",
            DR,
            "--az",
            "us-west-2a",
            "--dry-run",
        ],
    )
    .await;
    let pending = pending.unwrap();
    assert_eq!(pending["snapshot_id"], copies[0].as_str(), "{pending}");
    // It stands for its original's moment, not the copy's.
    assert_eq!(pending["snapshot_time"], "2026-03-01T00:00:12Z");
    moto.set_clock(Some(t("2026-03-02T02:00:00Z")));
    let (done, _) = cli(
        &moto,
        &[
            "restore",
            "volume",
            &volume,
            "--from",
            DR,
            "--az",
            "us-west-2a",
        ],
    )
    .await;
    let done = done.unwrap();
    moto.set_clock(None);
    assert_eq!(done["snapshot_id"], copies[1].as_str(), "{done}");
    let made = done["volume_id"].as_str().unwrap();
    let answer = dr.describe_volumes().volume_ids(made).send().await.unwrap();
    assert_eq!(answer.volumes()[0].availability_zone(), Some("us-west-2a"));
    // Without the zone there, it refuses before anything.
    let (no_zone, _) = cli(&moto, &["restore", "volume", &volume, "--from", DR]).await;
    assert!(no_zone.unwrap_err().contains("--az"));
    // `verify --from` drills a copy there, against the copy before it.
    let (verified, _) = cli(&moto, &["verify", &copies[1], "--from", DR]).await;
    let verified = verified.unwrap();
    assert_eq!(verified["verdict"], "verified", "{verified}");
    assert_eq!(verified["region"], DR);
    assert_eq!(verified["older_id"], copies[0].as_str());
    assert!(verified["blocks_read"].as_u64().unwrap() > 0);
    assert!(drill_volumes(&dr).await.is_empty());

    // `explain` names each source's copy there (proven by its ledger
    // record, whatever its tags say).
    put_tags(&dr, &copies[0], &[(tags::COPY_OF, sources[1].as_str())]).await;
    let document = std::env::temp_dir().join(format!("dr-{}.json", std::process::id()));
    std::fs::write(
        &document,
        format!(
            r#"{{"gold": {{"schedule": "@daily", "keep": {{"last": 7}},
                "copies": [{{"region": "{DR}", "kms_key": "arn:aws:kms:{DR}:{ACCOUNT}:key/dr", "keep": {{"last": 7}}}},
                           {{"account": "210987654321", "region": "{REGION}", "kms_key": "arn:aws:kms:{REGION}:{ACCOUNT}:key/vault", "keep": {{"last": 7}}}}]}}}}"#
        ),
    )
    .unwrap();
    // The first is shared with the vault account, as copy-snapshots shares.
    ec2.modify_snapshot_attribute()
        .snapshot_id(&sources[0])
        .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
        .operation_type(aws_sdk_ec2::types::OperationType::Add)
        .user_ids("210987654321")
        .send()
        .await
        .unwrap();
    for ((source, copy), shared) in sources.iter().zip(&copies).zip([true, false]) {
        let (explained, _) = cli(
            &moto,
            &["--policies", document.to_str().unwrap(), "explain", source],
        )
        .await;
        let explained = explained.unwrap();
        assert_eq!(explained["copies"][0]["region"], DR, "{explained}");
        assert_eq!(
            explained["copies"][0]["copies"],
            serde_json::json!([[copy, "completed"]]),
            "{explained}"
        );
        let vault_shares = if shared {
            serde_json::json!(["210987654321"])
        } else {
            serde_json::json!([])
        };
        assert_eq!(explained["vault_shares"], vault_shares, "{explained}");
    }
}

#[tokio::test]
async fn hold_and_release_write_the_ledger_hold_every_deleting_function_honours() {
    let moto = Moto::start();
    let (held, _) = cli(
        &moto,
        &[
            "hold",
            "vol-0123456789abcdef0",
            "--until",
            "2036-01-01T00:00:00Z",
            "--reason",
            "legal case 42",
        ],
    )
    .await;
    let held = held.unwrap();
    assert_eq!(held["resource_id"], "vol-0123456789abcdef0");
    let holds = moto.ledger().holds().await.unwrap();
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].reason, "legal case 42");
    assert!(
        holds[0].by.contains("arn:aws"),
        "who set it: {:?}",
        holds[0].by
    );
    let (too_long, _) = cli(
        &moto,
        &[
            "hold",
            "vol-0123456789abcdef0",
            "--until",
            "2099-01-01T00:00:00Z",
            "--reason",
            "forever",
        ],
    )
    .await;
    assert!(too_long.unwrap_err().contains("more than ten years"));
    // A shorter hold on the same volume does not cut the longer one...
    let shorter = [
        "hold",
        "vol-0123456789abcdef0",
        "--until",
        "2030-01-01T00:00:00Z",
        "--reason",
        "incident 7",
    ];
    let (cut, _) = cli(&moto, &shorter).await;
    assert!(cut.unwrap_err().contains("--force"));
    assert_eq!(
        tags::format_time(moto.ledger().holds().await.unwrap()[0].until),
        "2036-01-01T00:00:00Z"
    );
    // ... unless asked to.
    let mut forced = shorter.to_vec();
    forced.push("--force");
    cli(&moto, &forced).await.0.unwrap();
    assert_eq!(moto.ledger().holds().await.unwrap()[0].reason, "incident 7");
    let (released, _) = cli(&moto, &["release", "vol-0123456789abcdef0"]).await;
    released.unwrap();
    let now = Utc::now();
    assert!(moto
        .ledger()
        .holds()
        .await
        .unwrap()
        .iter()
        .all(|h| !h.in_effect(now)));
}

#[test]
fn validate_checks_a_policy_document_as_the_functions_do_and_bad_arguments_exit_2() {
    let dir = std::env::temp_dir().join(format!("ebs-lifecycle-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.json");
    std::fs::write(
        &good,
        r#"{"gold": {"schedule": "@daily", "keep": {"daily": 7}}}"#,
    )
    .unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"gold": {"schedule": "@daily", "keep": {"dayly": 7}}}"#,
    )
    .unwrap();
    let run = |file: &std::path::Path| {
        let parsed =
            Cli::try_parse_from(["ebs-lifecycle", "validate", file.to_str().unwrap()]).unwrap();
        let sdk = aws_config::SdkConfig::builder().build();
        futures_lite(ebs_lifecycle_cli::run(&parsed, &sdk, &mut |_| {}))
    };
    assert!(run(&good).unwrap().starts_with("valid:"));
    let error = run(&bad).unwrap_err().to_string();
    assert!(error.contains("dayly"), "{error}");
    // clap refuses bad arguments (the binary exits 2 on them).
    let refused = Cli::try_parse_from([
        "ebs-lifecycle",
        "restore",
        "volume",
        "vol-1",
        "--attach",
        "i-1",
    ])
    .unwrap_err();
    assert_eq!(refused.exit_code(), 2);
}

/// Runs a future that needs no I/O to completion.
fn futures_lite<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// An instance with a root and a data volume whose policy takes them as
/// one multi-volume set, snapshotted by create-snapshots on two days.
async fn instance_with_two_days(moto: &Moto) -> (String, Vec<(String, String)>) {
    let ec2 = moto.ec2();
    let (instance, root) = run_instance(&ec2, &[("Backup", "web")]).await;
    let data = create_volume(&ec2, 16, &[("Name", "data")]).await;
    attach(&ec2, &data, &instance, "/dev/sdf").await;
    let config = config(
        r#"{"web": {"schedule": "@daily", "keep": {"last": 5}, "consistency": "instance"}}"#,
    );
    let adapter = ebs_lifecycle::aws::ec2::Ec2Adapter::new(ec2.clone());
    let commands = no_commands();
    let notifier = RecordingNotifier::default();
    for day in ["2026-03-01T00:05:00Z", "2026-03-02T00:05:00Z"] {
        moto.set_clock(Some(t(day)));
        let made = create_snapshots::handle(
            create_ports(&adapter, &commands, &notifier, moto.ledger()),
            &config,
            &serde_json::json!({"kind": "tick"}),
            t(day),
            ebs_lifecycle::lambda::deadline::Deadline::after(std::time::Duration::from_secs(60)),
        )
        .await
        .unwrap();
        assert_eq!(made.created.len(), 2, "{made:?}");
    }
    moto.set_clock(None);
    let devices = devices_of(&ec2, &instance).await;
    assert!(devices.iter().any(|(_, v)| *v == root));
    (instance, devices)
}

/// (device, volume) of what is attached to the instance now, by device.
async fn devices_of(ec2: &aws_sdk_ec2::Client, instance: &str) -> Vec<(String, String)> {
    let answer = ec2
        .describe_volumes()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("attachment.instance-id")
                .values(instance)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut devices: Vec<(String, String)> = answer
        .volumes()
        .iter()
        .flat_map(|v| {
            v.attachments()
                .iter()
                .filter(|a| a.instance_id() == Some(instance))
                .map(|a| {
                    (
                        a.device().unwrap().to_string(),
                        v.volume_id().unwrap().to_string(),
                    )
                })
        })
        .collect();
    devices.sort();
    devices
}

#[tokio::test]
async fn restore_instance_brings_every_volume_back_from_one_set_and_replace_swaps_them_in() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (instance, before) = instance_with_two_days(&moto).await;

    let (dry, _) = cli(&moto, &["restore", "instance", &instance, "--dry-run"]).await;
    let dry = dry.unwrap();
    assert_eq!(dry["consistent_set"], true, "{dry}");
    assert_eq!(dry["spread_seconds"], 0);
    let map = dry["devices"].as_object().unwrap();
    let devices: Vec<&String> = map.keys().collect();
    let expected: Vec<&String> = before.iter().map(|(d, _)| d).collect();
    assert_eq!(devices, expected, "every device, root included");
    for (device, _) in &before {
        assert!(
            map[device]["snapshot_time"]
                .as_str()
                .unwrap()
                .starts_with("2026-03-02"),
            "{dry}"
        );
    }
    assert_eq!(
        devices_of(&ec2, &instance).await,
        before,
        "a dry run touches nothing"
    );

    // --replace on a running instance needs --stop.
    let (refused, _) = cli(&moto, &["restore", "instance", &instance, "--replace"]).await;
    assert!(refused.unwrap_err().contains("--stop"));

    // Back to the 1st, swapped in: stopped, swapped, started again.
    let (done, _) = cli(
        &moto,
        &[
            "restore",
            "instance",
            &instance,
            "--at",
            "2026-03-01T12:00:00Z",
            "--replace",
            "--stop",
        ],
    )
    .await;
    let done = done.unwrap();
    assert_eq!(done["replaced"], true, "{done}");
    assert_eq!(instance_state(&ec2, &instance).await, "running");
    let after = devices_of(&ec2, &instance).await;
    assert_eq!(after.len(), before.len());
    for ((device, old), (device_after, new)) in before.iter().zip(&after) {
        assert_eq!(device, device_after);
        assert_ne!(old, new, "{device} swapped");
        assert_eq!(done["devices"][device]["volume_id"], new.as_str());
        assert!(done["devices"][device]["snapshot_time"]
            .as_str()
            .unwrap()
            .starts_with("2026-03-01"));
        // The old one is kept, detached, saying what replaced it.
        let answer = ec2.describe_volumes().volume_ids(old).send().await.unwrap();
        let v = &answer.volumes()[0];
        assert_eq!(v.state().map(|s| s.as_str()), Some("available"));
        let replaced_by = v
            .tags()
            .iter()
            .find(|t| t.key() == Some(tags::REPLACED_BY))
            .and_then(|t| t.value());
        assert_eq!(replaced_by, Some(new.as_str()));
    }

    // Restored again, to now: the volumes there now were made from the
    // 1st's snapshots (EC2's SnapshotId), so their history is their
    // originals' and the 2nd's set comes back.
    let (again, lines) = cli(
        &moto,
        &["restore", "instance", &instance, "--replace", "--stop"],
    )
    .await;
    let again = again.unwrap_or_else(|e| panic!("{e}: {lines:?}"));
    assert_eq!(again["consistent_set"], true, "{again}");
    for (device, _) in &before {
        assert!(again["devices"][device]["snapshot_time"]
            .as_str()
            .unwrap()
            .starts_with("2026-03-02"));
    }
}

/// A vault account's copies are the vault stack's: restored there, with the
/// vault's credentials, stack and ledger (docs/restore.md, "From another
/// region or the vault"). A copy is proven by the vault's ledger record; a
/// snapshot carrying the same tags without it is refused.
#[tokio::test]
async fn a_vault_copy_is_restored_in_the_vault_account_on_the_vault_ledger_proof() {
    const VAULT: &str = "210987654321";
    let moto = Moto::start();
    let vault_sdk = moto.sdk_config_as(VAULT).await;
    create_ledger_table(&vault_sdk);
    let vault = aws_sdk_ec2::Client::new(&vault_sdk);
    let ledger = ebs_lifecycle::aws::ledger::DynamoLedger::new(
        aws_sdk_dynamodb::Client::new(&vault_sdk),
        LEDGER_TABLE,
    );
    // What the vault's copy of a source snapshot looks like (a volume of
    // the vault account stands in for the shared source).
    let stand_in = create_volume(&vault, 8, &[]).await;
    let vault_identity = ebs_lifecycle_core::ownership::Identity {
        deployment: "vault".into(),
        account: VAULT.into(),
        region: REGION.into(),
    };
    let source_volume = "vol-0a1b2c3d4e5f60718";
    let mut made = Vec::new();
    for (source, day) in [("snap-0aaaaaaaaaaaaaaa1", 1), ("snap-0aaaaaaaaaaaaaaa2", 2)] {
        moto.set_clock(Some(t(&format!("2026-03-0{day}T02:00:00Z"))));
        let copy = vault
            .create_snapshot()
            .volume_id(&stand_in)
            .description(vault_identity.copy(REGION, source))
            .send()
            .await
            .unwrap()
            .snapshot_id()
            .unwrap()
            .to_string();
        moto.set_clock(None);
        put_tags(
            &vault,
            &copy,
            &[
                (tags::MANAGED_BY, "vault"),
                (tags::COPY_OF, source),
                (tags::VOLUME_ID, source_volume),
            ],
        )
        .await;
        made.push(copy);
    }
    // Only the first is recorded: the second's tags and Description are
    // a forgery the vault's ledger does not back.
    let slot = t("2026-03-01T00:00:00Z");
    ledger
        .record_copy(&CopyRecord {
            copy_id: made[0].clone(),
            source_snapshot_id: "snap-0aaaaaaaaaaaaaaa1".into(),
            volume_id: source_volume.into(),
            policy: "gold".into(),
            slot,
            created_at: slot + Duration::seconds(12),
            target: Some(REGION.into()),
        })
        .await
        .unwrap();
    let (restored, _) = cli_as(
        &vault_sdk,
        "vault",
        &["restore", "volume", source_volume, "--az", "us-east-1a"],
    )
    .await;
    let restored = restored.unwrap();
    assert_eq!(restored["snapshot_id"], made[0].as_str(), "{restored}");
    assert_eq!(restored["snapshot_time"], "2026-03-01T00:00:12Z");
    let (forged, _) = cli_as(
        &vault_sdk,
        "vault",
        &["restore", "volume", &made[1], "--az", "us-east-1a"],
    )
    .await;
    assert!(forged
        .unwrap_err()
        .contains("is not a snapshot this deployment made"));
}

/// Without `--policies` the tool knows no schedule, so it does not judge
/// the stack's snapshots against the built-in default's: a stack whose own
/// `default` policy runs every six hours restores its 06:00 snapshot. With
/// the stack's document it checks the schedule as the functions do.
#[tokio::test]
async fn without_the_policy_document_no_wrong_schedule_refuses_a_snapshot() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let volume = create_volume(&ec2, 8, &[("Backup", "default")]).await;
    let slot = t("2026-03-01T06:00:00Z");
    let labels = labels_for(&volume, "itest", "default", slot);
    let id = snapshot_as_created(&moto, &volume, &labels, &[]).await;
    let (restored, _) = cli(&moto, &["restore", "volume", &volume, "--dry-run"]).await;
    assert_eq!(restored.unwrap()["snapshot_id"], id.as_str());
    // A later one claiming 07:00, a slot the stack's schedule never had:
    // without the document nothing says so; with it, it is refused.
    let off = labels_for(&volume, "itest", "default", t("2026-03-01T07:00:00Z"));
    let off = snapshot_as_created(&moto, &volume, &off, &[]).await;
    let (unchecked, _) = cli(&moto, &["restore", "volume", &volume, "--dry-run"]).await;
    assert_eq!(unchecked.unwrap()["snapshot_id"], off.as_str());
    let document = std::env::temp_dir().join(format!("six-hourly-{}.json", std::process::id()));
    std::fs::write(
        &document,
        r#"{"default": {"schedule": "0 */6 * * *", "keep": {"last": 4}}}"#,
    )
    .unwrap();
    let (with_document, _) = cli(
        &moto,
        &[
            "--policies",
            document.to_str().unwrap(),
            "restore",
            "volume",
            &volume,
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(with_document.unwrap()["snapshot_id"], id.as_str());
}

/// No slot has a snapshot of every volume: --replace refuses to swap in
/// volumes from different moments unless told to.
#[tokio::test]
async fn replace_refuses_volumes_from_different_moments_without_allow_spread() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (instance, root) = run_instance(&ec2, &[]).await;
    let data = create_volume(&ec2, 16, &[]).await;
    attach(&ec2, &data, &instance, "/dev/sdf").await;
    let day1 = labels_for(&root, "itest", "gold", t("2026-03-01T00:00:00Z"));
    snapshot_as_created(&moto, &root, &day1, &[]).await;
    let day2 = labels_for(&data, "itest", "gold", t("2026-03-02T00:00:00Z"));
    snapshot_as_created(&moto, &data, &day2, &[]).await;
    let before = devices_of(&ec2, &instance).await;
    let (dry, _) = cli(&moto, &["restore", "instance", &instance, "--dry-run"]).await;
    let dry = dry.unwrap();
    assert_eq!(dry["one_slot"], false);
    // A day apart by their slots; by EC2's StartTime (what the tool reads)
    // a day give or take the moments moto took to take each: moto stamps
    // its simulated clock (set to whole seconds) plus however long the
    // request waited, which a loaded machine stretches (once 86,401 s).
    // A second less, up to a minute more.
    let spread = dry["spread_seconds"].as_i64().unwrap();
    assert!((86_399..=86_460).contains(&spread), "{dry}");
    let (refused, _) = cli(
        &moto,
        &["restore", "instance", &instance, "--replace", "--stop"],
    )
    .await;
    assert!(refused.unwrap_err().contains("--allow-spread"));
    // Leaving the data volume out, the root alone is one slot.
    let (root_only, _) = cli(
        &moto,
        &[
            "restore",
            "instance",
            &instance,
            "--exclude",
            "/dev/sdf",
            "--dry-run",
        ],
    )
    .await;
    let root_only = root_only.unwrap();
    assert_eq!(root_only["one_slot"], true, "{root_only}");
    assert_eq!(root_only["devices"].as_object().unwrap().len(), 1);
    let (no_such, _) = cli(
        &moto,
        &["restore", "instance", &instance, "--exclude", "/dev/sdz"],
    )
    .await;
    assert!(no_such.unwrap_err().contains("no volume at /dev/sdz"));
    assert_eq!(devices_of(&ec2, &instance).await, before);
    let (done, _) = cli(
        &moto,
        &[
            "restore",
            "instance",
            &instance,
            "--replace",
            "--stop",
            "--allow-spread",
        ],
    )
    .await;
    assert_eq!(done.unwrap()["replaced"], true);
    assert_ne!(devices_of(&ec2, &instance).await, before);
}

/// `restore instance --replace --stop` through the fault proxy with
/// `faults` planned on AttachVolume: it fails naming AttachVolume and
/// leaves the instance as it was (the same volumes at the same devices,
/// running, the volumes it made deleted). Its progress lines.
async fn a_failed_swap_leaves_the_instance_as_it_was(
    faults: &[(usize, integration_tests::fault_proxy::Fault)],
) -> Vec<String> {
    use integration_tests::fault_proxy::FaultProxy;
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let (instance, before) = instance_with_two_days(&moto).await;
    let volumes_before = volume_count(&ec2).await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    for (times, fault) in faults {
        proxy.inject("AttachVolume", *times, *fault);
    }
    let sdk = proxy.sdk_config(std::time::Duration::from_secs(5));
    let (failed, lines) = cli_with(
        &sdk,
        &["restore", "instance", &instance, "--replace", "--stop"],
    )
    .await;
    let failed = failed.unwrap_err();
    assert!(failed.contains("AttachVolume"), "{failed}");
    assert_eq!(devices_of(&ec2, &instance).await, before, "{lines:?}");
    assert_eq!(instance_state(&ec2, &instance).await, "running");
    assert_eq!(volume_count(&ec2).await, volumes_before, "{lines:?}");
    lines
}

/// Every attempt of the first attach fails (the SDK tries 5 times).
#[tokio::test]
async fn restore_instance_is_all_or_nothing_when_an_attach_fails() {
    use integration_tests::fault_proxy::Fault;
    a_failed_swap_leaves_the_instance_as_it_was(&[(5, Fault::InternalError)]).await;
}

/// The first device is swapped, the second's attach fails on every retry:
/// the first is undone too.
#[tokio::test]
async fn a_swap_that_fails_on_the_second_device_undoes_the_first() {
    use integration_tests::fault_proxy::Fault;
    let lines =
        a_failed_swap_leaves_the_instance_as_it_was(&[(1, Fault::Pass), (5, Fault::InternalError)])
            .await;
    assert!(
        lines.iter().any(|l| l.contains("attached (was")),
        "the first device was swapped before the failure: {lines:?}"
    );
}

/// EC2 attaches the restored volume but the answer is lost (the connection
/// reset after it acted) and the SDK's four retries hear only errors: the
/// rollback reads where the volume is rather than trusting the error,
/// detaches it and puts the previous one back.
#[tokio::test]
async fn an_attach_whose_answer_is_lost_is_undone_from_what_ec2_says() {
    use integration_tests::fault_proxy::Fault;
    a_failed_swap_leaves_the_instance_as_it_was(&[
        (1, Fault::ResetAfterForward),
        (4, Fault::InternalError),
    ])
    .await;
}

/// `explain` says what the stack knows of a snapshot: whether it made it,
/// the rules that keep it and what the next expiry does with it (the plan
/// expire-snapshots makes), a ledger hold, and for a forgery why it is
/// not the deployment's.
#[tokio::test]
async fn explain_tells_what_keeps_a_snapshot_and_what_the_next_expiry_does() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let volume = create_volume(&ec2, 8, &[("Backup", "gold")]).await;
    let mut days = Vec::new();
    for _ in 0..4 {
        days.push(managed_snapshot(&moto, &volume, "itest", "gold", &[]).await);
    }
    let document = std::env::temp_dir().join(format!("explain-{}.json", std::process::id()));
    std::fs::write(
        &document,
        r#"{"gold": {"schedule": "@daily", "keep": {"last": 2}}}"#,
    )
    .unwrap();
    let policies = document.to_str().unwrap();
    let explain = |id: String| {
        let moto = &moto;
        async move {
            cli(moto, &["--policies", policies, "explain", &id])
                .await
                .0
                .unwrap()
        }
    };
    // The newest: kept by `last`.
    let newest = explain(days[3].clone()).await;
    assert_eq!(newest["ours"], true, "{newest}");
    assert_eq!(newest["kept_by"], serde_json::json!(["last"]));
    assert!(newest["next_expiry"].as_str().unwrap().starts_with("kept"));
    assert_eq!(newest["volume_id"], volume.as_str());
    assert_eq!(newest["restorable"], true);
    // The oldest: no rule keeps it, nothing protects it.
    let oldest = explain(days[0].clone()).await;
    assert_eq!(oldest["kept_by"], serde_json::json!([]), "{oldest}");
    assert!(oldest["next_expiry"]
        .as_str()
        .unwrap()
        .starts_with("deleted"));
    // Held in the ledger: kept, and the hold is shown.
    cli(
        &moto,
        &[
            "hold",
            &days[1],
            "--until",
            "2036-01-01T00:00:00Z",
            "--reason",
            "audit",
        ],
    )
    .await
    .0
    .unwrap();
    let held = explain(days[1].clone()).await;
    assert_eq!(held["next_expiry"], "kept: held-in-ledger", "{held}");
    assert_eq!(held["hold"]["reason"], "audit");
    // A snapshot made by hand with the newest one's Description, later.
    let description = snapshots(&ec2)
        .await
        .into_iter()
        .find(|s| s.id == days[3])
        .unwrap()
        .description
        .unwrap();
    moto.set_clock(Some(t("2026-03-04T06:00:00Z")));
    let forged = ec2
        .create_snapshot()
        .volume_id(&volume)
        .description(description)
        .send()
        .await
        .unwrap()
        .snapshot_id()
        .unwrap()
        .to_string();
    moto.set_clock(None);
    let not_ours = explain(forged).await;
    assert_eq!(not_ours["ours"], false, "{not_ours}");
    let findings = not_ours["findings"].as_array().unwrap();
    assert!(
        findings.iter().any(|f| f == "duplicate-of-slot"),
        "{not_ours}"
    );
}

/// `plan` says what the functions then do: the volumes due in the current
/// slot (a forged snapshot for the slot does not make a volume look done),
/// the resources naming a policy the document lacks, the snapshots expiry
/// deletes. It makes nothing and writes nothing; expire-snapshots and
/// create-snapshots, run right after at the same moment, delete exactly
/// the planned snapshots and snapshot exactly the planned volumes.
#[tokio::test]
async fn plan_says_what_create_and_expire_then_do_and_changes_nothing() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let kept_twice = create_volume(&ec2, 8, &[("Backup", "gold")]).await;
    let never = create_volume(&ec2, 9, &[("Backup", "gold"), ("Name", "new")]).await;
    let forged_for = create_volume(&ec2, 10, &[("Backup", "gold")]).await;
    let unknown = create_volume(&ec2, 11, &[("Backup", "silver")]).await;
    let mut days = Vec::new();
    for _ in 0..4 {
        days.push(managed_snapshot(&moto, &kept_twice, "itest", "gold", &[]).await);
    }
    // The stack records what it creates from here on (its first run).
    moto.ledger()
        .begin_creations(t("2026-03-05T00:00:00Z"))
        .await
        .unwrap();
    let now = t("2026-03-06T10:00:00Z");
    let slot = t("2026-03-06T00:00:00Z");
    // A hand-made snapshot with the slot's Description and labels.
    let labels = labels_for(&forged_for, "itest", "gold", slot);
    snapshot_as_created(&moto, &forged_for, &labels, &[]).await;
    let document = std::env::temp_dir().join(format!("plan-{}.json", std::process::id()));
    let policies = r#"{"gold": {"schedule": "@daily", "keep": {"last": 2}}}"#;
    std::fs::write(&document, policies).unwrap();
    let plan = || {
        let (moto, document) = (&moto, &document);
        async move {
            cli(
                moto,
                &[
                    "plan",
                    document.to_str().unwrap(),
                    "--at",
                    "2026-03-06T10:00:00Z",
                ],
            )
            .await
            .0
            .unwrap()
        }
    };
    let ledger_items = || async {
        moto.dynamodb()
            .scan()
            .table_name(LEDGER_TABLE)
            .send()
            .await
            .unwrap()
            .items()
            .len()
    };
    let (snapshots_before, items_before) = (snapshots(&ec2).await.len(), ledger_items().await);

    let planned = plan().await;
    let slots = planned["create"]["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 1, "{planned}");
    assert_eq!(slots[0]["policy"], "gold");
    assert_eq!(slots[0]["slot"], "2026-03-06T00:00:00Z");
    let due: std::collections::BTreeSet<String> = slots[0]["due"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["volume_id"].as_str().unwrap().to_string())
        .collect();
    let expected: std::collections::BTreeSet<String> = [&kept_twice, &never, &forged_for]
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(
        due, expected,
        "the forged snapshot fills no slot: {planned}"
    );
    assert_eq!(
        planned["create"]["unknown_policies"][0]["resource_id"],
        unknown.as_str()
    );
    let deleting: std::collections::BTreeSet<String> = planned["expire"]["delete"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["snapshot_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        deleting,
        [days[0].clone(), days[1].clone()].into(),
        "`last 2` keeps the two newest: {planned}"
    );
    assert_eq!(
        snapshots(&ec2).await.len(),
        snapshots_before,
        "a plan makes nothing"
    );
    assert_eq!(ledger_items().await, items_before, "a plan writes nothing");

    // The functions, at the same moment, do what was planned.
    let config = config(policies);
    let notifier = RecordingNotifier::default();
    let adapter = ebs_lifecycle::aws::ec2::Ec2Adapter::new(moto.ec2());
    let before: std::collections::BTreeSet<String> =
        snapshots(&ec2).await.into_iter().map(|s| s.id).collect();
    let deadline =
        || ebs_lifecycle::lambda::deadline::Deadline::after(std::time::Duration::from_secs(600));
    expire_snapshots::handle(
        expire_ports(&adapter, &notifier, moto.ledger()),
        &config,
        &serde_json::json!({"kind": "tick"}),
        now,
        deadline(),
    )
    .await
    .unwrap();
    let after: std::collections::BTreeSet<String> =
        snapshots(&ec2).await.into_iter().map(|s| s.id).collect();
    assert_eq!(
        before
            .difference(&after)
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        deleting
    );
    let commands = no_commands();
    moto.set_clock(Some(now));
    let created = create_snapshots::handle(
        create_ports(&adapter, &commands, &notifier, moto.ledger()),
        &config,
        &serde_json::json!({"kind": "tick", "scheduled_time": "2026-03-06T10:00:00Z"}),
        now,
        deadline(),
    )
    .await
    .unwrap();
    moto.set_clock(None);
    let made: std::collections::BTreeSet<String> = created
        .created
        .iter()
        .map(|c| c.volume_id.clone())
        .collect();
    assert_eq!(made, due);

    // Planned again: no volume left to snapshot in the slot, and the new
    // snapshot is one of the two `last 2` keeps, so the third-newest goes.
    let again = plan().await;
    assert_eq!(
        again["create"]["slots"][0]["due"],
        serde_json::json!([]),
        "{again}"
    );
    assert_eq!(again["create"]["slots"][0]["have_snapshot"], 3);
    assert_eq!(
        again["expire"]["delete"][0]["snapshot_id"],
        days[2].as_str(),
        "{again}"
    );
    assert_eq!(again["expire"]["delete"].as_array().unwrap().len(), 1);
}

/// Before the first deployment: no ledger table given, none read, every
/// opted-in volume due; a bad document is refused with `validate`'s text.
#[tokio::test]
async fn plan_before_the_first_deployment_needs_no_ledger() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let volume = create_volume(&ec2, 8, &[("Backup", "gold")]).await;
    let document = std::env::temp_dir().join(format!("plan-first-{}.json", std::process::id()));
    let run = |body: &'static str| {
        let (moto, document) = (&moto, &document);
        async move {
            std::fs::write(document, body).unwrap();
            let argv = [
                "ebs-lifecycle",
                "--stack",
                "not-yet",
                "--region",
                REGION,
                "--output",
                "json",
                "plan",
                document.to_str().unwrap(),
            ];
            let parsed = Cli::try_parse_from(argv).unwrap();
            ebs_lifecycle_cli::run(&parsed, &moto.sdk_config(), &mut |_| {})
                .await
                .map(|o| serde_json::from_str::<Value>(&o).unwrap())
                .map_err(|e| e.to_string())
        }
    };
    let planned = run(r#"{"gold": {"schedule": "@daily", "keep": {"daily": 7}}}"#)
        .await
        .unwrap();
    assert_eq!(
        planned["create"]["slots"][0]["due"][0]["volume_id"],
        volume.as_str(),
        "{planned}"
    );
    assert_eq!(planned["expire"]["delete"], serde_json::json!([]));
    let refused = run(r#"{"gold": {"schedule": "@daily", "keep": {"daily": 0}}}"#)
        .await
        .unwrap_err();
    assert!(refused.contains("gold"), "{refused}");
    // Once the deployment has snapshots, their proof is in the ledger: no
    // plan without it.
    managed_snapshot(&moto, &volume, "not-yet", "gold", &[]).await;
    let without = run(r#"{"gold": {"schedule": "@daily", "keep": {"daily": 7}}}"#)
        .await
        .unwrap_err();
    assert!(without.contains("--ledger-table"), "{without}");
}

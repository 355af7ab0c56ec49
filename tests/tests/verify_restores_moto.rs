//! verify-restores against moto (docs/restore.md, "Restore drills"): the
//! emulator's block data (`scripts/moto_fixes/restores.py`) read through the
//! real EBS client. What a user would notice: the newest proven snapshot of
//! each volume restored and read (never a forged one), a corrupted block, a
//! broken chain and a volume that goes to `error` each failing its drill
//! for the right reason and alerting once, no drill volume ever left
//! behind (a killed run's cleaned up by the next, a forged drill tag on
//! another volume never obeyed), the bounds kept and the volumes taken in
//! turn; the disaster-recovery copies drilled in their region.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::ports::ledger::DrillLedger;
use ebs_lifecycle::services::drills::Verdict;
use ebs_lifecycle_core::drills::{DrillRecord, Failure, Pick};
use ebs_lifecycle_core::notify::{NotificationKind, Severity};
use ebs_lifecycle_core::tags;
use integration_tests::*;
use verify_restores::RunSummary;

fn t(s: &str) -> DateTime<Utc> {
    tags::parse_time(s).unwrap()
}

/// One verify-restores run at `now` with these settings.
async fn run(
    moto: &Moto,
    settings: &[(&str, &str)],
    now: DateTime<Utc>,
) -> (RunSummary, Vec<ebs_lifecycle_core::notify::Notification>) {
    run_with(moto, "", settings, &[], now).await
}

/// [`run`] with a policy document, drilling the copies in `regions` too.
async fn run_with(
    moto: &Moto,
    policies: &str,
    settings: &[(&str, &str)],
    regions: &[&str],
    now: DateTime<Utc>,
) -> (RunSummary, Vec<ebs_lifecycle_core::notify::Notification>) {
    let adapter = Ec2Adapter::new(moto.ec2());
    let (blocks, _) = moto.ebs_blocks();
    let notifier = RecordingNotifier::default();
    let ledger = moto.ledger();
    let config = config_with(policies, settings);
    let elsewhere: Vec<(String, Ec2Adapter, ebs_lifecycle::aws::ebs::EbsBlocks)> = regions
        .iter()
        .map(|r| {
            (
                r.to_string(),
                Ec2Adapter::new(moto.ec2_in(r)),
                ebs_lifecycle::aws::ebs::EbsBlocks::new(
                    aws_sdk_ebs::Client::new(&moto.sdk_config_in(r)),
                    ebs_lifecycle::pacing::BucketPacing::NONE,
                ),
            )
        })
        .collect();
    let copies: std::collections::BTreeMap<String, verify_restores::Place<'_>> = elsewhere
        .iter()
        .map(|(r, ec2, blocks)| {
            (
                r.clone(),
                verify_restores::Place {
                    catalog: ec2,
                    volumes: ec2,
                    blocks,
                },
            )
        })
        .collect();
    let summary = verify_restores::handle(
        verify_restores::Ports {
            catalog: &adapter,
            volumes: &adapter,
            blocks: &blocks,
            copies: &copies,
            ledger,
            drills: ledger,
            notifier: &notifier,
        },
        &config,
        &json!({"kind": "tick"}),
        now,
        Deadline::after(std::time::Duration::from_secs(900)),
    )
    .await
    .unwrap();
    (summary, notifier.sent())
}

async fn volume_ids(ec2: &aws_sdk_ec2::Client) -> Vec<String> {
    let mut ids: Vec<String> = ec2
        .describe_volumes()
        .send()
        .await
        .unwrap()
        .volumes()
        .iter()
        .filter_map(|v| v.volume_id().map(String::from))
        .collect();
    ids.sort();
    ids
}

/// `n` volumes of 1 GiB opted in, each with `snapshots` managed snapshots
/// a day apart; their ids, and each volume's snapshots oldest first.
async fn account(moto: &Moto, n: usize, snapshots: usize) -> Vec<(String, Vec<String>)> {
    let ec2 = moto.ec2();
    let mut out = Vec::new();
    for _ in 0..n {
        let volume = create_volume(&ec2, 1, &[("Backup", "default")]).await;
        let mut ids = Vec::new();
        for _ in 0..snapshots {
            ids.push(managed_snapshot(moto, &volume, "itest", "default", &[]).await);
        }
        out.push((volume, ids));
    }
    out
}

/// A gp3 volume made from `snapshot`, tagged as the deployment's drill
/// `token` (by the drill, or by somebody copying its tags).
async fn volume_of(ec2: &aws_sdk_ec2::Client, snapshot: &str, token: &str) -> String {
    ec2.create_volume()
        .availability_zone("us-east-1a")
        .snapshot_id(snapshot)
        .volume_type(aws_sdk_ec2::types::VolumeType::Gp3)
        .tag_specifications(tag_spec(
            aws_sdk_ec2::types::ResourceType::Volume,
            &[
                ("lifecycle:managed-by", "itest"),
                ("lifecycle:drill", token),
            ],
        ))
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string()
}

const NOW: &str = "2026-06-07T05:00:00Z";

#[tokio::test]
async fn drills_restore_the_newest_proven_snapshot_of_each_volume_read_its_blocks_and_leave_no_volume(
) {
    let moto = Moto::start();
    // The block maps follow from the volume ids: the same ones every run.
    moto.seed_ids(39);
    let ec2 = moto.ec2();
    let volumes = account(&moto, 3, 3).await;
    // A hand-made snapshot wearing the deployment's tags, newest of the
    // first volume: never the one drilled.
    let forged = hand_made_snapshot(&ec2, &volumes[0].0).await;
    put_tags(
        &ec2,
        &forged,
        &[
            ("lifecycle:managed-by", "itest"),
            ("lifecycle:policy", "default"),
            ("lifecycle:volume-id", &volumes[0].0),
        ],
    )
    .await;
    let before = volume_ids(&ec2).await;

    let (summary, sent) = run(&moto, &[("RESTORE_DRILLS_PER_RUN", "4")], t(NOW)).await;

    assert_eq!(
        (summary.passed, summary.failed, summary.inconclusive),
        (4, 0, 0),
        "{summary:#?}"
    );
    let newest: Vec<_> = summary
        .drills
        .iter()
        .filter(|d| d.pick == Pick::Newest)
        .collect();
    assert_eq!(newest.len(), 3);
    for (volume, snapshots) in &volumes {
        let d = newest.iter().find(|d| &d.volume_id == volume).unwrap();
        assert_eq!(
            &d.snapshot_id,
            snapshots.last().unwrap(),
            "the newest proven, never the forged"
        );
        assert_eq!(d.older_id.as_ref(), Some(&snapshots[1]));
        assert_eq!(d.blocks_read, ebs_lifecycle_core::drills::BLOCKS_PER_DRILL);
        assert!(d.chain_blocks > 0, "{d:?}");
        assert!(d.drill_volume.is_some());
    }
    let older = summary
        .drills
        .iter()
        .find(|d| d.pick == Pick::Older)
        .unwrap();
    assert!(volumes
        .iter()
        .any(|(_, s)| s[..2].contains(&older.snapshot_id)));
    assert!(summary.drills.iter().all(|d| d.snapshot_id != forged));
    assert_eq!(volume_ids(&ec2).await, before, "every drill volume deleted");
    assert!(sent
        .iter()
        .all(|n| n.kind != NotificationKind::RestoreDrillFailed));
    let verified = moto
        .ledger()
        .verifications(&volumes.iter().map(|(v, _)| v.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(
        verified.len(),
        3,
        "each volume's last passed drill recorded"
    );
    assert!(moto.ledger().open_drills().await.unwrap().is_empty());
    for d in &summary.drills {
        println!(
            "drill {} ({:?}): {:.1} s to available, {} blocks read, {} chain blocks, {} requests",
            d.snapshot_id, d.pick, d.seconds, d.blocks_read, d.chain_blocks, d.requests
        );
    }
}

#[tokio::test]
async fn a_corrupted_block_a_broken_chain_and_a_volume_in_error_fail_their_drills_and_alert_once() {
    let moto = Moto::start();
    moto.seed_ids(42);
    let ec2 = moto.ec2();
    let volumes = account(&moto, 3, 2).await;
    let newest = |i: usize| volumes[i].1.last().unwrap().clone();
    put_tags(&ec2, &newest(0), &[("moto:corrupt-block", "*")]).await;
    put_tags(&ec2, &newest(1), &[("moto:break-chain", "1")]).await;
    put_tags(&ec2, &newest(2), &[("moto:fail-create-volume", "1")]).await;
    let before = volume_ids(&ec2).await;
    // Three newest and one older: every volume in line this run.
    let settings = [("RESTORE_DRILLS_PER_RUN", "4")];

    let (summary, sent) = run(&moto, &settings, t(NOW)).await;

    let failure = |i: usize| {
        summary
            .drills
            .iter()
            .find(|d| d.snapshot_id == newest(i))
            .and_then(|d| d.failure().cloned())
    };
    assert!(
        matches!(failure(0), Some(Failure::Checksum { .. })),
        "{summary:#?}"
    );
    assert!(
        matches!(failure(1), Some(Failure::Chain { ref older, .. }) if older == &volumes[1].1[0])
    );
    assert!(matches!(failure(2), Some(Failure::VolumeFailed { ref state }) if state == "error"));
    assert_eq!(summary.failed, 3);
    let alerts: Vec<_> = sent
        .iter()
        .filter(|n| n.kind == NotificationKind::RestoreDrillFailed)
        .collect();
    assert_eq!(alerts.len(), 3);
    assert!(alerts.iter().all(|n| n.severity == Severity::Critical));
    assert_eq!(
        volume_ids(&ec2).await,
        before,
        "failed drills delete their volumes too"
    );

    // A week later the same snapshots fail again (they are still the
    // volumes' newest, never verified), and nobody is told twice.
    let later = t(NOW) + Duration::days(7);
    let (again, sent) = run(&moto, &settings, later).await;
    assert_eq!(again.failed, 3, "{again:#?}");
    assert!(sent
        .iter()
        .all(|n| n.kind != NotificationKind::RestoreDrillFailed));
}

#[tokio::test]
async fn a_killed_runs_drill_volume_is_deleted_by_the_next_run_and_a_forged_drill_tag_is_not_obeyed(
) {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let volumes = account(&moto, 1, 1).await;
    let snapshot = volumes[0].1[0].clone();
    let token = "drill-1780000000-".to_string() + &snapshot;
    let ledger = moto.ledger();
    ledger
        .begin_drill(&DrillRecord {
            token: token.clone(),
            snapshot_id: snapshot.clone(),
            started_at: t(NOW) - Duration::days(7),
            drill_volume: None,
            region: None,
        })
        .await
        .unwrap();
    // What the killed run made a minute after its record (its CreateVolume
    // answer lost)...
    moto.set_clock(Some(t(NOW) - Duration::days(7) + Duration::minutes(1)));
    let leftover = volume_of(&ec2, &snapshot, &token).await;
    // ...and, the same minute, a production volume somebody tagged with
    // the same token.
    let production = create_volume(&ec2, 8, &[("lifecycle:drill", &token)]).await;
    // A day later an operator restores the same snapshot and copies the
    // drill's tags onto it: not the drill's either.
    moto.set_clock(Some(t(NOW) - Duration::days(6)));
    let restored = volume_of(&ec2, &snapshot, &token).await;
    moto.set_clock(None);
    // A drill in progress right now (another run's) is not touched.
    let recent = "drill-recent-".to_string() + &snapshot;
    ledger
        .begin_drill(&DrillRecord {
            token: recent.clone(),
            snapshot_id: snapshot.clone(),
            started_at: t(NOW) - Duration::minutes(2),
            drill_volume: None,
            region: None,
        })
        .await
        .unwrap();

    let (summary, _) = run(&moto, &[("RESTORE_DRILLS_PER_RUN", "0")], t(NOW)).await;

    assert_eq!(summary.cleanup.deleted, std::slice::from_ref(&leftover));
    let mut refused = summary.cleanup.refused.clone();
    refused.sort();
    let mut expected = vec![production.clone(), restored.clone()];
    expected.sort();
    assert_eq!(refused, expected);
    let left = volume_ids(&ec2).await;
    assert!(!left.contains(&leftover));
    assert!(left.contains(&production) && left.contains(&restored));
    let open: Vec<String> = ledger
        .open_drills()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.token)
        .collect();
    assert_eq!(
        open,
        [recent],
        "the killed run's record ended, the running one's kept"
    );
    assert!(
        summary.drills.is_empty(),
        "RESTORE_DRILLS_PER_RUN=0 drills nothing"
    );
}

#[tokio::test]
async fn the_bounds_hold_and_each_run_takes_the_volumes_verified_longest_ago() {
    let moto = Moto::start();
    let volumes = account(&moto, 4, 2).await;
    // Two drills and 2 GiB a run: two 1 GiB volumes' newest, no room for
    // an older one.
    let settings = [
        ("RESTORE_DRILLS_PER_RUN", "3"),
        ("RESTORE_DRILL_MAX_GIB", "2"),
    ];
    let drilled = |s: &RunSummary| {
        let mut v: Vec<String> = s.drills.iter().map(|d| d.volume_id.clone()).collect();
        v.sort();
        v
    };
    let ids: Vec<String> = volumes.iter().map(|(v, _)| v.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();

    let (first, _) = run(&moto, &settings, t(NOW)).await;
    assert_eq!(first.drills.len(), 2, "{first:#?}");
    assert!(first.drills.iter().map(|d| d.size_gib).sum::<u64>() <= 2);
    assert_eq!(drilled(&first), sorted[..2]);
    assert_eq!(first.left_for_later, 2);

    let (second, _) = run(&moto, &settings, t(NOW) + Duration::days(7)).await;
    assert_eq!(
        drilled(&second),
        sorted[2..],
        "never-verified volumes first"
    );

    let (third, _) = run(&moto, &settings, t(NOW) + Duration::days(14)).await;
    assert_eq!(drilled(&third), sorted[..2], "then the oldest verification");
    assert!(third.drills.iter().all(|d| d.verdict == Verdict::Verified));
}

/// `ebs-lifecycle --output json <args>` against moto, as the stack `itest`.
async fn cli(moto: &Moto, args: &[&str]) -> Result<serde_json::Value, String> {
    use clap::Parser;
    let mut argv = vec![
        "ebs-lifecycle",
        "--stack",
        "itest",
        "--ledger-table",
        LEDGER_TABLE,
        "--region",
        REGION,
        "--output",
        "json",
    ];
    argv.extend_from_slice(args);
    let parsed = ebs_lifecycle_cli::args::Cli::try_parse_from(argv).unwrap();
    ebs_lifecycle_cli::run(&parsed, &moto.sdk_config(), &mut |_| {})
        .await
        .map(|o| serde_json::from_str(&o).unwrap())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn ebs_lifecycle_verify_drills_one_proven_snapshot_and_refuses_a_forged_one() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let volumes = account(&moto, 1, 2).await;
    let (volume, snapshots) = &volumes[0];
    let before = volume_ids(&ec2).await;

    let verified = cli(&moto, &["verify", &snapshots[1]]).await.unwrap();
    assert_eq!(verified["verdict"], "verified");
    assert_eq!(verified["pick"], "asked");
    assert_eq!(verified["older_id"], snapshots[0].as_str());
    assert_eq!(verified["blocks_read"], 16);
    assert_eq!(volume_ids(&ec2).await, before);
    let recorded = moto
        .ledger()
        .verifications(std::slice::from_ref(volume))
        .await
        .unwrap();
    assert_eq!(recorded[0].snapshot_id, snapshots[1]);
    // explain shows it: the volume's last verified restore.
    let explained = cli(&moto, &["explain", &snapshots[0]]).await.unwrap();
    assert_eq!(
        explained["last_verified_restore"]["snapshot_id"],
        snapshots[1].as_str()
    );

    let forged = hand_made_snapshot(&ec2, volume).await;
    put_tags(&ec2, &forged, &[("lifecycle:managed-by", "itest")]).await;
    let refused = cli(&moto, &["verify", &forged]).await.unwrap_err();
    assert!(
        refused.contains("not a snapshot this deployment made"),
        "{refused}"
    );

    put_tags(&ec2, &snapshots[0], &[("moto:corrupt-block", "*")]).await;
    let failed = cli(&moto, &["verify", &snapshots[0]]).await.unwrap_err();
    assert!(
        failed.contains("did not restore") && failed.contains("checksum"),
        "{failed}"
    );
    assert_eq!(
        volume_ids(&ec2).await,
        before,
        "no drill volume left, failed or not"
    );
}

const DR: &str = "us-west-2";

/// Copies in the disaster-recovery region are drilled there, in their
/// own rotation beside the home snapshots: the newest copy proven by the
/// ledger's copy record (never a hand-made "copy" wearing the tags), a
/// volume of that region made and deleted, its pass recorded apart from
/// the home snapshots'; a corrupted copy fails its drill and alerts; a
/// killed run's drill volume in that region is deleted by the next run.
#[tokio::test]
async fn disaster_recovery_copies_are_drilled_in_their_region_in_turn() {
    let moto = Moto::start();
    moto.seed_ids(41);
    let ec2 = moto.ec2();
    let dr = moto.ec2_in(DR);
    let volume = create_volume(&ec2, 1, &[("Backup", "gold")]).await;
    let (days, copies) = copied_history(&moto, DR, (&volume, "gold"), 2).await;
    // A snapshot made by hand in the DR region, later, with a copy's tags
    // and Description: no copy record, never drilled as the newest copy.
    moto.set_clock(Some(t("2026-03-02T12:00:00Z")));
    let home_volume_there = dr
        .create_volume()
        .availability_zone("us-west-2a")
        .size(1)
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string();
    let forged = dr
        .create_snapshot()
        .volume_id(&home_volume_there)
        .description(identity("itest").copy(REGION, &days[1]))
        .send()
        .await
        .unwrap()
        .snapshot_id()
        .unwrap()
        .to_string();
    put_tags(
        &dr,
        &forged,
        &[
            (tags::MANAGED_BY, "itest"),
            (tags::COPY_OF, days[1].as_str()),
            (tags::SOURCE_REGION, REGION),
            (tags::VOLUME_ID, volume.as_str()),
            (tags::TARGET, DR),
        ],
    )
    .await;
    moto.set_clock(None);
    let policies = format!(
        r#"{{"gold": {{"schedule": "@daily", "keep": {{"last": 7}},
            "copies": [{{"region": "{DR}", "kms_key": "arn:aws:kms:{DR}:{ACCOUNT}:key/dr", "keep": {{"last": 7}}}}]}}}}"#
    );
    // Two drills a run: one home, one copy.
    let settings = [("RESTORE_DRILLS_PER_RUN", "2")];
    let now = t("2026-03-08T05:00:00Z");
    let (summary, sent) = run_with(&moto, &policies, &settings, &[DR], now).await;
    assert_eq!(summary.copy_regions, [DR.to_string()], "{summary:#?}");
    let copy_drill = summary
        .drills
        .iter()
        .find(|d| d.region.as_deref() == Some(DR))
        .unwrap_or_else(|| panic!("no copy drilled: {summary:#?}"));
    assert_eq!(copy_drill.snapshot_id, copies[1], "the newest proven copy");
    assert_eq!(copy_drill.volume_id, volume);
    assert_eq!(copy_drill.verdict, Verdict::Verified, "{copy_drill:#?}");
    assert!(copy_drill.blocks_read > 0);
    assert_eq!(copy_drill.older_id.as_deref(), Some(copies[0].as_str()));
    let home_drill = summary.drills.iter().find(|d| d.region.is_none()).unwrap();
    assert_eq!(home_drill.snapshot_id, days[1]);
    // The hand-made "copy" is said to be tampering, never drilled.
    assert!(
        sent.iter()
            .all(|n| n.kind == NotificationKind::TamperingSuspected
                && n.details.to_string().contains(&forged)),
        "{sent:?}"
    );
    assert!(summary.drills.iter().all(|d| d.snapshot_id != forged));
    // The drill volume was made in the DR region and is gone again.
    assert!(drill_volumes(&dr).await.is_empty());
    // Each pass recorded under its own key.
    let recorded = moto
        .ledger()
        .verifications(&[
            volume.clone(),
            ebs_lifecycle_core::drills::copy_key(DR, &volume),
        ])
        .await
        .unwrap();
    let snapshot_of = |key: &str| {
        recorded
            .iter()
            .find(|v| v.volume_id == key)
            .map(|v| v.snapshot_id.clone())
    };
    assert_eq!(snapshot_of(&volume), Some(days[1].clone()));
    assert_eq!(
        snapshot_of(&ebs_lifecycle_core::drills::copy_key(DR, &volume)),
        Some(copies[1].clone())
    );

    // The newest copy damaged: its next drill fails, and says so once.
    put_tags(&dr, &copies[1], &[("moto:corrupt-block", "*")]).await;
    // And a killed run's drill volume of the older copy, in the DR region.
    let token = "drill-1780000000-".to_string() + &copies[0];
    moto.ledger()
        .begin_drill(&DrillRecord {
            token: token.clone(),
            snapshot_id: copies[0].clone(),
            started_at: now + Duration::days(6),
            drill_volume: None,
            region: Some(DR.into()),
        })
        .await
        .unwrap();
    moto.set_clock(Some(now + Duration::days(6) + Duration::minutes(1)));
    let leftover = dr
        .create_volume()
        .availability_zone("us-west-2a")
        .snapshot_id(&copies[0])
        .tag_specifications(tag_spec(
            aws_sdk_ec2::types::ResourceType::Volume,
            &[
                ("lifecycle:managed-by", "itest"),
                ("lifecycle:drill", &token),
            ],
        ))
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string();
    moto.set_clock(None);
    let week = now + Duration::days(7);
    let (again, sent) = run_with(&moto, &policies, &settings, &[DR], week).await;
    assert_eq!(again.cleanup.deleted, [leftover], "{again:#?}");
    let failed = again
        .drills
        .iter()
        .find(|d| d.region.as_deref() == Some(DR))
        .unwrap();
    assert_eq!(failed.snapshot_id, copies[1]);
    assert!(
        matches!(failed.failure(), Some(Failure::Checksum { .. })),
        "{failed:#?}"
    );
    let alerts: Vec<_> = sent
        .iter()
        .filter(|n| n.kind == NotificationKind::RestoreDrillFailed)
        .collect();
    assert_eq!(alerts.len(), 1, "{sent:?}");
    // Without a second drill to spare, copies wait: the home snapshots come first.
    let (one, _) = run_with(
        &moto,
        &policies,
        &[("RESTORE_DRILLS_PER_RUN", "1")],
        &[DR],
        week + Duration::days(7),
    )
    .await;
    assert!(one.drills.iter().all(|d| d.region.is_none()), "{one:#?}");
    assert!(one.copy_regions.is_empty());
    // The damaged copy replaced by one EBS compares with nothing before it
    // (a copy made in full): the drill stands on its own blocks, the chain
    // is not checked, and nothing fails.
    dr.delete_tags()
        .resources(&copies[1])
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("moto:corrupt-block")
                .build(),
        )
        .send()
        .await
        .unwrap();
    put_tags(&dr, &copies[1], &[("moto:unrelated", "yes")]).await;
    let (full, sent) = run_with(
        &moto,
        &policies,
        &settings,
        &[DR],
        week + Duration::days(14),
    )
    .await;
    let drilled = full
        .drills
        .iter()
        .find(|d| d.region.as_deref() == Some(DR))
        .unwrap();
    assert_eq!(drilled.snapshot_id, copies[1]);
    assert_eq!(drilled.verdict, Verdict::Verified, "{drilled:#?}");
    assert_eq!(drilled.chain_blocks, 0);
    assert!(sent
        .iter()
        .all(|n| n.kind != NotificationKind::RestoreDrillFailed));
}

//! archive-snapshots on moto (with the project's archive-tier emulation,
//! scripts/moto_ebs_fixes.py): exactly the snapshots whose numbers pay are
//! archived, each move is followed to its end, EC2's quotas hold across
//! runs, a failure is reported once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use archive_snapshots::ArchiveSummary;
use ebs_lifecycle::aws::ebs::EbsBlocks;
use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::ports::ledger::Ledger;
use ebs_lifecycle_core::notify::NotificationKind;
use ebs_lifecycle_core::tags;
use integration_tests::*;

const BLOCK: f64 = 512.0 * 1024.0;
const GIB: f64 = (1u64 << 30) as f64;

fn t(s: &str) -> DateTime<Utc> {
    tags::parse_time(s).unwrap()
}

struct World<'a> {
    moto: &'a Moto,
    adapter: &'a Ec2Adapter,
    blocks: &'a EbsBlocks,
    notifier: &'a RecordingNotifier,
    config: &'a ebs_lifecycle::config::Config,
}

impl World<'_> {
    async fn run(&self, event: serde_json::Value, now: DateTime<Utc>) -> ArchiveSummary {
        self.run_until(
            event,
            now,
            Deadline::after(std::time::Duration::from_secs(600)),
        )
        .await
    }

    async fn run_until(
        &self,
        event: serde_json::Value,
        now: DateTime<Utc>,
        deadline: Deadline,
    ) -> ArchiveSummary {
        archive_snapshots::handle(
            archive_snapshots::Ports {
                catalog: self.adapter,
                inventory: self.adapter,
                protections: self.adapter,
                blocks: self.blocks,
                archiver: self.adapter,
                tagger: self.adapter,
                notifier: self.notifier,
                ledger: self.moto.ledger(),
            },
            self.config,
            &event,
            now,
            deadline,
        )
        .await
        .unwrap()
    }

    async fn daily(&self, now: DateTime<Utc>) -> ArchiveSummary {
        self.run(json!({"kind": "tick"}), now).await
    }
}

/// EC2's archive event for `id`, as AWS documents it.
fn archive_event(id: &str, result: &str) -> serde_json::Value {
    json!({
        "version": "0", "id": "01234567-0123-0123-0123-012345678901",
        "detail-type": "EBS Snapshot Notification", "source": "aws.ec2",
        "account": ACCOUNT, "time": "2026-12-02T07:00:00Z", "region": REGION,
        "resources": [format!("arn:aws:ec2:{REGION}::snapshot/{id}")],
        "detail": {
            "event": "archiveSnapshot", "result": result, "cause": "",
            "request-id": "1", "snapshot_id": format!("arn:aws:ec2:{REGION}::snapshot/{id}"),
            "startTime": "2026-12-02T00:00:00Z", "endTime": "2026-12-02T06:00:00Z"
        }
    })
}

/// Snapshots of `volume` at `slots`, each writing the block ranges given
/// (moto's `moto:writes`), made as create-snapshots makes them.
async fn history(moto: &Moto, volume: &str, policy: &str, slots: &[(&str, &str)]) -> Vec<String> {
    let ec2 = moto.ec2();
    let mut ids = Vec::new();
    for (slot, writes) in slots {
        put_tags(&ec2, volume, &[("moto:writes", writes)]).await;
        let labels = labels_for(volume, "itest", policy, t(slot));
        ids.push(snapshot_as_created(moto, volume, &labels, &[]).await);
        // Let moto's clock file change between snapshots.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    ids
}

/// `n` volumes under `gfs`, each with three snapshots: the oldest, one of
/// 2025-12-01 whose 900 blocks the newest writes again (archiving it pays),
/// the newest. Returns each volume with its paying snapshot.
async fn volumes_that_pay(moto: &Moto, n: usize) -> Vec<(String, String)> {
    let ec2 = moto.ec2();
    let mut out = Vec::new();
    for _ in 0..n {
        let volume = create_volume(&ec2, 1, &[("Backup", "gfs")]).await;
        let mut middle = String::new();
        for (slot, writes) in [
            ("2025-06-01T00:00:00Z", "0-1023"),
            ("2025-12-01T00:00:00Z", "0-899"),
            ("2026-12-01T00:00:00Z", "0-899"),
        ] {
            put_tags(&ec2, &volume, &[("moto:writes", writes)]).await;
            let labels = labels_for(&volume, "itest", "gfs", t(slot));
            let id = snapshot_as_created(moto, &volume, &labels, &[]).await;
            if slot.starts_with("2025-12") {
                middle = id;
            }
        }
        out.push((volume, middle));
    }
    out
}

async fn tier_tags(ec2: &aws_sdk_ec2::Client) -> BTreeMap<String, (String, Option<String>)> {
    snapshots(ec2)
        .await
        .into_iter()
        .filter_map(|s| {
            let tier = s.tags.get(tags::TIER)?.clone();
            Some((s.id, (tier, s.tags.get(tags::ARCHIVED_AT).cloned())))
        })
        .collect()
}

const GFS: &str = r#"{"gfs": {"schedule": "@monthly",
    "keep": {"last": 1, "monthly": 12, "yearly": 3},
    "archive": {"after": "90d", "rules": ["monthly", "yearly"]}}}"#;

/// Two years of a 1 GiB volume (2,048 blocks of 512 KiB) kept by monthly
/// and yearly rules, written by hand so that each snapshot's unique bytes
/// are known: a snapshot's unique blocks are those it wrote that the next
/// one writes again.
///
/// | snapshot | writes | unique | kept by, projected end | verdict |
/// |---|---|---|---|---|
/// | 2024-12-01 | 0-1023 | - | yearly | the oldest: stays |
/// | 2025-12-01 | 0-899 | 700 (0-699) | yearly, to 2028-01-01 (395 days) | archived |
/// | 2026-01-01 | 0-699 | 700 | monthly, to 2027-01-01 (30 days) | costs more: 90 days minimum |
/// | 2026-02-01 | 0-699 | 0 | monthly | costs more: every block shared |
/// | 2026-03-01 | 700-1599 | 900 | monthly, to 2027-03-01 (89 days) | archived |
/// | 2026-04-01 .. 2026-09-01 | 700-1599, 1600-1623, 0-9, 10-19, 20-29, 30-39 | 0 | monthly | costs more: shared |
/// | 2026-10-01, 2026-11-01, 2026-12-01 | 40-49, 50-59, 60-69 | | | younger than 90 days |
///
/// The archive tier stores the full snapshot: 1,024 blocks (0.5 GiB) up
/// to 2026-02-01, 1,600 from 2026-03-01. At 0.05 and 0.0125 USD per
/// GB-month, 30-day months: 2025-12-01 costs 700 blocks x 0.05 x 395/30 =
/// 0.2250 USD standard against 0.5 GiB x 0.0125 x 395/30 = 0.0823
/// archived: saves 0.1427. 2026-03-01: 0.0652 against 0.0293 (its 89 days
/// billed as 90): saves 0.0359. 2026-01-01: 0.0171 against 0.0188 (90 days
/// for 30): costs 0.0017 more, refused.
#[tokio::test]
async fn exactly_the_snapshots_that_pay_are_archived_and_followed_to_the_end() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let adapter = Ec2Adapter::new(ec2.clone());
    let notifier = RecordingNotifier::default();
    let config = config(GFS);
    let volume = create_volume(&ec2, 1, &[("Backup", "gfs")]).await;
    let ids = history(
        &moto,
        &volume,
        "gfs",
        &[
            ("2024-12-01T00:00:00Z", "0-1023"),
            ("2025-12-01T00:00:00Z", "0-899"),
            ("2026-01-01T00:00:00Z", "0-699"),
            ("2026-02-01T00:00:00Z", "0-699"),
            ("2026-03-01T00:00:00Z", "700-1599"),
            ("2026-04-01T00:00:00Z", "700-1599"),
            ("2026-05-01T00:00:00Z", "1600-1623"),
            ("2026-06-01T00:00:00Z", "0-9"),
            ("2026-07-01T00:00:00Z", "10-19"),
            ("2026-08-01T00:00:00Z", "20-29"),
            ("2026-09-01T00:00:00Z", "30-39"),
            ("2026-10-01T00:00:00Z", "40-49"),
            ("2026-11-01T00:00:00Z", "50-59"),
            ("2026-12-01T00:00:00Z", "60-69"),
        ],
    )
    .await;
    let (blocks, counter) = moto.ebs_blocks();
    let world = World {
        moto: &moto,
        adapter: &adapter,
        blocks: &blocks,
        notifier: &notifier,
        config: &config,
    };
    let now = t("2026-12-02T00:00:00Z");
    moto.set_clock(Some(now));
    let first = world.daily(now).await;

    let started: Vec<&str> = first
        .archive_started
        .iter()
        .map(|m| m.snapshot_id.as_str())
        .collect();
    assert_eq!(started, [ids[1].as_str(), ids[4].as_str()], "{first:#?}");
    // The hand computation above, to the cent.
    let usd = |blocks: f64, price: f64, days: f64| blocks * BLOCK / GIB * price * days / 30.0;
    let yearly = usd(700.0, 0.05, 395.0) - usd(1024.0, 0.0125, 395.0);
    let monthly = usd(900.0, 0.05, 89.0) - usd(1600.0, 0.0125, 90.0);
    assert!((first.archive_started[0].saving_usd - yearly).abs() < 0.005);
    assert!((first.archive_started[1].saving_usd - monthly).abs() < 0.005);
    assert_eq!(first.archive_started[0].unique_bytes as f64, 700.0 * BLOCK);
    assert_eq!(first.archive_started[0].full_bytes as f64, 1024.0 * BLOCK);
    assert_eq!(first.archive_started[1].full_bytes as f64, 1600.0 * BLOCK);
    // Measured: the ten that passed every other rule, two walks each.
    assert_eq!(first.measured, 10);
    assert_eq!(first.block_requests, 20);
    assert_eq!(counter.all().values().sum::<usize>(), 20);
    assert_eq!(
        first.stays,
        BTreeMap::from([("costs-more", 8), ("oldest", 1), ("too-young", 3)])
    );
    // The 90-day minimum turns 2026-01-01 down: 30 days of 700 blocks in
    // the standard tier cost less than 90 days of 1,024 in the archive.
    let refused: BTreeMap<&str, f64> = first
        .refused
        .iter()
        .filter_map(|r| match r.why {
            ebs_lifecycle_core::archive::Stay::CostsMore { usd } => {
                Some((r.snapshot_id.as_str(), usd))
            }
            _ => None,
        })
        .collect();
    let short = usd(1024.0, 0.0125, 90.0) - usd(700.0, 0.05, 30.0);
    assert!(short > 0.0);
    assert!(
        (refused[ids[2].as_str()] - short).abs() < 0.001,
        "{refused:?}"
    );
    // Every block shared: archiving only adds the full size.
    assert!(refused[ids[3].as_str()] > 0.0);
    assert_eq!(first.in_progress, 2);
    let tiers = tier_tags(&ec2).await;
    assert_eq!(tiers[&ids[1]].0, "archiving");
    assert_eq!(tiers[&ids[4]].0, "archiving");
    assert_eq!(tiers.len(), 2);

    // The next day, the two are still moving (EC2 takes hours; here six):
    // nothing is asked again.
    counter.reset();
    let again = world.daily(now + Duration::hours(1)).await;
    assert!(again.archive_started.is_empty());
    assert_eq!(again.stays.get("archiving"), Some(&2));

    // EC2 finishes; its event tags each archived, with when.
    let later = now + Duration::hours(7);
    moto.set_clock(Some(later));
    let done = world.run(archive_event(&ids[1], "succeeded"), later).await;
    assert_eq!(done.archive_completed, [ids[1].clone()]);
    let tiers = tier_tags(&ec2).await;
    assert_eq!(tiers[&ids[1]].0, "archive");
    // Six hours after the request (moto's clock ran on a few seconds).
    let archived_at = t(tiers[&ids[1]].1.as_deref().unwrap());
    assert!(
        (archived_at - (now + Duration::hours(6)))
            .num_seconds()
            .abs()
            < 60
    );
    // The daily reconcile catches the one whose event was lost.
    let daily = world.daily(later).await;
    assert_eq!(daily.archive_completed, [ids[4].clone()]);
    assert!(daily.archive_started.is_empty());
    assert_eq!(daily.stays.get("already-archived"), Some(&2));
    assert_eq!(tier_tags(&ec2).await[&ids[4]].0, "archive");
    // An archived snapshot can be neither copied nor shared.
    let copy = ec2
        .copy_snapshot()
        .source_snapshot_id(&ids[1])
        .source_region(REGION)
        .send()
        .await;
    assert!(format!("{:?}", copy.unwrap_err()).contains("IncorrectState"));
    assert!(notifier.sent().is_empty());
}

/// 26 volumes with one snapshot that pays each: EC2 lets 25 archivals be in
/// progress; the 26th waits for a run after they end. A failed archival is
/// reported once, and the snapshot is considered again.
#[tokio::test]
async fn the_account_quota_holds_across_runs_and_a_failure_is_reported_once() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let adapter = Ec2Adapter::new(ec2.clone());
    let notifier = RecordingNotifier::default();
    let config = config(GFS);
    let middles: Vec<String> = volumes_that_pay(&moto, 26)
        .await
        .into_iter()
        .map(|(_, middle)| middle)
        .collect();
    let (blocks, _) = moto.ebs_blocks();
    let world = World {
        moto: &moto,
        adapter: &adapter,
        blocks: &blocks,
        notifier: &notifier,
        config: &config,
    };
    let now = t("2026-12-02T00:00:00Z");
    moto.set_clock(Some(now));
    let first = world.daily(now).await;
    assert_eq!(first.archive_started.len(), 25, "{:?}", first.errors);
    assert_eq!(first.stays.get("account-quota"), Some(&1));
    assert_eq!(first.in_progress, 25);
    // One of the 25 moving will fail (moto's test hook, read when the move
    // ends). Which 25 start follows the candidates' order (moto's random
    // ids), so the failing one is picked among those that did: tagging one
    // chosen beforehand made this test fail whenever it was the one left
    // waiting.
    let failing = first.archive_started[0].snapshot_id.clone();
    assert!(middles.contains(&failing));
    put_tags(&ec2, &failing, &[("moto:archive-fails", "yes")]).await;

    // Still moving: no room.
    let second = world.daily(now + Duration::hours(2)).await;
    assert!(second.archive_started.is_empty());
    assert_eq!(second.stays.get("account-quota"), Some(&1));

    // Ended: 24 archived, one failed (reported, tagged standard), the 26th
    // started, and the failed one asked again.
    let later = now + Duration::hours(7);
    moto.set_clock(Some(later));
    let third = world.daily(later).await;
    assert_eq!(third.archive_completed.len(), 24);
    assert_eq!(third.archive_failed.len(), 1);
    assert_eq!(third.archive_failed[0].snapshot_id, failing);
    assert_eq!(third.archive_started.len(), 2);
    let failures: Vec<_> = notifier
        .sent()
        .into_iter()
        .filter(|n| n.kind == NotificationKind::ArchiveFailed)
        .collect();
    assert_eq!(failures.len(), 1);
    assert!(failures[0].summary.contains(&failing));

    // It fails again: seen, not reported again.
    let last = later + Duration::hours(7);
    moto.set_clock(Some(last));
    let fourth = world.daily(last).await;
    assert_eq!(fourth.archive_failed.len(), 1);
    assert_eq!(
        notifier
            .sent()
            .iter()
            .filter(|n| n.kind == NotificationKind::ArchiveFailed)
            .count(),
        1
    );
}

/// report-snapshots' cached figures spare the walks of what they say costs
/// more; a figure that says a snapshot pays is never taken on trust (anyone
/// may write it): the snapshot is measured anew before it moves.
#[tokio::test]
async fn the_reports_figures_spare_walks_but_never_move_a_snapshot() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let adapter = Ec2Adapter::new(ec2.clone());
    let notifier = RecordingNotifier::default();
    // Three months, so that the sparse history below ends its months as a
    // monthly history would.
    let config = config(
        r#"{"gfs": {"schedule": "@monthly",
            "keep": {"last": 1, "monthly": 3, "yearly": 3},
            "archive": {"after": "90d", "rules": ["monthly", "yearly"]}}}"#,
    );
    let volume = create_volume(&ec2, 1, &[("Backup", "gfs")]).await;
    // Yearly `pays` (700 of its blocks rewritten next), monthly `short`
    // (30 days left) and `shared` (10 blocks alone), the newest.
    let ids = history(
        &moto,
        &volume,
        "gfs",
        &[
            ("2025-06-01T00:00:00Z", "0-1023"),
            ("2025-12-01T00:00:00Z", "0-899"),
            ("2026-01-01T00:00:00Z", "0-699"),
            ("2026-02-01T00:00:00Z", "0-699"),
            ("2026-12-01T00:00:00Z", "0-9"),
        ],
    )
    .await;
    let (pays, short, shared) = (&ids[1], &ids[2], &ids[3]);
    let (blocks, counter) = moto.ebs_blocks();
    let now = t("2026-12-02T00:00:00Z");
    moto.set_clock(Some(now));
    report_snapshots::handle(
        report_snapshots::Ports {
            catalog: &adapter,
            inventory: &adapter,
            protections: &adapter,
            blocks: &blocks,
            tagger: &adapter,
            notifier: &notifier,
            ledger: moto.ledger(),
            drills: moto.ledger(),
            reports: None,
        },
        &config,
        &json!({"kind": "tick"}),
        now,
        Deadline::after(std::time::Duration::from_secs(600)),
    )
    .await
    .unwrap();
    // Someone writes `shared` a figure that says it pays: every block its own.
    let basis = snapshots(&ec2)
        .await
        .into_iter()
        .find(|s| &s.id == shared)
        .unwrap()
        .tags[tags::UNIQUE_BASIS]
        .clone();
    let forged_basis = format!("{} {}", 1024 * 512 * 1024, basis.split_once(' ').unwrap().1);
    put_tags(
        &ec2,
        shared,
        &[
            (tags::UNIQUE_BYTES, &(1024u64 * 512 * 1024).to_string()),
            (tags::UNIQUE_BASIS, &forged_basis),
        ],
    )
    .await;
    counter.reset();
    let world = World {
        moto: &moto,
        adapter: &adapter,
        blocks: &blocks,
        notifier: &notifier,
        config: &config,
    };
    let run = world.daily(now).await;
    let started: Vec<&str> = run
        .archive_started
        .iter()
        .map(|m| m.snapshot_id.as_str())
        .collect();
    assert_eq!(started, [pays.as_str()]);
    // `short`: the report's figure turns it down, no walk. `pays` and the
    // forged `shared`: two walks each.
    assert_eq!(run.from_report, 1);
    assert_eq!(run.measured, 2);
    assert_eq!(counter.all().values().sum::<usize>(), 4);
    let stays: BTreeMap<&str, &str> = run
        .refused
        .iter()
        .map(|r| (r.snapshot_id.as_str(), r.why.kind()))
        .collect();
    assert_eq!(stays[short.as_str()], "costs-more");
    assert_eq!(stays[shared.as_str()], "costs-more");
}

/// Out of time before the walks: nothing is measured or moved, and the
/// next run starts where this one stopped; a dry run plans the same moves
/// and makes none.
#[tokio::test]
async fn a_run_out_of_time_resumes_and_a_dry_run_moves_nothing() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let adapter = Ec2Adapter::new(ec2.clone());
    let notifier = RecordingNotifier::default();
    let mut volumes: Vec<String> = volumes_that_pay(&moto, 2)
        .await
        .into_iter()
        .map(|(volume, _)| volume)
        .collect();
    volumes.sort();
    let (blocks, counter) = moto.ebs_blocks();
    let now = t("2026-12-02T00:00:00Z");
    moto.set_clock(Some(now));

    let dry = config_with(GFS, &[("DRY_RUN", "true")]);
    let world = World {
        moto: &moto,
        adapter: &adapter,
        blocks: &blocks,
        notifier: &notifier,
        config: &dry,
    };
    let planned = world.daily(now).await;
    assert!(planned.dry_run);
    assert_eq!(planned.archive_started.len(), 2);
    assert_eq!(planned.in_progress, 0);
    let tiers = ec2.describe_snapshot_tier_status().send().await.unwrap();
    assert!(tiers
        .snapshot_tier_statuses()
        .iter()
        .all(|s| s.last_tiering_operation_status().is_none()));
    assert!(tier_tags(&ec2).await.is_empty());

    let config = config(GFS);
    let world = World {
        config: &config,
        ..world
    };
    counter.reset();
    let out_of_time = world
        .run_until(
            json!({"kind": "tick"}),
            now,
            Deadline::after(std::time::Duration::ZERO),
        )
        .await;
    assert!(out_of_time.archive_started.is_empty());
    assert_eq!(
        (out_of_time.measured, out_of_time.volumes_not_reached),
        (0, 2)
    );
    assert_eq!(counter.all().values().sum::<usize>(), 0);
    assert_eq!(
        moto.ledger().cursor("archive-snapshots").await.unwrap(),
        Some(volumes[0].clone())
    );
    let next = world.daily(now).await;
    assert_eq!((next.measured, next.left), (2, 0));
    assert_eq!(next.archive_started.len(), 2);
    assert_eq!(
        moto.ledger().cursor("archive-snapshots").await.unwrap(),
        None
    );
}

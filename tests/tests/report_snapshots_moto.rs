//! report-snapshots' coverage on moto: every volume classed by what
//! protects it, and a stopped schedule noticed as a gap, once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use ebs_lifecycle::aws::ebs::EbsBlocks;
use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::aws::s3::S3ReportStore;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::ports::ledger::Ledger;
use ebs_lifecycle_core::coverage::Cover;
use ebs_lifecycle_core::notify::{NotificationKind, Severity};
use ebs_lifecycle_core::tags;
use integration_tests::*;

fn t(s: &str) -> DateTime<Utc> {
    tags::parse_time(s).unwrap()
}

/// What a report run is given.
struct World<'a> {
    moto: &'a Moto,
    adapter: &'a Ec2Adapter,
    blocks: &'a EbsBlocks,
    notifier: &'a RecordingNotifier,
    config: &'a ebs_lifecycle::config::Config,
    store: Option<&'a S3ReportStore>,
}

impl World<'_> {
    async fn run(&self, now: DateTime<Utc>) -> report_snapshots::Report {
        report_snapshots::handle(
            report_snapshots::Ports {
                catalog: self.adapter,
                inventory: self.adapter,
                protections: self.adapter,
                blocks: self.blocks,
                tagger: self.adapter,
                notifier: self.notifier,
                ledger: self.moto.ledger(),
                drills: self.moto.ledger(),
                reports: self.store.map(|s| s as _),
            },
            self.config,
            &json!({"kind": "tick"}),
            now,
            Deadline::after(std::time::Duration::from_secs(600)),
        )
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn every_volume_is_classed_and_a_stopped_schedule_is_a_gap_reported_once() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let adapter = Ec2Adapter::new(ec2.clone());
    let notifier = RecordingNotifier::default();
    let config = config(r#"{"daily": {"schedule": "@daily", "keep": {"last": 5}}}"#);

    let ok = create_volume(&ec2, 8, &[("Backup", "daily"), ("Name", "ok")]).await;
    let stopped = create_volume(&ec2, 8, &[("Backup", "daily"), ("Name", "stopped")]).await;
    let new = create_volume(&ec2, 8, &[("Backup", "daily"), ("Name", "new")]).await;
    let hand = create_volume(&ec2, 8, &[("Name", "hand")]).await;
    let nothing = create_volume(&ec2, 8, &[("Name", "nothing")]).await;
    let forged = create_volume(&ec2, 8, &[("Name", "forged")]).await;
    for (volume, slot) in [
        (&stopped, "2026-03-01T00:00:00Z"),
        (&ok, "2026-03-05T00:00:00Z"),
    ] {
        let labels = labels_for(volume, "itest", "daily", t(slot));
        snapshot_as_created(&moto, volume, &labels, &[]).await;
    }
    hand_made_snapshot(&ec2, &hand).await;
    // Our tags on a hand-made snapshot make nothing protected by us.
    let fake = hand_made_snapshot(&ec2, &forged).await;
    put_tags(
        &ec2,
        &fake,
        &[
            ("lifecycle:managed-by", "itest"),
            ("lifecycle:policy", "daily"),
        ],
    )
    .await;

    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto.sdk_config())
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket("itest-reports")
        .send()
        .await
        .unwrap();
    let store =
        ebs_lifecycle::aws::s3::S3ReportStore::for_bucket(&moto.sdk_config(), "itest-reports");
    let (blocks, _) = moto.ebs_blocks();
    let world = World {
        moto: &moto,
        adapter: &adapter,
        blocks: &blocks,
        notifier: &notifier,
        config: &config,
        store: Some(&store),
    };
    let run = |now: DateTime<Utc>| world.run(now);
    let gaps = |n: &RecordingNotifier| -> Vec<(String, Severity)> {
        n.sent()
            .iter()
            .filter(|n| n.kind == NotificationKind::CoverageGap)
            .map(|n| {
                (
                    n.details["volume_id"].as_str().unwrap().to_string(),
                    n.severity,
                )
            })
            .collect()
    };

    let now = t("2026-03-05T12:00:00Z");
    let report = run(now).await;
    let cover = |id: &str| {
        report
            .coverage
            .iter()
            .find(|c| c.volume_id == id)
            .unwrap()
            .clone()
    };
    assert_eq!(cover(&ok).cover, Cover::Deployment);
    assert_eq!(cover(&ok).gap, None);
    assert_eq!(cover(&new).gap, None, "first seen now");
    assert_eq!(cover(&hand).cover, Cover::HandMade);
    assert_eq!(cover(&nothing).cover, Cover::Unprotected);
    assert_eq!(
        cover(&forged).cover,
        Cover::HandMade,
        "a forged tag protects nothing"
    );
    // Four and a half days without a snapshot of a daily policy: critical.
    assert_eq!(gaps(&notifier), [(stopped.clone(), Severity::Critical)]);
    assert_eq!(report.by_cover["deployment"], 3);

    // The same gap is not reported again.
    run(now + Duration::hours(1)).await;
    assert_eq!(gaps(&notifier).len(), 1);

    // Three days on with no snapshot: the new volume and `ok` are in a gap
    // too, each reported once; `stopped` was already.
    let later = run(now + Duration::days(3)).await;
    assert_eq!(later.gaps, 3);
    let mut reported = gaps(&notifier);
    reported.sort();
    let mut want = vec![
        (stopped.clone(), Severity::Critical),
        (ok.clone(), Severity::Warning),
        (new.clone(), Severity::Warning),
    ];
    want.sort();
    assert_eq!(reported, want);

    // The report is in the bucket, dated and as the latest: the JSON says
    // what the summary says, the CSV has a row per volume, the page charts
    // the same counts, with nothing to fetch from elsewhere.
    let get = |key: &'static str| {
        let s3 = s3.clone();
        async move {
            let object = s3
                .get_object()
                .bucket("itest-reports")
                .key(key)
                .send()
                .await
                .unwrap();
            String::from_utf8(object.body.collect().await.unwrap().to_vec()).unwrap()
        }
    };
    assert_eq!(
        later.location.as_deref(),
        Some("s3://itest-reports/coverage/2026-03-08/report.html")
    );
    let json: serde_json::Value =
        serde_json::from_str(&get("coverage/latest/report.json").await).unwrap();
    assert_eq!(json["gaps"], 3);
    assert_eq!(json["by_cover"]["deployment"], 3);
    let csv = get("coverage/2026-03-08/report.csv").await;
    assert_eq!(csv.lines().count(), 1 + later.volumes);
    let page = get("coverage/latest/report.html").await;
    for (cover, n) in json["by_cover"].as_object().unwrap() {
        assert!(
            page.contains(&format!(r#"data-cover="{cover}" data-count="{n}""#)),
            "{cover} {n}"
        );
    }
    assert!(!page.contains("<script") && !page.contains("https://"));
    let cost_csv = get("coverage/latest/cost.csv").await;
    assert_eq!(cost_csv.lines().count(), 1 + later.cost.snapshots);

    // Opened in a real browser (Debian's chromium, Playwright): the charts
    // are drawn to the JSON's numbers, nothing is fetched; a screenshot.
    let dir = workspace_root().join("target/report-page");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("report.html"), &page).unwrap();
    std::fs::write(
        dir.join("report.json"),
        get("coverage/latest/report.json").await,
    )
    .unwrap();
    let checked = std::process::Command::new(workspace_root().join(".venv/bin/python"))
        .arg(workspace_root().join("scripts/check_report_page.py"))
        .arg(dir.join("report.html"))
        .arg(dir.join("report.json"))
        .arg(dir.join("report.png"))
        .output()
        .expect("the project's virtualenv runs the browser check");
    let said = String::from_utf8_lossy(&checked.stdout).to_string()
        + &String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{said}");
    assert!(said.contains("0 problems"), "{said}");
    let png = std::fs::read(dir.join("report.png")).unwrap();
    assert!(
        png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "a screenshot"
    );
    // 2026-03-09 is a Monday: the weekly pointer to the report, once.
    run(t("2026-03-09T06:00:00Z")).await;
    let ready: Vec<_> = notifier
        .sent()
        .into_iter()
        .filter(|n| n.kind == NotificationKind::ReportReady)
        .collect();
    assert_eq!(ready.len(), 1);
    assert!(ready[0]
        .summary
        .contains("s3://itest-reports/coverage/2026-03-09/report.html"));
}

/// A volume the deployment backed up whose selector tag is removed is
/// reported once (`opted-out`, info, with where CloudTrail says who), and
/// again only after it was opted in and backed up anew; a volume never
/// backed up by the deployment is not.
#[tokio::test]
async fn a_volume_whose_selector_tag_is_removed_is_reported_once() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let adapter = Ec2Adapter::new(ec2.clone());
    let notifier = RecordingNotifier::default();
    let config = config(r#"{"daily": {"schedule": "@daily", "keep": {"last": 5}}}"#);
    let left = create_volume(&ec2, 8, &[("Backup", "daily"), ("Name", "left")]).await;
    let stays = create_volume(&ec2, 8, &[("Backup", "daily")]).await;
    let never = create_volume(&ec2, 8, &[("Name", "never")]).await;
    for volume in [&left, &stays] {
        let labels = labels_for(volume, "itest", "daily", t("2026-03-05T00:00:00Z"));
        snapshot_as_created(&moto, volume, &labels, &[]).await;
    }
    let (blocks, _) = moto.ebs_blocks();
    let world = World {
        moto: &moto,
        adapter: &adapter,
        blocks: &blocks,
        notifier: &notifier,
        config: &config,
        store: None,
    };
    let opted_out = |n: &RecordingNotifier| -> Vec<ebs_lifecycle_core::notify::Notification> {
        n.sent()
            .into_iter()
            .filter(|n| n.kind == NotificationKind::OptedOut)
            .collect()
    };
    let now = t("2026-03-05T12:00:00Z");
    assert!(world.run(now).await.opted_out.is_empty());

    ec2.delete_tags()
        .resources(&left)
        .tags(aws_sdk_ec2::types::Tag::builder().key("Backup").build())
        .send()
        .await
        .unwrap();
    let report = world.run(now + Duration::hours(1)).await;
    let ids: Vec<&str> = report
        .opted_out
        .iter()
        .map(|o| o.volume_id.as_str())
        .collect();
    assert_eq!(ids, [left.as_str()], "{never} was never backed up");
    let sent = opted_out(&notifier);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].severity, Severity::Info);
    assert!(sent[0].summary.contains(&left) && sent[0].summary.contains("left"));
    assert!(sent[0].details["next"]
        .as_str()
        .unwrap()
        .contains("CloudTrail"));

    // Seen: not again.
    assert!(world
        .run(now + Duration::hours(2))
        .await
        .opted_out
        .is_empty());
    assert_eq!(opted_out(&notifier).len(), 1);

    // Opted in again and backed up anew, then out again: reported again.
    put_tags(&ec2, &left, &[("Backup", "daily")]).await;
    let labels = labels_for(&left, "itest", "daily", t("2026-03-06T00:00:00Z"));
    snapshot_as_created(&moto, &left, &labels, &[]).await;
    ec2.delete_tags()
        .resources(&left)
        .tags(aws_sdk_ec2::types::Tag::builder().key("Backup").build())
        .send()
        .await
        .unwrap();
    let report = world.run(t("2026-03-06T12:00:00Z")).await;
    assert_eq!(report.opted_out.len(), 1);
    assert_eq!(opted_out(&notifier).len(), 2);
}

/// One volume whose block map is written by hand (moto's `moto:writes`, see
/// scripts/moto_ebs_fixes.py): A writes blocks 0-99, B rewrites 50-59, C
/// rewrites 55-69, D (later) 60-64. By AWS's recipe (blocks changed both from
/// the previous snapshot and to the next): A holds 50-59 alone (B rewrote
/// them), B holds 55-59 alone, C holds 60-64 alone once D exists.
#[tokio::test]
async fn unique_bytes_follow_the_hand_computed_block_map_and_are_cached() {
    const BLOCK: u64 = 512 * 1024;
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let adapter = Ec2Adapter::new(ec2.clone());
    let notifier = RecordingNotifier::default();
    let config = config(r#"{"daily": {"schedule": "@daily", "keep": {"last": 3}}}"#);
    let volume = create_volume(&ec2, 1, &[("Backup", "daily")]).await;
    let slot = t("2026-03-01T00:00:00Z");
    let mut ids = Vec::new();
    for (day, writes) in ["0-99", "50-59", "55-69"].iter().enumerate() {
        put_tags(&ec2, &volume, &[("moto:writes", writes)]).await;
        let labels = labels_for(&volume, "itest", "daily", slot + Duration::days(day as i64));
        ids.push(snapshot_as_created(&moto, &volume, &labels, &[]).await);
        // EC2's StartTime orders the lineage; moto's is to the second.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    let (blocks, counter) = moto.ebs_blocks();
    let world = World {
        moto: &moto,
        adapter: &adapter,
        blocks: &blocks,
        notifier: &notifier,
        config: &config,
        store: None,
    };
    let run = |now: DateTime<Utc>| world.run(now);
    // The run spools each snapshot's row to a file (report.json's volumes
    // are read back from it): the rows as the report's JSON has them.
    let rows = |r: &report_snapshots::Report| -> Vec<serde_json::Value> {
        let volumes = serde_json::to_value(&r.cost.volumes).unwrap();
        assert!(
            r.cost.volumes.iter().all(|v| v.snapshots.is_empty()),
            "no snapshot row is left in memory"
        );
        volumes[0]["snapshots"].as_array().unwrap().clone()
    };
    let unique = |r: &report_snapshots::Report| -> Vec<(Option<u64>, Option<u64>)> {
        rows(r)
            .iter()
            .map(|s| {
                (
                    s["unique_bytes"].as_u64().map(|b| b / BLOCK),
                    s["added_bytes"].as_u64().map(|b| b / BLOCK),
                )
            })
            .collect()
    };

    let now = t("2026-03-03T12:00:00Z");
    let first = run(now).await;
    assert_eq!(
        unique(&first),
        [
            (Some(10), Some(100)),
            (Some(5), Some(10)),
            (Some(15), Some(15))
        ],
        "(unique, added) blocks of A, B, C"
    );
    // What the three store: every block once, 0-99 plus nothing new = 100
    // blocks of A, B's 10 and C's 15.
    assert_eq!(first.cost.standard_bytes, 125 * BLOCK);
    // ListSnapshotBlocks for A, ListChangedBlocks A-B and B-C: one page each.
    assert_eq!(first.cost.requests, 3);
    assert_eq!(counter.all().values().sum::<usize>(), 3);
    // The full size is EC2's: C holds blocks 0-99.
    assert_eq!(rows(&first)[2]["full_bytes"].as_u64(), Some(100 * BLOCK));
    // Cached on the snapshots, with the neighbours they hold for.
    let listed = snapshots(&ec2).await;
    let b = listed.iter().find(|s| s.id == ids[1]).unwrap();
    assert_eq!(b.tags["lifecycle:unique-bytes"], (5 * BLOCK).to_string());
    assert_eq!(
        b.tags["lifecycle:unique-basis"],
        format!("{} {} {}", 10 * BLOCK, ids[0], ids[2])
    );

    // Nothing changed: nothing asked.
    let again = run(now + Duration::hours(1)).await;
    assert_eq!(again.cost.requests, 0);
    assert_eq!(unique(&again), unique(&first));

    // D arrives: C is stale (its next changed), D is new: two diffs.
    put_tags(&ec2, &volume, &[("moto:writes", "60-64")]).await;
    let labels = labels_for(&volume, "itest", "daily", slot + Duration::days(3));
    ids.push(snapshot_as_created(&moto, &volume, &labels, &[]).await);
    let later = now + Duration::days(1);
    let fourth = run(later).await;
    assert_eq!(fourth.cost.requests, 2);
    assert_eq!(fourth.cost.computed, 2);
    assert_eq!(
        unique(&fourth),
        [
            (Some(10), Some(100)),
            (Some(5), Some(10)),
            (Some(5), Some(15)),
            (Some(5), Some(5))
        ]
    );
    // `last 3` lets A go: the dry expiry plan frees A's 10 blocks.
    let v = &fourth.cost.volumes[0];
    assert_eq!(v.snapshot_count, 4);
    assert_eq!(
        rows(&fourth)
            .iter()
            .map(|s| s["expiry_deletes"].as_bool())
            .collect::<Vec<_>>(),
        [Some(true), Some(false), Some(false), Some(false)]
    );
    assert_eq!(v.expiry_frees_bytes, 10 * BLOCK);
    assert_eq!(fourth.cost.expiry_frees_bytes, 10 * BLOCK);
    let standard = 130.0 * BLOCK as f64 / (1u64 << 30) as f64;
    assert!(
        (v.monthly_usd - standard * 0.05).abs() < 1e-9,
        "{}",
        v.monthly_usd
    );

    // B deleted: A and C are stale; A now holds 50-69 alone (B and C
    // rewrote them and only C is left after it), C 60-64.
    ec2.delete_snapshot()
        .snapshot_id(&ids[1])
        .send()
        .await
        .unwrap();
    let fifth = run(later + Duration::hours(1)).await;
    assert_eq!(fifth.cost.computed, 2);
    assert_eq!(
        unique(&fifth),
        [
            (Some(20), Some(100)),
            (Some(5), Some(20)),
            (Some(5), Some(5))
        ]
    );
    // Stored: 100 + 20 + 5 blocks; deleting B freed its 5.
    assert_eq!(fifth.cost.standard_bytes, 125 * BLOCK);
}

/// A run its deadline stops between batches says which volumes it did not
/// read ("not-checked", never "unprotected", no gap claimed), records where
/// it stopped, and the next run starts there: the volume in a gap that the
/// first run did not reach is reported by the second.
/// Volumes enough for two batches (the second of 5), in volume-id order.
async fn two_batches_of_volumes(ec2: &aws_sdk_ec2::Client) -> Vec<String> {
    let mut volumes = Vec::new();
    for _ in 0..report_snapshots::VOLUMES_PER_BATCH + 5 {
        volumes.push(create_volume(ec2, 8, &[]).await);
    }
    volumes.sort();
    volumes
}

/// A report run's ports with `ec2` for every EC2 call, the report kept in
/// the log only.
fn ports_over<'a>(
    ec2: &'a Ec2Adapter,
    blocks: &'a EbsBlocks,
    notifier: &'a RecordingNotifier,
    moto: &'a Moto,
) -> report_snapshots::Ports<'a> {
    report_snapshots::Ports {
        catalog: ec2,
        inventory: ec2,
        protections: ec2,
        blocks,
        tagger: ec2,
        notifier,
        ledger: moto.ledger(),
        drills: moto.ledger(),
        reports: None,
    }
}

#[tokio::test]
async fn a_run_out_of_time_marks_the_rest_not_checked_and_the_next_run_starts_there() {
    use integration_tests::fault_proxy::{Fault, FaultProxy};
    use std::time::Duration as StdDuration;
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let config = config(r#"{"daily": {"schedule": "@daily", "keep": {"last": 5}}}"#);
    let volumes = two_batches_of_volumes(&ec2).await;
    // The last in volume-id order is in the second batch: opted in, its
    // last snapshot four days old (a gap).
    let late = volumes.last().unwrap().clone();
    put_tags(&ec2, &late, &[("Backup", "daily")]).await;
    let labels = labels_for(&late, "itest", "daily", t("2026-03-01T00:00:00Z"));
    snapshot_as_created(&moto, &late, &labels, &[]).await;

    // Every DescribeSnapshots takes a second: the listing at the start (one
    // second), the first batch (its two describes at once: one more); a
    // deadline at 1.5 s is passed when the second batch would begin.
    let proxy = FaultProxy::start(&moto.endpoint).await;
    proxy.inject(
        "DescribeSnapshots",
        1000,
        Fault::Delay(StdDuration::from_secs(1)),
    );
    let slow = Ec2Adapter::new(aws_sdk_ec2::Client::new(
        &proxy.sdk_config(StdDuration::from_secs(10)),
    ));
    let (blocks, _) = moto.ebs_blocks();
    let notifier = RecordingNotifier::default();
    let slow_ports = ports_over(&slow, &blocks, &notifier, &moto);
    let now = t("2026-03-05T12:00:00Z");
    let first = report_snapshots::handle(
        slow_ports,
        &config,
        &json!({"kind": "tick"}),
        now,
        Deadline::after(StdDuration::from_millis(1500)).with_margin(StdDuration::ZERO),
    )
    .await
    .unwrap();

    let second_batch = &volumes[report_snapshots::VOLUMES_PER_BATCH..];
    assert_eq!(
        first.not_checked,
        second_batch.len(),
        "{:?}",
        first.by_cover
    );
    assert_eq!(
        first.progress.stopped_at.as_deref(),
        Some(second_batch[0].as_str())
    );
    assert_eq!(
        moto.ledger().cursor("report-snapshots").await.unwrap(),
        first.progress.stopped_at
    );
    for c in &first.coverage {
        let reached = !second_batch.contains(&c.volume_id);
        assert_eq!(c.cover == Cover::NotChecked, !reached, "{c:?}");
        if reached {
            assert_eq!(c.cover, Cover::Unprotected, "{c:?}");
        }
    }
    let late_cover = first.coverage.iter().find(|c| c.volume_id == late).unwrap();
    assert_eq!(
        (late_cover.policy.as_deref(), &late_cover.gap),
        (Some("daily"), &None),
        "not read: no gap claimed"
    );
    assert_eq!(first.gaps, 0);
    assert!(notifier
        .sent()
        .iter()
        .all(|n| n.kind != NotificationKind::CoverageGap));

    // The next run, with time: starts at the second batch, reads everything,
    // clears the cursor and reports the gap.
    let adapter = Ec2Adapter::new(ec2.clone());
    let next = report_snapshots::handle(
        ports_over(&adapter, &blocks, &notifier, &moto),
        &config,
        &json!({"kind": "tick"}),
        now,
        Deadline::after(StdDuration::from_secs(600)),
    )
    .await
    .unwrap();
    assert_eq!(next.progress.resumed_at, first.progress.stopped_at);
    assert_eq!(
        (next.progress.stopped_at.as_deref(), next.not_checked),
        (None, 0)
    );
    assert_eq!(
        moto.ledger().cursor("report-snapshots").await.unwrap(),
        None
    );
    assert_eq!(next.gaps, 1);
    let gaps: Vec<_> = notifier
        .sent()
        .iter()
        .filter(|n| n.kind == NotificationKind::CoverageGap)
        .map(|n| n.details["volume_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(gaps, vec![late]);
}

/// EC2 failing a batch's listing (after the SDK's retries) stops the run
/// there as the deadline does: the report of what was read stands, the rest
/// is `not-checked`, the summary says why, and the next run starts at the
/// failed batch. A run that fails on its first batch has nothing to show:
/// it fails, and the resume point stays where it was.
#[tokio::test]
async fn a_batch_ec2_will_not_list_stops_the_run_there_and_the_next_starts_at_it() {
    use integration_tests::fault_proxy::{Fault, FaultProxy};
    use std::time::Duration as StdDuration;
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let config = config(r#"{"daily": {"schedule": "@daily", "keep": {"last": 5}}}"#);
    let volumes = two_batches_of_volumes(&ec2).await;
    let second_batch = &volumes[report_snapshots::VOLUMES_PER_BATCH..];

    // The listing at the start and the first batch's two describes pass;
    // every describe after them fails with a 500, retries included.
    let proxy = FaultProxy::start(&moto.endpoint).await;
    proxy.inject("DescribeSnapshots", 3, Fault::Pass);
    proxy.inject("DescribeSnapshots", 1000, Fault::InternalError);
    let failing = Ec2Adapter::new(aws_sdk_ec2::Client::new(
        &proxy.sdk_config(StdDuration::from_secs(10)),
    ));
    let (blocks, _) = moto.ebs_blocks();
    let notifier = RecordingNotifier::default();
    let ports = ports_over(&failing, &blocks, &notifier, &moto);
    let now = t("2026-03-05T12:00:00Z");
    let tick = json!({"kind": "tick"});
    let run = |ports| {
        report_snapshots::handle(
            ports,
            &config,
            &tick,
            now,
            Deadline::after(StdDuration::from_secs(600)),
        )
    };
    let cut = run(ports).await.unwrap();
    assert_eq!(
        cut.progress.stopped_at.as_deref(),
        Some(second_batch[0].as_str())
    );
    assert!(
        cut.progress
            .stopped_by_error
            .as_deref()
            .is_some_and(|e| e.contains(&second_batch[0]) && e.contains("DescribeSnapshots")),
        "{:?}",
        cut.progress.stopped_by_error
    );
    assert_eq!(cut.not_checked, second_batch.len());
    assert_eq!(
        cut.by_cover.get("unprotected"),
        Some(&report_snapshots::VOLUMES_PER_BATCH),
        "the first batch is reported"
    );
    assert_eq!(
        moto.ledger().cursor("report-snapshots").await.unwrap(),
        cut.progress.stopped_at
    );
    let said = serde_json::to_value(cut.summary()).unwrap();
    assert_eq!(
        said["stopped_by_error"],
        json!(cut.progress.stopped_by_error)
    );

    // Starting at the failed batch, EC2 still failing: nothing to show, so
    // the run fails and the resume point stays.
    let proxy = FaultProxy::start(&moto.endpoint).await;
    proxy.inject("DescribeSnapshots", 1, Fault::Pass);
    proxy.inject("DescribeSnapshots", 1000, Fault::InternalError);
    let failing = Ec2Adapter::new(aws_sdk_ec2::Client::new(
        &proxy.sdk_config(StdDuration::from_secs(10)),
    ));
    let failed = run(ports_over(&failing, &blocks, &notifier, &moto)).await;
    assert!(
        matches!(
            failed,
            Err(report_snapshots::ReportError::Ec2Unavailable(_))
        ),
        "{failed:?}"
    );
    assert_eq!(
        moto.ledger().cursor("report-snapshots").await.unwrap(),
        cut.progress.stopped_at
    );

    // EC2 back: the next run starts at the failed batch and goes round.
    let adapter = Ec2Adapter::new(ec2.clone());
    let next = run(ports_over(&adapter, &blocks, &notifier, &moto))
        .await
        .unwrap();
    assert_eq!(next.progress.resumed_at, cut.progress.stopped_at);
    assert_eq!(
        (
            next.progress.stopped_at,
            next.progress.stopped_by_error,
            next.not_checked
        ),
        (None, None, 0)
    );
}

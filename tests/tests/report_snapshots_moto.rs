//! report-snapshots' coverage on moto: every volume classed by what
//! protects it, and a stopped schedule noticed as a gap, once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle_core::coverage::Cover;
use ebs_lifecycle_core::notify::{NotificationKind, Severity};
use ebs_lifecycle_core::tags;
use integration_tests::*;

fn t(s: &str) -> DateTime<Utc> {
    tags::parse_time(s).unwrap()
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
    let run = |now: DateTime<Utc>| {
        let (adapter, notifier, config, moto, store) =
            (&adapter, &notifier, &config, &moto, &store);
        async move {
            report_snapshots::handle(
                report_snapshots::Ports {
                    catalog: adapter,
                    inventory: adapter,
                    notifier,
                    ledger: moto.ledger(),
                    reports: Some(store),
                },
                config,
                &json!({"kind": "tick"}),
                now,
            )
            .await
            .unwrap()
        }
    };
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

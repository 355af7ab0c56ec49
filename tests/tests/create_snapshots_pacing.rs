//! create-snapshots under EC2's CreateSnapshot token bucket, emulated by
//! the fault proxy in front of moto (burst, refill, 60 ms of latency per
//! answer): every due volume is snapshotted once, none fails for
//! throttling while the run has time, and the run holds the bucket's rate.
//! The buckets here are EC2's shape at a faster refill, so the test takes
//! seconds rather than EC2's 5 a second.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use serde_json::json;

use create_snapshots::{handle, BucketPacing, Ports, RunSummary};
use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::lambda::deadline::Deadline;
use integration_tests::fault_proxy::FaultProxy;
use integration_tests::*;

const POLICIES: &str = r#"{"default": {"schedule": "@daily", "keep": {"last": 3}}}"#;

/// What one tick did under the emulated bucket.
struct Tick {
    summary: RunSummary,
    /// Seconds the whole tick took.
    elapsed: f64,
    /// CreateSnapshot requests EC2 refused.
    refused: usize,
    /// CreateSnapshot calls per second EC2 accepted once its burst was spent.
    steady_rate: f64,
}

/// `n` opted-in volumes; then one tick through a proxy whose CreateSnapshot
/// bucket is `ec2`, the function believing `ours`.
async fn one_tick(n: usize, ec2: BucketPacing, ours: BucketPacing) -> Tick {
    let moto = Moto::start();
    let direct = moto.ec2();
    for _ in 0..n {
        create_volume(&direct, 8, &[("Backup", "default")]).await;
    }
    let proxy = FaultProxy::start(&moto.endpoint).await;
    proxy.emulate_bucket("CreateSnapshot", ec2.burst, ec2.per_second);
    proxy.set_latency(Duration::from_millis(60));
    let adapter = Ec2Adapter::new(aws_sdk_ec2::Client::new(
        &proxy.sdk_config(Duration::from_secs(10)),
    ));
    let notifier = RecordingNotifier::default();
    let no_commands = no_commands();
    let ports = Ports {
        bucket: &create_snapshots::Bucket::new(ours),
        ..create_ports(&adapter, &no_commands, &notifier, moto.ledger())
    };
    let now = chrono::Utc::now();
    let started = Instant::now();
    let summary = handle(
        ports,
        &config(POLICIES),
        &json!({"kind": "tick"}),
        now,
        Deadline::after(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let refused = proxy
        .faults_applied()
        .iter()
        .filter(|(op, _)| op == "CreateSnapshot")
        .count();
    let accepted = proxy.passed_at("CreateSnapshot");
    let burst = ec2.burst as usize;
    let steady_rate = match (accepted.get(burst), accepted.last()) {
        (Some(first), Some(last)) if last > first => {
            (accepted.len() - burst - 1) as f64 / last.duration_since(*first).as_secs_f64()
        }
        _ => f64::NAN,
    };
    // Each volume once: no duplicate, none lost.
    let snapshots = snapshots(&direct).await;
    assert_eq!(snapshots.len(), n, "one snapshot per volume");
    Tick {
        summary,
        elapsed,
        refused,
        steady_rate,
    }
}

/// The function's bucket is EC2's at 80% of its burst: the burst goes at
/// once, the rest at the refill rate, nothing is refused, and the run holds
/// the rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_holds_the_buckets_rate_and_loses_no_volume() {
    let bucket = BucketPacing {
        burst: 30.0,
        per_second: 40.0,
    };
    // As in production: the function's burst is 80% of EC2's.
    let ours = BucketPacing {
        burst: 24.0,
        ..bucket
    };
    let n = 150;
    let tick = one_tick(n, bucket, ours).await;
    assert_eq!(tick.summary.counts.created, n);
    assert!(tick.summary.failed.is_empty(), "{:?}", tick.summary.failed);
    assert!(tick.summary.left_for_later.is_empty());
    let held = tick.steady_rate / bucket.per_second;
    eprintln!(
        "pacing: {n} volumes, bucket {}/{} per s: {:.2} s, past the burst {:.1} calls/s ({:.0}% of the refill rate), {} refused",
        bucket.burst,
        bucket.per_second,
        tick.elapsed,
        tick.steady_rate,
        held * 100.0,
        tick.refused
    );
    assert!(
        tick.refused <= 3,
        "{} refused: the run outran the bucket",
        tick.refused
    );
    // The rate the pacer keeps is proven on tokio's paused clock
    // (shared/edge/src/pacing.rs, the_bucket_lets_its_burst_go_at_once_then_holds_its_rate);
    // measured here on the wall clock it is also the machine's: a loaded
    // machine (make test beside make demo) measured 94.9% once. So the
    // figure is printed, and asserted only on request, on an idle machine
    // (docs/development.md, "Measured").
    if std::env::var_os("PACING_RATE_CHECK").is_some() {
        assert!(held >= 0.95, "held {:.0}% of the rate", held * 100.0);
    }
}

/// EC2's bucket is smaller than the function believes (the account's other
/// users drew on it): calls are refused, the function slows down and tries
/// again, and still no volume fails or is duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smaller_bucket_than_believed_slows_the_run_and_loses_no_volume() {
    let ec2 = BucketPacing {
        burst: 10.0,
        per_second: 40.0,
    };
    let ours = BucketPacing {
        burst: 100.0,
        per_second: 80.0,
    };
    let n = 120;
    let tick = one_tick(n, ec2, ours).await;
    eprintln!(
        "pacing: {n} volumes, EC2's bucket 10/40 per s, ours 100/80: {:.2} s, {} refused",
        tick.elapsed, tick.refused
    );
    assert!(tick.refused > 0, "the smaller bucket refused calls");
    assert_eq!(tick.summary.counts.created, n);
    assert!(tick.summary.failed.is_empty(), "{:?}", tick.summary.failed);
    assert!(tick.summary.left_for_later.is_empty());
}

/// Outcome of issue 24 (large accounts): 10,000 volumes due in one slot under
/// EC2's own CreateSnapshot bucket (burst 100, 5 a second, 60 ms per
/// answer), the function's bucket as in production, ticks of 15 minutes back
/// to back (a tick that arrives while one runs waits: reserved concurrency
/// 1). Every volume is snapshotted exactly once; the figure is the minutes
/// from the slot's first tick to the last snapshot started, against the
/// bucket's floor ((n - burst) / 5 s). It takes as long as EC2 would (33
/// minutes and more at 10,000), so `make slot-scale` runs it, not `make test`;
/// `SLOT_VOLUMES` sets the number of volumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real time: 35 minutes at 10,000 volumes; make slot-scale"]
async fn every_volume_due_in_one_slot_is_snapshotted_at_the_buckets_pace() {
    let n: usize = std::env::var("SLOT_VOLUMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let ec2 = BucketPacing {
        burst: 100.0,
        per_second: 5.0,
    };
    let moto = Moto::start();
    let direct = moto.ec2();
    let seeding = Instant::now();
    for _ in 0..n {
        create_volume(&direct, 8, &[("Backup", "default")]).await;
    }
    eprintln!(
        "slot: {n} volumes seeded in {:.0} s",
        seeding.elapsed().as_secs_f64()
    );
    let proxy = FaultProxy::start(&moto.endpoint).await;
    proxy.emulate_bucket("CreateSnapshot", ec2.burst, ec2.per_second);
    proxy.set_latency(Duration::from_millis(60));
    let adapter = Ec2Adapter::new(aws_sdk_ec2::Client::new(
        &proxy.sdk_config(Duration::from_secs(10)),
    ));
    let notifier = RecordingNotifier::default();
    let no_commands = no_commands();
    // One bucket for every tick, as the execution environment keeps it.
    let bucket = create_snapshots::Bucket::new(create_snapshots::CREATE_PACING);
    let started = Instant::now();
    let mut created = 0;
    let mut ticks = 0;
    loop {
        ticks += 1;
        let tick_started = Instant::now();
        let ports = Ports {
            bucket: &bucket,
            ..create_ports(&adapter, &no_commands, &notifier, moto.ledger())
        };
        let summary = handle(
            ports,
            &config(POLICIES),
            &json!({"kind": "tick"}),
            chrono::Utc::now(),
            Deadline::after(Duration::from_secs(900)),
        )
        .await
        .unwrap();
        assert!(summary.failed.is_empty(), "{:?}", summary.failed);
        created += summary.counts.created;
        eprintln!(
            "slot: tick {ticks}: {} started in {:.0} s, {} left for the next tick",
            summary.counts.created,
            tick_started.elapsed().as_secs_f64(),
            summary.left_for_later.len()
        );
        if summary.left_for_later.is_empty() && summary.counts.created == 0 {
            break;
        }
        assert!(ticks < 10, "the slot never finished");
    }
    let accepted = proxy.passed_at("CreateSnapshot");
    let last = accepted.last().expect("snapshots were started");
    let minutes = last.duration_since(started).as_secs_f64() / 60.0;
    let floor = (n as f64 - ec2.burst) / ec2.per_second / 60.0;
    let refused = proxy
        .faults_applied()
        .iter()
        .filter(|(op, _)| op == "CreateSnapshot")
        .count();
    eprintln!(
        "slot: {n} volumes, {created} snapshots started in {ticks} ticks; the last {minutes:.1} minutes after the slot's first tick (the bucket's floor {floor:.1}); {refused} requests refused"
    );
    assert_eq!(created, n);
    let snapshots = snapshots(&direct).await;
    let mut volumes: Vec<_> = snapshots
        .iter()
        .filter_map(|s| s.volume_id.clone())
        .collect();
    volumes.sort_unstable();
    volumes.dedup();
    assert_eq!(snapshots.len(), n, "one snapshot per volume, none twice");
    assert_eq!(volumes.len(), n, "every volume has its snapshot");
    assert!(
        minutes <= floor / 0.95 + 1.0,
        "{minutes:.1} minutes: the run held less than 95% of the bucket's rate"
    );
}

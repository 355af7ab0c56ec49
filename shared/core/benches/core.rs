//! Benchmarks of the pure core (criterion): the retention planner and the
//! full expiry plan on 100,000 snapshots across 1,000 volumes (target under
//! 50 ms), and parsing per item: a policy document, each event shape.
//!
//! Run: `make bench` (or `cargo bench -p ebs-lifecycle-core --profile dev --bench core`).
//! Figures: BENCHMARKS.md.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::Value;

use ebs_lifecycle_core::events::{SnapshotEvent, Tick};
use ebs_lifecycle_core::model::{Snapshot, SnapshotState, Tags};
use ebs_lifecycle_core::policy::Policies;
use ebs_lifecycle_core::safety::{AccountFacts, DeletionGate};
use ebs_lifecycle_core::{expiry, retention, tags};

const VOLUMES: usize = 1_000;
const PER_VOLUME: usize = 100;
const GFS: &str = r#"{"gfs": {"schedule": "@daily", "timezone": "Europe/Berlin",
    "keep": {"last": 3, "daily": 7, "weekly": 4, "monthly": 12, "yearly": 2}}}"#;

fn start() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default()
}

/// 100 managed snapshots per volume, one every 3 days and 5 hours (about
/// ten months), volumes offset by an hour each.
fn history() -> Vec<Snapshot> {
    (0..VOLUMES)
        .flat_map(|v| {
            (0..PER_VOLUME).map(move |i| {
                let mut tags = Tags::new();
                tags.insert(tags::MANAGED_BY.into(), "bench".into());
                tags.insert(tags::POLICY.into(), "gfs".into());
                tags.insert(tags::VOLUME_ID.into(), format!("vol-{v:05}"));
                Snapshot {
                    id: format!("snap-{v:05}-{i:04}"),
                    volume_id: Some(format!("vol-{v:05}")),
                    state: SnapshotState::Completed,
                    start_time: Some(start() + chrono::Duration::hours((i as i64) * 77 + v as i64)),
                    volume_size_gib: Some(100),
                    full_size_bytes: None,
                    archived: false,
                    restore_expiry: None,
                    encrypted: true,
                    kms_key_id: None,
                    description: None,
                    owner_id: None,
                    tags,
                }
            })
        })
        .collect()
}

fn planner(c: &mut Criterion) {
    let policies = Policies::parse(GFS).unwrap_or_else(|e| panic!("benchmark policy: {e}"));
    let keep = policies
        .get("gfs")
        .map(|p| p.keep.clone())
        .unwrap_or_default();
    let snapshots = history();
    let candidates: Vec<Vec<retention::Candidate>> = snapshots
        .chunks(PER_VOLUME)
        .map(|c| {
            c.iter()
                .map(|s| retention::Candidate {
                    id: s.id.clone(),
                    time: s.start_time.unwrap_or_else(start),
                    tags: Vec::new(),
                })
                .collect()
        })
        .collect();
    let existing: BTreeSet<String> = (0..VOLUMES).map(|v| format!("vol-{v:05}")).collect();
    let facts = AccountFacts {
        deployment: "bench".into(),
        now: start() + chrono::Duration::days(400),
        ..AccountFacts::default()
    };

    let mut group = c.benchmark_group("expiry-100k-snapshots-1k-volumes");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements((VOLUMES * PER_VOLUME) as u64));
    group.bench_function("retention planner", |b| {
        b.iter(|| {
            candidates
                .iter()
                .map(|c| {
                    retention::plan(&keep, chrono_tz::Europe::Berlin, black_box(c))
                        .iter()
                        .filter(|d| d.keep())
                        .count()
                })
                .sum::<usize>()
        })
    });
    group.bench_function("full expiry plan (grouping, planner, safety gate)", |b| {
        b.iter(|| {
            let gate = DeletionGate::new(facts.clone(), &snapshots, u32::MAX);
            expiry::plan(black_box(&snapshots), &policies, &existing, &gate)
                .iter()
                .flat_map(|p| &p.snapshots)
                .filter(|s| s.deletable())
                .count()
        })
    });
    group.finish();
}

fn parsing(c: &mut Criterion) {
    let fixture = |name: &str| -> Value {
        let path = format!(
            "{}/../../tests/fixtures/events/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let spec_policies = r#"{
      "default":  { "schedule": "@daily", "timezone": "UTC",
                    "keep": { "last": 3, "daily": 7, "weekly": 4, "monthly": 12 } },
      "critical": { "schedule": "0 * * * *", "timezone": "Europe/Berlin",
                    "keep": { "last": 2, "hourly": 24, "daily": 14, "weekly": 8, "monthly": 24, "yearly": 3 },
                    "copy_tags": ["Name", "Owner", "CostCenter"], "tags": { "Tier": "gold" } }
    }"#;
    let mut group = c.benchmark_group("parse-one");
    group.bench_function(
        "policy document (2 policies, the example of docs/policies-and-tags.md)",
        |b| b.iter(|| Policies::parse(black_box(spec_policies)).is_ok()),
    );
    group.bench_function("policy document rejected (bad cron)", |b| {
        b.iter(|| {
            Policies::parse(black_box(
                r#"{"p": {"schedule": "61 * * * *", "keep": {"last": 1}}}"#,
            ))
            .is_err()
        })
    });
    for name in [
        "create-snapshot-succeeded.json",
        "create-snapshot-failed.json",
        "create-snapshots-completed.json",
    ] {
        let event = fixture(name);
        group.bench_function(format!("event {name}"), |b| {
            b.iter(|| SnapshotEvent::parse(black_box(&event)).is_ok())
        });
    }
    let text = std::fs::read_to_string(format!(
        "{}/../../tests/fixtures/events/create-snapshots-completed.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_default();
    group.bench_function("event from bytes (JSON + parse, multi-volume)", |b| {
        b.iter_batched(
            || text.clone(),
            |t| {
                serde_json::from_str::<Value>(&t)
                    .map(|v| SnapshotEvent::parse(&v).is_ok())
                    .unwrap_or(false)
            },
            BatchSize::SmallInput,
        )
    });
    let tick = serde_json::json!({"kind": "tick", "scheduled_time": "2026-03-01T10:15:00Z"});
    group.bench_function("tick", |b| b.iter(|| Tick::parse(black_box(&tick)).is_ok()));
    group.finish();
}

criterion_group!(benches, planner, parsing);
criterion_main!(benches);

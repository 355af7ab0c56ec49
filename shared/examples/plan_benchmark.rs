//! Planner time for 100,000 snapshots across 1,000 volumes, on one core.
//!
//! Run: `cargo run -p ebs-lifecycle --example plan_benchmark`
//! (the dev profile compiles this crate, chrono and chrono-tz at opt-level 3,
//! see the workspace Cargo.toml). Prints the best of 5 runs.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ebs_lifecycle::model::{Snapshot, SnapshotState, Tags};
use ebs_lifecycle::policy::Policies;
use ebs_lifecycle::safety::{AccountFacts, DeletionGate};
use ebs_lifecycle::{expiry, retention, tags};

const VOLUMES: usize = 1_000;
const PER_VOLUME: usize = 100;

fn main() {
    let policies = Policies::parse(
        r#"{"gfs": {"schedule": "@daily", "timezone": "Europe/Berlin",
                    "keep": {"last": 3, "daily": 7, "weekly": 4, "monthly": 12, "yearly": 2}}}"#,
    )
    .unwrap_or_else(|e| panic!("benchmark policy: {e}"));
    let start = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default();
    let snapshots: Vec<Snapshot> = (0..VOLUMES)
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
                    // Every 3 days and 5 hours: a spread over ~10 months.
                    start_time: Some(start + chrono::Duration::hours((i as i64) * 77 + v as i64)),
                    volume_size_gib: Some(100),
                    encrypted: true,
                    kms_key_id: None,
                    tags,
                }
            })
        })
        .collect();
    let existing: BTreeSet<String> = (0..VOLUMES).map(|v| format!("vol-{v:05}")).collect();
    let facts = AccountFacts {
        deployment: "bench".into(),
        now: start + chrono::Duration::days(400),
        ..AccountFacts::default()
    };
    let keep = policies
        .get("gfs")
        .map(|p| p.keep.clone())
        .unwrap_or_default();
    let candidates: Vec<Vec<retention::Candidate>> = snapshots
        .chunks(PER_VOLUME)
        .map(|c| {
            c.iter()
                .map(|s| retention::Candidate {
                    id: s.id.clone(),
                    time: s.start_time.unwrap_or(start),
                })
                .collect()
        })
        .collect();

    let best = |f: &mut dyn FnMut() -> usize| -> (Duration, usize) {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                let n = f();
                (t.elapsed(), n)
            })
            .min()
            .unwrap_or_default()
    };
    let (planner, kept) = best(&mut || {
        candidates
            .iter()
            .map(|c| {
                retention::plan(&keep, chrono_tz::Europe::Berlin, c)
                    .iter()
                    .filter(|d| d.keep())
                    .count()
            })
            .sum()
    });
    let (full, deletable) = best(&mut || {
        let gate = DeletionGate::new(facts.clone(), &snapshots, u32::MAX);
        expiry::plan(&snapshots, &policies, &existing, &gate)
            .iter()
            .flat_map(|p| &p.snapshots)
            .filter(|s| s.deletable())
            .count()
    });
    println!(
        "{} snapshots across {VOLUMES} volumes, best of 5, one core:",
        snapshots.len()
    );
    println!(
        "  retention planner only:              {:>8.1} ms ({kept} kept)",
        planner.as_secs_f64() * 1e3
    );
    println!(
        "  full expiry plan (grouping + gate):  {:>8.1} ms ({deletable} deletable)",
        full.as_secs_f64() * 1e3
    );
}

//! A large account on moto: volumes with ten snapshots each, plus foreign
//! snapshots, through create, tag (backfill), expire and check-encryption.
//! Every invariant holds and the AWS requests of each run are counted with
//! an SDK interceptor and asserted: one write per item, a constant number of
//! describe pages per 1,000 resources, no per-snapshot describe anywhere.
//!
//! `make test` runs it at 200 volumes (2,000 snapshots); `make scale` at
//! 10,000 volumes (100,000 snapshots), `make scale SCALE_VOLUMES=2000` at
//! 2,000 (20,000).
//!
//! moto pages DescribeSnapshots at `MaxResults` (scripts/moto_ebs_fixes.py)
//! but returns every volume and instance at once; the bounds asserted are
//! those that hold for EC2's pages (volumes 500, snapshots 1,000, filter
//! values 200 per call). Volume pagination is tested with aws-smithy-mocks
//! (create_snapshots_faults.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;

use ebs_lifecycle::aws::ec2::Ec2Adapter;

use ebs_lifecycle::aws::kms::KmsAdapter;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::ports::ec2::TAG_BATCH;
use ebs_lifecycle_core::ownership::Subject;
use ebs_lifecycle_core::tags::{self, ConsistencyLabel, LifecycleLabels, LifecycleState};
use integration_tests::*;

const POLICIES: &str = r#"{"scale": {"schedule": "@daily", "keep": {"last": 7}}}"#;
const HISTORY: usize = 10;
const KEEP: usize = 7;

fn volumes_wanted() -> usize {
    std::env::var("SCALE_VOLUMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// Calls per `n` items at `page` items per call.
fn pages(n: usize, page: usize) -> usize {
    n.div_ceil(page).max(1)
}

/// Run `jobs` futures, `width` at a time (seeding only).
async fn in_parallel<F>(jobs: Vec<F>, width: usize)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for job in jobs {
        if set.len() >= width {
            set.join_next().await.unwrap().unwrap();
        }
        set.spawn(job);
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
}

fn labels(volume: &str, i: usize) -> Vec<(String, String)> {
    let time = |s: String| tags::parse_time(&s).unwrap();
    LifecycleLabels {
        managed_by: "itest".into(),
        policy: "scale".into(),
        slot: time(format!("2026-02-{:02}T00:00:00Z", i + 1)),
        state: LifecycleState::Completed,
        volume_id: Some(volume.into()),
        instance_id: None,
        device: None,
        created_at: time(format!("2026-02-{:02}T00:00:12Z", i + 1)),
        completed_at: None,
        consistency: ConsistencyLabel::Crash,
        retained_by: None,
        expires_at: None,
        hold: false,
    }
    .to_tags()
    .into_iter()
    .collect()
}

struct Account {
    volumes: Vec<String>,
    foreign: BTreeSet<String>,
}

async fn seed(moto: &Moto, n: usize) -> Account {
    let ec2 = &moto.ec2();
    let started = Instant::now();
    let mut volumes = Vec::with_capacity(n);
    for _ in 0..n {
        // Encrypted under the account's default (AWS managed) key, as most
        // accounts are: such snapshots cannot be shared, so check-encryption
        // reads no permissions for them.
        let id = ec2
            .create_volume()
            .availability_zone("us-east-1a")
            .size(8)
            .encrypted(true)
            .tag_specifications(tag_spec(
                aws_sdk_ec2::types::ResourceType::Volume,
                &[("Backup", "scale"), ("Owner", "team-a")],
            ))
            .send()
            .await
            .unwrap()
            .volume_id()
            .unwrap()
            .to_string();
        volumes.push(id);
    }
    // Day by day, moto's clock at each slot: EC2 stamps every snapshot of
    // the history as taken in its slot, with the Description create-snapshots
    // gives it.
    for i in 0..HISTORY {
        let slot = tags::parse_time(&format!("2026-02-{:02}T00:00:00Z", i + 1)).unwrap();
        moto.set_clock(Some(slot + chrono::Duration::seconds(12)));
        let mut jobs = Vec::new();
        for volume in &volumes {
            let (ec2, volume) = (ec2.clone(), volume.clone());
            jobs.push(async move {
                let pairs = labels(&volume, i);
                let refs: Vec<(&str, &str)> = pairs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let description =
                    identity("itest").scheduled(&Subject::Volume(volume.clone()), "scale", slot);
                ec2.create_snapshot()
                    .volume_id(&volume)
                    .description(description)
                    .tag_specifications(tag_spec(aws_sdk_ec2::types::ResourceType::Snapshot, &refs))
                    .send()
                    .await
                    .unwrap();
            });
        }
        in_parallel(jobs, 8).await;
    }
    moto.set_clock(None);
    // Another deployment's and hand-made snapshots: never touched.
    let mut foreign = BTreeSet::new();
    for volume in volumes.iter().take(50) {
        foreign.insert(hand_made_snapshot(ec2, volume).await);
        let mut theirs = labels(volume, 0);
        theirs.retain(|(k, _)| k != tags::MANAGED_BY);
        theirs.push((tags::MANAGED_BY.into(), "another-stack".into()));
        let refs: Vec<(&str, &str)> = theirs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let id = ec2
            .create_snapshot()
            .volume_id(volume)
            .tag_specifications(tag_spec(aws_sdk_ec2::types::ResourceType::Snapshot, &refs))
            .send()
            .await
            .unwrap()
            .snapshot_id()
            .unwrap()
            .to_string();
        foreign.insert(id);
    }
    eprintln!(
        "scale: seeded {n} volumes, {} snapshots in {:?}",
        n * HISTORY + foreign.len(),
        started.elapsed()
    );
    Account { volumes, foreign }
}

fn plenty() -> Deadline {
    Deadline::after(Duration::from_secs(900))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_account_holds_every_invariant_at_a_bounded_request_cost() {
    let n = volumes_wanted();
    let moto = Moto::start();
    let account = seed(&moto, n).await;
    let (ec2, counter) = moto.counted_ec2();
    let adapter = Ec2Adapter::new(ec2.clone());
    let no_commands = no_commands();
    let notifier = RecordingNotifier::default();
    let cap = (n * HISTORY).to_string();
    let config = config_with(POLICIES, &[("MAX_DELETIONS", cap.as_str())]);
    let now = tags::parse_time("2026-03-01T00:20:00Z").unwrap();
    // EC2 stamps what the run creates with the run's time.
    moto.set_clock(Some(now));
    let mut timings = Vec::new();

    // create-snapshots: every volume is due in today's slot.
    counter.reset();
    let started = Instant::now();
    let created = create_snapshots::handle(
        create_ports(&adapter, &no_commands, &notifier, moto.ledger()),
        &config,
        &json!({"kind": "tick"}),
        now,
        plenty(),
    )
    .await
    .unwrap();
    timings.push(("create-snapshots", started.elapsed(), counter.all()));
    assert_eq!(created.counts.created, n);
    assert_eq!(created.counts.failed, 0);
    assert_eq!(
        counter.count("CreateSnapshot"),
        n,
        "one call per due volume"
    );
    assert_eq!(counter.count("CreateTags"), 0, "tags go with the create");
    assert!(counter.count("DescribeVolumes") <= pages(n, 500));
    assert!(
        counter.count("DescribeSnapshots") <= pages(n, 1000),
        "one query per policy and slot, paged"
    );

    // tag-snapshots backfill: every managed snapshot gets its labels.
    counter.reset();
    let started = Instant::now();
    // A run that runs out of its 15 minutes (moto is slow at 100,000
    // snapshots) leaves the rest to the next; each run writes only what
    // differs, so the runs together label every snapshot once.
    let (mut labelled, mut runs) = (0, 0);
    loop {
        runs += 1;
        let tagged = tag_snapshots::handle(
            tag_snapshots::Ports {
                pacing: tag_snapshots::Pacing::NONE,
                ..tag_ports(&adapter, &notifier, moto.ledger())
            },
            &config,
            &json!({"kind": "tick"}),
            now,
            plenty(),
        )
        .await
        .unwrap();
        assert!(tagged.failed.is_empty());
        labelled += tagged.tagged;
        if tagged.volumes_not_reached == 0 && tagged.left_for_later == 0 {
            break;
        }
        assert!(runs < 10, "the backfill does not progress: {tagged:?}");
    }
    eprintln!("scale: tag-snapshots backfill took {runs} run(s)");
    timings.push(("tag-snapshots", started.elapsed(), counter.all()));
    let managed = n * (HISTORY + 1);
    assert_eq!(labelled, managed);
    // The volumes' ids, then 200 volumes at a time their snapshots by tag
    // and by VolumeId: never the whole account at once.
    assert!(
        counter.count("DescribeSnapshots") <= runs * (3 * pages(managed, 1000) + 2 * pages(n, 200)),
        "{:?}",
        counter.all()
    );
    assert!(counter.count("DescribeVolumes") <= runs * pages(n, 200));
    // Each distinct change is one batch of up to 500 snapshots; a volume's
    // snapshots differ (retention labels, Name), so batches grow with the
    // number of distinct values (per batch of 200 volumes), never with the
    // number of snapshots alone.
    assert!(
        counter.count("CreateTags")
            <= managed.div_ceil(TAG_BATCH) + pages(n, 200) * (HISTORY + 1) * 4 + n,
        "{:?}",
        counter.all()
    );

    // expire-snapshots: each volume keeps its newest 7.
    counter.reset();
    let started = Instant::now();
    // As the backfill: a run out of time leaves the rest to the next.
    let (mut deleted, mut runs) = (0, 0);
    loop {
        runs += 1;
        let expired = expire_snapshots::handle(
            expire_snapshots::Ports {
                pacing: expire_snapshots::Pacing::NONE,
                ..expire_ports(&adapter, &notifier, moto.ledger())
            },
            &config,
            &json!({"kind": "tick"}),
            now,
            plenty(),
        )
        .await
        .unwrap();
        assert_eq!(expired.counts.failed, 0);
        deleted += expired.counts.deleted;
        if expired.volumes_not_reached == 0 && expired.counts.left_for_later == 0 {
            break;
        }
        assert!(runs < 10, "expiry does not progress: {:?}", expired.counts);
    }
    eprintln!("scale: expire-snapshots took {runs} run(s)");
    timings.push(("expire-snapshots", started.elapsed(), counter.all()));
    let to_delete = n * (HISTORY + 1 - KEEP);
    assert_eq!(deleted, to_delete);
    assert_eq!(
        counter.count("DeleteSnapshot"),
        to_delete,
        "one call per deletion"
    );
    // The volumes (ids only, page by page), then 200 volumes at a time their
    // snapshots by tag and by VolumeId (each answer pages at 1,000): about
    // three times the pages of one listing, never the whole account at once.
    assert!(
        counter.count("DescribeSnapshots") <= runs * (3 * pages(managed, 1000) + 2 * pages(n, 200)),
        "{:?}",
        counter.all()
    );
    // Locks: one unfiltered listing of the account's locked snapshots
    // (none here), not a call per 200 managed snapshots.
    assert_eq!(counter.count("DescribeLockedSnapshots"), runs);
    assert!(counter.count("DescribeVolumes") <= runs * pages(n, 200));

    // check-encryption daily: every owned snapshot, no per-snapshot reads
    // for snapshots that cannot be shared.
    counter.reset();
    let kms = KmsAdapter::new(aws_sdk_kms::Client::new(&moto.sdk_config()));
    let started = Instant::now();
    let checked = check_encryption::handle(
        check_ports(&adapter, &kms, &notifier, moto.ledger()),
        &config,
        &json!({"kind": "tick"}),
        now,
        plenty(),
    )
    .await
    .unwrap();
    timings.push(("check-encryption", started.elapsed(), counter.all()));
    let owned = n * KEEP + account.foreign.len();
    assert_eq!(checked.snapshots_checked, owned);
    // Two passes a page at a time (what could be shared, then judging):
    // never the account's snapshots at once.
    assert!(counter.count("DescribeSnapshots") <= 2 * pages(owned, 1000));
    assert!(
        counter.count("DescribeSnapshotAttribute") <= account.foreign.len(),
        "permissions are read only for snapshots that can be shared: {:?}",
        counter.all()
    );

    // The account afterwards: every volume has exactly its newest 7, the
    // foreign snapshots are all there, every managed snapshot is labelled.
    let all = snapshots(&ec2).await;
    let mut per_volume: BTreeMap<String, usize> = BTreeMap::new();
    for s in all.iter().filter(|s| tags::is_managed_by(&s.tags, "itest")) {
        *per_volume.entry(s.volume_id.clone().unwrap()).or_default() += 1;
        assert!(
            s.tags.contains_key(tags::RETAINED_BY),
            "{} unlabelled",
            s.id
        );
    }
    assert_eq!(per_volume.len(), account.volumes.len());
    assert!(per_volume.values().all(|k| *k == KEEP));
    let ids: BTreeSet<String> = all.iter().map(|s| s.id.clone()).collect();
    assert!(
        account.foreign.is_subset(&ids),
        "no foreign snapshot deleted"
    );

    for (function, took, requests) in &timings {
        eprintln!("scale: {function}: {took:?}, requests {requests:?}");
    }
}

//! The adversary against the pure rules (docs/policies-and-tags.md,
//! "Ownership"; docs/development.md, "The adversary").
//!
//! A history the deployment provably made (scheduled snapshots with their
//! Description and EC2's fields, encrypted copies with their ledger record)
//! meets an attacker who holds `ec2:CreateTags`/`ec2:DeleteTags` and
//! `ec2:CreateSnapshot`: any tag key this project reads, with any value
//! (wildcards, other snapshots' ids, times far in the past and the future,
//! other deployments' names), written onto or removed from any snapshot,
//! and snapshots made by hand with copied or made-up Descriptions.
//!
//! The ownership check and the expiry plan then run as expire-snapshots
//! runs them (the listing is by `lifecycle:managed-by`, as EC2's filter
//! lists it), and whatever the attacker did:
//!
//! - nothing the deployment did not make is deleted;
//! - the newest completed snapshot of every volume (by EC2's StartTime, or
//!   its completed encrypted copy) is not deleted;
//! - nothing is deleted that the untouched history would have kept: the
//!   kept history never shrinks;
//! - every proven snapshot keeps its proven identity: whether it is a copy,
//!   its volume, policy, slot and the time retention places it at.
//!
//! Half the cases run with the ledger's creation records (a deployment
//! whose create-snapshots records what it makes): then no snapshot made by
//! hand counts. In the other half (history made before the records began)
//! the one thing a forgery may do by design: a snapshot made by hand with a
//! scheduled Description, in its slot's window, for a slot nothing filled,
//! stands in for the slot as the deployment's own would have; the model
//! counts it in the untouched history.
//!
//! proptest shrinks a failure to the fewest writes; each shrunk failure
//! found became a unit test (`shared/core/src/ownership.rs`,
//! `shared/core/src/encryption.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;

use ebs_lifecycle_core::expiry;
use ebs_lifecycle_core::holds::{Hold, Holds};
use ebs_lifecycle_core::model::{Snapshot, SnapshotState, Tags, COPY_VOLUME_ID};
use ebs_lifecycle_core::ownership::{self, CopyRecord, Creations, Identity, Scope, Subject};
use ebs_lifecycle_core::policy::Policies;
use ebs_lifecycle_core::safety::{AccountFacts, DeletionGate};
use ebs_lifecycle_core::tags::{self, format_time, parse_time};

const DEPLOYMENT: &str = "prod-backups";
const ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-west-1";
const POLICIES: &str = r#"{"daily": {"schedule": "0 3 * * *",
    "keep": {"last": 2, "daily": 4, "weekly": 2}}}"#;

fn me() -> Identity {
    Identity {
        deployment: DEPLOYMENT.into(),
        account: ACCOUNT.into(),
        region: REGION.into(),
    }
}

fn t0() -> DateTime<Utc> {
    parse_time("2026-01-01T03:00:00Z").unwrap()
}

/// Every `lifecycle:` key, the selector and a key the stack only copies.
fn keys() -> Vec<&'static str> {
    let mut all = tags::ALL.to_vec();
    all.extend(["Backup", "Name"]);
    all
}

/// One volume's history: for each day, whether the day's snapshot was
/// taken, whether it has an encrypted copy, and whether the original is
/// gone since (superseded and expired).
#[derive(Debug, Clone)]
struct Day {
    taken: bool,
    start_offset_s: i64,
    copied: bool,
    original_gone: bool,
}

#[derive(Debug, Clone)]
enum Value {
    /// The id of the n-th snapshot of the world (modulo its size).
    SnapshotId(usize),
    VolumeId(usize),
    /// Days from t0, far in the past or future included.
    Time(i64),
    Text(&'static str),
}

#[derive(Debug, Clone)]
enum Write {
    Set {
        target: usize,
        key: usize,
        value: Value,
    },
    Remove {
        target: usize,
        key: usize,
    },
}

#[derive(Debug, Clone)]
enum Forgery {
    /// A snapshot made now with the Description of the n-th snapshot.
    CopiedDescription(usize),
    /// One with the deployment's copy Description naming the n-th snapshot.
    CopyDescription(usize),
    /// One with a scheduled Description for a volume and a made-up slot.
    MadeUp {
        volume: usize,
        slot_day: i64,
    },
    Foreign,
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0usize..64).prop_map(Value::SnapshotId),
        (0usize..4).prop_map(Value::VolumeId),
        prop_oneof![Just(-20_000i64), Just(40_000i64), -30i64..60].prop_map(Value::Time),
        prop::sample::select(vec![
            "*",
            "vol-*",
            "snap-*",
            "completed",
            "pending",
            "error",
            "",
            "true",
            DEPLOYMENT,
            "other-deployment",
            "daily",
            "no-such-policy",
            REGION,
            "us-east-1",
            "999999999999",
        ])
        .prop_map(Value::Text),
    ]
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        3 => (0usize..64, 0..keys().len(), value())
            .prop_map(|(target, key, value)| Write::Set { target, key, value }),
        1 => (0usize..64, 0..keys().len()).prop_map(|(target, key)| Write::Remove { target, key }),
    ]
}

fn forgery() -> impl Strategy<Value = Forgery> {
    prop_oneof![
        (0usize..64).prop_map(Forgery::CopiedDescription),
        (0usize..64).prop_map(Forgery::CopyDescription),
        (0usize..4, -5i64..20).prop_map(|(volume, slot_day)| Forgery::MadeUp { volume, slot_day }),
        Just(Forgery::Foreign),
    ]
}

fn day() -> impl Strategy<Value = Day> {
    (
        proptest::bool::weighted(0.9),
        0i64..600,
        proptest::bool::weighted(0.25),
        proptest::bool::weighted(0.5),
    )
        .prop_map(|(taken, start_offset_s, copied, original_gone)| Day {
            taken,
            start_offset_s,
            copied,
            original_gone,
        })
}

struct World {
    snapshots: Vec<Snapshot>,
    copies: BTreeMap<String, CopyRecord>,
    creations: Creations,
    volumes: Vec<String>,
    now: DateTime<Utc>,
}

fn snapshot(id: String, volume: &str, start: DateTime<Utc>, description: String) -> Snapshot {
    Snapshot {
        id,
        volume_id: Some(volume.into()),
        state: SnapshotState::Completed,
        start_time: Some(start),
        volume_size_gib: Some(8),
        full_size_bytes: None,
        archived: false,
        restore_expiry: None,
        encrypted: true,
        kms_key_id: None,
        description: Some(description),
        owner_id: Some(ACCOUNT.into()),
        tags: Tags::new(),
    }
}

/// What create-snapshots, complete-snapshots and check-encryption made;
/// `recorded`: create-snapshots recorded each creation in the ledger.
fn history(volumes: &[Vec<Day>], recorded: bool) -> World {
    let me = me();
    let mut world = World {
        snapshots: Vec::new(),
        copies: BTreeMap::new(),
        creations: Creations {
            since: recorded.then(|| t0() - Duration::days(1)),
            ..Creations::default()
        },
        volumes: (0..volumes.len()).map(|v| format!("vol-{v:04}")).collect(),
        now: t0(),
    };
    let mut n = 0;
    for (v, days) in volumes.iter().enumerate() {
        let volume = world.volumes[v].clone();
        for (d, day) in days.iter().enumerate() {
            let slot = t0() + Duration::days(d as i64);
            let start = slot + Duration::seconds(day.start_offset_s);
            world.now = world.now.max(start + Duration::hours(2));
            if !day.taken {
                continue;
            }
            n += 1;
            let id = format!("snap-{n:04}");
            if recorded {
                world.creations.recorded.insert(id.clone());
            }
            let description = me.scheduled(&Subject::Volume(volume.clone()), "daily", slot);
            let mut s = snapshot(id.clone(), &volume, start, description);
            for (k, val) in [
                (tags::MANAGED_BY, DEPLOYMENT.to_string()),
                (tags::POLICY, "daily".into()),
                (tags::SLOT, format_time(slot)),
                (tags::STATE, "completed".into()),
                (tags::VOLUME_ID, volume.clone()),
                (tags::CREATED_AT, format_time(slot + Duration::seconds(1))),
            ] {
                s.tags.insert(k.into(), val);
            }
            if day.copied {
                let copy_id = format!("snap-c{n:04}");
                let mut copy = snapshot(
                    copy_id.clone(),
                    COPY_VOLUME_ID,
                    start + Duration::hours(1),
                    me.copy(REGION, &id),
                );
                copy.tags = s.tags.clone();
                copy.tags.insert(tags::ENCRYPTED_COPY_OF.into(), id.clone());
                copy.tags
                    .insert(tags::CREATED_AT.into(), format_time(start));
                world.copies.insert(
                    copy_id.clone(),
                    CopyRecord {
                        copy_id: copy_id.clone(),
                        source_snapshot_id: id.clone(),
                        volume_id: volume.clone(),
                        policy: "daily".into(),
                        slot,
                        created_at: start,
                        target: None,
                    },
                );
                world.snapshots.push(copy);
                s.tags.insert(tags::SUPERSEDED_BY.into(), copy_id);
                s.encrypted = false;
                if day.original_gone {
                    continue;
                }
            }
            world.snapshots.push(s);
        }
    }
    world
}

fn resolve(world: &World, value: &Value) -> String {
    match value {
        Value::SnapshotId(i) => world.snapshots[i % world.snapshots.len()].id.clone(),
        Value::VolumeId(i) => world.volumes[i % world.volumes.len()].clone(),
        Value::Time(days) => format_time(t0() + Duration::days(*days)),
        Value::Text(text) => (*text).to_string(),
    }
}

/// Adds the forged snapshots; returns those the rules accept by design: a
/// snapshot made by hand with a scheduled Description, in its slot's window,
/// for a slot nothing filled, is a real snapshot of the volume and stands
/// in for the slot (docs/policies-and-tags.md, "Ownership"), as the
/// deployment's own would have; none once the ledger records creations.
fn forge(world: &mut World, forgeries: &[Forgery]) -> Vec<Snapshot> {
    let me = me();
    let mut filled: BTreeSet<(String, String)> = world
        .snapshots
        .iter()
        .filter_map(|s| Some((s.volume_id.clone()?, s.tags.get(tags::SLOT)?.clone())))
        .collect();
    // A copy holds its original's slot, the original gone or not.
    filled.extend(
        world
            .copies
            .values()
            .map(|r| (r.volume_id.clone(), format_time(r.slot))),
    );
    let mut stand_ins = Vec::new();
    for (n, f) in forgeries.iter().enumerate() {
        let pick = |i: usize| world.snapshots[i % world.snapshots.len()].clone();
        let id = format!("snap-f{n:04}");
        let at = world.now;
        let forged = match f {
            Forgery::CopiedDescription(i) => {
                let real = pick(*i);
                let mut s = snapshot(
                    id,
                    real.volume_id.as_deref().unwrap(),
                    at,
                    real.description.clone().unwrap(),
                );
                s.tags = real.tags.clone();
                s
            }
            Forgery::CopyDescription(i) => {
                let real = pick(*i);
                let mut s = snapshot(id, COPY_VOLUME_ID, at, me.copy(REGION, &real.id));
                s.tags = real.tags.clone();
                s.tags
                    .insert(tags::ENCRYPTED_COPY_OF.into(), real.id.clone());
                s
            }
            Forgery::MadeUp { volume, slot_day } => {
                let volume = world.volumes[volume % world.volumes.len()].clone();
                let slot = t0() + Duration::days(*slot_day);
                let description = me.scheduled(&Subject::Volume(volume.clone()), "daily", slot);
                let mut s = snapshot(id, &volume, at, description);
                s.tags.insert(tags::MANAGED_BY.into(), DEPLOYMENT.into());
                s.tags.insert(tags::POLICY.into(), "daily".into());
                s.tags.insert(tags::SLOT.into(), format_time(slot));
                s.tags.insert(tags::STATE.into(), "completed".into());
                let in_window = slot <= at && at < slot + Duration::days(1);
                let unrecorded = world.creations.since.is_none();
                if unrecorded && in_window && filled.insert((volume, format_time(slot))) {
                    stand_ins.push(s.clone());
                }
                s
            }
            Forgery::Foreign => {
                let mut s = snapshot(id, &world.volumes[0], at, "golden image".into());
                s.tags.insert(tags::MANAGED_BY.into(), DEPLOYMENT.into());
                s
            }
        };
        world.snapshots.push(forged);
    }
    stand_ins
}

fn attack(world: &mut World, writes: &[Write]) {
    for w in writes {
        let len = world.snapshots.len();
        match w {
            Write::Set { target, key, value } => {
                let value = resolve(world, value);
                world.snapshots[target % len]
                    .tags
                    .insert(keys()[*key].into(), value);
            }
            Write::Remove { target, key } => {
                world.snapshots[target % len].tags.remove(keys()[*key]);
            }
        }
    }
}

/// What expire-snapshots decides over `snapshots`: (the deletable ids, the
/// owned snapshots as the ownership check proved them).
fn expire(
    world: &World,
    snapshots: &[Snapshot],
    holds: &Holds,
) -> (BTreeSet<String>, Vec<Snapshot>) {
    let policies = Policies::parse(POLICIES).unwrap();
    let listed: Vec<Snapshot> = snapshots
        .iter()
        .filter(|s| tags::is_managed_by(&s.tags, DEPLOYMENT))
        .cloned()
        .collect();
    let sifted = ownership::sift(
        &me(),
        &policies,
        &world.copies,
        &world.creations,
        listed,
        Scope::WholeVolumes,
    );
    let facts = AccountFacts {
        deployment: DEPLOYMENT.into(),
        held_for_review: sifted.held_for_review(),
        holds: holds.clone(),
        now: world.now,
        ..AccountFacts::default()
    };
    let gate = DeletionGate::new(facts, &sifted.owned, 10_000);
    let existing: BTreeSet<String> = world.volumes.iter().cloned().collect();
    let deleted = expiry::plan(&sifted.owned, &policies, &existing, &gate)
        .iter()
        .flat_map(|p| p.snapshots.iter())
        .filter(|p| p.deletable())
        .map(|p| p.snapshot.id.clone())
        .collect();
    (deleted, sifted.owned)
}

/// What retention reads of a proven snapshot: whether it is a copy, its
/// volume, policy, slot and retention time.
type ProvenIdentity = (
    bool,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
);

/// What retention reads of a proven snapshot.
fn identity_of(s: &Snapshot) -> ProvenIdentity {
    (
        s.is_copy(),
        s.source_volume_id().map(String::from),
        s.tags.get(tags::POLICY).cloned(),
        s.tags.get(tags::SLOT).cloned(),
        s.retention_time(),
    )
}

/// The newest restorable snapshot of each volume, by EC2's StartTime (a
/// copy stands at its original's).
fn newest_by_start_time(world: &World, snapshots: &[Snapshot]) -> BTreeSet<String> {
    let mut newest: BTreeMap<String, (DateTime<Utc>, String)> = BTreeMap::new();
    for s in snapshots {
        let (volume, time) = match world.copies.get(&s.id) {
            Some(r) => (r.volume_id.clone(), r.created_at),
            None => (s.volume_id.clone().unwrap(), s.start_time.unwrap()),
        };
        let superseded = snapshots.iter().any(|c| {
            world
                .copies
                .get(&c.id)
                .is_some_and(|r| r.source_snapshot_id == s.id)
        });
        if superseded {
            continue;
        }
        let entry = newest.entry(volume).or_insert((time, s.id.clone()));
        if (time, &s.id) > (entry.0, &entry.1) {
            *entry = (time, s.id.clone());
        }
    }
    newest.into_values().map(|(_, id)| id).collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("ADVERSARY_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_tag_write_or_forged_snapshot_makes_expiry_delete_what_it_should_not(
        volumes in prop::collection::vec(prop::collection::vec(day(), 1..16), 1..4),
        forgeries in prop::collection::vec(forgery(), 0..4),
        writes in prop::collection::vec(write(), 0..24),
        held in prop::collection::vec((any::<bool>(), any::<usize>()), 0..3),
        recorded in any::<bool>(),
    ) {
        let mut world = history(&volumes, recorded);
        prop_assume!(!world.snapshots.is_empty());
        // Ledger holds an operator set (on a snapshot or a volume): no tag
        // write or removal may lift them.
        let holds = Holds::in_effect(
            held.iter().map(|&(on_volume, i)| Hold {
                resource_id: if on_volume {
                    world.volumes[i % world.volumes.len()].clone()
                } else {
                    world.snapshots[i % world.snapshots.len()].id.clone()
                },
                until: world.now + Duration::days(1),
                reason: "audit".into(),
                by: "operator".into(),
                at: t0(),
            }),
            world.now,
        );
        let mut untouched = world.snapshots.clone();
        untouched.extend(forge(&mut world, &forgeries));
        let (deleted_before, proven_before) = expire(&world, &untouched, &holds);
        let kept_by_holds: BTreeSet<String> = proven_before
            .iter()
            .filter(|s| {
                holds.get(&s.id).is_some()
                    || s.source_volume_id().is_some_and(|v| holds.get(v).is_some())
            })
            .map(|s| s.id.clone())
            .collect();
        let made: BTreeSet<String> = untouched.iter().map(|s| s.id.clone()).collect();
        let newest = newest_by_start_time(&world, &untouched);

        attack(&mut world, &writes);
        let (deleted, proven) = expire(&world, &world.snapshots, &holds);
        let lifted: Vec<&String> = deleted.intersection(&kept_by_holds).collect();
        prop_assert!(lifted.is_empty(), "deleted what a ledger hold keeps: {lifted:?}");

        let foreign: Vec<&String> = deleted.difference(&made).collect();
        prop_assert!(foreign.is_empty(), "deleted what the deployment did not make: {foreign:?}");
        let lost: Vec<&String> = deleted.intersection(&newest).collect();
        prop_assert!(lost.is_empty(), "deleted a volume's newest snapshot: {lost:?}");
        let shrunk: Vec<&String> = deleted.difference(&deleted_before).collect();
        prop_assert!(shrunk.is_empty(), "deleted what the untouched history keeps: {shrunk:?}");
        let before: BTreeMap<&str, _> =
            proven_before.iter().map(|s| (s.id.as_str(), identity_of(s))).collect();
        for s in &proven {
            if let Some(expected) = before.get(s.id.as_str()) {
                prop_assert_eq!(&identity_of(s), expected, "{} proven as something else", s.id);
            }
        }
    }
}

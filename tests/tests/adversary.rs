//! The adversary against the real functions on moto (docs/development.md,
//! "The adversary"): simulated days of create, complete, tag,
//! check-encryption and expiry, as production runs them, while an attacker
//! holding `ec2:CreateTags`, `ec2:DeleteTags`, `ec2:CreateSnapshot` and
//! `ec2:CopySnapshot` acts between any two invocations: any tag key the
//! stack reads (and a few it does not), with any value (wildcards, other
//! snapshots' ids, times far in the past and future, other deployments'
//! names), written onto or removed from any snapshot or volume, and
//! snapshots made by hand with a real snapshot's Description, the
//! deployment's copy Description, or the Description of the slot about to
//! be taken (started before the deployment's, to pre-empt it).
//!
//! After every day, whatever the attacker did:
//! - every run completed (no invocation error);
//! - nothing the deployment did not make was deleted, the snapshots made
//!   by hand with a slot's Description in its window included (the
//!   ledger's creation records tell them apart);
//! - every volume opted in when create-snapshots ran has the deployment's
//!   own snapshot of the slot: no snapshot made by hand cancels a backup;
//! - the newest completed snapshot of every volume (by EC2's StartTime)
//!   exists;
//! - every snapshot the volume's rules keep, judged from what the
//!   deployment made (EC2's StartTime), exists: the kept history never
//!   shrinks;
//! - create-snapshots made at most one snapshot per volume and slot, a
//!   tick after expiry included;
//! - notifications per run stay bounded.
//!
//! A second attack goes beyond the source region
//! ([`no_attack_in_the_dr_region_the_vault_or_on_an_instance_makes_the_stack_do_harm`]):
//! a policy that copies to a disaster-recovery region and shares with a
//! vault account, another that stops its instance for the snapshot, and
//! create, complete, copy, the vault and expiry run as production runs
//! them. Between any two invocations the attacker also writes and removes
//! tags on the DR copies, the vault's copies and the instance; copies into
//! the DR region and into the vault with the deployment's copy
//! Descriptions; shares with the vault from the accepted source account
//! (snapshots made by hand with a real one's Description and tags) and
//! from an account it does not accept; and stops the instance by hand
//! (incident response) or starts it again. After every day, in each of the
//! three places: nothing the deployment did not make was deleted; per
//! source volume, the newest completed copy and every copy the target's
//! rules keep (judged by the source's StartTime) is there; every vault
//! copy completed that day is locked. Around every create-snapshots run:
//! the instance is stopped only when it was running, opted in to the
//! stopped policy and tagged `lifecycle:allow-stop=true` when the run read
//! it, and the run leaves it as it found it (one stopped by hand stays
//! stopped).
//!
//! Each seed is a different attack, reproducible: a failure names its seed
//! and its steps; `ADVERSARY_SEED=<n>` runs that one again. `make test`
//! runs [`SEEDS`] seeds of [`DAYS`] days (and [`BEYOND_SEEDS`] of
//! [`BEYOND_DAYS`] beyond); `make adversary` runs many more of both
//! (`ADVERSARY_SEEDS`, `ADVERSARY_DAYS`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::RngExt;
use proptest::test_runner::{RngAlgorithm, TestRng};
use serde_json::{json, Value};

use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::aws::kms::KmsAdapter;
use ebs_lifecycle::aws::ledger::DynamoLedger;
use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::ports::ledger::Ledger;
use ebs_lifecycle_core::model::{Snapshot, SnapshotState};
use ebs_lifecycle_core::ownership::{Claim, Subject};
use ebs_lifecycle_core::policy::Policies;
use ebs_lifecycle_core::retention::{self, Candidate};
use ebs_lifecycle_core::tags;
use integration_tests::*;

const DEPLOYMENT: &str = "itest";
const POLICIES: &str =
    r#"{"lean": {"schedule": "@daily", "keep": {"last": 2, "daily": 3, "weekly": 2}}}"#;
/// Seeds and days `make test` runs.
const SEEDS: u64 = 3;
const DAYS: i64 = 8;
/// More notifications than one run could honestly need: a forged snapshot
/// is reported once, in one notification per run.
const NOTIFICATIONS_PER_RUN: usize = 6;
/// Ledger writes one run may make: what a handful of volumes need (records,
/// copies, reports; 14 at most measured), however many moves the
/// attacker made before it.
const LEDGER_WRITES_PER_RUN: usize = 24;

/// Every `lifecycle:` key, the selector and a key the stack only copies.
fn keys() -> Vec<&'static str> {
    let mut all = tags::ALL.to_vec();
    all.extend(["Backup", "Name"]);
    all
}

fn day(n: i64) -> DateTime<Utc> {
    tags::parse_time("2026-03-01T00:05:00Z").unwrap() + chrono::Duration::days(n)
}

fn tick() -> Value {
    json!({"kind": "tick"})
}

fn plenty() -> Deadline {
    Deadline::after(Duration::from_secs(600))
}

fn config(key: &str) -> Config {
    // Remediation on: the unencrypted volumes' snapshots are replaced by
    // encrypted copies, so the copies' ledger records and the supersede
    // links are under attack too.
    config_with(
        POLICIES,
        &[
            ("DRY_RUN", "false"),
            ("MAX_DELETIONS", "50"),
            ("REMEDIATE", "all"),
            ("ENCRYPTION_KMS_KEY_ID", key),
        ],
    )
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A snapshot the attacker makes of `volume` at `now` with `description`.
async fn by_hand(
    moto: &Moto,
    volume: &str,
    description: &str,
    now: DateTime<Utc>,
) -> Option<String> {
    moto.set_clock(Some(now));
    let made = moto
        .ec2()
        .create_snapshot()
        .volume_id(volume)
        .description(description)
        .send()
        .await;
    moto.set_clock(None);
    made.ok().and_then(|m| m.snapshot_id)
}

/// A snapshot made by hand of `real`'s volume (one of `volumes`) with
/// `real`'s Description and tags.
async fn imitation(
    moto: &Moto,
    real: &Snapshot,
    volumes: &[String],
    now: DateTime<Utc>,
) -> Option<String> {
    let volume = real.volume_id.as_ref().filter(|v| volumes.contains(v))?;
    let id = by_hand(moto, volume, real.description.as_deref()?, now).await?;
    for (k, v) in &real.tags {
        put_tags(&moto.ec2(), &id, &[(k.as_str(), v.as_str())]).await;
    }
    Some(id)
}

/// A volume's tag, as EC2 has it now.
async fn volume_tag(ec2: &aws_sdk_ec2::Client, volume: &str, key: &str) -> Option<String> {
    let answer = ec2
        .describe_volumes()
        .volume_ids(volume)
        .send()
        .await
        .unwrap();
    answer
        .volumes()
        .iter()
        .flat_map(|v| v.tags())
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value().map(String::from))
}

/// One attack: the world as the attacker sees it, and what it did.
struct Attacker {
    rng: TestRng,
    log: Vec<String>,
    /// Snapshots the attacker made: never the deployment's to delete.
    made: BTreeSet<String>,
    /// Those made with a scheduled Description inside its slot's window:
    /// only the ledger's creation record tells one from the deployment's
    /// own (docs/policies-and-tags.md, "Ownership"). Counted for the
    /// figures; held to the same invariants as the rest.
    impersonations: BTreeSet<String>,
    /// Snapshots the attacker made in the disaster-recovery region and in
    /// the vault account.
    made_dr: BTreeSet<String>,
    made_vault: BTreeSet<String>,
    /// Instances someone stopped by hand (incident response): the stack
    /// must leave them stopped whatever their tags say.
    stopped_by_hand: BTreeSet<String>,
}

impl Attacker {
    fn new(seed: u64) -> Self {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        Self {
            rng: TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
            log: Vec::new(),
            made: BTreeSet::new(),
            impersonations: BTreeSet::new(),
            made_dr: BTreeSet::new(),
            made_vault: BTreeSet::new(),
            stopped_by_hand: BTreeSet::new(),
        }
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> Option<&'a T> {
        if from.is_empty() {
            None
        } else {
            Some(&from[self.rng.random_range(0..from.len())])
        }
    }

    fn value(&mut self, ids: &[String], volumes: &[String], now: DateTime<Utc>) -> String {
        let texts = [
            "*",
            "vol-*",
            "snap-*",
            "completed",
            "pending",
            "",
            "true",
            DEPLOYMENT,
            "other-deployment",
            "lean",
            "gold",
            "batch",
            "no-such-policy",
            "us-west-2",
        ];
        match self.rng.random_range(0..4) {
            0 => self.pick(ids).cloned().unwrap_or_default(),
            1 => self.pick(volumes).cloned().unwrap_or_default(),
            2 => {
                let days = [-20_000i64, 40_000, -3, -1, 0, 1, 7];
                let d = *self.pick(&days).unwrap();
                tags::format_time(now + chrono::Duration::days(d))
            }
            _ => (*self.pick(&texts).unwrap()).to_string(),
        }
    }

    /// Up to three moves between two invocations.
    async fn moves(&mut self, moto: &Moto, volumes: &[String], now: DateTime<Utc>) {
        let ec2 = moto.ec2();
        let snapshots = snapshots(&ec2).await;
        let ids: Vec<String> = snapshots.iter().map(|s| s.id.clone()).collect();
        let mut targets = ids.clone();
        targets.extend(volumes.iter().cloned());
        for _ in 0..self.rng.random_range(0..=3) {
            match self.rng.random_range(0..11) {
                0 => {
                    // A snapshot by hand with a real snapshot's Description.
                    let Some(real) = self.pick(&snapshots).cloned() else {
                        continue;
                    };
                    if let Some(id) = imitation(moto, &real, volumes, now).await {
                        self.log.push(format!("{id}: by hand as {}", real.id));
                        let description = real.description.clone().unwrap_or_default();
                        let in_window = match identity(DEPLOYMENT).read(&description) {
                            Some(Claim::Scheduled { slot, .. }) => {
                                slot <= now && now < slot + chrono::Duration::days(1)
                            }
                            _ => false,
                        };
                        if in_window {
                            self.impersonations.insert(id.clone());
                        }
                        self.made.insert(id);
                    }
                }
                1 => {
                    // A copy of a real snapshot with the deployment's copy Description.
                    let Some(real) = self.pick(&snapshots).cloned() else {
                        continue;
                    };
                    moto.set_clock(Some(now));
                    let made = ec2
                        .copy_snapshot()
                        .source_region(REGION)
                        .source_snapshot_id(&real.id)
                        .description(identity(DEPLOYMENT).copy(REGION, &real.id))
                        .send()
                        .await;
                    moto.set_clock(None);
                    if let Some(id) = made.ok().and_then(|m| m.snapshot_id) {
                        put_tags(
                            &ec2,
                            &id,
                            &[
                                (tags::MANAGED_BY, DEPLOYMENT),
                                (tags::ENCRYPTED_COPY_OF, &real.id),
                                (tags::STATE, "completed"),
                            ],
                        )
                        .await;
                        self.log.push(format!("{id}: copy of {}", real.id));
                        self.made.insert(id);
                    }
                }
                10 => {
                    // A snapshot by hand with the Description of the slot
                    // now open, before or after the deployment's own.
                    let Some(volume) = self.pick(volumes).cloned() else {
                        continue;
                    };
                    let slot = now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc();
                    let description = identity(DEPLOYMENT).scheduled(
                        &Subject::Volume(volume.clone()),
                        "lean",
                        slot,
                    );
                    if let Some(id) = by_hand(moto, &volume, &description, now).await {
                        let slot = tags::format_time(slot);
                        put_tags(
                            &ec2,
                            &id,
                            &[
                                (tags::MANAGED_BY, DEPLOYMENT),
                                (tags::POLICY, "lean"),
                                (tags::SLOT, slot.as_str()),
                                (tags::VOLUME_ID, volume.as_str()),
                            ],
                        )
                        .await;
                        self.log
                            .push(format!("{id}: by hand for {volume}'s slot {slot}"));
                        self.impersonations.insert(id.clone());
                        self.made.insert(id);
                    }
                }
                2..=3 => self.untag(&ec2, "", &targets).await,
                _ => self.retag(&ec2, "", &targets, &ids, volumes, now).await,
            }
        }
    }

    /// Removes a tag the stack reads from one of `targets` (`place` names
    /// where, in the log).
    async fn untag(&mut self, ec2: &aws_sdk_ec2::Client, place: &str, targets: &[String]) {
        let Some(target) = self.pick(targets).cloned() else {
            return;
        };
        let key = *self.pick(&keys()).unwrap();
        self.log.push(format!("{place}{target}: remove {key}"));
        ec2.delete_tags()
            .resources(&target)
            .tags(aws_sdk_ec2::types::Tag::builder().key(key).build())
            .send()
            .await
            .unwrap();
    }

    /// Writes any value onto a tag the stack reads, on one of `targets`.
    async fn retag(
        &mut self,
        ec2: &aws_sdk_ec2::Client,
        place: &str,
        targets: &[String],
        ids: &[String],
        volumes: &[String],
        now: DateTime<Utc>,
    ) {
        let Some(target) = self.pick(targets).cloned() else {
            return;
        };
        let key = *self.pick(&keys()).unwrap();
        let value = self.value(ids, volumes, now);
        self.log.push(format!("{place}{target}: {key}={value}"));
        put_tags(ec2, &target, &[(key, &value)]).await;
    }
}

/// The functions of one stack on one moto, and what they reported.
struct Stack {
    adapter: Ec2Adapter,
    kms: KmsAdapter,
    notifier: RecordingNotifier,
    config: Config,
    ledger: &'static DynamoLedger,
    ledger_requests: RequestCounter,
    /// The most ledger writes one run made.
    most_writes: std::cell::Cell<usize>,
}

impl Stack {
    fn notifications(&self) -> usize {
        self.notifier.sent().len()
    }

    fn ledger_writes(&self) -> usize {
        self.ledger_requests.ledger_writes()
    }
}

/// One step: the attacker's moves a minute before `$at` (never the same
/// instant as the stack: EC2's StartTime would tie), then one invocation at
/// `$at`, moto's clock there too. Its summary; a run that fails, or sends
/// more than [`NOTIFICATIONS_PER_RUN`], fails the test naming the seed and
/// every move.
macro_rules! step {
    ($world:expr, $at:expr, $what:literal, $call:expr) => {{
        let (stack, moto, volumes, seed, attacker) = $world;
        let at: DateTime<Utc> = $at;
        attacker
            .moves(moto, volumes, at - chrono::Duration::minutes(1))
            .await;
        step!(@run (stack, moto, seed, attacker), at, $what, $call)
    }};
    // The invocation alone, the attacker's moves made already.
    (@run $world:expr, $at:expr, $what:literal, $call:expr) => {{
        let (stack, moto, seed, attacker) = $world;
        let at: DateTime<Utc> = $at;
        moto.set_clock(Some(at));
        let before = stack.notifications();
        let writes = stack.ledger_writes();
        let result = $call.await;
        moto.set_clock(None);
        let sent = stack.notifications() - before;
        assert!(
            sent <= NOTIFICATIONS_PER_RUN,
            "seed {seed}: {} sent {sent} notifications\n{}",
            $what,
            attacker.log.join("\n")
        );
        let writes = stack.ledger_writes() - writes;
        stack.most_writes.set(stack.most_writes.get().max(writes));
        assert!(
            writes <= LEDGER_WRITES_PER_RUN,
            "seed {seed}: {} wrote the ledger {writes} times\n{}",
            $what,
            attacker.log.join("\n")
        );
        match result {
            Ok(summary) => summary,
            Err(e) => panic!(
                "seed {seed}: {} failed: {e}\n{}",
                $what,
                attacker.log.join("\n")
            ),
        }
    }};
}

/// One create-snapshots run of the stack at `at`.
async fn create(
    stack: &Stack,
    at: DateTime<Utc>,
) -> Result<create_snapshots::RunSummary, create_snapshots::CreateError> {
    let commands = no_commands();
    create_snapshots::handle(
        create_ports(&stack.adapter, &commands, &stack.notifier, stack.ledger),
        &stack.config,
        &tick(),
        at,
        plenty(),
    )
    .await
}

/// One expire-snapshots run of the stack at `at`.
async fn expire(
    stack: &Stack,
    at: DateTime<Utc>,
) -> Result<expire_snapshots::RunSummary, expire_snapshots::ExpireError> {
    expire_snapshots::handle(
        expire_snapshots::Ports {
            pacing: expire_snapshots::Pacing::NONE,
            ..expire_ports(&stack.adapter, &stack.notifier, stack.ledger)
        },
        &stack.config,
        &tick(),
        at,
        plenty(),
    )
    .await
}

/// What one attack ran.
#[derive(Debug, Default)]
struct Ran {
    invocations: usize,
    deletions: usize,
    encrypted_copies: usize,
    impersonations: usize,
    /// Vault copies seen completed and checked locked.
    locks_checked: usize,
    /// Copies the deployment made in the DR region, seen completed.
    dr_copies: usize,
    /// Times create-snapshots stopped an instance (and started it again).
    instance_stops: usize,
    /// The most ledger writes one run made.
    most_writes: usize,
}

async fn attack(seed: u64, days: i64) -> Ran {
    let moto = Moto::start();
    moto.seed_ids(seed);
    let ec2 = moto.ec2();
    let key = moto.kms_key_in(REGION).await;
    let (ledger, ledger_requests) = moto.counted_ledger();
    let stack = Stack {
        adapter: Ec2Adapter::new(moto.ec2()),
        kms: KmsAdapter::new(aws_sdk_kms::Client::new(&moto.sdk_config())),
        notifier: RecordingNotifier::default(),
        config: config(&key),
        ledger,
        ledger_requests,
        most_writes: Default::default(),
    };
    let mut volumes = Vec::new();
    for _ in 0..2 {
        volumes.push(create_volume(&ec2, 8, &[("Backup", "lean")]).await);
    }
    volumes.push(create_volume(&ec2, 8, &[("Name", "not opted in")]).await);
    let golden = hand_made_snapshot(&ec2, &volumes[2]).await;
    // The stack ran before the attack begins: its creation records began
    // then (its first run writes this), so the attacker's first snapshot
    // by hand is not older than them.
    moto.ledger()
        .begin_creations(day(0) - chrono::Duration::hours(1))
        .await
        .unwrap();
    let mut attacker = Attacker::new(seed);
    attacker.made.insert(golden);
    let policy = Policies::parse(POLICIES).unwrap();
    let rules = &policy.get("lean").unwrap().keep;
    // Every snapshot create-snapshots made: (volume, slot) -> (id, StartTime).
    let mut created: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    // The encrypted copies check-encryption made (its summary), and which
    // original each stands for (its Description, which nobody can change).
    let mut encrypted_copies: Vec<String> = Vec::new();
    // Every snapshot as last seen: an original replaced and deleted still
    // counts in its volume's history, through its copy.
    let mut known: BTreeMap<String, Snapshot> = BTreeMap::new();
    let mut steps = 0;
    let mut deletions = 0;

    for d in 0..days {
        let now = day(d);
        let minutes = |m: i64| now + chrono::Duration::minutes(m);
        attacker.log.push(format!("-- day {d}"));
        // Two ticks in the slot: the second, after the attacker, makes nothing new.
        for at in [now, minutes(15)] {
            let world = (&stack, &moto, &volumes, seed, &mut attacker);
            let made = step!(world, at, "create-snapshots", create(&stack, at));
            for c in made.created {
                created
                    .entry((c.volume_id.clone(), c.slot.clone()))
                    .or_default()
                    .push(c.snapshot_id);
            }
        }
        for ((volume, slot), ids) in &created {
            assert!(
                ids.len() <= 1,
                "seed {seed}: {volume} snapshotted {} times in slot {slot}: {ids:?}\n{}",
                ids.len(),
                attacker.log.join("\n")
            );
        }
        // Opted in at the second tick (the attacker's moves come before a
        // tick, so its selector tag now is what that tick read): the slot
        // has the deployment's own snapshot, whatever was made by hand.
        let slot = tags::format_time(now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc());
        for volume in &volumes {
            if volume_tag(&ec2, volume, "Backup").await.as_deref() == Some("lean") {
                assert!(
                    created.contains_key(&(volume.clone(), slot.clone())),
                    "seed {seed}: {volume}, opted in, has no snapshot of its own in slot {slot}\n{}",
                    attacker.log.join("\n")
                );
            }
        }
        // complete (the reconcile), tag, check-encryption (its copies
        // completed by a second reconcile), then expiry.
        for at in [minutes(60), minutes(210)] {
            let world = (&stack, &moto, &volumes, seed, &mut attacker);
            step!(
                world,
                at,
                "complete-snapshots",
                complete_snapshots::handle(
                    complete_ports(&stack.adapter, &stack.notifier, stack.ledger),
                    &stack.config,
                    &tick(),
                    at,
                    plenty(),
                )
            );
            if at == minutes(60) {
                let world = (&stack, &moto, &volumes, seed, &mut attacker);
                step!(
                    world,
                    minutes(120),
                    "tag-snapshots",
                    tag_snapshots::handle(
                        tag_snapshots::Ports {
                            pacing: tag_snapshots::Pacing::NONE,
                            ..tag_ports(&stack.adapter, &stack.notifier, stack.ledger)
                        },
                        &stack.config,
                        &tick(),
                        minutes(120),
                        plenty(),
                    )
                );
                let world = (&stack, &moto, &volumes, seed, &mut attacker);
                let checked = step!(
                    world,
                    minutes(180),
                    "check-encryption",
                    check_encryption::handle(
                        check_ports(&stack.adapter, &stack.kms, &stack.notifier, stack.ledger),
                        &stack.config,
                        &tick(),
                        minutes(180),
                        plenty(),
                    )
                );
                encrypted_copies.extend(checked.copies_started);
            }
        }
        // The attacker's last moves, then what exists before expiry runs.
        attacker.moves(&moto, &volumes, minutes(239)).await;
        let before: BTreeMap<String, Snapshot> = snapshots(&ec2)
            .await
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        let world = (&stack, &moto, seed, &mut attacker);
        let expired = step!(
            @run world,
            minutes(240),
            "expire-snapshots",
            expire(&stack, minutes(240))
        );
        steps += 9;
        deletions += expired
            .volumes
            .iter()
            .map(|v| v.deleted.len())
            .sum::<usize>();
        let after: BTreeSet<String> = snapshots(&ec2).await.into_iter().map(|s| s.id).collect();
        // An original is restorable while it or one of its completed
        // encrypted copies is there (a copy held for review after its tags
        // were tampered with does not stop another being made).
        let copy_prefix = identity(DEPLOYMENT).copy(REGION, "");
        for (id, s) in &before {
            known.insert(id.clone(), s.clone());
        }
        let mut replaced_by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in &encrypted_copies {
            let Some(copy) = known.get(c) else { continue };
            let original = copy
                .description
                .as_deref()
                .and_then(|d| d.strip_prefix(&copy_prefix));
            if let (Some(original), SnapshotState::Completed) = (original, copy.state) {
                replaced_by
                    .entry(original.to_string())
                    .or_default()
                    .push(c.clone());
            }
        }
        let restorable = |id: &String| {
            after.contains(id)
                || replaced_by
                    .get(id)
                    .is_some_and(|copies| copies.iter().any(|c| after.contains(c)))
        };
        let fail = |what: String| -> ! {
            panic!("seed {seed}, day {d}: {what}\n{}", attacker.log.join("\n"))
        };

        // Nothing the deployment did not make is deleted.
        let ours: BTreeSet<&String> = created.values().flatten().collect();
        for id in before
            .keys()
            .filter(|id| !ours.contains(id) && !encrypted_copies.contains(id))
        {
            if !after.contains(id) {
                let s = &before[id];
                fail(format!(
                    "{id}, not made by the deployment, was deleted: {:?} started {:?}, tags {:?}; the run: {:?}",
                    s.description, s.start_time, s.tags, expired.volumes
                ));
            }
        }
        // Per volume: what the deployment made and EC2 completed, by StartTime.
        for volume in &volumes {
            let mut history: Vec<&Snapshot> = known
                .values()
                .filter(|s| ours.contains(&s.id))
                .filter(|s| s.volume_id.as_deref() == Some(volume.as_str()))
                .filter(|s| s.state == SnapshotState::Completed)
                .collect();
            history.sort_by_key(|s| (s.start_time, s.id.clone()));
            if let Some(newest) = history.last() {
                if !restorable(&newest.id) {
                    fail(format!(
                        "{volume}'s newest snapshot {} was deleted",
                        newest.id
                    ));
                }
            }
            let candidates: Vec<Candidate> = history
                .iter()
                .map(|s| Candidate {
                    id: s.id.clone(),
                    time: s.start_time.unwrap(),
                    tags: Vec::new(),
                })
                .collect();
            for decision in retention::plan(rules, chrono_tz::UTC, &candidates) {
                if !decision.reasons.is_empty() && !restorable(&decision.id) {
                    fail(format!(
                        "{volume}'s {} was deleted although its rules keep it ({:?}); the run: {:?}",
                        decision.id, decision.reasons, expired.volumes
                    ));
                }
            }
        }
        // A tick after expiry, the slot still open: it takes nothing again
        // (an original that gave way to its encrypted copy stays until its
        // slot closes, or the tick would not see the slot filled).
        let world = (&stack, &moto, &volumes, seed, &mut attacker);
        let late = step!(
            world,
            minutes(300),
            "create-snapshots",
            create(&stack, minutes(300))
        );
        steps += 1;
        for c in late.created {
            let ids = created
                .entry((c.volume_id.clone(), c.slot.clone()))
                .or_default();
            ids.push(c.snapshot_id);
            assert!(
                ids.len() <= 1,
                "seed {seed}, day {d}: {} snapshotted again after expiry in slot {}: {ids:?}\n{}",
                c.volume_id,
                c.slot,
                attacker.log.join("\n")
            );
        }
    }
    Ran {
        invocations: steps,
        deletions,
        encrypted_copies: encrypted_copies.len(),
        impersonations: attacker.impersonations.len(),
        most_writes: stack.most_writes.get(),
        ..Ran::default()
    }
}

/// The seeds and days to run: one seed (`ADVERSARY_SEED`), or
/// `ADVERSARY_SEEDS` from `ADVERSARY_FIRST_SEED`; `ADVERSARY_DAYS` each.
fn seeds_and_days(seeds: u64, days: i64) -> (Vec<u64>, i64) {
    let days = env_number("ADVERSARY_DAYS", days as u64) as i64;
    let seeds = match std::env::var("ADVERSARY_SEED") {
        Ok(one) => vec![one.parse().unwrap()],
        Err(_) => {
            let first = env_number("ADVERSARY_FIRST_SEED", 1);
            (first..first + env_number("ADVERSARY_SEEDS", seeds)).collect()
        }
    };
    (seeds, days)
}

impl Ran {
    fn add(&mut self, other: Ran) {
        self.invocations += other.invocations;
        self.deletions += other.deletions;
        self.encrypted_copies += other.encrypted_copies;
        self.impersonations += other.impersonations;
        self.locks_checked += other.locks_checked;
        self.dr_copies += other.dr_copies;
        self.instance_stops += other.instance_stops;
        self.most_writes = self.most_writes.max(other.most_writes);
    }
}

#[tokio::test]
async fn no_tag_write_or_forged_snapshot_makes_the_stack_do_harm() {
    let (seeds, days) = seeds_and_days(SEEDS, DAYS);
    let started = std::time::Instant::now();
    let mut total = Ran::default();
    for seed in &seeds {
        total.add(attack(*seed, days).await);
    }
    eprintln!(
        "adversary: {} seeds from {:?}, {days} days each, {:.1} s: {total:?}",
        seeds.len(),
        seeds.first(),
        started.elapsed().as_secs_f64()
    );
    // The invariants were put to the test: expiry deleted, copies replaced.
    assert!(
        total.deletions > 0 && total.encrypted_copies > 0,
        "{total:?}"
    );
}

// ---------------------------------------------------------------------
// Beyond the source region: the disaster-recovery region, the vault
// account and an instance a `stopped` policy may stop.
// ---------------------------------------------------------------------

const DR: &str = "us-west-2";
const VAULT: &str = "210987654321";
const STRANGER: &str = "333333333333";
/// Days the beyond attack runs in `make test` (and seeds).
const BEYOND_DAYS: i64 = 6;
const BEYOND_SEEDS: u64 = 2;

/// `gold` copies to the DR region and shares with the vault; `batch`
/// stops its instances for the snapshot.
fn beyond_policies(key: &str, dr_key: &str) -> String {
    json!({
        "gold": {"schedule": "@daily", "keep": {"last": 2, "daily": 3},
                 "copies": [
                     {"region": DR, "kms_key": dr_key, "keep": {"daily": 2}},
                     {"account": VAULT, "region": REGION, "kms_key": key, "keep": {"daily": 3}}
                 ]},
        "batch": {"schedule": "@daily", "keep": {"last": 2}, "consistency": "stopped"}
    })
    .to_string()
}

/// Where the attacker acts beyond the source region.
struct Places {
    /// The source account in the DR region.
    dr: aws_sdk_ec2::Client,
    /// The vault account (someone there with `ec2:CreateTags` and
    /// `ec2:CopySnapshot`).
    vault: aws_sdk_ec2::Client,
    /// An account the vault does not accept.
    stranger: aws_sdk_ec2::Client,
    stranger_volume: String,
    instance: String,
}

fn vault_identity() -> ebs_lifecycle_core::ownership::Identity {
    ebs_lifecycle_core::ownership::Identity {
        deployment: "vault".into(),
        account: VAULT.into(),
        region: REGION.into(),
    }
}

async fn share_with(ec2: &aws_sdk_ec2::Client, snapshot: &str, account: &str) -> bool {
    ec2.modify_snapshot_attribute()
        .snapshot_id(snapshot)
        .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
        .operation_type(aws_sdk_ec2::types::OperationType::Add)
        .user_ids(account)
        .send()
        .await
        .is_ok()
}

async fn instance_tag(ec2: &aws_sdk_ec2::Client, instance: &str, key: &str) -> Option<String> {
    let answer = ec2
        .describe_instances()
        .instance_ids(instance)
        .send()
        .await
        .unwrap();
    answer
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .flat_map(|i| i.tags())
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value().map(String::from))
}

impl Attacker {
    /// Up to three moves in the DR region, the vault account or on the
    /// instance, between two invocations.
    async fn moves_beyond(
        &mut self,
        moto: &Moto,
        places: &Places,
        volumes: &[String],
        now: DateTime<Utc>,
    ) {
        let ec2 = moto.ec2();
        let sources = snapshots(&ec2).await;
        let dr: Vec<String> = snapshots(&places.dr)
            .await
            .into_iter()
            .map(|s| s.id)
            .collect();
        let vault: Vec<String> = snapshots(&places.vault)
            .await
            .into_iter()
            .map(|s| s.id)
            .collect();
        let mut ids: Vec<String> = sources.iter().map(|s| s.id.clone()).collect();
        ids.extend(dr.iter().cloned());
        ids.extend(vault.iter().cloned());
        let instance = std::slice::from_ref(&places.instance);
        for _ in 0..self.rng.random_range(0..=3) {
            match self.rng.random_range(0..12) {
                0 => self.untag(&places.dr, "dr ", &dr).await,
                1 | 2 => self.retag(&places.dr, "dr ", &dr, &ids, volumes, now).await,
                3 => self.untag(&places.vault, "vault ", &vault).await,
                4 | 5 => {
                    self.retag(&places.vault, "vault ", &vault, &ids, volumes, now)
                        .await
                }
                6 => {
                    // A copy into the DR region with the deployment's copy
                    // Description and labels.
                    let Some(real) = self.pick(&sources).cloned() else {
                        continue;
                    };
                    moto.set_clock(Some(now));
                    let made = places
                        .dr
                        .copy_snapshot()
                        .source_region(REGION)
                        .source_snapshot_id(&real.id)
                        .description(identity(DEPLOYMENT).copy(REGION, &real.id))
                        .send()
                        .await;
                    moto.set_clock(None);
                    if let Some(id) = made.ok().and_then(|m| m.snapshot_id) {
                        put_tags(
                            &places.dr,
                            &id,
                            &[
                                (tags::MANAGED_BY, DEPLOYMENT),
                                (tags::COPY_OF, &real.id),
                                (tags::SOURCE_REGION, REGION),
                                (tags::STATE, "completed"),
                            ],
                        )
                        .await;
                        self.log
                            .push(format!("dr {id}: copy of {} by hand", real.id));
                        self.made_dr.insert(id);
                    }
                }
                7 => {
                    // The source account (compromised, accepted by the
                    // vault) shares a snapshot made by hand with a real
                    // one's Description and tags.
                    let Some(real) = self.pick(&sources).cloned() else {
                        continue;
                    };
                    if let Some(id) = imitation(moto, &real, volumes, now).await {
                        share_with(&ec2, &id, VAULT).await;
                        self.log.push(format!(
                            "{id}: by hand as {}, shared with the vault",
                            real.id
                        ));
                        self.made.insert(id);
                    }
                }
                8 => {
                    // A stranger shares a snapshot that claims to be ours.
                    let Some(real) = self.pick(&sources).cloned() else {
                        continue;
                    };
                    moto.set_clock(Some(now));
                    let made = places
                        .stranger
                        .create_snapshot()
                        .volume_id(&places.stranger_volume)
                        .description(real.description.clone().unwrap_or_default())
                        .send()
                        .await;
                    moto.set_clock(None);
                    if let Some(id) = made.ok().and_then(|m| m.snapshot_id) {
                        for (k, v) in &real.tags {
                            put_tags(&places.stranger, &id, &[(k.as_str(), v.as_str())]).await;
                        }
                        share_with(&places.stranger, &id, VAULT).await;
                        self.log
                            .push(format!("stranger {id}: as {}, shared", real.id));
                    }
                }
                9 => {
                    // Someone in the vault copies a share with the vault's
                    // copy Description and labels.
                    let Some(real) = self.pick(&sources).cloned() else {
                        continue;
                    };
                    moto.set_clock(Some(now));
                    let made = places
                        .vault
                        .copy_snapshot()
                        .source_region(REGION)
                        .source_snapshot_id(&real.id)
                        .description(vault_identity().copy(REGION, &real.id))
                        .send()
                        .await;
                    moto.set_clock(None);
                    if let Some(id) = made.ok().and_then(|m| m.snapshot_id) {
                        put_tags(
                            &places.vault,
                            &id,
                            &[
                                (tags::MANAGED_BY, "vault"),
                                (tags::COPY_OF, &real.id),
                                (tags::SOURCE_ACCOUNT, ACCOUNT),
                                (tags::STATE, "completed"),
                            ],
                        )
                        .await;
                        self.log
                            .push(format!("vault {id}: copy of {} by hand", real.id));
                        self.made_vault.insert(id);
                    }
                }
                10 => {
                    // Incident response stops the instance, or starts
                    // again the one it stopped.
                    let id = places.instance.clone();
                    if self.stopped_by_hand.remove(&id) {
                        ec2.start_instances()
                            .instance_ids(&id)
                            .send()
                            .await
                            .unwrap();
                        self.log.push(format!("{id}: started by hand"));
                    } else if instance_state(&ec2, &id).await == "running" {
                        ec2.stop_instances().instance_ids(&id).send().await.unwrap();
                        self.stopped_by_hand.insert(id.clone());
                        self.log.push(format!("{id}: stopped by hand"));
                    }
                }
                _ => {
                    if self.rng.random_bool(0.3) {
                        self.untag(&ec2, "", instance).await;
                    } else {
                        self.retag(&ec2, "", instance, &ids, volumes, now).await;
                    }
                }
            }
        }
    }
}

/// The vault stack: its own account, ledger, key and notifications.
struct VaultStack {
    adapter: Ec2Adapter,
    ledger: &'static DynamoLedger,
    ledger_requests: RequestCounter,
    most_writes: std::cell::Cell<usize>,
    notifier: RecordingNotifier,
    config: Config,
}

impl VaultStack {
    fn notifications(&self) -> usize {
        self.notifier.sent().len()
    }

    fn ledger_writes(&self) -> usize {
        self.ledger_requests.ledger_writes()
    }
}

/// The source stack's run of copy-snapshots at `at`: DR copies and shares.
async fn copy_run(
    stack: &Stack,
    dr: &Ec2Adapter,
    at: DateTime<Utc>,
) -> Result<copy_snapshots::RunSummary, copy_snapshots::CopyError> {
    let destinations = BTreeMap::from([(
        DR.to_string(),
        copy_snapshots::Destination {
            catalog: dr,
            protections: dr,
            copier: dr,
            deleter: dr,
            tagger: dr,
        },
    )]);
    copy_snapshots::handle(
        copy_snapshots::Ports {
            catalog: &stack.adapter,
            sharing: &stack.adapter,
            keys: &stack.kms,
            destinations: &destinations,
            notifier: &stack.notifier,
            ledger: stack.ledger,
            copy_pacing: copy_snapshots::COPY_PACING,
            delete_pacing: copy_snapshots::DELETE_PACING,
        },
        &stack.config,
        &tick(),
        at,
        plenty(),
    )
    .await
}

async fn vault_run(
    vault: &VaultStack,
    at: DateTime<Utc>,
) -> Result<vault_snapshots::VaultSummary, vault_snapshots::VaultError> {
    vault_snapshots::handle(
        vault_snapshots::Ports {
            catalog: &vault.adapter,
            protections: &vault.adapter,
            copier: &vault.adapter,
            deleter: &vault.adapter,
            tagger: &vault.adapter,
            locker: &vault.adapter,
            notifier: &vault.notifier,
            ledger: vault.ledger,
            copy_pacing: vault_snapshots::COPY_PACING,
            delete_pacing: vault_snapshots::DELETE_PACING,
        },
        &vault.config,
        &tick(),
        at,
        plenty(),
    )
    .await
}

/// What the deployment made in one place (the source region, the DR
/// region, the vault): each of its snapshots -> the source snapshot it
/// stands for (itself in the source region), and every id ever seen there.
#[derive(Default)]
struct Place {
    ours: BTreeMap<String, String>,
    completed: BTreeSet<String>,
    seen: BTreeSet<String>,
}

impl Place {
    /// Records what EC2 lists there now; returns the ids present.
    fn observe(&mut self, listed: &[Snapshot]) -> BTreeSet<String> {
        for s in listed {
            self.seen.insert(s.id.clone());
            if s.state == SnapshotState::Completed && self.ours.contains_key(&s.id) {
                self.completed.insert(s.id.clone());
            }
        }
        listed.iter().map(|s| s.id.clone()).collect()
    }

    /// The invariants of a place: nothing the deployment did not make is
    /// gone; per source volume and policy, the newest completed snapshot
    /// and every one its rules keep (judged by the source's StartTime, as
    /// EC2 recorded it) is there.
    fn check(
        &self,
        present: &BTreeSet<String>,
        made_by_hand: &BTreeSet<String>,
        sources: &BTreeMap<String, Snapshot>,
        rules: impl Fn(&str) -> (String, ebs_lifecycle_core::policy::KeepRules),
    ) -> Result<(), String> {
        for id in self.seen.iter().chain(made_by_hand) {
            if !self.ours.contains_key(id) && !present.contains(id) {
                return Err(format!("{id}, not made by the deployment, was deleted"));
            }
        }
        let mut groups: BTreeMap<(String, String), Vec<Candidate>> = BTreeMap::new();
        for id in &self.completed {
            let Some(source) = sources.get(&self.ours[id]) else {
                return Err(format!("{id} stands for {}, never seen", self.ours[id]));
            };
            let (policy, _) = rules(id);
            let volume = source.volume_id.clone().unwrap_or_default();
            groups.entry((volume, policy)).or_default().push(Candidate {
                id: id.clone(),
                time: source.start_time.unwrap(),
                tags: Vec::new(),
            });
        }
        for ((volume, _), mut candidates) in groups {
            candidates.sort_by_key(|c| (c.time, c.id.clone()));
            let newest = candidates.last().unwrap();
            if !present.contains(&newest.id) {
                return Err(format!("{volume}'s newest {} was deleted", newest.id));
            }
            let (_, keep) = rules(&newest.id);
            for decision in retention::plan(&keep, chrono_tz::UTC, &candidates) {
                if !decision.reasons.is_empty() && !present.contains(&decision.id) {
                    return Err(format!(
                        "{volume}'s {} was deleted although its rules keep it ({:?})",
                        decision.id, decision.reasons
                    ));
                }
            }
        }
        Ok(())
    }
}

async fn attack_beyond(seed: u64, days: i64) -> Ran {
    let moto = Moto::start();
    moto.seed_ids(seed);
    let ec2 = moto.ec2();
    let kms = aws_sdk_kms::Client::new(&moto.sdk_config());
    // The source's volumes are under a key the vault may use.
    let key = create_kms_key(&moto.sdk_config()).await;
    let key_policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{VAULT}:root")},
         "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:CreateGrant", "kms:ReEncrypt*"], "Resource": "*"}
    ]});
    kms.put_key_policy()
        .key_id(key.rsplit('/').next().unwrap())
        .policy_name("default")
        .policy(key_policy.to_string())
        .send()
        .await
        .unwrap();
    let dr_key = moto.kms_key_in(DR).await;
    let policies = beyond_policies(&key, &dr_key);
    let (counted, counter) = moto.counted_ec2();
    let (ledger, ledger_requests) = moto.counted_ledger();
    let stack = Stack {
        adapter: Ec2Adapter::new(counted),
        kms: KmsAdapter::new(kms.clone()),
        notifier: RecordingNotifier::default(),
        config: config_with(&policies, &[("DRY_RUN", "false"), ("MAX_DELETIONS", "50")]),
        ledger,
        ledger_requests,
        most_writes: Default::default(),
    };
    let dr = Ec2Adapter::new(moto.ec2_in(DR));
    let vault_sdk = moto.sdk_config_as(VAULT).await;
    create_ledger_table(&vault_sdk);
    let vault_key = create_kms_key(&vault_sdk).await;
    let vault_policies = r#"{"gold": {"daily": 2}}"#;
    let (vault_ledger, vault_requests) = counted_ledger_in(&vault_sdk);
    let vault = VaultStack {
        adapter: Ec2Adapter::new(aws_sdk_ec2::Client::new(&vault_sdk)),
        ledger: vault_ledger,
        ledger_requests: vault_requests,
        most_writes: Default::default(),
        notifier: RecordingNotifier::default(),
        config: config_with(
            r#"{"gold": {"schedule": "@daily", "keep": {"last": 1}}}"#,
            &[
                ("DEPLOYMENT_NAME", "vault"),
                ("ACCOUNT_ID", VAULT),
                ("DRY_RUN", "false"),
                ("VAULT_FOR_ACCOUNTS", ACCOUNT),
                ("VAULT_POLICIES", vault_policies),
                ("VAULT_KMS_KEY_ID", &vault_key),
                ("VAULT_LOCK_DAYS", "2"),
            ],
        ),
    };
    let stranger = aws_sdk_ec2::Client::new(&moto.sdk_config_as(STRANGER).await);
    let stranger_volume = create_volume(&stranger, 8, &[]).await;
    let mut volumes = Vec::new();
    for _ in 0..2 {
        let id = ec2
            .create_volume()
            .availability_zone("us-east-1a")
            .size(8)
            .encrypted(true)
            .kms_key_id(&key)
            .tag_specifications(tag_spec(
                aws_sdk_ec2::types::ResourceType::Volume,
                &[("Backup", "gold")],
            ))
            .send()
            .await
            .unwrap()
            .volume_id()
            .unwrap()
            .to_string();
        volumes.push(id);
    }
    let (instance, root) =
        run_instance(&ec2, &[("Backup", "batch"), (tags::ALLOW_STOP, "true")]).await;
    volumes.push(root);
    let places = Places {
        dr: moto.ec2_in(DR),
        vault: aws_sdk_ec2::Client::new(&vault_sdk),
        stranger,
        stranger_volume,
        instance: instance.clone(),
    };
    moto.ledger()
        .begin_creations(day(0) - chrono::Duration::hours(1))
        .await
        .unwrap();
    let all = Policies::parse(&policies).unwrap();
    let dr_keep = all.get("gold").unwrap().copies[0].keep.clone();
    let vault_keep = Policies::parse(&format!(
        r#"{{"gold": {{"schedule": "@daily", "keep": {}}}}}"#,
        &vault_policies[9..vault_policies.len() - 1]
    ))
    .unwrap()
    .get("gold")
    .unwrap()
    .keep
    .clone();
    let mut attacker = Attacker::new(seed);
    // (volume, policy, slot) -> what create-snapshots made there.
    let mut created: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
    let mut policy_of: BTreeMap<String, String> = BTreeMap::new();
    let mut source = Place::default();
    let mut dr_place = Place::default();
    let mut vault_place = Place::default();
    // Every source snapshot as last seen (a deleted one still stands
    // behind its copies).
    let mut known: BTreeMap<String, Snapshot> = BTreeMap::new();
    let mut ran = Ran::default();
    let mut locks_checked = 0;

    for d in 0..days {
        let now = day(d);
        let minutes = |m: i64| now + chrono::Duration::minutes(m);
        attacker.log.push(format!("-- day {d}"));
        let fail = |attacker: &Attacker, what: String| -> ! {
            panic!("seed {seed}, day {d}: {what}\n{}", attacker.log.join("\n"))
        };
        for at in [now, minutes(15)] {
            attacker
                .moves_beyond(&moto, &places, &volumes, at - chrono::Duration::minutes(2))
                .await;
            // The instance as this run will read it.
            let state = instance_state(&ec2, &instance).await;
            let may_stop = state == "running"
                && instance_tag(&ec2, &instance, "Backup").await.as_deref() == Some("batch")
                && instance_tag(&ec2, &instance, tags::ALLOW_STOP)
                    .await
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let stops = counter.count("StopInstances");
            let world = (&stack, &moto, &volumes, seed, &mut attacker);
            let made = step!(world, at, "create-snapshots", create(&stack, at));
            ran.invocations += 1;
            let stopped = counter.count("StopInstances") - stops;
            let after = instance_state(&ec2, &instance).await;
            if stopped > usize::from(may_stop) {
                fail(
                    &attacker,
                    format!("{instance} stopped {stopped} times ({state}, may stop: {may_stop})"),
                );
            }
            if after != state {
                fail(
                    &attacker,
                    format!("{instance} was {state}, left {after}: {:?}", made.restarted),
                );
            }
            for c in made.created {
                source
                    .ours
                    .insert(c.snapshot_id.clone(), c.snapshot_id.clone());
                policy_of.insert(c.snapshot_id.clone(), c.policy.clone());
                let ids = created.entry((c.volume_id, c.policy, c.slot)).or_default();
                ids.push(c.snapshot_id);
                if ids.len() > 1 {
                    fail(&attacker, format!("snapshotted twice in one slot: {ids:?}"));
                }
            }
        }
        let world = (&stack, &moto, &volumes, seed, &mut attacker);
        step!(
            world,
            minutes(60),
            "complete-snapshots",
            complete_snapshots::handle(
                complete_ports(&stack.adapter, &stack.notifier, stack.ledger),
                &stack.config,
                &tick(),
                minutes(60),
                plenty(),
            )
        );
        ran.invocations += 1;
        // Copies and shares, the vault copies; an hour and a half later
        // both again (copies complete after 30 minutes of moto's clock):
        // copies tracked, the vault's completed and locked.
        for (copy_at, vault_at) in [(minutes(70), minutes(120)), (minutes(150), minutes(190))] {
            attacker
                .moves_beyond(
                    &moto,
                    &places,
                    &volumes,
                    copy_at - chrono::Duration::minutes(2),
                )
                .await;
            let world = (&stack, &moto, &volumes, seed, &mut attacker);
            let copied = step!(
                world,
                copy_at,
                "copy-snapshots",
                copy_run(&stack, &dr, copy_at)
            );
            for region in &copied.regions {
                for s in &region.started {
                    dr_place
                        .ours
                        .insert(s.copy_id.clone(), s.source_snapshot_id.clone());
                }
                ran.deletions += region.deleted.len();
            }
            attacker
                .moves_beyond(
                    &moto,
                    &places,
                    &volumes,
                    vault_at - chrono::Duration::minutes(2),
                )
                .await;
            let world = (&vault, &moto, &volumes, seed, &mut attacker);
            let vaulted = step!(
                world,
                vault_at,
                "vault-snapshots",
                vault_run(&vault, vault_at)
            );
            ran.invocations += 2;
            ran.deletions += vaulted.deleted.len();
            for id in vaulted.started.iter().chain(&vaulted.adopted) {
                vault_place.ours.insert(id.clone(), String::new());
            }
        }
        // The vault's copies stand for the source snapshot their
        // Description names (nobody can change it).
        // Listed at the simulated time (moto completes a copy 30 minutes
        // of its clock after the start).
        moto.set_clock(Some(minutes(195)));
        let listed_vault = snapshots(&places.vault).await;
        moto.set_clock(None);
        for s in &listed_vault {
            if let Some(source_id) = vault_place.ours.get_mut(&s.id) {
                if let Some(ebs_lifecycle_core::ownership::Claim::Copy {
                    source_snapshot_id, ..
                }) = s
                    .description
                    .as_deref()
                    .and_then(|d| vault_identity().read(d))
                {
                    *source_id = source_snapshot_id;
                }
            }
        }
        // Every completed vault copy completed today is locked now.
        let completed_before = vault_place.completed.clone();
        let present_vault = vault_place.observe(&listed_vault);
        let fresh: Vec<&String> = vault_place
            .completed
            .difference(&completed_before)
            .collect();
        if !fresh.is_empty() {
            let locked: BTreeSet<String> = places
                .vault
                .describe_locked_snapshots()
                .set_snapshot_ids(Some(fresh.iter().map(|s| s.to_string()).collect()))
                .send()
                .await
                .unwrap()
                .snapshots()
                .iter()
                .filter_map(|l| l.snapshot_id().map(String::from))
                .collect();
            for id in &fresh {
                if !locked.contains(*id) {
                    fail(
                        &attacker,
                        format!("vault copy {id} completed and not locked"),
                    );
                }
                locks_checked += 1;
            }
        }
        // Expiry in the source, then the DR region's retention.
        attacker
            .moves_beyond(&moto, &places, &volumes, minutes(238))
            .await;
        let listed = snapshots(&ec2).await;
        for s in &listed {
            known.insert(s.id.clone(), s.clone());
        }
        source.observe(&listed);
        let world = (&stack, &moto, seed, &mut attacker);
        let expired = step!(
            @run world,
            minutes(240),
            "expire-snapshots",
            expire(&stack, minutes(240))
        );
        ran.deletions += expired
            .volumes
            .iter()
            .map(|v| v.deleted.len())
            .sum::<usize>();
        let world = (&stack, &moto, &volumes, seed, &mut attacker);
        let copied = step!(
            world,
            minutes(270),
            "copy-snapshots",
            copy_run(&stack, &dr, minutes(270))
        );
        ran.invocations += 2;
        for region in &copied.regions {
            for s in &region.started {
                dr_place
                    .ours
                    .insert(s.copy_id.clone(), s.source_snapshot_id.clone());
            }
            ran.deletions += region.deleted.len();
        }

        // The invariants, in every place, at the simulated time.
        moto.set_clock(Some(minutes(275)));
        let present = source.observe(&snapshots(&ec2).await);
        let listed_dr = snapshots(&places.dr).await;
        let listed_vault = snapshots(&places.vault).await;
        moto.set_clock(None);
        let rules_of = |id: &str| {
            let policy = policy_of.get(id).cloned().unwrap_or_default();
            let keep = all.get(&policy).unwrap().keep.clone();
            (policy, keep)
        };
        if let Err(e) = source.check(&present, &attacker.made, &known, rules_of) {
            fail(&attacker, format!("source region: {e}"));
        }
        let present_dr = dr_place.observe(&listed_dr);
        let dr_rules = |_: &str| ("gold".to_string(), dr_keep.clone());
        if let Err(e) = dr_place.check(&present_dr, &attacker.made_dr, &known, dr_rules) {
            fail(&attacker, format!("DR region: {e}"));
        }
        let vault_rules = |_: &str| ("gold".to_string(), vault_keep.clone());
        let now_vault = vault_place.observe(&listed_vault);
        let _ = present_vault;
        if let Err(e) = vault_place.check(&now_vault, &attacker.made_vault, &known, vault_rules) {
            fail(&attacker, format!("vault: {e}"));
        }
    }
    ran.locks_checked = locks_checked;
    ran.dr_copies = dr_place.completed.len();
    ran.instance_stops = counter.count("StopInstances");
    ran.most_writes = stack.most_writes.get().max(vault.most_writes.get());
    ran
}

#[tokio::test]
async fn no_attack_in_the_dr_region_the_vault_or_on_an_instance_makes_the_stack_do_harm() {
    let (seeds, days) = seeds_and_days(BEYOND_SEEDS, BEYOND_DAYS);
    let started = std::time::Instant::now();
    let mut total = Ran::default();
    for seed in &seeds {
        total.add(attack_beyond(*seed, days).await);
    }
    eprintln!(
        "adversary beyond: {} seeds from {:?}, {days} days each, {:.1} s: {total:?}",
        seeds.len(),
        seeds.first(),
        started.elapsed().as_secs_f64()
    );
    // The invariants were put to the test in every place.
    assert!(
        total.deletions > 0
            && total.locks_checked > 0
            && total.dr_copies > 0
            && total.instance_stops > 0,
        "{total:?}"
    );
}

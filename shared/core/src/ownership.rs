//! Ownership that a tag cannot forge (docs/policies-and-tags.md,
//! "Ownership").
//!
//! Tags are writable by anyone with `ec2:CreateTags`: they describe, they
//! never authorise. What proves that this deployment made a snapshot is what
//! nobody can change afterwards:
//!
//! - the snapshot's **Description**, written at creation in a fixed format
//!   that names the deployment, its account and region, and what the
//!   snapshot is ([`Identity::scheduled`], [`Identity::copy`]); EC2 has no
//!   call that changes a Description;
//! - EC2's own fields: `OwnerId`, `VolumeId`, `StartTime`;
//! - for a copy, the stack's own ledger, which only the stack's roles can
//!   write ([`CopyRecord`]): a copy names its source in its Description, but
//!   anyone allowed to copy a snapshot can write that Description too.
//!
//! [`sift`] sorts the snapshots carrying this deployment's tag into those it
//! proves (returned with their identity tags set from the proof, so every
//! rule downstream reads proven values) and the suspects. A suspect that
//! this deployment did not make counts for nothing; one it made whose tags
//! were tampered with keeps its place in retention but is never deleted or
//! linked until a person looks. Every suspect is reported once
//! (`tampering-suspected`).
//!
//! A snapshot made by hand with this Description is somebody's new snapshot,
//! not a forgery of an existing one; the rules still refuse it when it could
//! displace a real one: it must fall in its slot's window on the policy's
//! schedule, and the first snapshot of a slot is the one that counts.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::keys;
use crate::model::Snapshot;
use crate::policy::Policies;

/// EC2's limit on a snapshot Description.
pub const DESCRIPTION_LIMIT: usize = 255;

/// The product's marker, first word of every Description.
pub(crate) const MARKER: &str = "ebs-lifecycle";

/// How late after its slot's window a scheduled snapshot may start: the
/// clocks of Lambda (which picks the slot) and EC2 (which stamps StartTime)
/// are not the same clock.
pub(crate) const CLOCK_SKEW: Duration = Duration::minutes(5);

/// Where a deployment runs: what its Descriptions name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub deployment: String,
    pub account: String,
    pub region: String,
}

/// What a scheduled snapshot was taken of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Volume(String),
    /// A multi-volume set: one Description for every volume of the instance.
    Instance(String),
}

impl Subject {
    /// The id a Description names: the volume, or the instance of a set.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Volume(id) | Self::Instance(id) => id,
        }
    }
}

/// True when `description` is in this product's format and names
/// `deployment`, in any account or region: what a listing may hand to
/// [`sift`], which decides. The format is known here only.
pub fn names_deployment(description: &str, deployment: &str) -> bool {
    description
        .strip_prefix(MARKER)
        .and_then(|rest| rest.strip_prefix(' '))
        .and_then(|rest| rest.strip_prefix(deployment))
        .is_some_and(|rest| rest.starts_with(' '))
}

/// What a Description in this deployment's format says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Scheduled {
        subject: Subject,
        policy: String,
        slot: DateTime<Utc>,
    },
    Copy {
        source_region: String,
        source_snapshot_id: String,
    },
}

impl Identity {
    fn prefix(&self) -> String {
        format!(
            "{MARKER} {} {}/{}: ",
            self.deployment, self.account, self.region
        )
    }

    /// The Description of a scheduled snapshot (or of every snapshot of a
    /// multi-volume set, whose subject is the instance).
    pub fn scheduled(&self, subject: &Subject, policy: &str, slot: DateTime<Utc>) -> String {
        format!(
            "{}{} policy {policy} slot {}",
            self.prefix(),
            subject.as_str(),
            keys::format_time(slot)
        )
    }

    /// An EC2 filter pattern (`*` the one wildcard) matching the
    /// Description of every scheduled snapshot of one policy and slot,
    /// whatever its subject. Deployment, account, region and policy are
    /// tokens (no `*`, `?` or `\`), so the pattern has no other wildcard.
    pub fn slot_pattern(&self, policy: &str, slot: DateTime<Utc>) -> String {
        format!(
            "{}* policy {policy} slot {}",
            self.prefix(),
            keys::format_time(slot)
        )
    }

    /// Description of every snapshot this deployment makes here
    /// (scheduled, copies, on demand): its prefix, then anything. The
    /// prefix's names are tokens (no `*`, `?` or `\`).
    pub fn any_pattern(&self) -> String {
        format!("{}*", self.prefix())
    }

    /// The Description of any copy this deployment makes.
    pub fn copy(&self, source_region: &str, source_snapshot_id: &str) -> String {
        format!(
            "{}copy of {source_region}/{source_snapshot_id}",
            self.prefix()
        )
    }

    /// The longest scheduled Description a policy of this name can give
    /// (volume ids are the longest subjects): configuration refuses a
    /// deployment and policy whose Descriptions EC2 would refuse.
    pub fn longest_scheduled(&self, policy: &str) -> usize {
        let slot = DateTime::<Utc>::UNIX_EPOCH;
        let longest_volume = Subject::Volume(format!("vol-{}", "f".repeat(17)));
        self.scheduled(&longest_volume, policy, slot).len()
    }

    /// True for a Description of the stack of the same name and account in
    /// another region: StackSets give every region the same stack name, so
    /// a sibling's disaster-recovery copies here, and ours there, carry the
    /// same `lifecycle:managed-by`. Neither ours nor a forgery: left alone,
    /// not reported.
    pub fn is_sibling(&self, description: &str) -> bool {
        let prefix = format!("{MARKER} {} {}/", self.deployment, self.account);
        description
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once(": "))
            .is_some_and(|(region, _)| is_token(region) && region != self.region)
    }

    /// What a Description claims, if it is in this deployment's format and
    /// names this deployment, account and region; `None` otherwise.
    pub fn read(&self, description: &str) -> Option<Claim> {
        let rest = description.strip_prefix(&self.prefix())?;
        if let Some(source) = rest.strip_prefix("copy of ") {
            let (region, id) = source.split_once('/')?;
            if !is_token(region) || !is_id(id, "snap-") {
                return None;
            }
            return Some(Claim::Copy {
                source_region: region.into(),
                source_snapshot_id: id.into(),
            });
        }
        let words: Vec<&str> = rest.split(' ').collect();
        let [subject, "policy", policy, "slot", slot] = words[..] else {
            return None;
        };
        let subject = if is_id(subject, "vol-") {
            Subject::Volume(subject.into())
        } else if is_id(subject, "i-") {
            Subject::Instance(subject.into())
        } else {
            return None;
        };
        let slot = keys::parse_time(slot)?;
        if !is_token(policy) || keys::format_time(slot) != words[4] {
            return None;
        }
        Some(Claim::Scheduled {
            subject,
            policy: policy.into(),
            slot,
        })
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn is_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// What the stack's ledger holds for a copy it made: the proof that it made
/// it, and the identity of the snapshot the copy stands for (which outlives
/// its source, deleted once the copy replaces it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRecord {
    pub copy_id: String,
    pub source_snapshot_id: String,
    pub volume_id: String,
    pub policy: String,
    pub slot: DateTime<Utc>,
    /// The source's `lifecycle:created-at`: where retention places the copy.
    pub created_at: DateTime<Utc>,
    /// `None`: an encrypted copy beside its source (check-encryption);
    /// `Some(region)`: a disaster-recovery copy in that region.
    pub target: Option<String>,
}

/// The ledger's record of the scheduled snapshots create-snapshots made
/// (docs/policies-and-tags.md, "Ownership"): from `since` (when it first
/// ran with these records) a scheduled Description proves nothing on its
/// own. Anyone allowed to create a snapshot can write the Description of a
/// slot the deployment has not filled yet; only the record, which the
/// stack alone writes right after EC2 answers, says the deployment made it.
/// Snapshots started before `since` are judged as they were before (the
/// first of each slot counts).
///
/// CreateSnapshot has no idempotency token: an answer lost on the way (a
/// timeout, a reset, a 5xx after EC2 acted) leaves a snapshot nobody could
/// record. So create-snapshots writes an intent before each call and removes
/// it once the answer is recorded; a snapshot whose answer was lost is
/// proven by its claim's intent, if it started while that run could have
/// made it ([`ASKED_WINDOW`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Creations {
    /// `None`: the ledger holds no creation records yet (a deployment whose
    /// create-snapshots has not run with them).
    pub since: Option<DateTime<Utc>>,
    /// The recorded snapshots among those asked about.
    pub recorded: BTreeSet<String>,
    /// The intents left behind (answers never recorded), by what they
    /// claim: when the run that asked began.
    pub asked: BTreeMap<AskedKey, DateTime<Utc>>,
}

/// What an intent claims: (subject id: the volume, or the instance of a
/// set; policy; slot).
pub type AskedKey = (String, String, DateTime<Utc>);

/// How long after its run began a snapshot asked for may start: a
/// create-snapshots run lasts at most 15 minutes (Lambda's limit), plus
/// the clocks' skew.
pub(crate) const ASKED_WINDOW: Duration = Duration::minutes(20);

impl Creations {
    /// True when a scheduled snapshot started at `start` is proven only by
    /// a record: from `since`, plus the skew between Lambda's clock (which
    /// wrote `since`) and EC2's (which stamps StartTime), so that no
    /// snapshot made before the records began is asked for one.
    pub fn required_at(&self, start: DateTime<Utc>) -> bool {
        self.since.is_some_and(|since| start >= since + CLOCK_SKEW)
    }

    fn proves(&self, snapshot_id: &str, claim: &AskedKey, start: DateTime<Utc>) -> bool {
        !self.required_at(start)
            || self.recorded.contains(snapshot_id)
            || self.asked_for(snapshot_id, claim, start).is_some()
    }

    /// When the run began whose intent alone proves this snapshot (its
    /// answer was lost: required, not recorded, started in the window).
    fn asked_for(
        &self,
        snapshot_id: &str,
        claim: &AskedKey,
        start: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let at = *self.asked.get(claim)?;
        (self.required_at(start)
            && !self.recorded.contains(snapshot_id)
            && start >= at - CLOCK_SKEW
            && start < at + ASKED_WINDOW)
            .then_some(at)
    }
}

/// A snapshot proven by its claim's intent alone: create-snapshots' answer
/// was lost. Recording it (and then forgetting the intent) makes the proof
/// last as long as the snapshot, not as long as the intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostAnswer {
    pub snapshot_id: String,
    pub claim: AskedKey,
    /// When the run that asked began.
    pub asked_at: DateTime<Utc>,
}

impl LostAnswer {
    /// True once every snapshot the lost call can have made has started
    /// and is listed: only then may the intent give way to records.
    pub fn settled(&self, now: DateTime<Utc>) -> bool {
        now >= self.asked_at + ASKED_WINDOW + CLOCK_SKEW
    }
}

/// Why a snapshot carrying this deployment's tag is suspected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Tampering {
    /// No Description in this deployment's format naming it, its account and region.
    ForeignDescription,
    /// EC2 says another account owns it.
    WrongOwner {
        owner: String,
    },
    /// EC2's VolumeId (or a tag) disagrees with the Description.
    VolumeMismatch {
        claimed: String,
        found: String,
    },
    InstanceMismatch {
        claimed: String,
        found: String,
    },
    /// A tag disagrees with the Description.
    TagMismatch {
        key: String,
        claimed: String,
        found: String,
    },
    /// The slot is not one of the policy's schedule.
    NotOnSchedule {
        slot: String,
    },
    /// EC2's StartTime is outside the slot's window.
    OutsideSlot {
        slot: String,
        start_time: String,
    },
    /// Another snapshot of the volume, started earlier, fills this slot.
    DuplicateOfSlot {
        first: String,
    },
    /// A scheduled snapshot started after the ledger began recording
    /// creations, which it does not record: made by someone else with a
    /// slot's Description.
    CreationNotRecorded,
    /// A copy the stack's ledger does not know.
    CopyNotRecorded,
    /// A copy whose ledger record names another source.
    CopySourceMismatch {
        claimed: String,
        recorded: String,
    },
    /// A copy-link tag (`encrypted-copy-of`, `superseded-by`) that the
    /// Description and the ledger do not support.
    ForgedLink {
        key: String,
        value: String,
    },
}

impl Tampering {
    /// Short stable name for summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ForeignDescription => "foreign-description",
            Self::WrongOwner { .. } => "wrong-owner",
            Self::VolumeMismatch { .. } => "volume-mismatch",
            Self::InstanceMismatch { .. } => "instance-mismatch",
            Self::TagMismatch { .. } => "tag-mismatch",
            Self::NotOnSchedule { .. } => "not-on-schedule",
            Self::OutsideSlot { .. } => "outside-slot",
            Self::DuplicateOfSlot { .. } => "duplicate-of-slot",
            Self::CreationNotRecorded => "creation-not-recorded",
            Self::CopyNotRecorded => "copy-not-recorded",
            Self::CopySourceMismatch { .. } => "copy-source-mismatch",
            Self::ForgedLink { .. } => "forged-link",
        }
    }
}

/// A snapshot with this deployment's tag that the check refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suspect {
    pub snapshot_id: String,
    /// True when the deployment made it (its Description and EC2's fields
    /// agree) and only its tags were tampered with: it keeps its place in
    /// retention, under its proven identity, and is never deleted or linked.
    /// False: the deployment did not make it; it counts for nothing.
    pub made_by_deployment: bool,
    pub findings: Vec<Tampering>,
}

/// The snapshots of a run, sorted by [`sift`].
#[derive(Debug, Clone, Default)]
pub struct Sifted {
    /// Every snapshot the deployment made, its identity tags set from the
    /// proof (the tampered ones included: see [`Suspect::made_by_deployment`]).
    pub owned: Vec<Snapshot>,
    /// The snapshots it did not make, as they were given but for their
    /// Description (a function that looks at every snapshot of the account
    /// still judges them, as foreign).
    pub rejected: Vec<Snapshot>,
    pub suspects: Vec<Suspect>,
    /// Owned snapshots proven by an intent alone (a lost answer).
    pub lost_answers: Vec<LostAnswer>,
}

impl Sifted {
    /// The owned snapshots that must not be deleted or linked: made by the
    /// deployment, tags tampered with.
    pub fn held_for_review(&self) -> BTreeSet<String> {
        self.suspects
            .iter()
            .filter(|s| s.made_by_deployment)
            .map(|s| s.snapshot_id.clone())
            .collect()
    }
}

/// What the snapshots given to [`sift`] are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every snapshot of the deployment on the volumes concerned: the run
    /// counts them for retention, so of two claiming one volume, policy and
    /// slot, the first started counts and the later is a suspect.
    WholeVolumes,
    /// Some snapshots (an event's, those pending): each is checked on its
    /// own; the run counts nothing, so duplicates do not matter to it.
    SomeSnapshots,
}

/// Sort `snapshots` (those carrying this deployment's `lifecycle:managed-by`)
/// into what the deployment made and the suspects.
///
/// `copies`: the ledger's records of the copies among them, by copy id;
/// `creations`: its records of the scheduled ones. A scheduled snapshot's
/// policy, when configured, bounds its slot: on the schedule, StartTime in `[slot, next slot + CLOCK_SKEW)`.
pub fn sift(
    identity: &Identity,
    policies: &Policies,
    copies: &BTreeMap<String, CopyRecord>,
    creations: &Creations,
    snapshots: Vec<Snapshot>,
    scope: Scope,
) -> Sifted {
    let mut sifted = Sifted::default();
    let (siblings, snapshots): (Vec<Snapshot>, Vec<Snapshot>) =
        snapshots.into_iter().partition(|s| {
            s.description
                .as_deref()
                .is_some_and(|d| identity.is_sibling(d))
        });
    sifted.rejected.extend(siblings.into_iter().map(|mut s| {
        s.description = None;
        s
    }));
    let mut checked: Vec<Checked> = snapshots
        .into_iter()
        .map(|mut s| {
            let verdict = check(identity, policies, copies, creations, &mut s);
            match verdict {
                Ok(findings) => (s, findings, true),
                Err(findings) => (s, findings, false),
            }
        })
        .collect();

    if scope == Scope::WholeVolumes {
        first_of_each_slot(copies, &mut checked);
    }
    sort_links(copies, &mut checked);

    // Most are the deployment's: room for all at once, not the doubling
    // growth that overshoots by up to half (megabytes at 20,000).
    sifted.owned.reserve_exact(checked.len());
    for (mut s, findings, made) in checked {
        if made {
            if let Some(lost) = lost_answer(identity, creations, &s) {
                sifted.lost_answers.push(lost);
            }
        }
        // Proven (or not): nothing downstream reads it, and on a large
        // account its text is a good part of a snapshot's memory.
        s.description = None;
        if !findings.is_empty() {
            sifted.suspects.push(Suspect {
                snapshot_id: s.id.clone(),
                made_by_deployment: made,
                findings,
            });
        }
        if made {
            sifted.owned.push(s);
        } else {
            sifted.rejected.push(s);
        }
    }
    sifted
}

/// The lost answer a proven scheduled snapshot stands for, if its intent
/// alone proves it.
fn lost_answer(identity: &Identity, creations: &Creations, s: &Snapshot) -> Option<LostAnswer> {
    let Claim::Scheduled {
        subject,
        policy,
        slot,
    } = identity.read(s.description.as_deref()?)?
    else {
        return None;
    };
    let claim = (subject.as_str().to_string(), policy, slot);
    let asked_at = creations.asked_for(&s.id, &claim, s.start_time?)?;
    Some(LostAnswer {
        snapshot_id: s.id.clone(),
        claim,
        asked_at,
    })
}

type Checked = (Snapshot, Vec<Tampering>, bool);
/// A snapshot's place in its slot: (StartTime, id) of the snapshot, or of
/// the original a copy stands for. The earliest fills the slot.
type Place = (Option<DateTime<Utc>>, String);
/// (EC2 volume, policy, slot): what a scheduled snapshot claims to fill.
type SlotKey = (String, String, String);

/// The first snapshot of each volume, policy and slot counts; a later one
/// with the same claim is somebody else's (a retry that raced is too: it is
/// reported, and left for a person to delete). A copy holds its original's
/// place (its ledger record: the original's slot and time), so once the
/// original has given way to its copy, a snapshot made by hand with the
/// original's Description still finds the slot filled.
fn first_of_each_slot(copies: &BTreeMap<String, CopyRecord>, checked: &mut [Checked]) {
    let mut first: BTreeMap<SlotKey, Place> = BTreeMap::new();
    for (s, _, made) in checked.iter() {
        if let (true, Some((key, candidate))) = (*made, slot_claim(copies, s)) {
            let entry = first.entry(key).or_insert_with(|| candidate.clone());
            if candidate < *entry {
                *entry = candidate;
            }
        }
    }
    for (s, findings, made) in checked.iter_mut() {
        if let (true, Some((key, (_, own)))) = (*made, slot_claim(copies, s)) {
            if let Some((_, id)) = first.get(&key).filter(|(_, id)| *id != own) {
                findings.push(Tampering::DuplicateOfSlot { first: id.clone() });
                *made = false;
            }
        }
    }
}

/// What a snapshot claims to fill, and its place there: (StartTime, id)
/// for a scheduled snapshot, its original's for a recorded copy.
fn slot_claim(copies: &BTreeMap<String, CopyRecord>, s: &Snapshot) -> Option<(SlotKey, Place)> {
    if s.is_copy() {
        let r = copies.get(&s.id)?;
        return Some((
            (
                r.volume_id.clone(),
                r.policy.clone(),
                keys::format_time(r.slot),
            ),
            (Some(r.created_at), r.source_snapshot_id.clone()),
        ));
    }
    Some((slot_key(s)?, (s.start_time, s.id.clone())))
}

/// A superseded-by link stands only if it names a copy the deployment made
/// of this very snapshot. One naming a snapshot not given is left alone:
/// a dead link (its copy deleted, or outside what the run looked at)
/// supersedes nothing, since only a completed copy the run sees does.
fn sort_links(copies: &BTreeMap<String, CopyRecord>, checked: &mut [Checked]) {
    let given: BTreeSet<String> = checked.iter().map(|(s, _, _)| s.id.clone()).collect();
    let copy_sources: BTreeMap<String, String> = checked
        .iter()
        .filter(|(_, _, made)| *made)
        .filter_map(|(s, _, _)| copies.get(&s.id))
        .map(|r| (r.copy_id.clone(), r.source_snapshot_id.clone()))
        .collect();
    for (s, findings, made) in checked.iter_mut() {
        if let Some(copy) = s.tags.get(keys::SUPERSEDED_BY).cloned() {
            if !given.contains(&copy) {
                continue;
            }
            let proven = *made && copy_sources.get(&copy) == Some(&s.id);
            if !proven {
                s.tags.remove(keys::SUPERSEDED_BY);
                findings.push(Tampering::ForgedLink {
                    key: keys::SUPERSEDED_BY.into(),
                    value: crate::text::excerpt(&copy),
                });
            }
        }
    }
}

/// A scheduled snapshot's claim: (EC2 volume, policy, slot). Copies have none.
fn slot_key(s: &Snapshot) -> Option<SlotKey> {
    if s.is_copy() {
        return None;
    }
    Some((
        s.volume_id.clone()?,
        s.tags.get(keys::POLICY)?.clone(),
        s.tags.get(keys::SLOT)?.clone(),
    ))
}

/// One snapshot on its own. `Ok(findings)`: the deployment made it (the
/// findings, if any, are tampered tags, now set from the proof). `Err`: it
/// did not.
fn check(
    identity: &Identity,
    policies: &Policies,
    copies: &BTreeMap<String, CopyRecord>,
    creations: &Creations,
    s: &mut Snapshot,
) -> Result<Vec<Tampering>, Vec<Tampering>> {
    let Some(claim) = s.description.as_deref().and_then(|d| identity.read(d)) else {
        return Err(vec![Tampering::ForeignDescription]);
    };
    if let Some(owner) = s.owner_id.as_deref().filter(|o| *o != identity.account) {
        return Err(vec![Tampering::WrongOwner {
            owner: owner.into(),
        }]);
    }
    let mut findings = match claim {
        Claim::Scheduled {
            subject,
            policy,
            slot,
        } => check_scheduled(policies, creations, s, subject, policy, slot),
        Claim::Copy {
            source_region,
            source_snapshot_id,
        } => check_copy(identity, copies, s, source_region, source_snapshot_id),
    }?;
    // Listed by its Description although its `managed-by` is gone or
    // rewritten: still the deployment's (it fills its slot, so a snapshot
    // made by hand with the same Description cannot take its place), held
    // for review and reported. The tag is not set back: what lacks it stays
    // out of retention and is never deleted, as the tag's owner asked.
    if let Some(found) = s
        .tags
        .get(keys::MANAGED_BY)
        .filter(|v| **v != identity.deployment)
        .cloned()
        .or_else(|| (!s.tags.contains_key(keys::MANAGED_BY)).then(String::new))
    {
        findings.push(Tampering::TagMismatch {
            key: keys::MANAGED_BY.into(),
            claimed: identity.deployment.clone(),
            found: crate::text::excerpt(&found),
        });
    }
    Ok(findings)
}

fn check_scheduled(
    policies: &Policies,
    creations: &Creations,
    s: &mut Snapshot,
    subject: Subject,
    policy: String,
    slot: DateTime<Utc>,
) -> Result<Vec<Tampering>, Vec<Tampering>> {
    let found_volume = s.volume_id.clone().unwrap_or_default();
    match &subject {
        Subject::Volume(claimed) if *claimed != found_volume => {
            return Err(vec![Tampering::VolumeMismatch {
                claimed: claimed.clone(),
                found: found_volume,
            }]);
        }
        Subject::Instance(claimed) => {
            if let Some(found) = s.tags.get(keys::INSTANCE_ID).filter(|f| *f != claimed) {
                return Err(vec![Tampering::InstanceMismatch {
                    claimed: claimed.clone(),
                    found: crate::text::excerpt(found),
                }]);
            }
        }
        Subject::Volume(_) => {}
    }
    let slot_text = keys::format_time(slot);
    let Some(start) = s.start_time else {
        return Err(vec![Tampering::OutsideSlot {
            slot: slot_text,
            start_time: String::new(),
        }]);
    };
    let mut window_end = None;
    if policies.get(&policy).is_some() {
        // A slot of the policy's schedule, or of one it had then (the
        // ledger's records): a changed schedule or time zone leaves its
        // history proven, and the window is that schedule's.
        let Some(schedule) = policies.schedule_of(&policy, slot) else {
            return Err(vec![Tampering::NotOnSchedule { slot: slot_text }]);
        };
        window_end = schedule.next_slot_after(slot).map(|n| n + CLOCK_SKEW);
    }
    if start < slot || window_end.is_some_and(|end| start >= end) {
        return Err(vec![Tampering::OutsideSlot {
            slot: slot_text,
            start_time: keys::format_time(start),
        }]);
    }
    let asked = (subject.as_str().to_string(), policy.clone(), slot);
    if !creations.proves(&s.id, &asked, start) {
        return Err(vec![Tampering::CreationNotRecorded]);
    }

    // Made by the deployment. Tags that disagree are set back to the proof.
    let mut findings = Vec::new();
    let mut expect = |tags: &mut crate::model::Tags, key: &str, value: String| {
        set_to_proof(tags, &mut findings, key, value)
    };
    expect(&mut s.tags, keys::POLICY, policy);
    expect(&mut s.tags, keys::SLOT, slot_text);
    // The set's per-volume tags are written later by tag-snapshots: an
    // absent one is not a disagreement, and stays absent.
    if s.tags.contains_key(keys::VOLUME_ID) && !found_volume.is_empty() {
        expect(&mut s.tags, keys::VOLUME_ID, found_volume);
    }
    if let Subject::Instance(instance) = subject {
        if s.tags.contains_key(keys::INSTANCE_ID) {
            expect(&mut s.tags, keys::INSTANCE_ID, instance);
        }
    }
    // A scheduled snapshot is no copy, whatever its tags say: a copy's
    // tags would make retention place it at its `created-at` (any date the
    // attacker writes) and link it to a source. Its time is EC2's StartTime.
    for key in COPY_IDENTITY {
        if let Some(value) = s.tags.remove(*key) {
            findings.push(Tampering::ForgedLink {
                key: (*key).into(),
                value: crate::text::excerpt(&value),
            });
        }
    }
    Ok(findings)
}

/// The tags that make a snapshot a copy ([`Snapshot::is_copy`]) or name
/// where it came from: only a copy's Description and its ledger record can
/// give them (`check_copy`), so a scheduled snapshot carrying one was
/// tampered with.
///
/// [`Snapshot::is_copy`]: crate::model::Snapshot::is_copy
const COPY_IDENTITY: &[&str] = &[
    keys::ENCRYPTED_COPY_OF,
    keys::COPY_OF,
    keys::SOURCE_REGION,
    keys::SOURCE_ACCOUNT,
    keys::TARGET,
];

/// Set `key` to the proven `value`; a different value there was tampering.
fn set_to_proof(
    tags: &mut crate::model::Tags,
    findings: &mut Vec<Tampering>,
    key: &str,
    value: String,
) {
    if let Some(found) = tags.get(key).filter(|f| **f != value) {
        findings.push(Tampering::TagMismatch {
            key: key.into(),
            claimed: value.clone(),
            found: crate::text::excerpt(found),
        });
    }
    tags.insert(key.into(), value);
}

fn check_copy(
    identity: &Identity,
    copies: &BTreeMap<String, CopyRecord>,
    s: &mut Snapshot,
    source_region: String,
    source: String,
) -> Result<Vec<Tampering>, Vec<Tampering>> {
    let Some(record) = copies.get(&s.id) else {
        return Err(vec![Tampering::CopyNotRecorded]);
    };
    if record.source_snapshot_id != source || source_region != identity.region {
        return Err(vec![Tampering::CopySourceMismatch {
            claimed: format!("{source_region}/{source}"),
            recorded: format!("{}/{}", identity.region, record.source_snapshot_id),
        }]);
    }
    let mut findings = Vec::new();
    let mut expect = |tags: &mut crate::model::Tags, key: &str, value: String| {
        set_to_proof(tags, &mut findings, key, value)
    };
    let tags = &mut s.tags;
    // The record says which kind of copy it is; the other kind's links
    // are forged.
    let foreign_links: &[&str] = match &record.target {
        None => {
            expect(
                tags,
                keys::ENCRYPTED_COPY_OF,
                record.source_snapshot_id.clone(),
            );
            &[keys::COPY_OF, keys::SOURCE_REGION, keys::TARGET]
        }
        Some(target) => {
            expect(tags, keys::COPY_OF, record.source_snapshot_id.clone());
            expect(tags, keys::SOURCE_REGION, identity.region.clone());
            expect(tags, keys::TARGET, target.clone());
            &[keys::ENCRYPTED_COPY_OF]
        }
    };
    expect(tags, keys::VOLUME_ID, record.volume_id.clone());
    expect(tags, keys::POLICY, record.policy.clone());
    expect(tags, keys::SLOT, keys::format_time(record.slot));
    expect(tags, keys::CREATED_AT, keys::format_time(record.created_at));
    for key in foreign_links {
        if let Some(value) = s.tags.remove(*key) {
            findings.push(Tampering::ForgedLink {
                key: (*key).into(),
                value: crate::text::excerpt(&value),
            });
        }
    }
    if let Some(value) = s.tags.remove(keys::SUPERSEDED_BY) {
        findings.push(Tampering::ForgedLink {
            key: keys::SUPERSEDED_BY.into(),
            value: crate::text::excerpt(&value),
        });
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SnapshotState;

    fn me() -> Identity {
        Identity {
            deployment: "prod-backups".into(),
            account: "123456789012".into(),
            region: "eu-west-1".into(),
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        keys::parse_time(s).unwrap()
    }

    fn policies() -> Policies {
        Policies::parse(r#"{"daily": {"schedule": "0 3 * * *", "keep": {"last": 2}}}"#).unwrap()
    }

    /// A snapshot as create-snapshots makes it: Description, tags, EC2 fields.
    fn made(id: &str, volume: &str, slot: &str, started: &str) -> Snapshot {
        let slot = t(slot);
        let mut tags = crate::model::Tags::new();
        tags.insert(keys::MANAGED_BY.into(), "prod-backups".into());
        tags.insert(keys::POLICY.into(), "daily".into());
        tags.insert(keys::SLOT.into(), keys::format_time(slot));
        tags.insert(keys::VOLUME_ID.into(), volume.into());
        Snapshot {
            id: id.into(),
            volume_id: Some(volume.into()),
            state: SnapshotState::Completed,
            start_time: Some(t(started)),
            volume_size_gib: Some(8),
            full_size_bytes: None,
            archived: false,
            restore_expiry: None,
            encrypted: true,
            kms_key_id: None,
            description: Some(me().scheduled(&Subject::Volume(volume.into()), "daily", slot)),
            owner_id: Some("123456789012".into()),
            tags,
        }
    }

    fn sift_all(snapshots: Vec<Snapshot>, copies: &[CopyRecord]) -> Sifted {
        let copies = copies
            .iter()
            .map(|r| (r.copy_id.clone(), r.clone()))
            .collect();
        sift(
            &me(),
            &policies(),
            &copies,
            &Creations::default(),
            snapshots,
            Scope::WholeVolumes,
        )
    }

    fn findings(sifted: &Sifted, id: &str) -> Vec<&'static str> {
        sifted
            .suspects
            .iter()
            .filter(|s| s.snapshot_id == id)
            .flat_map(|s| s.findings.iter().map(Tampering::kind))
            .collect()
    }

    /// The schedule changed (03:00 UTC to 01:00 in Berlin) and the stack
    /// recorded both: the history made under the old one stays proven,
    /// each snapshot in its old window; without the records it would all
    /// be suspect. A hand-made snapshot claiming an old slot now, outside
    /// the old schedule's window, is still refused.
    #[test]
    fn a_changed_schedule_leaves_its_history_proven_by_the_ledgers_records() {
        use crate::schedule::{PastSchedules, ScheduleRecord};
        let changed =
            Policies::parse(r#"{"daily": {"schedule": "0 1 * * *", "timezone": "Europe/Berlin", "keep": {"last": 2}}}"#)
                .unwrap();
        let history = vec![
            made(
                "snap-old1",
                "vol-1",
                "2026-12-04T03:00:00Z",
                "2026-12-04T03:00:09Z",
            ),
            made(
                "snap-old2",
                "vol-1",
                "2026-12-05T03:00:00Z",
                "2026-12-05T03:00:09Z",
            ),
            // The new schedule's first slot (01:00 Berlin is 00:00 UTC).
            made(
                "snap-new1",
                "vol-1",
                "2026-12-07T00:00:00Z",
                "2026-12-07T00:00:05Z",
            ),
            // Made by hand now, claiming an old-schedule slot long gone.
            made(
                "snap-late",
                "vol-2",
                "2026-12-05T03:00:00Z",
                "2026-12-07T00:10:00Z",
            ),
        ];
        let unrecorded = sift(
            &me(),
            &changed,
            &BTreeMap::new(),
            &Creations::default(),
            history.clone(),
            Scope::WholeVolumes,
        );
        assert_eq!(findings(&unrecorded, "snap-old1"), ["not-on-schedule"]);

        let records = vec![
            ScheduleRecord {
                policy: "daily".into(),
                expression: "0 3 * * *".into(),
                time_zone: "UTC".into(),
                from: t("2026-11-01T00:00:00Z"),
            },
            ScheduleRecord {
                policy: "daily".into(),
                expression: "0 1 * * *".into(),
                time_zone: "Europe/Berlin".into(),
                from: t("2026-12-06T12:00:00Z"),
            },
        ];
        let recorded = changed.with_past(PastSchedules::from_records(
            records,
            t("2026-12-07T06:00:00Z"),
        ));
        let sifted = sift(
            &me(),
            &recorded,
            &BTreeMap::new(),
            &Creations::default(),
            history,
            Scope::WholeVolumes,
        );
        let owned: Vec<&str> = sifted.owned.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(owned, ["snap-old1", "snap-old2", "snap-new1"]);
        assert!(findings(&sifted, "snap-old1").is_empty());
        assert_eq!(findings(&sifted, "snap-late"), ["outside-slot"]);
    }

    /// Once the ledger records creations, a snapshot made by hand with the
    /// Description of a slot the deployment has not filled (or fills later:
    /// pre-empting it by starting first) proves nothing: the deployment's
    /// recorded snapshot is the slot's, even though it started later, and
    /// the impersonation is refused. What was made before the records began
    /// is judged as before (the first of the slot), clock skew allowed.
    #[test]
    fn from_the_first_creation_record_only_a_recorded_snapshot_fills_a_slot() {
        let history = vec![
            // Before the records began (and within the clock skew of it).
            made(
                "snap-old",
                "vol-1",
                "2026-12-05T03:00:00Z",
                "2026-12-05T03:00:09Z",
            ),
            made(
                "snap-edge",
                "vol-2",
                "2026-12-05T03:00:00Z",
                "2026-12-06T02:04:00Z",
            ),
            // The attacker starts first in the slot; the deployment's follows.
            made(
                "snap-hand",
                "vol-1",
                "2026-12-06T03:00:00Z",
                "2026-12-06T03:00:01Z",
            ),
            made(
                "snap-ours",
                "vol-1",
                "2026-12-06T03:00:00Z",
                "2026-12-06T03:00:30Z",
            ),
            // A slot the deployment never filled.
            made(
                "snap-alone",
                "vol-3",
                "2026-12-06T03:00:00Z",
                "2026-12-06T03:10:00Z",
            ),
        ];
        let creations = Creations {
            since: Some(t("2026-12-06T02:00:00Z")),
            recorded: ["snap-ours".to_string()].into(),
            ..Creations::default()
        };
        let sifted = sift(
            &me(),
            &policies(),
            &BTreeMap::new(),
            &creations,
            history.clone(),
            Scope::WholeVolumes,
        );
        let owned: Vec<&str> = sifted.owned.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(owned, ["snap-old", "snap-edge", "snap-ours"]);
        for impostor in ["snap-hand", "snap-alone"] {
            assert_eq!(findings(&sifted, impostor), ["creation-not-recorded"]);
            assert!(sifted.rejected.iter().any(|s| s.id == impostor));
        }
        // The deployment's answer for vol-3 was lost: its intent (the run
        // began at 03:00) proves what started while that run could have
        // made it, nothing later and nothing of another volume.
        let mut lost = creations.clone();
        lost.asked.insert(
            ("vol-3".into(), "daily".into(), t("2026-12-06T03:00:00Z")),
            t("2026-12-06T03:00:00Z"),
        );
        let late = made(
            "snap-late",
            "vol-3",
            "2026-12-06T03:00:00Z",
            "2026-12-06T03:25:00Z",
        );
        let mut with_late = history.clone();
        with_late.push(late);
        let sifted = sift(
            &me(),
            &policies(),
            &BTreeMap::new(),
            &lost,
            with_late,
            Scope::WholeVolumes,
        );
        let owned: Vec<&str> = sifted.owned.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(owned, ["snap-old", "snap-edge", "snap-ours", "snap-alone"]);
        assert_eq!(findings(&sifted, "snap-hand"), ["creation-not-recorded"]);
        assert_eq!(findings(&sifted, "snap-late"), ["creation-not-recorded"]);
        // It is named as a lost answer (to be recorded), once the lost
        // call's window has passed; the recorded one is not.
        let lost_answer = LostAnswer {
            snapshot_id: "snap-alone".into(),
            claim: ("vol-3".into(), "daily".into(), t("2026-12-06T03:00:00Z")),
            asked_at: t("2026-12-06T03:00:00Z"),
        };
        assert_eq!(sifted.lost_answers, std::slice::from_ref(&lost_answer));
        assert!(!lost_answer.settled(t("2026-12-06T03:15:00Z")));
        assert!(lost_answer.settled(t("2026-12-06T03:30:00Z")));

        // Without records the first started fills the slot, as before.
        let before = sift_all(history, &[]);
        assert_eq!(findings(&before, "snap-ours"), ["duplicate-of-slot"]);
    }

    #[test]
    fn descriptions_read_back_and_fit_ec2() {
        let me = me();
        let slot = t("2026-11-30T03:00:00Z");
        for subject in [
            Subject::Volume("vol-0123456789abcdef0".into()),
            Subject::Instance("i-0123456789abcdef0".into()),
        ] {
            let text = me.scheduled(&subject, "daily", slot);
            assert_eq!(
                text,
                format!(
                    "ebs-lifecycle prod-backups 123456789012/eu-west-1: {} policy daily slot 2026-11-30T03:00:00Z",
                    subject.as_str()
                )
            );
            assert_eq!(
                me.read(&text),
                Some(Claim::Scheduled {
                    subject,
                    policy: "daily".into(),
                    slot
                })
            );
        }
        let copy = me.copy("eu-west-1", "snap-0abc");
        assert_eq!(
            copy,
            "ebs-lifecycle prod-backups 123456789012/eu-west-1: copy of eu-west-1/snap-0abc"
        );
        assert!(matches!(me.read(&copy), Some(Claim::Copy { .. })));
        // The longest names the configuration allows still fit.
        let longest = Identity {
            deployment: "d".repeat(128),
            account: "123456789012".into(),
            region: "ap-southeast-4".into(),
        };
        assert_eq!(longest.longest_scheduled(&"p".repeat(64)), 291);
        assert!(longest.longest_scheduled(&"p".repeat(20)) <= DESCRIPTION_LIMIT);
    }

    #[test]
    fn a_description_names_its_deployment_and_no_other() {
        let me = me();
        let slot = t("2026-11-30T03:00:00Z");
        let scheduled = me.scheduled(&Subject::Volume("vol-1".into()), "daily", slot);
        assert!(names_deployment(&scheduled, "prod-backups"));
        assert!(names_deployment(
            &me.copy("us-east-1", "snap-1"),
            "prod-backups"
        ));
        for other in ["prod", "prod-backups-2", "backups", ""] {
            assert!(!names_deployment(&scheduled, other), "{other}");
        }
        assert!(!names_deployment("golden image", "prod-backups"));
    }

    #[test]
    fn another_deployment_account_region_or_a_mangled_text_is_not_ours() {
        let me = me();
        let slot = t("2026-11-30T03:00:00Z");
        let v = Subject::Volume("vol-1".into());
        let others = [
            Identity {
                deployment: "prod-backups-2".into(),
                ..me.clone()
            },
            Identity {
                account: "999999999999".into(),
                ..me.clone()
            },
            Identity {
                region: "us-east-1".into(),
                ..me.clone()
            },
        ];
        for other in others {
            assert_eq!(me.read(&other.scheduled(&v, "daily", slot)), None);
        }
        let good = me.scheduled(&v, "daily", slot);
        for bad in [
            format!("{good} "),
            format!("x{good}"),
            good.replace("policy", "Policy"),
            good.replace("2026-11-30T03:00:00Z", "2026-11-30T03:00:00+00:00"),
            good.replace("vol-1", "snap-1"),
            good.replace(" daily ", " da ily "),
            "ebs-lifecycle prod-backups 123456789012/eu-west-1: copy of eu-west-1/".into(),
            String::new(),
        ] {
            assert_eq!(me.read(&bad), None, "{bad}");
        }
    }

    #[test]
    fn what_the_deployment_made_passes_untouched() {
        let s = made(
            "snap-1",
            "vol-1",
            "2026-11-30T03:00:00Z",
            "2026-11-30T03:00:12Z",
        );
        let sifted = sift_all(vec![s.clone()], &[]);
        assert!(sifted.suspects.is_empty());
        // Untouched but for the Description, read and dropped.
        assert_eq!(
            sifted.owned,
            vec![Snapshot {
                description: None,
                ..s
            }]
        );
    }

    #[test]
    fn tags_copied_onto_a_snapshot_the_deployment_never_made_count_for_nothing() {
        let real = made(
            "snap-1",
            "vol-1",
            "2026-11-30T03:00:00Z",
            "2026-11-30T03:00:12Z",
        );
        let mut golden = real.clone();
        golden.id = "snap-golden".into();
        golden.description = Some("golden image, do not delete".into());
        let mut other_owner = real.clone();
        other_owner.id = "snap-2".into();
        other_owner.owner_id = Some("999999999999".into());
        let sifted = sift_all(vec![real, golden, other_owner], &[]);
        assert_eq!(sifted.owned.len(), 1);
        assert_eq!(findings(&sifted, "snap-golden"), ["foreign-description"]);
        assert_eq!(findings(&sifted, "snap-2"), ["wrong-owner"]);
        assert!(sifted.suspects.iter().all(|s| !s.made_by_deployment));
    }

    #[test]
    fn a_description_must_agree_with_ec2s_volume_and_start_time() {
        let mut other_volume = made(
            "snap-1",
            "vol-1",
            "2026-11-30T03:00:00Z",
            "2026-11-30T03:00:12Z",
        );
        other_volume.volume_id = Some("vol-9".into());
        let before_slot = made(
            "snap-2",
            "vol-2",
            "2026-11-30T03:00:00Z",
            "2026-11-30T02:59:59Z",
        );
        let next_day = made(
            "snap-3",
            "vol-3",
            "2026-11-29T03:00:00Z",
            "2026-11-30T03:05:00Z",
        );
        let just_in_time = made(
            "snap-4",
            "vol-4",
            "2026-11-29T03:00:00Z",
            "2026-11-30T03:04:59Z",
        );
        let off_schedule = made(
            "snap-5",
            "vol-5",
            "2026-11-30T03:00:01Z",
            "2026-11-30T03:00:12Z",
        );
        let sifted = sift_all(
            vec![
                other_volume,
                before_slot,
                next_day,
                just_in_time,
                off_schedule,
            ],
            &[],
        );
        assert_eq!(findings(&sifted, "snap-1"), ["volume-mismatch"]);
        assert_eq!(findings(&sifted, "snap-2"), ["outside-slot"]);
        assert_eq!(findings(&sifted, "snap-3"), ["outside-slot"]);
        assert_eq!(findings(&sifted, "snap-5"), ["not-on-schedule"]);
        let owned: Vec<&str> = sifted.owned.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(owned, ["snap-4"]);
    }

    #[test]
    fn a_policy_no_longer_configured_bounds_only_the_start_of_the_window() {
        let mut s = made(
            "snap-1",
            "vol-1",
            "2026-01-01T03:00:00Z",
            "2026-11-30T03:00:12Z",
        );
        let gone = me().scheduled(
            &Subject::Volume("vol-1".into()),
            "gone",
            t("2026-01-01T03:00:00Z"),
        );
        s.description = Some(gone);
        s.tags.insert(keys::POLICY.into(), "gone".into());
        let sifted = sift_all(vec![s], &[]);
        assert!(sifted.suspects.is_empty());
    }

    #[test]
    fn a_second_snapshot_claiming_a_filled_slot_counts_for_nothing() {
        let first = made(
            "snap-b",
            "vol-1",
            "2026-11-30T03:00:00Z",
            "2026-11-30T03:00:12Z",
        );
        let later = made(
            "snap-a",
            "vol-1",
            "2026-11-30T03:00:00Z",
            "2026-11-30T09:00:00Z",
        );
        let sifted = sift_all(vec![later, first], &[]);
        assert_eq!(findings(&sifted, "snap-a"), ["duplicate-of-slot"]);
        assert_eq!(sifted.owned.len(), 1);
        assert_eq!(sifted.owned[0].id, "snap-b");
    }

    #[test]
    fn tampered_tags_of_a_real_snapshot_are_set_back_and_held_for_review() {
        let mut s = made(
            "snap-1",
            "vol-1",
            "2026-11-30T03:00:00Z",
            "2026-11-30T03:00:12Z",
        );
        s.tags.insert(keys::POLICY.into(), "hourly".into());
        s.tags.insert(keys::VOLUME_ID.into(), "vol-other".into());
        s.tags
            .insert(keys::ENCRYPTED_COPY_OF.into(), "snap-1".into());
        s.tags.insert(keys::SUPERSEDED_BY.into(), "snap-1".into());
        let sifted = sift_all(vec![s], &[]);
        assert_eq!(
            findings(&sifted, "snap-1"),
            ["tag-mismatch", "tag-mismatch", "forged-link", "forged-link"]
        );
        let owned = &sifted.owned[0];
        assert_eq!(owned.tags[keys::POLICY], "daily");
        assert_eq!(owned.tags[keys::VOLUME_ID], "vol-1");
        assert!(!owned.tags.contains_key(keys::ENCRYPTED_COPY_OF));
        assert!(!owned.tags.contains_key(keys::SUPERSEDED_BY));
        assert_eq!(
            sifted.held_for_review(),
            BTreeSet::from(["snap-1".to_string()])
        );
    }

    /// The critical finding of the adversary suite: a real scheduled
    /// snapshot given a copy's tags was a copy, placed at its forged
    /// `created-at`, and the volume's newest could be expired.
    #[test]
    fn a_scheduled_snapshot_with_a_copys_tags_is_no_copy_and_keeps_its_start_time() {
        for forged in ["1990-01-01T00:00:00Z", "2199-01-01T00:00:00Z"] {
            let mut s = made(
                "snap-1",
                "vol-1",
                "2026-11-30T03:00:00Z",
                "2026-11-30T03:00:12Z",
            );
            s.tags.insert(keys::STATE.into(), "completed".into());
            s.tags.insert(keys::COPY_OF.into(), "snap-0".into());
            s.tags
                .insert(keys::SOURCE_REGION.into(), "us-east-1".into());
            s.tags.insert(keys::TARGET.into(), "eu-west-1".into());
            s.tags.insert(keys::CREATED_AT.into(), forged.into());
            let sifted = sift_all(vec![s], &[]);
            let owned = &sifted.owned[0];
            assert!(!owned.is_copy());
            assert_eq!(owned.retention_time(), Some(t("2026-11-30T03:00:12Z")));
            assert_eq!(
                findings(&sifted, "snap-1"),
                ["forged-link", "forged-link", "forged-link"]
            );
            assert!(sifted.held_for_review().contains("snap-1"));
        }
    }

    fn copy_of(original: &Snapshot, copy_id: &str) -> (Snapshot, CopyRecord) {
        let mut copy = original.clone();
        copy.id = copy_id.into();
        copy.description = Some(me().copy("eu-west-1", &original.id));
        copy.start_time = Some(t("2026-11-30T04:00:00Z"));
        copy.tags
            .insert(keys::ENCRYPTED_COPY_OF.into(), original.id.clone());
        let record = CopyRecord {
            copy_id: copy_id.into(),
            source_snapshot_id: original.id.clone(),
            volume_id: "vol-1".into(),
            policy: "daily".into(),
            slot: t("2026-11-30T03:00:00Z"),
            created_at: t("2026-11-30T03:00:12Z"),
            target: None,
        };
        (copy, record)
    }

    #[test]
    fn a_copy_is_the_deployments_only_with_the_ledgers_record() {
        let mut original = made(
            "snap-1",
            "vol-1",
            "2026-11-30T03:00:00Z",
            "2026-11-30T03:00:12Z",
        );
        let (copy, record) = copy_of(&original, "snap-copy");
        original
            .tags
            .insert(keys::SUPERSEDED_BY.into(), "snap-copy".into());
        let sifted = sift_all(
            vec![original.clone(), copy.clone()],
            std::slice::from_ref(&record),
        );
        assert!(sifted.suspects.is_empty(), "{:?}", sifted.suspects);
        assert_eq!(sifted.owned[0].tags[keys::SUPERSEDED_BY], "snap-copy");

        // Without the record (a copy anyone could have made with this
        // Description): not ours, and the original's link falls.
        let sifted = sift_all(vec![original.clone(), copy.clone()], &[]);
        assert_eq!(findings(&sifted, "snap-copy"), ["copy-not-recorded"]);
        assert_eq!(findings(&sifted, "snap-1"), ["forged-link"]);
        assert!(!sifted.owned[0].tags.contains_key(keys::SUPERSEDED_BY));

        // A record of another source.
        let mut wrong = record.clone();
        wrong.source_snapshot_id = "snap-9".into();
        let sifted = sift_all(vec![copy.clone()], &[wrong]);
        assert_eq!(findings(&sifted, "snap-copy"), ["copy-source-mismatch"]);

        // The copy's identity comes from the record, not its tags.
        let mut retagged = copy;
        retagged
            .tags
            .insert(keys::CREATED_AT.into(), "2020-01-01T00:00:00Z".into());
        let sifted = sift_all(vec![retagged], &[record]);
        assert_eq!(findings(&sifted, "snap-copy"), ["tag-mismatch"]);
        assert_eq!(
            sifted.owned[0].tags[keys::CREATED_AT],
            "2026-11-30T03:00:12Z"
        );
    }

    #[test]
    fn a_disaster_recovery_copy_is_proven_by_its_record_and_named_by_it() {
        let original = made(
            "snap-1",
            "vol-1",
            "2026-11-30T03:00:00Z",
            "2026-11-30T03:00:12Z",
        );
        let (mut copy, mut record) = copy_of(&original, "snap-dr");
        copy.tags.remove(keys::ENCRYPTED_COPY_OF);
        copy.tags.insert(keys::COPY_OF.into(), "snap-1".into());
        copy.tags
            .insert(keys::SOURCE_REGION.into(), "eu-west-1".into());
        copy.tags.insert(keys::TARGET.into(), "eu-central-1".into());
        copy.volume_id = Some("vol-ffffffff".into());
        record.target = Some("eu-central-1".into());
        let sifted = sift_all(vec![copy.clone()], std::slice::from_ref(&record));
        assert!(sifted.suspects.is_empty(), "{:?}", sifted.suspects);
        let owned = &sifted.owned[0];
        assert_eq!(owned.source_volume_id(), Some("vol-1"));
        assert_eq!(owned.copy_of(), Some("snap-1"));
        assert_eq!(owned.retention_time(), Some(t("2026-11-30T03:00:12Z")));

        // Someone points the copy at another source or target: the record
        // wins, and the retagging is reported.
        let mut retagged = copy.clone();
        retagged.tags.insert(keys::COPY_OF.into(), "snap-7".into());
        retagged
            .tags
            .insert(keys::TARGET.into(), "us-east-1".into());
        let sifted = sift_all(vec![retagged], std::slice::from_ref(&record));
        assert_eq!(
            findings(&sifted, "snap-dr"),
            ["tag-mismatch", "tag-mismatch"]
        );
        assert_eq!(sifted.owned[0].copy_of(), Some("snap-1"));
        assert_eq!(sifted.owned[0].tags[keys::TARGET], "eu-central-1");

        // The same snapshot without the ledger's record counts for nothing.
        let sifted = sift_all(vec![copy], &[]);
        assert_eq!(findings(&sifted, "snap-dr"), ["copy-not-recorded"]);
        assert!(sifted.owned.is_empty());
    }

    #[test]
    fn the_same_stack_name_in_another_region_is_a_sibling_not_a_suspect() {
        let sibling = Identity {
            region: "eu-central-1".into(),
            ..me()
        };
        let mut theirs = made(
            "snap-9",
            "vol-9",
            "2026-11-30T03:00:00Z",
            "2026-11-30T03:00:12Z",
        );
        theirs.description = Some(sibling.copy("eu-central-1", "snap-1"));
        assert!(me().is_sibling(theirs.description.as_deref().unwrap()));
        assert!(!me().is_sibling(&me().copy("eu-west-1", "snap-1")));
        let other_account = Identity {
            account: "999999999999".into(),
            ..sibling
        };
        assert!(!me().is_sibling(&other_account.copy("eu-central-1", "snap-1")));
        let sifted = sift_all(vec![theirs], &[]);
        assert!(sifted.owned.is_empty());
        assert!(sifted.suspects.is_empty(), "{:?}", sifted.suspects);
        assert_eq!(sifted.rejected.len(), 1);
    }
}

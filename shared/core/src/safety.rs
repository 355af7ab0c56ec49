//! The safety rules of docs/functions.md, "expire-snapshots", in one place.
//!
//! Every deletion passes through [`DeletionGate::authorize`]: the EC2
//! deleter port accepts only an [`Authorized`] token, and this module is the
//! only code that can make one. A snapshot is authorized only if all hold:
//! 1. it carries `lifecycle:managed-by` equal to this deployment and passed
//!    the ownership check (`crate::ownership`: the gate sees only what the
//!    deployment made; those whose tags were tampered with are held);
//! 2. EC2 says `completed`, or `error` for longer than [`FAILED_GRACE`];
//! 3. it is not the newest completed snapshot of its volume (an encrypted
//!    copy, once completed, stands in for its original);
//! 4. no AMI the account owns references it (disabled, deprecated included);
//! 5. it has no `lifecycle:hold` tag, no hold in the stack's ledger (on it
//!    or its volume: `crate::holds`, which removing a tag cannot lift) and
//!    no snapshot lock;
//! 6. the retention plan does not keep it;
//! 7. the run has authorized fewer than its grant: what is left of
//!    `MAX_DELETIONS` over 24 hours, across runs (`crate::window`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Duration, Utc};

use crate::holds::Holds;
use crate::model::{completed_copies, Snapshot, SnapshotState};
use crate::retention::KeepReason;
use crate::tags;

/// How long a failed (`error`) snapshot stays for people to look at before
/// expiry removes it.
pub(crate) const FAILED_GRACE: Duration = Duration::hours(72);

/// Facts about the account, gathered once per run.
#[derive(Debug, Clone, Default)]
pub struct AccountFacts {
    pub deployment: String,
    /// Snapshots referenced by any AMI the account owns.
    pub ami_snapshot_ids: BTreeSet<String>,
    /// Snapshots with a snapshot lock.
    pub locked_snapshot_ids: BTreeSet<String>,
    /// Holds in the stack's ledger, in effect now.
    pub holds: Holds,
    /// Made by the deployment, tags tampered with since
    /// (`crate::ownership::Sifted::held_for_review`): kept until a person looks.
    pub held_for_review: BTreeSet<String>,
    /// Sources of copies in progress to another region (the stack's
    /// ledger): a copy reads its source until it completes.
    pub copying: BTreeSet<String>,
    /// Archived snapshots being restored, or restored for a while: someone
    /// is about to use them (EC2's tier status; every archived snapshot
    /// when that could not be read).
    pub restoring: BTreeSet<String>,
    pub now: DateTime<Utc>,
}

/// Why a snapshot is not deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    NotManaged,
    NotCompleted,
    FailedWithinGrace,
    NewestCompleted,
    UsedByAmi,
    /// A `lifecycle:hold` tag.
    Held,
    /// A hold in the stack's ledger, on it or its volume.
    HeldInLedger,
    Locked,
    /// A copy of it to another region is in progress.
    CopyInProgress,
    /// Superseded by its encrypted copy, but its slot is still the current
    /// one: create-snapshots finds a slot's snapshots by their Description,
    /// which the copy does not carry, so deleting it now would have the
    /// next tick take the slot again.
    SlotOpen,
    /// Archived, and a restore of it is in progress or in effect.
    BeingRestored,
    /// Its tags were changed by someone other than the deployment.
    TamperingSuspected,
    /// The retention plan keeps it, for these rules.
    KeptByPolicy(Vec<KeepReason>),
    /// The policy named in its tags is not configured: nothing is deleted on a guess.
    UnknownPolicy(String),
    /// Its source volume is unknown, so "newest of its volume" cannot be checked.
    UnknownVolume,
    /// EC2 gave no start time, so the calendar rules cannot place it.
    UnknownTime,
    CapReached,
}

impl Protection {
    /// Short stable name for summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotManaged => "not-managed",
            Self::NotCompleted => "not-completed",
            Self::FailedWithinGrace => "failed-within-grace",
            Self::NewestCompleted => "newest-completed",
            Self::UsedByAmi => "used-by-ami",
            Self::Held => "held",
            Self::HeldInLedger => "held-in-ledger",
            Self::Locked => "locked",
            Self::CopyInProgress => "copy-in-progress",
            Self::SlotOpen => "slot-open",
            Self::BeingRestored => "being-restored",
            Self::TamperingSuspected => "tampering-suspected",
            Self::KeptByPolicy(_) => "kept-by-policy",
            Self::UnknownPolicy(_) => "unknown-policy",
            Self::UnknownVolume => "unknown-volume",
            Self::UnknownTime => "unknown-time",
            Self::CapReached => "cap-reached",
        }
    }
}

impl fmt::Display for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeptByPolicy(reasons) => {
                let names: Vec<&str> = reasons.iter().map(|r| r.as_str()).collect();
                write!(f, "kept by {}", names.join(","))
            }
            Self::UnknownPolicy(p) => write!(f, "policy `{p}` is not configured"),
            other => f.write_str(other.kind()),
        }
    }
}

/// Proof that a snapshot passed every rule. Only [`DeletionGate::authorize`]
/// makes one; the deleter port takes nothing else.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorized {
    snapshot_id: String,
}

impl Authorized {
    pub fn snapshot_id(&self) -> &str {
        &self.snapshot_id
    }
}

/// The rules, with what they need to know about this run.
#[derive(Debug)]
pub struct DeletionGate {
    facts: AccountFacts,
    /// Per volume, the newest completed managed snapshot.
    newest_completed: BTreeMap<String, String>,
    max_deletions: u32,
    authorized: u32,
}

impl DeletionGate {
    /// `snapshots`: the snapshots the run knows about. Only this deployment's
    /// count toward "newest completed of its volume": another deployment's
    /// snapshot must never make ours look expendable.
    pub fn new(facts: AccountFacts, snapshots: &[Snapshot], max_deletions: u32) -> Self {
        let mut newest: BTreeMap<String, &Snapshot> = BTreeMap::new();
        let ours: Vec<&Snapshot> = snapshots
            .iter()
            .filter(|s| tags::is_managed_by(&s.tags, &facts.deployment))
            .collect();
        // An original whose encrypted copy is completed is not "the newest":
        // its copy is, and keeps the volume restorable.
        let copies = completed_copies(ours.iter().copied());
        let restorable = ours
            .iter()
            .filter(|s| s.state == SnapshotState::Completed)
            .filter(|s| s.counts_for_retention(&copies));
        for s in restorable {
            let Some(volume) = s.source_volume_id() else {
                continue;
            };
            let newer = newest
                .get(volume)
                .is_none_or(|n| (s.retention_time(), &s.id) > (n.retention_time(), &n.id));
            if newer {
                newest.insert(volume.to_string(), s);
            }
        }
        Self {
            facts,
            newest_completed: newest.into_iter().map(|(v, s)| (v, s.id.clone())).collect(),
            max_deletions,
            authorized: 0,
        }
    }

    /// Rules 1 to 5 and 6, without counting toward the cap. `kept` is the
    /// retention plan's reasons for keeping it (empty: not kept); `None` for a
    /// failed snapshot, which the plan does not consider.
    pub fn check(
        &self,
        snapshot: &Snapshot,
        kept: Option<&[KeepReason]>,
    ) -> Result<(), Protection> {
        if !tags::is_managed_by(&snapshot.tags, &self.facts.deployment) {
            return Err(Protection::NotManaged);
        }
        if self.facts.held_for_review.contains(&snapshot.id) {
            return Err(Protection::TamperingSuspected);
        }
        match snapshot.state {
            SnapshotState::Completed => {}
            SnapshotState::Error => {
                let started = snapshot.start_time.unwrap_or(self.facts.now);
                if self.facts.now - started <= FAILED_GRACE {
                    return Err(Protection::FailedWithinGrace);
                }
            }
            SnapshotState::Pending | SnapshotState::Other => return Err(Protection::NotCompleted),
        }
        let Some(volume) = snapshot.source_volume_id() else {
            return Err(Protection::UnknownVolume);
        };
        if self.newest_completed.get(volume) == Some(&snapshot.id) {
            return Err(Protection::NewestCompleted);
        }
        if let Some(protection) = self.protection(snapshot) {
            return Err(protection);
        }
        match kept {
            Some(reasons) if !reasons.is_empty() => Err(Protection::KeptByPolicy(reasons.to_vec())),
            _ => Ok(()),
        }
    }

    /// What protects a snapshot from being touched whatever its rules say:
    /// held for review, an AMI, a hold, a lock, a copy or a restore in
    /// progress. (Archiving asks this too: `crate::archive`.)
    pub fn protection(&self, snapshot: &Snapshot) -> Option<Protection> {
        let id = &snapshot.id;
        if self.facts.held_for_review.contains(id) {
            Some(Protection::TamperingSuspected)
        } else if self.facts.ami_snapshot_ids.contains(id) {
            Some(Protection::UsedByAmi)
        } else if self.facts.holds.on(snapshot).is_some() {
            Some(Protection::HeldInLedger)
        } else if tags::is_held(&snapshot.tags) {
            Some(Protection::Held)
        } else if self.facts.locked_snapshot_ids.contains(id) {
            Some(Protection::Locked)
        } else if self.facts.copying.contains(id) {
            Some(Protection::CopyInProgress)
        } else if self.facts.restoring.contains(id) {
            Some(Protection::BeingRestored)
        } else {
            None
        }
    }

    /// Every rule, the cap included. The only way to get an [`Authorized`].
    pub fn authorize(
        &mut self,
        snapshot: &Snapshot,
        kept: Option<&[KeepReason]>,
    ) -> Result<Authorized, Protection> {
        self.check(snapshot, kept)?;
        if self.authorized >= self.max_deletions {
            return Err(Protection::CapReached);
        }
        self.authorized += 1;
        Ok(Authorized {
            snapshot_id: snapshot.id.clone(),
        })
    }

    /// The run's clock reading.
    pub fn now(&self) -> DateTime<Utc> {
        self.facts.now
    }

    /// The deployment whose snapshots this gate may authorize.
    pub fn deployment(&self) -> &str {
        &self.facts.deployment
    }

    pub fn cap_reached(&self) -> bool {
        self.authorized >= self.max_deletions
    }
}

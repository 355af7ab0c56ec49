//! Deletion as one service (docs/functions.md, "expire-snapshots"): the facts that
//! protect snapshots, read with one policy when a read fails
//! ([`Protections`]), and the one budgeted deleter ([`Deleter`]: plan gate,
//! the 24-hour budget reserved, the real gate, delete, give back) that
//! expire-snapshots and the copies' keeping (copy-snapshots,
//! vault-snapshots) use alike.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use ebs_lifecycle_core::archive;
use ebs_lifecycle_core::expiry::{PlannedSnapshot, VolumePlan};
use ebs_lifecycle_core::holds::Holds;
use ebs_lifecycle_core::model::{Snapshot, Volume};
use ebs_lifecycle_core::ownership::{Scope, Suspect};
use ebs_lifecycle_core::safety::{AccountFacts, DeletionGate, Protection};

use crate::config::Config;
use crate::lambda::deadline::Deadline;
use crate::pacing::Pacer;
use crate::ports::ec2::{Ec2Error, SnapshotDeleter, SnapshotProtections};
use crate::ports::ledger::{Ledger, LedgerError};
use crate::services::ownership::sift;

/// Which snapshot locks to read.
#[derive(Debug, Clone, Copy)]
pub enum Locks<'a> {
    /// Every lock of the account (one paginated call).
    All,
    /// The locks of these snapshots.
    Of(&'a [String]),
}

/// What besides its rules protects a snapshot, read once (per run, or per
/// place a run deletes in): the AMIs that use it, its lock, a copy reading
/// it, an operator's hold.
///
/// The one policy for a read that fails: nothing is deleted while the
/// AMIs, the copies in flight or the holds are unknown
/// ([`Protections::for_deletion`] says which is missing); unknown locks
/// let deletion go on (EC2 itself refuses to delete a locked snapshot)
/// unless the place requires them (a vault, where the lock is the point).
#[derive(Debug)]
pub struct Protections {
    pub ami_snapshot_ids: Result<BTreeSet<String>, Ec2Error>,
    pub locked_snapshot_ids: Result<BTreeSet<String>, Ec2Error>,
    /// Sources of copies in flight (the ledger); not read where no copy
    /// reads the snapshots (an empty set).
    pub copying: Result<BTreeSet<String>, LedgerError>,
    /// Holds in effect now.
    pub holds: Result<Holds, LedgerError>,
}

/// A protection fact that could not be read, so nothing is deleted.
#[derive(Debug, thiserror::Error)]
pub enum Unread {
    #[error("the AMIs could not be read: {0}")]
    Amis(Ec2Error),
    #[error("the snapshot locks could not be read: {0}")]
    Locks(Ec2Error),
    #[error("the copies in flight could not be read: {0}")]
    Copies(LedgerError),
    #[error("the holds could not be read: {0}")]
    Holds(LedgerError),
}

/// The facts deletion needs, all read.
#[derive(Debug, Clone, Default)]
pub struct Protected {
    pub ami_snapshot_ids: BTreeSet<String>,
    pub locked_snapshot_ids: BTreeSet<String>,
    /// False: the locks could not be read (and were not required).
    pub locks_checked: bool,
    pub copying: BTreeSet<String>,
    pub holds: Holds,
}

impl Protections {
    /// Read every fact; a failure is kept, not returned (the caller's
    /// policy method decides). `copies`: whether copies in flight read
    /// these snapshots (the source region's); elsewhere none does.
    pub async fn read(
        protections: &dyn SnapshotProtections,
        ledger: &dyn Ledger,
        locks: Locks<'_>,
        copies: bool,
        now: DateTime<Utc>,
    ) -> Self {
        let ami_snapshot_ids = protections.ami_snapshot_ids().await;
        let locked_snapshot_ids = match locks {
            Locks::All => protections.all_locked_snapshot_ids().await,
            Locks::Of(ids) => protections.locked_snapshot_ids(ids).await,
        };
        let copying = if copies {
            ledger
                .copies_in_flight()
                .await
                .map(|c| c.into_iter().map(|c| c.source_snapshot_id).collect())
        } else {
            Ok(BTreeSet::new())
        };
        let holds = ledger.holds().await.map(|h| Holds::in_effect(h, now));
        Self {
            ami_snapshot_ids,
            locked_snapshot_ids,
            copying,
            holds,
        }
    }

    /// The facts, by the one policy: an unread AMI list, copy list or hold
    /// list stops deletion; unread locks stop it only when `locks_required`.
    pub fn for_deletion(self, locks_required: bool) -> Result<Protected, Unread> {
        let ami_snapshot_ids = self.ami_snapshot_ids.map_err(Unread::Amis)?;
        let (locked_snapshot_ids, locks_checked) = match self.locked_snapshot_ids {
            Ok(locked) => (locked, true),
            Err(e) if locks_required => return Err(Unread::Locks(e)),
            Err(e) => {
                tracing::warn!(error = %e, "snapshot locks could not be checked; EC2 still refuses to delete a locked snapshot");
                (BTreeSet::new(), false)
            }
        };
        Ok(Protected {
            ami_snapshot_ids,
            locked_snapshot_ids,
            locks_checked,
            copying: self.copying.map_err(Unread::Copies)?,
            holds: self.holds.map_err(Unread::Holds)?,
        })
    }
}

/// A projection of what expiry would delete (the report's "next expiry
/// frees"), read as deletion reads but for its own policy.
#[derive(Debug)]
pub struct Projection {
    pub protected: Protected,
    /// The AMIs could not be read: nothing is projected (the caller says
    /// why), the rest stands.
    pub amis_unread: Option<Ec2Error>,
}

impl Protections {
    /// For a projection: unread AMIs leave the projection out, unread locks
    /// are taken as none (EC2 still refuses to delete a locked snapshot);
    /// the ledger's facts (copies in flight, holds) must be read.
    pub fn for_projection(self) -> Result<Projection, Unread> {
        let (ami_snapshot_ids, amis_unread) = match self.ami_snapshot_ids {
            Ok(ids) => (ids, None),
            Err(e) => (BTreeSet::new(), Some(e)),
        };
        let locks_checked = self.locked_snapshot_ids.is_ok();
        Ok(Projection {
            protected: Protected {
                ami_snapshot_ids,
                locked_snapshot_ids: self.locked_snapshot_ids.unwrap_or_default(),
                locks_checked,
                copying: self.copying.map_err(Unread::Copies)?,
                holds: self.holds.map_err(Unread::Holds)?,
            },
            amis_unread,
        })
    }
}

impl Protected {
    /// The gate's facts for a set of snapshots.
    pub fn facts(
        &self,
        deployment: &str,
        held_for_review: BTreeSet<String>,
        restoring: BTreeSet<String>,
        now: DateTime<Utc>,
    ) -> AccountFacts {
        AccountFacts {
            deployment: deployment.to_string(),
            ami_snapshot_ids: self.ami_snapshot_ids.clone(),
            locked_snapshot_ids: self.locked_snapshot_ids.clone(),
            holds: self.holds.clone(),
            held_for_review,
            copying: self.copying.clone(),
            restoring,
            now,
        }
    }
}

/// One batch of volumes as expiry plans it: the snapshots the deployment
/// provably made of them, the volumes that still exist, the gate's facts.
/// Read only: expire-snapshots deletes by it, `ebs-lifecycle plan` prints
/// it.
#[derive(Debug)]
pub struct Batch {
    /// Each snapshot of the volume its proof names, in the batch (a tag
    /// that names another volume does not bring it here twice).
    pub snapshots: Vec<Snapshot>,
    pub existing: BTreeSet<String>,
    pub facts: AccountFacts,
    /// Snapshots whose tags were tampered with (reported once by the
    /// caller; those the deployment made are held for review).
    pub suspects: Vec<Suspect>,
    /// When each archived snapshot of the batch was archived.
    pub archived_at: BTreeMap<String, DateTime<Utc>>,
}

impl Batch {
    /// `listed`: the snapshots of the batch's volumes that name the
    /// deployment; `existing`: those of the volumes that still exist.
    /// `tiers` is read the first time a batch holds an archived snapshot,
    /// and kept for the next.
    pub async fn read(
        ledger: &dyn Ledger,
        protections: &dyn SnapshotProtections,
        config: &Config,
        protected: &Protected,
        tiers: &mut Option<Tiers>,
        (batch, listed, existing): (&[String], Vec<Snapshot>, Vec<Volume>),
        now: DateTime<Utc>,
    ) -> Result<Self, LedgerError> {
        let sifted = sift(ledger, config, listed, Scope::WholeVolumes, now).await?;
        let held_for_review = sifted.held_for_review();
        let in_batch: BTreeSet<&str> = batch.iter().map(String::as_str).collect();
        let snapshots: Vec<Snapshot> = sifted
            .owned
            .into_iter()
            .filter(|s| s.source_volume_id().is_none_or(|v| in_batch.contains(v)))
            .collect();
        if tiers.is_none() && snapshots.iter().any(Snapshot::in_archive_tier) {
            *tiers = Some(Tiers::read(protections, now).await);
        }
        let (restoring, archived_at) = match tiers {
            Some(t) => t.for_batch(&snapshots, now),
            None => (BTreeSet::new(), BTreeMap::new()),
        };
        Ok(Self {
            facts: protected.facts(config.deployment_name(), held_for_review, restoring, now),
            existing: existing.into_iter().map(|v| v.id).collect(),
            snapshots,
            suspects: sifted.suspects,
            archived_at,
        })
    }
}

/// EC2's tier status of the account's archived snapshots: which are being
/// restored (kept), when each was archived (the early-deletion charge).
/// If it cannot be read, every archived snapshot is kept.
pub struct Tiers {
    restoring: BTreeSet<String>,
    archived_at: BTreeMap<String, DateTime<Utc>>,
    unreadable: bool,
}

impl Tiers {
    pub async fn read(protections: &dyn SnapshotProtections, now: DateTime<Utc>) -> Self {
        match protections.tier_statuses().await {
            Ok(statuses) => {
                let mut restoring = BTreeSet::new();
                let mut archived_at = BTreeMap::new();
                for t in statuses {
                    if archive::is_being_restored(
                        t.last_operation.as_deref(),
                        t.restore_expiry,
                        now,
                    ) {
                        restoring.insert(t.snapshot_id.clone());
                    }
                    if let Some(at) = t.archived_at {
                        archived_at.insert(t.snapshot_id, at);
                    }
                }
                Self {
                    restoring,
                    archived_at,
                    unreadable: false,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the archive tier status could not be read; every archived snapshot is kept this run");
                Self {
                    restoring: BTreeSet::new(),
                    archived_at: BTreeMap::new(),
                    unreadable: true,
                }
            }
        }
    }

    /// What protects a batch's archived snapshots, and when each was archived.
    pub fn for_batch(
        &self,
        snapshots: &[Snapshot],
        now: DateTime<Utc>,
    ) -> (BTreeSet<String>, BTreeMap<String, DateTime<Utc>>) {
        let tiered = snapshots.iter().filter(|s| s.in_archive_tier());
        let restoring = tiered
            .clone()
            .filter(|s| {
                self.unreadable
                    || self.restoring.contains(&s.id)
                    || archive::is_being_restored(None, s.restore_expiry, now)
            })
            .map(|s| s.id.clone())
            .collect();
        let archived_at = tiered
            .filter_map(|s| Some((s.id.clone(), *self.archived_at.get(&s.id)?)))
            .collect();
        (restoring, archived_at)
    }
}

/// What one planned deletion came to.
#[derive(Debug)]
pub enum Deletion {
    /// Deleted (or gone already), or in a dry run: would have been.
    Deleted,
    /// Not reached: the budget or the deadline stopped the run.
    Left,
    /// The gate's second look kept it.
    Kept(Protection),
    /// EC2 refused or failed.
    Failed(Ec2Error),
}

/// How a run deletes: where, and under what limits.
pub struct Deleting<'d> {
    pub deleter: &'d dyn SnapshotDeleter,
    pub ledger: &'d dyn Ledger,
    pub pacer: &'d mut Pacer,
    pub deadline: Deadline,
    pub dry_run: bool,
    /// `MAX_DELETIONS`: the budget over 24 hours every run shares.
    pub max_deletions: u32,
    /// Which of the ledger's records goes with a deleted snapshot.
    pub records: Records,
    pub now: DateTime<Utc>,
}

/// The ledger's record of a snapshot, forgotten once it is deleted (its id
/// is never reused, so a record left behind is harmless, only untidy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Records {
    /// Every snapshot deleted is a copy (copies in another region or the
    /// vault): its copy record.
    Copies,
    /// The source region's: an encrypted copy's copy record, a scheduled
    /// snapshot's creation record (a disaster-recovery copy has neither
    /// here).
    Source,
}

/// The budgeted deleter of one set of plans: the budget reserved for what
/// the plans may delete, every deletion through the gate again (each rule
/// re-checked, each counted), paced, its record forgotten once gone, and
/// what was not used given back.
pub struct Deleter<'d> {
    deleting: Deleting<'d>,
    gate: DeletionGate,
    granted: u32,
    wanted: u32,
    /// DeleteSnapshot calls made: what the grant was used for.
    attempted: u32,
    cap_reached: bool,
}

impl<'d> Deleter<'d> {
    /// Reserve the part of the 24-hour budget `plans` may use (none when
    /// the budget is known spent: `cap_reached`) and open the gate for it.
    pub async fn reserve(
        deleting: Deleting<'d>,
        facts: AccountFacts,
        snapshots: &[Snapshot],
        plans: &[VolumePlan<'_>],
        cap_reached: bool,
    ) -> Result<Deleter<'d>, LedgerError> {
        let deletable = plans
            .iter()
            .flat_map(|p| &p.snapshots)
            .filter(|p| p.deletable())
            .count();
        let wanted = u32::try_from(deletable).unwrap_or(u32::MAX);
        let granted = if cap_reached || wanted == 0 {
            0
        } else {
            deleting
                .ledger
                .reserve_deletions(deleting.now, wanted, deleting.max_deletions)
                .await?
        };
        Ok(Deleter {
            gate: DeletionGate::new(facts, snapshots, granted),
            deleting,
            granted,
            wanted,
            attempted: 0,
            cap_reached,
        })
    }

    /// What the ledger granted.
    pub fn granted(&self) -> u32 {
        self.granted
    }

    /// Whether the budget ran out (now or before this set).
    pub fn cap_reached(&self) -> bool {
        self.cap_reached || self.granted < self.wanted
    }

    /// One planned, deletable snapshot.
    pub async fn delete(&mut self, planned: &PlannedSnapshot<'_>) -> Deletion {
        let s = planned.snapshot;
        if self.cap_reached || self.deleting.deadline.is_near() {
            return Deletion::Left;
        }
        let authorized = match self.gate.authorize(s, planned.retention.as_deref()) {
            Ok(a) => a,
            Err(Protection::CapReached) => {
                self.cap_reached = true;
                return Deletion::Left;
            }
            Err(other) => return Deletion::Kept(other),
        };
        if self.deleting.dry_run {
            return Deletion::Deleted;
        }
        self.deleting.pacer.ready().await;
        self.attempted += 1;
        match self.deleting.deleter.delete_snapshot(&authorized).await {
            // Gone (now, or by hand, or by an earlier attempt whose answer
            // was lost): the goal is reached. Its record goes with it.
            Ok(()) | Err(Ec2Error::SnapshotNotFound) => {
                let ledger = self.deleting.ledger;
                let forgotten = match self.deleting.records {
                    Records::Copies => ledger.forget_copy(&s.id).await,
                    Records::Source if s.encrypted_copy_of().is_some() => {
                        ledger.forget_copy(&s.id).await
                    }
                    Records::Source if s.is_copy() => Ok(()),
                    Records::Source => ledger.forget_creation(&s.id).await,
                };
                if let Err(e) = forgotten {
                    tracing::warn!(snapshot_id = %s.id, error = %e, "could not forget a deleted snapshot's record (harmless: its id is never reused)");
                }
                Deletion::Deleted
            }
            Err(e) => Deletion::Failed(e),
        }
    }

    /// Give back what was granted and not used (a dry run deletes nothing);
    /// a failure counts them against the next 24 hours, never fails the run.
    pub async fn give_back(self) {
        let used = if self.deleting.dry_run {
            0
        } else {
            self.attempted
        };
        if self.granted > used {
            let now = self.deleting.now;
            if let Err(e) = self
                .deleting
                .ledger
                .release_deletions(now, now, self.granted - used)
                .await
            {
                tracing::warn!(error = %e, "could not give back the unused deletions; they count against the next 24 hours");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn ec2_down() -> Ec2Error {
        Ec2Error::Throttled {
            code: "RequestLimitExceeded".into(),
        }
    }

    fn ledger_down() -> LedgerError {
        LedgerError::Unavailable {
            operation: "test",
            message: "down".into(),
        }
    }

    /// Every fact read, or each one failing alone.
    fn read(failing: Option<usize>) -> Protections {
        Protections {
            ami_snapshot_ids: if failing == Some(0) {
                Err(ec2_down())
            } else {
                Ok(ids(&["snap-ami"]))
            },
            locked_snapshot_ids: if failing == Some(1) {
                Err(ec2_down())
            } else {
                Ok(ids(&["snap-locked"]))
            },
            copying: if failing == Some(2) {
                Err(ledger_down())
            } else {
                Ok(ids(&["snap-source"]))
            },
            holds: if failing == Some(3) {
                Err(ledger_down())
            } else {
                Ok(Holds::default())
            },
        }
    }

    #[test]
    fn nothing_is_deleted_while_an_ami_a_copy_or_a_hold_is_unknown() {
        for (failing, unread) in [(0, "AMIs"), (2, "copies"), (3, "holds")] {
            for locks_required in [false, true] {
                let e = read(Some(failing))
                    .for_deletion(locks_required)
                    .unwrap_err();
                assert!(e.to_string().contains(unread), "{e}");
            }
        }
        let all = read(None).for_deletion(true).unwrap();
        assert!(all.locks_checked);
        assert_eq!(all.ami_snapshot_ids, ids(&["snap-ami"]));
        assert_eq!(all.copying, ids(&["snap-source"]));
    }

    #[test]
    fn unknown_locks_stop_deletion_only_where_they_are_required() {
        assert!(matches!(
            read(Some(1)).for_deletion(true),
            Err(Unread::Locks(_))
        ));
        let going_on = read(Some(1)).for_deletion(false).unwrap();
        assert!(!going_on.locks_checked);
        assert!(going_on.locked_snapshot_ids.is_empty());
    }

    #[test]
    fn a_projection_stands_without_the_amis_but_not_without_the_ledger() {
        let p = read(Some(0)).for_projection().unwrap();
        assert!(p.amis_unread.is_some());
        assert!(p.protected.ami_snapshot_ids.is_empty());
        let p = read(Some(1)).for_projection().unwrap();
        assert!(p.amis_unread.is_none() && !p.protected.locks_checked);
        assert!(read(Some(2)).for_projection().is_err());
        assert!(read(Some(3)).for_projection().is_err());
    }
}

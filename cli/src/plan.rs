//! `plan <policy file>` (docs/restore.md, "The command-line tool"): what
//! create-snapshots and expire-snapshots would do now with this policy
//! document, for the account and region the credentials reach. Read only:
//! the same code the functions run to decide (`services::due` for what is
//! due in each policy's current slot, `services::deletion::Batch` and
//! `core::expiry` under the safety gate for what expiry deletes), without
//! the calls that act or record.
//!
//! Bounded as expire is: the deployment's snapshots are read 200 volumes
//! at a time; what is kept is counted, what would be deleted is counted
//! and the first [`LISTED`] are listed.
//!
//! Without the ledger (`--ledger-table` not given: before the first
//! deployment) nothing is read from any table: a deployment with no
//! snapshot needs none, and one with snapshots is refused
//! ([`PlanError::NoLedger`]) rather than judged without its proof.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;

use ebs_lifecycle::config::Config;
use ebs_lifecycle::pacing::VOLUMES_PER_BATCH;
use ebs_lifecycle::ports::ec2::{Ec2Error, SnapshotCatalog, SnapshotProtections, VolumeInventory};
use ebs_lifecycle::ports::ledger::{Ledger, LedgerError};
use ebs_lifecycle::services::deletion::{Batch, Locks, Protections, Tiers, Unread};
use ebs_lifecycle::services::due::{self, Due};
use ebs_lifecycle_core::expiry;
use ebs_lifecycle_core::safety::DeletionGate;
use ebs_lifecycle_core::tags as keys;
use ebs_lifecycle_core::targets::{Excluded, UnknownPolicy};

/// What the plan reads.
#[derive(Clone, Copy)]
pub struct PlanPorts<'a> {
    pub inventory: &'a dyn VolumeInventory,
    pub catalog: &'a dyn SnapshotCatalog,
    pub protections: &'a dyn SnapshotProtections,
    /// `None`: no ledger given.
    pub ledger: Option<&'a dyn Ledger>,
}

/// The planned deletions listed; the rest are counted.
pub const LISTED: usize = 1_000;

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("could not list the opted-in volumes and instances: {0}")]
    Inventory(Ec2Error),
    #[error("could not list the deployment's snapshots: {0}")]
    Snapshots(Ec2Error),
    /// Expiry would not delete without these facts, so no deletion can be
    /// planned either.
    #[error("{0}; expire-snapshots would delete nothing, so nothing is planned")]
    Facts(#[from] Unread),
    #[error("the stack's ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("the deployment has made snapshots: give --ledger-table (or EBS_LIFECYCLE_LEDGER_TABLE), the proof of what it made")]
    NoLedger,
}

/// One policy's current slot.
#[derive(Debug, Clone, Serialize)]
pub struct SlotPlan {
    pub policy: String,
    pub consistency: String,
    /// The current slot (`None`: the schedule has none before now).
    pub slot: Option<String>,
    /// The volumes create-snapshots would snapshot in it.
    pub due: Vec<DueVolume>,
    /// Volumes whose snapshot for the slot exists (pending or completed).
    pub have_snapshot: usize,
    /// The slot's snapshots could not be read: create-snapshots would make
    /// none of this policy this tick.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// The next slots within 24 hours.
    pub next_slots: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DueVolume {
    pub volume_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub size_gib: i32,
}

/// A snapshot expiry would delete.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedDeletion {
    pub snapshot_id: String,
    pub volume_id: Option<String>,
    pub policy: Option<String>,
    pub start_time: Option<String>,
    pub volume_size_gib: Option<i32>,
    /// The volume is gone: the policy's orphan rules applied.
    pub orphan: bool,
}

/// The whole plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub at: DateTime<Utc>,
    pub policies: Vec<String>,
    pub slots: Vec<SlotPlan>,
    pub unknown_policies: Vec<UnknownPolicy>,
    /// Volumes of opted-in instances that their policy's `exclude` leaves out.
    pub excluded: Vec<Excluded>,
    /// The first [`LISTED`] of them.
    pub deletions: Vec<PlannedDeletion>,
    /// Every snapshot expiry would delete.
    pub deletable: usize,
    /// Snapshots kept, by why (`kept-by-policy`, `newest-completed`, ...).
    pub kept: BTreeMap<String, usize>,
    /// Snapshots whose tags were tampered with: held for review.
    pub suspects: usize,
    pub volumes_planned: usize,
    pub max_deletions: u32,
}

/// Plan now, as the functions would decide.
pub async fn plan(
    ports: PlanPorts<'_>,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Plan, PlanError> {
    let resolution = due::discover(ports.inventory, config)
        .await
        .map_err(PlanError::Inventory)?;
    let slots = creation(ports, config, resolution.targets, now).await;
    let mut plan = Plan {
        at: now,
        policies: config.policies.names().map(String::from).collect(),
        slots,
        unknown_policies: resolution.unknown_policies,
        excluded: resolution.excluded,
        deletions: Vec::new(),
        deletable: 0,
        kept: BTreeMap::new(),
        suspects: 0,
        volumes_planned: 0,
        max_deletions: config.max_deletions,
    };
    expiry_plan(ports, config, now, &mut plan).await?;
    Ok(plan)
}

/// Per policy, its current slot and what of it is still to be made.
async fn creation(
    ports: PlanPorts<'_>,
    config: &Config,
    targets: Vec<ebs_lifecycle_core::targets::Target>,
    now: DateTime<Utc>,
) -> Vec<SlotPlan> {
    let mut slots = Vec::new();
    for (name, targets) in due::by_policy(targets) {
        let Some(policy) = config.policies.get(&name) else {
            continue;
        };
        let mut next_slots = Vec::new();
        let mut t = now;
        while let Some(next) = policy.schedule.next_slot_after(t) {
            if next > now + Duration::hours(24) || next_slots.len() >= 24 {
                break;
            }
            next_slots.push(keys::format_time(next));
            t = next;
        }
        let mut plan = SlotPlan {
            policy: name.clone(),
            consistency: policy.consistency.to_string(),
            slot: None,
            due: Vec::new(),
            have_snapshot: 0,
            unreadable: None,
            next_slots,
        };
        let Some(slot) = policy.schedule.slot_at(now) else {
            slots.push(plan);
            continue;
        };
        plan.slot = Some(keys::format_time(slot));
        let filled = match ports.ledger {
            Some(ledger) => due::filled(ports.catalog, ledger, config, &name, slot, now)
                .await
                .map_err(|e| e.to_string()),
            None => match ports
                .catalog
                .snapshots_for_slot(&config.identity, &name, slot)
                .await
            {
                Ok(found) if found.is_empty() => Ok(due::Filled::default()),
                Ok(_) => Err(PlanError::NoLedger.to_string()),
                Err(e) => Err(e.to_string()),
            },
        };
        match filled {
            Ok(filled) => {
                let (due, not_due) = due::due(targets, &filled.volume_ids);
                plan.have_snapshot = not_due;
                plan.due = due.into_iter().flat_map(due_volumes).collect();
            }
            Err(e) => plan.unreadable = Some(e),
        }
        slots.push(plan);
    }
    slots
}

fn due_volumes(due: Due) -> Vec<DueVolume> {
    match due {
        Due::Volume(t) => vec![DueVolume {
            name: t.volume.name().map(String::from),
            instance_id: t.instance.map(|i| i.id),
            size_gib: t.volume.size_gib,
            volume_id: t.volume.id,
        }],
        Due::Instance { target, due } => target
            .volumes
            .iter()
            .filter(|v| due.contains(&v.id))
            .map(|v| DueVolume {
                volume_id: v.id.clone(),
                instance_id: Some(target.instance.id.clone()),
                name: v.name().map(String::from),
                size_gib: v.size_gib,
            })
            .collect(),
    }
}

/// What expiry would delete now: its batches, its facts, its plan, its
/// gate's verdicts. The 24-hour budget is expiry's to spend: every
/// deletable snapshot is listed, and the text says how many a day go.
async fn expiry_plan(
    ports: PlanPorts<'_>,
    config: &Config,
    now: DateTime<Utc>,
    plan: &mut Plan,
) -> Result<(), PlanError> {
    let volume_ids: Vec<String> = ports
        .catalog
        .managed_volume_ids(config.deployment_name())
        .await
        .map_err(PlanError::Snapshots)?
        .into_iter()
        .collect();
    if volume_ids.is_empty() {
        // Nothing of this deployment's yet (a plan before the first
        // deployment): no fact, and no ledger, is needed.
        return Ok(());
    }
    let Some(ledger) = ports.ledger else {
        return Err(PlanError::NoLedger);
    };
    let protected = Protections::read(ports.protections, ledger, Locks::All, true, now)
        .await
        .for_deletion(false)?;
    let mut tiers: Option<Tiers> = None;
    for batch in volume_ids.chunks(VOLUMES_PER_BATCH) {
        let (listed, existing) = tokio::try_join!(
            ports
                .catalog
                .managed_snapshots_of_volumes(config.deployment_name(), batch),
            ports.inventory.volumes_by_id(batch),
        )
        .map_err(PlanError::Snapshots)?;
        let read = Batch::read(
            ledger,
            ports.protections,
            config,
            &protected,
            &mut tiers,
            (batch, listed, existing),
            now,
        )
        .await?;
        plan.suspects += read.suspects.len();
        let gate = DeletionGate::new(read.facts.clone(), &read.snapshots, u32::MAX);
        let plans = expiry::plan(&read.snapshots, &config.policies, &read.existing, &gate);
        plan.volumes_planned += plans
            .iter()
            .filter_map(|p| p.volume_id.as_deref())
            .collect::<BTreeSet<_>>()
            .len();
        for volume in &plans {
            for p in &volume.snapshots {
                match &p.verdict {
                    Ok(()) if plan.deletable >= LISTED => plan.deletable += 1,
                    Ok(()) => {
                        plan.deletable += 1;
                        plan.deletions.push(PlannedDeletion {
                            snapshot_id: p.snapshot.id.clone(),
                            volume_id: volume.volume_id.clone(),
                            policy: volume.policy.clone(),
                            start_time: p.snapshot.start_time.map(keys::format_time),
                            volume_size_gib: p.snapshot.volume_size_gib,
                            orphan: volume.orphan,
                        })
                    }
                    Err(why) => *plan.kept.entry(why.kind().to_string()).or_default() += 1,
                }
            }
        }
    }
    Ok(())
}

impl Plan {
    pub fn json(&self) -> serde_json::Value {
        json!({
            "at": keys::format_time(self.at),
            "policies": self.policies,
            "create": {
                "slots": self.slots,
                "unknown_policies": self.unknown_policies,
                "excluded": self.excluded,
            },
            "expire": {
                "delete": self.deletions,
                "deletable": self.deletable,
                "kept": self.kept,
                "held_for_review": self.suspects,
                "volumes": self.volumes_planned,
                "max_deletions_per_24h": self.max_deletions,
            },
        })
    }

    pub fn text(&self) -> String {
        let mut out = vec![format!(
            "plan at {} with policies {} (read only: nothing was made or deleted)",
            keys::format_time(self.at),
            self.policies.join(", ")
        )];
        out.push("create-snapshots:".into());
        if self.slots.is_empty() {
            out.push("  no volume or instance opts in to these policies".into());
        }
        for s in &self.slots {
            let Some(slot) = &s.slot else {
                out.push(format!(
                    "  {}: the schedule has no slot before now",
                    s.policy
                ));
                continue;
            };
            match &s.unreadable {
                Some(e) => out.push(format!(
                    "  {} (slot {slot}): nothing this tick ({e})",
                    s.policy
                )),
                None => out.push(format!(
                    "  {} (slot {slot}, {}): {} to snapshot, {} have their snapshot",
                    s.policy,
                    s.consistency,
                    s.due.len(),
                    s.have_snapshot
                )),
            }
            for v in &s.due {
                out.push(format!(
                    "    {}{}{} ({} GiB)",
                    v.volume_id,
                    v.name
                        .as_ref()
                        .map(|n| format!(" \"{n}\""))
                        .unwrap_or_default(),
                    v.instance_id
                        .as_ref()
                        .map(|i| format!(" of {i}"))
                        .unwrap_or_default(),
                    v.size_gib
                ));
            }
            if !s.next_slots.is_empty() {
                out.push(format!(
                    "    next slots within 24 hours: {}",
                    s.next_slots.join(", ")
                ));
            }
        }
        for u in &self.unknown_policies {
            out.push(format!(
                "  {} {} names policy `{}`, which the document does not have: not snapshotted",
                u.resource_type, u.resource_id, u.policy
            ));
        }
        for e in &self.excluded {
            out.push(format!(
                "  volume {}{}: {}, not snapshotted",
                e.volume_id,
                e.instance_id
                    .as_deref()
                    .map(|i| format!(" of {i}"))
                    .unwrap_or_default(),
                e.describe()
            ));
        }
        out.push(format!(
            "expire-snapshots: {} snapshots of {} volumes to delete{} (none in a stack deployed with DryRun=true)",
            self.deletable,
            self.volumes_planned,
            if self.max_deletions == 0 {
                " (MaxDeletions 0: none is deleted)".to_string()
            } else if self.deletable > self.max_deletions as usize {
                format!(
                    " (at most {} in 24 hours, --max-deletions: over {} days)",
                    self.max_deletions,
                    self.deletable.div_ceil(self.max_deletions as usize)
                )
            } else {
                String::new()
            }
        ));
        for d in &self.deletions {
            out.push(format!(
                "    {} of {} ({}, {}, {} GiB){}",
                d.snapshot_id,
                d.volume_id.as_deref().unwrap_or("?"),
                d.policy.as_deref().unwrap_or("?"),
                d.start_time.as_deref().unwrap_or("?"),
                d.volume_size_gib
                    .map(|g| g.to_string())
                    .unwrap_or_else(|| "?".into()),
                if d.orphan { ", volume gone" } else { "" }
            ));
        }
        if self.deletable > self.deletions.len() {
            out.push(format!(
                "    ... and {} more (--output json lists the first {LISTED} too)",
                self.deletable - self.deletions.len()
            ));
        }
        let kept: Vec<String> = self.kept.iter().map(|(k, n)| format!("{n} {k}")).collect();
        out.push(format!(
            "  kept: {}",
            if kept.is_empty() {
                "none".into()
            } else {
                kept.join(", ")
            }
        ));
        if self.suspects > 0 {
            out.push(format!(
                "  {} snapshots with tampered tags (held for review, never deleted)",
                self.suspects
            ));
        }
        out.join("\n")
    }
}

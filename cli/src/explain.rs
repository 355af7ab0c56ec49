//! `explain <snapshot-id>` (docs/restore.md): what the deployment knows of
//! one snapshot. Whether it is the deployment's (the ownership proof, or
//! why not), what it is (volume, policy, slot, moment), and what the next
//! expiry would do with it and why: the same plan expire-snapshots makes
//! (`ebs_lifecycle_core::expiry::plan` under `safety::DeletionGate`), on
//! the same facts (AMIs, locks, ledger holds, copies in flight, restores
//! from the archive tier), for its volume's whole history; and its
//! volume's last verified restore (the restore drills' ledger record).
//! Read only.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::json;

use ebs_lifecycle::config::Config;
use ebs_lifecycle::ports::ec2::SnapshotProtections;
use ebs_lifecycle::ports::ledger::DrillLedger;
use ebs_lifecycle::services::deletion::{Locks, Protections, Unread};
use ebs_lifecycle::services::ownership::sift;
use ebs_lifecycle_core::drills::Verification;
use ebs_lifecycle_core::expiry;
use ebs_lifecycle_core::holds::Hold;
use ebs_lifecycle_core::model::Snapshot;
use ebs_lifecycle_core::ownership::Scope;
use ebs_lifecycle_core::restore;
use ebs_lifecycle_core::safety::DeletionGate;
use ebs_lifecycle_core::tags as keys;

use crate::restore::{dedup, history, Ports, RestoreError};

/// What one snapshot is to the deployment.
#[derive(Debug, Clone)]
pub struct Explained {
    pub snapshot_id: String,
    /// The ownership proof holds.
    pub ours: bool,
    /// The proof's findings (why it is not ours, or what was tampered with).
    pub findings: Vec<String>,
    pub volume_id: Option<String>,
    pub policy: Option<String>,
    pub slot: Option<String>,
    /// The moment its data is from (a copy: its original's).
    pub data_time: Option<DateTime<Utc>>,
    pub state: String,
    /// The keep rules that keep it (`None`: the rules do not consider it,
    /// e.g. pending, or its policy is not known to the tool).
    pub kept_by: Option<Vec<String>>,
    /// What the next expiry does: `deleted` or `kept: <why>`.
    pub next_expiry: String,
    pub hold: Option<Hold>,
    pub locked: bool,
    pub used_by_ami: bool,
    /// A volume can be made from it now.
    pub restorable: bool,
    /// Its volume's last passed restore drill (of this snapshot or
    /// another); `Err`: the ledger could not say.
    pub last_restore: Result<Option<Verification>, String>,
}

impl Explained {
    pub fn json(&self) -> serde_json::Value {
        json!({
            "snapshot_id": self.snapshot_id,
            "ours": self.ours,
            "findings": self.findings,
            "volume_id": self.volume_id,
            "policy": self.policy,
            "slot": self.slot,
            "data_time": self.data_time.map(keys::format_time),
            "state": self.state,
            "kept_by": self.kept_by,
            "next_expiry": self.next_expiry,
            "hold": self.hold,
            "locked": self.locked,
            "used_by_ami": self.used_by_ami,
            "restorable": self.restorable,
            "last_verified_restore": match &self.last_restore {
                Ok(v) => json!(v),
                Err(e) => json!({"unknown": e}),
            },
        })
    }

    pub fn text(&self) -> String {
        let mut out = Vec::new();
        if !self.ours {
            out.push(format!(
                "{}: not a snapshot this deployment made ({}); the stack never deletes, copies or restores it",
                self.snapshot_id,
                self.findings.join(", ")
            ));
            return out.join("\n");
        }
        out.push(format!(
            "{}: this deployment's, of {} (policy {}, slot {}), data from {}, {}",
            self.snapshot_id,
            self.volume_id.as_deref().unwrap_or("?"),
            self.policy.as_deref().unwrap_or("?"),
            self.slot.as_deref().unwrap_or("?"),
            self.data_time.map(keys::format_time).unwrap_or_default(),
            self.state
        ));
        if !self.findings.is_empty() {
            out.push(format!(
                "  tags tampered with ({}): held for review",
                self.findings.join(", ")
            ));
        }
        out.push(format!(
            "  kept by: {}",
            match &self.kept_by {
                Some(r) if r.is_empty() => "no rule".to_string(),
                Some(r) => r.join(", "),
                None => "(not considered by the rules)".to_string(),
            }
        ));
        out.push(format!("  next expiry: {}", self.next_expiry));
        if let Some(h) = &self.hold {
            out.push(format!(
                "  held in the ledger until {} ({}, by {})",
                keys::format_time(h.until),
                h.reason,
                h.by
            ));
        }
        if self.locked {
            out.push("  locked (EC2 snapshot lock)".into());
        }
        if self.used_by_ami {
            out.push("  used by an AMI".into());
        }
        out.push(format!(
            "  restorable now: {}",
            if self.restorable { "yes" } else { "no" }
        ));
        out.push(match &self.last_restore {
            Ok(Some(v)) => format!(
                "  its volume's last verified restore: {} ({}{}, {:.0} s to available)",
                keys::format_time(v.at),
                v.snapshot_id,
                if v.snapshot_id == self.snapshot_id {
                    ", this one"
                } else {
                    ""
                },
                v.seconds
            ),
            Ok(None) => {
                "  its volume's last verified restore: never (ebs-lifecycle verify drills it now)"
                    .into()
            }
            Err(e) => format!("  its volume's last verified restore: unknown ({e})"),
        });
        out.join("\n")
    }
}

/// Explain `id`.
pub async fn explain(
    ports: Ports<'_>,
    protections: &dyn SnapshotProtections,
    drills: &dyn DrillLedger,
    config: &Config,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Explained, RestoreError> {
    let found = ports.catalog.snapshots_by_id(&[id.to_string()]).await?;
    let Some(named) = found.into_iter().next() else {
        return Err(RestoreError::NotFound(id.to_string()));
    };
    let mut listed = vec![named.clone()];
    let volume = named.source_volume_id().map(String::from);
    if let Some(v) = &volume {
        listed.extend(history(&ports, config, false, v).await?);
    }
    let sifted = sift(
        ports.ledger,
        config,
        dedup(listed),
        Scope::WholeVolumes,
        now,
    )
    .await?;
    let findings: Vec<String> = sifted
        .suspects
        .iter()
        .filter(|s| s.snapshot_id == id)
        .flat_map(|s| s.findings.iter())
        .filter_map(|f| {
            serde_json::to_value(f)
                .ok()
                .and_then(|v| v["kind"].as_str().map(String::from))
        })
        .collect();
    let state = format!("{:?}", named.state).to_lowercase();
    let Some(snapshot) = sifted.owned.iter().find(|s| s.id == id).cloned() else {
        return Ok(Explained {
            snapshot_id: id.to_string(),
            ours: false,
            findings: if findings.is_empty() {
                vec!["no proof".into()]
            } else {
                findings
            },
            volume_id: None,
            policy: None,
            slot: None,
            data_time: None,
            state,
            kept_by: None,
            next_expiry: "never deleted by the stack".into(),
            hold: None,
            locked: false,
            used_by_ami: false,
            restorable: false,
            last_restore: Ok(None),
        });
    };
    let owned: &[Snapshot] = &sifted.owned;
    let ids: Vec<String> = owned.iter().map(|s| s.id.clone()).collect();
    // The deletion service's facts, every one read (an explanation on a
    // guess would mislead).
    let protected = Protections::read(protections, ports.ledger, Locks::Of(&ids), true, now)
        .await
        .for_deletion(true)
        .map_err(|unread| match unread {
            Unread::Amis(e) | Unread::Locks(e) => RestoreError::Ec2(e),
            Unread::Copies(e) | Unread::Holds(e) => RestoreError::Ledger(e),
        })?;
    let restoring = owned
        .iter()
        .filter(|s| s.restore_expiry.is_some())
        .map(|s| s.id.clone())
        .collect();
    let facts = protected.facts(
        &config.identity.deployment,
        sifted.held_for_review(),
        restoring,
        now,
    );
    let hold = facts.holds.on(&snapshot).cloned();
    let locked = facts.locked_snapshot_ids.contains(id);
    let used_by_ami = facts.ami_snapshot_ids.contains(id);
    let source = snapshot.source_volume_id().map(String::from);
    let existing: BTreeSet<String> = match &source {
        Some(v) if ports.home.source_volume(v).await?.is_some() => [v.clone()].into(),
        _ => BTreeSet::new(),
    };
    // The verdict alone: the 24-hour budget is expiry's to spend.
    let gate = DeletionGate::new(facts, owned, u32::MAX);
    let plans = expiry::plan(owned, &config.policies, &existing, &gate);
    let planned = plans
        .iter()
        .flat_map(|p| &p.snapshots)
        .find(|p| p.snapshot.id == id);
    let kept_by = planned
        .and_then(|p| p.retention.as_ref())
        .map(|r| r.iter().map(|k| k.as_str().to_string()).collect());
    let next_expiry = match planned.map(|p| &p.verdict) {
        Some(Ok(())) => {
            "deleted (its rules no longer keep it and no safety rule protects it)".into()
        }
        Some(Err(protection)) => format!("kept: {}", protection.kind()),
        None => "kept: not planned".into(),
    };
    let last_restore = match &source {
        Some(v) => drills
            .verifications(std::slice::from_ref(v))
            .await
            .map(|found| found.into_iter().next())
            .map_err(|e| e.to_string()),
        None => Ok(None),
    };
    Ok(Explained {
        last_restore,
        snapshot_id: id.to_string(),
        ours: true,
        findings,
        volume_id: source,
        policy: snapshot.tags.get(keys::POLICY).cloned(),
        slot: snapshot.tags.get(keys::SLOT).cloned(),
        data_time: restore::data_time(&snapshot),
        state,
        kept_by,
        next_expiry,
        hold,
        locked,
        used_by_ami,
        restorable: snapshot.state == ebs_lifecycle_core::model::SnapshotState::Completed
            && !restore::needs_tier_restore(&snapshot),
    })
}

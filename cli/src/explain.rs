//! `explain <snapshot-id>` (docs/restore.md): what the deployment knows of
//! one snapshot. Whether it is the deployment's (the ownership proof, or
//! why not), what it is (volume, policy, slot, moment), and what the next
//! expiry would do with it and why: the same plan expire-snapshots makes
//! (`ebs_lifecycle_core::expiry::plan` under `safety::DeletionGate`), on
//! the same facts (AMIs, locks, ledger holds, copies in flight, restores
//! from the archive tier), for its volume's whole history; its volume's
//! last verified restore (the restore drills' ledger record); its copies in
//! the policies' other regions (proven by the ledger's copy records), each
//! region's last passed drill of the volume's copies, and the vault
//! accounts it is shared with. Read only.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::json;

use ebs_lifecycle::config::Config;
use ebs_lifecycle::ports::ec2::{SnapshotCatalog, SnapshotProtections, SnapshotSharing};
use ebs_lifecycle::ports::ledger::DrillLedger;
use ebs_lifecycle::services::deletion::{Locks, Protections, Unread};
use ebs_lifecycle::services::ownership::sift;
use ebs_lifecycle_core::drills::{copy_key, Verification};
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
    /// Per region the policies copy to (known with `--policies`).
    pub elsewhere: Vec<Elsewhere>,
    /// The vault accounts (of the policies' vault targets) it is shared
    /// with: their stacks copy it into the vault. `Err`: EC2 could not say.
    pub vault_shares: Result<Vec<String>, String>,
}

/// What one disaster-recovery region holds of the snapshot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Elsewhere {
    pub region: String,
    /// Its copies there the ledger proves, with their state.
    pub copies: Vec<(String, String)>,
    /// The last passed drill of the volume's copies there.
    pub last_drill: Option<Verification>,
    /// The region could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where explain looks beyond the stack's region.
#[derive(Clone, Copy)]
pub struct Beyond<'a> {
    /// EC2 in each region the policies copy to.
    pub regions: &'a BTreeMap<String, &'a dyn SnapshotCatalog>,
    pub sharing: &'a dyn SnapshotSharing,
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
            "copies": self.elsewhere,
            "vault_shares": match &self.vault_shares {
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
        for e in &self.elsewhere {
            out.push(match (&e.error, e.copies.as_slice()) {
                (Some(err), _) => format!("  copies in {}: unknown ({err})", e.region),
                (None, []) => format!("  copies in {}: none", e.region),
                (None, copies) => format!(
                    "  copies in {}: {}",
                    e.region,
                    copies
                        .iter()
                        .map(|(id, state)| format!("{id} ({state})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
            if let Some(v) = &e.last_drill {
                out.push(format!(
                    "    last verified restore of the volume's copies there: {} ({})",
                    keys::format_time(v.at),
                    v.snapshot_id
                ));
            }
        }
        match &self.vault_shares {
            Ok(accounts) if accounts.is_empty() => {}
            Ok(accounts) => out.push(format!(
                "  shared with the vault account(s) {} (their copies are seen there: ebs-lifecycle explain in the vault account)",
                accounts.join(", ")
            )),
            Err(e) => out.push(format!("  vault shares: unknown ({e})")),
        }
        out.join("\n")
    }
}

/// Explain `id`.
pub async fn explain(
    ports: Ports<'_>,
    protections: &dyn SnapshotProtections,
    drills: &dyn DrillLedger,
    beyond: Beyond<'_>,
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
            elsewhere: Vec::new(),
            vault_shares: Ok(Vec::new()),
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
    let elsewhere = match &source {
        Some(v) if !snapshot.is_copy() => {
            copies_elsewhere(ports, drills, beyond, config, id, v, now).await
        }
        _ => Vec::new(),
    };
    let vault_accounts: BTreeSet<String> = config
        .policies
        .vault_targets()
        .iter()
        .filter_map(|t| t.split('/').next().map(String::from))
        .collect();
    let vault_shares = if vault_accounts.is_empty() || snapshot.is_copy() {
        Ok(Vec::new())
    } else {
        beyond
            .sharing
            .create_volume_permissions(id)
            .await
            .map(|p| {
                p.accounts
                    .into_iter()
                    .filter(|a| vault_accounts.contains(a))
                    .collect()
            })
            .map_err(|e| e.to_string())
    };
    Ok(Explained {
        elsewhere,
        vault_shares,
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

/// The snapshot's copies in each region the policies copy to, proven as
/// copy-snapshots proves them (the ledger's copy record), and the last
/// passed drill of the volume's copies there.
async fn copies_elsewhere(
    ports: Ports<'_>,
    drills: &dyn DrillLedger,
    beyond: Beyond<'_>,
    config: &Config,
    id: &str,
    volume: &str,
    now: DateTime<Utc>,
) -> Vec<Elsewhere> {
    let mut out = Vec::new();
    for (region, catalog) in beyond.regions {
        let mut there = Elsewhere {
            region: region.clone(),
            copies: Vec::new(),
            last_drill: None,
            error: None,
        };
        let listed = match catalog
            .copies_from(config.deployment_name(), &config.identity.region)
            .await
        {
            Ok(listed) => listed,
            Err(e) => {
                there.error = Some(e.to_string());
                out.push(there);
                continue;
            }
        };
        // Every copy proven first: its `lifecycle:copy-of` is then the
        // ledger's, not a tag somebody wrote (or removed).
        match sift(ports.ledger, config, listed, Scope::SomeSnapshots, now).await {
            Ok(sifted) => {
                there.copies = sifted
                    .owned
                    .iter()
                    .filter(|s| s.tags.get(keys::COPY_OF).map(String::as_str) == Some(id))
                    .map(|s| (s.id.clone(), format!("{:?}", s.state).to_lowercase()))
                    .collect();
            }
            Err(e) => there.error = Some(e.to_string()),
        }
        there.last_drill = drills
            .verifications(&[copy_key(region, volume)])
            .await
            .ok()
            .and_then(|v| v.into_iter().next());
        out.push(there);
    }
    out
}

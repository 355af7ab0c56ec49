//! What is due (docs/functions.md, "create-snapshots"): the volumes and
//! instances that opt in, each resolved to its policy, and per policy the
//! volumes the deployment already provably has a snapshot of in the
//! current slot. Read only: create-snapshots snapshots what is due,
//! `ebs-lifecycle plan` prints it, from the same code.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use ebs_lifecycle_core::model::{Instance, Snapshot, SnapshotState, Volume};
use ebs_lifecycle_core::ownership::{LostAnswer, Scope};
use ebs_lifecycle_core::tags;
use ebs_lifecycle_core::targets::{self, InstanceTarget, Resolution, Target, VolumeTarget};

use crate::config::Config;
use crate::ports::ec2::{Ec2Error, SnapshotCatalog, VolumeInventory};
use crate::ports::ledger::{Ledger, LedgerError};

/// The opted-in volumes and instances (server-side tag filters) and the
/// volumes attached to those instances, resolved to their policies; with a
/// default policy, every volume of the region is read and those no tag
/// decides are covered by it ([`with_default`]).
pub async fn discover(
    inventory: &dyn VolumeInventory,
    config: &Config,
) -> Result<Resolution, Ec2Error> {
    let key = config.selector_tag_key.as_str();
    let (all_volumes, tagged_instances) = match config.default_policy {
        // Every volume is read anyway: the tagged ones are among them.
        Some(_) => tokio::try_join!(inventory.all_volumes(), inventory.instances_tagged(key))?,
        None => tokio::try_join!(
            inventory.volumes_tagged(key),
            inventory.instances_tagged(key)
        )?,
    };
    let tagged_volumes: Vec<_> = all_volumes
        .iter()
        .filter(|v| v.tags.contains_key(key))
        .cloned()
        .collect();
    let instance_ids: Vec<String> = tagged_instances.iter().map(|i| i.id.clone()).collect();
    let attached = if instance_ids.is_empty() {
        Vec::new()
    } else if config.default_policy.is_some() {
        // From the one listing, not a second read: a volume moved between
        // two reads could be covered both by its new instance and by the
        // default policy.
        let ids: BTreeSet<&str> = instance_ids.iter().map(String::as_str).collect();
        all_volumes
            .iter()
            .filter(|v| {
                v.attachment
                    .as_ref()
                    .is_some_and(|a| ids.contains(a.instance_id.as_str()))
            })
            .cloned()
            .collect()
    } else {
        inventory.volumes_attached_to(&instance_ids).await?
    };
    let mut resolution = targets::resolve(
        key,
        &config.policies,
        &tagged_volumes,
        &tagged_instances,
        &attached,
    );
    with_default(
        inventory,
        config,
        &mut resolution,
        &all_volumes,
        &tagged_instances,
    )
    .await?;
    Ok(resolution)
}

/// The stack's default policy, if it has one, over `all_volumes` (every
/// volume of the region): what no selector tag decides is covered by it
/// (`targets::cover_by_default`). The instances those volumes are attached
/// to are read by id (a boot volume is told by its instance's root device;
/// the instance's tags are copied as a tagged instance's are).
pub async fn with_default(
    inventory: &dyn VolumeInventory,
    config: &Config,
    resolution: &mut Resolution,
    all_volumes: &[Volume],
    tagged_instances: &[Instance],
) -> Result<(), Ec2Error> {
    let Some(policy) = config
        .default_policy
        .as_deref()
        .and_then(|name| config.policies.get(name))
    else {
        return Ok(());
    };
    let key = config.selector_tag_key.as_str();
    let tagged: BTreeSet<&str> = tagged_instances.iter().map(|i| i.id.as_str()).collect();
    let others: Vec<String> = all_volumes
        .iter()
        .filter(|v| !v.tags.contains_key(key))
        .filter_map(|v| v.attachment.as_ref().map(|a| a.instance_id.clone()))
        .filter(|i| !tagged.contains(i.as_str()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let instances = if others.is_empty() {
        Vec::new()
    } else {
        inventory.instances_by_id(&others).await?
    };
    targets::cover_by_default(resolution, key, policy, all_volumes, &tagged, &instances);
    Ok(())
}

/// The targets by policy name, in name order.
pub fn by_policy(targets: Vec<Target>) -> BTreeMap<String, Vec<Target>> {
    let mut by_policy: BTreeMap<String, Vec<Target>> = BTreeMap::new();
    for t in targets {
        by_policy.entry(t.policy().to_string()).or_default().push(t);
    }
    by_policy
}

/// A slot's snapshots that the deployment provably made.
#[derive(Debug, Default)]
pub struct Filled {
    /// The volumes with a snapshot for the slot, pending or completed.
    pub volume_ids: BTreeSet<String>,
    /// The deployment's snapshots the slot's listing held (for the lost
    /// answers' records).
    pub owned: Vec<Snapshot>,
    /// Owned snapshots proven by an intent alone: create-snapshots records
    /// them; a read-only plan leaves them.
    pub lost_answers: Vec<LostAnswer>,
}

/// Why a slot's snapshots could not be read: nothing of the policy is
/// created (it could duplicate); the next tick looks again.
#[derive(Debug, thiserror::Error)]
pub enum FilledError {
    #[error("could not check existing snapshots: {0}")]
    Ec2(#[from] Ec2Error),
    #[error("could not check existing snapshots: {0}")]
    Ledger(#[from] LedgerError),
}

impl FilledError {
    /// Short stable name for run summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ec2(e) => e.kind(),
            Self::Ledger(e) => e.kind(),
        }
    }
}

/// What of `slot` the deployment already has for `policy`. An `error`
/// snapshot does not fill the slot: the volume stays due. Nor does one the
/// deployment did not make, whatever its tags or Description say: a forged
/// tag or a snapshot made by hand must not cancel a backup.
pub async fn filled(
    catalog: &dyn SnapshotCatalog,
    ledger: &dyn Ledger,
    config: &Config,
    policy: &str,
    slot: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Filled, FilledError> {
    let listed = catalog
        .snapshots_for_slot(&config.identity, policy, slot)
        .await?;
    let mut sifted =
        super::ownership::sift(ledger, config, listed, Scope::SomeSnapshots, now).await?;
    let slot_tag = tags::format_time(slot);
    let volume_ids = sifted
        .owned
        .iter()
        .filter(|s| s.state != SnapshotState::Error)
        .filter(|s| s.tags.get(tags::SLOT) == Some(&slot_tag))
        .filter_map(|s| s.source_volume_id().map(String::from))
        .collect();
    Ok(Filled {
        volume_ids,
        lost_answers: std::mem::take(&mut sifted.lost_answers),
        owned: sifted.owned,
    })
}

/// One target's part of a slot that is still to be made.
#[derive(Debug, Clone)]
pub enum Due {
    Volume(VolumeTarget),
    /// The instance's volumes still due (in id order); the others have
    /// their snapshot.
    Instance {
        target: InstanceTarget,
        due: Vec<String>,
    },
}

/// Which of a policy's targets are due, given the volumes whose slot is
/// filled; and how many volumes are not.
pub fn due(targets: Vec<Target>, filled: &BTreeSet<String>) -> (Vec<Due>, usize) {
    let mut due = Vec::new();
    let mut not_due = 0;
    for target in targets {
        match target {
            Target::Volume(t) if filled.contains(&t.volume.id) => not_due += 1,
            Target::Volume(t) => due.push(Due::Volume(t)),
            Target::Instance(target) => {
                let volumes: Vec<String> = target
                    .volumes
                    .iter()
                    .map(|v| v.id.clone())
                    .filter(|id| !filled.contains(id))
                    .collect();
                not_due += target.volumes.len() - volumes.len();
                if !volumes.is_empty() {
                    due.push(Due::Instance {
                        target,
                        due: volumes,
                    });
                }
            }
        }
    }
    (due, not_due)
}

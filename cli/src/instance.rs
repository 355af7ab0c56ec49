//! `restore instance` (docs/restore.md): every volume of an instance
//! brought back to one moment, from one slot when the deployment has one
//! covering them all (`ebs_lifecycle_core::restore::choose_for_instance`).
//! With `--replace`, the restored volumes take the current ones' devices,
//! root included; the current ones are detached and kept, tagged
//! `lifecycle:replaced-by`. All or nothing: if a volume cannot be made or
//! swapped, what was made is deleted and the instance is left as it was.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;

use ebs_lifecycle::config::Config;
use ebs_lifecycle::ports::ec2::{InstanceControl, VolumeInventory};
use ebs_lifecycle::services::ownership::sift;
use ebs_lifecycle_core::model::Snapshot;
use ebs_lifecycle_core::ownership::{Claim, Scope, Subject};
use ebs_lifecycle_core::restore::{self, Overrides, Placement, VolumeSpec};
use ebs_lifecycle_core::tags as keys;

use crate::restore::{dedup, history, lineage, Ports, RestoreError, Waiting};

/// What `restore instance` needs beyond `restore volume`'s ports.
pub struct InstancePorts<'a> {
    pub volumes: Ports<'a>,
    pub inventory: &'a dyn VolumeInventory,
    pub instances: &'a dyn InstanceControl,
}

#[derive(Debug, Clone)]
pub struct InstanceRequest {
    pub instance_id: String,
    pub at: DateTime<Utc>,
    pub replace: bool,
    /// Stop a running instance for the swap (and start it again after).
    pub stop: bool,
    /// Swap in volumes from different moments when no slot covers them all.
    pub allow_spread: bool,
    /// Devices left as they are.
    pub exclude: Vec<String>,
    pub dry_run: bool,
    pub wait: Duration,
    pub poll: Duration,
}

/// One device of the instance, restored.
#[derive(Debug, Clone)]
pub struct DeviceRestore {
    pub device: String,
    /// The volume there now.
    pub current_volume_id: String,
    pub snapshot_id: String,
    pub snapshot_time: DateTime<Utc>,
    pub spec: VolumeSpec,
    /// The restored volume (`None` in a dry run).
    pub volume_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RestoredInstance {
    pub instance_id: String,
    pub devices: Vec<DeviceRestore>,
    pub one_slot: bool,
    pub consistent_set: bool,
    pub spread_seconds: i64,
    pub replaced: bool,
    pub seconds: f64,
    pub dry_run: bool,
    /// What went wrong after the restore succeeded (it still did).
    pub warnings: Vec<String>,
}

impl RestoredInstance {
    /// docs/restore.md's JSON: `devices` (device -> volume and snapshot),
    /// `consistent_set`, and how far apart the volumes' moments are.
    pub fn json(&self) -> serde_json::Value {
        let devices: serde_json::Map<String, serde_json::Value> = self
            .devices
            .iter()
            .map(|d| {
                (
                    d.device.clone(),
                    json!({
                        "volume_id": d.volume_id,
                        "snapshot_id": d.snapshot_id,
                        "snapshot_time": keys::format_time(d.snapshot_time),
                        "replaced_volume_id": d.current_volume_id,
                    }),
                )
            })
            .collect();
        json!({
            "instance_id": self.instance_id,
            "devices": devices,
            "one_slot": self.one_slot,
            "consistent_set": self.consistent_set,
            "spread_seconds": self.spread_seconds,
            "replaced": self.replaced,
            "seconds": (self.seconds * 10.0).round() / 10.0,
            "dry_run": self.dry_run,
            "warnings": self.warnings,
        })
    }

    pub fn text(&self) -> String {
        let mut out = Vec::new();
        let verb = if self.dry_run {
            "would restore"
        } else {
            "restored"
        };
        out.push(format!(
            "{verb} {} ({} device{}): {}",
            self.instance_id,
            self.devices.len(),
            if self.devices.len() == 1 { "" } else { "s" },
            if self.consistent_set {
                "one crash-consistent set".to_string()
            } else if self.one_slot {
                format!("one slot, volumes taken {} s apart", self.spread_seconds)
            } else {
                format!(
                    "NOT one moment: the volumes come from times {} s apart",
                    self.spread_seconds
                )
            }
        ));
        for d in &self.devices {
            out.push(format!(
                "  {:<12} {} <- {} ({}) [now {}]",
                d.device,
                d.volume_id.as_deref().unwrap_or("(new volume)"),
                d.snapshot_id,
                keys::format_time(d.snapshot_time),
                d.current_volume_id
            ));
        }
        if self.replaced {
            out.push(
                "swapped: the previous volumes are detached and kept (lifecycle:replaced-by)"
                    .into(),
            );
        }
        out.join("\n")
    }
}

/// Restore every volume attached to the instance.
pub async fn instance(
    ports: InstancePorts<'_>,
    config: &Config,
    request: &InstanceRequest,
    now: DateTime<Utc>,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<RestoredInstance, RestoreError> {
    let id = &request.instance_id;
    let found = ports
        .instances
        .instance(id)
        .await?
        .ok_or_else(|| RestoreError::NotFound(id.clone()))?;
    let running = match found.state.as_str() {
        "running" => true,
        "stopped" => false,
        other => {
            return Err(RestoreError::Refused(format!(
                "{id} is {other}: wait until it is running or stopped"
            )))
        }
    };
    if request.replace && running && !request.stop {
        return Err(RestoreError::Refused(format!(
            "{id} is running: --replace swaps volumes of a stopped instance; stop it first or add --stop"
        )));
    }
    let mut attached = attached_volumes(&ports, id).await?;
    for device in &request.exclude {
        if !attached.iter().any(|(d, _)| d == device) {
            return Err(RestoreError::Refused(format!(
                "--exclude {device}: {id} has no volume at {device}"
            )));
        }
    }
    attached.retain(|(d, _)| !request.exclude.contains(d));
    if attached.is_empty() {
        return Err(RestoreError::Refused(format!(
            "every device of {id} is excluded"
        )));
    }
    let volume_ids: Vec<String> = attached.iter().map(|(_, v)| v.clone()).collect();
    let (devices, (one_slot, consistent_set, spread)) =
        plan(&ports.volumes, config, request, &attached, &volume_ids, now).await?;
    if request.replace && !one_slot && !request.allow_spread {
        return Err(RestoreError::Refused(format!(
            "no slot has a snapshot of every volume of {id} at or before {}: each volume's newest would be swapped in, {spread} s apart; add --allow-spread to do it anyway, or choose --at",
            keys::format_time(request.at)
        )));
    }
    let mut restored = RestoredInstance {
        instance_id: id.clone(),
        devices,
        one_slot,
        consistent_set,
        spread_seconds: spread,
        replaced: false,
        seconds: 0.0,
        dry_run: request.dry_run,
        warnings: Vec::new(),
    };
    if request.dry_run {
        return Ok(restored);
    }
    let started = Instant::now();
    let waiting = Waiting {
        restorer: ports.volumes.restorer,
        wait: request.wait,
        poll: request.poll,
    };
    // Make every volume, or none.
    if let Err(e) = make_all(&ports, &waiting, &mut restored.devices, progress).await {
        delete_made(&ports, &restored.devices, progress).await;
        return Err(e);
    }
    if request.replace {
        if running {
            if let Err(e) = stop(&ports, request, id, progress).await {
                delete_made(&ports, &restored.devices, progress).await;
                return Err(e);
            }
        }
        for d in &restored.devices {
            progress(format!(
                "{}: {} replaces {}",
                d.device,
                d.volume_id.as_deref().unwrap_or("-"),
                d.current_volume_id
            ));
        }
        if let Err(e) = swap(&ports, &waiting, id, &restored.devices, progress).await {
            let back = undo(&ports, &waiting, id, &restored.devices, progress).await;
            if back {
                delete_made(&ports, &restored.devices, progress).await;
                if running {
                    if let Err(start) = ports.instances.start_instance(id).await {
                        progress(format!("{id}: could not start it again ({start}): aws ec2 start-instances --instance-ids {id}"));
                    }
                }
                return Err(e);
            }
            // Not every device is as it was: leave the instance stopped and
            // the volumes where they are, and say how to finish by hand.
            return Err(RestoreError::Refused(format!(
                "{e}; the rollback could not put every volume back, so {id} is left stopped: {}",
                by_hand(id, &restored.devices)
            )));
        }
        for d in &restored.devices {
            if let Some(new) = &d.volume_id {
                crate::restore::done_with(ports.volumes.restorer, new, &mut restored.warnings)
                    .await;
            }
        }
        if running {
            match ports.instances.start_instance(id).await {
                Ok(()) => progress(format!("{id}: started again")),
                Err(e) => restored.warnings.push(format!(
                    "{id}: swapped but could not start it again ({e}): aws ec2 start-instances --instance-ids {id}"
                )),
            }
        }
        restored.replaced = true;
    } else {
        for d in &restored.devices {
            if let Some(new) = &d.volume_id {
                crate::restore::done_with(ports.volumes.restorer, new, &mut restored.warnings)
                    .await;
            }
        }
    }
    restored.seconds = started.elapsed().as_secs_f64();
    Ok(restored)
}

/// (device, volume) of every volume attached to the instance, by device.
/// A volume attached to more than one instance (Multi-Attach) is refused:
/// swapping it here would leave the other instance on the old data.
async fn attached_volumes(
    ports: &InstancePorts<'_>,
    id: &str,
) -> Result<Vec<(String, String)>, RestoreError> {
    let mut attached = Vec::new();
    for v in ports
        .inventory
        .volumes_attached_to(&[id.to_string()])
        .await?
    {
        let everywhere = ports.volumes.restorer.attachments(&v.id).await?;
        if everywhere.iter().any(|(instance, _)| instance != id) {
            return Err(RestoreError::Refused(format!(
                "{} is attached to more than one instance (Multi-Attach): restore it with `restore volume`",
                v.id
            )));
        }
        if let Some((_, device)) = everywhere.into_iter().find(|(instance, _)| instance == id) {
            attached.push((device, v.id));
        }
    }
    attached.sort();
    if attached.is_empty() {
        return Err(RestoreError::Refused(format!(
            "{id} has no volume attached"
        )));
    }
    Ok(attached)
}

/// The commands that finish a swap by hand: each device's restored volume
/// detached if there, its previous volume attached back.
fn by_hand(instance: &str, devices: &[DeviceRestore]) -> String {
    devices
        .iter()
        .map(|d| {
            format!(
                "{}: aws ec2 attach-volume --instance-id {instance} --volume-id {} --device {} (detach {} first if it is there)",
                d.device,
                d.current_volume_id,
                d.device,
                d.volume_id.as_deref().unwrap_or("-")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

type Planned = (Vec<DeviceRestore>, (bool, bool, i64));

/// The snapshot and new volume of every device, from the proof.
async fn plan(
    ports: &Ports<'_>,
    config: &Config,
    request: &InstanceRequest,
    attached: &[(String, String)],
    volume_ids: &[String],
    now: DateTime<Utc>,
) -> Result<Planned, RestoreError> {
    let mut listed = Vec::new();
    let mut lineages = Vec::new();
    for v in volume_ids {
        let lineage = lineage(ports, v).await?;
        for l in &lineage {
            listed.extend(history(ports, config, false, l).await?);
        }
        lineages.push(lineage);
    }
    let listed = dedup(listed);
    // Which of them claim to be this instance's multi-volume sets (the
    // proof below decides which claims hold).
    let claimed_sets: BTreeSet<String> = listed
        .iter()
        .filter(|s| {
            matches!(
                s.description.as_deref().and_then(|d| config.identity.read(d)),
                Some(Claim::Scheduled { subject: Subject::Instance(i), .. }) if i == request.instance_id
            )
        })
        .map(|s| s.id.clone())
        .collect();
    let sifted = sift(ports.ledger, config, listed, Scope::WholeVolumes, now).await?;
    let choice = restore::choose_for_instance(&sifted.owned, &claimed_sets, &lineages, request.at)
        .map_err(|missing| RestoreError::NothingToRestore {
            volume: missing.join(", "),
            at: keys::format_time(request.at),
        })?;
    let mut devices = Vec::new();
    for ((device, current), (_, snapshot)) in attached.iter().zip(&choice.chosen) {
        let snapshot: &Snapshot = snapshot;
        if restore::needs_tier_restore(snapshot) {
            return Err(RestoreError::Archived {
                id: snapshot.id.clone(),
            });
        }
        let source = ports.home.source_volume(current).await?;
        let spec = restore::volume_spec(
            snapshot,
            current,
            source.as_ref(),
            &Overrides::default(),
            &config.selector_tag_key,
            if request.replace {
                Placement::Replacing
            } else {
                Placement::Beside
            },
            now,
        )?;
        devices.push(DeviceRestore {
            device: device.clone(),
            current_volume_id: current.clone(),
            snapshot_id: snapshot.id.clone(),
            snapshot_time: restore::data_time(snapshot).unwrap_or(now),
            spec,
            volume_id: None,
        });
    }
    Ok((
        devices,
        (
            choice.one_slot,
            choice.consistent_set,
            choice.spread.num_seconds(),
        ),
    ))
}

async fn make_all(
    ports: &InstancePorts<'_>,
    waiting: &Waiting<'_>,
    devices: &mut [DeviceRestore],
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<(), RestoreError> {
    for d in devices.iter_mut() {
        let id = ports.volumes.restorer.create_volume(&d.spec).await?;
        progress(format!(
            "{}: creating {id} from {}",
            d.device, d.snapshot_id
        ));
        d.volume_id = Some(id);
    }
    for d in devices.iter() {
        if let Some(id) = &d.volume_id {
            waiting
                .until_available(id, &d.snapshot_id, progress)
                .await?;
        }
    }
    Ok(())
}

/// Roll back: the volumes this restore made, and only those, deleted.
async fn delete_made(
    ports: &InstancePorts<'_>,
    devices: &[DeviceRestore],
    progress: &mut (dyn FnMut(String) + Send),
) {
    for id in devices.iter().filter_map(|d| d.volume_id.as_ref()) {
        match ports.volumes.restorer.delete_volume(id).await {
            Ok(()) => progress(format!("rolled back: {id} deleted")),
            Err(e) => progress(format!(
                "rolling back: could not delete {id} ({e}); delete it by hand"
            )),
        }
    }
}

async fn stop(
    ports: &InstancePorts<'_>,
    request: &InstanceRequest,
    id: &str,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<(), RestoreError> {
    ports.instances.stop_instance(id).await?;
    let started = Instant::now();
    loop {
        let state = ports.instances.instance(id).await?.map(|i| i.state);
        if state.as_deref() == Some("stopped") {
            return Ok(());
        }
        if started.elapsed() >= request.wait {
            return Err(RestoreError::Refused(format!(
                "{id} did not stop within {} minutes (it may still be stopping); nothing was swapped: start it again once it has stopped (aws ec2 start-instances --instance-ids {id})",
                request.wait.as_secs() / 60
            )));
        }
        progress(format!("{id}: stopping ({})", state.unwrap_or_default()));
        tokio::time::sleep(request.poll).await;
    }
}

/// Detach each current volume and attach its restored one at the same
/// device. The current volume is tagged `lifecycle:replaced-by` before it
/// is detached, so a run that dies midway leaves the record. Stops at the
/// first failure (the caller undoes).
async fn swap(
    ports: &InstancePorts<'_>,
    waiting: &Waiting<'_>,
    instance: &str,
    devices: &[DeviceRestore],
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<(), RestoreError> {
    let restorer = ports.volumes.restorer;
    for d in devices {
        let Some(new) = &d.volume_id else { continue };
        restorer
            .tag_volume(&d.current_volume_id, keys::REPLACED_BY, new)
            .await?;
        restorer
            .detach_volume(&d.current_volume_id, instance)
            .await?;
        waiting
            .until_available(&d.current_volume_id, &d.snapshot_id, progress)
            .await?;
        restorer.attach_volume(new, instance, &d.device).await?;
        waiting.until_attached(new, instance, progress).await?;
        progress(format!(
            "{}: {new} attached (was {})",
            d.device, d.current_volume_id
        ));
    }
    Ok(())
}

/// Put every device back as it was, from what EC2 says now (a step whose
/// answer was lost may have happened): a restored volume attached here is
/// detached, the previous volume attached back at its device. True when
/// every device has its previous volume again.
async fn undo(
    ports: &InstancePorts<'_>,
    waiting: &Waiting<'_>,
    instance: &str,
    devices: &[DeviceRestore],
    progress: &mut (dyn FnMut(String) + Send),
) -> bool {
    let restorer = ports.volumes.restorer;
    let mut all_back = true;
    for d in devices.iter().rev() {
        let here = |attachments: &[(String, String)]| {
            attachments
                .iter()
                .any(|(i, device)| i == instance && *device == d.device)
        };
        if let Some(new) = &d.volume_id {
            if matches!(restorer.attachments(new).await, Ok(a) if !a.is_empty()) {
                let _ = restorer.detach_volume(new, instance).await;
                if let Err(e) = waiting.until_available(new, &d.snapshot_id, progress).await {
                    progress(format!("rolling back: {new} did not detach ({e})"));
                    all_back = false;
                    continue;
                }
            }
        }
        let old = &d.current_volume_id;
        let back = match restorer.attachments(old).await {
            Ok(a) if here(&a) => true,
            Ok(a) if a.is_empty() => {
                // Detached (or detaching): wait for it, then attach it back.
                let ready = waiting.until_available(old, &d.snapshot_id, progress).await;
                ready.is_ok()
                    && restorer
                        .attach_volume(old, instance, &d.device)
                        .await
                        .is_ok()
                    && waiting
                        .until_attached(old, instance, progress)
                        .await
                        .is_ok()
            }
            _ => false,
        };
        if back {
            let _ = restorer.untag_volume(old, keys::REPLACED_BY).await;
            progress(format!("rolled back: {old} at {}", d.device));
        } else {
            progress(format!("rolling back: {old} is not at {} again", d.device));
            all_back = false;
        }
    }
    all_back
}

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
use ebs_lifecycle::lambda::ownership::sift;
use ebs_lifecycle::ports::ec2::{InstanceControl, VolumeInventory};
use ebs_lifecycle_core::model::Snapshot;
use ebs_lifecycle_core::ownership::{Claim, Scope, Subject};
use ebs_lifecycle_core::restore::{self, Overrides, VolumeSpec};
use ebs_lifecycle_core::tags as keys;

use crate::restore::{dedup, history, Ports, RestoreError, Waiting};

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
    let running = found.state != "stopped";
    if request.replace && running && !request.stop {
        return Err(RestoreError::Refused(format!(
            "{id} is {}: --replace swaps volumes of a stopped instance; stop it first or add --stop",
            found.state
        )));
    }
    let mut attached: Vec<(String, String)> = ports
        .inventory
        .volumes_attached_to(std::slice::from_ref(id))
        .await?
        .into_iter()
        .filter_map(|v| {
            let a = v.attachment?;
            (a.instance_id == *id).then_some((a.device, v.id))
        })
        .collect();
    attached.sort();
    if attached.is_empty() {
        return Err(RestoreError::Refused(format!(
            "{id} has no volume attached"
        )));
    }
    let volume_ids: Vec<String> = attached.iter().map(|(_, v)| v.clone()).collect();
    let mut devices = plan(&ports.volumes, config, request, &attached, &volume_ids, now).await?;
    let (one_slot, consistent_set, spread) = devices.1;
    let mut restored = RestoredInstance {
        instance_id: id.clone(),
        devices: std::mem::take(&mut devices.0),
        one_slot,
        consistent_set,
        spread_seconds: spread,
        replaced: false,
        seconds: 0.0,
        dry_run: request.dry_run,
    };
    if request.dry_run {
        return Ok(restored);
    }
    let started = Instant::now();
    let waiting = Waiting {
        restorer: ports.volumes.restorer,
        started,
        wait: request.wait,
        poll: request.poll,
    };
    // Make every volume, or none.
    if let Err(e) = make_all(&ports, &waiting, &mut restored.devices, progress).await {
        delete_made(&ports, &restored.devices, progress).await;
        return Err(e);
    }
    if request.replace {
        let stopped_by_us = running;
        if stopped_by_us {
            if let Err(e) = stop(&ports, request, id, progress).await {
                delete_made(&ports, &restored.devices, progress).await;
                return Err(e);
            }
        }
        let swapped = swap(&ports, &waiting, id, &restored.devices, progress).await;
        if let Err(e) = swapped {
            delete_made(&ports, &restored.devices, progress).await;
            if stopped_by_us {
                let _ = ports.instances.start_instance(id).await;
            }
            return Err(e);
        }
        for d in &restored.devices {
            if let Some(new) = &d.volume_id {
                if let Err(e) = ports
                    .volumes
                    .restorer
                    .tag_volume(&d.current_volume_id, keys::REPLACED_BY, new)
                    .await
                {
                    progress(format!(
                        "{}: could not tag it replaced-by {new}: {e}",
                        d.current_volume_id
                    ));
                }
            }
        }
        if stopped_by_us {
            ports.instances.start_instance(id).await?;
            progress(format!("{id}: started again"));
        }
        restored.replaced = true;
    }
    restored.seconds = started.elapsed().as_secs_f64();
    Ok(restored)
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
    for v in volume_ids {
        listed.extend(history(ports, config, false, v).await?);
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
    let choice = restore::choose_for_instance(&sifted.owned, &claimed_sets, volume_ids, request.at)
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
                "{id} did not stop within {} minutes",
                request.wait.as_secs() / 60
            )));
        }
        progress(format!("{id}: stopping ({})", state.unwrap_or_default()));
        tokio::time::sleep(request.poll).await;
    }
}

/// Detach each current volume and attach its restored one at the same
/// device; on any failure, undo what was swapped (the current volumes back
/// at their devices) before returning the error.
async fn swap(
    ports: &InstancePorts<'_>,
    waiting: &Waiting<'_>,
    instance: &str,
    devices: &[DeviceRestore],
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<(), RestoreError> {
    let restorer = ports.volumes.restorer;
    // Devices whose current volume is detached, and whether the new one
    // was attached there.
    let mut done: Vec<(&DeviceRestore, bool)> = Vec::new();
    let mut outcome = Ok(());
    for d in devices {
        let Some(new) = &d.volume_id else { continue };
        if let Err(e) = restorer.detach_volume(&d.current_volume_id, instance).await {
            outcome = Err(e.into());
            break;
        }
        done.push((d, false));
        if let Err(e) = waiting
            .until_available(&d.current_volume_id, &d.snapshot_id, progress)
            .await
        {
            outcome = Err(e);
            break;
        }
        if let Err(e) = restorer.attach_volume(new, instance, &d.device).await {
            outcome = Err(e.into());
            break;
        }
        if let Some(last) = done.last_mut() {
            last.1 = true;
        }
        progress(format!(
            "{}: {new} attached (was {})",
            d.device, d.current_volume_id
        ));
    }
    if outcome.is_ok() {
        return outcome;
    }
    for (d, new_attached) in done.into_iter().rev() {
        if new_attached {
            if let Some(new) = &d.volume_id {
                let _ = restorer.detach_volume(new, instance).await;
                let _ = waiting.until_available(new, &d.snapshot_id, progress).await;
            }
        }
        match restorer
            .attach_volume(&d.current_volume_id, instance, &d.device)
            .await
        {
            Ok(()) => progress(format!(
                "rolled back: {} at {} again",
                d.current_volume_id, d.device
            )),
            Err(e) => progress(format!(
                "rolling back: could not attach {} at {} again ({e}); do it by hand",
                d.current_volume_id, d.device
            )),
        }
    }
    outcome
}

//! `restore volume` (docs/restore.md): the newest completed snapshot the
//! deployment provably made of a volume at or before a moment (the same
//! ownership proof expiry uses, `services::ownership::sift`), a new volume
//! made from it as `ebs_lifecycle_core::restore::volume_spec` says, waited
//! for until `available`, attached if asked.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;

use ebs_lifecycle::config::Config;
use ebs_lifecycle::ports::ec2::{Ec2Error, SnapshotCatalog, VolumeRestorer};
use ebs_lifecycle::ports::ledger::{Ledger, LedgerError};
use ebs_lifecycle::services::ownership::sift;
use ebs_lifecycle_core::model::{Snapshot, SnapshotState};
use ebs_lifecycle_core::ownership::Scope;
use ebs_lifecycle_core::restore::{self, Overrides, Placement, SpecError, VolumeSpec};
use ebs_lifecycle_core::tags as keys;

use crate::args::RestoreVolume;
use crate::CliError;

/// Where the command looks and acts.
pub struct Ports<'a> {
    /// The snapshots: the stack's region, or the region of `--from`.
    pub catalog: &'a dyn SnapshotCatalog,
    /// Where the new volume is made (the catalog's region).
    pub restorer: &'a dyn VolumeRestorer,
    /// The stack's region, where the source volume is described.
    pub home: &'a dyn VolumeRestorer,
    pub ledger: &'a dyn Ledger,
}

/// What to restore, checked.
#[derive(Debug, Clone)]
pub struct VolumeRequest {
    /// `vol-…` (the newest at or before `at`) or `snap-…` (that one).
    pub id: String,
    pub at: DateTime<Utc>,
    /// Restoring in another region (from disaster-recovery copies).
    pub from: Option<String>,
    pub overrides: Overrides,
    pub attach: Option<(String, String)>,
    pub dry_run: bool,
    pub wait: Duration,
    /// Between two looks at the new volume's state.
    pub poll: Duration,
}

impl VolumeRequest {
    pub fn from_args(args: &RestoreVolume, now: DateTime<Utc>) -> Result<Self, CliError> {
        let at = match &args.at {
            Some(t) => crate::parse_time("--at", t)?,
            None => now,
        };
        if !(args.id.starts_with("vol-") || args.id.starts_with("snap-")) {
            return Err(CliError::Usage(format!(
                "{}: give a volume id (vol-…) or a snapshot id (snap-…)",
                args.id
            )));
        }
        if args.from.is_some() && args.az.is_none() {
            return Err(CliError::Usage(
                "--from restores in another region: give the zone there with --az".into(),
            ));
        }
        Ok(Self {
            id: args.id.clone(),
            at,
            from: args.from.clone(),
            overrides: Overrides {
                availability_zone: args.az.clone(),
                volume_type: args.volume_type.clone(),
                iops: args.iops,
                throughput: args.throughput,
                kms_key: args.kms_key.clone(),
            },
            attach: args.attach.clone().zip(args.device.clone()),
            dry_run: args.dry_run,
            wait: Duration::from_secs(args.wait_minutes.saturating_mul(60)),
            poll: Duration::from_secs(2),
        })
    }
}

/// Why nothing was restored (or what went wrong after the volume was made).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{id} is not a snapshot this deployment made ({why}): nothing restored")]
    NotOurs { id: String, why: String },
    #[error("{0}")]
    Refused(String),
    #[error("{0} does not exist (or is not this account's)")]
    NotFound(String),
    #[error("{id} is {state}, not completed: nothing restored")]
    NotCompleted { id: String, state: String },
    #[error("{id} is in the archive tier: restore its tier first (hours), then run this again: aws ec2 restore-snapshot-tier --snapshot-id {id} --temporary-restore-days 7")]
    Archived { id: String },
    #[error("no completed snapshot this deployment made of {volume} at or before {at}")]
    NothingToRestore { volume: String, at: String },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("EC2: {0}")]
    Ec2(#[from] Ec2Error),
    #[error("the stack's ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error(
        "{volume_id} went to state {state} (made from {snapshot_id}); delete it and try again"
    )]
    Failed {
        volume_id: String,
        snapshot_id: String,
        state: String,
    },
    #[error("{volume_id} was not available after {minutes} minutes; it is still being made (EC2 goes on), look again with `aws ec2 describe-volumes --volume-ids {volume_id}`")]
    StillCreating { volume_id: String, minutes: u64 },
    #[error("{volume_id} is available but could not be attached: {error}")]
    NotAttached { volume_id: String, error: Ec2Error },
}

/// What was restored (or, in a dry run, would be).
#[derive(Debug, Clone)]
pub struct Restored {
    pub source_volume_id: String,
    pub snapshot_id: String,
    /// The moment the snapshot holds (a copy: its original's).
    pub snapshot_time: DateTime<Utc>,
    pub spec: VolumeSpec,
    /// `None` in a dry run.
    pub volume_id: Option<String>,
    pub seconds: f64,
    pub attached: Option<(String, String)>,
    /// What went wrong after the volume was restored (it still is).
    pub warnings: Vec<String>,
}

impl Restored {
    /// docs/restore.md's JSON: `volume_id`, `snapshot_id`, `snapshot_time`,
    /// `availability_zone`, `seconds`, and what a dry run would do.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "volume_id": self.volume_id,
            "snapshot_id": self.snapshot_id,
            "snapshot_time": keys::format_time(self.snapshot_time),
            "source_volume_id": self.source_volume_id,
            "availability_zone": self.spec.availability_zone,
            "volume_type": self.spec.volume_type,
            "size_gib": self.spec.size_gib,
            "iops": self.spec.iops,
            "throughput": self.spec.throughput,
            "kms_key": self.spec.kms_key,
            "seconds": (self.seconds * 10.0).round() / 10.0,
            "attached": self.attached.as_ref().map(|(i, d)| json!({"instance_id": i, "device": d})),
            "warnings": self.warnings,
            "dry_run": self.volume_id.is_none(),
        })
    }

    pub fn text(&self) -> String {
        let spec = &self.spec;
        let what = format!(
            "{} of {} ({}), {} GiB {} in {}",
            self.snapshot_id,
            self.source_volume_id,
            keys::format_time(self.snapshot_time),
            spec.size_gib,
            spec.volume_type,
            spec.availability_zone
        );
        match &self.volume_id {
            None => format!("dry run: would restore {what}"),
            Some(id) => {
                let mut line = format!("restored {id} from {what} in {:.0} s", self.seconds);
                if let Some((instance, device)) = &self.attached {
                    line.push_str(&format!(", attached to {instance} at {device}"));
                }
                for w in &self.warnings {
                    line.push_str(&format!("\nwarning: {w}"));
                }
                line
            }
        }
    }
}

/// Restore one volume. Refuses (nothing made) when the snapshot is not
/// provably the deployment's, is not completed, or none fits the moment.
pub async fn volume(
    ports: Ports<'_>,
    config: &Config,
    request: &VolumeRequest,
    now: DateTime<Utc>,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<Restored, RestoreError> {
    let (volume_id, snapshot) = choose(&ports, config, request, now).await?;
    if restore::needs_tier_restore(&snapshot) {
        return Err(RestoreError::Archived { id: snapshot.id });
    }
    // The source volume (if it still exists) gives the zone, type, size
    // and tags; restoring in another region takes its zone from --az.
    let source = ports.home.source_volume(&volume_id).await?;
    let spec = restore::volume_spec(
        &snapshot,
        &volume_id,
        source.as_ref(),
        &request.overrides,
        &config.selector_tag_key,
        Placement::Beside,
        now,
    )?;
    let mut restored = Restored {
        source_volume_id: volume_id,
        snapshot_id: snapshot.id.clone(),
        snapshot_time: restore::data_time(&snapshot).unwrap_or(now),
        spec,
        volume_id: None,
        seconds: 0.0,
        attached: None,
        warnings: Vec::new(),
    };
    if request.dry_run {
        return Ok(restored);
    }
    let started = Instant::now();
    let id = ports.restorer.create_volume(&restored.spec).await?;
    progress(format!(
        "creating {id} from {} in {}",
        restored.snapshot_id, restored.spec.availability_zone
    ));
    let waiting = Waiting {
        restorer: ports.restorer,
        wait: request.wait,
        poll: request.poll,
    };
    waiting
        .until_available(&id, &restored.snapshot_id, progress)
        .await?;
    restored.seconds = started.elapsed().as_secs_f64();
    restored.volume_id = Some(id.clone());
    if let Some((instance, device)) = &request.attach {
        ports
            .restorer
            .attach_volume(&id, instance, device)
            .await
            .map_err(|error| RestoreError::NotAttached {
                volume_id: id.clone(),
                error,
            })?;
        restored.attached = Some((instance.clone(), device.clone()));
    }
    done_with(ports.restorer, &id, &mut restored.warnings).await;
    Ok(restored)
}

/// The restore of `volume_id` is done: its `lifecycle:restore-pending`
/// goes, so the restore permission can no longer delete it. A failure is
/// said, not fatal (the volume is restored).
pub(crate) async fn done_with(
    restorer: &dyn VolumeRestorer,
    volume_id: &str,
    warnings: &mut Vec<String>,
) {
    if let Err(e) = restorer
        .untag_volume(volume_id, keys::RESTORE_PENDING)
        .await
    {
        warnings.push(format!(
            "{volume_id}: could not remove {} ({e}); remove it by hand",
            keys::RESTORE_PENDING
        ));
    }
}

/// Waiting for EC2 to finish a step on a volume, saying so while it
/// waits; each wait has the whole `wait` to itself.
pub(crate) struct Waiting<'a> {
    pub(crate) restorer: &'a dyn VolumeRestorer,
    pub(crate) wait: Duration,
    pub(crate) poll: Duration,
}

impl Waiting<'_> {
    /// Until `volume_id` (made from `snapshot_id`) is `available`; a state
    /// other than `creating` (or `in-use`, a detach under way) fails.
    pub(crate) async fn until_available(
        &self,
        volume_id: &str,
        snapshot_id: &str,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<(), RestoreError> {
        let started = Instant::now();
        loop {
            match self.restorer.volume_state(volume_id).await? {
                Some(state) if state == "available" => return Ok(()),
                Some(state) if state == "creating" || state == "in-use" => {
                    progress(format!(
                        "{volume_id}: {state}, {} s",
                        started.elapsed().as_secs()
                    ));
                }
                state => {
                    return Err(RestoreError::Failed {
                        volume_id: volume_id.to_string(),
                        snapshot_id: snapshot_id.to_string(),
                        state: state.unwrap_or_else(|| "gone".into()),
                    })
                }
            }
            if started.elapsed() >= self.wait {
                return Err(RestoreError::StillCreating {
                    volume_id: volume_id.to_string(),
                    minutes: self.wait.as_secs() / 60,
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

impl Waiting<'_> {
    /// Until EC2 says `volume_id` is attached to `instance` and in use.
    pub(crate) async fn until_attached(
        &self,
        volume_id: &str,
        instance: &str,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<(), RestoreError> {
        let started = Instant::now();
        loop {
            let attached = self
                .restorer
                .attachments(volume_id)
                .await?
                .iter()
                .any(|(i, _)| i == instance);
            let state = self.restorer.volume_state(volume_id).await?;
            if attached && state.as_deref() == Some("in-use") {
                return Ok(());
            }
            if started.elapsed() >= self.wait {
                return Err(RestoreError::Refused(format!(
                    "{volume_id} was not attached to {instance} after {} minutes",
                    self.wait.as_secs() / 60
                )));
            }
            progress(format!(
                "{volume_id}: attaching, {} s",
                started.elapsed().as_secs()
            ));
            tokio::time::sleep(self.poll).await;
        }
    }
}

/// The source volume and the snapshot to restore, proven.
pub(crate) async fn choose(
    ports: &Ports<'_>,
    config: &Config,
    request: &VolumeRequest,
    now: DateTime<Utc>,
) -> Result<(String, Snapshot), RestoreError> {
    if request.id.starts_with("snap-") {
        let found = ports
            .catalog
            .snapshots_by_id(std::slice::from_ref(&request.id))
            .await?;
        let Some(named) = found.into_iter().next() else {
            return Err(RestoreError::NotFound(request.id.clone()));
        };
        // Judged with its volume's whole history, as expiry judges it: of
        // two claiming one slot, only the one the proof picks is ours.
        let mut listed = vec![named.clone()];
        if let Some(volume) = named.source_volume_id() {
            listed.extend(history(ports, config, request.from.is_some(), volume).await?);
        }
        let sifted = sift(ports.ledger, config, dedup(listed), scope(request), now).await?;
        let Some(snapshot) = sifted.owned.into_iter().find(|s| s.id == request.id) else {
            let why = sifted
                .suspects
                .iter()
                .filter(|s| s.snapshot_id == request.id)
                .flat_map(|s| s.findings.iter())
                .filter_map(|f| {
                    serde_json::to_value(f)
                        .ok()
                        .and_then(|v| v["kind"].as_str().map(String::from))
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Err(RestoreError::NotOurs {
                id: request.id.clone(),
                why: if why.is_empty() {
                    "no proof".into()
                } else {
                    why
                },
            });
        };
        if snapshot.state != SnapshotState::Completed {
            return Err(RestoreError::NotCompleted {
                id: snapshot.id.clone(),
                state: format!("{:?}", snapshot.state).to_lowercase(),
            });
        }
        let volume = snapshot.source_volume_id().unwrap_or_default().to_string();
        return Ok((volume, snapshot));
    }
    let volume = request.id.clone();
    // At home, a volume restored before has its original's history too.
    let elsewhere = request.from.is_some();
    let lineage = if elsewhere {
        vec![volume.clone()]
    } else {
        lineage(ports, &volume).await?
    };
    let mut listed = Vec::new();
    for v in &lineage {
        listed.extend(history(ports, config, elsewhere, v).await?);
    }
    let sifted = sift(ports.ledger, config, dedup(listed), scope(request), now).await?;
    let chosen = restore::choose(&sifted.owned, &lineage, request.at).cloned();
    chosen
        .map(|s| (volume.clone(), s))
        .ok_or_else(|| RestoreError::NothingToRestore {
            volume,
            at: keys::format_time(request.at),
        })
}

/// The volume and the volumes its data came from, by EC2's fields only:
/// the volume's `SnapshotId` (the snapshot it was made from), that
/// snapshot's `VolumeId`, and so on, at most [`LINEAGE_HOPS`] back. A
/// volume restored once and restored again has its original's history; a
/// tag (`lifecycle:restored-from`) is never followed, since anyone can
/// write one.
pub(crate) async fn lineage(ports: &Ports<'_>, volume: &str) -> Result<Vec<String>, RestoreError> {
    let mut lineage = vec![volume.to_string()];
    let mut current = volume.to_string();
    for _ in 0..LINEAGE_HOPS {
        let Some(source) = ports.home.source_volume(&current).await? else {
            break;
        };
        let Some(snapshot_id) = source.snapshot_id else {
            break;
        };
        let found = ports.catalog.snapshots_by_id(&[snapshot_id]).await?;
        let Some(from) = found.into_iter().find_map(|s| s.volume_id) else {
            break;
        };
        if lineage.contains(&from) {
            break;
        }
        lineage.push(from.clone());
        current = from;
    }
    Ok(lineage)
}

/// How far back a lineage is followed.
pub(crate) const LINEAGE_HOPS: usize = 4;

/// Every snapshot of the volume by EC2's VolumeId (tags cannot hide one),
/// and those the deployment's tags name (copies, whose VolumeId is EC2's
/// placeholder); in another region, the deployment's copies from here.
/// The proof then decides; tags only find candidates.
pub(crate) async fn history(
    ports: &Ports<'_>,
    config: &Config,
    elsewhere: bool,
    volume: &str,
) -> Result<Vec<Snapshot>, RestoreError> {
    let deployment = &config.identity.deployment;
    let volumes = [volume.to_string()];
    let mut listed = ports.catalog.owned_snapshots_of_volumes(&volumes).await?;
    listed.extend(
        ports
            .catalog
            .managed_snapshots_of_volumes(deployment, &volumes)
            .await?,
    );
    if elsewhere {
        listed.extend(
            ports
                .catalog
                .copies_from(deployment, &config.identity.region)
                .await?,
        );
    }
    Ok(dedup(listed))
}

pub(crate) fn dedup(mut listed: Vec<Snapshot>) -> Vec<Snapshot> {
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    listed.dedup_by(|a, b| a.id == b.id);
    listed
}

/// Home: the volume's whole history (the first of a slot counts).
/// Elsewhere: copies, each proven by its ledger record.
fn scope(request: &VolumeRequest) -> Scope {
    if request.from.is_some() {
        Scope::SomeSnapshots
    } else {
        Scope::WholeVolumes
    }
}

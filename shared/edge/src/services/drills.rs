//! Restore drills (docs/restore.md, "Restore drills"): one drill, and the
//! cleanup of drill volumes a killed run left. verify-restores and
//! `ebs-lifecycle verify` both drill through here; what a run drills and
//! what makes a drill fail are the core's rules
//! ([`ebs_lifecycle_core::drills`]).
//!
//! A drill is at-least-once safe: its ledger record is written before
//! CreateVolume, CreateVolume carries the record's token as its client
//! token and as the volume's `lifecycle:drill` tag, and the record goes
//! only once the volume is deleted. A run killed anywhere in between leaves
//! a record the next run's [`clean_up`] follows to the volume.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use ebs_lifecycle_core::drills::{
    self, DrillRecord, Failure, Page, Pick, Picker, Verification, VolumeFacts,
};
use ebs_lifecycle_core::model::{Snapshot, Tags};
use ebs_lifecycle_core::restore::VolumeSpec;
use ebs_lifecycle_core::tags as keys;

use crate::ports::blocks::{BlockReader, BlockRef, BlocksError, Listed};
use crate::ports::ec2::{Ec2Error, VolumeRestorer};
use crate::ports::ledger::DrillLedger;

/// What a drill calls.
#[derive(Clone, Copy)]
pub struct DrillPorts<'a> {
    pub volumes: &'a dyn VolumeRestorer,
    pub blocks: &'a dyn BlockReader,
    pub ledger: &'a dyn DrillLedger,
}

/// Where and how long a drill restores.
#[derive(Debug, Clone)]
pub struct DrillSettings {
    /// The deployment: the drill volume's `lifecycle:managed-by`.
    pub deployment: String,
    /// `RESTORE_DRILL_ZONE` (a copy's: its region's zone `a`).
    pub zone: String,
    /// `None`: the stack's region; else the disaster-recovery region of
    /// the copies drilled (its ports are that region's).
    pub region: Option<String>,
    /// The longest a volume may take to become available before the drill
    /// fails.
    pub wait: Duration,
    /// Between two looks at the volume's state.
    pub poll: Duration,
}

/// How a drill ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// Restored, checked, read: the snapshot restores.
    Verified,
    /// The snapshot does not restore as it should.
    Failed { failure: Failure },
    /// The drill could not tell (throttling, permissions, the ledger, a
    /// snapshot deleted meanwhile): tried again by a later run.
    Inconclusive { error: String },
}

/// One drill, as the summary and the command line print it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillOutcome {
    pub snapshot_id: String,
    /// The volume the snapshot is of (a copy: its source's).
    pub volume_id: String,
    /// A disaster-recovery copy's region; absent: the stack's region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub pick: Pick,
    pub older_id: Option<String>,
    /// The volume the drill made (deleted again unless `cleanup_error`).
    pub drill_volume: Option<String>,
    /// From CreateVolume to `available`: the restore time to plan on.
    pub seconds: f64,
    pub size_gib: u64,
    pub blocks_read: usize,
    /// Blocks read from both snapshots for the chain check.
    pub chain_blocks: usize,
    /// EC2 and EBS direct API requests the drill made.
    pub requests: u32,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The drill volume could not be deleted: the next run's cleanup does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_error: Option<String>,
}

impl DrillOutcome {
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Verified
    }

    pub fn failure(&self) -> Option<&Failure> {
        match &self.verdict {
            Verdict::Failed { failure } => Some(failure),
            _ => None,
        }
    }
}

/// Why the blocks check stopped.
enum Stop {
    Failed(Failure),
    Error(String),
}

impl From<BlocksError> for Stop {
    fn from(e: BlocksError) -> Self {
        match e {
            // A completed snapshot in the standard tier whose blocks EBS
            // will not read is a snapshot that would not restore.
            BlocksError::Unreadable { message, .. } => {
                Stop::Failed(Failure::Unreadable { message })
            }
            // Deleted meanwhile, a token expired, throttling, permissions:
            // nothing said of the snapshot.
            other => Stop::Error(other.to_string()),
        }
    }
}

/// Drill `snapshot` (proven the deployment's, completed, standard tier);
/// `older`: the kept snapshot before it, whose shared blocks must read the
/// same. A passed drill is recorded as the volume's last verification.
pub async fn drill(
    ports: DrillPorts<'_>,
    settings: &DrillSettings,
    snapshot: &Snapshot,
    older: Option<&Snapshot>,
    pick: Pick,
    now: DateTime<Utc>,
    picker: &mut Picker,
) -> DrillOutcome {
    let volume_id = snapshot.source_volume_id().unwrap_or_default().to_string();
    let mut outcome = DrillOutcome {
        snapshot_id: snapshot.id.clone(),
        volume_id,
        region: settings.region.clone(),
        pick,
        older_id: older.map(|o| o.id.clone()),
        drill_volume: None,
        seconds: 0.0,
        size_gib: snapshot.volume_size_gib.unwrap_or(0).max(0) as u64,
        blocks_read: 0,
        chain_blocks: 0,
        requests: 0,
        verdict: Verdict::Verified,
        cleanup_error: None,
    };
    let mut record = DrillRecord {
        token: drills::token(&snapshot.id, now),
        snapshot_id: snapshot.id.clone(),
        started_at: now,
        drill_volume: None,
        region: settings.region.clone(),
    };
    // No volume without its record: the record is what finds it again.
    if let Err(e) = ports.ledger.begin_drill(&record).await {
        outcome.verdict = Verdict::Inconclusive {
            error: e.to_string(),
        };
        return outcome;
    }
    outcome.verdict = restore_and_read(
        ports,
        settings,
        snapshot,
        older,
        &mut record,
        picker,
        &mut outcome,
    )
    .await;
    if let Some(id) = &record.drill_volume {
        outcome.requests += 1;
        match ports.volumes.delete_volume(id).await {
            Ok(()) => end(ports, &record, &mut outcome).await,
            // Not found right after it was made may be EC2's eventual
            // consistency: the record stays, and the next run's cleanup
            // ends it once the volume is surely gone.
            Err(e) => outcome.cleanup_error = Some(e.to_string()),
        }
    } else if outcome.cleanup_error.is_none() {
        end(ports, &record, &mut outcome).await;
    }
    // The volume's "last verified restore" is its newest snapshot's (or
    // the one asked for): an older snapshot that restores says nothing of
    // a newest that did not.
    if outcome.passed() && outcome.pick != Pick::Older {
        let verification = Verification {
            volume_id: match &outcome.region {
                Some(region) => drills::copy_key(region, &outcome.volume_id),
                None => outcome.volume_id.clone(),
            },
            at: now,
            snapshot_id: outcome.snapshot_id.clone(),
            seconds: outcome.seconds,
        };
        if let Err(e) = ports.ledger.record_verification(&verification).await {
            tracing::warn!(snapshot = %outcome.snapshot_id, error = %e, "a passed drill could not be recorded; the volume is drilled again soon");
        }
    }
    outcome
}

async fn end(ports: DrillPorts<'_>, record: &DrillRecord, outcome: &mut DrillOutcome) {
    if let Err(e) = ports.ledger.end_drill(&record.token).await {
        // The next run's cleanup finds the volume gone and ends it.
        tracing::warn!(token = %record.token, error = %e, "a drill's record could not be ended");
        outcome.cleanup_error = Some(e.to_string());
    }
}

/// The drill volume: gp3, in the drill zone, the snapshot's size and key,
/// tagged as the deployment's drill.
fn drill_spec(settings: &DrillSettings, snapshot: &Snapshot, token: &str) -> VolumeSpec {
    let mut tags = Tags::new();
    tags.insert(keys::MANAGED_BY.into(), settings.deployment.clone());
    tags.insert(keys::DRILL.into(), token.to_string());
    tags.insert(
        keys::NAME.into(),
        format!("restore drill of {}", snapshot.id),
    );
    VolumeSpec {
        snapshot_id: snapshot.id.clone(),
        availability_zone: settings.zone.clone(),
        volume_type: "gp3".into(),
        size_gib: snapshot.volume_size_gib.unwrap_or(1).max(1),
        iops: None,
        throughput: None,
        kms_key: None,
        tags,
        client_token: Some(token.to_string()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn restore_and_read(
    ports: DrillPorts<'_>,
    settings: &DrillSettings,
    snapshot: &Snapshot,
    older: Option<&Snapshot>,
    record: &mut DrillRecord,
    picker: &mut Picker,
    outcome: &mut DrillOutcome,
) -> Verdict {
    let started = Instant::now();
    outcome.requests += 1;
    let id = match ports
        .volumes
        .create_volume(&drill_spec(settings, snapshot, &record.token))
        .await
    {
        Ok(id) => id,
        Err(e) => {
            if !definitely_refused(&e) {
                // It may exist (a lost answer, a 5xx after EC2 acted): the
                // record stays for the cleanup to follow.
                outcome.cleanup_error = Some(e.to_string());
            }
            return create_refused(e);
        }
    };
    outcome.drill_volume = Some(id.clone());
    record.drill_volume = Some(id.clone());
    if let Err(e) = ports.ledger.begin_drill(record).await {
        // The volume's tag still leads the cleanup to it.
        tracing::warn!(volume = %id, error = %e, "a drill volume could not be recorded");
    }
    let facts = match until_available(ports, settings, &id, started, outcome).await {
        Ok(facts) => facts,
        Err(verdict) => return verdict,
    };
    outcome.seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    if let Err(failure) = drills::check_volume(snapshot, &facts) {
        return Verdict::Failed { failure };
    }
    match check_blocks(ports.blocks, snapshot, older, picker, outcome).await {
        Ok(()) => Verdict::Verified,
        Err(Stop::Failed(failure)) => Verdict::Failed { failure },
        Err(Stop::Error(error)) => Verdict::Inconclusive { error },
    }
}

/// EC2 said no before making anything: no volume can exist.
fn definitely_refused(e: &Ec2Error) -> bool {
    matches!(
        e,
        Ec2Error::KeyUnusable { .. }
            | Ec2Error::IncorrectState { .. }
            | Ec2Error::SnapshotNotFound
            | Ec2Error::ResourceLimitExceeded
    )
}

/// EC2 refused CreateVolume: an unusable key is the snapshot's failure (it
/// would not restore: a disabled key or one pending deletion makes the
/// snapshot useless, which is what a drill exists to find); anything else
/// (a snapshot deleted or moving meanwhile, a quota, throttling) is the
/// run's.
fn create_refused(e: Ec2Error) -> Verdict {
    match e {
        Ec2Error::KeyUnusable { .. } => Verdict::Failed {
            failure: Failure::CreateRefused {
                message: e.to_string(),
            },
        },
        other => Verdict::Inconclusive {
            error: other.to_string(),
        },
    }
}

async fn until_available(
    ports: DrillPorts<'_>,
    settings: &DrillSettings,
    id: &str,
    started: Instant,
    outcome: &mut DrillOutcome,
) -> Result<VolumeFacts, Verdict> {
    loop {
        outcome.requests += 1;
        match ports.volumes.volume_facts(id).await {
            Ok(Some(f)) if f.state == "available" => return Ok(f),
            Ok(Some(f)) if f.state == "creating" => {}
            Ok(Some(f)) => {
                return Err(Verdict::Failed {
                    failure: Failure::VolumeFailed { state: f.state },
                })
            }
            // Not visible yet (EC2 is eventually consistent): look again.
            Ok(None) => {}
            Err(e) => {
                return Err(Verdict::Inconclusive {
                    error: e.to_string(),
                })
            }
        }
        if started.elapsed() >= settings.wait {
            return Err(Verdict::Failed {
                failure: Failure::NotAvailable {
                    seconds: started.elapsed().as_secs(),
                },
            });
        }
        tokio::time::sleep(settings.poll).await;
    }
}

fn page_of(listed: &Listed) -> Page {
    Page {
        indexes: listed.blocks.iter().map(|b| b.index).collect(),
        last_if_more: listed.last_if_more,
    }
}

fn token_of(listed: &Listed, index: u32) -> Option<&BlockRef> {
    listed.blocks.iter().find(|b| b.index == index)
}

/// Read a sample of the snapshot's blocks against their checksums, then
/// (with `older`) a sample of the blocks EBS says are unchanged since it,
/// from both.
async fn check_blocks(
    blocks: &dyn BlockReader,
    snapshot: &Snapshot,
    older: Option<&Snapshot>,
    picker: &mut Picker,
    outcome: &mut DrillOutcome,
) -> Result<(), Stop> {
    let size = snapshot.volume_size_gib.unwrap_or(0).max(0) as u64;
    let mut from = drills::window_start(size, picker);
    outcome.requests += 1;
    let mut listed = blocks
        .list_blocks(&snapshot.id, from, drills::WINDOW_BLOCKS)
        .await?;
    if listed.blocks.len() < drills::BLOCKS_PER_DRILL && from > 0 {
        // A sparse window: the volume's start holds most (a file system's
        // own structures at least).
        from = 0;
        outcome.requests += 1;
        listed = blocks
            .list_blocks(&snapshot.id, 0, drills::WINDOW_BLOCKS)
            .await?;
    }
    let indexes: Vec<u32> = listed.blocks.iter().map(|b| b.index).collect();
    for index in drills::sample(&indexes, drills::BLOCKS_PER_DRILL, picker) {
        let Some(block) = token_of(&listed, index) else {
            continue;
        };
        outcome.requests += 1;
        let read = blocks.read_block(&snapshot.id, block).await?;
        if !drills::block_intact(&read.data, &read.checksum, &read.algorithm) {
            return Err(Stop::Failed(Failure::Checksum { block: index }));
        }
        outcome.blocks_read += 1;
    }
    if outcome.blocks_read == 0 {
        // Nothing read is nothing proven.
        return Err(Stop::Error(format!(
            "no block of {} could be listed to read",
            snapshot.id
        )));
    }
    let Some(older) = older else {
        return Ok(());
    };
    let (mut older_listed, mut same) =
        shared_blocks(blocks, older, snapshot, &listed, from, outcome).await?;
    if same.is_empty() && from > 0 {
        // The window holds only what changed since the older snapshot: the
        // chain is checked where the volume starts.
        outcome.requests += 1;
        let listed_from_start = blocks
            .list_blocks(&snapshot.id, 0, drills::WINDOW_BLOCKS)
            .await?;
        (older_listed, same) =
            shared_blocks(blocks, older, snapshot, &listed_from_start, 0, outcome).await?;
        listed = listed_from_start;
    }
    for index in drills::sample(&same, drills::CHAIN_BLOCKS_PER_DRILL, picker) {
        let (Some(new), Some(old)) = (token_of(&listed, index), token_of(&older_listed, index))
        else {
            continue;
        };
        outcome.requests += 2;
        let a = blocks.read_block(&snapshot.id, new).await?;
        let b = blocks.read_block(&older.id, old).await?;
        if !drills::block_intact(&a.data, &a.checksum, &a.algorithm)
            || !drills::block_intact(&b.data, &b.checksum, &b.algorithm)
        {
            return Err(Stop::Failed(Failure::Checksum { block: index }));
        }
        if a.checksum != b.checksum {
            return Err(Stop::Failed(Failure::Chain {
                block: index,
                older: older.id.clone(),
            }));
        }
        outcome.chain_blocks += 1;
    }
    Ok(())
}

/// The older snapshot's listing of the window at `from`, and the blocks
/// EBS says did not change between it and `snapshot` there.
async fn shared_blocks(
    blocks: &dyn BlockReader,
    older: &Snapshot,
    snapshot: &Snapshot,
    listed: &Listed,
    from: u32,
    outcome: &mut DrillOutcome,
) -> Result<(Listed, Vec<u32>), Stop> {
    outcome.requests += 2;
    let older_listed = blocks
        .list_blocks(&older.id, from, drills::WINDOW_BLOCKS)
        .await?;
    let changed = match blocks
        .changed_blocks(&older.id, &snapshot.id, from, drills::WINDOW_BLOCKS)
        .await
    {
        Ok(changed) => changed,
        // EBS compares only snapshots of one lineage: a copy made in full
        // (after a key change, or with the copy before it gone) is not
        // incremental on its predecessor. Nothing to compare is not a
        // broken chain: the chain is not checked (`chain_blocks` 0).
        Err(BlocksError::Unreadable { message, .. }) => {
            tracing::info!(snapshot = %snapshot.id, older = %older.id, %message, "EBS compares no blocks of these two snapshots; the chain is not checked");
            return Ok((older_listed, Vec::new()));
        }
        Err(e) => return Err(e.into()),
    };
    let same = drills::unchanged(
        &page_of(&older_listed),
        &page_of(listed),
        &page_of(&changed),
    );
    Ok((older_listed, same))
}

/// What a cleanup did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cleanup {
    /// Drill volumes an earlier run left, deleted now.
    pub deleted: Vec<String>,
    /// Drills whose volume could not be deleted yet (still creating, or
    /// the call failed): tried again next run.
    pub left: Vec<String>,
    /// Volumes a record or a tag named that are not a drill's leftover
    /// (another snapshot's, attached, a forged tag): never deleted.
    pub refused: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A drill older than this is a killed run's, not one in progress (a
/// Lambda run lasts at most 15 minutes, `ebs-lifecycle verify` waits at
/// most 15).
pub const LEFTOVER_AFTER: chrono::Duration =
    chrono::Duration::minutes(drills::DRILL_WINDOW_MINUTES);

/// Where drill volumes are made: the stack's region, and each region whose
/// copies are drilled.
pub struct DrillVolumes<'a> {
    pub home: &'a dyn VolumeRestorer,
    pub regions: BTreeMap<String, &'a dyn VolumeRestorer>,
}

impl DrillVolumes<'_> {
    /// EC2 where a record says its volume is; `None`: a region the stack
    /// no longer copies to.
    pub fn at(&self, region: Option<&str>) -> Option<&dyn VolumeRestorer> {
        match region {
            None => Some(self.home),
            Some(r) => self.regions.get(r).copied(),
        }
    }
}

/// Delete the drill volumes earlier runs left: each open record older than
/// [`LEFTOVER_AFTER`], its volume (recorded, or found by its token's tag,
/// in the region the record names) deleted only if it is the drill's (the
/// core's `is_leftover`), the record ended once nothing of it is left.
pub async fn clean_up(
    places: &DrillVolumes<'_>,
    ledger: &dyn DrillLedger,
    now: DateTime<Utc>,
) -> Cleanup {
    let mut out = Cleanup::default();
    let records = match ledger.open_drills().await {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    for record in records
        .iter()
        .filter(|r| now - r.started_at >= LEFTOVER_AFTER)
    {
        let Some(volumes) = places.at(record.region.as_deref()) else {
            // Kept until the region is copied to again, or the record's
            // time in the ledger ends: said every run.
            out.error = Some(format!(
                "drill {} is in {}, a region the policies no longer copy to: delete its volume there by hand",
                record.token,
                record.region.as_deref().unwrap_or_default()
            ));
            out.left.push(record.token.clone());
            continue;
        };
        match leftovers(volumes, record).await {
            Ok(found) => {
                let mut clear = true;
                for v in found {
                    let recorded = record.drill_volume.as_deref() == Some(v.volume_id.as_str());
                    if !drills::is_leftover(record, &v, recorded) {
                        // The drill's own volume, attached since: kept,
                        // and its record with it (said every run).
                        clear &= !recorded;
                        out.refused.push(v.volume_id);
                    } else if v.state == "creating" {
                        clear = false;
                        out.left.push(v.volume_id);
                    } else {
                        match volumes.delete_volume(&v.volume_id).await {
                            Ok(()) | Err(Ec2Error::VolumeNotFound) => out.deleted.push(v.volume_id),
                            Err(e) => {
                                clear = false;
                                tracing::warn!(volume = %v.volume_id, error = %e, "a drill's leftover volume could not be deleted");
                                out.left.push(v.volume_id);
                            }
                        }
                    }
                }
                if clear {
                    if let Err(e) = ledger.end_drill(&record.token).await {
                        out.error = Some(e.to_string());
                    }
                }
            }
            Err(e) => {
                out.error = Some(e.to_string());
                out.left.push(record.token.clone());
            }
        }
    }
    out
}

/// The volumes a record leads to: the one it names, and any carrying its
/// token (a lost CreateVolume answer), each once.
async fn leftovers(
    volumes: &dyn VolumeRestorer,
    record: &DrillRecord,
) -> Result<Vec<VolumeFacts>, Ec2Error> {
    let mut found = volumes.drill_volumes(&record.token).await?;
    if let Some(id) = &record.drill_volume {
        if !found.iter().any(|v| &v.volume_id == id) {
            if let Some(v) = volumes.volume_facts(id).await? {
                found.push(v);
            }
        }
    }
    Ok(found)
}

//! `verify <snapshot-id>` (docs/restore.md, "Restore drills"): one restore
//! drill now, as verify-restores runs it (`services::drills::drill`), of a
//! snapshot proven the deployment's as `restore volume` proves it; its
//! chain checked against the proven snapshot before it. With `--from
//! <region>`, a disaster-recovery copy there, drilled there.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use ebs_lifecycle::config::Config;
use ebs_lifecycle::ports::blocks::BlockReader;
use ebs_lifecycle::ports::ledger::DrillLedger;
use ebs_lifecycle::services::drills::{self, DrillOutcome, DrillPorts, DrillSettings, Verdict};
use ebs_lifecycle::services::ownership::sift;
use ebs_lifecycle_core::drills::{older_than, Pick, Picker};
use ebs_lifecycle_core::ownership::Scope;

use crate::restore::{self, Ports, RestoreError, VolumeRequest};

/// Why a drill did not verify the snapshot (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Refused(#[from] RestoreError),
    #[error("{snapshot} did not restore: {why}")]
    Failed { snapshot: String, why: String },
    #[error("the drill of {snapshot} could not tell: {why}; nothing is known of it yet")]
    Inconclusive { snapshot: String, why: String },
}

/// What the command needs besides restore's ports.
pub struct VerifyPorts<'a> {
    pub restore: Ports<'a>,
    pub blocks: &'a dyn BlockReader,
    pub drills: &'a dyn DrillLedger,
}

/// Drill `snapshot_id` in `zone` (default the stack's drill zone, or
/// zone `a` of the copy's region); `from`: the region of a copy (the
/// ports are that region's).
pub async fn verify(
    ports: VerifyPorts<'_>,
    config: &Config,
    snapshot_id: &str,
    (from, zone): (Option<String>, Option<String>),
    wait: Duration,
    now: DateTime<Utc>,
) -> Result<DrillOutcome, VerifyError> {
    let request = VolumeRequest {
        id: snapshot_id.to_string(),
        at: now,
        from: from.clone(),
        overrides: Default::default(),
        attach: None,
        dry_run: true,
        wait,
        poll: Duration::from_secs(2),
    };
    let (volume, snapshot) = restore::choose(&ports.restore, config, &request, now).await?;
    if ebs_lifecycle_core::restore::needs_tier_restore(&snapshot) {
        return Err(RestoreError::Archived { id: snapshot.id }.into());
    }
    let listed = restore::history(&ports.restore, config, from.is_some(), &volume).await?;
    let scope = if from.is_some() {
        Scope::SomeSnapshots
    } else {
        Scope::WholeVolumes
    };
    let proven = sift(
        ports.restore.ledger,
        config,
        restore::dedup(listed),
        scope,
        now,
    )
    .await
    .map_err(RestoreError::from)?
    .owned;
    // The chain is checked within one place: the home snapshots, or the
    // copies in the region (each incremental on the one before it there).
    let proven: Vec<_> = proven
        .into_iter()
        .filter(|s| match &from {
            None => !s.is_copy(),
            Some(region) => {
                s.is_copy()
                    && s.tags.get(ebs_lifecycle_core::tags::TARGET) == Some(region)
                    && s.source_volume_id() == Some(volume.as_str())
            }
        })
        .collect();
    let older = older_than(&snapshot, &proven);
    let settings = DrillSettings {
        deployment: config.deployment_name().to_string(),
        zone: match (zone, &from) {
            (Some(zone), _) => zone,
            (None, None) => config.drills.zone.clone(),
            // The copy's region's first available zone (zone `a` is not
            // every account's).
            (None, Some(_)) => ports
                .restore
                .restorer
                .first_zone()
                .await
                .map_err(RestoreError::from)?
                .ok_or_else(|| {
                    RestoreError::Refused(
                        "no available zone in the copy's region: give --az".into(),
                    )
                })?,
        },
        region: from,
        wait,
        poll: Duration::from_secs(2),
    };
    let drill_ports = DrillPorts {
        volumes: ports.restore.restorer,
        blocks: ports.blocks,
        ledger: ports.drills,
    };
    let mut picker = Picker::from_time(now);
    let outcome = drills::drill(
        drill_ports,
        &settings,
        &snapshot,
        older,
        Pick::Asked,
        now,
        &mut picker,
    )
    .await;
    match &outcome.verdict {
        Verdict::Verified => Ok(outcome),
        Verdict::Failed { failure } => Err(VerifyError::Failed {
            snapshot: outcome.snapshot_id.clone(),
            why: failure.to_string(),
        }),
        Verdict::Inconclusive { error } => Err(VerifyError::Inconclusive {
            snapshot: outcome.snapshot_id.clone(),
            why: error.clone(),
        }),
    }
}

/// The drill as the command prints it.
pub fn text(d: &DrillOutcome) -> String {
    format!(
        "verified {} of {}{}: restored in {:.1} s, {} blocks read against their checksums, {} read the same as {}{}",
        d.snapshot_id,
        d.volume_id,
        d.region
            .as_ref()
            .map(|r| format!(" (its copy in {r})"))
            .unwrap_or_default(),
        d.seconds,
        d.blocks_read,
        d.chain_blocks,
        d.older_id.as_deref().unwrap_or("no older snapshot"),
        d.cleanup_error
            .as_ref()
            .map(|e| format!("\nwarning: the drill volume could not be deleted ({e}); verify-restores' next run deletes it (in a region the policies copy to; elsewhere delete it by hand)"))
            .unwrap_or_default()
    )
}

pub fn json(d: &DrillOutcome) -> serde_json::Value {
    serde_json::to_value(d).unwrap_or_else(|_| json!({"snapshot_id": d.snapshot_id}))
}

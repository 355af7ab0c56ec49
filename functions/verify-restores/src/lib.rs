//! verify-restores: restore drills (docs/restore.md, "Restore drills"). A
//! backup never restored is only a promise; each weekly run proves a few.
//!
//! A run, on its schedule's tick:
//! 1. deletes the drill volumes an earlier, killed run left
//!    (`services::drills::clean_up`);
//! 2. orders the deployment's volumes by their last passed drill (never
//!    first), lists the snapshots of the first few only, and proves them
//!    the deployment's (`services::ownership::sift`, as expiry does);
//! 3. selects within `RESTORE_DRILLS_PER_RUN` and `RESTORE_DRILL_MAX_GIB`
//!    the newest completed snapshot of each volume in line and one older
//!    kept snapshot at random (`ebs_lifecycle_core::drills::select`); when
//!    the policies copy to other regions, up to half the run's drills (one
//!    per region, the regions in turn week by week) go to the newest copy
//!    there of the volume whose copies passed a drill longest ago, drilled
//!    in that region;
//! 4. drills each (`services::drills::drill`): a gp3 volume in
//!    `RESTORE_DRILL_ZONE`, waited for, checked, a sample of blocks read
//!    against their checksums, the chain to the snapshot before checked,
//!    the volume deleted;
//! 5. closes: `RestoreDrillsPassed`, `RestoreDrillsFailed`,
//!    `RestoreSeconds`, and one critical `restore-drill-failed` per failed
//!    snapshot, once.
//!
//! What a run holds is bounded: the volume ids of the deployment, and the
//! snapshots of the first 200 volumes in line (two DescribeSnapshots),
//! whatever the account's size. 200, not a few more than the drills: the
//! volumes first in line may have nothing to drill (too large, archived,
//! or ids a tag writer made up), and they must not starve the rest; and
//! the never-verified line starts a batch further each week
//! (`core::drills::volume_order`), so even 200 such ids hold no volume
//! back for more than as many weeks as there are batches of them.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::function::{self, Function, Ran, Run as FunctionRun, Summary};
use ebs_lifecycle::lambda::invocation;
pub use ebs_lifecycle::lambda::invocation::InvocationError;
use ebs_lifecycle::lambda::metrics::Metric;
use ebs_lifecycle::lambda::run::RunHeader;
use ebs_lifecycle::ports::blocks::BlockReader;
use ebs_lifecycle::ports::ec2::{SnapshotCatalog, VolumeRestorer};
use ebs_lifecycle::ports::ledger::{DrillLedger, Ledger};
use ebs_lifecycle::ports::notifier::Notifier;
use ebs_lifecycle::services::drills::{
    self, Cleanup, DrillOutcome, DrillPorts, DrillSettings, DrillVolumes,
};
use ebs_lifecycle::services::ownership;
use ebs_lifecycle_core::drills::{copy_key, select, volume_order, Bounds, Picker, Selection};
use ebs_lifecycle_core::events::Trigger;
use ebs_lifecycle_core::model::Snapshot;
use ebs_lifecycle_core::notify::{Notification, NotificationKind, Severity};
use ebs_lifecycle_core::ownership::Scope;
use ebs_lifecycle_core::tags;

pub const FUNCTION: &str = "verify-restores";

/// How long a drill volume may take to become available before the drill
/// fails: EC2 makes a volume from a snapshot in seconds (its blocks load
/// lazily), so minutes mean the snapshot does not restore as it should.
pub const DRILL_WAIT: Duration = Duration::from_secs(300);
/// Kept from the deadline for one more drill: its wait and its reads.
const DRILL_TIME: Duration = Duration::from_secs(360);

#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub catalog: &'a dyn SnapshotCatalog,
    pub volumes: &'a dyn VolumeRestorer,
    pub blocks: &'a dyn BlockReader,
    /// Each region the policies copy to: where its copies are drilled.
    pub copies: &'a BTreeMap<String, Place<'a>>,
    pub ledger: &'a dyn Ledger,
    pub drills: &'a dyn DrillLedger,
    pub notifier: &'a dyn Notifier,
}

/// EC2 and the EBS direct APIs in one region.
#[derive(Clone, Copy)]
pub struct Place<'a> {
    pub catalog: &'a dyn SnapshotCatalog,
    pub volumes: &'a dyn VolumeRestorer,
    pub blocks: &'a dyn BlockReader,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    #[serde(flatten)]
    pub header: RunHeader,
    pub volumes: usize,
    pub passed: usize,
    pub failed: usize,
    pub inconclusive: usize,
    pub drills: Vec<DrillOutcome>,
    /// Volumes next in line that this run's bounds left for later runs.
    pub left_for_later: usize,
    /// Selected drills the deadline left for the next run.
    pub not_reached: usize,
    /// Snapshots larger than `RESTORE_DRILL_MAX_GIB` on their own.
    pub too_large: Vec<String>,
    /// The regions whose copies this run drilled (or tried to).
    pub copy_regions: Vec<String>,
    /// A region whose copies could not be listed or proven: its drill
    /// waits for its next turn.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copy_errors: Vec<String>,
    /// What the run found of earlier runs' drills.
    pub cleanup: Cleanup,
    /// Failed snapshots notified for the first time this run.
    #[serde(skip)]
    pub newly_failed: Vec<String>,
}

impl Summary for RunSummary {
    fn header(&mut self) -> &mut RunHeader {
        &mut self.header
    }

    fn headline(&self) -> String {
        format!(
            "verify-restores: {} passed, {} failed, {} inconclusive",
            self.passed, self.failed, self.inconclusive
        )
    }

    fn metrics(&self, suspects: usize) -> Vec<(Metric, u64)> {
        let slowest = self
            .drills
            .iter()
            .filter(|d| d.passed())
            .map(|d| d.seconds.ceil() as u64)
            .max()
            .unwrap_or(0);
        vec![
            (Metric::RestoreDrillsPassed, self.passed as u64),
            (Metric::RestoreDrillsFailed, self.failed as u64),
            (Metric::RestoreSeconds, slowest),
            (Metric::TamperingSuspected, suspects as u64),
        ]
    }
}

/// verify-restores, as the skeleton runs it ([`Function`]).
pub struct VerifyRestores;

impl Function for VerifyRestores {
    const NAME: &'static str = FUNCTION;
    type Ports<'p> = Ports<'p>;
    type Trigger = Trigger;
    type Summary = RunSummary;
    type Error = InvocationError;

    fn ledger<'p>(ports: &Self::Ports<'p>) -> &'p dyn Ledger {
        ports.ledger
    }

    fn notifier<'p>(ports: &Self::Ports<'p>) -> &'p dyn Notifier {
        ports.notifier
    }

    fn open(
        run: &FunctionRun<'_>,
        event: &Value,
    ) -> Result<(Trigger, RunSummary), InvocationError> {
        invocation::open_trigger(FUNCTION, run, event)
    }

    async fn execute(
        ports: Self::Ports<'_>,
        run: &FunctionRun<'_>,
        trigger: Trigger,
        summary: &mut RunSummary,
    ) -> Result<Ran, InvocationError> {
        // Drills run on their schedule; a snapshot event is not theirs.
        if !matches!(trigger, Trigger::Tick(_)) {
            return Ok(Ran::Nothing);
        }
        let places = DrillVolumes {
            home: ports.volumes,
            regions: ports
                .copies
                .iter()
                .map(|(r, p)| (r.clone(), p.volumes))
                .collect(),
        };
        summary.cleanup = drills::clean_up(&places, ports.drills, run.now).await;
        let suspects = run_drills(ports, run, summary).await?;
        Ok(Ran::Done { suspects })
    }

    async fn notifications(
        ports: Self::Ports<'_>,
        run: &FunctionRun<'_>,
        summary: &mut RunSummary,
    ) -> Vec<Notification> {
        for d in summary.drills.iter().filter(|d| d.failure().is_some()) {
            match ports
                .drills
                .first_drill_failure(&d.snapshot_id, run.now)
                .await
            {
                Ok(true) => summary.newly_failed.push(d.snapshot_id.clone()),
                Ok(false) => {}
                // Unknown whether it was said: say it (a repeat beats silence).
                Err(e) => {
                    tracing::warn!(snapshot = %d.snapshot_id, error = %e, "whether this failure was notified is unknown; notified");
                    summary.newly_failed.push(d.snapshot_id.clone());
                }
            }
        }
        notifications(run.config, summary)
    }
}

/// Run one invocation: a tick of the drills' schedule.
pub async fn handle(
    ports: Ports<'_>,
    config: &Config,
    event: &Value,
    now: DateTime<Utc>,
    deadline: Deadline,
) -> Result<RunSummary, InvocationError> {
    function::invoke::<VerifyRestores>(ports, config, event, now, deadline).await
}

/// Select and drill; the suspects the ownership check found.
async fn run_drills(
    ports: Ports<'_>,
    run: &FunctionRun<'_>,
    summary: &mut RunSummary,
) -> Result<Vec<ebs_lifecycle_core::ownership::Suspect>, InvocationError> {
    let config = run.config;
    let per_run = config.drills.per_run as usize;
    let max_gib = u64::from(config.drills.max_gib);
    let deployment = config.deployment_name();
    let volumes = ports.catalog.managed_volume_ids(deployment).await?;
    summary.volumes = volumes.len();
    if per_run == 0 {
        return Ok(Vec::new());
    }
    let mut picker = Picker::from_time(run.now);
    let mut suspects = Vec::new();

    // The copies first, within their share (at most half the drills, one
    // per region): after the home drills they would get what time and
    // GiB those left, which a few large volumes can make nothing, week
    // after week. A slot a region does not use goes back to the home
    // snapshots.
    let regions = turn_of_regions(ports.copies.keys().cloned().collect(), run.now);
    let mut gib_left = max_gib;
    let mut copies_drilled = 0;
    for region in regions.into_iter().take(per_run / 2) {
        summary.copy_regions.push(region.clone());
        let Some(place) = ports.copies.get(&region).copied() else {
            continue;
        };
        match drill_copies(ports, run, place, &region, gib_left, &mut picker, summary).await {
            Ok(done) => {
                suspects.extend(done.suspects);
                gib_left = gib_left.saturating_sub(done.gib);
                copies_drilled += done.drills;
            }
            Err(e) => summary.copy_errors.push(format!("{region}: {e}")),
        }
    }

    if volumes.is_empty() {
        return Ok(suspects);
    }
    let bounds = Bounds {
        drills: per_run - copies_drilled,
        max_gib: gib_left,
    };
    let verified = last_passed(ports.drills, &volumes, |v| v.to_string()).await?;
    let order = volume_order(&volumes, &verified, turn(run.now));
    // Some volumes in line have nothing to drill (too large, archived,
    // pending, or made up by a tag writer): one batch of volumes is what a
    // run lists.
    let head: Vec<String> = order
        .iter()
        .take(ebs_lifecycle::pacing::VOLUMES_PER_BATCH)
        .cloned()
        .collect();
    let listed = ports
        .catalog
        .managed_snapshots_of_volumes(deployment, &head)
        .await?;
    let sifted =
        ownership::sift(ports.ledger, config, listed, Scope::WholeVolumes, run.now).await?;
    suspects.extend(sifted.suspects);
    // A vault holds copies only (of what its sources share): those are
    // its snapshots to drill. Elsewhere a copy in the stack's region is
    // a re-encrypted one (check-encryption's), not a backup of its own.
    let vault = config.vault.is_some();
    let per_volume = by_volume(sifted.owned.into_iter().filter(|s| vault || !s.is_copy()));
    let selection = select(&head, &per_volume, bounds, &mut picker);
    summary.left_for_later = selection.left + (order.len() - head.len());
    summary.too_large.extend(
        selection
            .too_large
            .iter()
            .filter(|id| {
                // Too large for what the copies left, not for a run: next
                // week's turn.
                per_volume
                    .values()
                    .flatten()
                    .find(|s| &&s.id == id)
                    .and_then(|s| s.volume_size_gib)
                    .is_none_or(|g| u64::try_from(g).unwrap_or(0) > max_gib)
            })
            .cloned(),
    );
    let drilling = Drilling {
        ports,
        run,
        settings: DrillSettings {
            deployment: deployment.to_string(),
            zone: config.drills.zone.clone(),
            region: None,
            wait: DRILL_WAIT,
            poll: Duration::from_secs(2),
        },
    };
    let home = Place {
        catalog: ports.catalog,
        volumes: ports.volumes,
        blocks: ports.blocks,
    };
    drilling
        .all(home, &selection, &per_volume, &mut picker, summary)
        .await;
    Ok(suspects)
}

/// Where this run starts among the never-verified volumes: a batch
/// further each week (`core::drills::volume_order`).
fn turn(now: DateTime<Utc>) -> usize {
    week(now).saturating_mul(ebs_lifecycle::pacing::VOLUMES_PER_BATCH)
}

/// Weeks since the Unix epoch.
fn week(now: DateTime<Utc>) -> usize {
    usize::try_from(now.timestamp().div_euclid(7 * 86_400)).unwrap_or(0)
}

/// The copy regions, this week's first: each region leads in turn, so
/// with fewer copy drills than regions every region is drilled within as
/// many weeks as there are regions.
fn turn_of_regions(regions: Vec<String>, now: DateTime<Utc>) -> Vec<String> {
    if regions.is_empty() {
        return regions;
    }
    let first = week(now) % regions.len();
    regions[first..]
        .iter()
        .chain(&regions[..first])
        .cloned()
        .collect()
}

/// Each volume's last passed drill, read under `key` (a copy region's keys
/// are its own).
async fn last_passed(
    ledger: &dyn DrillLedger,
    volumes: &std::collections::BTreeSet<String>,
    key: impl Fn(&str) -> String,
) -> Result<BTreeMap<String, DateTime<Utc>>, InvocationError> {
    let keys: BTreeMap<String, String> = volumes.iter().map(|v| (key(v), v.clone())).collect();
    let ids: Vec<String> = keys.keys().cloned().collect();
    Ok(ledger
        .verifications(&ids)
        .await?
        .into_iter()
        .filter_map(|v| Some((keys.get(&v.volume_id)?.clone(), v.at)))
        .collect())
}

fn by_volume(snapshots: impl Iterator<Item = Snapshot>) -> BTreeMap<String, Vec<Snapshot>> {
    let mut per_volume: BTreeMap<String, Vec<Snapshot>> = BTreeMap::new();
    for s in snapshots {
        if let Some(v) = s.source_volume_id().map(String::from) {
            per_volume.entry(v).or_default().push(s);
        }
    }
    per_volume
}

/// What one region's turn drilled.
struct CopyTurn {
    suspects: Vec<ebs_lifecycle_core::ownership::Suspect>,
    gib: u64,
    drills: usize,
}

/// One drill of the copies in `region`: the newest copy of the volume
/// whose copies there passed a drill longest ago (never first), proven
/// the deployment's by the ledger's copy record, drilled in a volume of
/// that region, in its first available zone.
async fn drill_copies(
    ports: Ports<'_>,
    run: &FunctionRun<'_>,
    place: Place<'_>,
    region: &str,
    gib_left: u64,
    picker: &mut Picker,
    summary: &mut RunSummary,
) -> Result<CopyTurn, String> {
    let config = run.config;
    let listed = place
        .catalog
        .copies_from(config.deployment_name(), &config.identity.region)
        .await
        .map_err(|e| format!("listing the copies: {e}"))?;
    let sifted = ownership::sift(ports.ledger, config, listed, Scope::SomeSnapshots, run.now)
        .await
        .map_err(|e| e.to_string())?;
    let copies = sifted
        .owned
        .into_iter()
        .filter(|s| s.is_copy() && s.tags.get(tags::TARGET).map(String::as_str) == Some(region));
    let per_volume = by_volume(copies);
    let volumes = per_volume.keys().cloned().collect();
    let verified = last_passed(ports.drills, &volumes, |v| copy_key(region, v))
        .await
        .map_err(|e| e.to_string())?;
    let order = volume_order(&volumes, &verified, turn(run.now));
    // Judged against a run's GiB: a copy too large for what is left this
    // run waits for the next turn rather than giving its place away.
    let bounds = Bounds {
        drills: 1,
        max_gib: u64::from(config.drills.max_gib),
    };
    let selection = select(&order, &per_volume, bounds, picker);
    summary
        .too_large
        .extend(selection.too_large.iter().cloned());
    let gib: u64 = selection.drills.iter().map(|d| d.size_gib).sum();
    let mut turn = CopyTurn {
        suspects: sifted.suspects,
        gib: 0,
        drills: 0,
    };
    if selection.drills.is_empty() {
        return Ok(turn);
    }
    if gib > gib_left {
        return Err(format!(
            "its next copy ({gib} GiB) does not fit the {gib_left} GiB left this run; next turn"
        ));
    }
    let zone = place
        .volumes
        .first_zone()
        .await
        .map_err(|e| format!("its zones: {e}"))?
        .ok_or_else(|| "no available zone".to_string())?;
    let drilling = Drilling {
        ports,
        run,
        settings: DrillSettings {
            deployment: config.deployment_name().to_string(),
            zone,
            region: Some(region.to_string()),
            wait: DRILL_WAIT,
            poll: Duration::from_secs(2),
        },
    };
    drilling
        .all(place, &selection, &per_volume, picker, summary)
        .await;
    turn.gib = gib;
    turn.drills = selection.drills.len();
    Ok(turn)
}

/// Drills in one place, within the run's deadline.
struct Drilling<'r, 'p> {
    ports: Ports<'p>,
    run: &'r FunctionRun<'r>,
    settings: DrillSettings,
}

impl Drilling<'_, '_> {
    async fn all(
        &self,
        place: Place<'_>,
        selection: &Selection,
        per_volume: &BTreeMap<String, Vec<Snapshot>>,
        picker: &mut Picker,
        summary: &mut RunSummary,
    ) {
        let drill_ports = DrillPorts {
            volumes: place.volumes,
            blocks: place.blocks,
            ledger: self.ports.drills,
        };
        for d in &selection.drills {
            if self.run.deadline.remaining() < DRILL_TIME {
                summary.not_reached += 1;
                continue;
            }
            let Some(of_volume) = per_volume.get(&d.volume_id) else {
                continue;
            };
            let Some(snapshot) = of_volume.iter().find(|s| s.id == d.snapshot_id) else {
                continue;
            };
            let older = d
                .older_id
                .as_ref()
                .and_then(|o| of_volume.iter().find(|s| &s.id == o));
            let outcome = drills::drill(
                drill_ports,
                &self.settings,
                snapshot,
                older,
                d.pick,
                self.run.now,
                picker,
            )
            .await;
            match &outcome.verdict {
                drills::Verdict::Verified => summary.passed += 1,
                drills::Verdict::Failed { .. } => summary.failed += 1,
                drills::Verdict::Inconclusive { .. } => summary.inconclusive += 1,
            }
            summary.drills.push(outcome);
        }
    }
}

/// One critical `restore-drill-failed` per snapshot whose drill failed for
/// the first time; nothing when every drill passed (the metrics say so).
pub fn notifications(config: &Config, summary: &RunSummary) -> Vec<Notification> {
    summary
        .drills
        .iter()
        .filter(|d| summary.newly_failed.contains(&d.snapshot_id))
        .filter_map(|d| {
            let failure = d.failure()?;
            Some(Notification {
                kind: NotificationKind::RestoreDrillFailed,
                severity: Severity::Critical,
                deployment: config.deployment_name().to_string(),
                summary: format!(
                    "{} of {} did not restore: {failure}",
                    d.snapshot_id, d.volume_id
                ),
                details: json!({
                    "snapshot_id": d.snapshot_id,
                    "volume_id": d.volume_id,
                    "failure": failure,
                    "drill_volume": d.drill_volume,
                    "next": "Do not count on this snapshot: restore from another (ebs-lifecycle restore volume --at ...), hold the snapshots around it (ebs-lifecycle hold), and open a case with AWS support naming the snapshot.",
                }),
            })
        })
        .collect()
}

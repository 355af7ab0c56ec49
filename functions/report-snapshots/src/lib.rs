//! report-snapshots: daily, what protects every EBS volume of the region
//! and what its snapshots cost (docs/functions.md, "report-snapshots";
//! docs/report.md).
//!
//! One run:
//! 1. list every volume of the region and the opted-in instances, and
//!    resolve which volumes this deployment's policies cover (the opt-in
//!    tags, as create-snapshots does);
//! 2. then 200 volumes at a time ([`VOLUMES_PER_BATCH`]: a run holds one
//!    batch's snapshots, never the account's), the volumes of the region
//!    and the deleted ones the deployment's snapshots name: anyone's
//!    snapshots of them and the deployment's, proving which it made (the
//!    ownership check: a forged tag makes nothing look protected), and
//!    steps 3 and 4 for the batch;
//! 3. class each volume (`ebs_lifecycle_core::coverage`): this deployment,
//!    Data Lifecycle Manager, AWS Backup, by hand, or nothing; a volume of
//!    this deployment whose newest snapshot (or, with none, its first
//!    sighting, kept in the ledger) is older than twice its interval is in
//!    a gap;
//! 4. the cost ([`cost`]): unique and added bytes of this deployment's
//!    snapshots from the EBS direct APIs (what is not cached between the
//!    same neighbours, until the deadline), priced per volume and policy
//!    with the dry expiry plan and the archive arithmetic, into the
//!    report's rows ([`rows`]);
//! 5. store the report in the stack's bucket (`REPORT_BUCKET`): JSON,
//!    CSV and a self-contained HTML page ([`render`]), dated and as
//!    `latest`, each written to a temporary file and streamed from there;
//!    the per-snapshot rows were spooled to files as each batch was priced
//!    ([`spool`]), so the run never holds every snapshot's row;
//! 6. notify each gap once (`coverage-gap`, warning; critical past four
//!    intervals), on Mondays where the report is (`report-ready`), emit
//!    `VolumesUnprotected`, `SnapshotStorageBytes` per tier and
//!    `EstimatedMonthlyCost`, and return the summary.

pub mod cost;
pub mod render;
pub mod rows;
pub mod spool;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Utc};
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::{json, Value};

use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::function::{
    self, CostGauges, ErrorType, Function, Ran, Run as FunctionRun, Summary,
};
use ebs_lifecycle::lambda::metrics::Metric;
use ebs_lifecycle::lambda::run::{self, RunHeader};
use ebs_lifecycle::ports::blocks::SnapshotBlocks;
use ebs_lifecycle::ports::ec2::{
    Ec2Error, SnapshotCatalog, SnapshotProtections, SnapshotTagger, VolumeInventory,
};
use ebs_lifecycle::ports::ledger::{DrillLedger, Ledger, LedgerError};
use ebs_lifecycle::ports::notifier::Notifier;
use ebs_lifecycle::ports::reports::ReportStore;
use ebs_lifecycle::services::deletion::{Locks, Protected, Protections, Unread};
use ebs_lifecycle::services::due;
use ebs_lifecycle::services::ownership;
use ebs_lifecycle::services::resume::{Progress, Walk};
use ebs_lifecycle_core::coverage::{self, VolumeCoverage};
use ebs_lifecycle_core::events::{EventError, Tick};
use ebs_lifecycle_core::expiry;
use ebs_lifecycle_core::holds::Hold;
use ebs_lifecycle_core::model::{Snapshot, Volume};
use ebs_lifecycle_core::notify::{Notification, NotificationKind, Severity};
use ebs_lifecycle_core::ownership::{Scope, Suspect};
use ebs_lifecycle_core::safety::DeletionGate;
use ebs_lifecycle_core::tags;
use ebs_lifecycle_core::targets;

pub const FUNCTION: &str = "report-snapshots";

/// Volumes reported together: their snapshots are all a run holds at once.
pub const VOLUMES_PER_BATCH: usize = ebs_lifecycle::pacing::VOLUMES_PER_BATCH;

#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub catalog: &'a dyn SnapshotCatalog,
    pub inventory: &'a dyn VolumeInventory,
    /// AMIs and locks, for the dry expiry plan.
    pub protections: &'a dyn SnapshotProtections,
    /// The EBS direct APIs (unique bytes).
    pub blocks: &'a dyn SnapshotBlocks,
    /// Caches the figures on the deployment's snapshots.
    pub tagger: &'a dyn SnapshotTagger,
    pub notifier: &'a dyn Notifier,
    /// First sightings, gaps reported, copy records.
    pub ledger: &'a dyn Ledger,
    /// Each volume's last passed restore drill (`restore-unverified`).
    pub drills: &'a dyn DrillLedger,
    /// The report bucket; `None`: the report is in the log only.
    pub reports: Option<&'a dyn ReportStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("rejected event: {0}")]
    InvalidEvent(#[from] EventError),
    #[error("could not list the volumes, instances or snapshots: {0}")]
    Ec2Unavailable(#[from] Ec2Error),
    #[error("could not use the stack's ledger: {0}")]
    LedgerUnavailable(#[from] LedgerError),
}

impl ErrorType for ReportError {
    fn error_type(&self) -> &'static str {
        match self {
            ReportError::InvalidEvent(_) => "InvalidEvent",
            ReportError::Ec2Unavailable(_) => "Ec2Unavailable",
            ReportError::LedgerUnavailable(_) => "LedgerUnavailable",
        }
    }
}

impl From<ReportError> for Diagnostic {
    fn from(error: ReportError) -> Self {
        function::diagnostic(&error)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub header: RunHeader,
    pub volumes: usize,
    /// Volumes per kind of protection (`deployment`, `data-lifecycle-manager`,
    /// `aws-backup`, `hand-made`, `unprotected`).
    pub by_cover: BTreeMap<&'static str, usize>,
    /// This deployment's volumes in a gap.
    pub gaps: usize,
    /// This deployment's volumes never verified by a restore drill, or
    /// last verified more than `RESTORE_DRILL_MAX_AGE_DAYS` ago (none
    /// counted when the ledger could not be read: `restore_unknown`).
    pub restore_unverified: usize,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub restore_unknown: bool,
    /// `RESTORE_DRILL_MAX_AGE_DAYS`, for the page.
    #[serde(skip)]
    pub restore_max_age_days: u32,
    /// Volumes the run's deadline left unread (`not-checked` in the
    /// coverage; the cost counts only the rest). The next run starts there.
    pub not_checked: usize,
    #[serde(flatten)]
    pub progress: Progress,
    /// Gaps reported this run (each gap once).
    #[serde(skip)]
    pub new_gaps: Vec<String>,
    /// Where the report was stored (its HTML page), if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Why it was not, if it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
    /// Every volume (the response and the log keep a bounded sample).
    pub coverage: Vec<VolumeCoverage>,
    /// What the deployment's snapshots store and cost.
    pub cost: cost::CostSummary,
    /// The holds in the stack's ledger in effect now (at most
    /// `holds::MAX_HOLDS`), soonest to end first.
    pub holds: Vec<Hold>,
    /// Volumes this run found opted out for the first time: the deployment
    /// made snapshots of them, and no selector tag covers them now.
    pub opted_out: Vec<OptedOut>,
}

/// A volume whose backups stopped because nothing opts it in any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OptedOut {
    pub volume_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The newest snapshot the deployment provably made of it.
    pub last_snapshot: String,
}

/// Volumes the summary lists (the gaps first), at most; the files list all.
pub(crate) const COVERAGE_SAMPLE: usize = 100;
/// Volumes whose cost the summary lists (the costliest), at most.
pub(crate) const COST_SAMPLE: usize = 20;
/// Holds the summary lists (the soonest to end), at most; the page lists all.
pub(crate) const HOLDS_SAMPLE: usize = 20;

/// What the invocation returns and the log line carries: the counts, the
/// gaps and the costliest volumes, never every volume and snapshot (those
/// are in the files). Built from the report without serialising it whole:
/// at 20,000 snapshots the whole as a JSON tree was tens of megabytes.
#[derive(Debug, Clone, Serialize)]
pub struct ReportSummary {
    #[serde(flatten)]
    pub header: RunHeader,
    pub volumes: usize,
    pub by_cover: BTreeMap<&'static str, usize>,
    pub gaps: usize,
    pub restore_unverified: usize,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub restore_unknown: bool,
    pub not_checked: usize,
    #[serde(flatten)]
    pub progress: Progress,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
    /// The volumes in a gap first, then the unprotected, then the rest.
    pub coverage: Vec<VolumeCoverage>,
    pub coverage_omitted: usize,
    /// The cost's totals; `volumes`: the costliest, without their snapshots.
    pub cost: cost::CostSummary,
    pub cost_volumes_omitted: usize,
    /// The first [`HOLDS_SAMPLE`] holds, soonest to end first.
    pub holds: Vec<Hold>,
    pub holds_omitted: usize,
    /// The first [`HOLDS_SAMPLE`] volumes newly opted out.
    pub opted_out: Vec<OptedOut>,
    pub opted_out_omitted: usize,
}

impl Report {
    pub fn summary(&self) -> ReportSummary {
        let mut coverage: Vec<&VolumeCoverage> = self.coverage.iter().collect();
        coverage.sort_by_key(|c| (c.gap.is_none(), c.cover != coverage::Cover::Unprotected));
        coverage.truncate(COVERAGE_SAMPLE);
        ReportSummary {
            header: self.header.clone(),
            volumes: self.volumes,
            by_cover: self.by_cover.clone(),
            gaps: self.gaps,
            restore_unverified: self.restore_unverified,
            restore_unknown: self.restore_unknown,
            not_checked: self.not_checked,
            progress: self.progress.clone(),
            location: self.location.clone(),
            store_error: self.store_error.clone(),
            coverage: coverage.into_iter().cloned().collect(),
            coverage_omitted: self.coverage.len().saturating_sub(COVERAGE_SAMPLE),
            cost: self.cost.totals(COST_SAMPLE),
            cost_volumes_omitted: self.cost.volumes.len().saturating_sub(COST_SAMPLE),
            holds: self.holds.iter().take(HOLDS_SAMPLE).cloned().collect(),
            holds_omitted: self.holds.len().saturating_sub(HOLDS_SAMPLE),
            opted_out: self.opted_out.iter().take(HOLDS_SAMPLE).cloned().collect(),
            opted_out_omitted: self.opted_out.len().saturating_sub(HOLDS_SAMPLE),
        }
    }
}

/// report-snapshots, as the skeleton runs it ([`Function`]).
pub struct ReportSnapshots;

impl Function for ReportSnapshots {
    const NAME: &'static str = FUNCTION;
    /// Two minutes kept for what follows the walks: the dry expiry plan,
    /// the report's files (megabytes on a large account), the notifications.
    const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(120);
    type Ports<'p> = Ports<'p>;
    type Trigger = Tick;
    type Summary = Report;
    type Error = ReportError;

    fn ledger<'p>(ports: &Self::Ports<'p>) -> &'p dyn Ledger {
        ports.ledger
    }

    fn notifier<'p>(ports: &Self::Ports<'p>) -> &'p dyn Notifier {
        ports.notifier
    }

    fn open(run: &FunctionRun<'_>, event: &Value) -> Result<(Tick, Report), ReportError> {
        let tick = Tick::parse(event)?;
        let report = Report {
            header: RunHeader::new(FUNCTION, run.config, run.now, "daily"),
            ..Report::default()
        };
        Ok((tick, report))
    }

    /// The account's volumes and what covers them, what protects
    /// snapshots, then a batch of volumes at a time (resumed where the last
    /// run stopped): anyone's snapshots of them and the deployment's,
    /// coverage, unique bytes, prices. Then the report, stored.
    async fn execute(
        ports: Self::Ports<'_>,
        run: &FunctionRun<'_>,
        _tick: Tick,
        report: &mut Report,
    ) -> Result<Ran, ReportError> {
        let mut inventory = Inventory::read(ports, run.config).await?;
        let mut cost = cost::CostSummary::default();
        let protection = Protection::read(ports, run.now, &mut cost).await?;
        let mut walked = Walked::default();
        let volume_ids = std::mem::take(&mut inventory.walked);
        report.progress = walk(
            ports,
            run,
            volume_ids,
            &inventory,
            &protection,
            &mut cost,
            &mut walked,
        )
        .await?;
        report.cost = cost;
        report.holds = {
            let mut listed: Vec<Hold> = protection.facts.holds.iter().cloned().collect();
            listed.sort_by(|a, b| (a.until, &a.resource_id).cmp(&(b.until, &b.resource_id)));
            listed
        };
        conclude(ports, run, &inventory, &walked, report).await?;
        Ok(Ran::Done {
            suspects: walked.suspects,
        })
    }

    async fn notifications(
        _ports: Self::Ports<'_>,
        run: &FunctionRun<'_>,
        report: &mut Report,
    ) -> Vec<Notification> {
        notifications(run.config, report)
    }
}

/// Run one daily report.
pub async fn handle(
    ports: Ports<'_>,
    config: &Config,
    event: &Value,
    now: DateTime<Utc>,
    deadline: Deadline,
) -> Result<Report, ReportError> {
    function::invoke::<ReportSnapshots>(ports, config, event, now, deadline).await
}

/// The region's volumes and which the deployment's policies cover, as
/// create-snapshots resolves them.
struct Inventory {
    volumes: Vec<Volume>,
    /// Volume id -> the policy that covers it.
    covered: BTreeMap<String, String>,
    /// Volume id -> why its instance's policy leaves it out.
    excluded: BTreeMap<String, String>,
    /// The volumes that exist.
    existing: BTreeSet<String>,
    /// Every volume of the region and the deleted ones the deployment's
    /// snapshots name, in id order: what the walk goes over (it takes them).
    walked: Vec<String>,
}

impl Inventory {
    async fn read(ports: Ports<'_>, config: &Config) -> Result<Self, ReportError> {
        let key = config.selector_tag_key.as_str();
        let (volumes, instances, managed_volumes) = tokio::try_join!(
            ports.inventory.all_volumes(),
            ports.inventory.instances_tagged(key),
            ports.catalog.managed_volume_ids(config.deployment_name()),
        )?;
        let instance_ids: BTreeSet<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        let tagged: Vec<_> = volumes
            .iter()
            .filter(|v| v.tags.contains_key(key))
            .cloned()
            .collect();
        let attached: Vec<_> = volumes
            .iter()
            .filter(|v| {
                v.attachment
                    .as_ref()
                    .is_some_and(|a| instance_ids.contains(a.instance_id.as_str()))
            })
            .cloned()
            .collect();
        let mut resolution =
            targets::resolve(key, &config.policies, &tagged, &instances, &attached);
        drop((tagged, attached));
        due::with_default(
            ports.inventory,
            config,
            &mut resolution,
            &volumes,
            &instances,
        )
        .await?;
        let covered: BTreeMap<String, String> = resolution
            .targets
            .iter()
            .flat_map(|t| {
                t.volume_ids()
                    .into_iter()
                    .map(|v| (v.to_string(), t.policy().to_string()))
            })
            .collect();
        let excluded = resolution
            .excluded
            .iter()
            .map(|e| (e.volume_id.clone(), e.describe()))
            .collect();
        let existing: BTreeSet<String> = volumes.iter().map(|v| v.id.clone()).collect();
        let walked = existing
            .iter()
            .cloned()
            .chain(managed_volumes)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Ok(Self {
            volumes,
            covered,
            excluded,
            existing,
            walked,
        })
    }
}

/// What protects snapshots, read once for the run (the dry expiry plan):
/// the deletion service's facts, by its policy for a projection.
struct Protection {
    facts: Protected,
    /// False: the AMIs could not be read, and the report says the next
    /// expiry's figure is missing.
    amis_known: bool,
}

impl Protection {
    async fn read(
        ports: Ports<'_>,
        now: DateTime<Utc>,
        cost: &mut cost::CostSummary,
    ) -> Result<Self, ReportError> {
        let projection = Protections::read(ports.protections, ports.ledger, Locks::All, true, now)
            .await
            .for_projection()
            .map_err(|unread| match unread {
                Unread::Amis(e) | Unread::Locks(e) => ReportError::Ec2Unavailable(e),
                Unread::Copies(e) | Unread::Holds(e) => ReportError::LedgerUnavailable(e),
            })?;
        if let Some(e) = &projection.amis_unread {
            cost.errors.push(format!(
                "what the next expiry frees is not known: the AMIs could not be read: {e}"
            ));
        }
        Ok(Self {
            amis_known: projection.amis_unread.is_none(),
            facts: projection.protected,
        })
    }
}

/// What the walk found across its batches.
#[derive(Default)]
struct Walked {
    /// Per volume, what protects it (coverage's fold).
    facts: BTreeMap<String, coverage::VolumeSnapshots>,
    suspects: Vec<Suspect>,
    /// Volumes the deadline left unread.
    not_checked: BTreeSet<String>,
}

/// The walk: a batch of volumes at a time, from where the last run stopped.
/// Each batch's priced snapshots go to files, not memory; without a
/// temporary directory they stay in memory (and the run says so).
async fn walk(
    ports: Ports<'_>,
    run: &FunctionRun<'_>,
    volume_ids: Vec<String>,
    inventory: &Inventory,
    protection: &Protection,
    cost: &mut cost::CostSummary,
    walked: &mut Walked,
) -> Result<Progress, ReportError> {
    let mut walk = Walk::start(ports.ledger, FUNCTION, volume_ids).await;
    let mut spool = match spool::Spool::new() {
        Ok(spool) => Some(spool),
        Err(e) => {
            cost.errors.push(format!(
                "the snapshots' rows are held in memory: no temporary file: {e}"
            ));
            None
        }
    };
    // The time a batch takes besides its walks (describes, ownership,
    // pricing): the walks leave that much for each batch still to come, so
    // the coverage of every volume comes before the cost of some.
    let mut besides_walks = BatchTimes::default();
    while let Some(batch) = walk.next_batch(&run.deadline) {
        let began = tokio::time::Instant::now();
        let listed = match ports
            .catalog
            .snapshots_of_volumes(run.config.deployment_name(), &batch)
            .await
        {
            Ok(listed) => listed,
            // After a batch or more, the run stops here as at its deadline
            // and stores what it has.
            Err(e) => {
                walk.failed(e)?;
                break;
            }
        };
        let priced_before = cost.volumes.len();
        let batch = Batch {
            volume_ids: &batch,
            listed,
            began,
            // The walks leave time for the batches after this one.
            batches_after: walk.batches_left(),
            besides_walks: &besides_walks,
        };
        let walks_took = batch
            .report(ports, run, inventory, protection, cost, walked)
            .await?;
        if let Some(writing) = spool.as_mut() {
            if let Err(e) = writing.take(&mut cost.volumes[priced_before..]) {
                cost.errors.push(format!(
                    "the snapshots' rows are held in memory from here on: the temporary file failed: {e}"
                ));
                spool = None;
            }
        }
        besides_walks.add(began.elapsed().saturating_sub(walks_took));
    }
    walked
        .not_checked
        .extend(walk.not_reached().iter().cloned());
    if let Some(spool) = spool {
        match spool.finish() {
            Ok(spooled) => cost.volumes.spooled(spooled),
            Err(e) => cost
                .errors
                .push(format!("the snapshots' rows could not be written: {e}")),
        }
    }
    Ok(walk.conclude(ports.ledger).await)
}

/// The report as JSON, CSV and HTML, under `coverage/<date>/` and
/// `coverage/latest/`, one file at a time: each written to a temporary file
/// (report.json with the spooled volumes read back one at a time; cost.csv
/// is the spooled file itself), stored twice from there, then deleted. A
/// failed write is reported in the summary (and the log); the coverage and
/// its notifications stand.
async fn store_report(store: &dyn ReportStore, report: &mut Report, now: DateTime<Utc>) {
    let day = now.format("%Y-%m-%d");
    match store_files(store, report, &day.to_string()).await {
        Ok(()) => report.location = Some(store.location(&format!("coverage/{day}/report.html"))),
        Err(e) => {
            tracing::warn!(error = %e, "could not store the report");
            report.store_error = Some(e);
        }
    }
}

async fn store_files(store: &dyn ReportStore, report: &Report, day: &str) -> Result<(), String> {
    const FILES: [(&str, &str); 4] = [
        ("report.json", "application/json"),
        ("report.csv", "text/csv; charset=utf-8"),
        ("cost.csv", "text/csv; charset=utf-8"),
        ("report.html", "text/html; charset=utf-8"),
    ];
    for (name, content_type) in FILES {
        let body = file(name, report).map_err(|e| format!("could not write {name}: {e}"))?;
        for prefix in [format!("coverage/{day}"), "coverage/latest".to_string()] {
            let key = format!("{prefix}/{name}");
            store
                .put(&key, body.path(), content_type)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// A file of the report, on disk.
enum Body<'a> {
    /// Written for the upload; deleted when dropped.
    Written(tempfile::NamedTempFile),
    /// The spool's cost.csv, written as the batches were priced.
    Spooled(&'a std::path::Path),
}

impl Body<'_> {
    fn path(&self) -> &std::path::Path {
        match self {
            Body::Written(file) => file.path(),
            Body::Spooled(path) => path,
        }
    }
}

fn file<'a>(name: &str, report: &'a Report) -> std::io::Result<Body<'a>> {
    use std::io::Write;
    let written = |render: &dyn Fn(&mut dyn Write) -> std::io::Result<()>| {
        let mut file = std::io::BufWriter::new(tempfile::NamedTempFile::new()?);
        render(&mut file)?;
        Ok(Body::Written(
            file.into_inner().map_err(|e| e.into_error())?,
        ))
    };
    match name {
        // Compact: a third smaller than pretty-printed at 20,000 snapshots;
        // `jq .` prints it for people.
        "report.json" => written(&|w| Ok(serde_json::to_writer(w, report)?)),
        "report.csv" => written(&|w| w.write_all(render::csv(report).as_bytes())),
        "cost.csv" => match report.cost.volumes.spooled_files() {
            Some(spooled) => Ok(Body::Spooled(spooled.cost_csv())),
            None => written(&|w| w.write_all(render::cost_csv(report).as_bytes())),
        },
        _ => written(&|w| w.write_all(render::html(report).as_bytes())),
    }
}

/// One batch of the walk: its volumes and anyone's snapshots of them.
struct Batch<'b> {
    volume_ids: &'b [String],
    /// Anyone's snapshots of the volumes, and the deployment's.
    listed: (Vec<Snapshot>, Vec<Snapshot>),
    began: tokio::time::Instant,
    batches_after: usize,
    besides_walks: &'b BatchTimes,
}

impl Batch<'_> {
    /// Coverage, the figures of what changed since the last run, the dry
    /// expiry plan and prices; how long the block walks took.
    async fn report(
        self,
        ports: Ports<'_>,
        run: &FunctionRun<'_>,
        inventory: &Inventory,
        protection: &Protection,
        cost: &mut cost::CostSummary,
        walked: &mut Walked,
    ) -> Result<std::time::Duration, ReportError> {
        let (config, now) = (run.config, run.now);
        let deployment = config.deployment_name();
        let (anyones, mine) = self.listed;
        let mut snapshots: BTreeMap<String, Snapshot> =
            anyones.into_iter().map(|s| (s.id.clone(), s)).collect();
        for s in mine {
            snapshots.entry(s.id.clone()).or_insert(s);
        }
        let snapshots: Vec<Snapshot> = snapshots.into_values().collect();
        // Only what the deployment provably made counts as its protection.
        let managed: Vec<_> = snapshots
            .iter()
            .filter(|s| tags::is_managed_by(&s.tags, deployment))
            .cloned()
            .collect();
        let sifted =
            ownership::sift(ports.ledger, config, managed, Scope::WholeVolumes, now).await?;
        let held_for_review = sifted.held_for_review();
        walked.suspects.extend(sifted.suspects);
        let in_batch: BTreeSet<&str> = self.volume_ids.iter().map(String::as_str).collect();
        let owned: Vec<Snapshot> = sifted
            .owned
            .into_iter()
            .filter(|s| s.source_volume_id().is_none_or(|v| in_batch.contains(v)))
            .collect();
        let ours: BTreeSet<String> = owned.iter().map(|s| s.id.clone()).collect();
        walked.facts.extend(coverage::fold(&snapshots, &ours));
        // Cost: the figures of what changed since the last run, then prices.
        let walks_began = tokio::time::Instant::now();
        let figures = {
            let lineages = cost::lineages(&snapshots);
            let walks_deadline = run.deadline.reserving(
                self.besides_walks
                    .reserve_for(self.batches_after, walks_began - self.began),
            );
            let cost_ports = cost::CostPorts {
                blocks: ports.blocks,
                tagger: ports.tagger,
            };
            cost::figures(cost_ports, &lineages, &ours, &walks_deadline, cost).await
        };
        let walks_took = walks_began.elapsed();
        drop(snapshots);
        // As the copies' keeping does: archived snapshots are not counted
        // as freed (their restore state is not read here).
        let restoring = owned
            .iter()
            .filter(|s| s.in_archive_tier())
            .map(|s| s.id.clone())
            .collect();
        let plans_facts = protection
            .facts
            .facts(deployment, held_for_review, restoring, now);
        let gate = DeletionGate::new(plans_facts, &owned, config.max_deletions);
        let plans = if protection.amis_known {
            expiry::plan(&owned, &config.policies, &inventory.existing, &gate)
        } else {
            Vec::new()
        };
        cost::price(
            &owned,
            &figures,
            &plans,
            &cost::Pricing {
                policies: &config.policies,
                deployment,
                existing: &inventory.existing,
                prices: &config.prices,
                now,
                gate: &gate,
            },
            cost,
        );
        Ok(walks_took)
    }
}

/// The report from what the walk found: each volume classified, gaps and
/// newly opted-out volumes reported once, the files stored.
async fn conclude(
    ports: Ports<'_>,
    run: &FunctionRun<'_>,
    inventory: &Inventory,
    walked: &Walked,
    report: &mut Report,
) -> Result<(), ReportError> {
    let (config, now) = (run.config, run.now);
    let covered_ids: Vec<String> = inventory.covered.keys().cloned().collect();
    let first_seen = ports.ledger.first_seen(&covered_ids, now).await?;
    let classed = coverage::classify(
        &inventory.volumes,
        &inventory.covered,
        &walked.facts,
        &config.policies,
        &first_seen,
        &walked.not_checked,
        now,
    );
    let mut classed = classed;
    coverage::with_exclusions(&mut classed, &inventory.excluded);
    report.restore_max_age_days = config.drills.max_age_days;
    match ports.drills.verifications(&covered_ids).await {
        Ok(verified) => {
            let verified = verified
                .into_iter()
                .map(|v| (v.volume_id, (v.at, v.snapshot_id, v.seconds.ceil() as u64)))
                .collect();
            let max_age = chrono::Duration::days(i64::from(config.drills.max_age_days));
            report.restore_unverified =
                coverage::with_restores(&mut classed, &verified, max_age, now);
        }
        // Unknown is not unverified: the page says it could not tell.
        Err(e) => {
            tracing::warn!(error = %e, "the restore drills' records could not be read; restore-unverified not counted");
            report.restore_unknown = true;
        }
    }
    let (by_cover, gaps) = coverage::counts(&classed);
    report.volumes = classed.len();
    report.by_cover = by_cover;
    report.gaps = gaps;
    report.not_checked = walked.not_checked.len();
    // Each gap is reported once: the ledger remembers (volume, since).
    for c in &classed {
        if let Some(gap) = &c.gap {
            let key = format!("gap/{}/{}", c.volume_id, tags::format_time(gap.since));
            if ports.ledger.first_report(&key, now).await.unwrap_or(true) {
                report.new_gaps.push(c.volume_id.clone());
            }
        }
    }
    report.opted_out = newly_opted_out(ports.ledger, &classed, &walked.facts, now).await;
    report.coverage = classed;
    if let Some(store) = ports.reports {
        store_report(store, report, now).await;
    }
    Ok(())
}

/// How long batches take besides their walks, to reserve for those left.
#[derive(Default)]
struct BatchTimes {
    total: std::time::Duration,
    batches: u32,
}

impl BatchTimes {
    fn add(&mut self, took: std::time::Duration) {
        self.total += took;
        self.batches += 1;
    }

    /// Half again the mean so far for each batch left; before any batch
    /// is done, what the current one took before its walks (its describes,
    /// most of a batch's time) stands for the mean.
    fn reserve_for(&self, left: usize, this_batch: std::time::Duration) -> std::time::Duration {
        let mean = self.total.checked_div(self.batches).unwrap_or(this_batch);
        mean.mul_f64(1.5 * left as f64)
    }
}

/// Volumes the deployment provably backed up (its newest snapshot of
/// them) that no selector tag covers now, not yet reported for that
/// snapshot: each is reported once, and again only after it was opted in
/// and backed up anew. One batch read for those seen before; a write only
/// for a new one. A ledger that cannot be read reports none this run.
async fn newly_opted_out(
    ledger: &dyn Ledger,
    classed: &[VolumeCoverage],
    facts: &BTreeMap<String, coverage::VolumeSnapshots>,
    now: DateTime<Utc>,
) -> Vec<OptedOut> {
    let candidates: Vec<(&VolumeCoverage, String)> = classed
        .iter()
        .filter(|c| {
            !matches!(
                c.cover,
                coverage::Cover::Deployment | coverage::Cover::NotChecked
            )
        })
        .filter_map(|c| {
            let last = facts.get(&c.volume_id)?.ours?;
            Some((c, tags::format_time(last)))
        })
        .collect();
    let key = |c: &VolumeCoverage, last: &str| format!("opted-out/{}/{last}", c.volume_id);
    let keys: Vec<String> = candidates.iter().map(|(c, last)| key(c, last)).collect();
    if keys.is_empty() {
        return Vec::new();
    }
    let seen: BTreeSet<String> = match ledger.reported(&keys).await {
        Ok(seen) => seen.into_iter().collect(),
        Err(e) => {
            tracing::warn!(error = %e, "which opted-out volumes were reported is unknown; none reported this run");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (c, last) in candidates {
        let k = key(c, &last);
        if seen.contains(&k) {
            continue;
        }
        match ledger.first_report(&k, now).await {
            Ok(true) => out.push(OptedOut {
                volume_id: c.volume_id.clone(),
                name: c.name.clone(),
                last_snapshot: last,
            }),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(volume = %c.volume_id, error = %e, "an opted-out volume could not be recorded; reported next run");
            }
        }
    }
    out
}

impl Summary for Report {
    fn header(&mut self) -> &mut RunHeader {
        &mut self.header
    }

    fn headline(&self) -> String {
        headline(self)
    }

    fn metrics(&self, suspects: usize) -> Vec<(Metric, u64)> {
        let unprotected = self.by_cover.get("unprotected").copied().unwrap_or(0) + self.gaps;
        vec![
            (Metric::VolumesUnprotected, unprotected as u64),
            (Metric::TamperingSuspected, suspects as u64),
        ]
    }

    /// A run that did not reach every volume priced only some: its sums
    /// would draw a false dip in the cost graphs, so they are not emitted.
    fn cost(&self) -> Option<CostGauges> {
        (self.not_checked == 0).then_some(CostGauges {
            standard_bytes: self.cost.standard_bytes,
            archive_bytes: self.cost.archive_bytes,
            monthly_usd: self.cost.monthly_usd,
        })
    }

    fn for_log(&self) -> Value {
        run::for_log(&self.summary())
    }

    /// The invocation returns the summary; the files hold the rest.
    fn response(&self) -> Value {
        run::response(&self.summary())
    }
}

fn headline(r: &Report) -> String {
    let counts: Vec<String> = r.by_cover.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(
        "report-snapshots: {} volumes: {}; {} of this deployment's in a gap",
        r.volumes,
        counts.join(", "),
        r.gaps
    )
}

/// One `coverage-gap` per volume and gap, the first run that sees it; on
/// Mondays (UTC) one `report-ready` with where the report is.
pub fn notifications(config: &Config, r: &Report) -> Vec<Notification> {
    let weekly = match (&r.location, r.header.time.get(..10)) {
        (Some(location), Some(day)) => chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
            .ok()
            .filter(|d| d.weekday() == chrono::Weekday::Mon)
            .map(|_| Notification {
                kind: NotificationKind::ReportReady,
                severity: Severity::Info,
                deployment: config.deployment_name().to_string(),
                summary: format!("{}: {location}", headline(r)),
                details: json!({"location": location, "volumes": r.volumes, "by_cover": r.by_cover, "gaps": r.gaps, "restore_unverified": r.restore_unverified}),
            }),
        _ => None,
    };
    r.coverage
        .iter()
        .filter(|c| r.new_gaps.contains(&c.volume_id))
        .filter_map(|c| {
            let gap = c.gap.as_ref()?;
            Some(Notification {
                kind: NotificationKind::CoverageGap,
                severity: gap.severity,
                deployment: config.deployment_name().to_string(),
                summary: format!(
                    "{} ({}) has no snapshot since {} ({} intervals of policy {})",
                    c.volume_id,
                    c.name.as_deref().unwrap_or("no name"),
                    tags::format_time(gap.since),
                    gap.intervals,
                    c.policy.as_deref().unwrap_or("?")
                ),
                details: json!({
                    "volume_id": c.volume_id,
                    "policy": c.policy,
                    "since": tags::format_time(gap.since),
                    "intervals": gap.intervals,
                    "next": "Check the schedule is enabled and create-snapshots' errors alarm and log; a volume that cannot be snapshotted is named in its run-summary.",
                }),
            })
        })
        .chain(weekly)
        .chain(opted_out_notification(config, r))
        .collect()
}

/// One `opted-out` (info) per run for the volumes newly opted out, listed
/// up to [`HOLDS_SAMPLE`]; whoever removed the tag is in CloudTrail.
fn opted_out_notification(config: &Config, r: &Report) -> Option<Notification> {
    let first = r.opted_out.first()?;
    let listed: Vec<&OptedOut> = r.opted_out.iter().take(HOLDS_SAMPLE).collect();
    Some(Notification {
        kind: NotificationKind::OptedOut,
        severity: Severity::Info,
        deployment: config.deployment_name().to_string(),
        summary: if r.opted_out.len() == 1 {
            format!(
                "{} ({}) is no longer opted in: its backups have stopped (last snapshot {})",
                first.volume_id,
                first.name.as_deref().unwrap_or("no name"),
                first.last_snapshot
            )
        } else {
            format!(
                "{} volumes are no longer opted in: their backups have stopped",
                r.opted_out.len()
            )
        },
        details: json!({
            "volumes": listed,
            "volumes_omitted": r.opted_out.len() - listed.len(),
            "next": "If this was not meant, put the selector tag back (on the volume or its instance). CloudTrail says who removed it: Event history, event name DeleteTags or CreateTags, resource name the volume (or instance) id. Its snapshots stay, kept by their policy's rules as of the last one (expiry never deletes a volume's newest).",
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_summary_lists_the_gaps_first_and_the_costliest_without_their_snapshots() {
        use ebs_lifecycle_core::coverage::{Cover, Gap};
        let volume = |i: usize, cover: Cover, gap: bool| VolumeCoverage {
            volume_id: format!("vol-{i:04}"),
            name: None,
            cover,
            policy: None,
            newest: None,
            gap: gap.then_some(Gap {
                since: chrono::DateTime::UNIX_EPOCH,
                intervals: 3,
                severity: Severity::Warning,
            }),
            restore: None,
            excluded: None,
        };
        let mut coverage: Vec<VolumeCoverage> = (0..500)
            .map(|i| volume(i, Cover::HandMade, false))
            .collect();
        coverage.push(volume(600, Cover::Deployment, true));
        coverage.push(volume(601, Cover::Unprotected, false));
        let priced = |i: usize, usd: f64| cost::VolumeCost {
            volume_id: format!("vol-{i:04}"),
            policy: "daily".into(),
            standard_bytes: 1,
            archive_bytes: 0,
            monthly_usd: usd,
            expiry_frees_bytes: 0,
            archive_saves_usd: 0.0,
            snapshot_count: 1,
            snapshots: vec![cost::SnapshotCost {
                id: "snap-1".into(),
                time: "2026-03-01T00:00:00Z".into(),
                tier: "standard",
                full_bytes: None,
                unique_bytes: None,
                added_bytes: None,
                retained_by: vec!["daily"],
                expires: "never".into(),
                expiry_deletes: false,
                archive_saving_usd: None,
            }],
        };
        let report = Report {
            volumes: coverage.len(),
            coverage,
            cost: cost::CostSummary {
                volumes: (0..50).map(|i| priced(i, i as f64)).collect(),
                ..cost::CostSummary::default()
            },
            ..Report::default()
        };
        let summary = report.summary();
        assert_eq!(summary.coverage.len(), COVERAGE_SAMPLE);
        assert_eq!(summary.coverage_omitted, 502 - COVERAGE_SAMPLE);
        assert_eq!(summary.coverage[0].volume_id, "vol-0600", "the gap first");
        assert_eq!(
            summary.coverage[1].volume_id, "vol-0601",
            "then the unprotected"
        );
        assert_eq!(summary.cost.volumes.len(), COST_SAMPLE);
        assert_eq!(summary.cost_volumes_omitted, 30);
        assert_eq!(
            summary.cost.volumes[0].monthly_usd, 49.0,
            "the costliest first"
        );
        assert!(summary.cost.volumes.iter().all(|v| v.snapshots.is_empty()));
        // The report itself is untouched: the files have every snapshot.
        assert_eq!(report.cost.volumes[0].snapshots.len(), 1);
    }

    #[test]
    fn the_walks_leave_half_again_the_mean_batch_for_each_batch_left() {
        let mut times = BatchTimes::default();
        // Nothing done yet: the current batch's describes stand for the mean.
        assert_eq!(
            times.reserve_for(4, Duration::from_secs(2)),
            Duration::from_secs(12)
        );
        times.add(Duration::from_secs(1));
        times.add(Duration::from_secs(3));
        assert_eq!(
            times.reserve_for(2, Duration::from_secs(9)),
            Duration::from_secs(6),
            "the mean of those done, not the current batch"
        );
        assert_eq!(
            times.reserve_for(0, Duration::from_secs(9)),
            Duration::ZERO,
            "the last batch's walks may use the run's time"
        );
    }
}

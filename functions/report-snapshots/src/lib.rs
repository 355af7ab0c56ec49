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
//!    with the dry expiry plan and the archive arithmetic;
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
pub mod spool;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Utc};
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::{json, Value};

use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::metrics::{self, Metric};
use ebs_lifecycle::lambda::ownership;
use ebs_lifecycle::lambda::resume::{Progress, Resume};
use ebs_lifecycle::lambda::run::{self, RunHeader};
use ebs_lifecycle::ports::blocks::SnapshotBlocks;
use ebs_lifecycle::ports::ec2::{
    Ec2Error, SnapshotCatalog, SnapshotProtections, SnapshotTagger, VolumeInventory,
};
use ebs_lifecycle::ports::ledger::{Ledger, LedgerError};
use ebs_lifecycle::ports::notifier::Notifier;
use ebs_lifecycle::ports::reports::ReportStore;
use ebs_lifecycle_core::coverage::{self, VolumeCoverage};
use ebs_lifecycle_core::events::{EventError, Tick};
use ebs_lifecycle_core::expiry;
use ebs_lifecycle_core::holds::{Hold, Holds};
use ebs_lifecycle_core::model::Snapshot;
use ebs_lifecycle_core::notify::{Notification, NotificationKind, Severity};
use ebs_lifecycle_core::ownership::Scope;
use ebs_lifecycle_core::safety::{AccountFacts, DeletionGate};
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

impl From<ReportError> for Diagnostic {
    fn from(error: ReportError) -> Self {
        let error_type = match error {
            ReportError::InvalidEvent(_) => "InvalidEvent",
            ReportError::Ec2Unavailable(_) => "Ec2Unavailable",
            ReportError::LedgerUnavailable(_) => "LedgerUnavailable",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
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
pub const COVERAGE_SAMPLE: usize = 100;
/// Volumes whose cost the summary lists (the costliest), at most.
pub const COST_SAMPLE: usize = 20;
/// Holds the summary lists (the soonest to end), at most; the page lists all.
pub const HOLDS_SAMPLE: usize = 20;

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

pub async fn handle(
    ports: Ports<'_>,
    config: &Config,
    event: &Value,
    now: DateTime<Utc>,
    deadline: Deadline,
) -> Result<Report, ReportError> {
    Tick::parse(event)?;
    let key = config.selector_tag_key.as_str();
    let deployment = config.deployment_name.as_str();
    let (volumes, instances, managed_volumes) = tokio::try_join!(
        ports.inventory.all_volumes(),
        ports.inventory.instances_tagged(key),
        ports.catalog.managed_volume_ids(deployment),
    )?;
    // Which volumes the deployment's policies cover, as create-snapshots
    // resolves them.
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
    let resolution = targets::resolve(key, &config.policies, &tagged, &instances, &attached);
    drop((tagged, attached));
    let covered: BTreeMap<String, String> = resolution
        .targets
        .iter()
        .flat_map(|t| {
            t.volume_ids()
                .into_iter()
                .map(|v| (v.to_string(), t.policy().to_string()))
        })
        .collect();
    let existing: BTreeSet<String> = volumes.iter().map(|v| v.id.clone()).collect();

    // What protects snapshots, once for the run (the dry expiry plan); if
    // the AMIs cannot be read the report stands and says the next
    // expiry's figure is missing.
    let mut cost = cost::CostSummary::default();
    let (ami_snapshot_ids, amis_known) = match ports.protections.ami_snapshot_ids().await {
        Ok(ids) => (ids, true),
        Err(e) => {
            cost.errors.push(format!(
                "what the next expiry frees is not known: the AMIs could not be read: {e}"
            ));
            (BTreeSet::new(), false)
        }
    };
    let locked = ports
        .protections
        .all_locked_snapshot_ids()
        .await
        .unwrap_or_default();
    let copying: BTreeSet<String> = ports
        .ledger
        .copies_in_flight()
        .await?
        .into_iter()
        .map(|c| c.source_snapshot_id)
        .collect();
    // The ledger's holds: shown, and kept out of what the next expiry frees.
    let holds = Holds::in_effect(ports.ledger.holds().await?, now);

    // Then 200 volumes at a time (every volume of the region, and the
    // deleted ones the deployment's snapshots name): anyone's snapshots of
    // them and the deployment's, coverage, unique bytes, prices. A run
    // holds one batch's snapshots, never the account's.
    let mut volume_ids: Vec<String> = existing
        .iter()
        .cloned()
        .chain(managed_volumes)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // A run its deadline stopped is resumed where it stopped, wrapping
    // round: every volume is checked within a few runs at any size.
    let mut resume = Resume::start(ports.ledger, FUNCTION, &mut volume_ids).await;
    let mut facts = BTreeMap::new();
    let mut suspects = Vec::new();
    let mut not_checked = BTreeSet::new();
    let cost_ports = cost::CostPorts {
        blocks: ports.blocks,
        tagger: ports.tagger,
    };
    // Each batch's priced snapshots go to files, not memory; without a
    // temporary directory they stay in memory (and the run says so).
    let mut spool = match spool::Spool::new() {
        Ok(spool) => Some(spool),
        Err(e) => {
            cost.errors.push(format!(
                "the snapshots' rows are held in memory: no temporary file: {e}"
            ));
            None
        }
    };
    let batches: Vec<&[String]> = volume_ids.chunks(VOLUMES_PER_BATCH).collect();
    // The time a batch takes besides its walks (describes, ownership,
    // pricing): the walks leave that much for each batch still to come, so
    // the coverage of every volume comes before the cost of some.
    let mut besides_walks = BatchTimes::default();
    for (done, batch) in batches.iter().enumerate() {
        if deadline.is_near() {
            resume.stop_at(&batch[0]);
            not_checked.extend(batches[done..].iter().flat_map(|b| b.iter().cloned()));
            break;
        }
        let began = tokio::time::Instant::now();
        let (anyones, mine) = match ports.catalog.snapshots_of_volumes(deployment, batch).await {
            Ok(listed) => listed,
            // After a batch or more, the run stops here as at its deadline
            // and stores what it has.
            Err(e) => {
                resume.stop_on_failure(done, &batch[0], e)?;
                not_checked.extend(batches[done..].iter().flat_map(|b| b.iter().cloned()));
                break;
            }
        };
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
        suspects.extend(sifted.suspects);
        let in_batch: BTreeSet<&str> = batch.iter().map(String::as_str).collect();
        let owned: Vec<Snapshot> = sifted
            .owned
            .into_iter()
            .filter(|s| s.source_volume_id().is_none_or(|v| in_batch.contains(v)))
            .collect();
        let ours: BTreeSet<String> = owned.iter().map(|s| s.id.clone()).collect();
        facts.extend(coverage::fold(&snapshots, &ours));
        // Cost: the figures of what changed since the last run, then prices.
        let walks_began = tokio::time::Instant::now();
        let figures = {
            let lineages = cost::lineages(&snapshots);
            let walks_deadline = deadline.reserving(
                besides_walks.reserve_for(batches.len() - done - 1, walks_began - began),
            );
            cost::figures(cost_ports, &lineages, &ours, &walks_deadline, &mut cost).await
        };
        let walks_took = walks_began.elapsed();
        drop(snapshots);
        let plans_facts = AccountFacts {
            deployment: config.deployment_name.clone(),
            ami_snapshot_ids: ami_snapshot_ids.clone(),
            locked_snapshot_ids: locked.clone(),
            holds: holds.clone(),
            held_for_review,
            // As the copies' keeping does: archived snapshots are not
            // counted as freed (their restore state is not read here).
            restoring: owned
                .iter()
                .filter(|s| s.in_archive_tier())
                .map(|s| s.id.clone())
                .collect(),
            copying: copying.clone(),
            now,
        };
        let gate = DeletionGate::new(plans_facts, &owned, config.max_deletions);
        let plans = if amis_known {
            expiry::plan(&owned, &config.policies, &existing, &gate)
        } else {
            Vec::new()
        };
        let priced_before = cost.volumes.len();
        cost::price(
            &owned,
            &figures,
            &plans,
            &cost::Pricing {
                policies: &config.policies,
                deployment,
                existing: &existing,
                prices: &config.prices,
                now,
                gate: &gate,
            },
            &mut cost,
        );
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
    if let Some(spool) = spool {
        match spool.finish() {
            Ok(spooled) => cost.volumes.spooled(spooled),
            Err(e) => cost
                .errors
                .push(format!("the snapshots' rows could not be written: {e}")),
        }
    }
    let progress = resume.conclude(ports.ledger).await;

    let covered_ids: Vec<String> = covered.keys().cloned().collect();
    let first_seen = ports.ledger.first_seen(&covered_ids, now).await?;
    let classed = coverage::classify(
        &volumes,
        &covered,
        &facts,
        &config.policies,
        &first_seen,
        &not_checked,
        now,
    );
    let (by_cover, gaps) = coverage::counts(&classed);
    let mut report = Report {
        header: RunHeader::new(FUNCTION, config, now, "daily"),
        volumes: classed.len(),
        by_cover,
        gaps,
        not_checked: not_checked.len(),
        progress,
        cost,
        holds: {
            let mut listed: Vec<Hold> = holds.iter().cloned().collect();
            listed.sort_by(|a, b| (a.until, &a.resource_id).cmp(&(b.until, &b.resource_id)));
            listed
        },
        ..Report::default()
    };
    // Each gap is reported once: the ledger remembers (volume, since).
    for c in &classed {
        if let Some(gap) = &c.gap {
            let key = format!("gap/{}/{}", c.volume_id, tags::format_time(gap.since));
            if ports.ledger.first_report(&key, now).await.unwrap_or(true) {
                report.new_gaps.push(c.volume_id.clone());
            }
        }
    }
    report.opted_out = newly_opted_out(ports.ledger, &classed, &facts, now).await;
    report.coverage = classed;
    if let Some(store) = ports.reports {
        store_report(store, &mut report, now).await;
    }

    let unprotected = report.by_cover.get("unprotected").copied().unwrap_or(0) + report.gaps;
    metrics::emit_for_run(
        config,
        FUNCTION,
        &[
            (Metric::VolumesUnprotected, unprotected as u64),
            (Metric::TamperingSuspected, suspects.len() as u64),
        ],
    );
    // A run that did not reach every volume priced only some: its sums
    // would draw a false dip in the cost graphs, so they are not emitted.
    if report.not_checked == 0 {
        metrics::emit_cost_for_run(
            config,
            FUNCTION,
            report.cost.standard_bytes,
            report.cost.archive_bytes,
            report.cost.monthly_usd,
        );
    }
    tracing::info!(report = %run::for_log(&report.summary()), "{}", headline(&report));
    let mut notes =
        ownership::report(ports.ledger, config, &suspects, now, &mut report.header).await;
    notes.extend(notifications(config, &report));
    run::publish(ports.notifier, &notes, &mut report.header).await;
    Ok(report)
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
                deployment: config.deployment_name.clone(),
                summary: format!("{}: {location}", headline(r)),
                details: json!({"location": location, "volumes": r.volumes, "by_cover": r.by_cover, "gaps": r.gaps}),
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
                deployment: config.deployment_name.clone(),
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
        deployment: config.deployment_name.clone(),
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

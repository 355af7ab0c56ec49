//! CloudWatch metrics in Embedded Metric Format (docs/operations.md, "Notifications and metrics"): JSON lines
//! on stdout that CloudWatch Logs turns into metrics, with no API call.
//!
//! The EMF document is produced by `metrics_cloudwatch_embedded`; this module
//! fixes the metric names docs/operations.md lists and gives each run one flush.
//! The collector is process-wide (one per Lambda execution environment), set
//! up on first use with the configured namespace.

use std::io::Write;
use std::sync::OnceLock;

use metrics_cloudwatch_embedded::Collector;

/// Metric names, after Data Lifecycle Manager's where they exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    ResourcesTargeted,
    SnapshotsCreateStarted,
    SnapshotsCreateCompleted,
    SnapshotsCreateFailed,
    SnapshotsDeleteCompleted,
    SnapshotsDeleteFailed,
    UnencryptedSnapshots,
    PublicSnapshots,
    StuckSnapshots,
    /// Copies to another region seen completed by this run.
    CrossRegionCopyCompleted,
    /// Copies to another region that failed (EC2 state `error`) or that EC2
    /// refused to start for good (an unusable key).
    CrossRegionCopyFailed,
    /// Volumes with no protection at all, plus this deployment's in a gap.
    VolumesUnprotected,
    /// Snapshots a run saw with this deployment's tags and without its proof.
    TamperingSuspected,
    /// Moves to the archive tier started (archive-snapshots).
    SnapshotsArchiveStarted,
    /// Moves to the archive tier EC2 finished, seen this run.
    SnapshotsArchiveCompleted,
    /// Moves to the archive tier EC2 could not finish, seen this run.
    SnapshotsArchiveFailed,
    /// Restore drills that verified their snapshot (verify-restores).
    RestoreDrillsPassed,
    /// Restore drills that found a snapshot that does not restore.
    RestoreDrillsFailed,
    /// The slowest restore of the run's drills, in seconds (CreateVolume
    /// to `available`).
    RestoreSeconds,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Self::ResourcesTargeted => "ResourcesTargeted",
            Self::SnapshotsCreateStarted => "SnapshotsCreateStarted",
            Self::SnapshotsCreateCompleted => "SnapshotsCreateCompleted",
            Self::SnapshotsCreateFailed => "SnapshotsCreateFailed",
            Self::SnapshotsDeleteCompleted => "SnapshotsDeleteCompleted",
            Self::SnapshotsDeleteFailed => "SnapshotsDeleteFailed",
            Self::UnencryptedSnapshots => "UnencryptedSnapshots",
            Self::PublicSnapshots => "PublicSnapshots",
            Self::StuckSnapshots => "StuckSnapshots",
            Self::CrossRegionCopyCompleted => "CrossRegionCopyCompleted",
            Self::CrossRegionCopyFailed => "CrossRegionCopyFailed",
            Self::VolumesUnprotected => "VolumesUnprotected",
            Self::TamperingSuspected => "TamperingSuspected",
            Self::SnapshotsArchiveStarted => "SnapshotsArchiveStarted",
            Self::SnapshotsArchiveCompleted => "SnapshotsArchiveCompleted",
            Self::SnapshotsArchiveFailed => "SnapshotsArchiveFailed",
            Self::RestoreDrillsPassed => "RestoreDrillsPassed",
            Self::RestoreDrillsFailed => "RestoreDrillsFailed",
            Self::RestoreSeconds => "RestoreSeconds",
        }
    }
}

static COLLECTOR: OnceLock<Option<&'static Collector>> = OnceLock::new();

fn collector(namespace: &str) -> Option<&'static Collector> {
    *COLLECTOR.get_or_init(|| {
        metrics_cloudwatch_embedded::Builder::new()
            .cloudwatch_namespace(namespace.to_string())
            // A zero is a data point: an alarm on failures must see "0", not silence.
            .emit_zeros(true)
            .init()
            .map_err(|e| tracing::warn!(error = %e, "metrics disabled: collector could not start"))
            .ok()
    })
}

/// Write one EMF document holding `values`, with the dimension `Deployment`
/// and the property `Function`, to `out`. The values are this run's counts: each
/// flush resets them, so one run is one data point per metric.
pub fn emit(
    namespace: &str,
    deployment: &str,
    function: &str,
    values: &[(Metric, u64)],
    out: impl Write,
) -> std::io::Result<()> {
    let Some(collector) = collector(namespace) else {
        return Ok(());
    };
    for (metric, value) in values {
        // The deployment is a dimension so two stacks in one account (and
        // their alarms) never mix their numbers.
        metrics::counter!(metric.name(), "Deployment" => deployment.to_string()).increment(*value);
    }
    collector
        .set_property("Function", function.to_string())
        .flush(out)
}

/// Write one EMF document of the report's cost figures: `SnapshotStorageBytes`
/// per `Tier` (standard, archive) and `EstimatedMonthlyCost` (USD), as
/// gauges: the figure is the account's now, not a count of this run.
pub(crate) fn emit_cost(
    namespace: &str,
    deployment: &str,
    function: &str,
    standard_bytes: u64,
    archive_bytes: u64,
    monthly_usd: f64,
    out: impl Write,
) -> std::io::Result<()> {
    let Some(collector) = collector(namespace) else {
        return Ok(());
    };
    for (tier, bytes) in [("standard", standard_bytes), ("archive", archive_bytes)] {
        metrics::gauge!("SnapshotStorageBytes", "Deployment" => deployment.to_string(), "Tier" => tier)
            .set(bytes as f64);
    }
    metrics::gauge!("EstimatedMonthlyCost", "Deployment" => deployment.to_string())
        .set(monthly_usd);
    collector
        .set_property("Function", function.to_string())
        .flush(out)
}

/// [`emit_cost`] to stdout, for the configured namespace and deployment.
pub(crate) fn emit_cost_for_run(
    config: &crate::config::Config,
    function: &str,
    standard_bytes: u64,
    archive_bytes: u64,
    monthly_usd: f64,
) {
    if let Err(e) = emit_cost(
        &config.metrics_namespace,
        config.deployment_name(),
        function,
        standard_bytes,
        archive_bytes,
        monthly_usd,
        std::io::stdout().lock(),
    ) {
        tracing::warn!(error = %e, "could not write metrics");
    }
}

/// [`emit`] to stdout (where Lambda's log capture turns it into metrics), for
/// the configured namespace and deployment. A metrics failure is logged, never
/// fatal: the run's real work is done by then.
pub(crate) fn emit_for_run(
    config: &crate::config::Config,
    function: &str,
    values: &[(Metric, u64)],
) {
    if let Err(e) = emit(
        &config.metrics_namespace,
        config.deployment_name(),
        function,
        values,
        std::io::stdout().lock(),
    ) {
        tracing::warn!(error = %e, "could not write metrics");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The collector is global to the process, so everything about it is checked
    // in this one test.
    #[test]
    fn one_run_is_one_emf_document_with_spec_names_and_zeros() {
        let mut first = Vec::new();
        emit(
            "Test/Ns",
            "prod",
            "create-snapshots",
            &[
                (Metric::ResourcesTargeted, 4),
                (Metric::SnapshotsCreateStarted, 3),
                (Metric::SnapshotsCreateFailed, 0),
            ],
            &mut first,
        )
        .unwrap();
        let text = String::from_utf8(first).unwrap();
        let doc: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Test/Ns");
        let names: Vec<&str> = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"SnapshotsCreateFailed"), "{names:?}");
        assert_eq!(doc["ResourcesTargeted"], 4);
        assert_eq!(doc["SnapshotsCreateStarted"], 3);
        assert_eq!(doc["SnapshotsCreateFailed"], 0);
        assert_eq!(doc["Deployment"], "prod");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0],
            "Deployment"
        );
        assert_eq!(doc["Function"], "create-snapshots");
        assert!(doc["_aws"]["Timestamp"].as_u64().unwrap() > 0);

        // The next run starts from zero, not from the last run's totals.
        let mut second = Vec::new();
        emit(
            "Test/Ns",
            "prod",
            "create-snapshots",
            &[(Metric::SnapshotsCreateStarted, 1)],
            &mut second,
        )
        .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&second).unwrap();
        assert_eq!(doc["SnapshotsCreateStarted"], 1);

        // The report's cost: storage per tier (a dimension) and the cost.
        let mut third = Vec::new();
        emit_cost(
            "Test/Ns",
            "prod",
            "report-snapshots",
            3 << 30,
            0,
            0.15,
            &mut third,
        )
        .unwrap();
        let text = String::from_utf8(third).unwrap();
        let docs: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let standard = docs
            .iter()
            .find(|d| d["Tier"] == "standard")
            .unwrap_or_else(|| panic!("{text}"));
        assert_eq!(
            standard["SnapshotStorageBytes"].as_f64(),
            Some((3u64 << 30) as f64)
        );
        let tiers = &standard["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0];
        assert!(
            tiers
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("Tier")),
            "{text}"
        );
        assert!(docs
            .iter()
            .any(|d| d["Tier"] == "archive" && d["SnapshotStorageBytes"].as_f64() == Some(0.0)));
        let cost = docs
            .iter()
            .find(|d| d.get("EstimatedMonthlyCost").is_some())
            .unwrap();
        assert_eq!(cost["EstimatedMonthlyCost"], 0.15);
    }
}

//! The report's rows: one of the deployment's snapshots priced, one volume
//! under one policy (what cost prices, the spool writes and render draws).

use serde::Serialize;

/// Volumes drawn as timelines on the page, at most (the costliest first);
/// the JSON and CSV hold every one.
pub(crate) const TIMELINES: usize = 40;

/// One of this deployment's snapshots, priced.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotCost {
    pub id: String,
    pub time: String,
    pub tier: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_bytes: Option<u64>,
    /// `None` until computed (a run that ran out of time, or unreadable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added_bytes: Option<u64>,
    pub retained_by: Vec<&'static str>,
    /// `lifecycle:expires-at`'s projection: a time, `due` or `never`.
    pub expires: String,
    /// The dry expiry plan deletes it.
    pub expiry_deletes: bool,
    /// What archiving it for the rest of its projected life saves (USD;
    /// negative: costs), when the policy's archive rule (or the usual one:
    /// monthly and yearly, after 90 days) would consider it
    /// (`ebs_lifecycle_core::archive::judge`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_saving_usd: Option<f64>,
}

/// One volume under one policy.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeCost {
    pub volume_id: String,
    pub policy: String,
    pub standard_bytes: u64,
    pub archive_bytes: u64,
    pub monthly_usd: f64,
    /// At least this much: the unique bytes of what the next expiry deletes
    /// (deleting neighbours together frees what they alone shared, too).
    pub expiry_frees_bytes: u64,
    /// Positive savings of the archive candidates, summed.
    pub archive_saves_usd: f64,
    /// How many snapshots it has (they leave memory once spooled).
    pub snapshot_count: usize,
    /// Oldest first (none in the run summary: the files have them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<SnapshotCost>,
}

impl VolumeCost {
    /// The costliest first, then by volume and policy: the page's order.
    pub fn costliest_first(&self, other: &Self) -> std::cmp::Ordering {
        other
            .monthly_usd
            .total_cmp(&self.monthly_usd)
            .then_with(|| self.volume_id.cmp(&other.volume_id))
            .then_with(|| self.policy.cmp(&other.policy))
    }
}

//! What report-snapshots reads of a snapshot's blocks (docs/report.md,
//! "Cost"): the blocks that differ between two snapshots of a volume. The
//! EBS direct APIs implement it ([`crate::aws::ebs`]).

use async_trait::async_trait;
use ebs_lifecycle_core::cost::Diff;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlocksError {
    /// The APIs kept throttling after the client's pacing and retries.
    #[error("the EBS direct APIs kept throttling ({0})")]
    Throttled(String),
    /// The snapshot is gone, not completed, archived, or its blocks cannot
    /// be compared with the other's (`ValidationException`,
    /// `ResourceNotFoundException`): this pair is skipped.
    #[error("the blocks of {snapshot} cannot be read: {message}")]
    Unreadable { snapshot: String, message: String },
    /// Permissions (or the snapshot's KMS key) refuse the read.
    #[error("the EBS direct APIs refused the read: {0}")]
    AccessDenied(String),
    #[error("the EBS direct APIs failed: {0}")]
    Other(String),
}

impl BlocksError {
    /// The account's limits or permissions, not this pair: no more walks
    /// this run (what needed them is left for the next).
    pub fn stops_the_walks(&self) -> bool {
        matches!(self, Self::Throttled(_) | Self::AccessDenied(_))
    }
}

/// A diff and the requests it took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Walked {
    pub diff: Diff,
    pub requests: u32,
}

#[async_trait]
pub trait SnapshotBlocks: Send + Sync {
    /// The blocks that differ between `older` and `newer` (snapshots of one
    /// volume, `older` first), by which side holds them; with no `older`,
    /// every block `newer` holds (as its `newer` side). Every page is read:
    /// the caller bounds the run by how many pairs it asks for.
    async fn diff(&self, older: Option<&str>, newer: &str) -> Result<Walked, BlocksError>;
}

//! What the functions read of a snapshot's blocks: report-snapshots the
//! blocks that differ between two snapshots of a volume (docs/report.md,
//! "Cost"), restore drills a sample of blocks and their data
//! (docs/restore.md, "Restore drills"). The EBS direct APIs implement both
//! ([`crate::aws::ebs`]).

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
    /// The snapshot, or the token of a block, is not there any more
    /// (`ResourceNotFoundException`): deleted meanwhile, or a token expired.
    #[error("{snapshot} or its block is not found: {message}")]
    Gone { snapshot: String, message: String },
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

/// A block of a snapshot and the token that reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRef {
    pub index: u32,
    pub token: String,
}

/// One page of blocks from a starting index, and the last index it covers
/// when more pages follow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    pub blocks: Vec<BlockRef>,
    pub last_if_more: Option<u32>,
}

/// A block's data and the checksum EBS returned with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRead {
    pub data: Vec<u8>,
    pub checksum: String,
    pub algorithm: String,
}

/// Reading blocks (restore drills). Every call is one request, paced with
/// the other EBS direct API calls of the run.
#[async_trait]
pub trait BlockReader: Send + Sync {
    /// Up to `max` (100 to 10,000) blocks `snapshot` holds, from block `from`.
    async fn list_blocks(&self, snapshot: &str, from: u32, max: u32)
        -> Result<Listed, BlocksError>;
    /// Up to `max` blocks that differ between `older` and `newer`, from
    /// block `from`, with `newer`'s token where it holds the block.
    async fn changed_blocks(
        &self,
        older: &str,
        newer: &str,
        from: u32,
        max: u32,
    ) -> Result<Listed, BlocksError>;
    /// The block's data and checksum (GetSnapshotBlock).
    async fn read_block(&self, snapshot: &str, block: &BlockRef) -> Result<BlockRead, BlocksError>;
}

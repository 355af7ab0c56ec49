//! Where report-snapshots puts its reports (docs/functions.md,
//! "report-snapshots"): the stack's report bucket. S3 implements it
//! ([`crate::aws::s3`]).

use async_trait::async_trait;
/// A file's body: cloned without copying, so one rendering serves both
/// the dated and the latest key.
pub use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the report could not be stored at {key}: {message}")]
pub struct StoreError {
    pub key: String,
    pub message: String,
}

#[async_trait]
pub trait ReportStore: Send + Sync {
    /// Write `body` at `key`, replacing what was there.
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError>;
    /// Where `key` is, for people (`s3://bucket/key`).
    fn location(&self, key: &str) -> String;
}

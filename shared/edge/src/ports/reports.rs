//! Where report-snapshots puts its reports (docs/functions.md,
//! "report-snapshots"): the stack's report bucket. S3 implements it
//! ([`crate::aws::s3`]).

use std::path::Path;

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the report could not be stored at {key}: {message}")]
pub struct StoreError {
    pub key: String,
    pub message: String,
}

#[async_trait]
pub trait ReportStore: Send + Sync {
    /// Write the file at `file` to `key`, replacing what was there. A file,
    /// not bytes in memory: the report's files grow with the account and
    /// are written to the function's temporary storage, then streamed.
    async fn put(&self, key: &str, file: &Path, content_type: &str) -> Result<(), StoreError>;
    /// Where `key` is, for people (`s3://bucket/key`).
    fn location(&self, key: &str) -> String;
}

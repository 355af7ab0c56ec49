//! The report bucket: [`ReportStore`] on the S3 client.

use std::path::Path;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use crate::ports::reports::{ReportStore, StoreError};

#[derive(Debug, Clone)]
pub struct S3ReportStore {
    client: Client,
    bucket: String,
}

impl S3ReportStore {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// The store on a client of `sdk`'s configuration. Against a local
    /// endpoint (`AWS_ENDPOINT_URL`, the emulator) buckets are addressed by
    /// path: `bucket.127.0.0.1` resolves nowhere.
    pub fn for_bucket(sdk: &aws_config::SdkConfig, bucket: &str) -> Self {
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        Self::new(Client::from_conf(config), bucket)
    }
}

#[async_trait]
impl ReportStore for S3ReportStore {
    async fn put(&self, key: &str, file: &Path, content_type: &str) -> Result<(), StoreError> {
        let failed = |message: String| StoreError {
            key: key.to_string(),
            message,
        };
        // Read as it is sent, never whole in memory.
        let body = ByteStream::from_path(file)
            .await
            .map_err(|e| failed(format!("could not read {}: {e}", file.display())))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| failed(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))?;
        Ok(())
    }

    fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

//! The KMS adapter: naming keys. check-encryption resolves the aliases in
//! `ALLOWED_KMS_KEY_IDS`, and the AWS managed EBS key (`alias/aws/ebs`,
//! whose snapshots EC2 refuses to share), to key ARNs.

use async_trait::async_trait;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::Client;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("KMS DescribeKey failed: {message}")]
pub struct KmsError {
    pub message: String,
}

#[async_trait]
pub trait KeyDirectory: Send + Sync {
    /// The ARN of the key `key` names (an alias, key id or ARN); `None` when
    /// KMS does not know it.
    async fn key_arn(&self, key: &str) -> Result<Option<String>, KmsError>;
}

#[derive(Debug, Clone)]
pub struct KmsAdapter {
    client: Client,
}

impl KmsAdapter {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl KeyDirectory for KmsAdapter {
    async fn key_arn(&self, key: &str) -> Result<Option<String>, KmsError> {
        match self.client.describe_key().key_id(key).send().await {
            Ok(out) => Ok(out.key_metadata().and_then(|m| m.arn()).map(String::from)),
            Err(SdkError::ServiceError(e)) if e.err().code() == Some("NotFoundException") => {
                Ok(None)
            }
            Err(e) => Err(KmsError {
                message: aws_sdk_kms::error::DisplayErrorContext(&e).to_string(),
            }),
        }
    }
}

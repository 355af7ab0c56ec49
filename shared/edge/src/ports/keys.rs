//! Naming keys: check-encryption resolves the aliases in
//! `ALLOWED_KMS_KEY_IDS`, and the AWS managed EBS key (`alias/aws/ebs`,
//! whose snapshots EC2 refuses to share), to key ARNs. KMS implements it
//! ([`crate::aws::kms`]).

use async_trait::async_trait;

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

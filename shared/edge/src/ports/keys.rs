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

/// Whether snapshots under a key can be shared with an account so that it
/// can copy them (docs/operations.md, "A vault account").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shareable {
    Yes,
    /// An AWS managed key: EC2 refuses to share its snapshots at all.
    AwsManaged,
    /// Disabled, pending deletion...: the key's state.
    NotEnabled(String),
    /// The key policy does not name the account: it could not decrypt.
    AccountNotInPolicy,
    /// KMS does not know the key.
    Unknown,
}

#[async_trait]
pub trait KeySharing: Send + Sync {
    async fn shareable_with(&self, key: &str, account: &str) -> Result<Shareable, KmsError>;
}

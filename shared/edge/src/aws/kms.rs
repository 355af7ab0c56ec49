//! The KMS adapter: [`KeyDirectory`] on the SDK client.

use async_trait::async_trait;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::Client;

use crate::ports::keys::{KeyDirectory, KeySharing, KmsError, Shareable};

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

#[async_trait]
impl KeySharing for KmsAdapter {
    /// DescribeKey, then the key policy: the account must appear in it (as
    /// a principal, `arn:aws:iam::<account>:root` or a role of it). A
    /// policy that grants the account through a condition only, or an
    /// organisation-wide grant, is not recognised: the check then reports
    /// the key, and the person who reads it decides.
    async fn shareable_with(&self, key: &str, account: &str) -> Result<Shareable, KmsError> {
        let error = |e: &dyn std::fmt::Display| KmsError {
            message: e.to_string(),
        };
        let metadata = match self.client.describe_key().key_id(key).send().await {
            Ok(out) => out.key_metadata().cloned(),
            Err(SdkError::ServiceError(e)) if e.err().code() == Some("NotFoundException") => {
                return Ok(Shareable::Unknown)
            }
            Err(e) => return Err(error(&aws_sdk_kms::error::DisplayErrorContext(&e))),
        };
        let Some(metadata) = metadata else {
            return Ok(Shareable::Unknown);
        };
        if metadata.key_manager() == Some(&aws_sdk_kms::types::KeyManagerType::Aws) {
            return Ok(Shareable::AwsManaged);
        }
        if let Some(state) = metadata
            .key_state()
            .filter(|s| **s != aws_sdk_kms::types::KeyState::Enabled)
        {
            return Ok(Shareable::NotEnabled(state.as_str().to_string()));
        }
        let policy = self
            .client
            .get_key_policy()
            .key_id(metadata.key_id())
            .policy_name("default")
            .send()
            .await
            .map_err(|e| error(&aws_sdk_kms::error::DisplayErrorContext(&e)))?;
        Ok(if policy.policy().unwrap_or_default().contains(account) {
            Shareable::Yes
        } else {
            Shareable::AccountNotInPolicy
        })
    }
}

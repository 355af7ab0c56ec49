//! The KMS adapter: [`KeyDirectory`] on the SDK client.

use async_trait::async_trait;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::Client;

use crate::ports::keys::{KeyDirectory, KmsError};

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

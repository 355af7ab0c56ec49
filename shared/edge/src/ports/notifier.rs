//! Sending a notification to the project's topic: the port every function
//! publishes through. SNS implements it ([`crate::aws::sns`]); without a
//! topic the notification goes to the log.

use async_trait::async_trait;

use ebs_lifecycle_core::notify::Notification;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SNS Publish failed: {code}: {message}")]
pub struct NotifyError {
    pub code: String,
    pub message: String,
}

/// Sending a notification to the project's topic.
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn publish(&self, notification: &Notification) -> Result<(), NotifyError>;
}

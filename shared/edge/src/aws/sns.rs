//! The [`Notifier`] port on SNS, and on the log when no topic is set.

use async_trait::async_trait;
use aws_sdk_sns::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sns::Client;

use ebs_lifecycle_core::notify::Notification;

use crate::ports::notifier::{Notifier, NotifyError};

/// Publishes to the configured SNS topic.
#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(client: Client, topic_arn: String) -> Self {
        Self { client, topic_arn }
    }
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn publish(&self, notification: &Notification) -> Result<(), NotifyError> {
        let rendered = notification.render();
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(rendered.subject)
            .message(rendered.message);
        for (name, value) in rendered.attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| NotifyError {
                    code: "InvalidAttribute".into(),
                    message: e.to_string(),
                })?;
            request = request.message_attributes(name, value);
        }
        request.send().await.map_err(|e| NotifyError {
            code: e.code().unwrap_or("Transport").to_string(),
            message: e
                .message()
                .map(String::from)
                .unwrap_or_else(|| DisplayErrorContext(&e).to_string()),
        })?;
        Ok(())
    }
}

/// Used when `TOPIC_ARN` is unset: the notification goes to the log only.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn publish(&self, notification: &Notification) -> Result<(), NotifyError> {
        let rendered = notification.render();
        tracing::info!(
            kind = notification.kind.as_str(),
            severity = notification.severity.as_str(),
            subject = %rendered.subject,
            message = %rendered.message,
            "notification (TOPIC_ARN unset, not published)"
        );
        Ok(())
    }
}

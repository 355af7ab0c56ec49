//! The SSM Run Command adapter: [`crate::ports::commands::CommandRunner`] on
//! the SDK client, for the pre and post commands of an
//! application-consistent snapshot.
//!
//! An instance without an online SSM agent is not a managed instance:
//! SendCommand refuses it with `InvalidInstanceId`, which becomes
//! [`SsmError::NotManaged`] (no separate DescribeInstanceInformation call).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::types::CommandInvocationStatus;
use aws_sdk_ssm::Client;

use ebs_lifecycle_core::text::output_excerpt;

use super::RetryOnlyThrottling;
use crate::ports::commands::*;

impl SsmError {
    pub(crate) fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let message = err.message().unwrap_or_default().to_string();
        match err.code() {
            Some("InvalidInstanceId") => Self::NotManaged { message },
            Some(code) => Self::Service {
                operation,
                code: code.into(),
                message,
            },
            None => Self::Transport {
                operation,
                message: aws_sdk_ssm::error::DisplayErrorContext(&err).to_string(),
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct SsmAdapter {
    client: Client,
}

impl SsmAdapter {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl CommandRunner for SsmAdapter {
    async fn send(
        &self,
        instance_id: &str,
        command: &InstanceCommand,
        timeout: Duration,
    ) -> Result<String, SsmError> {
        let request = self
            .client
            .send_command()
            .instance_ids(instance_id)
            .comment("ebs-snapshot-lifecycle: application-consistent snapshot")
            // SSM's minimum delivery timeout is 30 s.
            .timeout_seconds(timeout.as_secs().clamp(30, 2_592_000) as i32);
        let request = match command {
            InstanceCommand::Shell(script) => request
                .document_name(SHELL_DOCUMENT)
                .parameters("commands", vec![script.clone()])
                .parameters(
                    "executionTimeout",
                    vec![timeout.as_secs().max(1).to_string()],
                ),
            InstanceCommand::Document { name, phase } => request
                .document_name(name)
                .parameters("command", vec![(*phase).to_string()]),
            InstanceCommand::StackDocument { name, parameters } => parameters
                .iter()
                .fold(request.document_name(name), |request, (key, value)| {
                    request.parameters(*key, vec![value.clone()])
                }),
        };
        let out = request
            .customize()
            // A second SendCommand after a lost answer would freeze twice.
            .config_override(
                aws_sdk_ssm::config::Builder::default().retry_classifier(RetryOnlyThrottling),
            )
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(s) if s.is_invalid_instance_id() => SsmError::NotManaged {
                    message: s.message().unwrap_or_default().to_string(),
                },
                _ => SsmError::from_sdk("SendCommand", e),
            })?;
        out.command()
            .and_then(|c| c.command_id())
            .map(String::from)
            .ok_or_else(|| SsmError::Transport {
                operation: "SendCommand",
                message: "SSM answered without a command id".into(),
            })
    }

    async fn status(&self, command_id: &str, instance_id: &str) -> Result<CommandStatus, SsmError> {
        let out = match self
            .client
            .get_command_invocation()
            .command_id(command_id)
            .instance_id(instance_id)
            .send()
            .await
        {
            Ok(out) => out,
            // Right after SendCommand the invocation may not exist yet.
            Err(SdkError::ServiceError(e)) if e.err().code() == Some("InvocationDoesNotExist") => {
                return Ok(CommandStatus::Running)
            }
            Err(e) => return Err(SsmError::from_sdk("GetCommandInvocation", e)),
        };
        let output = || {
            let text = format!(
                "{}\n{}",
                out.standard_output_content().unwrap_or_default(),
                out.standard_error_content().unwrap_or_default()
            );
            output_excerpt(&text)
        };
        Ok(match out.status() {
            Some(CommandInvocationStatus::Success) => CommandStatus::Succeeded,
            Some(
                CommandInvocationStatus::Pending
                | CommandInvocationStatus::InProgress
                | CommandInvocationStatus::Delayed,
            )
            | None => CommandStatus::Running,
            Some(other) => CommandStatus::Failed {
                output: format!("{}: {}", other.as_str(), output()),
            },
        })
    }

    async fn cancel(&self, command_id: &str, instance_id: &str) -> Result<(), SsmError> {
        self.client
            .cancel_command()
            .command_id(command_id)
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| SsmError::from_sdk("CancelCommand", e))?;
        Ok(())
    }
}

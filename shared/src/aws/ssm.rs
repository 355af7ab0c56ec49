//! The SSM Run Command adapter: running the pre and post commands of an
//! application-consistent snapshot on an instance, and waiting for them.
//!
//! An instance without an online SSM agent is not a managed instance:
//! SendCommand refuses it with `InvalidInstanceId`, which becomes
//! [`SsmError::NotManaged`] (no separate DescribeInstanceInformation call).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::types::CommandInvocationStatus;
use aws_sdk_ssm::Client;
use tokio::sync::Mutex;
use tokio::time::{Interval, MissedTickBehavior};

use super::RetryOnlyThrottling;
use crate::consistency::{output_excerpt, CommandOutcome};
use crate::deadline::Deadline;

/// The document that runs shell commands (`commands` parameter).
pub const SHELL_DOCUMENT: &str = "AWS-RunShellScript";

/// What to run on the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceCommand {
    /// A shell script through [`SHELL_DOCUMENT`].
    Shell(String),
    /// A document of the user's, with `command` = `pre-script` or
    /// `post-script` (Data Lifecycle Manager's convention).
    Document { name: String, phase: &'static str },
}

/// A command's state on one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandStatus {
    Running,
    Succeeded,
    /// Failed, cancelled or timed out on the instance; its output (stdout
    /// then stderr).
    Failed {
        output: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsmError {
    #[error("the instance is not managed by SSM (no agent online): {message}")]
    NotManaged { message: String },
    #[error("SSM {operation} failed: {code}: {message}")]
    Service {
        operation: &'static str,
        code: String,
        message: String,
    },
    #[error("SSM {operation} failed without an answer: {message}")]
    Transport {
        operation: &'static str,
        message: String,
    },
}

impl SsmError {
    fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
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

#[async_trait]
pub trait CommandRunner: Send + Sync {
    /// Start `command` on `instance_id`; SSM gives up on it after
    /// `timeout`. Returns the command id.
    async fn send(
        &self,
        instance_id: &str,
        command: &InstanceCommand,
        timeout: Duration,
    ) -> Result<String, SsmError>;

    /// The command's state on the instance.
    async fn status(&self, command_id: &str, instance_id: &str) -> Result<CommandStatus, SsmError>;

    /// Cancel a command not yet finished on the instance.
    async fn cancel(&self, command_id: &str, instance_id: &str) -> Result<(), SsmError>;
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

/// A [`CommandRunner`] whose calls, from every task of a run, are spaced
/// at least `spacing` apart: SSM's Run Command APIs are throttled per
/// account and region, and the account's other users of SSM share the
/// budget. A run over many instances goes at that steady rate; the few
/// calls of an ordinary run barely wait.
pub struct PacedRunner<'a> {
    inner: &'a dyn CommandRunner,
    ticks: Mutex<Interval>,
}

impl<'a> PacedRunner<'a> {
    pub fn new(inner: &'a dyn CommandRunner, spacing: Duration) -> Self {
        // An interval of zero panics; a microsecond is "no pacing".
        let mut ticks = tokio::time::interval(spacing.max(Duration::from_micros(1)));
        // After a quiet spell, go at once and then at the steady rate again
        // (no burst of catch-up ticks).
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            inner,
            ticks: Mutex::new(ticks),
        }
    }

    async fn turn(&self) {
        self.ticks.lock().await.tick().await;
    }
}

#[async_trait]
impl CommandRunner for PacedRunner<'_> {
    async fn send(
        &self,
        instance_id: &str,
        command: &InstanceCommand,
        timeout: Duration,
    ) -> Result<String, SsmError> {
        self.turn().await;
        self.inner.send(instance_id, command, timeout).await
    }

    async fn status(&self, command_id: &str, instance_id: &str) -> Result<CommandStatus, SsmError> {
        self.turn().await;
        self.inner.status(command_id, instance_id).await
    }

    async fn cancel(&self, command_id: &str, instance_id: &str) -> Result<(), SsmError> {
        self.turn().await;
        self.inner.cancel(command_id, instance_id).await
    }
}

/// Send a command (the pre or the post command) and wait for it, polling
/// every `poll`, for at most `timeout` (the policy's `command_timeout`) and
/// never past the invocation's deadline. The command is sent even when the
/// deadline is near: a post command must never be skipped. A command given
/// up on is cancelled.
pub async fn run_command(
    runner: &dyn CommandRunner,
    instance_id: &str,
    command: &InstanceCommand,
    timeout: Duration,
    deadline: Deadline,
    poll: Duration,
) -> CommandOutcome {
    let id = match runner.send(instance_id, command, timeout).await {
        Ok(id) => id,
        Err(SsmError::NotManaged { .. }) => return CommandOutcome::NotManaged,
        Err(e) => {
            return CommandOutcome::Failed {
                output: output_excerpt(&e.to_string()),
            }
        }
    };
    let give_up = tokio::time::Instant::now() + timeout;
    loop {
        match runner.status(&id, instance_id).await {
            Ok(CommandStatus::Succeeded) => return CommandOutcome::Succeeded,
            Ok(CommandStatus::Failed { output }) => return CommandOutcome::Failed { output },
            Ok(CommandStatus::Running) => {}
            // One unreadable status is not the command's failure: keep
            // polling until the timeout says otherwise.
            Err(e) => {
                tracing::warn!(instance = instance_id, error = %e, "reading the pre command's status failed")
            }
        }
        if tokio::time::Instant::now() + poll >= give_up || deadline.is_near() {
            // A freeze delivered late must not run after the thaw: cancel
            // what was given up on (best effort; the watchdog still stands).
            if let Err(e) = runner.cancel(&id, instance_id).await {
                tracing::warn!(instance = instance_id, error = %e, "could not cancel the command given up on");
            }
            return CommandOutcome::TimedOut;
        }
        tokio::time::sleep(poll).await;
    }
}

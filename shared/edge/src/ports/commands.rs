//! Running commands on instances (SSM Run Command): the port
//! create-snapshots' `application` policies need, its request and status
//! types and its error kinds. The SDK implementation is [`crate::aws::ssm`].

use std::time::Duration;

use async_trait::async_trait;

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
    /// The stack's own freeze-and-thaw document (`CONSISTENCY_DOCUMENT`)
    /// with its parameters (`action`, `serials`, `devices`, `watchdog`),
    /// each checked by the document's own `allowedPattern`.
    StackDocument {
        name: String,
        parameters: Vec<(&'static str, String)>,
    },
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

//! Running a pre or post command to its end: sent, polled, cancelled when
//! given up on, never past the invocation's deadline; and the pacing of the
//! Run Command calls every task of a run shares. Logic over the
//! [`CommandRunner`] port; no SDK here.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::{Interval, MissedTickBehavior};

use ebs_lifecycle_core::consistency::CommandOutcome;
use ebs_lifecycle_core::text::output_excerpt;

use crate::lambda::deadline::Deadline;
use crate::ports::commands::*;

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

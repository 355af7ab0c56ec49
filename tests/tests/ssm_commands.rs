//! The SSM side of application-consistent snapshots (issue 10 groundwork):
//! the pre and post commands against moto's Run Command (which records each
//! command and reports success), and with aws-smithy-mocks the answers moto
//! cannot give: a failed pre command, one that never finishes, an instance
//! without an SSM agent.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput;
use aws_sdk_ssm::operation::send_command::{SendCommandError, SendCommandOutput};
use aws_sdk_ssm::types::{Command, CommandInvocationStatus};
use aws_smithy_mocks::{mock, Rule, RuleMode};

use ebs_lifecycle::aws::ssm::SsmAdapter;

use ebs_lifecycle::services::commands::run_command;

use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::ports::commands::{CommandRunner, InstanceCommand, SHELL_DOCUMENT};
use ebs_lifecycle_core::consistency::{
    freeze_script, thaw_script, CommandOutcome, FrozenVolume, FREEZE_WATCHDOG,
};
use integration_tests::*;

fn plenty() -> Deadline {
    Deadline::after(Duration::from_secs(600))
}

#[tokio::test]
async fn freeze_then_thaw_are_sent_to_the_instance_in_order_with_their_exact_text() {
    let moto = Moto::start();
    let (instance, root) = run_instance(&moto.ec2(), &[("Backup", "db")]).await;
    let runner = SsmAdapter::new(moto.ssm());
    let freeze = freeze_script(
        &[FrozenVolume {
            volume_id: root.clone(),
            device: "/dev/sda1".into(),
        }],
        FREEZE_WATCHDOG,
    )
    .unwrap();

    let pre = run_command(
        &runner,
        &instance,
        &InstanceCommand::Shell(freeze.clone()),
        Duration::from_secs(60),
        plenty(),
        Duration::from_millis(50),
    )
    .await;
    assert_eq!(pre, CommandOutcome::Succeeded);
    runner
        .send(
            &instance,
            &InstanceCommand::Shell(thaw_script()),
            Duration::from_secs(60),
        )
        .await
        .unwrap();

    let sent = moto.commands_sent().await;
    assert_eq!(
        sent,
        vec![
            (
                SHELL_DOCUMENT.to_string(),
                vec![instance.clone()],
                vec![freeze]
            ),
            (
                SHELL_DOCUMENT.to_string(),
                vec![instance.clone()],
                vec![thaw_script()]
            ),
        ]
    );
}

fn sent() -> Rule {
    mock!(aws_sdk_ssm::Client::send_command).then_output(|| {
        SendCommandOutput::builder()
            .command(Command::builder().command_id("cmd-1").build())
            .build()
    })
}

async fn pre_with(rules: &[&Rule], timeout: Duration) -> CommandOutcome {
    let runner = SsmAdapter::new(mocked_ssm(RuleMode::MatchAny, rules));
    run_command(
        &runner,
        "i-0123",
        &InstanceCommand::Shell("sync".into()),
        timeout,
        plenty(),
        Duration::from_millis(20),
    )
    .await
}

#[tokio::test]
async fn a_failed_pre_command_reports_the_end_of_its_output() {
    let send = sent();
    let failed = mock!(aws_sdk_ssm::Client::get_command_invocation).then_output(|| {
        GetCommandInvocationOutput::builder()
            .status(CommandInvocationStatus::Failed)
            .standard_output_content("syncing\n")
            .standard_error_content("fsfreeze: /data: Operation not supported")
            .build()
    });
    let CommandOutcome::Failed { output } =
        pre_with(&[&send, &failed], Duration::from_secs(5)).await
    else {
        panic!("expected a failure")
    };
    assert!(output.starts_with("Failed: "), "{output}");
    assert!(
        output.ends_with("fsfreeze: /data: Operation not supported"),
        "{output}"
    );
}

#[tokio::test]
async fn a_pre_command_that_never_finishes_times_out_on_time() {
    let send = sent();
    let running = mock!(aws_sdk_ssm::Client::get_command_invocation).then_output(|| {
        GetCommandInvocationOutput::builder()
            .status(CommandInvocationStatus::InProgress)
            .build()
    });
    let cancel = mock!(aws_sdk_ssm::Client::cancel_command).then_output(|| {
        aws_sdk_ssm::operation::cancel_command::CancelCommandOutput::builder().build()
    });
    let started = Instant::now();
    let pre = pre_with(&[&send, &running, &cancel], Duration::from_millis(300)).await;
    assert_eq!(pre, CommandOutcome::TimedOut);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(running.num_calls() >= 3, "it kept polling");
    assert_eq!(cancel.num_calls(), 1, "given up on, so cancelled");
}

#[tokio::test]
async fn an_instance_without_an_agent_is_not_managed() {
    let refused = mock!(aws_sdk_ssm::Client::send_command).then_error(|| {
        SendCommandError::InvalidInstanceId(
            aws_sdk_ssm::types::error::InvalidInstanceId::builder()
                .message("Instances [[i-0123]] not in a valid state for account")
                .build(),
        )
    });
    assert_eq!(
        pre_with(&[&refused], Duration::from_secs(5)).await,
        CommandOutcome::NotManaged
    );
}

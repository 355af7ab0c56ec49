//! Adapters at the edge: the only place that knows the AWS SDK.
//!
//! `ebs` (the EBS direct APIs), `ec2`, `kms`, `ledger` (DynamoDB), `s3` (the report bucket), `sns` and `ssm` implement the ports of [`crate::ports`] on
//! the SDK clients; `environment` builds them all once per execution
//! environment. This file builds the shared SDK configuration, with a
//! deliberate retry policy.

pub mod ebs;
pub mod ec2;
pub mod environment;
pub mod kms;
pub mod ledger;
pub mod s3;
pub mod sns;
pub mod ssm;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::operation::copy_snapshot::CopySnapshotError;
use aws_sdk_ec2::operation::create_snapshot::CreateSnapshotError;
use aws_sdk_ec2::operation::create_snapshots::CreateSnapshotsError;
use aws_sdk_ssm::operation::send_command::SendCommandError;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction};

/// Attempts per call, the first included. EC2's token buckets refill within
/// seconds, so five attempts with exponential backoff (jittered, from 1 s by
/// default, capped at 20 s) ride out a burst of `RequestLimitExceeded`
/// without eating a large part of the 15-minute invocation.
pub const MAX_ATTEMPTS: u32 = 5;
/// One attempt may take this long before it is abandoned and retried.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// One call, retries included, may take this long.
pub(crate) const OPERATION_TIMEOUT: Duration = Duration::from_secs(90);

/// The retry policy every client uses: standard mode (the SDK retries
/// throttling, 5xx and transient transport errors with exponential backoff
/// and a client-side retry quota so a failing region is not hammered).
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS)
}

/// Load the SDK configuration from the environment (region, credentials,
/// `AWS_ENDPOINT_URL` for the local emulator) with our retry and timeout policy.
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry_config())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .load()
        .await
}

/// Error codes (EC2's and SSM's) that mean "refused for rate, nothing done":
/// safe to retry.
const THROTTLING_CODES: [&str; 3] = ["RequestLimitExceeded", "Throttling", "ThrottlingException"];

/// The retry rule for calls that act and carry no idempotency token
/// (CreateSnapshot, CreateSnapshots, CopySnapshot, SSM SendCommand): retry
/// only when the service said it throttled the call. A timeout, a reset
/// connection or a 5xx may come after the service acted; the SDK's default
/// retry would then make a second snapshot, or send a second freeze. Such a
/// volume is reported instead, and the next tick looks for the slot's
/// snapshot before creating (see create-snapshots).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RetryOnlyThrottling;

impl ClassifyRetry for RetryOnlyThrottling {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(Err(error)) = ctx.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        let code = error.as_operation_error().and_then(|e| {
            e.downcast_ref::<CreateSnapshotError>()
                .and_then(|e| e.code())
                .or_else(|| {
                    e.downcast_ref::<CreateSnapshotsError>()
                        .and_then(|e| e.code())
                })
                .or_else(|| e.downcast_ref::<CopySnapshotError>().and_then(|e| e.code()))
                .or_else(|| e.downcast_ref::<SendCommandError>().and_then(|e| e.code()))
        });
        match code {
            Some(code) if THROTTLING_CODES.contains(&code) => RetryAction::NoActionIndicated,
            _ => RetryAction::RetryForbidden,
        }
    }

    fn name(&self) -> &'static str {
        "RetryOnlyThrottling"
    }
}

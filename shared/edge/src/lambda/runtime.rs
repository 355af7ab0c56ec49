//! Start-up shared by the five binaries: logging, SDK clients built once per
//! execution environment, configuration validated before the first event,
//! and the Lambda runtime loop.
//!
//! A bad configuration does not crash-loop the function. It is logged and
//! published once as a `config-error` notification, and every invocation then
//! fails with error type `ConfigError` (so it lands in the failure
//! destination and the errors alarm), doing no AWS work at all.

use std::future::Future;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::{json, Value};

use crate::aws::ec2::Ec2Adapter;
use crate::aws::kms::KmsAdapter;
use crate::aws::ledger::DynamoLedger;
use crate::aws::sns::{LogNotifier, SnsNotifier};
use crate::aws::ssm::SsmAdapter;
use crate::config::{Config, ConfigError};
use crate::ports::notifier::Notifier;
use ebs_lifecycle_core::notify::{DailyMemo, Notification, NotificationKind, Severity};

/// What a function needs, built once and reused by every invocation.
pub struct Environment {
    pub function: &'static str,
    pub config: Config,
    pub ec2: Ec2Adapter,
    /// The report bucket (report-snapshots, `REPORT_BUCKET`).
    pub reports: Option<crate::aws::s3::S3ReportStore>,
    /// The EBS direct APIs (report-snapshots' unique bytes), paced.
    pub blocks: crate::aws::ebs::EbsBlocks,
    /// EC2 in each region a policy copies to (copy-snapshots), by region.
    pub destinations: std::collections::BTreeMap<String, Ec2Adapter>,
    pub kms: KmsAdapter,
    /// SSM Run Command (create-snapshots' `application` policies).
    pub ssm: SsmAdapter,
    /// The stack's own record (DynamoDB, `LEDGER_TABLE`).
    pub ledger: DynamoLedger,
    pub notifier: Box<dyn Notifier>,
    /// Conditions notified in the last day by this execution environment (a repeating
    /// condition is notified once a day).
    pub memo: DailyMemo,
}

fn notifier_for(sdk: &aws_config::SdkConfig, topic_arn: Option<&str>) -> Box<dyn Notifier> {
    match topic_arn {
        Some(arn) => Box::new(SnsNotifier::new(
            aws_sdk_sns::Client::new(sdk),
            arn.to_string(),
        )),
        None => Box::new(LogNotifier),
    }
}

/// EC2 in another region, with everything else (credentials, endpoint,
/// retries) as the function's own.
fn ec2_in(sdk: &aws_config::SdkConfig, region: &str) -> Ec2Adapter {
    let config = aws_sdk_ec2::config::Builder::from(sdk)
        .region(aws_config::Region::new(region.to_string()))
        .build();
    Ec2Adapter::new(aws_sdk_ec2::Client::from_conf(config))
}

/// Run `handler` for every invocation of the function named `function`,
/// with the ports `ports` takes from the environment once
/// ([`crate::lambda::function::serve`] is the one caller).
pub(crate) async fn serve<P, H, Fut>(
    function: &'static str,
    ports: impl FnOnce(&'static Environment) -> P,
    handler: H,
) -> Result<(), lambda_runtime::Error>
where
    P: Copy + 'static,
    H: Fn(P, &'static Environment, LambdaEvent<Value>) -> Fut,
    Fut: Future<Output = Result<Value, Diagnostic>>,
{
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = crate::aws::load_sdk_config().await;
    match Config::from_env() {
        Ok(config) => {
            let env: &'static Environment = Box::leak(Box::new(Environment {
                function,
                notifier: notifier_for(&sdk, config.topic_arn.as_deref()),
                ec2: Ec2Adapter::new(aws_sdk_ec2::Client::new(&sdk)),
                reports: config
                    .report_bucket
                    .as_ref()
                    .map(|bucket| crate::aws::s3::S3ReportStore::for_bucket(&sdk, bucket)),
                destinations: config
                    .policies
                    .copy_regions()
                    .into_iter()
                    .map(|region| (region.to_string(), ec2_in(&sdk, region)))
                    .collect(),
                blocks: crate::aws::ebs::EbsBlocks::new(
                    aws_sdk_ebs::Client::new(&sdk),
                    crate::aws::ebs::PACING,
                ),
                kms: KmsAdapter::new(aws_sdk_kms::Client::new(&sdk)),
                ssm: SsmAdapter::new(aws_sdk_ssm::Client::new(&sdk)),
                ledger: DynamoLedger::new(
                    aws_sdk_dynamodb::Client::new(&sdk),
                    config.ledger_table.clone(),
                ),
                memo: DailyMemo::new(),
                config,
            }));
            let ports = ports(env);
            lambda_runtime::run(service_fn(move |event| handler(ports, env, event))).await
        }
        Err(error) => {
            report_config_error(&sdk, function, &error).await;
            let diagnostic = Diagnostic {
                error_type: "ConfigError".into(),
                error_message: error.to_string(),
            };
            lambda_runtime::run(service_fn(move |_event: LambdaEvent<Value>| {
                let diagnostic = diagnostic.clone();
                async move { Err::<Value, Diagnostic>(diagnostic) }
            }))
            .await
        }
    }
}

/// Log the configuration error and, if a topic is known, publish it. The
/// topic and deployment are read raw here: the validated config is exactly
/// what is missing.
async fn report_config_error(sdk: &aws_config::SdkConfig, function: &str, error: &ConfigError) {
    tracing::error!(
        function,
        variable = error.variable(),
        error = %error,
        "configuration is invalid; the function does nothing until it is fixed"
    );
    let raw = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let topic = raw("TOPIC_ARN").filter(|_| error.variable() != "TOPIC_ARN");
    let notification = Notification {
        kind: NotificationKind::ConfigError,
        severity: Severity::Critical,
        deployment: raw("DEPLOYMENT_NAME").unwrap_or_else(|| "unknown-deployment".into()),
        summary: format!("{function} is misconfigured: {}", error.variable()),
        details: json!({ "function": function, "variable": error.variable(), "error": error.to_string() }),
    };
    if let Err(e) = notifier_for(sdk, topic.as_deref())
        .publish(&notification)
        .await
    {
        tracing::error!(error = %e, "could not publish the config-error notification");
    }
}

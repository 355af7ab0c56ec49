//! What a function needs from AWS, built once per execution environment:
//! the shared SDK configuration's clients, wrapped in the adapters that
//! implement the ports.

use std::collections::BTreeMap;

use crate::aws::ebs::EbsBlocks;
use crate::aws::ec2::Ec2Adapter;
use crate::aws::kms::KmsAdapter;
use crate::aws::ledger::DynamoLedger;
use crate::aws::s3::S3ReportStore;
use crate::aws::sns::{LogNotifier, SnsNotifier};
use crate::aws::ssm::SsmAdapter;
use crate::config::Config;
use crate::ports::notifier::Notifier;
use ebs_lifecycle_core::notify::DailyMemo;

/// What a function needs, built once and reused by every invocation.
pub struct Environment {
    pub function: &'static str,
    pub config: Config,
    pub ec2: Ec2Adapter,
    /// The report bucket (report-snapshots, `REPORT_BUCKET`).
    pub reports: Option<S3ReportStore>,
    /// The EBS direct APIs (report-snapshots' unique bytes), paced.
    pub blocks: EbsBlocks,
    /// EC2 in each region a policy copies to (copy-snapshots), by region.
    pub destinations: BTreeMap<String, Ec2Adapter>,
    /// The EBS direct APIs in each of those regions (verify-restores'
    /// drills of the copies there), paced as `blocks`.
    pub destination_blocks: BTreeMap<String, EbsBlocks>,
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

pub(crate) fn notifier_for(
    sdk: &aws_config::SdkConfig,
    topic_arn: Option<&str>,
) -> Box<dyn Notifier> {
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
/// EC2 in `region`, on the same credentials and settings (a copy region;
/// the command line's `--from`).
pub fn ec2_in(sdk: &aws_config::SdkConfig, region: &str) -> Ec2Adapter {
    let config = aws_sdk_ec2::config::Builder::from(sdk)
        .region(aws_config::Region::new(region.to_string()))
        .build();
    Ec2Adapter::new(aws_sdk_ec2::Client::from_conf(config))
}

/// The EBS direct APIs in `region`, paced as every block reader is.
pub fn ebs_in(sdk: &aws_config::SdkConfig, region: &str) -> EbsBlocks {
    let config = aws_sdk_ebs::config::Builder::from(sdk)
        .region(aws_config::Region::new(region.to_string()))
        .build();
    EbsBlocks::new(
        aws_sdk_ebs::Client::from_conf(config),
        crate::aws::ebs::PACING,
    )
}

impl Environment {
    /// The adapters of the function named `function`, on clients built from
    /// `sdk`, for the validated `config`.
    pub(crate) fn build(
        function: &'static str,
        sdk: &aws_config::SdkConfig,
        config: Config,
    ) -> Self {
        Environment {
            function,
            notifier: notifier_for(sdk, config.topic_arn.as_deref()),
            ec2: Ec2Adapter::new(aws_sdk_ec2::Client::new(sdk)),
            reports: config
                .report_bucket
                .as_ref()
                .map(|bucket| S3ReportStore::for_bucket(sdk, bucket)),
            destinations: config
                .policies
                .copy_regions()
                .into_iter()
                .map(|region| (region.to_string(), ec2_in(sdk, region)))
                .collect(),
            destination_blocks: config
                .policies
                .copy_regions()
                .into_iter()
                .map(|region| (region.to_string(), ebs_in(sdk, region)))
                .collect(),
            blocks: EbsBlocks::new(aws_sdk_ebs::Client::new(sdk), crate::aws::ebs::PACING),
            kms: KmsAdapter::new(aws_sdk_kms::Client::new(sdk)),
            ssm: SsmAdapter::new(aws_sdk_ssm::Client::new(sdk)),
            ledger: DynamoLedger::new(
                aws_sdk_dynamodb::Client::new(sdk),
                config.ledger_table.clone(),
            ),
            memo: DailyMemo::new(),
            config,
        }
    }
}

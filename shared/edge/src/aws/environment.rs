//! What a function needs from AWS, built once per execution environment:
//! the shared SDK configuration's clients, wrapped in the adapters that
//! implement the ports; those not every function needs are built on first
//! use, so a function's package holds only the clients it uses.

use std::collections::BTreeMap;
use std::sync::OnceLock;

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
///
/// Every function uses EC2, the ledger and the notifier, so those are built
/// at start-up. The other clients are built on first use (a function's
/// `main` asks for them once, when it wires its ports): a function that never
/// asks for S3, KMS, SSM or the EBS direct APIs never constructs those
/// clients, and the linker leaves their code out of its package
/// (docs/operations.md, "Package sizes").
pub struct Environment {
    pub function: &'static str,
    pub config: Config,
    pub ec2: Ec2Adapter,
    /// The stack's own record (DynamoDB, `LEDGER_TABLE`).
    pub ledger: DynamoLedger,
    pub notifier: Box<dyn Notifier>,
    /// Conditions notified in the last day by this execution environment (a repeating
    /// condition is notified once a day).
    pub memo: DailyMemo,
    sdk: aws_config::SdkConfig,
    reports: OnceLock<Option<S3ReportStore>>,
    blocks: OnceLock<EbsBlocks>,
    destinations: OnceLock<BTreeMap<String, Ec2Adapter>>,
    destination_blocks: OnceLock<BTreeMap<String, EbsBlocks>>,
    kms: OnceLock<KmsAdapter>,
    ssm: OnceLock<SsmAdapter>,
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
            ledger: DynamoLedger::new(
                aws_sdk_dynamodb::Client::new(sdk),
                config.ledger_table.clone(),
            ),
            memo: DailyMemo::new(),
            config,
            sdk: sdk.clone(),
            reports: OnceLock::new(),
            blocks: OnceLock::new(),
            destinations: OnceLock::new(),
            destination_blocks: OnceLock::new(),
            kms: OnceLock::new(),
            ssm: OnceLock::new(),
        }
    }

    /// The report bucket (report-snapshots, `REPORT_BUCKET`), if one is set.
    pub fn reports(&self) -> Option<&S3ReportStore> {
        self.reports
            .get_or_init(|| {
                self.config
                    .report_bucket
                    .as_ref()
                    .map(|bucket| S3ReportStore::for_bucket(&self.sdk, bucket))
            })
            .as_ref()
    }

    /// The EBS direct APIs (the report's unique bytes, the drills' reads), paced.
    pub fn blocks(&self) -> &EbsBlocks {
        self.blocks.get_or_init(|| {
            EbsBlocks::new(aws_sdk_ebs::Client::new(&self.sdk), crate::aws::ebs::PACING)
        })
    }

    /// EC2 in each region a policy copies to (copy-snapshots, the drills of
    /// copies), by region.
    pub fn destinations(&self) -> &BTreeMap<String, Ec2Adapter> {
        self.destinations.get_or_init(|| {
            self.config
                .policies
                .copy_regions()
                .into_iter()
                .map(|region| (region.to_string(), ec2_in(&self.sdk, region)))
                .collect()
        })
    }

    /// The EBS direct APIs in each of those regions (verify-restores'
    /// drills of the copies there), paced as [`Self::blocks`].
    pub fn destination_blocks(&self) -> &BTreeMap<String, EbsBlocks> {
        self.destination_blocks.get_or_init(|| {
            self.config
                .policies
                .copy_regions()
                .into_iter()
                .map(|region| (region.to_string(), ebs_in(&self.sdk, region)))
                .collect()
        })
    }

    /// KMS (the keys of encryption and copies).
    pub fn kms(&self) -> &KmsAdapter {
        self.kms
            .get_or_init(|| KmsAdapter::new(aws_sdk_kms::Client::new(&self.sdk)))
    }

    /// SSM Run Command (create-snapshots' `application` policies).
    pub fn ssm(&self) -> &SsmAdapter {
        self.ssm
            .get_or_init(|| SsmAdapter::new(aws_sdk_ssm::Client::new(&self.sdk)))
    }
}

//! `ebs-lifecycle`, the operator's command-line tool (docs/restore.md).
//! It acts on what a deployment made with the same proof the functions
//! use (`ebs_lifecycle_core::ownership`): a tag never decides what it
//! restores.
//!
//! Layout:
//! - [`args`]: the command line (clap).
//! - [`restore`]: `restore volume`: choose the proven snapshot, make the
//!   volume, wait for it, attach it.
//! - [`instance`]: `restore instance`: every volume of an instance from
//!   one moment, swapped in at the same devices with `--replace`, all or
//!   nothing.
//! - [`explain`]: `explain <snapshot-id>`: the proof, the rules that keep
//!   it and what the next expiry does with it, holds, locks.
//! - [`holds`]: `hold` and `release`: ledger holds.
//! - [`verify`]: `verify <snapshot-id>`: one restore drill now.
//! - [`plan`]: `plan <policy file>`: what create and expire would do now.
//! - `run` (here): the stack's configuration from the arguments and STS,
//!   the adapters, the command, its output.

pub mod args;
pub mod explain;
pub mod holds;
pub mod instance;
pub mod plan;
pub mod restore;
pub mod verify;

use chrono::{DateTime, Utc};

use ebs_lifecycle::aws::ec2::Ec2Adapter;
use ebs_lifecycle::aws::environment::{ebs_in, ec2_in};
use ebs_lifecycle::aws::ledger::DynamoLedger;
use ebs_lifecycle::config::{Config, ConfigError};
use ebs_lifecycle_core::policy::Policies;

use args::{Cli, Command, Output, Restore};

/// Why a command did not do what it was asked (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("the stack's configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("who am I (STS GetCallerIdentity): {0}")]
    Identity(String),
    #[error(transparent)]
    Restore(#[from] restore::RestoreError),
    #[error(transparent)]
    Hold(#[from] holds::HoldCommandError),
    #[error(transparent)]
    Verify(#[from] verify::VerifyError),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error("{0}")]
    Io(String),
}

/// The AWS configuration: the default chain and `AWS_ENDPOINT_URL`, the
/// project's retries and timeouts, `--region` if given.
pub async fn aws_config(region: Option<String>) -> aws_config::SdkConfig {
    let sdk = ebs_lifecycle::aws::load_sdk_config().await;
    match region {
        Some(r) => sdk
            .into_builder()
            .region(aws_config::Region::new(r))
            .build(),
        None => sdk,
    }
}

/// Run the command; its result as it is printed (text or JSON).
/// `progress` gets lines for people while it waits.
pub async fn run(
    cli: &Cli,
    sdk: &aws_config::SdkConfig,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<String, CliError> {
    let now = Utc::now();
    match &cli.command {
        Command::Validate { file } => validate(cli, file),
        Command::Restore(Restore::Volume(args)) => {
            let stack = Stack::connect(cli, sdk).await?;
            let request = restore::VolumeRequest::from_args(args, now)?;
            let elsewhere = args.from.as_ref().map(|region| ec2_in(sdk, region));
            let there = elsewhere.as_ref().unwrap_or(&stack.ec2);
            let ports = restore::Ports {
                catalog: there,
                restorer: there,
                home: &stack.ec2,
                ledger: &stack.ledger,
            };
            let restored = restore::volume(ports, &stack.config, &request, now, progress).await?;
            Ok(match cli.output {
                Output::Json => restored.json().to_string(),
                Output::Text => restored.text(),
            })
        }
        Command::Restore(Restore::Instance(args)) => {
            let stack = Stack::connect(cli, sdk).await?;
            if !args.id.starts_with("i-") {
                return Err(CliError::Usage(format!(
                    "{}: give an instance id (i-…)",
                    args.id
                )));
            }
            let request = instance::InstanceRequest {
                instance_id: args.id.clone(),
                at: match &args.at {
                    Some(t) => parse_time("--at", t)?,
                    None => now,
                },
                replace: args.replace,
                stop: args.stop,
                allow_spread: args.allow_spread,
                exclude: args.exclude.clone(),
                dry_run: args.dry_run,
                wait: std::time::Duration::from_secs(args.wait_minutes.saturating_mul(60)),
                poll: std::time::Duration::from_secs(2),
            };
            let ports = instance::InstancePorts {
                volumes: restore::Ports {
                    catalog: &stack.ec2,
                    restorer: &stack.ec2,
                    home: &stack.ec2,
                    ledger: &stack.ledger,
                },
                inventory: &stack.ec2,
                instances: &stack.ec2,
            };
            let restored =
                instance::instance(ports, &stack.config, &request, now, progress).await?;
            Ok(match cli.output {
                Output::Json => restored.json().to_string(),
                Output::Text => restored.text(),
            })
        }
        Command::Hold(args) => {
            let stack = Stack::connect(cli, sdk).await?;
            let until = parse_time("--until", &args.until)?;
            let hold = holds::hold(
                &stack.ledger,
                &args.id,
                until,
                &args.reason,
                &stack.caller_arn,
                args.force,
                now,
            )
            .await?;
            Ok(match cli.output {
                Output::Json => serde_json::to_string(&hold).unwrap_or_default(),
                Output::Text => format!(
                    "held {} until {} ({})",
                    hold.resource_id,
                    ebs_lifecycle_core::tags::format_time(hold.until),
                    hold.reason
                ),
            })
        }
        Command::Explain { id } => {
            let stack = Stack::connect(cli, sdk).await?;
            let ports = restore::Ports {
                catalog: &stack.ec2,
                restorer: &stack.ec2,
                home: &stack.ec2,
                ledger: &stack.ledger,
            };
            let adapters: Vec<(String, Ec2Adapter)> = stack
                .config
                .policies
                .copy_regions()
                .into_iter()
                .map(|region| (region.to_string(), ec2_in(sdk, region)))
                .collect();
            let regions: std::collections::BTreeMap<
                String,
                &dyn ebs_lifecycle::ports::ec2::SnapshotCatalog,
            > = adapters
                .iter()
                .map(|(r, a)| {
                    (
                        r.clone(),
                        a as &dyn ebs_lifecycle::ports::ec2::SnapshotCatalog,
                    )
                })
                .collect();
            let beyond = explain::Beyond {
                regions: &regions,
                sharing: &stack.ec2,
            };
            let explained = explain::explain(
                ports,
                &stack.ec2,
                &stack.ledger,
                beyond,
                &stack.config,
                id,
                now,
            )
            .await?;
            Ok(match cli.output {
                Output::Json => explained.json().to_string(),
                Output::Text => explained.text(),
            })
        }
        Command::Verify {
            id,
            az,
            from,
            wait_minutes,
        } => {
            let stack = Stack::connect(cli, sdk).await?;
            if !id.starts_with("snap-") {
                return Err(CliError::Usage(format!(
                    "{id}: give a snapshot id (snap-…)"
                )));
            }
            let blocks = match from {
                Some(region) => ebs_in(sdk, region),
                None => ebs_lifecycle::aws::ebs::EbsBlocks::new(
                    aws_sdk_ebs::Client::new(sdk),
                    ebs_lifecycle::aws::ebs::PACING,
                ),
            };
            let elsewhere = from.as_ref().map(|region| ec2_in(sdk, region));
            let there = elsewhere.as_ref().unwrap_or(&stack.ec2);
            let ports = verify::VerifyPorts {
                restore: restore::Ports {
                    catalog: there,
                    restorer: there,
                    home: &stack.ec2,
                    ledger: &stack.ledger,
                },
                blocks: &blocks,
                drills: &stack.ledger,
            };
            progress(format!("drilling {id}"));
            let wait = std::time::Duration::from_secs(wait_minutes.saturating_mul(60));
            let outcome = verify::verify(
                ports,
                &stack.config,
                id,
                (from.clone(), az.clone()),
                wait,
                now,
            )
            .await?;
            Ok(match cli.output {
                Output::Json => verify::json(&outcome).to_string(),
                Output::Text => verify::text(&outcome),
            })
        }
        Command::Plan {
            file,
            at,
            max_deletions,
        } => {
            let at = match at {
                Some(t) => parse_time("--at", t)?,
                None => now,
            };
            let stack = Stack::connect_with(cli, sdk, Some(file)).await?;
            let ports = plan::PlanPorts {
                inventory: &stack.ec2,
                catalog: &stack.ec2,
                protections: &stack.ec2,
                ledger: cli
                    .ledger_table
                    .is_some()
                    .then_some(&stack.ledger as &dyn ebs_lifecycle::ports::ledger::Ledger),
            };
            progress(format!(
                "planning with {} for {} in {}",
                file.display(),
                stack.config.deployment_name(),
                stack.config.identity.region
            ));
            let mut config = stack.config.clone();
            if let Some(n) = max_deletions {
                config.max_deletions = *n;
            }
            let planned = plan::plan(ports, &config, at).await?;
            Ok(match cli.output {
                Output::Json => planned.json().to_string(),
                Output::Text => planned.text(),
            })
        }
        Command::Release { id } => {
            let stack = Stack::connect(cli, sdk).await?;
            holds::release(&stack.ledger, id).await?;
            Ok(match cli.output {
                Output::Json => serde_json::json!({"released": id}).to_string(),
                Output::Text => format!("released {id}"),
            })
        }
    }
}

/// The ledger table name the configuration of a plan without
/// `--ledger-table` carries: never read (the plan gets no ledger port).
const NO_LEDGER: &str = "ebs-lifecycle-no-ledger-given";

/// The deployment the command acts on: its configuration (as its
/// functions read it), its ledger, EC2 in its region, and who is asking.
struct Stack {
    config: Config,
    ledger: DynamoLedger,
    ec2: Ec2Adapter,
    caller_arn: String,
}

impl Stack {
    async fn connect(cli: &Cli, sdk: &aws_config::SdkConfig) -> Result<Self, CliError> {
        Self::connect_with(cli, sdk, None).await
    }

    /// `policies`: a policy document that stands for the stack's.
    async fn connect_with(
        cli: &Cli,
        sdk: &aws_config::SdkConfig,
        policies: Option<&std::path::Path>,
    ) -> Result<Self, CliError> {
        let me = aws_sdk_sts::Client::new(sdk)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| {
                CliError::Identity(aws_sdk_sts::error::DisplayErrorContext(e).to_string())
            })?;
        let config = stack_config(cli, sdk, me.account().unwrap_or_default(), policies)?;
        Ok(Self {
            ledger: DynamoLedger::new(
                aws_sdk_dynamodb::Client::new(sdk),
                config.ledger_table.clone(),
            ),
            ec2: Ec2Adapter::new(aws_sdk_ec2::Client::new(sdk)),
            config,
            caller_arn: me.arn().unwrap_or_default().to_string(),
        })
    }
}

/// An RFC 3339 time given on the command line.
pub(crate) fn parse_time(flag: &str, value: &str) -> Result<DateTime<Utc>, CliError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| CliError::Usage(format!("{flag} {value}: not an RFC 3339 time ({e})")))
}

/// The stack's configuration as its functions read it, from the
/// arguments: the same checks, the same error text.
fn stack_config(
    cli: &Cli,
    sdk: &aws_config::SdkConfig,
    account: &str,
    policies: Option<&std::path::Path>,
) -> Result<Config, CliError> {
    let stack = cli
        .stack
        .clone()
        .ok_or_else(|| CliError::Usage("--stack (or EBS_LIFECYCLE_STACK) is needed".into()))?;
    // A plan before the first deployment has no ledger to read (and reads
    // none while the deployment has no snapshot: `plan` says so if it must).
    let table = match (&cli.ledger_table, policies) {
        (None, Some(_)) => Some(NO_LEDGER.to_string()),
        (table, _) => table.clone(),
    };
    let table = table.ok_or_else(|| {
        CliError::Usage(
            "--ledger-table (or EBS_LIFECYCLE_LEDGER_TABLE: the stack's LedgerTableName output) is needed"
                .into(),
        )
    })?;
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .ok_or_else(|| CliError::Usage("no region: give --region or AWS_REGION".into()))?;
    let policies_file = policies.or(cli.policies.as_deref());
    let policies = match policies_file {
        Some(path) => Some(read(path)?),
        None => None,
    };
    let vars = [
        ("DEPLOYMENT_NAME", Some(stack)),
        ("ACCOUNT_ID", Some(account.to_string())),
        ("AWS_REGION", Some(region)),
        ("LEDGER_TABLE", Some(table)),
        ("POLICIES", policies),
        ("SELECTOR_TAG_KEY", Some(cli.selector_tag_key.clone())),
        ("DEFAULT_POLICY", cli.default_policy.clone()),
    ];
    let given = policies_file.is_some();
    let mut config = Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.clone())
    })?;
    if !given {
        // Not the built-in default the functions fall back to: the stack's
        // own policies may differ, and a wrong schedule would refuse its
        // snapshots. Without the document, no schedule is checked.
        config.policies = Policies::none();
    }
    Ok(config)
}

fn read(path: &std::path::Path) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::Io(format!("cannot read {}: {e}", path.display())))
}

/// `validate <file>`: the document parsed and checked as every function
/// checks `POLICIES` at start-up (the same error text), and the
/// Descriptions its policies give the stack checked against EC2's limit.
fn validate(cli: &Cli, file: &std::path::Path) -> Result<String, CliError> {
    let document = read(file)?;
    let stack = cli.stack.clone().unwrap_or_else(|| "ebs-lifecycle".into());
    let vars = [
        ("DEPLOYMENT_NAME", stack),
        ("ACCOUNT_ID", "000000000000".to_string()),
        (
            "AWS_REGION",
            cli.region.clone().unwrap_or_else(|| "us-east-1".into()),
        ),
        ("LEDGER_TABLE", "validate-only".to_string()),
        ("POLICIES", document),
    ];
    let config = Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })?;
    let names: Vec<&str> = policy_names(&config.policies);
    Ok(match cli.output {
        Output::Json => serde_json::json!({"valid": true, "policies": names}).to_string(),
        Output::Text => format!("valid: {} ({})", file.display(), names.join(", ")),
    })
}

fn policy_names(policies: &Policies) -> Vec<&str> {
    policies.names().collect()
}

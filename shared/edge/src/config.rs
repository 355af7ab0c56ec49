//! Configuration from the environment (docs/operations.md, "Environment of the functions").
//!
//! Read once at start-up. Every value is validated there; a bad one is an
//! error that names the variable, and the function then does nothing but
//! report it. An empty variable counts as unset, because CloudFormation passes
//! empty strings for parameters left blank.

use ebs_lifecycle_core::encryption::Remediate;
use ebs_lifecycle_core::ownership::{Identity, DESCRIPTION_LIMIT};
use ebs_lifecycle_core::policy::{Policies, PolicyError};
use ebs_lifecycle_core::text::excerpt;

#[derive(Debug, Clone)]
pub struct Config {
    pub policies: Policies,
    /// The tag key that opts a volume or instance in (`Backup`).
    pub selector_tag_key: String,
    /// The value of `lifecycle:managed-by`: the stack name.
    pub deployment_name: String,
    /// Where notifications go; `None` logs them instead (local runs).
    pub topic_arn: Option<String>,
    pub dry_run: bool,
    pub max_deletions: u32,
    pub stuck_after_minutes: u32,
    pub remediate: Remediate,
    pub encryption_kms_key_id: Option<String>,
    pub allowed_kms_key_ids: Vec<String>,
    pub allowed_share_accounts: Vec<String>,
    pub metrics_namespace: String,
    /// The stack's own SSM document for the default freeze and thaw
    /// (`CONSISTENCY_DOCUMENT`); unset (local runs), the same script goes
    /// through AWS-RunShellScript.
    pub consistency_document: Option<String>,
    /// Whether policies may give their own `pre_command`/`post_command`
    /// (`ALLOW_SHELL_COMMANDS`, default false): shell as root on every
    /// opted-in instance is the stack owner's decision, not the policy
    /// writer's.
    pub allow_shell_commands: bool,
    /// The deployment, its account (`ACCOUNT_ID`) and region (`AWS_REGION`):
    /// what every Description it writes names, and what it verifies.
    pub identity: Identity,
    /// The stack's own DynamoDB table (`LEDGER_TABLE`): the record only the
    /// stack can write (stopped instances, copies, deletions, reports).
    pub ledger_table: String,
    /// The stack's report bucket (`REPORT_BUCKET`, report-snapshots only);
    /// unset, the report goes to the log alone.
    pub report_bucket: Option<String>,
    /// Prices the report uses (`STANDARD_PRICE_GB_MONTH`,
    /// `ARCHIVE_PRICE_GB_MONTH`, `RESTORE_PRICE_GB`; us-east-1's by default).
    pub prices: ebs_lifecycle_core::cost::Prices,
    /// Set on a vault stack (`VAULT_FOR_ACCOUNTS` not empty).
    pub vault: Option<VaultConfig>,
    /// `policies` with the schedules they had before, read from the ledger
    /// the first time a run meets a slot off the current schedule, then
    /// kept for the life of the process (a new schedule means a new
    /// deployment, so new processes): `crate::services::ownership`.
    pub(crate) policies_with_past: std::sync::OnceLock<Policies>,
}

/// A vault stack's settings (docs/operations.md, "A vault account").
#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// The source accounts whose shares it copies (`VAULT_FOR_ACCOUNTS`).
    pub for_accounts: Vec<String>,
    /// Keep rules per source policy name (`VAULT_POLICIES`).
    pub policies: Policies,
    /// The vault's own key for its copies (`VAULT_KMS_KEY_ID`).
    pub kms_key_id: String,
    /// Compliance-mode lock of every copy, in days; 0: no lock
    /// (`VAULT_LOCK_DAYS`).
    pub lock_days: u32,
    /// The source deployments whose shares it copies; empty: any of the
    /// accepted accounts (`VAULT_FOR_DEPLOYMENTS`).
    pub for_deployments: Vec<String>,
    /// At most this many copies of one source volume started in 24 hours
    /// (`VAULT_MAX_COPIES_PER_VOLUME_PER_DAY`, default 24).
    pub max_copies_per_volume_per_day: u32,
    /// At most this many copies of one source account started in 24 hours,
    /// counted across runs in the ledger
    /// (`VAULT_MAX_COPIES_PER_ACCOUNT_PER_DAY`, default 2,000).
    pub max_copies_per_account_per_day: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{variable} is required and is not set")]
    Missing { variable: &'static str },
    #[error("{variable}={value:?} is invalid: {problem}")]
    Invalid {
        variable: &'static str,
        value: String,
        problem: String,
    },
    #[error("POLICIES: {0}")]
    Policies(#[from] PolicyError),
}

impl ConfigError {
    /// The variable at fault, for the `config-error` notification.
    pub fn variable(&self) -> &'static str {
        match self {
            Self::Missing { variable } | Self::Invalid { variable, .. } => variable,
            Self::Policies(_) => "POLICIES",
        }
    }
}

pub(crate) const DEFAULT_SELECTOR_TAG_KEY: &str = "Backup";
pub(crate) const DEFAULT_MAX_DELETIONS: u32 = 200;
pub(crate) const DEFAULT_STUCK_AFTER_MINUTES: u32 = 240;
pub(crate) const DEFAULT_METRICS_NAMESPACE: &str = "EbsSnapshotLifecycle";

impl Config {
    /// Read the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let invalid = |variable: &'static str, value: &str, problem: &str| ConfigError::Invalid {
            variable,
            value: excerpt(value),
            problem: problem.to_string(),
        };

        let policies = match get("POLICIES") {
            Some(doc) => Policies::parse(&doc)?,
            None => Policies::builtin_default(),
        };

        let selector_tag_key =
            get("SELECTOR_TAG_KEY").unwrap_or_else(|| DEFAULT_SELECTOR_TAG_KEY.to_string());
        if selector_tag_key.chars().count() > 128
            || selector_tag_key.starts_with("aws:")
            || selector_tag_key.starts_with("lifecycle:")
        {
            return Err(invalid(
                "SELECTOR_TAG_KEY",
                &selector_tag_key,
                "a tag key of at most 128 characters, not starting with aws: or lifecycle:",
            ));
        }

        let deployment_name = get("DEPLOYMENT_NAME").ok_or(ConfigError::Missing {
            variable: "DEPLOYMENT_NAME",
        })?;
        let deployment_ok = deployment_name.len() <= 128
            && deployment_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !deployment_ok {
            return Err(invalid(
                "DEPLOYMENT_NAME",
                &deployment_name,
                "1 to 128 of A-Z a-z 0-9 - _ . (the stack name)",
            ));
        }

        let topic_arn = get("TOPIC_ARN");
        if let Some(arn) = &topic_arn {
            let parts: Vec<&str> = arn.split(':').collect();
            if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sns" || parts[5].is_empty() {
                return Err(invalid(
                    "TOPIC_ARN",
                    arn,
                    "an SNS topic ARN (arn:aws:sns:region:account:name)",
                ));
            }
        }

        let flag = |variable: &'static str| -> Result<bool, ConfigError> {
            match get(variable) {
                None => Ok(false),
                Some(v) => parse_bool(&v).ok_or_else(|| invalid(variable, &v, "true or false")),
            }
        };
        let dry_run = flag("DRY_RUN")?;

        let number = |variable: &'static str, default: u32, min: u32| -> Result<u32, ConfigError> {
            match get(variable) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<u32>() {
                    Ok(n) if n >= min => Ok(n),
                    _ => Err(invalid(
                        variable,
                        &v,
                        &format!("a whole number, at least {min}"),
                    )),
                },
            }
        };
        let max_deletions = number("MAX_DELETIONS", DEFAULT_MAX_DELETIONS, 0)?;
        let stuck_after_minutes = number("STUCK_AFTER_MINUTES", DEFAULT_STUCK_AFTER_MINUTES, 1)?;

        let remediate = match get("REMEDIATE").as_deref().map(str::trim) {
            None | Some("off") => Remediate::Off,
            Some("public") => Remediate::Public,
            Some("all") => Remediate::All,
            Some(other) => return Err(invalid("REMEDIATE", other, "off, public or all")),
        };

        let encryption_kms_key_id = get("ENCRYPTION_KMS_KEY_ID").map(|v| v.trim().to_string());
        if let Some(key) = &encryption_kms_key_id {
            if !is_kms_key_reference(key) {
                return Err(invalid(
                    "ENCRYPTION_KMS_KEY_ID",
                    key,
                    "a KMS key id, key ARN, alias/name or alias ARN",
                ));
            }
        }
        let allowed_kms_key_ids = list(get("ALLOWED_KMS_KEY_IDS"));
        if let Some(bad) = allowed_kms_key_ids
            .iter()
            .find(|k| !is_kms_key_reference(k))
        {
            return Err(invalid(
                "ALLOWED_KMS_KEY_IDS",
                bad,
                "comma-separated KMS key ids, key ARNs or aliases",
            ));
        }
        let mut allowed_share_accounts = list(get("ALLOWED_SHARE_ACCOUNTS"));
        if let Some(bad) = allowed_share_accounts
            .iter()
            .find(|a| a.len() != 12 || !a.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(invalid(
                "ALLOWED_SHARE_ACCOUNTS",
                bad,
                "comma-separated 12-digit AWS account ids",
            ));
        }
        if remediate == Remediate::All && encryption_kms_key_id.is_none() {
            return Err(invalid(
                "REMEDIATE",
                "all",
                "needs ENCRYPTION_KMS_KEY_ID: the key encrypted copies are made with",
            ));
        }

        let metrics_namespace =
            get("METRICS_NAMESPACE").unwrap_or_else(|| DEFAULT_METRICS_NAMESPACE.to_string());
        if metrics_namespace.len() > 255
            || metrics_namespace.starts_with("AWS/")
            || !metrics_namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_/#:".contains(c))
        {
            return Err(invalid(
                "METRICS_NAMESPACE",
                &metrics_namespace,
                "a CloudWatch namespace: up to 255 of A-Z a-z 0-9 . - _ / # :, not starting with AWS/",
            ));
        }

        let consistency_document = get("CONSISTENCY_DOCUMENT").map(|v| v.trim().to_string());
        if let Some(doc) = &consistency_document {
            let ok = (3..=128).contains(&doc.len())
                && doc
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                return Err(invalid(
                    "CONSISTENCY_DOCUMENT",
                    doc,
                    "an SSM document name (3 to 128 of A-Z a-z 0-9 - _ .)",
                ));
            }
        }
        let allow_shell_commands = flag("ALLOW_SHELL_COMMANDS")?;
        if !allow_shell_commands {
            let with_commands = policies.iter().find(|p| {
                p.application
                    .as_ref()
                    .is_some_and(|a| a.pre_command.is_some() || a.post_command.is_some())
            });
            if let Some(p) = with_commands {
                return Err(invalid(
                    "POLICIES",
                    &p.name,
                    "this policy gives its own pre_command/post_command, which run as root through AWS-RunShellScript: allowed only with ALLOW_SHELL_COMMANDS=true (template parameter AllowShellCommands)",
                ));
            }
        }

        let account = get("ACCOUNT_ID").ok_or(ConfigError::Missing {
            variable: "ACCOUNT_ID",
        })?;
        if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid("ACCOUNT_ID", &account, "a 12-digit AWS account id"));
        }
        let region = get("AWS_REGION").ok_or(ConfigError::Missing {
            variable: "AWS_REGION",
        })?;
        let region_ok = region.len() <= 32
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !region_ok {
            return Err(invalid(
                "AWS_REGION",
                &region,
                "an AWS region, e.g. eu-west-1",
            ));
        }
        let identity = Identity {
            deployment: deployment_name.clone(),
            account,
            region,
        };
        if let Some(p) = policies
            .iter()
            .find(|p| identity.longest_scheduled(&p.name) > DESCRIPTION_LIMIT)
        {
            return Err(invalid(
                "POLICIES",
                &p.name,
                &format!(
                    "with this deployment name the snapshots' Description would exceed EC2's {DESCRIPTION_LIMIT} characters: shorten the policy name or the stack name"
                ),
            ));
        }
        if let Some(p) = policies.iter().find(|p| {
            p.copies
                .iter()
                .any(|t| t.account.is_none() && t.region == identity.region)
        }) {
            return Err(invalid(
                "POLICIES",
                &p.name,
                &format!(
                    "a copy target is {}, the region the stack runs in: a disaster-recovery copy goes to another region",
                    identity.region
                ),
            ));
        }
        if let Some(p) = policies.iter().find(|p| {
            p.copies
                .iter()
                .any(|t| t.account.is_some() && t.region != identity.region)
        }) {
            return Err(invalid(
                "POLICIES",
                &p.name,
                &format!(
                    "a vault account target's region must be {}, the stack's: the vault stack copies what is shared with it in its own region",
                    identity.region
                ),
            ));
        }
        let ledger_table = get("LEDGER_TABLE").ok_or(ConfigError::Missing {
            variable: "LEDGER_TABLE",
        })?;
        let table_ok = (3..=255).contains(&ledger_table.len())
            && ledger_table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !table_ok {
            return Err(invalid(
                "LEDGER_TABLE",
                &ledger_table,
                "a DynamoDB table name (3 to 255 of A-Z a-z 0-9 - _ .)",
            ));
        }

        // Sharing with a policy's vault account is what the policy asks for.
        for account in policies
            .iter()
            .flat_map(|p| p.copies.iter().filter_map(|t| t.account.clone()))
        {
            if !allowed_share_accounts.contains(&account) {
                allowed_share_accounts.push(account);
            }
        }
        let vault = vault_config(&get)?;
        let report_bucket = get("REPORT_BUCKET");
        if let Some(bucket) = &report_bucket {
            let ok = (3..=63).contains(&bucket.len())
                && bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c));
            if !ok {
                return Err(invalid("REPORT_BUCKET", bucket, "an S3 bucket name"));
            }
        }
        let mut prices = ebs_lifecycle_core::cost::Prices::default();
        for (variable, price) in [
            ("STANDARD_PRICE_GB_MONTH", &mut prices.standard),
            ("ARCHIVE_PRICE_GB_MONTH", &mut prices.archive),
            ("RESTORE_PRICE_GB", &mut prices.restore),
        ] {
            if let Some(v) = get(variable) {
                match v.trim().parse::<f64>() {
                    Ok(p) if p.is_finite() && p >= 0.0 => *price = p,
                    _ => return Err(invalid(variable, &v, "a price in USD, at least 0")),
                }
            }
        }
        Ok(Self {
            report_bucket,
            prices,
            vault,
            identity,
            ledger_table,
            policies,
            selector_tag_key,
            deployment_name,
            topic_arn,
            dry_run,
            max_deletions,
            stuck_after_minutes,
            remediate,
            encryption_kms_key_id,
            allowed_kms_key_ids,
            allowed_share_accounts,
            metrics_namespace,
            consistency_document,
            allow_shell_commands,
            policies_with_past: std::sync::OnceLock::new(),
        })
    }
}

/// The vault settings, if `VAULT_FOR_ACCOUNTS` names any account.
fn vault_config(get: &impl Fn(&str) -> Option<String>) -> Result<Option<VaultConfig>, ConfigError> {
    let invalid = |variable: &'static str, value: &str, problem: &str| ConfigError::Invalid {
        variable,
        value: excerpt(value),
        problem: problem.to_string(),
    };
    let for_accounts = list(get("VAULT_FOR_ACCOUNTS"));
    if for_accounts.is_empty() {
        return Ok(None);
    }
    if let Some(bad) = for_accounts
        .iter()
        .find(|a| a.len() != 12 || !a.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(invalid(
            "VAULT_FOR_ACCOUNTS",
            bad,
            "comma-separated 12-digit AWS account ids",
        ));
    }
    let document = get("VAULT_POLICIES").ok_or(ConfigError::Missing {
        variable: "VAULT_POLICIES",
    })?;
    let policies = ebs_lifecycle_core::vault::parse_policies(&document).map_err(|e| {
        invalid(
            "VAULT_POLICIES",
            &document,
            &format!("keep rules per source policy name, e.g. {{\"gold\": {{\"daily\": 7}}}}: {e}"),
        )
    })?;
    let kms_key_id = get("VAULT_KMS_KEY_ID").ok_or(ConfigError::Missing {
        variable: "VAULT_KMS_KEY_ID",
    })?;
    let lock_days = match get("VAULT_LOCK_DAYS") {
        None => 0,
        Some(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|d| *d <= 36_500)
            .ok_or_else(|| invalid("VAULT_LOCK_DAYS", &v, "whole days, 0 to 36500"))?,
    };
    let count = |variable: &'static str, default: u32| -> Result<u32, ConfigError> {
        match get(variable) {
            None => Ok(default),
            Some(v) if v.trim().is_empty() => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| invalid(variable, &v, "a whole number, 1 to 1000000")),
        }
    };
    let for_deployments = list(get("VAULT_FOR_DEPLOYMENTS"));
    Ok(Some(VaultConfig {
        for_accounts,
        policies,
        kms_key_id,
        lock_days,
        for_deployments,
        max_copies_per_volume_per_day: count(
            "VAULT_MAX_COPIES_PER_VOLUME_PER_DAY",
            ebs_lifecycle_core::vault::DEFAULT_COPIES_PER_VOLUME_PER_DAY,
        )?,
        max_copies_per_account_per_day: count(
            "VAULT_MAX_COPIES_PER_ACCOUNT_PER_DAY",
            ebs_lifecycle_core::vault::DEFAULT_COPIES_PER_ACCOUNT_PER_DAY,
        )?,
    }))
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

fn list(v: Option<String>) -> Vec<String> {
    v.map(|v| {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    })
    .unwrap_or_default()
}

/// A key id (UUID or `mrk-` multi-region id), key ARN, `alias/name` or alias ARN.
fn is_kms_key_reference(s: &str) -> bool {
    let is_key_id = |id: &str| {
        let hex = id.strip_prefix("mrk-").unwrap_or(id);
        !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
    };
    if let Some(name) = s.strip_prefix("alias/") {
        return !name.is_empty();
    }
    if let Some(rest) = s.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        return parts.len() == 5
            && parts[1] == "kms"
            && (parts[4].strip_prefix("key/").is_some_and(is_key_id)
                || parts[4]
                    .strip_prefix("alias/")
                    .is_some_and(|n| !n.is_empty()));
    }
    is_key_id(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// `vars` over what the template and Lambda always set.
    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut map: HashMap<String, String> = [
            ("ACCOUNT_ID", "123456789012"),
            ("AWS_REGION", "eu-west-1"),
            ("LEDGER_TABLE", "prod-backups-Ledger-1ABC"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        map.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn the_identity_and_the_ledger_are_required_and_checked() {
        let c = load(&[("DEPLOYMENT_NAME", "prod-backups")]).unwrap();
        assert_eq!(c.identity.account, "123456789012");
        assert_eq!(c.identity.region, "eu-west-1");
        assert_eq!(c.identity.deployment, "prod-backups");
        for (variable, bad) in [
            ("ACCOUNT_ID", "12345"),
            ("AWS_REGION", "EU WEST"),
            ("LEDGER_TABLE", "a b"),
        ] {
            let e = load(&[("DEPLOYMENT_NAME", "d"), (variable, bad)]).unwrap_err();
            assert_eq!(e.variable(), variable);
        }
        for variable in ["ACCOUNT_ID", "AWS_REGION", "LEDGER_TABLE"] {
            let e = load(&[("DEPLOYMENT_NAME", "d"), (variable, " ")]).unwrap_err();
            assert_eq!(e, ConfigError::Missing { variable });
        }
    }

    #[test]
    fn a_description_ec2_would_refuse_is_refused_at_start_up() {
        let long_stack = "s".repeat(128);
        let policies = format!(
            r#"{{"{}": {{"schedule": "@daily", "keep": {{"last": 3}}}}}}"#,
            "p".repeat(64)
        );
        let e = load(&[("DEPLOYMENT_NAME", &long_stack), ("POLICIES", &policies)]).unwrap_err();
        assert_eq!(e.variable(), "POLICIES");
        assert!(e.to_string().contains("255 characters"), "{e}");
        assert!(load(&[("DEPLOYMENT_NAME", "prod"), ("POLICIES", &policies)]).is_ok());
    }

    #[test]
    fn defaults_apply_with_only_the_deployment_name() {
        let c = load(&[("DEPLOYMENT_NAME", "prod-backups")]).unwrap();
        assert_eq!(c.selector_tag_key, "Backup");
        assert_eq!(c.deployment_name, "prod-backups");
        assert!(!c.dry_run);
        assert_eq!(c.max_deletions, DEFAULT_MAX_DELETIONS);
        assert_eq!(c.remediate, Remediate::Off);
        assert_eq!(c.metrics_namespace, DEFAULT_METRICS_NAMESPACE);
        assert!(c.policies.get("default").is_some());
        assert!(c.topic_arn.is_none());
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = load(&[
            ("DEPLOYMENT_NAME", "d"),
            ("TOPIC_ARN", ""),
            ("POLICIES", " "),
            ("REMEDIATE", ""),
        ])
        .unwrap();
        assert!(c.topic_arn.is_none());
        assert_eq!(c.remediate, Remediate::Off);
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        let cases: &[(&str, &str)] = &[
            ("DEPLOYMENT_NAME", "has space"),
            ("SELECTOR_TAG_KEY", "aws:thing"),
            ("TOPIC_ARN", "arn:aws:sqs:us-east-1:123456789012:q"),
            ("DRY_RUN", "maybe"),
            ("MAX_DELETIONS", "-1"),
            ("STANDARD_PRICE_GB_MONTH", "cheap"),
            ("ARCHIVE_PRICE_GB_MONTH", "-0.01"),
            ("MAX_DELETIONS", "ten"),
            ("STUCK_AFTER_MINUTES", "0"),
            ("REMEDIATE", "everything"),
            ("ENCRYPTION_KMS_KEY_ID", "not a key!"),
            ("ALLOWED_KMS_KEY_IDS", "alias/ok, bad key"),
            ("ALLOWED_SHARE_ACCOUNTS", "123456789012,12345"),
            ("METRICS_NAMESPACE", "AWS/EBS"),
            ("POLICIES", "{\"p\":{}}"),
        ];
        for (variable, value) in cases {
            let mut vars = vec![("DEPLOYMENT_NAME", "d")];
            vars.retain(|(k, _)| k != variable);
            vars.push((variable, value));
            let err = load(&vars).unwrap_err();
            assert_eq!(err.variable(), *variable, "{err}");
            assert!(err.to_string().starts_with(variable), "{err}");
        }
        assert_eq!(load(&[]).unwrap_err().variable(), "DEPLOYMENT_NAME");
    }

    #[test]
    fn remediate_all_needs_a_key() {
        let err = load(&[("DEPLOYMENT_NAME", "d"), ("REMEDIATE", "all")]).unwrap_err();
        assert_eq!(err.variable(), "REMEDIATE");
        let ok = load(&[
            ("DEPLOYMENT_NAME", "d"),
            ("REMEDIATE", "all"),
            ("ENCRYPTION_KMS_KEY_ID", "alias/backup"),
        ]);
        assert!(ok.is_ok());
    }

    #[test]
    fn kms_references_in_every_documented_form() {
        for ok in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "alias/backups",
            "alias/aws/ebs",
            "arn:aws:kms:us-east-1:111122223333:alias/backups",
        ] {
            assert!(is_kms_key_reference(ok), "{ok}");
        }
        for bad in ["", "alias/", "arn:aws:s3:::bucket", "key 1"] {
            assert!(!is_kms_key_reference(bad), "{bad}");
        }
    }

    #[test]
    fn lists_are_trimmed() {
        let c = load(&[
            ("DEPLOYMENT_NAME", "d"),
            ("ALLOWED_SHARE_ACCOUNTS", " 111122223333 , 444455556666,"),
        ])
        .unwrap();
        assert_eq!(c.allowed_share_accounts, ["111122223333", "444455556666"]);
    }

    #[test]
    fn a_policy_with_its_own_shell_commands_needs_allow_shell_commands() {
        let policies = r#"{"db": {"schedule": "@daily", "keep": {"last": 3},
            "consistency": "application", "pre_command": "pg_freeze", "post_command": "pg_thaw"}}"#;
        let refused = load(&[("DEPLOYMENT_NAME", "prod"), ("POLICIES", policies)]).unwrap_err();
        assert_eq!(refused.variable(), "POLICIES");
        assert!(
            refused.to_string().contains("ALLOW_SHELL_COMMANDS"),
            "{refused}"
        );
        let allowed = load(&[
            ("DEPLOYMENT_NAME", "prod"),
            ("POLICIES", policies),
            ("ALLOW_SHELL_COMMANDS", "true"),
        ])
        .unwrap();
        assert!(allowed.allow_shell_commands);
        // The default freeze needs no shell: allowed without it.
        let default_freeze =
            r#"{"db": {"schedule": "@daily", "keep": {"last": 3}, "consistency": "application"}}"#;
        let c = load(&[
            ("DEPLOYMENT_NAME", "prod"),
            ("POLICIES", default_freeze),
            ("CONSISTENCY_DOCUMENT", "prod-FreezeThawDocument-AbC123"),
        ])
        .unwrap();
        assert_eq!(
            c.consistency_document.as_deref(),
            Some("prod-FreezeThawDocument-AbC123")
        );
        assert!(load(&[
            ("DEPLOYMENT_NAME", "prod"),
            ("CONSISTENCY_DOCUMENT", "x; reboot")
        ])
        .is_err());
    }
}

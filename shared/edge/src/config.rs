//! Configuration from the environment (docs/operations.md, "Environment of the functions").
//!
//! Read once at start-up. Every value is validated there; a bad one is an
//! error that names the variable, and the function then does nothing but
//! report it. An empty variable counts as unset, because CloudFormation passes
//! empty strings for parameters left blank.

use ebs_lifecycle_core::encryption::Remediate;
use ebs_lifecycle_core::ownership::{Identity, DESCRIPTION_LIMIT};
use ebs_lifecycle_core::policy::{Consistency, Policies, Policy, PolicyError};
use ebs_lifecycle_core::text::excerpt;

#[derive(Debug, Clone)]
pub struct Config {
    pub policies: Policies,
    /// The tag key that opts a volume or instance in (`Backup`).
    pub selector_tag_key: String,
    /// The policy covering every volume no selector tag decides
    /// (`DEFAULT_POLICY`, stack parameter `DefaultPolicy`); `None`: none.
    pub default_policy: Option<String>,
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
    /// Restore drills' bounds and zone (verify-restores, the report).
    pub drills: DrillConfig,
    /// `policies` with the schedules they had before, read from the ledger
    /// the first time a run meets a slot off the current schedule, then
    /// kept for the life of the process (a new schedule means a new
    /// deployment, so new processes): `crate::services::ownership`.
    pub(crate) policies_with_past: std::sync::OnceLock<Policies>,
}

/// Restore drills (docs/restore.md, "Restore drills").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillConfig {
    /// At most this many drills a run (`RESTORE_DRILLS_PER_RUN`, default 5).
    pub per_run: u32,
    /// At most this many GiB of drill volumes a run
    /// (`RESTORE_DRILL_MAX_GIB`, default 500).
    pub max_gib: u32,
    /// Where drill volumes are made (`RESTORE_DRILL_ZONE`, default the
    /// region's zone `a`).
    pub zone: String,
    /// A volume whose last passed drill is older is `restore-unverified`
    /// (`RESTORE_DRILL_MAX_AGE_DAYS`, default 35).
    pub max_age_days: u32,
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
    /// The value of `lifecycle:managed-by`: the stack name (one place: the
    /// identity its Descriptions carry).
    pub fn deployment_name(&self) -> &str {
        &self.identity.deployment
    }

    /// Read the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read configuration through `lookup` (the environment, or a map in
    /// tests). The variables are checked in this order; the first wrong one
    /// is the error.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env {
            lookup: &|name| lookup(name).filter(|v| !v.trim().is_empty()),
        };
        let policies = match env.get("POLICIES") {
            Some(doc) => Policies::parse(&doc)?,
            None => Policies::builtin_default(),
        };
        let selector_tag_key = env.checked(
            "SELECTOR_TAG_KEY",
            DEFAULT_SELECTOR_TAG_KEY,
            |k| !(k.chars().count() > 128 || k.starts_with("aws:") || k.starts_with("lifecycle:")),
            "a tag key of at most 128 characters, not starting with aws: or lifecycle:",
        )?;
        let default_policy = env.trimmed("DEFAULT_POLICY", |_| true, "")?;
        if let Some(name) = &default_policy {
            match policies.get(name) {
                None => {
                    return Err(env.invalid(
                        "DEFAULT_POLICY",
                        name,
                        "names no policy of the document (POLICIES)",
                    ))
                }
                Some(p) if p.consistency != Consistency::Volume => {
                    return Err(env.invalid(
                        "DEFAULT_POLICY",
                        name,
                        "the default policy covers volumes one by one: its consistency must be `volume`",
                    ))
                }
                Some(_) => {}
            }
        }
        let deployment_name = env.required(
            "DEPLOYMENT_NAME",
            |d| {
                d.len() <= 128
                    && d.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            },
            "1 to 128 of A-Z a-z 0-9 - _ . (the stack name)",
        )?;
        let topic_arn = env.optional(
            "TOPIC_ARN",
            |arn| {
                let parts: Vec<&str> = arn.split(':').collect();
                parts.len() == 6 && parts[0] == "arn" && parts[2] == "sns" && !parts[5].is_empty()
            },
            "an SNS topic ARN (arn:aws:sns:region:account:name)",
        )?;
        let dry_run = env.flag("DRY_RUN")?;
        let max_deletions = env.number("MAX_DELETIONS", DEFAULT_MAX_DELETIONS, 0)?;
        let stuck_after_minutes =
            env.number("STUCK_AFTER_MINUTES", DEFAULT_STUCK_AFTER_MINUTES, 1)?;
        let encryption = Encryption::read(&env)?;
        let metrics_namespace = env.checked(
            "METRICS_NAMESPACE",
            DEFAULT_METRICS_NAMESPACE,
            |n| {
                n.len() <= 255
                    && !n.starts_with("AWS/")
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-_/#:".contains(c))
            },
            "a CloudWatch namespace: up to 255 of A-Z a-z 0-9 . - _ / # :, not starting with AWS/",
        )?;
        let consistency_document = env.trimmed(
            "CONSISTENCY_DOCUMENT",
            |d| {
                (3..=128).contains(&d.len())
                    && d.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            },
            "an SSM document name (3 to 128 of A-Z a-z 0-9 - _ .)",
        )?;
        let allow_shell_commands = env.flag("ALLOW_SHELL_COMMANDS")?;
        if !allow_shell_commands {
            refuse_shell_commands(&policies)?;
        }
        let identity = identity(&env, &deployment_name, &policies)?;
        let ledger_table = env.required(
            "LEDGER_TABLE",
            |t| {
                (3..=255).contains(&t.len())
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            },
            "a DynamoDB table name (3 to 255 of A-Z a-z 0-9 - _ .)",
        )?;
        // Sharing with a policy's vault account is what the policy asks for.
        let mut allowed_share_accounts = encryption.allowed_share_accounts;
        for account in policies
            .iter()
            .flat_map(|p| p.copies.iter().filter_map(|t| t.account.clone()))
        {
            if !allowed_share_accounts.contains(&account) {
                allowed_share_accounts.push(account);
            }
        }
        let vault = vault_config(env.lookup)?;
        let report_bucket = env.optional(
            "REPORT_BUCKET",
            |b| {
                (3..=63).contains(&b.len())
                    && b.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c))
            },
            "an S3 bucket name",
        )?;
        let drills = DrillConfig {
            per_run: env.number("RESTORE_DRILLS_PER_RUN", 5, 0)?,
            max_gib: env.number("RESTORE_DRILL_MAX_GIB", 500, 1)?,
            zone: env.checked(
                "RESTORE_DRILL_ZONE",
                &format!("{}a", identity.region),
                |z| {
                    z.starts_with(&identity.region)
                        && z.len() <= identity.region.len() + 8
                        && z.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                },
                "an availability zone of the stack's region (e.g. us-east-1a)",
            )?,
            max_age_days: env.number("RESTORE_DRILL_MAX_AGE_DAYS", 35, 1)?,
        };
        Ok(Self {
            report_bucket,
            drills,
            prices: prices(&env)?,
            vault,
            identity,
            ledger_table,
            policies,
            selector_tag_key,
            default_policy,
            topic_arn,
            dry_run,
            max_deletions,
            stuck_after_minutes,
            remediate: encryption.remediate,
            encryption_kms_key_id: encryption.kms_key_id,
            allowed_kms_key_ids: encryption.allowed_kms_key_ids,
            allowed_share_accounts,
            metrics_namespace,
            consistency_document,
            allow_shell_commands,
            policies_with_past: std::sync::OnceLock::new(),
        })
    }
}

/// The variables as [`Config::from_lookup`] reads them: blank is unset,
/// and each wrong value is an error naming its variable.
struct Env<'e> {
    lookup: &'e dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    fn invalid(&self, variable: &'static str, value: &str, problem: &str) -> ConfigError {
        ConfigError::Invalid {
            variable,
            value: excerpt(value),
            problem: problem.to_string(),
        }
    }

    /// The value if set, which must pass `ok`.
    fn optional(
        &self,
        variable: &'static str,
        ok: impl Fn(&str) -> bool,
        problem: &str,
    ) -> Result<Option<String>, ConfigError> {
        match self.get(variable) {
            Some(v) if !ok(&v) => Err(self.invalid(variable, &v, problem)),
            v => Ok(v),
        }
    }

    /// The value if set, trimmed, which must pass `ok`.
    fn trimmed(
        &self,
        variable: &'static str,
        ok: impl Fn(&str) -> bool,
        problem: &str,
    ) -> Result<Option<String>, ConfigError> {
        match self.get(variable).map(|v| v.trim().to_string()) {
            Some(v) if !ok(&v) => Err(self.invalid(variable, &v, problem)),
            v => Ok(v),
        }
    }

    /// The value, or `default` when unset; a set value must pass `ok`.
    fn checked(
        &self,
        variable: &'static str,
        default: &str,
        ok: impl Fn(&str) -> bool,
        problem: &str,
    ) -> Result<String, ConfigError> {
        let value = self.get(variable).unwrap_or_else(|| default.to_string());
        if ok(&value) {
            Ok(value)
        } else {
            Err(self.invalid(variable, &value, problem))
        }
    }

    /// The value, which must be set and pass `ok`.
    fn required(
        &self,
        variable: &'static str,
        ok: impl Fn(&str) -> bool,
        problem: &str,
    ) -> Result<String, ConfigError> {
        self.optional(variable, ok, problem)?
            .ok_or(ConfigError::Missing { variable })
    }

    fn flag(&self, variable: &'static str) -> Result<bool, ConfigError> {
        match self.get(variable) {
            None => Ok(false),
            Some(v) => parse_bool(&v).ok_or_else(|| self.invalid(variable, &v, "true or false")),
        }
    }

    fn number(&self, variable: &'static str, default: u32, min: u32) -> Result<u32, ConfigError> {
        match self.get(variable) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) if n >= min => Ok(n),
                _ => Err(self.invalid(variable, &v, &format!("a whole number, at least {min}"))),
            },
        }
    }
}

/// check-encryption's settings: what it may fix, with which key, and which
/// keys and accounts are allowed.
struct Encryption {
    remediate: Remediate,
    kms_key_id: Option<String>,
    allowed_kms_key_ids: Vec<String>,
    allowed_share_accounts: Vec<String>,
}

impl Encryption {
    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        let remediate = match env.get("REMEDIATE").as_deref().map(str::trim) {
            None | Some("off") => Remediate::Off,
            Some("public") => Remediate::Public,
            Some("all") => Remediate::All,
            Some(other) => return Err(env.invalid("REMEDIATE", other, "off, public or all")),
        };
        let kms_key_id = env.trimmed(
            "ENCRYPTION_KMS_KEY_ID",
            is_kms_key_reference,
            "a KMS key id, key ARN, alias/name or alias ARN",
        )?;
        let allowed_kms_key_ids = list(env.get("ALLOWED_KMS_KEY_IDS"));
        if let Some(bad) = allowed_kms_key_ids
            .iter()
            .find(|k| !is_kms_key_reference(k))
        {
            return Err(env.invalid(
                "ALLOWED_KMS_KEY_IDS",
                bad,
                "comma-separated KMS key ids, key ARNs or aliases",
            ));
        }
        let allowed_share_accounts = list(env.get("ALLOWED_SHARE_ACCOUNTS"));
        if let Some(bad) = allowed_share_accounts
            .iter()
            .find(|a| a.len() != 12 || !a.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(env.invalid(
                "ALLOWED_SHARE_ACCOUNTS",
                bad,
                "comma-separated 12-digit AWS account ids",
            ));
        }
        if remediate == Remediate::All && kms_key_id.is_none() {
            return Err(env.invalid(
                "REMEDIATE",
                "all",
                "needs ENCRYPTION_KMS_KEY_ID: the key encrypted copies are made with",
            ));
        }
        Ok(Self {
            remediate,
            kms_key_id,
            allowed_kms_key_ids,
            allowed_share_accounts,
        })
    }
}

/// A policy's own pre/post commands run as root: refused unless
/// `ALLOW_SHELL_COMMANDS` allows them.
fn refuse_shell_commands(policies: &Policies) -> Result<(), ConfigError> {
    let with_commands = policies.iter().find(|p| {
        p.application
            .as_ref()
            .is_some_and(|a| a.pre_command.is_some() || a.post_command.is_some())
    });
    match with_commands {
        Some(p) => Err(ConfigError::Invalid {
            variable: "POLICIES",
            value: excerpt(&p.name),
            problem: "this policy gives its own pre_command/post_command, which run as root through AWS-RunShellScript: allowed only with ALLOW_SHELL_COMMANDS=true (template parameter AllowShellCommands)".into(),
        }),
        None => Ok(()),
    }
}

/// Where the stack runs (its account and region) with its name: what its
/// Descriptions carry, and what its policies' copy targets must differ
/// from (a disaster-recovery copy) or equal (a vault's region).
fn identity(env: &Env<'_>, deployment: &str, policies: &Policies) -> Result<Identity, ConfigError> {
    let account = env.required(
        "ACCOUNT_ID",
        |a| a.len() == 12 && a.chars().all(|c| c.is_ascii_digit()),
        "a 12-digit AWS account id",
    )?;
    let region = env.required(
        "AWS_REGION",
        |r| {
            r.len() <= 32
                && r.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        },
        "an AWS region, e.g. eu-west-1",
    )?;
    let identity = Identity {
        deployment: deployment.to_string(),
        account,
        region,
    };
    let refuse = |p: &Policy, problem: String| Err(env.invalid("POLICIES", &p.name, &problem));
    if let Some(p) = policies
        .iter()
        .find(|p| identity.longest_scheduled(&p.name) > DESCRIPTION_LIMIT)
    {
        return refuse(p, format!(
            "with this deployment name the snapshots' Description would exceed EC2's {DESCRIPTION_LIMIT} characters: shorten the policy name or the stack name"
        ));
    }
    if let Some(p) = policies.iter().find(|p| {
        p.copies
            .iter()
            .any(|t| t.account.is_none() && t.region == identity.region)
    }) {
        return refuse(p, format!(
            "a copy target is {}, the region the stack runs in: a disaster-recovery copy goes to another region",
            identity.region
        ));
    }
    if let Some(p) = policies.iter().find(|p| {
        p.copies
            .iter()
            .any(|t| t.account.is_some() && t.region != identity.region)
    }) {
        return refuse(p, format!(
            "a vault account target's region must be {}, the stack's: the vault stack copies what is shared with it in its own region",
            identity.region
        ));
    }
    Ok(identity)
}

/// The prices the report and the archive arithmetic use (USD), each a
/// default unless set.
fn prices(env: &Env<'_>) -> Result<ebs_lifecycle_core::cost::Prices, ConfigError> {
    let mut prices = ebs_lifecycle_core::cost::Prices::default();
    for (variable, price) in [
        ("STANDARD_PRICE_GB_MONTH", &mut prices.standard),
        ("ARCHIVE_PRICE_GB_MONTH", &mut prices.archive),
        ("RESTORE_PRICE_GB", &mut prices.restore),
    ] {
        if let Some(v) = env.get(variable) {
            match v.trim().parse::<f64>() {
                Ok(p) if p.is_finite() && p >= 0.0 => *price = p,
                _ => return Err(env.invalid(variable, &v, "a price in USD, at least 0")),
            }
        }
    }
    Ok(prices)
}

/// The vault settings, if `VAULT_FOR_ACCOUNTS` names any account.
fn vault_config(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<VaultConfig>, ConfigError> {
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
        assert_eq!(c.deployment_name(), "prod-backups");
        assert!(!c.dry_run);
        assert_eq!(c.max_deletions, DEFAULT_MAX_DELETIONS);
        assert_eq!(c.remediate, Remediate::Off);
        assert_eq!(c.metrics_namespace, DEFAULT_METRICS_NAMESPACE);
        assert!(c.policies.get("default").is_some());
        assert!(c.topic_arn.is_none());
    }

    #[test]
    fn the_default_policy_must_be_a_policy_of_the_document_taken_volume_by_volume() {
        let doc = r#"{"gold": {"schedule": "@daily", "keep": {"last": 3}},
                      "fleet": {"schedule": "@daily", "keep": {"last": 3}, "consistency": "instance"}}"#;
        let with = |name: &str| {
            load(&[
                ("DEPLOYMENT_NAME", "d"),
                ("POLICIES", doc),
                ("DEFAULT_POLICY", name),
            ])
        };
        assert_eq!(
            with(" gold ").unwrap().default_policy.as_deref(),
            Some("gold")
        );
        assert!(with("").unwrap().default_policy.is_none());
        for (name, problem) in [
            ("silver", "names no policy"),
            ("none", "names no policy"),
            ("fleet", "consistency must be `volume`"),
        ] {
            let e = with(name).unwrap_err();
            assert_eq!(e.variable(), "DEFAULT_POLICY");
            assert!(e.to_string().contains(problem), "{name}: {e}");
        }
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

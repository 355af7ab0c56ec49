//! The policy document of docs/policies-and-tags.md: parsing, validation and the
//! built-in default.
//!
//! Parsing is strict: an unknown field, a bad cron expression, an unknown time
//! zone or a keep rule that keeps nothing is an error naming the policy and the
//! field, so a typo is found at start-up and not by a missing backup.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::consistency::OnCommandFailure;
use crate::keys;
use crate::model::Tags;
use crate::schedule::{PastSchedules, Schedule};

/// The document used when `POLICIES` is unset (docs/policies-and-tags.md).
pub(crate) const DEFAULT_POLICIES: &str = r#"{
  "default": { "schedule": "@daily", "timezone": "UTC",
               "keep": { "last": 3, "daily": 7, "weekly": 4, "monthly": 12 } }
}"#;

/// The name of the policy used by [`DEFAULT_POLICIES`].
pub(crate) const DEFAULT_POLICY_NAME: &str = "default";

/// The selector value that opts a volume or an instance out: never a
/// policy's name (docs/policies-and-tags.md, "Opting in and out").
pub const OPT_OUT: &str = "none";

/// All policies of a deployment, by name.
#[derive(Debug, Clone)]
pub struct Policies {
    by_name: BTreeMap<String, Policy>,
    /// The schedules the policies had before (the stack's ledger): what
    /// proves a slot of the history made under an earlier schedule.
    past: PastSchedules,
}

impl Policies {
    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.by_name.get(name)
    }

    /// These policies, knowing the schedules they had before.
    pub fn with_past(&self, past: PastSchedules) -> Self {
        Self {
            by_name: self.by_name.clone(),
            past,
        }
    }

    /// The schedule under which `slot` is a slot of `policy` (the current
    /// one, or one it had then); `None` if the policy is not configured or
    /// never had such a slot.
    pub fn schedule_of(
        &self,
        policy: &str,
        slot: chrono::DateTime<chrono::Utc>,
    ) -> Option<&Schedule> {
        let p = self.by_name.get(policy)?;
        self.past.schedule_of(policy, &p.schedule, slot)
    }

    /// The policies whose current schedule is not the latest recorded.
    pub fn schedules_to_record(&self) -> impl Iterator<Item = &Policy> {
        self.by_name
            .values()
            .filter(|p| self.past.must_record(&p.name, &p.schedule))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Policy> {
        self.by_name.values()
    }

    /// Parse and validate a policy document (the value of `POLICIES`).
    pub fn parse(document: &str) -> Result<Self, PolicyError> {
        let raw: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(document).map_err(|e| PolicyError::Document(e.to_string()))?;
        if raw.is_empty() {
            return Err(PolicyError::Document(
                "the document defines no policy".into(),
            ));
        }
        let mut by_name = BTreeMap::new();
        for (name, value) in raw {
            if name == OPT_OUT {
                return Err(PolicyError::Document(format!(
                    "`{OPT_OUT}` is the selector value that opts a volume or an instance out, not a policy's name"
                )));
            }
            let policy = Policy::from_json(&name, value)?;
            by_name.insert(name, policy);
        }
        Ok(Self {
            by_name,
            past: PastSchedules::default(),
        })
    }

    /// Every region some policy copies to (vault accounts apart).
    pub fn copy_regions(&self) -> std::collections::BTreeSet<&str> {
        self.iter()
            .flat_map(|p| p.copies.iter())
            .filter(|t| t.account.is_none())
            .map(|t| t.region.as_str())
            .collect()
    }

    /// Every vault account target, by name (`<account>/<region>`).
    pub fn vault_targets(&self) -> std::collections::BTreeSet<String> {
        self.iter()
            .flat_map(|p| p.copies.iter())
            .filter(|t| t.account.is_some())
            .map(CopyTarget::name)
            .collect()
    }

    /// The policies as a target's retention sees them (`target`: its
    /// name): each policy copying there, with the target's `keep` (for
    /// live and deleted volumes alike) in place of its own.
    pub fn as_kept_in(&self, target: &str) -> Self {
        let by_name = self
            .by_name
            .iter()
            .filter_map(|(name, p)| {
                let target = p.copies.iter().find(|t| t.name() == target)?;
                let mut policy = p.clone();
                policy.keep = target.keep.clone();
                policy.orphans = target.keep.clone();
                policy.copies = Vec::new();
                Some((name.clone(), policy))
            })
            .collect();
        Self {
            by_name,
            past: self.past.clone(),
        }
    }

    /// No policy known: what a reader of the snapshots has that was not
    /// given the stack's document (the command-line tool without
    /// `--policies`). The ownership check then skips what needs a
    /// policy's schedule rather than judge against a wrong one.
    pub fn none() -> Self {
        Self {
            by_name: BTreeMap::new(),
            past: PastSchedules::default(),
        }
    }

    /// The built-in default (docs/policies-and-tags.md).
    pub fn builtin_default() -> Self {
        let policy = Policy::builtin_default();
        Self {
            by_name: BTreeMap::from([(policy.name.clone(), policy)]),
            past: PastSchedules::default(),
        }
    }
}

/// One policy: when to snapshot, how, what to label, what to keep.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub schedule: Schedule,
    pub keep: KeepRules,
    pub copy_tags: CopyTags,
    /// Static tags added to every snapshot of the policy.
    pub tags: Tags,
    pub consistency: Consistency,
    /// The keep rules once the source volume no longer exists.
    pub orphans: KeepRules,
    /// Only with `consistency: application`.
    pub application: Option<ApplicationCommands>,
    /// Disaster-recovery targets, each with its own retention
    /// (docs/policies-and-tags.md, "Copies to other regions").
    pub copies: Vec<CopyTarget>,
    /// When snapshots move to the archive tier (docs/policies-and-tags.md,
    /// "Archive"); `None`: never.
    pub archive: Option<ArchiveRule>,
    /// Volumes the policy leaves out when it covers them through their
    /// instance (docs/policies-and-tags.md, "Exclusions").
    pub exclude: Exclusions,
}

/// `"exclude": {"boot_volumes": true, "volume_types": ["sc1", "st1"],
/// "tags": {"Scratch": "yes"}}`: volumes a policy does not snapshot although
/// their instance opts in or the default policy covers them. A volume's own
/// selector tag is an explicit choice and is not overridden (as it
/// overrides its instance's); Data Lifecycle Manager's exclusions likewise
/// apply to instance and default policies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclusions {
    /// The volume attached as its instance's root device.
    pub boot_volumes: bool,
    /// EC2 volume types (`gp2`, `gp3`, `io1`, `io2`, `st1`, `sc1`, `standard`).
    pub volume_types: Vec<String>,
    /// A volume with any of these tags (key and value equal).
    pub tags: Tags,
}

/// EC2's volume types, as `exclude.volume_types` accepts them.
pub const VOLUME_TYPES: [&str; 7] = ["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExclusions {
    #[serde(default)]
    boot_volumes: bool,
    #[serde(default)]
    volume_types: Vec<String>,
    #[serde(default)]
    tags: Tags,
}

impl Exclusions {
    fn from_raw(raw: RawExclusions) -> Result<Self, (String, String)> {
        for (i, t) in raw.volume_types.iter().enumerate() {
            if !VOLUME_TYPES.contains(&t.as_str()) {
                return Err((
                    format!("volume_types[{i}]"),
                    format!(
                        "`{}` is not an EC2 volume type (one of {})",
                        crate::text::excerpt(t).escape_debug(),
                        VOLUME_TYPES.join(", ")
                    ),
                ));
            }
        }
        for key in raw.tags.keys() {
            if key.is_empty() || key.starts_with("aws:") {
                return Err((
                    format!("tags.{}", crate::text::excerpt(key).escape_debug()),
                    "not a tag key a volume can carry (empty, or aws:)".into(),
                ));
            }
        }
        Ok(Self {
            boot_volumes: raw.boot_volumes,
            volume_types: raw.volume_types,
            tags: raw.tags,
        })
    }

    /// Whether the policy excludes nothing.
    pub fn is_empty(&self) -> bool {
        !self.boot_volumes && self.volume_types.is_empty() && self.tags.is_empty()
    }
}

/// `"archive": {"after": "90d", "rules": ["monthly", "yearly"]}`: a
/// completed snapshot older than `after`, kept by these rules alone, is
/// archived when that saves money (`crate::archive`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRule {
    /// restic's duration syntax (`90d`, `6m`, `1y`).
    pub after: KeepWithin,
    /// Rule names as the `keep` document writes them.
    pub rules: Vec<String>,
}

/// The rule names `archive.rules` accepts: the `keep` document's.
pub(crate) const ARCHIVE_RULE_NAMES: [&str; 13] = [
    "last",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "within",
    "within_hourly",
    "within_daily",
    "within_weekly",
    "within_monthly",
    "within_yearly",
    "tags",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArchive {
    after: String,
    rules: Vec<String>,
}

impl ArchiveRule {
    fn from_raw(raw: RawArchive) -> Result<Self, (&'static str, String)> {
        let after = KeepWithin::parse(&raw.after).map_err(|p| ("after", p))?;
        if raw.rules.is_empty() {
            return Err((
                "rules",
                "no rule: nothing would ever be archived; leave `archive` out instead".into(),
            ));
        }
        for rule in &raw.rules {
            if !ARCHIVE_RULE_NAMES.contains(&rule.as_str()) {
                return Err((
                    "rules",
                    format!(
                        "`{}` is not a keep rule (one of {})",
                        crate::text::excerpt(rule).escape_debug(),
                        ARCHIVE_RULE_NAMES.join(", ")
                    ),
                ));
            }
        }
        Ok(Self {
            after,
            rules: raw.rules,
        })
    }
}

/// EC2 lets a policy copy to at most this many targets (as Data Lifecycle
/// Manager does for cross-region rules, which allows 3).
pub(crate) const MAX_COPY_TARGETS: usize = 5;

/// One disaster-recovery target of a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyTarget {
    /// The destination region; for a vault account, the stack's own region
    /// (the vault stack copies what is shared with it in its region).
    pub region: String,
    /// A vault account: the snapshots are shared with it, and the vault
    /// stack there copies them (docs/operations.md, "A vault account").
    pub account: Option<String>,
    /// The KMS key every copy there is encrypted with (a key of that region).
    pub kms_key: String,
    /// The target's own retention, per source volume.
    pub keep: KeepRules,
}

impl CopyTarget {
    /// The value of `lifecycle:target` on its copies: `<region>`, or
    /// `<account>/<region>` for a vault.
    pub fn name(&self) -> String {
        match &self.account {
            Some(account) => format!("{account}/{}", self.region),
            None => self.region.clone(),
        }
    }
}

/// An AWS region name: `eu-west-1`, `us-gov-west-1`, `ap-southeast-4`.
pub(crate) fn valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.len() <= 4
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// A KMS key or alias ARN in `region`: copies are encrypted in the
/// destination, by one of its keys.
fn valid_kms_key_in(arn: &str, region: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [arn_, partition, service, key_region, account, resource] = parts[..] else {
        return Err(format!(
            "`{}` is not a KMS key ARN (arn:aws:kms:{region}:<account>:key/<id>)",
            crate::text::excerpt(arn)
        ));
    };
    let resource_ok = resource
        .strip_prefix("key/")
        .or_else(|| resource.strip_prefix("alias/"))
        .is_some_and(|id| {
            !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'))
        });
    if arn_ != "arn"
        || !partition.starts_with("aws")
        || service != "kms"
        || account.len() != 12
        || !account.chars().all(|c| c.is_ascii_digit())
        || !resource_ok
    {
        return Err(format!(
            "`{}` is not a KMS key ARN (arn:aws:kms:{region}:<account>:key/<id>)",
            crate::text::excerpt(arn)
        ));
    }
    if key_region != region {
        return Err(format!(
            "the key is in {}, the copies in {region}: a copy is encrypted by a key of its destination region",
            crate::text::excerpt(key_region)
        ));
    }
    Ok(())
}

impl CopyTarget {
    fn from_raw(raw: RawCopyTarget) -> Result<Self, (String, String)> {
        let field = |f: &str| f.to_string();
        if let Some(account) = &raw.account {
            if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
                return Err((
                    field("account"),
                    format!(
                        "`{}` is not an AWS account id (12 digits)",
                        crate::text::excerpt(account)
                    ),
                ));
            }
        }
        if !valid_region(&raw.region) {
            return Err((
                field("region"),
                format!(
                    "`{}` is not a region name like eu-west-1",
                    crate::text::excerpt(&raw.region)
                ),
            ));
        }
        valid_kms_key_in(&raw.kms_key, &raw.region).map_err(|p| (field("kms_key"), p))?;
        let keep = KeepRules::from_raw(raw.keep).map_err(|(f, p)| match f {
            Some(f) => (format!("keep.{f}"), p),
            None => (field("keep"), p),
        })?;
        Ok(Self {
            region: raw.region,
            account: raw.account,
            kms_key: raw.kms_key,
            keep,
        })
    }
}

impl Policy {
    pub fn builtin_default() -> Self {
        // The constant is part of the binary and covered by a test; failing to
        // parse it is a programming error, not an input error.
        #[allow(clippy::expect_used)]
        Policies::parse(DEFAULT_POLICIES)
            .ok()
            .and_then(|p| p.by_name.into_values().next())
            .expect("the built-in default policy document is valid")
    }

    fn from_json(name: &str, value: serde_json::Value) -> Result<Self, PolicyError> {
        let err = |field: &str, problem: String| PolicyError::Field {
            // A huge or hostile name is not echoed whole into logs and
            // notifications: its start, escaped.
            policy: crate::text::excerpt(name).escape_debug().to_string(),
            field: field.to_string(),
            problem,
        };
        if !valid_policy_name(name) {
            return Err(err(
                "(name)",
                "not a valid policy name (1 to 64 of A-Z a-z 0-9 - _ .)".into(),
            ));
        }
        let raw: RawPolicy = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let problem = e.into_inner().to_string();
            // serde reports a missing field at the policy itself: name the field.
            let field = match problem.strip_prefix("missing field `") {
                Some(rest) if path == "." => rest.trim_end_matches('`').to_string(),
                _ if path == "." => "(policy)".to_string(),
                _ => path,
            };
            err(&field, problem)
        })?;

        let schedule = Schedule::parse(&raw.schedule, &raw.timezone).map_err(|e| match e {
            crate::schedule::ScheduleError::Cron(p) => err("schedule", p),
            crate::schedule::ScheduleError::TimeZone(p) => err("timezone", p),
        })?;
        let in_field = |parent: &str, (field, problem): (Option<&str>, String)| match field {
            Some(f) => err(&format!("{parent}.{f}"), problem),
            None => err(parent, problem),
        };
        let keep = KeepRules::from_raw(raw.keep).map_err(|e| in_field("keep", e))?;
        let orphans = match raw.orphans {
            Some(r) => KeepRules::from_raw(r).map_err(|e| in_field("orphans", e))?,
            None => KeepRules::orphan_default(),
        };
        let copy_tags = CopyTags::from_raw(raw.copy_tags).map_err(|p| err("copy_tags", p))?;
        for (key, value) in &raw.tags {
            validate_static_tag(key, value).map_err(|p| err(&format!("tags.{key}"), p))?;
        }

        let consistency = raw.consistency.unwrap_or(Consistency::Volume);
        let has_commands = raw.pre_command.is_some()
            || raw.post_command.is_some()
            || raw.command_timeout.is_some()
            || raw.ssm_document.is_some()
            || raw.on_command_failure.is_some();
        let application = match consistency {
            Consistency::Application => Some(ApplicationCommands::from_raw(RawCommands {
                pre: raw.pre_command,
                post: raw.post_command,
                timeout: raw.command_timeout.as_deref(),
                document: raw.ssm_document,
                on_failure: raw.on_command_failure.as_deref(),
            })
            .map_err(|(field, p)| err(field, p))?),
            _ if has_commands => {
                return Err(err(
                    "consistency",
                    "pre_command, post_command, command_timeout, ssm_document and on_command_failure need \"consistency\": \"application\"".into(),
                ))
            }
            _ => None,
        };

        if raw.copies.len() > MAX_COPY_TARGETS {
            return Err(err(
                "copies",
                format!("{} targets; at most {MAX_COPY_TARGETS}", raw.copies.len()),
            ));
        }
        let mut copies: Vec<CopyTarget> = Vec::new();
        for (i, target) in raw.copies.into_iter().enumerate() {
            let target = CopyTarget::from_raw(target)
                .map_err(|(field, p)| err(&format!("copies[{i}].{field}"), p))?;
            if copies.iter().any(|t| t.name() == target.name()) {
                return Err(err(
                    &format!("copies[{i}].region"),
                    format!("{} is a target twice", target.name()),
                ));
            }
            copies.push(target);
        }

        let archive = raw
            .archive
            .map(ArchiveRule::from_raw)
            .transpose()
            .map_err(|(field, p)| err(&format!("archive.{field}"), p))?;
        let exclude = Exclusions::from_raw(raw.exclude)
            .map_err(|(field, p)| err(&format!("exclude.{field}"), p))?;

        Ok(Self {
            name: name.to_string(),
            schedule,
            keep,
            copy_tags,
            tags: raw.tags,
            consistency,
            orphans,
            application,
            copies,
            archive,
            exclude,
        })
    }
}

/// The policy document as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    schedule: String,
    #[serde(default = "utc")]
    timezone: String,
    keep: RawKeep,
    #[serde(default)]
    copy_tags: Vec<String>,
    #[serde(default)]
    tags: Tags,
    #[serde(default)]
    consistency: Option<Consistency>,
    #[serde(default)]
    orphans: Option<RawKeep>,
    #[serde(default)]
    pre_command: Option<String>,
    #[serde(default)]
    post_command: Option<String>,
    #[serde(default)]
    command_timeout: Option<String>,
    #[serde(default)]
    ssm_document: Option<String>,
    #[serde(default)]
    on_command_failure: Option<String>,
    #[serde(default)]
    copies: Vec<RawCopyTarget>,
    #[serde(default)]
    archive: Option<RawArchive>,
    #[serde(default)]
    exclude: RawExclusions,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCopyTarget {
    region: String,
    #[serde(default)]
    account: Option<String>,
    kms_key: String,
    keep: RawKeep,
}

fn utc() -> String {
    "UTC".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeep {
    last: Option<RawCount>,
    hourly: Option<RawCount>,
    daily: Option<RawCount>,
    weekly: Option<RawCount>,
    monthly: Option<RawCount>,
    yearly: Option<RawCount>,
    within: Option<String>,
    within_hourly: Option<String>,
    within_daily: Option<String>,
    within_weekly: Option<String>,
    within_monthly: Option<String>,
    within_yearly: Option<String>,
    tags: Option<Vec<RawTagSelector>>,
}

/// A count as written: a number, or `"all"` (restic's `-1`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawCount {
    Number(u32),
    Word(String),
}

/// A keep-by-tag entry as written: one tag key, or a list of keys that must
/// all be present (restic's `--keep-tag a,b`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawTagSelector {
    One(String),
    All(Vec<String>),
}

/// How the snapshots of one instance relate to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// One snapshot per volume (the default).
    Volume,
    /// An instance's volumes together with CreateSnapshots (crash-consistent across volumes).
    Instance,
    /// Filesystems flushed and frozen through SSM around the snapshot.
    Application,
    /// The instance is stopped, snapshotted and started again.
    Stopped,
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Volume => "volume",
            Self::Instance => "instance",
            Self::Application => "application",
            Self::Stopped => "stopped",
        })
    }
}

/// Which of the volume's and instance's tags are copied onto snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyTags {
    /// `"*"`: every user tag.
    All,
    Keys(Vec<String>),
}

impl CopyTags {
    fn from_raw(keys: Vec<String>) -> Result<Self, String> {
        if keys.iter().any(|k| k == "*") {
            return if keys.len() == 1 {
                Ok(Self::All)
            } else {
                Err("\"*\" copies every tag and cannot be combined with other keys".into())
            };
        }
        for key in &keys {
            if key.is_empty() || key.chars().count() > keys::MAX_KEY_CHARS {
                return Err(format!(
                    "`{key}` is not a valid tag key (1 to 128 characters)"
                ));
            }
            if key.starts_with(keys::AWS_PREFIX) || key.starts_with(keys::LIFECYCLE_PREFIX) {
                return Err(format!("`{key}` is reserved and is never copied"));
            }
        }
        Ok(Self::Keys(keys))
    }
}

/// The SSM commands around an application-consistent snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationCommands {
    /// `None`: the project's default flush-and-freeze script
    /// (`consistency::freeze_script`).
    pub pre_command: Option<String>,
    /// `None`: the project's default thaw script.
    pub post_command: Option<String>,
    /// An SSM document to run instead of `AWS-RunShellScript` with the
    /// commands, for applications with their own flush (databases). Run as
    /// Data Lifecycle Manager runs its pre and post scripts: once with
    /// parameter `command=pre-script`, once with `command=post-script`.
    pub document: Option<String>,
    pub timeout: Duration,
    pub on_failure: OnCommandFailure,
}

/// The fields of an `application` policy, as written.
struct RawCommands<'a> {
    pre: Option<String>,
    post: Option<String>,
    timeout: Option<&'a str>,
    document: Option<String>,
    on_failure: Option<&'a str>,
}

impl ApplicationCommands {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

    fn from_raw(raw: RawCommands<'_>) -> Result<Self, (&'static str, String)> {
        for (field, value) in [("pre_command", &raw.pre), ("post_command", &raw.post)] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err((field, "must not be empty".into()));
            }
        }
        // The default thaw undoes only the default freeze; a post command of
        // one's own would leave the default freeze to its watchdog.
        if raw.post.is_some() && raw.pre.is_none() && raw.document.is_none() {
            return Err((
                "post_command",
                "needs a pre_command: the default freeze is thawed only by the default post command".into(),
            ));
        }
        if let Some(doc) = &raw.document {
            // SSM document names: 3 to 128 of letters, digits, _ - . (and
            // ARNs of shared documents).
            let ok = (3..=1024).contains(&doc.len())
                && doc
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'));
            if !ok {
                return Err(("ssm_document", "not an SSM document name or ARN".into()));
            }
            if raw.pre.is_some() || raw.post.is_some() {
                return Err((
                    "ssm_document",
                    "give either ssm_document or pre_command/post_command, not both".into(),
                ));
            }
        }
        let timeout = match raw.timeout {
            None => Self::DEFAULT_TIMEOUT,
            Some(text) => {
                let d = parse_duration(text).map_err(|p| ("command_timeout", p))?;
                if d.is_zero() || d > Self::MAX_TIMEOUT {
                    return Err(("command_timeout", "must be between 1s and 10m".into()));
                }
                d
            }
        };
        let on_failure = match raw.on_failure {
            None | Some("fallback") => OnCommandFailure::Fallback,
            Some("skip") => OnCommandFailure::Skip,
            Some(_) => {
                return Err((
                    "on_command_failure",
                    "must be \"fallback\" (crash-consistent snapshot) or \"skip\"".into(),
                ))
            }
        };
        Ok(Self {
            pre_command: raw.pre,
            post_command: raw.post,
            document: raw.document,
            timeout,
            on_failure,
        })
    }
}

/// A count meaning "no limit": written `"all"` in the policy document
/// (restic's `-1`). `last: "all"` keeps every snapshot; `daily: "all"` the
/// newest of every day.
pub const ALL: u32 = u32::MAX;

/// restic-style `forget` rules, restic's names in brackets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepRules {
    /// `--keep-last`; [`ALL`] for no limit.
    pub last: Option<u32>,
    /// `--keep-hourly` ... `--keep-yearly`; [`ALL`] for no limit.
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    /// Keep everything younger than this (`--keep-within`), measured back
    /// from the newest snapshot.
    pub within: Option<KeepWithin>,
    /// `--keep-within-hourly` ... `--keep-within-yearly`: the newest of
    /// every hour (day, ...) younger than this, no count.
    pub within_hourly: Option<KeepWithin>,
    pub within_daily: Option<KeepWithin>,
    pub within_weekly: Option<KeepWithin>,
    pub within_monthly: Option<KeepWithin>,
    pub within_yearly: Option<KeepWithin>,
    /// `--keep-tag`: a snapshot carrying every tag key of one entry is
    /// kept. Tags only ever keep: writing one can never cause a deletion.
    pub tags: Vec<Vec<String>>,
}

/// A `within` duration in restic's calendar units: years, months, days, hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepWithin {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl KeepRules {
    /// docs/functions.md: the newest completed snapshot of a deleted volume is kept.
    pub fn orphan_default() -> Self {
        Self {
            last: Some(1),
            ..Self::default()
        }
    }

    /// The rules as written; an error names the rule at fault, if one is.
    fn from_raw(raw: RawKeep) -> Result<Self, (Option<&'static str>, String)> {
        let count = |rule: &'static str, raw: Option<RawCount>| {
            let at = |problem: String| (Some(rule), problem);
            match raw {
                None => Ok(None),
                Some(RawCount::Number(0)) => Err(at(format!(
                    "`{rule}: 0` keeps nothing; leave the rule out instead"
                ))),
                Some(RawCount::Number(n)) if n == ALL => Err(at(format!(
                    "`{rule}: {n}` is too large; write \"all\" for no limit"
                ))),
                Some(RawCount::Number(n)) => Ok(Some(n)),
                Some(RawCount::Word(w)) if w == "all" => Ok(Some(ALL)),
                Some(RawCount::Word(w)) => Err(at(format!(
                    "`{}` is neither a count of at least 1 nor \"all\"",
                    crate::text::excerpt(&w).escape_debug()
                ))),
            }
        };
        let within = |rule: &str, raw: Option<String>| {
            raw.as_deref()
                .map(|w| KeepWithin::parse(w).map_err(|p| (None, format!("{rule}: {p}"))))
                .transpose()
        };
        let mut tags = Vec::new();
        for selector in raw.tags.unwrap_or_default() {
            let keys = match selector {
                RawTagSelector::One(key) => vec![key],
                RawTagSelector::All(keys) => keys,
            };
            if keys.is_empty() {
                return Err((
                    Some("tags"),
                    "an empty list would match every snapshot; leave it out".into(),
                ));
            }
            for key in &keys {
                if key.is_empty() || key.chars().count() > keys::MAX_KEY_CHARS {
                    return Err((
                        Some("tags"),
                        format!(
                            "`{}` is not a valid tag key (1 to 128 characters)",
                            crate::text::excerpt(key).escape_debug()
                        ),
                    ));
                }
            }
            tags.push(keys);
        }
        let rules = Self {
            last: count("last", raw.last)?,
            hourly: count("hourly", raw.hourly)?,
            daily: count("daily", raw.daily)?,
            weekly: count("weekly", raw.weekly)?,
            monthly: count("monthly", raw.monthly)?,
            yearly: count("yearly", raw.yearly)?,
            within: within("within", raw.within)?,
            within_hourly: within("within_hourly", raw.within_hourly)?,
            within_daily: within("within_daily", raw.within_daily)?,
            within_weekly: within("within_weekly", raw.within_weekly)?,
            within_monthly: within("within_monthly", raw.within_monthly)?,
            within_yearly: within("within_yearly", raw.within_yearly)?,
            tags,
        };
        if rules.is_empty() {
            return Err((None, "keeps nothing: give at least one of last, hourly, daily, weekly, monthly, yearly, within, within_hourly, within_daily, within_weekly, within_monthly, within_yearly, tags".into()));
        }
        Ok(rules)
    }

    pub fn is_empty(&self) -> bool {
        [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
        .iter()
        .all(Option::is_none)
            && [
                self.within,
                self.within_hourly,
                self.within_daily,
                self.within_weekly,
                self.within_monthly,
                self.within_yearly,
            ]
            .iter()
            .all(Option::is_none)
            && self.tags.is_empty()
    }
}

impl KeepWithin {
    /// restic's duration syntax: a sequence of `<n>y`, `<n>m`, `<n>d`, `<n>h`,
    /// e.g. `3d`, `1y2m`, `36h`. Each unit at most once; the total is not zero.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = Self::default();
        let mut seen = String::new();
        let mut digits = String::new();
        for c in text.trim().chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let n: u32 = digits
                .parse()
                .map_err(|_| format!("`{text}` is not a duration like 3d, 36h or 1y2m"))?;
            digits.clear();
            if seen.contains(c) {
                return Err(format!("`{text}` gives the unit `{c}` twice"));
            }
            seen.push(c);
            match c {
                'y' => out.years = n,
                'm' => out.months = n,
                'd' => out.days = n,
                'h' => out.hours = n,
                _ => return Err(format!("`{text}`: unknown unit `{c}` (use y, m, d, h)")),
            }
        }
        if !digits.is_empty() || seen.is_empty() {
            return Err(format!("`{text}` is not a duration like 3d, 36h or 1y2m"));
        }
        if out == Self::default() {
            return Err(format!("`{text}` is zero and keeps nothing"));
        }
        Ok(out)
    }
}

/// A plain duration `30s`, `5m`, `1h` (for command timeouts).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("`{text}` is not a duration like 30s, 5m or 1h");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

fn valid_policy_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn validate_static_tag(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() || key.chars().count() > keys::MAX_KEY_CHARS {
        return Err("tag keys are 1 to 128 characters".into());
    }
    if key.starts_with(keys::AWS_PREFIX) || key.starts_with(keys::LIFECYCLE_PREFIX) {
        return Err(format!("`{key}` is reserved"));
    }
    if value.chars().count() > keys::MAX_VALUE_CHARS {
        return Err("tag values are at most 256 characters".into());
    }
    Ok(())
}

/// A policy document that cannot be used. Names the policy and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("POLICIES is not a JSON object of policies: {0}")]
    Document(String),
    #[error("policy `{policy}`, field `{field}`: {problem}")]
    Field {
        policy: String,
        field: String,
        problem: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_is_the_opt_out_value_and_no_policy_may_take_it() {
        let refused = Policies::parse(r#"{"none": {"schedule": "@daily", "keep": {"last": 1}}}"#);
        assert!(
            matches!(&refused, Err(PolicyError::Document(m)) if m.contains("opts a volume")),
            "{refused:?}"
        );
    }

    fn field_error(doc: &str) -> (String, String) {
        match Policies::parse(doc) {
            Err(PolicyError::Field { policy, field, .. }) => (policy, field),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn the_spec_example_parses() {
        let doc = r#"{
          "default":  { "schedule": "@daily", "timezone": "UTC",
                        "keep": { "last": 3, "daily": 7, "weekly": 4, "monthly": 12 } },
          "critical": { "schedule": "0 * * * *", "timezone": "Europe/Berlin",
                        "keep": { "last": 2, "hourly": 24, "daily": 14, "weekly": 8, "monthly": 24, "yearly": 3 },
                        "copy_tags": ["Name", "Owner", "CostCenter"], "tags": { "Tier": "gold" } }
        }"#;
        let policies = Policies::parse(doc).unwrap();
        let critical = policies.get("critical").unwrap();
        assert_eq!(critical.keep.yearly, Some(3));
        assert_eq!(critical.tags.get("Tier").map(String::as_str), Some("gold"));
        assert_eq!(critical.consistency, Consistency::Volume);
        assert_eq!(critical.orphans, KeepRules::orphan_default());
        assert_eq!(
            critical.copy_tags,
            CopyTags::Keys(vec!["Name".into(), "Owner".into(), "CostCenter".into()])
        );
        assert_eq!(
            policies.names().collect::<Vec<_>>(),
            ["critical", "default"]
        );
    }

    #[test]
    fn builtin_default_matches_spec() {
        let p = Policies::builtin_default();
        let d = p.get("default").unwrap();
        assert_eq!(d.keep.last, Some(3));
        assert_eq!(d.keep.daily, Some(7));
        assert_eq!(d.keep.weekly, Some(4));
        assert_eq!(d.keep.monthly, Some(12));
        assert_eq!(d.schedule.expression(), "@daily");
    }

    #[test]
    fn copy_targets_parse_and_each_mistake_names_its_field() {
        let key = |region: &str| format!("arn:aws:kms:{region}:111111111111:key/1234abcd-12ab");
        let doc = |targets: &str| {
            format!(r#"{{"p":{{"schedule":"@hourly","keep":{{"last":2}},"copies":[{targets}]}}}}"#)
        };
        let target = |region: &str, key: &str| {
            format!(r#"{{"region":"{region}","kms_key":"{key}","keep":{{"daily":7}}}}"#)
        };
        let ok = Policies::parse(&doc(&format!(
            "{},{}",
            target("eu-central-1", &key("eu-central-1")),
            target(
                "us-gov-west-1",
                "arn:aws-us-gov:kms:us-gov-west-1:111111111111:alias/dr"
            )
        )))
        .unwrap();
        let p = ok.get("p").unwrap();
        assert_eq!(p.copies.len(), 2);
        assert_eq!(p.copies[0].keep.daily, Some(7));
        assert_eq!(
            ok.copy_regions().into_iter().collect::<Vec<_>>(),
            ["eu-central-1", "us-gov-west-1"]
        );
        let kept_there = ok.as_kept_in("eu-central-1");
        assert_eq!(kept_there.get("p").unwrap().keep.daily, Some(7));
        assert_eq!(kept_there.get("p").unwrap().orphans.daily, Some(7));
        assert!(ok.as_kept_in("ap-south-1").get("p").is_none());

        let cases = [
            (target("eu-central", &key("eu-central")), "copies[0].region"),
            (target("eu-central-1", &key("eu-west-1")), "copies[0].kms_key"),
            (target("eu-central-1", "alias/dr"), "copies[0].kms_key"),
            (
                r#"{"region":"eu-central-1","kms_key":"arn:aws:kms:eu-central-1:111111111111:key/k","keep":{}}"#.into(),
                "copies[0].keep",
            ),
            (
                r#"{"region":"eu-central-1","account":"2222","kms_key":"arn:aws:kms:eu-central-1:111111111111:key/k","keep":{"daily":1}}"#.into(),
                "copies[0].account",
            ),
            (
                format!(
                    "{},{}",
                    target("eu-central-1", &key("eu-central-1")),
                    target("eu-central-1", &key("eu-central-1"))
                ),
                "copies[1].region",
            ),
            (
                (1..=6)
                    .map(|i| target(&format!("eu-west-{i}"), &key(&format!("eu-west-{i}"))))
                    .collect::<Vec<_>>()
                    .join(","),
                "copies",
            ),
        ];
        for (targets, field) in cases {
            assert_eq!(field_error(&doc(&targets)).1, field, "{targets}");
        }
        assert!(Policies::parse(&doc(r#"{"region":"eu-central-1"}"#)).is_err());
    }

    #[test]
    fn errors_name_the_policy_and_field() {
        let cases = [
            (
                r#"{"p":{"schedule":"@daily","keep":{"last":1},"colour":"red"}}"#,
                "colour",
            ),
            (
                r#"{"p":{"schedule":"61 * * * *","keep":{"last":1}}}"#,
                "schedule",
            ),
            (
                r#"{"p":{"schedule":"@daily","timezone":"Mars/Olympus","keep":{"last":1}}}"#,
                "timezone",
            ),
            (r#"{"p":{"schedule":"@daily","keep":{}}}"#, "keep"),
            (
                r#"{"p":{"schedule":"@daily","keep":{"daily":0}}}"#,
                "keep.daily",
            ),
            (
                r#"{"p":{"schedule":"@daily","keep":{"dayly":3}}}"#,
                "keep.dayly",
            ),
            (
                r#"{"p":{"schedule":"@daily","keep":{"daily":"3"}}}"#,
                "keep.daily",
            ),
            (
                r#"{"p":{"schedule":"@daily","keep":{"within":"3w"}}}"#,
                "keep",
            ),
            (
                r#"{"p":{"schedule":"@daily","keep":{"last":1},"orphans":{}}}"#,
                "orphans",
            ),
            (
                r#"{"p":{"schedule":"@daily","keep":{"last":1},"consistency":"quick"}}"#,
                "consistency",
            ),
            (
                r#"{"p":{"schedule":"@daily","keep":{"last":1},"pre_command":"sync"}}"#,
                "consistency",
            ),
            (
                r#"{"p":{"schedule":"@daily","keep":{"last":1},"consistency":"application","command_timeout":"2h"}}"#,
                "command_timeout",
            ),
            (
                r#"{"p":{"schedule":"@daily","keep":{"last":1},"copy_tags":["aws:x"]}}"#,
                "copy_tags",
            ),
            (
                r#"{"p":{"schedule":"@daily","keep":{"last":1},"copy_tags":["*","Owner"]}}"#,
                "copy_tags",
            ),
            (
                r#"{"p":{"schedule":"@daily","keep":{"last":1},"tags":{"lifecycle:policy":"x"}}}"#,
                "tags.lifecycle:policy",
            ),
            (r#"{"p":{"keep":{"last":1}}}"#, "schedule"),
            (r#"{"p":{"schedule":"@daily"}}"#, "keep"),
            (
                r#"{"bad name!":{"schedule":"@daily","keep":{"last":1}}}"#,
                "(name)",
            ),
        ];
        for (doc, field) in cases {
            let (policy, got) = field_error(doc);
            assert_eq!(got, field, "for {doc}");
            assert!(policy == "p" || policy == "bad name!", "for {doc}");
        }
    }

    #[test]
    fn error_messages_are_readable() {
        let err =
            Policies::parse(r#"{"gold":{"schedule":"@daily","keep":{"last":1},"colour":"red"}}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("policy `gold`"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn documents_that_are_not_objects_of_policies_are_rejected() {
        for doc in [
            "",
            "[]",
            "{}",
            "null",
            "{\"p\": 3}",
            "{\"p\":{\"schedule\":\"@daily\",\"keep\":{\"last\":1}}",
        ] {
            assert!(Policies::parse(doc).is_err(), "{doc}");
        }
    }

    #[test]
    fn within_follows_restic_syntax() {
        assert_eq!(
            KeepWithin::parse("1y2m3d4h"),
            Ok(KeepWithin {
                years: 1,
                months: 2,
                days: 3,
                hours: 4
            })
        );
        assert_eq!(KeepWithin::parse("36h").map(|w| w.hours), Ok(36));
        for bad in ["", "3", "d", "3d3d", "0d", "3w", "-1d", "1.5d"] {
            assert!(KeepWithin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn application_commands_have_defaults_and_overrides() {
        let doc = r#"{"db":{"schedule":"@daily","keep":{"last":1},"consistency":"application",
                     "pre_command":"pg_backup_start","command_timeout":"90s"}}"#;
        let policies = Policies::parse(doc).unwrap();
        let app = policies.get("db").unwrap().application.clone().unwrap();
        assert_eq!(app.pre_command.as_deref(), Some("pg_backup_start"));
        assert_eq!(app.post_command, None);
        assert_eq!(app.timeout, Duration::from_secs(90));
    }

    #[test]
    fn a_document_or_commands_and_a_failure_policy() {
        let app = |fields: &str| {
            let doc = format!(
                r#"{{"db":{{"schedule":"@daily","keep":{{"last":1}},"consistency":"application"{fields}}}}}"#
            );
            Policies::parse(&doc).map(|p| p.get("db").unwrap().application.clone().unwrap())
        };
        let default = app("").unwrap();
        assert_eq!(default.on_failure, OnCommandFailure::Fallback);
        assert_eq!(default.document, None);
        let skip = app(r#","on_command_failure":"skip","ssm_document":"Team-PgFreeze""#).unwrap();
        assert_eq!(skip.on_failure, OnCommandFailure::Skip);
        assert_eq!(skip.document.as_deref(), Some("Team-PgFreeze"));
        let field_of = |r: Result<ApplicationCommands, PolicyError>| match r {
            Err(PolicyError::Field { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field_of(app(r#","on_command_failure":"retry""#)),
            "on_command_failure"
        );
        assert_eq!(field_of(app(r#","ssm_document":"a b""#)), "ssm_document");
        assert_eq!(
            field_of(app(r#","post_command":"systemctl start db""#)),
            "post_command"
        );
        assert_eq!(
            field_of(app(r#","ssm_document":"Doc-1","pre_command":"sync""#)),
            "ssm_document"
        );
        let volume = r#"{"p":{"schedule":"@daily","keep":{"last":1},"on_command_failure":"skip"}}"#;
        assert!(matches!(
            Policies::parse(volume),
            Err(PolicyError::Field { field, .. }) if field == "consistency"
        ));
    }

    #[test]
    fn copy_all_tags() {
        let doc = r#"{"p":{"schedule":"@daily","keep":{"last":1},"copy_tags":["*"]}}"#;
        assert_eq!(
            Policies::parse(doc).unwrap().get("p").unwrap().copy_tags,
            CopyTags::All
        );
    }

    #[test]
    fn the_archive_rule_parses_and_each_mistake_names_its_field() {
        let doc = |archive: &str| {
            format!(
                r#"{{"p":{{"schedule":"@daily","keep":{{"monthly":12,"yearly":3}},"archive":{archive}}}}}"#
            )
        };
        let p = Policies::parse(&doc(r#"{"after":"90d","rules":["monthly","yearly"]}"#)).unwrap();
        let rule = p.get("p").unwrap().archive.clone().unwrap();
        assert_eq!(rule.after.days, 90);
        assert_eq!(rule.rules, ["monthly", "yearly"]);
        assert!(
            Policies::parse(r#"{"p":{"schedule":"@daily","keep":{"last":1}}}"#)
                .unwrap()
                .get("p")
                .unwrap()
                .archive
                .is_none()
        );
        for (archive, field) in [
            (r#"{"after":"ninety","rules":["monthly"]}"#, "archive.after"),
            (r#"{"after":"90d","rules":[]}"#, "archive.rules"),
            (r#"{"after":"90d","rules":["montly"]}"#, "archive.rules"),
        ] {
            assert_eq!(field_error(&doc(archive)).1, field, "{archive}");
        }
        assert!(Policies::parse(&doc(r#"{"after":"90d"}"#)).is_err());
    }
}

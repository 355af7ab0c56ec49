//! check-encryption's judgement: which snapshots, volumes and account
//! settings break the encryption and sharing rules, how bad each finding is,
//! and what `REMEDIATE` allows to be done about it. Pure: the handler gathers
//! the facts, this module decides, the handler carries the remedies out.
//!
//! Rules (docs/functions.md, "check-encryption"):
//! - a snapshot must be encrypted, with a key in `ALLOWED_KMS_KEY_IDS` when
//!   that list is set (key ids, key ARNs and aliases all name a key);
//! - it must not be public (`createVolumePermission` group `all`: critical)
//!   nor shared with an account outside `ALLOWED_SHARE_ACCOUNTS`;
//! - opted-in volumes should be encrypted (their snapshots inherit it);
//! - EBS encryption by default should be on, and snapshot block public
//!   access enabled; an API the endpoint lacks is reported "not checked".
//!
//! Remedies by `REMEDIATE`: `off` advises only; `public` removes public
//! access (on any snapshot: a public snapshot is an exposure whoever made
//! it) and disallowed shares (on managed snapshots); `all` also replaces an
//! unencrypted managed snapshot with an encrypted copy. Foreign snapshots are
//! never modified except to remove public access.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::{Snapshot, SnapshotState, Volume};
use crate::notify::Severity;
use crate::tags;

/// What check-encryption may fix by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remediate {
    Off,
    Public,
    All,
}

impl Remediate {
    /// The value as `REMEDIATE` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Public => "public",
            Self::All => "all",
        }
    }
}

/// EC2's default quota of concurrent snapshot copies per destination region.
/// check-encryption never has more of its own copies in flight than this.
pub(crate) const MAX_COPIES_IN_FLIGHT: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    UnencryptedSnapshot,
    DisallowedKey,
    PublicSnapshot,
    DisallowedShare,
    UnencryptedVolume,
    EncryptionByDefaultOff,
    BlockPublicAccessOff,
    NotChecked,
}

impl FindingKind {
    pub fn severity(self) -> Severity {
        match self {
            Self::PublicSnapshot => Severity::Critical,
            Self::NotChecked => Severity::Info,
            _ => Severity::Warning,
        }
    }
}

/// What became (or should become) of a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status", content = "what")]
pub enum Fix {
    /// Nothing done; what a person should do.
    Advised(String),
    /// `REMEDIATE` allows it; the handler is to do it.
    Planned(String),
    /// Done by this run.
    Applied(String),
    /// Already under way, or waiting for room (copies in flight).
    Deferred(String),
    /// Tried and refused by AWS.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Managed by this deployment (snapshots only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
    pub detail: String,
    pub fix: Fix,
    /// For an unencrypted snapshot: its encrypted copy, when one exists
    /// already (under way or completed). Such a finding is in hand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted_copy: Option<String>,
}

impl Finding {
    /// The condition this finding reports, for notifying it once a day: its
    /// kind and the volume it is about (every new snapshot of an
    /// unencrypted volume is the same condition), else the snapshot, else
    /// what it says.
    pub fn condition(&self) -> String {
        let kind = serde_json::to_value(self.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let subject = self
            .volume_id
            .as_deref()
            .or(self.snapshot_id.as_deref())
            .unwrap_or(&self.detail);
        format!("{kind} {subject}")
    }

    /// Already being dealt with: an unencrypted snapshot whose encrypted
    /// copy exists. The run that started the copy reported it.
    pub fn in_hand(&self) -> bool {
        self.encrypted_copy.is_some()
    }

    pub fn new(kind: FindingKind, detail: String, fix: Fix) -> Self {
        Self {
            kind,
            severity: kind.severity(),
            snapshot_id: None,
            volume_id: None,
            policy: None,
            managed: None,
            encrypted_copy: None,
            detail,
            fix,
        }
    }

    fn on_snapshot(mut self, s: &Snapshot, managed: bool) -> Self {
        self.snapshot_id = Some(s.id.clone());
        self.volume_id = s.source_volume_id().map(String::from);
        self.policy = s.tags.get(tags::POLICY).cloned();
        self.managed = Some(managed);
        self
    }

    /// A stable identity for "the same finding as yesterday".
    pub fn key(&self) -> String {
        format!(
            "{:?}/{}/{}",
            self.kind,
            self.snapshot_id.as_deref().unwrap_or(""),
            self.volume_id.as_deref().unwrap_or("")
        )
    }
}

/// A change `REMEDIATE` allows, for the handler to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remedy {
    /// Remove `createVolumePermission` group `all`.
    RemovePublic { snapshot_id: String },
    /// Remove these accounts' `createVolumePermission`.
    RemoveShares {
        snapshot_id: String,
        accounts: Vec<String>,
    },
    /// CopySnapshot with encryption; the copy gets `tags`.
    EncryptedCopy {
        snapshot_id: String,
        tags: crate::model::Tags,
    },
}

/// Who may restore a snapshot, from `createVolumePermission`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub public: bool,
    pub accounts: Vec<String>,
}

/// `ALLOWED_KMS_KEY_IDS`, in any of the forms KMS accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedKeys {
    entries: Vec<String>,
}

/// The key id in a key ARN (`arn:aws:kms:r:a:key/<id>`), or the text itself.
fn key_id(key: &str) -> &str {
    key.rsplit_once(":key/").map_or(key, |(_, id)| id)
}

fn is_alias(entry: &str) -> bool {
    entry.starts_with("alias/") || (entry.starts_with("arn:") && entry.contains(":alias/"))
}

impl AllowedKeys {
    pub fn new(entries: &[String]) -> Self {
        Self {
            entries: entries
                .iter()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect(),
        }
    }

    /// True when no list is configured: every key is allowed.
    pub fn is_unrestricted(&self) -> bool {
        self.entries.is_empty()
    }

    /// The aliases in the list: the handler resolves them to keys through KMS.
    pub fn aliases(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| is_alias(e))
            .cloned()
            .collect()
    }

    /// Whether `key` (a key ARN or id, as EC2 reports it) is allowed, given
    /// what the aliases resolved to (alias -> key ARN or id). An alias that
    /// did not resolve allows nothing.
    pub fn allows(&self, key: &str, resolved: &BTreeMap<String, String>) -> bool {
        if self.is_unrestricted() {
            return true;
        }
        let wanted = key_id(key);
        self.entries.iter().any(|entry| {
            let target = if is_alias(entry) {
                resolved.get(entry).map(String::as_str)
            } else {
                Some(entry.as_str())
            };
            target.is_some_and(|t| key_id(t) == wanted)
        })
    }
}

/// What the rules need besides the snapshots.
#[derive(Debug, Clone)]
pub struct Rules<'a> {
    pub deployment: &'a str,
    pub remediate: Remediate,
    pub allowed_keys: &'a AllowedKeys,
    /// `ALLOWED_KMS_KEY_IDS` aliases resolved to keys.
    pub resolved_aliases: &'a BTreeMap<String, String>,
    pub allowed_accounts: &'a [String],
}

/// Whether a snapshot could be shared at all: EC2 refuses to share one
/// encrypted with the AWS managed key, so its permissions need no reading.
/// `aws_managed_key`: that key's ARN, when known; unknown means "read them all".
/// The order a daily run reads permissions in: by snapshot id, starting
/// after `cursor` (where the previous run stopped) and wrapping round, so
/// a run cut short by its deadline is continued by the next one and every
/// snapshot is read at least once every few days, however many there are.
pub fn reading_order<'a>(mut ids: Vec<&'a str>, cursor: Option<&str>) -> Vec<&'a str> {
    ids.sort_unstable();
    ids.dedup();
    let start = cursor.map_or(0, |c| ids.partition_point(|id| *id <= c));
    ids.rotate_left(start);
    ids
}

/// Where the next run starts, given the order this one read in and which of
/// those it read: after the last one read, or from the start (`None`) when
/// it read them all.
pub fn next_cursor<'a>(order: &[&'a str], read: &BTreeSet<&str>) -> Option<&'a str> {
    if order.iter().all(|id| read.contains(id)) {
        return None;
    }
    order.iter().rev().find(|id| read.contains(**id)).copied()
}

pub fn can_be_shared(snapshot: &Snapshot, aws_managed_key: Option<&str>) -> bool {
    match (
        snapshot.encrypted,
        snapshot.kms_key_id.as_deref(),
        aws_managed_key,
    ) {
        (false, _, _) => true,
        (true, Some(key), Some(managed)) => key_id(key) != key_id(managed),
        (true, _, _) => true,
    }
}

/// The copy state of the deployment's encrypted copies, by original.
#[derive(Debug, Clone, Default)]
pub struct Copies {
    /// Original id -> copy id, for every copy that exists.
    pub by_original: BTreeMap<String, String>,
    /// Copies still pending (EC2 state).
    pub in_flight: usize,
}

impl Copies {
    pub fn new(copies: &[Snapshot]) -> Self {
        let mut out = Self::default();
        for c in copies {
            if let Some(original) = c.encrypted_copy_of() {
                out.by_original.insert(original.to_string(), c.id.clone());
                if c.state == SnapshotState::Pending {
                    out.in_flight += 1;
                }
            }
        }
        out
    }
}

/// The findings and remedies for these snapshots. `permissions`: for each
/// snapshot whose permissions were read (the others cannot be shared).
pub fn assess_snapshots(
    rules: &Rules<'_>,
    snapshots: &[Snapshot],
    permissions: &BTreeMap<String, Permissions>,
    copies: &Copies,
) -> (Vec<Finding>, Vec<(usize, Remedy)>) {
    let mut findings = Vec::new();
    let mut remedies = Vec::new();
    let mut copy_budget = MAX_COPIES_IN_FLIGHT.saturating_sub(copies.in_flight);
    let fixes_public = rules.remediate != Remediate::Off;
    for s in snapshots {
        let managed = tags::is_managed_by(&s.tags, rules.deployment);
        if let Some(p) = permissions.get(&s.id) {
            if p.public {
                let fix = if fixes_public {
                    remedies.push((
                        findings.len(),
                        Remedy::RemovePublic {
                            snapshot_id: s.id.clone(),
                        },
                    ));
                    Fix::Planned("remove public createVolumePermission".into())
                } else {
                    Fix::Advised("remove the public permission (ModifySnapshotAttribute, group all); set REMEDIATE=public to have it done".into())
                };
                findings.push(
                    Finding::new(
                        FindingKind::PublicSnapshot,
                        "anyone can create a volume from this snapshot".into(),
                        fix,
                    )
                    .on_snapshot(s, managed),
                );
            }
            let disallowed: Vec<String> = p
                .accounts
                .iter()
                .filter(|a| !rules.allowed_accounts.contains(a))
                .cloned()
                .collect();
            if !disallowed.is_empty() {
                let fix = match (fixes_public, managed) {
                    (true, true) => {
                        remedies.push((
                            findings.len(),
                            Remedy::RemoveShares {
                                snapshot_id: s.id.clone(),
                                accounts: disallowed.clone(),
                            },
                        ));
                        Fix::Planned(format!("remove the shares with {}", disallowed.join(", ")))
                    }
                    (true, false) => Fix::Advised(format!(
                        "not managed by this deployment, so left alone: remove the shares with {} or add them to ALLOWED_SHARE_ACCOUNTS",
                        disallowed.join(", ")
                    )),
                    (false, _) => Fix::Advised(format!(
                        "remove the shares with {} or add them to ALLOWED_SHARE_ACCOUNTS; REMEDIATE=public removes them from managed snapshots",
                        disallowed.join(", ")
                    )),
                };
                findings.push(
                    Finding::new(
                        FindingKind::DisallowedShare,
                        format!(
                            "shared with accounts outside ALLOWED_SHARE_ACCOUNTS: {}",
                            disallowed.join(", ")
                        ),
                        fix,
                    )
                    .on_snapshot(s, managed),
                );
            }
        }
        if !s.encrypted {
            let fix = match unencrypted_fix(rules, s, managed, copies, &mut copy_budget) {
                (fix, Some(remedy)) => {
                    remedies.push((findings.len(), remedy));
                    fix
                }
                (fix, None) => fix,
            };
            let mut finding = Finding::new(
                FindingKind::UnencryptedSnapshot,
                "not encrypted: volumes restored from it are not encrypted either".into(),
                fix,
            )
            .on_snapshot(s, managed);
            finding.encrypted_copy = copies.by_original.get(&s.id).cloned();
            findings.push(finding);
        } else if let Some(key) = s.kms_key_id.as_deref() {
            if !rules.allowed_keys.allows(key, rules.resolved_aliases) {
                findings.push(
                    Finding::new(
                        FindingKind::DisallowedKey,
                        format!("encrypted with {key}, which is not in ALLOWED_KMS_KEY_IDS"),
                        Fix::Advised("copy it with an allowed key (CopySnapshot with KmsKeyId) and delete this one, or allow the key".into()),
                    )
                    .on_snapshot(s, managed),
                );
            }
        }
    }
    (findings, remedies)
}

/// What to do about one unencrypted snapshot, and the remedy if any.
fn unencrypted_fix(
    rules: &Rules<'_>,
    s: &Snapshot,
    managed: bool,
    copies: &Copies,
    budget: &mut usize,
) -> (Fix, Option<Remedy>) {
    // Replaced only if the deployment's own copy of it says so: a
    // `superseded-by` tag alone (anyone can write one) neither claims a
    // remediation nor stops the copy being made.
    let proven_copy = copies.by_original.get(&s.id);
    if let Some(copy) = s
        .tags
        .get(tags::SUPERSEDED_BY)
        .filter(|c| Some(*c) == proven_copy)
    {
        return (
            Fix::Applied(format!("replaced by the encrypted copy {copy}; expiry deletes this one when no other rule protects it")),
            None,
        );
    }
    if let Some(copy) = copies.by_original.get(&s.id) {
        return (
            Fix::Deferred(format!(
                "encrypted copy {copy} is under way; this one is superseded when it completes"
            )),
            None,
        );
    }
    let advice = "copy it with encryption (CopySnapshot, Encrypted=true) and delete the original";
    match (rules.remediate, managed) {
        (Remediate::All, true) if s.state != SnapshotState::Completed => (
            Fix::Deferred("not completed yet; copied once it is".into()),
            None,
        ),
        (Remediate::All, true) if *budget == 0 => (
            Fix::Deferred(format!(
                "{MAX_COPIES_IN_FLIGHT} copies already in flight; the next run copies it"
            )),
            None,
        ),
        (Remediate::All, true) => {
            *budget -= 1;
            (
                Fix::Planned("replace with an encrypted copy".into()),
                Some(Remedy::EncryptedCopy {
                    snapshot_id: s.id.clone(),
                    tags: copy_tags(s),
                }),
            )
        }
        (_, false) => (
            Fix::Advised(format!(
                "not managed by this deployment, so never copied: {advice}"
            )),
            None,
        ),
        (_, true) => (
            Fix::Advised(format!(
                "{advice}; REMEDIATE=all does it for managed snapshots"
            )),
            None,
        ),
    }
}

/// The tags of an encrypted copy: the original's (lifecycle labels, Name,
/// copied and static tags) with the state back to `pending`, the per-copy
/// labels dropped (complete-snapshots and tag-snapshots write them anew), and
/// `lifecycle:encrypted-copy-of`. `lifecycle:created-at` stays the
/// original's: retention places the copy at the original's time.
pub fn copy_tags(original: &Snapshot) -> crate::model::Tags {
    let mut t: crate::model::Tags = original
        .tags
        .iter()
        .filter(|(k, _)| !k.starts_with(tags::AWS_PREFIX))
        .filter(|(k, _)| {
            ![
                tags::COMPLETED_AT,
                tags::RETAINED_BY,
                tags::EXPIRES_AT,
                tags::STUCK_NOTIFIED_AT,
                tags::SUPERSEDED_BY,
                tags::HOLD,
            ]
            .contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    t.insert(
        tags::STATE.into(),
        tags::LifecycleState::Pending.as_str().into(),
    );
    t.insert(tags::ENCRYPTED_COPY_OF.into(), original.id.clone());
    if let Some(v) = original.source_volume_id() {
        t.entry(tags::VOLUME_ID.into())
            .or_insert_with(|| v.to_string());
    }
    // The copy sorts at the original's proven time (EC2's StartTime, or
    // a copy's ledger record, as the ownership check set it), never at the
    // original's `created-at` tag: anyone can write that, and the ledger's
    // record of the copy takes its time from here.
    t.remove(tags::CREATED_AT);
    if let Some(time) = original.retention_time() {
        t.insert(tags::CREATED_AT.into(), tags::format_time(time));
    }
    t
}

/// Opted-in volumes that are not encrypted. `volumes`: each with its policy.
pub fn assess_volumes(volumes: &[(Volume, String)]) -> Vec<Finding> {
    volumes
        .iter()
        .filter(|(v, _)| !v.encrypted)
        .map(|(v, policy)| {
            let mut f = Finding::new(
                FindingKind::UnencryptedVolume,
                "opted in but not encrypted: every snapshot of it will be unencrypted".into(),
                Fix::Advised("restore it from an encrypted copy of a snapshot (or create an encrypted volume and migrate); turn on EBS encryption by default for new volumes".into()),
            );
            f.volume_id = Some(v.id.clone());
            f.policy = Some(policy.clone());
            f
        })
        .collect()
}

/// An account setting as read, or why it could not be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked<T> {
    Value(T),
    NotChecked(String),
}

/// Snapshot block public access states (GetSnapshotBlockPublicAccessState).
pub(crate) const BPA_UNBLOCKED: &str = "unblocked";

/// Findings on the account's settings.
pub fn assess_account(
    encryption_by_default: &Checked<bool>,
    block_public_access: &Checked<String>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    match encryption_by_default {
        Checked::Value(true) => {}
        Checked::Value(false) => out.push(Finding::new(
            FindingKind::EncryptionByDefaultOff,
            "EBS encryption by default is off in this region: new volumes, and their snapshots, may be unencrypted".into(),
            Fix::Advised("aws ec2 enable-ebs-encryption-by-default (per region); not changed automatically because it affects every new volume".into()),
        )),
        Checked::NotChecked(why) => out.push(Finding::new(
            FindingKind::NotChecked,
            format!("EBS encryption by default not checked: {why}"),
            Fix::Advised("check it in the EC2 console (Settings, EBS encryption)".into()),
        )),
    }
    match block_public_access {
        Checked::Value(state) if state != BPA_UNBLOCKED => {}
        Checked::Value(_) => out.push(Finding::new(
            FindingKind::BlockPublicAccessOff,
            "snapshot block public access is not enabled: a snapshot can be made public".into(),
            Fix::Advised("aws ec2 enable-snapshot-block-public-access --state block-all-sharing (per region)".into()),
        )),
        Checked::NotChecked(why) => out.push(Finding::new(
            FindingKind::NotChecked,
            format!("snapshot block public access not checked: {why}"),
            Fix::Advised("check it in the EC2 console (Settings, Block public access for EBS snapshots)".into()),
        )),
    }
    out
}

/// The worst severity among findings (`None`: nothing found).
pub fn worst(findings: &[Finding]) -> Option<Severity> {
    findings.iter().map(|f| f.severity).max()
}

/// Counts for the metrics: unencrypted and public snapshots found.
pub fn counts(findings: &[Finding]) -> (u64, u64) {
    let count = |kind| {
        findings
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.snapshot_id.as_deref())
            .collect::<BTreeSet<_>>()
            .len() as u64
    };
    (
        count(FindingKind::UnencryptedSnapshot),
        count(FindingKind::PublicSnapshot),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Tags;

    const KEY_ARN: &str =
        "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const KEY_ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
    const AWS_EBS: &str =
        "arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000000";

    fn snapshot(id: &str, managed: bool, encrypted: bool, key: Option<&str>) -> Snapshot {
        let mut tags = Tags::new();
        if managed {
            tags.insert(tags::MANAGED_BY.into(), "prod".into());
            tags.insert(tags::POLICY.into(), "default".into());
            tags.insert(tags::VOLUME_ID.into(), "vol-1".into());
            tags.insert(tags::CREATED_AT.into(), "2026-01-01T00:00:05Z".into());
            tags.insert(tags::STATE.into(), "completed".into());
            tags.insert(tags::COMPLETED_AT.into(), "2026-01-01T00:09:00Z".into());
            tags.insert(tags::RETAINED_BY.into(), "last".into());
            tags.insert("Name".into(), "db".into());
            tags.insert("aws:backup:source".into(), "x".into());
        }
        Snapshot {
            id: id.into(),
            volume_id: Some("vol-1".into()),
            state: SnapshotState::Completed,
            start_time: tags::parse_time("2026-01-01T00:00:07Z"),
            volume_size_gib: Some(8),
            full_size_bytes: None,
            archived: false,
            restore_expiry: None,
            encrypted,
            kms_key_id: key.map(String::from),
            description: None,
            owner_id: None,
            tags,
        }
    }

    fn rules<'a>(
        remediate: Remediate,
        keys: &'a AllowedKeys,
        resolved: &'a BTreeMap<String, String>,
        accounts: &'a [String],
    ) -> Rules<'a> {
        Rules {
            deployment: "prod",
            remediate,
            allowed_keys: keys,
            resolved_aliases: resolved,
            allowed_accounts: accounts,
        }
    }

    #[test]
    fn allowed_keys_match_ids_arns_and_resolved_aliases() {
        let none = BTreeMap::new();
        assert!(
            AllowedKeys::new(&[]).allows(KEY_ARN, &none),
            "no list: all allowed"
        );
        assert!(AllowedKeys::new(&[KEY_ID.into()]).allows(KEY_ARN, &none));
        assert!(AllowedKeys::new(&[KEY_ARN.into()]).allows(KEY_ARN, &none));
        assert!(
            AllowedKeys::new(&[KEY_ARN.into()]).allows(KEY_ID, &none),
            "EC2 may report a bare id"
        );
        assert!(!AllowedKeys::new(&["other".into()]).allows(KEY_ARN, &none));

        let alias = AllowedKeys::new(&["alias/backups".into(), " ".into()]);
        assert_eq!(alias.aliases(), ["alias/backups"]);
        assert!(
            !alias.allows(KEY_ARN, &none),
            "an unresolved alias allows nothing"
        );
        let resolved = BTreeMap::from([("alias/backups".to_string(), KEY_ARN.to_string())]);
        assert!(alias.allows(KEY_ARN, &resolved));
        let alias_arn =
            AllowedKeys::new(&["arn:aws:kms:eu-west-1:123456789012:alias/backups".into()]);
        assert_eq!(alias_arn.aliases().len(), 1);
    }

    #[test]
    fn only_snapshots_that_can_be_shared_need_their_permissions_read() {
        assert!(can_be_shared(
            &snapshot("a", true, false, None),
            Some(AWS_EBS)
        ));
        assert!(can_be_shared(
            &snapshot("b", true, true, Some(KEY_ARN)),
            Some(AWS_EBS)
        ));
        assert!(!can_be_shared(
            &snapshot("c", true, true, Some(AWS_EBS)),
            Some(AWS_EBS)
        ));
        assert!(
            can_be_shared(&snapshot("d", true, true, Some(AWS_EBS)), None),
            "unknown: read"
        );
    }

    #[test]
    fn foreign_snapshots_are_only_ever_made_private() {
        let keys = AllowedKeys::default();
        let resolved = BTreeMap::new();
        let accounts = vec!["222222222222".to_string()];
        let foreign = snapshot("snap-f", false, false, None);
        let permissions = BTreeMap::from([(
            "snap-f".to_string(),
            Permissions {
                public: true,
                accounts: vec!["111111111111".into()],
            },
        )]);
        for remediate in [Remediate::Off, Remediate::Public, Remediate::All] {
            let (findings, remedies) = assess_snapshots(
                &rules(remediate, &keys, &resolved, &accounts),
                std::slice::from_ref(&foreign),
                &permissions,
                &Copies::default(),
            );
            assert_eq!(findings.len(), 3, "public, share, unencrypted");
            let expected: Vec<Remedy> = if remediate == Remediate::Off {
                vec![]
            } else {
                vec![Remedy::RemovePublic {
                    snapshot_id: "snap-f".into(),
                }]
            };
            assert_eq!(
                remedies.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
                expected
            );
            assert_eq!(findings[0].severity, Severity::Critical);
        }
    }

    #[test]
    fn all_copies_managed_unencrypted_snapshots_within_the_copy_limit() {
        let keys = AllowedKeys::default();
        let resolved = BTreeMap::new();
        let snapshots: Vec<Snapshot> = (0..30)
            .map(|i| snapshot(&format!("snap-{i:02}"), true, false, None))
            .collect();
        let mut in_flight = snapshot("snap-copy", true, true, Some(KEY_ARN));
        in_flight.state = SnapshotState::Pending;
        in_flight
            .tags
            .insert(tags::ENCRYPTED_COPY_OF.into(), "snap-00".into());
        let copies = Copies::new(&[in_flight]);
        let (findings, remedies) = assess_snapshots(
            &rules(Remediate::All, &keys, &resolved, &[]),
            &snapshots,
            &BTreeMap::new(),
            &copies,
        );
        // snap-00 already has a copy under way; one copy is in flight, so 19 more.
        assert_eq!(remedies.len(), MAX_COPIES_IN_FLIGHT - 1);
        assert!(matches!(findings[0].fix, Fix::Deferred(_)));
        let deferred = findings
            .iter()
            .filter(|f| matches!(f.fix, Fix::Deferred(_)))
            .count();
        assert_eq!(deferred, 30 - (MAX_COPIES_IN_FLIGHT - 1));
        // Each remedy points at its own finding.
        for (index, remedy) in &remedies {
            let Remedy::EncryptedCopy { snapshot_id, .. } = remedy else {
                panic!("only copies expected");
            };
            assert_eq!(
                findings[*index].snapshot_id.as_deref(),
                Some(snapshot_id.as_str())
            );
        }
    }

    #[test]
    fn a_copy_carries_the_originals_labels_at_the_originals_time() {
        let mut original = snapshot("snap-o", true, false, None);
        // Whatever the original's created-at tag says (anyone can write
        // it), the copy sits at EC2's StartTime of the original.
        for forged in ["1990-01-01T00:00:00Z", "2199-01-01T00:00:00Z"] {
            original.tags.insert(tags::CREATED_AT.into(), forged.into());
            assert_eq!(
                copy_tags(&original)[tags::CREATED_AT],
                "2026-01-01T00:00:07Z"
            );
        }
        original.tags.remove(tags::CREATED_AT);
        let t = copy_tags(&original);
        assert_eq!(t[tags::ENCRYPTED_COPY_OF], "snap-o");
        assert_eq!(t[tags::STATE], "pending");
        assert_eq!(t[tags::CREATED_AT], "2026-01-01T00:00:07Z");
        assert_eq!(t["Name"], "db");
        for gone in [tags::COMPLETED_AT, tags::RETAINED_BY, "aws:backup:source"] {
            assert!(!t.contains_key(gone), "{gone}");
        }
        let copy = Snapshot {
            id: "snap-c".into(),
            start_time: tags::parse_time("2026-06-01T00:00:00Z"),
            encrypted: true,
            tags: t,
            ..original.clone()
        };
        assert_eq!(
            copy.retention_time(),
            tags::parse_time("2026-01-01T00:00:07Z")
        );
    }

    #[test]
    fn permission_reads_resume_where_the_last_run_stopped() {
        let ids = vec!["snap-c", "snap-a", "snap-e", "snap-b", "snap-d"];
        assert_eq!(
            reading_order(ids.clone(), None),
            ["snap-a", "snap-b", "snap-c", "snap-d", "snap-e"]
        );
        let order = reading_order(ids.clone(), Some("snap-b"));
        assert_eq!(order, ["snap-c", "snap-d", "snap-e", "snap-a", "snap-b"]);
        // A cursor naming a snapshot deleted since: the next one after it.
        assert_eq!(reading_order(ids.clone(), Some("snap-bb"))[0], "snap-c");
        assert_eq!(reading_order(ids.clone(), Some("snap-z"))[0], "snap-a");

        // A run that read three stops after the third; one that read all
        // starts again from the beginning.
        let read: BTreeSet<&str> = ["snap-c", "snap-d", "snap-e"].into();
        assert_eq!(next_cursor(&order, &read), Some("snap-e"));
        let all: BTreeSet<&str> = order.iter().copied().collect();
        assert_eq!(next_cursor(&order, &all), None);
        assert_eq!(next_cursor(&order, &BTreeSet::new()), None);

        // Runs that each read two, round and round: every snapshot within
        // three runs.
        let mut cursor: Option<String> = None;
        let mut seen = BTreeSet::new();
        for _ in 0..3 {
            let order = reading_order(ids.clone(), cursor.as_deref());
            let read: BTreeSet<&str> = order.iter().take(2).copied().collect();
            seen.extend(read.iter().map(|s| s.to_string()));
            cursor = next_cursor(&order, &read).map(String::from);
        }
        assert_eq!(seen.len(), 5);
    }

    #[test]
    fn settings_findings_and_not_checked() {
        let off = assess_account(
            &Checked::Value(false),
            &Checked::Value(BPA_UNBLOCKED.into()),
        );
        let kinds: Vec<FindingKind> = off.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [
                FindingKind::EncryptionByDefaultOff,
                FindingKind::BlockPublicAccessOff
            ]
        );
        let fine = assess_account(
            &Checked::Value(true),
            &Checked::Value("block-all-sharing".into()),
        );
        assert!(fine.is_empty());
        let unknown = assess_account(
            &Checked::NotChecked("no such API".into()),
            &Checked::Value("block-new-sharing".into()),
        );
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].kind, FindingKind::NotChecked);
        assert_eq!(worst(&unknown), Some(Severity::Info));
        assert_eq!(worst(&[]), None);
    }
}

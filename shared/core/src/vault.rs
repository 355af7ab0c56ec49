//! A vault account, the pure rules (docs/operations.md, "A vault account").
//!
//! A source stack shares the snapshots its account target selects with the
//! vault account; the same template deployed there with `VaultForAccounts`
//! copies every share it accepts into its own account under its own key
//! and keeps the copies by its own rules, per source policy name. Tags do
//! not cross accounts, so all the vault knows of a share is what no one
//! but EC2 and its maker can have written: EC2's `OwnerId` (the sharing
//! account), `VolumeId`, `StartTime`, and the Description the source stack
//! gave it at creation. A share is accepted only if EC2 says an accepted
//! account owns it and its Description is a scheduled snapshot's, of a
//! deployment in that very account and in the vault's region.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::keys;
use crate::model::{Snapshot, SnapshotState, Tags};
use crate::ownership::{Claim, Identity, Subject, MARKER};
use crate::policy::{Policies, PolicyError};

/// A share the vault accepts, with what its Description and EC2 say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub snapshot_id: String,
    /// EC2's `OwnerId`.
    pub account: String,
    /// The source stack.
    pub deployment: String,
    pub volume_id: String,
    pub policy: String,
    pub slot: DateTime<Utc>,
    /// EC2's StartTime of the source: where the vault's retention places
    /// its copy.
    pub start_time: DateTime<Utc>,
    pub completed: bool,
}

/// Why a snapshot shared with the vault is not taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Refusal {
    /// EC2 says an account the vault does not accept owns it.
    NotAccepted { owner: String },
    /// Its Description is not a scheduled snapshot of a deployment (a copy,
    /// a hand-made snapshot, a forgery of the format with another account).
    NoDeployment,
    /// Its Description names another account than the one EC2 says owns it.
    AccountMismatch { claimed: String, owner: String },
    /// Its Description names another region.
    OtherRegion { region: String },
    /// Its Description names a volume EC2 does not.
    VolumeMismatch { claimed: String, found: String },
    /// EC2 gave no start time.
    NoStartTime,
    /// Its policy has no keep rules in the vault (`VAULT_POLICIES` is the
    /// allow-list of source policy names): a copy nothing would ever let go.
    PolicyNotKept { policy: String },
    /// Its deployment is not one the vault accepts (`VAULT_FOR_DEPLOYMENTS`).
    DeploymentNotAccepted { deployment: String },
}

impl Refusal {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotAccepted { .. } => "not-accepted",
            Self::NoDeployment => "no-deployment",
            Self::AccountMismatch { .. } => "account-mismatch",
            Self::OtherRegion { .. } => "other-region",
            Self::VolumeMismatch { .. } => "volume-mismatch",
            Self::NoStartTime => "no-start-time",
            Self::PolicyNotKept { .. } => "policy-not-kept",
            Self::DeploymentNotAccepted { .. } => "deployment-not-accepted",
        }
    }
}

/// Read a snapshot shared with the vault in `region`, accepting only the
/// accounts in `accepted`.
pub fn read_share(s: &Snapshot, region: &str, accepted: &[String]) -> Result<Share, Refusal> {
    let owner = s.owner_id.clone().unwrap_or_default();
    if !accepted.contains(&owner) {
        return Err(Refusal::NotAccepted { owner });
    }
    let description = s.description.as_deref().unwrap_or_default();
    // `ebs-lifecycle <deployment> <account>/<region>: ...`
    let rest = description
        .strip_prefix(MARKER)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(Refusal::NoDeployment)?;
    let (deployment, rest) = rest.split_once(' ').ok_or(Refusal::NoDeployment)?;
    let (place, _) = rest.split_once(": ").ok_or(Refusal::NoDeployment)?;
    let (claimed_account, claimed_region) = place.split_once('/').ok_or(Refusal::NoDeployment)?;
    if claimed_account != owner {
        return Err(Refusal::AccountMismatch {
            claimed: crate::text::excerpt(claimed_account),
            owner,
        });
    }
    if claimed_region != region {
        return Err(Refusal::OtherRegion {
            region: crate::text::excerpt(claimed_region),
        });
    }
    let source = Identity {
        deployment: deployment.to_string(),
        account: owner.clone(),
        region: region.to_string(),
    };
    let Some(Claim::Scheduled {
        subject,
        policy,
        slot,
    }) = source.read(description)
    else {
        return Err(Refusal::NoDeployment);
    };
    let found = s.volume_id.clone().unwrap_or_default();
    let volume_id = match subject {
        Subject::Volume(claimed) if claimed != found => {
            return Err(Refusal::VolumeMismatch { claimed, found });
        }
        Subject::Volume(v) => v,
        // A multi-volume set names its instance; EC2's VolumeId is each one's.
        Subject::Instance(_) => found,
    };
    let start_time = s.start_time.ok_or(Refusal::NoStartTime)?;
    Ok(Share {
        snapshot_id: s.id.clone(),
        account: owner,
        deployment: deployment.to_string(),
        volume_id,
        policy,
        slot,
        start_time,
        completed: s.state == SnapshotState::Completed,
    })
}

/// What the vault admits of a well-formed share: its policy has keep rules
/// here, and its deployment is one of `deployments` (empty: any deployment
/// of an accepted account). A compromised source account can then make the
/// vault keep only what the vault's own rules will let go.
pub fn admit(share: &Share, policies: &Policies, deployments: &[String]) -> Result<(), Refusal> {
    if policies.get(&share.policy).is_none() {
        return Err(Refusal::PolicyNotKept {
            policy: crate::text::excerpt(&share.policy),
        });
    }
    if !deployments.is_empty() && !deployments.contains(&share.deployment) {
        return Err(Refusal::DeploymentNotAccepted {
            deployment: crate::text::excerpt(&share.deployment),
        });
    }
    Ok(())
}

/// The most copies of one source volume a vault starts in 24 hours unless
/// configured (`VAULT_MAX_COPIES_PER_VOLUME_PER_DAY`): an hourly policy's.
pub const DEFAULT_COPIES_PER_VOLUME_PER_DAY: u32 = 24;

/// The most copies of one source account a vault starts in 24 hours
/// unless configured (`VAULT_MAX_COPIES_PER_ACCOUNT_PER_DAY`).
pub const DEFAULT_COPIES_PER_ACCOUNT_PER_DAY: u32 = 2_000;

/// Whether a source volume may have another copy started now: fewer than
/// `max` of the vault's copies of it started in the last 24 hours
/// (`started`: those copies' EC2 start times, in flight included as now).
pub fn volume_has_room(
    started: impl IntoIterator<Item = DateTime<Utc>>,
    now: DateTime<Utc>,
    max: u32,
) -> bool {
    let day = chrono::Duration::hours(24);
    let recent = started.into_iter().filter(|t| now - *t < day).count();
    u32::try_from(recent).unwrap_or(u32::MAX) < max
}

/// The vault's copy of a share: its tags at creation (the source's
/// identity as its Description says, where the copy comes from, and the
/// vault's own deployment).
pub fn copy_tags(share: &Share, vault: &Identity) -> Tags {
    let mut tags = Tags::new();
    tags.insert(keys::MANAGED_BY.into(), vault.deployment.clone());
    tags.insert(keys::POLICY.into(), share.policy.clone());
    tags.insert(keys::SLOT.into(), keys::format_time(share.slot));
    tags.insert(keys::VOLUME_ID.into(), share.volume_id.clone());
    tags.insert(keys::CREATED_AT.into(), keys::format_time(share.start_time));
    tags.insert(
        keys::STATE.into(),
        keys::LifecycleState::Pending.as_str().into(),
    );
    tags.insert(keys::COPY_OF.into(), share.snapshot_id.clone());
    tags.insert(keys::SOURCE_REGION.into(), vault.region.clone());
    tags.insert(keys::SOURCE_ACCOUNT.into(), share.account.clone());
    tags.insert(keys::TARGET.into(), target_name(vault));
    tags.insert(
        keys::NAME.into(),
        format!("vault copy of {} ({})", share.volume_id, share.account),
    );
    tags
}

/// `lifecycle:target` of the vault's copies: `<account>/<region>`.
pub fn target_name(vault: &Identity) -> String {
    format!("{}/{}", vault.account, vault.region)
}

/// `VAULT_POLICIES`: keep rules per source policy name,
/// `{"gold": {"daily": 7, "monthly": 12}}`, as policies the retention
/// planner reads (their schedule only draws the labels' projection).
pub fn parse_policies(document: &str) -> Result<Policies, PolicyError> {
    let rules: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(document).map_err(|e| PolicyError::Document(e.to_string()))?;
    let as_policies: serde_json::Map<String, serde_json::Value> = rules
        .into_iter()
        .map(|(name, keep)| {
            (
                name,
                serde_json::json!({"schedule": "@daily", "keep": keep, "orphans": keep}),
            )
        })
        .collect();
    Policies::parse(&serde_json::Value::Object(as_policies).to_string())
}

/// The account a `shareSnapshot` event says shared the snapshot
/// (`detail.source`), as 12 digits. AWS documents it as a JSON number (its
/// leading zeros lost), and a string is accepted too; `None` when it is
/// neither, or not an account id.
pub fn share_source(event: &serde_json::Value) -> Option<String> {
    let source = event.get("detail")?.get("source")?;
    let digits = match source {
        serde_json::Value::Number(n) => n.as_u64()?.to_string(),
        serde_json::Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    (!digits.is_empty() && digits.len() <= 12 && digits.chars().all(|c| c.is_ascii_digit()))
        .then(|| format!("{digits:0>12}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        keys::parse_time(s).unwrap()
    }

    const SOURCE: &str = "111111111111";

    fn shared(description: &str, owner: &str, volume: &str) -> Snapshot {
        Snapshot {
            id: "snap-1".into(),
            volume_id: Some(volume.into()),
            state: SnapshotState::Completed,
            start_time: Some(t("2026-03-01T03:00:12Z")),
            volume_size_gib: Some(8),
            full_size_bytes: None,
            archived: false,
            restore_expiry: None,
            encrypted: true,
            kms_key_id: Some("arn:aws:kms:eu-west-1:111111111111:key/k".into()),
            description: Some(description.into()),
            owner_id: Some(owner.into()),
            tags: Tags::new(),
        }
    }

    fn scheduled(account: &str, region: &str, volume: &str) -> String {
        Identity {
            deployment: "prod".into(),
            account: account.into(),
            region: region.into(),
        }
        .scheduled(
            &Subject::Volume(volume.into()),
            "gold",
            t("2026-03-01T03:00:00Z"),
        )
    }

    #[test]
    fn the_vault_admits_only_policies_it_keeps_and_deployments_it_accepts() {
        let accepted = vec![SOURCE.to_string()];
        let share = read_share(
            &shared(&scheduled(SOURCE, "eu-west-1", "vol-1"), SOURCE, "vol-1"),
            "eu-west-1",
            &accepted,
        )
        .unwrap();
        let gold = parse_policies(r#"{"gold": {"daily": 7}}"#).unwrap();
        let silver = parse_policies(r#"{"silver": {"daily": 7}}"#).unwrap();
        assert_eq!(admit(&share, &gold, &[]), Ok(()));
        assert_eq!(admit(&share, &gold, &["prod".to_string()]), Ok(()));
        assert_eq!(
            admit(&share, &silver, &[]),
            Err(Refusal::PolicyNotKept {
                policy: "gold".into()
            })
        );
        assert_eq!(
            admit(&share, &gold, &["staging".to_string()]),
            Err(Refusal::DeploymentNotAccepted {
                deployment: "prod".into()
            })
        );
    }

    #[test]
    fn a_source_volume_gets_at_most_its_copies_a_day() {
        let now = t("2026-03-02T12:00:00Z");
        let hours_ago = |h: i64| now - chrono::Duration::hours(h);
        assert!(volume_has_room([], now, 1));
        assert!(!volume_has_room([hours_ago(23)], now, 1));
        assert!(volume_has_room([hours_ago(24), hours_ago(30)], now, 1));
        assert!(volume_has_room((1..24).map(hours_ago), now, 24));
        assert!(!volume_has_room((0..24).map(hours_ago), now, 24));
        assert!(!volume_has_room([], now, 0), "0 copies a day: none");
    }

    #[test]
    fn a_share_is_taken_only_from_an_accepted_account_naming_itself() {
        let accepted = vec![SOURCE.to_string()];
        let ok = read_share(
            &shared(&scheduled(SOURCE, "eu-west-1", "vol-1"), SOURCE, "vol-1"),
            "eu-west-1",
            &accepted,
        )
        .unwrap();
        assert_eq!(
            (
                ok.deployment.as_str(),
                ok.policy.as_str(),
                ok.volume_id.as_str()
            ),
            ("prod", "gold", "vol-1")
        );
        assert_eq!(ok.slot, t("2026-03-01T03:00:00Z"));

        let refused = |s: Snapshot| read_share(&s, "eu-west-1", &accepted).unwrap_err().kind();
        // Shared by an account the vault does not accept.
        assert_eq!(
            refused(shared(
                &scheduled("999999999999", "eu-west-1", "vol-1"),
                "999999999999",
                "vol-1"
            )),
            "not-accepted"
        );
        // An accepted account's Description copied by another account's
        // snapshot is caught by EC2's OwnerId; a Description naming
        // another account, by the claim.
        assert_eq!(
            refused(shared(
                &scheduled("222222222222", "eu-west-1", "vol-1"),
                SOURCE,
                "vol-1"
            )),
            "account-mismatch"
        );
        assert_eq!(
            refused(shared(
                &scheduled(SOURCE, "us-east-1", "vol-1"),
                SOURCE,
                "vol-1"
            )),
            "other-region"
        );
        assert_eq!(
            refused(shared(
                &scheduled(SOURCE, "eu-west-1", "vol-1"),
                SOURCE,
                "vol-2"
            )),
            "volume-mismatch"
        );
        assert_eq!(
            refused(shared("made by hand", SOURCE, "vol-1")),
            "no-deployment"
        );
        let copy = Identity {
            deployment: "prod".into(),
            account: SOURCE.into(),
            region: "eu-west-1".into(),
        }
        .copy("eu-west-1", "snap-0");
        assert_eq!(refused(shared(&copy, SOURCE, "vol-1")), "no-deployment");
    }

    #[test]
    fn vault_policies_are_keep_rules_per_source_policy() {
        let p = parse_policies(r#"{"gold": {"daily": 7, "monthly": 12}}"#).unwrap();
        assert_eq!(p.get("gold").unwrap().keep.monthly, Some(12));
        assert!(parse_policies(r#"{"gold": {"dayly": 7}}"#).is_err());
        assert!(parse_policies("[]").is_err());
    }

    #[test]
    fn a_vault_copy_says_where_it_comes_from() {
        let share = read_share(
            &shared(&scheduled(SOURCE, "eu-west-1", "vol-1"), SOURCE, "vol-1"),
            "eu-west-1",
            &[SOURCE.to_string()],
        )
        .unwrap();
        let vault = Identity {
            deployment: "vault".into(),
            account: "222222222222".into(),
            region: "eu-west-1".into(),
        };
        let tags = copy_tags(&share, &vault);
        assert_eq!(tags[keys::MANAGED_BY], "vault");
        assert_eq!(tags[keys::TARGET], "222222222222/eu-west-1");
        assert_eq!(tags[keys::SOURCE_ACCOUNT], SOURCE);
        assert_eq!(tags[keys::CREATED_AT], "2026-03-01T03:00:12Z");
        assert_eq!(tags[keys::STATE], "pending");
    }

    #[test]
    fn the_account_that_shared_as_aws_writes_it() {
        use serde_json::json;
        let event = |source: serde_json::Value| json!({"detail": {"event": "shareSnapshot", "source": source}});
        // AWS's documented sample: a number, its leading zero lost.
        assert_eq!(
            share_source(&event(json!(12345678901u64))).as_deref(),
            Some("012345678901")
        );
        assert_eq!(
            share_source(&event(json!("210987654321"))).as_deref(),
            Some("210987654321")
        );
        for bad in [
            json!("arn:aws:iam::1:root"),
            json!(-1),
            json!(1.5),
            json!(null),
            json!("1234567890123"),
        ] {
            assert_eq!(share_source(&event(bad.clone())), None, "{bad}");
        }
        assert_eq!(share_source(&json!({"detail": {}})), None);
    }
}

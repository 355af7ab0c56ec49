//! A vault account target, the source side (docs/operations.md, "A vault
//! account"): share with the vault account the completed snapshots the
//! target's `keep` selects (one per bucket of its finest rule, as a region
//! target copies), and take back the shares the target's rules no longer
//! keep; the vault stack copies what it is given. Nothing is shared that
//! is not under the target's key, and nothing while that key cannot be
//! used by the vault account: the check runs first, every run.

use std::collections::{BTreeMap, BTreeSet};

use ebs_lifecycle::ports::keys::Shareable;
use ebs_lifecycle_core::copies::{self, Source, TargetState};
use ebs_lifecycle_core::model::Snapshot;
use ebs_lifecycle_core::policy::CopyTarget;
use ebs_lifecycle_core::retention::{self, Candidate};
use serde::Serialize;

use crate::{Ports, Sources};

/// What one run did for one vault account target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShareReport {
    /// `<account>/<region>`.
    pub target: String,
    /// Why nothing was shared this run (the key), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// True the first run of the day that found the error: it is notified
    /// (`config-error`) once a day until fixed.
    #[serde(skip)]
    pub error_first_today: bool,
    pub shared: Vec<String>,
    pub unshared: Vec<String>,
    /// Selected but not under the target's key: never shared. Reported
    /// once each.
    pub wrong_key: Vec<String>,
    #[serde(skip)]
    pub wrong_key_first: Vec<String>,
    /// Shared and still kept by the target's rules.
    pub kept_shared: usize,
}

/// The same key, by ARN or by its id.
fn same_key(a: &str, b: &str) -> bool {
    let id = |k: &str| k.rsplit('/').next().unwrap_or(k).to_string();
    a == b || id(a) == id(b)
}

pub(crate) async fn share(
    ports: Ports<'_>,
    config: &ebs_lifecycle::config::Config,
    sources: &Sources,
    target: &CopyTarget,
    now: chrono::DateTime<chrono::Utc>,
) -> ShareReport {
    let name = target.name();
    let mut report = ShareReport {
        target: name.clone(),
        ..ShareReport::default()
    };
    let Some(account) = target.account.as_deref() else {
        return report;
    };
    let problem = key_problem(ports, target, account).await;
    if let Some(problem) = problem {
        let day = now.format("%Y-%m-%d");
        report.error_first_today = ports
            .ledger
            .first_report(&format!("config/{name}/{day}"), now)
            .await
            .unwrap_or(true);
        report.error = Some(problem);
        return report;
    }
    let shared: BTreeSet<String> = match ports.catalog.shared_with(account).await {
        Ok(list) => list.into_iter().map(|s| s.id).collect(),
        Err(e) => {
            report.error = Some(format!("listing what is shared with {account}: {e}"));
            return report;
        }
    };

    for ((policy_name, _volume), snapshots) in sources {
        let Some(policy) = config.policies.get(policy_name) else {
            continue;
        };
        if !policy.copies.iter().any(|t| t.name() == name) {
            continue;
        }
        // Scheduled snapshots only: a copy's Description names no policy,
        // so the vault could not keep it by its rules.
        let scheduled: Vec<&Snapshot> = snapshots.iter().filter(|s| !s.is_copy()).collect();
        let here: Vec<&Snapshot> = scheduled
            .iter()
            .copied()
            .filter(|s| shared.contains(&s.id))
            .collect();
        let state = TargetState {
            newest_copied: here.iter().filter_map(|s| s.retention_time()).max(),
            in_progress: false,
        };
        // EC2 shares nothing from the archive tier.
        let all: Vec<Source> = scheduled
            .iter()
            .filter(|s| !s.archived)
            .filter_map(|s| {
                Some(Source {
                    id: s.id.clone(),
                    time: s.retention_time()?,
                })
            })
            .collect();
        let tz = policy.schedule.timezone();
        let mut now_shared: Vec<&Snapshot> = here.clone();
        if let Some(next) = copies::next_copy(&all, &state, &target.keep, tz) {
            if let Some(s) = scheduled.iter().find(|s| s.id == next.id) {
                if share_next(ports, target, account, s, now, &mut report).await {
                    now_shared.push(s);
                }
            }
        }
        take_back(ports, target, account, policy, &now_shared, &mut report).await;
    }
    report
}

/// Why the vault could not read what is shared under the target's key, if
/// it could not.
async fn key_problem(ports: Ports<'_>, target: &CopyTarget, account: &str) -> Option<String> {
    match ports.keys.shareable_with(&target.kms_key, account).await {
        Ok(Shareable::Yes) => None,
        Ok(Shareable::AwsManaged) => Some(format!(
            "{} is an AWS managed key: EC2 never shares its snapshots; encrypt the volumes with a customer managed key",
            target.kms_key
        )),
        Ok(Shareable::NotEnabled(state)) => Some(format!("{} is {state}", target.kms_key)),
        Ok(Shareable::AccountNotInPolicy) => Some(format!(
            "the key policy of {} does not name account {account}: the vault could not read what is shared",
            target.kms_key
        )),
        Ok(Shareable::Unknown) => Some(format!("KMS does not know the key {}", target.kms_key)),
        Err(e) => Some(format!("the key could not be checked: {e}")),
    }
}

/// Share `s` with the vault if it is under the target's key (else report
/// it once); true when it is shared now.
async fn share_next(
    ports: Ports<'_>,
    target: &CopyTarget,
    account: &str,
    s: &Snapshot,
    now: chrono::DateTime<chrono::Utc>,
    report: &mut ShareReport,
) -> bool {
    let name = target.name();
    let under_key = s
        .kms_key_id
        .as_deref()
        .is_some_and(|k| same_key(k, &target.kms_key));
    if !under_key {
        report.wrong_key.push(s.id.clone());
        let first = ports
            .ledger
            .first_report(&format!("{}@{name}", s.id), now)
            .await
            .unwrap_or(true);
        if first {
            report.wrong_key_first.push(s.id.clone());
        }
        return false;
    }
    match ports.sharing.share_with(&s.id, account).await {
        Ok(()) => {
            report.shared.push(s.id.clone());
            true
        }
        Err(e) => {
            tracing::warn!(snapshot_id = s.id, error = %e, "could not share with the vault; the next run tries again");
            false
        }
    }
}

/// The target's rules over what is shared: what they no longer keep is
/// taken back (never the newest share).
async fn take_back(
    ports: Ports<'_>,
    target: &CopyTarget,
    account: &str,
    policy: &ebs_lifecycle_core::policy::Policy,
    now_shared: &[&Snapshot],
    report: &mut ShareReport,
) {
    let tz = policy.schedule.timezone();
    let candidates: Vec<Candidate> = now_shared
        .iter()
        .filter_map(|s| {
            Some(Candidate {
                id: s.id.clone(),
                time: s.retention_time()?,
                tags: Vec::new(),
            })
        })
        .collect();
    let decisions: BTreeMap<String, bool> = retention::plan(&target.keep, tz, &candidates)
        .into_iter()
        .map(|d| (d.id.clone(), d.keep()))
        .collect();
    let newest = candidates.iter().max_by_key(|c| (c.time, c.id.clone()));
    for c in &candidates {
        let keep =
            decisions.get(&c.id).copied().unwrap_or(true) || newest.is_some_and(|n| n.id == c.id);
        if keep {
            report.kept_shared += 1;
            continue;
        }
        match ports
            .sharing
            .remove_create_volume_permissions(&c.id, false, &[account.to_string()])
            .await
        {
            Ok(()) => report.unshared.push(c.id.clone()),
            Err(e) => {
                tracing::warn!(snapshot_id = c.id, error = %e, "could not take back a share; the next run tries again");
            }
        }
    }
}

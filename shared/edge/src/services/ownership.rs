//! The ownership check every run makes before it deletes, links or counts
//! a snapshot (docs/policies-and-tags.md, "Ownership"): the copy and
//! creation records from the stack's ledger,
//! [`ebs_lifecycle_core::ownership::sift`], and the `tampering-suspected`
//! notification, once per snapshot.

use chrono::{DateTime, Utc};
use serde_json::json;

use ebs_lifecycle_core::model::Snapshot;
use ebs_lifecycle_core::notify::{Notification, NotificationKind, Severity};
use ebs_lifecycle_core::ownership::{self, AskedKey, Claim, Creations, Scope, Sifted, Suspect};
use ebs_lifecycle_core::policy::Policies;
use ebs_lifecycle_core::schedule::{PastSchedules, ScheduleRecord};

use crate::config::Config;
use crate::lambda::run::RunHeader;
use crate::ports::ledger::{Ledger, LedgerError};

/// At most this many suspects are listed in a run summary and in one
/// notification; the count is always whole.
pub const LISTED: usize = 100;

/// Sort `snapshots` (carrying this deployment's tag) into what the
/// deployment made and the suspects. One batch read per 100 for the copies
/// among them, and for the scheduled ones one read of when creations began
/// to be recorded and one batch read per 100 of those started since; none
/// when there are none.
pub async fn sift(
    ledger: &dyn Ledger,
    config: &Config,
    snapshots: Vec<Snapshot>,
    scope: Scope,
    now: DateTime<Utc>,
) -> Result<Sifted, LedgerError> {
    let copy_ids: Vec<String> = snapshots
        .iter()
        .filter(|s| matches!(claim(config, s), Some(Claim::Copy { .. })))
        .map(|s| s.id.clone())
        .collect();
    let records = if copy_ids.is_empty() {
        Vec::new()
    } else {
        ledger.copies(&copy_ids).await?
    };
    let records = records
        .into_iter()
        .map(|r| (r.copy_id.clone(), r))
        .collect();
    let policies = if snapshots.iter().any(|s| off_schedule(config, s)) {
        policies_with_past(ledger, config, now).await?
    } else {
        &config.policies
    };
    let creations = creations(ledger, config, &snapshots).await?;
    Ok(ownership::sift(
        &config.identity,
        policies,
        &records,
        &creations,
        snapshots,
        scope,
    ))
}

/// The ledger's creation records of the scheduled snapshots among
/// `snapshots` that need one (started since the records began), and the
/// intents left for the claims of those not recorded (a lost answer): one
/// read, then a batch read per 100 of each, the second only when some are
/// not recorded.
async fn creations(
    ledger: &dyn Ledger,
    config: &Config,
    snapshots: &[Snapshot],
) -> Result<Creations, LedgerError> {
    let scheduled: Vec<(&Snapshot, AskedKey)> = snapshots
        .iter()
        .filter_map(|s| match claim(config, s) {
            Some(Claim::Scheduled {
                subject,
                policy,
                slot,
            }) => Some((s, (subject.as_str().to_string(), policy, slot))),
            _ => None,
        })
        .collect();
    if scheduled.is_empty() {
        return Ok(Creations::default());
    }
    let mut creations = Creations {
        since: ledger.creations_since().await?,
        ..Creations::default()
    };
    let needed: Vec<&(&Snapshot, AskedKey)> = scheduled
        .iter()
        .filter(|(s, _)| s.start_time.is_some_and(|t| creations.required_at(t)))
        .collect();
    if needed.is_empty() {
        return Ok(creations);
    }
    let ids: Vec<String> = needed.iter().map(|(s, _)| s.id.clone()).collect();
    creations.recorded = ledger.creations(&ids).await?.into_iter().collect();
    let claims: Vec<AskedKey> = needed
        .iter()
        .filter(|(s, _)| !creations.recorded.contains(&s.id))
        .map(|(_, claim)| claim.clone())
        .collect();
    if !claims.is_empty() {
        creations.asked = ledger
            .asked(&claims)
            .await?
            .into_iter()
            .map(|intent| (intent.claim, intent.asked_at))
            .collect();
    }
    Ok(creations)
}

/// What a snapshot's Description claims, if it is this deployment's format.
fn claim(config: &Config, s: &Snapshot) -> Option<Claim> {
    s.description
        .as_deref()
        .and_then(|d| config.identity.read(d))
}

/// A scheduled snapshot whose slot is not one of its policy's current
/// schedule: made under an earlier one (or forged), which the ledger's
/// schedule records decide.
fn off_schedule(config: &Config, s: &Snapshot) -> bool {
    match claim(config, s) {
        Some(Claim::Scheduled { policy, slot, .. }) => config
            .policies
            .get(&policy)
            .is_some_and(|p| p.schedule.slot_at(slot) != Some(slot)),
        _ => false,
    }
}

/// The policies with the schedules they had before: one ledger read per
/// process (docs/policies-and-tags.md, "Changing a schedule").
async fn policies_with_past<'c>(
    ledger: &dyn Ledger,
    config: &'c Config,
    now: DateTime<Utc>,
) -> Result<&'c Policies, LedgerError> {
    if let Some(known) = config.policies_with_past.get() {
        return Ok(known);
    }
    let past = PastSchedules::from_records(ledger.schedules().await?, now);
    Ok(config
        .policies_with_past
        .get_or_init(|| config.policies.with_past(past)))
}

/// Record each policy's schedule the first time create-snapshots runs with
/// it, so that the history made under it stays proven after a change
/// (docs/policies-and-tags.md, "Changing a schedule"). A failure is only
/// logged: the next tick records it.
pub async fn record_schedules(ledger: &dyn Ledger, config: &Config, now: DateTime<Utc>) {
    let past = match ledger.schedules().await {
        Ok(records) => PastSchedules::from_records(records, now),
        Err(e) => {
            tracing::warn!(error = %e, "the recorded schedules could not be read; recorded next tick");
            return;
        }
    };
    let policies = config.policies.with_past(past);
    for policy in policies.schedules_to_record() {
        let record = ScheduleRecord {
            policy: policy.name.clone(),
            expression: policy.schedule.expression().to_string(),
            time_zone: policy.schedule.timezone().name().to_string(),
            from: now,
        };
        match ledger.record_schedule(&record).await {
            Ok(()) => {
                tracing::info!(policy = %record.policy, schedule = %record.expression, time_zone = %record.time_zone, "schedule recorded")
            }
            Err(e) => {
                tracing::warn!(policy = %record.policy, error = %e, "the schedule could not be recorded; recorded next tick")
            }
        }
    }
}

/// Record the run's suspects in its header and return the notification for
/// those never reported before (the ledger remembers; when it cannot be
/// asked, the suspect is reported again rather than not at all). Suspects
/// seen before cost one batch read per 100, the new ones a conditional
/// write each.
pub async fn report(
    ledger: &dyn Ledger,
    config: &Config,
    suspects: &[Suspect],
    now: DateTime<Utc>,
    header: &mut RunHeader,
) -> Vec<Notification> {
    let ids: Vec<String> = suspects.iter().map(|s| s.snapshot_id.clone()).collect();
    let already: std::collections::BTreeSet<String> = if ids.is_empty() {
        Default::default()
    } else {
        match ledger.reported(&ids).await {
            Ok(reported) => reported.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not read which suspects were reported; asking one by one");
                Default::default()
            }
        }
    };
    let mut first = Vec::new();
    for suspect in suspects
        .iter()
        .filter(|s| !already.contains(&s.snapshot_id))
    {
        let new = match ledger.first_report(&suspect.snapshot_id, now).await {
            Ok(new) => new,
            Err(e) => {
                tracing::warn!(error = %e, snapshot_id = %suspect.snapshot_id, "could not ask the ledger whether this suspect was reported; reporting it");
                true
            }
        };
        if new {
            first.push(suspect);
        }
    }
    if !suspects.is_empty() {
        tracing::warn!(
            function = header.function,
            suspects = suspects.len(),
            first_reported = first.len(),
            "snapshots with this deployment's tags failed the ownership check: never deleted, never linked"
        );
    }
    header
        .tampering_suspected
        .extend(suspects.iter().take(LISTED).cloned());
    if first.is_empty() {
        return Vec::new();
    }
    let made = first.iter().filter(|s| s.made_by_deployment).count();
    let summary = format!(
        "{} snapshot(s) carry this deployment's tags without its proof ({} of them made by it, tags changed since): none is deleted or linked",
        first.len(),
        made
    );
    vec![Notification {
        kind: NotificationKind::TamperingSuspected,
        severity: Severity::Critical,
        deployment: config.deployment_name().to_string(),
        summary,
        details: json!({
            "function": header.function,
            "count": first.len(),
            "snapshots": first.iter().take(LISTED).collect::<Vec<_>>(),
            "what_to_do": "Find who wrote lifecycle: tags on these snapshots (CloudTrail CreateTags); remove the tags from snapshots this deployment did not make. See docs/operations.md, \"Tampering suspected\".",
        }),
    }]
}

/// Of these report keys, those the ledger has no record of, recorded now:
/// one batch read, a write only for a new one. A ledger that cannot be
/// read makes them all new (reported again rather than not at all).
pub async fn not_reported_before(
    ledger: &dyn Ledger,
    keys: impl Iterator<Item = String>,
    now: DateTime<Utc>,
) -> Vec<String> {
    let keys: Vec<String> = keys.collect();
    if keys.is_empty() {
        return keys;
    }
    let seen: std::collections::BTreeSet<String> = ledger
        .reported(&keys)
        .await
        .map(|r| r.into_iter().collect())
        .unwrap_or_default();
    let mut new = Vec::new();
    for key in keys.into_iter().filter(|k| !seen.contains(k)) {
        if ledger.first_report(&key, now).await.unwrap_or(true) {
            new.push(key);
        }
    }
    new
}

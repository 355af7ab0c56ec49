//! complete-snapshots: keeps each managed snapshot's `lifecycle:state` tag true.
//!
//! Two triggers:
//! - **EC2 events** (`EBS Snapshot Notification` for createSnapshot and
//!   copySnapshot, `EBS Multi-Volume Snapshots Completion Status` for
//!   createSnapshots): the snapshots named are looked up in one call (the
//!   cheap check that drops foreign snapshots, and the source of truth for
//!   tags and EC2 state), and each managed `pending` one becomes `completed`
//!   or `failed`.
//! - **a daily tick** (reconcile): events are best effort, so every snapshot
//!   still tagged `pending` is compared with EC2; and one pending for longer
//!   than `STUCK_AFTER_MINUTES` raises a single `snapshot-stuck` alert.
//!
//! Idempotence: only a snapshot tagged `pending` changes, so a repeated or
//! late event changes nothing and notifies nobody. A terminal EC2 state wins
//! over what an event says, so the tag always ends equal to EC2. The
//! `snapshot-failed` alert is sent by the run that moves the tag from
//! `pending` to `failed`; the template runs this function one invocation at a
//! time so two deliveries of one event cannot both see `pending`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration as TimeDelta, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::function::{self, Function, Ran, Run as FunctionRun, Summary};
use ebs_lifecycle::lambda::invocation;
use ebs_lifecycle::lambda::metrics::Metric;
use ebs_lifecycle::lambda::run::RunHeader;
use ebs_lifecycle::ports::ec2::{Ec2Error, SnapshotCatalog, SnapshotTagger};
use ebs_lifecycle::ports::ledger::Ledger;
use ebs_lifecycle::ports::notifier::Notifier;
use ebs_lifecycle::services::ownership;
use ebs_lifecycle_core::events::{SnapshotResult, Trigger};
use ebs_lifecycle_core::model::{Snapshot, SnapshotState, Tags};
use ebs_lifecycle_core::notify::{Notification, NotificationKind, Severity};
use ebs_lifecycle_core::ownership::Scope;
use ebs_lifecycle_core::ownership::Suspect;
use ebs_lifecycle_core::tags::{self, LifecycleLabels, LifecycleState};

pub const FUNCTION: &str = "complete-snapshots";

#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub catalog: &'a dyn SnapshotCatalog,
    pub tagger: &'a dyn SnapshotTagger,
    pub notifier: &'a dyn Notifier,
    /// The stack's own record, for the ownership of copies.
    pub ledger: &'a dyn Ledger,
}

/// How an invocation fails (stable `errorType`s), shared by the
/// event-driven functions.
pub use ebs_lifecycle::lambda::invocation::InvocationError;

/// One tag change this run made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub snapshot_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    pub policy: String,
    /// `completed` or `failed`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cause: String,
}

/// An original replaced by its completed encrypted copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Supersession {
    pub original: String,
    pub copy: String,
}

/// A snapshot pending for too long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stuck {
    pub snapshot_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    pub policy: String,
    pub pending_since: String,
    /// False when the alert went out on an earlier run.
    pub notified_now: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    #[serde(flatten)]
    pub header: RunHeader,
    pub completed: Vec<Transition>,
    pub failed: Vec<Transition>,
    /// Managed snapshots already in their final state: a repeated or late event.
    pub unchanged: usize,
    /// Snapshots this deployment does not manage.
    pub foreign: usize,
    /// Managed snapshots whose lifecycle tags cannot be read; left alone.
    pub unreadable: Vec<String>,
    pub stuck: Vec<Stuck>,
    /// Originals tagged `lifecycle:superseded-by` because their copy completed.
    pub superseded: Vec<Supersession>,
    /// Reconcile: still pending, not yet stuck.
    pub still_pending: usize,
    /// Reconcile: not examined because the deadline came near.
    pub left_for_later: usize,
}

/// complete-snapshots, as the skeleton runs it ([`Function`]).
pub struct CompleteSnapshots;

impl Function for CompleteSnapshots {
    const NAME: &'static str = FUNCTION;
    type Ports<'p> = Ports<'p>;
    type Trigger = Trigger;
    type Summary = RunSummary;
    type Error = InvocationError;

    fn ledger<'p>(ports: &Self::Ports<'p>) -> &'p dyn Ledger {
        ports.ledger
    }

    fn notifier<'p>(ports: &Self::Ports<'p>) -> &'p dyn Notifier {
        ports.notifier
    }

    fn open(
        run: &FunctionRun<'_>,
        event: &Value,
    ) -> Result<(Trigger, RunSummary), InvocationError> {
        invocation::open_trigger(FUNCTION, run, event)
    }

    async fn execute(
        ports: Self::Ports<'_>,
        run: &FunctionRun<'_>,
        trigger: Trigger,
        summary: &mut RunSummary,
    ) -> Result<Ran, InvocationError> {
        let (config, now) = (run.config, run.now);
        let suspects = match trigger {
            Trigger::Tick(_) => reconcile(ports, config, now, run.deadline, summary).await?,
            Trigger::Snapshots { results, .. } => {
                apply_results(ports, config, &results, now, summary).await?
            }
            // The run header logged it.
            Trigger::Ignored { .. } => return Ok(Ran::Nothing),
        };
        Ok(Ran::Done { suspects })
    }

    /// The failed and stuck alerts are published as the run finds them
    /// (they must not be lost); nothing is left for the closing.
    async fn notifications(
        _ports: Self::Ports<'_>,
        _run: &FunctionRun<'_>,
        _summary: &mut RunSummary,
    ) -> Vec<Notification> {
        Vec::new()
    }
}

/// Handle one invocation: an EC2 snapshot event or a reconcile tick.
pub async fn handle(
    ports: Ports<'_>,
    config: &Config,
    event: &Value,
    now: DateTime<Utc>,
    deadline: Deadline,
) -> Result<RunSummary, InvocationError> {
    function::invoke::<CompleteSnapshots>(ports, config, event, now, deadline).await
}

/// What the tag should become, given EC2's state and (for events) what the
/// event reported. A terminal EC2 state is the truth; the event decides only
/// while EC2 still says pending (its describe can lag the event).
fn target_state(snapshot: &Snapshot, reported_success: Option<bool>) -> Option<LifecycleState> {
    match (snapshot.state, reported_success) {
        (SnapshotState::Completed, _) => Some(LifecycleState::Completed),
        (SnapshotState::Error, _) => Some(LifecycleState::Failed),
        (_, Some(true)) => Some(LifecycleState::Completed),
        (_, Some(false)) => Some(LifecycleState::Failed),
        (_, None) => None,
    }
}

/// This deployment's labels on the snapshot, or why it is not ours to touch.
enum Ownership {
    Ours(Box<LifecycleLabels>),
    Foreign,
    Unreadable,
}

fn ownership(snapshot: &Snapshot, deployment: &str) -> Ownership {
    if !tags::is_managed_by(&snapshot.tags, deployment) {
        return Ownership::Foreign;
    }
    match LifecycleLabels::from_tags(&snapshot.tags) {
        Ok(Some(labels)) => Ownership::Ours(Box::new(labels)),
        Ok(None) => Ownership::Foreign,
        Err(e) => {
            tracing::warn!(snapshot = %snapshot.id, error = %e, "managed snapshot with unreadable lifecycle tags; left alone");
            Ownership::Unreadable
        }
    }
}

async fn apply_results(
    ports: Ports<'_>,
    config: &Config,
    results: &[SnapshotResult],
    now: DateTime<Utc>,
    summary: &mut RunSummary,
) -> Result<Vec<Suspect>, InvocationError> {
    let ids: Vec<String> = results.iter().map(|r| r.snapshot_id.clone()).collect();
    let (tagged, foreign): (Vec<Snapshot>, Vec<Snapshot>) = ports
        .catalog
        .snapshots_by_id(&ids)
        .await?
        .into_iter()
        .partition(|s| claims_deployment(s, config.deployment_name()));
    // Only what the deployment provably made has its state tag kept true;
    // a suspect is as foreign as a snapshot without the tag. One it made
    // whose `managed-by` was removed is still proven by its Description:
    // its failure is alerted, its tags are not written.
    let sifted = ownership::sift(ports.ledger, config, tagged, Scope::SomeSnapshots, now).await?;
    let suspects: Vec<Suspect> = sifted.suspects;
    let proven: BTreeSet<String> = sifted.owned.iter().map(|s| s.id.clone()).collect();
    let found: BTreeMap<String, Snapshot> = sifted
        .owned
        .into_iter()
        .chain(foreign)
        .map(|s| (s.id.clone(), s))
        .collect();
    let suspected: Vec<&str> = suspects
        .iter()
        .filter(|s| !s.made_by_deployment)
        .map(|s| s.snapshot_id.as_str())
        .collect();

    let mut not_visible = Vec::new();
    let mut changes = Vec::new();
    let mut unlabelled = Vec::new();
    for result in results {
        if suspected.contains(&result.snapshot_id.as_str()) {
            summary.foreign += 1;
            continue;
        }
        let Some(snapshot) = found.get(&result.snapshot_id) else {
            if result.gone_if_missing(now) {
                summary
                    .header
                    .snapshots_gone
                    .push(result.snapshot_id.clone());
            } else {
                not_visible.push(result.snapshot_id.clone());
            }
            continue;
        };
        let labels = match ownership(snapshot, config.deployment_name()) {
            Ownership::Ours(labels) => labels,
            other => {
                if proven.contains(&snapshot.id) && snapshot.state == SnapshotState::Error {
                    unlabelled.push((snapshot.clone(), failure_cause(&result.cause, snapshot)));
                }
                match other {
                    Ownership::Unreadable => summary.unreadable.push(snapshot.id.clone()),
                    _ => summary.foreign += 1,
                }
                continue;
            }
        };
        // A tag that already says done decides nothing when EC2 says the
        // snapshot failed: anyone can write `lifecycle:state`, and a
        // failure must still be alerted (once: the ledger remembers).
        let failed_in_ec2 = snapshot.state == SnapshotState::Error;
        if labels.state != LifecycleState::Pending && !failed_in_ec2 {
            summary.unchanged += 1;
            continue;
        }
        if let Some(state) = target_state(snapshot, result.reported.succeeded()) {
            let cause = if state == LifecycleState::Failed {
                failure_cause(&result.cause, snapshot)
            } else {
                String::new()
            };
            changes.push(Change {
                snapshot: snapshot.clone(),
                labels,
                state,
                completed_at: result.end_time.unwrap_or(now),
                cause,
            });
        }
    }
    apply_changes(ports, config, changes, now, summary).await?;
    alert_unlabelled_failures(ports, config, unlabelled, now, summary).await?;
    if not_visible.is_empty() {
        Ok(suspects)
    } else {
        Err(InvocationError::SnapshotNotVisible(not_visible))
    }
}

fn failure_cause(reported: &str, snapshot: &Snapshot) -> String {
    if reported.trim().is_empty() {
        format!(
            "EC2 reports snapshot {} in state error and gave no cause",
            snapshot.id
        )
    } else {
        reported.to_string()
    }
}

/// One pending snapshot and what its tag becomes.
struct Change {
    snapshot: Snapshot,
    labels: Box<LifecycleLabels>,
    state: LifecycleState,
    completed_at: DateTime<Utc>,
    cause: String,
}

/// Write the tags (completed ones batched by identical tag set) and send one
/// `snapshot-failed` per failure. A failure is notified before its tag is
/// written: if the write then fails, the invocation fails and the retry
/// notifies again, which is better than a failure nobody hears of.
async fn apply_changes(
    ports: Ports<'_>,
    config: &Config,
    changes: Vec<Change>,
    now: DateTime<Utc>,
    summary: &mut RunSummary,
) -> Result<(), InvocationError> {
    let mut completed_batches: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut supersessions: Vec<(String, String)> = Vec::new();
    // Which failures were alerted already: the stack's ledger, never the
    // `lifecycle:state` tag, decides.
    let failure_keys: Vec<String> = changes
        .iter()
        .filter(|c| c.state == LifecycleState::Failed)
        .map(|c| failed_key(&c.snapshot.id))
        .collect();
    let alerted = alerted(ports, &failure_keys).await?;
    for change in changes {
        let transition = Transition {
            snapshot_id: change.snapshot.id.clone(),
            volume_id: change.snapshot.source_volume_id().map(String::from),
            policy: change.labels.policy.clone(),
            state: change.state.as_str(),
            cause: change.cause.clone(),
        };
        match change.state {
            LifecycleState::Completed => {
                if let Some(original) = change.snapshot.encrypted_copy_of() {
                    supersessions.push((original.to_string(), change.snapshot.id.clone()));
                }
                completed_batches
                    .entry(tags::format_time(change.completed_at))
                    .or_default()
                    .push(change.snapshot.id.clone());
                summary.completed.push(transition);
            }
            LifecycleState::Failed => {
                let key = failed_key(&change.snapshot.id);
                let already = alerted.contains(&key);
                if already && change.labels.state == LifecycleState::Failed {
                    summary.unchanged += 1;
                    continue;
                }
                if !already {
                    let notification = failed_notification(config, &change, &transition);
                    ports
                        .notifier
                        .publish(&notification)
                        .await
                        .map_err(|e| InvocationError::NotificationFailed(e.to_string()))?;
                    ports.ledger.first_report(&key, change.completed_at).await?;
                }
                let tags = Tags::from([(
                    tags::STATE.to_string(),
                    LifecycleState::Failed.as_str().to_string(),
                )]);
                ports
                    .tagger
                    .tag_snapshots(std::slice::from_ref(&change.snapshot.id), &tags)
                    .await?;
                summary.failed.push(transition);
            }
            LifecycleState::Pending => {}
        }
    }
    for (completed_at, ids) in completed_batches {
        let tags = Tags::from([
            (
                tags::STATE.to_string(),
                LifecycleState::Completed.as_str().to_string(),
            ),
            (tags::COMPLETED_AT.to_string(), completed_at),
        ]);
        ports.tagger.tag_snapshots(&ids, &tags).await?;
    }
    // An encrypted copy is completed (and tagged so, above): its original is
    // superseded. Written after the copy's tag, so a crash in between leaves
    // both counted by retention, never neither.
    for (original, copy) in supersessions {
        if !may_supersede(ports, config, &original, now).await? {
            tracing::warn!(original = %original, copy = %copy, "the copy's original is not provably this deployment's, or its tags were tampered with: not linked");
            continue;
        }
        let tags = Tags::from([(tags::SUPERSEDED_BY.to_string(), copy.clone())]);
        match ports
            .tagger
            .tag_snapshots(std::slice::from_ref(&original), &tags)
            .await
        {
            Ok(()) => summary.superseded.push(Supersession { original, copy }),
            // The original is gone already: nothing left to supersede.
            Err(Ec2Error::SnapshotNotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// An original may be linked to its (proven) copy only if the deployment
/// provably made it and nobody changed its tags since: a forged link would
/// let expiry delete it. One DescribeSnapshots per completed copy.
async fn may_supersede(
    ports: Ports<'_>,
    config: &Config,
    original: &str,
    now: DateTime<Utc>,
) -> Result<bool, InvocationError> {
    let found = ports
        .catalog
        .snapshots_by_id(&[original.to_string()])
        .await?;
    let sifted = ownership::sift(ports.ledger, config, found, Scope::SomeSnapshots, now).await?;
    Ok(sifted.suspects.is_empty() && sifted.owned.iter().any(|s| s.id == original))
}

fn failed_notification(config: &Config, change: &Change, t: &Transition) -> Notification {
    failure_notification(
        config,
        t,
        change.labels.instance_id.as_deref(),
        Some(change.labels.slot),
    )
}

fn failure_notification(
    config: &Config,
    t: &Transition,
    instance_id: Option<&str>,
    slot: Option<DateTime<Utc>>,
) -> Notification {
    let volume = t.volume_id.as_deref().unwrap_or("an unknown volume");
    Notification {
        kind: NotificationKind::SnapshotFailed,
        severity: Severity::Warning,
        deployment: config.deployment_name().to_string(),
        summary: format!("snapshot of {volume} failed (policy {})", t.policy),
        details: json!({
            "snapshot_id": t.snapshot_id,
            "volume_id": t.volume_id,
            "instance_id": instance_id,
            "policy": t.policy,
            "slot": slot.map(tags::format_time),
            "cause": t.cause,
            "next": "The volume is still due in this slot: the next create-snapshots tick takes a new snapshot. The failed snapshot is cleaned up by expiry after its grace period.",
        }),
    }
}

/// A snapshot the deployment provably made (its Description) that EC2 says
/// failed, whose lifecycle labels were removed, made unreadable or set to
/// a final state by someone: nobody's tag may silence its failure. It is alerted once (the ledger's `failed/<id>`)
/// and reported in the summary; its tags are not written (the stack's
/// roles may tag only what carries its `managed-by`).
async fn alert_unlabelled_failures(
    ports: Ports<'_>,
    config: &Config,
    failures: Vec<(Snapshot, String)>,
    now: DateTime<Utc>,
    summary: &mut RunSummary,
) -> Result<(), InvocationError> {
    let keys: Vec<String> = failures.iter().map(|(s, _)| failed_key(&s.id)).collect();
    let alerted = alerted(ports, &keys).await?;
    for (snapshot, cause) in failures {
        let transition = proven_transition(&snapshot, LifecycleState::Failed, cause);
        if !alerted.contains(&failed_key(&snapshot.id)) {
            let notification = failure_notification(
                config,
                &transition,
                snapshot.tags.get(tags::INSTANCE_ID).map(String::as_str),
                snapshot
                    .tags
                    .get(tags::SLOT)
                    .and_then(|v| tags::parse_time(v)),
            );
            ports
                .notifier
                .publish(&notification)
                .await
                .map_err(|e| InvocationError::NotificationFailed(e.to_string()))?;
            ports
                .ledger
                .first_report(&failed_key(&snapshot.id), now)
                .await?;
            summary.failed.push(transition);
        }
    }
    Ok(())
}

/// A transition of a snapshot from what its proof says (the ownership
/// check set its volume and policy tags from its Description).
fn proven_transition(snapshot: &Snapshot, state: LifecycleState, cause: String) -> Transition {
    Transition {
        snapshot_id: snapshot.id.clone(),
        volume_id: snapshot.source_volume_id().map(String::from),
        policy: snapshot.tags.get(tags::POLICY).cloned().unwrap_or_default(),
        state: state.as_str(),
        cause,
    }
}

/// Listed as the deployment's by its tag or by its Description; the
/// ownership check decides which it is.
fn claims_deployment(s: &Snapshot, deployment: &str) -> bool {
    tags::is_managed_by(&s.tags, deployment)
        || s.description
            .as_deref()
            .is_some_and(|d| ebs_lifecycle_core::ownership::names_deployment(d, deployment))
}

/// The daily backstop: every snapshot still tagged `pending` is compared with EC2.
async fn reconcile(
    ports: Ports<'_>,
    config: &Config,
    now: DateTime<Utc>,
    deadline: Deadline,
    summary: &mut RunSummary,
) -> Result<Vec<Suspect>, InvocationError> {
    // Tagged `pending` (EC2 may have finished: the tag is set true), and
    // what EC2 itself says is unfinished among the snapshots whose
    // Description names the deployment: removing `managed-by` or
    // `lifecycle:state` hides neither a failure nor a stuck snapshot.
    let (by_tag, by_ec2) = tokio::try_join!(
        ports
            .catalog
            .managed_snapshots_in_state(config.deployment_name(), LifecycleState::Pending),
        ports.catalog.unfinished_snapshots(&config.identity),
    )?;
    let mut listed: BTreeMap<String, Snapshot> = BTreeMap::new();
    for s in by_tag.into_iter().chain(by_ec2) {
        listed.entry(s.id.clone()).or_insert(s);
    }
    let listed: Vec<Snapshot> = listed.into_values().collect();
    let sifted = ownership::sift(ports.ledger, config, listed, Scope::SomeSnapshots, now).await?;
    let (pending, suspects) = (sifted.owned, sifted.suspects);
    let Triage {
        changes,
        stuck,
        unlabelled,
    } = triage(pending, config, now, summary);
    apply_changes(ports, config, changes, now, summary).await?;
    alert_unlabelled_failures(ports, config, unlabelled, now, summary).await?;
    alert_stuck(ports, config, stuck, now, deadline, summary).await?;
    Ok(suspects)
}

/// A snapshot pending too long: its policy, since when, and whether it
/// carries the deployment's `managed-by` (only then is it marked).
type StuckSnapshot = (Snapshot, String, DateTime<Utc>, bool);

/// What the reconcile does with each proven snapshot.
struct Triage {
    /// State tags to set true.
    changes: Vec<Change>,
    stuck: Vec<StuckSnapshot>,
    /// Failed in EC2, their labels gone or already saying done: alerted,
    /// not retagged.
    unlabelled: Vec<(Snapshot, String)>,
}

/// Sort the proven unfinished snapshots: a state tag to set, a stuck
/// alert, a failure without labels, or still pending.
fn triage(
    pending: Vec<Snapshot>,
    config: &Config,
    now: DateTime<Utc>,
    summary: &mut RunSummary,
) -> Triage {
    let stuck_after = TimeDelta::minutes(i64::from(config.stuck_after_minutes));
    let mut changes = Vec::new();
    let mut stuck = Vec::new();
    let mut unlabelled = Vec::new();
    for snapshot in pending {
        let labels = match ownership(&snapshot, config.deployment_name()) {
            // Tagged pending, or failed in EC2 whatever its state tag says
            // (the tag is set true; the alert goes once, by the ledger).
            Ownership::Ours(labels)
                if labels.state == LifecycleState::Pending
                    || snapshot.state == SnapshotState::Error =>
            {
                labels
            }
            // Its state tag says done (written by us, or by anyone), its
            // labels are gone or unreadable: what EC2 says still decides
            // the alerts, once each (the ledger); only a snapshot that
            // carries the deployment's `managed-by` gets the stuck marker.
            other => {
                let taggable = matches!(other, Ownership::Ours(_));
                if matches!(other, Ownership::Unreadable) {
                    summary.unreadable.push(snapshot.id.clone());
                }
                match snapshot.state {
                    SnapshotState::Error => {
                        let cause = failure_cause("", &snapshot);
                        unlabelled.push((snapshot, cause));
                    }
                    SnapshotState::Pending => {
                        if let Some(since) = snapshot.start_time.filter(|t| now - *t > stuck_after)
                        {
                            let policy =
                                snapshot.tags.get(tags::POLICY).cloned().unwrap_or_default();
                            stuck.push((snapshot, policy, since, taggable));
                        }
                    }
                    _ => {}
                }
                continue;
            }
        };
        match target_state(&snapshot, None) {
            Some(state) => {
                let cause = if state == LifecycleState::Failed {
                    failure_cause("", &snapshot)
                } else {
                    String::new()
                };
                // EC2 does not say when a snapshot completed; the reconcile
                // time is when this deployment saw it complete.
                changes.push(Change {
                    snapshot,
                    labels,
                    state,
                    completed_at: now,
                    cause,
                });
            }
            None => {
                let since = snapshot.start_time.unwrap_or(labels.created_at);
                if now - since > stuck_after {
                    stuck.push((snapshot, labels.policy.clone(), since, true));
                } else {
                    summary.still_pending += 1;
                }
            }
        }
    }
    Triage {
        changes,
        stuck,
        unlabelled,
    }
}

/// One `snapshot-stuck` alert per snapshot: sent, then recorded in the
/// ledger (and marked on the snapshot when it carries our labels).
async fn alert_stuck(
    ports: Ports<'_>,
    config: &Config,
    stuck: Vec<StuckSnapshot>,
    now: DateTime<Utc>,
    deadline: Deadline,
    summary: &mut RunSummary,
) -> Result<(), InvocationError> {
    // Whether a stuck snapshot was alerted already is the stack's own
    // record (the ledger), never the `stuck-notified-at` tag: anyone who
    // can write that tag could silence the alert.
    let stuck_keys: Vec<String> = stuck.iter().map(|(s, ..)| stuck_key(&s.id)).collect();
    let alerted = alerted(ports, &stuck_keys).await?;
    for (snapshot, policy, since, taggable) in stuck {
        if deadline.is_near() {
            summary.left_for_later += 1;
            continue;
        }
        let already = alerted.contains(&stuck_key(&snapshot.id));
        let entry = Stuck {
            snapshot_id: snapshot.id.clone(),
            volume_id: snapshot.source_volume_id().map(String::from),
            policy,
            pending_since: tags::format_time(since),
            notified_now: !already,
        };
        if !already {
            let notification = Notification {
                kind: NotificationKind::SnapshotStuck,
                severity: Severity::Warning,
                deployment: config.deployment_name().to_string(),
                summary: format!(
                    "snapshot {} of {} pending for over {} minutes",
                    entry.snapshot_id,
                    entry.volume_id.as_deref().unwrap_or("an unknown volume"),
                    config.stuck_after_minutes
                ),
                details: json!({
                    "snapshot": entry,
                    "next": "Large first snapshots can take hours. If it stays pending, check the volume and AWS Health; this alert is sent once per snapshot.",
                }),
            };
            match ports.notifier.publish(&notification).await {
                Ok(()) => {
                    ports
                        .ledger
                        .first_report(&stuck_key(&snapshot.id), now)
                        .await?;
                    if !taggable {
                        // Its labels are gone: the ledger alone remembers.
                        summary.stuck.push(entry);
                        continue;
                    }
                    let marker =
                        Tags::from([(tags::STUCK_NOTIFIED_AT.to_string(), tags::format_time(now))]);
                    ports
                        .tagger
                        .tag_snapshots(std::slice::from_ref(&snapshot.id), &marker)
                        .await?;
                }
                Err(e) => summary.header.notification_errors.push(e.to_string()),
            }
        }
        summary.stuck.push(entry);
    }
    Ok(())
}

/// Which of these alerts (`failed/<id>`, `stuck/<id>`) the ledger says
/// were sent: no read when there are none to ask about.
async fn alerted(ports: Ports<'_>, keys: &[String]) -> Result<BTreeSet<String>, InvocationError> {
    if keys.is_empty() {
        return Ok(BTreeSet::new());
    }
    Ok(ports.ledger.reported(keys).await?.into_iter().collect())
}

/// The ledger's record that a snapshot's `snapshot-failed` alert was sent.
fn failed_key(snapshot_id: &str) -> String {
    format!("failed/{snapshot_id}")
}

/// The ledger's record that a snapshot's `snapshot-stuck` alert was sent.
fn stuck_key(snapshot_id: &str) -> String {
    format!("stuck/{snapshot_id}")
}

impl Summary for RunSummary {
    fn header(&mut self) -> &mut RunHeader {
        &mut self.header
    }

    fn headline(&self) -> String {
        format!(
            "complete-snapshots ({}): {} completed, {} failed, {} unchanged, {} foreign, {} stuck",
            self.header.trigger,
            self.completed.len(),
            self.failed.len(),
            self.unchanged,
            self.foreign,
            self.stuck.len()
        )
    }

    fn metrics(&self, suspects: usize) -> Vec<(Metric, u64)> {
        let mut values = vec![
            (Metric::TamperingSuspected, suspects as u64),
            (
                Metric::SnapshotsCreateCompleted,
                self.completed.len() as u64,
            ),
            (Metric::SnapshotsCreateFailed, self.failed.len() as u64),
        ];
        if self.header.trigger == "daily" {
            values.push((Metric::StuckSnapshots, self.stuck.len() as u64));
        }
        values
    }
}

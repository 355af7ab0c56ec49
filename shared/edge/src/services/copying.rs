//! What copy-snapshots (in each destination region) and vault-snapshots (in
//! a vault account) do alike with the copies they make
//! (docs/functions.md, "copy-snapshots", "vault-snapshots"): find again a
//! copy whose CopySnapshot answer was lost, start a copy (the ledger's
//! in-flight record first: CopySnapshot has no idempotency token), track
//! copies pending -> completed / failed, end the in-flight records that are
//! settled, keep the copies by their rules under the deletion gate, and
//! label them. What each function copies, and from where, is its own.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use ebs_lifecycle_core::copies::{self, LostAnswer};
use ebs_lifecycle_core::expiry;
use ebs_lifecycle_core::model::{Snapshot, SnapshotState, Tags};
use ebs_lifecycle_core::ownership::{CopyRecord, Identity};
use ebs_lifecycle_core::policy::Policies;
use ebs_lifecycle_core::safety::DeletionGate;
use ebs_lifecycle_core::tagging;
use ebs_lifecycle_core::tags::{self, LifecycleState};

use crate::config::Config;
use crate::lambda::deadline::Deadline;
use crate::pacing::{Pacer, Pacing};
use crate::ports::ec2::{
    CopySnapshotRequest, Ec2Error, SnapshotCopier, SnapshotDeleter, SnapshotProtections,
    SnapshotTagger, TAG_BATCH,
};
use crate::ports::ledger::{CopyInFlight, Ledger, LedgerError};
use crate::services::deletion::{Deleter, Deleting, Deletion, Locks, Protections, Records, Unread};

/// EC2 where the copies are, and the stack's ledger.
#[derive(Clone, Copy)]
pub struct CopyPorts<'a> {
    pub protections: &'a dyn SnapshotProtections,
    pub copier: &'a dyn SnapshotCopier,
    pub deleter: &'a dyn SnapshotDeleter,
    pub tagger: &'a dyn SnapshotTagger,
    pub ledger: &'a dyn Ledger,
}

/// The ledger's record of a copy, from its in-flight record.
pub fn record_of(flight: &CopyInFlight, copy_id: &str) -> CopyRecord {
    CopyRecord {
        copy_id: copy_id.to_string(),
        source_snapshot_id: flight.source_snapshot_id.clone(),
        volume_id: flight.volume_id.clone(),
        policy: flight.policy.clone(),
        slot: flight.slot,
        created_at: flight.created_at,
        target: Some(flight.target.clone()),
    }
}

/// The in-flight records after the lost answers were looked for.
#[derive(Debug, Default)]
pub struct Resolved {
    pub in_flight: Vec<CopyInFlight>,
    /// Copies found by their Description and recorded.
    pub adopted: Vec<String>,
    /// Sources whose copy may still appear.
    pub unknown: Vec<String>,
}

/// Look for the copies whose CopySnapshot answer was lost (an in-flight
/// record without a copy id) among `listed` snapshots no ledger record
/// claims (`recorded`: the copy ids the ledger knows): found, recorded;
/// still possible, waited for; not listed long after the ask, never
/// started (the record ends and the source may be chosen again).
pub async fn resolve_lost_answers(
    ledger: &dyn Ledger,
    identity: &Identity,
    listed: &[Snapshot],
    recorded: &mut BTreeSet<String>,
    in_flight: Vec<CopyInFlight>,
    now: DateTime<Utc>,
) -> Result<Resolved, LedgerError> {
    let mut out = Resolved::default();
    for mut flight in in_flight {
        if flight.copy_id.is_some() {
            out.in_flight.push(flight);
            continue;
        }
        let unrecorded = listed.iter().filter(|s| !recorded.contains(&s.id));
        let description = identity.copy(&identity.region, &flight.source_snapshot_id);
        match copies::find_lost_copy(
            unrecorded,
            &description,
            &identity.account,
            flight.asked_at,
            now,
        ) {
            LostAnswer::Found(copy_id) => {
                ledger.record_copy(&record_of(&flight, &copy_id)).await?;
                flight.copy_id = Some(copy_id.clone());
                if let Err(e) = ledger.begin_copy(&flight).await {
                    tracing::warn!(error = %e, copy_id, "could not note the adopted copy's id on its in-flight record; the next run finds it again");
                }
                recorded.insert(copy_id.clone());
                out.adopted.push(copy_id);
                out.in_flight.push(flight);
            }
            LostAnswer::Wait => {
                out.unknown.push(flight.source_snapshot_id.clone());
                out.in_flight.push(flight);
            }
            LostAnswer::NeverStarted => {
                ledger
                    .end_copy(&flight.source_snapshot_id, &flight.target)
                    .await?;
            }
        }
    }
    Ok(out)
}

/// A copy that failed (EC2 state `error`), or that EC2 refused to start for
/// a reason a person must fix: what the run summaries list and notify.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopyFailure {
    pub source_snapshot_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_id: Option<String>,
    pub error_kind: String,
    pub error: String,
    /// False when a run before this one already reported it (a refused
    /// start is tried again each run until the cause is fixed).
    #[serde(skip)]
    pub first_report: bool,
}

/// What became of one CopySnapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// EC2 started it: recorded.
    Copy(String),
    /// Throttled through every retry, or the region's quota of copies in
    /// progress (`ResourceLimitExceeded`): not started, next run. Start no
    /// more into this place this run.
    Wait,
    /// The source is gone.
    SourceGone,
    /// No answer: it may have started; the in-flight record stays.
    Unknown,
    /// EC2 refused (the key, or another reason a person must fix): not
    /// started. `stop`: the key is unusable, so every copy into this place
    /// would fail.
    Refused { failure: CopyFailure, stop: bool },
}

/// Start one copy: the in-flight record, then CopySnapshot, then the
/// copy's record. A ledger that cannot take the in-flight record stops the
/// caller (no record, no copy).
pub async fn start(
    ports: CopyPorts<'_>,
    flight: CopyInFlight,
    request: &CopySnapshotRequest,
    pacer: &mut Pacer,
    now: DateTime<Utc>,
) -> Result<Started, LedgerError> {
    let ledger = ports.ledger;
    ledger.begin_copy(&flight).await?;
    pacer.ready().await;
    let end = |flight: &CopyInFlight| {
        let flight = flight.clone();
        async move {
            if let Err(e) = ledger
                .end_copy(&flight.source_snapshot_id, &flight.target)
                .await
            {
                tracing::warn!(error = %e, source = flight.source_snapshot_id, "could not end the in-flight record of a copy that never started; the next run proves it never started");
            }
        }
    };
    Ok(match ports.copier.copy_snapshot(request).await {
        Ok(copy_id) => {
            if let Err(e) = ledger.record_copy(&record_of(&flight, &copy_id)).await {
                // The in-flight record without an id stays: the next run
                // finds the copy by its Description.
                tracing::warn!(error = %e, copy_id, "could not record the copy; the next run adopts it");
            } else if let Err(e) = ledger
                .begin_copy(&CopyInFlight {
                    copy_id: Some(copy_id.clone()),
                    ..flight.clone()
                })
                .await
            {
                tracing::warn!(error = %e, copy_id, "could not note the copy's id on its in-flight record; the next run finds it again");
            }
            Started::Copy(copy_id)
        }
        Err(Ec2Error::Throttled { .. } | Ec2Error::ResourceLimitExceeded) => {
            end(&flight).await;
            Started::Wait
        }
        Err(Ec2Error::SnapshotNotFound) => {
            end(&flight).await;
            Started::SourceGone
        }
        Err(Ec2Error::Transport { .. }) => Started::Unknown,
        Err(e) => {
            end(&flight).await;
            let first_report = ledger
                .first_report(
                    &format!("{}@{}", flight.source_snapshot_id, flight.target),
                    now,
                )
                .await
                .unwrap_or(true);
            Started::Refused {
                failure: CopyFailure {
                    source_snapshot_id: flight.source_snapshot_id.clone(),
                    copy_id: None,
                    error_kind: e.kind().into(),
                    error: e.to_string(),
                    first_report,
                },
                stop: matches!(e, Ec2Error::KeyUnusable { .. }),
            }
        }
    })
}

/// The copies EC2 completed or failed since the last run.
#[derive(Debug, Default)]
pub struct Tracked {
    pub completed: Vec<String>,
    /// Each seen failed for the first time: reported once.
    pub failed: Vec<CopyFailure>,
}

/// Pending -> completed or failed, as EC2 says: the tags say so (and the
/// copies in memory with them). A tag write that fails leaves it for the
/// next run: untagged, a completed copy does not count yet. A failure is
/// reported once by the ledger's record (`copy-failed/<copy id>`), never
/// by the state tag: anyone who can write `lifecycle:state=failed` on a
/// pending copy would otherwise silence it.
pub async fn track(
    tagger: &dyn SnapshotTagger,
    ledger: &dyn Ledger,
    copies: &mut [Snapshot],
    now: DateTime<Utc>,
) -> Tracked {
    let mut out = Tracked {
        failed: failures_not_reported(ledger, copies, now).await,
        ..Tracked::default()
    };
    // Done only when both labels are there: a copy that someone tagged
    // `completed` while EC2 still had it pending was never given its
    // `completed-at`, and gets it now.
    let tagged = |s: &Snapshot, state: LifecycleState| {
        s.tags.get(tags::STATE).map(String::as_str) == Some(state.as_str())
            && (state != LifecycleState::Completed
                || s.tags
                    .get(tags::COMPLETED_AT)
                    .and_then(|v| tags::parse_time(v))
                    .is_some())
    };
    for (ec2_state, state) in [
        (SnapshotState::Completed, LifecycleState::Completed),
        (SnapshotState::Error, LifecycleState::Failed),
    ] {
        let ids: Vec<String> = copies
            .iter()
            .filter(|s| s.state == ec2_state && !tagged(s, state))
            .map(|s| s.id.clone())
            .collect();
        if ids.is_empty() {
            continue;
        }
        let mut new_tags = Tags::new();
        new_tags.insert(tags::STATE.into(), state.as_str().into());
        if state == LifecycleState::Completed {
            new_tags.insert(tags::COMPLETED_AT.into(), tags::format_time(now));
        }
        if let Err(e) = tagger.tag_snapshots(&ids, &new_tags).await {
            tracing::warn!(error = %e, "could not tag the copies' new state; the next run tries again");
            continue;
        }
        for copy in copies.iter_mut().filter(|c| ids.contains(&c.id)) {
            copy.tags.extend(new_tags.clone());
            if state == LifecycleState::Completed {
                out.completed.push(copy.id.clone());
            }
        }
    }
    out
}

/// The copies EC2 says failed whose failure the ledger has no record of:
/// recorded now, each reported this once. One batch read for all (a
/// failed copy stays until its rules let it go); a write per new one. A
/// ledger that cannot be read reports them again rather than not at all.
async fn failures_not_reported(
    ledger: &dyn Ledger,
    copies: &[Snapshot],
    now: DateTime<Utc>,
) -> Vec<CopyFailure> {
    let failed: Vec<&Snapshot> = copies
        .iter()
        .filter(|c| c.state == SnapshotState::Error)
        .collect();
    if failed.is_empty() {
        return Vec::new();
    }
    let key = |c: &Snapshot| format!("copy-failed/{}", c.id);
    let new: BTreeSet<String> =
        crate::services::ownership::not_reported_before(ledger, failed.iter().map(|c| key(c)), now)
            .await
            .into_iter()
            .collect();
    let mut out = Vec::new();
    for copy in failed {
        if !new.contains(&key(copy)) {
            continue;
        }
        out.push(CopyFailure {
            source_snapshot_id: copy.copy_of().unwrap_or_default().to_string(),
            copy_id: Some(copy.id.clone()),
            error_kind: "copy-error".into(),
            error: "EC2 reports the copy in state error".into(),
            first_report: true,
        });
    }
    out
}

/// End the in-flight records whose copy is no longer pending, or is gone
/// (deleted by hand) well after the ask, so that its volume is not blocked
/// and its source not protected until the record expires. Returns the
/// records still in flight.
pub async fn settle(
    ledger: &dyn Ledger,
    copies: &[Snapshot],
    in_flight: Vec<CopyInFlight>,
    now: DateTime<Utc>,
) -> Vec<CopyInFlight> {
    let mut still = Vec::new();
    for flight in in_flight {
        let settled = match flight.copy_id.as_deref() {
            None => false,
            Some(id) => match copies.iter().find(|c| c.id == id) {
                Some(c) => c.state != SnapshotState::Pending,
                None => now >= flight.asked_at + copies::LOST_ANSWER_WINDOW,
            },
        };
        if !settled {
            still.push(flight);
            continue;
        }
        if let Err(e) = ledger
            .end_copy(&flight.source_snapshot_id, &flight.target)
            .await
        {
            tracing::warn!(error = %e, source = flight.source_snapshot_id, "could not end an in-flight record; it expires by itself");
        }
    }
    still
}

/// What the keep rules did to the copies.
#[derive(Debug, Default)]
pub struct Kept {
    /// Deleted (in a dry run: would be).
    pub deleted: Vec<String>,
    /// (copy id, error)
    pub failed: Vec<(String, String)>,
    /// Deletable, not reached: `MAX_DELETIONS` or the deadline.
    pub left_for_later: usize,
}

/// Why [`keep`] deleted nothing at all.
#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    /// Without the AMIs of where the copies are, nothing is deleted there.
    #[error("reading the AMIs, nothing deleted: {0}")]
    Amis(Ec2Error),
    /// The 24-hour budget could not be asked for.
    #[error("the deletion budget, nothing deleted: {0}")]
    Budget(LedgerError),
}

/// How [`keep`] runs.
pub struct Keeping<'a> {
    pub config: &'a Config,
    /// The copies' rules, by the policy their tags name.
    pub policies: &'a Policies,
    /// Made by the deployment, retagged since: never deleted.
    pub held: BTreeSet<String>,
    /// Without the locks, delete nothing (a vault, where the lock is the
    /// point); otherwise go on without them, EC2 refusing a locked one.
    pub locks_required: bool,
    pub now: DateTime<Utc>,
    pub deadline: Deadline,
    pub pacing: Pacing,
}

/// Keep `copies` by their rules, per source volume, under the deletion
/// gate and within the 24-hour `MAX_DELETIONS` budget the stack's runs
/// share. The AMIs and locks of where the copies are protect them; the
/// newest completed copy of a volume is never deleted, so the next copy
/// stays incremental.
pub async fn keep(
    ports: CopyPorts<'_>,
    copies: &[Snapshot],
    keeping: Keeping<'_>,
) -> Result<Kept, KeepError> {
    let mut out = Kept::default();
    if copies.is_empty() {
        return Ok(out);
    }
    let ids: Vec<String> = copies.iter().map(|c| c.id.clone()).collect();
    // Copies are read by no copy in flight (only sources are).
    let read = Protections::read(
        ports.protections,
        ports.ledger,
        Locks::Of(&ids),
        false,
        keeping.now,
    )
    .await;
    let protected = match read.for_deletion(keeping.locks_required) {
        Ok(protected) => protected,
        // Without the AMIs of where the copies are, the run fails there.
        Err(Unread::Amis(e)) => return Err(KeepError::Amis(e)),
        // Unread locks (where required) or holds: nothing deleted this run
        // (the rest of the run goes on).
        Err(unread) => {
            tracing::warn!(error = %unread, "nothing deleted this run");
            return Ok(out);
        }
    };
    let config = keeping.config;
    // Copies in the archive tier: kept whatever their restore state (this
    // path does not read the tier status).
    let restoring = copies
        .iter()
        .filter(|c| c.in_archive_tier())
        .map(|c| c.id.clone())
        .collect();
    let facts = protected.facts(
        config.deployment_name(),
        keeping.held,
        restoring,
        keeping.now,
    );
    // Every copy is judged by its rules whether or not its source volume
    // still exists (the callers' policies set `keep` and `orphans` alike).
    let existing = BTreeSet::new();
    let planning = DeletionGate::new(facts.clone(), copies, config.max_deletions);
    let plans = expiry::plan(copies, keeping.policies, &existing, &planning);
    if !plans
        .iter()
        .flat_map(|p| &p.snapshots)
        .any(|p| p.deletable())
    {
        return Ok(out);
    }
    let mut pacer = Pacer::new(keeping.pacing);
    let deleting = Deleting {
        deleter: ports.deleter,
        ledger: ports.ledger,
        pacer: &mut pacer,
        deadline: keeping.deadline,
        dry_run: config.dry_run,
        max_deletions: config.max_deletions,
        records: Records::Copies,
        now: keeping.now,
    };
    let mut deleter = Deleter::reserve(deleting, facts, copies, &plans, false)
        .await
        .map_err(KeepError::Budget)?;
    for planned in plans.iter().flat_map(|p| p.snapshots.iter().rev()) {
        if !planned.deletable() {
            continue;
        }
        let id = &planned.snapshot.id;
        match deleter.delete(planned).await {
            Deletion::Deleted => out.deleted.push(id.clone()),
            Deletion::Left => out.left_for_later += 1,
            Deletion::Kept(_) => {}
            Deletion::Failed(e) => out.failed.push((id.clone(), e.to_string())),
        }
    }
    deleter.give_back().await;
    Ok(out)
}

/// Source volumes whose copies are labelled together: the plan of one
/// chunk's labels is what [`label`] holds, never every copy's (a vault of
/// 20,000 copies held 11 MB of planned labels at once).
pub(crate) const LABEL_VOLUMES_PER_CHUNK: usize = 200;

/// `lifecycle:retained-by` and `lifecycle:expires-at` on the copies, by
/// their rules; returns how many copies were labelled.
pub async fn label(
    tagger: &dyn SnapshotTagger,
    deployment: &str,
    policies: &Policies,
    copies: &[Snapshot],
    now: DateTime<Utc>,
    deadline: Deadline,
) -> usize {
    // Each source volume's copies are planned together (their rules are
    // per volume), so chunks of whole volumes plan what the whole would.
    let mut by_volume: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
    for (i, c) in copies.iter().enumerate() {
        by_volume.entry(c.source_volume_id()).or_default().push(i);
    }
    let volumes: Vec<&Vec<usize>> = by_volume.values().collect();
    let mut labelled = 0;
    for chunk in volumes.chunks(LABEL_VOLUMES_PER_CHUNK) {
        let some: Vec<Snapshot> = chunk
            .iter()
            .flat_map(|members| members.iter().map(|&i| copies[i].clone()))
            .collect();
        let plan = tagging::label_copies(deployment, policies, &some, now);
        drop(some);
        for batch in tagging::batches(&plan.changes, TAG_BATCH) {
            if deadline.is_near() {
                return labelled;
            }
            match tagger.tag_snapshots(&batch.snapshot_ids, &batch.tags).await {
                Ok(()) => labelled += batch.snapshot_ids.len(),
                Err(e) => {
                    tracing::warn!(error = %e, "could not label copies; the next run tries again");
                }
            }
        }
    }
    labelled
}

//! vault-snapshots: the stack deployed in a vault account with
//! `VaultForAccounts` (docs/operations.md, "A vault account").
//!
//! Daily, and on every `shareSnapshot` event (a source just shared), one
//! run:
//! 1. **shares**: what the accepted accounts share with the vault
//!    (DescribeSnapshots by owner, restorable by the vault), each read by
//!    `ebs_lifecycle_core::vault::read_share`: EC2's OwnerId and the
//!    Description its maker wrote, never tags (they do not cross
//!    accounts). A share from an account not accepted is never listed; a
//!    forged one (an accepted account's snapshot whose Description is not a
//!    deployment's own), or one of a policy `VAULT_POLICIES` does not name
//!    or a deployment `VAULT_FOR_DEPLOYMENTS` does not, is ignored and
//!    reported once (`ebs_lifecycle_core::vault::admit`);
//!
//! Then 200 source volumes at a time ([`VOLUMES_PER_BATCH`]: the volumes
//! the vault's copies, the shares and the copies in flight name; a run
//! holds one batch's copies, never the vault's), steps 2, 3, 5 and 6; step
//! 4 after the last batch, over every batch's candidates:
//! 2. **prove** the vault's copies (the ledger's records; a copy whose
//!    CopySnapshot answer was lost is found again by its Description);
//! 3. **track** them pending -> completed (tagged, then locked in
//!    compliance mode for `VAULT_LOCK_DAYS`) or failed (`copy-failed` once);
//! 4. **copy** every accepted, completed share not copied yet, oldest first,
//!    one in flight per source volume, at most 20 in flight, within the
//!    24-hour quotas per source volume and per source account (the
//!    latter in the ledger), under the vault's own key, tagged from the
//!    Description;
//! 5. **keep** the copies by `VAULT_POLICIES` (keep rules per source
//!    policy name, per source volume) under every safety rule: a locked
//!    copy is never deleted, nor the newest of a volume;
//! 6. report what a source shared more than a day ago that the vault has
//!    not copied (`copy-failed` once), then label the copies.
//!
//! Nothing the source accounts hold grants them anything here: the vault's
//! copies are the vault account's, under its key, and once locked not even
//! the vault's own roles can delete or unlock them before the lock ends.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::{json, Value};

use ebs_lifecycle::config::{Config, VaultConfig};
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::function::{
    self, ErrorType, Function, Ran, Run as FunctionRun, Summary,
};
use ebs_lifecycle::lambda::metrics::Metric;
use ebs_lifecycle::lambda::run::{self, RunHeader};
use ebs_lifecycle::pacing::Pacer;
pub use ebs_lifecycle::pacing::Pacing;
use ebs_lifecycle::ports::ec2::{
    CopySnapshotRequest, Ec2Error, SnapshotCatalog, SnapshotCopier, SnapshotDeleter,
    SnapshotLocker, SnapshotProtections, SnapshotTagger,
};
use ebs_lifecycle::ports::ledger::{CopyInFlight, Ledger, LedgerError};
use ebs_lifecycle::ports::notifier::Notifier;
use ebs_lifecycle::services::copying::{self, CopyPorts, Keeping};
use ebs_lifecycle::services::ownership;
use ebs_lifecycle::services::resume::{Progress, Walk};
use ebs_lifecycle_core::copies::{self, Candidate, Source};
use ebs_lifecycle_core::events::{EventError, Trigger};
use ebs_lifecycle_core::model::{Snapshot, SnapshotState};
use ebs_lifecycle_core::notify::{Notification, NotificationKind, Severity};
use ebs_lifecycle_core::ownership::Scope;
use ebs_lifecycle_core::tags;
use ebs_lifecycle_core::vault::{self, Share};

pub const FUNCTION: &str = "vault-snapshots";

/// CopySnapshot and DeleteSnapshot draw on the mutating-action bucket
/// (the edge's one table of paces, `ebs_lifecycle::pacing`).
pub const COPY_PACING: Pacing = ebs_lifecycle::pacing::COPY_SNAPSHOT;
pub const DELETE_PACING: Pacing = ebs_lifecycle::pacing::DELETE_SNAPSHOT;

/// Source volumes whose copies a run holds at once.
pub const VOLUMES_PER_BATCH: usize = ebs_lifecycle::pacing::VOLUMES_PER_BATCH;
/// What the batches leave of the run for starting the chosen copies.
pub const START_RESERVE: std::time::Duration = std::time::Duration::from_secs(60);

/// A share not copied this long after its source snapshot started is
/// reported (`copy-failed`, once).
pub(crate) const LATE_AFTER: chrono::Duration = chrono::Duration::hours(24);

#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub catalog: &'a dyn SnapshotCatalog,
    pub protections: &'a dyn SnapshotProtections,
    pub copier: &'a dyn SnapshotCopier,
    pub deleter: &'a dyn SnapshotDeleter,
    pub tagger: &'a dyn SnapshotTagger,
    pub locker: &'a dyn SnapshotLocker,
    pub notifier: &'a dyn Notifier,
    pub ledger: &'a dyn Ledger,
    pub copy_pacing: Pacing,
    pub delete_pacing: Pacing,
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("rejected event: {0}")]
    InvalidEvent(#[from] EventError),
    #[error("could not list the shares or the vault's copies, nothing done: {0}")]
    Ec2Unavailable(Ec2Error),
    #[error("could not use the stack's ledger, nothing done: {0}")]
    LedgerUnavailable(#[from] LedgerError),
    /// The copies' facts (AMIs) could not be read: nothing deleted.
    #[error("could not keep the copies by the vault's rules: {0}")]
    KeepFailed(String),
}

impl ErrorType for VaultError {
    fn error_type(&self) -> &'static str {
        match self {
            VaultError::InvalidEvent(_) => "InvalidEvent",
            VaultError::Ec2Unavailable(_) => "Ec2Unavailable",
            VaultError::LedgerUnavailable(_) => "LedgerUnavailable",
            VaultError::KeepFailed(_) => "KeepFailed",
        }
    }
}

impl From<VaultError> for Diagnostic {
    fn from(error: VaultError) -> Self {
        function::diagnostic(&error)
    }
}

/// A share the vault did not take, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    pub snapshot_id: String,
    pub owner: Option<String>,
    pub why: vault::Refusal,
    #[serde(skip)]
    pub first_report: bool,
}

/// A vault copy that failed, or that EC2 refused to start.
pub use ebs_lifecycle::services::copying::CopyFailure as Failed;

#[derive(Debug, Clone, Default, Serialize)]
pub struct VaultSummary {
    #[serde(flatten)]
    pub header: RunHeader,
    /// False on a stack that is not a vault (`VAULT_FOR_ACCOUNTS` empty).
    pub vault: bool,
    pub dry_run: bool,
    /// Shares from accepted accounts, and those refused.
    pub shares: usize,
    pub refused: Vec<Refused>,
    /// The vault's copies (proven).
    pub copies: usize,
    pub started: Vec<String>,
    pub completed: Vec<String>,
    pub locked: Vec<String>,
    pub failed: Vec<Failed>,
    pub adopted: Vec<String>,
    pub unknown: Vec<String>,
    pub waiting: usize,
    /// Source volumes whose next share waits for their 24-hour quota
    /// (`VAULT_MAX_COPIES_PER_VOLUME_PER_DAY`).
    pub over_daily_quota: usize,
    /// Shares that wait for their account's 24-hour quota
    /// (`VAULT_MAX_COPIES_PER_ACCOUNT_PER_DAY`).
    pub over_account_quota: usize,
    pub deleted: Vec<String>,
    pub delete_failed: Vec<String>,
    pub left_for_later: usize,
    /// Shares older than a day and not copied.
    pub late: Vec<String>,
    #[serde(skip)]
    pub late_first: Vec<String>,
    pub labelled: usize,
    #[serde(flatten)]
    pub progress: Progress,
    /// Source volumes this run did not reach.
    pub volumes_not_reached: usize,
}

/// Whether an invocation starts a run of the vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultTrigger {
    /// The schedule, a share from an accepted account (or one whose
    /// account cannot be read: it reconciles, as the schedule does).
    Run,
    /// Not a vault stack, an event that is not a share, or a share from an
    /// account this vault does not accept: the header says which.
    NotActedOn,
}

/// vault-snapshots, as the skeleton runs it ([`Function`]).
pub struct VaultSnapshots;

impl Function for VaultSnapshots {
    const NAME: &'static str = FUNCTION;
    type Ports<'p> = Ports<'p>;
    type Trigger = VaultTrigger;
    type Summary = VaultSummary;
    type Error = VaultError;

    fn ledger<'p>(ports: &Self::Ports<'p>) -> &'p dyn Ledger {
        ports.ledger
    }

    fn notifier<'p>(ports: &Self::Ports<'p>) -> &'p dyn Notifier {
        ports.notifier
    }

    fn open(
        run: &FunctionRun<'_>,
        event: &Value,
    ) -> Result<(VaultTrigger, VaultSummary), VaultError> {
        let config = run.config;
        let trigger = Trigger::parse(event)?;
        let mut summary = VaultSummary {
            header: RunHeader::new(FUNCTION, config, run.now, trigger.label()),
            dry_run: config.dry_run,
            ..VaultSummary::default()
        };
        if let Trigger::Ignored { event, .. } = &trigger {
            summary.header.event = Some(event.clone());
            if event != "shareSnapshot" {
                return Ok((VaultTrigger::NotActedOn, summary));
            }
        }
        let Some(settings) = &config.vault else {
            tracing::info!("vault-snapshots: not a vault stack (VAULT_FOR_ACCOUNTS is empty)");
            return Ok((VaultTrigger::NotActedOn, summary));
        };
        // Any account can share a snapshot with the vault, and each share is
        // an event: one from an account the vault does not accept starts no
        // run (its shares would be refused anyway). One whose account
        // cannot be read reconciles, as the schedule does.
        if summary.header.event.as_deref() == Some("shareSnapshot") {
            if let Some(source) = vault::share_source(event) {
                if !settings.for_accounts.contains(&source) {
                    tracing::info!(source = %source, "a share from an account this vault does not accept: no run");
                    summary.header.event =
                        Some(format!("shareSnapshot from {source}, not accepted"));
                    return Ok((VaultTrigger::NotActedOn, summary));
                }
            }
        }
        summary.vault = true;
        Ok((VaultTrigger::Run, summary))
    }

    async fn execute(
        ports: Self::Ports<'_>,
        run: &FunctionRun<'_>,
        trigger: VaultTrigger,
        summary: &mut VaultSummary,
    ) -> Result<Ran, VaultError> {
        let config = run.config;
        let (VaultTrigger::Run, Some(settings)) = (trigger, &config.vault) else {
            return Ok(Ran::Nothing);
        };
        let vault = Run {
            ports,
            config,
            settings,
            target: vault::target_name(&config.identity),
            now: run.now,
            deadline: run.deadline,
        };
        vault.go(summary).await?;
        Ok(Ran::done())
    }

    async fn notifications(
        _ports: Self::Ports<'_>,
        run: &FunctionRun<'_>,
        summary: &mut VaultSummary,
    ) -> Vec<Notification> {
        notifications(run.config, summary)
    }

    /// What the run recorded as reported (failures, refusals, late shares)
    /// is sent before the error ends it: a record with no message would
    /// silence it for good.
    async fn failing(ports: Self::Ports<'_>, run: &FunctionRun<'_>, summary: &mut VaultSummary) {
        let notifications = notifications(run.config, summary);
        run::publish(ports.notifier, &notifications, &mut summary.header).await;
    }
}

/// Handle one invocation: the schedule or a share.
pub async fn handle(
    ports: Ports<'_>,
    config: &Config,
    event: &Value,
    now: DateTime<Utc>,
    deadline: Deadline,
) -> Result<VaultSummary, VaultError> {
    function::invoke::<VaultSnapshots>(ports, config, event, now, deadline).await
}

struct Run<'a> {
    ports: Ports<'a>,
    config: &'a Config,
    settings: &'a VaultConfig,
    /// `<vault account>/<region>`: `lifecycle:target` of the copies.
    target: String,
    now: DateTime<Utc>,
    deadline: Deadline,
}

impl Run<'_> {
    async fn go(&self, summary: &mut VaultSummary) -> Result<(), VaultError> {
        let ledger = self.ports.ledger;
        let shares = self.shares(summary).await?;
        summary.shares = shares.len();
        let in_flight: Vec<CopyInFlight> = ledger
            .copies_in_flight()
            .await?
            .into_iter()
            .filter(|c| c.target == self.target)
            .collect();
        // Every source volume the vault knows of: its copies', the shares',
        // the copies in flight's. Worked through [`VOLUMES_PER_BATCH`] at a
        // time: a run holds one batch's copies, never the vault's.
        let mut by_volume: BTreeMap<&str, Vec<&Share>> = BTreeMap::new();
        for share in &shares {
            by_volume.entry(&share.volume_id).or_default().push(share);
        }
        let mut volumes: BTreeSet<String> = self
            .ports
            .catalog
            .managed_volume_ids(self.config.deployment_name())
            .await
            .map_err(VaultError::Ec2Unavailable)?;
        volumes.extend(by_volume.keys().map(|v| v.to_string()));
        volumes.extend(in_flight.iter().map(|f| f.volume_id.clone()));
        let volumes: Vec<String> = volumes.into_iter().collect();
        // A run its deadline stopped resumes where it stopped, wrapping
        // round: every copy is kept and labelled within a few runs at any
        // size. The batches leave time for the chosen copies to start.
        let mut walk = Walk::start(ledger, FUNCTION, volumes).await;
        let batches_deadline = self.deadline.reserving(START_RESERVE);

        let mut candidates: Vec<(Source, &Share)> = Vec::new();
        let mut pending = 0;
        while let Some(batch) = walk.next_batch(&batches_deadline) {
            let in_batch: BTreeSet<&str> = batch.iter().map(String::as_str).collect();
            let shares: Vec<&Share> = batch
                .iter()
                .filter_map(|v| by_volume.get(v.as_str()))
                .flatten()
                .copied()
                .collect();
            let in_flight: Vec<CopyInFlight> = in_flight
                .iter()
                .filter(|f| in_batch.contains(f.volume_id.as_str()))
                .cloned()
                .collect();
            let listed = match self
                .ports
                .catalog
                .managed_snapshots_of_volumes(self.config.deployment_name(), &batch)
                .await
            {
                Ok(listed) => listed,
                // After a batch or more, the run stops here as at its
                // deadline, and starts the copies it chose.
                Err(e) => {
                    walk.failed(e).map_err(VaultError::Ec2Unavailable)?;
                    break;
                }
            };
            let found = self
                .batch(listed, &in_batch, &shares, in_flight, summary)
                .await?;
            candidates.extend(found.candidates);
            pending += found.pending;
        }
        summary.volumes_not_reached = walk.not_reached().len();
        summary.progress = walk.conclude(ledger).await;
        // The 20 copies in flight go to the oldest shares of the whole
        // vault, not of the first batches.
        let chosen = self.plan(candidates, pending, summary);
        self.start(chosen, summary).await
    }

    /// What the accepted accounts share (each read into a `Share` and
    /// EC2's description of it dropped); forged or refused ones reported.
    async fn shares(&self, summary: &mut VaultSummary) -> Result<Vec<Share>, VaultError> {
        let listed = self
            .ports
            .catalog
            .shared_with_me(&self.settings.for_accounts)
            .await
            .map_err(VaultError::Ec2Unavailable)?;
        let mut shares: Vec<Share> = Vec::new();
        let mut refused: Vec<Refused> = Vec::new();
        for s in listed {
            let s = &s;
            let read =
                vault::read_share(s, &self.config.identity.region, &self.settings.for_accounts)
                    .and_then(|share| {
                        vault::admit(
                            &share,
                            &self.settings.policies,
                            &self.settings.for_deployments,
                        )
                        .map(|()| share)
                    });
            match read {
                Ok(share) => shares.push(share),
                Err(why) => refused.push(Refused {
                    snapshot_id: s.id.clone(),
                    owner: s.owner_id.clone(),
                    why,
                    first_report: false,
                }),
            }
        }
        // Each refusal is reported once: one batch read for those seen
        // before, a write only for a new one (a source sharing the same
        // refused snapshots every day costs reads, not writes).
        let keys: Vec<String> = refused
            .iter()
            .map(|r| format!("share/{}", r.snapshot_id))
            .collect();
        let new: BTreeSet<String> =
            ownership::not_reported_before(self.ports.ledger, keys.iter().cloned(), self.now)
                .await
                .into_iter()
                .collect();
        for (r, key) in refused.iter_mut().zip(&keys) {
            r.first_report = new.contains(key);
        }
        summary.refused.extend(refused);
        Ok(shares)
    }

    /// One batch of source volumes: prove, track, lock, keep and label
    /// their copies, report their late shares; returns the shares that
    /// could be copied now and how many copies of theirs are in flight.
    async fn batch<'s>(
        &self,
        listed: Vec<Snapshot>,
        in_batch: &BTreeSet<&str>,
        shares: &[&'s Share],
        in_flight: Vec<CopyInFlight>,
        summary: &mut VaultSummary,
    ) -> Result<Found<'s>, VaultError> {
        let ledger = self.ports.ledger;
        let (mut copies, held, in_flight) = self
            .proven_copies(listed, in_batch, in_flight, summary)
            .await?;
        let tracked = copying::track(self.ports.tagger, ledger, &mut copies, self.now).await;
        summary.completed.extend(tracked.completed);
        summary.failed.extend(tracked.failed);
        let in_flight = copying::settle(ledger, &copies, in_flight, self.now).await;
        self.lock(&copies, summary).await;
        let found = self.candidates(shares, &copies, &in_flight, summary);
        let kept = copying::keep(
            self.copy_ports(),
            &copies,
            Keeping {
                config: self.config,
                policies: &self.settings.policies,
                held,
                // In a vault the lock is the point: without the locks,
                // nothing is deleted.
                locks_required: true,
                now: self.now,
                deadline: self.deadline,
                pacing: self.ports.delete_pacing,
            },
        )
        .await
        .map_err(|e| VaultError::KeepFailed(e.to_string()))?;
        summary.left_for_later += kept.left_for_later;
        summary
            .delete_failed
            .extend(kept.failed.into_iter().map(|(id, _)| id));
        if !self.config.dry_run {
            let deleted: BTreeSet<&String> = kept.deleted.iter().collect();
            copies.retain(|c| !deleted.contains(&c.id));
        }
        summary.deleted.extend(kept.deleted);

        self.late_shares(shares, &copies, summary).await;
        summary.labelled += copying::label(
            self.ports.tagger,
            self.config.deployment_name(),
            &self.settings.policies,
            &copies,
            self.now,
            self.deadline,
        )
        .await;
        Ok(found)
    }

    /// The vault's copies of a batch's volumes, proven by its ledger (lost
    /// answers resolved first), those held for review, and the copies in
    /// flight still unresolved.
    async fn proven_copies(
        &self,
        listed: Vec<Snapshot>,
        in_batch: &BTreeSet<&str>,
        in_flight: Vec<CopyInFlight>,
        summary: &mut VaultSummary,
    ) -> Result<(Vec<Snapshot>, BTreeSet<String>, Vec<CopyInFlight>), VaultError> {
        let identity = &self.config.identity;
        let ledger = self.ports.ledger;
        // The vault's copies of these volumes, proven by its ledger.
        let own: Vec<Snapshot> = listed
            .into_iter()
            .filter(|s| s.source_volume_id().is_none_or(|v| in_batch.contains(v)))
            .collect();
        let ids: Vec<String> = own.iter().map(|s| s.id.clone()).collect();
        let mut recorded: BTreeSet<String> = if ids.is_empty() {
            BTreeSet::new()
        } else {
            ledger
                .copies(&ids)
                .await?
                .into_iter()
                .map(|r| r.copy_id)
                .collect()
        };
        drop(ids);
        let resolved = copying::resolve_lost_answers(
            ledger,
            identity,
            &own,
            &mut recorded,
            in_flight,
            self.now,
        )
        .await?;
        summary.adopted.extend(resolved.adopted);
        summary.unknown.extend(resolved.unknown);
        let in_flight = resolved.in_flight;
        let sifted =
            ownership::sift(ledger, self.config, own, Scope::SomeSnapshots, self.now).await?;
        let held = sifted.held_for_review();
        let copies: Vec<Snapshot> = sifted.owned;
        summary.copies += copies.len();

        Ok((copies, held, in_flight))
    }

    /// Shares more than a day old the vault has not copied: listed, and
    /// each reported once (the ledger remembers).
    async fn late_shares(
        &self,
        shares: &[&Share],
        copies: &[Snapshot],
        summary: &mut VaultSummary,
    ) {
        let ledger = self.ports.ledger;
        // Shared more than a day ago and still not copied (older than
        // what the vault copied of its volume, it was copied and let go).
        let marks = watermarks(copies);
        let copied: BTreeSet<&str> = copies
            .iter()
            .filter(|c| c.state == SnapshotState::Completed)
            .filter_map(|c| c.copy_of())
            .collect();
        let late: Vec<&str> = shares
            .iter()
            .filter(|share| {
                share.completed
                    && newer_than_copied(share, &marks)
                    && self.now - share.start_time > LATE_AFTER
                    && !copied.contains(share.snapshot_id.as_str())
            })
            .map(|share| share.snapshot_id.as_str())
            .collect();
        let keys: Vec<String> = late.iter().map(|id| format!("late/{id}")).collect();
        let new: BTreeSet<String> =
            ownership::not_reported_before(ledger, keys.iter().cloned(), self.now)
                .await
                .into_iter()
                .collect();
        for (id, key) in late.into_iter().zip(&keys) {
            summary.late.push(id.to_string());
            if new.contains(key) {
                summary.late_first.push(id.to_string());
            }
        }
    }

    fn copy_ports(&self) -> CopyPorts<'_> {
        CopyPorts {
            protections: self.ports.protections,
            copier: self.ports.copier,
            deleter: self.ports.deleter,
            tagger: self.ports.tagger,
            ledger: self.ports.ledger,
        }
    }

    /// Lock every completed copy not locked yet (compliance mode, no
    /// cooling-off): from then on nobody can delete it or shorten the lock.
    async fn lock(&self, copies: &[Snapshot], summary: &mut VaultSummary) {
        let days = self.settings.lock_days;
        if days == 0 {
            return;
        }
        let completed: Vec<String> = copies
            .iter()
            .filter(|c| c.state == SnapshotState::Completed)
            .map(|c| c.id.clone())
            .collect();
        if completed.is_empty() {
            return;
        }
        let locked = match self.ports.protections.locked_snapshot_ids(&completed).await {
            Ok(locked) => locked,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the locks; the next run locks what is not");
                return;
            }
        };
        // Locked for `days` from completion: a copy whose lock ended is not
        // locked again (its rules may then let it go), one whose lock failed
        // is locked for what is left of its days. Completion is the later of
        // EC2's StartTime and the `completed-at` label (never after now): a
        // tag may only lengthen the lock (up to `days` from now), never
        // shorten it below `days` from the start or stop a copy being
        // locked by being removed or moved into the past.
        let done: BTreeMap<&str, DateTime<Utc>> = copies
            .iter()
            .filter_map(|c| {
                let start = c.start_time?;
                let labelled = c
                    .tags
                    .get(tags::COMPLETED_AT)
                    .and_then(|v| tags::parse_time(v))
                    .map(|t| t.min(self.now));
                Some((c.id.as_str(), labelled.map_or(start, |t| t.max(start))))
            })
            .collect();
        for id in completed.iter().filter(|id| !locked.contains(*id)) {
            let done = done.get(id.as_str()).copied().unwrap_or(self.now);
            let left = chrono::Duration::days(i64::from(days)) - (self.now - done);
            if left <= chrono::Duration::zero() {
                continue;
            }
            let left_days = u32::try_from(left.num_days() + 1).unwrap_or(days).min(days);
            match self.ports.locker.lock_snapshot(id, left_days).await {
                Ok(()) => summary.locked.push(id.clone()),
                Err(e) => {
                    tracing::warn!(snapshot_id = id, error = %e, "could not lock a vault copy; the next run tries again");
                }
            }
        }
    }

    /// Of one batch's shares, every accepted, completed one not copied
    /// yet: per source volume the oldest, none for a volume with a copy in
    /// flight; and how many of the batch's copies are in flight.
    fn candidates<'s>(
        &self,
        shares: &[&'s Share],
        copies: &[Snapshot],
        in_flight: &[CopyInFlight],
        summary: &mut VaultSummary,
    ) -> Found<'s> {
        let copied: BTreeSet<&str> = copies
            .iter()
            .filter(|c| c.state != SnapshotState::Error)
            .filter_map(|c| c.copy_of())
            .collect();
        let mut busy: BTreeSet<&str> = in_flight.iter().map(|f| f.volume_id.as_str()).collect();
        busy.extend(
            copies
                .iter()
                .filter(|c| c.state == SnapshotState::Pending)
                .filter_map(|c| c.source_volume_id()),
        );
        let marks = watermarks(copies);
        // What each source volume had copied in the last 24 hours (copies
        // in flight count as started now): a source account, even
        // compromised, makes the vault copy at most so many a day.
        let mut started: BTreeMap<&str, Vec<DateTime<Utc>>> = BTreeMap::new();
        // Failed copies count too: a source that makes copies fail (a key
        // grant taken back) must not make the vault retry without bound.
        for c in copies {
            if let (Some(v), Some(t)) = (c.source_volume_id(), c.start_time) {
                started.entry(v).or_default().push(t);
            }
        }
        for f in in_flight.iter().filter(|f| f.copy_id.is_none()) {
            started
                .entry(f.volume_id.as_str())
                .or_default()
                .push(self.now);
        }
        let max = self.settings.max_copies_per_volume_per_day;
        let full: BTreeSet<&str> = started
            .into_iter()
            .filter(|(_, times)| !vault::volume_has_room(times.iter().copied(), self.now, max))
            .map(|(v, _)| v)
            .collect();
        let mut oldest: BTreeMap<&str, &Share> = BTreeMap::new();
        for &share in shares {
            if !share.completed
                || !newer_than_copied(share, &marks)
                || copied.contains(share.snapshot_id.as_str())
                || in_flight
                    .iter()
                    .any(|f| f.source_snapshot_id == share.snapshot_id)
            {
                continue;
            }
            let entry = oldest.entry(share.volume_id.as_str()).or_insert(share);
            if (share.start_time, &share.snapshot_id) < (entry.start_time, &entry.snapshot_id) {
                *entry = share;
            }
        }
        summary.waiting += oldest.keys().filter(|v| busy.contains(*v)).count();
        summary.over_daily_quota += oldest
            .keys()
            .filter(|v| !busy.contains(*v) && full.contains(*v))
            .count();
        let candidates = oldest
            .into_iter()
            .filter(|(v, _)| !busy.contains(v) && !full.contains(v))
            .map(|(_, s)| {
                (
                    Source {
                        id: s.snapshot_id.clone(),
                        time: s.start_time,
                    },
                    s,
                )
            })
            .collect();
        let pending = copies
            .iter()
            .filter(|c| c.state == SnapshotState::Pending)
            .count()
            + in_flight.iter().filter(|f| f.copy_id.is_none()).count();
        Found {
            candidates,
            pending,
        }
    }

    /// The oldest candidates of the whole vault within the 20 copies in
    /// flight (`pending` of them already), oldest first.
    fn plan<'s>(
        &self,
        sources: Vec<(Source, &'s Share)>,
        pending: usize,
        summary: &mut VaultSummary,
    ) -> Vec<&'s Share> {
        let candidates: Vec<Candidate> = sources
            .iter()
            .map(|(source, share)| Candidate {
                volume_id: &share.volume_id,
                source,
            })
            .collect();
        let planned: BTreeSet<&str> = copies::plan(candidates, pending)
            .into_iter()
            .map(|c| c.source.id.as_str())
            .collect();
        summary.waiting += sources.len() - planned.len();
        let mut out: Vec<&Share> = sources
            .iter()
            .filter(|(s, _)| planned.contains(s.id.as_str()))
            .map(|(_, share)| *share)
            .collect();
        out.sort_by_key(|s| (s.start_time, s.snapshot_id.clone()));
        out
    }

    async fn start(
        &self,
        chosen: Vec<&Share>,
        summary: &mut VaultSummary,
    ) -> Result<(), VaultError> {
        let mut pacer = Pacer::new(self.ports.copy_pacing);
        // Each source account's part of its 24-hour quota, from the
        // ledger, before any copy of it starts (a dry run asks nothing).
        let mut wanted: BTreeMap<&str, u32> = BTreeMap::new();
        for share in &chosen {
            *wanted.entry(share.account.as_str()).or_default() += 1;
        }
        let mut granted: BTreeMap<&str, u32> = BTreeMap::new();
        let mut used: BTreeMap<&str, u32> = BTreeMap::new();
        for (&account, &n) in &wanted {
            let grant = if self.config.dry_run {
                Ok(n)
            } else {
                self.ports
                    .ledger
                    .reserve_copies(
                        account,
                        self.now,
                        n,
                        self.settings.max_copies_per_account_per_day,
                    )
                    .await
            };
            match grant {
                Ok(grant) => {
                    granted.insert(account, grant);
                }
                Err(e) => {
                    self.give_back(&granted, &used).await;
                    return Err(e.into());
                }
            }
        }
        let result = self
            .start_granted(chosen, &granted, &mut used, &mut pacer, summary)
            .await;
        self.give_back(&granted, &used).await;
        result
    }

    /// Give back to each account's 24-hour quota what was granted and not
    /// asked of EC2 (a dry run asked the ledger nothing).
    async fn give_back(&self, granted: &BTreeMap<&str, u32>, used: &BTreeMap<&str, u32>) {
        if self.config.dry_run {
            return;
        }
        for (&account, &grant) in granted {
            let unused = grant.saturating_sub(used.get(account).copied().unwrap_or(0));
            if let Err(e) = self
                .ports
                .ledger
                .release_copies(account, self.now, self.now, unused)
                .await
            {
                tracing::warn!(account, error = %e, "could not give back the unused copies; they count against the next 24 hours");
            }
        }
    }

    /// Start the chosen copies within each account's grant; `used` counts
    /// the asks that may have made a copy (started, or an answer lost).
    async fn start_granted<'c>(
        &self,
        chosen: Vec<&'c Share>,
        granted: &BTreeMap<&str, u32>,
        used: &mut BTreeMap<&'c str, u32>,
        pacer: &mut Pacer,
        summary: &mut VaultSummary,
    ) -> Result<(), VaultError> {
        let identity = &self.config.identity;
        let mut stopped = false;
        for share in chosen {
            if stopped || self.deadline.is_near() {
                summary.waiting += 1;
                continue;
            }
            let account = share.account.as_str();
            let spent = used.get(account).copied().unwrap_or(0);
            if spent >= granted.get(account).copied().unwrap_or(0) {
                summary.over_account_quota += 1;
                continue;
            }
            let flight = CopyInFlight {
                source_snapshot_id: share.snapshot_id.clone(),
                target: self.target.clone(),
                volume_id: share.volume_id.clone(),
                policy: share.policy.clone(),
                slot: share.slot,
                created_at: share.start_time,
                asked_at: self.now,
                copy_id: None,
            };
            let request = CopySnapshotRequest {
                source_snapshot_id: share.snapshot_id.clone(),
                source_region: Some(identity.region.clone()),
                kms_key_id: Some(self.settings.kms_key_id.clone()),
                description: identity.copy(&identity.region, &share.snapshot_id),
                tags: vault::copy_tags(share, identity),
            };
            match copying::start(self.copy_ports(), flight, &request, pacer, self.now).await? {
                copying::Started::Copy(copy_id) => {
                    *used.entry(account).or_default() += 1;
                    summary.started.push(copy_id);
                }
                copying::Started::Wait => {
                    summary.waiting += 1;
                    stopped = true;
                }
                copying::Started::SourceGone => {}
                copying::Started::Unknown => {
                    *used.entry(account).or_default() += 1;
                    summary.unknown.push(share.snapshot_id.clone());
                }
                copying::Started::Refused { failure, stop } => {
                    stopped = stop;
                    summary.failed.push(failure);
                }
            }
        }
        Ok(())
    }
}

/// What one batch offers the run's copying.
struct Found<'s> {
    /// Per source volume not busy, its oldest share not copied yet.
    candidates: Vec<(Source, &'s Share)>,
    /// The batch's copies in flight.
    pending: usize,
}

/// Per source volume, the source time of the vault's newest copy (done or
/// in progress). The vault copies in order, oldest first, and never goes
/// back: a share older than this was copied and let go by the vault's
/// rules (the newest copy is never deleted, so the mark stays).
fn watermarks(copies: &[Snapshot]) -> BTreeMap<String, DateTime<Utc>> {
    let mut marks: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for c in copies.iter().filter(|c| c.state != SnapshotState::Error) {
        if let (Some(volume), Some(time)) = (c.source_volume_id(), c.retention_time()) {
            let mark = marks.entry(volume.to_string()).or_insert(time);
            if time > *mark {
                *mark = time;
            }
        }
    }
    marks
}

fn newer_than_copied(share: &Share, marks: &BTreeMap<String, DateTime<Utc>>) -> bool {
    marks
        .get(&share.volume_id)
        .is_none_or(|mark| share.start_time > *mark)
}

impl Summary for VaultSummary {
    fn header(&mut self) -> &mut RunHeader {
        &mut self.header
    }

    fn headline(&self) -> String {
        headline(self)
    }

    fn metrics(&self, _suspects: usize) -> Vec<(Metric, u64)> {
        vec![
            (
                Metric::CrossRegionCopyCompleted,
                self.completed.len() as u64,
            ),
            (Metric::CrossRegionCopyFailed, self.failed.len() as u64),
            (
                Metric::SnapshotsDeleteCompleted,
                if self.dry_run {
                    0
                } else {
                    self.deleted.len() as u64
                },
            ),
            (
                Metric::SnapshotsDeleteFailed,
                self.delete_failed.len() as u64,
            ),
        ]
    }
}

fn headline(s: &VaultSummary) -> String {
    format!(
        "vault-snapshots: {} shares, {} copies; started {}, completed {}, locked {}, failed {}, deleted {}, refused {}, late {}",
        s.shares,
        s.copies,
        s.started.len(),
        s.completed.len(),
        s.locked.len(),
        s.failed.len(),
        s.deleted.len(),
        s.refused.len(),
        s.late.len()
    )
}

/// Failures, late shares and refusals listed in one notification of each
/// kind, at most.
pub const LISTED: usize = 20;

/// What the run tells people: failed vault copies, shares not copied
/// within a day (`copy-failed`, each reported once), refused shares
/// (`tampering-suspected`, each once), a warning when deletions failed:
/// at most four notifications a run.
pub fn notifications(config: &Config, s: &VaultSummary) -> Vec<Notification> {
    let mut out = Vec::new();
    let notify = |kind, severity, summary: String, details: Value| Notification {
        kind,
        severity,
        deployment: config.deployment_name().to_string(),
        summary,
        details,
    };
    // One message a kind a run, whatever a source shares: the first
    // LISTED of each are in it, the rest counted (all are in the summary).
    let failed: Vec<&Failed> = s.failed.iter().filter(|f| f.first_report).collect();
    if let Some(first) = failed.first() {
        out.push(notify(
            NotificationKind::CopyFailed,
            Severity::Warning,
            match failed.len() {
                1 => format!(
                    "vault copy of {} failed: {}",
                    first.source_snapshot_id, first.error_kind
                ),
                n => format!("{n} vault copies failed"),
            },
            json!({"failed": &failed[..failed.len().min(LISTED)], "failed_omitted": failed.len().saturating_sub(LISTED)}),
        ));
    }
    if let Some(first) = s.late_first.first() {
        let n = s.late_first.len();
        out.push(notify(
            NotificationKind::CopyFailed,
            Severity::Warning,
            match n {
                1 => format!("{first} was shared with the vault more than a day ago and is not copied"),
                n => format!("{n} snapshots were shared with the vault more than a day ago and are not copied"),
            },
            json!({"source_snapshot_ids": &s.late_first[..n.min(LISTED)], "omitted": n.saturating_sub(LISTED), "error_kind": "not-copied-within-a-day"}),
        ));
    }
    let refused: Vec<&Refused> = s.refused.iter().filter(|r| r.first_report).collect();
    if let Some(first) = refused.first() {
        out.push(notify(
            NotificationKind::TamperingSuspected,
            Severity::Warning,
            match refused.len() {
                1 => format!(
                    "a snapshot shared with the vault is ignored: {} ({})",
                    first.snapshot_id,
                    first.why.kind()
                ),
                n => format!("{n} snapshots shared with the vault are ignored"),
            },
            json!({"refused": &refused[..refused.len().min(LISTED)], "refused_omitted": refused.len().saturating_sub(LISTED)}),
        ));
    }
    if !s.delete_failed.is_empty() {
        out.push(notify(
            NotificationKind::RunSummary,
            Severity::Warning,
            headline(s),
            json!(s),
        ));
    }
    out
}

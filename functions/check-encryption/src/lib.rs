//! check-encryption: no snapshot unencrypted, wrongly keyed, public or
//! over-shared by accident.
//!
//! Two triggers:
//! - **a daily tick**: every snapshot the account owns (managed or not), the
//!   opted-in volumes, and the region's settings (EBS encryption by default,
//!   snapshot block public access). The snapshots are read a page (1,000)
//!   at a time, twice: first only what could be shared (ids) and the
//!   deployment's encrypted copies, then each page is judged and its
//!   remedies carried out; a run never holds the account's snapshots. One
//!   `encryption-findings` notification counts every finding by kind and
//!   lists the first [`FINDINGS_LISTED`] (every finding is logged); the
//!   metrics `UnencryptedSnapshots` and `PublicSnapshots` count them.
//! - **completion events**: only the snapshots that just completed, so a
//!   finding already in yesterday's summary is not alerted again on every
//!   completion; a notification goes out only if they have findings.
//!
//! Permissions (who may create volumes from a snapshot) cost one call per
//! snapshot, so they are read only for snapshots that could be shared at all:
//! EC2 refuses to share a snapshot encrypted with the AWS managed key.
//! The judgement is pure ([`ebs_lifecycle_core::encryption`]); this handler
//! gathers the facts and carries out what `REMEDIATE` allows.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};

use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::function::{self, Function, Ran, Run as FunctionRun, Summary};
use ebs_lifecycle::lambda::invocation;
use ebs_lifecycle::lambda::metrics::Metric;
use ebs_lifecycle::lambda::run::RunHeader;
use ebs_lifecycle::ports::ec2::{
    AccountSettings, CopySnapshotRequest, Ec2Error, SnapshotCatalog, SnapshotCopier,
    SnapshotSharing, VolumeInventory,
};
use ebs_lifecycle::ports::keys::KeyDirectory;
use ebs_lifecycle::ports::ledger::Ledger;
use ebs_lifecycle::ports::notifier::Notifier;
use ebs_lifecycle::services::{due, ownership};
use ebs_lifecycle_core::encryption::{
    self, AllowedKeys, Checked, Copies, Finding, FindingKind, Fix, Permissions, Remedy, Rules,
};
use ebs_lifecycle_core::events::{self, Trigger};
use ebs_lifecycle_core::model::{Snapshot, Tags, Volume};
use ebs_lifecycle_core::notify::{DailyMemo, Notification, NotificationKind, Severity};
use ebs_lifecycle_core::ownership::Scope;
use ebs_lifecycle_core::ownership::{CopyRecord, Suspect};
use ebs_lifecycle_core::tags;
use ebs_lifecycle_core::targets::Target;

pub const FUNCTION: &str = "check-encryption";

/// The alias of the AWS managed EBS key.
pub(crate) const AWS_MANAGED_EBS_KEY: &str = "alias/aws/ebs";

/// Permission reads in flight at once (DescribeSnapshotAttribute is a
/// Describe* call: 20/s refill; the SDK retries the odd throttle).
pub const PERMISSION_READS: usize = 8;

#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub catalog: &'a dyn SnapshotCatalog,
    pub inventory: &'a dyn VolumeInventory,
    pub sharing: &'a dyn SnapshotSharing,
    pub settings: &'a dyn AccountSettings,
    pub copier: &'a dyn SnapshotCopier,
    pub keys: &'a dyn KeyDirectory,
    pub notifier: &'a dyn Notifier,
    /// The stack's own record: the copies it made.
    pub ledger: &'a dyn Ledger,
    /// What this execution environment notified in the last day: a finding that
    /// repeats (every new snapshot of the same unencrypted volume) is
    /// notified once a day; the daily run reports everything.
    pub memo: &'a DailyMemo,
}

/// How an invocation fails (stable `errorType`s), shared by the
/// event-driven functions.
pub use ebs_lifecycle::lambda::invocation::InvocationError;

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    #[serde(flatten)]
    pub header: RunHeader,
    pub remediate: &'static str,
    pub snapshots_checked: usize,
    /// Snapshots whose permissions were read (the others cannot be shared).
    pub permissions_read: usize,
    /// Snapshots whose permissions were not read because the deadline came near.
    pub left_for_later: usize,
    /// The first 200 findings ([`FINDINGS_LISTED`]; every one is logged).
    pub findings: Vec<Finding>,
    pub findings_total: usize,
    /// Findings per kind, whole.
    pub by_kind: BTreeMap<String, usize>,
    /// The worst finding's severity.
    #[serde(skip)]
    pub worst: Option<Severity>,
    #[serde(skip)]
    pub unencrypted: u64,
    #[serde(skip)]
    pub public: u64,
    /// Encrypted copies started by this run.
    pub copies_started: Vec<String>,
    /// Event runs: findings not notified because the same condition was
    /// notified in the last 24 hours (they are in this summary and the log).
    #[serde(skip_serializing_if = "is_zero")]
    pub repeats_not_notified: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Findings listed in the summary and the notification, at most (the
/// counts per kind are whole; every finding is logged, a line each).
pub(crate) const FINDINGS_LISTED: usize = 200;

/// check-encryption, as the skeleton runs it ([`Function`]).
pub struct CheckEncryption;

impl Function for CheckEncryption {
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
        let (trigger, mut summary) = invocation::open_trigger::<RunSummary>(FUNCTION, run, event)?;
        summary.remediate = run.config.remediate.as_str();
        Ok((trigger, summary))
    }

    async fn execute(
        ports: Self::Ports<'_>,
        run: &FunctionRun<'_>,
        trigger: Trigger,
        summary: &mut RunSummary,
    ) -> Result<Ran, InvocationError> {
        let (config, now, deadline) = (run.config, run.now, run.deadline);
        let suspects = match trigger {
            Trigger::Tick(_) => daily_run(ports, config, now, deadline, summary).await?,
            Trigger::Snapshots { results, .. } => {
                let ids = events::succeeded_ids(&results);
                if ids.is_empty() {
                    return Ok(Ran::Nothing);
                }
                let named = invocation::snapshots_named(ports.catalog, &results, &ids, now).await?;
                summary.header.snapshots_gone = named.gone;
                event_run(ports, config, named.found, now, deadline, summary).await?
            }
            Trigger::Ignored { .. } => return Ok(Ran::Nothing),
        };
        Ok(Ran::Done { suspects })
    }

    async fn notifications(
        ports: Self::Ports<'_>,
        run: &FunctionRun<'_>,
        summary: &mut RunSummary,
    ) -> Vec<Notification> {
        notifications(run.config, summary, ports.memo, run.now)
    }
}

/// Handle one invocation: the daily check or a completion event.
pub async fn handle(
    ports: Ports<'_>,
    config: &Config,
    event: &Value,
    now: DateTime<Utc>,
    deadline: Deadline,
) -> Result<RunSummary, InvocationError> {
    function::invoke::<CheckEncryption>(ports, config, event, now, deadline).await
}

/// The daily run, in two passes over the account's snapshots a page at a
/// time (it never holds them all): the first keeps only the ids of what
/// could be shared and the deployment's encrypted copies; then the
/// permissions are read (from where the last run stopped); the second pass
/// judges each page and carries out its remedies.
async fn daily_run(
    ports: Ports<'_>,
    config: &Config,
    now: DateTime<Utc>,
    deadline: Deadline,
    summary: &mut RunSummary,
) -> Result<Vec<Suspect>, InvocationError> {
    let Keys {
        aws_managed,
        allowed: allowed_keys,
        resolved,
        findings: key_findings,
    } = keys(ports, config).await;
    summary.add(key_findings, ports.memo, true, now);

    let mut shareable: Vec<String> = Vec::new();
    let mut copy_candidates: Vec<Snapshot> = Vec::new();
    let mut pages = ports.catalog.owned_snapshot_pages();
    while let Some(page) = pages.next().await {
        for s in page? {
            if encryption::can_be_shared(&s, aws_managed.as_deref()) {
                shareable.push(s.id.clone());
            }
            if tags::is_managed_by(&s.tags, config.deployment_name())
                && s.encrypted_copy_of().is_some()
            {
                copy_candidates.push(s);
            }
        }
    }
    drop(pages);
    // Only the copies the deployment provably made (their suspects are
    // found again, and reported, in the second pass).
    let (copy_snapshots, _) = sift(ports, config, copy_candidates, now).await?;
    let copies_listed: Vec<Snapshot> = copy_snapshots
        .into_iter()
        .filter(|s| tags::is_managed_by(&s.tags, config.deployment_name()))
        .filter(|s| s.encrypted_copy_of().is_some())
        .collect();
    let mut copies = Copies::new(&copies_listed);
    drop(copies_listed);

    // The run goes on where the last one stopped.
    let cursor = ports.ledger.cursor(FUNCTION).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not read where the last run stopped; reading from the start");
        None
    });
    let mut unread = Vec::new();
    let (permissions, next) = read_permissions(
        ports,
        shareable.iter().map(String::as_str).collect(),
        cursor.as_deref(),
        deadline,
        summary,
        &mut unread,
    )
    .await;
    drop(shareable);
    summary.add(unread, ports.memo, true, now);
    if let Some(next) = next {
        if let Err(e) = ports.ledger.set_cursor(FUNCTION, next.as_deref()).await {
            tracing::warn!(error = %e, "could not record where this run stopped; the next run starts from the start");
        }
    }
    let rules = Rules {
        deployment: config.deployment_name(),
        remediate: config.remediate,
        allowed_keys: &allowed_keys,
        resolved_aliases: &resolved,
        allowed_accounts: &config.allowed_share_accounts,
    };
    let mut suspects = Vec::new();
    let mut pages = ports.catalog.owned_snapshot_pages();
    while let Some(page) = pages.next().await {
        let page = page?;
        summary.snapshots_checked += page.len();
        let (page, page_suspects) = sift(ports, config, page, now).await?;
        suspects.extend(page_suspects);
        let (mut findings, remedies) =
            encryption::assess_snapshots(&rules, &page, &permissions, &copies);
        let started = summary.copies_started.len();
        apply(ports, config, remedies, 0, &mut findings, summary).await;
        // Copies started count against the next pages' budget.
        copies.in_flight += summary.copies_started.len() - started;
        summary.add(findings, ports.memo, true, now);
    }
    let wider = volume_and_account_findings(ports, config).await?;
    summary.add(wider, ports.memo, true, now);
    Ok(suspects)
}

/// An event's few snapshots.
async fn event_run(
    ports: Ports<'_>,
    config: &Config,
    snapshots: Vec<Snapshot>,
    now: DateTime<Utc>,
    deadline: Deadline,
    summary: &mut RunSummary,
) -> Result<Vec<Suspect>, InvocationError> {
    summary.snapshots_checked = snapshots.len();
    let (snapshots, suspects) = sift(ports, config, snapshots, now).await?;
    let copies = Copies::new(&copies_of(ports, config, &snapshots, now).await?);
    let Keys {
        aws_managed,
        allowed: allowed_keys,
        resolved,
        mut findings,
    } = keys(ports, config).await;
    let shareable: Vec<&str> = snapshots
        .iter()
        .filter(|s| encryption::can_be_shared(s, aws_managed.as_deref()))
        .map(|s| s.id.as_str())
        .collect();
    let (permissions, _) =
        read_permissions(ports, shareable, None, deadline, summary, &mut findings).await;
    let rules = Rules {
        deployment: config.deployment_name(),
        remediate: config.remediate,
        allowed_keys: &allowed_keys,
        resolved_aliases: &resolved,
        allowed_accounts: &config.allowed_share_accounts,
    };
    let (snapshot_findings, remedies) =
        encryption::assess_snapshots(&rules, &snapshots, &permissions, &copies);
    let offset = findings.len();
    findings.extend(snapshot_findings);
    apply(ports, config, remedies, offset, &mut findings, summary).await;
    summary.add(findings, ports.memo, false, now);
    Ok(suspects)
}

impl RunSummary {
    /// Count, log and (up to [`FINDINGS_LISTED`]) keep findings. A daily
    /// run's findings are remembered as notified as they come (the daily
    /// notification reports them all, by count).
    fn add(&mut self, findings: Vec<Finding>, memo: &DailyMemo, daily: bool, now: DateTime<Utc>) {
        if findings.is_empty() {
            return;
        }
        if daily {
            memo.notified(
                findings
                    .iter()
                    .filter(|f| !f.in_hand())
                    .map(Finding::condition),
                now,
            );
        }
        let (unencrypted, public) = encryption::counts(&findings);
        self.unencrypted += unencrypted;
        self.public += public;
        self.worst = self.worst.max(encryption::worst(&findings));
        for finding in findings {
            tracing::warn!(
                kind = ?finding.kind,
                severity = finding.severity.as_str(),
                snapshot = finding.snapshot_id.as_deref().unwrap_or(""),
                volume = finding.volume_id.as_deref().unwrap_or(""),
                policy = finding.policy.as_deref().unwrap_or(""),
                finding = %json!(finding),
                "{}",
                finding.detail
            );
            *self
                .by_kind
                .entry(json!(finding.kind).as_str().unwrap_or_default().to_string())
                .or_default() += 1;
            self.findings_total += 1;
            if self.findings.len() < FINDINGS_LISTED {
                self.findings.push(finding);
            }
        }
    }
}

/// Every snapshot is checked, but only what the deployment provably made is
/// treated as managed: a suspect loses its lifecycle tags here (in memory),
/// so it is judged as any snapshot of the account and never copied or
/// linked as one of ours.
async fn sift(
    ports: Ports<'_>,
    config: &Config,
    snapshots: Vec<Snapshot>,
    now: DateTime<Utc>,
) -> Result<(Vec<Snapshot>, Vec<Suspect>), InvocationError> {
    let (tagged, others): (Vec<Snapshot>, Vec<Snapshot>) = snapshots
        .into_iter()
        .partition(|s| tags::is_managed_by(&s.tags, config.deployment_name()));
    let sifted = ownership::sift(ports.ledger, config, tagged, Scope::SomeSnapshots, now).await?;
    let held = sifted.held_for_review();
    let (owned, rejected) = (sifted.owned, sifted.rejected);
    let foreign = |mut s: Snapshot| {
        s.tags.retain(|k, _| !k.starts_with(tags::LIFECYCLE_PREFIX));
        s
    };
    let (held_back, mut owned): (Vec<Snapshot>, Vec<Snapshot>) =
        owned.into_iter().partition(|s| held.contains(&s.id));
    owned.extend(held_back.into_iter().chain(rejected).map(foreign));
    owned.extend(others);
    Ok((owned, sifted.suspects))
}

/// The encrypted copies this deployment made that an event's snapshots may
/// have: EC2 is asked only if one of them is unencrypted (an event about
/// encrypted ones costs no second describe).
async fn copies_of(
    ports: Ports<'_>,
    config: &Config,
    snapshots: &[Snapshot],
    now: DateTime<Utc>,
) -> Result<Vec<Snapshot>, InvocationError> {
    Ok(if snapshots.iter().any(|s| !s.encrypted) {
        let listed = ports
            .catalog
            .encrypted_copies(config.deployment_name())
            .await?;
        let sifted =
            ownership::sift(ports.ledger, config, listed, Scope::SomeSnapshots, now).await?;
        let held = sifted.held_for_review();
        sifted
            .owned
            .into_iter()
            .filter(|s| !held.contains(&s.id))
            .collect()
    } else {
        Vec::new()
    })
}

/// The keys a run judges by, and what could not be resolved.
struct Keys {
    /// The AWS managed EBS key: its snapshots cannot be shared.
    aws_managed: Option<String>,
    allowed: AllowedKeys,
    /// Alias -> key ARN, for the aliases of the allowed list.
    resolved: BTreeMap<String, String>,
    /// `not-checked` findings for aliases KMS could not resolve.
    findings: Vec<Finding>,
}

/// Keys: the AWS managed EBS key and the aliases of the allowed list. A KMS
/// failure only costs efficiency (all permissions are read) or is reported
/// as "not checked".
async fn keys(ports: Ports<'_>, config: &Config) -> Keys {
    let aws_managed = match ports.keys.key_arn(AWS_MANAGED_EBS_KEY).await {
        Ok(arn) => arn,
        Err(e) => {
            tracing::warn!(error = %e, "could not resolve the AWS managed EBS key; reading every snapshot's permissions");
            None
        }
    };
    // The key this deployment encrypts its copies with is allowed too: its
    // own remedy must never become a finding.
    let mut allowed = config.allowed_kms_key_ids.clone();
    if let (false, Some(key)) = (allowed.is_empty(), &config.encryption_kms_key_id) {
        allowed.push(key.clone());
    }
    let allowed = AllowedKeys::new(&allowed);
    let mut resolved = BTreeMap::new();
    let mut findings = Vec::new();
    for alias in allowed.aliases() {
        match ports.keys.key_arn(&alias).await {
            Ok(Some(arn)) => {
                resolved.insert(alias, arn);
            }
            Ok(None) => findings.push(not_checked(format!(
                "ALLOWED_KMS_KEY_IDS names {alias}, which KMS does not know: it allows no key"
            ))),
            Err(e) => findings.push(not_checked(format!(
                "ALLOWED_KMS_KEY_IDS alias {alias} could not be resolved ({e}): it allows no key this run"
            ))),
        }
    }
    Keys {
        aws_managed,
        allowed,
        resolved,
        findings,
    }
}

/// The daily run's wider picture: opted-in volumes, and the region's
/// settings (a setting that cannot be read is "not checked").
async fn volume_and_account_findings(
    ports: Ports<'_>,
    config: &Config,
) -> Result<Vec<Finding>, InvocationError> {
    let mut findings = encryption::assess_volumes(&opted_in_volumes(ports, config).await?);
    let by_default = match ports.settings.ebs_encryption_by_default().await {
        Ok(v) => Checked::Value(v),
        Err(e) => Checked::NotChecked(e.to_string()),
    };
    let block_public = match ports.settings.snapshot_block_public_access().await {
        Ok(v) => Checked::Value(v),
        Err(e) => Checked::NotChecked(e.to_string()),
    };
    findings.extend(encryption::assess_account(&by_default, &block_public));
    Ok(findings)
}

fn not_checked(detail: String) -> Finding {
    Finding::new(
        FindingKind::NotChecked,
        detail,
        Fix::Advised("fix ALLOWED_KMS_KEY_IDS or the function's kms:DescribeKey permission".into()),
    )
}

/// `createVolumePermission` of every snapshot that could be shared, a few
/// reads at a time, in [`encryption::reading_order`] from `cursor`, until
/// the deadline comes near. A read that fails (after the SDK's retries)
/// becomes a `not-checked` finding in `unread`. Also returns where the next
/// run should start: `Some(None)` from the beginning, `Some(id)` after it,
/// `None` to keep the cursor (nothing was read).
async fn read_permissions(
    ports: Ports<'_>,
    shareable: Vec<&str>,
    cursor: Option<&str>,
    deadline: Deadline,
    summary: &mut RunSummary,
    unread: &mut Vec<Finding>,
) -> (BTreeMap<String, Permissions>, Option<Option<String>>) {
    let order = encryption::reading_order(shareable, cursor);
    let results: Vec<Option<(String, Result<Permissions, Ec2Error>)>> = stream::iter(order.iter())
        .map(|id| async move {
            if deadline.is_near() {
                return None;
            }
            Some((
                id.to_string(),
                ports.sharing.create_volume_permissions(id).await,
            ))
        })
        .buffer_unordered(PERMISSION_READS)
        .collect()
        .await;
    let read: BTreeSet<&str> = results
        .iter()
        .flatten()
        .map(|(id, _)| id.as_str())
        .collect();
    let next = (!read.is_empty()).then(|| encryption::next_cursor(&order, &read).map(String::from));
    let mut out = BTreeMap::new();
    for result in results {
        match result {
            None => summary.left_for_later += 1,
            // Deleted since the listing: nothing to check.
            Some((_, Err(Ec2Error::SnapshotNotFound))) => {}
            // One unreadable snapshot does not blind the run to the others.
            Some((id, Err(e))) => {
                let mut finding = Finding::new(
                    FindingKind::NotChecked,
                    format!("who may restore {id} could not be read: {e}"),
                    Fix::Advised("the next run reads it again".into()),
                );
                finding.snapshot_id = Some(id);
                unread.push(finding);
            }
            Some((id, Ok(p))) => {
                summary.permissions_read += 1;
                out.insert(id, p);
            }
        }
    }
    (out, next)
}

/// Carry out the remedies; each finding's fix says what happened.
async fn apply(
    ports: Ports<'_>,
    config: &Config,
    remedies: Vec<(usize, Remedy)>,
    offset: usize,
    findings: &mut [Finding],
    summary: &mut RunSummary,
) {
    for (index, remedy) in remedies {
        let outcome = match &remedy {
            Remedy::RemovePublic { snapshot_id } => ports
                .sharing
                .remove_create_volume_permissions(snapshot_id, true, &[])
                .await
                .map(|()| "public permission removed".to_string())
                .map_err(|e| e.to_string()),
            Remedy::RemoveShares {
                snapshot_id,
                accounts,
            } => ports
                .sharing
                .remove_create_volume_permissions(snapshot_id, false, accounts)
                .await
                .map(|()| format!("shares with {} removed", accounts.join(", ")))
                .map_err(|e| e.to_string()),
            Remedy::EncryptedCopy { snapshot_id, tags } => {
                encrypted_copy(ports, config, snapshot_id, tags, summary).await
            }
        };
        if let Some(finding) = findings.get_mut(offset + index) {
            finding.fix = match outcome {
                Ok(done) => Fix::Applied(done),
                Err(e) => Fix::Failed(e),
            };
        }
    }
}

/// Copy an original under the deployment's copy Description, then record
/// the copy in the stack's ledger: without the record it is not ours
/// (anyone allowed to copy can write the Description). The identity
/// recorded is the original's, proven by the ownership check.
async fn encrypted_copy(
    ports: Ports<'_>,
    config: &Config,
    snapshot_id: &str,
    copy_tags: &Tags,
    summary: &mut RunSummary,
) -> Result<String, String> {
    let text = |key: &str| copy_tags.get(key).cloned();
    let time = |key: &str| copy_tags.get(key).and_then(|v| tags::parse_time(v));
    let (Some(volume_id), Some(policy), Some(slot), Some(created_at)) = (
        text(tags::VOLUME_ID),
        text(tags::POLICY),
        time(tags::SLOT),
        time(tags::CREATED_AT),
    ) else {
        return Err(
            "not copied: the original's volume, policy, slot or creation time is unknown".into(),
        );
    };
    let request = CopySnapshotRequest {
        source_snapshot_id: snapshot_id.to_string(),
        source_region: None,
        kms_key_id: config.encryption_kms_key_id.clone(),
        description: config.identity.copy(&config.identity.region, snapshot_id),
        tags: copy_tags.clone(),
    };
    let copy = ports
        .copier
        .copy_snapshot(&request)
        .await
        .map_err(|e| e.to_string())?;
    summary.copies_started.push(copy.clone());
    let record = CopyRecord {
        copy_id: copy.clone(),
        source_snapshot_id: snapshot_id.to_string(),
        volume_id,
        policy,
        slot,
        created_at,
        target: None,
    };
    match ports.ledger.record_copy(&record).await {
        Ok(()) => Ok(format!(
            "encrypted copy {copy} started; the original is superseded when it completes"
        )),
        Err(e) => Err(format!(
            "encrypted copy {copy} started but could not be recorded in the stack's ledger ({e}): it will be reported as tampering-suspected and the original is kept; delete the copy by hand"
        )),
    }
}

/// The volumes the deployment covers, with their policy, resolved as
/// create-snapshots resolves them (`services::due::discover`: own tag,
/// instance tag, `none`, exclusions, the default policy).
async fn opted_in_volumes(
    ports: Ports<'_>,
    config: &Config,
) -> Result<Vec<(Volume, String)>, InvocationError> {
    let resolution = due::discover(ports.inventory, config).await?;
    Ok(resolution
        .targets
        .into_iter()
        .flat_map(|t| match t {
            Target::Volume(v) => vec![(v.volume, v.policy)],
            Target::Instance(g) => {
                let policy = g.policy;
                g.volumes.into_iter().map(|v| (v, policy.clone())).collect()
            }
        })
        .collect())
}

impl Summary for RunSummary {
    fn header(&mut self) -> &mut RunHeader {
        &mut self.header
    }

    fn headline(&self) -> String {
        format!(
            "check-encryption ({}): {} findings over {} snapshots",
            self.header.trigger, self.findings_total, self.snapshots_checked
        )
    }

    /// Account-wide counts: one data point per day (daily runs only).
    fn metrics(&self, suspects: usize) -> Vec<(Metric, u64)> {
        if self.header.trigger != "daily" {
            return Vec::new();
        }
        vec![
            (Metric::UnencryptedSnapshots, self.unencrypted),
            (Metric::PublicSnapshots, self.public),
            (Metric::TamperingSuspected, suspects as u64),
        ]
    }
}

/// What the run tells people: one `encryption-findings` with every finding
/// of a daily run; for an event, only when it found a condition not
/// notified in the last 24 hours. A snapshot whose copy is already under way (the copy's
/// own completion, or the same event delivered again) has nothing new to
/// say: the run that started the copy alerted. Every daily finding is
/// remembered as notified, so events until the next daily run do not
/// repeat it.
pub fn notifications(
    config: &Config,
    summary: &mut RunSummary,
    memo: &DailyMemo,
    now: DateTime<Utc>,
) -> Vec<Notification> {
    let Some(severity) = summary.worst else {
        return Vec::new();
    };
    // A daily run's findings were remembered as notified as they came.
    if summary.header.trigger != "daily" {
        let conditions = summary
            .findings
            .iter()
            .filter(|f| !f.in_hand())
            .map(Finding::condition);
        let (new, repeats) = memo.sort_out(conditions, now);
        summary.repeats_not_notified = repeats;
        if new == 0 {
            return Vec::new();
        }
    }
    let listed: Vec<String> = summary
        .by_kind
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    vec![Notification {
        kind: NotificationKind::EncryptionFindings,
        severity,
        deployment: config.deployment_name().to_string(),
        summary: format!("check-encryption: {}", listed.join(", ")),
        details: json!({
            "trigger": summary.header.trigger,
            "remediate": summary.remediate,
            "snapshots_checked": summary.snapshots_checked,
            "findings_total": summary.findings_total,
            "by_kind": summary.by_kind,
            "findings": summary.findings,
            "copies_started": summary.copies_started,
        }),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebs_lifecycle_core::encryption::FindingKind;

    fn unencrypted(i: usize) -> Finding {
        let mut f = Finding::new(
            FindingKind::UnencryptedSnapshot,
            format!("snap-{i:017x} is not encrypted"),
            Fix::Advised("copy it encrypted".into()),
        );
        f.snapshot_id = Some(format!("snap-{i:017x}"));
        f
    }

    /// A large account's findings: counted whole, listed up to the bound,
    /// the response under its limit.
    #[test]
    fn findings_are_counted_whole_and_listed_up_to_the_bound() {
        let memo = DailyMemo::default();
        let now = Utc::now();
        let mut summary = RunSummary::default();
        for page in 0..50 {
            let findings = (0..1_000).map(|i| unencrypted(page * 1_000 + i)).collect();
            summary.add(findings, &memo, true, now);
        }
        assert_eq!(summary.findings_total, 50_000);
        assert_eq!(summary.findings.len(), FINDINGS_LISTED);
        assert_eq!(summary.by_kind.values().sum::<usize>(), 50_000);
        assert_eq!(summary.unencrypted, 50_000);
        let response = serde_json::to_vec(&ebs_lifecycle::lambda::run::response(&summary)).unwrap();
        assert!(
            response.len() < ebs_lifecycle::lambda::run::RESPONSE_LIMIT,
            "{}",
            response.len()
        );
    }
}

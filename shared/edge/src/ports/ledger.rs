//! The stack's own record: what only the stack's roles can write, and so
//! what may authorise an action a forged tag must not (docs/operations.md,
//! "The ledger"). The implementation on DynamoDB is
//! [`crate::aws::ledger`]; the table is the template's `Ledger`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use ebs_lifecycle_core::drills::{DrillRecord, Verification};
use ebs_lifecycle_core::holds::Hold;
use ebs_lifecycle_core::ownership::{AskedKey, CopyRecord};
use ebs_lifecycle_core::schedule::ScheduleRecord;

/// A failed ledger call. Every caller treats it as "not proven": nothing
/// is deleted, started or linked on a guess.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("the stack's ledger could not be read or written ({operation}): {message}")]
    Unavailable {
        operation: &'static str,
        message: String,
    },
    /// Another run changed the record between our read and our write, every
    /// time we tried.
    #[error("the stack's ledger kept changing under {operation}")]
    Contended { operation: &'static str },
}

impl LedgerError {
    /// Short stable name for run summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => "ledger-unavailable",
            Self::Contended { .. } => "ledger-contended",
        }
    }
}

/// An instance create-snapshots stopped for a `stopped` snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRecord {
    pub instance_id: String,
    pub policy: String,
    /// Written before StopInstances is called.
    pub stopped_at: DateTime<Utc>,
}

/// A scheduled snapshot create-snapshots made: the proof that a snapshot
/// with a slot's Description is the deployment's and not one made by hand
/// (docs/policies-and-tags.md, "Ownership").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreationRecord {
    pub snapshot_id: String,
    pub volume_id: String,
    pub policy: String,
    pub slot: DateTime<Utc>,
    /// When EC2 answered.
    pub created_at: DateTime<Utc>,
}

/// A CreateSnapshot(s) about to be asked for: what it claims (the volume,
/// or the instance of a set; policy; slot) and when its run began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreationIntent {
    pub claim: AskedKey,
    pub asked_at: DateTime<Utc>,
}

/// A copy to another region, from the moment it is asked for until it
/// completes or fails (or is proven never started). Written before
/// CopySnapshot is called: CopySnapshot has no idempotency token, so this
/// record is what tells a later run that a copy whose answer was lost may
/// exist, and what keeps expiry off its source meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInFlight {
    pub source_snapshot_id: String,
    /// The target's name (its region).
    pub target: String,
    pub volume_id: String,
    pub policy: String,
    /// The source's slot and retention time: what the copy's record says
    /// once its id is known.
    pub slot: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// When CopySnapshot was asked.
    pub asked_at: DateTime<Utc>,
    /// The copy, once EC2's answer is recorded.
    pub copy_id: Option<String>,
}

#[async_trait]
pub trait Ledger: Send + Sync {
    /// Record, before stopping it, that this deployment stops the instance.
    async fn record_stop(&self, record: &StopRecord) -> Result<(), LedgerError>;
    /// Every instance this deployment stopped and has not started again.
    async fn stops(&self) -> Result<Vec<StopRecord>, LedgerError>;
    /// The instance runs again (or never stopped): forget it.
    async fn forget_stop(&self, instance_id: &str) -> Result<(), LedgerError>;

    /// From when create-snapshots records every scheduled snapshot it
    /// makes (`None`: it has not yet run with the records): from then on
    /// a scheduled Description proves nothing without its record
    /// (docs/policies-and-tags.md, "Ownership").
    async fn creations_since(&self) -> Result<Option<DateTime<Utc>>, LedgerError>;
    /// Start recording creations at `now`, unless started before (the
    /// first start stands).
    async fn begin_creations(&self, now: DateTime<Utc>) -> Result<(), LedgerError>;
    /// Record a scheduled snapshot create-snapshots made, as soon as EC2
    /// gives its id.
    async fn record_creation(&self, record: &CreationRecord) -> Result<(), LedgerError>;
    /// Before CreateSnapshot(s) is called: the intent that proves the
    /// snapshot if the answer is lost ([`ebs_lifecycle_core::ownership::Creations`]).
    async fn ask_creation(&self, intent: &CreationIntent) -> Result<(), LedgerError>;
    /// The intents left for these claims (one batch read per 100).
    async fn asked(&self, claims: &[AskedKey]) -> Result<Vec<CreationIntent>, LedgerError>;
    /// The answer is recorded (or nothing was made): the intent goes.
    async fn forget_ask(&self, claim: &AskedKey) -> Result<(), LedgerError>;
    /// Which of these snapshots create-snapshots recorded (one batch read
    /// per 100).
    async fn creations(&self, snapshot_ids: &[String]) -> Result<Vec<String>, LedgerError>;
    /// The snapshot is deleted: forget its creation.
    async fn forget_creation(&self, snapshot_id: &str) -> Result<(), LedgerError>;

    /// Record a copy this deployment made, as soon as EC2 gives its id.
    async fn record_copy(&self, record: &CopyRecord) -> Result<(), LedgerError>;
    /// The records of those of these copies this deployment made.
    async fn copies(&self, copy_ids: &[String]) -> Result<Vec<CopyRecord>, LedgerError>;
    /// The copy is deleted: forget it.
    async fn forget_copy(&self, copy_id: &str) -> Result<(), LedgerError>;

    /// Record a copy to another region about to be asked for, or (with its
    /// id) started.
    async fn begin_copy(&self, copy: &CopyInFlight) -> Result<(), LedgerError>;
    /// Every copy to another region in flight.
    async fn copies_in_flight(&self) -> Result<Vec<CopyInFlight>, LedgerError>;
    /// The copy completed, failed, or never started.
    async fn end_copy(&self, source_snapshot_id: &str, target: &str) -> Result<(), LedgerError>;

    /// When each of these volumes was first seen opted in: those never
    /// seen before are recorded as seen `now` (a volume with no snapshot
    /// yet is in a coverage gap once that is long enough ago).
    async fn first_seen(
        &self,
        volume_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<std::collections::BTreeMap<String, DateTime<Utc>>, LedgerError>;

    /// Grant up to `wanted` deletions without exceeding `max` within 24
    /// hours, counted across every run; returns the grant.
    async fn reserve_deletions(
        &self,
        now: DateTime<Utc>,
        wanted: u32,
        max: u32,
    ) -> Result<u32, LedgerError>;
    /// Give back the part of a grant made at `granted_at` that was not used.
    async fn release_deletions(
        &self,
        granted_at: DateTime<Utc>,
        now: DateTime<Utc>,
        unused: u32,
    ) -> Result<(), LedgerError>;

    /// A vault's budget of copies per source account: grant up to `wanted`
    /// copies without exceeding `max` within 24 hours, across runs.
    async fn reserve_copies(
        &self,
        account: &str,
        now: DateTime<Utc>,
        wanted: u32,
        max: u32,
    ) -> Result<u32, LedgerError>;
    /// Give back the part of a copy grant that was not used.
    async fn release_copies(
        &self,
        account: &str,
        granted_at: DateTime<Utc>,
        now: DateTime<Utc>,
        unused: u32,
    ) -> Result<(), LedgerError>;

    /// Where a daily run that could not finish stopped (`name`: the
    /// function), for the next run to go on from; `None`: from the start.
    async fn cursor(&self, name: &str) -> Result<Option<String>, LedgerError>;
    async fn set_cursor(&self, name: &str, value: Option<&str>) -> Result<(), LedgerError>;

    /// Every schedule the policies had, as create-snapshots recorded them
    /// (at most 1,000: more is refused as unavailable).
    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, LedgerError>;
    /// Record a policy's schedule, from the first run that has it.
    async fn record_schedule(&self, record: &ScheduleRecord) -> Result<(), LedgerError>;

    /// Every hold recorded (ended ones included; `Holds::in_effect` keeps
    /// those in effect). Refused as unavailable past
    /// [`ebs_lifecycle_core::holds::MAX_HOLDS`]: a run that cannot read the
    /// holds deletes nothing.
    async fn holds(&self) -> Result<Vec<Hold>, LedgerError>;
    /// Write a hold (replacing one on the same id). Only the hold
    /// permission may: no function's role has it.
    async fn set_hold(&self, hold: &Hold) -> Result<(), LedgerError>;
    /// End a hold now.
    async fn release_hold(&self, resource_id: &str) -> Result<(), LedgerError>;

    /// Which of these snapshots were reported already (one batch read per
    /// 100): a run asks this first, so a suspect seen again costs a read,
    /// not a write.
    async fn reported(&self, snapshot_ids: &[String]) -> Result<Vec<String>, LedgerError>;
    /// True the first time it is asked for this snapshot: a suspect is
    /// reported once, however many runs see it.
    async fn first_report(
        &self,
        snapshot_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, LedgerError>;
}

/// What restore drills record (docs/restore.md, "Restore drills"): each
/// drill from before its CreateVolume until its volume is deleted, each
/// volume's last passed drill, and which failures were notified.
#[async_trait]
pub trait DrillLedger: Send + Sync {
    /// Write (or rewrite, with its volume once known) a drill in progress.
    async fn begin_drill(&self, record: &DrillRecord) -> Result<(), LedgerError>;
    /// Drills in progress, those a killed run left among them: at most 100
    /// a call (the rest on a later run's).
    async fn open_drills(&self) -> Result<Vec<DrillRecord>, LedgerError>;
    /// The drill's volume is deleted (or was never made).
    async fn end_drill(&self, token: &str) -> Result<(), LedgerError>;
    /// The volume's last passed drill.
    async fn record_verification(&self, verification: &Verification) -> Result<(), LedgerError>;
    /// The last passed drill of each of these volumes that has one (one
    /// batch read per 100).
    async fn verifications(&self, volume_ids: &[String]) -> Result<Vec<Verification>, LedgerError>;
    /// True the first time a failed drill of this snapshot is recorded:
    /// `restore-drill-failed` is sent once per snapshot.
    async fn first_drill_failure(
        &self,
        snapshot_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, LedgerError>;
}

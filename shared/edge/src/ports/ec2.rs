//! What the functions need from EC2, as narrow traits (one per concern),
//! with the request types and the error kinds they speak. No SDK type
//! crosses this boundary: the implementations on the SDK client are in
//! [`crate::aws::ec2`], test doubles build on the real client with
//! `aws-smithy-mocks`.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

use ebs_lifecycle_core::drills::VolumeFacts;
use ebs_lifecycle_core::encryption::Permissions;
use ebs_lifecycle_core::model::{Instance, Snapshot, Tags, Volume};
use ebs_lifecycle_core::ownership::Identity;
use ebs_lifecycle_core::restore::{SourceVolume, VolumeSpec};
use ebs_lifecycle_core::safety::Authorized;
use ebs_lifecycle_core::tags::LifecycleState;

/// CreateTags takes up to 1000 resource ids; EC2 recommends smaller batches.
pub const TAG_BATCH: usize = 500;

/// A failed EC2 call, by what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ec2Error {
    #[error("the volume no longer exists (InvalidVolume.NotFound)")]
    VolumeNotFound,
    #[error("the instance no longer exists (InvalidInstanceID.NotFound)")]
    InstanceNotFound,
    #[error("the volume already has 5 pending snapshots (ConcurrentSnapshotLimitExceeded)")]
    ConcurrentSnapshotLimitExceeded,
    #[error("the volume was snapshotted moments ago (SnapshotCreationPerVolumeRateExceeded)")]
    SnapshotCreationPerVolumeRateExceeded,
    #[error("EC2 kept throttling after every retry ({code})")]
    Throttled { code: String },
    #[error("the snapshot is in use, e.g. by an AMI (InvalidSnapshot.InUse): {message}")]
    SnapshotInUse { message: String },
    #[error("the snapshot no longer exists (InvalidSnapshot.NotFound)")]
    SnapshotNotFound,
    #[error("the resource is in a state that does not allow this (IncorrectState): {message}")]
    IncorrectState { message: String },
    /// Too many copies in progress into the region (EC2's quota, 20 by
    /// default): nothing started, wait for a later run.
    #[error("an EC2 quota is reached, e.g. copies in progress into the region or archivals in progress (ResourceLimitExceeded)")]
    ResourceLimitExceeded,
    /// The KMS key named cannot be used (disabled, pending deletion, no
    /// grant, wrong region): nothing started, and nothing will until a
    /// person fixes the key or its policy.
    #[error("the KMS key cannot be used ({code}): {message}")]
    KeyUnusable { code: String, message: String },
    #[error("{operation} failed: {code}: {message}")]
    Service {
        operation: &'static str,
        code: String,
        message: String,
    },
    /// No answer from EC2: timeout, connection failure, unreadable response.
    #[error("{operation} failed without an answer from EC2: {message}")]
    Transport {
        operation: &'static str,
        message: String,
    },
}

impl Ec2Error {
    /// A short stable name for summaries and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::VolumeNotFound => "volume-not-found",
            Self::InstanceNotFound => "instance-not-found",
            Self::ConcurrentSnapshotLimitExceeded => "concurrent-snapshot-limit",
            Self::SnapshotCreationPerVolumeRateExceeded => "per-volume-rate",
            Self::Throttled { .. } => "throttled",
            Self::IncorrectState { .. } => "incorrect-state",
            Self::ResourceLimitExceeded => "resource-limit-exceeded",
            Self::KeyUnusable { .. } => "key-unusable",
            Self::SnapshotInUse { .. } => "snapshot-in-use",
            Self::SnapshotNotFound => "snapshot-not-found",
            Self::Service { .. } => "service-error",
            Self::Transport { .. } => "transport-error",
        }
    }
}

/// Finding the volumes and instances that opted in.
#[async_trait]
pub trait VolumeInventory: Send + Sync {
    /// Every volume of the region in a usable state (the report's coverage).
    async fn all_volumes(&self) -> Result<Vec<Volume>, Ec2Error>;
    /// Volumes that carry the tag key, in a usable state (server-side filter).
    async fn volumes_tagged(&self, tag_key: &str) -> Result<Vec<Volume>, Ec2Error>;
    /// Instances that carry the tag key and are not terminated (server-side filter).
    async fn instances_tagged(&self, tag_key: &str) -> Result<Vec<Instance>, Ec2Error>;
    /// Every volume attached to one of these instances.
    async fn volumes_attached_to(&self, instance_ids: &[String]) -> Result<Vec<Volume>, Ec2Error>;
    /// Those of these volumes that still exist.
    async fn volumes_by_id(&self, volume_ids: &[String]) -> Result<Vec<Volume>, Ec2Error>;
    /// Those of these instances that still exist (terminated ones included
    /// while EC2 lists them).
    async fn instances_by_id(&self, instance_ids: &[String]) -> Result<Vec<Instance>, Ec2Error>;
}

/// Looking up snapshots the account owns.
#[async_trait]
pub trait SnapshotCatalog: Send + Sync {
    /// The snapshots whose Description claims one policy and slot of this
    /// deployment ([`Identity::slot_pattern`]), whatever their tags: a
    /// slot's snapshot stripped of its tags still fills the slot.
    ///
    /// [`Identity::slot_pattern`]: ebs_lifecycle_core::ownership::Identity::slot_pattern
    async fn snapshots_for_slot(
        &self,
        identity: &Identity,
        policy: &str,
        slot: DateTime<Utc>,
    ) -> Result<Vec<Snapshot>, Ec2Error>;

    /// These snapshots, if the account owns them. Ids that do not exist (or
    /// are not visible yet) are simply absent from the answer.
    async fn snapshots_by_id(&self, ids: &[String]) -> Result<Vec<Snapshot>, Ec2Error>;

    /// Every snapshot of the deployment (server-side filter on `lifecycle:managed-by`).
    async fn managed_snapshots(&self, deployment: &str) -> Result<Vec<Snapshot>, Ec2Error>;

    /// The source volumes of the deployment's snapshots (`lifecycle:volume-id`,
    /// else EC2's VolumeId), deleted volumes included: what a run walks in
    /// batches ([`Self::managed_snapshots_of_volumes`]) so that it never
    /// holds the whole account's snapshots. The adapter keeps only the ids
    /// of each page.
    async fn managed_volume_ids(&self, deployment: &str) -> Result<BTreeSet<String>, Ec2Error> {
        Ok(self
            .managed_snapshots(deployment)
            .await?
            .iter()
            .filter_map(|s| s.source_volume_id().map(str::to_string))
            .collect())
    }

    /// The deployment's snapshots of these source volumes: by the
    /// `lifecycle:volume-id` tag or, for snapshots created without it
    /// (multi-volume sets), by EC2's `VolumeId`. Two describes per 200
    /// volumes, however many volumes: DescribeSnapshots has one of EC2's
    /// tightest rate limits.
    async fn managed_snapshots_of_volumes(
        &self,
        deployment: &str,
        volume_ids: &[String],
    ) -> Result<Vec<Snapshot>, Ec2Error>;

    /// The deployment's snapshots of these policies (server-side filters on
    /// `lifecycle:managed-by` and `lifecycle:policy`, 200 policies a call):
    /// copy-snapshots lists only what a policy with targets made.
    async fn managed_snapshots_of_policies(
        &self,
        deployment: &str,
        policies: &[String],
    ) -> Result<Vec<Snapshot>, Ec2Error>;

    /// The deployment's disaster-recovery copies of snapshots from
    /// `source_region` (asked of the destination region's catalog):
    /// server-side filters on `lifecycle:managed-by` and
    /// `lifecycle:source-region`, so a stack of the same name in the
    /// destination is not listed.
    async fn copies_from(
        &self,
        deployment: &str,
        source_region: &str,
    ) -> Result<Vec<Snapshot>, Ec2Error>;

    /// Snapshots these accounts own and share with this account (a vault's
    /// view of what its sources share).
    async fn shared_with_me(&self, owners: &[String]) -> Result<Vec<Snapshot>, Ec2Error>;

    /// The account's own snapshots `account` may create volumes from:
    /// what it shares with that account.
    async fn shared_with(&self, account: &str) -> Result<Vec<Snapshot>, Ec2Error>;

    /// Every snapshot the account owns, managed or not.
    async fn owned_snapshots(&self) -> Result<Vec<Snapshot>, Ec2Error>;

    /// The account's snapshots (anyone's) of these volumes, by EC2's
    /// VolumeId: a volume's lineage, 200 volumes a call.
    async fn owned_snapshots_of_volumes(
        &self,
        volume_ids: &[String],
    ) -> Result<Vec<Snapshot>, Ec2Error> {
        let wanted: BTreeSet<&str> = volume_ids.iter().map(String::as_str).collect();
        Ok(self
            .owned_snapshots()
            .await?
            .into_iter()
            .filter(|s| s.volume_id.as_deref().is_some_and(|v| wanted.contains(v)))
            .collect())
    }

    /// Both of the above for the same volumes: (anyone's snapshots of them,
    /// the deployment's). The EC2 adapter takes the deployment's by
    /// `VolumeId` from the first answer: two describes per 200 volumes
    /// instead of three.
    async fn snapshots_of_volumes(
        &self,
        deployment: &str,
        volume_ids: &[String],
    ) -> Result<(Vec<Snapshot>, Vec<Snapshot>), Ec2Error> {
        futures::try_join!(
            self.owned_snapshots_of_volumes(volume_ids),
            self.managed_snapshots_of_volumes(deployment, volume_ids),
        )
    }

    /// [`Self::owned_snapshots`] a page (up to 1,000) at a time, for a run
    /// that looks at every snapshot without holding them all.
    fn owned_snapshot_pages(&self) -> BoxStream<'_, Result<Vec<Snapshot>, Ec2Error>> {
        Box::pin(futures::stream::once(self.owned_snapshots()))
    }

    /// The deployment's encrypted copies (those tagged `lifecycle:encrypted-copy-of`).
    async fn encrypted_copies(&self, deployment: &str) -> Result<Vec<Snapshot>, Ec2Error>;

    /// Snapshots whose Description is in the deployment's format (any
    /// tags) and that EC2 says are `pending` or `error`: what a removed
    /// or rewritten tag must not hide from complete-snapshots' alerts.
    /// Bounded by what is unfinished now: failed ones are cleaned up by
    /// expiry after their grace period, except one whose `managed-by` was
    /// removed (expiry never deletes it; its alert was sent once).
    async fn unfinished_snapshots(&self, identity: &Identity) -> Result<Vec<Snapshot>, Ec2Error>;

    /// The deployment's snapshots whose `lifecycle:state` tag has this value.
    async fn managed_snapshots_in_state(
        &self,
        deployment: &str,
        state: LifecycleState,
    ) -> Result<Vec<Snapshot>, Ec2Error>;
}

/// What protects snapshots beyond their tags: AMIs and snapshot locks.
#[async_trait]
pub trait SnapshotProtections: Send + Sync {
    /// Every snapshot referenced by an AMI the account owns, disabled and
    /// deprecated ones included.
    async fn ami_snapshot_ids(&self) -> Result<BTreeSet<String>, Ec2Error>;
    /// Which of these snapshots carry a snapshot lock.
    async fn locked_snapshot_ids(&self, ids: &[String]) -> Result<BTreeSet<String>, Ec2Error>;
    /// Every locked snapshot of the account (usually few: one call), for a
    /// run that asks before it knows which snapshots it will meet.
    async fn all_locked_snapshot_ids(&self) -> Result<BTreeSet<String>, Ec2Error>;
    /// EC2's tier status of every snapshot that was ever archived or
    /// restored (DescribeSnapshotTierStatus).
    async fn tier_statuses(&self) -> Result<Vec<TierStatus>, Ec2Error>;
}

/// One snapshot's archive history as EC2 reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierStatus {
    pub snapshot_id: String,
    /// `LastTieringOperationStatus`, e.g. `archival-completed`,
    /// `temporary-restore-in-progress`.
    pub last_operation: Option<String>,
    /// `ArchivalCompleteTime`.
    pub archived_at: Option<DateTime<Utc>>,
    /// `RestoreExpiryTime`.
    pub restore_expiry: Option<DateTime<Utc>>,
    /// `LastTieringStartTime`.
    pub started_at: Option<DateTime<Utc>>,
    /// `LastTieringOperationStatusDetail`: EC2's words, e.g. why it failed.
    pub detail: Option<String>,
}

impl TierStatus {
    /// An archival EC2 has not finished.
    pub fn archiving(&self) -> bool {
        self.last_operation.as_deref() == Some("archival-in-progress")
    }
}

/// Moving snapshots to the archive tier.
#[async_trait]
pub trait SnapshotArchiver: Send + Sync {
    /// ModifySnapshotTier to `archive`: EC2 starts the move and finishes it
    /// within hours (the `archiveSnapshot` event, the tier status).
    async fn archive_snapshot(&self, snapshot_id: &str) -> Result<(), Ec2Error>;
}

/// Who may create volumes from a snapshot, and taking that away.
#[async_trait]
pub trait SnapshotSharing: Send + Sync {
    async fn create_volume_permissions(&self, snapshot_id: &str) -> Result<Permissions, Ec2Error>;
    /// Let `account` create volumes from the snapshot (share it).
    async fn share_with(&self, snapshot_id: &str, account: &str) -> Result<(), Ec2Error>;
    /// Remove the public permission (`public`) and these accounts' permissions.
    async fn remove_create_volume_permissions(
        &self,
        snapshot_id: &str,
        public: bool,
        accounts: &[String],
    ) -> Result<(), Ec2Error>;
}

/// The region's EBS settings.
#[async_trait]
pub trait AccountSettings: Send + Sync {
    async fn ebs_encryption_by_default(&self) -> Result<bool, Ec2Error>;
    /// `block-all-sharing`, `block-new-sharing` or `unblocked`.
    async fn snapshot_block_public_access(&self) -> Result<String, Ec2Error>;
}

/// An encrypted copy of a snapshot, every tag at creation. The copier is
/// the destination region's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySnapshotRequest {
    pub source_snapshot_id: String,
    /// `None`: the source is in the copier's own region.
    pub source_region: Option<String>,
    /// `None`: EC2 uses the region's default EBS key (the configuration
    /// always sets one for `REMEDIATE=all`).
    pub kms_key_id: Option<String>,
    pub description: String,
    pub tags: Tags,
}

#[async_trait]
pub trait SnapshotCopier: Send + Sync {
    /// Start the copy; returns the new snapshot's id.
    async fn copy_snapshot(&self, request: &CopySnapshotRequest) -> Result<String, Ec2Error>;
}

/// Locking snapshots (a vault's copies).
#[async_trait]
pub trait SnapshotLocker: Send + Sync {
    /// Lock in compliance mode for `days`: nobody, the account's root
    /// included, can delete it or shorten the lock once the cooling-off
    /// period (none here) is over.
    async fn lock_snapshot(&self, snapshot_id: &str, days: u32) -> Result<(), Ec2Error>;
}

/// Deleting a snapshot: only with the safety gate's authorization.
#[async_trait]
pub trait SnapshotDeleter: Send + Sync {
    async fn delete_snapshot(&self, authorized: &Authorized) -> Result<(), Ec2Error>;
}

/// Writing tags on existing snapshots.
#[async_trait]
pub trait SnapshotTagger: Send + Sync {
    /// Put the same tags on every snapshot in `ids`, in as few CreateTags calls
    /// as EC2 allows.
    async fn tag_snapshots(&self, ids: &[String], tags: &Tags) -> Result<(), Ec2Error>;
}

/// A request for one volume's snapshot, every tag included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSnapshotRequest {
    pub volume_id: String,
    pub description: String,
    pub tags: Tags,
}

/// A request for a multi-volume, crash-consistent snapshot set of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateInstanceSnapshotsRequest {
    pub instance_id: String,
    pub exclude_boot_volume: bool,
    pub exclude_volume_ids: Vec<String>,
    pub description: String,
    pub tags: Tags,
}

/// One snapshot EC2 started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedSnapshot {
    pub snapshot_id: String,
    pub volume_id: String,
}

/// Starting snapshots, with every tag at creation.
#[async_trait]
pub trait SnapshotCreator: Send + Sync {
    async fn create_snapshot(
        &self,
        request: &CreateSnapshotRequest,
    ) -> Result<StartedSnapshot, Ec2Error>;
    async fn create_instance_snapshots(
        &self,
        request: &CreateInstanceSnapshotsRequest,
    ) -> Result<Vec<StartedSnapshot>, Ec2Error>;
}

/// Stopping and starting instances for `stopped` snapshots, and the mark
/// (`lifecycle:stopped-for-snapshot`) that lets a later run restart one an
/// earlier run left stopped.
#[async_trait]
pub trait InstanceControl: Send + Sync {
    /// The instance's state name (`running`, `stopped`...), `None` once it is
    /// gone (terminated instances are not listed).
    /// The instance as EC2 describes it now (state and state reason);
    /// `None` once it is gone.
    async fn instance(&self, instance_id: &str) -> Result<Option<Instance>, Ec2Error>;
    async fn stop_instance(&self, instance_id: &str) -> Result<(), Ec2Error>;
    async fn start_instance(&self, instance_id: &str) -> Result<(), Ec2Error>;
    /// Put the mark, valued with the deployment, on the instance: for
    /// people; the stack's ledger, not the mark, says what it stopped.
    async fn mark_stopped(&self, instance_id: &str, deployment: &str) -> Result<(), Ec2Error>;
    async fn clear_stopped_mark(&self, instance_id: &str) -> Result<(), Ec2Error>;
}

/// Making volumes from snapshots (the command-line tool's restore).
#[async_trait]
pub trait VolumeRestorer: Send + Sync {
    /// The volume as EC2 describes it now (zone, type, size, IOPS,
    /// throughput, tags); `None` once it is gone.
    async fn source_volume(&self, volume_id: &str) -> Result<Option<SourceVolume>, Ec2Error>;
    /// CreateVolume from the spec's snapshot, tagged at creation. EC2's
    /// client token makes the SDK's retries of one call create one volume.
    async fn create_volume(&self, spec: &VolumeSpec) -> Result<String, Ec2Error>;
    /// EC2's state of the volume (`creating`, `available`, `error`...);
    /// `None` once it is gone.
    async fn volume_state(&self, volume_id: &str) -> Result<Option<String>, Ec2Error>;
    async fn attach_volume(
        &self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<(), Ec2Error>;
    async fn detach_volume(&self, volume_id: &str, instance_id: &str) -> Result<(), Ec2Error>;
    /// Where the volume is attached (or being attached) now, as EC2 says:
    /// (instance, device) pairs. What a rollback reads before it undoes a
    /// step whose answer it may not have heard.
    async fn attachments(&self, volume_id: &str) -> Result<Vec<(String, String)>, Ec2Error>;
    /// Only volumes this restore made (rolling back) are ever deleted.
    async fn delete_volume(&self, volume_id: &str) -> Result<(), Ec2Error>;
    async fn tag_volume(&self, volume_id: &str, key: &str, value: &str) -> Result<(), Ec2Error>;
    async fn untag_volume(&self, volume_id: &str, key: &str) -> Result<(), Ec2Error>;
    /// The volume as a restore drill checks it (state, size, encryption,
    /// key, what it was made from, attachments, its drill tag); `None`
    /// once it is gone.
    async fn volume_facts(&self, volume_id: &str) -> Result<Option<VolumeFacts>, Ec2Error>;
    /// The volumes carrying `lifecycle:drill` = `token`: a drill whose
    /// CreateVolume answer was lost.
    async fn drill_volumes(&self, token: &str) -> Result<Vec<VolumeFacts>, Ec2Error>;
    /// The first availability zone of the region (by name) that is
    /// available to the account: where a drill of a copy there makes its
    /// volume (zone `a` is not every account's).
    async fn first_zone(&self) -> Result<Option<String>, Ec2Error>;
}

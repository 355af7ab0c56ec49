//! The tag vocabulary: every `lifecycle:` key, EC2's tag limits, the time
//! format of every time tag, and the values of the enumerated tags. It
//! imports nothing of this crate, so every other module may use it: the
//! model reads keys, the policy checks keys, and [`crate::tags`] composes
//! and reads whole tag sets (and re-exports this vocabulary, its one public
//! name).

use chrono::{DateTime, SecondsFormat, Utc};

pub const MANAGED_BY: &str = "lifecycle:managed-by";
pub const POLICY: &str = "lifecycle:policy";
pub const SLOT: &str = "lifecycle:slot";
pub const STATE: &str = "lifecycle:state";
pub const VOLUME_ID: &str = "lifecycle:volume-id";
pub const INSTANCE_ID: &str = "lifecycle:instance-id";
pub const DEVICE: &str = "lifecycle:device";
pub const CREATED_AT: &str = "lifecycle:created-at";
pub const COMPLETED_AT: &str = "lifecycle:completed-at";
pub const RETAINED_BY: &str = "lifecycle:retained-by";
pub const EXPIRES_AT: &str = "lifecycle:expires-at";
pub const CONSISTENCY: &str = "lifecycle:consistency";
/// When the one `snapshot-stuck` alert for this snapshot was sent (so a
/// snapshot stuck for days is alerted once, not daily).
pub const STUCK_NOTIFIED_AT: &str = "lifecycle:stuck-notified-at";
/// On an encrypted copy check-encryption made: the unencrypted original it replaces.
pub const ENCRYPTED_COPY_OF: &str = "lifecycle:encrypted-copy-of";
/// On a disaster-recovery copy in another region: the source snapshot id.
pub const COPY_OF: &str = "lifecycle:copy-of";
/// On a disaster-recovery copy: the region of its source.
pub const SOURCE_REGION: &str = "lifecycle:source-region";
/// On a vault account's copy: the account that shared its source.
pub const SOURCE_ACCOUNT: &str = "lifecycle:source-account";
/// On a disaster-recovery copy: the target it was made for (`<region>`).
pub const TARGET: &str = "lifecycle:target";
/// On an original, once its encrypted copy is completed: the copy. From then
/// on the copy stands in for it in retention, and expiry may delete it.
pub const SUPERSEDED_BY: &str = "lifecycle:superseded-by";
/// Set by the user, any value: the snapshot is never deleted.
/// What a snapshot alone holds, in bytes (report-snapshots; docs/report.md).
pub const UNIQUE_BYTES: &str = "lifecycle:unique-bytes";
/// What `lifecycle:unique-bytes` was computed from: `<added bytes>
/// <previous snapshot|-> <next snapshot|->`.
pub const UNIQUE_BASIS: &str = "lifecycle:unique-basis";
/// Where archive-snapshots last saw the snapshot: `archiving` (asked),
/// `archive` (EC2 finished), `standard` (failed or restored for good).
/// Describes only: every decision reads EC2's `StorageTier` and tier status.
pub const TIER: &str = "lifecycle:tier";
/// When EC2 finished moving the snapshot to the archive tier (RFC 3339).
pub const ARCHIVED_AT: &str = "lifecycle:archived-at";
pub(crate) const HOLD: &str = "lifecycle:hold";
/// Set by the user on an instance (`true`): permits the `stopped` consistency mode.
pub const ALLOW_STOP: &str = "lifecycle:allow-stop";
/// Set by create-snapshots on an instance it stopped for a `stopped`
/// snapshot (value: the deployment), removed once it has started it again.
/// A marker for people only: anyone can write it, so what a later run
/// restarts is what the stack's ledger recorded, never what carries it.
pub const STOPPED_FOR_SNAPSHOT: &str = "lifecycle:stopped-for-snapshot";
/// On a volume `ebs-lifecycle restore` made: the snapshot it was made
/// from, and when. Written once at creation, read by nothing: a label for
/// people.
pub const RESTORED_FROM: &str = "lifecycle:restored-from";
pub(crate) const RESTORED_AT: &str = "lifecycle:restored-at";
/// On a volume `restore instance --replace` detaches (written before the
/// detach): the volume restored in its place.
pub const REPLACED_BY: &str = "lifecycle:replaced-by";
/// On a volume a restore made, until the restore is done (its start
/// time): the one tag a rollback's DeleteVolume is allowed on, so the
/// restore permission cannot delete a volume a finished restore made.
pub const RESTORE_PENDING: &str = "lifecycle:restore-pending";
/// On a volume a restore drill made (docs/restore.md, "Restore drills"):
/// the drill's token, which its ledger record also holds. Written at
/// creation; the drill role may delete only volumes carrying it.
pub const DRILL: &str = "lifecycle:drill";
/// Every `lifecycle:` key above: what the adversary suites write and
/// remove, and what a check of a tag vocabulary walks.
pub const ALL: &[&str] = &[
    MANAGED_BY,
    POLICY,
    SLOT,
    STATE,
    VOLUME_ID,
    INSTANCE_ID,
    DEVICE,
    CREATED_AT,
    COMPLETED_AT,
    RETAINED_BY,
    EXPIRES_AT,
    CONSISTENCY,
    STUCK_NOTIFIED_AT,
    ENCRYPTED_COPY_OF,
    COPY_OF,
    SOURCE_REGION,
    SOURCE_ACCOUNT,
    TARGET,
    SUPERSEDED_BY,
    UNIQUE_BYTES,
    UNIQUE_BASIS,
    TIER,
    ARCHIVED_AT,
    HOLD,
    ALLOW_STOP,
    STOPPED_FOR_SNAPSHOT,
    RESTORED_FROM,
    RESTORED_AT,
    REPLACED_BY,
    RESTORE_PENDING,
    DRILL,
];

/// Prefix of every key this project owns.
pub const LIFECYCLE_PREFIX: &str = "lifecycle:";
/// Prefix EC2 reserves; such keys are never copied or written.
pub(crate) const AWS_PREFIX: &str = "aws:";
pub const NAME: &str = "Name";

/// EC2's limits on tags (per resource, per key, per value).
pub const MAX_TAGS_PER_RESOURCE: usize = 50;
pub(crate) const MAX_KEY_CHARS: usize = 128;
pub(crate) const MAX_VALUE_CHARS: usize = 256;

/// RFC 3339 in UTC with second precision and a `Z`, the format of every time tag.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `lifecycle:state`: the user's view of where a snapshot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifecycleState {
    Pending,
    Completed,
    Failed,
}

impl LifecycleState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "completed" => Some(Self::Completed),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// `lifecycle:consistency`: how the snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsistencyLabel {
    /// One volume on its own (crash-consistent).
    Crash,
    /// All of an instance's volumes together (CreateSnapshots).
    Instance,
    /// Filesystems frozen around the snapshot.
    Application,
    /// Application consistency was asked for but could not be had; taken crash-consistent.
    CrashFallback,
    /// The instance was stopped.
    Stopped,
}

impl ConsistencyLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crash => "crash",
            Self::Instance => "instance",
            Self::Application => "application",
            Self::CrashFallback => "crash-fallback",
            Self::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "crash" => Some(Self::Crash),
            "instance" => Some(Self::Instance),
            "application" => Some(Self::Application),
            "crash-fallback" => Some(Self::CrashFallback),
            "stopped" => Some(Self::Stopped),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    /// A key added above and forgotten in [`super::ALL`] would be a key no
    /// adversary ever writes.
    #[test]
    fn all_lists_every_lifecycle_key_once() {
        let declared: Vec<&str> = include_str!("keys.rs")
            .lines()
            .filter(|l| {
                (l.starts_with("pub const ") || l.starts_with("pub(crate) const "))
                    && !l.contains("LIFECYCLE_PREFIX")
            })
            .filter_map(|l| l.split_once("= \"lifecycle:"))
            .filter_map(|(_, rest)| rest.strip_suffix("\";"))
            .collect();
        let mut all: Vec<&str> = super::ALL
            .iter()
            .map(|k| k.trim_start_matches(super::LIFECYCLE_PREFIX))
            .collect();
        let mut declared = declared;
        all.sort_unstable();
        declared.sort_unstable();
        assert_eq!(all, declared);
    }
}

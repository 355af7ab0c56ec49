//! Domain types: what the functions reason about, free of SDK types.
//!
//! The AWS adapters (`crate::aws`) convert SDK shapes into these at the edge,
//! so the rest of the code (and its tests) never sees an `aws_sdk_ec2` type.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

/// EC2 resource tags, ordered by key so rendering and comparisons are stable.
pub type Tags = BTreeMap<String, String>;

/// Where a volume is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub instance_id: String,
    /// The device name the instance sees, e.g. `/dev/xvdf`.
    pub device: String,
}

/// An EBS volume as an instance's block device mapping lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    pub volume_id: String,
    pub device: String,
}

/// An EBS volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub id: String,
    pub size_gib: i32,
    pub encrypted: bool,
    /// EC2's volume type (`gp3`, `io2`, `st1`, ...), when it said; a
    /// policy's `exclude.volume_types` reads it.
    pub volume_type: Option<String>,
    pub tags: Tags,
    /// The first attachment, if any. Multi-attach volumes are snapshotted once,
    /// described through their first instance.
    pub attachment: Option<Attachment>,
}

impl Volume {
    pub fn name(&self) -> Option<&str> {
        self.tags.get("Name").map(String::as_str)
    }
}

/// An EC2 instance as far as snapshots care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub state: String,
    /// EC2's reason for the last state change (`StateReason`), e.g.
    /// `Client.InternalError: Client error on launch` when a start fell
    /// back to stopped.
    pub state_reason: Option<String>,
    /// The device name of the root volume, e.g. `/dev/xvda`.
    pub root_device: Option<String>,
    /// When a user (or a role) last stopped it, from EC2's
    /// `StateTransitionReason` ([`user_initiated_at`]).
    pub stopped_at: Option<DateTime<Utc>>,
    pub tags: Tags,
    /// The EBS volumes attached to it, from its block device mappings.
    pub volumes: Vec<BlockDevice>,
}

/// The time in EC2's `StateTransitionReason` of a stop someone asked for:
/// `User initiated (2026-11-30 20:00:00 GMT)` (EC2; moto says `UTC`).
pub fn user_initiated_at(reason: &str) -> Option<DateTime<Utc>> {
    let inner = reason
        .trim()
        .strip_prefix("User initiated (")?
        .strip_suffix(')')?;
    let time = inner
        .strip_suffix(" GMT")
        .or_else(|| inner.strip_suffix(" UTC"))?;
    chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

impl Instance {
    pub fn name(&self) -> Option<&str> {
        self.tags.get("Name").map(String::as_str)
    }
}

/// EC2's own state of a snapshot (not the `lifecycle:state` tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotState {
    Pending,
    Completed,
    Error,
    /// `recoverable`, `recovering`, or a state this code does not know yet.
    Other,
}

impl SnapshotState {
    pub fn parse(s: &str) -> Self {
        match s {
            "pending" => Self::Pending,
            "completed" => Self::Completed,
            "error" => Self::Error,
            _ => Self::Other,
        }
    }
}

/// EC2 places a volume's copies at this placeholder volume id.
pub const COPY_VOLUME_ID: &str = "vol-ffffffff";

/// An EBS snapshot owned by the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    /// EC2's `VolumeId` attribute. For copies EC2 reports a placeholder
    /// (`vol-ffffffff`); the `lifecycle:volume-id` tag is authoritative when set.
    pub volume_id: Option<String>,
    pub state: SnapshotState,
    pub start_time: Option<DateTime<Utc>>,
    pub volume_size_gib: Option<i32>,
    /// EC2's `FullSnapshotSizeInBytes`: every block the snapshot holds,
    /// its own and those it shares (what the archive tier would store).
    pub full_size_bytes: Option<u64>,
    /// EC2 reports it in the archive tier (`StorageTier`).
    pub archived: bool,
    /// EC2's `RestoreExpiryTime`: an archived snapshot restored for a while.
    pub restore_expiry: Option<DateTime<Utc>>,
    pub encrypted: bool,
    /// The KMS key ARN EC2 reports for an encrypted snapshot.
    pub kms_key_id: Option<String>,
    /// Set at creation and never changed by any EC2 call: what proves who
    /// made the snapshot (`crate::ownership`).
    pub description: Option<String>,
    /// EC2's `OwnerId`: the account.
    pub owner_id: Option<String>,
    pub tags: Tags,
}

impl Snapshot {
    /// In the archive tier, or restored from it for a while: what the
    /// archive tier's rules (restores, early deletion) concern.
    pub fn in_archive_tier(&self) -> bool {
        self.archived || self.restore_expiry.is_some()
    }

    /// For an encrypted copy check-encryption made: the original it replaces.
    pub fn encrypted_copy_of(&self) -> Option<&str> {
        self.tags
            .get(crate::keys::ENCRYPTED_COPY_OF)
            .map(String::as_str)
    }

    /// For a disaster-recovery copy in another region: its source snapshot.
    pub fn copy_of(&self) -> Option<&str> {
        self.tags.get(crate::keys::COPY_OF).map(String::as_str)
    }

    /// A copy of any kind (encrypted here, or disaster recovery elsewhere):
    /// it stands for its source's moment and counts once completed.
    pub fn is_copy(&self) -> bool {
        self.encrypted_copy_of().is_some() || self.copy_of().is_some()
    }

    /// The time retention places the snapshot at. A copy is placed at its
    /// original's time (it carries the original's `lifecycle:created-at`):
    /// copying last year's snapshot today does not make it today's.
    pub fn retention_time(&self) -> Option<DateTime<Utc>> {
        if self.is_copy() {
            if let Some(t) = self
                .tags
                .get(crate::keys::CREATED_AT)
                .and_then(|v| crate::keys::parse_time(v))
            {
                return Some(t);
            }
        }
        self.start_time
    }

    /// True when the copy is done: EC2 says completed and so does its
    /// `lifecycle:state` (set by complete-snapshots on the copy's event).
    pub fn is_completed_copy(&self) -> bool {
        self.is_copy()
            && self.state == SnapshotState::Completed
            && self.tags.get(crate::keys::STATE).map(String::as_str) == Some("completed")
    }

    /// Whether retention counts this snapshot, given the ids of the completed
    /// copies known: an original whose copy is completed is replaced by it;
    /// a copy counts only once completed. Until then the original counts, so
    /// at no moment is neither counted.
    pub fn counts_for_retention(&self, completed_copies: &BTreeSet<&str>) -> bool {
        if self.is_copy() {
            return self.is_completed_copy();
        }
        match self.tags.get(crate::keys::SUPERSEDED_BY) {
            Some(copy) => !completed_copies.contains(copy.as_str()),
            None => true,
        }
    }

    /// True when an original's encrypted copy is completed (see
    /// [`Self::counts_for_retention`]): it may go, whatever its policy keeps.
    pub fn is_superseded(&self, completed_copies: &BTreeSet<&str>) -> bool {
        self.tags
            .get(crate::keys::SUPERSEDED_BY)
            .is_some_and(|c| completed_copies.contains(c.as_str()))
    }
}

/// The ids of the completed encrypted copies among `snapshots`.
pub fn completed_copies<'a>(
    snapshots: impl IntoIterator<Item = &'a Snapshot>,
) -> BTreeSet<&'a str> {
    snapshots
        .into_iter()
        .filter(|s| s.is_completed_copy())
        .map(|s| s.id.as_str())
        .collect()
}

impl Snapshot {
    /// The source volume: the `lifecycle:volume-id` tag if present, else EC2's attribute.
    pub fn source_volume_id(&self) -> Option<&str> {
        self.tags
            .get(crate::keys::VOLUME_ID)
            .map(String::as_str)
            .or(self.volume_id.as_deref())
    }
}

#[cfg(test)]
mod stop_time_tests {
    use super::*;

    #[test]
    fn the_time_of_a_stop_a_user_asked_for() {
        let t = crate::keys::parse_time("2026-11-30T20:00:05Z");
        assert_eq!(
            user_initiated_at("User initiated (2026-11-30 20:00:05 GMT)"),
            t
        );
        assert_eq!(
            user_initiated_at("User initiated (2026-11-30 20:00:05 UTC)"),
            t
        );
        for other in [
            "",
            "Server.ScheduledStop",
            "User initiated",
            "User initiated (yesterday)",
            "User initiated (2026-11-30 20:00:05 CET)",
        ] {
            assert_eq!(user_initiated_at(other), None, "{other}");
        }
    }
}

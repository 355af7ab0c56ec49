//! Domain types: what the functions reason about, free of SDK types.
//!
//! The AWS adapters (`crate::aws`) convert SDK shapes into these at the edge,
//! so the rest of the code (and its tests) never sees an `aws_sdk_ec2` type.

use std::collections::BTreeMap;

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
    /// The device name of the root volume, e.g. `/dev/xvda`.
    pub root_device: Option<String>,
    pub tags: Tags,
    /// The EBS volumes attached to it, from its block device mappings.
    pub volumes: Vec<BlockDevice>,
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
    pub encrypted: bool,
    pub tags: Tags,
}

impl Snapshot {
    /// The source volume: the `lifecycle:volume-id` tag if present, else EC2's attribute.
    pub fn source_volume_id(&self) -> Option<&str> {
        self.tags
            .get(crate::tags::VOLUME_ID)
            .map(String::as_str)
            .or(self.volume_id.as_deref())
    }
}

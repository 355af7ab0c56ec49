//! The EC2 adapter: narrow ports (one trait per concern) and their
//! implementation on the real SDK client.
//!
//! Everything that crosses this boundary is a domain type; SDK shapes stay
//! here. EC2 error codes are not modelled by the SDK, so they are matched on
//! `.code()` and become [`Ec2Error`] variants the functions can act on.

use async_trait::async_trait;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, InstanceSpecification, ResourceType, Tag, TagSpecification};
use aws_sdk_ec2::Client;
use chrono::{DateTime, Utc};

use crate::model::{Attachment, BlockDevice, Instance, Snapshot, SnapshotState, Tags, Volume};
use crate::tags::{self, LifecycleState};

/// DescribeVolumes pages hold at most 500; DescribeInstances and
/// DescribeSnapshots at most 1000. Always paging keeps responses bounded.
const VOLUME_PAGE: i32 = 500;
const INSTANCE_PAGE: i32 = 1000;
const SNAPSHOT_PAGE: i32 = 1000;
/// EC2 accepts at most 200 values in one filter.
const FILTER_VALUES: usize = 200;
/// CreateTags takes up to 1000 resource ids; EC2 recommends smaller batches.
const TAG_BATCH: usize = 500;

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
    #[error("the resource is in a state that does not allow this (IncorrectState): {message}")]
    IncorrectState { message: String },
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
    fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let message = err.message().unwrap_or_default().to_string();
        match err.code() {
            Some("InvalidVolume.NotFound") => Self::VolumeNotFound,
            Some("InvalidInstanceID.NotFound") => Self::InstanceNotFound,
            Some("ConcurrentSnapshotLimitExceeded") => Self::ConcurrentSnapshotLimitExceeded,
            Some("SnapshotCreationPerVolumeRateExceeded") => {
                Self::SnapshotCreationPerVolumeRateExceeded
            }
            Some(code @ ("RequestLimitExceeded" | "Throttling" | "ThrottlingException")) => {
                Self::Throttled { code: code.into() }
            }
            Some("IncorrectState") => Self::IncorrectState { message },
            Some(code) => Self::Service {
                operation,
                code: code.into(),
                message,
            },
            None => Self::Transport {
                operation,
                message: aws_sdk_ec2::error::DisplayErrorContext(&err).to_string(),
            },
        }
    }

    /// A short stable name for summaries and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::VolumeNotFound => "volume-not-found",
            Self::InstanceNotFound => "instance-not-found",
            Self::ConcurrentSnapshotLimitExceeded => "concurrent-snapshot-limit",
            Self::SnapshotCreationPerVolumeRateExceeded => "per-volume-rate",
            Self::Throttled { .. } => "throttled",
            Self::IncorrectState { .. } => "incorrect-state",
            Self::Service { .. } => "service-error",
            Self::Transport { .. } => "transport-error",
        }
    }
}

/// Finding the volumes and instances that opted in.
#[async_trait]
pub trait VolumeInventory: Send + Sync {
    /// Volumes that carry the tag key, in a usable state (server-side filter).
    async fn volumes_tagged(&self, tag_key: &str) -> Result<Vec<Volume>, Ec2Error>;
    /// Instances that carry the tag key and are not terminated (server-side filter).
    async fn instances_tagged(&self, tag_key: &str) -> Result<Vec<Instance>, Ec2Error>;
    /// Every volume attached to one of these instances.
    async fn volumes_attached_to(&self, instance_ids: &[String]) -> Result<Vec<Volume>, Ec2Error>;
}

/// Looking up snapshots the account owns.
#[async_trait]
pub trait SnapshotCatalog: Send + Sync {
    /// The managed snapshots of one policy and slot.
    async fn snapshots_for_slot(
        &self,
        deployment: &str,
        policy: &str,
        slot: DateTime<Utc>,
    ) -> Result<Vec<Snapshot>, Ec2Error>;

    /// These snapshots, if the account owns them. Ids that do not exist (or
    /// are not visible yet) are simply absent from the answer.
    async fn snapshots_by_id(&self, ids: &[String]) -> Result<Vec<Snapshot>, Ec2Error>;

    /// The deployment's snapshots whose `lifecycle:state` tag has this value.
    async fn managed_snapshots_in_state(
        &self,
        deployment: &str,
        state: LifecycleState,
    ) -> Result<Vec<Snapshot>, Ec2Error>;
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

/// The ports implemented on the SDK client.
#[derive(Debug, Clone)]
pub struct Ec2Adapter {
    client: Client,
}

impl Ec2Adapter {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn filter(name: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().map(Into::into).collect()))
        .build()
}

fn tag_specification(tags: &Tags) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(ResourceType::Snapshot)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build()
}

fn tags_of(tags: Option<&[Tag]>) -> Tags {
    tags.unwrap_or_default()
        .iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

fn time_of(t: Option<&aws_sdk_ec2::primitives::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

fn volume_of(v: &aws_sdk_ec2::types::Volume) -> Option<Volume> {
    let attachment = v.attachments().iter().find_map(|a| {
        Some(Attachment {
            instance_id: a.instance_id()?.to_string(),
            device: a.device().unwrap_or_default().to_string(),
        })
    });
    Some(Volume {
        id: v.volume_id()?.to_string(),
        size_gib: v.size().unwrap_or_default(),
        encrypted: v.encrypted().unwrap_or_default(),
        tags: tags_of(Some(v.tags())),
        attachment,
    })
}

fn instance_of(i: &aws_sdk_ec2::types::Instance) -> Option<Instance> {
    Some(Instance {
        id: i.instance_id()?.to_string(),
        state: i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        root_device: i.root_device_name().map(String::from),
        tags: tags_of(Some(i.tags())),
        volumes: i
            .block_device_mappings()
            .iter()
            .filter_map(|m| {
                Some(BlockDevice {
                    volume_id: m.ebs()?.volume_id()?.to_string(),
                    device: m.device_name()?.to_string(),
                })
            })
            .collect(),
    })
}

/// Convert an SDK snapshot. Public so other adapters (and tests) agree on it.
pub fn snapshot_of(s: &aws_sdk_ec2::types::Snapshot) -> Option<Snapshot> {
    Some(Snapshot {
        id: s.snapshot_id()?.to_string(),
        volume_id: s.volume_id().map(String::from),
        state: SnapshotState::parse(s.state().map(|s| s.as_str()).unwrap_or_default()),
        start_time: time_of(s.start_time()),
        volume_size_gib: s.volume_size(),
        encrypted: s.encrypted().unwrap_or_default(),
        tags: tags_of(Some(s.tags())),
    })
}

impl Ec2Adapter {
    /// Every snapshot the account owns matching `filters`, page by page.
    async fn describe_snapshots(&self, filters: Vec<Filter>) -> Result<Vec<Snapshot>, Ec2Error> {
        let snapshots: Vec<_> = self
            .client
            .describe_snapshots()
            .owner_ids("self")
            .set_filters(Some(filters))
            .max_results(SNAPSHOT_PAGE)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Ec2Error::from_sdk("DescribeSnapshots", e))?;
        Ok(snapshots.iter().filter_map(snapshot_of).collect())
    }

    /// Every volume matching `filters`, page by page.
    async fn describe_volumes(&self, filters: Vec<Filter>) -> Result<Vec<Volume>, Ec2Error> {
        let volumes: Vec<_> = self
            .client
            .describe_volumes()
            .set_filters(Some(filters))
            .max_results(VOLUME_PAGE)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Ec2Error::from_sdk("DescribeVolumes", e))?;
        Ok(volumes.iter().filter_map(volume_of).collect())
    }
}

#[async_trait]
impl VolumeInventory for Ec2Adapter {
    async fn volumes_tagged(&self, tag_key: &str) -> Result<Vec<Volume>, Ec2Error> {
        self.describe_volumes(vec![
            filter("tag-key", [tag_key]),
            filter("status", ["available", "in-use"]),
        ])
        .await
    }

    async fn instances_tagged(&self, tag_key: &str) -> Result<Vec<Instance>, Ec2Error> {
        let reservations: Vec<_> = self
            .client
            .describe_instances()
            .filters(filter("tag-key", [tag_key]))
            .filters(filter(
                "instance-state-name",
                ["pending", "running", "stopping", "stopped"],
            ))
            .max_results(INSTANCE_PAGE)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Ec2Error::from_sdk("DescribeInstances", e))?;
        Ok(reservations
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(instance_of)
            .collect())
    }

    async fn volumes_attached_to(&self, instance_ids: &[String]) -> Result<Vec<Volume>, Ec2Error> {
        let mut out = Vec::new();
        for chunk in instance_ids.chunks(FILTER_VALUES) {
            let filters = vec![filter("attachment.instance-id", chunk.iter().cloned())];
            out.extend(self.describe_volumes(filters).await?);
        }
        Ok(out)
    }
}

fn tag_filter(key: &str, value: &str) -> Filter {
    filter(&format!("tag:{key}"), [value])
}

#[async_trait]
impl SnapshotCatalog for Ec2Adapter {
    async fn snapshots_for_slot(
        &self,
        deployment: &str,
        policy: &str,
        slot: DateTime<Utc>,
    ) -> Result<Vec<Snapshot>, Ec2Error> {
        self.describe_snapshots(vec![
            tag_filter(tags::MANAGED_BY, deployment),
            tag_filter(tags::POLICY, policy),
            tag_filter(tags::SLOT, &tags::format_time(slot)),
        ])
        .await
    }

    async fn snapshots_by_id(&self, ids: &[String]) -> Result<Vec<Snapshot>, Ec2Error> {
        let mut out = Vec::new();
        for chunk in ids.chunks(FILTER_VALUES) {
            // A filter, not SnapshotIds: an unknown id must not fail the whole call.
            let filters = vec![filter("snapshot-id", chunk.iter().cloned())];
            out.extend(self.describe_snapshots(filters).await?);
        }
        Ok(out)
    }

    async fn managed_snapshots_in_state(
        &self,
        deployment: &str,
        state: LifecycleState,
    ) -> Result<Vec<Snapshot>, Ec2Error> {
        self.describe_snapshots(vec![
            tag_filter(tags::MANAGED_BY, deployment),
            tag_filter(tags::STATE, state.as_str()),
        ])
        .await
    }
}

#[async_trait]
impl SnapshotTagger for Ec2Adapter {
    async fn tag_snapshots(&self, ids: &[String], tags: &Tags) -> Result<(), Ec2Error> {
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        for chunk in ids.chunks(TAG_BATCH) {
            self.client
                .create_tags()
                .set_resources(Some(chunk.to_vec()))
                .set_tags(Some(tags.clone()))
                .send()
                .await
                .map_err(|e| Ec2Error::from_sdk("CreateTags", e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl SnapshotCreator for Ec2Adapter {
    async fn create_snapshot(
        &self,
        request: &CreateSnapshotRequest,
    ) -> Result<StartedSnapshot, Ec2Error> {
        let out = self
            .client
            .create_snapshot()
            .volume_id(&request.volume_id)
            .description(&request.description)
            .tag_specifications(tag_specification(&request.tags))
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("CreateSnapshot", e))?;
        Ok(StartedSnapshot {
            snapshot_id: out.snapshot_id().unwrap_or_default().to_string(),
            volume_id: out.volume_id().unwrap_or(&request.volume_id).to_string(),
        })
    }

    async fn create_instance_snapshots(
        &self,
        request: &CreateInstanceSnapshotsRequest,
    ) -> Result<Vec<StartedSnapshot>, Ec2Error> {
        let spec = InstanceSpecification::builder()
            .instance_id(&request.instance_id)
            .exclude_boot_volume(request.exclude_boot_volume)
            .set_exclude_data_volume_ids(
                (!request.exclude_volume_ids.is_empty())
                    .then(|| request.exclude_volume_ids.clone()),
            )
            .build();
        let out = self
            .client
            .create_snapshots()
            .instance_specification(spec)
            .description(&request.description)
            .tag_specifications(tag_specification(&request.tags))
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("CreateSnapshots", e))?;
        Ok(out
            .snapshots()
            .iter()
            .filter_map(|s| {
                Some(StartedSnapshot {
                    snapshot_id: s.snapshot_id()?.to_string(),
                    volume_id: s.volume_id().unwrap_or_default().to_string(),
                })
            })
            .collect())
    }
}

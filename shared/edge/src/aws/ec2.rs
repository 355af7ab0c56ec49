//! The EC2 adapter: the ports of [`crate::ports::ec2`] implemented on the
//! real SDK client.
//!
//! Everything that crosses this boundary is a domain type; SDK shapes stay
//! here. EC2 error codes are not modelled by the SDK, so they are matched on
//! `.code()` and become [`Ec2Error`] variants the functions can act on.

use async_trait::async_trait;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    Filter, InstanceSpecification, OperationType, ResourceType, SnapshotAttributeName, Tag,
    TagSpecification,
};
use aws_sdk_ec2::Client;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use ebs_lifecycle_core::drills::VolumeFacts;
use ebs_lifecycle_core::encryption::Permissions;
use ebs_lifecycle_core::model::{
    Attachment, BlockDevice, Instance, Snapshot, SnapshotState, Tags, Volume,
};
use ebs_lifecycle_core::ownership::{self, Identity};
use ebs_lifecycle_core::restore::{SourceVolume, VolumeSpec};
use ebs_lifecycle_core::safety::Authorized;
use ebs_lifecycle_core::tags::{self, LifecycleState};

use super::RetryOnlyThrottling;
use crate::ports::ec2::*;

/// DescribeVolumes pages hold at most 500; DescribeInstances and
/// DescribeSnapshots at most 1000. Always paging keeps responses bounded.
const VOLUME_PAGE: i32 = 500;
const INSTANCE_PAGE: i32 = 1000;
const SNAPSHOT_PAGE: i32 = 1000;
/// EC2 accepts at most 200 values in one filter.
const FILTER_VALUES: usize = 200;

impl Ec2Error {
    pub(crate) fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
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
            Some("IncorrectState" | "IncorrectInstanceState") => Self::IncorrectState { message },
            Some("InvalidSnapshot.InUse") => Self::SnapshotInUse { message },
            Some("InvalidSnapshot.NotFound") => Self::SnapshotNotFound,
            Some("ResourceLimitExceeded") => Self::ResourceLimitExceeded,
            Some(code)
                if code.starts_with("KMS")
                    || code.starts_with("InvalidKMSKey")
                    || code == "InvalidKeyId"
                    || code == "DisabledException"
                    || code == "NotFoundException" && operation == "CopySnapshot" =>
            {
                Self::KeyUnusable {
                    code: code.into(),
                    message,
                }
            }
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
}

/// Per-call configuration applying [`RetryOnlyThrottling`].
fn only_throttling_retried() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default().retry_classifier(RetryOnlyThrottling)
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

/// An EC2 filter on literal values. EC2 reads `*` and `?` in a filter
/// value as wildcards (and `\\` as their escape), and some values reach a
/// filter from tags anyone can write (a `lifecycle:volume-id` of `*` would
/// list the whole account in one batch): no id, name or time this code
/// looks for contains one, so a value that does is dropped, never sent.
/// A filter left with no value matches nothing ([`NO_MATCH`]).
fn filter(name: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Filter {
    let mut literal: Vec<String> = values
        .into_iter()
        .map(Into::into)
        .filter(|v: &String| {
            let wild = v.contains(['*', '?', '\\']);
            if wild {
                tracing::warn!(filter = name, value = %ebs_lifecycle_core::text::excerpt(v), "a wildcard value in a filter dropped");
            }
            !wild
        })
        .collect();
    if literal.is_empty() {
        literal.push(NO_MATCH.into());
    }
    Filter::builder()
        .name(name)
        .set_values(Some(literal))
        .build()
}

/// A filter value that no id and no tag value can equal: 257 characters,
/// one more than EC2 allows in a tag value (and far longer than any id).
const NO_MATCH: &str = "no-literal-value-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

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
        volume_type: v.volume_type().map(|t| t.as_str().to_string()),
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
        state_reason: i
            .state_reason()
            .and_then(|r| r.message().or(r.code()))
            .map(String::from),
        root_device: i.root_device_name().map(String::from),
        stopped_at: i
            .state_transition_reason()
            .and_then(ebs_lifecycle_core::model::user_initiated_at),
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
        full_size_bytes: s
            .full_snapshot_size_in_bytes()
            .and_then(|b| u64::try_from(b).ok()),
        archived: s.storage_tier() == Some(&aws_sdk_ec2::types::StorageTier::Archive),
        restore_expiry: time_of(s.restore_expiry_time()),
        encrypted: s.encrypted().unwrap_or_default(),
        kms_key_id: s.kms_key_id().map(String::from),
        description: s.description().map(String::from),
        owner_id: s.owner_id().map(String::from),
        tags: tags_of(Some(s.tags())),
    })
}

/// Every value of DescribeSnapshotTierStatus' `last-tiering-operation`
/// filter (EC2's API reference).
const TIERING_OPERATIONS: [&str; 9] = [
    "archival-in-progress",
    "archival-completed",
    "archival-failed",
    "permanent-restore-in-progress",
    "permanent-restore-completed",
    "permanent-restore-failed",
    "temporary-restore-in-progress",
    "temporary-restore-completed",
    "temporary-restore-failed",
];

impl Ec2Adapter {
    /// Every snapshot the account owns matching `filters`, page by page.
    ///
    /// Each page is converted and dropped before the next is read: on an
    /// account with tens of thousands of snapshots the SDK's types for all of
    /// them never exist at once, only our (smaller) model.
    async fn describe_snapshots(&self, filters: Vec<Filter>) -> Result<Vec<Snapshot>, Ec2Error> {
        self.describe_snapshots_of(vec!["self".into()], None, filters)
            .await
    }

    /// [`Self::describe_snapshots`] for `owners`, and restorable by
    /// `restorable_by` if given (what is shared).
    async fn describe_snapshots_of(
        &self,
        owners: Vec<String>,
        restorable_by: Option<&str>,
        filters: Vec<Filter>,
    ) -> Result<Vec<Snapshot>, Ec2Error> {
        let mut request = self
            .client
            .describe_snapshots()
            .set_owner_ids(Some(owners))
            .max_results(SNAPSHOT_PAGE);
        if !filters.is_empty() {
            request = request.set_filters(Some(filters));
        }
        if let Some(account) = restorable_by {
            request = request.restorable_by_user_ids(account);
        }
        let mut pages = request.into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Ec2Error::from_sdk("DescribeSnapshots", e))?;
            out.extend(page.snapshots().iter().filter_map(snapshot_of));
        }
        Ok(out)
    }

    /// Every instance matching `filters`, page by page.
    async fn describe_instances(&self, filters: Vec<Filter>) -> Result<Vec<Instance>, Ec2Error> {
        let reservations: Vec<_> = self
            .client
            .describe_instances()
            .set_filters(Some(filters))
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
    async fn all_volumes(&self) -> Result<Vec<Volume>, Ec2Error> {
        self.describe_volumes(vec![filter("status", ["available", "in-use"])])
            .await
    }

    async fn volumes_tagged(&self, tag_key: &str) -> Result<Vec<Volume>, Ec2Error> {
        self.describe_volumes(vec![
            filter("tag-key", [tag_key]),
            filter("status", ["available", "in-use"]),
        ])
        .await
    }

    async fn instances_tagged(&self, tag_key: &str) -> Result<Vec<Instance>, Ec2Error> {
        self.describe_instances(vec![
            filter("tag-key", [tag_key]),
            filter(
                "instance-state-name",
                ["pending", "running", "stopping", "stopped"],
            ),
        ])
        .await
    }

    async fn volumes_attached_to(&self, instance_ids: &[String]) -> Result<Vec<Volume>, Ec2Error> {
        let mut out = Vec::new();
        for chunk in instance_ids.chunks(FILTER_VALUES) {
            let filters = vec![filter("attachment.instance-id", chunk.iter().cloned())];
            out.extend(self.describe_volumes(filters).await?);
        }
        Ok(out)
    }

    async fn volumes_by_id(&self, volume_ids: &[String]) -> Result<Vec<Volume>, Ec2Error> {
        let mut out = Vec::new();
        for chunk in volume_ids.chunks(FILTER_VALUES) {
            // A filter, not VolumeIds: a deleted volume must not fail the call.
            let filters = vec![filter("volume-id", chunk.iter().cloned())];
            out.extend(self.describe_volumes(filters).await?);
        }
        Ok(out)
    }

    async fn instances_by_id(&self, instance_ids: &[String]) -> Result<Vec<Instance>, Ec2Error> {
        let mut out = Vec::new();
        for chunk in instance_ids.chunks(FILTER_VALUES) {
            // A filter, not InstanceIds: a terminated instance must not fail the call.
            let filters = vec![filter("instance-id", chunk.iter().cloned())];
            out.extend(self.describe_instances(filters).await?);
        }
        Ok(out)
    }
}

/// A snapshot of a volume that claims to be the deployment's: by its tag,
/// or by its Description (a slot's snapshot whose `managed-by` was removed
/// still fills its slot). The ownership check decides.
fn claims(s: &Snapshot, deployment: &str) -> bool {
    tags::is_managed_by(&s.tags, deployment)
        || s.description
            .as_deref()
            .is_some_and(|d| ownership::names_deployment(d, deployment))
}

fn tag_filter(key: &str, value: &str) -> Filter {
    filter(&format!("tag:{key}"), [value])
}

/// The deployment's snapshots of `chunk` (up to 200 volumes): those its
/// `lifecycle:volume-id` tag names, then those EC2's `VolumeId` names
/// unless their tag names a volume elsewhere (it belongs there).
fn merge_managed(
    out: &mut BTreeMap<String, Snapshot>,
    chunk: &[String],
    by_tag: Vec<Snapshot>,
    by_attribute: Vec<Snapshot>,
) {
    let requested: BTreeSet<&str> = chunk.iter().map(String::as_str).collect();
    for s in by_tag {
        out.insert(s.id.clone(), s);
    }
    for s in by_attribute {
        let tagged_elsewhere = s
            .tags
            .get(tags::VOLUME_ID)
            .is_some_and(|v| !requested.contains(v.as_str()));
        if !tagged_elsewhere {
            out.entry(s.id.clone()).or_insert(s);
        }
    }
}

impl Ec2Adapter {
    /// The deployment's snapshots whose `lifecycle:volume-id` names one of
    /// `chunk` (up to 200 volumes).
    async fn managed_by_volume_tag(
        &self,
        deployment: &str,
        chunk: &[String],
    ) -> Result<Vec<Snapshot>, Ec2Error> {
        self.describe_snapshots(vec![
            tag_filter(tags::MANAGED_BY, deployment),
            filter(&format!("tag:{}", tags::VOLUME_ID), chunk.iter().cloned()),
        ])
        .await
    }
}

#[async_trait]
impl SnapshotCatalog for Ec2Adapter {
    async fn snapshots_for_slot(
        &self,
        identity: &Identity,
        policy: &str,
        slot: DateTime<Utc>,
    ) -> Result<Vec<Snapshot>, Ec2Error> {
        // The one wildcard this adapter sends, made of the configuration's
        // names and a time, never of a tag.
        let pattern = Filter::builder()
            .name("description")
            .values(identity.slot_pattern(policy, slot))
            .build();
        self.describe_snapshots(vec![pattern]).await
    }

    async fn managed_snapshots_of_policies(
        &self,
        deployment: &str,
        policies: &[String],
    ) -> Result<Vec<Snapshot>, Ec2Error> {
        let mut out = Vec::new();
        for chunk in policies.chunks(FILTER_VALUES) {
            out.extend(
                self.describe_snapshots(vec![
                    tag_filter(tags::MANAGED_BY, deployment),
                    filter(&format!("tag:{}", tags::POLICY), chunk.iter().cloned()),
                ])
                .await?,
            );
        }
        Ok(out)
    }

    async fn copies_from(
        &self,
        deployment: &str,
        source_region: &str,
    ) -> Result<Vec<Snapshot>, Ec2Error> {
        self.describe_snapshots(vec![
            tag_filter(tags::MANAGED_BY, deployment),
            tag_filter(tags::SOURCE_REGION, source_region),
        ])
        .await
    }

    async fn shared_with_me(&self, owners: &[String]) -> Result<Vec<Snapshot>, Ec2Error> {
        if owners.is_empty() {
            return Ok(Vec::new());
        }
        self.describe_snapshots_of(owners.to_vec(), Some("self"), Vec::new())
            .await
    }

    async fn shared_with(&self, account: &str) -> Result<Vec<Snapshot>, Ec2Error> {
        self.describe_snapshots_of(vec!["self".into()], Some(account), Vec::new())
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

    async fn managed_snapshots(&self, deployment: &str) -> Result<Vec<Snapshot>, Ec2Error> {
        self.describe_snapshots(vec![tag_filter(tags::MANAGED_BY, deployment)])
            .await
    }

    async fn owned_snapshots(&self) -> Result<Vec<Snapshot>, Ec2Error> {
        self.describe_snapshots(Vec::new()).await
    }

    async fn owned_snapshots_of_volumes(
        &self,
        volume_ids: &[String],
    ) -> Result<Vec<Snapshot>, Ec2Error> {
        let mut out = Vec::new();
        for chunk in volume_ids.chunks(FILTER_VALUES) {
            out.extend(
                self.describe_snapshots(vec![filter("volume-id", chunk.iter().cloned())])
                    .await?,
            );
        }
        Ok(out)
    }

    fn owned_snapshot_pages(
        &self,
    ) -> futures::stream::BoxStream<'_, Result<Vec<Snapshot>, Ec2Error>> {
        let pages = self
            .client
            .describe_snapshots()
            .owner_ids("self")
            .max_results(SNAPSHOT_PAGE)
            .into_paginator()
            .send();
        Box::pin(futures::stream::unfold(pages, |mut pages| async move {
            let page = pages.next().await?;
            let converted = page
                .map(|p| p.snapshots().iter().filter_map(snapshot_of).collect())
                .map_err(|e| Ec2Error::from_sdk("DescribeSnapshots", e));
            Some((converted, pages))
        }))
    }

    async fn encrypted_copies(&self, deployment: &str) -> Result<Vec<Snapshot>, Ec2Error> {
        self.describe_snapshots(vec![
            tag_filter(tags::MANAGED_BY, deployment),
            filter("tag-key", [tags::ENCRYPTED_COPY_OF]),
        ])
        .await
    }

    async fn managed_volume_ids(&self, deployment: &str) -> Result<BTreeSet<String>, Ec2Error> {
        let mut pages = self
            .client
            .describe_snapshots()
            .owner_ids("self")
            .filters(tag_filter(tags::MANAGED_BY, deployment))
            .max_results(SNAPSHOT_PAGE)
            .into_paginator()
            .send();
        let mut out = BTreeSet::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Ec2Error::from_sdk("DescribeSnapshots", e))?;
            for s in page.snapshots() {
                let tagged = s
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some(tags::VOLUME_ID))
                    .and_then(|t| t.value());
                if let Some(v) = tagged.or(s.volume_id()) {
                    if !out.contains(v) {
                        out.insert(v.to_string());
                    }
                }
            }
        }
        Ok(out)
    }

    async fn managed_snapshots_of_volumes(
        &self,
        deployment: &str,
        volume_ids: &[String],
    ) -> Result<Vec<Snapshot>, Ec2Error> {
        let mut out = BTreeMap::new();
        for chunk in volume_ids.chunks(FILTER_VALUES) {
            // EC2 ANDs different filters, so "tag or attribute" takes two calls.
            let by_tag = self.managed_by_volume_tag(deployment, chunk).await?;
            let by_attribute = self
                .describe_snapshots(vec![filter("volume-id", chunk.iter().cloned())])
                .await?
                .into_iter()
                .filter(|s| claims(s, deployment))
                .collect();
            merge_managed(&mut out, chunk, by_tag, by_attribute);
        }
        Ok(out.into_values().collect())
    }

    async fn snapshots_of_volumes(
        &self,
        deployment: &str,
        volume_ids: &[String],
    ) -> Result<(Vec<Snapshot>, Vec<Snapshot>), Ec2Error> {
        let mut anyones = Vec::new();
        let mut managed = BTreeMap::new();
        for chunk in volume_ids.chunks(FILTER_VALUES) {
            let (of_volumes, by_tag) = tokio::try_join!(
                self.describe_snapshots(vec![filter("volume-id", chunk.iter().cloned())]),
                self.managed_by_volume_tag(deployment, chunk),
            )?;
            // The deployment's by VolumeId are among anyone's.
            let by_attribute: Vec<Snapshot> = of_volumes
                .iter()
                .filter(|s| claims(s, deployment))
                .cloned()
                .collect();
            merge_managed(&mut managed, chunk, by_tag, by_attribute);
            anyones.extend(of_volumes);
        }
        Ok((anyones, managed.into_values().collect()))
    }

    async fn unfinished_snapshots(&self, identity: &Identity) -> Result<Vec<Snapshot>, Ec2Error> {
        // The configuration's names, never a tag, make the pattern.
        let pattern = Filter::builder()
            .name("description")
            .values(identity.any_pattern())
            .build();
        self.describe_snapshots(vec![pattern, filter("status", ["pending", "error"])])
            .await
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
impl SnapshotProtections for Ec2Adapter {
    async fn ami_snapshot_ids(&self) -> Result<BTreeSet<String>, Ec2Error> {
        // DescribeImages has no paginator over owned images in every SDK
        // version; one call with MaxResults pages manually.
        let mut out = BTreeSet::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_images()
                .owners("self")
                .include_disabled(true)
                .include_deprecated(true)
                .max_results(1000)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| Ec2Error::from_sdk("DescribeImages", e))?;
            for image in page.images() {
                for mapping in image.block_device_mappings() {
                    if let Some(id) = mapping.ebs().and_then(|e| e.snapshot_id()) {
                        out.insert(id.to_string());
                    }
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    async fn tier_statuses(&self) -> Result<Vec<TierStatus>, Ec2Error> {
        // Only snapshots with a tiering operation: EC2 answers a status for
        // every snapshot otherwise (20,000 on the bench account, for the few
        // ever archived).
        let tiered = filter(
            "last-tiering-operation",
            TIERING_OPERATIONS.iter().map(|s| s.to_string()),
        );
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_snapshot_tier_status()
                .filters(tiered.clone())
                .max_results(SNAPSHOT_PAGE)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| Ec2Error::from_sdk("DescribeSnapshotTierStatus", e))?;
            out.extend(
                page.snapshot_tier_statuses()
                    .iter()
                    .filter(|s| s.last_tiering_operation_status().is_some())
                    .filter_map(|s| {
                        Some(TierStatus {
                            snapshot_id: s.snapshot_id()?.to_string(),
                            last_operation: s
                                .last_tiering_operation_status()
                                .map(|o| o.as_str().to_string()),
                            archived_at: time_of(s.archival_complete_time()),
                            restore_expiry: time_of(s.restore_expiry_time()),
                            started_at: time_of(s.last_tiering_start_time()),
                            detail: s.last_tiering_operation_status_detail().map(str::to_string),
                        })
                    }),
            );
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn locked_snapshot_ids(&self, ids: &[String]) -> Result<BTreeSet<String>, Ec2Error> {
        if ids.is_empty() {
            return Ok(BTreeSet::new());
        }
        let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        Ok(self
            .all_locked_snapshot_ids()
            .await?
            .into_iter()
            .filter(|id| wanted.contains(id.as_str()))
            .collect())
    }

    async fn all_locked_snapshot_ids(&self) -> Result<BTreeSet<String>, Ec2Error> {
        // One unfiltered, paged listing of the account's locked snapshots
        // (usually few: one call), where asking for the ids 200 at a time
        // cost a call per 200 snapshots (110 calls at 22,000).
        let mut out = BTreeSet::new();
        let mut token: Option<String> = None;
        loop {
            let page =
                self.client
                    .describe_locked_snapshots()
                    .max_results(SNAPSHOT_PAGE)
                    .set_next_token(token.take())
                    .customize()
                    // Two attempts: an endpoint without this API (the local
                    // emulator) should not cost a long backoff.
                    .config_override(aws_sdk_ec2::config::Builder::default().retry_config(
                        aws_config::retry::RetryConfig::standard().with_max_attempts(2),
                    ))
                    .send()
                    .await
                    .map_err(|e| Ec2Error::from_sdk("DescribeLockedSnapshots", e))?;
            out.extend(
                page.snapshots()
                    .iter()
                    // An expired lock no longer protects anything.
                    .filter(|s| s.lock_state() != Some(&aws_sdk_ec2::types::LockState::Expired))
                    .filter_map(|s| s.snapshot_id())
                    .map(String::from),
            );
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl SnapshotSharing for Ec2Adapter {
    async fn create_volume_permissions(&self, snapshot_id: &str) -> Result<Permissions, Ec2Error> {
        let out = self
            .client
            .describe_snapshot_attribute()
            .snapshot_id(snapshot_id)
            .attribute(SnapshotAttributeName::CreateVolumePermission)
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DescribeSnapshotAttribute", e))?;
        let mut permissions = Permissions::default();
        for p in out.create_volume_permissions() {
            if p.group().map(|g| g.as_str()) == Some("all") {
                permissions.public = true;
            }
            if let Some(account) = p.user_id() {
                permissions.accounts.push(account.to_string());
            }
        }
        Ok(permissions)
    }

    async fn share_with(&self, snapshot_id: &str, account: &str) -> Result<(), Ec2Error> {
        self.client
            .modify_snapshot_attribute()
            .snapshot_id(snapshot_id)
            .attribute(SnapshotAttributeName::CreateVolumePermission)
            .operation_type(OperationType::Add)
            .user_ids(account)
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("ModifySnapshotAttribute", e))?;
        Ok(())
    }

    async fn remove_create_volume_permissions(
        &self,
        snapshot_id: &str,
        public: bool,
        accounts: &[String],
    ) -> Result<(), Ec2Error> {
        let mut request = self
            .client
            .modify_snapshot_attribute()
            .snapshot_id(snapshot_id)
            .attribute(SnapshotAttributeName::CreateVolumePermission)
            .operation_type(OperationType::Remove);
        if public {
            request = request.group_names("all");
        }
        if !accounts.is_empty() {
            request = request.set_user_ids(Some(accounts.to_vec()));
        }
        request
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("ModifySnapshotAttribute", e))?;
        Ok(())
    }
}

#[async_trait]
impl AccountSettings for Ec2Adapter {
    async fn ebs_encryption_by_default(&self) -> Result<bool, Ec2Error> {
        let out = self
            .client
            .get_ebs_encryption_by_default()
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("GetEbsEncryptionByDefault", e))?;
        Ok(out.ebs_encryption_by_default().unwrap_or(false))
    }

    async fn snapshot_block_public_access(&self) -> Result<String, Ec2Error> {
        let out = self
            .client
            .get_snapshot_block_public_access_state()
            .customize()
            // Two attempts: an endpoint without this API (the local emulator)
            // should not cost a long backoff.
            .config_override(
                aws_sdk_ec2::config::Builder::default()
                    .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2)),
            )
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("GetSnapshotBlockPublicAccessState", e))?;
        Ok(out
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "unknown".into()))
    }
}

#[async_trait]
impl SnapshotCopier for Ec2Adapter {
    async fn copy_snapshot(&self, request: &CopySnapshotRequest) -> Result<String, Ec2Error> {
        let region = match &request.source_region {
            Some(region) => region.clone(),
            None => self
                .client
                .config()
                .region()
                .map(|r| r.as_ref().to_string())
                .unwrap_or_default(),
        };
        let out = self
            .client
            .copy_snapshot()
            .source_snapshot_id(&request.source_snapshot_id)
            .source_region(region)
            .encrypted(true)
            .set_kms_key_id(request.kms_key_id.clone())
            .description(&request.description)
            .tag_specifications(tag_specification(&request.tags))
            .customize()
            .config_override(only_throttling_retried())
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("CopySnapshot", e))?;
        out.snapshot_id()
            .map(String::from)
            .ok_or_else(|| Ec2Error::Transport {
                operation: "CopySnapshot",
                message: "EC2 answered without a snapshot id".into(),
            })
    }
}

#[async_trait]
impl SnapshotLocker for Ec2Adapter {
    async fn lock_snapshot(&self, snapshot_id: &str, days: u32) -> Result<(), Ec2Error> {
        self.client
            .lock_snapshot()
            .snapshot_id(snapshot_id)
            .lock_mode(aws_sdk_ec2::types::LockMode::Compliance)
            .lock_duration(i32::try_from(days).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("LockSnapshot", e))?;
        Ok(())
    }
}

#[async_trait]
impl SnapshotArchiver for Ec2Adapter {
    async fn archive_snapshot(&self, snapshot_id: &str) -> Result<(), Ec2Error> {
        self.client
            .modify_snapshot_tier()
            .snapshot_id(snapshot_id)
            .storage_tier(aws_sdk_ec2::types::TargetStorageTier::Archive)
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("ModifySnapshotTier", e))?;
        Ok(())
    }
}

#[async_trait]
impl SnapshotDeleter for Ec2Adapter {
    async fn delete_snapshot(&self, authorized: &Authorized) -> Result<(), Ec2Error> {
        self.client
            .delete_snapshot()
            .snapshot_id(authorized.snapshot_id())
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DeleteSnapshot", e))?;
        Ok(())
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
            .customize()
            .config_override(only_throttling_retried())
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
            .customize()
            .config_override(only_throttling_retried())
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

#[async_trait]
impl InstanceControl for Ec2Adapter {
    async fn instance(&self, instance_id: &str) -> Result<Option<Instance>, Ec2Error> {
        let found = self
            .describe_instances(vec![filter("instance-id", [instance_id])])
            .await?;
        Ok(found
            .into_iter()
            .find(|i| i.id == instance_id && i.state != "terminated"))
    }

    async fn stop_instance(&self, instance_id: &str) -> Result<(), Ec2Error> {
        self.client
            .stop_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("StopInstances", e))?;
        Ok(())
    }

    async fn start_instance(&self, instance_id: &str) -> Result<(), Ec2Error> {
        self.client
            .start_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("StartInstances", e))?;
        Ok(())
    }

    async fn mark_stopped(&self, instance_id: &str, deployment: &str) -> Result<(), Ec2Error> {
        self.client
            .create_tags()
            .resources(instance_id)
            .tags(
                Tag::builder()
                    .key(tags::STOPPED_FOR_SNAPSHOT)
                    .value(deployment)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("CreateTags", e))?;
        Ok(())
    }

    async fn clear_stopped_mark(&self, instance_id: &str) -> Result<(), Ec2Error> {
        self.client
            .delete_tags()
            .resources(instance_id)
            .tags(Tag::builder().key(tags::STOPPED_FOR_SNAPSHOT).build())
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DeleteTags", e))?;
        Ok(())
    }
}

impl Ec2Adapter {
    /// One volume as EC2 describes it (a filter, so a volume that is gone
    /// is an empty answer rather than an error).
    async fn describe_volume(
        &self,
        volume_id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::Volume>, Ec2Error> {
        let answer = self
            .client
            .describe_volumes()
            .filters(filter("volume-id", [volume_id]))
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DescribeVolumes", e))?;
        Ok(answer
            .volumes()
            .iter()
            .find(|v| v.volume_id() == Some(volume_id))
            .cloned())
    }
}

/// A volume as a drill reads it.
fn facts_of(v: &aws_sdk_ec2::types::Volume) -> Option<VolumeFacts> {
    Some(VolumeFacts {
        volume_id: v.volume_id()?.to_string(),
        state: v
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        size_gib: v.size().unwrap_or_default(),
        encrypted: v.encrypted().unwrap_or(false),
        kms_key_id: v.kms_key_id().filter(|k| !k.is_empty()).map(String::from),
        snapshot_id: v.snapshot_id().filter(|s| !s.is_empty()).map(String::from),
        attached: v
            .attachments()
            .iter()
            .any(|a| !matches!(a.state().map(|s| s.as_str()), Some("detached"))),
        created: time_of(v.create_time()),
        drill_token: v
            .tags()
            .iter()
            .find(|t| t.key() == Some(tags::DRILL))
            .and_then(|t| t.value())
            .map(String::from),
    })
}

#[async_trait]
impl VolumeRestorer for Ec2Adapter {
    async fn volume_facts(&self, volume_id: &str) -> Result<Option<VolumeFacts>, Ec2Error> {
        Ok(self
            .describe_volume(volume_id)
            .await?
            .as_ref()
            .and_then(facts_of))
    }

    async fn drill_volumes(&self, token: &str) -> Result<Vec<VolumeFacts>, Ec2Error> {
        let answer = self
            .client
            .describe_volumes()
            .filters(filter(&format!("tag:{}", tags::DRILL), [token]))
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DescribeVolumes", e))?;
        Ok(answer.volumes().iter().filter_map(facts_of).collect())
    }

    async fn first_zone(&self) -> Result<Option<String>, Ec2Error> {
        let answer = self
            .client
            .describe_availability_zones()
            .filters(filter("state", ["available"]))
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DescribeAvailabilityZones", e))?;
        // Local and Wavelength Zones (opted in) are not where a drill
        // belongs, and their names sort first (`us-west-2-lax-1a`).
        Ok(answer
            .availability_zones()
            .iter()
            .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
            .filter_map(|z| z.zone_name().map(String::from))
            .min())
    }

    async fn source_volume(&self, volume_id: &str) -> Result<Option<SourceVolume>, Ec2Error> {
        Ok(self
            .describe_volume(volume_id)
            .await?
            .map(|v| SourceVolume {
                id: volume_id.to_string(),
                availability_zone: v.availability_zone().unwrap_or_default().to_string(),
                volume_type: v
                    .volume_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                size_gib: v.size().unwrap_or_default(),
                iops: v.iops(),
                throughput: v.throughput(),
                tags: tags_of(Some(v.tags())),
                snapshot_id: v.snapshot_id().filter(|s| !s.is_empty()).map(String::from),
            }))
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<String, Ec2Error> {
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::Volume)
            .set_tags(Some(
                spec.tags
                    .iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .build();
        let mut request = self
            .client
            .create_volume()
            .snapshot_id(&spec.snapshot_id)
            .availability_zone(&spec.availability_zone)
            .volume_type(aws_sdk_ec2::types::VolumeType::from(
                spec.volume_type.as_str(),
            ))
            .size(spec.size_gib)
            .set_iops(spec.iops)
            .set_throughput(spec.throughput)
            .set_client_token(spec.client_token.clone())
            .tag_specifications(tags);
        if let Some(key) = &spec.kms_key {
            request = request.encrypted(true).kms_key_id(key);
        }
        let out = request
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("CreateVolume", e))?;
        out.volume_id()
            .map(str::to_string)
            .ok_or_else(|| Ec2Error::Service {
                operation: "CreateVolume",
                code: "NoVolumeId".into(),
                message: "EC2 answered without a volume id".into(),
            })
    }

    async fn volume_state(&self, volume_id: &str) -> Result<Option<String>, Ec2Error> {
        Ok(self
            .describe_volume(volume_id)
            .await?
            .and_then(|v| v.state().map(|s| s.as_str().to_string())))
    }

    async fn attach_volume(
        &self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<(), Ec2Error> {
        self.client
            .attach_volume()
            .volume_id(volume_id)
            .instance_id(instance_id)
            .device(device)
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("AttachVolume", e))?;
        Ok(())
    }

    async fn detach_volume(&self, volume_id: &str, instance_id: &str) -> Result<(), Ec2Error> {
        self.client
            .detach_volume()
            .volume_id(volume_id)
            .instance_id(instance_id)
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DetachVolume", e))?;
        Ok(())
    }

    async fn attachments(&self, volume_id: &str) -> Result<Vec<(String, String)>, Ec2Error> {
        Ok(self
            .describe_volume(volume_id)
            .await?
            .map(|v| {
                v.attachments()
                    .iter()
                    .filter(|a| {
                        matches!(
                            a.state().map(|s| s.as_str()),
                            Some("attaching") | Some("attached") | None
                        )
                    })
                    .filter_map(|a| {
                        Some((
                            a.instance_id()?.to_string(),
                            a.device().unwrap_or_default().to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn untag_volume(&self, volume_id: &str, key: &str) -> Result<(), Ec2Error> {
        self.client
            .delete_tags()
            .resources(volume_id)
            .tags(Tag::builder().key(key).build())
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DeleteTags", e))?;
        Ok(())
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), Ec2Error> {
        self.client
            .delete_volume()
            .volume_id(volume_id)
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DeleteVolume", e))?;
        Ok(())
    }

    async fn tag_volume(&self, volume_id: &str, key: &str, value: &str) -> Result<(), Ec2Error> {
        self.client
            .create_tags()
            .resources(volume_id)
            .tags(Tag::builder().key(key).value(value).build())
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("CreateTags", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod filter_tests {
    use super::*;

    #[test]
    fn a_wildcard_from_a_tag_never_reaches_a_filter() {
        let values = |f: Filter| f.values().to_vec();
        assert_eq!(
            values(filter(
                "tag:lifecycle:volume-id",
                ["vol-1", "*", "vol-?", "a\\*", "vol-2"]
            )),
            ["vol-1", "vol-2"]
        );
        // Nothing left: a value nothing equals, never an empty (or no) filter.
        assert_eq!(NO_MATCH.chars().count(), 257);
        assert_eq!(values(filter("volume-id", ["*"])), [NO_MATCH]);
        assert_eq!(
            values(filter("volume-id", Vec::<String>::new())),
            [NO_MATCH]
        );
    }
}

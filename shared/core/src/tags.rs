//! The tag contract of docs/policies-and-tags.md, "Tags on snapshots": every key, every value
//! format, how a snapshot's tags are composed at creation, and how they are read
//! back from EC2. The keys themselves are spelled once, in `keys`, and
//! re-exported here, their one public name.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::model::{Attachment, Instance, Tags, Volume};
use crate::policy::{CopyTags, Policy};

pub use crate::keys::*;

/// Whether a snapshot is held (`lifecycle:hold`, the key in any letter
/// case, any value): a person who writes `Lifecycle:Hold` means it, and a
/// hold that fails on a capital letter would delete what was meant to stay.
pub(crate) fn is_held(tags: &Tags) -> bool {
    tags.keys().any(|k| k.eq_ignore_ascii_case(HOLD))
}

/// Whether the instance's owner accepts downtime for a `stopped` snapshot
/// (`lifecycle:allow-stop=true`, any case).
pub fn allows_stop(instance_tags: &Tags) -> bool {
    instance_tags
        .get(ALLOW_STOP)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The lifecycle tags of a managed snapshot, typed.
///
/// `to_tags` and `from_tags` are inverse: what create writes, every other
/// function reads back with the same meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleLabels {
    pub managed_by: String,
    pub policy: String,
    pub slot: DateTime<Utc>,
    pub state: LifecycleState,
    /// Absent on multi-volume (CreateSnapshots) snapshots at creation, where one
    /// tag set covers every volume; EC2's `VolumeId` attribute says it there.
    pub volume_id: Option<String>,
    pub instance_id: Option<String>,
    pub device: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub consistency: ConsistencyLabel,
    pub retained_by: Option<String>,
    pub expires_at: Option<String>,
    pub hold: bool,
}

/// Why tags could not be read back as lifecycle labels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("tag `{key}` is missing")]
    Missing { key: &'static str },
    #[error("tag `{key}` has an unreadable value `{value}`")]
    Invalid { key: &'static str, value: String },
}

impl LifecycleLabels {
    /// The labels as EC2 tags, lifecycle keys only. `hold` is the user's tag and
    /// is never written by this project, so it is not emitted here.
    pub fn to_tags(&self) -> Tags {
        let mut tags = Tags::new();
        tags.insert(MANAGED_BY.into(), self.managed_by.clone());
        tags.insert(POLICY.into(), self.policy.clone());
        tags.insert(SLOT.into(), format_time(self.slot));
        tags.insert(STATE.into(), self.state.as_str().into());
        tags.insert(CREATED_AT.into(), format_time(self.created_at));
        tags.insert(CONSISTENCY.into(), self.consistency.as_str().into());
        let optional = [
            (VOLUME_ID, self.volume_id.clone()),
            (INSTANCE_ID, self.instance_id.clone()),
            (DEVICE, self.device.clone()),
            (COMPLETED_AT, self.completed_at.map(format_time)),
            (RETAINED_BY, self.retained_by.clone()),
            (EXPIRES_AT, self.expires_at.clone()),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                tags.insert(key.into(), value);
            }
        }
        tags
    }

    /// Read the labels back. `Ok(None)` when the snapshot carries no
    /// `lifecycle:managed-by` at all (not ours, not anybody's); an error when it
    /// claims to be managed but a required tag is missing or unreadable.
    pub fn from_tags(tags: &Tags) -> Result<Option<Self>, LabelError> {
        let Some(managed_by) = tags.get(MANAGED_BY) else {
            return Ok(None);
        };
        let required = |key: &'static str| tags.get(key).ok_or(LabelError::Missing { key });
        let time = |key: &'static str, value: &String| {
            parse_time(value).ok_or_else(|| LabelError::Invalid {
                key,
                value: value.clone(),
            })
        };
        let state_value = required(STATE)?;
        let consistency_value = required(CONSISTENCY)?;
        Ok(Some(Self {
            managed_by: managed_by.clone(),
            policy: required(POLICY)?.clone(),
            slot: time(SLOT, required(SLOT)?)?,
            state: LifecycleState::parse(state_value).ok_or_else(|| LabelError::Invalid {
                key: STATE,
                value: state_value.clone(),
            })?,
            volume_id: tags.get(VOLUME_ID).cloned(),
            instance_id: tags.get(INSTANCE_ID).cloned(),
            device: tags.get(DEVICE).cloned(),
            created_at: time(CREATED_AT, required(CREATED_AT)?)?,
            completed_at: tags
                .get(COMPLETED_AT)
                .map(|v| time(COMPLETED_AT, v))
                .transpose()?,
            consistency: ConsistencyLabel::parse(consistency_value).ok_or_else(|| {
                LabelError::Invalid {
                    key: CONSISTENCY,
                    value: consistency_value.clone(),
                }
            })?,
            retained_by: tags.get(RETAINED_BY).cloned(),
            expires_at: tags.get(EXPIRES_AT).cloned(),
            hold: is_held(tags),
        }))
    }
}

/// True when the tags say this deployment manages the resource.
pub fn is_managed_by(tags: &Tags, deployment: &str) -> bool {
    tags.get(MANAGED_BY).map(String::as_str) == Some(deployment)
}

/// A tag left off a snapshot, and why. Reported, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedTag {
    pub key: String,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// The key is longer than EC2 allows.
    KeyTooLong,
    /// The value is longer than EC2 allows.
    ValueTooLong,
    /// EC2's 50-tag ceiling was reached; lifecycle tags won.
    TagLimit,
    /// The key starts with `aws:`, which EC2 reserves.
    Reserved,
    /// EC2 refused the key or value when it was written.
    Refused,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::KeyTooLong => "key longer than 128 characters",
            Self::ValueTooLong => "value longer than 256 characters",
            Self::TagLimit => "EC2 allows 50 tags per snapshot",
            Self::Reserved => "keys starting with aws: are reserved",
            Self::Refused => "EC2 refused the tag",
        })
    }
}

/// The full tag set a new snapshot gets, and what had to be left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotTagSet {
    pub tags: Tags,
    pub skipped: Vec<SkippedTag>,
}

/// The snapshot's `Name`: the volume's own Name, else `<instance Name>:<device>`,
/// else `<volume id>` so the console never shows a blank.
pub fn snapshot_name(volume: &Volume, instance: Option<&Instance>) -> String {
    if let Some(name) = volume.name().filter(|n| !n.is_empty()) {
        return name.to_string();
    }
    match (instance.and_then(Instance::name), &volume.attachment) {
        (Some(instance_name), Some(Attachment { device, .. })) if !instance_name.is_empty() => {
            format!("{instance_name}:{device}")
        }
        _ => volume.id.clone(),
    }
}

/// The tags copied from the volume and its instance under the policy's
/// `copy_tags`. The volume's value wins; the instance fills only keys the
/// volume lacks. `aws:` and `lifecycle:` keys are never copied.
pub fn copied_tags(copy: &CopyTags, volume: &Tags, instance: Option<&Tags>) -> Tags {
    let wanted = |key: &str| {
        !key.starts_with(AWS_PREFIX)
            && !key.starts_with(LIFECYCLE_PREFIX)
            && key != NAME
            && match copy {
                CopyTags::All => true,
                CopyTags::Keys(keys) => keys.iter().any(|k| k == key),
            }
    };
    let mut out = Tags::new();
    for source in instance.into_iter().chain(std::iter::once(volume)) {
        // The volume comes last so that its values overwrite the instance's.
        for (key, value) in source.iter().filter(|(k, _)| wanted(k)) {
            out.insert(key.clone(), value.clone());
        }
    }
    out
}

/// Compose a new snapshot's tags: the lifecycle labels first (they always
/// fit: there are at most 12), then `Name`, the policy's static `tags`, then
/// the copied tags, each group in key order, up to EC2's 50-tag ceiling.
/// Tags EC2 would refuse are skipped and reported rather than failing the call.
pub fn compose_snapshot_tags(
    labels: &LifecycleLabels,
    name: &str,
    policy: &Policy,
    copied: &Tags,
) -> SnapshotTagSet {
    let mut set = SnapshotTagSet {
        tags: labels.to_tags(),
        skipped: Vec::new(),
    };
    let name_tag = std::iter::once((NAME.to_string(), name.to_string()));
    let extra = name_tag
        .chain(policy.tags.iter().map(|(k, v)| (k.clone(), v.clone())))
        .chain(copied.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (key, value) in extra {
        if set.tags.contains_key(&key) {
            continue;
        }
        let reason = if key.chars().count() > MAX_KEY_CHARS {
            Some(SkipReason::KeyTooLong)
        } else if value.chars().count() > MAX_VALUE_CHARS {
            Some(SkipReason::ValueTooLong)
        } else if set.tags.len() >= MAX_TAGS_PER_RESOURCE {
            Some(SkipReason::TagLimit)
        } else {
            None
        };
        match reason {
            Some(reason) => set.skipped.push(SkippedTag { key, reason }),
            None => {
                set.tags.insert(key, value);
            }
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels() -> LifecycleLabels {
        LifecycleLabels {
            managed_by: "prod".into(),
            policy: "default".into(),
            slot: parse_time("2026-03-01T00:00:00Z").unwrap(),
            state: LifecycleState::Pending,
            volume_id: Some("vol-1".into()),
            instance_id: Some("i-1".into()),
            device: Some("/dev/xvdf".into()),
            created_at: parse_time("2026-03-01T00:03:12Z").unwrap(),
            completed_at: None,
            consistency: ConsistencyLabel::Crash,
            retained_by: None,
            expires_at: None,
            hold: false,
        }
    }

    #[test]
    fn labels_render_the_documented_keys_and_formats() {
        let tags = labels().to_tags();
        assert_eq!(tags[MANAGED_BY], "prod");
        assert_eq!(tags[SLOT], "2026-03-01T00:00:00Z");
        assert_eq!(tags[CREATED_AT], "2026-03-01T00:03:12Z");
        assert_eq!(tags[STATE], "pending");
        assert_eq!(tags[CONSISTENCY], "crash");
        assert!(!tags.contains_key(COMPLETED_AT));
        assert!(tags.keys().all(|k| k.starts_with(LIFECYCLE_PREFIX)));
    }

    #[test]
    fn a_hold_counts_in_any_letter_case() {
        for key in ["lifecycle:hold", "Lifecycle:Hold", "LIFECYCLE:HOLD"] {
            assert!(
                is_held(&Tags::from([(key.to_string(), String::new())])),
                "{key}"
            );
        }
        assert!(!is_held(&Tags::from([(
            "lifecycle:holder".to_string(),
            "x".to_string()
        )])));
    }

    #[test]
    fn unmanaged_tags_read_back_as_none_and_broken_ones_as_errors() {
        let mut tags = Tags::new();
        tags.insert("Name".into(), "x".into());
        assert_eq!(LifecycleLabels::from_tags(&tags), Ok(None));

        let mut tags = labels().to_tags();
        tags.remove(SLOT);
        assert_eq!(
            LifecycleLabels::from_tags(&tags),
            Err(LabelError::Missing { key: SLOT })
        );
        let mut tags = labels().to_tags();
        tags.insert(STATE.into(), "done".into());
        assert!(matches!(
            LifecycleLabels::from_tags(&tags),
            Err(LabelError::Invalid { key: STATE, .. })
        ));
    }

    #[test]
    fn hold_is_read_from_any_value() {
        let mut tags = labels().to_tags();
        tags.insert(HOLD.into(), String::new());
        let read = LifecycleLabels::from_tags(&tags).unwrap().unwrap();
        assert!(read.hold);
    }

    fn volume(tags: &[(&str, &str)], attached: bool) -> Volume {
        Volume {
            volume_type: None,
            id: "vol-0abc".into(),
            size_gib: 8,
            encrypted: true,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            attachment: attached.then(|| Attachment {
                instance_id: "i-1".into(),
                device: "/dev/sdf".into(),
            }),
        }
    }

    fn instance(tags: &[(&str, &str)]) -> Instance {
        Instance {
            id: "i-1".into(),
            state: "running".into(),
            state_reason: None,
            root_device: Some("/dev/xvda".into()),
            stopped_at: None,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            volumes: vec![],
        }
    }

    #[test]
    fn name_prefers_volume_then_instance_and_device_then_volume_id() {
        let web = instance(&[("Name", "web-1")]);
        assert_eq!(
            snapshot_name(&volume(&[("Name", "data")], true), Some(&web)),
            "data"
        );
        assert_eq!(
            snapshot_name(&volume(&[], true), Some(&web)),
            "web-1:/dev/sdf"
        );
        assert_eq!(snapshot_name(&volume(&[], false), None), "vol-0abc");
        assert_eq!(
            snapshot_name(&volume(&[], true), Some(&instance(&[]))),
            "vol-0abc"
        );
    }

    #[test]
    fn copy_tags_prefers_the_volume_and_never_copies_reserved_keys() {
        let vol = volume(
            &[("Owner", "vol-owner"), ("aws:cloudformation:stack", "s")],
            false,
        );
        let inst = instance(&[
            ("Owner", "inst-owner"),
            ("CostCenter", "42"),
            ("lifecycle:x", "y"),
        ]);
        let keys = CopyTags::Keys(vec!["Owner".into(), "CostCenter".into(), "Missing".into()]);
        let copied = copied_tags(&keys, &vol.tags, Some(&inst.tags));
        assert_eq!(copied.get("Owner").map(String::as_str), Some("vol-owner"));
        assert_eq!(copied.get("CostCenter").map(String::as_str), Some("42"));
        assert_eq!(copied.len(), 2);

        let all = copied_tags(&CopyTags::All, &vol.tags, Some(&inst.tags));
        assert!(all
            .keys()
            .all(|k| !k.starts_with("aws:") && !k.starts_with("lifecycle:")));
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn fifty_tag_ceiling_keeps_every_lifecycle_tag_and_reports_the_rest() {
        let policy = crate::policy::Policy::builtin_default();
        let copied: Tags = (0..60)
            .map(|i| (format!("k{i:02}"), "v".to_string()))
            .collect();
        let set = compose_snapshot_tags(&labels(), "n", &policy, &copied);
        assert_eq!(set.tags.len(), MAX_TAGS_PER_RESOURCE);
        for (k, v) in labels().to_tags() {
            assert_eq!(set.tags.get(&k), Some(&v));
        }
        assert_eq!(set.tags.get(NAME).map(String::as_str), Some("n"));
        let over_limit = set
            .skipped
            .iter()
            .filter(|s| s.reason == SkipReason::TagLimit)
            .count();
        // 9 lifecycle + Name + 40 copied = 50; 20 copied left out.
        assert_eq!(over_limit, 20);
    }

    #[test]
    fn oversized_values_and_keys_are_skipped_not_sent() {
        let policy = crate::policy::Policy::builtin_default();
        let mut copied = Tags::new();
        copied.insert("Big".into(), "x".repeat(257));
        copied.insert("k".repeat(129), "v".into());
        copied.insert("Fine".into(), "x".repeat(256));
        let set = compose_snapshot_tags(&labels(), "n", &policy, &copied);
        assert!(set.tags.contains_key("Fine"));
        assert_eq!(set.skipped.len(), 2);
    }

    fn arb_time() -> impl Strategy<Value = DateTime<Utc>> {
        (0i64..4_102_444_800).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
    }

    prop_compose! {
        fn arb_labels()(
            managed_by in "[a-zA-Z0-9-]{1,40}",
            policy in "[a-z0-9_-]{1,30}",
            slot in arb_time(),
            created_at in arb_time(),
            completed_at in proptest::option::of(arb_time()),
            state in prop_oneof![Just(LifecycleState::Pending), Just(LifecycleState::Completed), Just(LifecycleState::Failed)],
            consistency in prop_oneof![
                Just(ConsistencyLabel::Crash), Just(ConsistencyLabel::Instance),
                Just(ConsistencyLabel::Application), Just(ConsistencyLabel::CrashFallback),
                Just(ConsistencyLabel::Stopped)],
            volume_id in proptest::option::of("vol-[0-9a-f]{8,17}"),
            instance_id in proptest::option::of("i-[0-9a-f]{8,17}"),
            device in proptest::option::of("/dev/[a-z]{3,5}"),
            retained_by in proptest::option::of("(last|daily|weekly)(,monthly)?"),
            expires_at in proptest::option::of(Just("never".to_string())),
        ) -> LifecycleLabels {
            LifecycleLabels { managed_by, policy, slot, state, volume_id, instance_id, device,
                created_at, completed_at, consistency, retained_by, expires_at, hold: false }
        }
    }

    proptest! {
        #[test]
        fn labels_round_trip_through_ec2_tags(labels in arb_labels()) {
            let tags = labels.to_tags();
            prop_assert!(tags.len() <= 12);
            prop_assert_eq!(LifecycleLabels::from_tags(&tags), Ok(Some(labels)));
        }

        #[test]
        fn composed_tags_always_fit_ec2_and_keep_lifecycle(
            labels in arb_labels(),
            copied in proptest::collection::btree_map("[A-Za-z]{1,140}", ".{0,300}", 0..80),
        ) {
            let policy = crate::policy::Policy::builtin_default();
            let set = compose_snapshot_tags(&labels, "name", &policy, &copied);
            prop_assert!(set.tags.len() <= MAX_TAGS_PER_RESOURCE);
            for (k, v) in &set.tags {
                prop_assert!(k.chars().count() <= MAX_KEY_CHARS);
                prop_assert!(v.chars().count() <= MAX_VALUE_CHARS);
            }
            for (k, v) in labels.to_tags() {
                prop_assert_eq!(set.tags.get(&k), Some(&v));
            }
            // Nothing disappears silently: every copied tag is either written or reported.
            for k in copied.keys() {
                prop_assert!(set.tags.contains_key(k) || set.skipped.iter().any(|s| &s.key == k));
            }
        }
    }
}

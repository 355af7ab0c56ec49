//! Which volumes a policy covers (docs/policies-and-tags.md, "Opting in"), decided from what EC2
//! listed, with no AWS call.
//!
//! Rules:
//! - a volume's own selector tag wins over its instance's;
//! - an opted-in instance covers every attached volume without its own tag;
//! - under a policy with instance-level consistency (`instance`,
//!   `application`, `stopped`) an instance's covered volumes are snapshotted
//!   together, and attached volumes under another policy are excluded;
//! - an empty tag value means the `default` policy;
//! - `none` opts a volume or an instance out; a policy's `exclude` leaves
//!   out boot volumes, volume types or tagged volumes its instance brings;
//! - a tag naming a policy that does not exist is reported, never skipped in silence;
//! - with a default policy, every volume no tag decides is covered by it
//!   ([`cover_by_default`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::{Instance, Volume};
use crate::policy::{Consistency, Exclusions, Policies, Policy, DEFAULT_POLICY_NAME, OPT_OUT};

/// One volume snapshotted on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeTarget {
    pub policy: String,
    pub volume: Volume,
    /// The instance it is attached to, when EC2 listed it (for names and copied tags).
    pub instance: Option<Instance>,
}

/// An instance's volumes snapshotted together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceTarget {
    pub policy: String,
    pub instance: Instance,
    /// The volumes this policy covers, in id order.
    pub volumes: Vec<Volume>,
    /// Attached volumes that belong to another policy: left out of the set.
    pub excluded_volume_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Volume(VolumeTarget),
    Instance(InstanceTarget),
}

impl Target {
    pub fn policy(&self) -> &str {
        match self {
            Self::Volume(t) => &t.policy,
            Self::Instance(t) => &t.policy,
        }
    }

    pub fn volume_ids(&self) -> Vec<&str> {
        match self {
            Self::Volume(t) => vec![t.volume.id.as_str()],
            Self::Instance(t) => t.volumes.iter().map(|v| v.id.as_str()).collect(),
        }
    }
}

/// A resource whose selector tag names no policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnknownPolicy {
    /// `volume` or `instance`.
    pub resource_type: &'static str,
    pub resource_id: String,
    pub policy: String,
    /// For an instance: the attached volumes left without a policy because of it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_ids: Vec<String>,
}

/// A volume its instance's policy, or the default policy, leaves out (the
/// policy's `exclude`), and why: what the report shows for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Excluded {
    pub volume_id: String,
    /// The instance it is attached to, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    pub policy: String,
    /// `boot volume`, `volume type st1`, `tag Scratch=yes`.
    pub reason: String,
}

impl Excluded {
    /// One line for the report: `policy fleet excludes it (boot volume)`.
    pub fn describe(&self) -> String {
        format!("policy {} excludes it ({})", self.policy, self.reason)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    pub targets: Vec<Target>,
    pub unknown_policies: Vec<UnknownPolicy>,
    /// Volumes an instance's policy covers but excludes, in id order.
    pub excluded: Vec<Excluded>,
}

/// Why `exclude` leaves out `volume`, attached to `instance` if it is, if it
/// does: its root device, a listed volume type, or a listed tag (key and value).
pub fn exclusion(
    exclude: &Exclusions,
    volume: &Volume,
    instance: Option<&Instance>,
) -> Option<String> {
    let boot = match (volume.attachment.as_ref(), instance) {
        (Some(a), Some(i)) => {
            a.instance_id == i.id && i.root_device.as_deref() == Some(a.device.as_str())
        }
        _ => false,
    };
    if exclude.boot_volumes && boot {
        return Some("boot volume".into());
    }
    if let Some(t) = volume
        .volume_type
        .as_deref()
        .filter(|t| exclude.volume_types.iter().any(|x| x == t))
    {
        return Some(format!("volume type {t}"));
    }
    exclude
        .tags
        .iter()
        .find(|(k, v)| volume.tags.get(*k) == Some(*v))
        .map(|(k, v)| format!("tag {k}={v}"))
}

impl Resolution {
    /// How many volumes are covered by a known policy.
    pub fn volume_count(&self) -> usize {
        self.targets.iter().map(|t| t.volume_ids().len()).sum()
    }
}

fn policy_name(value: &str) -> String {
    let value = value.trim();
    if value.is_empty() {
        DEFAULT_POLICY_NAME.to_string()
    } else {
        value.to_string()
    }
}

/// Resolve every opted-in resource to its policy.
///
/// `tagged_volumes` carry the selector tag; `tagged_instances` too;
/// `attached_volumes` are every volume attached to one of those instances
/// (tagged or not). A volume may appear in both volume lists.
pub fn resolve(
    selector_tag_key: &str,
    policies: &Policies,
    tagged_volumes: &[Volume],
    tagged_instances: &[Instance],
    attached_volumes: &[Volume],
) -> Resolution {
    let mut out = Resolution::default();
    let instances: BTreeMap<&str, &Instance> = tagged_instances
        .iter()
        .map(|i| (i.id.as_str(), i))
        .collect();

    // Every volume once, by id; its own policy when it has the tag.
    let mut volumes: BTreeMap<&str, &Volume> = BTreeMap::new();
    for v in attached_volumes.iter().chain(tagged_volumes) {
        volumes.insert(v.id.as_str(), v);
    }
    let own_policy = |v: &Volume| v.tags.get(selector_tag_key).map(|p| policy_name(p));
    let instance_of = |v: &Volume| {
        v.attachment
            .as_ref()
            .and_then(|a| instances.get(a.instance_id.as_str()).copied())
    };

    // Volumes grouped under an instance-level policy, by (instance, policy).
    let mut groups: BTreeMap<(&str, String), Vec<&Volume>> = BTreeMap::new();
    let mut unknown_instances: BTreeMap<&str, (String, Vec<String>)> = BTreeMap::new();

    for volume in volumes.values() {
        let instance = instance_of(volume);
        let (policy, via_instance) = match (own_policy(volume), instance) {
            (Some(p), _) => (p, false),
            (None, Some(i)) => match i.tags.get(selector_tag_key) {
                Some(p) => (policy_name(p), true),
                None => continue,
            },
            // Listed only as attached to an instance that is not opted in.
            (None, None) => continue,
        };
        // `none` opts out: the volume's own (even under an instance that
        // opts in), or its instance's. Not an unknown policy to report.
        if policy == OPT_OUT {
            continue;
        }
        let Some(found) = policies.get(&policy) else {
            match (via_instance, instance) {
                (true, Some(i)) => {
                    unknown_instances
                        .entry(i.id.as_str())
                        .or_insert_with(|| (policy.clone(), Vec::new()))
                        .1
                        .push(volume.id.clone());
                }
                _ => out.unknown_policies.push(UnknownPolicy {
                    resource_type: "volume",
                    resource_id: volume.id.clone(),
                    policy,
                    volume_ids: Vec::new(),
                }),
            }
            continue;
        };
        // A policy's exclusions leave out what it covers through the
        // instance; a volume's own tag is an explicit choice. Under an
        // instance-level policy the volume then falls out of the set
        // (ExcludeDataVolumeIds, or ExcludeBootVolume for the root).
        if let (true, Some(i)) = (via_instance, instance) {
            if let Some(reason) = exclusion(&found.exclude, volume, Some(i)) {
                out.excluded.push(Excluded {
                    volume_id: volume.id.clone(),
                    instance_id: Some(i.id.clone()),
                    policy,
                    reason,
                });
                continue;
            }
        }
        let together = found.consistency != Consistency::Volume;
        match instance {
            Some(i) if together => {
                groups
                    .entry((i.id.as_str(), policy))
                    .or_default()
                    .push(volume);
            }
            _ => out.targets.push(Target::Volume(VolumeTarget {
                policy,
                volume: (*volume).clone(),
                instance: instance.cloned(),
            })),
        }
    }

    // Every instance whose tag names no policy is reported, also when all its
    // volumes have tags of their own (its tag is still a mistake to fix).
    for instance in tagged_instances {
        let Some(value) = instance.tags.get(selector_tag_key) else {
            continue;
        };
        let policy = policy_name(value);
        if policy != OPT_OUT && policies.get(&policy).is_none() {
            let volume_ids = unknown_instances
                .remove(instance.id.as_str())
                .map(|(_, ids)| ids)
                .unwrap_or_default();
            out.unknown_policies.push(UnknownPolicy {
                resource_type: "instance",
                resource_id: instance.id.clone(),
                policy,
                volume_ids,
            });
        }
    }

    for ((instance_id, policy), members) in groups {
        let Some(instance) = instances.get(instance_id) else {
            continue;
        };
        let member_ids: BTreeSet<&str> = members.iter().map(|v| v.id.as_str()).collect();
        let excluded_volume_ids = instance
            .volumes
            .iter()
            .map(|b| b.volume_id.as_str())
            .chain(
                volumes
                    .values()
                    .filter(|v| {
                        v.attachment
                            .as_ref()
                            .is_some_and(|a| a.instance_id == instance_id)
                    })
                    .map(|v| v.id.as_str()),
            )
            .filter(|id| !member_ids.contains(id))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(String::from)
            .collect();
        out.targets.push(Target::Instance(InstanceTarget {
            policy,
            instance: (*instance).clone(),
            volumes: members.into_iter().cloned().collect(),
            excluded_volume_ids,
        }));
    }
    out
}

/// The stack's default policy (parameter `DefaultPolicy`; docs/policies-and-tags.md,
/// "The default policy"): every volume of `all_volumes` that no selector tag
/// decides, neither its own nor its instance's (a tag naming no policy, or
/// `none`, decides too), is covered by `policy`, volume by volume, unless the
/// policy's `exclude` leaves it out. `instances` are the instances those
/// volumes are attached to, as far as EC2 listed them (their root device
/// tells a boot volume; their tags are copied). Adds to `out`, in volume id
/// order.
pub fn cover_by_default(
    out: &mut Resolution,
    selector_tag_key: &str,
    policy: &Policy,
    all_volumes: &[Volume],
    tagged_instance_ids: &BTreeSet<&str>,
    instances: &[Instance],
) {
    let instances: BTreeMap<&str, &Instance> =
        instances.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut volumes: Vec<&Volume> = all_volumes.iter().collect();
    volumes.sort_by(|a, b| a.id.cmp(&b.id));
    volumes.dedup_by(|a, b| a.id == b.id);
    for volume in volumes {
        let instance_id = volume.attachment.as_ref().map(|a| a.instance_id.as_str());
        let decided = volume.tags.contains_key(selector_tag_key)
            || instance_id.is_some_and(|i| tagged_instance_ids.contains(i));
        if decided {
            continue;
        }
        let instance = instance_id.and_then(|i| instances.get(i).copied());
        if let Some(reason) = exclusion(&policy.exclude, volume, instance) {
            out.excluded.push(Excluded {
                volume_id: volume.id.clone(),
                instance_id: instance_id.map(String::from),
                policy: policy.name.clone(),
                reason,
            });
            continue;
        }
        out.targets.push(Target::Volume(VolumeTarget {
            policy: policy.name.clone(),
            volume: volume.clone(),
            instance: instance.cloned(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Attachment, BlockDevice, Tags};

    const POLICIES: &str = r#"{
        "default": {"schedule": "@daily", "keep": {"last": 3}},
        "fleet":   {"schedule": "@hourly", "keep": {"last": 3}, "consistency": "instance"}
    }"#;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn vol(id: &str, backup: Option<&str>, on: Option<(&str, &str)>) -> Volume {
        Volume {
            volume_type: None,
            id: id.into(),
            size_gib: 8,
            encrypted: true,
            tags: backup.map(|b| tags(&[("Backup", b)])).unwrap_or_default(),
            attachment: on.map(|(i, d)| Attachment {
                instance_id: i.into(),
                device: d.into(),
            }),
        }
    }

    fn inst(id: &str, backup: Option<&str>, vols: &[(&str, &str)]) -> Instance {
        Instance {
            id: id.into(),
            state: "running".into(),
            state_reason: None,
            root_device: Some("/dev/xvda".into()),
            stopped_at: None,
            tags: backup.map(|b| tags(&[("Backup", b)])).unwrap_or_default(),
            volumes: vols
                .iter()
                .map(|(v, d)| BlockDevice {
                    volume_id: v.to_string(),
                    device: d.to_string(),
                })
                .collect(),
        }
    }

    fn run(tv: &[Volume], ti: &[Instance], av: &[Volume]) -> Resolution {
        resolve("Backup", &Policies::parse(POLICIES).unwrap(), tv, ti, av)
    }

    #[test]
    fn a_tagged_volume_is_a_volume_target() {
        let r = run(&[vol("vol-1", Some("default"), None)], &[], &[]);
        assert_eq!(r.targets.len(), 1);
        assert_eq!(r.targets[0].policy(), "default");
        assert!(r.unknown_policies.is_empty());
    }

    #[test]
    fn empty_value_means_default() {
        let r = run(&[vol("vol-1", Some(""), None)], &[], &[]);
        assert_eq!(r.targets[0].policy(), "default");
    }

    #[test]
    fn none_opts_a_volume_or_an_instance_out_and_is_no_unknown_policy() {
        // A volume of an instance that opts in, opting itself out (a
        // scratch disk); an instance opting out; a volume opting out.
        let fleet = inst(
            "i-1",
            Some("fleet"),
            &[("vol-a", "/dev/xvda"), ("vol-scratch", "/dev/sdf")],
        );
        let out = inst("i-2", Some("none"), &[("vol-c", "/dev/xvda")]);
        let r = run(
            &[vol("vol-solo", Some("none"), None)],
            &[fleet, out],
            &[
                vol("vol-a", None, Some(("i-1", "/dev/xvda"))),
                vol("vol-scratch", Some("none"), Some(("i-1", "/dev/sdf"))),
                vol("vol-c", None, Some(("i-2", "/dev/xvda"))),
            ],
        );
        assert!(r.unknown_policies.is_empty(), "{:?}", r.unknown_policies);
        let covered: Vec<&str> = r.targets.iter().flat_map(|t| t.volume_ids()).collect();
        assert_eq!(
            covered,
            ["vol-a"],
            "only the instance's volume that did not opt out"
        );
    }

    #[test]
    fn exclude_leaves_out_what_an_instance_brings_and_says_why() {
        let policies = Policies::parse(
            r#"{
            "fleet": {"schedule": "@hourly", "keep": {"last": 3}, "consistency": "instance",
                      "exclude": {"boot_volumes": true, "volume_types": ["st1"], "tags": {"Scratch": "yes"}}},
            "solo":  {"schedule": "@daily", "keep": {"last": 3},
                      "exclude": {"volume_types": ["sc1"]}}
        }"#,
        )
        .unwrap();
        let typed = |mut v: Volume, t: &str| {
            v.volume_type = Some(t.into());
            v
        };
        let scratch = |mut v: Volume| {
            v.tags.insert("Scratch".into(), "yes".into());
            v
        };
        let fleet = inst(
            "i-1",
            Some("fleet"),
            &[
                ("vol-root", "/dev/xvda"),
                ("vol-data", "/dev/sdf"),
                ("vol-logs", "/dev/sdg"),
                ("vol-tmp", "/dev/sdh"),
                ("vol-own", "/dev/sdi"),
            ],
        );
        let solo = inst(
            "i-2",
            Some("solo"),
            &[("vol-cold", "/dev/xvda"), ("vol-warm", "/dev/sdf")],
        );
        // vol-own carries Scratch=yes but its own selector tag: an explicit
        // choice that the instance's exclusions do not override.
        let own = scratch(vol("vol-own", Some("fleet"), Some(("i-1", "/dev/sdi"))));
        let attached = [
            typed(vol("vol-root", None, Some(("i-1", "/dev/xvda"))), "gp3"),
            typed(vol("vol-data", None, Some(("i-1", "/dev/sdf"))), "gp3"),
            typed(vol("vol-logs", None, Some(("i-1", "/dev/sdg"))), "st1"),
            scratch(vol("vol-tmp", None, Some(("i-1", "/dev/sdh")))),
            own.clone(),
            typed(vol("vol-cold", None, Some(("i-2", "/dev/xvda"))), "sc1"),
            typed(vol("vol-warm", None, Some(("i-2", "/dev/sdf"))), "gp3"),
        ];
        let r = resolve("Backup", &policies, &[own], &[fleet, solo], &attached);

        let why: BTreeMap<&str, (&str, &str)> = r
            .excluded
            .iter()
            .map(|e| (e.volume_id.as_str(), (e.policy.as_str(), e.reason.as_str())))
            .collect();
        assert_eq!(
            why,
            BTreeMap::from([
                ("vol-cold", ("solo", "volume type sc1")),
                ("vol-logs", ("fleet", "volume type st1")),
                ("vol-root", ("fleet", "boot volume")),
                ("vol-tmp", ("fleet", "tag Scratch=yes")),
            ])
        );
        let set = r
            .targets
            .iter()
            .find_map(|t| match t {
                Target::Instance(g) => Some(g),
                Target::Volume(_) => None,
            })
            .unwrap();
        let members: Vec<&str> = set.volumes.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(members, ["vol-data", "vol-own"]);
        // Left out of the instance's CreateSnapshots call: the root by
        // ExcludeBootVolume, the others by ExcludeDataVolumeIds.
        assert_eq!(set.excluded_volume_ids, ["vol-logs", "vol-root", "vol-tmp"]);
        let solo_targets: Vec<&str> = r
            .targets
            .iter()
            .filter(|t| t.policy() == "solo")
            .flat_map(|t| t.volume_ids())
            .collect();
        assert_eq!(solo_targets, ["vol-warm"]);
        assert_eq!(
            r.excluded[0].describe(),
            "policy solo excludes it (volume type sc1)"
        );
    }

    #[test]
    fn exclude_refuses_what_ec2_has_not() {
        for (exclude, field) in [
            (r#"{"volume_types": ["gp4"]}"#, "exclude.volume_types[0]"),
            (r#"{"tags": {"aws:x": "y"}}"#, "exclude.tags.aws:x"),
            (r#"{"boot": true}"#, "exclude.boot"),
        ] {
            let doc = format!(
                r#"{{"p": {{"schedule": "@daily", "keep": {{"last": 1}}, "exclude": {exclude}}}}}"#
            );
            let err = Policies::parse(&doc).unwrap_err().to_string();
            assert!(err.contains(field), "{exclude}: {err}");
        }
        let p = Policies::parse(r#"{"p": {"schedule": "@daily", "keep": {"last": 1}}}"#).unwrap();
        assert!(p.get("p").unwrap().exclude.is_empty());
    }

    #[test]
    fn the_default_policy_covers_what_no_tag_decides() {
        let policies = Policies::parse(
            r#"{
            "default": {"schedule": "@daily", "keep": {"last": 3},
                        "exclude": {"boot_volumes": true, "volume_types": ["sc1"]}},
            "fleet":   {"schedule": "@hourly", "keep": {"last": 3}, "consistency": "instance"}
        }"#,
        )
        .unwrap();
        let typed = |mut v: Volume, t: &str| {
            v.volume_type = Some(t.into());
            v
        };
        // i-1 opts in (fleet), i-2 opts out, i-3 has no tag, i-4 names no policy.
        let fleet = inst("i-1", Some("fleet"), &[("vol-f", "/dev/xvda")]);
        let out = inst("i-2", Some("none"), &[("vol-o", "/dev/sdf")]);
        let plain = inst(
            "i-3",
            None,
            &[("vol-root", "/dev/xvda"), ("vol-data", "/dev/sdf")],
        );
        let typo = inst("i-4", Some("flet"), &[("vol-t", "/dev/sdf")]);
        let all = [
            vol("vol-f", None, Some(("i-1", "/dev/xvda"))),
            vol("vol-o", None, Some(("i-2", "/dev/sdf"))),
            vol("vol-root", None, Some(("i-3", "/dev/xvda"))),
            vol("vol-data", None, Some(("i-3", "/dev/sdf"))),
            vol("vol-t", None, Some(("i-4", "/dev/sdf"))),
            vol("vol-loose", None, None),
            typed(vol("vol-cold", None, None), "sc1"),
            vol("vol-none", Some("none"), None),
            vol("vol-own", Some("fleet"), None),
        ];
        let tagged_instances = [fleet, out, typo];
        let tagged: Vec<Volume> = all
            .iter()
            .filter(|v| v.tags.contains_key("Backup"))
            .cloned()
            .collect();
        let attached: Vec<Volume> = all
            .iter()
            .filter(|v| {
                v.attachment
                    .as_ref()
                    .is_some_and(|a| ["i-1", "i-2", "i-4"].contains(&a.instance_id.as_str()))
            })
            .cloned()
            .collect();
        let mut r = resolve("Backup", &policies, &tagged, &tagged_instances, &attached);
        let ids: BTreeSet<&str> = ["i-1", "i-2", "i-4"].into();
        cover_by_default(
            &mut r,
            "Backup",
            policies.get("default").unwrap(),
            &all,
            &ids,
            &[plain],
        );

        let covered: BTreeMap<&str, &str> = r
            .targets
            .iter()
            .flat_map(|t| t.volume_ids().into_iter().map(move |v| (v, t.policy())))
            .collect();
        assert_eq!(
            covered,
            BTreeMap::from([
                ("vol-data", "default"),
                ("vol-f", "fleet"),
                ("vol-loose", "default"),
                ("vol-own", "fleet"),
            ])
        );
        let excluded: BTreeMap<&str, &str> = r
            .excluded
            .iter()
            .map(|e| (e.volume_id.as_str(), e.reason.as_str()))
            .collect();
        assert_eq!(
            excluded,
            BTreeMap::from([("vol-cold", "volume type sc1"), ("vol-root", "boot volume")])
        );
        // The typo is reported, not quietly defaulted; the opted-out stay out.
        assert_eq!(r.unknown_policies.len(), 1);
        assert_eq!(r.unknown_policies[0].volume_ids, ["vol-t"]);
        // The default-covered volume of an untagged instance carries it
        // (names and copied tags).
        let data = r
            .targets
            .iter()
            .find_map(|t| match t {
                Target::Volume(v) if v.volume.id == "vol-data" => Some(v),
                _ => None,
            })
            .unwrap();
        assert_eq!(data.instance.as_ref().map(|i| i.id.as_str()), Some("i-3"));
    }

    #[test]
    fn unknown_policies_are_reported_per_volume_and_per_instance() {
        let i = inst("i-1", Some("gold"), &[("vol-2", "/dev/xvda")]);
        let r = run(
            &[vol("vol-1", Some("nope"), None)],
            &[i],
            &[vol("vol-2", None, Some(("i-1", "/dev/xvda")))],
        );
        assert!(r.targets.is_empty());
        assert_eq!(r.unknown_policies.len(), 2);
        let by_type: BTreeMap<_, _> = r
            .unknown_policies
            .iter()
            .map(|u| (u.resource_type, u))
            .collect();
        assert_eq!(by_type["volume"].policy, "nope");
        assert_eq!(by_type["instance"].policy, "gold");
        assert_eq!(by_type["instance"].volume_ids, ["vol-2"]);
    }

    #[test]
    fn instance_tag_covers_untagged_volumes_and_the_volume_tag_wins() {
        let i = inst(
            "i-1",
            Some("default"),
            &[("vol-a", "/dev/xvda"), ("vol-b", "/dev/sdf")],
        );
        let attached = [
            vol("vol-a", None, Some(("i-1", "/dev/xvda"))),
            vol("vol-b", Some("fleet"), Some(("i-1", "/dev/sdf"))),
        ];
        let r = run(&[attached[1].clone()], &[i], &attached);
        // vol-a inherits default (volume consistency); vol-b's own "fleet" wins.
        assert_eq!(r.volume_count(), 2);
        let policies: BTreeSet<_> = r.targets.iter().map(|t| t.policy().to_string()).collect();
        assert_eq!(
            policies,
            BTreeSet::from(["default".to_string(), "fleet".to_string()])
        );
    }

    #[test]
    fn instance_consistency_groups_volumes_and_excludes_other_policies() {
        let i = inst(
            "i-1",
            Some("fleet"),
            &[
                ("vol-a", "/dev/xvda"),
                ("vol-b", "/dev/sdf"),
                ("vol-c", "/dev/sdg"),
            ],
        );
        let attached = [
            vol("vol-a", None, Some(("i-1", "/dev/xvda"))),
            vol("vol-b", None, Some(("i-1", "/dev/sdf"))),
            vol("vol-c", Some("default"), Some(("i-1", "/dev/sdg"))),
        ];
        let r = run(&[attached[2].clone()], &[i], &attached);
        let group = r.targets.iter().find_map(|t| match t {
            Target::Instance(g) => Some(g),
            _ => None,
        });
        let group = group.expect("an instance target");
        assert_eq!(
            group
                .volumes
                .iter()
                .map(|v| v.id.as_str())
                .collect::<Vec<_>>(),
            ["vol-a", "vol-b"]
        );
        assert_eq!(group.excluded_volume_ids, ["vol-c"]);
        assert_eq!(r.volume_count(), 3);
    }

    #[test]
    fn an_instance_naming_an_unknown_policy_is_reported_even_when_its_volumes_have_their_own() {
        let i = inst("i-1", Some("gold"), &[("vol-a", "/dev/xvda")]);
        let a = vol("vol-a", Some("default"), Some(("i-1", "/dev/xvda")));
        let r = run(std::slice::from_ref(&a), &[i], std::slice::from_ref(&a));
        assert_eq!(r.volume_count(), 1);
        assert_eq!(r.unknown_policies.len(), 1);
        assert_eq!(r.unknown_policies[0].resource_id, "i-1");
        assert!(r.unknown_policies[0].volume_ids.is_empty());
    }

    #[test]
    fn an_instance_policy_on_a_lone_volume_snapshots_the_volume() {
        let r = run(&[vol("vol-1", Some("fleet"), None)], &[], &[]);
        assert!(matches!(r.targets[0], Target::Volume(_)));
    }

    #[test]
    fn every_volume_is_counted_once() {
        let i = inst("i-1", Some("default"), &[("vol-a", "/dev/xvda")]);
        let a = vol("vol-a", Some("default"), Some(("i-1", "/dev/xvda")));
        let r = run(std::slice::from_ref(&a), &[i], std::slice::from_ref(&a));
        assert_eq!(r.volume_count(), 1);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A small random account: up to 4 instances, up to 10 volumes, each
        /// volume maybe attached, each resource maybe tagged with a known,
        /// unknown or empty policy.
        fn account() -> impl Strategy<Value = (Vec<Volume>, Vec<Instance>)> {
            let tag = proptest::option::of(prop_oneof![
                Just("default"),
                Just("fleet"),
                Just("nope"),
                Just("")
            ]);
            let instances = proptest::collection::vec(tag.clone(), 0..4);
            let volumes = proptest::collection::vec((tag, proptest::option::of(0usize..4)), 0..10);
            (instances, volumes).prop_map(|(inst_tags, vol_specs)| {
                let n = inst_tags.len();
                let volumes: Vec<Volume> = vol_specs
                    .iter()
                    .enumerate()
                    .map(|(i, (t, on))| {
                        let on = on
                            .filter(|k| *k < n)
                            .map(|k| (format!("i-{k}"), format!("/dev/sd{i}")));
                        vol(
                            &format!("vol-{i}"),
                            *t,
                            on.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
                        )
                    })
                    .collect();
                let instances = inst_tags
                    .iter()
                    .enumerate()
                    .map(|(k, t)| {
                        let id = format!("i-{k}");
                        let vols: Vec<(String, String)> = volumes
                            .iter()
                            .filter_map(|v| {
                                v.attachment
                                    .as_ref()
                                    .filter(|a| a.instance_id == id)
                                    .map(|a| (v.id.clone(), a.device.clone()))
                            })
                            .collect();
                        let refs: Vec<(&str, &str)> =
                            vols.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                        inst(&id, *t, &refs)
                    })
                    .collect();
                (volumes, instances)
            })
        }

        /// What EC2's server-side filters list of the account: the volumes
        /// and instances with the selector tag, and the volumes attached to
        /// those instances.
        fn listed(
            volumes: &[Volume],
            instances: &[Instance],
        ) -> (Vec<Volume>, Vec<Instance>, Vec<Volume>) {
            let tagged_volumes = volumes
                .iter()
                .filter(|v| v.tags.contains_key("Backup"))
                .cloned()
                .collect();
            let tagged_instances: Vec<Instance> = instances
                .iter()
                .filter(|i| i.tags.contains_key("Backup"))
                .cloned()
                .collect();
            let attached = volumes
                .iter()
                .filter(|v| {
                    v.attachment
                        .as_ref()
                        .is_some_and(|a| tagged_instances.iter().any(|i| i.id == a.instance_id))
                })
                .cloned()
                .collect();
            (tagged_volumes, tagged_instances, attached)
        }

        proptest! {
            #[test]
            fn with_a_default_policy_every_volume_is_covered_excluded_reported_or_opted_out_once(
                (volumes, instances) in account(),
                types in proptest::collection::vec(prop_oneof![Just("gp3"), Just("sc1")], 10),
                opt_out in proptest::collection::vec(any::<bool>(), 14),
            ) {
                // Some tags turned into `none`: volumes 0-9, instances 10-13.
                let none = |mut tags: Tags, out: bool| {
                    if out && tags.contains_key("Backup") {
                        tags.insert("Backup".into(), OPT_OUT.into());
                    }
                    tags
                };
                let instances: Vec<Instance> = instances.into_iter().enumerate().map(|(k, mut i)| {
                    i.tags = none(i.tags, opt_out[10 + k]);
                    i
                }).collect();
                let policies = Policies::parse(r#"{
                    "default": {"schedule": "@daily", "keep": {"last": 3}, "exclude": {"volume_types": ["sc1"]}},
                    "fleet":   {"schedule": "@hourly", "keep": {"last": 3}, "consistency": "instance"}
                }"#).unwrap();
                let volumes: Vec<Volume> = volumes.into_iter().enumerate().map(|(i, mut v)| {
                    v.volume_type = Some(types[i].into());
                    v.tags = none(v.tags, opt_out[i]);
                    v
                }).collect();
                let (tagged_volumes, tagged_instances, attached) = listed(&volumes, &instances);
                let ids: BTreeSet<&str> = tagged_instances.iter().map(|i| i.id.as_str()).collect();
                let untagged: Vec<Instance> = instances.iter().filter(|i| !i.tags.contains_key("Backup")).cloned().collect();
                let mut r = resolve("Backup", &policies, &tagged_volumes, &tagged_instances, &attached);
                cover_by_default(&mut r, "Backup", policies.get("default").unwrap(), &volumes, &ids, &untagged);

                let mut seen: Vec<String> = r.targets.iter().flat_map(|t| t.volume_ids()).map(String::from).collect();
                seen.extend(r.excluded.iter().map(|e| e.volume_id.clone()));
                for u in &r.unknown_policies {
                    if u.resource_type == "volume" { seen.push(u.resource_id.clone()) } else { seen.extend(u.volume_ids.clone()) }
                }
                // The opted out: `none` on the volume, or on its instance
                // when the volume has no tag of its own.
                for v in &volumes {
                    let own = v.tags.get("Backup").map(|t| policy_name(t));
                    let instance = v.attachment.as_ref().and_then(|a| tagged_instances.iter().find(|i| i.id == a.instance_id));
                    let via = instance.and_then(|i| i.tags.get("Backup")).map(|t| policy_name(t));
                    if own.as_deref() == Some(OPT_OUT) || (own.is_none() && via.as_deref() == Some(OPT_OUT)) {
                        seen.push(v.id.clone());
                    }
                }
                let mut sorted = seen.clone();
                sorted.sort();
                sorted.dedup();
                prop_assert_eq!(sorted.len(), seen.len(), "a volume decided twice: {:?}", seen);
                let every: BTreeSet<String> = volumes.iter().map(|v| v.id.clone()).collect();
                prop_assert_eq!(sorted.into_iter().collect::<BTreeSet<_>>(), every, "a volume left behind");
                // The default never takes a volume a tag decides.
                for t in r.targets.iter().filter(|t| t.policy() == "default") {
                    for id in t.volume_ids() {
                        let v = volumes.iter().find(|v| v.id == id).unwrap();
                        let on_tagged = v.attachment.as_ref().is_some_and(|a| ids.contains(a.instance_id.as_str()));
                        prop_assert!(v.tags.get("Backup").is_some_and(|t| policy_name(t) == "default") || (!v.tags.contains_key("Backup") && !on_tagged)
                            || (on_tagged && instances.iter().any(|i| Some(&i.id) == v.attachment.as_ref().map(|a| &a.instance_id) && i.tags.get("Backup").is_some_and(|t| policy_name(t) == "default"))),
                            "{} defaulted although a tag decides it", id);
                    }
                }
            }
        }

        proptest! {
            #[test]
            fn an_excluded_volume_is_never_snapshotted_and_always_said_why(
                (volumes, instances) in account(),
                types in proptest::collection::vec(prop_oneof![Just("gp3"), Just("st1")], 10),
                scratch in proptest::collection::vec(any::<bool>(), 10),
                root in proptest::collection::vec(any::<bool>(), 10),
            ) {
                // The same account, its volumes typed, some tagged Scratch=yes
                // and some attached as their instance's root; `fleet` and
                // `default` exclude all three kinds.
                let policies = Policies::parse(r#"{
                    "default": {"schedule": "@daily", "keep": {"last": 3},
                                "exclude": {"boot_volumes": true, "volume_types": ["st1"], "tags": {"Scratch": "yes"}}},
                    "fleet":   {"schedule": "@hourly", "keep": {"last": 3}, "consistency": "instance",
                                "exclude": {"boot_volumes": true, "volume_types": ["st1"], "tags": {"Scratch": "yes"}}}
                }"#).unwrap();
                let volumes: Vec<Volume> = volumes.into_iter().enumerate().map(|(i, mut v)| {
                    v.volume_type = Some(types[i].into());
                    if scratch[i] { v.tags.insert("Scratch".into(), "yes".into()); }
                    if let (true, Some(a)) = (root[i], v.attachment.as_mut()) { a.device = "/dev/xvda".into(); }
                    v
                }).collect();
                let (tagged_volumes, tagged_instances, attached) = listed(&volumes, &instances);
                let r = resolve("Backup", &policies, &tagged_volumes, &tagged_instances, &attached);

                let targeted: BTreeSet<&str> = r.targets.iter().flat_map(|t| t.volume_ids()).collect();
                for e in &r.excluded {
                    prop_assert!(!targeted.contains(e.volume_id.as_str()), "{} excluded and snapshotted", e.volume_id);
                    let v = volumes.iter().find(|v| v.id == e.volume_id).unwrap();
                    prop_assert!(!v.tags.contains_key("Backup"), "its own tag is never overridden");
                    let kinds = [
                        v.attachment.as_ref().is_some_and(|a| a.device == "/dev/xvda"),
                        v.volume_type.as_deref() == Some("st1"),
                        v.tags.get("Scratch").map(String::as_str) == Some("yes"),
                    ];
                    prop_assert!(kinds.iter().any(|k| *k), "{} excluded for no reason: {}", e.volume_id, e.reason);
                }
                // Every volume its instance brings under a known policy, and
                // that matches an exclusion, is excluded: none slips into a set.
                for t in &r.targets {
                    let members: Vec<&Volume> = match t {
                        Target::Volume(v) => vec![&v.volume],
                        Target::Instance(g) => g.volumes.iter().collect(),
                    };
                    for v in members {
                        let own = v.tags.contains_key("Backup");
                        let root = v.attachment.as_ref().is_some_and(|a| a.device == "/dev/xvda");
                        let matches = root || v.volume_type.as_deref() == Some("st1")
                            || v.tags.get("Scratch").map(String::as_str) == Some("yes");
                        prop_assert!(own || !matches, "{} matches an exclusion but is snapshotted", v.id);
                    }
                    if let Target::Instance(g) = t {
                        for e in r.excluded.iter().filter(|e| e.instance_id.as_deref() == Some(g.instance.id.as_str()) && e.policy == g.policy) {
                            prop_assert!(g.excluded_volume_ids.contains(&e.volume_id));
                        }
                    }
                }
            }
        }

        proptest! {
            #[test]
            fn every_opted_in_volume_is_targeted_or_reported_exactly_once((volumes, instances) in account()) {
                let (tagged_volumes, tagged_instances, attached) = listed(&volumes, &instances);
                let r = run(&tagged_volumes, &tagged_instances, &attached);
                prop_assert!(r.excluded.is_empty(), "no policy here excludes anything");

                let mut seen: Vec<String> = r.targets.iter().flat_map(|t| t.volume_ids()).map(String::from).collect();
                for u in &r.unknown_policies {
                    if u.resource_type == "volume" { seen.push(u.resource_id.clone()) } else { seen.extend(u.volume_ids.clone()) }
                }
                let mut sorted = seen.clone();
                sorted.sort();
                sorted.dedup();
                prop_assert_eq!(sorted.len(), seen.len(), "a volume appears twice: {:?}", seen);

                let expected: BTreeSet<String> = tagged_volumes.iter().chain(&attached).map(|v| v.id.clone()).collect();
                prop_assert_eq!(sorted.into_iter().collect::<BTreeSet<_>>(), expected);

                // A volume's own tag always decides its policy.
                for t in &r.targets {
                    let members: Vec<&Volume> = match t {
                        Target::Volume(v) => vec![&v.volume],
                        Target::Instance(g) => g.volumes.iter().collect(),
                    };
                    for v in members {
                        if let Some(own) = v.tags.get("Backup") {
                            prop_assert_eq!(policy_name(own), t.policy());
                        }
                    }
                }
            }
        }
    }
}

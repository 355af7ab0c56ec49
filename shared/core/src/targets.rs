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
//! - a tag naming a policy that does not exist is reported, never skipped in silence.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::{Instance, Volume};
use crate::policy::{Consistency, Policies, DEFAULT_POLICY_NAME, OPT_OUT};

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

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    pub targets: Vec<Target>,
    pub unknown_policies: Vec<UnknownPolicy>,
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

        proptest! {
            #[test]
            fn every_opted_in_volume_is_targeted_or_reported_exactly_once((volumes, instances) in account()) {
                let tagged_volumes: Vec<Volume> = volumes.iter().filter(|v| v.tags.contains_key("Backup")).cloned().collect();
                let tagged_instances: Vec<Instance> = instances.iter().filter(|i| i.tags.contains_key("Backup")).cloned().collect();
                let attached: Vec<Volume> = volumes
                    .iter()
                    .filter(|v| v.attachment.as_ref().is_some_and(|a| tagged_instances.iter().any(|i| i.id == a.instance_id)))
                    .cloned()
                    .collect();
                let r = run(&tagged_volumes, &tagged_instances, &attached);

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

//! One destination region in one run: prove, track, choose, start, keep,
//! label (the steps of the crate's map; what a copying function does
//! alike is `ebs_lifecycle::services::copying`). Errors that leave the region
//! for the next run come back as text for its report; the other regions go
//! on.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::pacing::Pacer;
use ebs_lifecycle::ports::ec2::CopySnapshotRequest;
use ebs_lifecycle::ports::ledger::CopyInFlight;
use ebs_lifecycle::services::copying::{self, CopyPorts, Keeping};
use ebs_lifecycle_core::copies::{self, Candidate, Source};
use ebs_lifecycle_core::model::{Snapshot, SnapshotState};
use ebs_lifecycle_core::ownership::{self, Scope, Suspect};
use ebs_lifecycle_core::tags;

use crate::{Deletion, Destination, Ports, RegionReport, Sources, Started};

pub(crate) struct Region<'a> {
    pub ports: Ports<'a>,
    pub destination: Destination<'a>,
    pub config: &'a Config,
    /// The destination region, which is also the target's name.
    pub name: &'a str,
    pub now: DateTime<Utc>,
    pub deadline: Deadline,
}

impl Region<'_> {
    fn copy_ports(&self) -> CopyPorts<'_> {
        CopyPorts {
            protections: self.destination.protections,
            copier: self.destination.copier,
            deleter: self.destination.deleter,
            tagger: self.destination.tagger,
            ledger: self.ports.ledger,
        }
    }

    pub async fn run(
        &self,
        sources: &Sources,
        in_flight: Vec<CopyInFlight>,
        report: &mut RegionReport,
        suspects: &mut Vec<Suspect>,
    ) -> Result<(), String> {
        let (mut copies, held, in_flight) = self.prove(in_flight, report, suspects).await?;

        let tracked = copying::track(
            self.destination.tagger,
            self.ports.ledger,
            &mut copies,
            self.now,
        )
        .await;
        report.completed = tracked.completed;
        report.failed.extend(tracked.failed);
        let in_flight = copying::settle(self.ports.ledger, &copies, in_flight, self.now).await;

        let chosen = self.choose(sources, &copies, &in_flight, report);
        self.start(chosen, report).await?;

        let kept_there = self.config.policies.as_kept_in(self.name);
        let kept = copying::keep(
            self.copy_ports(),
            &copies,
            Keeping {
                config: self.config,
                policies: &kept_there,
                held,
                locks_required: false,
                now: self.now,
                deadline: self.deadline,
                pacing: self.ports.delete_pacing,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        report.left_for_later = kept.left_for_later;
        report.delete_failed = kept
            .failed
            .into_iter()
            .map(|(copy_id, error)| Deletion {
                copy_id,
                error: Some(error),
            })
            .collect();
        let deleted: BTreeSet<String> = kept.deleted.iter().cloned().collect();
        report.deleted = kept
            .deleted
            .into_iter()
            .map(|copy_id| Deletion {
                copy_id,
                error: None,
            })
            .collect();
        if !self.config.dry_run {
            copies.retain(|c| !deleted.contains(&c.id));
        }

        report.labelled = copying::label(
            self.destination.tagger,
            self.config.deployment_name(),
            &kept_there,
            &copies,
            self.now,
            self.deadline,
        )
        .await;
        report.copies = copies.len();
        report.in_flight = copies
            .iter()
            .filter(|c| c.state == SnapshotState::Pending)
            .count()
            + report.started.len()
            + report.unknown.len();
        Ok(())
    }

    /// The deployment's copies in the region, proven by the ledger; the
    /// in-flight records whose answer was lost resolved where they can be.
    async fn prove(
        &self,
        in_flight: Vec<CopyInFlight>,
        report: &mut RegionReport,
        suspects: &mut Vec<Suspect>,
    ) -> Result<(Vec<Snapshot>, BTreeSet<String>, Vec<CopyInFlight>), String> {
        let identity = &self.config.identity;
        let ledger = self.ports.ledger;
        let listed = self
            .destination
            .catalog
            .copies_from(self.config.deployment_name(), &identity.region)
            .await
            .map_err(|e| format!("listing the copies: {e}"))?;
        let ids: Vec<String> = listed.iter().map(|s| s.id.clone()).collect();
        let mut records: BTreeMap<String, ownership::CopyRecord> = if ids.is_empty() {
            BTreeMap::new()
        } else {
            ledger
                .copies(&ids)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|r| (r.copy_id.clone(), r))
                .collect()
        };
        let mut recorded: BTreeSet<String> = records.keys().cloned().collect();
        let resolved = copying::resolve_lost_answers(
            ledger,
            identity,
            &listed,
            &mut recorded,
            in_flight,
            self.now,
        )
        .await
        .map_err(|e| e.to_string())?;
        for copy_id in &resolved.adopted {
            if let Some(flight) = resolved
                .in_flight
                .iter()
                .find(|f| f.copy_id.as_deref() == Some(copy_id.as_str()))
            {
                records.insert(copy_id.clone(), copying::record_of(flight, copy_id));
            }
        }
        report.adopted = resolved.adopted;
        report.unknown = resolved.unknown;

        // The destination's copies (listed by their tags): a scheduled
        // Description among them is no copy of ours whatever its tags say
        // (the check strips a scheduled claim's copy tags, `lifecycle:target`
        // included, so the filter below drops it); no creation record is
        // read in a destination region.
        let sifted = ownership::sift(
            identity,
            &self.config.policies,
            &records,
            &ownership::Creations::default(),
            listed,
            Scope::SomeSnapshots,
        );
        let held = sifted.held_for_review();
        suspects.extend(sifted.suspects);
        let copies = sifted
            .owned
            .into_iter()
            .filter(|s| s.tags.get(tags::TARGET).map(String::as_str) == Some(self.name))
            .collect();
        Ok((copies, held, resolved.in_flight))
    }

    /// Per policy target and source volume, the next snapshot worth a copy;
    /// oldest first, within the region's free places.
    fn choose<'s>(
        &self,
        sources: &'s Sources,
        copies: &[Snapshot],
        in_flight: &[CopyInFlight],
        report: &mut RegionReport,
    ) -> Vec<&'s Snapshot> {
        let mut by_volume: BTreeMap<(&str, &str), Vec<&Snapshot>> = BTreeMap::new();
        for c in copies {
            if let (Some(policy), Some(volume)) = (c.tags.get(tags::POLICY), c.source_volume_id()) {
                by_volume
                    .entry((policy.as_str(), volume))
                    .or_default()
                    .push(c);
            }
        }
        let busy: BTreeSet<(&str, &str)> = in_flight
            .iter()
            .map(|f| (f.policy.as_str(), f.volume_id.as_str()))
            .collect();
        let mut chosen: Vec<(Source, &str, &'s Snapshot)> = Vec::new();
        for ((policy_name, volume), snapshots) in sources {
            let Some(policy) = self.config.policies.get(policy_name) else {
                continue;
            };
            let Some(target) = policy
                .copies
                .iter()
                .find(|t| t.account.is_none() && t.region == self.name)
            else {
                continue;
            };
            let key = (policy_name.as_str(), volume.as_str());
            let state = copies::target_state(
                by_volume.get(&key).into_iter().flatten().copied(),
                busy.contains(&key),
            );
            // EC2 copies nothing from the archive tier: an archived snapshot
            // is skipped (a copy newer than it goes on).
            let candidates: Vec<Source> = snapshots
                .iter()
                .filter(|s| !s.archived)
                .filter_map(|s| {
                    Some(Source {
                        id: s.id.clone(),
                        time: s.retention_time()?,
                    })
                })
                .collect();
            let Some(next) = copies::next_copy(
                &candidates,
                &state,
                &target.keep,
                policy.schedule.timezone(),
            ) else {
                continue;
            };
            if let Some(snapshot) = snapshots.iter().find(|s| s.id == next.id) {
                chosen.push((next.clone(), volume.as_str(), snapshot));
            }
        }
        let pending = copies
            .iter()
            .filter(|c| c.state == SnapshotState::Pending)
            .count();
        let unknown = in_flight.iter().filter(|f| f.copy_id.is_none()).count();
        let candidates: Vec<Candidate> = chosen
            .iter()
            .map(|(source, volume_id, _)| Candidate { volume_id, source })
            .collect();
        let planned: BTreeSet<&str> = copies::plan(candidates, pending + unknown)
            .into_iter()
            .map(|c| c.source.id.as_str())
            .collect();
        report.waiting += chosen.len() - planned.len();
        let mut out: Vec<&Snapshot> = chosen
            .iter()
            .filter(|(source, _, _)| planned.contains(source.id.as_str()))
            .map(|(_, _, s)| *s)
            .collect();
        out.sort_by_key(|s| (s.retention_time(), s.id.clone()));
        out
    }

    /// Start the chosen copies: the in-flight record, then CopySnapshot.
    async fn start(&self, chosen: Vec<&Snapshot>, report: &mut RegionReport) -> Result<(), String> {
        let identity = &self.config.identity;
        let mut pacer = Pacer::new(self.ports.copy_pacing);
        let mut stopped = false;
        for source in chosen {
            if stopped || self.deadline.is_near() {
                report.waiting += 1;
                continue;
            }
            let (Some(policy), Some(volume), Some(time)) = (
                source.tags.get(tags::POLICY),
                source.source_volume_id(),
                source.retention_time(),
            ) else {
                continue;
            };
            let Some(target) = self.config.policies.get(policy).and_then(|p| {
                p.copies
                    .iter()
                    .find(|t| t.account.is_none() && t.region == self.name)
            }) else {
                continue;
            };
            let flight = CopyInFlight {
                source_snapshot_id: source.id.clone(),
                target: self.name.to_string(),
                volume_id: volume.to_string(),
                policy: policy.clone(),
                slot: source
                    .tags
                    .get(tags::SLOT)
                    .and_then(|v| tags::parse_time(v))
                    .unwrap_or(time),
                created_at: time,
                asked_at: self.now,
                copy_id: None,
            };
            let request = CopySnapshotRequest {
                source_snapshot_id: source.id.clone(),
                source_region: Some(identity.region.clone()),
                kms_key_id: Some(target.kms_key.clone()),
                description: identity.copy(&identity.region, &source.id),
                tags: copies::copy_tags(source, &identity.region, self.name),
            };
            // No record, no copy: a copy whose answer is lost must be
            // findable, and its source protected, before it can exist.
            let started = copying::start(
                self.copy_ports(),
                flight.clone(),
                &request,
                &mut pacer,
                self.now,
            )
            .await
            .map_err(|e| e.to_string())?;
            match started {
                copying::Started::Copy(copy_id) => report.started.push(Started {
                    source_snapshot_id: source.id.clone(),
                    copy_id,
                    volume_id: flight.volume_id,
                    policy: flight.policy,
                }),
                copying::Started::Wait => {
                    report.waiting += 1;
                    stopped = true;
                }
                copying::Started::SourceGone => {}
                copying::Started::Unknown => report.unknown.push(source.id.clone()),
                copying::Started::Refused { failure, stop } => {
                    stopped = stop;
                    report.failed.push(failure);
                }
            }
        }
        Ok(())
    }
}

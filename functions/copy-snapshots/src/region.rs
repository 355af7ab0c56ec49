//! One destination region in one run: prove, track, choose, start, keep,
//! label (the steps of the crate's map). Errors that leave the region for
//! the next run come back as text for its report; the other regions go on.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::pacing::Pacer;
use ebs_lifecycle::ports::ec2::{CopySnapshotRequest, Ec2Error, TAG_BATCH};
use ebs_lifecycle::ports::ledger::CopyInFlight;
use ebs_lifecycle_core::copies::{self, Candidate, LostAnswer, Source};
use ebs_lifecycle_core::expiry;
use ebs_lifecycle_core::model::{Snapshot, SnapshotState, Tags};
use ebs_lifecycle_core::ownership::{self, CopyRecord, Scope, Suspect};
use ebs_lifecycle_core::safety::{AccountFacts, DeletionGate, Protection};
use ebs_lifecycle_core::tagging;
use ebs_lifecycle_core::tags::{self, LifecycleState};

use crate::{Deletion, Destination, Failed, Ports, RegionReport, Sources, Started};

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
    pub async fn run(
        &self,
        sources: &Sources,
        in_flight: Vec<CopyInFlight>,
        report: &mut RegionReport,
        suspects: &mut Vec<Suspect>,
    ) -> Result<(), String> {
        let (mut copies, held, in_flight) = self.prove(in_flight, report, suspects).await?;
        let in_flight = self.track(&mut copies, in_flight, report).await;
        let chosen = self.choose(sources, &copies, &in_flight, report);
        self.start(chosen, report).await?;
        let deleted = self.keep(&copies, held, report).await?;
        copies.retain(|c| !deleted.contains(&c.id));
        self.label(&copies, report).await;
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
            .copies_from(&self.config.deployment_name, &identity.region)
            .await
            .map_err(|e| format!("listing the copies: {e}"))?;
        let ids: Vec<String> = listed.iter().map(|s| s.id.clone()).collect();
        let mut records: BTreeMap<String, CopyRecord> = if ids.is_empty() {
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

        let mut kept = Vec::new();
        for mut flight in in_flight {
            if flight.copy_id.is_some() {
                kept.push(flight);
                continue;
            }
            let unrecorded = listed.iter().filter(|s| !records.contains_key(&s.id));
            let description = identity.copy(&identity.region, &flight.source_snapshot_id);
            match copies::find_lost_copy(
                unrecorded,
                &description,
                &identity.account,
                flight.asked_at,
                self.now,
            ) {
                LostAnswer::Found(copy_id) => {
                    let record = self.record_of(&flight, &copy_id);
                    ledger
                        .record_copy(&record)
                        .await
                        .map_err(|e| e.to_string())?;
                    flight.copy_id = Some(copy_id.clone());
                    if let Err(e) = ledger.begin_copy(&flight).await {
                        tracing::warn!(error = %e, copy_id, "could not note the adopted copy's id on its in-flight record; the next run finds it again");
                    }
                    records.insert(copy_id.clone(), record);
                    report.adopted.push(copy_id);
                    kept.push(flight);
                }
                LostAnswer::Wait => {
                    report.unknown.push(flight.source_snapshot_id.clone());
                    kept.push(flight);
                }
                LostAnswer::NeverStarted => {
                    ledger
                        .end_copy(&flight.source_snapshot_id, self.name)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }

        let sifted = ownership::sift(
            identity,
            &self.config.policies,
            &records,
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
        Ok((copies, held, kept))
    }

    fn record_of(&self, flight: &CopyInFlight, copy_id: &str) -> CopyRecord {
        CopyRecord {
            copy_id: copy_id.to_string(),
            source_snapshot_id: flight.source_snapshot_id.clone(),
            volume_id: flight.volume_id.clone(),
            policy: flight.policy.clone(),
            slot: flight.slot,
            created_at: flight.created_at,
            target: Some(self.name.to_string()),
        }
    }

    /// Pending -> completed or failed, by EC2's state; the tags say so and
    /// the in-flight record ends. Returns the records still in flight.
    async fn track(
        &self,
        copies: &mut [Snapshot],
        mut in_flight: Vec<CopyInFlight>,
        report: &mut RegionReport,
    ) -> Vec<CopyInFlight> {
        let tagged = |s: &Snapshot, state: LifecycleState| {
            s.tags.get(tags::STATE).map(String::as_str) == Some(state.as_str())
        };
        let done: Vec<String> = copies
            .iter()
            .filter(|s| {
                s.state == SnapshotState::Completed && !tagged(s, LifecycleState::Completed)
            })
            .map(|s| s.id.clone())
            .collect();
        let failed: Vec<String> = copies
            .iter()
            .filter(|s| s.state == SnapshotState::Error && !tagged(s, LifecycleState::Failed))
            .map(|s| s.id.clone())
            .collect();
        for (ids, state) in [
            (done, LifecycleState::Completed),
            (failed, LifecycleState::Failed),
        ] {
            if ids.is_empty() {
                continue;
            }
            let mut new_tags = Tags::new();
            new_tags.insert(tags::STATE.into(), state.as_str().into());
            if state == LifecycleState::Completed {
                new_tags.insert(tags::COMPLETED_AT.into(), tags::format_time(self.now));
            }
            if let Err(e) = self.destination.tagger.tag_snapshots(&ids, &new_tags).await {
                // Untagged, a completed copy does not count yet and a failed
                // one is not reported yet: the next run does both.
                tracing::warn!(region = self.name, error = %e, "could not tag the copies' new state; the next run tries again");
                continue;
            }
            for copy in copies.iter_mut().filter(|c| ids.contains(&c.id)) {
                copy.tags.extend(new_tags.clone());
                let source = copy.copy_of().unwrap_or_default().to_string();
                if let Err(e) = self.ports.ledger.end_copy(&source, self.name).await {
                    tracing::warn!(error = %e, source, "could not end the in-flight record; its source stays protected until the record expires");
                }
                in_flight.retain(|f| f.copy_id.as_deref() != Some(copy.id.as_str()));
                if state == LifecycleState::Completed {
                    report.completed.push(copy.id.clone());
                } else {
                    report.failed.push(Failed {
                        source_snapshot_id: source,
                        copy_id: Some(copy.id.clone()),
                        error_kind: "copy-error".into(),
                        error: "EC2 reports the copy in state error".into(),
                        first_report: true,
                    });
                }
            }
        }
        // A record whose copy is no longer pending (its end was not written
        // last time) or gone (deleted by hand) ends now, so its volume is
        // not blocked until the record expires.
        let mut still = Vec::new();
        for flight in in_flight {
            let Some(copy_id) = flight.copy_id.as_deref() else {
                still.push(flight);
                continue;
            };
            let pending = copies
                .iter()
                .find(|c| c.id == copy_id)
                .map(|c| c.state == SnapshotState::Pending);
            let settled = match pending {
                Some(pending) => !pending,
                None => self.now >= flight.asked_at + copies::LOST_ANSWER_WINDOW,
            };
            if settled {
                self.end(&flight).await;
            } else {
                still.push(flight);
            }
        }
        still
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
            let candidates: Vec<Source> = snapshots
                .iter()
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
        let ledger = self.ports.ledger;
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
            // No record, no copy: a copy whose answer is lost must be
            // findable, and its source protected, before it can exist.
            ledger
                .begin_copy(&flight)
                .await
                .map_err(|e| e.to_string())?;
            let request = CopySnapshotRequest {
                source_snapshot_id: source.id.clone(),
                source_region: Some(identity.region.clone()),
                kms_key_id: Some(target.kms_key.clone()),
                description: identity.copy(&identity.region, &source.id),
                tags: copies::copy_tags(source, &identity.region, self.name),
            };
            pacer.ready().await;
            match self.destination.copier.copy_snapshot(&request).await {
                Ok(copy_id) => {
                    let record = self.record_of(&flight, &copy_id);
                    if let Err(e) = ledger.record_copy(&record).await {
                        // The in-flight record without an id stays: the
                        // next run finds the copy by its Description.
                        tracing::warn!(error = %e, copy_id, "could not record the copy; the next run adopts it");
                    } else if let Err(e) = ledger
                        .begin_copy(&CopyInFlight {
                            copy_id: Some(copy_id.clone()),
                            ..flight.clone()
                        })
                        .await
                    {
                        tracing::warn!(error = %e, copy_id, "could not note the copy's id on its in-flight record; the next run finds it again");
                    }
                    report.started.push(Started {
                        source_snapshot_id: source.id.clone(),
                        copy_id,
                        volume_id: flight.volume_id,
                        policy: flight.policy,
                    });
                }
                // EC2 answered: nothing started. The quota and throttling
                // pass; the next run goes on.
                Err(Ec2Error::Throttled { .. } | Ec2Error::ResourceLimitExceeded) => {
                    self.end(&flight).await;
                    report.waiting += 1;
                    stopped = true;
                }
                // The source went meanwhile (a person deleted it).
                Err(Ec2Error::SnapshotNotFound) => self.end(&flight).await,
                // No answer: it may have started. The record stays; the next
                // run finds the copy or proves it never started.
                Err(Ec2Error::Transport { .. }) => {
                    report.unknown.push(source.id.clone());
                }
                Err(e) => {
                    self.end(&flight).await;
                    let first_report = ledger
                        .first_report(&format!("{}@{}", source.id, self.name), self.now)
                        .await
                        .unwrap_or(true);
                    // A key that cannot be used fails every copy into the
                    // region: one refusal says it.
                    stopped = matches!(e, Ec2Error::KeyUnusable { .. });
                    report.failed.push(Failed {
                        source_snapshot_id: source.id.clone(),
                        copy_id: None,
                        error_kind: e.kind().into(),
                        error: e.to_string(),
                        first_report,
                    });
                }
            }
        }
        Ok(())
    }

    async fn end(&self, flight: &CopyInFlight) {
        if let Err(e) = self
            .ports
            .ledger
            .end_copy(&flight.source_snapshot_id, self.name)
            .await
        {
            tracing::warn!(error = %e, source = flight.source_snapshot_id, "could not end the in-flight record of a copy that never started; the next run proves it never started");
        }
    }

    /// The targets' retention, under every safety rule and within the
    /// 24-hour deletion budget. Returns the ids deleted.
    async fn keep(
        &self,
        copies: &[Snapshot],
        held: BTreeSet<String>,
        report: &mut RegionReport,
    ) -> Result<BTreeSet<String>, String> {
        let mut deleted = BTreeSet::new();
        if copies.is_empty() {
            return Ok(deleted);
        }
        let protections = self.destination.protections;
        let ami_snapshot_ids = protections
            .ami_snapshot_ids()
            .await
            .map_err(|e| format!("reading the AMIs, nothing deleted: {e}"))?;
        let ids: Vec<String> = copies.iter().map(|c| c.id.clone()).collect();
        let locked_snapshot_ids = protections
            .locked_snapshot_ids(&ids)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "snapshot locks could not be checked; EC2 still refuses to delete a locked snapshot");
                BTreeSet::new()
            });
        let facts = AccountFacts {
            deployment: self.config.deployment_name.clone(),
            ami_snapshot_ids,
            locked_snapshot_ids,
            held_for_review: held,
            copying: BTreeSet::new(),
            now: self.now,
        };
        let kept_there = self.config.policies.as_kept_in(self.name);
        // Every copy is judged by the target's rules whether or not its
        // source volume still exists (`as_kept_in` sets both alike).
        let existing = BTreeSet::new();
        let planning = DeletionGate::new(facts.clone(), copies, self.config.max_deletions);
        let plans = expiry::plan(copies, &kept_there, &existing, &planning);
        let wanted = plans
            .iter()
            .flat_map(|p| &p.snapshots)
            .filter(|p| p.deletable())
            .count();
        if wanted == 0 {
            return Ok(deleted);
        }
        let ledger = self.ports.ledger;
        let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
        let granted = ledger
            .reserve_deletions(self.now, wanted, self.config.max_deletions)
            .await
            .map_err(|e| format!("the deletion budget, nothing deleted: {e}"))?;
        let mut gate = DeletionGate::new(facts, copies, granted);
        let mut pacer = Pacer::new(self.ports.delete_pacing);
        let mut attempted = 0u32;
        for planned in plans.iter().flat_map(|p| p.snapshots.iter().rev()) {
            if !planned.deletable() {
                continue;
            }
            let copy = planned.snapshot;
            if self.deadline.is_near() {
                report.left_for_later += 1;
                continue;
            }
            let authorized = match gate.authorize(copy, planned.retention.as_deref()) {
                Ok(a) => a,
                Err(Protection::CapReached) => {
                    report.left_for_later += 1;
                    continue;
                }
                Err(_) => continue,
            };
            if self.config.dry_run {
                report.deleted.push(Deletion {
                    copy_id: copy.id.clone(),
                    error: None,
                });
                continue;
            }
            pacer.ready().await;
            attempted += 1;
            match self.destination.deleter.delete_snapshot(&authorized).await {
                Ok(()) | Err(Ec2Error::SnapshotNotFound) => {
                    if let Err(e) = ledger.forget_copy(&copy.id).await {
                        tracing::warn!(copy_id = copy.id, error = %e, "could not forget a deleted copy's record (harmless: its id is never reused)");
                    }
                    deleted.insert(copy.id.clone());
                    report.deleted.push(Deletion {
                        copy_id: copy.id.clone(),
                        error: None,
                    });
                }
                Err(e) => report.delete_failed.push(Deletion {
                    copy_id: copy.id.clone(),
                    error: Some(e.to_string()),
                }),
            }
        }
        if let Err(e) = ledger
            .release_deletions(self.now, self.now, granted.saturating_sub(attempted))
            .await
        {
            tracing::warn!(error = %e, "could not give back the unused deletions; they count against the next 24 hours");
        }
        Ok(deleted)
    }

    /// `lifecycle:retained-by` and `lifecycle:expires-at` on the copies.
    async fn label(&self, copies: &[Snapshot], report: &mut RegionReport) {
        let kept_there = self.config.policies.as_kept_in(self.name);
        let plan =
            tagging::label_copies(&self.config.deployment_name, &kept_there, copies, self.now);
        for batch in tagging::batches(&plan.changes, TAG_BATCH) {
            if self.deadline.is_near() {
                break;
            }
            match self
                .destination
                .tagger
                .tag_snapshots(&batch.snapshot_ids, &batch.tags)
                .await
            {
                Ok(()) => report.labelled += batch.snapshot_ids.len(),
                Err(e) => {
                    tracing::warn!(region = self.name, error = %e, "could not label copies; the next run tries again");
                }
            }
        }
    }
}

//! The guarantee of complete-snapshots, as a property: after any sequence of
//! duplicate, late, reordered or missing events followed by one reconcile
//! run, every managed snapshot's `lifecycle:state` matches EC2, foreign
//! snapshots are untouched, and each failure was notified exactly once.
//!
//! EC2 is modelled in memory behind the function's own ports (the traits it
//! is written against), so thousands of sequences run in a second.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};

use complete_snapshots::{handle, Ports};
use ebs_lifecycle::config::Config;
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::ports::ec2::{Ec2Error, SnapshotCatalog, SnapshotTagger};
use ebs_lifecycle::ports::ledger::{
    CopyInFlight, CreationIntent, CreationRecord, Ledger, LedgerError, StopRecord,
};
use ebs_lifecycle::ports::notifier::{Notifier, NotifyError};
use ebs_lifecycle_core::holds::Hold;
use ebs_lifecycle_core::model::{Snapshot, SnapshotState, Tags};
use ebs_lifecycle_core::notify::{Notification, NotificationKind};
use ebs_lifecycle_core::ownership::{AskedKey, CopyRecord, Identity, Subject};
use ebs_lifecycle_core::schedule::ScheduleRecord;
use ebs_lifecycle_core::tags::{self, ConsistencyLabel, LifecycleLabels, LifecycleState};

/// EC2 as far as this function sees it.
#[derive(Default)]
struct Ec2Model {
    snapshots: Mutex<BTreeMap<String, Snapshot>>,
    failures_notified: Mutex<Vec<String>>,
    /// The ledger's reports (alerts sent), as the stack's table keeps them.
    reports: Mutex<std::collections::BTreeSet<String>>,
}

#[async_trait]
impl SnapshotCatalog for Ec2Model {
    async fn snapshots_for_slot(
        &self,
        _: &ebs_lifecycle_core::ownership::Identity,
        _: &str,
        _: DateTime<Utc>,
    ) -> Result<Vec<Snapshot>, Ec2Error> {
        Ok(Vec::new())
    }

    async fn snapshots_by_id(&self, ids: &[String]) -> Result<Vec<Snapshot>, Ec2Error> {
        let all = self.snapshots.lock().unwrap();
        Ok(ids.iter().filter_map(|id| all.get(id).cloned()).collect())
    }

    async fn managed_snapshots(&self, _: &str) -> Result<Vec<Snapshot>, Ec2Error> {
        Ok(Vec::new())
    }

    async fn managed_snapshots_of_policies(
        &self,
        _: &str,
        _: &[String],
    ) -> Result<Vec<Snapshot>, Ec2Error> {
        Ok(Vec::new())
    }

    async fn copies_from(&self, _: &str, _: &str) -> Result<Vec<Snapshot>, Ec2Error> {
        Ok(Vec::new())
    }

    async fn shared_with_me(&self, _: &[String]) -> Result<Vec<Snapshot>, Ec2Error> {
        Ok(Vec::new())
    }

    async fn shared_with(&self, _: &str) -> Result<Vec<Snapshot>, Ec2Error> {
        Ok(Vec::new())
    }

    async fn owned_snapshots(&self) -> Result<Vec<Snapshot>, Ec2Error> {
        Ok(self.snapshots.lock().unwrap().values().cloned().collect())
    }

    async fn encrypted_copies(&self, _: &str) -> Result<Vec<Snapshot>, Ec2Error> {
        Ok(Vec::new())
    }

    async fn managed_snapshots_of_volumes(
        &self,
        _: &str,
        _: &[String],
    ) -> Result<Vec<Snapshot>, Ec2Error> {
        Ok(Vec::new())
    }

    async fn managed_snapshots_in_state(
        &self,
        deployment: &str,
        state: LifecycleState,
    ) -> Result<Vec<Snapshot>, Ec2Error> {
        let all = self.snapshots.lock().unwrap();
        Ok(all
            .values()
            .filter(|s| {
                s.tags.get(tags::MANAGED_BY).map(String::as_str) == Some(deployment)
                    && s.tags.get(tags::STATE).map(String::as_str) == Some(state.as_str())
            })
            .cloned()
            .collect())
    }

    async fn unfinished_snapshots(
        &self,
        identity: &ebs_lifecycle_core::ownership::Identity,
    ) -> Result<Vec<Snapshot>, Ec2Error> {
        let all = self.snapshots.lock().unwrap();
        let prefix = identity.any_pattern();
        let prefix = prefix.trim_end_matches('*');
        Ok(all
            .values()
            .filter(|s| {
                matches!(s.state, SnapshotState::Pending | SnapshotState::Error)
                    && s.description
                        .as_deref()
                        .is_some_and(|d| d.starts_with(prefix))
            })
            .cloned()
            .collect())
    }
}

#[async_trait]
impl SnapshotTagger for Ec2Model {
    async fn tag_snapshots(&self, ids: &[String], tags: &Tags) -> Result<(), Ec2Error> {
        let mut all = self.snapshots.lock().unwrap();
        for id in ids {
            let s = all.get_mut(id).expect("tags only existing snapshots");
            s.tags.extend(tags.clone());
        }
        Ok(())
    }
}

/// The stack's ledger holds nothing this function reads: no copy here.
#[async_trait]
impl Ledger for Ec2Model {
    async fn record_stop(&self, _: &StopRecord) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn stops(&self) -> Result<Vec<StopRecord>, LedgerError> {
        Ok(Vec::new())
    }
    async fn forget_stop(&self, _: &str) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn creations_since(&self) -> Result<Option<DateTime<Utc>>, LedgerError> {
        Ok(None)
    }
    async fn begin_creations(&self, _: DateTime<Utc>) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn record_creation(&self, _: &CreationRecord) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn ask_creation(&self, _: &CreationIntent) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn asked(&self, _: &[AskedKey]) -> Result<Vec<CreationIntent>, LedgerError> {
        Ok(Vec::new())
    }
    async fn forget_ask(&self, _: &AskedKey) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn creations(&self, _: &[String]) -> Result<Vec<String>, LedgerError> {
        Ok(Vec::new())
    }
    async fn forget_creation(&self, _: &str) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn record_copy(&self, _: &CopyRecord) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn copies(&self, _: &[String]) -> Result<Vec<CopyRecord>, LedgerError> {
        Ok(Vec::new())
    }
    async fn forget_copy(&self, _: &str) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn begin_copy(&self, _: &CopyInFlight) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn copies_in_flight(&self) -> Result<Vec<CopyInFlight>, LedgerError> {
        Ok(Vec::new())
    }
    async fn end_copy(&self, _: &str, _: &str) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn first_seen(
        &self,
        _: &[String],
        _: DateTime<Utc>,
    ) -> Result<std::collections::BTreeMap<String, DateTime<Utc>>, LedgerError> {
        Ok(Default::default())
    }
    async fn reserve_deletions(
        &self,
        _: DateTime<Utc>,
        wanted: u32,
        _: u32,
    ) -> Result<u32, LedgerError> {
        Ok(wanted)
    }
    async fn release_deletions(
        &self,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
        _: u32,
    ) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn cursor(&self, _: &str) -> Result<Option<String>, LedgerError> {
        Ok(None)
    }
    async fn set_cursor(&self, _: &str, _: Option<&str>) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn reported(&self, ids: &[String]) -> Result<Vec<String>, LedgerError> {
        let reports = self.reports.lock().unwrap();
        Ok(ids
            .iter()
            .filter(|id| reports.contains(*id))
            .cloned()
            .collect())
    }
    async fn first_report(&self, id: &str, _: DateTime<Utc>) -> Result<bool, LedgerError> {
        Ok(self.reports.lock().unwrap().insert(id.to_string()))
    }
    async fn reserve_copies(
        &self,
        _: &str,
        _: DateTime<Utc>,
        _: u32,
        _: u32,
    ) -> Result<u32, LedgerError> {
        unreachable!("complete-snapshots never copies")
    }
    async fn release_copies(
        &self,
        _: &str,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
        _: u32,
    ) -> Result<(), LedgerError> {
        unreachable!("complete-snapshots never copies")
    }
    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, LedgerError> {
        Ok(Vec::new())
    }
    async fn record_schedule(&self, _: &ScheduleRecord) -> Result<(), LedgerError> {
        unreachable!("complete-snapshots never records a schedule")
    }
    async fn holds(&self) -> Result<Vec<Hold>, LedgerError> {
        Ok(Vec::new())
    }
    async fn set_hold(&self, _: &Hold) -> Result<(), LedgerError> {
        unreachable!("complete-snapshots never holds")
    }
    async fn release_hold(&self, _: &str) -> Result<(), LedgerError> {
        unreachable!("complete-snapshots never releases")
    }
}

#[async_trait]
impl Notifier for Ec2Model {
    async fn publish(&self, n: &Notification) -> Result<(), NotifyError> {
        if n.kind == NotificationKind::SnapshotFailed {
            let id = n.details["snapshot_id"].as_str().unwrap().to_string();
            self.failures_notified.lock().unwrap().push(id);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Completes,
    Fails,
}

#[derive(Debug, Clone)]
struct Case {
    /// Per snapshot: its fate, whether this deployment manages it, and how
    /// many times its event is delivered (0 = lost).
    snapshots: Vec<(Fate, bool, usize)>,
    /// Order of deliveries, as a permutation seed.
    order: Vec<usize>,
    /// Deliveries that arrive while EC2's describe still says `pending`.
    lagging: Vec<bool>,
}

fn cases() -> impl Strategy<Value = Case> {
    let snapshot = (
        prop_oneof![Just(Fate::Completes), Just(Fate::Fails)],
        proptest::bool::weighted(0.8),
        0usize..4,
    );
    proptest::collection::vec(snapshot, 1..6).prop_flat_map(|snapshots| {
        let deliveries: usize = snapshots.iter().map(|s| s.2).sum();
        (
            Just(snapshots),
            Just((0..deliveries).collect::<Vec<_>>()).prop_shuffle(),
            proptest::collection::vec(proptest::bool::ANY, deliveries),
        )
            .prop_map(|(snapshots, order, lagging)| Case {
                snapshots,
                order,
                lagging,
            })
    })
}

fn labels(deployment: &str) -> Tags {
    LifecycleLabels {
        managed_by: deployment.into(),
        policy: "default".into(),
        slot: tags::parse_time("2026-03-01T00:00:00Z").unwrap(),
        state: LifecycleState::Pending,
        volume_id: Some("vol-1".into()),
        instance_id: None,
        device: None,
        created_at: tags::parse_time("2026-03-01T00:01:00Z").unwrap(),
        completed_at: None,
        consistency: ConsistencyLabel::Crash,
        retained_by: None,
        expires_at: None,
        hold: false,
    }
    .to_tags()
}

fn event(id: &str, fate: Fate) -> Value {
    json!({
        "detail-type": "EBS Snapshot Notification", "source": "aws.ec2",
        "detail": {
            "event": "createSnapshot",
            "result": if fate == Fate::Completes { "succeeded" } else { "failed" },
            "cause": if fate == Fate::Fails { "injected" } else { "" },
            "snapshot_id": format!("arn:aws:ec2::us-east-1:snapshot/{id}"),
            "source": "arn:aws:ec2::us-east-1:volume/vol-1",
            "endTime": "2026-03-01T00:09:00Z"
        }
    })
}

fn config() -> Config {
    Config::from_lookup(|name| {
        let value = match name {
            "DEPLOYMENT_NAME" => "ours",
            "ACCOUNT_ID" => "123456789012",
            "AWS_REGION" => "us-east-1",
            "LEDGER_TABLE" => "ours-ledger",
            _ => return None,
        };
        Some(value.to_string())
    })
    .unwrap()
}

/// The Description create-snapshots gives the snapshot of `labels`.
fn description(deployment: &str) -> String {
    Identity {
        deployment: deployment.into(),
        account: "123456789012".into(),
        region: "us-east-1".into(),
    }
    .scheduled(
        &Subject::Volume("vol-1".into()),
        "default",
        tags::parse_time("2026-03-01T00:00:00Z").unwrap(),
    )
}

fn ec2_state(fate: Fate) -> SnapshotState {
    match fate {
        Fate::Completes => SnapshotState::Completed,
        Fate::Fails => SnapshotState::Error,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn after_any_delivery_sequence_and_one_reconcile_tags_match_ec2_and_failures_were_notified_once(case in cases()) {
        let model = Ec2Model::default();
        let mut deliveries = Vec::new();
        for (i, (fate, ours, times)) in case.snapshots.iter().enumerate() {
            let id = format!("snap-{i:04}");
            let owner = if *ours { "ours" } else { "theirs" };
            model.snapshots.lock().unwrap().insert(id.clone(), Snapshot {
                id: id.clone(),
                volume_id: Some("vol-1".into()),
                state: ec2_state(*fate),
                start_time: tags::parse_time("2026-03-01T00:01:00Z"),
                volume_size_gib: Some(8),
                full_size_bytes: None,
                archived: false,
                restore_expiry: None,
                encrypted: true,
                kms_key_id: None,
                description: Some(description(owner)),
                owner_id: None,
                tags: labels(owner),
            });
            deliveries.extend(std::iter::repeat_n((id, *fate), *times));
        }
        let config = config();
        let ports = Ports { catalog: &model, tagger: &model, notifier: &model, ledger: &model };
        let now = tags::parse_time("2026-03-01T00:10:00Z").unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            for (position, &k) in case.order.iter().enumerate() {
                let (id, fate) = &deliveries[k];
                // A lagging describe: EC2 still says pending when the event arrives.
                let real = model.snapshots.lock().unwrap()[id].state;
                if case.lagging[position] {
                    model.snapshots.lock().unwrap().get_mut(id).unwrap().state = SnapshotState::Pending;
                }
                handle(ports, &config, &event(id, *fate), now, Deadline::after(Duration::from_secs(600))).await.unwrap();
                model.snapshots.lock().unwrap().get_mut(id).unwrap().state = real;
            }
            handle(ports, &config, &json!({"kind": "tick"}), now, Deadline::after(Duration::from_secs(600))).await.unwrap();
        });

        let all = model.snapshots.lock().unwrap();
        let notified = model.failures_notified.lock().unwrap();
        for (i, (fate, ours, _)) in case.snapshots.iter().enumerate() {
            let id = format!("snap-{i:04}");
            let state = all[&id].tags[tags::STATE].as_str();
            let times_notified = notified.iter().filter(|n| **n == id).count();
            if *ours {
                let expected = if *fate == Fate::Completes { "completed" } else { "failed" };
                prop_assert_eq!(state, expected, "snapshot {}", id);
                prop_assert_eq!(times_notified, usize::from(*fate == Fate::Fails), "snapshot {}", id);
            } else {
                prop_assert_eq!(state, "pending", "foreign snapshot {} was touched", id);
                prop_assert_eq!(times_notified, 0);
            }
        }
    }
}

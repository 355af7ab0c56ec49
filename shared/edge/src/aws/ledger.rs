//! The stack's ledger on DynamoDB: [`crate::ports::ledger::Ledger`] on the
//! SDK client. One table per stack (the template's `Ledger`, written only
//! by the stack's function roles), key `pk` (what kind of record) and `sk`
//! (which one):
//!
//! | pk | sk | attributes |
//! |---|---|---|
//! | `stop` | instance id | `policy`, `stopped_at` |
//! | `made` | snapshot id | `volume`, `policy`, `slot`, `created_at`: a scheduled snapshot create-snapshots made, written as soon as EC2 answers, deleted with the snapshot |
//! | `made` | `since` | `at`: when create-snapshots began recording what it makes |
//! | `made` | `intent/<volume or instance>/<policy>/<slot>` | `asked_at`, `expires_at` (400 days): written before CreateSnapshot(s), deleted once its answer is recorded; left only by a lost answer |
//! | `copy` | copy id | `source`, `volume`, `policy`, `slot`, `created_at` |
//! | `inflight` | `<target>/<source id>` | `source`, `target`, `volume`, `policy`, `slot`, `created_at`, `asked_at`, `copy` (once known), `expires_at` |
//! | `seen` | volume id | `seen_at`: when the report first saw it opted in, `expires_at` |
//! | `deletions` | `window` | `hours` (hour start -> deletions granted), `version` |
//! | `vaultcopies` | source account | `hours` (hour start -> copies granted), `version` (a vault stack's) |
//! | `report` | snapshot id | `reported_at`, `expires_at` (the table's TTL) |
//! | `cursor` | function | `value`: where its last daily run stopped |
//! | `schedule` | `<policy>/<from>` | `policy`, `expression`, `time_zone`, `from`: a schedule the policy had, from create-snapshots' first run with it |
//! | `drill` | token | `snapshot`, `started_at`, `volume` (once known), `expires_at` (30 days): a restore drill from before its CreateVolume until its volume is deleted |
//! | `verified` | volume id | `at`, `snapshot`, `seconds`, `expires_at` (400 days): the volume's last passed restore drill |
//! | `drillfail` | snapshot id | `at`, `expires_at` (400 days): a failed drill of the snapshot was notified |
//! | `hold` | snapshot or volume id | `until`, `reason`, `by`, `at`, `expires_at` (30 days after `until`); written only by the hold permission, never by a function |
//!
//! Every kind is bounded by what exists: instances stopped now, scheduled
//! snapshots and copies not yet deleted (read by id, never listed), copies in flight (20 per destination region, and a record
//! lives 30 days at most), 24 hours of deletions, suspects reported in the
//! last 400 days; holds are read up to `MAX_HOLDS` (more: nothing is
//! deleted).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration, Utc};

use ebs_lifecycle_core::drills::{DrillRecord, Verification};
use ebs_lifecycle_core::holds::{is_resource_id, Hold, MAX_HOLDS};
use ebs_lifecycle_core::ownership::CopyRecord;
use ebs_lifecycle_core::schedule::ScheduleRecord;
use ebs_lifecycle_core::tags::{format_time, parse_time};
use ebs_lifecycle_core::text::excerpt;
use ebs_lifecycle_core::window::DeletionWindow;

use crate::ports::ledger::{
    CopyInFlight, CreationIntent, CreationRecord, DrillLedger, Ledger, LedgerError, StopRecord,
};
use ebs_lifecycle_core::ownership::AskedKey;

/// BatchGetItem takes up to 100 keys.
const BATCH_GET: usize = 100;
/// Attempts of a read-modify-write under contention, and of the
/// unprocessed keys of a batch read.
const ATTEMPTS: usize = 5;
/// How long a `report` record lives: a suspect still there after this is
/// reported again.
const REPORT_TTL: Duration = Duration::days(400);
/// How long an intent left by a lost answer lives: it proves that
/// snapshot until then (a lost answer is rare; what outlives this is
/// reported once and kept, never deleted).
const INTENT_TTL: Duration = Duration::days(400);
/// How long an `inflight` record lives if nothing ends it: a copy still
/// pending after a month is EC2's problem, not a reason to protect its
/// source for ever.
const IN_FLIGHT_TTL: Duration = Duration::days(30);
/// How long a `seen` record lives: a volume deleted leaves its record for
/// a year, then it goes.
const SEEN_TTL: Duration = Duration::days(365);

/// How long a `drill` record lives if nothing ends it: longer than any
/// run, so a killed run's volume is found by the next weekly run.
const DRILL_TTL: Duration = Duration::days(30);
/// How long a `verified` or `drillfail` record lives.
const DRILL_RESULT_TTL: Duration = Duration::days(400);
/// The most drills in progress a run reads (one page): a run makes at
/// most a handful.
const MAX_OPEN_DRILLS: usize = 100;

/// The deletion budget's item.
const DELETIONS: (&str, &str) = ("deletions", "window");

/// The most schedule records read: a policy's schedule changes by a
/// deployment, a few times a year.
const MAX_SCHEDULE_RECORDS: usize = 1_000;

/// How long an ended hold stays in the table for people to read.
const HOLD_TTL_AFTER: Duration = Duration::days(30);

fn unavailable<E, R>(operation: &'static str, err: SdkError<E, R>) -> LedgerError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let message = match err.code() {
        Some(code) => format!("{code}: {}", err.message().unwrap_or_default()),
        None => aws_sdk_dynamodb::error::DisplayErrorContext(&err).to_string(),
    };
    LedgerError::Unavailable { operation, message }
}

fn is_condition_failure<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    err.code() == Some("ConditionalCheckFailedException")
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

fn key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

fn time(item: &HashMap<String, AttributeValue>, name: &str) -> Option<DateTime<Utc>> {
    parse_time(text(item, name)?)
}

/// An intent's sort key: apart from snapshot ids (`snap-…`) and `since`.
fn intent_key((subject, policy, slot): &AskedKey) -> String {
    format!("intent/{subject}/{policy}/{}", format_time(*slot))
}

fn copy_of_item(item: &HashMap<String, AttributeValue>) -> Option<CopyRecord> {
    Some(CopyRecord {
        copy_id: text(item, "sk")?.into(),
        source_snapshot_id: text(item, "source")?.into(),
        volume_id: text(item, "volume")?.into(),
        policy: text(item, "policy")?.into(),
        slot: time(item, "slot")?,
        created_at: time(item, "created_at")?,
        target: text(item, "target").map(String::from),
    })
}

#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// A 24-hour budget window (`deletions`/`window`, or a vault's
    /// `vaultcopies`/<account>) and its version (0: none yet).
    async fn window(&self, pk: &str, sk: &str) -> Result<(DeletionWindow, u64), LedgerError> {
        let Some(item) = self.get(pk, sk).await? else {
            return Ok((DeletionWindow::default(), 0));
        };
        let version = item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let hours = item
            .get("hours")
            .and_then(|v| v.as_m().ok())
            .map(|m| {
                m.iter()
                    .filter_map(|(hour, n)| {
                        Some((hour.parse().ok()?, n.as_n().ok()?.parse().ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok((DeletionWindow { hours }, version))
    }

    /// Write the window if nobody changed it since `version`.
    async fn put_window(
        &self,
        (pk, sk): (&str, &str),
        window: &DeletionWindow,
        version: u64,
    ) -> Result<bool, LedgerError> {
        let hours: HashMap<String, AttributeValue> = window
            .hours
            .iter()
            .map(|(hour, n)| (hour.to_string(), AttributeValue::N(n.to_string())))
            .collect();
        let mut item = key(pk, sk);
        item.insert("hours".into(), AttributeValue::M(hours));
        item.insert(
            "version".into(),
            AttributeValue::N((version + 1).to_string()),
        );
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR version = :v")
            .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(unavailable("PutItem", e)),
        }
    }

    /// Read, change, write back unless someone else wrote in between.
    async fn update_window<T>(
        &self,
        (pk, sk): (&str, &str),
        operation: &'static str,
        change: impl Fn(&mut DeletionWindow) -> T,
    ) -> Result<T, LedgerError> {
        for _ in 0..ATTEMPTS {
            let (mut window, version) = self.window(pk, sk).await?;
            let result = change(&mut window);
            if self.put_window((pk, sk), &window, version).await? {
                return Ok(result);
            }
        }
        Err(LedgerError::Contended { operation })
    }

    /// Grant up to `wanted` from the 24-hour budget `window` without
    /// exceeding `max` (nothing asked: no call).
    async fn reserve(
        &self,
        window: (&str, &str),
        operation: &'static str,
        now: DateTime<Utc>,
        wanted: u32,
        max: u32,
    ) -> Result<u32, LedgerError> {
        if wanted == 0 {
            return Ok(0);
        }
        self.update_window(window, operation, |w| w.reserve(now, wanted, max))
            .await
    }

    /// Give back to `window` what a grant made at `granted_at` did not use.
    async fn release(
        &self,
        window: (&str, &str),
        operation: &'static str,
        granted_at: DateTime<Utc>,
        now: DateTime<Utc>,
        unused: u32,
    ) -> Result<(), LedgerError> {
        if unused == 0 {
            return Ok(());
        }
        self.update_window(window, operation, |w| w.release(granted_at, now, unused))
            .await
    }

    /// The items of kind `pk` with these ids, 100 keys per BatchGetItem,
    /// unprocessed keys asked again (a few times, then an error).
    async fn batch_get(
        &self,
        pk: &str,
        ids: &[String],
    ) -> Result<Vec<HashMap<String, AttributeValue>>, LedgerError> {
        let mut out = Vec::new();
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        let unique: Vec<&String> = unique.into_iter().collect();
        for chunk in unique.chunks(BATCH_GET) {
            let mut keys: Vec<HashMap<String, AttributeValue>> =
                chunk.iter().map(|id| key(pk, id)).collect();
            for _ in 0..ATTEMPTS {
                if keys.is_empty() {
                    break;
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| LedgerError::Unavailable {
                        operation: "BatchGetItem",
                        message: e.to_string(),
                    })?;
                let answer = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| unavailable("BatchGetItem", e))?;
                if let Some(items) = answer.responses().and_then(|r| r.get(&self.table)) {
                    out.extend(items.iter().cloned());
                }
                if let Some(left) = answer.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                    keys = left.keys().to_vec();
                }
            }
            if !keys.is_empty() {
                return Err(LedgerError::Contended {
                    operation: "BatchGetItem",
                });
            }
        }
        Ok(out)
    }

    /// One item, read consistently; `None` if there is none.
    async fn get(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        Ok(out.item)
    }

    /// Every item of kind `pk`, page by page, each made into a `T` (an
    /// item that does not read is skipped).
    async fn query<T>(
        &self,
        pk: &str,
        read: impl Fn(&HashMap<String, AttributeValue>) -> Option<T>,
    ) -> Result<Vec<T>, LedgerError> {
        self.query_at_most(pk, usize::MAX, read).await
    }

    /// [`Self::query`], refused as unavailable past `max` items: what a
    /// run holds stays bounded whatever was written.
    async fn query_at_most<T>(
        &self,
        pk: &str,
        max: usize,
        read: impl Fn(&HashMap<String, AttributeValue>) -> Option<T>,
    ) -> Result<Vec<T>, LedgerError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk))
            .consistent_read(true)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| unavailable("Query", e))?;
            out.extend(page.items().iter().filter_map(&read));
            if out.len() > max {
                return Err(LedgerError::Unavailable {
                    operation: "Query",
                    message: format!("more than {max} `{pk}` records"),
                });
            }
        }
        Ok(out)
    }

    /// Write an item whatever was there.
    async fn put(&self, item: HashMap<String, AttributeValue>) -> Result<(), LedgerError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| unavailable("PutItem", e))?;
        Ok(())
    }

    /// Write `item` unless one with its key exists: true if written.
    async fn put_if_absent(
        &self,
        item: HashMap<String, AttributeValue>,
    ) -> Result<bool, LedgerError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(unavailable("PutItem", e)),
        }
    }

    async fn delete(&self, pk: &str, sk: &str) -> Result<(), LedgerError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .send()
            .await
            .map_err(|e| unavailable("DeleteItem", e))?;
        Ok(())
    }
}

#[async_trait]
impl Ledger for DynamoLedger {
    async fn record_stop(&self, record: &StopRecord) -> Result<(), LedgerError> {
        let mut item = key("stop", &record.instance_id);
        item.insert("policy".into(), s(&record.policy));
        item.insert("stopped_at".into(), s(&format_time(record.stopped_at)));
        self.put(item).await
    }

    async fn stops(&self) -> Result<Vec<StopRecord>, LedgerError> {
        self.query("stop", |item| {
            Some(StopRecord {
                instance_id: text(item, "sk")?.into(),
                policy: text(item, "policy").unwrap_or_default().into(),
                stopped_at: time(item, "stopped_at")?,
            })
        })
        .await
    }

    async fn forget_stop(&self, instance_id: &str) -> Result<(), LedgerError> {
        self.delete("stop", instance_id).await
    }

    async fn creations_since(&self) -> Result<Option<DateTime<Utc>>, LedgerError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key("made", "since")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        match answer.item() {
            None => Ok(None),
            // Written only by create-snapshots: one that does not read is
            // a broken ledger, not a reason to prove less.
            Some(item) => time(item, "at")
                .map(Some)
                .ok_or_else(|| LedgerError::Unavailable {
                    operation: "GetItem",
                    message: "the `made/since` item has no readable `at`".into(),
                }),
        }
    }

    async fn begin_creations(&self, now: DateTime<Utc>) -> Result<(), LedgerError> {
        let mut item = key("made", "since");
        item.insert("at".into(), s(&format_time(now)));
        self.put_if_absent(item).await.map(|_| ())
    }

    async fn record_creation(&self, record: &CreationRecord) -> Result<(), LedgerError> {
        let mut item = key("made", &record.snapshot_id);
        item.insert("volume".into(), s(&record.volume_id));
        item.insert("policy".into(), s(&record.policy));
        item.insert("slot".into(), s(&format_time(record.slot)));
        item.insert("created_at".into(), s(&format_time(record.created_at)));
        self.put(item).await
    }

    async fn ask_creation(&self, intent: &CreationIntent) -> Result<(), LedgerError> {
        let mut item = key("made", &intent_key(&intent.claim));
        item.insert("asked_at".into(), s(&format_time(intent.asked_at)));
        item.insert(
            "expires_at".into(),
            AttributeValue::N((intent.asked_at + INTENT_TTL).timestamp().to_string()),
        );
        self.put(item).await
    }

    async fn asked(&self, claims: &[AskedKey]) -> Result<Vec<CreationIntent>, LedgerError> {
        let by_key: std::collections::BTreeMap<String, &AskedKey> =
            claims.iter().map(|c| (intent_key(c), c)).collect();
        let keys: Vec<String> = by_key.keys().cloned().collect();
        let items = self.batch_get("made", &keys).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                Some(CreationIntent {
                    claim: (*by_key.get(text(item, "sk")?)?).clone(),
                    asked_at: time(item, "asked_at")?,
                })
            })
            .collect())
    }

    async fn forget_ask(&self, claim: &AskedKey) -> Result<(), LedgerError> {
        self.delete("made", &intent_key(claim)).await
    }

    async fn creations(&self, snapshot_ids: &[String]) -> Result<Vec<String>, LedgerError> {
        let items = self.batch_get("made", snapshot_ids).await?;
        Ok(items
            .iter()
            .filter_map(|item| text(item, "sk").map(String::from))
            .collect())
    }

    async fn forget_creation(&self, snapshot_id: &str) -> Result<(), LedgerError> {
        self.delete("made", snapshot_id).await
    }

    async fn record_copy(&self, record: &CopyRecord) -> Result<(), LedgerError> {
        let mut item = key("copy", &record.copy_id);
        item.insert("source".into(), s(&record.source_snapshot_id));
        item.insert("volume".into(), s(&record.volume_id));
        item.insert("policy".into(), s(&record.policy));
        item.insert("slot".into(), s(&format_time(record.slot)));
        item.insert("created_at".into(), s(&format_time(record.created_at)));
        if let Some(target) = &record.target {
            item.insert("target".into(), s(target));
        }
        self.put(item).await
    }

    async fn copies(&self, copy_ids: &[String]) -> Result<Vec<CopyRecord>, LedgerError> {
        let items = self.batch_get("copy", copy_ids).await?;
        Ok(items.iter().filter_map(copy_of_item).collect())
    }

    async fn forget_copy(&self, copy_id: &str) -> Result<(), LedgerError> {
        self.delete("copy", copy_id).await
    }

    async fn begin_copy(&self, copy: &CopyInFlight) -> Result<(), LedgerError> {
        let mut item = key(
            "inflight",
            &format!("{}/{}", copy.target, copy.source_snapshot_id),
        );
        item.insert("source".into(), s(&copy.source_snapshot_id));
        item.insert("target".into(), s(&copy.target));
        item.insert("volume".into(), s(&copy.volume_id));
        item.insert("policy".into(), s(&copy.policy));
        item.insert("asked_at".into(), s(&format_time(copy.asked_at)));
        item.insert("slot".into(), s(&format_time(copy.slot)));
        item.insert("created_at".into(), s(&format_time(copy.created_at)));
        if let Some(id) = &copy.copy_id {
            item.insert("copy".into(), s(id));
        }
        item.insert(
            "expires_at".into(),
            AttributeValue::N((copy.asked_at + IN_FLIGHT_TTL).timestamp().to_string()),
        );
        self.put(item).await
    }

    async fn copies_in_flight(&self) -> Result<Vec<CopyInFlight>, LedgerError> {
        self.query("inflight", |item| {
            Some(CopyInFlight {
                source_snapshot_id: text(item, "source")?.into(),
                target: text(item, "target")?.into(),
                volume_id: text(item, "volume")?.into(),
                policy: text(item, "policy")?.into(),
                slot: time(item, "slot")?,
                created_at: time(item, "created_at")?,
                asked_at: time(item, "asked_at")?,
                copy_id: text(item, "copy").map(String::from),
            })
        })
        .await
    }

    async fn end_copy(&self, source_snapshot_id: &str, target: &str) -> Result<(), LedgerError> {
        self.delete("inflight", &format!("{target}/{source_snapshot_id}"))
            .await
    }

    async fn first_seen(
        &self,
        volume_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<std::collections::BTreeMap<String, DateTime<Utc>>, LedgerError> {
        let mut seen: std::collections::BTreeMap<String, DateTime<Utc>> = self
            .batch_get("seen", volume_ids)
            .await?
            .iter()
            .filter_map(|item| Some((text(item, "sk")?.to_string(), time(item, "seen_at")?)))
            .collect();
        for id in volume_ids {
            if seen.contains_key(id) {
                continue;
            }
            let mut item = key("seen", id);
            item.insert("seen_at".into(), s(&format_time(now)));
            item.insert(
                "expires_at".into(),
                AttributeValue::N((now + SEEN_TTL).timestamp().to_string()),
            );
            self.put(item).await?;
            seen.insert(id.clone(), now);
        }
        Ok(seen)
    }

    async fn reserve_deletions(
        &self,
        now: DateTime<Utc>,
        wanted: u32,
        max: u32,
    ) -> Result<u32, LedgerError> {
        self.reserve(DELETIONS, "reserve deletions", now, wanted, max)
            .await
    }

    async fn release_deletions(
        &self,
        granted_at: DateTime<Utc>,
        now: DateTime<Utc>,
        unused: u32,
    ) -> Result<(), LedgerError> {
        self.release(DELETIONS, "release deletions", granted_at, now, unused)
            .await
    }

    async fn reserve_copies(
        &self,
        account: &str,
        now: DateTime<Utc>,
        wanted: u32,
        max: u32,
    ) -> Result<u32, LedgerError> {
        self.reserve(("vaultcopies", account), "reserve copies", now, wanted, max)
            .await
    }

    async fn release_copies(
        &self,
        account: &str,
        granted_at: DateTime<Utc>,
        now: DateTime<Utc>,
        unused: u32,
    ) -> Result<(), LedgerError> {
        self.release(
            ("vaultcopies", account),
            "release copies",
            granted_at,
            now,
            unused,
        )
        .await
    }

    async fn cursor(&self, name: &str) -> Result<Option<String>, LedgerError> {
        let item = self.get("cursor", name).await?;
        Ok(item
            .as_ref()
            .and_then(|i| text(i, "value"))
            .map(String::from))
    }

    async fn set_cursor(&self, name: &str, value: Option<&str>) -> Result<(), LedgerError> {
        let Some(value) = value else {
            return self.delete("cursor", name).await;
        };
        let mut item = key("cursor", name);
        item.insert("value".into(), s(value));
        self.put(item).await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, LedgerError> {
        self.query_at_most("schedule", MAX_SCHEDULE_RECORDS, |item| {
            Some(ScheduleRecord {
                policy: text(item, "policy")?.into(),
                expression: text(item, "expression")?.into(),
                time_zone: text(item, "time_zone")?.into(),
                from: time(item, "from")?,
            })
        })
        .await
    }

    async fn record_schedule(&self, record: &ScheduleRecord) -> Result<(), LedgerError> {
        let mut item = key(
            "schedule",
            &format!("{}/{}", record.policy, format_time(record.from)),
        );
        item.insert("policy".into(), s(&record.policy));
        item.insert("expression".into(), s(&record.expression));
        item.insert("time_zone".into(), s(&record.time_zone));
        item.insert("from".into(), s(&format_time(record.from)));
        self.put(item).await
    }

    async fn holds(&self) -> Result<Vec<Hold>, LedgerError> {
        // A hold that does not read (written by hand: a mistyped id or
        // time) is not skipped: the read fails, and nothing is deleted
        // until it is put right, rather than what it meant to keep.
        let read: Vec<Result<Hold, String>> = self
            .query_at_most("hold", MAX_HOLDS, |item| {
                let id = text(item, "sk").unwrap_or_default();
                Some(match time(item, "until") {
                    Some(until) if is_resource_id(id) => Ok(Hold {
                        resource_id: id.into(),
                        until,
                        reason: text(item, "reason").unwrap_or_default().into(),
                        by: text(item, "by").unwrap_or_default().into(),
                        at: time(item, "at").unwrap_or(until),
                    }),
                    _ => Err(excerpt(id)),
                })
            })
            .await?;
        read.into_iter()
            .map(|r| {
                r.map_err(|id| LedgerError::Unavailable {
                    operation: "Query",
                    message: format!(
                        "the hold item `{id}` does not read (its sk must be a snapshot or volume id, its until an RFC 3339 time)"
                    ),
                })
            })
            .collect()
    }

    async fn set_hold(&self, hold: &Hold) -> Result<(), LedgerError> {
        let mut item = key("hold", &hold.resource_id);
        item.insert("until".into(), s(&format_time(hold.until)));
        item.insert("reason".into(), s(&hold.reason));
        item.insert("by".into(), s(&hold.by));
        item.insert("at".into(), s(&format_time(hold.at)));
        // DynamoDB forgets it a while after it ends (runs ignore it from
        // its end on).
        item.insert(
            "expires_at".into(),
            AttributeValue::N((hold.until + HOLD_TTL_AFTER).timestamp().to_string()),
        );
        self.put(item).await
    }

    async fn release_hold(&self, resource_id: &str) -> Result<(), LedgerError> {
        self.delete("hold", resource_id).await
    }

    async fn reported(&self, snapshot_ids: &[String]) -> Result<Vec<String>, LedgerError> {
        let items = self.batch_get("report", snapshot_ids).await?;
        Ok(items
            .iter()
            .filter_map(|item| text(item, "sk").map(String::from))
            .collect())
    }

    async fn first_report(
        &self,
        snapshot_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        let mut item = key("report", snapshot_id);
        item.insert("reported_at".into(), s(&format_time(now)));
        item.insert(
            "expires_at".into(),
            AttributeValue::N((now + REPORT_TTL).timestamp().to_string()),
        );
        self.put_if_absent(item).await
    }
}

fn expires(now: DateTime<Utc>, ttl: Duration) -> AttributeValue {
    AttributeValue::N((now + ttl).timestamp().to_string())
}

#[async_trait]
impl DrillLedger for DynamoLedger {
    async fn begin_drill(&self, record: &DrillRecord) -> Result<(), LedgerError> {
        let mut item = key("drill", &record.token);
        item.insert("snapshot".into(), s(&record.snapshot_id));
        item.insert("started_at".into(), s(&format_time(record.started_at)));
        if let Some(volume) = &record.drill_volume {
            item.insert("volume".into(), s(volume));
        }
        if let Some(region) = &record.region {
            item.insert("region".into(), s(region));
        }
        item.insert("expires_at".into(), expires(record.started_at, DRILL_TTL));
        self.put(item).await
    }

    async fn open_drills(&self) -> Result<Vec<DrillRecord>, LedgerError> {
        // One page of at most MAX_OPEN_DRILLS: a run cleans those up, the
        // next run the next ones (never refused for being many).
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s("drill"))
            .consistent_read(true)
            .limit(MAX_OPEN_DRILLS as i32)
            .send()
            .await
            .map_err(|e| unavailable("Query", e))?;
        Ok(page
            .items()
            .iter()
            .filter_map(|item| {
                Some(DrillRecord {
                    token: text(item, "sk")?.into(),
                    snapshot_id: text(item, "snapshot")?.into(),
                    started_at: time(item, "started_at")?,
                    drill_volume: text(item, "volume").map(String::from),
                    region: text(item, "region").map(String::from),
                })
            })
            .collect())
    }

    async fn end_drill(&self, token: &str) -> Result<(), LedgerError> {
        self.delete("drill", token).await
    }

    async fn record_verification(&self, v: &Verification) -> Result<(), LedgerError> {
        let mut item = key("verified", &v.volume_id);
        item.insert("at".into(), s(&format_time(v.at)));
        item.insert("snapshot".into(), s(&v.snapshot_id));
        item.insert(
            "seconds".into(),
            AttributeValue::N(format!("{:.1}", v.seconds)),
        );
        item.insert("expires_at".into(), expires(v.at, DRILL_RESULT_TTL));
        self.put(item).await
    }

    async fn verifications(&self, volume_ids: &[String]) -> Result<Vec<Verification>, LedgerError> {
        let items = self.batch_get("verified", volume_ids).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                Some(Verification {
                    volume_id: text(item, "sk")?.into(),
                    at: time(item, "at")?,
                    snapshot_id: text(item, "snapshot")?.into(),
                    seconds: item.get("seconds")?.as_n().ok()?.parse().ok()?,
                })
            })
            .collect())
    }

    async fn first_drill_failure(
        &self,
        snapshot_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        let mut item = key("drillfail", snapshot_id);
        item.insert("at".into(), s(&format_time(now)));
        item.insert("expires_at".into(), expires(now, DRILL_RESULT_TTL));
        self.put_if_absent(item).await
    }
}

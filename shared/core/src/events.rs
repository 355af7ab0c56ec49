//! Events the functions are invoked with (docs/functions.md names each trigger).
//!
//! Parsing is strict and total: a malformed event is an [`EventError`] naming
//! the field (a JSON path such as `detail.snapshots[1].status`), never a
//! panic, and is rejected before any AWS call.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event is not a JSON object")]
    NotAnObject,
    #[error("event field `{field}` is missing")]
    Missing { field: String },
    #[error("event field `{field}` is invalid: {problem}")]
    Invalid { field: String, problem: String },
}

impl EventError {
    fn missing(field: &str) -> Self {
        Self::Missing {
            field: field.into(),
        }
    }

    fn invalid(field: &str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The field at fault, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::NotAnObject => None,
            Self::Missing { field } | Self::Invalid { field, .. } => Some(field),
        }
    }
}

/// Typed access to one JSON object, naming fields by their full path.
struct Fields<'a> {
    path: String,
    object: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn of(path: &str, value: &'a Value) -> Result<Self, EventError> {
        match value.as_object() {
            Some(object) => Ok(Self {
                path: path.to_string(),
                object,
            }),
            None if path.is_empty() => Err(EventError::NotAnObject),
            None => Err(EventError::invalid(path, "must be an object")),
        }
    }

    fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.object.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &str) -> Result<&'a str, EventError> {
        self.optional_string(key)?
            .ok_or_else(|| EventError::missing(&self.name(key)))
    }

    fn optional_string(&self, key: &str) -> Result<Option<&'a str>, EventError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(EventError::invalid(&self.name(key), "must be a string")),
        }
    }

    fn optional_time(&self, key: &str) -> Result<Option<DateTime<Utc>>, EventError> {
        match self.optional_string(key)? {
            None | Some("") => Ok(None),
            Some(s) => crate::keys::parse_time(s).map(Some).ok_or_else(|| {
                EventError::invalid(
                    &self.name(key),
                    format!("`{}` is not an RFC 3339 time", clip(s)),
                )
            }),
        }
    }

    fn object(&self, key: &str) -> Result<Fields<'a>, EventError> {
        let value = self
            .get(key)
            .ok_or_else(|| EventError::missing(&self.name(key)))?;
        Fields::of(&self.name(key), value)
    }
}

/// At most 64 characters of untrusted input in an error message.
fn clip(s: &str) -> String {
    if s.chars().count() > 64 {
        s.chars().take(61).collect::<String>() + "..."
    } else {
        s.to_string()
    }
}

/// The id after the last `/` of an ARN (either layout), or the value itself
/// when it is already an id. It must start with `prefix` (`snap-`, `vol-`).
pub fn resource_id(field: &str, value: &str, prefix: &str) -> Result<String, EventError> {
    let id = value.rsplit('/').next().unwrap_or(value);
    let valid = id.starts_with(prefix)
        && id.len() > prefix.len()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(id.to_string())
    } else {
        Err(EventError::invalid(
            field,
            format!("`{}` does not end in a `{prefix}` id", clip(value)),
        ))
    }
}

/// A scheduler tick: what EventBridge Scheduler sends (the template's input,
/// `{"kind": "tick", "scheduled_time": "<aws.scheduler.scheduled-time>"}`),
/// or a classic EventBridge `Scheduled Event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// When the scheduler meant to run. Informational: which slot is current is
    /// decided by the function's own clock, never by a time in the payload.
    pub scheduled_time: Option<DateTime<Utc>>,
}

impl Tick {
    pub fn parse(event: &Value) -> Result<Self, EventError> {
        let fields = Fields::of("", event)?;
        if fields.get("kind").is_some() {
            let kind = fields.string("kind")?;
            if kind != "tick" {
                return Err(EventError::invalid(
                    "kind",
                    format!("`{}` is not `tick`", clip(kind)),
                ));
            }
            return Ok(Self {
                scheduled_time: fields.optional_time("scheduled_time")?,
            });
        }
        match fields.optional_string("detail-type")? {
            Some("Scheduled Event") => Ok(Self {
                scheduled_time: fields.optional_time("time")?,
            }),
            Some(other) => Err(EventError::invalid(
                "detail-type",
                format!("`{}` is not a scheduler tick", clip(other)),
            )),
            None => Err(EventError::missing("kind")),
        }
    }

    /// True when the payload looks like a tick rather than an EC2 event.
    pub fn is_tick(event: &Value) -> bool {
        event.get("kind").is_some()
            || event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
    }
}

/// `detail-type` of single-snapshot events.
pub(crate) const SNAPSHOT_NOTIFICATION: &str = "EBS Snapshot Notification";
/// `detail-type` of CreateSnapshots (multi-volume) completion events.
pub(crate) const MULTI_VOLUME_COMPLETION: &str = "EBS Multi-Volume Snapshots Completion Status";

/// `detail.event` values of EBS snapshot events this project does not act on.
/// They are ignored (and logged at debug), not rejected.
///
/// Any other `detail.event` of these detail-types (one EC2 adds later, or a
/// documented name spelt differently, like `restoryExpiry`) is ignored too,
/// never rejected: rejecting would fail the invocation and fill the failure
/// queue with events nobody can act on.
const IGNORED_SNAPSHOT_EVENTS: [&str; 7] = [
    "shareSnapshot",
    "restoreSnapshot",
    "permanentRestoreSnapshot",
    "temporaryRestoreSnapshot",
    "restoreExpiry",
    "lockSnapshot",
    "unlockSnapshot",
];

/// Which EC2 call a snapshot event reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotOperation {
    CreateSnapshot,
    CopySnapshot,
    CreateSnapshots,
    /// A move to the archive tier finished (ModifySnapshotTier).
    ArchiveSnapshot,
}

impl SnapshotOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateSnapshot => "createSnapshot",
            Self::CopySnapshot => "copySnapshot",
            Self::CreateSnapshots => "createSnapshots",
            Self::ArchiveSnapshot => "archiveSnapshot",
        }
    }
}

/// What EC2 says became of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotResult {
    pub snapshot_id: String,
    /// The source volume (`createSnapshot(s)`), or `None` for copies (their
    /// source is a snapshot, kept in `source_snapshot_id`).
    pub volume_id: Option<String>,
    pub source_snapshot_id: Option<String>,
    pub reported: Reported,
    /// EC2's words on a failure; empty on success.
    pub cause: String,
    /// `None` when absent or not a time (AWS's own samples carry
    /// placeholders such as `yyyy-mm-ddThh:mm:ssZ`): the handlers then use
    /// their own clock.
    pub end_time: Option<DateTime<Utc>>,
    /// Values accepted but not understood (an unknown status, a time that
    /// is not one), for the log.
    pub notes: Vec<String>,
}

/// How long after EC2 reports a snapshot done it may still be missing from
/// DescribeSnapshots (EC2's eventual consistency): an event handled within
/// this of its snapshot's end is retried; later, the snapshot is gone.
pub(crate) const VISIBLE_WITHIN: chrono::Duration = chrono::Duration::minutes(5);

impl SnapshotResult {
    /// The event's snapshot, which EC2 does not list, is gone (deleted
    /// before the event was handled) rather than not visible yet: EC2
    /// reported it done more than [`VISIBLE_WITHIN`] ago, or the event
    /// gives no end time to wait from (AWS's documented samples).
    pub fn gone_if_missing(&self, now: DateTime<Utc>) -> bool {
        self.end_time
            .is_none_or(|end| now.signed_duration_since(end) >= VISIBLE_WITHIN)
    }

    /// Succeeded, or a status not recognised (EC2's state then decides):
    /// what the functions that act on completed snapshots look at.
    pub fn not_failed(&self) -> bool {
        self.reported != Reported::Failed
    }
}

/// What the event reports for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// `result: succeeded`, or `status: completed` in a multi-volume event.
    Succeeded,
    /// `result: failed`, or `status: error` (AWS's documented value) or
    /// `failed` in a multi-volume event.
    Failed,
    /// A value not seen before: accepted, and EC2's own state of the
    /// snapshot decides (the handlers describe it anyway).
    Unrecognised(String),
}

impl Reported {
    /// `Some(true)` succeeded, `Some(false)` failed, `None` unknown.
    pub fn succeeded(&self) -> Option<bool> {
        match self {
            Self::Succeeded => Some(true),
            Self::Failed => Some(false),
            Self::Unrecognised(_) => None,
        }
    }
}

/// The snapshots that did not fail, in the event's order: what functions
/// that act on completed snapshots look up (a snapshot whose status was not
/// recognised is looked up too; its EC2 state decides).
pub fn succeeded_ids(results: &[SnapshotResult]) -> Vec<String> {
    results
        .iter()
        .filter(|r| r.not_failed())
        .map(|r| r.snapshot_id.clone())
        .collect()
}

/// An EC2 snapshot event, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotEvent {
    /// A completion (success or failure) of one or more snapshots.
    Results {
        operation: SnapshotOperation,
        results: Vec<SnapshotResult>,
    },
    /// A well-formed EBS event this project does not act on.
    Ignored { detail_type: String, event: String },
}

impl SnapshotEvent {
    pub fn parse(event: &Value) -> Result<Self, EventError> {
        let top = Fields::of("", event)?;
        let detail_type = top.string("detail-type")?;
        let source = top.string("source")?;
        if source != "aws.ec2" {
            return Err(EventError::invalid(
                "source",
                format!("`{}` is not `aws.ec2`", clip(source)),
            ));
        }
        let detail = top.object("detail")?;
        if detail_type != SNAPSHOT_NOTIFICATION && detail_type != MULTI_VOLUME_COMPLETION {
            // Other EBS notifications (volumes, fast snapshot restore, whose
            // detail has no `event`) are well-formed but not ours to act on.
            if detail_type.starts_with("EBS ") {
                return Ok(Self::Ignored {
                    detail_type: detail_type.into(),
                    event: detail
                        .get("event")
                        .and_then(Value::as_str)
                        .map(clip)
                        .unwrap_or_default(),
                });
            }
            return Err(EventError::invalid(
                "detail-type",
                format!("`{}` is not an EBS snapshot event", clip(detail_type)),
            ));
        }
        let name = detail.string("event")?;
        match (detail_type, name) {
            (SNAPSHOT_NOTIFICATION, "createSnapshot") => Ok(Self::Results {
                operation: SnapshotOperation::CreateSnapshot,
                results: vec![single(&detail, SnapshotOperation::CreateSnapshot)?],
            }),
            (SNAPSHOT_NOTIFICATION, "copySnapshot") => Ok(Self::Results {
                operation: SnapshotOperation::CopySnapshot,
                results: vec![single(&detail, SnapshotOperation::CopySnapshot)?],
            }),
            (SNAPSHOT_NOTIFICATION, "archiveSnapshot") => Ok(Self::Results {
                operation: SnapshotOperation::ArchiveSnapshot,
                results: vec![single(&detail, SnapshotOperation::ArchiveSnapshot)?],
            }),
            (SNAPSHOT_NOTIFICATION, other) if IGNORED_SNAPSHOT_EVENTS.contains(&other) => {
                Ok(Self::Ignored {
                    detail_type: detail_type.into(),
                    event: other.into(),
                })
            }
            (MULTI_VOLUME_COMPLETION, "createSnapshots") => Ok(Self::Results {
                operation: SnapshotOperation::CreateSnapshots,
                results: multi(&detail)?,
            }),
            // An event of these detail-types this project does not know:
            // accepted and ignored (the caller logs it), never rejected.
            (_, other) => Ok(Self::Ignored {
                detail_type: detail_type.into(),
                event: clip(other),
            }),
        }
    }
}

/// What a function was invoked for: the one starting point every handler
/// shares. A daily (or create-snapshots' every-15-minutes) scheduler tick,
/// the snapshots an EC2 event names, or a well-formed event this project
/// does not act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Tick(Tick),
    Snapshots {
        operation: SnapshotOperation,
        results: Vec<SnapshotResult>,
    },
    Ignored {
        detail_type: String,
        event: String,
    },
}

impl Trigger {
    /// A tick or an EC2 snapshot event; anything else is rejected, naming
    /// the field.
    pub fn parse(event: &Value) -> Result<Self, EventError> {
        if Tick::is_tick(event) {
            return Tick::parse(event).map(Self::Tick);
        }
        Ok(match SnapshotEvent::parse(event)? {
            // Only archive-snapshots acts on archival results, and it reads
            // them with `SnapshotEvent::parse`; for every other function the
            // snapshot's creation is what an event reports.
            SnapshotEvent::Results {
                operation: SnapshotOperation::ArchiveSnapshot,
                ..
            } => Self::Ignored {
                detail_type: SNAPSHOT_NOTIFICATION.into(),
                event: SnapshotOperation::ArchiveSnapshot.as_str().into(),
            },
            SnapshotEvent::Results { operation, results } => Self::Snapshots { operation, results },
            SnapshotEvent::Ignored { detail_type, event } => Self::Ignored { detail_type, event },
        })
    }

    /// The run summary's `trigger`: `daily` for a tick of a daily function
    /// (create-snapshots says `tick`), `event` otherwise.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Tick(_) => "daily",
            Self::Snapshots { .. } | Self::Ignored { .. } => "event",
        }
    }

    /// What the event carried that was accepted but not understood, for the
    /// log.
    pub fn notes(&self) -> Vec<String> {
        match self {
            Self::Snapshots { results, .. } => results
                .iter()
                .flat_map(|r| r.notes.iter().cloned())
                .collect(),
            Self::Tick(_) | Self::Ignored { .. } => Vec::new(),
        }
    }

    /// The run summary's `event`: the operation, or what was ignored.
    pub fn event(&self) -> Option<String> {
        match self {
            Self::Tick(_) => None,
            Self::Snapshots { operation, .. } => Some(operation.as_str().to_string()),
            Self::Ignored { detail_type, event } => {
                Some(format!("ignored: {detail_type} / {event}"))
            }
        }
    }
}

/// A reported outcome: one of `success`, one of `failure`, or a value not
/// seen before (noted, never rejected).
fn reported(
    field: &str,
    value: &str,
    success: &[&str],
    failure: &[&str],
    notes: &mut Vec<String>,
) -> Reported {
    if success.contains(&value) {
        Reported::Succeeded
    } else if failure.contains(&value) {
        Reported::Failed
    } else {
        notes.push(format!(
            "{field} `{}` is not a value this version knows; EC2's state of the snapshot decides",
            clip(value)
        ));
        Reported::Unrecognised(clip(value))
    }
}

/// A time field we only record: absent, empty or not a time is `None`
/// (noted), never a rejection.
fn lenient_time(fields: &Fields<'_>, key: &str, notes: &mut Vec<String>) -> Option<DateTime<Utc>> {
    match fields.get(key) {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => {
            let t = crate::keys::parse_time(s);
            if t.is_none() {
                notes.push(format!(
                    "{} `{}` is not a time; ignored",
                    fields.name(key),
                    clip(s)
                ));
            }
            t
        }
        Some(_) => {
            notes.push(format!("{} is not a string; ignored", fields.name(key)));
            None
        }
    }
}

fn single(detail: &Fields<'_>, operation: SnapshotOperation) -> Result<SnapshotResult, EventError> {
    let snapshot_id = resource_id(
        &detail.name("snapshot_id"),
        detail.string("snapshot_id")?,
        "snap-",
    )?;
    let mut notes = Vec::new();
    let reported = reported(
        &detail.name("result"),
        detail.string("result")?,
        &["succeeded"],
        &["failed"],
        &mut notes,
    );
    let source = detail.optional_string("source")?.filter(|s| !s.is_empty());
    let (volume_id, source_snapshot_id) = match (operation, source) {
        (_, None) | (SnapshotOperation::ArchiveSnapshot, _) => (None, None),
        (SnapshotOperation::CopySnapshot, Some(s)) => {
            (None, Some(resource_id(&detail.name("source"), s, "snap-")?))
        }
        (_, Some(s)) => (Some(resource_id(&detail.name("source"), s, "vol-")?), None),
    };
    Ok(SnapshotResult {
        snapshot_id,
        volume_id,
        source_snapshot_id,
        reported,
        cause: detail
            .optional_string("cause")?
            .unwrap_or_default()
            .to_string(),
        end_time: lenient_time(detail, "endTime", &mut notes),
        notes,
    })
}

fn multi(detail: &Fields<'_>) -> Result<Vec<SnapshotResult>, EventError> {
    let cause = detail.optional_string("cause")?.unwrap_or_default();
    let mut time_notes = Vec::new();
    let end_time = lenient_time(detail, "endTime", &mut time_notes);
    let list = match detail.get("snapshots") {
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(Value::Array(_)) => {
            return Err(EventError::invalid(&detail.name("snapshots"), "is empty"))
        }
        Some(_) => {
            return Err(EventError::invalid(
                &detail.name("snapshots"),
                "must be an array",
            ))
        }
        None => return Err(EventError::missing(&detail.name("snapshots"))),
    };
    list.iter()
        .enumerate()
        .map(|(i, item)| {
            let entry = Fields::of(&format!("{}[{i}]", detail.name("snapshots")), item)?;
            let status = entry.string("status")?;
            let mut notes = if i == 0 {
                time_notes.clone()
            } else {
                Vec::new()
            };
            let reported = reported(
                &entry.name("status"),
                status,
                &["completed"],
                &["error", "failed"],
                &mut notes,
            );
            Ok(SnapshotResult {
                snapshot_id: resource_id(
                    &entry.name("snapshot_id"),
                    entry.string("snapshot_id")?,
                    "snap-",
                )?,
                volume_id: entry
                    .optional_string("source")?
                    .filter(|s| !s.is_empty())
                    .map(|s| resource_id(&entry.name("source"), s, "vol-"))
                    .transpose()?,
                source_snapshot_id: None,
                reported,
                cause: cause.to_string(),
                end_time,
                notes,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scheduler_and_eventbridge_ticks_parse() {
        let t = Tick::parse(&json!({"kind": "tick", "scheduled_time": "2026-03-01T03:00:00Z"}))
            .unwrap();
        assert_eq!(
            t.scheduled_time.map(crate::keys::format_time).as_deref(),
            Some("2026-03-01T03:00:00Z")
        );
        assert_eq!(
            Tick::parse(&json!({"kind": "tick"}))
                .unwrap()
                .scheduled_time,
            None
        );
        let classic = json!({"detail-type": "Scheduled Event", "source": "aws.events", "time": "2026-03-01T03:00:00Z"});
        assert!(Tick::parse(&classic).unwrap().scheduled_time.is_some());
        assert!(Tick::is_tick(&classic));
    }

    #[test]
    fn malformed_ticks_name_the_field() {
        let cases = [
            (json!([]), None),
            (json!("tick"), None),
            (json!({}), Some("kind")),
            (json!({"kind": 3}), Some("kind")),
            (json!({"kind": "tock"}), Some("kind")),
            (
                json!({"kind": "tick", "scheduled_time": "yesterday"}),
                Some("scheduled_time"),
            ),
            (
                json!({"kind": "tick", "scheduled_time": 17}),
                Some("scheduled_time"),
            ),
            (
                json!({"detail-type": "Scheduled Event", "time": "x"}),
                Some("time"),
            ),
            (
                json!({"detail-type": "EBS Snapshot Notification"}),
                Some("detail-type"),
            ),
        ];
        for (event, field) in cases {
            let err = Tick::parse(&event).unwrap_err();
            assert_eq!(err.field(), field, "{event}: {err}");
        }
    }

    #[test]
    fn ids_come_from_either_arn_layout_or_a_bare_id() {
        for arn in [
            "arn:aws:ec2::us-east-1:snapshot/snap-01234567",
            "arn:aws:ec2:us-east-1::snapshot/snap-01234567",
            "arn:aws-us-gov:ec2:us-gov-west-1:123456789012:snapshot/snap-01234567",
            "snap-01234567",
        ] {
            assert_eq!(
                resource_id("f", arn, "snap-").unwrap(),
                "snap-01234567",
                "{arn}"
            );
        }
        for bad in [
            "",
            "arn:aws:ec2::us-east-1:volume/vol-1",
            "snap-",
            "arn:aws:ec2::r:snapshot/snap-1/../x",
            "snap-1 2",
        ] {
            assert!(resource_id("f", bad, "snap-").is_err(), "{bad}");
        }
    }

    fn create_event(result: &str) -> Value {
        json!({
            "version": "0", "detail-type": "EBS Snapshot Notification", "source": "aws.ec2",
            "resources": ["arn:aws:ec2::us-east-1:snapshot/snap-01234567"],
            "detail": {
                "event": "createSnapshot", "result": result, "cause": "",
                "snapshot_id": "arn:aws:ec2::us-east-1:snapshot/snap-01234567",
                "source": "arn:aws:ec2::us-east-1:volume/vol-01234567",
                "startTime": "2026-03-01T03:00:12Z", "endTime": "2026-03-01T03:07:40Z"
            }
        })
    }

    #[test]
    fn create_snapshot_results_parse() {
        let SnapshotEvent::Results { operation, results } =
            SnapshotEvent::parse(&create_event("succeeded")).unwrap()
        else {
            panic!("expected results");
        };
        assert_eq!(operation, SnapshotOperation::CreateSnapshot);
        assert_eq!(results[0].snapshot_id, "snap-01234567");
        assert_eq!(results[0].volume_id.as_deref(), Some("vol-01234567"));
        assert_eq!(results[0].reported, Reported::Succeeded);
        let SnapshotEvent::Results { results, .. } =
            SnapshotEvent::parse(&create_event("failed")).unwrap()
        else {
            panic!("expected results");
        };
        assert_eq!(results[0].reported, Reported::Failed);
    }

    #[test]
    fn copy_snapshot_sources_are_snapshots() {
        let mut e = create_event("succeeded");
        e["detail"]["event"] = json!("copySnapshot");
        e["detail"]["source"] = json!("arn:aws:ec2::us-west-2:snapshot/snap-0source");
        let SnapshotEvent::Results { results, .. } = SnapshotEvent::parse(&e).unwrap() else {
            panic!()
        };
        assert_eq!(
            results[0].source_snapshot_id.as_deref(),
            Some("snap-0source")
        );
        assert_eq!(results[0].volume_id, None);
    }

    #[test]
    fn other_and_unknown_ebs_events_are_ignored_other_sources_rejected() {
        let mut share = create_event("succeeded");
        share["detail"]["event"] = json!("shareSnapshot");
        assert!(matches!(
            SnapshotEvent::parse(&share),
            Ok(SnapshotEvent::Ignored { .. })
        ));
        let volume = json!({"detail-type": "EBS Volume Notification", "source": "aws.ec2", "detail": {"event": "createVolume"}});
        assert!(matches!(
            SnapshotEvent::parse(&volume),
            Ok(SnapshotEvent::Ignored { .. })
        ));
        // One EC2 may add later: accepted and ignored, not rejected.
        let mut odd = create_event("succeeded");
        odd["detail"]["event"] = json!("explodeSnapshot");
        assert!(matches!(
            SnapshotEvent::parse(&odd),
            Ok(SnapshotEvent::Ignored { .. })
        ));
        // Not an EBS event at all: rejected.
        let mut other = create_event("succeeded");
        other["detail-type"] = json!("EC2 Instance State-change Notification");
        assert_eq!(
            SnapshotEvent::parse(&other).unwrap_err().field(),
            Some("detail-type")
        );
    }

    /// AWS's documented archive events (EC2 user guide, "Monitor snapshot
    /// archiving"): archive-snapshots reads them; every other function's
    /// trigger ignores them.
    #[test]
    fn archive_results_reach_the_archive_function_only() {
        let event = |result: &str, cause: &str| {
            json!({
                "version": "0", "id": "01234567-0123-0123-0123-012345678901",
                "detail-type": "EBS Snapshot Notification", "source": "aws.ec2",
                "account": "123456789012", "time": "2021-05-25T13:12:22Z", "region": "us-east-1",
                "resources": ["arn:aws:ec2:us-east-1::snapshot/snap-01234567890abcdef"],
                "detail": {
                    "event": "archiveSnapshot", "result": result, "cause": cause,
                    "request-id": "123456789",
                    "snapshot_id": "arn:aws:ec2:us-east-1::snapshot/snap-01234567890abcdef",
                    "startTime": "2021-05-25T13:12:22Z", "endTime": "2021-05-26T15:30:00Z"
                }
            })
        };
        let Ok(SnapshotEvent::Results { operation, results }) =
            SnapshotEvent::parse(&event("failed", "Source snapshot ID is not valid"))
        else {
            panic!("an archive result");
        };
        assert_eq!(operation, SnapshotOperation::ArchiveSnapshot);
        assert_eq!(results[0].snapshot_id, "snap-01234567890abcdef");
        assert_eq!(results[0].reported, Reported::Failed);
        assert_eq!(results[0].cause, "Source snapshot ID is not valid");
        assert_eq!(
            results[0].end_time,
            crate::keys::parse_time("2021-05-26T15:30:00Z")
        );
        assert!(matches!(
            Trigger::parse(&event("succeeded", "")),
            Ok(Trigger::Ignored { .. })
        ));
    }
}

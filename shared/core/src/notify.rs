//! Notifications (docs/operations.md, "Notifications and metrics"): what is sent to the SNS topic.
//!
//! Rendering is pure: a [`Notification`] becomes a subject, a JSON message and
//! the message attributes `kind` and `severity`, which subscribers filter on.
//! Publishing is the SNS adapter's job (`crate::aws::sns`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationKind {
    SnapshotFailed,
    SnapshotStuck,
    RunSummary,
    EncryptionFindings,
    DeletionCapReached,
    ConfigError,
    /// An application-consistent or stopped snapshot could not be taken as
    /// asked (pre or post command, stop or start of the instance).
    ConsistencyFailed,
    /// A snapshot carries this deployment's tags but not its proof
    /// (`crate::ownership`): somebody wrote them.
    TamperingSuspected,
    /// A copy to another region failed, or could not be started for a
    /// reason a person must fix (the target's key).
    CopyFailed,
    /// A volume of this deployment has no recent enough snapshot.
    CoverageGap,
    /// The weekly pointer to the coverage report.
    ReportReady,
    /// EC2 could not move a snapshot to the archive tier.
    ArchiveFailed,
    /// A volume the deployment backed up is no longer covered by any
    /// selector tag: its backups have stopped.
    OptedOut,
    /// A restore drill found a snapshot that does not restore as it should
    /// (once per snapshot).
    RestoreDrillFailed,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SnapshotFailed => "snapshot-failed",
            Self::SnapshotStuck => "snapshot-stuck",
            Self::RunSummary => "run-summary",
            Self::EncryptionFindings => "encryption-findings",
            Self::DeletionCapReached => "deletion-cap-reached",
            Self::ConfigError => "config-error",
            Self::ConsistencyFailed => "consistency-failed",
            Self::TamperingSuspected => "tampering-suspected",
            Self::CopyFailed => "copy-failed",
            Self::CoverageGap => "coverage-gap",
            Self::ReportReady => "report-ready",
            Self::ArchiveFailed => "archive-failed",
            Self::OptedOut => "opted-out",
            Self::RestoreDrillFailed => "restore-drill-failed",
        }
    }
}

/// Ordered: `Info < Warning < Critical`, so "the worst" is `max()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// One message to the topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub kind: NotificationKind,
    pub severity: Severity,
    /// The deployment (stack) that sends it, so one inbox can serve several.
    pub deployment: String,
    /// One human sentence; also the tail of the subject.
    pub summary: String,
    /// Kind-specific details, rendered into the JSON message as `details`.
    pub details: Value,
}

/// What SNS Publish receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedNotification {
    pub subject: String,
    pub message: String,
    /// `(name, value)` string attributes.
    pub attributes: Vec<(String, String)>,
}

/// SNS limits: subjects are at most 100 ASCII characters with no control
/// characters; messages at most 256 KiB.
pub(crate) const MAX_SUBJECT_CHARS: usize = 100;
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 * 1024;

impl Notification {
    pub fn render(&self) -> RenderedNotification {
        let mut message = json!({
            "kind": self.kind,
            "severity": self.severity,
            "deployment": self.deployment,
            "summary": self.summary,
            "details": self.details,
        })
        .to_string();
        if message.len() > MAX_MESSAGE_BYTES {
            // A huge run summary must still arrive: drop the details, say so.
            message = json!({
                "kind": self.kind,
                "severity": self.severity,
                "deployment": self.deployment,
                "summary": self.summary,
                "details": { "truncated": true, "reason": "details exceed the SNS message limit; see the function's logs" },
            })
            .to_string();
        }
        RenderedNotification {
            subject: subject(&self.deployment, self.severity, &self.summary),
            message,
            attributes: vec![
                ("kind".into(), self.kind.as_str().into()),
                ("severity".into(), self.severity.as_str().into()),
            ],
        }
    }
}

/// `[deployment] SEVERITY: summary`, made safe for SNS and cut to its limit.
fn subject(deployment: &str, severity: Severity, summary: &str) -> String {
    let label = match severity {
        Severity::Info => "",
        Severity::Warning => "WARNING: ",
        Severity::Critical => "CRITICAL: ",
    };
    let raw = format!("[{deployment}] {label}{summary}");
    let mut clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect();
    if clean.chars().count() > MAX_SUBJECT_CHARS {
        clean = clean
            .chars()
            .take(MAX_SUBJECT_CHARS - 3)
            .collect::<String>()
            + "...";
    }
    clean.trim().to_string()
}

/// At most this many conditions are remembered; past it every new condition
/// is notified (an alert is never dropped to save memory).
pub(crate) const MEMO_CAPACITY: usize = 10_000;

/// How long a notified condition stays quiet.
pub(crate) const MEMO_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The conditions notified in the last 24 hours, so a condition that
/// repeats (an unknown policy name at every tick, an unencrypted volume at
/// every new snapshot) is notified once a day, not every time. A daily run
/// reports its whole picture regardless, and what it reports stays quiet
/// until the next daily run.
///
/// Kept for the life of a Lambda execution environment: a cold start
/// forgets, so a condition may be notified again within the day; it is
/// never notified less than once a day.
#[derive(Debug, Default)]
pub struct DailyMemo {
    inner: Mutex<Memo>,
}

#[derive(Debug, Default)]
struct Memo {
    /// Condition -> when it was last notified.
    seen: BTreeMap<String, DateTime<Utc>>,
    pruned_at: Option<DateTime<Utc>>,
}

impl Memo {
    /// Record `condition` as notified at `now`, unless the memo is full.
    fn remember(&mut self, condition: &str, now: DateTime<Utc>) {
        if self.seen.len() < MEMO_CAPACITY || self.seen.contains_key(condition) {
            self.seen.insert(condition.to_string(), now);
        }
    }
}

impl DailyMemo {
    pub fn new() -> Self {
        Self::default()
    }

    /// True when `condition` was not notified in the 24 hours before `now`
    /// (it is then remembered as notified at `now`), false otherwise.
    pub fn first_in_a_day(&self, condition: &str, now: DateTime<Utc>) -> bool {
        // A poisoned lock only means another thread panicked mid-insert;
        // the map is still a map.
        let mut memo = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Forget what is older than the window, at most once a minute.
        if memo
            .pruned_at
            .is_none_or(|t| now - t > chrono::TimeDelta::minutes(1) || now < t)
        {
            memo.seen
                .retain(|_, at| now - *at < MEMO_WINDOW && *at <= now);
            memo.pruned_at = Some(now);
        }
        if memo
            .seen
            .get(condition)
            .is_some_and(|at| now - *at < MEMO_WINDOW && *at <= now)
        {
            return false;
        }
        memo.remember(condition, now);
        true
    }

    /// Record `conditions` as notified at `now`, whatever came before: a
    /// daily run that reports its whole picture restarts each one's quiet
    /// day, so the next day's repeats wait for the next daily run.
    pub fn notified<S: AsRef<str>>(
        &self,
        conditions: impl IntoIterator<Item = S>,
        now: DateTime<Utc>,
    ) {
        let mut memo = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for c in conditions {
            memo.remember(c.as_ref(), now);
        }
    }

    /// Of a run's `conditions`, how many were not notified in the last 24
    /// hours (each is then remembered) and how many were: `(new, repeats)`.
    pub fn sort_out<S: AsRef<str>>(
        &self,
        conditions: impl IntoIterator<Item = S>,
        now: DateTime<Utc>,
    ) -> (usize, usize) {
        conditions.into_iter().fold((0, 0), |(new, repeats), c| {
            if self.first_in_a_day(c.as_ref(), now) {
                (new + 1, repeats)
            } else {
                (new, repeats + 1)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_is_notified_once_a_day() {
        let memo = DailyMemo::new();
        let t = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.to_utc())
                .unwrap()
        };
        let c = "unknown-policy vol-1 gold";
        assert!(memo.first_in_a_day(c, t("2026-01-01T00:15:00Z")));
        assert!(!memo.first_in_a_day(c, t("2026-01-01T00:30:00Z")));
        assert!(
            !memo.first_in_a_day(c, t("2026-01-02T00:14:59Z")),
            "within 24 hours"
        );
        assert!(memo.first_in_a_day("unknown-policy vol-2 gold", t("2026-01-01T23:59:59Z")));
        assert!(
            memo.first_in_a_day(c, t("2026-01-02T00:15:00Z")),
            "a day later"
        );
        assert!(!memo.first_in_a_day(c, t("2026-01-02T08:00:00Z")));
        // A daily run at 05:00 notifies everything; the next morning's event
        // at 00:15 stays quiet, the next daily run notifies again.
        let memo = DailyMemo::new();
        assert!(memo.first_in_a_day("unencrypted-snapshot vol-r", t("2026-01-01T05:00:00Z")));
        assert!(!memo.first_in_a_day("unencrypted-snapshot vol-r", t("2026-01-02T00:15:00Z")));
        assert!(memo.first_in_a_day("unencrypted-snapshot vol-r", t("2026-01-02T05:00:00Z")));
        // A daily run restarts the quiet day of what it reports, even a
        // condition an event notified that morning.
        let daily = DailyMemo::new();
        assert!(daily.first_in_a_day("c", t("2026-01-01T00:25:00Z")));
        daily.notified(["c"], t("2026-01-01T05:00:00Z"));
        assert!(
            !daily.first_in_a_day("c", t("2026-01-02T00:25:00Z")),
            "19 h after the daily run"
        );
        daily.notified(["c"], t("2026-01-02T05:00:00Z"));
        assert!(!daily.first_in_a_day("c", t("2026-01-03T00:26:00Z")));
        // A run's conditions sorted out: new ones, and repeats.
        assert_eq!(
            memo.sort_out(
                ["unencrypted-snapshot vol-r", "public-snapshot snap-1"],
                t("2026-01-02T06:00:00Z")
            ),
            (1, 1)
        );
    }

    #[test]
    fn past_its_capacity_the_memo_notifies_rather_than_forgets_to() {
        let memo = DailyMemo::new();
        let now = chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        for i in 0..MEMO_CAPACITY {
            assert!(memo.first_in_a_day(&i.to_string(), now));
        }
        assert!(memo.first_in_a_day("one more", now));
        assert!(
            memo.first_in_a_day("one more", now),
            "not remembered, so notified again"
        );
        assert!(!memo.first_in_a_day("0", now));
        // A day later everything has been forgotten: room again.
        let later = now + MEMO_WINDOW;
        assert!(memo.first_in_a_day("one more", later));
        assert!(!memo.first_in_a_day("one more", later));
    }

    fn note(summary: &str, details: Value) -> Notification {
        Notification {
            kind: NotificationKind::RunSummary,
            severity: Severity::Warning,
            deployment: "prod".into(),
            summary: summary.into(),
            details,
        }
    }

    #[test]
    fn renders_subject_json_body_and_filterable_attributes() {
        let r = note("2 volumes failed", json!({"failed": 2})).render();
        assert_eq!(r.subject, "[prod] WARNING: 2 volumes failed");
        let body: Value = serde_json::from_str(&r.message).unwrap();
        assert_eq!(body["kind"], "run-summary");
        assert_eq!(body["severity"], "warning");
        assert_eq!(body["summary"], "2 volumes failed");
        assert_eq!(body["details"]["failed"], 2);
        assert_eq!(
            r.attributes,
            vec![
                ("kind".to_string(), "run-summary".to_string()),
                ("severity".to_string(), "warning".to_string())
            ]
        );
    }

    #[test]
    fn subjects_obey_sns_rules() {
        let r = note(
            &format!("line\nbreak ünïcode {}", "x".repeat(200)),
            json!({}),
        )
        .render();
        assert!(r.subject.chars().count() <= MAX_SUBJECT_CHARS);
        assert!(r.subject.chars().all(|c| c.is_ascii_graphic() || c == ' '));
        assert!(r.subject.ends_with("..."));
    }

    #[test]
    fn huge_details_are_dropped_not_sent() {
        let r = note("big", json!({"list": vec!["x".repeat(1000); 400]})).render();
        assert!(r.message.len() <= MAX_MESSAGE_BYTES);
        let body: Value = serde_json::from_str(&r.message).unwrap();
        assert_eq!(body["details"]["truncated"], true);
    }

    #[test]
    fn severities_order_from_info_to_critical() {
        assert_eq!(
            [Severity::Warning, Severity::Critical, Severity::Info]
                .into_iter()
                .max(),
            Some(Severity::Critical)
        );
    }
}

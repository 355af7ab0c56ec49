//! The shape every function's run shares: the header of its run summary
//! (one JSON shape for log queries across the functions) and the
//! publication of the notifications a function computed from its summary.
//!
//! A handler is: trigger -> plan (pure, `ebs-lifecycle-core`) -> execute
//! (through the ports) -> summary -> notifications (a pure function of the
//! summary) -> [`publish`], in the one closing sequence of
//! [`crate::lambda::function`]. A new function writes its plan and execute and
//! reuses the rest.

use chrono::{DateTime, Utc};
use serde::Serialize;

use ebs_lifecycle_core::events::Trigger;
use ebs_lifecycle_core::notify::Notification;
use ebs_lifecycle_core::ownership::Suspect;
use ebs_lifecycle_core::tags;

use crate::config::Config;
use crate::ports::notifier::Notifier;

/// The first fields of every run summary, flattened into it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunHeader {
    pub function: &'static str,
    /// `lifecycle:managed-by`: the stack.
    pub deployment: String,
    /// When the run started, by the function's own clock.
    pub time: String,
    /// `tick` (create-snapshots' schedule), `daily` (a daily run) or `event`.
    pub trigger: &'static str,
    /// For an event: the operation it reports, or what was ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Notifications that could not be published (the run still counts).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notification_errors: Vec<String>,
    /// Snapshots with this deployment's tags that failed the ownership
    /// check this run (docs/policies-and-tags.md, "Ownership"): never
    /// deleted, never linked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tampering_suspected: Vec<Suspect>,
    /// Snapshots an event named that EC2 no longer has (deleted before the
    /// event was handled): an outcome, not an error (docs/functions.md,
    /// "Events about snapshots that are gone").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshots_gone: Vec<String>,
}

impl RunHeader {
    pub fn new(
        function: &'static str,
        config: &Config,
        now: DateTime<Utc>,
        trigger: &'static str,
    ) -> Self {
        Self {
            function,
            deployment: config.deployment_name().to_string(),
            time: tags::format_time(now),
            trigger,
            event: None,
            notification_errors: Vec::new(),
            tampering_suspected: Vec::new(),
            snapshots_gone: Vec::new(),
        }
    }

    /// The header of a run started by `trigger`.
    pub fn for_trigger(
        function: &'static str,
        config: &Config,
        now: DateTime<Utc>,
        trigger: &Trigger,
    ) -> Self {
        for note in trigger.notes() {
            tracing::warn!(function, note = %note, "event accepted with a value this version does not know");
        }
        if let Trigger::Ignored { detail_type, event } = trigger {
            tracing::info!(
                function,
                detail_type,
                event,
                "EBS event not acted on; ignored"
            );
        }
        Self {
            event: trigger.event(),
            ..Self::new(function, config, now, trigger.label())
        }
    }
}

/// The most an invocation returns: Lambda allows 6 MB, but a summary that
/// large is unreadable anywhere it lands (the test console, a
/// destination's record, an SQS message of 256 KB).
pub const RESPONSE_LIMIT: usize = 256 * 1024;

/// The most of a summary one log line carries (CloudWatch Logs takes events
/// of up to 256 KB, the line's other fields included).
pub(crate) const LOG_LIMIT: usize = 200 * 1024;

/// A run summary as the invocation returns it: whole when it fits
/// [`RESPONSE_LIMIT`], else its counts with a sample of every list
/// (`ebs_lifecycle_core::text::bounded`); the whole is in the log.
pub fn response(summary: &impl Serialize) -> serde_json::Value {
    bounded(summary, RESPONSE_LIMIT)
}

/// A run summary for its log line: at most [`LOG_LIMIT`] bytes.
pub fn for_log(summary: &impl Serialize) -> serde_json::Value {
    bounded(summary, LOG_LIMIT)
}

fn bounded(summary: &impl Serialize, limit: usize) -> serde_json::Value {
    let value = serde_json::to_value(summary)
        .unwrap_or_else(|e| serde_json::json!({"unserializable_summary": e.to_string()}));
    ebs_lifecycle_core::text::bounded(&value, limit)
        .unwrap_or_else(|| serde_json::json!({"summary_too_large": true}))
}

/// The run summary as one JSON log line of its own, `{"level": "INFO",
/// "type": "run-summary", "function", "message": headline, "summary": {...}}`:
/// CloudWatch Logs Insights discovers the fields of a JSON log event, so
/// `filter type = "run-summary" and summary.counts.deleted > 0` works
/// (docs/operations.md, "Logs"). Written as the metrics are, to stdout,
/// whole or not at all; a failed write is not the run's failure.
pub fn log_summary(function: &str, headline: &str, summary: serde_json::Value) {
    use std::io::Write;
    let line = serde_json::json!({
        "level": "INFO",
        "type": "run-summary",
        "function": function,
        "message": headline,
        "summary": summary,
    });
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}") {
        tracing::warn!(error = %e, "could not write the run summary's log line");
    }
}

/// Publish each notification in order. A failure is logged and recorded in
/// the header; it never fails the run (what the run did stands, and its
/// summary is in the log).
pub async fn publish(
    notifier: &dyn Notifier,
    notifications: &[Notification],
    header: &mut RunHeader,
) {
    for notification in notifications {
        if let Err(e) = notifier.publish(notification).await {
            tracing::error!(
                error = %e,
                kind = notification.kind.as_str(),
                function = header.function,
                "could not publish a notification"
            );
            header.notification_errors.push(e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_stays_under_its_limit_at_any_account_size() {
        let volumes: Vec<serde_json::Value> = (0..120_000)
            .map(|i| serde_json::json!({"volume_id": format!("vol-{i:017}"), "kept": ["snap-1", "snap-2"]}))
            .collect();
        let summary = serde_json::json!({"function": "expire-snapshots", "volumes": volumes});
        assert!(serde_json::to_string(&summary).unwrap().len() > 6 * 1024 * 1024);
        let response = response(&summary);
        assert!(serde_json::to_string(&response).unwrap().len() <= RESPONSE_LIMIT);
        assert_eq!(response["volumes_omitted"], 119_900);
        assert!(serde_json::to_string(&for_log(&summary)).unwrap().len() <= LOG_LIMIT);
    }
}

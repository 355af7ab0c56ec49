//! Events the functions are invoked with (SPEC "Events handled").
//!
//! Parsing is strict and total: a malformed event is an [`EventError`] naming
//! the field, never a panic, and is rejected before any AWS call.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// A scheduler tick: what EventBridge Scheduler sends (the template's input,
/// `{"kind": "tick", "scheduled_time": "<aws.scheduler.scheduled-time>"}`),
/// or a classic EventBridge `Scheduled Event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// When the scheduler meant to run. Informational: which slot is current is
    /// decided by the function's own clock, never by a time in the payload.
    pub scheduled_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event is not a JSON object")]
    NotAnObject,
    #[error("event field `{field}` is missing")]
    Missing { field: &'static str },
    #[error("event field `{field}` is invalid: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error("unexpected event: {0}")]
    Unexpected(String),
}

impl Tick {
    pub fn parse(event: &Value) -> Result<Self, EventError> {
        let object = event.as_object().ok_or(EventError::NotAnObject)?;
        let time_field = |field: &'static str| -> Result<Option<DateTime<Utc>>, EventError> {
            match object.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => {
                    crate::tags::parse_time(s)
                        .map(Some)
                        .ok_or_else(|| EventError::Invalid {
                            field,
                            problem: format!("`{s}` is not an RFC 3339 time"),
                        })
                }
                Some(_) => Err(EventError::Invalid {
                    field,
                    problem: "must be a string".into(),
                }),
            }
        };
        if let Some(kind) = object.get("kind") {
            return match kind.as_str() {
                Some("tick") => Ok(Self {
                    scheduled_time: time_field("scheduled_time")?,
                }),
                Some(other) => Err(EventError::Invalid {
                    field: "kind",
                    problem: format!("`{other}` is not `tick`"),
                }),
                None => Err(EventError::Invalid {
                    field: "kind",
                    problem: "must be a string".into(),
                }),
            };
        }
        match object.get("detail-type").and_then(Value::as_str) {
            Some("Scheduled Event") => Ok(Self {
                scheduled_time: time_field("time")?,
            }),
            Some(other) => Err(EventError::Unexpected(format!(
                "detail-type `{other}` is not a scheduler tick"
            ))),
            None => Err(EventError::Missing { field: "kind" }),
        }
    }
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
            t.scheduled_time.map(crate::tags::format_time).as_deref(),
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
        ];
        for (event, field) in cases {
            let err = Tick::parse(&event).unwrap_err();
            if let Some(field) = field {
                assert!(err.to_string().contains(field), "{event}: {err}");
            }
        }
        assert!(matches!(
            Tick::parse(&json!({"detail-type": "EBS Snapshot Notification"})),
            Err(EventError::Unexpected(_))
        ));
    }
}

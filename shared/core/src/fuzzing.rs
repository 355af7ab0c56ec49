//! The bodies of the fuzz targets in `fuzz/` (cargo-fuzz, nightly), kept
//! here so stable builds run them too: the property tests below feed them
//! arbitrary bytes and mutated valid inputs on every `make test`.
//!
//! Each body takes untrusted bytes the way a function receives them and
//! checks what a user relies on: parsing never panics, a rejection is a
//! short message, and what is accepted can be used (a policy's schedule
//! gives slots) without panicking either.

use chrono::{TimeZone, Utc};
use serde_json::Value;

use crate::events::{SnapshotEvent, Tick};
use crate::policy::Policies;

/// The longest error message a rejection may produce: messages go into
/// logs and notifications, and must not echo a huge input back.
pub const MAX_ERROR_CHARS: usize = 400;

/// An EventBridge event as the runtime hands it over (JSON bytes).
pub fn event(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return; // the Lambda runtime rejects non-JSON before any handler
    };
    let error = if Tick::is_tick(&value) {
        Tick::parse(&value).err()
    } else {
        SnapshotEvent::parse(&value).err()
    };
    if let Some(e) = error {
        let message = e.to_string();
        assert!(
            message.chars().count() < MAX_ERROR_CHARS,
            "event error too long: {} chars",
            message.chars().count()
        );
    }
}

/// A `POLICIES` document (any bytes; the environment holds UTF-8).
pub fn policy_document(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Policies::parse(text) {
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.chars().count() < MAX_ERROR_CHARS,
                "policy error too long: {} chars",
                message.chars().count()
            );
        }
        Ok(policies) => {
            // What is accepted works: every schedule yields its slots.
            let instants = [
                Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 0),
                Utc.with_ymd_and_hms(2026, 10, 25, 0, 59, 59),
                Utc.with_ymd_and_hms(2028, 2, 29, 23, 0, 0),
            ];
            for policy in policies.iter() {
                for now in instants.iter().filter_map(|t| t.single()) {
                    let _ = policy.schedule.slot_at(now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EVENT_SAMPLES: [&str; 3] = [
        include_str!("../../../tests/fixtures/events/create-snapshot-succeeded.json"),
        include_str!("../../../tests/fixtures/events/create-snapshots-completed.json"),
        r#"{"kind": "tick", "scheduled_time": "2026-03-01T10:15:00Z"}"#,
    ];
    const POLICY_SAMPLE: &str = r#"{"default": {"schedule": "0 */6 * * *", "timezone": "Europe/Berlin",
        "keep": {"last": 3, "daily": 7, "within": "2d"}, "copy_tags": ["*"], "tags": {"Tier": "gold"}}}"#;

    /// A valid input with one byte range replaced: close to valid, which
    /// is where parsers break.
    fn mutated(sample: &'static str) -> impl Strategy<Value = Vec<u8>> {
        let len = sample.len();
        (
            0..len,
            0..16usize,
            proptest::collection::vec(any::<u8>(), 0..16),
        )
            .prop_map(move |(at, cut, insert)| {
                let mut bytes = sample.as_bytes().to_vec();
                let end = (at + cut).min(bytes.len());
                bytes.splice(at..end, insert);
                bytes
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn events_from_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            event(&data);
        }

        #[test]
        fn events_near_valid(data in prop_oneof![
            mutated(EVENT_SAMPLES[0]), mutated(EVENT_SAMPLES[1]), mutated(EVENT_SAMPLES[2])
        ]) {
            event(&data);
        }

        #[test]
        fn policies_from_arbitrary_text(text in ".{0,300}") {
            policy_document(text.as_bytes());
        }

        #[test]
        fn policies_near_valid(data in mutated(POLICY_SAMPLE)) {
            policy_document(&data);
        }
    }
}

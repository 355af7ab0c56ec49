//! Holds kept in the stack's ledger (docs/policies-and-tags.md, "Holds").
//!
//! The `lifecycle:hold` tag keeps a snapshot only as long as nobody removes
//! it, and anyone with `ec2:DeleteTags` can. A ledger hold is written by a
//! principal with the stack's hold permission (the template's
//! `HoldSnapshotsPolicy`), not by a tag-writer, so removing tags cannot lift
//! it. It names a snapshot or a volume (every snapshot of the volume, its
//! copies included) and ends at its `until` time or when released.
//!
//! Every deleting function reads the holds before it deletes
//! (`crate::safety::AccountFacts::holds`); a hold that cannot be read means
//! nothing is deleted.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::model::Snapshot;

/// The most holds a run reads. Holds are set by people, one at a time; past
/// this the ledger is not what the stack expects, and nothing is deleted
/// (the read is refused as unavailable) until some are released.
pub const MAX_HOLDS: usize = 10_000;

/// The longest reason kept, in characters (longer ones are refused, so what
/// the report shows is what was written).
pub(crate) const MAX_REASON_CHARS: usize = 256;

/// The furthest a hold may reach: ten years. A hold meant for ever is a
/// decision someone should make again.
pub(crate) const MAX_HOLD: Duration = Duration::days(3653);

/// One hold, as the ledger records it (and the report shows it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hold {
    /// A snapshot id (`snap-…`) or a volume id (`vol-…`).
    pub resource_id: String,
    /// The hold ends at this time (exclusive).
    pub until: DateTime<Utc>,
    pub reason: String,
    /// Who set it (the caller's ARN, as the tool read it from STS).
    pub by: String,
    /// When it was set.
    pub at: DateTime<Utc>,
}

/// Why a hold is refused before it is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoldError {
    #[error("`{0}` is neither a snapshot id (snap-…) nor a volume id (vol-…)")]
    NotAResource(String),
    #[error("the hold would end at {until}, which is not after now ({now})")]
    EndsInThePast {
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    #[error("the hold would end at {0}, more than ten years from now")]
    TooLong(DateTime<Utc>),
    #[error("a hold needs a reason (at most {MAX_REASON_CHARS} characters)")]
    Reason,
}

/// What a hold may name: EC2's id forms, lower-case hex after the prefix.
pub fn is_resource_id(id: &str) -> bool {
    let hex = id.strip_prefix("snap-").or_else(|| id.strip_prefix("vol-"));
    hex.is_some_and(|h| {
        (8..=17).contains(&h.len())
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl Hold {
    /// A new hold, checked: it names a snapshot or a volume, ends after
    /// `now` and within [`MAX_HOLD`], and says why.
    pub fn new(
        resource_id: &str,
        until: DateTime<Utc>,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, HoldError> {
        if !is_resource_id(resource_id) {
            return Err(HoldError::NotAResource(crate::text::excerpt(resource_id)));
        }
        if until <= now {
            return Err(HoldError::EndsInThePast { until, now });
        }
        if until > now + MAX_HOLD {
            return Err(HoldError::TooLong(until));
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(HoldError::Reason);
        }
        Ok(Self {
            resource_id: resource_id.to_string(),
            until,
            reason: reason.to_string(),
            by: by.to_string(),
            at: now,
        })
    }

    pub fn in_effect(&self, now: DateTime<Utc>) -> bool {
        now < self.until
    }
}

/// The holds in effect at one time, by the id they name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holds {
    by_id: BTreeMap<String, Hold>,
}

impl Holds {
    /// The holds of `records` in effect at `now` (ended ones are ignored:
    /// the ledger forgets them later by itself). Two records for one id (a
    /// ledger written by hand) keep the later end.
    pub fn in_effect(records: impl IntoIterator<Item = Hold>, now: DateTime<Utc>) -> Self {
        let mut by_id: BTreeMap<String, Hold> = BTreeMap::new();
        for hold in records.into_iter().filter(|h| h.in_effect(now)) {
            match by_id.get(&hold.resource_id) {
                Some(kept) if kept.until >= hold.until => {}
                _ => {
                    by_id.insert(hold.resource_id.clone(), hold);
                }
            }
        }
        Self { by_id }
    }

    /// The hold that keeps this snapshot, if any: one on the snapshot, else
    /// one on its volume (the volume its proof names, or EC2's `VolumeId`:
    /// either keeps it, since a hold only ever keeps).
    pub fn on(&self, snapshot: &Snapshot) -> Option<&Hold> {
        self.by_id
            .get(&snapshot.id)
            .or_else(|| snapshot.source_volume_id().and_then(|v| self.by_id.get(v)))
            .or_else(|| snapshot.volume_id.as_ref().and_then(|v| self.by_id.get(v)))
    }

    pub fn get(&self, resource_id: &str) -> Option<&Hold> {
        self.by_id.get(resource_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Hold> {
        self.by_id.values()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::parse_time;
    use crate::model::SnapshotState;

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    fn snapshot(id: &str, volume: &str) -> Snapshot {
        Snapshot {
            id: id.into(),
            volume_id: Some(volume.into()),
            state: SnapshotState::Completed,
            start_time: Some(t("2026-11-01T00:00:00Z")),
            volume_size_gib: None,
            full_size_bytes: None,
            archived: false,
            restore_expiry: None,
            encrypted: true,
            kms_key_id: None,
            description: None,
            owner_id: None,
            tags: Default::default(),
        }
    }

    fn hold(id: &str, until: &str) -> Hold {
        Hold {
            resource_id: id.into(),
            until: t(until),
            reason: "legal".into(),
            by: "arn:aws:iam::111111111111:user/ann".into(),
            at: t("2026-11-01T00:00:00Z"),
        }
    }

    #[test]
    fn a_hold_keeps_its_snapshot_or_every_snapshot_of_its_volume_until_it_ends() {
        let now = t("2026-12-01T00:00:00Z");
        let holds = Holds::in_effect(
            [
                hold("snap-0123456789abcdef0", "2026-12-02T00:00:00Z"),
                hold("vol-0aaaaaaaaaaaaaaaa", "2027-01-01T00:00:00Z"),
                hold("snap-0ended000000000000", "2026-12-01T00:00:00Z"),
            ],
            now,
        );
        assert_eq!(holds.len(), 2, "the ended one is not in effect");
        let mut held = snapshot("snap-0123456789abcdef0", "vol-0bbbbbbbbbbbbbbbb");
        assert_eq!(
            holds.on(&held).map(|h| h.resource_id.as_str()),
            Some("snap-0123456789abcdef0")
        );
        held.id = "snap-0fffffffffffffff0".into();
        assert!(holds.on(&held).is_none());
        // By the volume its proof names (copies report a placeholder VolumeId).
        held.volume_id = Some("vol-ffffffff".into());
        held.tags.insert(
            crate::keys::VOLUME_ID.into(),
            "vol-0aaaaaaaaaaaaaaaa".into(),
        );
        assert!(holds.on(&held).is_some());
        // By EC2's VolumeId.
        let by_ec2 = snapshot("snap-0eeeeeeeeeeeeeee0", "vol-0aaaaaaaaaaaaaaaa");
        assert!(holds.on(&by_ec2).is_some());
        // Ended: nothing keeps it.
        let later = Holds::in_effect(
            [hold("vol-0aaaaaaaaaaaaaaaa", "2027-01-01T00:00:00Z")],
            t("2027-01-01T00:00:00Z"),
        );
        assert!(later.on(&by_ec2).is_none());
    }

    #[test]
    fn two_records_for_one_id_keep_the_later_end() {
        let now = t("2026-12-01T00:00:00Z");
        for order in [[0, 1], [1, 0]] {
            let records = [
                hold("snap-0123456789abcdef0", "2026-12-05T00:00:00Z"),
                hold("snap-0123456789abcdef0", "2027-06-01T00:00:00Z"),
            ];
            let holds = Holds::in_effect(order.map(|i| records[i].clone()), now);
            assert_eq!(
                holds.get("snap-0123456789abcdef0").map(|h| h.until),
                Some(t("2027-06-01T00:00:00Z"))
            );
        }
    }

    #[test]
    fn a_hold_is_checked_before_it_is_written() {
        let now = t("2026-12-01T00:00:00Z");
        let by = "arn:aws:iam::111111111111:user/ann";
        let ok = Hold::new(
            "vol-0123456789abcdef0",
            t("2027-01-01T00:00:00Z"),
            " audit ",
            by,
            now,
        )
        .unwrap();
        assert_eq!(ok.reason, "audit");
        assert_eq!(ok.at, now);
        for id in [
            "",
            "snap-",
            "vol-XYZ12345",
            "snap-*",
            "i-0123456789abcdef0",
            "snap-0123456789abcdef0 ",
        ] {
            assert!(
                matches!(
                    Hold::new(id, t("2027-01-01T00:00:00Z"), "x", by, now),
                    Err(HoldError::NotAResource(_))
                ),
                "{id:?}"
            );
        }
        assert!(matches!(
            Hold::new("snap-0123456789abcdef0", now, "x", by, now),
            Err(HoldError::EndsInThePast { .. })
        ));
        assert!(matches!(
            Hold::new(
                "snap-0123456789abcdef0",
                now + MAX_HOLD + Duration::seconds(1),
                "x",
                by,
                now
            ),
            Err(HoldError::TooLong(_))
        ));
        for reason in ["", "   ", &"x".repeat(MAX_REASON_CHARS + 1)] {
            assert_eq!(
                Hold::new(
                    "snap-0123456789abcdef0",
                    t("2027-01-01T00:00:00Z"),
                    reason,
                    by,
                    now
                ),
                Err(HoldError::Reason)
            );
        }
    }
}

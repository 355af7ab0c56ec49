//! `hold` and `release` (docs/policies-and-tags.md, "Holds"): a hold kept
//! in the stack's ledger, honoured by every deleting function, which
//! removing a tag cannot lift. Setting one needs the stack's
//! `HoldSnapshotsPolicy`, not `ec2:CreateTags`.

use chrono::{DateTime, Utc};

use ebs_lifecycle::ports::ledger::{Ledger, LedgerError};
use ebs_lifecycle_core::holds::{Hold, HoldError};

#[derive(Debug, thiserror::Error)]
pub enum HoldCommandError {
    #[error("hold refused: {0}")]
    Refused(#[from] HoldError),
    #[error("{id} is held until {until} ({reason}, by {by}); this would end it sooner: add --force to do so")]
    WouldShorten {
        id: String,
        until: String,
        reason: String,
        by: String,
    },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Keep `resource_id` (a snapshot, or every snapshot of a volume) until
/// `until`; replaces a hold on the same id, but never ends one sooner
/// unless `force` (a short incident hold must not cut a legal one). `by`
/// is the caller's ARN.
pub async fn hold(
    ledger: &dyn Ledger,
    resource_id: &str,
    until: DateTime<Utc>,
    reason: &str,
    by: &str,
    force: bool,
    now: DateTime<Utc>,
) -> Result<Hold, HoldCommandError> {
    let hold = Hold::new(resource_id, until, reason, by, now)?;
    if !force {
        let existing = ledger.holds().await?;
        if let Some(h) = existing
            .iter()
            .find(|h| h.resource_id == resource_id && h.in_effect(now) && h.until > until)
        {
            return Err(HoldCommandError::WouldShorten {
                id: resource_id.to_string(),
                until: ebs_lifecycle_core::tags::format_time(h.until),
                reason: h.reason.clone(),
                by: h.by.clone(),
            });
        }
    }
    ledger.set_hold(&hold).await?;
    Ok(hold)
}

/// End the hold on `resource_id` now (nothing to end is not an error).
pub async fn release(ledger: &dyn Ledger, resource_id: &str) -> Result<(), HoldCommandError> {
    if !ebs_lifecycle_core::holds::is_resource_id(resource_id) {
        return Err(HoldError::NotAResource(resource_id.to_string()).into());
    }
    ledger.release_hold(resource_id).await?;
    Ok(())
}

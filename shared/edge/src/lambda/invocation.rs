//! What the event-driven functions (complete-snapshots, tag-snapshots,
//! check-encryption, and verify-restores' schedule) share around one
//! invocation: the one opening from a [`Trigger`] ([`open_trigger`]), the
//! one error a failed invocation reports (its `errorType` is stable, for
//! alarms and the failure destination), and the lookup of the snapshots an
//! event names.

use lambda_runtime::Diagnostic;

use chrono::{DateTime, Utc};

use serde_json::Value;

use ebs_lifecycle_core::events::{EventError, SnapshotResult, Trigger};
use ebs_lifecycle_core::model::Snapshot;

use crate::lambda::function::{diagnostic, ErrorType, Run, Summary};
use crate::lambda::run::RunHeader;
use crate::ports::ec2::{Ec2Error, SnapshotCatalog};
use crate::ports::ledger::LedgerError;

#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error("rejected event: {0}")]
    InvalidEvent(#[from] EventError),
    /// EC2 does not show the snapshot yet (eventual consistency): failing the
    /// invocation makes Lambda deliver the event again; the daily run is the
    /// backstop.
    #[error("snapshots not visible in EC2 yet, retry later: {}", .0.join(", "))]
    SnapshotNotVisible(Vec<String>),
    #[error("EC2 call failed: {0}")]
    Ec2(#[from] Ec2Error),
    /// The stack's ledger could not prove ownership: nothing is linked or
    /// counted on a guess; the event is delivered again.
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    /// A notification that must not be lost (a failed snapshot's alert)
    /// could not be published: failing makes Lambda deliver the event again.
    #[error("could not publish a notification that must not be lost: {0}")]
    NotificationFailed(String),
}

impl ErrorType for InvocationError {
    fn error_type(&self) -> &'static str {
        match self {
            InvocationError::InvalidEvent(_) => "InvalidEvent",
            InvocationError::SnapshotNotVisible(_) => "SnapshotNotVisible",
            InvocationError::Ec2(_) => "Ec2Unavailable",
            InvocationError::Ledger(_) => "LedgerUnavailable",
            InvocationError::NotificationFailed(_) => "NotificationFailed",
        }
    }
}

impl From<InvocationError> for Diagnostic {
    fn from(error: InvocationError) -> Self {
        diagnostic(&error)
    }
}

/// The snapshots an event names, in one DescribeSnapshots call, and the
/// ids of those EC2 no longer has. A missing snapshot whose event is recent
/// may not be visible yet: the invocation fails
/// ([`InvocationError::SnapshotNotVisible`]) so that Lambda delivers it
/// again; one reported done longer ago is gone, an outcome
/// ([`SnapshotResult::gone_if_missing`]).
pub async fn snapshots_named(
    catalog: &dyn SnapshotCatalog,
    results: &[SnapshotResult],
    ids: &[String],
    now: DateTime<Utc>,
) -> Result<Named, InvocationError> {
    let found = catalog.snapshots_by_id(ids).await?;
    let (gone, not_visible) = missing(results, ids, &found, now);
    if not_visible.is_empty() {
        Ok(Named { found, gone })
    } else {
        Err(InvocationError::SnapshotNotVisible(not_visible))
    }
}

/// What [`snapshots_named`] found.
#[derive(Debug, Default)]
pub struct Named {
    pub found: Vec<Snapshot>,
    /// Deleted before the event was handled.
    pub gone: Vec<String>,
}

/// Of `ids`, those not in `found`: (gone, maybe not visible yet).
fn missing(
    results: &[SnapshotResult],
    ids: &[String],
    found: &[Snapshot],
    now: DateTime<Utc>,
) -> (Vec<String>, Vec<String>) {
    ids.iter()
        .filter(|id| !found.iter().any(|s| &s.id == *id))
        .cloned()
        .partition(|id| {
            results
                .iter()
                .find(|r| &r.snapshot_id == id)
                .is_none_or(|r| r.gone_if_missing(now))
        })
}

/// The usual opening of a function a schedule or an EC2 event starts: the
/// event read as a [`Trigger`] (a bad one refused), the summary's header
/// for it, the rest of the summary at its default. (Functions whose
/// opening decides more, such as vault-snapshots' accepted accounts, write
/// their own.)
pub fn open_trigger<S: Summary + Default>(
    function: &'static str,
    run: &Run<'_>,
    event: &Value,
) -> Result<(Trigger, S), InvocationError> {
    let trigger = Trigger::parse(event)?;
    let mut summary = S::default();
    *summary.header() = RunHeader::for_trigger(function, run.config, run.now, &trigger);
    Ok((trigger, summary))
}

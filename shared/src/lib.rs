//! The common crate of the EBS snapshot lifecycle functions.
//!
//! Layout, from the pure core outwards:
//!
//! - [`model`]: domain types (volume, instance, snapshot), free of SDK types.
//! - [`policy`] and [`schedule`]: the policy document, its validation, and the
//!   schedule slots a policy's cron expression defines in its time zone.
//! - [`tags`]: the tag contract: every `lifecycle:` key, how a new snapshot's
//!   tags are composed, how they are read back.
//! - [`targets`]: which volumes a policy covers, from the opt-in tags.
//! - [`retention`]: restic-`forget` planning of what the keep rules keep.
//! - [`safety`]: the deletion safety rules, the one gate every deletion passes.
//! - [`expiry`]: a run's plan per volume: retention and safety together.
//! - [`tagging`]: which tags each managed snapshot lacks (propagated from its
//!   volume and instance, and the retention labels), batched for CreateTags.
//! - [`encryption`]: check-encryption's findings and the remedies `REMEDIATE`
//!   allows.
//! - [`events`]: the event payloads the functions accept, parsed strictly.
//! - [`notify`] and [`metrics`]: notification rendering and EMF metric lines.
//! - [`config`]: configuration from the environment, validated at start-up.
//! - [`consistency`]: application-consistent snapshots: the freeze and thaw
//!   scripts run through SSM (with an on-instance watchdog) and what a
//!   failed pre command means for the snapshot.
//! - [`deadline`]: the invocation deadline, on the monotonic clock.
//! - [`fuzzing`]: the bodies of the `fuzz/` targets (event and policy
//!   parsing), also run as property tests on stable.
//!
//! Those modules do no I/O and are tested exhaustively. At the edge:
//!
//! - [`aws`]: the only code that knows the AWS SDK: narrow ports (traits) per
//!   concern and their implementations on the SDK clients.
//! - [`invocation`]: the error an event-driven invocation fails with, and
//!   the lookup of the snapshots an event names.
//! - [`runtime`]: start-up shared by the binaries (logging, clients built
//!   once, configuration errors reported, the Lambda loop).

pub mod aws;
pub mod config;
pub mod consistency;
pub mod deadline;
pub mod encryption;
pub mod events;
pub mod expiry;
pub mod fuzzing;
pub mod invocation;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod pacing;
pub mod policy;
pub mod retention;
pub mod runtime;
pub mod safety;
pub mod schedule;
pub mod tagging;
pub mod tags;
pub mod targets;

pub use model::Tags;

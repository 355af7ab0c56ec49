//! The pure rules of the EBS snapshot lifecycle. No I/O, no async runtime,
//! no AWS SDK: this crate does not depend on tokio, lambda_runtime or any
//! `aws-*` crate, so an SDK type in a rule is a compile error. Everything
//! here is tested exhaustively, with property tests where invariants exist.
//! The reference for what the rules mean is `docs/` (policies and tags,
//! functions, operations).
//!
//! Layout, from the vocabulary outwards:
//!
//! - [`keys`]: the tag vocabulary (every `lifecycle:` key, the time format,
//!   the enumerated values); imports nothing of this crate.
//! - [`text`]: clipping untrusted text for logs and notifications.
//! - [`model`]: domain types (volume, instance, snapshot).
//! - [`schedule`]: the slots a policy's cron expression defines in its time
//!   zone.
//! - [`consistency`]: application-consistent snapshots: the freeze and thaw
//!   scripts and what a failed pre command means for the snapshot.
//! - [`policy`]: the policy document and its validation.
//! - [`tags`]: how a new snapshot's tags are composed and read back.
//! - [`targets`]: which volumes a policy covers, from the opt-in tags.
//! - [`retention`]: restic-`forget` planning of what the keep rules keep.
//! - [`ownership`]: the Description that proves a snapshot is this
//!   deployment's, and the check every snapshot passes before it is
//!   deleted, linked or counted.
//! - [`holds`]: holds kept in the stack's ledger, which removing a tag
//!   cannot lift.
//! - [`safety`]: the deletion safety rules, the one gate every deletion passes.
//! - [`copies`]: disaster-recovery copies: which snapshot a target copies
//!   next, a copy's tags, a lost CopySnapshot answer found again.
//! - [`window`]: `MAX_DELETIONS` counted over 24 hours, across runs.
//! - [`archive`]: which snapshots move to the archive tier (the saving
//!   over their projected life, EC2's quotas), what early deletion costs.
//! - [`cost`]: what snapshots cost: unique and added bytes from changed
//!   blocks, prices, what archiving saves.
//! - [`coverage`]: what protects every volume of the region, and the gaps
//!   in this deployment's protection (the report's first part).
//! - [`vault`]: a vault account: which shares it accepts, its copies' tags, its keep rules.
//! - [`expiry`]: a run's plan per volume: retention and safety together.
//! - [`restore`]: which proven snapshot brings a volume back to a moment,
//!   and the volume to make from it (the command-line tool's restore).
//! - [`drills`]: restore drills: which snapshots a run drills, which blocks
//!   a drill reads, what makes a drill fail.
//! - [`tagging`]: which tags each managed snapshot lacks, batched.
//! - [`encryption`]: check-encryption's findings and the remedies `REMEDIATE`
//!   allows.
//! - [`events`]: the event payloads the functions accept, parsed strictly,
//!   and the [`events::Trigger`] every function starts from.
//! - [`notify`]: notification kinds, severities and rendering.
//! - [`fuzzing`]: the bodies of the `fuzz/` targets (event and policy
//!   parsing), also run as property tests on stable.

pub mod archive;
pub mod consistency;
pub mod copies;
pub mod cost;
pub mod coverage;
pub mod drills;
pub mod encryption;
pub mod events;
pub mod expiry;
pub mod fuzzing;
pub mod holds;
pub(crate) mod keys;
pub mod model;
pub mod notify;
pub mod ownership;
pub mod policy;
pub mod restore;
pub mod retention;
pub mod safety;
pub mod schedule;
pub mod tagging;
pub mod tags;
pub mod targets;
pub mod text;
pub mod vault;
pub mod window;

pub use model::Tags;

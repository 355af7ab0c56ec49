//! The ports: what the functions need from the outside world, one narrow
//! trait per concern, with their request types and error kinds. Handlers
//! depend on these; [`crate::aws`] implements them on the SDK clients.
//!
//! - [`ec2`]: volumes, instances and snapshots, one trait per concern
//!   (inventory, catalog, protections, creator, copier, deleter, tagger,
//!   sharing, locker, archiver, instance control, volume restorer).
//! - [`ledger`]: the stack's DynamoDB ledger, the record only the stack
//!   writes (creations, copies, stops, holds, budgets, reports).
//! - [`blocks`]: the blocks that differ between two snapshots (EBS direct
//!   APIs; the report's unique bytes).
//! - [`keys`]: KMS: key ids from aliases, and what a key's policy shares.
//! - [`notifier`]: SNS, or the log.
//! - [`commands`]: SSM Run Command (freeze and thaw).
//! - [`reports`]: the report bucket (S3).

pub mod blocks;
pub mod commands;
pub mod ec2;
pub mod keys;
pub mod ledger;
pub mod notifier;
pub mod reports;

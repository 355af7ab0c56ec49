//! The ports: what the functions need from the outside world, one narrow
//! trait per concern, with their request types and error kinds. Handlers
//! depend on these; [`crate::aws`] implements them on the SDK clients.

pub mod blocks;
pub mod commands;
pub mod ec2;
pub mod keys;
pub mod ledger;
pub mod notifier;
pub mod reports;

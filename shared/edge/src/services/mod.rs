//! The services the functions share above the ports: rules of the stack
//! that need I/O, written once.
//!
//! - [`due`]: which opted-in volumes are due in their policy's current
//!   slot (create-snapshots makes them, `ebs-lifecycle plan` prints them).
//! - [`ownership`]: the ownership check with its ledger reads (copies,
//!   creation records, schedules) and "report once".
//! - [`deletion`]: the facts that protect snapshots, read with one policy
//!   when a read fails, and the one budgeted deleter.
//! - [`copying`]: what copy-snapshots and vault-snapshots do alike with
//!   their copies (prove, track, keep).
//! - [`resume`]: the walk over volumes that resumes next run, and its
//!   progress record.
//! - [`commands`]: the SSM command runner (freeze, thaw), paced.
//! - [`drills`]: one restore drill, and the cleanup of drill volumes a
//!   killed run left.

pub mod commands;
pub mod copying;
pub mod deletion;
pub mod drills;
pub mod due;
pub mod ownership;
pub mod resume;

//! The Lambda plumbing every function shares, and the services the
//! functions share above the ports.
//!
//! - [`function`]: the one shape of a function (the [`function::Function`]
//!   trait), its opening and closing, and its runtime loop.
//! - [`runtime`]: start-up (configuration, clients) and the runtime loop.
//! - [`invocation`]: the invocation error, and the lookup of the snapshots
//!   an event names.
//! - [`run`]: the run summary's header and the publication of its
//!   notifications.
//! - [`deadline`]: the time a run has left.
//! - [`commands`]: the SSM command runner (freeze, thaw), paced.
//! - [`metrics`]: CloudWatch metrics in the embedded format.
//! - [`ownership`]: the ownership check with its ledger reads (copies,
//!   creation records, schedules) and "report once".
//! - [`copying`]: what copy-snapshots and vault-snapshots do alike with
//!   their copies (prove, track, keep).
//! - [`resume`]: the progress record of a walk over volumes that resumes
//!   next run.

pub mod commands;
pub mod copying;
pub mod deadline;
pub mod function;
pub mod invocation;
pub mod metrics;
pub mod ownership;
pub mod resume;
pub mod run;
pub mod runtime;

//! The Lambda plumbing every function shares.
//!
//! - [`function`]: the one shape of a function (the [`function::Function`]
//!   trait), its opening and closing, and its runtime loop.
//! - [`runtime`]: start-up (configuration, the adapters) and the runtime
//!   loop.
//! - [`invocation`]: the invocation error, and the lookup of the snapshots
//!   an event names.
//! - [`run`]: the run summary's header and the publication of its
//!   notifications.
//! - [`deadline`]: the time a run has left.
//! - [`metrics`]: CloudWatch metrics in the embedded format.

pub mod deadline;
pub mod function;
pub mod invocation;
pub mod metrics;
pub mod run;
pub mod runtime;

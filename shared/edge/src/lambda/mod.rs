//! The Lambda plumbing every function shares.

pub mod commands;
pub mod copying;
pub mod deadline;
pub mod invocation;
pub mod metrics;
pub mod ownership;
pub mod pacing;
pub mod resume;
pub mod run;
pub mod runtime;

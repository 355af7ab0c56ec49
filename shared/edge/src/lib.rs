//! The edge of the EBS snapshot lifecycle functions: everything that does
//! I/O. The rules are in `ebs-lifecycle-core` (no SDK, no runtime); this
//! crate connects them to AWS and to Lambda.
//!
//! Layout:
//!
//! - [`ports`]: what the functions need from the outside, as narrow traits
//!   with their request types and error kinds: [`ports::ec2`] (one trait per
//!   concern), [`ports::keys`] (KMS), [`ports::notifier`] (SNS or the log),
//!   [`ports::commands`] (SSM Run Command). No SDK type crosses them.
//! - [`aws`]: the adapters, the only code that knows the AWS SDK: the ports
//!   implemented on the SDK clients, the clients built once per execution
//!   environment ([`aws::environment`]), and the shared SDK configuration
//!   (retries, timeouts).
//! - [`lambda`]: the plumbing every function shares: the one shape of a
//!   function, its opening and closing ([`lambda::function`]), start-up and
//!   the runtime loop ([`lambda::runtime`]), the invocation error and the
//!   lookup of the snapshots an event names ([`lambda::invocation`]), the
//!   run summary's header and the publication of its notifications
//!   ([`lambda::run`]), the deadline and metrics.
//! - [`services`]: what the functions share above the ports: the ownership
//!   check, deletion (protection facts and the budgeted deleter), what the
//!   two copying functions do alike with their copies, the resumable walk,
//!   the paced command runner.
//! - [`pacing`]: the pace of calls under EC2's and EBS's token buckets, and
//!   the one table of pacing and batch constants with the limits they come
//!   from (used by adapters and functions alike).
//! - [`config`]: configuration from the environment, validated at start-up.

pub mod aws;
pub mod config;
pub mod lambda;
pub mod pacing;
pub mod ports;
pub mod services;

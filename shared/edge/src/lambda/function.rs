//! The one shape of a function (docs/functions.md, "One skeleton").
//!
//! A function is a type implementing [`Function`]: how it opens a run from
//! the invocation's event (its trigger and its summary's header), its plan
//! and execute ([`Function::execute`]), and what it notifies. Everything
//! else is here, once: the run context ([`Run`]), the opening, the one
//! closing sequence ([`invoke`]: metrics, the ownership report and the
//! function's notifications published, the log line), the bounded response
//! and the stable Lambda error type ([`ErrorType`], [`serve`]).
//!
//! A function crate's `handle` is `invoke::<TheFunction>`, and its `main` is
//! [`serve`] with the ports it needs from the [`Environment`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;

use ebs_lifecycle_core::notify::Notification;
use ebs_lifecycle_core::ownership::Suspect;

use crate::config::Config;
use crate::lambda::deadline::{Deadline, DEFAULT_MARGIN};
use crate::lambda::metrics::{self, Metric};
use crate::lambda::run::{self, RunHeader};
use crate::lambda::runtime::{self, Environment};
use crate::ports::ledger::Ledger;
use crate::ports::notifier::Notifier;
use crate::services::ownership;

/// What every run of every function knows: its configuration, the time it
/// started (by the function's clock) and its deadline.
#[derive(Clone, Copy)]
pub struct Run<'r> {
    pub config: &'r Config,
    pub now: DateTime<Utc>,
    pub deadline: Deadline,
}

/// How a run's work ended, for the closing.
#[derive(Debug)]
pub enum Ran {
    /// The work was done: the run is closed (metrics, the ownership report
    /// of `suspects`, notifications, log line).
    Done { suspects: Vec<Suspect> },
    /// Nothing to do (an event this function does not act on, a stack with
    /// nothing of this function's to do): the summary says why, and nothing
    /// is emitted or notified.
    Nothing,
}

impl Ran {
    /// Done, with no snapshot suspected of tampering.
    pub fn done() -> Self {
        Ran::Done {
            suspects: Vec::new(),
        }
    }
}

/// The cost sums the report emits as gauges (docs/operations.md, "Metrics").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostGauges {
    pub standard_bytes: u64,
    pub archive_bytes: u64,
    pub monthly_usd: f64,
}

/// A function's run summary: its header, its log line and its metrics.
pub trait Summary: Serialize + Sized {
    fn header(&mut self) -> &mut RunHeader;
    /// The log line's message (the summary is its `summary` field).
    fn headline(&self) -> String;
    /// This run's counts (one data point per metric per run); `suspects`:
    /// how many snapshots failed the ownership check. None: no metrics
    /// document at all.
    fn metrics(&self, suspects: usize) -> Vec<(Metric, u64)>;
    /// The account's cost now, as gauges (report-snapshots).
    fn cost(&self) -> Option<CostGauges> {
        None
    }
    /// What the log line carries, bounded ([`run::for_log`]).
    fn for_log(&self) -> Value {
        run::for_log(self)
    }
    /// What the invocation returns, bounded ([`run::response`]).
    fn response(&self) -> Value {
        run::response(self)
    }
}

/// The stable `errorType` of a failed invocation (for alarms and the failure
/// destination): one name per failure, the same in every function.
pub trait ErrorType: std::fmt::Display {
    fn error_type(&self) -> &'static str;
}

/// A failed invocation as Lambda reports it.
pub fn diagnostic(error: &impl ErrorType) -> Diagnostic {
    Diagnostic {
        error_type: error.error_type().into(),
        error_message: error.to_string(),
    }
}

/// One Lambda function: its trigger, its plan and execute, its summary and
/// its notifications. The shared plumbing ([`invoke`], [`serve`]) does the
/// rest.
// The functions run on one task each (the Lambda runtime polls one
// invocation at a time): their futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Function {
    /// The function's name: its crate, its binary and template.yaml's
    /// `Binary:`.
    const NAME: &'static str;
    /// Kept from Lambda's deadline for what follows the work (the summary,
    /// the notifications, a report's files).
    const DEADLINE_MARGIN: Duration = DEFAULT_MARGIN;
    /// The ports the function calls (a struct of trait objects).
    type Ports<'p>: Copy;
    /// What started the run, as the function reads its event.
    type Trigger;
    type Summary: Summary;
    type Error: ErrorType + std::fmt::Debug;

    /// The stack's ledger and notifier among the ports (the closing uses
    /// them).
    fn ledger<'p>(ports: &Self::Ports<'p>) -> &'p dyn Ledger;
    fn notifier<'p>(ports: &Self::Ports<'p>) -> &'p dyn Notifier;

    /// The trigger and the summary's opening (its header) from the event;
    /// an error for an event this function cannot take.
    fn open(run: &Run<'_>, event: &Value) -> Result<(Self::Trigger, Self::Summary), Self::Error>;

    /// Plan and execute, through the ports.
    async fn execute(
        ports: Self::Ports<'_>,
        run: &Run<'_>,
        trigger: Self::Trigger,
        summary: &mut Self::Summary,
    ) -> Result<Ran, Self::Error>;

    /// What the run notifies besides the ownership report (a pure function
    /// of the summary, but for "once a day" memos and records).
    async fn notifications(
        ports: Self::Ports<'_>,
        run: &Run<'_>,
        summary: &mut Self::Summary,
    ) -> Vec<Notification>;

    /// Before an error ends the run: what must still be said (default:
    /// nothing).
    async fn failing(_ports: Self::Ports<'_>, _run: &Run<'_>, _summary: &mut Self::Summary) {}
}

/// One invocation of `F`: open, execute, close. The summary is whole here;
/// [`serve`] bounds the response.
pub async fn invoke<F: Function>(
    ports: F::Ports<'_>,
    config: &Config,
    event: &Value,
    now: DateTime<Utc>,
    deadline: Deadline,
) -> Result<F::Summary, F::Error> {
    let run = Run {
        config,
        now,
        deadline,
    };
    let (trigger, mut summary) = F::open(&run, event)?;
    let suspects = match F::execute(ports, &run, trigger, &mut summary).await {
        Ok(Ran::Done { suspects }) => suspects,
        Ok(Ran::Nothing) => return Ok(summary),
        Err(e) => {
            F::failing(ports, &run, &mut summary).await;
            return Err(e);
        }
    };
    close::<F>(ports, &run, &suspects, &mut summary).await;
    Ok(summary)
}

/// The one closing sequence: metrics, notifications (the ownership report,
/// then the function's), published, then the summary's log line (which so
/// carries what could not be published).
async fn close<F: Function>(
    ports: F::Ports<'_>,
    run: &Run<'_>,
    suspects: &[Suspect],
    summary: &mut F::Summary,
) {
    let counts = summary.metrics(suspects.len());
    if !counts.is_empty() {
        metrics::emit_for_run(run.config, F::NAME, &counts);
    }
    if let Some(cost) = summary.cost() {
        metrics::emit_cost_for_run(
            run.config,
            F::NAME,
            cost.standard_bytes,
            cost.archive_bytes,
            cost.monthly_usd,
        );
    }
    let mut notifications = ownership::report(
        F::ledger(&ports),
        run.config,
        suspects,
        run.now,
        summary.header(),
    )
    .await;
    notifications.extend(F::notifications(ports, run, summary).await);
    run::publish(F::notifier(&ports), &notifications, summary.header()).await;
    run::log_summary(F::NAME, &summary.headline(), summary.for_log());
}

/// Run `F` for every invocation: the environment built once, `ports` taken
/// from it once, each invocation [`invoke`]d with the function's clock and
/// Lambda's deadline, its summary bounded, its error typed.
pub async fn serve<F>(
    ports: impl FnOnce(&'static Environment) -> F::Ports<'static>,
) -> Result<(), lambda_runtime::Error>
where
    F: Function + 'static,
    F::Ports<'static>: 'static,
{
    runtime::serve(
        F::NAME,
        ports,
        |ports, env, event: LambdaEvent<Value>| async move {
            let deadline =
                Deadline::from_wall_clock(event.context.deadline()).with_margin(F::DEADLINE_MARGIN);
            invoke::<F>(ports, &env.config, &event.payload, Utc::now(), deadline)
                .await
                .map(|summary| summary.response())
                .map_err(|e| diagnostic(&e))
        },
    )
    .await
}

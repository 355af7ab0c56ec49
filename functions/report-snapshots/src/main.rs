//! The Lambda binary: wiring only. The logic is in the library (`handle`).

use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::runtime::serve;
use report_snapshots::{handle, Ports, FUNCTION};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(FUNCTION, |env, event| async move {
        let ports = Ports {
            catalog: &env.ec2,
            inventory: &env.ec2,
            protections: &env.ec2,
            blocks: &env.blocks,
            tagger: &env.ec2,
            notifier: env.notifier.as_ref(),
            ledger: &env.ledger,
            reports: env.reports.as_ref().map(|r| r as _),
        };
        // Two minutes kept for what follows the walks: the dry expiry
        // plan, the report's files (megabytes on a large account), the
        // notifications.
        let deadline = Deadline::from_wall_clock(event.context.deadline())
            .with_margin(std::time::Duration::from_secs(120));
        handle(
            ports,
            &env.config,
            &event.payload,
            chrono::Utc::now(),
            deadline,
        )
        .await
        // The invocation returns the summary; the files hold the rest.
        .map(|report| report.summary())
    })
    .await
}

//! The Lambda binary: wiring only. The logic is in the library (`handle`).

use archive_snapshots::{handle, Ports, FUNCTION};
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::runtime::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(FUNCTION, |env, event| async move {
        let ports = Ports {
            catalog: &env.ec2,
            inventory: &env.ec2,
            protections: &env.ec2,
            blocks: &env.blocks,
            archiver: &env.ec2,
            tagger: &env.ec2,
            notifier: env.notifier.as_ref(),
            ledger: &env.ledger,
        };
        // A minute kept for the archivals themselves and the summary once
        // the block walks stop.
        let deadline = Deadline::from_wall_clock(event.context.deadline())
            .with_margin(std::time::Duration::from_secs(60));
        handle(
            ports,
            &env.config,
            &event.payload,
            chrono::Utc::now(),
            deadline,
        )
        .await
    })
    .await
}

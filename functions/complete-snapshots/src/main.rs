//! The Lambda binary: wiring only. The logic is in the library (`handle`).

use complete_snapshots::{handle, Ports, FUNCTION};
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::runtime::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(FUNCTION, |env, event| async move {
        let ports = Ports {
            catalog: &env.ec2,
            tagger: &env.ec2,
            notifier: env.notifier.as_ref(),
            ledger: &env.ledger,
        };
        let deadline = Deadline::from_wall_clock(event.context.deadline());
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

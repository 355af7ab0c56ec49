//! The Lambda binary: wiring only. The logic is in the library (`handle`).

use create_snapshots::{handle, Ports, Waits, CREATE_PACING, FUNCTION};
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::runtime::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(FUNCTION, |env, event| async move {
        let ports = Ports {
            inventory: &env.ec2,
            catalog: &env.ec2,
            creator: &env.ec2,
            notifier: env.notifier.as_ref(),
            memo: &env.memo,
            commands: &env.ssm,
            instances: &env.ec2,
            ledger: &env.ledger,
            waits: Waits::PRODUCTION,
            create_pacing: CREATE_PACING,
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

//! The Lambda binary: wiring only. The logic is in the library (`handle`).

use std::sync::OnceLock;

use create_snapshots::{handle, Bucket, Ports, Waits, CREATE_PACING, FUNCTION};
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::runtime::serve;

/// One bucket per execution environment, like the memo: consecutive ticks
/// draw on EC2's bucket one after the other.
static BUCKET: OnceLock<Bucket> = OnceLock::new();

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
            bucket: BUCKET.get_or_init(|| Bucket::new(CREATE_PACING)),
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

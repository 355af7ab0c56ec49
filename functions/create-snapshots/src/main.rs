//! The Lambda binary: wiring only. The function is `CreateSnapshots`.

use create_snapshots::{Bucket, CreateSnapshots, Ports, Waits, CREATE_PACING};
use ebs_lifecycle::lambda::function::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve::<CreateSnapshots>(|env| Ports {
        inventory: &env.ec2,
        catalog: &env.ec2,
        creator: &env.ec2,
        notifier: env.notifier.as_ref(),
        memo: &env.memo,
        commands: env.ssm(),
        instances: &env.ec2,
        ledger: &env.ledger,
        waits: Waits::PRODUCTION,
        // One bucket per execution environment, like the memo: consecutive
        // ticks draw on EC2's bucket one after the other (the ports are
        // built once, so the bucket lives as long as the process).
        bucket: Box::leak(Box::new(Bucket::new(CREATE_PACING))),
    })
    .await
}

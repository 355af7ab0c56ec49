//! The Lambda binary: wiring only. The function is `ExpireSnapshots`.

use ebs_lifecycle::lambda::function::serve;
use expire_snapshots::{ExpireSnapshots, Ports, DELETE_PACING};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve::<ExpireSnapshots>(|env| Ports {
        catalog: &env.ec2,
        inventory: &env.ec2,
        protections: &env.ec2,
        deleter: &env.ec2,
        notifier: env.notifier.as_ref(),
        ledger: &env.ledger,
        pacing: DELETE_PACING,
    })
    .await
}

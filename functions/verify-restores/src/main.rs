//! The Lambda binary: wiring only. The function is `VerifyRestores`.

use ebs_lifecycle::lambda::function::serve;
use verify_restores::{Ports, VerifyRestores};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve::<VerifyRestores>(|env| Ports {
        catalog: &env.ec2,
        volumes: &env.ec2,
        blocks: &env.blocks,
        ledger: &env.ledger,
        drills: &env.ledger,
        notifier: env.notifier.as_ref(),
    })
    .await
}

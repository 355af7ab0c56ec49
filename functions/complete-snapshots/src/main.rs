//! The Lambda binary: wiring only. The function is `CompleteSnapshots`.

use complete_snapshots::{CompleteSnapshots, Ports};
use ebs_lifecycle::lambda::function::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve::<CompleteSnapshots>(|env| Ports {
        catalog: &env.ec2,
        tagger: &env.ec2,
        notifier: env.notifier.as_ref(),
        ledger: &env.ledger,
    })
    .await
}

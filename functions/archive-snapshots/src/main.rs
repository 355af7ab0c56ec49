//! The Lambda binary: wiring only. The function is `ArchiveSnapshots`.

use archive_snapshots::{ArchiveSnapshots, Ports};
use ebs_lifecycle::lambda::function::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve::<ArchiveSnapshots>(|env| Ports {
        catalog: &env.ec2,
        inventory: &env.ec2,
        protections: &env.ec2,
        blocks: env.blocks(),
        archiver: &env.ec2,
        tagger: &env.ec2,
        notifier: env.notifier.as_ref(),
        ledger: &env.ledger,
    })
    .await
}

//! The Lambda binary: wiring only. The function is `VaultSnapshots`.

use ebs_lifecycle::lambda::function::serve;
use vault_snapshots::{Ports, VaultSnapshots, COPY_PACING, DELETE_PACING};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve::<VaultSnapshots>(|env| Ports {
        catalog: &env.ec2,
        protections: &env.ec2,
        copier: &env.ec2,
        deleter: &env.ec2,
        tagger: &env.ec2,
        locker: &env.ec2,
        notifier: env.notifier.as_ref(),
        ledger: &env.ledger,
        copy_pacing: COPY_PACING,
        delete_pacing: DELETE_PACING,
    })
    .await
}

//! The Lambda binary: wiring only. The function is `CheckEncryption`.

use check_encryption::{CheckEncryption, Ports};
use ebs_lifecycle::lambda::function::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve::<CheckEncryption>(|env| Ports {
        catalog: &env.ec2,
        inventory: &env.ec2,
        sharing: &env.ec2,
        settings: &env.ec2,
        copier: &env.ec2,
        keys: env.kms(),
        notifier: env.notifier.as_ref(),
        ledger: &env.ledger,
        memo: &env.memo,
    })
    .await
}

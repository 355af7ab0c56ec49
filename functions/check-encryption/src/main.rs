//! The Lambda binary: wiring only. The logic is in the library (`handle`).

use check_encryption::{handle, Ports, FUNCTION};
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::runtime::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(FUNCTION, |env, event| async move {
        let ports = Ports {
            catalog: &env.ec2,
            inventory: &env.ec2,
            sharing: &env.ec2,
            settings: &env.ec2,
            copier: &env.ec2,
            keys: &env.kms,
            notifier: env.notifier.as_ref(),
            ledger: &env.ledger,
            memo: &env.memo,
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

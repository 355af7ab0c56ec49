//! The Lambda binary: wiring only. The logic is in the library (`handle`).

use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::runtime::serve;
use vault_snapshots::{handle, Ports, COPY_PACING, DELETE_PACING, FUNCTION};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(FUNCTION, |env, event| async move {
        let ports = Ports {
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

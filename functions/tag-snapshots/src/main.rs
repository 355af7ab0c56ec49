//! The Lambda binary: wiring only. The logic is in the library (`handle`).

use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::runtime::serve;
use tag_snapshots::{handle, Ports, CREATE_TAGS_PACING, FUNCTION};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(FUNCTION, |env, event| async move {
        let ports = Ports {
            catalog: &env.ec2,
            inventory: &env.ec2,
            tagger: &env.ec2,
            notifier: env.notifier.as_ref(),
            ledger: &env.ledger,
            pacing: CREATE_TAGS_PACING,
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

//! The Lambda binary: wiring only. The logic is in the library (`handle`).

use std::collections::BTreeMap;

use copy_snapshots::{handle, Destination, Ports, COPY_PACING, DELETE_PACING, FUNCTION};
use ebs_lifecycle::lambda::deadline::Deadline;
use ebs_lifecycle::lambda::runtime::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(FUNCTION, |env, event| async move {
        let destinations: BTreeMap<String, Destination> = env
            .destinations
            .iter()
            .map(|(region, ec2)| {
                (
                    region.clone(),
                    Destination {
                        catalog: ec2,
                        protections: ec2,
                        copier: ec2,
                        deleter: ec2,
                        tagger: ec2,
                    },
                )
            })
            .collect();
        let ports = Ports {
            catalog: &env.ec2,
            sharing: &env.ec2,
            keys: &env.kms,
            destinations: &destinations,
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

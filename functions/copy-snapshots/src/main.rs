//! The Lambda binary: wiring only. The function is `CopySnapshots`.

use std::collections::BTreeMap;

use copy_snapshots::{CopySnapshots, Destination, Ports, COPY_PACING, DELETE_PACING};
use ebs_lifecycle::lambda::function::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve::<CopySnapshots>(|env| {
        // Built once per execution environment, as the ports are.
        let destinations: &'static BTreeMap<String, Destination<'static>> = Box::leak(Box::new(
            env.destinations()
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
                .collect(),
        ));
        Ports {
            catalog: &env.ec2,
            sharing: &env.ec2,
            keys: env.kms(),
            destinations,
            notifier: env.notifier.as_ref(),
            ledger: &env.ledger,
            copy_pacing: COPY_PACING,
            delete_pacing: DELETE_PACING,
        }
    })
    .await
}

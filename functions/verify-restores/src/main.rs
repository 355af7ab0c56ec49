//! The Lambda binary: wiring only. The function is `VerifyRestores`.

use std::collections::BTreeMap;

use ebs_lifecycle::lambda::function::serve;
use verify_restores::{Place, Ports, VerifyRestores};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve::<VerifyRestores>(|env| Ports {
        catalog: &env.ec2,
        volumes: &env.ec2,
        blocks: env.blocks(),
        // Built once per execution environment, as the ports are.
        copies: Box::leak(Box::new(
            env.destinations()
                .iter()
                .filter_map(|(region, ec2)| {
                    let blocks = env.destination_blocks().get(region)?;
                    Some((
                        region.clone(),
                        Place {
                            catalog: ec2,
                            volumes: ec2,
                            blocks,
                        },
                    ))
                })
                .collect::<BTreeMap<_, _>>(),
        )),
        ledger: &env.ledger,
        drills: &env.ledger,
        notifier: env.notifier.as_ref(),
    })
    .await
}

//! The Lambda binary: wiring only. The function is `ReportSnapshots`.

use ebs_lifecycle::lambda::function::serve;
use report_snapshots::{Ports, ReportSnapshots};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve::<ReportSnapshots>(|env| Ports {
        catalog: &env.ec2,
        inventory: &env.ec2,
        protections: &env.ec2,
        blocks: env.blocks(),
        tagger: &env.ec2,
        notifier: env.notifier.as_ref(),
        ledger: &env.ledger,
        drills: &env.ledger,
        reports: env.reports().map(|r| r as _),
    })
    .await
}

//! The Lambda binary: wiring only. The logic is in the library (`handle`).

use ebs_lifecycle::lambda::runtime::serve;
use report_snapshots::{handle, Ports, FUNCTION};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(FUNCTION, |env, event| async move {
        let ports = Ports {
            catalog: &env.ec2,
            inventory: &env.ec2,
            notifier: env.notifier.as_ref(),
            ledger: &env.ledger,
            reports: env.reports.as_ref().map(|r| r as _),
        };
        handle(ports, &env.config, &event.payload, chrono::Utc::now()).await
    })
    .await
}

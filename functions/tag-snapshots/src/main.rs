//! The Lambda binary: wiring only. The function is `TagSnapshots`.

use ebs_lifecycle::lambda::function::serve;
use tag_snapshots::{Ports, TagSnapshots, CREATE_TAGS_PACING};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve::<TagSnapshots>(|env| Ports {
        catalog: &env.ec2,
        inventory: &env.ec2,
        tagger: &env.ec2,
        notifier: env.notifier.as_ref(),
        ledger: &env.ledger,
        pacing: CREATE_TAGS_PACING,
    })
    .await
}

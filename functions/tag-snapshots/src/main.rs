//! tag-snapshots: Copy volume and instance tags onto snapshots and label why each is retained.
//!
//! Not implemented in this release. The binary exists so the workspace, the
//! template and packaging are complete; every invocation fails with error type
//! `NotImplemented` and does no AWS work.

use ebs_lifecycle::runtime::{not_implemented, serve};

const FUNCTION: &str = "tag-snapshots";

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(FUNCTION, |_env, _event| async move {
        Err::<serde_json::Value, _>(not_implemented(FUNCTION))
    })
    .await
}

//! `ebs-lifecycle`: wiring only. The commands are in the library
//! (`ebs_lifecycle_cli`), over the same core and edge crates as the
//! functions.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // Progress and warnings on stderr; the result alone on stdout.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EBS_LIFECYCLE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = ebs_lifecycle_cli::args::Cli::parse();
    // `validate` reads a file and nothing of AWS: no credentials, no
    // region (nor a look at the instance metadata for one).
    let sdk = match cli.command {
        ebs_lifecycle_cli::args::Command::Validate { .. } => {
            aws_config::SdkConfig::builder().build()
        }
        _ => ebs_lifecycle_cli::aws_config(cli.region.clone()).await,
    };
    match ebs_lifecycle_cli::run(&cli, &sdk, &mut |line| eprintln!("{line}")).await {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ebs-lifecycle: {e}");
            ExitCode::from(1)
        }
    }
}

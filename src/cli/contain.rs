//! `mcp-warden contain SERVER`: the three containment steps, in order, each reported — disable
//! the upstream, revoke its audience's credentials, turn on emergency write-approval mode. A
//! failed step does not stop the next one; the exit code is 1 when any failed.

use std::process::ExitCode;

use super::admin::{AdminOpts, block_on, open};

/// Arguments of `mcp-warden contain`.
#[derive(Debug, clap::Args)]
pub struct ContainArgs {
    /// The upstream's registry name.
    pub server: String,
    /// Why (recorded with the disabled upstream).
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub opts: AdminOpts,
}

/// Run `mcp-warden contain`.
pub fn main(args: ContainArgs) -> ExitCode {
    block_on("contain", async move {
        let (admin, who) = open(&args.opts).await?;
        let server = args.server.as_str();
        let mut failed = 0;
        for step in 1..=3 {
            let (what, outcome) = match step {
                1 => (
                    "registry_disable",
                    admin
                        .registry_disable(&who, server, args.reason.clone())
                        .await,
                ),
                2 => ("tokens_revoke", admin.tokens_revoke(&who, server).await),
                _ => (
                    "emergency_write_approval",
                    admin.emergency_write_approval(&who, true).await,
                ),
            };
            match outcome {
                Ok(done) => println!("{step}. {what}: ok: {}", done.text),
                Err(e) => {
                    failed += 1;
                    println!("{step}. {what}: FAILED: {e}");
                }
            }
        }
        admin.store().close().await;
        if failed == 0 {
            println!("{server} is contained");
            Ok(ExitCode::SUCCESS)
        } else {
            println!("containment of {server} is incomplete: {failed} of 3 steps failed");
            Ok(ExitCode::FAILURE)
        }
    })
}

//! `mcp-warden admin --stdio`: the admin MCP server on stdin/stdout, acting as the CLI principal.
//! Also what every admin subcommand shares: the config, the acting principal, the store.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use rmcp::ServiceExt as _;

use crate::admin::Admin;
use crate::admin::mcp::AdminSession;
use crate::config::Config;
use crate::pipeline::authenticate::{Authenticated, Principals};
use crate::store::Store;

/// Options of every admin subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminOpts {
    /// Configuration file (default: ./warden.toml if present).
    #[arg(long, env = "WARDEN_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Act as this configured principal instead of `cli_principal`.
    #[arg(long = "as", value_name = "ID", global = true)]
    pub as_principal: Option<String>,
}

/// Arguments of `mcp-warden admin`.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Serve the admin MCP server on stdin/stdout (the only mode; over HTTP it is `/admin/mcp`
    /// of `mcp-warden serve`).
    #[arg(long, required = true)]
    pub stdio: bool,
    #[command(flatten)]
    pub opts: AdminOpts,
}

/// The admin actions on the configured store, and who acts.
pub async fn open(opts: &AdminOpts) -> anyhow::Result<(Arc<Admin>, Authenticated)> {
    let config = Config::load(opts.config.as_deref())?;
    let id = opts
        .as_principal
        .as_deref()
        .unwrap_or(&config.cli_principal);
    let who = Principals::from_config(&config)
        .get(id)
        .with_context(|| format!("acting as {id:?}: no such principal in the configuration"))?;
    let store = Store::connect(&config.store)
        .await
        .with_context(|| format!("opening the store {}", config.store))?;
    Ok((Arc::new(Admin::new(config, store, None)), who))
}

/// Run a one-shot subcommand (pin, the admin ones) on a one-thread runtime: its own result is
/// the exit code; an error (config, store, anything that stopped it) is printed and exits 2.
pub fn block_on<F>(name: &str, work: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<ExitCode>>,
{
    super::serve::init_tracing();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("mcp-warden {name}: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(work);
    // Do not wait for a blocked stdin reader at exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("mcp-warden {name}: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Run `mcp-warden admin --stdio` until the client closes stdin.
pub fn main(args: AdminArgs) -> ExitCode {
    block_on("admin", async move {
        let (admin, who) = open(&args.opts).await?;
        let store = admin.store().clone();
        let running = AdminSession::new(admin, who)
            .serve(rmcp::transport::stdio())
            .await
            .context("the client's handshake on stdio failed")?;
        let reason = running
            .waiting()
            .await
            .context("the admin session failed")?;
        tracing::debug!(?reason, "admin session ended");
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

//! `mcp-warden serve`: run the gateway on stdio or Streamable HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::downstream;
use crate::gateway;

/// Arguments of `mcp-warden serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Serve one agent on stdin/stdout.
    #[arg(long, conflicts_with = "http")]
    pub stdio: bool,
    /// Serve Streamable HTTP at this address (default: `listen` from the config).
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Configuration file (default: ./warden.toml if present).
    #[arg(long, env = "WARDEN_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Run until the agent leaves (stdio), or SIGINT/SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    // Bound before the gateway starts, so the gateway knows its own URL (port 0 included):
    // it is the issuer and audience of the tokens it mints and accepts.
    let listener = if args.stdio {
        None
    } else {
        let addr = args.http.unwrap_or(config.listen);
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        config.listen = l.local_addr().context("reading the bound address")?;
        Some(l)
    };
    let running = gateway::start(config).await?;
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(cancel_on_signal(shutdown.clone()));
    let served = match listener {
        None => downstream::stdio::serve(running.gateway.clone(), shutdown.clone()).await,
        Some(l) => downstream::http::serve(running.gateway.clone(), l, shutdown.clone()).await,
    };
    signals.abort();
    tracing::info!("shutting down");
    running.shutdown().await;
    served
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    shutdown.cancel();
}

/// Set up logging to stderr (stdout may be the MCP channel).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Build the runtime and run `serve`; errors are printed in full.
pub fn main(args: ServeArgs) -> std::process::ExitCode {
    init_tracing();
    // One thread: the gateway's work per call is small and mostly handing messages on; on
    // small machines a single scheduler saved ~20% CPU per call against the multi-threaded
    // one in the round-trip benchmark (audit writes run on sqlx's own worker thread).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("mcp-warden: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args));
    // Do not wait for stray blocking tasks (stdin reader) at exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mcp-warden: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

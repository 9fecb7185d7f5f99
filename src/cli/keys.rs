//! `mcp-warden keys`: the gateway's signing keys. `show` prints the published JWKS (what
//! upstreams verify minted tokens with); `rotate` makes a new signing key. A running gateway
//! picks a rotation up at its next control poll; the previous key stays published so tokens it
//! signed verify until they expire.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::auth::keys;
use crate::config::Config;

/// Arguments of `mcp-warden keys`.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    action: Action,
    /// Configuration file (default: ./warden.toml if present).
    #[arg(long, env = "WARDEN_CONFIG", global = true)]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Print the published JWKS (creating the first key if there is none).
    Show,
    /// Make a new signing key current; keep the previous one published.
    Rotate,
}

/// Run `mcp-warden keys`.
pub fn main(args: KeysArgs) -> ExitCode {
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(error) => {
            eprintln!("mcp-warden keys: {error}");
            return ExitCode::from(2);
        }
    };
    let result = match args.action {
        Action::Show => keys::load_or_create(&config.state_dir).map(|ring| ring.jwks().to_string()),
        Action::Rotate => keys::rotate(&config.state_dir).map(|kid| {
            format!(
                "new signing key {kid} in {}; the previous key stays published",
                keys::dir(&config.state_dir).display()
            )
        }),
    };
    match result {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("mcp-warden keys: {error}");
            ExitCode::FAILURE
        }
    }
}

//! Configuration: defaults → `warden.toml` → `WARDEN_*` environment, resolved once at start
//! into a typed [`Config`]. A bad value stops the start with a message naming the source, the
//! key and what was expected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key is missing, unknown or has the wrong type; figment names the source and the key.
    #[error("invalid configuration: {0}")]
    Figment(Box<figment::Error>),
    /// A value parsed but makes no sense.
    #[error("invalid configuration: key `{key}`: {problem}")]
    Value { key: &'static str, problem: String },
    /// `--config` names a file that does not exist.
    #[error("configuration file {0} does not exist")]
    Missing(PathBuf),
}

impl From<figment::Error> for ConfigError {
    fn from(error: figment::Error) -> Self {
        Self::Figment(Box::new(error))
    }
}

/// The raw shape of `warden.toml`, as users write it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    registry_dir: PathBuf,
    policies_dir: PathBuf,
    store: String,
    listen: String,
    stdio_principal: String,
    upstream: RawUpstreamConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamConfig {
    call_timeout_sec: f64,
    connect_timeout_sec: f64,
    restart_backoff_ms: u64,
    restart_backoff_max_ms: u64,
    startup_wait_sec: f64,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            registry_dir: PathBuf::from("registry"),
            policies_dir: PathBuf::from("policies"),
            store: "sqlite://warden.db".to_owned(),
            listen: "127.0.0.1:8080".to_owned(),
            stdio_principal: "local".to_owned(),
            upstream: RawUpstreamConfig {
                call_timeout_sec: 60.0,
                connect_timeout_sec: 15.0,
                restart_backoff_ms: 200,
                restart_backoff_max_ms: 30_000,
                startup_wait_sec: 20.0,
            },
        }
    }
}

/// The resolved configuration. Paths are absolute or relative to the process's working
/// directory (relative paths in a config file are taken relative to that file's folder).
#[derive(Debug, Clone)]
pub struct Config {
    /// Folder of `<name>.toml` upstream entries.
    pub registry_dir: PathBuf,
    /// Folder of `*.yaml` policy files.
    pub policies_dir: PathBuf,
    /// Where the audit store lives.
    pub store: StoreUrl,
    /// The default HTTP listen address.
    pub listen: SocketAddr,
    /// The principal id of a stdio agent.
    pub stdio_principal: String,
    /// Upstream supervision and dispatch settings.
    pub upstream: UpstreamConfig,
}

/// Upstream supervision and dispatch settings.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Longest a `tools/call` (and any other forwarded request) may take upstream.
    pub call_timeout: Duration,
    /// Longest a connection attempt (spawn + handshake + manifest) may take.
    pub connect_timeout: Duration,
    /// First restart delay after a crash; doubles up to `restart_backoff_max`.
    pub restart_backoff: Duration,
    /// Longest restart delay.
    pub restart_backoff_max: Duration,
    /// How long `serve` waits for the first connection of every upstream before answering.
    pub startup_wait: Duration,
}

/// A store location: only embedded SQLite so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite database file.
    Sqlite(PathBuf),
}

impl Config {
    /// Load defaults, then the config file (if given, or `warden.toml` in the working directory
    /// if present), then `WARDEN_*` environment variables.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (file, base) = match path {
            Some(p) if !p.exists() => return Err(ConfigError::Missing(p.to_path_buf())),
            Some(p) => (Some(p.to_path_buf()), p.parent().map(Path::to_path_buf)),
            None if Path::new("warden.toml").exists() => (Some(PathBuf::from("warden.toml")), None),
            None => (None, None),
        };
        let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
        if let Some(file) = &file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // WARDEN_CONFIG (the file) and WARDEN_LOG (the log filter) are not config keys.
        let figment = figment.merge(
            Env::prefixed("WARDEN_")
                .ignore(&["CONFIG", "LOG"])
                .split("__"),
        );
        Self::resolve(figment.extract()?, base.as_deref())
    }

    #[cfg(test)]
    fn from_figment(figment: Figment, base: Option<&Path>) -> Result<Self, ConfigError> {
        Self::resolve(figment.extract()?, base)
    }

    fn resolve(raw: RawConfig, base: Option<&Path>) -> Result<Self, ConfigError> {
        let rel = |p: PathBuf| match base {
            Some(b) if p.is_relative() && !b.as_os_str().is_empty() => b.join(p),
            _ => p,
        };
        let listen = raw.listen.parse().map_err(|e| ConfigError::Value {
            key: "listen",
            problem: format!(
                "expected an address such as 127.0.0.1:8080, got {:?}: {e}",
                raw.listen
            ),
        })?;
        let store = match raw.store.strip_prefix("sqlite://") {
            Some(path) if !path.is_empty() => StoreUrl::Sqlite(rel(PathBuf::from(path))),
            _ => {
                return Err(ConfigError::Value {
                    key: "store",
                    problem: format!("expected sqlite://PATH, got {:?}", raw.store),
                });
            }
        };
        let secs = |key: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 && v < 86_400.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(ConfigError::Value {
                    key,
                    problem: format!("expected seconds in (0, 86400), got {v}"),
                })
            }
        };
        if raw.upstream.restart_backoff_ms == 0
            || raw.upstream.restart_backoff_max_ms < raw.upstream.restart_backoff_ms
        {
            return Err(ConfigError::Value {
                key: "upstream.restart_backoff_ms",
                problem: "expected 0 < restart_backoff_ms <= restart_backoff_max_ms".to_owned(),
            });
        }
        if raw.stdio_principal.trim().is_empty() {
            return Err(ConfigError::Value {
                key: "stdio_principal",
                problem: "must not be empty".to_owned(),
            });
        }
        Ok(Self {
            registry_dir: rel(raw.registry_dir),
            policies_dir: rel(raw.policies_dir),
            store,
            listen,
            stdio_principal: raw.stdio_principal,
            upstream: UpstreamConfig {
                call_timeout: secs("upstream.call_timeout_sec", raw.upstream.call_timeout_sec)?,
                connect_timeout: secs(
                    "upstream.connect_timeout_sec",
                    raw.upstream.connect_timeout_sec,
                )?,
                restart_backoff: Duration::from_millis(raw.upstream.restart_backoff_ms),
                restart_backoff_max: Duration::from_millis(raw.upstream.restart_backoff_max_ms),
                startup_wait: secs("upstream.startup_wait_sec", raw.upstream.startup_wait_sec)?,
            },
        })
    }
}

#[cfg(test)]
mod tests;

//! Configuration: defaults → `warden.toml` → `WARDEN_*` environment, resolved once at start
//! into a typed [`Config`]. A bad value stops the start with a message naming the source, the
//! key and what was expected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

mod assess;
mod audit;
mod auth;

pub use assess::AssessConfig;
pub use audit::AuditConfig;
pub use auth::{AuthConfig, IssuerConfig, JwksSource, MintingConfig};
mod gates;

#[cfg(test)]
pub use gates::default_gate;
pub use gates::{GateConfig, GatesConfig, PageFormat, PagingConfig};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key is missing, unknown or has the wrong type; figment names the source and the key.
    #[error("invalid configuration: {0}")]
    Figment(Box<figment::Error>),
    /// A value parsed but makes no sense.
    #[error("invalid configuration{}: key `{key}`: {problem}", in_file(.file.as_deref()))]
    Value {
        key: &'static str,
        problem: String,
        file: Option<PathBuf>,
    },
    /// `--config` names a file that does not exist.
    #[error("configuration file {0} does not exist")]
    Missing(PathBuf),
}

fn in_file(file: Option<&Path>) -> String {
    file.map(|f| format!(" in {}", f.display()))
        .unwrap_or_default()
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
    cli_principal: String,
    principals: Vec<RawPrincipal>,
    upstream: RawUpstreamConfig,
    pins: RawPinsConfig,
    approvals: RawApprovals,
    policy: RawPolicy,
    control: RawControl,
    state_dir: PathBuf,
    auth: auth::RawAuth,
    minting: auth::RawMinting,
    chain: RawChain,
    audit: audit::RawAudit,
    assess: assess::RawAssess,
    gates: gates::RawGates,
    paging: gates::RawPaging,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChain {
    isolate_domains: bool,
    max_depth: u32,
    max_calls: u32,
    max_fanout: u32,
    fanout_window_sec: f64,
    handoff_ttl_sec: f64,
    idle_sec: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrincipal {
    id: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    api_key_env: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovals {
    ttl_sec: f64,
    wait_sec: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    reload_sec: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    poll_sec: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPinsConfig {
    recheck_sec: f64,
    deploy_windows: Vec<String>,
    change_tickets: Vec<RawTicket>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTicket {
    upstream: String,
    ticket: String,
    until: String,
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
            cli_principal: "operator".to_owned(),
            principals: Vec::new(),
            upstream: RawUpstreamConfig {
                call_timeout_sec: 60.0,
                connect_timeout_sec: 15.0,
                restart_backoff_ms: 200,
                restart_backoff_max_ms: 30_000,
                startup_wait_sec: 20.0,
            },
            pins: RawPinsConfig {
                recheck_sec: 60.0,
                deploy_windows: Vec::new(),
                change_tickets: Vec::new(),
            },
            approvals: RawApprovals {
                ttl_sec: 3600.0,
                wait_sec: 0.0,
            },
            policy: RawPolicy { reload_sec: 1.0 },
            control: RawControl { poll_sec: 1.0 },
            state_dir: PathBuf::from(".state"),
            auth: auth::RawAuth {
                resource: None,
                allow_anonymous_loopback: true,
                required_scopes: Vec::new(),
                leeway_sec: 5,
                cache_max_sec: 300.0,
                issuers: Vec::new(),
            },
            chain: RawChain {
                isolate_domains: true,
                max_depth: 4,
                max_calls: 0,
                max_fanout: 600,
                fanout_window_sec: 10.0,
                handoff_ttl_sec: 300.0,
                idle_sec: 3600.0,
            },
            minting: auth::RawMinting {
                issuer: None,
                token_ttl_sec: 300.0,
                refresh_before_sec: 30.0,
                env_token_ttl_sec: 43_200.0,
                service_subject: "mcp-warden".to_owned(),
            },
            audit: audit::RawAudit::default(),
            assess: assess::RawAssess::default(),
            gates: gates::RawGates::default(),
            paging: gates::RawPaging::default(),
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
    /// The principal id of a stdio agent (and of an anonymous agent on a loopback listener).
    pub stdio_principal: String,
    /// The principal id the CLI and `mcp-warden admin --stdio` act as.
    pub cli_principal: String,
    /// Every known principal (the defaults `local` and `operator` when none are configured).
    pub principals: Vec<PrincipalConfig>,
    /// Write approvals.
    pub approvals: ApprovalsConfig,
    /// How often `policies_dir` is checked for changes.
    pub policy_reload: Duration,
    /// How often the shared control state (emergency mode, disabled upstreams, revocations)
    /// is read from the store.
    pub control_poll: Duration,
    /// Upstream supervision and dispatch settings.
    pub upstream: UpstreamConfig,
    /// Manifest pinning.
    pub pins: PinsConfig,
    /// Where the gateway keeps its own state (signing keys).
    pub state_dir: PathBuf,
    /// Inbound authentication of HTTP agents.
    pub auth: AuthConfig,
    /// Credentials the gateway mints for upstreams.
    pub minting: MintingConfig,
    /// Chain isolation: budgets and handoffs.
    pub chain: ChainConfig,
    /// `[audit]`: what the audit store keeps (arguments: off by default).
    pub audit: AuditConfig,
    /// `[assess]`: the threshold of `mcp-warden assess`.
    pub assess: AssessConfig,
    /// The detection gates (`[gates]`).
    pub gates: GatesConfig,
    /// Where gate pages go (`[paging]`).
    pub paging: PagingConfig,
    /// The config file it was read from, if any (for messages).
    pub source: Option<PathBuf>,
}

/// Chain isolation settings: the global budgets (policy rules may tighten them) and handoffs.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// A chain stays in the domain of its first call unless a handoff moves it.
    pub isolate_domains: bool,
    /// Budgets every chain gets.
    pub budgets: crate::decide::chain::Budgets,
    /// Life of a handoff object.
    pub handoff_ttl: Duration,
    /// A chain idle this long is forgotten.
    pub idle: Duration,
}

/// A principal as configured.
#[derive(Clone)]
pub struct PrincipalConfig {
    /// Stable id, written to the audit store.
    pub id: String,
    /// Labels such as `read_only`, `approver`, `admin`.
    pub labels: Vec<String>,
    /// What it may do, per upstream and action class.
    pub scopes: crate::decide::scopes::Scopes,
    /// sha256 of its HTTP API key (read from `api_key_env` at start), if it has one.
    pub api_key_sha256: Option<[u8; 32]>,
}

impl std::fmt::Debug for PrincipalConfig {
    // The key's digest is not printed: it would let a reader test guesses offline.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrincipalConfig")
            .field("id", &self.id)
            .field("labels", &self.labels)
            .field("scopes", &self.scopes.render())
            .field("api_key", &self.api_key_sha256.map(|_| "<set>"))
            .finish()
    }
}

/// Write approval settings.
#[derive(Debug, Clone)]
pub struct ApprovalsConfig {
    /// How long an approval lives from its creation, pending or approved.
    pub ttl: Duration,
    /// How long a call that needs approval waits for the decision (sending progress) before
    /// answering "pending"; zero answers at once.
    pub wait: Duration,
}

/// Manifest pinning settings.
#[derive(Debug, Clone)]
pub struct PinsConfig {
    /// How often each live manifest (and its lock file) is checked again.
    pub recheck: Duration,
    /// Deploy windows: drift inside one is expected.
    pub deploy_windows: Vec<crate::decide::pins::Window>,
    /// Change tickets that cover an upstream's drift until a time.
    pub change_tickets: Vec<crate::decide::pins::Ticket>,
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

/// A store location: embedded SQLite (the default) or PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (several replicas share it).
    Postgres(PgUrl),
}

/// A `postgres://` URL; it may hold a password, so it prints without one.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl(String);

impl PgUrl {
    /// The URL, password included, for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for PgUrl {
    /// The URL with any password replaced by `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match reqwest::Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                // Setting a password on a URL that already has one cannot fail.
                let _ = url.set_password(Some("***"));
                f.write_str(url.as_str())
            }
            Ok(url) => f.write_str(url.as_str()),
            Err(_) => f.write_str("postgres://(unparsable URL)"),
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => url.fmt(f),
        }
    }
}

impl From<PgUrl> for StoreUrl {
    fn from(url: PgUrl) -> Self {
        Self::Postgres(url)
    }
}

impl Config {
    /// The folder upstream working directories are relative to: the registry folder's parent
    /// (`.` when the registry folder is a bare relative name).
    pub fn base_dir(&self) -> PathBuf {
        match self.registry_dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

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
        let mut config =
            Self::resolve(figment.extract()?, base.as_deref()).map_err(|e| match e {
                ConfigError::Value { key, problem, .. } => ConfigError::Value {
                    key,
                    problem,
                    file: file.clone(),
                },
                other => other,
            })?;
        config.source = file;
        Ok(config)
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
            file: None,
            key: "listen",
            problem: format!(
                "expected an address such as 127.0.0.1:8080, got {:?}: {e}",
                raw.listen
            ),
        })?;
        let store = if let Some(path) = raw.store.strip_prefix("sqlite://")
            && !path.is_empty()
        {
            StoreUrl::Sqlite(rel(PathBuf::from(path)))
        } else if raw.store.starts_with("postgres://") || raw.store.starts_with("postgresql://") {
            let url = PgUrl(raw.store.clone());
            if let Err(e) = raw.store.parse::<sqlx::postgres::PgConnectOptions>() {
                return Err(ConfigError::Value {
                    file: None,
                    key: "store",
                    problem: format!("invalid PostgreSQL URL {url}: {e}"),
                });
            }
            url.into()
        } else {
            return Err(ConfigError::Value {
                file: None,
                key: "store",
                problem: format!(
                    "expected sqlite://PATH or postgres://USER@HOST/DB, got {:?}",
                    PgUrl(raw.store.clone()).to_string()
                ),
            });
        };
        let secs = |key: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 && v < 86_400.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(ConfigError::Value {
                    file: None,
                    key,
                    problem: format!("expected seconds in (0, 86400), got {v}"),
                })
            }
        };
        if raw.upstream.restart_backoff_ms == 0
            || raw.upstream.restart_backoff_max_ms < raw.upstream.restart_backoff_ms
        {
            return Err(ConfigError::Value {
                file: None,
                key: "upstream.restart_backoff_ms",
                problem: "expected 0 < restart_backoff_ms <= restart_backoff_max_ms".to_owned(),
            });
        }
        let principals = resolve_principals(&raw)?;
        let wait = if raw.approvals.wait_sec == 0.0 {
            Duration::ZERO
        } else {
            secs("approvals.wait_sec", raw.approvals.wait_sec)?
        };
        let mut deploy_windows = Vec::new();
        for w in &raw.pins.deploy_windows {
            deploy_windows.push(crate::decide::pins::Window::parse(w).map_err(|problem| {
                ConfigError::Value {
                    file: None,
                    key: "pins.deploy_windows",
                    problem,
                }
            })?);
        }
        let mut change_tickets = Vec::new();
        for t in &raw.pins.change_tickets {
            let until = time::OffsetDateTime::parse(
                &t.until,
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|e| ConfigError::Value {
                file: None,
                key: "pins.change_tickets",
                problem: format!(
                    "ticket {:?}: `until` must be RFC 3339 (2026-12-01T00:00:00Z): {e}",
                    t.ticket
                ),
            })?;
            change_tickets.push(crate::decide::pins::Ticket {
                upstream: t.upstream.clone(),
                id: t.ticket.clone(),
                until,
            });
        }
        let auth = auth::resolve_auth(&raw.auth, &rel, &secs)?;
        if raw.minting.service_subject.trim().is_empty() {
            return Err(ConfigError::Value {
                file: None,
                key: "minting.service_subject",
                problem: "must not be empty".to_owned(),
            });
        }
        let token_ttl = secs("minting.token_ttl_sec", raw.minting.token_ttl_sec)?;
        let refresh_before = secs("minting.refresh_before_sec", raw.minting.refresh_before_sec)?;
        if refresh_before >= token_ttl {
            return Err(ConfigError::Value {
                file: None,
                key: "minting.refresh_before_sec",
                problem: "must be shorter than minting.token_ttl_sec".to_owned(),
            });
        }
        let minting = MintingConfig {
            issuer: raw.minting.issuer.clone().filter(|i| !i.is_empty()),
            token_ttl,
            refresh_before,
            env_token_ttl: secs("minting.env_token_ttl_sec", raw.minting.env_token_ttl_sec)?,
            service_subject: raw.minting.service_subject.clone(),
        };
        let window = secs("chain.fanout_window_sec", raw.chain.fanout_window_sec)?;
        let chain = ChainConfig {
            isolate_domains: raw.chain.isolate_domains,
            budgets: crate::decide::chain::Budgets {
                max_depth: Some(raw.chain.max_depth),
                // 0: no limit (a long-lived session, or a sessionless agent's chain per
                // principal, would otherwise run out of calls).
                max_calls: (raw.chain.max_calls > 0).then_some(raw.chain.max_calls),
                max_fanout: (raw.chain.max_fanout > 0).then_some(raw.chain.max_fanout),
                window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            },
            handoff_ttl: secs("chain.handoff_ttl_sec", raw.chain.handoff_ttl_sec)?,
            idle: secs("chain.idle_sec", raw.chain.idle_sec)?,
        };
        Ok(Self {
            source: None,
            audit: AuditConfig::from(&raw.audit),
            assess: AssessConfig::try_from(&raw.assess)?,
            chain,
            gates: gates::resolve_gates(&raw.gates)?,
            paging: gates::resolve_paging(&raw.paging)?,
            state_dir: rel(raw.state_dir.clone()),
            auth,
            minting,
            pins: PinsConfig {
                recheck: secs("pins.recheck_sec", raw.pins.recheck_sec)?,
                deploy_windows,
                change_tickets,
            },
            registry_dir: rel(raw.registry_dir),
            policies_dir: rel(raw.policies_dir),
            store,
            listen,
            stdio_principal: raw.stdio_principal,
            cli_principal: raw.cli_principal,
            principals,
            approvals: ApprovalsConfig {
                ttl: secs("approvals.ttl_sec", raw.approvals.ttl_sec)?,
                wait,
            },
            policy_reload: secs("policy.reload_sec", raw.policy.reload_sec)?,
            control_poll: secs("control.poll_sec", raw.control.poll_sec)?,
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

/// The configured principals, or the defaults; every id unique, the stdio and CLI principals
/// present, every API key read from its environment variable.
fn resolve_principals(raw: &RawConfig) -> Result<Vec<PrincipalConfig>, ConfigError> {
    let bad = |key: &'static str, problem: String| ConfigError::Value {
        file: None,
        key,
        problem,
    };
    for (key, id) in [
        ("stdio_principal", &raw.stdio_principal),
        ("cli_principal", &raw.cli_principal),
    ] {
        if id.trim().is_empty() {
            return Err(bad(key, "must not be empty".to_owned()));
        }
    }
    let configured = if raw.principals.is_empty() {
        // Out of the box: the local operator's agent may reach every upstream (the policy
        // decides what it may do), and the CLI acts as a separate approver and admin.
        vec![
            RawPrincipal {
                id: raw.stdio_principal.clone(),
                labels: Vec::new(),
                scopes: vec!["*:*".to_owned()],
                api_key_env: None,
            },
            RawPrincipal {
                id: raw.cli_principal.clone(),
                labels: vec!["approver".to_owned(), "admin".to_owned()],
                scopes: Vec::new(),
                api_key_env: None,
            },
        ]
    } else {
        raw.principals.clone()
    };
    let mut out: Vec<PrincipalConfig> = Vec::with_capacity(configured.len());
    for p in configured {
        if p.id.trim().is_empty() {
            return Err(bad("principals.id", "must not be empty".to_owned()));
        }
        if out.iter().any(|o| o.id == p.id) {
            return Err(bad("principals.id", format!("{:?} is listed twice", p.id)));
        }
        let scopes = crate::decide::scopes::Scopes::parse(&p.scopes)
            .map_err(|e| bad("principals.scopes", format!("principal {:?}: {e}", p.id)))?;
        let api_key_sha256 = match &p.api_key_env {
            None => None,
            Some(var) => {
                let key = std::env::var(var).map_err(|_| {
                    bad(
                        "principals.api_key_env",
                        format!(
                            "principal {:?}: environment variable {var} is not set (or not UTF-8)",
                            p.id
                        ),
                    )
                })?;
                if key.len() < 16 {
                    return Err(bad(
                        "principals.api_key_env",
                        format!(
                            "principal {:?}: the key in {var} is shorter than 16 characters",
                            p.id
                        ),
                    ));
                }
                Some(sha2::Sha256::digest(key.as_bytes()).into())
            }
        };
        if let Some(other) = out
            .iter()
            .find(|o| api_key_sha256.is_some() && o.api_key_sha256 == api_key_sha256)
        {
            return Err(bad(
                "principals.api_key_env",
                format!("principals {:?} and {:?} share one API key", other.id, p.id),
            ));
        }
        out.push(PrincipalConfig {
            id: p.id,
            labels: p.labels,
            scopes,
            api_key_sha256,
        });
    }
    for (key, id) in [
        ("stdio_principal", &raw.stdio_principal),
        ("cli_principal", &raw.cli_principal),
    ] {
        if !out.iter().any(|p| &p.id == id) {
            return Err(bad(
                key,
                format!("{id:?} is not one of the configured [[principals]]"),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

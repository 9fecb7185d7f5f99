//! Gather a [`Deployment`]: everything `assess` judges, read once (the only IO of `assess`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{ChainConfig, Config, StoreUrl};
use crate::decide::policy::PolicySet;
use crate::decide::scopes::Scopes;
use crate::gates::GateKind;
use crate::gateway::policies;
use crate::store::Store;
use crate::store::reads::Evidence;
use crate::upstream::pinning;
use crate::upstream::registry::{self, ActionClass, Transport, UpstreamSpec};

/// Whether an upstream's lock is there and covers what the registry declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// No `registry/<name>.lock.json`.
    Missing,
    /// A lock that cannot be used (unreadable, for another upstream, edited …).
    Invalid(String),
    /// Tools the registry declares that the lock does not pin.
    Stale(Vec<String>),
    /// Pinned, and every declared tool is in the lock.
    Pinned,
}

/// One enabled upstream as `assess` sees it.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Its registry entry.
    pub spec: UpstreamSpec,
    /// Its lock.
    pub lock: LockState,
    /// Its tools (declared and pinned) with their class, and whether the registry declares it.
    pub tools: Vec<(String, ActionClass, bool)>,
    /// Why its command is not pinned to a version (`npx pkg` without `@version` …), if so.
    pub unpinned: Option<String>,
}

/// A principal as the policy probes see it.
#[derive(Debug, Clone)]
pub struct Who {
    /// Its id.
    pub id: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// Its scopes (`None`: not a configured principal, scopes unknown).
    pub scopes: Option<Scopes>,
}

/// Which detection gates are on. See [`gate_coverage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateCoverage {
    /// Unapproved write calls.
    pub unapproved_writes: bool,
    /// Registry drift.
    pub registry_drift: bool,
    /// Manifest drift outside the deploy window.
    pub manifest_drift: bool,
    /// Scope mismatch attempts.
    pub scope_mismatch: bool,
    /// QUARANTINE ratio.
    pub quarantine_ratio: bool,
}

/// Everything `assess` judges.
#[derive(Debug)]
pub struct Deployment {
    /// The configuration file (for fix locations): its path, or `warden.toml`.
    pub config_file: String,
    /// The policy folder.
    pub policies_dir: PathBuf,
    /// Every enabled upstream.
    pub upstreams: Vec<Upstream>,
    /// The principals (the stdio principal alone, without labels, when none is configured).
    pub principals: Vec<Who>,
    /// The compiled policies.
    pub policy: PolicySet,
    /// Inbound JWT issuers.
    pub issuers: usize,
    /// Principals with API keys.
    pub api_keys: usize,
    /// `auth.allow_anonymous_loopback`.
    pub anonymous_loopback: bool,
    /// `pins.recheck_sec`.
    pub pins_recheck: Duration,
    /// `[chain]`.
    pub chain: ChainConfig,
    /// The detection gates.
    pub gates: GateCoverage,
    /// The last 24 h of audit evidence; `None` when there is no store to read.
    pub evidence: Option<Evidence>,
    /// Why there is no evidence (when `evidence` is `None`).
    pub audit_note: String,
}

/// Which detection gates the configuration turns on: `gates.enabled` (the gateway evaluates
/// them at all) and each `[gates.NAME] enabled`.
pub fn gate_coverage(config: &Config) -> GateCoverage {
    let on = |kind: GateKind| {
        config.gates.enabled
            && config
                .gates
                .gates
                .iter()
                .any(|g| g.kind == kind && g.enabled)
    };
    GateCoverage {
        unapproved_writes: on(GateKind::UnapprovedWrites),
        registry_drift: on(GateKind::RegistryDrift),
        manifest_drift: on(GateKind::ManifestDrift),
        scope_mismatch: on(GateKind::ScopeMismatch),
        quarantine_ratio: on(GateKind::QuarantineRatio),
    }
}

/// Read the deployment of `config`: registry, locks, policies, principals, auth, chain, gates
/// and (when its store exists) the audit of the 24 h before `now`. A bad registry or policy
/// folder is an error; a missing or unreadable store is only "no audit data".
pub async fn gather(config: &Config, now: time::OffsetDateTime) -> anyhow::Result<Deployment> {
    let specs = registry::load(&config.registry_dir)?;
    let policy = policies::read_dir(&config.policies_dir)?;
    // Disabled upstreams are neither connected nor exposed: nothing to judge.
    let upstreams = specs
        .into_iter()
        .filter(|s| s.enabled)
        .map(upstream)
        .collect();
    let mut principals: Vec<Who> = config
        .principals
        .iter()
        .map(|p| Who {
            id: p.id.clone(),
            labels: p.labels.clone(),
            scopes: Some(p.scopes.clone()),
        })
        .collect();
    if principals.is_empty() {
        principals.push(Who {
            id: config.stdio_principal.clone(),
            labels: Vec::new(),
            scopes: None,
        });
    }
    let (evidence, audit_note) = evidence(&config.store, now).await;
    Ok(Deployment {
        config_file: config
            .source
            .as_ref()
            .map_or_else(|| "warden.toml".to_owned(), |p| p.display().to_string()),
        policies_dir: config.policies_dir.clone(),
        upstreams,
        principals,
        policy,
        issuers: config.auth.issuers.len(),
        api_keys: config
            .principals
            .iter()
            .filter(|p| p.api_key_sha256.is_some())
            .count(),
        anonymous_loopback: config.auth.allow_anonymous_loopback,
        pins_recheck: config.pins.recheck,
        chain: config.chain.clone(),
        gates: gate_coverage(config),
        evidence,
        audit_note,
    })
}

async fn evidence(store: &StoreUrl, now: time::OffsetDateTime) -> (Option<Evidence>, String) {
    if let StoreUrl::Sqlite(path) = store
        && !path.exists()
    {
        return (
            None,
            format!("no audit data ({} does not exist)", path.display()),
        );
    }
    let url = store;
    let store = match Store::connect(url).await {
        Ok(s) => s,
        Err(e) => return (None, format!("no audit data ({url}: {e})")),
    };
    let found = store.evidence_since(now - time::Duration::hours(24)).await;
    store.close().await;
    match found {
        Ok(e) => (Some(e), String::new()),
        Err(e) => (None, format!("no audit data ({url}: {e})")),
    }
}

fn upstream(spec: UpstreamSpec) -> Upstream {
    let (lock, pinned) = match pinning::read_lock(&spec) {
        Ok(None) => (LockState::Missing, Vec::new()),
        Err(e) => (LockState::Invalid(e.to_string()), Vec::new()),
        Ok(Some(lock)) => {
            let pinned: Vec<String> = lock.tools.iter().map(|t| t.name.clone()).collect();
            let missing: Vec<String> = spec
                .tools
                .keys()
                .filter(|t| !pinned.contains(t))
                .cloned()
                .collect();
            let state = if missing.is_empty() {
                LockState::Pinned
            } else {
                LockState::Stale(missing)
            };
            (state, pinned)
        }
    };
    let mut tools: Vec<(String, ActionClass, bool)> = spec
        .tools
        .iter()
        .map(|(name, class)| (name.clone(), *class, true))
        .collect();
    for name in pinned {
        if !spec.tools.contains_key(&name) {
            let class = spec.action_class(&name);
            tools.push((name, class, false));
        }
    }
    let unpinned = unpinned_command(&spec.transport);
    Upstream {
        spec,
        lock,
        tools,
        unpinned,
    }
}

/// Why a stdio command fetches whatever is newest, if it does: `npx`/`bunx`/`pnpm dlx` of a
/// package without `@version` (or `@latest`), `uvx`/`pipx run` without `==version`/`@version`,
/// a container image without a tag, with `:latest`, and without a digest.
pub fn unpinned_command(t: &Transport) -> Option<String> {
    let Transport::Stdio { program, args, .. } = t else {
        return None;
    };
    let prog = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let positional = |skip: usize| args.iter().skip(skip).find(|a| !a.starts_with('-'));
    let node_pkg = |pkg: &str| {
        // `@scope/name@1.2.3`: the version is after an `@` that is not the first character.
        match pkg.get(1..).and_then(|rest| rest.rfind('@')) {
            Some(at) => {
                let version = pkg.get(at + 2..).unwrap_or("");
                version.is_empty() || version == "latest"
            }
            None => true,
        }
    };
    let unpinned = match prog.as_str() {
        "npx" | "bunx" => positional(0).filter(|p| node_pkg(p)),
        "pnpm" | "yarn" if args.first().is_some_and(|a| a == "dlx") => {
            positional(1).filter(|p| node_pkg(p))
        }
        "uvx" => positional(0).filter(|p| !p.contains("==") && !p.contains('@')),
        "pipx" if args.first().is_some_and(|a| a == "run") => {
            positional(1).filter(|p| !p.contains("==") && !p.contains('@'))
        }
        "docker" | "podman" if args.first().is_some_and(|a| a == "run") => {
            // The image: the last positional argument before the container's own arguments
            // is not knowable without parsing every flag; judge every positional one.
            args.iter()
                .skip(1)
                .filter(|a| !a.starts_with('-'))
                .find(|a| {
                    a.contains('/') && !a.contains("@sha256:") && {
                        let tail = a.rsplit('/').next().unwrap_or("");
                        !tail.contains(':') || tail.ends_with(":latest")
                    }
                })
        }
        _ => None,
    }?;
    Some(format!(
        "`{prog} {unpinned}` runs whatever version is newest"
    ))
}

//! The `[gates]` and `[paging]` sections of `warden.toml`: the five detection gates (target,
//! page condition, owner) and where pages go.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::gates::{GateKind, Measure};

/// `[gates]` as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interval_sec: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unapproved_writes: Option<RawGate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    registry_drift: Option<RawGate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest_drift: Option<RawGate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope_mismatch: Option<RawGate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quarantine_ratio: Option<RawGate>,
}

/// `[gates.NAME]` as written; what is left out keeps the gate's default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window_sec: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    for_sec: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_calls: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

/// `[paging]` as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPaging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    webhook_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    webhook_url_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    routing_key_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_sec: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
}

/// The detection gates, resolved.
#[derive(Debug, Clone)]
pub struct GatesConfig {
    /// Whether `serve` evaluates gates at all (`mcp-warden gates` always can).
    pub enabled: bool,
    /// How often the lease holder evaluates every gate.
    pub interval: Duration,
    /// One entry per gate, in [`GateKind::ALL`] order.
    pub gates: Vec<GateConfig>,
}

#[cfg(test)]
impl GatesConfig {
    /// The settings of `kind`.
    pub fn gate(&self, kind: GateKind) -> Option<&GateConfig> {
        self.gates.iter().find(|g| g.kind == kind)
    }
}

/// One gate: its target, page condition and owner.
#[derive(Debug, Clone, PartialEq)]
pub struct GateConfig {
    /// Which gate.
    pub kind: GateKind,
    /// Off: never pages (a firing episode is resolved).
    pub enabled: bool,
    /// What good looks like (a count, or a ratio in [0, 1]); shown, never paged on.
    pub target: f64,
    /// The page condition's threshold (a count, or a ratio in [0, 1]), compared with
    /// [`GateKind::compare`].
    pub threshold: f64,
    /// The trailing window the value is measured over.
    pub window: Duration,
    /// How long the condition must hold, evaluation after evaluation, before it pages.
    pub hold: Duration,
    /// Ratio gates: fewer calls than this in the window never page.
    pub min_calls: u64,
    /// Who is paged (the team name in the page).
    pub owner: String,
}

/// The body a page is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageFormat {
    /// mcp-warden's own JSON body.
    Generic,
    /// PagerDuty Events API v2.
    PagerDuty,
}

/// Where pages go.
#[derive(Clone)]
pub struct PagingConfig {
    /// The webhook; `None`: gates are evaluated and exported, nobody is paged.
    pub url: Option<String>,
    /// The body shape.
    pub format: PageFormat,
    /// The PagerDuty integration's routing key (a secret; read from `routing_key_env`).
    pub routing_key: Option<String>,
    /// Longest a page request may take.
    pub timeout: Duration,
    /// This gateway's name in pages (`gateway` / PagerDuty `source`).
    pub source: String,
}

impl std::fmt::Debug for PagingConfig {
    // Webhook URLs often carry a token, and the routing key is one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagingConfig")
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("format", &self.format)
            .field("routing_key", &self.routing_key.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .field("source", &self.source)
            .finish()
    }
}

/// The PagerDuty Events API v2 endpoint, used when `format = "pagerduty"` names no URL.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// The defaults of DESIGN.md's gate table. Count gates page on any event in the window;
/// ratio gates on a ratio over 5 minutes that held for 15 minutes, from 20 calls up.
pub fn default_gate(kind: GateKind) -> GateConfig {
    let (target, threshold, window, hold, min_calls, owner) = match kind {
        GateKind::UnapprovedWrites => (0.0, 0.0, 600, 0, 0, "Governance On-call"),
        GateKind::RegistryDrift => (0.0, 0.0, 3600, 0, 0, "Platform Security"),
        GateKind::ManifestDrift => (0.0, 0.0, 3600, 0, 0, "MCP Platform"),
        GateKind::ScopeMismatch => (0.001, 0.01, 300, 900, 20, "Identity Team"),
        GateKind::QuarantineRatio => (0.01, 0.03, 300, 900, 20, "Safety Team"),
    };
    GateConfig {
        kind,
        enabled: true,
        target,
        threshold,
        window: Duration::from_secs(window),
        hold: Duration::from_secs(hold),
        min_calls,
        owner: owner.to_owned(),
    }
}

fn bad(key: &'static str, problem: String) -> ConfigError {
    ConfigError::Value {
        file: None,
        key,
        problem,
    }
}

/// Seconds in (0, 7 days] (`zero_ok`: [0, 7 days]).
fn seconds(key: &'static str, v: f64, zero_ok: bool) -> Result<Duration, ConfigError> {
    let lower = if zero_ok { v >= 0.0 } else { v > 0.0 };
    if v.is_finite() && lower && v <= 604_800.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        let range = if zero_ok { "[0" } else { "(0" };
        Err(bad(
            key,
            format!("expected seconds in {range}, 604800], got {v}"),
        ))
    }
}

/// Resolve `[gates]`.
pub(super) fn resolve_gates(raw: &RawGates) -> Result<GatesConfig, ConfigError> {
    let interval = seconds(
        "gates.interval_sec",
        raw.interval_sec.unwrap_or(15.0),
        false,
    )?;
    let mut gates = Vec::with_capacity(GateKind::ALL.len());
    for kind in GateKind::ALL {
        let given = match kind {
            GateKind::UnapprovedWrites => &raw.unapproved_writes,
            GateKind::RegistryDrift => &raw.registry_drift,
            GateKind::ManifestDrift => &raw.manifest_drift,
            GateKind::ScopeMismatch => &raw.scope_mismatch,
            GateKind::QuarantineRatio => &raw.quarantine_ratio,
        };
        let mut gate = default_gate(kind);
        if let Some(g) = given {
            resolve_gate(&mut gate, g)?;
        }
        gates.push(gate);
    }
    Ok(GatesConfig {
        enabled: raw.enabled.unwrap_or(true),
        interval,
        gates,
    })
}

fn resolve_gate(gate: &mut GateConfig, g: &RawGate) -> Result<(), ConfigError> {
    // The key names in messages are static: one set per gate.
    let keys = Keys::of(gate.kind);
    let ratio = gate.kind.measure() == Measure::Ratio;
    let level = |key: &'static str, v: f64| {
        if !v.is_finite() || v < 0.0 || (ratio && v > 1.0) {
            let expected = if ratio {
                "a ratio in [0, 1] (0.01 = 1 %)"
            } else {
                "a count >= 0"
            };
            return Err(bad(key, format!("expected {expected}, got {v}")));
        }
        Ok(v)
    };
    if let Some(v) = g.enabled {
        gate.enabled = v;
    }
    if let Some(v) = g.target {
        gate.target = level(keys.target, v)?;
    }
    if let Some(v) = g.threshold {
        gate.threshold = level(keys.threshold, v)?;
    }
    if let Some(v) = g.window_sec {
        gate.window = seconds(keys.window, v, false)?;
    }
    if let Some(v) = g.for_sec {
        gate.hold = seconds(keys.hold, v, true)?;
    }
    if let Some(v) = g.min_calls {
        if !ratio {
            return Err(bad(
                keys.min_calls,
                "only ratio gates (scope_mismatch, quarantine_ratio) take min_calls".to_owned(),
            ));
        }
        gate.min_calls = v;
    }
    if let Some(v) = &g.owner {
        if v.trim().is_empty() {
            return Err(bad(keys.owner, "must not be empty".to_owned()));
        }
        gate.owner = v.clone();
    }
    Ok(())
}

/// The full key names of one gate's settings.
struct Keys {
    target: &'static str,
    threshold: &'static str,
    window: &'static str,
    hold: &'static str,
    min_calls: &'static str,
    owner: &'static str,
}

impl Keys {
    fn of(kind: GateKind) -> Self {
        macro_rules! keys {
            ($name:literal) => {
                Keys {
                    target: concat!("gates.", $name, ".target"),
                    threshold: concat!("gates.", $name, ".threshold"),
                    window: concat!("gates.", $name, ".window_sec"),
                    hold: concat!("gates.", $name, ".for_sec"),
                    min_calls: concat!("gates.", $name, ".min_calls"),
                    owner: concat!("gates.", $name, ".owner"),
                }
            };
        }
        match kind {
            GateKind::UnapprovedWrites => keys!("unapproved_writes"),
            GateKind::RegistryDrift => keys!("registry_drift"),
            GateKind::ManifestDrift => keys!("manifest_drift"),
            GateKind::ScopeMismatch => keys!("scope_mismatch"),
            GateKind::QuarantineRatio => keys!("quarantine_ratio"),
        }
    }
}

/// Resolve `[paging]`, reading the secrets from the environment variables it names.
pub(super) fn resolve_paging(raw: &RawPaging) -> Result<PagingConfig, ConfigError> {
    let format = match raw.format.as_deref().unwrap_or("generic") {
        "generic" => PageFormat::Generic,
        "pagerduty" => PageFormat::PagerDuty,
        other => {
            return Err(bad(
                "paging.format",
                format!("expected \"generic\" or \"pagerduty\", got {other:?}"),
            ));
        }
    };
    let env = |key: &'static str, var: &str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                bad(
                    key,
                    format!("environment variable {var} is not set (or empty, or not UTF-8)"),
                )
            })
    };
    let url = match (&raw.webhook_url, &raw.webhook_url_env) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "paging.webhook_url",
                "give webhook_url or webhook_url_env, not both".to_owned(),
            ));
        }
        (Some(u), None) => Some(u.clone()),
        (None, Some(var)) => Some(env("paging.webhook_url_env", var)?),
        (None, None) if format == PageFormat::PagerDuty => Some(PAGERDUTY_URL.to_owned()),
        (None, None) => None,
    };
    if let Some(u) = &url
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        return Err(bad(
            "paging.webhook_url",
            "expected an https:// (or http://) URL".to_owned(),
        ));
    }
    let routing_key = match (&raw.routing_key_env, format) {
        (Some(var), PageFormat::PagerDuty) => Some(env("paging.routing_key_env", var)?),
        (None, PageFormat::PagerDuty) => {
            return Err(bad(
                "paging.routing_key_env",
                "format = \"pagerduty\" needs the environment variable holding the routing key"
                    .to_owned(),
            ));
        }
        (Some(_), PageFormat::Generic) => {
            return Err(bad(
                "paging.routing_key_env",
                "only format = \"pagerduty\" takes a routing key".to_owned(),
            ));
        }
        (None, PageFormat::Generic) => None,
    };
    let timeout = seconds("paging.timeout_sec", raw.timeout_sec.unwrap_or(10.0), false)?;
    let source = raw
        .source
        .clone()
        .unwrap_or_else(|| "mcp-warden".to_owned());
    if source.trim().is_empty() {
        return Err(bad("paging.source", "must not be empty".to_owned()));
    }
    Ok(PagingConfig {
        url,
        format,
        routing_key,
        timeout,
        source,
    })
}

#[cfg(test)]
mod tests;

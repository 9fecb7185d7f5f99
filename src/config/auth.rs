//! `[auth]` (inbound tokens: API keys per principal, JWTs from trusted issuers) and
//! `[minting]` (the credentials the gateway issues to upstreams).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    pub(super) resource: Option<String>,
    pub(super) allow_anonymous_loopback: bool,
    pub(super) required_scopes: Vec<String>,
    pub(super) leeway_sec: u64,
    pub(super) cache_max_sec: f64,
    pub(super) issuers: Vec<RawIssuer>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIssuer {
    pub(super) issuer: String,
    #[serde(default)]
    pub(super) jwks_url: Option<String>,
    #[serde(default)]
    pub(super) jwks_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) audience: Option<String>,
    #[serde(default)]
    pub(super) algorithms: Vec<String>,
    #[serde(default = "default_id_claim")]
    pub(super) principal_claim: String,
    #[serde(default)]
    pub(super) principal_prefix: String,
    #[serde(default)]
    pub(super) labels_claim: Option<String>,
    #[serde(default = "default_scope_claim")]
    pub(super) scopes_claim: String,
    #[serde(default)]
    pub(super) labels: Vec<String>,
    #[serde(default = "default_jwks_refresh")]
    pub(super) jwks_refresh_sec: f64,
}

pub(super) fn default_id_claim() -> String {
    "sub".to_owned()
}

pub(super) fn default_scope_claim() -> String {
    "scope".to_owned()
}

pub(super) fn default_jwks_refresh() -> f64 {
    300.0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMinting {
    pub(super) issuer: Option<String>,
    pub(super) token_ttl_sec: f64,
    pub(super) refresh_before_sec: f64,
    pub(super) env_token_ttl_sec: f64,
    pub(super) service_subject: String,
}

/// Inbound authentication: API keys (per principal) and JWTs from trusted issuers.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// This gateway's resource URI (RFC 8707/9728): every accepted token's `aud`. `None`:
    /// `http://<bound address>/mcp`, decided when the listener is bound.
    pub resource: Option<String>,
    /// The developer setting: requests without `Authorization` on a loopback listener act as
    /// the stdio principal, when no API key and no issuer is configured.
    pub allow_anonymous_loopback: bool,
    /// Scopes every token must carry (else 403 `insufficient_scope`).
    pub required_scopes: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Longest a validated token is trusted without checking it again.
    pub cache_max: Duration,
    /// Trusted issuers.
    pub issuers: Vec<IssuerConfig>,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// Fetched over HTTP(S), cached, fetched again on an unknown `kid`.
    Url(String),
    /// A static JWKS file (tests, air-gapped set-ups).
    File(PathBuf),
}

/// A trusted JWT issuer and how its claims map to a principal.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// The exact `iss`.
    pub issuer: String,
    /// Its keys.
    pub jwks: JwksSource,
    /// The `aud` required (default: the gateway's resource URI).
    pub audience: Option<String>,
    /// Accepted algorithms (asymmetric only).
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// The claim holding the principal id.
    pub principal_claim: String,
    /// Prepended to the principal id (keeps issuers apart).
    pub principal_prefix: String,
    /// The claim holding labels (an array or a space-separated string), if any.
    pub labels_claim: Option<String>,
    /// The claim holding scopes (`<upstream>:<class>`; a space-separated string or an array).
    pub scopes_claim: String,
    /// Labels every principal of this issuer gets.
    pub labels: Vec<String>,
    /// How often the JWKS is fetched again at most (besides on an unknown `kid`).
    pub jwks_refresh: Duration,
}

/// Settings of the credentials the gateway mints.
#[derive(Debug, Clone)]
pub struct MintingConfig {
    /// `iss` of minted tokens (default: the origin of the resource URI).
    pub issuer: Option<String>,
    /// Lifetime of a per-call token.
    pub token_ttl: Duration,
    /// A cached token is replaced this long before it expires.
    pub refresh_before: Duration,
    /// Lifetime of a spawn-time (`credential_via = "env"`) token.
    pub env_token_ttl: Duration,
    /// `sub` of the gateway's own requests (handshakes, lists).
    pub service_subject: String,
}

/// The inbound authentication settings, checked.
pub(super) fn resolve_auth(
    raw: &RawAuth,
    rel: &dyn Fn(PathBuf) -> PathBuf,
    secs: &dyn Fn(&'static str, f64) -> Result<Duration, ConfigError>,
) -> Result<AuthConfig, ConfigError> {
    let bad = |key: &'static str, problem: String| ConfigError::Value {
        file: None,
        key,
        problem,
    };
    if let Some(r) = &raw.resource
        && !(r.starts_with("http://") || r.starts_with("https://"))
    {
        return Err(bad(
            "auth.resource",
            format!("expected the gateway's https:// (or http://) URL, got {r:?}"),
        ));
    }
    let mut issuers = Vec::with_capacity(raw.issuers.len());
    for i in &raw.issuers {
        if i.issuer.trim().is_empty() {
            return Err(bad("auth.issuers.issuer", "must not be empty".to_owned()));
        }
        if issuers.iter().any(|o: &IssuerConfig| o.issuer == i.issuer) {
            return Err(bad(
                "auth.issuers.issuer",
                format!("{:?} is listed twice", i.issuer),
            ));
        }
        let jwks = match (&i.jwks_url, &i.jwks_file) {
            (Some(u), None) if u.starts_with("http://") || u.starts_with("https://") => {
                JwksSource::Url(u.clone())
            }
            (None, Some(f)) => JwksSource::File(rel(f.clone())),
            _ => {
                return Err(bad(
                    "auth.issuers.jwks_url",
                    format!(
                        "issuer {:?}: give exactly one of jwks_url (http(s)://) or jwks_file",
                        i.issuer
                    ),
                ));
            }
        };
        let names = if i.algorithms.is_empty() {
            vec!["RS256".to_owned(), "ES256".to_owned(), "EdDSA".to_owned()]
        } else {
            i.algorithms.clone()
        };
        let mut algorithms = Vec::new();
        for a in &names {
            let alg: jsonwebtoken::Algorithm = a.parse().map_err(|_| {
                bad(
                    "auth.issuers.algorithms",
                    format!("issuer {:?}: unknown algorithm {a:?}", i.issuer),
                )
            })?;
            if matches!(
                alg,
                jsonwebtoken::Algorithm::HS256
                    | jsonwebtoken::Algorithm::HS384
                    | jsonwebtoken::Algorithm::HS512
            ) {
                return Err(bad(
                    "auth.issuers.algorithms",
                    format!(
                        "issuer {:?}: {a} is symmetric; only public-key algorithms are accepted",
                        i.issuer
                    ),
                ));
            }
            algorithms.push(alg);
        }
        issuers.push(IssuerConfig {
            issuer: i.issuer.clone(),
            jwks,
            audience: i.audience.clone().filter(|a| !a.is_empty()),
            algorithms,
            principal_claim: i.principal_claim.clone(),
            principal_prefix: i.principal_prefix.clone(),
            labels_claim: i.labels_claim.clone().filter(|c| !c.is_empty()),
            scopes_claim: i.scopes_claim.clone(),
            labels: i.labels.clone(),
            jwks_refresh: secs("auth.issuers.jwks_refresh_sec", i.jwks_refresh_sec)?,
        });
    }
    Ok(AuthConfig {
        resource: raw.resource.clone(),
        allow_anonymous_loopback: raw.allow_anonymous_loopback,
        required_scopes: raw.required_scopes.clone(),
        leeway: Duration::from_secs(raw.leeway_sec.min(300)),
        cache_max: secs("auth.cache_max_sec", raw.cache_max_sec)?,
        issuers,
    })
}

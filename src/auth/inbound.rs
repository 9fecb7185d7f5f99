//! Inbound OAuth 2.1 resource server: validate an agent's bearer JWT against the configured
//! issuers (JWKS fetched and cached, fetched again on an unknown `kid` for key rotation, or a
//! static file), require `aud` = this gateway's resource URI (RFC 8707), and map its claims to a
//! principal. A validated token is cached until shortly before it expires, so the warm path is
//! one hash lookup.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::config::{AuthConfig, IssuerConfig, JwksSource};
use crate::decide::scopes::Scopes;
use crate::pipeline::authenticate::Principal;

/// Why a token was refused. `Display` is safe to send to the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT at all.
    #[error("the bearer token is not a JWT")]
    Malformed,
    /// `iss` is not a trusted issuer.
    #[error("the token's issuer is not trusted")]
    UnknownIssuer,
    /// `alg` not accepted for that issuer (`none` and HMAC never are).
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    /// No key with that `kid`, even after fetching the issuer's keys again.
    #[error("the token's signing key (kid) is unknown")]
    UnknownKey,
    /// The issuer's keys could not be fetched.
    #[error("the issuer's keys are unavailable")]
    KeysUnavailable,
    /// A token for another audience (counted: it feeds the scope-mismatch gate).
    #[error("the token is for another audience")]
    WrongAudience,
    /// Expired, not yet valid, bad signature, missing claims …
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Valid, but without a scope this gateway requires.
    #[error("the token lacks a required scope")]
    InsufficientScope,
}

/// An issuer's keys as last fetched.
struct KeySet {
    keys: HashMap<String, (DecodingKey, Option<Algorithm>)>,
    unnamed: Vec<(DecodingKey, Option<Algorithm>)>,
    fetched: Option<Instant>,
}

struct Issuer {
    config: IssuerConfig,
    keys: ArcSwap<KeySet>,
    fetch: tokio::sync::Mutex<()>,
}

/// A validated token, as cached.
#[derive(Debug)]
struct Valid {
    principal: Arc<Principal>,
    exp: u64,
}

/// The validator.
pub struct Validator {
    issuers: HashMap<String, Issuer>,
    required_scopes: Vec<String>,
    leeway: Duration,
    cache_max: Duration,
    cache: moka::sync::Cache<Arc<str>, Arc<Valid>>,
    http: reqwest::Client,
    /// Tokens refused for another audience (the scope-mismatch gate reads it).
    pub wrong_audience: AtomicU64,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether a bearer value looks like a JWT (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2
}

impl Validator {
    /// From the configuration.
    pub fn new(config: &AuthConfig, http: reqwest::Client) -> Self {
        let issuers = config
            .issuers
            .iter()
            .map(|c| {
                (
                    c.issuer.clone(),
                    Issuer {
                        config: c.clone(),
                        keys: ArcSwap::from_pointee(KeySet {
                            keys: HashMap::new(),
                            unnamed: Vec::new(),
                            fetched: None,
                        }),
                        fetch: tokio::sync::Mutex::new(()),
                    },
                )
            })
            .collect();
        Self {
            issuers,
            required_scopes: config.required_scopes.clone(),
            leeway: config.leeway,
            cache_max: config.cache_max,
            cache: moka::sync::Cache::builder()
                .max_capacity(50_000)
                .time_to_live(config.cache_max)
                .build(),
            http,
            wrong_audience: AtomicU64::new(0),
        }
    }

    /// Whether any issuer is configured.
    pub fn enabled(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// A token validated before and still fresh (the warm path: no signature check).
    pub fn cached(&self, token: &str) -> Option<Arc<Principal>> {
        let hit = self.cache.get(token)?;
        (now_secs() < hit.exp).then(|| hit.principal.clone())
    }

    /// Validate `token` for `resource` (the default audience).
    pub async fn validate(
        &self,
        token: &str,
        resource: &str,
    ) -> Result<Arc<Principal>, TokenError> {
        if let Some(p) = self.cached(token) {
            return Ok(p);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let iss = peek_issuer(token).ok_or(TokenError::Malformed)?;
        let issuer = self.issuers.get(&iss).ok_or(TokenError::UnknownIssuer)?;
        if !issuer.config.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm);
        }
        let key = issuer
            .key(header.kid.as_deref(), header.alg, &self.http)
            .await?;
        let audience = issuer.config.audience.as_deref().unwrap_or(resource);
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&issuer.config.issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                        self.wrong_audience.fetch_add(1, Ordering::Relaxed);
                        TokenError::WrongAudience
                    }
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                        TokenError::Invalid("expired".to_owned())
                    }
                    jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                        TokenError::Invalid("not valid yet (nbf)".to_owned())
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                        TokenError::Invalid("bad signature".to_owned())
                    }
                    other => TokenError::Invalid(format!("{other:?}")),
                }
            })?;
        let claims = data.claims;
        let principal = issuer.principal(&claims)?;
        let raw_scopes = strings(claims.get(&issuer.config.scopes_claim));
        if self
            .required_scopes
            .iter()
            .any(|r| !raw_scopes.iter().any(|s| s == r))
        {
            return Err(TokenError::InsufficientScope);
        }
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        // Trusted until shortly before it expires, and never longer than `cache_max`.
        let until = exp
            .saturating_sub(1)
            .min(now_secs() + self.cache_max.as_secs());
        let principal = Arc::new(principal);
        self.cache.insert(
            token.into(),
            Arc::new(Valid {
                principal: principal.clone(),
                exp: until,
            }),
        );
        Ok(principal)
    }

    /// The scopes every token must carry (for the 403 answer).
    pub fn required_scopes(&self) -> &[String] {
        &self.required_scopes
    }
}

/// `iss` of an unverified token, to pick the issuer whose keys verify it.
fn peek_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(str::to_owned)
}

/// A claim that is a space-separated string or an array of strings.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

impl Issuer {
    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, TokenError> {
        let c = &self.config;
        let id = claims
            .get(&c.principal_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| TokenError::Invalid(format!("missing claim {:?}", c.principal_claim)))?;
        let mut labels = c.labels.clone();
        if let Some(claim) = &c.labels_claim {
            labels.extend(strings(claims.get(claim)));
        }
        labels.sort();
        labels.dedup();
        // Only `<upstream>:<class>` scopes say what the principal may do here; other scopes
        // (`openid`, `mcp:tools` …) are ignored by the scope gate.
        let wanted: Vec<String> = strings(claims.get(&c.scopes_claim))
            .into_iter()
            .filter(|s| Scopes::parse(&[s.as_str()]).is_ok())
            .collect();
        let scopes = Scopes::parse(&wanted).unwrap_or_default();
        Ok(Principal {
            id: format!("{}{id}", c.principal_prefix),
            labels,
            scopes,
        })
    }

    /// The key for `kid`; the keys are fetched again (at most once a second) when it is not
    /// known, so a rotation at the issuer is picked up at the first token it signs.
    async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        http: &reqwest::Client,
    ) -> Result<DecodingKey, TokenError> {
        if let Some(k) = self.lookup(kid, alg) {
            return Ok(k);
        }
        let _one = self.fetch.lock().await;
        // Someone else may have fetched while we waited.
        if let Some(k) = self.lookup(kid, alg) {
            return Ok(k);
        }
        let last = self.keys.load().fetched;
        if let Some(at) = last {
            let since = at.elapsed();
            if since < Duration::from_secs(1) {
                tokio::time::sleep(Duration::from_secs(1).saturating_sub(since)).await;
            }
        }
        let set = self.load(http).await;
        match set {
            Ok(set) => self.keys.store(Arc::new(set)),
            Err(error) => {
                tracing::warn!(issuer = %self.config.issuer, %error, "JWKS unavailable");
                // Keep the old keys, but do not hammer the issuer.
                let old = self.keys.load();
                self.keys.store(Arc::new(KeySet {
                    keys: old.keys.clone(),
                    unnamed: old.unnamed.clone(),
                    fetched: Some(Instant::now()),
                }));
                return self.lookup(kid, alg).ok_or(TokenError::KeysUnavailable);
            }
        }
        self.lookup(kid, alg).ok_or(TokenError::UnknownKey)
    }

    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let set = self.keys.load();
        let stale = set
            .fetched
            .is_none_or(|t| t.elapsed() > self.config.jwks_refresh);
        if stale {
            return None;
        }
        let fits = |a: &Option<Algorithm>| a.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => set
                .keys
                .get(kid)
                .filter(|(_, a)| fits(a))
                .map(|(k, _)| k.clone()),
            // No kid: only unambiguous when the issuer has exactly one fitting key.
            None => {
                let mut fitting = set
                    .keys
                    .values()
                    .chain(set.unnamed.iter())
                    .filter(|(_, a)| fits(a));
                let first = fitting.next()?;
                fitting.next().is_none().then(|| first.0.clone())
            }
        }
    }

    async fn load(&self, http: &reqwest::Client) -> Result<KeySet, String> {
        let body = match &self.config.jwks {
            JwksSource::Url(url) => {
                let r = http
                    .get(url)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !r.status().is_success() {
                    return Err(format!("{url}: HTTP {}", r.status()));
                }
                r.bytes().await.map_err(|e| e.to_string())?.to_vec()
            }
            JwksSource::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?,
        };
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut out = KeySet {
            keys: HashMap::new(),
            unnamed: Vec::new(),
            fetched: Some(Instant::now()),
        };
        for jwk in &set.keys {
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            match &jwk.common.key_id {
                Some(kid) => {
                    out.keys.insert(kid.clone(), (key, alg));
                }
                None => out.unnamed.push((key, alg)),
            }
        }
        Ok(out)
    }
}

impl Clone for KeySet {
    fn clone(&self) -> Self {
        Self {
            keys: self.keys.clone(),
            unnamed: self.unnamed.clone(),
            fetched: self.fetched,
        }
    }
}

#[cfg(test)]
mod tests;

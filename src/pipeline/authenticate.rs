//! Stage 1, authenticate: who is asking. Over stdio the configured local principal; over HTTP
//! the principal of the bearer token — a JWT from a trusted issuer for this gateway's audience
//! (`auth::inbound`), or an API key — or (only the loopback developer setting, only without an
//! `Authorization` header) the local principal.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::auth::inbound::{self, TokenError, Validator};
use crate::config::Config;
use crate::decide::scopes::Scopes;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable id, written to the audit store.
    pub id: String,
    /// Labels such as `read_only`, `approver`, `admin`.
    pub labels: Vec<String>,
    /// What it may do, per upstream and action class.
    pub scopes: Scopes,
}

impl Principal {
    /// Whether it carries `label`.
    pub fn has_label(&self, label: &str) -> bool {
        self.labels.iter().any(|l| l == label)
    }
}

/// Proof that a principal went through authentication; only this module makes one.
#[derive(Debug, Clone)]
pub struct Authenticated(Arc<Principal>);

impl Authenticated {
    /// The principal.
    pub fn principal(&self) -> &Principal {
        &self.0
    }
}

/// Why a request could not be authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    /// No credential, where one is required.
    #[error("authentication required: send `Authorization: Bearer <API key>`")]
    Missing,
    /// A credential that is not a known key (or not a bearer token at all).
    #[error("invalid credential")]
    InvalidKey,
    /// The configuration names a principal that does not exist.
    #[error("unknown principal {0:?}")]
    UnknownPrincipal(String),
    /// A JWT that was refused.
    #[error("{0}")]
    Token(TokenError),
}

impl AuthnError {
    /// Whether the answer is 403 `insufficient_scope` (else 401).
    pub fn is_insufficient_scope(&self) -> bool {
        matches!(self, Self::Token(TokenError::InsufficientScope))
    }

    /// The reason label of `mcp_warden_auth_refused_total`: `missing`, `wrong_audience`,
    /// `insufficient_scope`, else `invalid_token`.
    pub fn refusal_code(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Token(TokenError::WrongAudience) => "wrong_audience",
            Self::Token(TokenError::InsufficientScope) => "insufficient_scope",
            Self::InvalidKey | Self::UnknownPrincipal(_) | Self::Token(_) => "invalid_token",
        }
    }

    /// The RFC 6750 `error` code.
    pub fn oauth_error(&self) -> Option<&'static str> {
        match self {
            Self::Missing => None,
            Self::Token(TokenError::InsufficientScope) => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }
}

/// Every known principal, by id and by API key digest.
#[derive(Debug, Default)]
pub struct Principals {
    by_id: HashMap<String, Authenticated>,
    by_key: HashMap<[u8; 32], Authenticated>,
    stdio: Option<Authenticated>,
}

impl Principals {
    /// From the resolved configuration (which has checked ids and keys).
    pub fn from_config(config: &Config) -> Self {
        let mut out = Self::default();
        for p in &config.principals {
            let who = Authenticated(Arc::new(Principal {
                id: p.id.clone(),
                labels: p.labels.clone(),
                scopes: p.scopes.clone(),
            }));
            if let Some(digest) = p.api_key_sha256 {
                out.by_key.insert(digest, who.clone());
            }
            out.by_id.insert(p.id.clone(), who);
        }
        out.stdio = out.by_id.get(&config.stdio_principal).cloned();
        out
    }

    /// The principal `id`, as the configuration knows it.
    pub fn get(&self, id: &str) -> Result<Authenticated, AuthnError> {
        self.by_id
            .get(id)
            .cloned()
            .ok_or_else(|| AuthnError::UnknownPrincipal(id.to_owned()))
    }

    /// The principal of a stdio agent: the operator who started the process.
    pub fn stdio(&self) -> Result<Authenticated, AuthnError> {
        self.stdio
            .clone()
            .ok_or_else(|| AuthnError::UnknownPrincipal("stdio_principal".to_owned()))
    }

    /// Whether any principal has an API key (then HTTP requests must present one).
    pub fn has_keys(&self) -> bool {
        !self.by_key.is_empty()
    }

    /// The principal whose API key `key` is.
    pub fn by_api_key(&self, key: &str) -> Option<Authenticated> {
        // Looked up by digest: no comparison of secret bytes whose timing could leak.
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.by_key.get(&digest).cloned()
    }
}

/// The bearer token of a request: `Ok(None)` without an `Authorization` header.
fn bearer(headers: &http::HeaderMap) -> Result<Option<&str>, AuthnError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Some)
        .ok_or(AuthnError::InvalidKey)
}

/// The principal of an HTTP request, without waiting: an API key, a JWT validated before
/// (cached), or the local principal when `anonymous_ok` and no `Authorization` is sent.
pub fn http(
    principals: &Principals,
    validator: Option<&Validator>,
    headers: &http::HeaderMap,
    anonymous_ok: bool,
) -> Result<Authenticated, AuthnError> {
    let Some(token) = bearer(headers)? else {
        return if anonymous_ok {
            principals.stdio()
        } else {
            Err(AuthnError::Missing)
        };
    };
    if let Some(who) = principals.by_api_key(token) {
        return Ok(who);
    }
    validator
        .and_then(|v| v.cached(token))
        .map(Authenticated)
        .ok_or(AuthnError::InvalidKey)
}

/// The principal of an HTTP request: as [`http`], and a JWT not seen before is validated
/// against its issuer (fetching its keys if need be) for audience `resource`.
pub async fn http_validated(
    principals: &Principals,
    validator: &Validator,
    resource: &str,
    headers: &http::HeaderMap,
    anonymous_ok: bool,
) -> Result<Authenticated, AuthnError> {
    match http(principals, Some(validator), headers, anonymous_ok) {
        Err(AuthnError::InvalidKey) => {}
        done => return done,
    }
    let token = bearer(headers)?.ok_or(AuthnError::Missing)?;
    if !validator.enabled() || !inbound::looks_like_jwt(token) {
        return Err(AuthnError::InvalidKey);
    }
    validator
        .validate(token, resource)
        .await
        .map(Authenticated)
        .map_err(AuthnError::Token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principals() -> Principals {
        let who = |id: &str| {
            Authenticated(Arc::new(Principal {
                id: id.to_owned(),
                labels: vec![],
                scopes: Scopes::default(),
            }))
        };
        let mut p = Principals::default();
        p.by_key
            .insert(Sha256::digest(b"alice-key-0123456789").into(), who("alice"));
        p.by_id.insert("local".into(), who("local"));
        p.stdio = Some(who("local"));
        p
    }

    fn headers(auth: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(a) = auth {
            h.insert(http::header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    #[test]
    fn bearer_keys_and_anonymous_loopback() {
        let p = principals();
        let id = |r: Result<Authenticated, AuthnError>| r.map(|a| a.principal().id.clone());
        assert_eq!(
            id(http(
                &p,
                None,
                &headers(Some("Bearer alice-key-0123456789")),
                false
            )),
            Ok("alice".into())
        );
        assert_eq!(
            id(http(&p, None, &headers(Some("Bearer wrong-key")), true)),
            Err(AuthnError::InvalidKey)
        );
        assert_eq!(
            id(http(&p, None, &headers(Some("Basic xyz")), true)),
            Err(AuthnError::InvalidKey)
        );
        assert_eq!(id(http(&p, None, &headers(None), true)), Ok("local".into()));
        assert_eq!(
            id(http(&p, None, &headers(None), false)),
            Err(AuthnError::Missing)
        );
    }
}

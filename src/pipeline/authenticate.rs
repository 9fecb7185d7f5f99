//! Stage 1, authenticate: who is asking. Over stdio the configured local principal; over HTTP
//! the principal whose API key the bearer token is, or (only on a loopback listener, and only
//! without an `Authorization` header) the local principal.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

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

/// The principal of an HTTP request. A bearer token must be a known API key; without an
/// `Authorization` header the request is the local (stdio) principal only when
/// `anonymous_ok` (a loopback listener); otherwise it is refused.
pub fn http(
    principals: &Principals,
    headers: &http::HeaderMap,
    anonymous_ok: bool,
) -> Result<Authenticated, AuthnError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return if anonymous_ok {
            principals.stdio()
        } else {
            Err(AuthnError::Missing)
        };
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthnError::InvalidKey)?;
    principals.by_api_key(token).ok_or(AuthnError::InvalidKey)
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
                &headers(Some("Bearer alice-key-0123456789")),
                false
            )),
            Ok("alice".into())
        );
        assert_eq!(
            id(http(&p, &headers(Some("Bearer wrong-key")), true)),
            Err(AuthnError::InvalidKey)
        );
        assert_eq!(
            id(http(&p, &headers(Some("Basic xyz")), true)),
            Err(AuthnError::InvalidKey)
        );
        assert_eq!(id(http(&p, &headers(None), true)), Ok("local".into()));
        assert_eq!(
            id(http(&p, &headers(None), false)),
            Err(AuthnError::Missing)
        );
    }
}

//! Stage 1, authenticate: who is asking. Over stdio the configured local principal; over HTTP
//! (bound to loopback only until inbound OAuth lands) the `anonymous` principal.

use std::sync::Arc;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable id, written to the audit store.
    pub id: String,
    /// Labels such as `read_only`, `approver`, `admin`.
    pub labels: Vec<String>,
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

/// The principal of a stdio agent: the operator who started the process.
pub fn stdio(id: &str) -> Authenticated {
    Authenticated(Arc::new(Principal {
        id: id.to_owned(),
        labels: Vec::new(),
    }))
}

/// The principal of an HTTP agent on a loopback-only listener without inbound authentication.
pub fn loopback_anonymous() -> Authenticated {
    Authenticated(Arc::new(Principal {
        id: "anonymous".to_owned(),
        labels: Vec::new(),
    }))
}

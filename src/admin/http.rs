//! The admin HTTP API (mounted under `/admin`): the containment endpoints an operator's script
//! calls — `POST /registry/{server}/disable`, `POST /tokens/revoke` `{"audience": …}`,
//! `POST /policy/emergency-write-approval` (`{"enabled": false}` turns it off) — and the
//! approval endpoints: `GET /approvals[?status=S&limit=N]`, `GET /approvals/{id}`,
//! `POST /approvals/{id}/approve|deny` (`{"reason": …}`), `POST /registry/{server}/enable`; and
//! quarantine review: `GET /quarantine[?status=S&limit=N]`, `GET /quarantine/{id}` (the original
//! content included), `POST /quarantine/{id}/release` (`{"reason": …}`, required).
//!
//! JSON answers: 200 with what was done; 401 without a valid principal, 403 without the label,
//! 404 for an unknown server, approval or quarantined result, 409 for a refused transition, 400
//! for a bad request (a release without a reason included).
//! Bodies are read as JSON whatever their content type (`curl -d` says form-urlencoded), and
//! may be empty where every field is optional.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::actions::{Admin, AdminError, Done};
use super::mcp::Authn;
use crate::decide::approval::Status;
use crate::pipeline::authenticate::Authenticated;
use crate::store::quarantine::QStatus;

#[derive(Clone)]
struct Api {
    admin: Arc<Admin>,
    authn: Authn,
}

/// The admin API's routes; `authn` authenticates each request from its headers.
pub fn router(admin: Arc<Admin>, authn: Authn) -> Router {
    Router::new()
        .route("/registry/{server}/disable", post(disable))
        .route("/registry/{server}/enable", post(enable))
        .route("/tokens/revoke", post(revoke))
        .route("/policy/emergency-write-approval", post(emergency))
        .route("/approvals", get(list))
        .route("/approvals/{id}", get(show))
        // `approve` or `deny`.
        .route("/approvals/{id}/{verdict}", post(decide))
        .route("/quarantine", get(quarantine_list))
        .route("/quarantine/{id}", get(quarantine_show))
        .route("/quarantine/{id}/release", post(quarantine_release))
        .with_state(Api { admin, authn })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    audience: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmergencyBody {
    #[serde(default = "on")]
    enabled: bool,
}

fn on() -> bool {
    true
}

impl Default for EmergencyBody {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// The answer to an action.
fn answer(outcome: Result<Done, AdminError>) -> Response {
    match outcome {
        Ok(done) => {
            let mut data = done.data;
            if let Value::Object(m) = &mut data {
                m.insert("message".to_owned(), Value::String(done.text));
            }
            (StatusCode::OK, axum::Json(data)).into_response()
        }
        Err(e) => failure(&e),
    }
}

fn failure(e: &AdminError) -> Response {
    (
        e.http_status(),
        axum::Json(json!({"error": e.code(), "message": e.to_string()})),
    )
        .into_response()
}

impl Api {
    fn who(&self, headers: &HeaderMap) -> Result<Authenticated, AdminError> {
        (self.authn)(headers).map_err(AdminError::Unauthenticated)
    }

    /// The body as `T`; an empty body is `T::default()`. A bad one is refused and audited.
    async fn body<T: DeserializeOwned + Default>(
        &self,
        who: &Authenticated,
        action: &'static str,
        body: &Bytes,
    ) -> Result<T, AdminError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        match serde_json::from_slice(body) {
            Ok(t) => Ok(t),
            Err(e) => {
                let raw = Value::String(String::from_utf8_lossy(body).into_owned());
                let error = AdminError::Invalid(format!("the body is not the expected JSON: {e}"));
                // Audited like any refusal (label first: a principal without it hears that).
                Err(self
                    .admin
                    .reject(who, action, json!({ "body": raw }), error)
                    .await)
            }
        }
    }
}

async fn disable(
    State(api): State<Api>,
    Path(server): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let who = api.who(&headers)?;
            let b: ReasonBody = api.body(&who, "registry_disable", &body).await?;
            api.admin.registry_disable(&who, &server, b.reason).await
        }
        .await,
    )
}

async fn enable(
    State(api): State<Api>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    answer(
        async {
            let who = api.who(&headers)?;
            api.admin.registry_enable(&who, &server).await
        }
        .await,
    )
}

async fn revoke(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    answer(
        async {
            let who = api.who(&headers)?;
            match api
                .body::<Option<RevokeBody>>(&who, "tokens_revoke", &body)
                .await?
            {
                Some(b) => api.admin.tokens_revoke(&who, &b.audience).await,
                None => {
                    let error =
                        AdminError::Invalid(r#"the body must be {"audience": "..."}"#.to_owned());
                    Err(api
                        .admin
                        .reject(&who, "tokens_revoke", json!({}), error)
                        .await)
                }
            }
        }
        .await,
    )
}

async fn emergency(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    answer(
        async {
            let who = api.who(&headers)?;
            let b: EmergencyBody = api.body(&who, "emergency_write_approval", &body).await?;
            api.admin.emergency_write_approval(&who, b.enabled).await
        }
        .await,
    )
}

/// `status=S&limit=N` (both optional); `S` is one of `names`, read by `parse`.
fn list_query<S, const N: usize>(
    query: &str,
    parse: fn(&str) -> Option<S>,
    names: [&str; N],
) -> Result<(Option<S>, Option<u32>), String> {
    let (mut status, mut limit) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("status", s) => {
                status = Some(parse(s).ok_or_else(|| {
                    format!("status must be one of {}; got {s:?}", names.join(", "))
                })?);
            }
            ("limit", n) => {
                limit = Some(
                    n.parse::<u32>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| format!("limit must be a positive integer; got {n:?}"))?,
                );
            }
            (k, _) => return Err(format!("unknown query parameter {k:?}")),
        }
    }
    Ok((status, limit))
}

impl Api {
    /// Who asks for listing `action`, and the query's `status` (one of `names`, read by
    /// `parse`) and `limit`. A bad query is refused and audited.
    async fn listing<S, const N: usize>(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        action: &'static str,
        parse: fn(&str) -> Option<S>,
        names: [&str; N],
    ) -> Result<(Authenticated, Option<S>, Option<u32>), AdminError> {
        let who = self.who(headers)?;
        match list_query(uri.query().unwrap_or_default(), parse, names) {
            Ok((status, limit)) => Ok((who, status, limit)),
            Err(bad) => {
                let args = json!({ "query": uri.query() });
                let error = AdminError::Invalid(bad);
                Err(self.admin.reject(&who, action, args, error).await)
            }
        }
    }
}

async fn list(State(api): State<Api>, headers: HeaderMap, uri: Uri) -> Response {
    let names = Status::ALL.map(Status::as_str);
    answer(
        async {
            let (who, status, limit) = api
                .listing(&headers, &uri, "approvals_list", Status::parse, names)
                .await?;
            api.admin.approvals_list(&who, status, limit).await
        }
        .await,
    )
}

async fn show(State(api): State<Api>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    answer(
        async {
            let who = api.who(&headers)?;
            api.admin.approval_show(&who, &id).await
        }
        .await,
    )
}

async fn decide(
    State(api): State<Api>,
    Path((id, verdict)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let action = match verdict.as_str() {
        "approve" => "approve",
        "deny" => "deny",
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    answer(
        async {
            let who = api.who(&headers)?;
            let b: ReasonBody = api.body(&who, action, &body).await?;
            if action == "approve" {
                api.admin.approve(&who, &id, b.reason).await
            } else {
                api.admin.deny(&who, &id, b.reason).await
            }
        }
        .await,
    )
}

async fn quarantine_list(State(api): State<Api>, headers: HeaderMap, uri: Uri) -> Response {
    let names = QStatus::ALL.map(QStatus::as_str);
    answer(
        async {
            let (who, status, limit) = api
                .listing(&headers, &uri, "quarantine_list", QStatus::parse, names)
                .await?;
            api.admin.quarantine_list(&who, status, limit).await
        }
        .await,
    )
}

async fn quarantine_show(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    answer(
        async {
            let who = api.who(&headers)?;
            api.admin.quarantine_show(&who, &id).await
        }
        .await,
    )
}

async fn quarantine_release(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let who = api.who(&headers)?;
            // A missing reason is the action's to refuse (400 `quarantine_reason_required`).
            let b: ReasonBody = api.body(&who, "quarantine_release", &body).await?;
            let reason = b.reason.unwrap_or_default();
            api.admin.quarantine_release(&who, &id, &reason).await
        }
        .await,
    )
}

#[cfg(test)]
mod tests;

//! Every admin action, implemented once; the admin MCP server, the admin HTTP API and the CLI
//! are only faces of these. Each action checks the acting principal's label, does its work
//! against the store, writes one `mcp_audit` row (ALLOW or DENY, whatever happened) and, after a
//! state change, nudges an in-process gateway to re-read its control state at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::cli::pin::{Pinned, pin_one};
use crate::config::Config;
use crate::decide::approval::{Approval, Decider, Refusal, Status, Verdict};
use crate::pipeline::audit::args_digest;
use crate::pipeline::authenticate::Authenticated;
use crate::store::quarantine::QuarantineRefusal;
use crate::store::{ApprovalError, AuditRecord, Decision, Store, StoreError};
use crate::upstream::registry::{self, UpstreamSpec};

mod quarantine;

/// The label that may list and decide approvals.
pub const APPROVER: &str = "approver";
/// The label that may contain incidents, accept drift and review quarantined results.
pub const ADMIN: &str = "admin";

/// Most approvals (or quarantined results) one listing returns.
pub const MAX_LIST: u32 = 1000;
/// Approvals (or quarantined results) a listing returns when no limit is given.
pub const DEFAULT_LIST: u32 = 100;

/// Why an admin action did not happen. Each has an HTTP status and an audit reason code.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No valid principal (HTTP only).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The principal lacks the label the action needs.
    #[error("principal `{principal}` may not run {action}: it needs the `{label}` label")]
    Forbidden {
        principal: String,
        action: &'static str,
        label: &'static str,
    },
    /// No such upstream (or audience).
    #[error("{0}")]
    UnknownServer(String),
    /// The approval rules refuse (an unknown approval included).
    #[error("approval {id}: {refusal} ({})", refusal.code())]
    Refused { id: String, refusal: Refusal },
    /// The quarantine rules refuse (an unknown quarantined result included).
    #[error("quarantined result {id}: {refusal} ({})", refusal.code())]
    Quarantine {
        id: String,
        refusal: QuarantineRefusal,
    },
    /// The request makes no sense.
    #[error("{0}")]
    Invalid(String),
    /// The action cannot be done in the current state.
    #[error("{0}")]
    Conflict(String),
    /// Something failed underneath (the store, the registry, the upstream).
    #[error("{0}")]
    Failed(String),
}

impl AdminError {
    /// The stable reason code written to the audit store.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden { .. } => "forbidden",
            Self::UnknownServer(_) => "unknown_server",
            Self::Refused { refusal, .. } => refusal.code(),
            Self::Quarantine { refusal, .. } => refusal.code(),
            Self::Invalid(_) => "invalid_request",
            Self::Conflict(_) => "conflict",
            Self::Failed(_) => "error",
        }
    }

    /// The HTTP status of the admin API's answer.
    pub fn http_status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::Unauthenticated(_) => S::UNAUTHORIZED,
            Self::Forbidden { .. } => S::FORBIDDEN,
            Self::UnknownServer(_)
            | Self::Refused {
                refusal: Refusal::Unknown,
                ..
            }
            | Self::Quarantine {
                refusal: QuarantineRefusal::Unknown,
                ..
            } => S::NOT_FOUND,
            Self::Invalid(_)
            | Self::Quarantine {
                refusal: QuarantineRefusal::ReasonRequired,
                ..
            } => S::BAD_REQUEST,
            Self::Refused { .. } | Self::Quarantine { .. } | Self::Conflict(_) => S::CONFLICT,
            Self::Failed(_) => S::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        Self::Failed(e.to_string())
    }
}

/// An approval as the admin faces show it (times RFC 3339, status as of now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalView {
    /// Its id.
    pub id: String,
    /// Where it stands now (a pending one past its expiry shows as expired).
    pub status: String,
    /// Who asked.
    pub principal: String,
    /// The upstream.
    pub server: String,
    /// The exposed tool name.
    pub tool: String,
    /// sha256 of the canonical arguments.
    pub args_digest: String,
    /// The tool's pinned hash when it was asked for.
    pub manifest_hash: String,
    /// When it was asked for.
    pub created_at: String,
    /// When it expires.
    pub expires_at: String,
    /// Who decided it.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<String>,
    /// The approver's reason.
    pub reason: Option<String>,
    /// When it was used.
    pub used_at: Option<String>,
}

/// RFC 3339, UTC, whole seconds.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl ApprovalView {
    /// `a` as of `now`.
    pub fn new(a: &Approval, now: OffsetDateTime) -> Self {
        Self {
            id: a.id.clone(),
            status: a.effective_status(now).as_str().to_owned(),
            principal: a.principal.clone(),
            server: a.server.clone(),
            tool: a.tool.clone(),
            args_digest: a.args_digest.clone(),
            manifest_hash: a.manifest_hash.clone(),
            created_at: rfc3339(a.created_at),
            expires_at: rfc3339(a.expires_at),
            decided_by: a.decided_by.clone(),
            decided_at: a.decided_at.map(rfc3339),
            reason: a.reason.clone(),
            used_at: a.used_at.map(rfc3339),
        }
    }

    /// One line for people.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{}  {:<8}  {}  {}  asked by {}  at {}  expires {}",
            self.id,
            self.status,
            self.server,
            self.tool,
            self.principal,
            self.created_at,
            self.expires_at
        );
        if let Some(by) = &self.decided_by {
            s.push_str(&format!("  decided by {by}"));
        }
        if let Some(r) = &self.reason {
            s.push_str(&format!(" ({r})"));
        }
        s
    }
}

/// What an action did: readable text and the same as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    /// For people (the CLI, an MCP tool result's text).
    pub text: String,
    /// For programs (the HTTP answer, `structuredContent`, `--json`).
    pub data: Value,
}

impl Done {
    /// A listing: one line per item (`empty` when there is none), and the items under `key`.
    fn listing<V: Serialize>(
        key: &str,
        items: &[V],
        line: fn(&V) -> String,
        empty: String,
    ) -> Self {
        let text = if items.is_empty() {
            empty
        } else {
            items.iter().map(line).collect::<Vec<_>>().join("\n")
        };
        let mut data = serde_json::Map::new();
        data.insert(key.to_owned(), json!(items));
        Self {
            text,
            data: Value::Object(data),
        }
    }
}

/// The admin surface's shared state.
#[derive(Debug)]
pub struct Admin {
    config: Config,
    store: Store,
    nudge: Option<Arc<Notify>>,
    /// The serving gateway's control reads, so a change is in force here before the action
    /// returns.
    refresh: Option<Arc<crate::gateway::ControlRefresh>>,
    /// The serving gateway's credentials, so a revocation applies before the action returns.
    credentials: Option<Arc<crate::auth::credentials::Credentials>>,
}

/// The audit facts of one action.
struct Act<'a> {
    who: &'a Authenticated,
    action: &'static str,
    args: Value,
    approval_id: Option<String>,
    quarantine_id: Option<String>,
    /// Said after `ok` in the audit reason when the action is done (a release's why).
    note: Option<String>,
    started: Instant,
}

impl<'a> Act<'a> {
    fn new(who: &'a Authenticated, action: &'static str, args: Value) -> Self {
        Self {
            who,
            action,
            args,
            approval_id: None,
            quarantine_id: None,
            note: None,
            started: Instant::now(),
        }
    }
}

impl Admin {
    /// The admin surface over `store`, for the deployment `config` describes. `nudge` is
    /// notified after every state change (an in-process gateway re-reads its control state).
    pub fn new(config: Config, store: Store, nudge: Option<Arc<Notify>>) -> Self {
        Self {
            config,
            store,
            nudge,
            refresh: None,
            credentials: None,
        }
    }

    /// The store the actions work on.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The label `action` needs: `approver` for approvals, `admin` for everything else.
    pub fn label_for(action: &str) -> &'static str {
        match action {
            "approvals_list" | "approval_show" | "approve" | "deny" => APPROVER,
            _ => ADMIN,
        }
    }

    /// Whether `who` may run `action`.
    pub fn allowed(who: &Authenticated, action: &str) -> bool {
        let label = Self::label_for(action);
        who.principal().labels.iter().any(|l| l == label)
    }

    /// Apply revocations to `credentials` at once (the admin surface of a serving gateway).
    pub fn with_credentials(
        mut self,
        credentials: Arc<crate::auth::credentials::Credentials>,
    ) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// After a state change: nudge the in-process gateway and, when it is known, wait (at
    /// most 2 s; a store outage must not hang the action) until it has read the change.
    async fn nudge(&self) {
        let mark = self.refresh.as_ref().map(|r| r.mark());
        if let Some(n) = &self.nudge {
            // Wake whoever waits now, and leave a permit for a refresher that is not waiting.
            n.notify_waiters();
            n.notify_one();
        }
        if let (Some(refresh), Some(mark)) = (&self.refresh, mark)
            && !refresh.wait_past(mark, Duration::from_secs(2)).await
        {
            tracing::warn!("the control state was not re-read within 2 s of an admin action");
        }
    }

    /// Wait for the serving gateway's control reads after each change (the admin surface of
    /// a serving gateway), so that containment is in force there when the action answers.
    pub fn with_refresh(mut self, refresh: Arc<crate::gateway::ControlRefresh>) -> Self {
        self.refresh = Some(refresh);
        self
    }

    /// End an action: write its audit row and pass its result on.
    async fn finish(
        &self,
        act: Act<'_>,
        result: Result<Done, AdminError>,
    ) -> Result<Done, AdminError> {
        let (decision, reason) = match (&result, &act.note) {
            (Ok(_), None) => (Decision::Allow, "ok".to_owned()),
            (Ok(_), Some(note)) => (Decision::Allow, format!("ok: {note}")),
            (Err(e), _) => (Decision::Deny, format!("{}: {e}", e.code())),
        };
        let row = AuditRecord {
            event_time: OffsetDateTime::now_utc(),
            request_id: uuid::Uuid::new_v4().to_string(),
            actor_id: act.who.principal().id.clone(),
            server_name: "mcp-warden".to_owned(),
            tool_name: act.action.to_owned(),
            exposed_name: format!("admin.{}", act.action),
            action_class: "admin".to_owned(),
            decision,
            stage: "admin",
            reason,
            outcome: if result.is_ok() { "ok" } else { "" },
            approval_id: act.approval_id,
            chain_id: "admin".to_owned(),
            args_digest: args_digest(act.args.as_object()),
            latency_us: i64::try_from(act.started.elapsed().as_micros()).unwrap_or(i64::MAX),
            output_decision: "",
            findings: String::new(),
            quarantine_id: act.quarantine_id,
            chain_depth: 0,
            arguments: None,
        };
        if let Err(error) = self.store.insert(std::slice::from_ref(&row)).await {
            tracing::error!(%error, action = act.action, "admin audit row not written");
            return Err(AdminError::Failed(format!(
                "{} {}, but its audit row could not be written: {error}",
                act.action,
                if result.is_ok() {
                    "was done"
                } else {
                    "was refused"
                }
            )));
        }
        result
    }

    /// Run `work` as `action` by `who`: label check, work, audit (refusals included).
    async fn run<F>(
        &self,
        who: &Authenticated,
        action: &'static str,
        args: Value,
        approval_id: Option<String>,
        work: F,
    ) -> Result<Done, AdminError>
    where
        F: Future<Output = Result<Done, AdminError>>,
    {
        let act = Act {
            approval_id,
            ..Act::new(who, action, args)
        };
        self.run_act(act, work).await
    }

    /// Run `work` as `act` says: label check, work, audit (refusals included).
    async fn run_act<F>(&self, act: Act<'_>, work: F) -> Result<Done, AdminError>
    where
        F: Future<Output = Result<Done, AdminError>>,
    {
        let result = if Self::allowed(act.who, act.action) {
            work.await
        } else {
            Err(AdminError::Forbidden {
                principal: act.who.principal().id.clone(),
                action: act.action,
                label: Self::label_for(act.action),
            })
        };
        self.finish(act, result).await
    }

    /// Refuse `action` before it ran (a face could not make sense of its input) and audit the
    /// refusal; a principal without the action's label is told that instead.
    pub async fn reject(
        &self,
        who: &Authenticated,
        action: &'static str,
        args: Value,
        error: AdminError,
    ) -> AdminError {
        self.run(who, action, args, None, async { Err(error) })
            .await
            .err()
            .unwrap_or_else(|| AdminError::Failed(format!("{action} was refused")))
    }

    fn specs(&self) -> Result<Vec<UpstreamSpec>, AdminError> {
        registry::load(&self.config.registry_dir).map_err(|e| AdminError::Failed(e.to_string()))
    }

    fn spec(&self, server: &str) -> Result<UpstreamSpec, AdminError> {
        self.specs()?
            .into_iter()
            .find(|s| s.name == server)
            .ok_or_else(|| {
                AdminError::UnknownServer(format!(
                    "no upstream named {server:?} in the registry ({})",
                    self.config.registry_dir.display()
                ))
            })
    }

    /// List approvals, newest first (expired ones are recorded as such first).
    pub async fn approvals_list(
        &self,
        who: &Authenticated,
        status: Option<Status>,
        limit: Option<u32>,
    ) -> Result<Done, AdminError> {
        let args = json!({"status": status.map(Status::as_str), "limit": limit});
        self.run(who, "approvals_list", args, None, async {
            let now = OffsetDateTime::now_utc();
            self.store.expire_approvals(now).await?;
            let limit = limit.unwrap_or(DEFAULT_LIST).clamp(1, MAX_LIST);
            let list: Vec<ApprovalView> = self
                .store
                .list_approvals(status, limit)
                .await?
                .iter()
                .map(|a| ApprovalView::new(a, now))
                .collect();
            let empty = status.map_or("no approvals".to_owned(), |s| format!("no {s} approvals"));
            Ok(Done::listing("approvals", &list, ApprovalView::line, empty))
        })
        .await
    }

    /// Show one approval.
    pub async fn approval_show(&self, who: &Authenticated, id: &str) -> Result<Done, AdminError> {
        let args = json!({ "id": id });
        self.run(who, "approval_show", args, Some(id.to_owned()), async {
            let a = self.store.approval(id).await?.ok_or(AdminError::Refused {
                id: id.to_owned(),
                refusal: Refusal::Unknown,
            })?;
            let view = ApprovalView::new(&a, OffsetDateTime::now_utc());
            Ok(Done {
                text: view.line(),
                data: json!({ "approval": view }),
            })
        })
        .await
    }

    /// Approve approval `id` (the approver must not be the requester).
    pub async fn approve(
        &self,
        who: &Authenticated,
        id: &str,
        reason: Option<String>,
    ) -> Result<Done, AdminError> {
        self.decide(who, "approve", Verdict::Approve, id, reason)
            .await
    }

    /// Deny approval `id`.
    pub async fn deny(
        &self,
        who: &Authenticated,
        id: &str,
        reason: Option<String>,
    ) -> Result<Done, AdminError> {
        self.decide(who, "deny", Verdict::Deny, id, reason).await
    }

    async fn decide(
        &self,
        who: &Authenticated,
        action: &'static str,
        verdict: Verdict,
        id: &str,
        reason: Option<String>,
    ) -> Result<Done, AdminError> {
        let args = json!({ "id": id, "reason": reason });
        self.run(who, action, args, Some(id.to_owned()), async {
            let by = Decider {
                id: &who.principal().id,
                is_approver: Self::allowed(who, action),
            };
            let now = OffsetDateTime::now_utc();
            let decided = self
                .store
                .decide_approval(id, by, verdict, reason, now)
                .await
                .map_err(|e| match e {
                    ApprovalError::Refused(refusal) => AdminError::Refused {
                        id: id.to_owned(),
                        refusal,
                    },
                    ApprovalError::Store(e) => e.into(),
                })?;
            self.nudge().await;
            let view = ApprovalView::new(&decided, now);
            let text = match verdict {
                Verdict::Approve => format!(
                    "approved {id}: {} may now call {} once with the same arguments (until {})",
                    view.principal, view.tool, view.expires_at
                ),
                Verdict::Deny => format!("denied {id}: {} by {}", view.tool, view.principal),
            };
            Ok(Done {
                text,
                data: json!({ "approval": view }),
            })
        })
        .await
    }

    /// Take an upstream out of service: no more calls reach it.
    pub async fn registry_disable(
        &self,
        who: &Authenticated,
        server: &str,
        reason: Option<String>,
    ) -> Result<Done, AdminError> {
        let args = json!({ "server": server, "reason": reason });
        self.run(who, "registry_disable", args, None, async {
            self.spec(server)?;
            let newly = self
                .store
                .disable_upstream(
                    server,
                    &who.principal().id,
                    reason.as_deref().unwrap_or_default(),
                    OffsetDateTime::now_utc(),
                )
                .await?;
            self.nudge().await;
            Ok(Done {
                text: if newly {
                    format!("disabled {server}: no more calls reach it")
                } else {
                    format!("{server} was already disabled")
                },
                data: json!({ "server": server, "disabled": true, "already": !newly }),
            })
        })
        .await
    }

    /// Put a disabled upstream back in service.
    pub async fn registry_enable(
        &self,
        who: &Authenticated,
        server: &str,
    ) -> Result<Done, AdminError> {
        let args = json!({ "server": server });
        self.run(who, "registry_enable", args, None, async {
            self.spec(server)?;
            let was = self.store.enable_upstream(server).await?;
            self.nudge().await;
            Ok(Done {
                text: if was {
                    format!("enabled {server} again")
                } else {
                    format!("{server} was not disabled")
                },
                data: json!({ "server": server, "disabled": false, "was_disabled": was }),
            })
        })
        .await
    }

    /// Revoke every credential issued so far for an audience. A registry server name stands
    /// for that server's audience.
    pub async fn tokens_revoke(
        &self,
        who: &Authenticated,
        audience: &str,
    ) -> Result<Done, AdminError> {
        let args = json!({ "audience": audience });
        self.run(who, "tokens_revoke", args, None, async {
            if audience.trim().is_empty() {
                return Err(AdminError::Invalid("audience must not be empty".to_owned()));
            }
            let specs = self.specs()?;
            let spec = specs
                .iter()
                .find(|s| s.name == audience)
                .or_else(|| specs.iter().find(|s| s.audience == audience))
                .ok_or_else(|| {
                    AdminError::UnknownServer(format!(
                        "no upstream in the registry is named {audience:?} or has that audience"
                    ))
                })?;
            let r = self
                .store
                .revoke_audience(
                    &spec.audience,
                    &who.principal().id,
                    OffsetDateTime::now_utc(),
                )
                .await?;
            if let Some(c) = &self.credentials {
                c.revoke_now(&r.audience, r.revoked_before);
            }
            self.nudge().await;
            let revoked_before = rfc3339(r.revoked_before);
            Ok(Done {
                text: format!(
                    "revoked every credential for audience {} ({}) issued before {revoked_before}",
                    r.audience, spec.name
                ),
                data: json!({
                    "audience": r.audience,
                    "server": spec.name,
                    "revoked_before": revoked_before,
                }),
            })
        })
        .await
    }

    /// Turn emergency write-approval mode on (every write and destructive call needs
    /// approval, whatever the policy says) or off.
    pub async fn emergency_write_approval(
        &self,
        who: &Authenticated,
        enabled: bool,
    ) -> Result<Done, AdminError> {
        let args = json!({ "enabled": enabled });
        self.run(who, "emergency_write_approval", args, None, async {
            let was = self
                .store
                .set_emergency(enabled, &who.principal().id, OffsetDateTime::now_utc())
                .await?;
            self.nudge().await;
            let state = if enabled { "on" } else { "off" };
            let text = if was == enabled {
                format!("emergency write-approval mode was already {state}")
            } else if enabled {
                "emergency write-approval mode is on: every write and destructive call needs approval"
                    .to_owned()
            } else {
                "emergency write-approval mode is off".to_owned()
            };
            Ok(Done {
                text,
                data: json!({ "emergency_write_approval": enabled, "was": was }),
            })
        })
        .await
    }

    /// Accept an upstream's drift: re-pin it from its live manifest (the serving gateway picks
    /// the new lock up on its next recheck). Refused while the upstream is contained, and when
    /// the poisoning scan reports findings (those need `mcp-warden pin --accept-findings`).
    pub async fn drift_accept(
        &self,
        who: &Authenticated,
        server: &str,
    ) -> Result<Done, AdminError> {
        let args = json!({ "server": server });
        self.run(who, "drift_accept", args, None, async {
            let spec = self.spec(server)?;
            if !spec.enabled {
                return Err(AdminError::Conflict(format!(
                    "{server} is disabled in {}",
                    spec.source.display()
                )));
            }
            if self.store.control_state().await?.is_disabled(server) {
                return Err(AdminError::Conflict(format!(
                    "{server} is disabled by containment; enable it first"
                )));
            }
            let report = pin_one(&spec, &self.config, &who.principal().id, None, false)
                .await
                .map_err(|e| AdminError::Failed(format!("{server}: {e:#}")))?;
            if report.outcome == Pinned::Refused {
                return Err(AdminError::Conflict(format!(
                    "{server}: the poisoning scan reports {} finding(s); review them with \
                     `mcp-warden pin --diff {server}` and pin with --accept-findings only if \
                     they are benign:\n{}",
                    report.findings.len(),
                    report.findings.join("\n")
                )));
            }
            self.nudge().await;
            let (changed, manifest) = match &report.outcome {
                Pinned::Written { manifest, .. } => (true, manifest.clone()),
                Pinned::Unchanged { manifest, .. } => (false, manifest.clone()),
                Pinned::Refused => (false, String::new()),
            };
            Ok(Done {
                text: format!("{server}: {}", report.outcome.describe()),
                data: json!({ "server": server, "repinned": changed, "manifest_sha256": manifest }),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests;

//! The approval state machine: pending → approved | denied | expired; approved → used | expired.
//!
//! An approval is bound to the principal that asked, the server and exposed tool name, the sha256
//! of the canonical arguments and the tool's pinned manifest hash; it is used at most once, and
//! never by anyone or anything else. The approver holds the `approver` label and is not the
//! requester. Pure: time is an argument, persistence is the store's business (which runs the
//! same checks and then makes each transition atomic).

use std::time::Duration;

use time::OffsetDateTime;

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Waiting for an approver.
    Pending,
    /// Approved: the identical call may run once.
    Approved,
    /// Denied by an approver.
    Denied,
    /// Not decided (or not used) before its expiry.
    Expired,
    /// Approved and spent by the call it was for.
    Used,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Approved,
        Self::Denied,
        Self::Expired,
        Self::Used,
    ];

    /// As stored and shown: `pending`, `approved`, `denied`, `expired`, `used`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Used => "used",
        }
    }

    /// The inverse of [`Status::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an approval is bound to: the exact call of the exact principal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Binding {
    /// The requesting principal's id.
    pub principal: String,
    /// The upstream's registry name.
    pub server: String,
    /// The exposed tool name the agent called.
    pub tool: String,
    /// sha256 hex of the canonical JSON arguments.
    pub args_digest: String,
    /// The tool's pinned sha256 from the lock.
    pub manifest_hash: String,
}

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Its id (shown to the agent and the approver).
    pub id: String,
    /// The requesting principal's id.
    pub principal: String,
    /// The upstream's registry name.
    pub server: String,
    /// The exposed tool name.
    pub tool: String,
    /// sha256 hex of the canonical JSON arguments.
    pub args_digest: String,
    /// The tool's pinned sha256 when the approval was asked for.
    pub manifest_hash: String,
    /// Where it stands (as recorded; see [`Approval::effective_status`]).
    pub status: Status,
    /// When it was asked for.
    pub created_at: OffsetDateTime,
    /// When it stops being decidable or usable; fixed at creation.
    pub expires_at: OffsetDateTime,
    /// Who approved or denied it.
    pub decided_by: Option<String>,
    /// When it was approved or denied.
    pub decided_at: Option<OffsetDateTime>,
    /// The approver's reason, if one was given.
    pub reason: Option<String>,
    /// When the call it was for ran.
    pub used_at: Option<OffsetDateTime>,
}

/// An approver's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let the call run once.
    Approve,
    /// Refuse it.
    Deny,
}

/// Who decides: the principal's id and whether it holds the `approver` label.
#[derive(Debug, Clone, Copy)]
pub struct Decider<'a> {
    /// The deciding principal's id.
    pub id: &'a str,
    /// Whether it holds the `approver` label.
    pub is_approver: bool,
}

/// Why a transition is refused. Each has a stable snake_case code for the audit store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    /// The requester tried to decide its own approval.
    #[error("an approval cannot be decided by the principal that asked for it")]
    SelfApproval,
    /// The decider lacks the `approver` label.
    #[error("only a principal with the `approver` label may decide approvals")]
    NotApprover,
    /// It was already decided (approved).
    #[error("the approval is no longer pending")]
    NotPending,
    /// It expired.
    #[error("the approval has expired")]
    Expired,
    /// It was already used once.
    #[error("the approval was already used")]
    Used,
    /// An approver denied it.
    #[error("the approval was denied")]
    Denied,
    /// No approver has decided it yet.
    #[error("the approval is still pending")]
    StillPending,
    /// The call's arguments differ from the approved ones.
    #[error("the arguments differ from the approved call")]
    ArgsMismatch,
    /// The call is for another tool (or server) than the approved one.
    #[error("the approval is for another tool")]
    ToolMismatch,
    /// The call comes from another principal than the one the approval was for.
    #[error("the approval is for another principal")]
    PrincipalMismatch,
    /// The tool's pinned definition changed since the approval was asked for.
    #[error("the tool's pinned definition changed since the approval was asked for")]
    ManifestChanged,
    /// There is no approval with that id.
    #[error("no such approval")]
    Unknown,
}

impl Refusal {
    /// The stable code written to the audit store.
    pub fn code(self) -> &'static str {
        match self {
            Self::SelfApproval => "approval_self",
            Self::NotApprover => "approval_not_approver",
            Self::NotPending => "approval_not_pending",
            Self::Expired => "approval_expired",
            Self::Used => "approval_used",
            Self::Denied => "approval_denied",
            Self::StillPending => "approval_pending",
            Self::ArgsMismatch => "approval_args_mismatch",
            Self::ToolMismatch => "approval_tool_mismatch",
            Self::PrincipalMismatch => "approval_principal_mismatch",
            Self::ManifestChanged => "approval_manifest_changed",
            Self::Unknown => "approval_unknown",
        }
    }
}

impl Approval {
    /// A new pending approval for `binding`, expiring `ttl` after `now`.
    pub fn pending(id: String, binding: Binding, now: OffsetDateTime, ttl: Duration) -> Self {
        let ttl = time::Duration::try_from(ttl).unwrap_or(time::Duration::MAX);
        Self {
            id,
            principal: binding.principal,
            server: binding.server,
            tool: binding.tool,
            args_digest: binding.args_digest,
            manifest_hash: binding.manifest_hash,
            status: Status::Pending,
            created_at: now,
            expires_at: now.saturating_add(ttl),
            decided_by: None,
            decided_at: None,
            reason: None,
            used_at: None,
        }
    }

    /// What it is bound to.
    pub fn binding(&self) -> Binding {
        Binding {
            principal: self.principal.clone(),
            server: self.server.clone(),
            tool: self.tool.clone(),
            args_digest: self.args_digest.clone(),
            manifest_hash: self.manifest_hash.clone(),
        }
    }

    /// Whether its expiry has come at `now`.
    pub fn is_past_expiry(&self, now: OffsetDateTime) -> bool {
        now >= self.expires_at
    }

    /// The status at `now`: a pending or approved approval past its expiry is expired, whether
    /// or not the store has recorded that yet.
    pub fn effective_status(&self, now: OffsetDateTime) -> Status {
        match self.status {
            Status::Pending | Status::Approved if self.is_past_expiry(now) => Status::Expired,
            s => s,
        }
    }

    /// Approve or deny it: only an `approver` who is not the requester, only while it is pending
    /// and unexpired. Returns the decided approval.
    pub fn decide(
        &self,
        by: Decider<'_>,
        verdict: Verdict,
        reason: Option<String>,
        now: OffsetDateTime,
    ) -> Result<Self, Refusal> {
        if !by.is_approver {
            return Err(Refusal::NotApprover);
        }
        if by.id == self.principal {
            return Err(Refusal::SelfApproval);
        }
        match self.effective_status(now) {
            Status::Pending => {}
            Status::Expired => return Err(Refusal::Expired),
            Status::Approved | Status::Denied | Status::Used => return Err(Refusal::NotPending),
        }
        Ok(Self {
            status: match verdict {
                Verdict::Approve => Status::Approved,
                Verdict::Deny => Status::Denied,
            },
            decided_by: Some(by.id.to_owned()),
            decided_at: Some(now),
            reason,
            ..self.clone()
        })
    }

    /// Whether the call `binding` may spend this approval at `now`. The binding is checked first
    /// (someone else's approval says nothing about its state), then the state.
    pub fn check_use(&self, binding: &Binding, now: OffsetDateTime) -> Result<(), Refusal> {
        if binding.principal != self.principal {
            return Err(Refusal::PrincipalMismatch);
        }
        if binding.tool != self.tool || binding.server != self.server {
            return Err(Refusal::ToolMismatch);
        }
        if binding.args_digest != self.args_digest {
            return Err(Refusal::ArgsMismatch);
        }
        if binding.manifest_hash != self.manifest_hash {
            return Err(Refusal::ManifestChanged);
        }
        match self.effective_status(now) {
            Status::Approved => Ok(()),
            Status::Pending => Err(Refusal::StillPending),
            Status::Denied => Err(Refusal::Denied),
            Status::Expired => Err(Refusal::Expired),
            Status::Used => Err(Refusal::Used),
        }
    }

    /// Spend it for `binding` at `now` (after [`Approval::check_use`]). Returns the used approval.
    pub fn consume(&self, binding: &Binding, now: OffsetDateTime) -> Result<Self, Refusal> {
        self.check_use(binding, now)?;
        Ok(Self {
            status: Status::Used,
            used_at: Some(now),
            ..self.clone()
        })
    }
}

/// A binding for tests: alice's call of `notes__add_note`.
#[cfg(test)]
pub fn sample_binding() -> Binding {
    Binding {
        principal: "alice".into(),
        server: "notes".into(),
        tool: "notes__add_note".into(),
        args_digest: "a".repeat(64),
        manifest_hash: "m".repeat(64),
    }
}

#[cfg(test)]
mod tests;

//! `[audit]`: what the audit store keeps beyond the fixed columns, and what happens to calls
//! while it refuses writes.

use serde::{Deserialize, Serialize};

/// The raw `[audit]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    /// Keep each call's arguments (canonical JSON) in `mcp_audit.arguments`.
    pub(super) record_arguments: bool,
    /// Serve calls while the store refuses writes.
    pub(super) fail_open: bool,
}

/// What the audit store keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditConfig {
    /// `record_arguments` (default false): store every call's arguments as canonical JSON in
    /// `mcp_audit.arguments`, so `policy replay` can re-decide rules on `mcp.args`. Off by
    /// default because arguments can hold secrets and personal data: whoever reads the store
    /// reads them. Only the sha256 digest is kept otherwise.
    pub record_arguments: bool,
    /// `fail_open` (default false): serve calls while the store refuses audit writes (their
    /// rows wait in the spool and the writer's queue). Off: such calls are refused with
    /// `store_unavailable`.
    pub fail_open: bool,
}

impl From<&RawAudit> for AuditConfig {
    fn from(raw: &RawAudit) -> Self {
        Self {
            record_arguments: raw.record_arguments,
            fail_open: raw.fail_open,
        }
    }
}

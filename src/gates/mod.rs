//! The five detection gates of DESIGN.md, evaluated continuously over the store, and paging.
//!
//! A gate is a count or a ratio over a trailing window of the audit store (`mcp_audit`) or of
//! the gate events the gateway records (`gate_events`), a page condition (a threshold, held for
//! a while), a target (what good looks like) and an owner. [`eval`] decides a gate's state
//! from its sample and its remembered state (pure); [`evaluator`] runs the gates every
//! `gates.interval_sec` on the one replica holding the `gates` lease and sends pages through
//! [`paging`]; `mcp-warden gates` prints the same evaluation without a running gateway.

pub mod eval;
pub mod evaluator;
pub mod paging;

/// One of the five gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GateKind {
    /// Write or destructive calls ALLOWed without an approval (`mcp_audit`).
    UnapprovedWrites,
    /// Upstreams connected without a valid lock, or whose fingerprint changed
    /// (`gate_events.gate = 'registry_drift'`).
    RegistryDrift,
    /// Manifest drift outside every deploy window with no change ticket
    /// (`gate_events.gate = 'manifest_drift_outside_window'`).
    ManifestDrift,
    /// Calls refused because the principal's scopes do not cover them, over all calls.
    ScopeMismatch,
    /// Dispatched calls whose output was QUARANTINEd, over all dispatched calls.
    QuarantineRatio,
}

/// Whether a gate counts events or compares two counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// The value is a number of rows in the window.
    Count,
    /// The value is hits / total in the window, in [0, 1].
    Ratio,
}

/// How the value is compared with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// value > threshold
    Above,
    /// value ≥ threshold
    AtLeast,
}

impl Compare {
    /// Whether `value` meets the page condition against `threshold`.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Above => value > threshold,
            Self::AtLeast => value >= threshold,
        }
    }

    /// `>` or `≥`, for people.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Above => ">",
            Self::AtLeast => ">=",
        }
    }
}

impl GateKind {
    /// Every gate, in DESIGN.md's order.
    pub const ALL: [Self; 5] = [
        Self::UnapprovedWrites,
        Self::RegistryDrift,
        Self::ManifestDrift,
        Self::ScopeMismatch,
        Self::QuarantineRatio,
    ];

    /// The gate's name: its config table (`[gates.NAME]`), metric label and store key.
    pub fn name(self) -> &'static str {
        match self {
            Self::UnapprovedWrites => "unapproved_writes",
            Self::RegistryDrift => "registry_drift",
            Self::ManifestDrift => "manifest_drift",
            Self::ScopeMismatch => "scope_mismatch",
            Self::QuarantineRatio => "quarantine_ratio",
        }
    }

    /// What the gate watches, for page summaries.
    pub fn title(self) -> &'static str {
        match self {
            Self::UnapprovedWrites => "unapproved write calls",
            Self::RegistryDrift => "registry drift (unknown or changed upstream servers)",
            Self::ManifestDrift => "manifest drift outside a deploy window",
            Self::ScopeMismatch => "scope mismatch attempts",
            Self::QuarantineRatio => "QUARANTINE ratio",
        }
    }

    /// Count or ratio.
    pub fn measure(self) -> Measure {
        match self {
            Self::UnapprovedWrites | Self::RegistryDrift | Self::ManifestDrift => Measure::Count,
            Self::ScopeMismatch | Self::QuarantineRatio => Measure::Ratio,
        }
    }

    /// The comparison of the page condition: DESIGN.md says "≥ 1 %" for scope mismatches and
    /// "> N" for the others.
    pub fn compare(self) -> Compare {
        match self {
            Self::ScopeMismatch => Compare::AtLeast,
            _ => Compare::Above,
        }
    }

    /// The gate named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

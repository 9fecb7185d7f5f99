//! `mcp-warden assess`: score a deployment against the seven risks of the design (the table
//! in DESIGN.md) from what can be checked without running it: the registry and its locks, the
//! policies, the credential modes, inbound authentication, the chain and gate configuration
//! and, when there is an audit store, the last 24 hours of evidence.
//!
//! # The model
//!
//! For each risk four factors are read from concrete facts (`rules`):
//!
//! - **precondition** (0–1): how present the attacker's precondition is (e.g. the share of
//!   enabled upstreams without a valid lock); raised to 1 when the audit shows it happening;
//! - **blast radius** (1–3): from the action classes and the number of exposed tools (`blast`);
//! - **control**: whether the primary control of the risk is on (off: ×1, on: ×0.2);
//! - **detection**: whether the detection signal is covered (covered: ×0.6, not: ×1).
//!
//! `score = 10 × precondition × blast / 3 × control × detection`, rounded to one decimal, so
//! 10 is "present, maximal blast radius, no control, unseen" and 0 "precondition absent".
//! Every fix says what it changes (a factor) and the file or key to change; its value is the
//! score it removes, and the fix list is sorted by that.
//!
//! `facts` gathers a [`Deployment`] (the IO); `probes` (shared facts: blast radius, policy
//! probes) and `rules` (one function per risk) are pure.

pub mod facts;
pub mod probes;
pub mod rules;

pub use facts::Deployment;

/// One of the four factors of a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Factor {
    /// The attacker's precondition.
    Precondition,
    /// The blast radius.
    Blast,
    /// The primary control.
    Control,
    /// The detection signal.
    Detection,
}

/// The factors of one risk.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Factors {
    /// 0–1.
    pub precondition: f64,
    /// 1–3.
    pub blast: f64,
    /// The primary control is on.
    pub control_on: bool,
    /// The detection signal is covered.
    pub detection_covered: bool,
}

impl Factors {
    /// The exploitability score, 0–10, one decimal.
    pub fn score(&self) -> f64 {
        let control = if self.control_on { 0.2 } else { 1.0 };
        let detection = if self.detection_covered { 0.6 } else { 1.0 };
        let raw = 10.0
            * self.precondition.clamp(0.0, 1.0)
            * (self.blast.clamp(1.0, 3.0) / 3.0)
            * control
            * detection;
        (raw * 10.0).round() / 10.0
    }

    /// These factors once `effect` is applied.
    pub fn with(mut self, effect: Effect) -> Self {
        match effect {
            Effect::ControlOn => self.control_on = true,
            Effect::DetectionOn => self.detection_covered = true,
            Effect::Precondition(p) => self.precondition = self.precondition.min(p),
        }
        self
    }
}

/// What a fix changes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Effect {
    /// Turns the primary control on.
    ControlOn,
    /// Covers the detection signal.
    DetectionOn,
    /// Lowers the precondition to this.
    Precondition(f64),
}

/// A fact behind a factor.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Fact {
    /// The factor it explains.
    pub factor: Factor,
    /// What was found.
    pub text: String,
}

/// Something to change.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Fix {
    /// The risk it lowers.
    pub risk: &'static str,
    /// What to do.
    pub action: String,
    /// The file and key to change.
    pub location: String,
    /// What it changes.
    pub effect: Effect,
    /// How much the risk's score drops when it is done (alone).
    pub reduction: f64,
}

/// One risk, scored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Risk {
    /// Stable id, e.g. `tool_poisoning`.
    pub id: &'static str,
    /// As DESIGN.md names it.
    pub name: &'static str,
    /// Its factors.
    pub factors: Factors,
    /// The exploitability score, 0–10.
    pub score: f64,
    /// The facts behind the factors.
    pub facts: Vec<Fact>,
    /// Its fixes, biggest reduction first.
    pub fixes: Vec<Fix>,
}

impl Risk {
    /// A risk from its factors, facts and (effect, action, location) fixes.
    pub fn new(
        id: &'static str,
        name: &'static str,
        factors: Factors,
        facts: Vec<Fact>,
        fixes: Vec<(Effect, String, String)>,
    ) -> Self {
        let score = factors.score();
        let mut fixes: Vec<Fix> = fixes
            .into_iter()
            .map(|(effect, action, location)| Fix {
                risk: id,
                action,
                location,
                effect,
                reduction: ((score - factors.with(effect).score()) * 10.0).round() / 10.0,
            })
            .collect();
        fixes.sort_by(|a, b| b.reduction.total_cmp(&a.reduction));
        Self {
            id,
            name,
            factors,
            score,
            facts,
            fixes,
        }
    }
}

/// The whole assessment.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Assessment {
    /// Every risk, in DESIGN.md order.
    pub risks: Vec<Risk>,
    /// Every fix, biggest score reduction first (ties: the higher-scoring risk first).
    pub fixes: Vec<Fix>,
    /// The threshold.
    pub fail_above: f64,
    /// Whether any risk scores above it.
    pub failed: bool,
    /// What the audit store showed, or why there was nothing to read.
    pub audit: String,
}

/// Score `d` and order the fixes.
pub fn assess(d: &Deployment, fail_above: f64) -> Assessment {
    let risks = rules::all(d);
    let score_of = |id: &str| risks.iter().find(|r| r.id == id).map_or(0.0, |r| r.score);
    let mut fixes: Vec<Fix> = risks
        .iter()
        .flat_map(|r| r.fixes.iter().cloned())
        .filter(|f| f.reduction > 0.0)
        .collect();
    fixes.sort_by(|a, b| {
        b.reduction
            .total_cmp(&a.reduction)
            .then(score_of(b.risk).total_cmp(&score_of(a.risk)))
    });
    let failed = risks.iter().any(|r| r.score > fail_above);
    Assessment {
        risks,
        fixes,
        fail_above,
        failed,
        audit: d.evidence.as_ref().map_or_else(
            || d.audit_note.clone(),
            |e| {
                format!(
                    "last 24 h: {} call(s), {} unapproved write(s), {} scope mismatch(es), {} quarantine(s), {} drift refusal(s), {} chain refusal(s)",
                    e.calls,
                    e.unapproved_writes,
                    e.scope_mismatches,
                    e.quarantines,
                    e.drift_refusals,
                    e.chain_refusals
                )
            },
        ),
    }
}

#[cfg(test)]
mod tests;

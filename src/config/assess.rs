//! `[assess]`: the threshold of `mcp-warden assess`.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The raw `[assess]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAssess {
    /// Exit 1 when any risk scores above this (0–10).
    pub(super) fail_above: f64,
}

impl Default for RawAssess {
    fn default() -> Self {
        Self { fail_above: 7.0 }
    }
}

/// How `mcp-warden assess` judges a deployment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AssessConfig {
    /// `fail_above` (default 7.0): `assess` exits 1 when any risk's exploitability score is
    /// above it; `--fail-above` overrides it.
    pub fail_above: f64,
}

impl Default for AssessConfig {
    fn default() -> Self {
        Self { fail_above: 7.0 }
    }
}

impl TryFrom<&RawAssess> for AssessConfig {
    type Error = ConfigError;

    fn try_from(raw: &RawAssess) -> Result<Self, ConfigError> {
        if !(raw.fail_above.is_finite() && (0.0..=10.0).contains(&raw.fail_above)) {
            return Err(ConfigError::Value {
                file: None,
                key: "assess.fail_above",
                problem: format!("expected a score in [0, 10], got {}", raw.fail_above),
            });
        }
        Ok(Self {
            fail_above: raw.fail_above,
        })
    }
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format, Serialized, Toml};

    use super::super::{Config, RawConfig};

    fn load(toml: &str) -> Result<Config, String> {
        let figment =
            Figment::from(Serialized::defaults(RawConfig::default())).merge(Toml::string(toml));
        Config::from_figment(figment, None).map_err(|e| e.to_string())
    }

    #[test]
    fn audit_and_assess_keys() {
        let d = load("").unwrap();
        assert!(
            !d.audit.record_arguments,
            "arguments can hold secrets: off by default"
        );
        assert!((d.assess.fail_above - 7.0).abs() < f64::EPSILON);
        let c = load("[audit]\nrecord_arguments = true\n[assess]\nfail_above = 4.5\n").unwrap();
        assert!(c.audit.record_arguments);
        assert!((c.assess.fail_above - 4.5).abs() < f64::EPSILON);
        let e = load("[assess]\nfail_above = 11\n").unwrap_err();
        assert!(e.contains("assess.fail_above"), "{e}");
        let e = load("[audit]\nrecord_args = true\n").unwrap_err();
        assert!(e.contains("record_args"), "{e}");
    }
}

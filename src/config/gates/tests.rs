#![expect(
    clippy::result_large_err,
    reason = "figment::Jail closures return figment::Error, as its API requires"
)]

use std::path::Path;
use std::time::Duration;

use figment::Jail;
use figment::providers::{Env, Format, Serialized, Toml};

use super::super::{Config, Figment, RawConfig};
use super::*;

fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, String> {
    let mut out = Err(String::new());
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file("warden.toml", toml)?;
        for (k, v) in env {
            jail.set_env(k, v);
        }
        let figment = Figment::from(Serialized::defaults(RawConfig::default()))
            .merge(Toml::file_exact("warden.toml"))
            .merge(Env::prefixed("WARDEN_").split("__"));
        out = Config::from_figment(figment, Some(Path::new("/etc/warden")))
            .map_err(|e| e.to_string());
        Ok(())
    });
    out
}

#[test]
fn defaults_are_design_md_table() {
    let c = load("", &[]).unwrap();
    assert!(c.gates.enabled);
    assert_eq!(c.gates.interval, Duration::from_secs(15));
    let rows: Vec<(&str, f64, f64, u64, u64, u64, &str)> = c
        .gates
        .gates
        .iter()
        .map(|g| {
            (
                g.kind.name(),
                g.target,
                g.threshold,
                g.window.as_secs(),
                g.hold.as_secs(),
                g.min_calls,
                g.owner.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "unapproved_writes",
                0.0,
                0.0,
                600,
                0,
                0,
                "Governance On-call"
            ),
            ("registry_drift", 0.0, 0.0, 3600, 0, 0, "Platform Security"),
            ("manifest_drift", 0.0, 0.0, 3600, 0, 0, "MCP Platform"),
            ("scope_mismatch", 0.001, 0.01, 300, 900, 20, "Identity Team"),
            ("quarantine_ratio", 0.01, 0.03, 300, 900, 20, "Safety Team"),
        ]
    );
    assert_eq!(c.paging.url, None);
    assert_eq!(c.paging.format, PageFormat::Generic);
}

#[test]
fn a_gate_table_overrides_only_what_it_names() {
    let c = load(
        "[gates]\ninterval_sec = 0.5\n[gates.quarantine_ratio]\nthreshold = 0.1\nfor_sec = 0\nowner = \"SecOps\"\n",
        &[("WARDEN_GATES__SCOPE_MISMATCH__MIN_CALLS", "5")],
    )
    .unwrap();
    assert_eq!(c.gates.interval, Duration::from_millis(500));
    let q = c.gates.gate(GateKind::QuarantineRatio).unwrap();
    assert_eq!(
        (q.threshold, q.hold, q.owner.as_str()),
        (0.1, Duration::ZERO, "SecOps")
    );
    assert_eq!((q.target, q.min_calls), (0.01, 20));
    assert_eq!(c.gates.gate(GateKind::ScopeMismatch).unwrap().min_calls, 5);
}

#[test]
fn bad_gate_settings_name_the_key() {
    for (toml, key) in [
        ("[gates]\ninterval_sec = 0\n", "gates.interval_sec"),
        (
            "[gates.scope_mismatch]\nthreshold = 1.5\n",
            "gates.scope_mismatch.threshold",
        ),
        (
            "[gates.unapproved_writes]\ntarget = -1\n",
            "gates.unapproved_writes.target",
        ),
        (
            "[gates.registry_drift]\nmin_calls = 3\n",
            "gates.registry_drift.min_calls",
        ),
        (
            "[gates.manifest_drift]\nwindow_sec = 0\n",
            "gates.manifest_drift.window_sec",
        ),
        (
            "[gates.quarantine_ratio]\nowner = \" \"\n",
            "gates.quarantine_ratio.owner",
        ),
        ("[paging]\nformat = \"opsgenie\"\n", "paging.format"),
        (
            "[paging]\nformat = \"pagerduty\"\n",
            "paging.routing_key_env",
        ),
        (
            "[paging]\nwebhook_url = \"ftp://x\"\n",
            "paging.webhook_url",
        ),
        (
            "[paging]\nwebhook_url_env = \"NOT_SET_ANYWHERE\"\n",
            "paging.webhook_url_env",
        ),
        (
            "[paging]\nrouting_key_env = \"K\"\n",
            "paging.routing_key_env",
        ),
    ] {
        let e = load(toml, &[]).unwrap_err();
        assert!(e.contains(&format!("`{key}`")), "{toml}: {e}");
    }
    // Unknown keys stop the start, naming the key.
    for (toml, key) in [
        ("[gates.unapproved_writes]\nthreshhold = 1\n", "threshhold"),
        ("[gates.nope]\nenabled = false\n", "nope"),
        ("[paging]\nurl = \"https://x\"\n", "url"),
    ] {
        let e = load(toml, &[]).unwrap_err();
        assert!(
            e.contains(key) && e.contains("unknown field"),
            "{toml}: {e}"
        );
    }
}

#[test]
fn pagerduty_reads_its_routing_key_and_never_prints_it() {
    let c = load(
        "[paging]\nformat = \"pagerduty\"\nrouting_key_env = \"PD_KEY\"\n",
        &[("PD_KEY", "R0UTINGKEY-secret")],
    )
    .unwrap();
    assert_eq!(c.paging.url.as_deref(), Some(PAGERDUTY_URL));
    assert_eq!(c.paging.routing_key.as_deref(), Some("R0UTINGKEY-secret"));
    let shown = format!("{:?}", c.paging);
    assert!(
        !shown.contains("R0UTINGKEY") && !shown.contains("pagerduty.com"),
        "{shown}"
    );
    let c = load(
        "[paging]\nwebhook_url_env = \"HOOK\"\n",
        &[("HOOK", "http://127.0.0.1:9/hook")],
    )
    .unwrap();
    assert_eq!(c.paging.url.as_deref(), Some("http://127.0.0.1:9/hook"));
}

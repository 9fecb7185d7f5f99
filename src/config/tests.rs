#![expect(
    clippy::result_large_err,
    reason = "figment::Jail closures return figment::Error, as its API requires"
)]

use std::path::Path;
use std::time::Duration;

use figment::Jail;

use super::*;

fn load_in_jail(toml: &str, env: &[(&str, &str)]) -> Result<Config, String> {
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
fn defaults_are_the_embedded_ones() {
    let c = load_in_jail("", &[]).unwrap();
    assert_eq!(c.registry_dir, Path::new("/etc/warden/registry"));
    assert_eq!(c.store, StoreUrl::Sqlite("/etc/warden/warden.db".into()));
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.upstream.call_timeout, Duration::from_secs(60));
}

#[test]
fn file_then_env_override() {
    let c = load_in_jail(
        "store = \"sqlite:///var/lib/w.db\"\n[upstream]\ncall_timeout_sec = 2.5\n",
        &[
            ("WARDEN_LISTEN", "127.0.0.1:9999"),
            ("WARDEN_UPSTREAM__RESTART_BACKOFF_MS", "50"),
        ],
    )
    .unwrap();
    assert_eq!(c.store, StoreUrl::Sqlite("/var/lib/w.db".into()));
    assert_eq!(c.listen.to_string(), "127.0.0.1:9999");
    assert_eq!(c.upstream.call_timeout, Duration::from_millis(2500));
    assert_eq!(c.upstream.restart_backoff, Duration::from_millis(50));
}

#[test]
fn bad_config_names_the_key() {
    let cases: &[(&str, &str)] = &[
        ("listen = \"nowhere\"", "`listen`"),
        ("store = \"mysql://x\"", "`store`"),
        ("registry = \"x\"", "registry"),
        (
            "[upstream]\ncall_timeout_sec = -1",
            "upstream.call_timeout_sec",
        ),
        (
            "[upstream]\nrestart_backoff_ms = \"fast\"",
            "restart_backoff_ms",
        ),
    ];
    for (toml, needle) in cases {
        let err = load_in_jail(toml, &[]).unwrap_err();
        assert!(err.contains(needle), "{toml:?}: {err}");
    }
}

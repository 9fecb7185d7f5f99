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

#[test]
fn default_principals_are_the_local_agent_and_the_operator() {
    let c = load_in_jail("", &[]).unwrap();
    let ids: Vec<_> = c.principals.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["local", "operator"]);
    assert!(c.principals[0].scopes.covers("notes", "write"));
    assert!(c.principals[0].labels.is_empty());
    assert_eq!(c.principals[1].labels, ["approver", "admin"]);
    assert!(!c.principals[1].scopes.covers("notes", "read"));
    assert_eq!(c.approvals.ttl, Duration::from_secs(3600));
    assert_eq!(c.approvals.wait, Duration::ZERO);
}

const PRINCIPALS: &str = r#"
[[principals]]
id = "local"
scopes = ["*:*"]
[[principals]]
id = "operator"
labels = ["approver"]
[[principals]]
id = "alice"
labels = ["read_only"]
scopes = ["notes:read"]
api_key_env = "ALICE_KEY"
"#;

#[test]
fn configured_principals_read_their_keys_from_the_environment() {
    let c = load_in_jail(PRINCIPALS, &[("ALICE_KEY", "alice-key-0123456789")]).unwrap();
    let alice = c.principals.iter().find(|p| p.id == "alice").unwrap();
    assert!(alice.api_key_sha256.is_some());
    assert!(alice.scopes.covers("notes", "read"));
    // The key never appears in Debug output, not even as a digest.
    let debug = format!("{c:?}");
    assert!(!debug.contains("alice-key-0123456789") && debug.contains("<set>"));
}

#[test]
fn bad_principals_stop_the_start_with_the_key() {
    for (toml, env, needle) in [
        (PRINCIPALS, &[][..], "ALICE_KEY is not set"),
        (PRINCIPALS, &[("ALICE_KEY", "short")][..], "shorter than 16"),
        (
            "[[principals]]\nid = \"local\"\nscopes = [\"notes\"]\n[[principals]]\nid = \"operator\"\n",
            &[][..],
            "principals.scopes",
        ),
        ("[[principals]]\nid = \"bob\"\n", &[][..], "stdio_principal"),
        (
            "[[principals]]\nid = \"local\"\n[[principals]]\nid = \"local\"\n",
            &[][..],
            "listed twice",
        ),
    ] {
        let e = load_in_jail(toml, env).unwrap_err();
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

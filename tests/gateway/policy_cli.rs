//! `mcp-warden policy check` and `mcp-warden policy test`, run as real processes on a
//! deployment folder holding the shipped registry and policies.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::WARDEN;

/// The default principals, a read-only one and one that may only read notes.
const WARDEN_TOML: &str = r#"registry_dir = "registry"
policies_dir = "policies"
stdio_principal = "local"
cli_principal = "operator"

[[principals]]
id = "local"
scopes = ["*:*"]

[[principals]]
id = "operator"
labels = ["approver", "admin"]

[[principals]]
id = "rita"
labels = ["read_only"]
scopes = ["notes:*"]

[[principals]]
id = "nina"
scopes = ["notes:read"]
"#;

/// A deployment folder: `warden.toml`, the shipped `registry/notes.toml` and `policies/*.yaml`.
fn deployment() -> anyhow::Result<tempfile::TempDir> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::create_dir(root.join("registry"))?;
    std::fs::copy(
        repo.join("registry/notes.toml"),
        root.join("registry/notes.toml"),
    )?;
    std::fs::create_dir(root.join("policies"))?;
    for entry in std::fs::read_dir(repo.join("policies"))? {
        let path = entry?.path();
        if let Some(name) = path.file_name()
            && path.extension().is_some_and(|e| e == "yaml")
        {
            std::fs::copy(&path, root.join("policies").join(name))?;
        }
    }
    std::fs::write(root.join("warden.toml"), WARDEN_TOML)?;
    Ok(dir)
}

/// `mcp-warden policy ARGS… --config DIR/warden.toml`, from DIR, with nothing from the
/// environment reconfiguring it.
fn policy(dir: &Path, args: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = Command::new(WARDEN);
    cmd.arg("policy")
        .args(args)
        .arg("--config")
        .arg(dir.join("warden.toml"))
        .current_dir(dir);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WARDEN_") {
            cmd.env_remove(key);
        }
    }
    Ok(cmd.output()?)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `policy test --principal WHO --tool TOOL --args ARGS --json`, decoded.
fn decide(dir: &Path, who: &str, tool: &str, args: &str) -> anyhow::Result<Value> {
    let argv = [
        "test",
        "--principal",
        who,
        "--tool",
        tool,
        "--args",
        args,
        "--json",
    ];
    let out = policy(dir, &argv)?;
    anyhow::ensure!(
        out.status.success(),
        "policy test {tool} exited {}: {}",
        out.status,
        text(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[test]
fn check_lists_the_shipped_policy() -> anyhow::Result<()> {
    let dir = deployment()?;
    let out = policy(dir.path(), &["check"])?;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("registry: ") && stdout.contains("(1 upstream(s): notes)"),
        "{stdout}"
    );
    assert!(stdout.contains("(5 rule(s) in 1 file(s))"), "{stdout}");
    assert!(stdout.contains("00-baseline.yaml: 5 rule(s)"), "{stdout}");
    for (decision, id) in [
        ("DENY", "deny-unregistered-server"),
        ("DENY", "deny-scope-mismatch"),
        ("DENY", "deny-destructive"),
        ("ALLOW", "allow-reads"),
        ("REQUIRE_APPROVAL", "require-approval-for-write"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().eq([decision, id])),
            "{decision} {id} in {stdout}"
        );
    }
    assert!(stdout.ends_with("ok\n"), "{stdout}");
    Ok(())
}

#[test]
fn check_refuses_a_broken_file_naming_file_rule_and_key() -> anyhow::Result<()> {
    let dir = deployment()?;
    let broken: PathBuf = dir.path().join("policies/10-extra.yaml");
    std::fs::write(
        &broken,
        "version: v1\nrules:\n  - id: deny-x\n    match: { labels: { mcp.verb: write } }\n    decision: DENY\n",
    )?;
    let out = policy(dir.path(), &["check"])?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("mcp-warden policy check: ")
            && stderr.contains("10-extra.yaml: rule `deny-x` (line 3): key `match.labels.mcp.verb`: unknown label key"),
        "{stderr}"
    );
    // `policy test` needs a valid policy too
    let out = policy(
        dir.path(),
        &["test", "--principal", "local", "--tool", "notes__echo"],
    )?;
    assert_eq!(out.status.code(), Some(2));
    Ok(())
}

#[test]
fn test_explains_the_shipped_decisions() -> anyhow::Result<()> {
    let dir = deployment()?;
    let d = dir.path();
    let add = r#"{"title":"t","body":"b"}"#;
    // the demo's reads are allowed, its writes need approval, everything else is denied
    for (who, tool, args, decision, rule, listed) in [
        (
            "local",
            "notes__list_notes",
            "{}",
            "ALLOW",
            "allow-reads",
            true,
        ),
        (
            "local",
            "notes__echo",
            r#"{"text":"hi"}"#,
            "ALLOW",
            "allow-reads",
            true,
        ),
        (
            "local",
            "notes__add_note",
            add,
            "REQUIRE_APPROVAL",
            "require-approval-for-write",
            true,
        ),
        (
            "local",
            "notes__rug_pull",
            "{}",
            "REQUIRE_APPROVAL",
            "require-approval-for-write",
            true,
        ),
        // not declared in the registry: a write
        (
            "local",
            "notes__brand_new",
            "{}",
            "REQUIRE_APPROVAL",
            "require-approval-for-write",
            true,
        ),
        (
            "local",
            "notes__delete_note",
            r#"{"id":1}"#,
            "DENY",
            "deny-destructive",
            false,
        ),
        // scopes: nina may only read notes, operator has no scopes, rita is read_only
        (
            "nina",
            "notes__get_note",
            r#"{"id":1}"#,
            "ALLOW",
            "allow-reads",
            true,
        ),
        (
            "nina",
            "notes__add_note",
            add,
            "DENY",
            "deny-scope-mismatch",
            false,
        ),
        (
            "operator",
            "notes__get_note",
            r#"{"id":1}"#,
            "DENY",
            "deny-scope-mismatch",
            false,
        ),
        (
            "rita",
            "notes__list_notes",
            "{}",
            "ALLOW",
            "allow-reads",
            true,
        ),
        (
            "rita",
            "notes__add_note",
            add,
            "DENY",
            "deny-scope-mismatch",
            false,
        ),
    ] {
        let out = decide(d, who, tool, args)?;
        assert_eq!(out["decision"], decision, "{who} {tool}: {out}");
        assert_eq!(out["rule"], rule, "{who} {tool}: {out}");
        assert_eq!(out["visible"], listed, "{who} {tool}: {out}");
        assert_eq!(out["scope_match"], rule != "deny-scope-mismatch", "{out}");
        assert_eq!(out["server"], "notes", "{out}");
        let first = out["reasons"][0].as_str().unwrap_or_default();
        assert!(first.starts_with(&format!("{rule}: {decision} (")), "{out}");
    }
    let out = decide(d, "rita", "notes__add_note", "{}")?;
    assert_eq!(out["upstream_tool"], "add_note");
    assert_eq!(out["action"], "write");
    assert_eq!(out["labels"], serde_json::json!(["read_only"]));
    let out = decide(d, "local", "notes__add_note", "{}")?;
    assert_eq!(out["constraints"]["max_runtime_sec"], 60.0);
    assert_eq!(out["constraints"]["max_retries"], 1);

    // the text form names the decision, the deciding rule, the reasons and the constraints
    let text_of = |who: &str, tool: &str| -> anyhow::Result<String> {
        let argv = ["test", "--principal", who, "--tool", tool, "--args", add];
        let out = policy(d, &argv)?;
        anyhow::ensure!(out.status.success(), "{}", text(&out.stderr));
        Ok(text(&out.stdout))
    };
    let stdout = text_of("local", "notes__add_note")?;
    for line in [
        "tool:        notes__add_note = upstream notes, tool add_note (write), domain notes",
        "principal:   local (labels: none; scope gate passes: yes)",
        "decision:    REQUIRE_APPROVAL",
        "rule:        require-approval-for-write",
        "reasons:     require-approval-for-write: REQUIRE_APPROVAL (mcp.action: write)",
        "constraints: max_runtime 60s, max_retries 1",
        "listed:      yes (tools/list)",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line:?} in\n{stdout}");
    }
    // and, when it refuses, why the scope gate does
    for (who, why) in [
        (
            "rita",
            "scope gate:  DENY, scope_mismatch (a read_only principal cannot make write calls)",
        ),
        (
            "nina",
            "scope gate:  DENY, scope_mismatch (the principal's scopes do not cover notes:write)",
        ),
    ] {
        let stdout = text_of(who, "notes__add_note")?;
        assert!(stdout.lines().any(|l| l == why), "{why:?} in\n{stdout}");
        assert!(
            stdout.contains("rule:        deny-scope-mismatch"),
            "{stdout}"
        );
    }

    // questions that cannot be answered: exit 2 and why
    for (argv, why) in [
        (
            &["--principal", "local", "--tool", "github__list_repos"][..],
            "unknown tool \"github__list_repos\"",
        ),
        (
            &[
                "--principal",
                "local",
                "--tool",
                "notes__echo",
                "--args",
                "[1]",
            ],
            "--args must be a JSON object",
        ),
        (
            &["--principal", "mallory", "--tool", "notes__echo"],
            "unknown principal \"mallory\"",
        ),
    ] {
        let mut full = vec!["test"];
        full.extend_from_slice(argv);
        let out = policy(d, &full)?;
        assert_eq!(out.status.code(), Some(2), "{argv:?}");
        assert!(text(&out.stderr).contains(why), "{}", text(&out.stderr));
    }
    Ok(())
}

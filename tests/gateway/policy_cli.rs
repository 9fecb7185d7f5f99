//! `mcp-warden policy check` and `mcp-warden policy test`, run as real processes on a
//! deployment folder holding the shipped registry and policies.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::WARDEN;

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
    std::fs::write(
        root.join("warden.toml"),
        "registry_dir = \"registry\"\npolicies_dir = \"policies\"\n",
    )?;
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

/// `policy test --principal local --tool TOOL --args ARGS EXTRA… --json`, decoded.
fn decide(dir: &Path, tool: &str, args: &str, extra: &[&str]) -> anyhow::Result<Value> {
    let mut argv = vec![
        "test",
        "--principal",
        "local",
        "--tool",
        tool,
        "--args",
        args,
        "--json",
    ];
    argv.extend_from_slice(extra);
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
    // the demo's reads are allowed, its writes need approval, everything else is denied
    for (tool, args, extra, decision, rule, visible) in [
        (
            "notes__list_notes",
            "{}",
            &[][..],
            "ALLOW",
            "allow-reads",
            true,
        ),
        (
            "notes__echo",
            r#"{"text":"hi"}"#,
            &[],
            "ALLOW",
            "allow-reads",
            true,
        ),
        (
            "notes__add_note",
            r#"{"title":"t","body":"b"}"#,
            &[],
            "REQUIRE_APPROVAL",
            "require-approval-for-write",
            true,
        ),
        (
            "notes__rug_pull",
            "{}",
            &[],
            "REQUIRE_APPROVAL",
            "require-approval-for-write",
            true,
        ),
        // not declared in the registry: a write
        (
            "notes__brand_new",
            "{}",
            &[],
            "REQUIRE_APPROVAL",
            "require-approval-for-write",
            true,
        ),
        (
            "notes__delete_note",
            r#"{"id":1}"#,
            &[],
            "DENY",
            "deny-destructive",
            false,
        ),
        (
            "notes__get_note",
            r#"{"id":1}"#,
            &["--scope-match", "false"],
            "DENY",
            "deny-scope-mismatch",
            false,
        ),
    ] {
        let out = decide(d, tool, args, extra)?;
        assert_eq!(out["decision"], decision, "{tool}: {out}");
        assert_eq!(out["rule"], rule, "{tool}: {out}");
        assert_eq!(out["visible"], visible, "{tool}: {out}");
        assert_eq!(out["server"], "notes", "{out}");
        let reasons = out["reasons"].as_array().unwrap();
        assert!(
            reasons[0]
                .as_str()
                .unwrap()
                .starts_with(&format!("{rule}: {decision} (")),
            "{out}"
        );
    }
    let out = decide(d, "notes__add_note", "{}", &["--label", "read_only"])?;
    assert_eq!(out["upstream_tool"], "add_note");
    assert_eq!(out["action"], "write");
    assert_eq!(out["labels"], serde_json::json!(["read_only"]));
    assert_eq!(out["constraints"]["max_runtime_sec"], 60.0);
    assert_eq!(out["constraints"]["max_retries"], 1);

    // the text form names the decision, the deciding rule, the reasons and the constraints
    let out = policy(
        d,
        &[
            "test",
            "--principal",
            "local",
            "--tool",
            "notes__add_note",
            "--args",
            r#"{"title":"t"}"#,
        ],
    )?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for line in [
        "tool:        notes__add_note = upstream notes, tool add_note (write), domain notes",
        "decision:    REQUIRE_APPROVAL",
        "rule:        require-approval-for-write",
        "reasons:     require-approval-for-write: REQUIRE_APPROVAL (mcp.action: write)",
        "constraints: max_runtime 60s, max_retries 1",
        "listed:      yes (tools/list)",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line:?} in\n{stdout}");
    }

    // questions that cannot be answered: exit 2 and why
    for (argv, why) in [
        (
            &["--tool", "github__list_repos"][..],
            "unknown tool \"github__list_repos\"",
        ),
        (
            &["--tool", "notes__echo", "--args", "[1]"],
            "--args must be a JSON object",
        ),
    ] {
        let mut full = vec!["test", "--principal", "local"];
        full.extend_from_slice(argv);
        let out = policy(d, &full)?;
        assert_eq!(out.status.code(), Some(2), "{argv:?}");
        assert!(text(&out.stderr).contains(why), "{}", text(&out.stderr));
    }
    Ok(())
}

use super::*;

fn load_one(toml: &str) -> Result<UpstreamSpec, String> {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry");
    std::fs::create_dir(&reg).unwrap();
    std::fs::write(reg.join("notes.toml"), toml).unwrap();
    load(&reg)
        .map(|mut v| v.remove(0))
        .map_err(|e| e.to_string())
}

#[test]
fn full_entry() {
    let s = load_one(
        r#"
command = ["python3", "server.py", "--flag"]
env = { API_BASE = "https://x" }
cwd = "fixtures/notes"
prefix = "nt"
domain = "docs"
audience = "https://notes.internal"
credential = "minted"
enabled = true
[tools]
list_notes = "read"
add_note = "write"
"#,
    )
    .unwrap();
    assert_eq!(s.name, "notes");
    assert_eq!(s.prefix, "nt");
    assert_eq!(s.domain, "docs");
    assert_eq!(s.credential, CredentialMode::Minted);
    assert_eq!(s.action_class("list_notes"), ActionClass::Read);
    assert_eq!(s.action_class("undeclared"), ActionClass::Write);
    let Transport::Stdio {
        program, args, cwd, ..
    } = &s.transport
    else {
        panic!("stdio")
    };
    assert_eq!(program, Path::new("python3"));
    assert_eq!(args, &["server.py", "--flag"]);
    assert!(cwd.as_ref().unwrap().ends_with("fixtures/notes"));
}

#[test]
fn defaults() {
    let s = load_one("url = \"http://127.0.0.1:9000/mcp\"").unwrap();
    assert_eq!(s.prefix, "notes");
    assert_eq!(s.domain, "notes");
    assert_eq!(s.audience, "mcp-warden:upstream:notes");
    assert_eq!(s.credential, CredentialMode::None);
    assert!(s.enabled);
}

#[test]
fn errors_name_file_and_key() {
    let cases = [
        ("command = [\"x\"]\nbogus = 1", "bogus"),
        ("command = []", "`command`"),
        ("", "`command`"),
        ("url = \"ftp://x\"", "`url`"),
        ("command = [\"x\"]\nurl = \"http://x\"", "not both"),
        ("command = [\"x\"]\nprefix = \"a__b\"", "`prefix`"),
        ("command = [\"x\"]\n[tools]\nt = \"maybe\"", "maybe"),
        ("command = [\"x\"]\ncredential = \"magic\"", "magic"),
    ];
    for (toml, needle) in cases {
        let err = load_one(toml).unwrap_err();
        assert!(err.contains("notes.toml"), "{toml:?}: {err}");
        assert!(err.contains(needle), "{toml:?}: {err}");
    }
}

#[test]
fn shared_prefix_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.toml"),
        "command = [\"x\"]\nprefix = \"p\"",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.toml"),
        "command = [\"x\"]\nprefix = \"p\"",
    )
    .unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("`a`") && err.contains("`b`"), "{err}");
}

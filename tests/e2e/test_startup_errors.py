"""Bad configuration stops the start: the gateway exits non-zero, and stderr names the file and the
key. Nothing is written to stdout (the MCP channel in stdio mode)."""

from __future__ import annotations

import subprocess

import pytest

from harness import RawStdioGateway, gateway_env, notes_upstream, warden_bin

# (registry file text, the key stderr must name)
BAD_ENTRIES = {
    "unknown-key": ('command = ["python3", "x.py"]\ncomand = ["python3", "y.py"]\n', "comand"),
    "unknown-table-key": ('command = ["python3", "x.py"]\n[tool]\nping = "read"\n', "tool"),
    "wrong-type-enabled": ('command = ["python3", "x.py"]\nenabled = "yes"\n', "enabled"),
    "bad-credential": ('command = ["python3", "x.py"]\ncredential = "magic"\n', "credential"),
    "bad-action-class": ('command = ["python3", "x.py"]\n[tools]\nping = "readonly"\n', "ping"),
    "command-not-a-list": ('command = "python3 x.py"\n', "command"),
    "bad-prefix": ('command = ["python3", "x.py"]\nprefix = "has space"\n', "prefix"),
    "not-toml": ('command = ["python3", "x.py"\n', None),
}


def run_gateway(dep_root, mode: str, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    args = ["--stdio"] if mode == "stdio" else ["--http", "127.0.0.1:0"]
    try:
        return subprocess.run(
            [str(warden_bin()), "serve", *args, "--config", str(dep_root / "warden.toml")],
            stdin=subprocess.PIPE,  # kept open by run(): a gateway that starts anyway would wait on it
            capture_output=True,
            env=gateway_env(),
            cwd=dep_root,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the gateway did not exit within {timeout:.0f}s despite the bad config") from None


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
@pytest.mark.parametrize("mode", ["stdio", "http"])
def test_bad_registry_entry_stops_the_start(deploy, case, mode):
    dep = deploy({"notes": notes_upstream()})
    dep.ensure_pinned()  # a working, pinned deployment; then the operator's typo
    text, key = BAD_ENTRIES[case]
    (dep.registry / "broken.toml").write_text(text)
    done = run_gateway(dep.root, mode)
    err = done.stderr.decode(errors="replace")
    assert done.returncode != 0, f"exit 0 despite {case}; stderr:\n{err}"
    assert "broken.toml" in err, f"stderr does not name the file:\n{err}"
    if key:
        assert key in err, f"stderr does not name the key {key!r}:\n{err}"
    assert "panicked" not in err, f"a bad config is an error, not a panic:\n{err}"
    if mode == "stdio":
        assert done.stdout == b"", f"nothing but MCP on stdout: {done.stdout!r}"


@pytest.mark.parametrize(
    "text,key",
    [
        ('registry_dir = "registry"\nlisten_on = "127.0.0.1:1"\n', "listen_on"),
        ('registry_dir = "registry"\n[upstream]\ncall_timeout_sec = "soon"\n', "call_timeout_sec"),
        ('registry_dir = "registry"\n[upstream]\ncall_timout_sec = 5\n', "call_timout_sec"),
        ('registry_dir = "registry"\n[pins]\ndeploy_windows = ["Someday 09:00-10:00"]\n', "pins.deploy_windows"),
        (
            'registry_dir = "registry"\n[pins]\nchange_tickets = '
            '[{ upstream = "ghost", ticket = "CHG-1", until = "2030-01-01T00:00:00Z" }]\n',
            "pins.change_tickets",
        ),
    ],
    ids=["unknown-key", "wrong-type", "unknown-nested-key", "bad-deploy-window", "ticket-for-unknown-upstream"],
)
def test_bad_warden_toml_stops_the_start(deploy, text, key):
    dep = deploy({"notes": notes_upstream()})
    dep.ensure_pinned()
    dep.config.write_text(f'store = "sqlite://{dep.store}"\n' + text)
    done = run_gateway(dep.root, "stdio")
    err = done.stderr.decode(errors="replace")
    assert done.returncode != 0, f"exit 0 despite a bad warden.toml; stderr:\n{err}"
    assert "warden.toml" in err, f"stderr does not name the file:\n{err}"
    assert key in err, f"stderr does not name the key {key!r}:\n{err}"
    assert done.stdout == b""


def test_bad_environment_override_stops_the_start(deploy):
    dep = deploy({"notes": notes_upstream()})
    dep.ensure_pinned()
    # WARDEN_<KEY> for a top-level key: a store URL the gateway cannot use
    done = subprocess.run(
        [str(warden_bin()), "serve", "--stdio", "--config", str(dep.config)],
        stdin=subprocess.PIPE,
        capture_output=True,
        env=gateway_env({"WARDEN_STORE": "ftp://nowhere/warden.db"}),
        cwd=dep.root,
        timeout=30,
    )
    err = done.stderr.decode(errors="replace")
    assert done.returncode != 0, f"exit 0 with WARDEN_STORE=ftp://…; stderr:\n{err}"
    assert "store" in err.lower(), err


def test_the_valid_deployment_used_above_does_start(deploy):
    """The control for the tests above: the same deployment without the broken file starts and
    answers the MCP handshake."""
    dep = deploy({"notes": notes_upstream()})
    gw = RawStdioGateway(dep)
    try:
        gw.handshake()
        assert gw.proc.poll() is None
    finally:
        gw.kill()


@pytest.mark.parametrize("mode", ["stdio", "http"])
def test_missing_policies_folder_stops_the_start(deploy, mode):
    dep = deploy({"notes": notes_upstream()})
    dep.ensure_pinned()
    for f in dep.policies_dir.iterdir():
        f.unlink()
    dep.policies_dir.rmdir()
    done = run_gateway(dep.root, mode)
    err = done.stderr.decode(errors="replace")
    assert done.returncode != 0, f"exit 0 without a policies folder; stderr:\n{err}"
    assert "policies" in err, f"stderr does not name the folder:\n{err}"
    assert "panicked" not in err, err
    if mode == "stdio":
        assert done.stdout == b""


def test_broken_policy_file_stops_the_start(deploy):
    dep = deploy(
        {"notes": notes_upstream()},
        policies={
            "10-ok.yaml": "version: v1\nrules:\n  - id: fine\n    match: { labels: { mcp.server: notes } }\n    decision: ALLOW\n",
            "20-bad.yaml": "version: v1\nrules:\n  - id: typo-rule\n    match: { labels: { mcp.server: notes } }\n    decison: ALLOW\n",
        },
    )
    dep.ensure_pinned()
    done = run_gateway(dep.root, "stdio")
    err = done.stderr.decode(errors="replace")
    assert done.returncode != 0, f"exit 0 despite a broken policy file; stderr:\n{err}"
    for needle in ("20-bad.yaml", "typo-rule", "decison"):
        assert needle in err, f"stderr does not name {needle!r}:\n{err}"
    assert done.stdout == b""

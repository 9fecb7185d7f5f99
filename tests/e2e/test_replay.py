"""`mcp-warden policy replay`, end to end: real calls through the real gateway (Python `mcp`
SDK) under the shipped policies, then the recorded calls re-decided under a stricter candidate
policy folder; arguments recorded (`[audit] record_arguments`) or not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import MCPError

from harness import audit_where, notes_upstream, open_agent, pending_approval, shipped_policies, show_rows

pytestmark = pytest.mark.anyio

# Stricter than the shipped baseline: echo denied, get_note held, a note whose body mentions a
# secret denied (an argument rule).
STRICTER = """version: v1
rules:
  - id: deny-echo
    match: { labels: { mcp.tool: echo } }
    decision: DENY
  - id: hold-get-note
    match: { labels: { mcp.tool: get_note } }
    decision: REQUIRE_APPROVAL
  - id: deny-secret-notes
    match: { labels: { mcp.tool: add_note } }
    mcp: { args: [ { pointer: /body, regex: secret } ] }
    decision: DENY
"""


def candidate(root: Path) -> Path:
    """The shipped policies plus STRICTER, in a folder of their own."""
    folder = root / "candidate"
    folder.mkdir()
    for name, text in shipped_policies().items():
        (folder / name).write_text(text)
    (folder / "50-stricter.yaml").write_text(STRICTER)
    return folder


async def make_calls(dep) -> None:
    """Seven calls through the gateway, all audited."""
    async with open_agent(dep, "http", "auto", wait_for={"notes__echo", "notes__add_note"}) as agent:
        c = agent.client
        for text in ("one", "two"):
            assert not (await c.call_tool("notes__echo", {"text": text})).is_error
        assert not (await c.call_tool("notes__get_note", {"id": 1})).is_error
        pending_approval(await c.call_tool("notes__add_note", {"title": "a", "body": "my secret plan"}))
        pending_approval(await c.call_tool("notes__add_note", {"title": "b", "body": "groceries"}))
        for name in ("notes__delete_note", "notes__no_such_tool"):
            with pytest.raises(MCPError):
                await c.call_tool(name, {"id": 1})
    await audit_where(dep, "the unknown tool's row", exposed_name="notes__no_such_tool")
    assert len(dep.audit_rows()) == 7, show_rows(dep.audit_rows())


def replay(dep, *args: str) -> dict[str, Any]:
    done = dep.run_cli("policy", "replay", "--since", "1h", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def ids_of(dep, exposed: str) -> list[str]:
    return [r["request_id"] for r in dep.audit_rows() if r["exposed_name"] == exposed]


async def test_replay_shows_how_a_stricter_policy_would_decide_the_recorded_calls(deploy, tmp_path):
    dep = deploy(
        {"notes": notes_upstream()},
        policies=shipped_policies(),
        toml_extra="[audit]\nrecord_arguments = true",
    )
    await make_calls(dep)
    stored = sorted(r["arguments"] for r in dep.audit_rows() if r["exposed_name"] == "notes__echo")
    assert stored == ['{"text":"one"}', '{"text":"two"}'], stored

    # The policy in force: a no-op comparison.
    same = replay(dep)
    assert same["changed"] == 0, same
    assert same["re_decided"] == 6 and same["not_re_decided"] == {"resolve": 1}, same

    out = replay(dep, "--policies", str(candidate(tmp_path)))
    assert out["total"] == 7
    assert out["re_decided"] == 6
    assert out["changed"] == 4
    assert out["undecidable"] == {}
    assert out["not_re_decided"] == {"resolve": 1}
    assert out["transitions"] == {
        "ALLOW->REQUIRE_APPROVAL": 1,
        "ALLOW->DENY": 2,
        "REQUIRE_APPROVAL->REQUIRE_APPROVAL": 1,
        "REQUIRE_APPROVAL->DENY": 1,
        "DENY->DENY": 1,
    }, out["transitions"]
    secret = [r["request_id"] for r in dep.audit_rows() if (r["arguments"] or "").find("secret") >= 0]
    assert [(g["server"], g["tool"], g["from"], g["to"], g["rule"], g["count"], g["examples"]) for g in out["changes"]] == [
        ("notes", "echo", "ALLOW", "DENY", "deny-echo", 2, ids_of(dep, "notes__echo")),
        ("notes", "add_note", "REQUIRE_APPROVAL", "DENY", "deny-secret-notes", 1, secret),
        ("notes", "get_note", "ALLOW", "REQUIRE_APPROVAL", "hold-get-note", 1, ids_of(dep, "notes__get_note")),
    ], out["changes"]

    # The text report says the same.
    text = dep.run_cli("policy", "replay", "--since", "1h", "--policies", str(tmp_path / "candidate"))
    assert text.returncode == 0, text.stderr
    assert "rows: recorded" in text.stdout and "ALLOW->DENY" in text.stdout and "deny-secret-notes" in text.stdout, text.stdout


async def test_without_recorded_arguments_an_argument_rule_is_undecidable_never_guessed(deploy, tmp_path):
    dep = deploy({"notes": notes_upstream()}, policies=shipped_policies())
    await make_calls(dep)
    assert all(r["arguments"] is None for r in dep.audit_rows()), "arguments are recorded only when enabled"
    out = replay(dep, "--policies", str(candidate(tmp_path)))
    assert out["undecidable"] == {"arguments_not_recorded": 2}, out
    assert out["re_decided"] == 4 and out["changed"] == 3, out
    assert "REQUIRE_APPROVAL->DENY" not in out["transitions"], out


async def test_a_bad_candidate_or_store_is_a_clear_error(deploy, tmp_path):
    dep = deploy({"notes": notes_upstream()}, policies=shipped_policies())
    # No store yet: nothing was recorded.
    done = dep.run_cli("policy", "replay", "--since", "24h")
    assert done.returncode == 2 and "no audit store" in done.stderr, done.stderr
    await make_calls(dep)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "p.yaml").write_text("version: v1\nrules:\n  - id: x\n    decision: MAYBE\n")
    done = dep.run_cli("policy", "replay", "--since", "24h", "--policies", str(bad))
    assert done.returncode == 2, done.stdout
    assert "p.yaml" in done.stderr and "decision" in done.stderr, done.stderr
    done = dep.run_cli("policy", "replay", "--since", "24x")
    assert done.returncode == 2 and "--since" in done.stderr, done.stderr

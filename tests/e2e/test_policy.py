"""The policy stage, end to end: the shipped policies/ over the demo notes upstream, scope
segmentation, tools/list filtered by the same decision, hot reload (a broken file keeps the old
policy), and `mcp-warden policy check|test`.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
from mcp import MCPError

from harness import (
    TRANSPORTS,
    Agent,
    agent_as,
    audit_where,
    eventually,
    keyed_deployment,
    log_has,
    note_titles,
    notes_upstream,
    open_agent,
    pending_approval,
    reason_code,
    running,
    shipped_policies,
    show_rows,
    tail,
    text_of,
    tool_names,
    wait_for_tools,
)

pytestmark = pytest.mark.anyio

READS = {"notes__list_notes", "notes__get_note", "notes__echo", "notes__slow_count"}
WRITES = {"notes__add_note", "notes__toggle_extra_tool", "notes__rug_pull"}
DESTRUCTIVE = {"notes__delete_note"}

READS_ONLY = """version: v1
rules:
  - id: notes-reads
    match: { labels: { mcp.server: notes, mcp.action: read } }
    decision: ALLOW
"""
READS_AND_WRITES = READS_ONLY + """  - id: notes-writes
    match: { labels: { mcp.server: notes, mcp.action: write } }
    decision: ALLOW
"""
# Valid YAML, invalid policy: a key no rule may have (the error must name it).
BROKEN = READS_ONLY + """  - id: notes-writes-broken
    match: { labels: { mcp.server: notes, mcp.action: write } }
    decision: DENY
    colour_e2e: blue
"""
DENY_WRITES = READS_ONLY + """  - id: notes-writes-denied
    match: { labels: { mcp.server: notes, mcp.action: write } }
    decision: DENY
"""


async def unknown_tool_error(agent: Agent, name: str, args: dict[str, Any]) -> str:
    """The protocol error a call to `name` gets, with the name replaced by `<tool>`."""
    with pytest.raises(MCPError) as info:
        await agent.client.call_tool(name, args)
    assert info.value.code == -32602, (name, info.value.code, str(info.value))
    return str(info.value).replace(name, "<tool>")


# --------------------------------------------------------------------------------------------
# the shipped policies
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_shipped_policies_allow_reads_hold_writes_and_hide_destructive_tools(deploy, transport):
    dep = deploy({"notes": notes_upstream()}, policies=shipped_policies())
    async with open_agent(dep, transport, "auto", wait_for={"notes__list_notes", "notes__add_note"}) as agent:
        c = agent.client
        names = await tool_names(agent)
        assert READS | WRITES <= names, f"reads and writes needing approval are listed: {sorted(names)}"
        assert not names & DESTRUCTIVE, f"a tool the principal can never call is listed: {sorted(names)}"

        # reads: allowed
        assert len(await note_titles(agent)) == 2
        echoed = await c.call_tool("notes__echo", {"text": "allowed"})
        assert not echoed.is_error and text_of(echoed) == "allowed", text_of(echoed)

        # writes: held for approval, nothing written
        aid = pending_approval(await c.call_tool("notes__add_note", {"title": "held", "body": "b"}))
        assert "held" not in await note_titles(agent)

        # destructive: denied, with exactly the answer a name that does not exist gets
        hidden = await unknown_tool_error(agent, "notes__delete_note", {"id": 1})
        unknown = await unknown_tool_error(agent, "notes__no_such_tool", {"id": 1})
        assert hidden == unknown, f"a denied tool is told apart from an unknown one: {hidden!r} vs {unknown!r}"
        still = await c.call_tool("notes__get_note", {"id": 1})
        assert not still.is_error, f"note 1 was deleted: {text_of(still)}"

    rows = await audit_where(dep, "the delete_note row", exposed_name="notes__delete_note")
    assert [(r["decision"], r["stage"], r["action_class"]) for r in rows] == [("DENY", "policy", "destructive")], show_rows(
        rows
    )
    held = await audit_where(dep, "the add_note row", exposed_name="notes__add_note")
    assert [(r["decision"], r["approval_id"]) for r in held] == [("REQUIRE_APPROVAL", aid)], show_rows(held)
    reads = await audit_where(dep, "the echo row", exposed_name="notes__echo")
    assert [r["decision"] for r in reads] == ["ALLOW"], show_rows(reads)
    assert all(r["actor_id"] == "local" for r in dep.audit_rows()), show_rows(dep.audit_rows())


async def test_no_policy_file_means_everything_is_denied_and_nothing_listed(deploy):
    dep = deploy({"notes": notes_upstream()}, policies={})
    async with open_agent(dep, "http", "auto") as agent:
        # the upstream is connected (/readyz), yet no rule allows anything: none of its tools is
        # listed; only the gateway's own fetch tool (it serves released results, nothing else)
        names = await tool_names(agent)
        assert names == {"warden__quarantine_fetch"}, f"listed without any policy rule: {sorted(names)}"
        await unknown_tool_error(agent, "notes__list_notes", {})
    rows = await audit_where(dep, "the denied read", exposed_name="notes__list_notes")
    assert [(r["decision"], r["stage"]) for r in rows] == [("DENY", "policy")], show_rows(rows)
    assert "no_rule_matched" in rows[0]["reason"], show_rows(rows)


# --------------------------------------------------------------------------------------------
# scopes and labels
# --------------------------------------------------------------------------------------------


async def test_a_read_only_principal_is_denied_writes_whatever_its_scopes(deploy):
    dep = keyed_deployment(deploy)
    async with running(dep) as gw, agent_as(gw, "rita") as rita, agent_as(gw, "alice") as alice:
        await wait_for_tools(alice, {"notes__add_note"})
        # rita's scopes cover notes:*, but she is read_only
        names = await wait_for_tools(rita, READS)
        assert not names & (WRITES | DESTRUCTIVE), f"rita sees tools she can never call: {sorted(names)}"
        assert len(await note_titles(rita)) == 2
        before = await note_titles(alice)

        answer = await call_refused(rita, "notes__add_note", {"title": "by-rita", "body": "b"})
        assert not re.search(r"[Aa]pproval \S+ is pending", answer), f"a denied write asks for approval: {answer}"
        assert await note_titles(alice) == before

        # alice may write (with approval) but has no scope for destructive calls on notes
        alice_names = await tool_names(alice)
        assert "notes__add_note" in alice_names and "notes__delete_note" not in alice_names, sorted(alice_names)
        await call_refused(alice, "notes__delete_note", {"id": 1})
        assert await note_titles(alice) == before

    rows = await audit_where(dep, "rita's write", exposed_name="notes__add_note", actor_id="rita")
    assert [(r["decision"], reason_code(r), r["action_class"]) for r in rows] == [("DENY", "scope_mismatch", "write")], (
        show_rows(rows)
    )
    assert not rows[0]["approval_id"], show_rows(rows)
    rows = await audit_where(dep, "alice's delete", exposed_name="notes__delete_note", actor_id="alice")
    assert [(r["decision"], reason_code(r)) for r in rows] == [("DENY", "scope_mismatch")], show_rows(rows)
    reads = await audit_where(dep, "rita's reads", exposed_name="notes__list_notes", actor_id="rita")
    assert {r["decision"] for r in reads} == {"ALLOW"}, show_rows(reads)


async def test_tools_outside_a_principals_scopes_are_hidden_and_answer_as_unknown(deploy):
    """A tool a principal can never call is not listed, and calling it gets the answer a name
    that does not exist gets (DESIGN.md, resolve: its existence is not revealed); the audit
    store still records the scope mismatch."""
    dep = keyed_deployment(deploy)
    async with running(dep) as gw, agent_as(gw, "rita") as rita, agent_as(gw, "alice") as alice:
        for agent, hidden in ((rita, "notes__add_note"), (alice, "notes__delete_note")):
            names = await wait_for_tools(agent, READS)
            assert hidden not in names, sorted(names)
            args = {"title": "x", "body": "y"} if hidden == "notes__add_note" else {"id": 1}
            unknown = await unknown_tool_error(agent, "notes__no_such_tool", args)
            try:
                answer = await unknown_tool_error(agent, hidden, args)
            except BaseException as exc:  # pytest's Failed is not an Exception
                raise AssertionError(
                    f"{hidden} is hidden from this principal, yet its answer tells it apart from an unknown tool: {exc}"
                ) from None
            assert answer == unknown, (answer, unknown)
    rows = await audit_where(dep, "the hidden calls", decision="DENY", server_name="notes")
    assert {(r["actor_id"], r["exposed_name"], reason_code(r)) for r in rows} == {
        ("rita", "notes__add_note", "scope_mismatch"),
        ("alice", "notes__delete_note", "scope_mismatch"),
    }, show_rows(rows)


async def call_refused(agent: Agent, name: str, args: dict[str, Any]) -> str:
    """Call `name` and require a refusal (an error result or a protocol error); its text."""
    try:
        result = await agent.client.call_tool(name, args)
    except MCPError as exc:
        return str(exc)
    assert result.is_error, f"{name} ran: {text_of(result)}"
    return text_of(result)


# --------------------------------------------------------------------------------------------
# hot reload
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_policy_changes_apply_while_serving_and_a_broken_file_keeps_the_old_policy(deploy, transport):
    dep = deploy({"notes": notes_upstream()}, policies={"notes.yaml": READS_ONLY}, extra={"policy": {"reload_sec": 0.2}})
    async with open_agent(dep, transport, "auto", wait_for={"notes__list_notes"}) as agent:
        c = agent.client
        assert "notes__add_note" not in await tool_names(agent)
        await unknown_tool_error(agent, "notes__add_note", {"title": "t", "body": "b"})

        # 1. writes allowed: listed and run, without a restart
        dep.write_policy("notes.yaml", READS_AND_WRITES)
        await wait_for_tools(agent, {"notes__add_note"}, timeout=20)
        done = await c.call_tool("notes__add_note", {"title": "after-reload", "body": "b"})
        assert not done.is_error, text_of(done)

        # 2. a broken file: reported, and the previous policy keeps serving
        dep.write_policy("notes.yaml", BROKEN)
        await eventually(
            lambda: _val(log_has(agent.stderr_path, "colour_e2e")),
            timeout=20,
            what="the gateway to report the broken policy file (naming the bad key)",
        )
        report = [line for line in tail(agent.stderr_path, 400).splitlines() if "colour_e2e" in line]
        assert any("notes.yaml" in line for line in report), f"the report names the file: {report}"
        kept = await c.call_tool("notes__add_note", {"title": "kept-policy", "body": "b"})
        assert not kept.is_error, f"the broken file replaced the working policy: {text_of(kept)}"
        assert "notes__add_note" in await tool_names(agent)

        # 3. fixed: the new policy applies (writes denied and hidden)
        dep.write_policy("notes.yaml", DENY_WRITES)

        async def writes_gone() -> bool:
            return "notes__add_note" not in await tool_names(agent)

        await eventually(writes_gone, timeout=20, what="notes__add_note to leave tools/list")
        await unknown_tool_error(agent, "notes__add_note", {"title": "denied", "body": "b"})
        titles = await note_titles(agent)
        assert "after-reload" in titles and "kept-policy" in titles and "denied" not in titles, titles

    rows = await audit_where(dep, "add_note rows", exposed_name="notes__add_note")
    assert [r["decision"] for r in rows] == ["DENY", "ALLOW", "ALLOW", "DENY"], show_rows(rows)


async def _val(value: Any) -> Any:
    return value


# --------------------------------------------------------------------------------------------
# the CLI: policy check, policy test
# --------------------------------------------------------------------------------------------


def said(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}"


def test_policy_check_accepts_the_shipped_set_and_names_what_is_wrong(deploy):
    dep = deploy({"notes": notes_upstream()}, policies=shipped_policies())
    ok = dep.run_cli("policy", "check")
    assert ok.returncode == 0, said(ok)

    dep.write_policy("zz-broken.yaml", BROKEN.replace("notes-reads", "zz-reads"))
    bad = dep.run_cli("policy", "check")
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0, said(bad)
    for needle in ("zz-broken.yaml", "notes-writes-broken", "colour_e2e"):
        assert needle in out, f"`policy check` does not name {needle!r}: {said(bad)}"

    # a rule id used twice across files is an error naming the id
    dep.remove_policy("zz-broken.yaml")
    dep.write_policy("zz-duplicate.yaml", READS_ONLY)
    dep.write_policy("zz-duplicate-2.yaml", READS_ONLY)
    dup = dep.run_cli("policy", "check")
    assert dup.returncode != 0 and "notes-reads" in dup.stdout + dup.stderr, said(dup)


def test_policy_test_explains_a_decision(deploy):
    dep = keyed_deployment(deploy)
    dep.ensure_pinned()
    held = dep.run_cli(
        "policy", "test", "--principal", "alice", "--tool", "notes__add_note", "--args", '{"title":"x","body":"y"}'
    )
    assert held.returncode == 0, said(held)
    assert "REQUIRE_APPROVAL" in held.stdout, said(held)
    assert any(rule in held.stdout for rule in rules_deciding("REQUIRE_APPROVAL")), (
        f"the deciding rule is not named: {said(held)}"
    )

    read = dep.run_cli("policy", "test", "--principal", "alice", "--tool", "notes__list_notes", "--args", "{}")
    assert "ALLOW" in read.stdout and "DENY" not in read.stdout, said(read)

    rita = dep.run_cli(
        "policy", "test", "--principal", "rita", "--tool", "notes__add_note", "--args", '{"title":"x","body":"y"}'
    )
    assert "DENY" in rita.stdout and "scope" in rita.stdout.lower(), said(rita)

    nobody = dep.run_cli("policy", "test", "--principal", "mallory", "--tool", "notes__list_notes", "--args", "{}")
    assert nobody.returncode != 0 and "mallory" in nobody.stdout + nobody.stderr, said(nobody)


def rules_deciding(decision: str) -> list[str]:
    """The ids of the shipped rules whose decision is `decision` (block-style YAML rules)."""
    ids = []
    for text in shipped_policies().values():
        for block in re.split(r"\n\s*- id:", text)[1:]:
            rule_id = block.split("\n", 1)[0].strip().strip("\"'")
            if re.search(rf"^\s*decision:\s*{decision}\b", block, re.M):
                ids.append(rule_id)
    assert ids, f"no shipped rule decides {decision}"
    return ids

"""Authentication and the admin surface, end to end.

HTTP agents authenticate with API keys (`Authorization: Bearer …`); with keys configured nothing
is anonymous. The admin HTTP API's containment endpoints (disable an upstream, revoke its
credentials, emergency write-approval mode) and `mcp-warden contain` act on a running gateway,
need the `admin` label, persist in the store and are audited as `mcp-warden` admin rows.
"""

from __future__ import annotations

import itertools
import subprocess
from typing import Any

import anyio
import pytest
from mcp import MCPError

from harness import (
    ALLOW_ALL,
    KEYS,
    Agent,
    HttpGateway,
    admin_as,
    agent_as,
    audit_where,
    eventually,
    http_agent,
    http_request,
    keyed_deployment,
    note_titles,
    notes_upstream,
    open_agent,
    pending_approval,
    reason_code,
    running,
    show_rows,
    text_of,
    tool_names,
    wait_for_tools,
)

pytestmark = pytest.mark.anyio

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "e2e-raw", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}
EMERGENCY = "/admin/policy/emergency-write-approval"
_titles = itertools.count(1)


def said(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}"


async def post(gw: HttpGateway, path: str, who: str | None, body: Any = None) -> tuple[int, str]:
    bearer = KEYS[who] if who else None
    return await anyio.to_thread.run_sync(lambda: http_request(gw.base + path, body=body, bearer=bearer))


# --------------------------------------------------------------------------------------------
# authentication
# --------------------------------------------------------------------------------------------


async def test_with_api_keys_configured_every_http_request_needs_a_valid_key(deploy):
    dep = keyed_deployment(deploy)
    async with running(dep) as gw:

        def initialize(**kw: Any) -> int:
            kw["headers"] = {**MCP_HEADERS, **kw.get("headers", {})}
            status, _ = http_request(gw.url, body=INITIALIZE, **kw)
            return status

        assert await anyio.to_thread.run_sync(lambda: initialize()) == 401, "no Authorization header"
        wrong = await anyio.to_thread.run_sync(lambda: initialize(bearer="not-a-key-0123456789abcdef"))
        assert wrong == 401, "an unknown key"
        basic = await anyio.to_thread.run_sync(
            lambda: initialize(headers={**MCP_HEADERS, "Authorization": "Basic YWxpY2U6c2VjcmV0"})
        )
        assert basic == 401, "not a bearer token"
        right = await anyio.to_thread.run_sync(lambda: initialize(bearer=KEYS["alice"]))
        assert right == 200, "alice's key"

        # the admin endpoints too
        for path in ("/admin/mcp", EMERGENCY, "/admin/registry/notes/disable"):
            status, _ = await post(gw, path, None, INITIALIZE if path == "/admin/mcp" else None)
            assert status == 401, f"POST {path} without a key answered {status}"

        # an agent without a key cannot connect; with one it works and acts as its principal
        with pytest.raises(AssertionError):
            async with http_agent(gw, "auto"):
                pass
        async with agent_as(gw, "alice") as alice:
            await wait_for_tools(alice, {"notes__list_notes"})
            assert len(await note_titles(alice)) == 2
    rows = await audit_where(dep, "alice's read", exposed_name="notes__list_notes")
    assert {r["actor_id"] for r in rows} == {"alice"}, show_rows(rows)


async def test_only_admins_use_the_admin_http_api(deploy):
    dep = keyed_deployment(deploy, policies={"allow-all.yaml": ALLOW_ALL})
    async with running(dep) as gw, agent_as(gw, "alice") as alice:
        await wait_for_tools(alice, {"notes__add_note"})
        for path, body in (
            (EMERGENCY, None),
            ("/admin/registry/notes/disable", None),
            ("/admin/tokens/revoke", {"audience": "notes"}),
        ):
            status, text = await post(gw, path, "alice", body)
            assert status == 403, f"alice (no `admin` label): POST {path} answered {status}: {text}"
        # nothing happened: writes run without approval, notes is still served
        ran = await alice.client.call_tool("notes__add_note", {"title": "still-normal", "body": "b"})
        assert not ran.is_error, text_of(ran)
    rows = await audit_where(dep, "alice's refused admin actions", server_name="mcp-warden", actor_id="alice")
    assert len(rows) == 3 and {(r["decision"], r["action_class"]) for r in rows} == {("DENY", "admin")}, show_rows(rows)


# --------------------------------------------------------------------------------------------
# emergency write-approval mode
# --------------------------------------------------------------------------------------------


async def add_note(agent: Agent, prefix: str) -> tuple[str, Any]:
    title = f"{prefix}-{next(_titles)}"
    return title, await agent.client.call_tool("notes__add_note", {"title": title, "body": "b"})


async def test_emergency_mode_holds_every_write_until_turned_off_and_survives_a_restart(deploy):
    dep = keyed_deployment(deploy, policies={"allow-all.yaml": ALLOW_ALL})
    async with running(dep) as gw, agent_as(gw, "alice") as alice:
        await wait_for_tools(alice, {"notes__add_note"})
        _, ran = await add_note(alice, "before")
        assert not ran.is_error, f"the policy allows writes: {text_of(ran)}"

        status, text = await post(gw, EMERGENCY, "bob")
        assert status == 200, f"turning emergency mode on: {status} {text}"

        async def held() -> tuple[str, str, str] | None:
            title, result = await add_note(alice, "during")
            if not result.is_error:
                return None
            return title, pending_approval(result), text_of(result)

        title, aid, text = await eventually(held, timeout=20, what="a write to need approval in emergency mode")
        assert "emergency" in text.lower(), f"the agent is told why: {text}"
        assert title not in await note_titles(alice), "reads still run; the held write did not"

        # an emergency approval is an approval like any other
        async with admin_as(gw, "bob") as bob:
            approved = await bob.client.call_tool("approve", {"id": aid})
            assert not approved.is_error, text_of(approved)
        ran = await alice.client.call_tool("notes__add_note", {"title": title, "body": "b"})
        assert not ran.is_error, text_of(ran)
        assert (await note_titles(alice)).count(title) == 1

    # persisted: a restarted gateway is still in emergency mode
    async with running(dep) as gw, agent_as(gw, "alice") as alice:
        await wait_for_tools(alice, {"notes__add_note"})
        _, result = await add_note(alice, "after-restart")
        pending_approval(result)

        status, text = await post(gw, EMERGENCY, "bob", {"enabled": False})
        assert status == 200, f"turning emergency mode off: {status} {text}"

        async def runs() -> bool:
            _, result = await add_note(alice, "off-again")
            return not result.is_error

        await eventually(runs, timeout=20, what="writes to run without approval again")

    rows = await audit_where(dep, "emergency admin rows", server_name="mcp-warden", actor_id="bob")
    emergency = [r for r in rows if "emergency" in r["tool_name"]]
    assert len(emergency) == 2 and {(r["decision"], r["action_class"]) for r in emergency} == {("ALLOW", "admin")}, (
        show_rows(rows)
    )
    held_rows = await audit_where(dep, "held writes", exposed_name="notes__add_note", decision="REQUIRE_APPROVAL")
    assert all(r["approval_id"] for r in held_rows), show_rows(held_rows)


# --------------------------------------------------------------------------------------------
# containment
# --------------------------------------------------------------------------------------------


async def test_containment_endpoints_disable_an_upstream_and_revoke_its_credentials(deploy):
    dep = keyed_deployment(deploy, policies={"allow-all.yaml": ALLOW_ALL})
    async with running(dep) as gw, agent_as(gw, "alice") as alice:
        await wait_for_tools(alice, {"notes__list_notes", "notes__add_note"})

        status, text = await post(gw, "/admin/registry/notes/disable", "bob")
        assert status == 200, f"disable: {status} {text}"

        async def unlisted() -> bool:
            return not any(n.startswith("notes__") for n in await tool_names(alice))

        await eventually(unlisted, timeout=20, what="the disabled upstream's tools to leave tools/list")
        answer = await refused(alice, "notes__list_notes")
        assert "disabled" in answer.lower() or "unknown tool" in answer.lower(), answer
        await refused(alice, "notes__add_note", {"title": "contained", "body": "b"})

        status, text = await post(gw, "/admin/tokens/revoke", "bob", {"audience": "notes"})
        assert status == 200, f"revoke: {status} {text}"
        status, _ = await post(gw, "/admin/registry/no-such-upstream/disable", "bob")
        assert status in (400, 404), f"disabling an unregistered upstream answered {status}"

        # the incident is over: bob puts notes back in service from his MCP client
        async with admin_as(gw, "bob") as bob:
            enabled = await bob.client.call_tool("registry_enable", {"server": "notes"})
            assert not enabled.is_error, text_of(enabled)
        await wait_for_tools(alice, {"notes__list_notes", "notes__add_note"})
        assert len(await note_titles(alice)) == 2

    rows = await audit_where(dep, "the refused calls", exposed_name="notes__list_notes", decision="DENY")
    assert [reason_code(r) for r in rows] == ["upstream_disabled"], show_rows(rows)
    admin = await audit_where(dep, "bob's containment rows", server_name="mcp-warden", actor_id="bob", decision="ALLOW")
    assert sorted(r["tool_name"] for r in admin) == ["registry_disable", "registry_enable", "tokens_revoke"], show_rows(admin)
    assert {r["action_class"] for r in admin} == {"admin"}, show_rows(admin)
    unknown = await audit_where(dep, "the refused disable", server_name="mcp-warden", decision="DENY")
    assert [(r["actor_id"], r["tool_name"], reason_code(r)) for r in unknown] == [
        ("bob", "registry_disable", "unknown_server")
    ], show_rows(unknown)


async def refused(agent: Agent, name: str, args: dict[str, Any] | None = None) -> str:
    try:
        result = await agent.client.call_tool(name, args or {})
    except MCPError as exc:
        return str(exc)
    assert result.is_error, f"{name} ran on a disabled upstream: {text_of(result)}"
    return text_of(result)


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_contain_cli_runs_the_three_steps_against_a_running_gateway(deploy, transport):
    dep = deploy(
        {"notes": notes_upstream()},
        policies={"allow-all.yaml": ALLOW_ALL},
        extra={"control": {"poll_sec": 0.2}},
    )
    async with open_agent(dep, transport, "auto", wait_for={"notes__list_notes"}) as agent:
        assert len(await note_titles(agent)) == 2

        done = await anyio.to_thread.run_sync(lambda: dep.run_cli("contain", "notes"))
        assert done.returncode == 0, said(done)
        lines = [line.lower() for line in done.stdout.splitlines() if line.strip()]
        for step in ("disable", "revoke", "emergency"):
            assert any(step in line for line in lines), f"`contain` does not report the {step} step: {said(done)}"
        order = [next(i for i, line in enumerate(lines) if step in line) for step in ("disable", "revoke", "emergency")]
        assert order == sorted(order), f"the three steps run in order: {said(done)}"

        async def contained() -> bool:
            return not any(n.startswith("notes__") for n in await tool_names(agent))

        await eventually(contained, timeout=20, what="the running gateway to stop serving notes")
        await refused(agent, "notes__list_notes")

    rows = await audit_where(dep, "the operator's containment rows", server_name="mcp-warden", actor_id="operator")
    assert len(rows) == 3 and {(r["decision"], r["action_class"]) for r in rows} == {("ALLOW", "admin")}, show_rows(rows)

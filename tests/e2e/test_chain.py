"""Chain isolation end to end: depth and fan-out budgets with a real call-back loop, tool
domains, and signed single-use handoff objects.

The `relay` fixture is an upstream that is itself an MCP client of the gateway: it calls back
through the gateway (as principal `relay`, labelled `upstream`), carrying the credential it was
called with, so its calls continue the caller's chain one level deeper.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from harness import (
    ALLOW_ALL,
    Deployment,
    HttpGateway,
    eventually,
    notes_upstream,
    result_json,
    text_of,
)

pytestmark = pytest.mark.anyio

ALICE = "alice-chain-key-0123456789"
RELAY = "relay-chain-key-0123456789"
PRINCIPALS = """
[[principals]]
id = "alice"
scopes = ["*:*"]
api_key_env = "ALICE_KEY"

[[principals]]
id = "relay"
labels = ["upstream"]
scopes = ["*:*"]
api_key_env = "RELAY_KEY"

[[principals]]
id = "local"

[[principals]]
id = "operator"
labels = ["approver", "admin"]
"""
SUMMARY_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string", "maxLength": 40}},
    "required": ["text"],
    "additionalProperties": False,
}
HANDOFF = "io.mcp-warden/handoff"
CHAIN = "io.mcp-warden/chain"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deployment(root: Path, port: int, chain: dict[str, Any], policies: dict[str, str] | None = None) -> Deployment:
    relay = {
        "command": ["mcp-warden", "fixture", "relay"],
        "env": {"RELAY_GATEWAY_URL": f"http://127.0.0.1:{port}/mcp", "RELAY_API_KEY": RELAY},
        "domain": "lab",
        "credential": "minted",
        "tools": {"relay": "write", "loop": "write", "fanout": "write"},
    }
    return Deployment(
        root,
        {
            "relay": relay,
            "notes": notes_upstream(domain="lab", handoff_schema=SUMMARY_SCHEMA),
            "archive": notes_upstream(prefix="archive", domain="archive", handoff_schema=SUMMARY_SCHEMA),
        },
        extra={"chain": chain},
        policies=policies,
        toml_extra=PRINCIPALS,
        env={"ALICE_KEY": ALICE, "RELAY_KEY": RELAY},
    )


@contextlib.asynccontextmanager
async def gateway(dep: Deployment, port: int) -> AsyncIterator[HttpGateway]:
    gw = HttpGateway(dep, addr=f"127.0.0.1:{port}")
    await anyio.to_thread.run_sync(gw.start)
    try:
        await anyio.to_thread.run_sync(gw.wait_ready)
        yield gw
    finally:
        await anyio.to_thread.run_sync(gw.stop)


@contextlib.asynccontextmanager
async def alice(gw: HttpGateway, mode: str = "auto") -> AsyncIterator[Client]:
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {ALICE}"}) as http:
        client = Client(streamable_http_client(gw.url, http_client=http), mode=mode, cache=None, read_timeout_seconds=60)
        async with client:
            yield client


async def call(c: Client, tool: str, args: dict[str, Any], chain: str, handoff: str | None = None) -> Any:
    meta: dict[str, Any] = {CHAIN: chain}
    if handoff is not None:
        meta[HANDOFF] = handoff
    return await c.call_tool(tool, args, meta=meta)


def refusal(result: Any) -> str:
    assert result.is_error, f"expected a refusal, got: {text_of(result)}"
    return text_of(result)


def depths(nested: Any) -> list[Any]:
    """The depth each level of a `loop` answer reports, outermost first."""
    out = []
    while isinstance(nested, dict) and "depth_seen" in nested:
        out.append(nested["depth_seen"])
        nested = nested.get("inner")
    return out + [nested]


async def test_a_call_back_loop_stops_at_the_maximum_depth(tmp_path: Path) -> None:
    port = free_port()
    dep = deployment(tmp_path / "dep", port, {"max_depth": 3})
    async with gateway(dep, port) as gw, alice(gw) as c:
        result = await call(c, "relay__loop", {}, chain="loop-1")
        assert not result.is_error, text_of(result)
        levels = depths(result_json(result))
        # The agent's call is depth 0; each call-back is one deeper; depth 4 is refused.
        assert levels[:4] == [0, 1, 2, 3], levels
        assert "chain_depth_exceeded" in str(levels[4]), levels
    rows = [r for r in dep.audit_rows() if r["exposed_name"] == "relay__loop"]
    assert {r["chain_id"] for r in rows} == {"alice/loop-1"}, "one chain across every call-back"
    allowed = sorted(r["chain_depth"] for r in rows if r["decision"] == "ALLOW")
    denied = [r for r in rows if r["decision"] == "DENY"]
    assert allowed == [0, 1, 2, 3], rows
    assert [(r["chain_depth"], r["actor_id"], r["reason"].split(":")[0]) for r in denied] == [
        (4, "relay", "chain_depth_exceeded")
    ], denied
    events = [e for e in dep.gate_events() if e["gate"] == "interference"]
    assert events and "chain_depth_exceeded" in events[0]["detail"], events


async def test_a_fan_out_spike_is_cut_off(tmp_path: Path) -> None:
    port = free_port()
    dep = deployment(tmp_path / "dep", port, {"max_fanout": 10, "fanout_window_sec": 30})
    async with gateway(dep, port) as gw, alice(gw) as c:
        result = await call(c, "relay__fanout", {"tool": "notes__echo", "count": 40, "arguments": {"text": "x"}}, "spike")
        assert not result.is_error, text_of(result)
        out = result_json(result)
        # The agent's own call to the relay is the chain's first; nine more fit the window.
        assert out["ok"] == 9 and out["refused"] == 31, out
        assert "chain_fanout_exceeded" in out["first_refusal"], out
        # Another chain is not affected.
        other = await call(c, "notes__echo", {"text": "calm"}, "other")
        assert not other.is_error, text_of(other)
    events = [e for e in dep.gate_events() if e["gate"] == "interference"]
    assert events and all("chain_fanout_exceeded" in e["detail"] for e in events), events


async def test_a_call_back_without_its_credential_is_refused(tmp_path: Path) -> None:
    port = free_port()
    dep = deployment(tmp_path / "dep", port, {})
    async with gateway(dep, port) as gw:
        async with create_mcp_http_client(headers={"Authorization": f"Bearer {RELAY}"}) as http:
            client = Client(streamable_http_client(gw.url, http_client=http), mode="auto", cache=None)
            async with client:
                result = await client.call_tool("notes__echo", {"text": "sneak"})
                assert "chain_token_required" in refusal(result)
                forged = await client.call_tool("notes__echo", {"text": "sneak"}, meta={CHAIN: "eyJhbGciOiJFZERTQSJ9.e30.AAAA"})
                assert "chain_token_invalid" in refusal(forged)


def tamper(token: str) -> str:
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["tools"].append("archive__delete_note")
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{sig}"


async def test_crossing_a_domain_needs_a_handoff_used_once(tmp_path: Path) -> None:
    port = free_port()
    dep = deployment(tmp_path / "dep", port, {})
    async with gateway(dep, port) as gw:
        async with alice(gw) as c:
            # The chain binds to the domain of its first call.
            assert not (await call(c, "notes__echo", {"text": "in lab"}, "h")).is_error
            assert "cross_domain_without_handoff" in refusal(await call(c, "archive__echo", {"text": "x"}, "h"))
            # The payload must match the target domain's schema.
            bad = await call(c, "warden__handoff", {"target_domain": "archive", "tools": ["archive__echo"], "payload": {"text": "y" * 60}}, "h")
            assert "handoff_payload_invalid" in refusal(bad)
            # Only tools of the target domain.
            wrong = await call(c, "warden__handoff", {"target_domain": "archive", "tools": ["notes__echo"], "payload": {"text": "ok"}}, "h")
            assert "handoff_tool_not_in_domain" in refusal(wrong)
            granted = await call(c, "warden__handoff", {"target_domain": "archive", "tools": ["archive__echo"], "payload": {"text": "summary"}}, "h")
            assert not granted.is_error, text_of(granted)
            h1 = result_json(granted)["handoff"]
            assert result_json(granted)["from"] == "lab" and result_json(granted)["to"] == "archive"
            # Tampered, other arguments, other chain: refused, and the handoff is not spent.
            assert "handoff_invalid" in refusal(await call(c, "archive__echo", {"text": "summary"}, "h", handoff=tamper(h1)))
            assert "handoff_mismatch" in refusal(await call(c, "archive__echo", {"text": "other"}, "h", handoff=h1))
            assert not (await call(c, "notes__echo", {"text": "in lab"}, "elsewhere")).is_error
            assert "handoff_mismatch" in refusal(await call(c, "archive__echo", {"text": "summary"}, "elsewhere", handoff=h1))
            # Used: the chain moves to the archive domain.
            moved = await call(c, "archive__echo", {"text": "summary"}, "h", handoff=h1)
            assert not moved.is_error, text_of(moved)
            assert not (await call(c, "archive__echo", {"text": "stay"}, "h")).is_error
            assert "cross_domain_without_handoff" in refusal(await call(c, "notes__echo", {"text": "back"}, "h"))
            # Back to lab with a second handoff, then the first one again: spent.
            back = await call(c, "warden__handoff", {"target_domain": "lab", "tools": ["notes__echo"], "payload": {"text": "back"}}, "h")
            h2 = result_json(back)["handoff"]
            assert not (await call(c, "notes__echo", {"text": "back"}, "h", handoff=h2)).is_error
            assert "handoff_spent" in refusal(await call(c, "archive__echo", {"text": "summary"}, "h", handoff=h1))
    # After a restart the store still knows it was spent.
    async with gateway(dep, port) as gw, alice(gw) as c:
        assert not (await call(c, "notes__echo", {"text": "in lab"}, "h")).is_error
        assert "handoff_spent" in refusal(await call(c, "archive__echo", {"text": "summary"}, "h", handoff=h1))
    reasons = [r["reason"].split(":")[0] for r in dep.audit_rows() if r["decision"] == "DENY"]
    for code in ("cross_domain_without_handoff", "handoff_payload_invalid", "handoff_invalid", "handoff_mismatch", "handoff_spent"):
        assert code in reasons, (code, reasons)


async def test_an_expired_handoff_and_a_policy_that_denies_handoffs(tmp_path: Path) -> None:
    port = free_port()
    dep = deployment(tmp_path / "dep", port, {"handoff_ttl_sec": 1})
    async with gateway(dep, port) as gw, alice(gw) as c:
        assert not (await call(c, "notes__echo", {"text": "in lab"}, "e")).is_error
        granted = await call(c, "warden__handoff", {"target_domain": "archive", "tools": ["archive__echo"], "payload": {"text": "late"}}, "e")
        h = result_json(granted)["handoff"]
        await anyio.sleep(2.2)
        assert "handoff_expired" in refusal(await call(c, "archive__echo", {"text": "late"}, "e", handoff=h))
        # The policy decides the handoff itself (server `warden`, tool `handoff`).
        deny = ALLOW_ALL + """  - id: no-handoffs-to-archive
    match: { labels: { mcp.server: warden, mcp.tool: handoff, mcp.domain: archive } }
    decision: DENY
"""
        dep.write_policy("allow-all.yaml", deny)

        async def denied() -> bool:
            r = await call(c, "warden__handoff", {"target_domain": "archive", "tools": ["archive__echo"], "payload": {"text": "x"}}, "e")
            return r.is_error and "no-handoffs-to-archive" in text_of(r)

        await eventually(denied, what="the reloaded policy denies the handoff")


async def test_a_handoff_the_policy_holds_for_approval(tmp_path: Path) -> None:
    port = free_port()
    hold = ALLOW_ALL + """  - id: approve-handoffs
    match: { labels: { mcp.server: warden, mcp.tool: handoff } }
    decision: REQUIRE_APPROVAL
"""
    dep = deployment(tmp_path / "dep", port, {}, policies={"allow-all.yaml": hold})
    args = {"target_domain": "archive", "tools": ["archive__echo"], "payload": {"text": "reviewed"}}
    async with gateway(dep, port) as gw, alice(gw) as c:
        assert not (await call(c, "notes__echo", {"text": "in lab"}, "a")).is_error
        held = await call(c, "warden__handoff", args, "a")
        text = refusal(held)
        m = re.search(r"[Aa]pproval ([A-Za-z0-9_-]+) is pending", text)
        assert m, text
        # The operator (another principal, an approver) approves it from the CLI.
        done = await anyio.to_thread.run_sync(lambda: dep.run_cli("approvals", "approve", m.group(1)))
        assert done.returncode == 0, done.stderr
        granted = await call(c, "warden__handoff", args, "a")
        assert not granted.is_error, text_of(granted)
        h = result_json(granted)["handoff"]
        assert not (await call(c, "archive__echo", {"text": "reviewed"}, "a", handoff=h)).is_error
    rows = [r for r in dep.audit_rows() if r["exposed_name"] == "warden__handoff"]
    assert [r["decision"] for r in rows] == ["REQUIRE_APPROVAL", "ALLOW"], rows
    assert rows[1]["approval_id"] == m.group(1)

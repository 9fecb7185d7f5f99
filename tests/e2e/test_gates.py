"""Detection gates end to end: the real gateway evaluates its gates over its store every
`gates.interval_sec`, pages a webhook (here a small HTTP server in this test process) once per
firing episode and resolves when the gate clears; `mcp-warden gates --json` shows the state;
`/metrics` exports it."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import pytest
from mcp import MCPError

from harness import HttpGateway, eventually, http_agent, notes_upstream, stdio_agent, wait_for_tools

pytestmark = pytest.mark.anyio

GENERIC_KEYS = {
    "gate",
    "status",
    "value",
    "threshold",
    "target",
    "owner",
    "window_sec",
    "summary",
    "dedup_key",
    "gateway",
    "at",
}


class Hook:
    """A webhook receiver on loopback: every JSON body POSTed to it, in order."""

    def __init__(self) -> None:
        self.pages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with hook.lock:
                    hook.pages.append(json.loads(body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def of(self, gate: str) -> list[dict[str, Any]]:
        with self.lock:
            return [p for p in self.pages if p.get("gate") == gate]


@contextmanager
def webhook() -> Iterator[Hook]:
    hook = Hook()
    thread = threading.Thread(target=hook.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        hook.server.shutdown()
        hook.server.server_close()


def gates_cli(dep) -> dict[str, dict[str, Any]]:
    done = dep.run_cli("gates", "--json")
    assert done.returncode == 0, done.stderr
    return {g["gate"]: g for g in json.loads(done.stdout)["gates"]}


async def test_an_unapproved_write_pages_once_shows_firing_and_resolves(deploy):
    with webhook() as hook:
        # The default e2e policy ALLOWs every call, writes included: exactly what the gate is
        # for. A short window lets the gate clear within the test.
        dep = deploy(
            {"notes": notes_upstream()},
            extra={
                "gates": {"interval_sec": 0.3, "unapproved_writes": {"window_sec": 8}},
                "paging": {"webhook_url": hook.url, "source": "e2e-gateway"},
            },
        )
        with HttpGateway(dep) as gw:
            await anyio.to_thread.run_sync(gw.wait_ready)
            async with http_agent(gw, "auto") as agent:
                await wait_for_tools(agent, {"notes__add_note"})
                gates = gates_cli(dep)
                assert gates["unapproved_writes"]["state"] == "ok", gates
                added = await agent.client.call_tool("notes__add_note", {"title": "t", "body": "b"})
                assert not added.is_error

                pages = await eventually(
                    lambda: _async(hook.of("unapproved_writes")), timeout=20, what="a page for unapproved_writes"
                )
                page = pages[0]
                assert GENERIC_KEYS <= set(page), page
                assert page["status"] == "firing"
                assert page["value"] == 1
                assert page["threshold"] == 0 and page["target"] == 0
                assert page["owner"] == "Governance On-call"
                assert page["window_sec"] == 8
                assert page["gateway"] == "e2e-gateway"
                assert page["dedup_key"].startswith("mcp-warden/unapproved_writes/")
                assert "unapproved write calls: 1" in page["summary"]

                gates = gates_cli(dep)
                uw = gates["unapproved_writes"]
                assert uw["state"] == "firing", uw
                assert uw["value"] == 1 and uw["owner"] == "Governance On-call"
                assert uw["dedup_key"] == page["dedup_key"]
                assert uw["last_page"]["action"] == "trigger"
                assert uw["firing_since"]
                assert {g for g, v in gates.items() if v["state"] == "firing"} == {"unapproved_writes"}

                metrics = await anyio.to_thread.run_sync(lambda: _get(gw.base + "/metrics"))
                assert 'mcp_warden_gate_firing{gate="unapproved_writes"} 1' in metrics, metrics
                assert 'mcp_warden_pages_total{gate="unapproved_writes",action="trigger"} 1' in metrics

                # The window empties 8 s after the write: one resolve, same key, and never a
                # second trigger although the gate was evaluated every 0.3 s meanwhile.
                resolved = await eventually(
                    lambda: _async([p for p in hook.of("unapproved_writes") if p["status"] == "resolved"]),
                    timeout=30,
                    what="a resolve for unapproved_writes",
                )
                assert resolved[0]["dedup_key"] == page["dedup_key"]
                assert [p["status"] for p in hook.of("unapproved_writes")] == ["firing", "resolved"]
                gates = gates_cli(dep)
                assert gates["unapproved_writes"]["state"] == "ok"
                assert gates["unapproved_writes"]["last_page"]["action"] == "resolve"
        stored = dep._rows("SELECT gate, state FROM gate_state ORDER BY gate")
        assert {r["gate"] for r in stored} == {
            "manifest_drift",
            "quarantine_ratio",
            "registry_drift",
            "scope_mismatch",
            "unapproved_writes",
        }


async def test_scope_mismatch_ratio_pages_the_identity_team(deploy):
    with webhook() as hook:
        dep = deploy(
            {"notes": notes_upstream()},
            extra={
                "stdio_principal": "reader",
                "gates": {
                    "interval_sec": 0.3,
                    "scope_mismatch": {"for_sec": 0, "min_calls": 4, "window_sec": 120},
                },
                "paging": {"webhook_url": hook.url},
            },
            toml_extra="""
[[principals]]
id = "reader"
scopes = ["notes:read"]

[[principals]]
id = "operator"
labels = ["approver", "admin"]
""",
        )
        async with stdio_agent(dep, "auto") as agent:
            await wait_for_tools(agent, {"notes__list_notes"})
            for _ in range(3):
                listed = await agent.client.call_tool("notes__list_notes", {})
                assert not listed.is_error
            # Its scopes do not cover writes: refused (as an unknown tool) and audited as
            # scope_mismatch.
            with pytest.raises(MCPError):
                await agent.client.call_tool("notes__add_note", {"title": "t", "body": "b"})
            pages = await eventually(
                lambda: _async(hook.of("scope_mismatch")), timeout=20, what="a page for scope_mismatch"
            )
        page = pages[0]
        assert page["status"] == "firing"
        assert page["value"] == 0.25
        assert page["owner"] == "Identity Team"
        assert page["threshold"] == 0.01
        assert "of 4 calls" in page["summary"], page["summary"]
        assert hook.of("unapproved_writes") == []


async def test_two_gateways_on_one_store_page_once(deploy):
    with webhook() as hook:
        dep = deploy(
            {"notes": notes_upstream()},
            extra={"gates": {"interval_sec": 0.2}, "paging": {"webhook_url": hook.url}},
        )
        with HttpGateway(dep) as one, HttpGateway(dep) as two:
            for gw in (one, two):
                await anyio.to_thread.run_sync(gw.wait_ready)
            async with http_agent(two, "auto") as agent:
                await wait_for_tools(agent, {"notes__add_note"})
                added = await agent.client.call_tool("notes__add_note", {"title": "t", "body": "b"})
                assert not added.is_error
            await eventually(lambda: _async(hook.of("unapproved_writes")), timeout=20, what="a page")
            first = _evaluation(dep)
            # Both gateways run their evaluator every 0.2 s; only the lease holder evaluates, and
            # the episode is paged once however many rounds pass.
            await eventually(
                lambda: _async((_evaluation(dep)[1] - first[1]).total_seconds() > 2),
                timeout=20,
                what="ten more rounds",
            )
            assert _evaluation(dep)[0] == first[0]
            assert [p["status"] for p in hook.of("unapproved_writes")] == ["firing"]
            leases = dep._rows("SELECT name, holder FROM leases")
            assert [(r["name"], r["holder"]) for r in leases] == [("gates", first[0])]


def _evaluation(dep) -> tuple[str, datetime]:
    """Who last evaluated unapproved_writes, and when."""
    row = dep._rows("SELECT evaluated_by, evaluated_at FROM gate_state WHERE gate = 'unapproved_writes'")[0]
    return row["evaluated_by"], datetime.fromisoformat(row["evaluated_at"])


async def _async(value: Any) -> Any:
    return value


def _get(url: str) -> str:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as resp:
        return resp.read().decode()

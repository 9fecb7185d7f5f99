"""The audit store: exactly one `mcp_audit` row per tools/call, on every exit path — allowed,
denied (unknown tool), timed out, upstream gone."""

from __future__ import annotations

import pytest
from mcp import MCPError

from harness import TRANSPORTS, eventually, notes_upstream, open_agent, python_upstream, text_of

pytestmark = pytest.mark.anyio

COLUMNS = {
    "event_time",
    "actor_id",
    "server_name",
    "tool_name",
    "action_class",
    "decision",
    "approval_id",
    "reason",
    "stage",
    "chain_id",
    "request_id",
    "args_digest",
}


def rows_for(rows: list[dict], tool: str) -> list[dict]:
    """Rows of one tool, whether the store keeps the upstream's name or the exposed one."""
    server, bare = tool.split("__", 1)
    return [
        r
        for r in rows
        if r.get("tool_name") == tool or (r.get("tool_name") == bare and r.get("server_name") == server)
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_one_audit_row_per_call_on_every_exit_path(deploy, transport):
    dep = deploy(
        {
            "notes": notes_upstream(),
            "hang": python_upstream("hang.py", tools={"ping": "read", "hang": "read"}),
            "crash": python_upstream("crash.py", tools={"ping": "read", "pid": "read", "crash": "destructive"}),
        },
        call_timeout_sec=1,
    )
    async with open_agent(dep, transport, "auto", wait_for={"notes__list_notes", "hang__hang", "crash__crash"}) as agent:
        c = agent.client
        calls = 0

        ok = await c.call_tool("notes__list_notes", {})
        assert not ok.is_error
        calls += 1
        added = await c.call_tool("notes__add_note", {"title": "audited", "body": "b"})
        assert not added.is_error
        calls += 1
        for text in ("same", "same", "other"):
            echoed = await c.call_tool("notes__echo", {"text": text})
            assert not echoed.is_error
            calls += 1
        with pytest.raises(MCPError):
            await c.call_tool("notes__no_such_tool", {"x": 1})
        calls += 1
        timed_out = await c.call_tool("hang__hang", {})
        assert timed_out.is_error and "timed out" in text_of(timed_out).lower()
        calls += 1
        crashed = await c.call_tool("crash__crash", {})
        assert crashed.is_error
        calls += 1

        rows = await eventually(
            lambda: _rows_at_least(dep, calls), timeout=20, what=f"{calls} rows in mcp_audit"
        )
        missing = COLUMNS - set(rows[0])
        assert not missing, f"mcp_audit lacks columns {missing}"
        assert len(rows) == calls, f"one row per call: {calls} calls, {len(rows)} rows:\n" + _show(rows)

        for row in rows:
            assert row["event_time"], row
            assert row["actor_id"], row
            assert row["request_id"], row
            assert row["decision"] in ("ALLOW", "DENY", "REQUIRE_APPROVAL"), row
        assert len({r["request_id"] for r in rows}) == len(rows), "request ids are distinct"

        listed = one(rows, "notes__list_notes")
        assert (listed["server_name"], listed["decision"], listed["action_class"]) == ("notes", "ALLOW", "read"), listed
        assert not listed["approval_id"]
        add = one(rows, "notes__add_note")
        assert (add["server_name"], add["decision"], add["action_class"]) == ("notes", "ALLOW", "write"), add

        echoes = rows_for(rows, "notes__echo")
        assert len(echoes) == 3
        digests = [r["args_digest"] for r in echoes]
        assert all(digests), echoes
        assert digests[0] == digests[1] != digests[2], f"same arguments, same digest; others differ: {digests}"

        unknown = one(rows, "notes__no_such_tool")
        assert unknown["decision"] == "DENY", unknown
        assert "unknown_tool" in (unknown["reason"] or ""), unknown

        hung = one(rows, "hang__hang")
        assert hung["server_name"] == "hang", hung
        assert "timeout" in (hung["reason"] or ""), hung

        gone = one(rows, "crash__crash")
        assert (gone["server_name"], gone["action_class"]) == ("crash", "destructive"), gone
        # the upstream died mid-call: the reason says the upstream failed or became unavailable
        assert any(r in (gone["reason"] or "") for r in ("upstream_unavailable", "upstream_failed")), gone

        # nothing more arrives late: one more call makes exactly one more row
        await c.call_tool("notes__echo", {"text": "sentinel"})
        rows = await eventually(lambda: _rows_at_least(dep, calls + 1), timeout=20, what="the sentinel row")
        assert len(rows) == calls + 1, _show(rows)


async def test_calls_to_a_down_upstream_are_audited(deploy, tmp_path):
    marker = tmp_path / "stay-down"
    dep = deploy(
        {
            "notes": notes_upstream(),
            "crash": python_upstream("crash.py", "--stay-down", str(marker), tools={"ping": "read", "crash": "write"}),
        },
        restart_backoff_ms=100,
    )
    async with open_agent(dep, "http", "auto", wait_for={"crash__crash"}) as agent:
        await agent.client.call_tool("crash__crash", {})
        down = await agent.client.call_tool("crash__ping", {})
        assert down.is_error
        rows = await eventually(lambda: _rows_at_least(dep, 2), timeout=20, what="2 rows")
        pings = rows_for(rows, "crash__ping")
        assert len(pings) == 1, _show(rows)
        assert "upstream_unavailable" in (pings[0]["reason"] or ""), pings[0]
        assert pings[0]["server_name"] == "crash"


def one(rows: list[dict], tool: str) -> dict:
    found = rows_for(rows, tool)
    assert len(found) == 1, f"expected exactly one row for {tool}, found {len(found)}:\n{_show(rows)}"
    return found[0]


async def _rows_at_least(dep, n: int) -> list[dict] | None:
    rows = dep.audit_rows()
    return rows if len(rows) >= n else None


def _show(rows: list[dict]) -> str:
    keys = ("tool_name", "server_name", "decision", "reason", "action_class")
    return "\n".join(str({k: r.get(k) for k in keys}) for r in rows)

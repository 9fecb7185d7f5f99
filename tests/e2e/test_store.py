"""The audit store under stress: a gateway killed with SIGKILL loses no decided call's row (the
spool), and while the store refuses writes calls are refused (fail closed) — visibly, and with
every refusal's own row written once the store is back."""

from __future__ import annotations

import sqlite3
import urllib.request

import anyio
import pytest

from harness import HttpGateway, eventually, http_agent, notes_upstream, text_of

pytestmark = pytest.mark.anyio


def metric(gw: HttpGateway, name: str) -> float | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(gw.base + "/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


def echo_rows(dep) -> list[dict]:
    return [r for r in dep.audit_rows() if r["tool_name"] == "echo"]


async def at_least(dep, n: int) -> list[dict]:
    async def probe() -> list[dict] | None:
        rows = echo_rows(dep)
        return rows if len(rows) >= n else None

    return await eventually(probe, timeout=20, what=f"{n} echo rows in mcp_audit")


async def test_a_killed_gateway_loses_no_audit_row(deploy):
    dep = deploy({"notes": notes_upstream()})
    calls = 40
    gw = HttpGateway(dep).start()
    try:
        await anyio.to_thread.run_sync(gw.wait_ready)
        async with http_agent(gw, "auto") as agent:

            async def one(i: int) -> None:
                result = await agent.client.call_tool("notes__echo", {"text": f"kill-{i}"})
                assert not result.is_error, text_of(result)

            async with anyio.create_task_group() as tg:
                for i in range(calls):
                    tg.start_soon(one, i)
            # Every call has been answered: kill at once, before the writer's next batch.
            assert gw.proc is not None
            gw.proc.kill()
            gw.proc.wait(timeout=10)
    finally:
        gw.stop()
    before_restart = len(echo_rows(dep))
    spooled = list((dep.root / ".state" / "audit-spool").glob("*.jsonl"))
    assert spooled, "the killed gateway's spool file is left for the next start"

    with HttpGateway(dep) as again:
        await anyio.to_thread.run_sync(again.wait_ready)
        rows = await at_least(dep, calls)
    digests = [r["args_digest"] for r in rows]
    assert len(rows) == calls, f"{len(rows)} rows for {calls} calls ({before_restart} written before the kill)"
    assert len(set(digests)) == calls, "no call recorded twice"
    assert all(r["decision"] == "ALLOW" and r["reason"] == "ok" for r in rows)
    assert not list((dep.root / ".state" / "audit-spool").glob("*.jsonl")), "a clean stop leaves no spool"
    verify = dep.run_cli("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    print(f"rows written before the kill: {before_restart}/{calls}; recovered at restart: {calls - before_restart}")


async def test_calls_are_refused_while_the_store_refuses_writes_and_nothing_is_lost(deploy):
    dep = deploy({"notes": notes_upstream()})
    with HttpGateway(dep) as gw:
        await anyio.to_thread.run_sync(gw.wait_ready)
        async with http_agent(gw, "auto") as agent:
            c = agent.client
            first = await c.call_tool("notes__echo", {"text": "before"})
            assert not first.is_error
            await at_least(dep, 1)

            # The store starts refusing every audit write.
            db = sqlite3.connect(dep.store, timeout=5)
            db.execute(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON mcp_audit "
                "BEGIN SELECT RAISE(ABORT, 'store refusing writes (test)'); END"
            )
            db.commit()

            made = 1
            refused = None
            for i in range(50):
                result = await c.call_tool("notes__echo", {"text": f"during-{i}"})
                made += 1
                if result.is_error:
                    refused = text_of(result)
                    break
                await anyio.sleep(0.05)
            assert refused is not None, "calls kept being served while no row could be written"
            assert "audit store" in refused and "refused" in refused, refused
            assert gw.get("/readyz") == 503
            assert metric(gw, "mcp_warden_store_up") == 0.0

            # Still refused on the next call (fail closed), not just once.
            again = await c.call_tool("notes__echo", {"text": "still-down"})
            made += 1
            assert again.is_error

            db.execute("DROP TRIGGER refuse_audit")
            db.commit()
            db.close()

            # The queued rows (the refusals' own included) are written, and calls flow again.
            async def served() -> bool | None:
                nonlocal made
                result = await c.call_tool("notes__echo", {"text": f"after-{made}"})
                made += 1
                return (not result.is_error) or None

            await eventually(served, timeout=20, what="calls served again")
            assert gw.get("/readyz") == 200
            assert metric(gw, "mcp_warden_store_up") == 1.0
            rows = await at_least(dep, made)
    assert len(rows) == made, f"{made} calls, {len(rows)} rows"
    denied = [r for r in rows if r["decision"] == "DENY"]
    assert denied and all(r["stage"] == "audit" and r["reason"].startswith("store_unavailable") for r in denied)
    verify = dep.run_cli("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr

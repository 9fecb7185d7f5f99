"""Notifications across the gateway: progress reaches the agent that asked, cancelling at the agent
cancels upstream, and an upstream's tools/list_changed reaches every connected agent — in both eras
(legacy: a notifications/tools/list_changed message; 2026-07-28: an event on subscriptions/listen)."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import anyio
import pytest
from mcp.client.subscriptions import ToolsListChanged

from harness import (
    ERAS,
    TRANSPORTS,
    HttpGateway,
    eventually,
    everything_upstream,
    http_agent,
    log_has,
    notes_upstream,
    open_agent,
    python_upstream,
    text_of,
    tool_names,
    wait_for_tools,
)

pytestmark = pytest.mark.anyio


def say(result) -> str:
    return text_of(result) + json.dumps(result.structured_content or {})


# --------------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", ERAS)
async def test_progress_reaches_the_agent(deploy, mode, transport):
    dep = deploy({"notes": notes_upstream()})
    async with open_agent(dep, transport, mode, wait_for={"notes__slow_count"}) as agent:
        seen: list[tuple[float, float | None, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, total, message))

        n = 5
        result = await agent.client.call_tool(
            "notes__slow_count", {"n": n, "delay_ms": 30}, progress_callback=on_progress
        )
        assert not result.is_error, say(result)
        # the fixture reports (k, n, "counted k of n") for k = 1..n; every one must arrive, in order
        assert [p for p, _, _ in seen] == [float(k) for k in range(1, n + 1)], seen
        assert {t for _, t, _ in seen} == {float(n)}, seen
        assert seen[-1][2] == f"counted {n} of {n}", seen


@pytest.mark.parametrize("mode", ERAS)
async def test_progress_from_a_third_party_upstream(deploy, mode):
    dep = deploy({"everything": everything_upstream()})
    async with open_agent(dep, "http", mode, wait_for={"everything__trigger-long-running-operation"}) as agent:
        seen: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(progress)

        result = await agent.client.call_tool(
            "everything__trigger-long-running-operation", {"duration": 1, "steps": 4}, progress_callback=on_progress
        )
        assert not result.is_error, say(result)
        assert len(seen) >= 3, f"server-everything sends one progress per step; got {seen}"


async def test_progress_goes_only_to_the_agent_that_asked(deploy):
    dep = deploy({"notes": notes_upstream()})
    with HttpGateway(dep) as gw:
        await anyio.to_thread.run_sync(gw.wait_ready)
        async with http_agent(gw, "legacy") as asker, http_agent(gw, "legacy") as bystander:
            await wait_for_tools(asker, {"notes__slow_count"})
            seen: list[float] = []

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                seen.append(progress)

            result = await asker.client.call_tool(
                "notes__slow_count", {"n": 3, "delay_ms": 30}, progress_callback=on_progress
            )
            assert not result.is_error and seen
            # a fresh round trip on the bystander's session flushes anything queued for it
            await bystander.client.call_tool("notes__echo", {"text": "flush"})
            assert "notifications/progress" not in bystander.methods(), bystander.methods()


# --------------------------------------------------------------------------------------------
# cancellation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", ERAS)
async def test_cancelling_at_the_agent_cancels_upstream(deploy, mode, transport, tmp_path):
    log = tmp_path / "hang.log"
    dep = deploy(
        {
            "notes": notes_upstream(),
            "hang": python_upstream("hang.py", tools={"ping": "read", "hang": "read"}, env={"HANG_FIXTURE_LOG": str(log)}),
        },
        call_timeout_sec=120,
    )
    async with open_agent(dep, transport, mode, wait_for={"hang__hang", "notes__echo"}) as agent:
        c = agent.client
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(c.call_tool, "hang__hang", {})
                await eventually(lambda: _val(log_has(log, "started hang")), what="the upstream to start the call")
                scope.cancel()
        await eventually(
            lambda: _val(log_has(log, "cancelled hang")),
            timeout=15,
            what="notifications/cancelled to reach the upstream",
        )
        # the session and the upstream stay usable
        ping = await c.call_tool("hang__ping", {})
        assert not ping.is_error and text_of(ping) == "pong"
        echo = await c.call_tool("notes__echo", {"text": "after cancel"})
        assert not echo.is_error and "after cancel" in say(echo)


@pytest.mark.parametrize("mode", ERAS)
async def test_cancelling_slow_count_reaches_the_notes_fixture(deploy, mode):
    """The notes fixture prints `cancelled slow_count` on its stderr, which the gateway passes on."""
    dep = deploy({"notes": notes_upstream()})
    async with open_agent(dep, "stdio", mode, wait_for={"notes__slow_count"}) as agent:
        progressed = anyio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            progressed.set()

        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def call() -> None:
                    await agent.client.call_tool(
                        "notes__slow_count", {"n": 1000, "delay_ms": 50}, progress_callback=on_progress
                    )

                tg.start_soon(call)
                with anyio.fail_after(20):
                    await progressed.wait()
                scope.cancel()
        await eventually(
            lambda: _val(log_has(agent.stderr_path, "cancelled slow_count")),
            timeout=15,
            what="`cancelled slow_count` in the gateway's stderr (the fixture's stderr)",
        )


# --------------------------------------------------------------------------------------------
# tools/list_changed
#
# The gateway serves pinned definitions, so an upstream's own list_changed changes what agents
# see only when a pinned tool drifts or comes back: the notes fixture's `rug_pull` changes
# `echo`'s description (the gateway withholds notes__echo) and a second `rug_pull` restores it
# (the live definition matches its pin again; notes__echo is back). New tools wait for a pin
# (tests/e2e/test_pinning.py).
# --------------------------------------------------------------------------------------------


def _list_changed(agent) -> int:
    return agent.methods().count("notifications/tools/list_changed")


async def _rug_pull(agent, expected: str) -> None:
    result = await agent.client.call_tool("notes__rug_pull", {})
    assert not result.is_error and text_of(result) == expected, say(result)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_list_changed_reaches_a_legacy_agent(deploy, transport):
    dep = deploy({"notes": notes_upstream()})
    async with open_agent(dep, transport, "legacy", wait_for={"notes__echo", "notes__rug_pull"}) as agent:
        before = _list_changed(agent)
        await _rug_pull(agent, "manifest changed")
        await eventually(lambda: _val(_list_changed(agent) > before), timeout=15, what="notifications/tools/list_changed")
        assert await _lacks(agent, "notes__echo"), "the drifted echo is listed after list_changed"

        before = _list_changed(agent)
        await _rug_pull(agent, "manifest restored")
        await eventually(lambda: _val(_list_changed(agent) > before), timeout=15, what="a second list_changed")
        assert await _has(agent, "notes__echo"), "the restored echo is not listed after list_changed"
        echo = await agent.client.call_tool("notes__echo", {"text": "back"})
        assert not echo.is_error and "back" in say(echo), say(echo)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_list_changed_reaches_a_2026_agent_via_listen(deploy, transport):
    dep = deploy({"notes": notes_upstream()})
    async with open_agent(dep, transport, "auto", wait_for={"notes__echo", "notes__rug_pull"}) as agent:
        c = agent.client
        async with c.listen(tools_list_changed=True) as sub:
            assert sub.honored.tools_list_changed, f"the gateway must honour tools_list_changed: {sub.honored}"
            await _rug_pull(agent, "manifest changed")
            with anyio.fail_after(15):
                event = await sub.__anext__()
            assert isinstance(event, ToolsListChanged), event
            assert await _lacks(agent, "notes__echo"), "the drifted echo is listed after list_changed"

            await _rug_pull(agent, "manifest restored")
            with anyio.fail_after(15):
                event = await sub.__anext__()
            assert isinstance(event, ToolsListChanged), event
            assert await _has(agent, "notes__echo"), "the restored echo is not listed after list_changed"


async def test_list_changed_reaches_every_connected_agent(deploy):
    """Over HTTP, one upstream change reaches two legacy agents and one 2026 agent at once."""
    dep = deploy({"notes": notes_upstream()})
    with HttpGateway(dep) as gw:
        await anyio.to_thread.run_sync(gw.wait_ready)
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(http_agent(gw, "legacy"))
            b = await stack.enter_async_context(http_agent(gw, "legacy"))
            m = await stack.enter_async_context(http_agent(gw, "auto"))
            for agent in (a, b, m):
                await wait_for_tools(agent, {"notes__echo", "notes__rug_pull"})
            sub = await stack.enter_async_context(m.client.listen(tools_list_changed=True))
            before_a, before_b = _list_changed(a), _list_changed(b)
            await _rug_pull(a, "manifest changed")
            with anyio.fail_after(15):
                event = await sub.__anext__()
            assert isinstance(event, ToolsListChanged)
            await eventually(lambda: _val(_list_changed(a) > before_a), timeout=15, what="list_changed at agent a")
            await eventually(lambda: _val(_list_changed(b) > before_b), timeout=15, what="list_changed at agent b")
            for agent in (a, b, m):
                assert await _lacks(agent, "notes__echo"), agent.mode


async def _has(agent, name: str) -> bool:
    return name in await tool_names(agent)


async def _lacks(agent, name: str) -> bool:
    return name not in await tool_names(agent)


async def _val(value):
    return value

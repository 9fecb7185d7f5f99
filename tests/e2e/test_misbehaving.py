"""Misbehaving upstreams (fixtures/misbehaving): one that crashes mid-call, one that stays down,
one that never answers, one that writes garbage on stdout. The gateway must fail the affected
call clearly, keep serving every other upstream, and recover what can be recovered."""

from __future__ import annotations

import json
import time

import anyio
import psutil
import pytest

from harness import TRANSPORTS, eventually, notes_upstream, open_agent, python_upstream, tail, text_of

pytestmark = pytest.mark.anyio


def say(result) -> str:
    return text_of(result) + json.dumps(result.structured_content or {})


async def echo_works(agent, text: str = "alive") -> None:
    result = await agent.client.call_tool("notes__echo", {"text": text})
    assert not result.is_error, text_of(result)
    assert text in say(result)


def gateway_alive(agent) -> None:
    assert agent.gateway_pid and psutil.pid_exists(agent.gateway_pid), (
        f"the gateway died\n--- gateway stderr ---\n{tail(agent.stderr_path)}"
    )


def assert_died_mid_call(result) -> None:
    """The upstream died while serving the call: an error result naming the upstream and saying it
    failed (the contract's `unavailable` is for calls to an upstream already down)."""
    assert result.is_error, f"a call whose upstream died must be an error result: {say(result)}"
    text = text_of(result).lower()
    assert "crash" in text, f"the error names the upstream: {text}"
    assert any(w in text for w in ("unavailable", "failed", "closed", "exited", "crashed")), text


CRASH_TOOLS = {"ping": "read", "pid": "read", "crash": "write"}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_crash_mid_call_fails_clearly_and_the_upstream_restarts(deploy, transport):
    dep = deploy(
        {"notes": notes_upstream(), "crash": python_upstream("crash.py", tools=CRASH_TOOLS)},
        restart_backoff_ms=100,
    )
    async with open_agent(dep, transport, "auto", wait_for={"crash__crash", "notes__echo"}) as agent:
        c = agent.client
        first_pid = int(text_of(await c.call_tool("crash__pid", {})))
        assert psutil.pid_exists(first_pid)

        crashed = await c.call_tool("crash__crash", {})
        assert_died_mid_call(crashed)

        # the other upstream is unaffected, at once
        await echo_works(agent, "unaffected")
        gateway_alive(agent)

        # the crashed upstream is restarted with backoff and works again
        async def pong() -> bool:
            r = await c.call_tool("crash__ping", {})
            return not r.is_error and text_of(r) == "pong"

        await eventually(pong, timeout=30, interval=0.2, what="crash__ping to answer pong after the restart")
        second_pid = int(text_of(await c.call_tool("crash__pid", {})))
        assert second_pid != first_pid, "the upstream answering now is a new process"
        await echo_works(agent, "after restart")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_upstream_that_stays_down_is_reported_unavailable(deploy, transport, tmp_path):
    marker = tmp_path / "stay-down"
    dep = deploy(
        {
            "notes": notes_upstream(),
            "crash": python_upstream("crash.py", "--stay-down", str(marker), tools=CRASH_TOOLS),
        },
        restart_backoff_ms=100,
    )
    async with open_agent(dep, transport, "auto", wait_for={"crash__ping", "notes__echo"}) as agent:
        c = agent.client
        crashed = await c.call_tool("crash__crash", {})
        assert_died_mid_call(crashed)
        assert marker.exists()

        # while it cannot start, every call to it is a clear tool error, not a hang nor a JSON-RPC error
        for _ in range(3):
            started = time.monotonic()
            down = await c.call_tool("crash__ping", {})
            assert down.is_error, f"an upstream that is down cannot answer pong: {say(down)}"
            assert "unavailable" in text_of(down).lower(), text_of(down)
            assert time.monotonic() - started < 10, "a down upstream is reported promptly"
            await echo_works(agent, "others keep working")
        gateway_alive(agent)

        # once its problem is gone, the supervisor's backoff brings it back
        marker.unlink()

        async def pong() -> bool:
            r = await c.call_tool("crash__ping", {})
            return not r.is_error and text_of(r) == "pong"

        await eventually(pong, timeout=45, interval=0.3, what="crash__ping to answer pong once the marker is gone")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_hung_call_times_out_and_others_keep_working(deploy, transport, tmp_path):
    log = tmp_path / "hang.log"
    dep = deploy(
        {
            "notes": notes_upstream(),
            "hang": python_upstream("hang.py", tools={"ping": "read", "hang": "read"}, env={"HANG_FIXTURE_LOG": str(log)}),
        },
        call_timeout_sec=2,
    )
    async with open_agent(dep, transport, "auto", wait_for={"hang__hang", "notes__echo"}) as agent:
        c = agent.client
        outcome: dict = {}

        async def hung_call() -> None:
            started = time.monotonic()
            outcome["result"] = await c.call_tool("hang__hang", {})
            outcome["elapsed"] = time.monotonic() - started

        async with anyio.create_task_group() as tg:
            tg.start_soon(hung_call)
            await eventually(lambda: _async(log.exists() and "started hang" in log.read_text()), what="hang to start")
            # while the call hangs, the other upstream and the hung upstream's other tools answer
            await echo_works(agent, "during the hang")
            ping = await c.call_tool("hang__ping", {})
            assert not ping.is_error and text_of(ping) == "pong", say(ping)
            assert "result" not in outcome, "the hung call cannot have answered yet"

        result = outcome["result"]
        assert result.is_error, f"a timed-out call is an error result: {say(result)}"
        assert "timed out" in text_of(result).lower(), text_of(result)
        assert 1.5 <= outcome["elapsed"] < 15, f"call_timeout_sec=2 but the call took {outcome['elapsed']:.1f}s"

        await echo_works(agent, "after the timeout")
        ping = await c.call_tool("hang__ping", {})
        assert not ping.is_error and text_of(ping) == "pong"
        gateway_alive(agent)


async def test_timed_out_call_is_cancelled_upstream(deploy, tmp_path):
    """On its own timeout the gateway tells the upstream to stop (notifications/cancelled)."""
    log = tmp_path / "hang.log"
    dep = deploy(
        {"hang": python_upstream("hang.py", tools={"ping": "read", "hang": "read"}, env={"HANG_FIXTURE_LOG": str(log)})},
        call_timeout_sec=1,
    )
    async with open_agent(dep, "http", "auto", wait_for={"hang__hang"}) as agent:
        result = await agent.client.call_tool("hang__hang", {})
        assert result.is_error and "timed out" in text_of(result).lower(), say(result)
        await eventually(
            lambda: _async("cancelled hang" in log.read_text()),
            timeout=10,
            what="the upstream to see notifications/cancelled after the gateway's timeout",
        )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_garbage_on_stdout_is_skipped(deploy, transport):
    """Non-JSON lines on an upstream's stdout (a start-up banner, stray prints between messages)
    are skipped, as the official SDKs do: the upstream keeps working and the gateway survives."""
    dep = deploy(
        {
            "notes": notes_upstream(),
            "garbage": python_upstream("garbage.py", tools={"ping": "read", "spew": "read"}),
            "banner": python_upstream("garbage.py", "--banner", tools={"ping": "read", "spew": "read"}),
        }
    )
    wanted = {"garbage__ping", "garbage__spew", "banner__ping", "notes__echo"}
    async with open_agent(dep, transport, "auto", wait_for=wanted) as agent:
        c = agent.client
        banner = await c.call_tool("banner__ping", {})
        assert not banner.is_error and text_of(banner) == "pong", say(banner)

        for round_ in range(3):
            spewed = await c.call_tool("garbage__spew", {})
            assert not spewed.is_error and text_of(spewed) == "spewed", (round_, say(spewed))
            ping = await c.call_tool("garbage__ping", {})
            assert not ping.is_error and text_of(ping) == "pong", (round_, say(ping))
            await echo_works(agent, f"round {round_}")
        gateway_alive(agent)


async def _async(value):
    return value

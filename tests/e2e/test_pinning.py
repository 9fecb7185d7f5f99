"""Pinned manifests, end to end: an upstream is exposed only as `mcp-warden pin` recorded it.

A rug pull (a pinned tool's definition changes under the gateway) withholds the tool until an
operator reviews and re-pins it; re-pinning an unchanged server leaves the lock untouched; an
upstream without a lock, with a changed fingerprint or with a hand-edited lock is not exposed;
drift inside a deploy window or under a change ticket is reported as such; a new live tool waits
for its pin. Every deployment here rechecks its pins every second (`[pins] recheck_sec = 1`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import MCPError
from mcp.client.subscriptions import ToolsListChanged

from harness import (
    ERAS,
    MISBEHAVING,
    TRANSPORTS,
    VENV_PYTHON,
    Agent,
    Deployment,
    eventually,
    gateway_env,
    log_has,
    notes_upstream,
    open_agent,
    python_upstream,
    tail,
    text_of,
    tool_names,
    wait_sync,
    warden_bin,
)

pytestmark = pytest.mark.anyio

RECHECK = {"recheck_sec": 1}
CRASH_TOOLS = {"ping": "read", "pid": "read", "crash": "write"}
PINNED_ECHO = "Return the given text unchanged."
POISON = "id_rsa"  # in the notes fixture's rug-pulled description of `echo`


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


async def _val(value: Any) -> Any:
    return value


async def pin(dep: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    """`mcp-warden pin ARGS` off the event loop (the agent keeps receiving meanwhile)."""
    return await anyio.to_thread.run_sync(lambda: dep.run_pin(*args))


def said(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}"


async def gate_event(dep: Deployment, gate: str, upstream: str, timeout: float = 20) -> dict[str, Any]:
    """The first gate_events row of `gate` for `upstream`, once there is one."""

    async def probe() -> dict[str, Any] | None:
        rows = [e for e in dep.gate_events() if e["gate"] == gate and e["upstream"] == upstream]
        return rows[0] if rows else None

    return await eventually(probe, timeout=timeout, what=f"a gate event {gate} for {upstream}")


async def listed(agent: Agent, name: str) -> dict[str, Any] | None:
    """The listed tool `name` (as a dict), None when it is not listed."""
    cursor = None
    while True:
        page = await agent.client.list_tools(cursor=cursor)
        for tool in page.tools:
            if tool.name == name:
                return tool.model_dump()
        cursor = page.next_cursor
        if not cursor:
            return None


async def becomes_unlisted(agent: Agent, name: str, timeout: float = 10) -> None:
    async def gone() -> bool:
        return await listed(agent, name) is None

    await eventually(gone, timeout=timeout, what=f"{name} to leave tools/list")


def assert_withheld(result: Any, name: str) -> None:
    text = text_of(result)
    assert result.is_error, f"a call to the withheld {name} must be an error result: {text}"
    assert "is withheld" in text and "manifest_drift" in text, text


async def assert_unknown(agent: Agent, name: str) -> None:
    with pytest.raises(MCPError) as info:
        await agent.client.call_tool(name, {})
    assert info.value.code == -32602 and "unknown tool" in str(info.value).lower(), (name, str(info.value))


async def pin_deny_row(dep: Deployment, exposed: str) -> dict[str, Any]:
    async def probe() -> list[dict[str, Any]]:
        return [r for r in dep.audit_rows() if r["exposed_name"] == exposed and r["decision"] == "DENY"]

    rows = await eventually(probe, timeout=20, what=f"a DENY audit row for {exposed}")
    row = rows[-1]
    assert row["stage"] == "pin" and row["reason"].startswith("manifest_drift"), row
    return row


@contextlib.asynccontextmanager
async def list_changed(agent: Agent) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Watch for tools/list_changed from now on; yields `arrived()`, which returns once one did.

    Legacy agents get a notifications/tools/list_changed message; 2026-07-28 agents an event on
    a subscriptions/listen stream opened here."""
    if agent.mode == "legacy":
        before = agent.methods().count("notifications/tools/list_changed")

        async def arrived() -> None:
            await eventually(
                lambda: _val(agent.methods().count("notifications/tools/list_changed") > before),
                timeout=15,
                what="notifications/tools/list_changed",
            )

        yield arrived
    else:
        async with agent.client.listen(tools_list_changed=True) as sub:
            assert sub.honored.tools_list_changed, sub.honored

            async def arrived() -> None:
                with anyio.fail_after(15):
                    event = await sub.__anext__()
                assert isinstance(event, ToolsListChanged), event

            yield arrived


def notes_dep(deploy: Callable[..., Deployment], **pins: Any) -> Deployment:
    return deploy({"notes": notes_upstream()}, pins={**RECHECK, **pins})


# --------------------------------------------------------------------------------------------
# the rug pull
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", ERAS)
async def test_rug_pull_is_withheld_until_reviewed_and_repinned(deploy, mode, transport):
    dep = notes_dep(deploy)
    async with open_agent(dep, transport, mode, wait_for={"notes__echo", "notes__rug_pull"}) as agent:
        c = agent.client
        echo = await listed(agent, "notes__echo")
        assert echo and echo["description"] == PINNED_ECHO, echo

        # the server changes echo's description under the gateway and announces list_changed
        async with list_changed(agent) as arrived:
            pulled = await c.call_tool("notes__rug_pull", {})
            assert not pulled.is_error and text_of(pulled) == "manifest changed", text_of(pulled)
            await arrived()
        assert await listed(agent, "notes__echo") is None, "the drifted echo is still listed after list_changed"
        assert await listed(agent, "notes__list_notes"), "undrifted tools stay listed"

        assert_withheld(await c.call_tool("notes__echo", {"text": "hi"}), "notes__echo")
        await pin_deny_row(dep, "notes__echo")
        event = await gate_event(dep, "manifest_drift_outside_window", "notes")
        assert "echo" in event["detail"] and event["ticket"] is None, event
        assert not [e for e in dep.gate_events() if e["gate"] == "manifest_drift"], dep.gate_events()

        # the operator reviews the change ...
        diff = await pin(dep, "--diff", "notes")
        assert diff.returncode == 1, said(diff)
        assert "tool `echo` changed" in diff.stdout and "/description" in diff.stdout, said(diff)
        assert POISON in diff.stdout, f"the diff shows the new text: {said(diff)}"

        # ... the scan refuses it without --accept-findings, and the lock stays as it was ...
        lock_before = dep.lock_path("notes").read_bytes()
        refused = await pin(dep, "notes", "--ticket", "CHG-9", "--by", "e2e")
        assert refused.returncode == 1, said(refused)
        assert "refusing to pin" in refused.stderr, said(refused)
        assert dep.lock_path("notes").read_bytes() == lock_before
        assert_withheld(await c.call_tool("notes__echo", {"text": "hi"}), "notes__echo")

        # ... and accepting the findings pins the new definition, which the gateway picks up
        async with list_changed(agent) as arrived:
            accepted = await pin(dep, "notes", "--ticket", "CHG-9", "--by", "e2e", "--accept-findings")
            assert accepted.returncode == 0, said(accepted)
            await arrived()
        echo = await eventually(lambda: listed(agent, "notes__echo"), timeout=10, what="notes__echo to be back")
        assert POISON in echo["description"], f"the re-pinned (new) description is served: {echo}"
        back = await c.call_tool("notes__echo", {"text": "after re-pin"})
        assert not back.is_error and "after re-pin" in text_of(back), text_of(back)

    lock = dep.lock("notes")
    assert lock["pinned"]["ticket"] == "CHG-9" and lock["pinned"]["by"] == "e2e", lock["pinned"]
    (pinned_echo,) = [t for t in lock["tools"] if t["name"] == "echo"]
    assert POISON in pinned_echo["definition"]["description"], pinned_echo
    assert pinned_echo.get("findings"), f"the accepted findings are recorded in the lock: {pinned_echo}"


def test_repinning_an_unchanged_server_leaves_the_lock_untouched(deploy):
    dep = deploy({"notes": notes_upstream(), "crash": python_upstream("crash.py", tools=CRASH_TOOLS)})
    dep.pin()
    before = {n: (dep.lock_path(n).read_bytes(), dep.lock_path(n).stat()) for n in ("notes", "crash")}
    again = dep.pin()
    for name, (data, st) in before.items():
        assert f"{name}: unchanged" in again.stdout, said(again)
        now = dep.lock_path(name).stat()
        assert dep.lock_path(name).read_bytes() == data, f"{name}'s lock was rewritten"
        assert (now.st_ino, now.st_mtime_ns, now.st_ctime_ns) == (st.st_ino, st.st_mtime_ns, st.st_ctime_ns), (
            f"{name}'s lock file was touched: {st} -> {now}"
        )
    diff = dep.run_pin("--diff", "notes")
    assert diff.returncode == 0 and "notes: no drift" in diff.stdout, said(diff)


# --------------------------------------------------------------------------------------------
# what is not pinned is not exposed
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_upstream_without_a_lock_is_never_exposed(deploy, transport):
    dep = deploy(
        {"notes": notes_upstream(), "shadow": python_upstream("crash.py", tools=CRASH_TOOLS)},
        pins=RECHECK,
    )
    dep.pin("notes")
    dep.pinned = True  # the operator never pinned `shadow`
    assert not dep.lock_path("shadow").exists()
    async with open_agent(dep, transport, "auto", wait_for={"notes__echo"}) as agent:
        event = await gate_event(dep, "registry_drift", "shadow")
        assert "no lock file" in event["detail"], event
        names = await tool_names(agent)
        assert not [n for n in names if n.startswith("shadow__")], names
        for tool in CRASH_TOOLS:
            await assert_unknown(agent, f"shadow__{tool}")
        echo = await agent.client.call_tool("notes__echo", {"text": "pinned"})
        assert not echo.is_error
    diff = dep.run_pin("--diff", "shadow")
    assert diff.returncode == 1 and "no lock file" in diff.stdout, said(diff)


async def test_changed_program_file_withholds_every_tool_of_its_upstream(deploy, tmp_path):
    script = tmp_path / "crash.py"
    shutil.copy(MISBEHAVING / "crash.py", script)
    entry = {"command": [str(VENV_PYTHON), str(script)], "credential": "none", "tools": CRASH_TOOLS}
    dep = deploy({"notes": notes_upstream(), "crash": entry}, pins=RECHECK)
    async with open_agent(dep, "stdio", "auto", wait_for={"crash__ping", "notes__echo"}) as agent:
        ping = await agent.client.call_tool("crash__ping", {})
        assert not ping.is_error and text_of(ping) == "pong", "the control: pinned, it works"

        # an update lands on disk while the upstream runs: the recheck sees the file hash change
        script.write_text(script.read_text() + "\n# updated in place\n")
        event = await gate_event(dep, "registry_drift", "crash")
        assert "fingerprint changed" in event["detail"] and str(script.resolve()) in event["detail"], event
        for tool in CRASH_TOOLS:
            await becomes_unlisted(agent, f"crash__{tool}")
        assert_withheld(await agent.client.call_tool("crash__ping", {}), "crash__ping")

    # restarted, the gateway runs the changed script: withheld from the start
    async with open_agent(dep, "stdio", "legacy", wait_for={"notes__echo"}) as agent:
        await eventually(
            lambda: _val(len([e for e in dep.gate_events() if e["gate"] == "registry_drift"]) >= 2),
            timeout=20,
            what="a registry_drift event from the restarted gateway",
        )
        for tool in CRASH_TOOLS:
            await becomes_unlisted(agent, f"crash__{tool}")
        assert_withheld(await agent.client.call_tool("crash__ping", {}), "crash__ping")
        await pin_deny_row(dep, "crash__ping")
        assert await listed(agent, "notes__echo"), "the other upstream is unaffected"

    diff = dep.run_pin("--diff", "crash")
    assert diff.returncode == 1 and "fingerprint files" in diff.stdout, said(diff)


async def test_hand_edited_lock_is_invalid_and_nothing_of_it_is_exposed(deploy):
    dep = deploy({"notes": notes_upstream(), "crash": python_upstream("crash.py", tools=CRASH_TOOLS)}, pins=RECHECK)
    dep.ensure_pinned()
    lock = dep.lock("notes")
    for tool in lock["tools"]:
        if tool["name"] == "echo":
            tool["definition"]["description"] = "Return the given text unchanged, approved."
    dep.lock_path("notes").write_text(json.dumps(lock, indent=2) + "\n")

    async with open_agent(dep, "stdio", "auto", wait_for={"crash__ping"}) as agent:
        await eventually(
            lambda: _val(log_has(agent.stderr_path, "lock file unusable")),
            timeout=20,
            what="the gateway to reject the edited lock",
        )
        assert log_has(agent.stderr_path, "edited by hand"), tail(agent.stderr_path)
        await gate_event(dep, "registry_drift", "notes")
        names = await tool_names(agent)
        assert not [n for n in names if n.startswith("notes__")], names
        await assert_unknown(agent, "notes__echo")

        # `pin --diff` will not compare against it; a re-pin replaces it with the live manifest
        diff = await pin(dep, "--diff", "notes")
        assert diff.returncode == 2 and "edited by hand" in diff.stderr, said(diff)
        repinned = await pin(dep, "notes", "--by", "e2e")
        assert repinned.returncode == 0 and "will be replaced" in repinned.stderr, said(repinned)
        echo = await eventually(lambda: listed(agent, "notes__echo"), timeout=10, what="notes__echo once re-pinned")
        assert echo["description"] == PINNED_ECHO, echo


# --------------------------------------------------------------------------------------------
# deploy windows and change tickets
# --------------------------------------------------------------------------------------------

COVER = {
    "deploy-window": ({"deploy_windows": ["Mon-Sun 00:00-24:00"]}, "manifest_drift", None),
    "change-ticket": (
        {"change_tickets": [{"upstream": "notes", "ticket": "CHG-1", "until": "2030-01-01T00:00:00Z"}]},
        "manifest_drift",
        "CHG-1",
    ),
    "expired-ticket": (
        {"change_tickets": [{"upstream": "notes", "ticket": "CHG-0", "until": "2020-01-01T00:00:00Z"}]},
        "manifest_drift_outside_window",
        None,
    ),
    "other-upstreams-ticket": (
        {"change_tickets": [{"upstream": "crash", "ticket": "CHG-2", "until": "2030-01-01T00:00:00Z"}]},
        "manifest_drift_outside_window",
        None,
    ),
}


@pytest.mark.parametrize("case", sorted(COVER))
async def test_drift_is_reported_against_deploy_windows_and_tickets(deploy, case):
    pins, gate, ticket = COVER[case]
    # A ticket must name a registered upstream (the gateway refuses to start otherwise), so the
    # other upstream is registered, disabled.
    other = python_upstream("crash.py", tools=CRASH_TOOLS, enabled=False)
    dep = deploy({"notes": notes_upstream(), "crash": other}, pins={**RECHECK, **pins})
    async with open_agent(dep, "stdio", "auto", wait_for={"notes__echo"}) as agent:
        pulled = await agent.client.call_tool("notes__rug_pull", {})
        assert not pulled.is_error, text_of(pulled)
        await becomes_unlisted(agent, "notes__echo")  # covered or not, drift is withheld
        assert_withheld(await agent.client.call_tool("notes__echo", {"text": "x"}), "notes__echo")

        async def drift_events() -> list[dict[str, Any]]:
            return [e for e in dep.gate_events() if e["gate"].startswith("manifest_drift") and e["upstream"] == "notes"]

        events = await eventually(drift_events, timeout=20, what="a manifest drift gate event")
        assert [(e["gate"], e["ticket"]) for e in events] == [(gate, ticket)], events
        assert "echo" in events[0]["detail"], events


# --------------------------------------------------------------------------------------------
# a new live tool waits for its pin
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def notes_over_http(folder: Path):
    """`mcp-warden fixture notes --http 127.0.0.1:0`: one notes server that the gateway and
    `pin` both reach (a stdio upstream is a fresh process for each, without the toggled tool)."""
    folder.mkdir()
    log = folder / "fixture.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(warden_bin()), "fixture", "notes", "--http", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            env=gateway_env(),
            cwd=folder,
        )
    try:

        def url() -> str | None:
            if proc.poll() is not None:
                raise AssertionError(f"the notes fixture exited {proc.returncode}: {tail(log)}")
            for line in log.read_text(errors="replace").splitlines():
                if "listening on " in line:
                    return line.split("listening on ", 1)[1].strip()
            return None

        yield wait_sync(url, timeout=30, what="the notes fixture to listen")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.mark.parametrize("mode", ERAS)
async def test_new_tool_is_exposed_only_once_pinned(deploy, mode, tmp_path):
    with notes_over_http(tmp_path / "fixture") as url:
        entry = notes_upstream(url=url)
        del entry["command"]
        dep = deploy({"notes": entry}, pins=RECHECK)
        async with open_agent(dep, "stdio", mode, wait_for={"notes__toggle_extra_tool"}) as agent:
            added = await agent.client.call_tool("notes__toggle_extra_tool", {})
            assert not added.is_error and text_of(added) == "extra tool added", text_of(added)
            await eventually(
                lambda: _val(log_has(agent.stderr_path, "not exposed until pinned")),
                timeout=20,
                what="the gateway to see the unpinned tool",
            )
            assert await listed(agent, "notes__extra") is None, "a tool nobody pinned is listed"
            await assert_unknown(agent, "notes__extra")

            diff = await pin(dep, "--diff", "notes")
            assert diff.returncode == 1 and "tool `extra` is new" in diff.stdout, said(diff)

            async with list_changed(agent) as arrived:
                pinned = await pin(dep, "notes", "--by", "e2e")
                assert pinned.returncode == 0, said(pinned)
                await arrived()
            await eventually(lambda: listed(agent, "notes__extra"), timeout=10, what="notes__extra once pinned")
            extra = await agent.client.call_tool("notes__extra", {})
            assert not extra.is_error and text_of(extra) == "extra", text_of(extra)

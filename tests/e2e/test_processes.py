"""No upstream process outlives the gateway: not when the agent closes the gateway's stdin, not
when the gateway gets SIGTERM, not with a call in flight, not with an upstream that ignores
SIGTERM and stdin EOF.

The gateway is started with subprocess here, not through the SDK's stdio client: the SDK kills
its server's whole process tree on exit, which would hide a leak."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from mcp.client.stdio import FORCE_KILL_TIMEOUT, PROCESS_TERMINATION_TIMEOUT

from harness import (
    HttpGateway,
    ProcInfo,
    RawStdioGateway,
    descendants,
    everything_upstream,
    kill_all,
    notes_upstream,
    python_upstream,
    tail,
    time_upstream,
    wait_sync,
)

MARKERS = {
    "notes": ("fixture", "notes"),
    "hang": ("hang.py",),
    "stubborn": ("hang.py", "--stubborn"),
    "crash": ("crash.py",),
    "everything": ("index.js", "stdio"),
    "time": ("mcp_server_time",),
}


def upstreams(stubborn: bool) -> dict:
    entries = {
        "notes": notes_upstream(),
        "hang": python_upstream("hang.py", tools={"ping": "read", "hang": "read"}),
        "crash": python_upstream("crash.py"),
        "everything": everything_upstream(),
        "time": time_upstream(),
    }
    if stubborn:
        entries["stubborn"] = python_upstream("hang.py", "--stubborn", tools={"ping": "read", "hang": "read"})
    return entries


def upstream_processes(gateway_pid: int, names: list[str]) -> list[ProcInfo]:
    """Wait until every named upstream runs under the gateway; return all its descendants."""

    def found() -> list[ProcInfo] | None:
        procs = descendants(gateway_pid)
        for name in names:
            if not any(all(m in " ".join(p.cmdline) for m in MARKERS[name]) for p in procs):
                return None
        return procs

    return wait_sync(found, timeout=60, interval=0.1, what=f"upstream processes {names}")


def assert_all_gone(procs: list[ProcInfo], stderr_path: Path) -> None:
    try:
        wait_sync(lambda: not [p for p in procs if p.alive()], timeout=10, what="upstream processes to exit")
    except AssertionError:
        left = [" ".join(p.cmdline) for p in procs if p.alive()]
        raise AssertionError(
            f"processes outlived the gateway: {left}\n--- gateway stderr ---\n{tail(stderr_path)}"
        ) from None


@pytest.mark.parametrize("how", ["stdin-eof", "sigterm"])
@pytest.mark.parametrize("stubborn", [False, True], ids=["polite", "stubborn"])
def test_stdio_gateway_leaves_no_children(deploy, how, stubborn):
    dep = deploy(upstreams(stubborn), call_timeout_sec=120)
    gw = RawStdioGateway(dep)
    procs: list[ProcInfo] = []
    try:
        gw.handshake()
        procs = upstream_processes(gw.proc.pid, list(upstreams(stubborn)))
        # a call in flight while the gateway stops
        gw.send({"id": 2, "method": "tools/call", "params": {"name": "hang__hang", "arguments": {}}})
        if how == "stdin-eof":
            assert gw.proc.stdin
            gw.proc.stdin.close()
        else:
            gw.proc.send_signal(signal.SIGTERM)
        try:
            code = gw.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"gateway did not exit within 20s after {how}\n{tail(gw.stderr_path)}") from None
        if how == "stdin-eof":
            assert code == 0, f"closing stdin is a normal end: exit {code}\n{tail(gw.stderr_path)}"
        assert_all_gone(procs, gw.stderr_path)
    finally:
        gw.kill()
        kill_all(procs + descendants(gw.proc.pid))


@pytest.mark.parametrize("stubborn", [False, True], ids=["polite", "stubborn"])
def test_http_gateway_leaves_no_children_after_sigterm(deploy, stubborn):
    dep = deploy(upstreams(stubborn))
    gw = HttpGateway(dep).start()
    procs: list[ProcInfo] = []
    try:
        gw.wait_ready()
        assert gw.proc is not None
        procs = upstream_processes(gw.proc.pid, list(upstreams(stubborn)))
        gw.proc.send_signal(signal.SIGTERM)
        try:
            gw.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"gateway did not exit within 20s of SIGTERM\n{tail(gw.stderr_path)}") from None
        assert_all_gone(procs, gw.stderr_path)
    finally:
        gw.seen.extend(procs)
        gw.stop()


def test_restarted_upstreams_leave_no_zombies_or_strays(deploy):
    """After an upstream crashes and is restarted, only one copy of it runs, and none is a zombie."""
    dep = deploy({"crash": python_upstream("crash.py")}, restart_backoff_ms=100)
    gw = RawStdioGateway(dep)
    procs: list[ProcInfo] = []
    try:
        gw.handshake()
        procs = upstream_processes(gw.proc.pid, ["crash"])
        first = [p for p in procs if "crash.py" in " ".join(p.cmdline)]
        assert len(first) == 1, first

        def tools_listed() -> bool:
            gw.send({"id": 10, "method": "tools/list"})
            return "crash__crash" in json.dumps(gw.response(10))

        wait_sync(tools_listed, timeout=30, interval=0.2, what="crash__crash to be listed")
        gw.send({"id": 11, "method": "tools/call", "params": {"name": "crash__crash", "arguments": {}}})
        gw.response(11)

        def restarted() -> list[ProcInfo] | None:
            now = [p for p in descendants(gw.proc.pid) if "crash.py" in " ".join(p.cmdline)]
            fresh = [p for p in now if p.pid != first[0].pid]
            return now if fresh else None

        now = wait_sync(restarted, timeout=30, interval=0.1, what="a restarted crash.py")
        procs += now
        wait_sync(lambda: _reaped(first[0]), timeout=10, what="the crashed upstream to be reaped (no zombie)")
        assert len([p for p in now if p.alive()]) == 1, f"one copy of the upstream runs: {now}"
    finally:
        gw.kill()
        kill_all(procs + descendants(gw.proc.pid))


def _reaped(info: ProcInfo) -> bool:
    """Gone entirely: neither running nor a zombie waiting for its parent."""
    try:
        return psutil.Process(info.pid).create_time() != info.create_time
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("how", ["stdin-eof", "sigterm"])
def test_stdio_gateway_stops_promptly_and_keeps_its_audit_rows(deploy, how):
    """An agent that closes the gateway's stdin (or sends SIGTERM) gives it a short grace before
    escalating — the Python SDK's stdio client waits PROCESS_TERMINATION_TIMEOUT (2 s) after EOF,
    then FORCE_KILL_TIMEOUT (2 s) after SIGTERM, then SIGKILLs. The gateway must be gone within that
    grace, with every audit row of the calls it answered already in the store."""
    dep = deploy({"notes": notes_upstream()})
    gw = RawStdioGateway(dep)
    try:
        gw.handshake()

        def listed() -> bool:
            gw.send({"id": 5, "method": "tools/list"})
            return "notes__echo" in json.dumps(gw.response(5))

        wait_sync(listed, timeout=30, interval=0.2, what="notes__echo to be listed")
        for i in range(3):
            gw.send({"id": 10 + i, "method": "tools/call", "params": {"name": "notes__echo", "arguments": {"text": f"t{i}"}}})
            assert "result" in gw.response(10 + i)
        if how == "stdin-eof":
            grace = PROCESS_TERMINATION_TIMEOUT
            assert gw.proc.stdin
            gw.proc.stdin.close()
        else:
            grace = FORCE_KILL_TIMEOUT
            gw.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            gw.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"gateway still running 30s after {how}\n{tail(gw.stderr_path)}") from None
        took = time.monotonic() - started
        rows = dep.audit_rows()
        assert len(rows) == 3, f"{len(rows)} audit rows after shutdown, 3 calls answered\n{tail(gw.stderr_path)}"
        assert took <= grace, f"gateway took {took:.1f}s to exit after {how} (an agent gives {grace:.0f}s)\n{tail(gw.stderr_path)}"
    finally:
        gw.kill()

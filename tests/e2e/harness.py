"""Harness for the end-to-end tests: a deployment folder, the gateway process, MCP agents.

Everything here is real: the `mcp-warden` binary, real upstream processes, the Python `mcp` SDK
as the agent. Synchronisation is by polling with deadlines (`eventually`), never by sleeping.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import psutil
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_POLICIES = ROOT / "policies"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
MISBEHAVING = ROOT / "fixtures" / "misbehaving"
EVERYTHING_JS = (
    ROOT / ".tools" / "e2e-node" / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
)

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
LISTENING_RE = re.compile(r"mcp-warden: listening on http://127\.0\.0\.1:(\d+)/mcp")
MODERN = "2026-07-28"

# The two protocol eras an agent may speak: the initialize handshake (2025-11-25 era) and the
# default auto mode, which negotiates 2026-07-28 with an rmcp server.
ERAS = ("legacy", "auto")
TRANSPORTS = ("stdio", "http")

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Locating things
# --------------------------------------------------------------------------------------------


def warden_bin() -> Path:
    """The gateway binary: $WARDEN_BIN, else $CARGO_TARGET_DIR/debug/mcp-warden, else the newer of
    target/debug/mcp-warden and the shared cache's (so a stale local build is never preferred)."""
    if env := os.environ.get("WARDEN_BIN"):
        return Path(env)
    if target := os.environ.get("CARGO_TARGET_DIR"):
        return Path(target) / "debug" / "mcp-warden"
    local = ROOT / "target" / "debug" / "mcp-warden"
    cache = Path.home() / ".cache" / "warden-target" / "debug" / "mcp-warden"
    existing = [c for c in (local, cache) if c.exists()]
    return max(existing, key=lambda c: c.stat().st_mtime) if existing else local


def node_bin() -> str:
    node = shutil.which("node")
    assert node, "node is not on PATH (needed for @modelcontextprotocol/server-everything)"
    return node


# --------------------------------------------------------------------------------------------
# Polling
# --------------------------------------------------------------------------------------------


async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    timeout: float = 20.0,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Call `probe` until it returns a truthy value without raising; fail after `timeout` s.

    The last value or exception goes into the failure message.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = await probe()
            if value:
                return value
            last = value
        except Exception as exc:  # the probe's failure is the thing we are waiting out
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        await anyio.sleep(interval)


def wait_sync(probe: Callable[[], T], *, timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> T:
    """Blocking twin of `eventually`, for process checks outside the event loop."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# A deployment: warden.toml + registry/ in a temporary folder
# --------------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def toml_dumps(doc: dict[str, Any], tables: tuple[str, ...] = ()) -> str:
    """Write `doc` as TOML; keys named in `tables` become `[table]` sections."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in doc.items() if k not in tables]
    for name in tables:
        if name in doc:
            lines.append(f"\n[{name}]")
            lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in doc[name].items())
    return "\n".join(lines) + "\n"


def notes_upstream(**overrides: Any) -> dict[str, Any]:
    """The demo notes fixture, served by the gateway binary itself."""
    entry: dict[str, Any] = {
        "command": ["mcp-warden", "fixture", "notes"],
        "prefix": "notes",
        "domain": "notes",
        "audience": "https://notes.internal",
        "credential": "none",
        "tools": {
            "list_notes": "read",
            "get_note": "read",
            "echo": "read",
            "slow_count": "read",
            "add_note": "write",
            "toggle_extra_tool": "write",
            "delete_note": "destructive",
            "rug_pull": "write",
        },
    }
    entry.update(overrides)
    return entry


def python_upstream(script: str, *args: str, tools: dict[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    """One of the Python fixtures in fixtures/misbehaving, run by the e2e venv's Python."""
    entry: dict[str, Any] = {
        "command": [str(VENV_PYTHON), str(MISBEHAVING / script), *args],
        "credential": "none",
        "tools": tools or {"ping": "read"},
    }
    entry.update(overrides)
    return entry


def everything_upstream(**overrides: Any) -> dict[str, Any]:
    """@modelcontextprotocol/server-everything (npm), over stdio."""
    entry: dict[str, Any] = {
        "command": [node_bin(), str(EVERYTHING_JS), "stdio"],
        "prefix": "everything",
        "credential": "none",
        "tools": {"echo": "read", "get-sum": "read", "trigger-long-running-operation": "read"},
    }
    entry.update(overrides)
    return entry


def time_upstream(**overrides: Any) -> dict[str, Any]:
    """mcp-server-time (PyPI), run from the e2e venv."""
    entry: dict[str, Any] = {
        "command": [str(VENV_PYTHON), "-m", "mcp_server_time", "--local-timezone", "UTC"],
        "prefix": "time",
        "credential": "none",
        "tools": {"get_current_time": "read", "convert_time": "read"},
    }
    entry.update(overrides)
    return entry


# The policy every deployment gets unless it names its own: every call to every registered
# upstream is allowed (the gateway denies everything when no rule matches).
ALLOW_ALL = """version: v1
rules:
  - id: allow-all
    description: e2e default - every call to every registered upstream is allowed
    match: { labels: { mcp.server: "*" } }
    decision: ALLOW
"""


def shipped_policies() -> dict[str, str]:
    """The policy files shipped in the repository's policies/ (file name -> text)."""
    files = {p.name: p.read_text() for p in sorted(SHIPPED_POLICIES.iterdir()) if p.suffix in (".yaml", ".yml")}
    assert files, f"no policy files are shipped in {SHIPPED_POLICIES}"
    return files


# Upstreams whose own tool definitions the poisoning scan flags, so that `pin` refuses them
# without --accept-findings. Only third-party servers belong here, each with the reason:
# - server-everything: `get-env`'s description ("Returns all environment variables …") and a URL
#   default in `gzip-file-as-resource`'s input schema read as exfiltration hints.
ACCEPT_FINDINGS = (str(EVERYTHING_JS),)


def _needs_accept_findings(entry: dict[str, Any]) -> bool:
    return any(part in ACCEPT_FINDINGS for part in entry.get("command", []))


@dataclass
class Deployment:
    """A folder holding warden.toml, registry/ and the SQLite store of one gateway.

    The gateway exposes only pinned upstreams: every way of starting one here (`HttpGateway`,
    `RawStdioGateway`, `stdio_agent`) first runs `mcp-warden pin` for the deployment, once, as an
    operator would (`ensure_pinned`). `pins` becomes warden.toml's `[pins]` table.

    `policies` (file name -> YAML text) fills policies/; the default is `ALLOW_ALL`.
    `toml_extra` is appended verbatim to warden.toml (e.g. `[[principals]]` tables, which must
    come last). `env` is set for every process run for this deployment (gateway, pin, CLI),
    e.g. the API keys that `api_key_env` names.
    """

    root: Path
    upstreams: dict[str, dict[str, Any]]
    call_timeout_sec: int = 30
    restart_backoff_ms: int = 100
    extra: dict[str, Any] = field(default_factory=dict)
    pins: dict[str, Any] | None = None
    policies: dict[str, str] | None = None
    toml_extra: str = ""
    env: dict[str, str] = field(default_factory=dict)
    pinned: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.registry = self.root / "registry"
        self.registry.mkdir(parents=True, exist_ok=True)
        self.config = self.root / "warden.toml"
        self.store = self.root / "warden.db"
        self.logs = self.root / "logs"
        self.logs.mkdir(exist_ok=True)
        self.policies_dir = self.root / "policies"
        self.policies_dir.mkdir(exist_ok=True)
        for name, text in (self.policies if self.policies is not None else {"allow-all.yaml": ALLOW_ALL}).items():
            self.write_policy(name, text)
        # Most suites drive several upstreams from one session: unless a test sets its own
        # `chain` settings, domains are not isolated (test_chain.py covers isolation).
        doc: dict[str, Any] = {
            "registry_dir": "registry",
            "store": f"sqlite://{self.store}",
            "chain": {"isolate_domains": False},
            **self.extra,
            "upstream": {"call_timeout_sec": self.call_timeout_sec, "restart_backoff_ms": self.restart_backoff_ms},
        }
        if self.pins is not None:
            doc["pins"] = self.pins
        text = toml_dumps(doc, tables=("upstream", "pins", "chain"))
        if self.toml_extra:
            text += "\n" + self.toml_extra.strip() + "\n"
        self.config.write_text(text)
        for name, entry in self.upstreams.items():
            self.write_upstream(name, entry)

    def write_policy(self, name: str, text: str) -> Path:
        """Write policies/NAME atomically (a reloading gateway never reads half a file)."""
        path = self.policies_dir / name
        tmp = self.policies_dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(path)
        return path

    def remove_policy(self, name: str) -> None:
        (self.policies_dir / name).unlink()

    def run_cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`mcp-warden ARGS --config warden.toml` from the deployment folder, with `env`; the
        output is kept in logs/ (the exit status is the caller's to judge)."""
        cmd = [str(warden_bin()), *args, "--config", str(self.config)]
        done = subprocess.run(
            cmd, capture_output=True, text=True, env=gateway_env(self.env), cwd=self.root, timeout=timeout
        )
        label = "-".join(a for a in args[:2] if not a.startswith("-")) or "cli"
        self.log_path(re.sub(r"[^A-Za-z0-9_-]", "_", label)).write_text(
            f"$ {' '.join(cmd)}\nexit {done.returncode}\n--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}"
        )
        return done

    def write_upstream(self, name: str, entry: dict[str, Any]) -> Path:
        path = self.registry / f"{name}.toml"
        path.write_text(toml_dumps(entry, tables=("tools",)))
        return path

    def lock_path(self, name: str) -> Path:
        return self.registry / f"{name}.lock.json"

    def lock(self, name: str) -> dict[str, Any]:
        return json.loads(self.lock_path(name).read_text())

    # ----- pinning ---------------------------------------------------------------------------

    def run_pin(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`mcp-warden pin ARGS --config warden.toml`, run from the deployment folder; its
        output is kept in logs/ (the exit status is the caller's to judge)."""
        cmd = [str(warden_bin()), "pin", *args, "--config", str(self.config)]
        done = subprocess.run(
            cmd, capture_output=True, text=True, env=gateway_env(self.env), cwd=self.root, timeout=timeout
        )
        self.log_path("pin").write_text(
            f"$ {' '.join(cmd)}\nexit {done.returncode}\n--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}"
        )
        return done

    def pin(self, *names: str, accept_findings: bool = False, ticket: str | None = None) -> subprocess.CompletedProcess[str]:
        """Pin `names` (all enabled upstreams when none), as user `e2e`; fail unless exit 0."""
        args = [*names, "--by", "e2e"]
        if accept_findings:
            args.append("--accept-findings")
        if ticket:
            args += ["--ticket", ticket]
        done = self.run_pin(*args)
        assert done.returncode == 0, (
            f"mcp-warden pin {' '.join(args)} exited {done.returncode}\n"
            f"--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}"
        )
        return done

    def ensure_pinned(self) -> None:
        """Pin every enabled upstream once, before the first gateway of this deployment starts
        (upstreams in ACCEPT_FINDINGS with --accept-findings)."""
        if self.pinned:
            return
        enabled = {n: e for n, e in self.upstreams.items() if e.get("enabled", True)}
        plain = [n for n, e in enabled.items() if not _needs_accept_findings(e)]
        flagged = [n for n, e in enabled.items() if _needs_accept_findings(e)]
        if plain:
            self.pin(*plain)
        if flagged:
            self.pin(*flagged, accept_findings=True)
        self.pinned = True

    def log_path(self, label: str) -> Path:
        n = len(list(self.logs.iterdir()))
        return self.logs / f"{n:02d}-{label}.log"

    # ----- the audit store -------------------------------------------------------------------

    def audit_rows(self) -> list[dict[str, Any]]:
        """Every row of mcp_audit (raises while the store or table does not exist yet)."""
        return self._rows("SELECT * FROM mcp_audit")

    def gate_events(self) -> list[dict[str, Any]]:
        """Every row of gate_events, oldest first (raises while the store or table does not exist)."""
        return self._rows("SELECT * FROM gate_events ORDER BY id")

    def _rows(self, sql: str) -> list[dict[str, Any]]:
        db = sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=5)
        try:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute(sql)]
        finally:
            db.close()


def gateway_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a gateway: ours minus any WARDEN_* leaking in from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
    env.setdefault("RUST_LOG", "info")
    env.update(extra or {})
    return env


def tail(path: Path, n: int = 60) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "<no log>"
    return "\n".join(lines[-n:])


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    create_time: float
    cmdline: tuple[str, ...]

    def alive(self) -> bool:
        """Whether this very process (not a reuse of its pid) still runs (zombies count as gone)."""
        try:
            p = psutil.Process(self.pid)
            return p.create_time() == self.create_time and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False


def snapshot(pid: int) -> ProcInfo | None:
    try:
        p = psutil.Process(pid)
        return ProcInfo(p.pid, p.create_time(), tuple(p.cmdline()))
    except psutil.Error:
        return None


def descendants(pid: int) -> list[ProcInfo]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for child in children:
        if info := snapshot(child.pid):
            out.append(info)
    return out


def kill_all(procs: list[ProcInfo]) -> None:
    """Cleanup only: SIGKILL whatever of `procs` still runs (a failed test must not leak)."""
    for info in procs:
        if info.alive():
            with contextlib.suppress(psutil.Error):
                psutil.Process(info.pid).kill()


def find_gateway_pid(config: Path) -> int | None:
    """The pid of the `mcp-warden serve … --config CONFIG` process started by this test process."""
    for child in psutil.Process().children(recursive=True):
        try:
            cmd = child.cmdline()
        except psutil.Error:
            continue
        if "serve" in cmd and str(config) in cmd:
            return child.pid
    return None


# --------------------------------------------------------------------------------------------
# The gateway over HTTP
# --------------------------------------------------------------------------------------------


class HttpGateway:
    """`mcp-warden serve --http 127.0.0.1:0`, started as a child of the test process."""

    def __init__(
        self, dep: Deployment, env: dict[str, str] | None = None, cwd: Path | None = None, addr: str = "127.0.0.1:0"
    ) -> None:
        self.addr = addr
        self.dep = dep
        self.cwd = cwd or dep.root
        self.stderr_path = dep.log_path("gateway-http")
        self.env = gateway_env({**dep.env, **(env or {})})
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.seen: list[ProcInfo] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> HttpGateway:
        self.dep.ensure_pinned()
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [str(warden_bin()), "serve", "--http", self.addr, "--config", str(self.dep.config)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                env=self.env,
                cwd=self.cwd,
            )

        def listening() -> int | None:
            assert self.proc is not None
            if m := LISTENING_RE.search(self.stderr_path.read_text(errors="replace")):
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise GatewayExited(f"gateway exited with {self.proc.returncode} before listening")
            return None

        try:
            self.port = _wait_listening(listening, timeout)
        except Exception as exc:
            self.stop()
            raise AssertionError(f"{exc}\n--- gateway stderr ---\n{tail(self.stderr_path)}") from None
        return self

    def get(self, path: str) -> int:
        """Status code of a GET on the gateway (no proxies, loopback only)."""
        import urllib.error
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.base + path, timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_sync(lambda: self.get("/readyz") == 200, timeout=timeout, interval=0.1, what="GET /readyz == 200")

    def remember_children(self) -> list[ProcInfo]:
        """Record the gateway's current descendants (for cleanup and leak checks)."""
        assert self.proc is not None
        now = descendants(self.proc.pid)
        known = {(p.pid, p.create_time) for p in self.seen}
        self.seen.extend(p for p in now if (p.pid, p.create_time) not in known)
        return now

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.remember_children()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        kill_all(self.seen)

    def __enter__(self) -> HttpGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GatewayExited(RuntimeError):
    pass


def _wait_listening(probe: Callable[[], int | None], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        port = probe()
        if port:
            return port
        if time.monotonic() >= deadline:
            raise AssertionError(f"gateway printed no 'listening on' line within {timeout:.0f}s")
        time.sleep(0.05)


class RawStdioGateway:
    """`mcp-warden serve --stdio` driven with raw JSON-RPC lines."""

    def __init__(self, dep) -> None:
        dep.ensure_pinned()
        self.stderr_path = dep.log_path("gateway-raw-stdio")
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [str(warden_bin()), "serve", "--stdio", "--config", str(dep.config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=gateway_env(dep.env),
                cwd=dep.root,
            )
        self.lines: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout
        for raw in self.proc.stdout:
            try:
                self.lines.put(json.loads(raw))
            except ValueError:
                self.lines.put({"garbage": raw.decode(errors="replace")})

    def send(self, message: dict) -> None:
        assert self.proc.stdin
        self.proc.stdin.write((json.dumps({"jsonrpc": "2.0", **message}) + "\n").encode())
        self.proc.stdin.flush()

    def response(self, id_: int, timeout: float = 60) -> dict:
        def probe() -> dict | None:
            try:
                msg = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise AssertionError(f"gateway exited {self.proc.returncode}\n{tail(self.stderr_path)}")
                return None
            return msg if msg.get("id") == id_ else None

        return wait_sync(probe, timeout=timeout, interval=0, what=f"response {id_}")

    def handshake(self) -> None:
        self.send(
            {
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "e2e-raw", "version": "0"},
                },
            }
        )
        reply = self.response(1)
        assert "result" in reply, reply
        self.send({"method": "notifications/initialized"})

    def kill(self) -> None:
        """Cleanup only: SIGKILL the gateway and whatever it left running."""
        left = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        kill_all(left)


# --------------------------------------------------------------------------------------------
# Agents
# --------------------------------------------------------------------------------------------


@dataclass
class Agent:
    """A connected MCP client plus what the test may need to know about its gateway."""

    client: Client
    transport: str
    mode: str
    dep: Deployment
    stderr_path: Path
    gateway_pid: int | None
    notifications: list[Any] = field(default_factory=list)
    _notified: anyio.Event = field(default_factory=anyio.Event)

    async def on_message(self, message: Any) -> None:
        if not isinstance(message, Exception):
            self.notifications.append(message)
            self._notified.set()
            self._notified = anyio.Event()

    def methods(self) -> list[str]:
        return [getattr(n, "method", type(n).__name__) for n in self.notifications]


@contextlib.asynccontextmanager
async def stdio_agent(dep: Deployment, mode: str, *, env: dict[str, str] | None = None) -> AsyncIterator[Agent]:
    """An agent that spawns `mcp-warden serve --stdio` itself, as an agent's config would."""
    await anyio.to_thread.run_sync(dep.ensure_pinned)
    stderr_path = dep.log_path(f"gateway-stdio-{mode}")
    params = StdioServerParameters(
        command=str(warden_bin()),
        args=["serve", "--stdio", "--config", str(dep.config)],
        env={"RUST_LOG": "info", **dep.env, **(env or {})},
        cwd=str(dep.root),
    )
    with stderr_path.open("w") as errlog:
        agent = Agent(
            client=None,  # type: ignore[arg-type]
            transport="stdio",
            mode=mode,
            dep=dep,
            stderr_path=stderr_path,
            gateway_pid=None,
        )
        client = Client(
            stdio_client(params, errlog=errlog),
            mode=mode,
            cache=None,
            read_timeout_seconds=60,
            message_handler=agent.on_message,
        )
        agent.client = client
        seen: list[ProcInfo] = []
        try:
            async with _explained(client, stderr_path):
                agent.gateway_pid = find_gateway_pid(dep.config)
                try:
                    yield agent
                finally:
                    if agent.gateway_pid:
                        seen = descendants(agent.gateway_pid)
        finally:
            kill_all(seen)


@contextlib.asynccontextmanager
async def http_agent(
    gateway: HttpGateway, mode: str, *, bearer: str | None = None, path: str = "/mcp"
) -> AsyncIterator[Agent]:
    """An agent connected to a running HTTP gateway; with `bearer`, every request carries
    `Authorization: Bearer <bearer>`. `path` picks the endpoint (`/admin/mcp` for the admin one)."""
    agent = Agent(
        client=None,  # type: ignore[arg-type]
        transport="http",
        mode=mode,
        dep=gateway.dep,
        stderr_path=gateway.stderr_path,
        gateway_pid=gateway.proc.pid if gateway.proc else None,
    )
    url = gateway.base + path
    if bearer is None:
        client = Client(url, mode=mode, cache=None, read_timeout_seconds=60, message_handler=agent.on_message)
        agent.client = client
        async with _explained(client, gateway.stderr_path):
            yield agent
        return
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {bearer}"}) as http:
        client = Client(
            streamable_http_client(url, http_client=http),
            mode=mode,
            cache=None,
            read_timeout_seconds=60,
            message_handler=agent.on_message,
        )
        agent.client = client
        async with _explained(client, gateway.stderr_path):
            yield agent


@contextlib.asynccontextmanager
async def _explained(client: Client, stderr_path: Path) -> AsyncIterator[Client]:
    """Enter `client`; a failed connect reports the gateway's stderr."""
    try:
        entered = await client.__aenter__()
    except BaseException as exc:
        raise AssertionError(
            f"agent could not connect: {exc!r}\n--- gateway stderr ---\n{tail(stderr_path)}"
        ) from exc
    try:
        yield entered
    finally:
        await client.__aexit__(None, None, None)


@contextlib.asynccontextmanager
async def open_agent(dep: Deployment, transport: str, mode: str, *, wait_for: set[str] | None = None) -> AsyncIterator[Agent]:
    """Start a gateway over `transport` for `dep` and connect one agent in `mode`.

    `wait_for`: exposed tool names that must be listed before the test body runs (the upstreams
    connect asynchronously; over HTTP /readyz is awaited first).
    """
    if transport == "stdio":
        async with stdio_agent(dep, mode) as agent:
            if wait_for:
                await wait_for_tools(agent, wait_for)
            yield agent
    else:
        with HttpGateway(dep) as gw:
            await anyio.to_thread.run_sync(gw.wait_ready)
            async with http_agent(gw, mode) as agent:
                if wait_for:
                    await wait_for_tools(agent, wait_for)
                yield agent


# --------------------------------------------------------------------------------------------
# Assertions on MCP results
# --------------------------------------------------------------------------------------------


async def tool_names(agent: Agent) -> set[str]:
    names: set[str] = set()
    cursor = None
    while True:
        page = await agent.client.list_tools(cursor=cursor)
        names.update(t.name for t in page.tools)
        cursor = page.next_cursor
        if not cursor:
            return names


async def wait_for_tools(agent: Agent, expected: set[str], timeout: float = 30.0) -> set[str]:
    async def probe() -> set[str] | None:
        names = await tool_names(agent)
        return names if expected <= names else None

    try:
        return await eventually(probe, timeout=timeout, what=f"tools {sorted(expected)} to be listed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- gateway stderr ---\n{tail(agent.stderr_path)}") from None


def text_of(result: Any) -> str:
    """The concatenated text content of a CallToolResult."""
    return "\n".join(getattr(c, "text", "") for c in result.content if getattr(c, "type", None) == "text")


def sha8(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:8]


def log_has(path: Path, needle: str) -> bool:
    try:
        return needle in path.read_text(errors="replace")
    except FileNotFoundError:
        return False


# --------------------------------------------------------------------------------------------
# Principals, approvals and the admin surface
# --------------------------------------------------------------------------------------------

# API keys of the principals below (each >= 16 characters, as the gateway requires).
KEYS = {
    "alice": "alice-e2e-key-0123456789",
    "bob": "bob-e2e-key-0123456789ab",
    "rita": "rita-e2e-key-0123456789a",
    "carol": "carol-e2e-key-0123456789",
}
KEY_ENV = {f"{who.upper()}_KEY": key for who, key in KEYS.items()}

# alice: the agent (reads and writes on notes); bob: approver and admin; rita: read_only although
# her scopes cover every class on notes; carol: an agent who is also an approver (self-approval);
# local and operator: the stdio and CLI principals, which must exist once principals are listed.
PRINCIPALS_TOML = """
[[principals]]
id = "alice"
scopes = ["notes:read", "notes:write"]
api_key_env = "ALICE_KEY"

[[principals]]
id = "bob"
labels = ["approver", "admin"]
api_key_env = "BOB_KEY"

[[principals]]
id = "rita"
labels = ["read_only"]
scopes = ["notes:*"]
api_key_env = "RITA_KEY"

[[principals]]
id = "carol"
labels = ["approver"]
scopes = ["notes:read", "notes:write"]
api_key_env = "CAROL_KEY"

[[principals]]
id = "local"
scopes = ["*:*"]

[[principals]]
id = "operator"
labels = ["approver", "admin"]
"""

APPROVAL_META = "mcp-warden/approval"
PENDING_RE = re.compile(r"[Aa]pproval ([A-Za-z0-9_-]+) is pending")


def pending_approval(result: Any) -> str:
    """The id of the approval a held call reports as pending (fails unless it is one)."""
    text = text_of(result)
    assert result.is_error, f"a call that needs approval is an error result, got a success: {text}"
    m = PENDING_RE.search(text)
    assert m, f"the result does not say which approval is pending: {text}"
    return m.group(1)


def http_request(
    url: str, *, method: str = "POST", body: Any = None, bearer: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """(status, body text) of one plain HTTP request (no proxies); `body` is sent as JSON."""
    status, _, text = http_exchange(url, method=method, body=body, bearer=bearer, headers=headers)
    return status, text


def http_exchange(
    url: str, *, method: str = "POST", body: Any = None, bearer: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, str]:
    """(status, response headers, body text) of one plain HTTP request (no proxies)."""
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if bearer is not None:
        req.add_header("Authorization", f"Bearer {bearer}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode(errors="replace")


def result_json(result: Any) -> Any:
    """A tool result's structured content, else its text parsed as JSON, else its text."""
    if result.structured_content is not None:
        return result.structured_content
    text = text_of(result)
    try:
        return json.loads(text)
    except ValueError:
        return text


def keyed_deployment(
    make: Callable[..., Deployment],
    policies: dict[str, str] | None = None,
    notes: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Deployment:
    """The notes upstream (`notes`: its registry entry, default `notes_upstream()`) behind a
    gateway with the principals of `PRINCIPALS_TOML` (API keys in the environment of every
    process) and `policies` (default: the shipped set); control state and policies are re-read
    every 0.2 s."""
    extra = {"control": {"poll_sec": 0.2}, "policy": {"reload_sec": 0.2}, **kwargs.pop("extra", {})}
    return make(
        {"notes": notes or notes_upstream()},
        policies=shipped_policies() if policies is None else policies,
        toml_extra=PRINCIPALS_TOML + kwargs.pop("toml_extra", ""),
        env={**KEY_ENV, **kwargs.pop("env", {})},
        extra=extra,
        **kwargs,
    )


@contextlib.asynccontextmanager
async def running(dep: Deployment) -> AsyncIterator[HttpGateway]:
    """An HTTP gateway for `dep`, ready (its upstreams connected)."""
    gw = HttpGateway(dep)
    await anyio.to_thread.run_sync(gw.start)
    try:
        await anyio.to_thread.run_sync(gw.wait_ready)
        yield gw
    finally:
        await anyio.to_thread.run_sync(gw.stop)


def agent_as(gw: HttpGateway, who: str, mode: str = "auto") -> contextlib.AbstractAsyncContextManager[Agent]:
    """An agent on /mcp authenticated as principal `who` (its API key)."""
    return http_agent(gw, mode, bearer=KEYS[who])


def admin_as(gw: HttpGateway, who: str, mode: str = "auto") -> contextlib.AbstractAsyncContextManager[Agent]:
    """A client of the admin MCP endpoint /admin/mcp authenticated as `who`."""
    return http_agent(gw, mode, bearer=KEYS[who], path="/admin/mcp")


async def note_titles(agent: Agent) -> list[str]:
    """The titles of every note, as `notes__list_notes` reports them (a read: always allowed here)."""
    result = await agent.client.call_tool("notes__list_notes", {})
    assert not result.is_error, f"list_notes failed: {text_of(result)}"
    return [n["title"] for n in result.structured_content["notes"]]


def find_approval(data: Any, approval_id: str) -> dict[str, Any] | None:
    """The object with `id == approval_id` anywhere in `data` (an admin tool's answer)."""
    if isinstance(data, dict):
        if data.get("id") == approval_id:
            return data
        data = list(data.values())
    if isinstance(data, list):
        for item in data:
            if found := find_approval(item, approval_id):
                return found
    return None


async def audit_where(dep: Deployment, what: str, timeout: float = 20, **match: Any) -> list[dict[str, Any]]:
    """The mcp_audit rows whose columns equal `match`, once there is at least one."""

    async def probe() -> list[dict[str, Any]] | None:
        rows = [r for r in dep.audit_rows() if all(r.get(k) == v for k, v in match.items())]
        return rows or None

    return await eventually(probe, timeout=timeout, what=what)


def reason_code(row: dict[str, Any]) -> str:
    """The stable code an audit row's reason starts with (`scope_mismatch: …` -> `scope_mismatch`)."""
    return (row.get("reason") or "").split(":", 1)[0].strip()


def show_rows(rows: list[dict[str, Any]]) -> str:
    keys = ("actor_id", "server_name", "exposed_name", "tool_name", "action_class", "decision", "stage", "reason", "approval_id")
    return "\n".join(str({k: r.get(k) for k in keys}) for r in rows)

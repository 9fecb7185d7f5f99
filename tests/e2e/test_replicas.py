"""Several gateway replicas on one PostgreSQL store behave as one gateway (issue 8, item 4).

Two `mcp-warden serve --http` processes, A and B, share one deployment folder (registry, locks,
policies, warden.toml) and one PostgreSQL database (`store = "postgres://…"`), as replicas
behind a load balancer would. Each keeps its own `state_dir` (B's is given by
`WARDEN_STATE_DIR`), holding a copy of the same signing keys: a credential minted by either
replica must verify against the one JWKS an upstream trusts (see README, "Running several
replicas"). Each replica spawns its own notes (and whoami) upstream process, so upstream
*data* is per replica here; what is shared is everything in the store: approvals, the control
state (disabled upstreams, emergency write-approval mode, revocations) and the audit chain.

PostgreSQL: the base URL comes from `MCPW_TEST_PG` (default
`postgres://postgres@127.0.0.1:5432/test`); every test creates its own database
`warden_t_<random>` through `psql` and drops it afterwards. When PostgreSQL cannot be reached
the tests FAIL, unless `MCPW_SKIP_PG=1`, which skips them with the reason.

The containment delays measured here (from the admin action's answer on one replica until the
other enforces it) are printed as `replicas: …` lines (`run.sh -k replicas -s` shows them).

The last test runs examples/containment/contain.sh against one gateway on the default SQLite
store: it needs no PostgreSQL.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest
from mcp import MCPError

from harness import (
    ALLOW_ALL,
    APPROVAL_META,
    KEY_ENV,
    KEYS,
    ROOT,
    Agent,
    Deployment,
    HttpGateway,
    agent_as,
    eventually,
    gateway_env,
    http_agent,
    http_request,
    notes_upstream,
    pending_approval,
    running,
    shipped_policies,
    text_of,
    wait_for_tools,
)

pytestmark = pytest.mark.anyio

PG_DEFAULT = "postgres://postgres@127.0.0.1:5432/test"
CONTAIN_SH = ROOT / "examples" / "containment" / "contain.sh"
MINT_ISSUER = "https://warden.replicas.test"
WHO_AUDIENCE = "https://who.internal"
NOTES_TOOLS = {"notes__list_notes", "notes__add_note", "notes__echo"}
_titles = itertools.count(1)

# alice and carol: agents (notes and who, every class); bob: a human approver and admin;
# local and operator: the stdio and CLI principals.
PRINCIPALS = """
[[principals]]
id = "alice"
scopes = ["notes:*", "who:*", "jot:*"]
api_key_env = "ALICE_KEY"

[[principals]]
id = "carol"
scopes = ["notes:*", "who:*", "jot:*"]
api_key_env = "CAROL_KEY"

[[principals]]
id = "bob"
labels = ["approver", "admin"]
api_key_env = "BOB_KEY"

[[principals]]
id = "local"
scopes = ["*:*"]

[[principals]]
id = "operator"
labels = ["approver", "admin"]
"""


def report(line: str) -> None:
    """A measured figure: printed (visible with `-s`) and kept in the test's output."""
    print(f"replicas: {line}", flush=True)


# --------------------------------------------------------------------------------------------
# PostgreSQL through psql
# --------------------------------------------------------------------------------------------


def pg_base() -> str:
    return os.environ.get("MCPW_TEST_PG", PG_DEFAULT)


def with_db(url: str, db: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def psql(url: str, sql: str, *, csv_out: bool = False, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run `sql` with psql against `url` (a connection URI); stops at the first error."""
    cmd = ["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    cmd += ["--csv"] if csv_out else ["-A", "-t"]
    cmd += ["-c", sql]
    env = {**os.environ, "PGCONNECT_TIMEOUT": "5"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def pg_rows(url: str, sql: str) -> list[dict[str, str]]:
    """The rows of a query as dicts of text (NULL and '' both read as '')."""
    done = psql(url, sql, csv_out=True)
    assert done.returncode == 0, f"psql failed ({done.returncode}): {done.stderr}\nquery: {sql}"
    return list(csv.DictReader(io.StringIO(done.stdout)))


def pg_unreachable(base: str) -> str | None:
    """Why PostgreSQL at `base` cannot be used, or None when it can."""
    if shutil.which("psql") is None:
        return "psql is not on PATH"
    try:
        done = psql(base, "SELECT 1", timeout=15)
    except subprocess.TimeoutExpired:
        return f"psql timed out connecting to {base}"
    if done.returncode != 0 or done.stdout.strip() != "1":
        return f"cannot connect to {base}: {done.stderr.strip() or done.stdout.strip()}"
    return None


@pytest.fixture
def pg_store() -> Iterator[str]:
    """A fresh database `warden_t_<random>` on the PostgreSQL of MCPW_TEST_PG; its URL."""
    base = pg_base()
    if why := pg_unreachable(base):
        message = f"PostgreSQL is needed for the replica tests ({why}); set MCPW_TEST_PG to a reachable server"
        if os.environ.get("MCPW_SKIP_PG") == "1":
            pytest.skip(f"MCPW_SKIP_PG=1: {message}")
        pytest.fail(f"{message}, or MCPW_SKIP_PG=1 to skip these tests", pytrace=False)
    name = f"warden_t_{secrets.token_hex(6)}"
    made = psql(base, f"CREATE DATABASE {name}")
    assert made.returncode == 0, f"CREATE DATABASE {name} failed: {made.stderr}"
    try:
        yield with_db(base, name)
    finally:
        dropped = psql(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        assert dropped.returncode == 0, f"DROP DATABASE {name} failed: {dropped.stderr}"


# --------------------------------------------------------------------------------------------
# Two replicas
# --------------------------------------------------------------------------------------------


def who_upstream(jwks: Path) -> dict[str, Any]:
    """The whoami fixture over stdio, verifying gateway-minted credentials against `jwks`."""
    return {
        "command": ["mcp-warden", "fixture", "whoami"],
        "env": {"WHOAMI_ISSUER": MINT_ISSUER, "WHOAMI_AUDIENCE": WHO_AUDIENCE, "WHOAMI_JWKS": str(jwks)},
        "audience": WHO_AUDIENCE,
        "credential": "minted",
        "tools": {"whoami": "read", "write_probe": "write", "history": "read"},
    }


def replicated(
    tmp_path: Path, store: str, *, policies: dict[str, str] | None = None, poll_sec: float = 1.0, who: bool = False
) -> Deployment:
    """One deployment folder for both replicas: notes (and, with `who`, the whoami upstream),
    the principals above, `store`, the control state polled every `poll_sec` (default: the
    shipped default, 1 s), minted credentials with one issuer whatever the replica's port."""
    root = tmp_path / "dep"
    upstreams: dict[str, dict[str, Any]] = {"notes": notes_upstream()}
    files = dict(shipped_policies() if policies is None else policies)
    if who:
        upstreams["who"] = who_upstream(root / ".state" / "jwks.json")
        # whoami echoes the credential it saw; let JWTs through for it (the claims are the point).
        files["output.yaml"] = "version: v1\noutput:\n  upstreams:\n    who: { actions: { jwt: PASS } }\n"
    return Deployment(
        root,
        upstreams,
        policies=files,
        extra={"store": store, "control": {"poll_sec": poll_sec}},
        toml_extra=PRINCIPALS + f'\n[minting]\nissuer = "{MINT_ISSUER}"\n',
        env=dict(KEY_ENV),
    )


@contextlib.asynccontextmanager
async def replica_pair(dep: Deployment) -> AsyncIterator[tuple[HttpGateway, HttpGateway]]:
    """Replicas A and B of `dep`, started together, both ready. A's state_dir is the
    deployment's `.state`; B's is `state-b`, holding a copy of A's signing keys."""
    await anyio.to_thread.run_sync(dep.ensure_pinned)
    keys = dep.root / ".state" / "keys"
    if not keys.exists():
        made = await anyio.to_thread.run_sync(lambda: dep.run_cli("keys", "show"))
        assert made.returncode == 0, f"keys show: {made.stderr}"
    state_b = dep.root / "state-b"
    shutil.copytree(keys, state_b / "keys", dirs_exist_ok=True)
    a = HttpGateway(dep)
    a.stderr_path.touch()  # the next log file gets the next number
    b = HttpGateway(dep, env={"WARDEN_STATE_DIR": str(state_b)})
    try:
        async with anyio.create_task_group() as tg:
            for gw in (a, b):
                tg.start_soon(anyio.to_thread.run_sync, gw.start)
        async with anyio.create_task_group() as tg:
            for gw in (a, b):
                tg.start_soon(anyio.to_thread.run_sync, gw.wait_ready)
        yield a, b
    finally:
        await anyio.to_thread.run_sync(a.stop)
        await anyio.to_thread.run_sync(b.stop)


async def post(gw: HttpGateway, path: str, who: str, body: Any = None) -> dict[str, Any]:
    """POST an admin action as `who`; fail unless 200; the JSON answer."""
    status, text = await anyio.to_thread.run_sync(
        lambda: http_request(gw.base + path, body=body, bearer=KEYS[who])
    )
    assert status == 200, f"POST {path} as {who} on :{gw.port} answered {status}: {text}"
    return json.loads(text)


async def outcome(agent: Agent, name: str, args: dict[str, Any] | None = None) -> tuple[bool, str]:
    """(ran, text) of one call: False for an error result or a protocol error (unknown tool)."""
    try:
        result = await agent.client.call_tool(name, args or {})
    except MCPError as exc:
        return False, str(exc)
    return not result.is_error, text_of(result)


async def delay_until(what: str, probe, timeout: float = 15.0) -> float:
    """Seconds from now until `probe()` is truthy (polled every 50 ms); fail after `timeout`."""
    start = time.monotonic()
    await eventually(probe, timeout=timeout, interval=0.05, what=what)
    return time.monotonic() - start


def run_cli(dep: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    """`mcp-warden ARGS --config warden.toml`: the CLI on the replicas' store."""
    return dep.run_cli(*args)


def said(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}"


def audit(store: str, where: str = "TRUE") -> list[dict[str, str]]:
    """mcp_audit rows (in id order) from PostgreSQL: the harness's `audit_rows` reads SQLite."""
    return pg_rows(store, f"SELECT * FROM mcp_audit WHERE {where} ORDER BY id")


def show(rows: list[dict[str, str]]) -> str:
    keys = ("id", "actor_id", "server_name", "tool_name", "action_class", "decision", "reason", "approval_id")
    return "\n".join(str({k: r.get(k) for k in keys}) for r in rows)


# --------------------------------------------------------------------------------------------
# a. an approval granted on one replica is honoured, once, on the other
# --------------------------------------------------------------------------------------------


async def test_an_approval_granted_on_one_replica_is_honoured_once_on_the_other(tmp_path, pg_store):
    dep = replicated(tmp_path, pg_store)  # the shipped policies: every write needs approval
    args = {"title": "approved-across-replicas", "body": "b"}
    async with replica_pair(dep) as (a, b), agent_as(a, "alice") as on_a, agent_as(b, "alice") as on_b:
        await wait_for_tools(on_a, NOTES_TOOLS)
        await wait_for_tools(on_b, NOTES_TOOLS)

        # held on A; B knows the same pending approval (the store is one)
        aid = pending_approval(await on_a.client.call_tool("notes__add_note", args))
        assert pending_approval(await on_b.client.call_tool("notes__add_note", args)) == aid

        # bob approves it on B's admin HTTP API; alice's retry on A runs
        done = await post(b, f"/admin/approvals/{aid}/approve", "bob", {"reason": "replica test"})
        assert aid in json.dumps(done), done
        ran, text = await outcome(on_a, "notes__add_note", args)
        assert ran, f"the approved call did not run on A: {text}"

        # consumed once: the same call naming it is refused on B, and on A
        for gw_agent in (on_b, on_a):
            result = await gw_agent.client.call_tool("notes__add_note", args, meta={APPROVAL_META: aid})
            assert result.is_error and "approval_used" in text_of(result), text_of(result)

        # the CLI on the same store (acting as `operator`) approves a new one for B
        other = {"title": "approved-by-the-cli", "body": "b"}
        aid2 = pending_approval(await on_b.client.call_tool("notes__add_note", other))
        approved = await anyio.to_thread.run_sync(lambda: run_cli(dep, "approvals", "approve", aid2))
        assert approved.returncode == 0, said(approved)
        ran, text = await outcome(on_b, "notes__add_note", other)
        assert ran, f"the CLI-approved call did not run on B: {text}"
        result = await on_a.client.call_tool("notes__add_note", other, meta={APPROVAL_META: aid2})
        assert result.is_error and "approval_used" in text_of(result), text_of(result)

    rows = audit(pg_store, "actor_id = 'alice' AND tool_name = 'add_note'")
    # each replica queues its rows to its own writer: ids follow commit order, not call order
    assert sorted((r["decision"], r["approval_id"]) for r in rows) == sorted([
        ("REQUIRE_APPROVAL", aid),
        ("REQUIRE_APPROVAL", aid),
        ("ALLOW", aid),
        ("DENY", aid),
        ("DENY", aid),
        ("REQUIRE_APPROVAL", aid2),
        ("ALLOW", aid2),
        ("DENY", aid2),
    ]), show(rows)
    state = pg_rows(pg_store, f"SELECT id, status, decided_by FROM approvals WHERE id IN ('{aid}', '{aid2}') ORDER BY id")
    assert {(r["id"], r["status"], r["decided_by"]) for r in state} == {(aid, "used", "bob"), (aid2, "used", "operator")}, state


# --------------------------------------------------------------------------------------------
# b. containment on one replica is enforced by the other within seconds
# --------------------------------------------------------------------------------------------


async def test_containment_on_one_replica_is_enforced_by_the_other_within_seconds(tmp_path, pg_store):
    dep = replicated(tmp_path, pg_store, policies={"allow-all.yaml": ALLOW_ALL}, who=True)
    async with (
        replica_pair(dep) as (a, b),
        agent_as(a, "alice") as on_a,
        agent_as(b, "alice") as on_b,
    ):
        for agent in (on_a, on_b):
            await wait_for_tools(agent, NOTES_TOOLS | {"who__whoami"})
            ran, text = await outcome(agent, "notes__list_notes")
            assert ran, text

        # 1. disable notes on A: B refuses calls to it
        await post(a, "/admin/registry/notes/disable", "bob", {"reason": "replica test"})

        async def b_refuses() -> bool:
            return not (await outcome(on_b, "notes__list_notes"))[0]

        disable_delay = await delay_until("B to refuse notes after A disabled it", b_refuses)
        report(f"disable on A -> enforced on B after {disable_delay:.2f} s (control.poll_sec = 1)")
        assert not (await outcome(on_a, "notes__list_notes"))[0], "A itself still serves the disabled notes"

        # enable again (on A): both serve notes again
        await post(a, "/admin/registry/notes/enable", "bob")

        async def b_serves() -> bool:
            return (await outcome(on_b, "notes__list_notes"))[0]

        enable_delay = await delay_until("B to serve notes again", b_serves)
        report(f"enable on A -> B serves again after {enable_delay:.2f} s")
        assert (await outcome(on_a, "notes__list_notes"))[0]

        # 2. emergency write-approval mode set on B: a write on A needs approval
        ran, text = await outcome(on_a, "notes__add_note", {"title": "before-emergency", "body": "b"})
        assert ran, f"allow-all lets the write run: {text}"
        await post(b, "/admin/policy/emergency-write-approval", "bob")

        async def a_holds_writes() -> bool:
            result = await on_a.client.call_tool("notes__add_note", {"title": f"e-{next(_titles)}", "body": "b"})
            return result.is_error and "pending" in text_of(result)

        emergency_delay = await delay_until("A to hold writes after B set emergency mode", a_holds_writes)
        report(f"emergency mode on B -> A holds writes after {emergency_delay:.2f} s")
        await post(b, "/admin/policy/emergency-write-approval", "bob", {"enabled": False})

        async def a_runs_writes() -> bool:
            return (await outcome(on_a, "notes__add_note", {"title": f"after-{next(_titles)}", "body": "b"}))[0]

        off_delay = await delay_until("A to run writes again", a_runs_writes)
        report(f"emergency mode off on B -> A runs writes after {off_delay:.2f} s")

        # 3. revoke the who audience on A: B drops its cached credential and mints a new one
        async def claims(agent: Agent) -> dict[str, Any]:
            result = await agent.client.call_tool("who__whoami", {})
            assert not result.is_error, text_of(result)
            return result.structured_content["claims"]

        first_b = await claims(on_b)
        assert (await claims(on_b))["jti"] == first_b["jti"], "B caches its credential"
        assert first_b.get("epoch", 0) == 0, first_b
        first_a = await claims(on_a)
        await post(a, "/admin/tokens/revoke", "bob", {"audience": "who"})
        after_a = await claims(on_a)
        assert after_a["jti"] != first_a["jti"] and after_a["epoch"] > 0, after_a

        async def b_fresh() -> dict[str, Any] | None:
            c = await claims(on_b)
            return c if c["jti"] != first_b["jti"] else None

        revoke_delay = await delay_until("B to use a fresh credential for who", b_fresh)
        after_b = await claims(on_b)
        report(f"revoke on A -> B uses a fresh credential after {revoke_delay:.2f} s")
        assert after_b["epoch"] > 0, f"B's new credential carries the revocation epoch: {after_b}"
        assert after_b["epoch"] == after_a["epoch"], (after_a, after_b)
        for delay in (disable_delay, enable_delay, emergency_delay, off_delay, revoke_delay):
            assert delay < 5, "containment reaches every replica within seconds"

    revoked = pg_rows(pg_store, "SELECT audience, revoked_by FROM revocations")
    assert [(r["audience"], r["revoked_by"]) for r in revoked] == [(WHO_AUDIENCE, "bob")], revoked
    denied = audit(pg_store, "tool_name = 'list_notes' AND decision = 'DENY'")
    assert denied and all(r["reason"].startswith("upstream_disabled") for r in denied), show(denied)


# --------------------------------------------------------------------------------------------
# c. one audit chain, extended by both replicas at once
# --------------------------------------------------------------------------------------------


async def test_both_replicas_extend_one_intact_audit_chain(tmp_path, pg_store):
    dep = replicated(tmp_path, pg_store, policies={"allow-all.yaml": ALLOW_ALL})
    per_replica, workers = 50, 10
    async with replica_pair(dep) as (a, b), agent_as(a, "alice") as on_a, agent_as(b, "carol") as on_b:
        await wait_for_tools(on_a, NOTES_TOOLS)
        await wait_for_tools(on_b, NOTES_TOOLS)
        failures: list[str] = []

        async def worker(agent: Agent, n: int) -> None:
            for i in range(per_replica // workers):
                ran, text = await outcome(agent, "notes__echo", {"text": f"{agent.gateway_pid}-{n}-{i}"})
                if not ran:
                    failures.append(text)

        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            for agent in (on_a, on_b):
                for n in range(workers):
                    tg.start_soon(worker, agent, n)
        took = time.monotonic() - start
        assert not failures, failures[:3]
        live = await anyio.to_thread.run_sync(lambda: run_cli(dep, "audit", "verify"))
        assert live.returncode == 0, f"verify while both replicas serve: {said(live)}"

    counts = pg_rows(pg_store, "SELECT actor_id, COUNT(*) AS n FROM mcp_audit WHERE tool_name = 'echo' GROUP BY actor_id")
    by_actor = {r["actor_id"]: int(r["n"]) for r in counts}
    report(f"{2 * per_replica} concurrent calls in {took:.2f} s; echo rows: A (alice) {by_actor.get('alice')}, "
           f"B (carol) {by_actor.get('carol')}")
    assert by_actor == {"alice": per_replica, "carol": per_replica}, counts

    done = await anyio.to_thread.run_sync(lambda: run_cli(dep, "audit", "verify", "--json"))
    assert done.returncode == 0, said(done)
    verdict = json.loads(done.stdout)
    total = int(pg_rows(pg_store, "SELECT COUNT(*) AS n FROM mcp_audit")[0]["n"])
    report(f"audit verify: ok={verdict['ok']}, rows_checked={verdict['rows_checked']} (table: {total}), "
           f"not_chained={verdict['not_chained']}")
    assert verdict["ok"] and not verdict["problems"], verdict
    assert verdict["rows_checked"] == total and verdict["not_chained"] == 0, verdict
    ids = [int(r["id"]) for r in pg_rows(pg_store, "SELECT id FROM mcp_audit ORDER BY id")]
    assert ids == list(range(ids[0], ids[0] + len(ids))), "ids are numbered from the head, without gaps"
    text = await anyio.to_thread.run_sync(lambda: run_cli(dep, "audit", "verify"))
    assert text.returncode == 0 and "OK" in text.stdout, said(text)

    # an edit by hand is caught on PostgreSQL as on SQLite
    edited = psql(pg_store, f"UPDATE mcp_audit SET decision = 'DENY' WHERE id = {ids[len(ids) // 2]}")
    assert edited.returncode == 0, edited.stderr
    broken = await anyio.to_thread.run_sync(lambda: run_cli(dep, "audit", "verify"))
    assert broken.returncode == 1 and str(ids[len(ids) // 2]) in broken.stdout + broken.stderr, said(broken)


# --------------------------------------------------------------------------------------------
# d. the design's detection query, unchanged, on PostgreSQL
# --------------------------------------------------------------------------------------------

DESIGN_QUERY = """SELECT event_time, actor_id, server_name, tool_name, decision, approval_id FROM mcp_audit
WHERE action_class = 'write' AND decision = 'ALLOW' AND (approval_id IS NULL OR approval_id = '')
  AND event_time >= NOW() - INTERVAL '10 minutes' ORDER BY event_time DESC;"""


def design_query_text() -> str:
    """The query as DESIGN.md (or, without it, this file) states it."""
    design = Path("/work/shared/DESIGN.md")
    if design.exists():
        text = design.read_text()
        start = text.find("SELECT event_time, actor_id, server_name, tool_name, decision, approval_id")
        if start >= 0:
            return text[start : text.index(";", start) + 1]
    return DESIGN_QUERY


async def test_the_design_detection_query_runs_unchanged_on_postgres(tmp_path, pg_store):
    assert design_query_text() == DESIGN_QUERY, "the query here is the design's, verbatim"
    # allow-all: writes run without approval until emergency mode holds them
    dep = replicated(tmp_path, pg_store, policies={"allow-all.yaml": ALLOW_ALL})
    unapproved = {"title": "written-without-approval", "body": "b"}
    approved = {"title": "written-with-approval", "body": "b"}
    async with replica_pair(dep) as (a, b), agent_as(a, "alice") as on_a, agent_as(b, "carol") as on_b:
        await wait_for_tools(on_a, NOTES_TOOLS)
        await wait_for_tools(on_b, NOTES_TOOLS)
        ran, text = await outcome(on_a, "notes__add_note", unapproved)
        assert ran, text

        # emergency mode set on B applies there at once (an action in its own process), so
        # carol's write on B is held; bob approves it on A
        await post(b, "/admin/policy/emergency-write-approval", "bob")
        aid = pending_approval(await on_b.client.call_tool("notes__add_note", approved))
        await post(a, f"/admin/approvals/{aid}/approve", "bob")
        ran, text = await outcome(on_b, "notes__add_note", approved)
        assert ran, f"the approved write did not run: {text}"

    rows = pg_rows(pg_store, DESIGN_QUERY)
    assert rows, "the unapproved write is found"
    assert [(r["actor_id"], r["server_name"], r["tool_name"], r["decision"], r["approval_id"]) for r in rows] == [
        ("alice", "notes", "add_note", "ALLOW", "")
    ], rows
    assert "written" not in json.dumps(rows), "rows carry no argument values"
    # the approved write is in the table, with its approval id, and not in the query's answer
    allowed = audit(pg_store, f"approval_id = '{aid}' AND decision = 'ALLOW' AND action_class = 'write'")
    assert [(r["actor_id"], r["tool_name"], r["action_class"]) for r in allowed] == [("carol", "add_note", "write")]
    report(f"design query: {len(rows)} unapproved write(s) found; approved write {aid} not reported")


# --------------------------------------------------------------------------------------------
# the containment script of examples/containment
# --------------------------------------------------------------------------------------------


def run_contain(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in gateway_env().items() if k not in ("API", "ADMIN_KEY")}
    return subprocess.run(
        ["bash", str(CONTAIN_SH), *args], capture_output=True, text=True, env={**base, **env}, timeout=60
    )


async def test_the_containment_script_disables_revokes_and_forces_approval(deploy):
    dep = deploy(
        {"notes": notes_upstream(), "jot": notes_upstream(prefix="jot", domain="jot", audience="https://jot.internal")},
        policies={"allow-all.yaml": ALLOW_ALL},
        extra={"control": {"poll_sec": 0.2}},
        toml_extra=PRINCIPALS,
        env=dict(KEY_ENV),
    )
    async with running(dep) as gw, agent_as(gw, "alice") as alice:
        api = f"{gw.base}/admin"
        await wait_for_tools(alice, {"notes__list_notes", "jot__add_note"})
        ran, text = await outcome(alice, "jot__add_note", {"title": "before", "body": "b"})
        assert ran, text

        # usage and refusals: no server, no credential, a wrong credential
        usage = await anyio.to_thread.run_sync(lambda: run_contain([], {"API": api, "ADMIN_KEY": KEYS["bob"]}))
        assert usage.returncode == 2 and "usage" in usage.stderr.lower(), said(usage)
        nokey = await anyio.to_thread.run_sync(lambda: run_contain(["notes"], {"API": api}))
        assert nokey.returncode == 2 and "ADMIN_KEY" in nokey.stderr, said(nokey)
        wrong = await anyio.to_thread.run_sync(lambda: run_contain(["notes"], {"API": api, "ADMIN_KEY": KEYS["alice"]}))
        assert wrong.returncode != 0 and "403" in wrong.stderr, said(wrong)
        ran, _ = await outcome(alice, "notes__list_notes")
        assert ran, "a refused run changed nothing"

        done = await anyio.to_thread.run_sync(lambda: run_contain(["notes"], {"API": api, "ADMIN_KEY": KEYS["bob"]}))
        assert done.returncode == 0, said(done)
        lines = done.stdout.lower().splitlines()
        order = [next((i for i, line in enumerate(lines) if step in line), -1) for step in ("disable", "revoke", "emergency")]
        assert -1 not in order and order == sorted(order), f"the three steps are reported in order: {said(done)}"

        # 1. notes is refused; 3. a write on another upstream needs approval
        async def contained() -> bool:
            return not (await outcome(alice, "notes__list_notes"))[0]

        await eventually(contained, timeout=10, what="notes to be refused")
        result = await alice.client.call_tool("jot__add_note", {"title": "during", "body": "b"})
        assert result.is_error and pending_approval(result), text_of(result)
        ran, text = await outcome(alice, "jot__list_notes")
        assert ran, f"reads still run: {text}"

    # 2. the revocation is in the store (a server name stands for its audience)
    rows = dep._rows("SELECT audience, revoked_by FROM revocations")
    assert [(r["audience"], r["revoked_by"]) for r in rows] == [("https://notes.internal", "bob")], rows
    admin = [r for r in dep.audit_rows() if r["server_name"] == "mcp-warden" and r["actor_id"] == "bob"]
    assert sorted(r["tool_name"] for r in admin) == ["emergency_write_approval", "registry_disable", "tokens_revoke"], admin


async def test_two_replicas_on_postgres_evaluate_the_gates_once_and_page_once(deploy, pg_store):
    """Gates are evaluated by one replica (the `gates` lease in PostgreSQL), not once per
    replica: an unapproved write made through replica B pages exactly once, however many
    evaluation rounds both replicas run."""
    from test_gates import webhook

    with webhook() as hook:
        dep = deploy(
            {"notes": notes_upstream()},
            extra={"store": pg_store, "gates": {"interval_sec": 0.2}, "paging": {"webhook_url": hook.url}},
        )
        with HttpGateway(dep) as one, HttpGateway(dep) as two:
            for gw in (one, two):
                await anyio.to_thread.run_sync(gw.wait_ready)
            async with http_agent(two, "auto") as agent:
                await wait_for_tools(agent, {"notes__add_note"})
                added = await agent.client.call_tool("notes__add_note", {"title": "t", "body": "b"})
                assert not added.is_error

            async def paged() -> list | None:
                return hook.of("unapproved_writes") or None

            await eventually(paged, timeout=20, what="a page")

            def evaluation() -> tuple[str, float]:
                row = pg_rows(
                    pg_store,
                    "SELECT evaluated_by, EXTRACT(EPOCH FROM evaluated_at) AS at FROM gate_state "
                    "WHERE gate = 'unapproved_writes'",
                )[0]
                return row["evaluated_by"], float(row["at"])

            first = evaluation()

            async def rounds_later() -> bool:
                return evaluation()[1] - first[1] > 2

            await eventually(rounds_later, timeout=20, what="ten more evaluation rounds")
            assert evaluation()[0] == first[0], "one replica keeps evaluating"
            assert [p["status"] for p in hook.of("unapproved_writes")] == ["firing"]
            leases = pg_rows(pg_store, "SELECT name, holder FROM leases")
            assert [(r["name"], r["holder"]) for r in leases] == [("gates", first[0])]
            report(f"gates: evaluated by one replica ({first[0]}), 1 page for the episode")

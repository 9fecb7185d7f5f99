"""Write approvals, end to end: the shipped policies hold every write on notes for a human.

One HTTP gateway with API-key principals (harness.PRINCIPALS_TOML): alice is the agent, bob the
approver (through the admin MCP endpoint /admin/mcp, his own MCP client), carol an agent who is
also an approver. An approval is bound to principal, tool, arguments and manifest, runs the
identical call exactly once, and is never decided by the principal that asked for it. The CLI
(`mcp-warden approvals …`, acting as `operator`) decides approvals of stdio and HTTP agents
alike. Every step leaves an `mcp_audit` row carrying the approval id.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from mcp import MCPError

from harness import (
    APPROVAL_META,
    ERAS,
    PENDING_RE,
    TRANSPORTS,
    Agent,
    admin_as,
    agent_as,
    audit_where,
    eventually,
    find_approval,
    keyed_deployment,
    note_titles,
    notes_upstream,
    open_agent,
    pending_approval,
    reason_code,
    result_json,
    running,
    shipped_policies,
    show_rows,
    text_of,
    wait_for_tools,
)

pytestmark = pytest.mark.anyio

NOTES_TOOLS = {"notes__add_note", "notes__list_notes"}


async def approvals_list(admin: Agent) -> Any:
    result = await admin.client.call_tool("approvals_list", {})
    assert not result.is_error, f"approvals_list failed: {text_of(result)}"
    return result_json(result)


async def approve(admin: Agent, approval_id: str) -> None:
    result = await admin.client.call_tool("approve", {"id": approval_id})
    assert not result.is_error, f"approve {approval_id} failed: {text_of(result)}"


def refused(result: Any, code: str) -> str:
    """Assert `result` is a refusal naming `code` (and not a new pending approval)."""
    text = text_of(result)
    assert result.is_error, f"expected a refusal ({code}), the call ran: {text}"
    assert code in text, f"the refusal does not name {code}: {text}"
    assert not PENDING_RE.search(text), f"a refusal must not ask for a new approval: {text}"
    return text


def no_write_allowed_without_approval(rows: list[dict[str, Any]]) -> None:
    """DESIGN.md's detection query finds nothing: no ALLOWed write lacks an approval id."""
    bad = [r for r in rows if r["action_class"] == "write" and r["decision"] == "ALLOW" and not r["approval_id"]]
    assert not bad, "writes ran without an approval:\n" + show_rows(bad)


# --------------------------------------------------------------------------------------------
# the whole path: held, approved by a second client, run once, replay refused
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
async def test_a_write_runs_once_after_a_second_client_approves_it(deploy, mode):
    dep = keyed_deployment(deploy)
    args = {"title": "approved-note", "body": "written once"}
    async with running(dep) as gw, agent_as(gw, "alice", mode) as alice, admin_as(gw, "bob", mode) as bob:
        await wait_for_tools(alice, NOTES_TOOLS)
        before = await note_titles(alice)

        # the write is held: an error result naming the pending approval, nothing written
        aid = pending_approval(await alice.client.call_tool("notes__add_note", args))
        assert await note_titles(alice) == before
        # asking again before anyone decided re-reports the same approval
        assert pending_approval(await alice.client.call_tool("notes__add_note", args)) == aid

        # bob sees it pending in his own MCP client and approves it
        entry = find_approval(await approvals_list(bob), aid)
        assert entry is not None, f"approval {aid} is not in approvals_list"
        assert entry.get("status", "pending") == "pending", entry
        assert json.dumps(entry).find("alice") >= 0, f"the listing names the requester: {entry}"
        await approve(bob, aid)

        # alice's identical call now runs, once
        ran = await alice.client.call_tool("notes__add_note", args)
        assert not ran.is_error, text_of(ran)
        assert text_of(ran).strip().isdigit(), f"add_note answers the new note's id: {text_of(ran)}"
        assert (await note_titles(alice)).count("approved-note") == 1

        # replaying it naming the approval is refused outright
        refused(await alice.client.call_tool("notes__add_note", args, meta={APPROVAL_META: aid}), "approval_used")
        # replaying it plainly asks for a new approval; the used one is not reported again
        again = pending_approval(await alice.client.call_tool("notes__add_note", args))
        assert again != aid
        assert (await note_titles(alice)).count("approved-note") == 1
        listed = find_approval(await approvals_list(bob), aid)
        assert listed is None or listed.get("status") in ("used", None), f"the used approval is not pending: {listed}"

    rows = await audit_where(dep, "alice's add_note rows", exposed_name="notes__add_note", actor_id="alice")
    assert [(r["decision"], r["approval_id"]) for r in rows] == [
        ("REQUIRE_APPROVAL", aid),
        ("REQUIRE_APPROVAL", aid),
        ("ALLOW", aid),
        ("DENY", aid),
        ("REQUIRE_APPROVAL", again),
    ], show_rows(rows)
    assert all(r["action_class"] == "write" and r["server_name"] == "notes" for r in rows), show_rows(rows)
    assert reason_code(rows[0]) == "approval_pending" and rows[0]["stage"] == "approval", show_rows(rows)
    assert reason_code(rows[3]) == "approval_used", show_rows(rows)
    assert len({r["args_digest"] for r in rows}) == 1, "one call, one argument digest"

    admin = await audit_where(
        dep, "bob's approve row", server_name="mcp-warden", tool_name="approve", actor_id="bob", approval_id=aid
    )
    assert [(r["decision"], r["action_class"], r["stage"]) for r in admin] == [("ALLOW", "admin", "admin")], show_rows(admin)
    listing = await audit_where(dep, "bob's approvals_list rows", server_name="mcp-warden", tool_name="approvals_list")
    assert all(r["actor_id"] == "bob" and r["decision"] == "ALLOW" for r in listing), show_rows(listing)
    no_write_allowed_without_approval(dep.audit_rows())


async def test_changed_arguments_or_tool_are_refused_and_the_approval_survives(deploy):
    dep = keyed_deployment(deploy)
    args = {"title": "as-approved", "body": "b"}
    other = {"title": "swapped-in", "body": "b"}
    async with running(dep) as gw, agent_as(gw, "alice") as alice, admin_as(gw, "bob") as bob:
        await wait_for_tools(alice, NOTES_TOOLS | {"notes__toggle_extra_tool"})
        aid = pending_approval(await alice.client.call_tool("notes__add_note", args))
        await approve(bob, aid)

        # other arguments under this approval: refused, not run
        refused(
            await alice.client.call_tool("notes__add_note", other, meta={APPROVAL_META: aid}), "approval_args_mismatch"
        )
        # another tool under this approval: refused, not run
        refused(
            await alice.client.call_tool("notes__toggle_extra_tool", {}, meta={APPROVAL_META: aid}),
            "approval_tool_mismatch",
        )
        # other arguments without naming it: a different call, which needs its own approval
        assert pending_approval(await alice.client.call_tool("notes__add_note", other)) != aid
        titles = await note_titles(alice)
        assert "swapped-in" not in titles and "as-approved" not in titles, titles
        assert "notes__extra" not in {t.name for t in (await alice.client.list_tools()).tools}

        # the refusals did not spend it: the approved call still runs, once
        ran = await alice.client.call_tool("notes__add_note", args, meta={APPROVAL_META: aid})
        assert not ran.is_error, text_of(ran)
        assert (await note_titles(alice)).count("as-approved") == 1

    rows = await audit_where(dep, "refusals", actor_id="alice", decision="DENY", approval_id=aid)
    assert sorted(reason_code(r) for r in rows) == ["approval_args_mismatch", "approval_tool_mismatch"], show_rows(rows)
    no_write_allowed_without_approval(dep.audit_rows())


async def test_nobody_approves_their_own_request_and_only_approvers_approve(deploy):
    dep = keyed_deployment(deploy)
    args = {"title": "carols-note", "body": "b"}
    async with running(dep) as gw, agent_as(gw, "carol") as carol, agent_as(gw, "alice") as alice:
        await wait_for_tools(carol, NOTES_TOOLS)
        aid = pending_approval(await carol.client.call_tool("notes__add_note", args))

        # carol holds `approver`, but it is her own request
        async with admin_as(gw, "carol") as carol_admin:
            own = await carol_admin.client.call_tool("approve", {"id": aid})
            assert own.is_error, f"carol approved her own request: {text_of(own)}"
            said_ = text_of(own)
            assert "approval_self" in said_ or "principal that asked for it" in said_, said_

        # alice is no approver: the admin surface refuses her (at the door or at the tool)
        alice_said = await try_admin_approve(gw, "alice", aid)
        assert alice_said is not None, "alice (no `approver` label) approved an approval"

        # still pending; carol's retry is still held
        async with admin_as(gw, "bob") as bob:
            entry = find_approval(await approvals_list(bob), aid)
            assert entry is not None and entry.get("status", "pending") == "pending", entry
            assert pending_approval(await carol.client.call_tool("notes__add_note", args)) == aid
            await approve(bob, aid)

        # approved for carol, not for alice: another principal cannot use it
        refused(
            await alice.client.call_tool("notes__add_note", args, meta={APPROVAL_META: aid}),
            "approval_principal_mismatch",
        )
        assert "carols-note" not in await note_titles(alice)
        ran = await carol.client.call_tool("notes__add_note", args)
        assert not ran.is_error, text_of(ran)
        assert (await note_titles(carol)).count("carols-note") == 1

    denied = await audit_where(dep, "refused approve rows", server_name="mcp-warden", decision="DENY")
    actors = {r["actor_id"] for r in denied if r["tool_name"] == "approve"}
    assert "carol" in actors, show_rows(denied)
    assert all(r["action_class"] == "admin" for r in denied), show_rows(denied)
    granted = await audit_where(dep, "bob's approve row", server_name="mcp-warden", tool_name="approve", decision="ALLOW")
    assert [(r["actor_id"], r["approval_id"]) for r in granted] == [("bob", aid)], show_rows(granted)


async def test_an_approval_dies_with_the_manifest_it_was_given_for(deploy):
    """Approved, then the tool's definition changes and an operator re-pins it: the approval,
    bound to the old pinned hash, no longer runs the call."""
    tools = {**notes_upstream()["tools"], "echo": "write", "rug_pull": "read"}  # echo is held, rug_pull runs
    dep = keyed_deployment(deploy, notes=notes_upstream(tools=tools), pins={"recheck_sec": 1})
    args = {"text": "approved under the old manifest"}
    async with running(dep) as gw, agent_as(gw, "alice") as alice, admin_as(gw, "bob") as bob:
        await wait_for_tools(alice, {"notes__echo", "notes__rug_pull"})
        aid = pending_approval(await alice.client.call_tool("notes__echo", args))
        await approve(bob, aid)

        pulled = await alice.client.call_tool("notes__rug_pull", {})
        assert not pulled.is_error, text_of(pulled)
        repinned = await anyio.to_thread.run_sync(lambda: dep.run_pin("notes", "--by", "e2e", "--accept-findings"))
        assert repinned.returncode == 0, said(repinned)

        async def new_definition_served() -> bool:
            tools_now = {t.name: t for t in (await alice.client.list_tools()).tools}
            echo = tools_now.get("notes__echo")
            return echo is not None and "id_rsa" in (echo.description or "")

        await eventually(new_definition_served, timeout=30, what="the re-pinned echo to be listed")
        refused(
            await alice.client.call_tool("notes__echo", args, meta={APPROVAL_META: aid}), "approval_manifest_changed"
        )
        assert pending_approval(await alice.client.call_tool("notes__echo", args)) != aid

    rows = await audit_where(dep, "echo rows", exposed_name="notes__echo", actor_id="alice")
    assert not [r for r in rows if r["decision"] == "ALLOW"], "the echo never ran:\n" + show_rows(rows)
    assert [reason_code(r) for r in rows if r["approval_id"] == aid][-1] == "approval_manifest_changed", show_rows(rows)


async def try_admin_approve(gw, who: str, approval_id: str) -> str | None:
    """What the admin surface says when `who` approves `approval_id`: None if it was approved,
    else the refusal (a refused connection or an error result)."""
    try:
        async with admin_as(gw, who) as admin:
            result = await admin.client.call_tool("approve", {"id": approval_id})
            return text_of(result) if result.is_error else None
    except (AssertionError, MCPError) as exc:  # refused at the door (401/403) or as a request
        return str(exc)


# --------------------------------------------------------------------------------------------
# the CLI approves (as `operator`) what stdio and HTTP agents asked for
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cli_lists_denies_and_approves(deploy, transport):
    dep = deploy({"notes": notes_upstream()}, policies=shipped_policies())
    async with open_agent(dep, transport, "auto", wait_for=NOTES_TOOLS) as agent:
        c = agent.client
        first = {"title": "to-be-denied", "body": "b"}
        second = {"title": "to-be-approved", "body": "b"}
        a1 = pending_approval(await c.call_tool("notes__add_note", first))

        listed = await cli(dep, "approvals", "list")
        assert listed.returncode == 0 and a1 in listed.stdout, said(listed)
        assert "notes__add_note" in listed.stdout, said(listed)

        denied = await cli(dep, "approvals", "deny", a1)
        assert denied.returncode == 0, said(denied)
        refused(await c.call_tool("notes__add_note", first, meta={APPROVAL_META: a1}), "approval_denied")
        plain = await c.call_tool("notes__add_note", first)
        assert plain.is_error, f"a denied call ran: {text_of(plain)}"
        m = PENDING_RE.search(text_of(plain))
        assert not m or m.group(1) != a1, f"the denied approval is reported as pending: {text_of(plain)}"

        a2 = pending_approval(await c.call_tool("notes__add_note", second))
        approved = await cli(dep, "approvals", "approve", a2)
        assert approved.returncode == 0, said(approved)
        twice = await cli(dep, "approvals", "approve", a2)
        assert twice.returncode != 0, f"approving a decided approval again succeeded: {said(twice)}"
        unknown = await cli(dep, "approvals", "approve", "no-such-approval")
        assert unknown.returncode != 0, said(unknown)

        ran = await c.call_tool("notes__add_note", second)
        assert not ran.is_error, text_of(ran)
        titles = await list_titles(agent)
        assert titles.count("to-be-approved") == 1 and "to-be-denied" not in titles, titles

    rows = await audit_where(dep, "the operator's admin rows", server_name="mcp-warden", actor_id="operator")
    decided = [(r["tool_name"], r["decision"], r["approval_id"]) for r in rows if r["approval_id"]]
    assert ("deny", "ALLOW", a1) in decided and ("approve", "ALLOW", a2) in decided, show_rows(rows)
    assert any(r["tool_name"] == "approve" and r["decision"] == "DENY" and r["approval_id"] == a2 for r in rows), (
        "the refused second approve is audited\n" + show_rows(rows)
    )
    ran_rows = await audit_where(dep, "the approved run", exposed_name="notes__add_note", decision="ALLOW")
    assert [(r["actor_id"], r["approval_id"]) for r in ran_rows] == [("local", a2)], show_rows(ran_rows)
    no_write_allowed_without_approval(dep.audit_rows())


async def list_titles(agent: Agent) -> list[str]:
    return await note_titles(agent)


async def cli(dep, *args: str):
    return await anyio.to_thread.run_sync(lambda: dep.run_cli(*args))


def said(done) -> str:
    return f"exit {done.returncode}\n--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}"


# --------------------------------------------------------------------------------------------
# waiting for the decision (approvals.wait_sec)
# --------------------------------------------------------------------------------------------


async def test_a_waiting_call_reports_progress_and_runs_when_approved(deploy):
    dep = keyed_deployment(deploy, extra={"approvals": {"wait_sec": 60}})
    args = {"title": "waited-for", "body": "b"}
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with running(dep) as gw, agent_as(gw, "alice") as alice, admin_as(gw, "bob") as bob:
        await wait_for_tools(alice, NOTES_TOOLS)
        outcome: dict[str, Any] = {}

        async def call() -> None:
            outcome["result"] = await alice.client.call_tool("notes__add_note", args, progress_callback=on_progress)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)

            async def requested() -> dict[str, Any] | None:
                listing = await approvals_list(bob)
                items = [a for a in _approvals(listing) if a.get("status", "pending") == "pending"]
                return items[0] if items else None

            entry = await eventually(requested, timeout=20, what="the waiting call's approval to be listed")
            assert "result" not in outcome, "the call returned before anyone decided"
            await eventually(lambda: _val(bool(progress)), timeout=20, what="a progress notification while waiting")
            await approve(bob, entry["id"])

        result = outcome["result"]
        assert not result.is_error, text_of(result)
        assert any(entry["id"] in p for p in progress), f"progress names the approval: {progress}"
        assert (await note_titles(alice)).count("waited-for") == 1

    rows = await audit_where(dep, "the waited call", exposed_name="notes__add_note")
    assert [(r["decision"], r["approval_id"]) for r in rows] == [("ALLOW", entry["id"])], show_rows(rows)


async def test_a_waiting_call_answers_pending_when_nobody_decides(deploy):
    dep = keyed_deployment(deploy, extra={"approvals": {"wait_sec": 0.5}})
    async with running(dep) as gw, agent_as(gw, "alice") as alice:
        await wait_for_tools(alice, NOTES_TOOLS)
        with anyio.fail_after(20):
            aid = pending_approval(await alice.client.call_tool("notes__add_note", {"title": "t", "body": "b"}))
    rows = await audit_where(dep, "the held call", exposed_name="notes__add_note")
    assert [(r["decision"], r["approval_id"]) for r in rows] == [("REQUIRE_APPROVAL", aid)], show_rows(rows)


def _approvals(listing: Any) -> list[dict[str, Any]]:
    """Every approval-looking object (a dict with an `id`) in an approvals_list answer."""
    out: list[dict[str, Any]] = []
    if isinstance(listing, dict):
        if "id" in listing and isinstance(listing["id"], str):
            return [listing]
        for v in listing.values():
            out.extend(_approvals(v))
    elif isinstance(listing, list):
        for v in listing:
            out.extend(_approvals(v))
    return out


async def _val(value: Any) -> Any:
    return value

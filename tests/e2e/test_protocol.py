"""Both protocol eras × both agent transports against the notes fixture: tools, resources,
prompts, completion, and the errors an agent sees for an unknown tool."""

from __future__ import annotations

import json

import pytest
from mcp import MCPError
from mcp_types import PromptReference
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from harness import (
    ERAS,
    MODERN,
    NAME_RE,
    TRANSPORTS,
    HttpGateway,
    descendants,
    eventually,
    http_agent,
    http_exchange,
    notes_upstream,
    open_agent,
    python_upstream,
    show_rows,
    text_of,
    tool_names,
    wait_for_tools,
)

pytestmark = pytest.mark.anyio

NOTES_TOOLS = {
    "notes__list_notes",
    "notes__get_note",
    "notes__add_note",
    "notes__delete_note",
    "notes__echo",
    "notes__toggle_extra_tool",
    "notes__slow_count",
}


def blob(result) -> str:
    """Everything a tool result says, as one string (text content and structured content)."""
    return text_of(result) + json.dumps(result.structured_content or {})


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", ERAS)
async def test_tools_resources_prompts_completion(deploy, mode, transport):
    dep = deploy({"notes": notes_upstream()})
    async with open_agent(dep, transport, mode, wait_for={"notes__list_notes"}) as agent:
        c = agent.client
        if mode == "auto":
            assert c.protocol_version == MODERN, "auto mode should negotiate 2026-07-28 with the gateway"
        else:
            assert c.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS

        # tools/list: namespaced, valid names, object schemas
        tools = (await c.list_tools()).tools
        names = {t.name for t in tools}
        assert NOTES_TOOLS <= names, f"missing: {NOTES_TOOLS - names}"
        for tool in tools:
            assert NAME_RE.match(tool.name), tool.name
            # the upstream's tools under its prefix, and the gateway's own (warden__…)
            assert tool.name.startswith(("notes__", "warden__")), tool.name
            assert tool.input_schema.get("type") == "object", (tool.name, tool.input_schema)

        # tools/call: write then read back
        title = f"e2e {mode} {transport}"
        body = f"body of {mode}/{transport}"
        added = await c.call_tool("notes__add_note", {"title": title, "body": body})
        assert not added.is_error, text_of(added)
        listed = await c.call_tool("notes__list_notes", {})
        assert not listed.is_error, text_of(listed)
        assert title in blob(listed)
        echoed = await c.call_tool("notes__echo", {"text": "hello warden"})
        assert not echoed.is_error and "hello warden" in blob(echoed)

        # resources: namespaced as warden://notes/<original uri>, readable through the gateway.
        # The list is live data: the new note shows up once the upstream's list_changed has
        # been handled, so poll for it.
        async def note_readable() -> bool:
            resources = (await c.list_resources()).resources
            assert resources, "the notes fixture lists its notes as resources"
            for resource in resources:
                assert str(resource.uri).startswith("warden://notes/note://"), resource.uri
            texts = []
            for resource in resources:
                read = await c.read_resource(str(resource.uri))
                assert read.contents, resource.uri
                texts.extend(getattr(part, "text", "") for part in read.contents)
            return any(body in t for t in texts)

        await eventually(note_readable, what=f"a resource holding the note body {body!r}")

        templates = (await c.list_resource_templates()).resource_templates
        assert "warden://notes/note://{id}" in {t.uri_template for t in templates}

        # prompts: namespaced like tools
        prompts = (await c.list_prompts()).prompts
        assert "notes__summarize_notes" in {p.name for p in prompts}
        prompt = await c.get_prompt("notes__summarize_notes", {"style": "brief"})
        assert prompt.messages, "the prompt has messages"

        # completion of the prompt's `style` argument
        done = await c.complete(PromptReference(type="ref/prompt", name="notes__summarize_notes"), {"name": "style", "value": "b"})
        assert "brief" in done.completion.values
        done = await c.complete(PromptReference(type="ref/prompt", name="notes__summarize_notes"), {"name": "style", "value": "d"})
        assert "detailed" in done.completion.values


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", ERAS)
async def test_new_note_is_readable_at_its_namespaced_uri(deploy, mode, transport):
    """A note added through a tool is readable at the namespaced URI built from the template."""
    dep = deploy({"notes": notes_upstream()})
    async with open_agent(dep, transport, mode, wait_for={"notes__add_note"}) as agent:
        c = agent.client
        before = {str(r.uri) for r in (await c.list_resources()).resources}
        added = await c.call_tool("notes__add_note", {"title": "template", "body": "via template"})
        assert not added.is_error, text_of(added)


        # the upstream announces the change (resources/list_changed); the gateway's listing follows
        async def new_uris() -> set[str]:
            return {str(r.uri) for r in (await c.list_resources()).resources} - before

        new = await eventually(new_uris, timeout=10, what="the new note to be listed as a resource")
        assert len(new) == 1, f"expected one new note resource, got {new}"
        uri = new.pop()
        read = await c.read_resource(uri)
        assert any("via template" in getattr(p, "text", "") for p in read.contents)
        # a URI outside every upstream's namespace is not forwarded anywhere
        with pytest.raises(MCPError):
            await c.read_resource("note://" + uri.rsplit("/", 1)[-1])


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", ERAS)
async def test_unknown_tool_is_a_jsonrpc_error(deploy, mode, transport):
    dep = deploy({"notes": notes_upstream()})
    async with open_agent(dep, transport, mode, wait_for={"notes__echo"}) as agent:
        for name in ("notes__no_such_tool", "nobody__echo", "echo"):
            with pytest.raises(MCPError) as info:
                await agent.client.call_tool(name, {})
            assert info.value.code == -32602, (name, info.value.code, str(info.value))
            assert "unknown tool" in str(info.value).lower(), (name, str(info.value))
        # and the gateway still answers afterwards
        ok = await agent.client.call_tool("notes__echo", {"text": "still here"})
        assert not ok.is_error and "still here" in blob(ok)


async def test_health_and_readiness_endpoints(deploy):
    dep = deploy({"notes": notes_upstream()})
    with HttpGateway(dep) as gw:
        assert gw.get("/healthz") == 200
        gw.wait_ready()
        assert gw.get("/readyz") == 200
        assert gw.get("/no-such-path") == 404


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_disabled_upstream_is_neither_started_nor_exposed(deploy, transport):
    dep = deploy(
        {
            "notes": notes_upstream(),
            "crash": python_upstream("crash.py", enabled=False),
        }
    )
    async with open_agent(dep, transport, "auto", wait_for={"notes__echo"}) as agent:
        names = await tool_names(agent)
        assert not any(n.startswith("crash__") for n in names), names
        with pytest.raises(MCPError) as info:
            await agent.client.call_tool("crash__ping", {})
        assert info.value.code == -32602 and "unknown tool" in str(info.value).lower()
        running = [" ".join(p.cmdline) for p in descendants(agent.gateway_pid)] if agent.gateway_pid else []
        assert agent.gateway_pid and not any("crash.py" in cmd for cmd in running), running


async def test_relative_paths_resolve_against_the_config_folder(deploy, tmp_path):
    """registry_dir and store are relative to warden.toml's folder, not to the working directory."""
    dep = deploy({"notes": notes_upstream()}, extra={"store": "sqlite://relative.db"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with HttpGateway(dep, cwd=elsewhere) as gw:
        gw.wait_ready()
        async with http_agent(gw, "auto") as agent:
            await wait_for_tools(agent, {"notes__echo"})
            result = await agent.client.call_tool("notes__echo", {"text": "where am I"})
            assert not result.is_error
        dep.store = dep.root / "relative.db"
        rows = await eventually(lambda: _async(dep.audit_rows()), timeout=20, what="a row in <config dir>/relative.db")
        assert len(rows) == 1
    assert not (elsewhere / "relative.db").exists() and not (elsewhere / "registry").exists()


async def test_environment_overrides_the_config_file(deploy, tmp_path):
    """WARDEN_STORE beats `store` in warden.toml."""
    dep = deploy({"notes": notes_upstream()})
    other = tmp_path / "from-env.db"
    with HttpGateway(dep, env={"WARDEN_STORE": f"sqlite://{other}"}) as gw:
        gw.wait_ready()
        async with http_agent(gw, "legacy") as agent:
            await wait_for_tools(agent, {"notes__echo"})
            assert not (await agent.client.call_tool("notes__echo", {"text": "env"})).is_error
        configured = dep.store
        dep.store = other
        rows = await eventually(lambda: _async(dep.audit_rows()), timeout=20, what=f"a row in {other}")
        assert len(rows) == 1
        assert not configured.exists(), "the store named in warden.toml was not used"


async def _async(value):
    return value


def _post_2026(url: str, method: str, name: str | None, params: dict, extra: dict | None = None) -> tuple[int, str, str]:
    """(status, Content-Type, body) of one stateless 2026-07-28 request, as a raw HTTP POST
    (`name`: the Mcp-Name header, None to leave it out; `extra`: more headers)."""
    meta = {
        **params.get("_meta", {}),
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "e2e-raw", "version": "0"},
    }
    status, headers, text = http_exchange(
        url,
        body={"jsonrpc": "2.0", "id": 7, "method": method, "params": {**params, "_meta": meta}},
        headers={
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": method,
            **({"Mcp-Name": name} if name is not None else {}),
            **(extra or {}),
        },
    )
    return status, headers.get("Content-Type", ""), text


def test_stateless_http_answers_json_and_streams_only_when_the_call_notifies(deploy):
    """A 2026-07-28 request whose answer is all there is gets `application/json` (no SSE stream
    to build and parse); one that reports progress first falls back to SSE, and the progress and
    the result both arrive."""
    dep = deploy({"notes": notes_upstream()})
    with HttpGateway(dep) as gw:
        status, ctype, body = _post_2026(gw.url, "tools/call", "notes__echo", {"name": "notes__echo", "arguments": {"text": "plain"}})
        assert status == 200, body
        assert ctype.startswith("application/json"), (ctype, body)
        answer = json.loads(body)
        assert answer["id"] == 7 and "plain" in json.dumps(answer["result"]), answer
        assert answer["result"].get("resultType") == "complete", answer

        params = {"name": "notes__slow_count", "arguments": {"n": 2, "delay_ms": 10}, "_meta": {"progressToken": "p-1"}}
        status, ctype, body = _post_2026(gw.url, "tools/call", "notes__slow_count", params)
        assert status == 200, body
        assert ctype.startswith("text/event-stream"), (ctype, body)
        events = [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:") and line[5:].strip()]
        progress = [e for e in events if e.get("method") == "notifications/progress"]
        assert [p["params"]["progressToken"] for p in progress] == ["p-1", "p-1"], events
        final = [e for e in events if e.get("id") == 7]
        assert len(final) == 1 and "counted 2" in json.dumps(final[0]["result"]), events


def test_raw_stdio_calls_are_each_answered_once_even_when_stdin_closes_at_once(deploy):
    """Over stdio, `tools/call` lines take the gateway's fast lane (src/downstream/lane.rs and
    src/upstream/lane.rs). Forty calls written in one go, under numeric and string ids, are each
    answered exactly once under their own id with their own text; a call with a progress token
    gets its progress under the agent's token; malformed lines get rmcp's own treatment;
    and closing stdin right after the last request loses no answer (the session drains first)."""
    import os
    import subprocess

    from harness import warden_bin

    dep = deploy({"notes": notes_upstream()})
    dep.ensure_pinned()
    with dep.log_path("gateway-raw-stdio").open("w") as errlog:
        proc = subprocess.Popen(
            [str(warden_bin()), "serve", "--stdio", "--config", str(dep.config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errlog,
            cwd=str(dep.root),
            env={**os.environ, "RUST_LOG": "info", **dep.env},
        )
        try:
            assert proc.stdin is not None and proc.stdout is not None

            def send(message: dict | str) -> None:
                line = message if isinstance(message, str) else json.dumps(message)
                proc.stdin.write((line + "\n").encode())
                proc.stdin.flush()

            send({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
            first = json.loads(proc.stdout.readline())
            assert first["id"] == "init" and "result" in first, first
            send({"jsonrpc": "2.0", "method": "notifications/initialized"})
            # Wait for the catalog, so every call below finds its tool.
            for attempt in range(200):
                send({"jsonrpc": "2.0", "id": f"list-{attempt}", "method": "tools/list", "params": {}})
                listed = json.loads(proc.stdout.readline())
                if "notes__echo" in json.dumps(listed):
                    break
            else:
                pytest.fail("notes__echo never listed")
            ids: list[int | str] = [i if i % 2 else f"s-{i}" for i in range(1, 41)]
            batch = [json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                                 "params": {"name": "notes__echo", "arguments": {"text": f"text of {i}"}}}) for i in ids]
            batch.insert(20, "{this is not json")
            batch.insert(30, json.dumps({"hello": "world"}))
            batch.append(json.dumps({"jsonrpc": "2.0", "id": "progress", "method": "tools/call", "params": {
                "name": "notes__slow_count", "arguments": {"n": 2, "delay_ms": 50}, "_meta": {"progressToken": "agent-token"}}}))
            proc.stdin.write(("\n".join(batch) + "\n").encode())
            proc.stdin.close()
            # Everything the gateway says until it exits (stdout closes at its end).
            out = proc.stdout.read()
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    messages = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    answers: dict[object, list[dict]] = {}
    for m in messages:
        if "id" in m and "method" not in m:
            answers.setdefault(json.dumps(m["id"]), []).append(m)
    for i in ids:
        got = answers.get(json.dumps(i), [])
        assert len(got) == 1, (i, got)
        assert f"text of {i}" in json.dumps(got[0].get("result")), got[0]
    parse_errors = answers.get("null", [])
    # rmcp's framing rules, unchanged by the lane: unparsable input is ignored; well-formed
    # JSON that is no message gets at most an Invalid Request, never an answer under an id.
    assert all(e["error"]["code"] == -32600 for e in parse_errors), parse_errors
    counted = answers.get(json.dumps("progress"), [])
    assert len(counted) == 1 and "counted 2" in json.dumps(counted[0]["result"]), counted
    progress = [m for m in messages if m.get("method") == "notifications/progress"]
    assert [p["params"]["progressToken"] for p in progress] == ["agent-token", "agent-token"], progress
    assert proc.returncode == 0, dep.log_path("gateway-raw-stdio").read_text()[-3000:]


def test_the_http_lane_and_rmcp_answer_a_stateless_call_alike(deploy):
    """A stateless 2026-07-28 `tools/call` the HTTP lane takes (src/downstream/http_lane.rs) and
    the same call made ineligible by an `Origin` header (so rmcp serves it) get the same answer,
    for a good call and for an unknown tool; a request the lane cannot judge exactly (no
    Mcp-Name) still gets rmcp's own refusal; every call is audited either way."""
    dep = deploy({"notes": notes_upstream()})
    rmcp_only = {"Origin": "http://127.0.0.1"}
    echo = {"name": "notes__echo", "arguments": {"text": "same"}}
    with HttpGateway(dep) as gw:
        lane = _post_2026(gw.url, "tools/call", "notes__echo", echo)
        via_rmcp = _post_2026(gw.url, "tools/call", "notes__echo", echo, rmcp_only)
        assert lane[0] == via_rmcp[0] == 200, (lane, via_rmcp)
        assert lane[1].startswith("application/json") and via_rmcp[1].startswith("application/json"), (lane, via_rmcp)
        assert json.loads(lane[2]) == json.loads(via_rmcp[2]), (lane, via_rmcp)
        assert "same" in lane[2] and json.loads(lane[2])["result"]["resultType"] == "complete", lane

        ghost = {"name": "notes__ghost", "arguments": {}}
        lane = _post_2026(gw.url, "tools/call", "notes__ghost", ghost)
        via_rmcp = _post_2026(gw.url, "tools/call", "notes__ghost", ghost, rmcp_only)
        assert (lane[0], json.loads(lane[2])) == (via_rmcp[0], json.loads(via_rmcp[2])), (lane, via_rmcp)
        assert json.loads(lane[2])["error"]["code"] == -32602, lane

        status, _, body = _post_2026(gw.url, "tools/call", None, echo)
        assert status == 400 and "Mcp-Name" in body, (status, body)

    rows = dep.audit_rows()
    echoes = [r for r in rows if "echo" in (r.get("exposed_name") or r.get("tool_name") or "")]
    ghosts = [r for r in rows if "ghost" in (r.get("exposed_name") or r.get("tool_name") or "")]
    assert len(echoes) == 2 and all(r["decision"] == "ALLOW" for r in echoes), show_rows(rows)
    assert len(ghosts) == 2 and all(r["decision"] == "DENY" for r in ghosts), show_rows(rows)

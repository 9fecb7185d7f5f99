"""Third-party upstreams beside the notes fixture: @modelcontextprotocol/server-everything (npm,
stdio) and mcp-server-time (PyPI), reached through the gateway in both eras and transports."""

from __future__ import annotations

import json

import pytest
from mcp_types import PromptReference

from harness import ERAS, NAME_RE, TRANSPORTS, everything_upstream, notes_upstream, open_agent, text_of, time_upstream

pytestmark = pytest.mark.anyio


def upstreams() -> dict:
    return {"notes": notes_upstream(), "everything": everything_upstream(), "time": time_upstream()}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", ERAS)
async def test_third_party_tools_through_the_gateway(deploy, mode, transport):
    dep = deploy(upstreams())
    wanted = {"notes__echo", "everything__echo", "everything__get-sum", "time__get_current_time", "time__convert_time"}
    async with open_agent(dep, transport, mode, wait_for=wanted) as agent:
        c = agent.client
        tools = (await c.list_tools()).tools
        for tool in tools:
            assert NAME_RE.match(tool.name), tool.name
            assert tool.input_schema.get("type") == "object", (tool.name, tool.input_schema)
        prefixes = {t.name.split("__", 1)[0] for t in tools}
        assert {"notes", "everything", "time"} <= prefixes

        echoed = await c.call_tool("everything__echo", {"message": "through the warden"})
        assert not echoed.is_error, text_of(echoed)
        assert "through the warden" in text_of(echoed)

        summed = await c.call_tool("everything__get-sum", {"a": 19, "b": 23})
        assert not summed.is_error, text_of(summed)
        assert "42" in text_of(summed)

        now = await c.call_tool("time__get_current_time", {"timezone": "UTC"})
        assert not now.is_error, text_of(now)
        assert "UTC" in text_of(now) + json.dumps(now.structured_content or {})

        converted = await c.call_tool(
            "time__convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}
        )
        assert not converted.is_error, text_of(converted)
        assert "21:00" in text_of(converted) + json.dumps(converted.structured_content or {})

        # an upstream's own error stays a tool error and does not disturb the others
        bad = await c.call_tool("time__get_current_time", {"timezone": "Not/A_Zone"})
        assert bad.is_error
        ok = await c.call_tool("notes__echo", {"text": "notes still fine"})
        assert not ok.is_error and "notes still fine" in text_of(ok) + json.dumps(ok.structured_content or {})


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("what", ["resource", "prompt", "completion"])
async def test_third_party_resources_prompts_completion(deploy, mode, transport, what):
    """server-everything speaks 2025-11-25: its results carry no `resultType`, which a 2026-07-28
    agent requires — the gateway adds it to every forwarded result, not only to tools/call."""
    dep = deploy({"everything": everything_upstream()})
    async with open_agent(dep, transport, mode, wait_for={"everything__echo"}) as agent:
        c = agent.client
        if what == "resource":
            resources = (await c.list_resources()).resources
            uris = [str(r.uri) for r in resources if str(r.uri).startswith("warden://everything/demo://")]
            assert uris, [str(r.uri) for r in resources]
            read = await c.read_resource(uris[0])
            assert read.contents and getattr(read.contents[0], "text", ""), read
        elif what == "prompt":
            prompt = await c.get_prompt("everything__simple-prompt")
            assert "simple prompt" in prompt.messages[0].content.text
        else:
            done = await c.complete(
                PromptReference(type="ref/prompt", name="everything__completable-prompt"),
                {"name": "department", "value": "E"},
            )
            assert "Engineering" in done.completion.values

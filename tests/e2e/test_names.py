"""Namespacing of awkward upstream names (fixtures/misbehaving/names.py), schema normalisation,
and resource URI mapping, with a prefix and with the empty prefix."""

from __future__ import annotations

import pytest

from harness import ERAS, MISBEHAVING, NAME_RE, notes_upstream, open_agent, sha8, text_of

pytestmark = pytest.mark.anyio

LONG = "a" * 70
ORIGINALS = ["ok_name", "dotted.name", "with space/slash", LONG, "no_schema"]


def names_upstream(prefix: str) -> dict:
    return {"command": ["python3", "names.py"], "cwd": "fixtures", "prefix": prefix, "credential": "none"}


def expected(prefix: str) -> dict[str, str]:
    """The contract's rule: `p__t` if valid, else sanitise `t`, cut it, append `-` + sha256(t)[:8]."""
    head = f"{prefix}__" if prefix else ""
    out = {}
    for name in ORIGINALS:
        plain = head + name
        if NAME_RE.match(plain):
            out[name] = plain
        else:
            body = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_-") else "_" for ch in name)
            suffix = "-" + sha8(name)
            out[name] = head + body[: 64 - len(head) - len(suffix)] + suffix
    return out


@pytest.fixture
def names_dep(deploy):
    def make(prefix: str):
        dep = deploy({"weird": names_upstream(prefix), "notes": notes_upstream()})
        # the fixture runs from <deployment>/fixtures (cwd is relative to the registry's parent)
        (dep.root / "fixtures").mkdir()
        (dep.root / "fixtures" / "names.py").write_bytes((MISBEHAVING / "names.py").read_bytes())
        return dep

    return make


@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("prefix", ["weird", ""])
async def test_awkward_names_are_mapped_reversibly(names_dep, prefix, transport):
    dep = names_dep(prefix)
    want = expected(prefix)
    assert want["dotted.name"] != want["with space/slash"]
    async with open_agent(dep, transport, "auto", wait_for=set(want.values()) | {"notes__echo"}) as agent:
        tools = (await agent.client.list_tools()).tools
        names = [t.name for t in tools]
        assert len(names) == len(set(names)), "exposed names are unique"
        for tool in tools:
            assert NAME_RE.match(tool.name), tool.name
            # the Python client would have refused the whole list otherwise; check it anyway
            assert tool.input_schema.get("type") == "object", (tool.name, tool.input_schema)
        assert len(want[LONG]) == 64
        for original, exposed in want.items():
            result = await agent.client.call_tool(exposed, {})
            assert not result.is_error, (exposed, text_of(result))
            assert text_of(result) == original, f"{exposed} reached {text_of(result)!r}, not {original!r}"


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("prefix", ["weird", ""])
async def test_resource_uris_are_namespaced_by_prefix(names_dep, prefix, mode):
    dep = names_dep(prefix)
    uri = "warden://weird/demo://thing" if prefix else "demo://thing"
    async with open_agent(dep, "http", mode, wait_for={expected(prefix)["ok_name"]}) as agent:
        uris = {str(r.uri) for r in (await agent.client.list_resources()).resources}
        assert uri in uris, uris
        read = await agent.client.read_resource(uri)
        assert [getattr(p, "text", None) for p in read.contents] == ["thing-content"]

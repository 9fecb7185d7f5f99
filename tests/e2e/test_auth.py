"""Inbound OAuth and gateway-issued upstream credentials, end to end.

Real processes only: the gateway binary; the `authserver` fixture as the agents' token issuer
and as the OAuth server of two external upstreams; the `whoami` fixture as upstreams that verify
what the gateway sends them (stdio with the credential in `_meta`, stdio with a spawn-time token
in the environment, Streamable HTTP with `Authorization`) and report every claim and header they
saw; the Python `mcp` SDK as the agent.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from harness import (
    ALLOW_ALL,
    Deployment,
    HttpGateway,
    eventually,
    gateway_env,
    http_request,
    result_json,
    text_of,
    wait_sync,
    warden_bin,
)

pytestmark = pytest.mark.anyio

GATEWAY = "https://warden.test"
RESOURCE = f"{GATEWAY}/mcp"
READY_RE = re.compile(r"listening on http://127\.0\.0\.1:(\d+)/")
WHOAMI_TOOLS = {"whoami": "read", "write_probe": "write", "history": "read"}
CC_SECRET = "warden-secret"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


class Fixture:
    """`mcp-warden fixture NAME --http 127.0.0.1:0` as a child process."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [str(warden_bin()), "fixture", name, "--http", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env=gateway_env(env),
        )

        def port() -> int | None:
            if m := READY_RE.search(log.read_text(errors="replace")):
                return int(m.group(1))
            assert self.proc.poll() is None, f"fixture {name} exited: {log.read_text()}"
            return None

        self.port = wait_sync(port, what=f"fixture {name} listening")
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class AuthServer(Fixture):
    def issue(self, claims: dict[str, Any], kid: str | None = None) -> str:
        body: dict[str, Any] = {"claims": claims}
        if kid:
            body["kid"] = kid
        status, text = http_request(f"{self.base}/issue", body=body)
        assert status == 200, text
        return json.loads(text)["token"]

    def agent_token(self, sub: str = "alice", **over: Any) -> str:
        """A token for the gateway, as an identity provider issues it."""
        now = int(__import__("time").time())
        claims = {
            "iss": self.base,
            "aud": RESOURCE,
            "sub": sub,
            "iat": now,
            "exp": now + 600,
            "scope": "mcp:tools *:*",
            "groups": ["admin"] if sub == "carol" else [],
        }
        claims.update(over)
        return self.issue({k: v for k, v in claims.items() if v is not None})

    def stats(self) -> dict[str, Any]:
        status, text = http_request(f"{self.base}/stats", method="GET")
        assert status == 200, text
        return json.loads(text)


@pytest.fixture
def authserver(tmp_path: Path) -> Iterator[AuthServer]:
    logs = tmp_path / "fixture-logs"
    logs.mkdir()
    # It trusts the gateway's keys for the subject tokens of token exchange.
    server = AuthServer(
        "authserver",
        {
            "AUTHSERVER_CLIENTS": f"warden:{CC_SECRET}",
            "AUTHSERVER_TRUST_JWKS": str(tmp_path / "dep" / ".state" / "jwks.json"),
        },
        logs / "authserver.log",
    )
    yield server
    server.stop()


def whoami_env(issuer: str, audience: str, jwks: str) -> dict[str, str]:
    return {"WHOAMI_ISSUER": issuer, "WHOAMI_AUDIENCE": audience, "WHOAMI_JWKS": jwks}


class World:
    """One deployment: the gateway (JWT issuer: the authserver; required scope `mcp:tools`)
    in front of five whoami upstreams, one per way of handing over a credential."""

    def __init__(self, root: Path, auth: AuthServer) -> None:
        self.auth = auth
        self.root = root / "dep"
        self.root.mkdir(parents=True, exist_ok=True)
        logs = root / "fixture-logs"
        gateway_jwks = str(self.root / ".state" / "jwks.json")
        self.fixtures: list[Fixture] = []
        # An HTTP upstream that verifies gateway-minted tokens (against the gateway's JWKS file).
        self.whohttp = self._fixture(whoami_env(GATEWAY, "https://whohttp.internal", gateway_jwks), logs / "whohttp.log")
        # Two HTTP upstreams that verify tokens of their own authorization server.
        self.cc = self._fixture(whoami_env(auth.base, "https://cc.internal", f"{auth.base}/jwks.json"), logs / "cc.log")
        self.tx = self._fixture(whoami_env(auth.base, "https://tx.internal", f"{auth.base}/jwks.json"), logs / "tx.log")
        stdio = ["mcp-warden", "fixture", "whoami"]
        oauth = {"token_url": f"{auth.base}/token", "client_id": "warden", "client_secret_env": "CC_SECRET"}
        upstreams = {
            "who": {
                "command": stdio,
                "env": whoami_env(GATEWAY, "https://who.internal", gateway_jwks),
                "audience": "https://who.internal",
                "credential": "minted",
                "tools": WHOAMI_TOOLS,
            },
            "whoenv": {
                "command": stdio,
                "env": whoami_env(GATEWAY, "https://whoenv.internal", gateway_jwks),
                "audience": "https://whoenv.internal",
                "credential": "minted",
                "credential_via": "env",
                "tools": WHOAMI_TOOLS,
            },
            "whohttp": {
                "url": f"{self.whohttp.base}/mcp",
                "audience": "https://whohttp.internal",
                "credential": "minted",
                "tools": WHOAMI_TOOLS,
            },
            "cc": {
                "url": f"{self.cc.base}/mcp",
                "audience": "https://cc.internal",
                "credential": "oauth2_client_credentials",
                "oauth": oauth,
                "tools": WHOAMI_TOOLS,
            },
            "tx": {
                "url": f"{self.tx.base}/mcp",
                "audience": "https://tx.internal",
                "credential": "token_exchange",
                "oauth": {**oauth, "subject_audience": auth.base},
                "tools": WHOAMI_TOOLS,
            },
        }
        issuer = f"""
[auth]
resource = "{RESOURCE}"
required_scopes = ["mcp:tools"]

[[auth.issuers]]
issuer = "{auth.base}"
jwks_url = "{auth.base}/jwks.json"
labels_claim = "groups"

[minting]
issuer = "{GATEWAY}"
"""
        # The upstreams echo the credentials they saw; the output stage would mask every JWT in
        # an answer (`[REDACTED:jwt]`), which would also hide a leaked agent token from these
        # checks. So, for these upstreams only, JWTs pass.
        passes = "\n".join(f"    {name}: {{ actions: {{ jwt: PASS }} }}" for name in upstreams)
        self.dep = Deployment(
            self.root,
            upstreams,
            policies={"allow-all.yaml": ALLOW_ALL, "output.yaml": f"version: v1\noutput:\n  upstreams:\n{passes}\n"},
            extra={"control": {"poll_sec": 0.2}},
            toml_extra=issuer,
            env={"CC_SECRET": CC_SECRET},
        )
        self.gw = HttpGateway(self.dep)

    def _fixture(self, env: dict[str, str], log: Path) -> Fixture:
        f = Fixture("whoami", env, log)
        self.fixtures.append(f)
        return f

    def stop(self) -> None:
        self.gw.stop()
        for f in self.fixtures:
            f.stop()


@pytest.fixture
def world(tmp_path: Path, authserver: AuthServer) -> Iterator[World]:
    w = World(tmp_path, authserver)
    try:
        w.gw.start()
        w.gw.wait_ready()
        yield w
    finally:
        w.stop()


@contextlib.asynccontextmanager
async def agent(w: World, token: str, mode: str = "auto", cookie: bool = True) -> AsyncIterator[Client]:
    """An MCP agent whose every request carries `token` (and a session cookie of its own)."""
    headers = {"Authorization": f"Bearer {token}"}
    if cookie:
        headers["Cookie"] = "agent_session=agent-cookie-secret"
    async with create_mcp_http_client(headers=headers) as http:
        client = Client(streamable_http_client(w.gw.url, http_client=http), mode=mode, cache=None, read_timeout_seconds=60)
        async with client:
            yield client


async def call(client: Client, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await client.call_tool(tool, args or {})
    assert not result.is_error, f"{tool}: {text_of(result)}"
    data = result_json(result)
    assert isinstance(data, dict), data
    return data


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# --------------------------------------------------------------------------------------------
# What each upstream receives
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_each_upstream_gets_a_credential_for_itself_never_the_agents(world: World, mode: str) -> None:
    token = world.auth.agent_token("alice")
    async with agent(world, token, mode) as c:
        # HTTP upstream, minted: Authorization carries a gateway token for its audience alone.
        read = await call(c, "whohttp__whoami")
        rc = read["claims"]
        assert rc["iss"] == GATEWAY and rc["aud"] == "https://whohttp.internal"
        assert rc["sub"] == "alice" and rc["scope"] == "read"
        assert rc["act"]["sub"] == GATEWAY and rc["act"]["depth"] == 0 and rc["act"]["chain_id"]
        assert rc["exp"] - rc["iat"] <= 300 and rc["jti"]
        headers = read["headers"]
        assert headers["authorization"].startswith("Bearer ") and headers["authorization"] != f"Bearer {token}"
        assert "cookie" not in headers, headers
        write = await call(c, "whohttp__write_probe", {"text": "x"})
        assert write["claims"]["scope"] == "write"
        assert write["claims"]["jti"] != rc["jti"], "a read and a write never share a token"
        assert write["headers"]["authorization"] != headers["authorization"]
        # stdio upstream: the credential comes in the call's _meta.
        meta = await call(c, "who__whoami")
        assert meta["transport"] == "stdio" and not meta["env_token_present"]
        assert meta["claims"]["aud"] == "https://who.internal" and meta["claims"]["sub"] == "alice"
        assert meta["meta"]["io.mcp-warden/credential"] != token
        # stdio upstream, spawn-time token: the gateway's own subject, in its environment.
        env = await call(c, "whoenv__whoami")
        assert env["env_token_present"] and env["claims"]["sub"] == "mcp-warden"
        assert env["claims"]["aud"] == "https://whoenv.internal"
        assert "io.mcp-warden/credential" not in (env["meta"] or {})
        # Nothing any upstream saw contains the agent's token or its cookie.
        for seen in (read, write, meta, env):
            dumped = json.dumps(seen)
            assert token not in dumped and "agent-cookie-secret" not in dumped
        # The handshake and lists were the gateway's own traffic, under its own subject.
        history = await call(c, "whohttp__history")
        subs = {(h["method"], h["sub"]) for h in history["seen"]}
        assert ("initialize", "mcp-warden") in subs or ("server/discover", "mcp-warden") in subs, subs
        assert ("tools/call", "alice") in subs
        assert all(token not in json.dumps(h) for h in history["seen"])


async def test_credentials_are_cached_and_a_revoked_audience_gets_fresh_ones(world: World) -> None:
    async with agent(world, world.auth.agent_token("alice")) as c:
        first = (await call(c, "whohttp__whoami"))["claims"]
        again = (await call(c, "whohttp__whoami"))["claims"]
        assert again["jti"] == first["jti"], "a credential is reused until shortly before it expires"
        assert first["epoch"] == 0
        env_before = (await call(c, "whoenv__whoami"))["claims"]["jti"]
        other_before = (await call(c, "who__whoami"))["claims"]["jti"]
        # An admin revokes the audience over the admin API (as a token principal with `admin`).
        carol = world.auth.agent_token("carol")
        status, body = http_request(f"{world.gw.base}/admin/tokens/revoke", body={"audience": "whohttp"}, bearer=carol)
        assert status == 200, body
        status, body = http_request(f"{world.gw.base}/admin/tokens/revoke", body={"audience": "whoenv"}, bearer=carol)
        assert status == 200, body
        after = (await call(c, "whohttp__whoami"))["claims"]
        assert after["jti"] != first["jti"] and after["epoch"] > 0, after
        # Other audiences keep theirs.
        assert (await call(c, "who__whoami"))["claims"]["jti"] == other_before

        # The spawn-time token of a stdio upstream is in its process: the process is replaced.
        async def replaced() -> bool:
            result = await c.call_tool("whoenv__whoami", {})
            return not result.is_error and result_json(result)["claims"]["jti"] != env_before

        await eventually(replaced, what="whoenv restarted with a new spawn-time token")
    rows = world.dep._rows("SELECT audience, revoked_by FROM revocations")
    assert {(r["audience"], r["revoked_by"]) for r in rows} >= {
        ("https://whohttp.internal", "carol"),
        ("https://whoenv.internal", "carol"),
    }


async def test_external_authorization_servers(world: World) -> None:
    async with agent(world, world.auth.agent_token("alice")) as c:
        # Client credentials: the gateway's own client, a token per class, with the resource.
        read = (await call(c, "cc__whoami"))["claims"]
        assert read["iss"] == world.auth.base and read["aud"] == "https://cc.internal"
        assert read["sub"] == "warden" and read["scope"] == "read"
        write = (await call(c, "cc__write_probe", {"text": "x"}))["claims"]
        assert write["scope"] == "write" and write["jti"] != read["jti"]
        issued = world.auth.stats()["by_grant"].get("client_credentials", 0)
        assert (await call(c, "cc__whoami"))["claims"]["jti"] == read["jti"], "cached"
        assert world.auth.stats()["by_grant"].get("client_credentials", 0) == issued
        requests = [r for r in world.auth.stats()["requests"] if r["grant_type"] == "client_credentials"]
        assert {r["scope"] for r in requests} >= {"read", "write"}
        assert all(r["resource"] == "https://cc.internal" for r in requests)
        # Token exchange: the principal's identity, the gateway as the actor.
        ex = (await call(c, "tx__whoami"))["claims"]
        assert ex["sub"] == "alice" and ex["aud"] == "https://tx.internal" and ex["scope"] == "read"
        assert ex["act"]["sub"] == "warden", ex
        assert ex["act"]["act"]["sub"] == GATEWAY, "the subject token's actor (the gateway) is kept"


# --------------------------------------------------------------------------------------------
# What the gateway accepts
# --------------------------------------------------------------------------------------------


def post_mcp(w: World, token: str | None) -> tuple[int, str, dict[str, str]]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(w.gw.url, data=json.dumps(INIT).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    for k, v in MCP_HEADERS.items():
        req.add_header(k, v)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, resp.read().decode(errors="replace"), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace"), dict(exc.headers)


def tamper(token: str) -> str:
    head, payload, sig = token.split(".")
    claims = claims_of(token)
    claims["scope"] = "mcp:tools *:* admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{sig}"


def alg_none(token: str) -> str:
    head = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    return f"{head}.{token.split('.')[1]}."


async def test_bad_tokens_get_401_with_the_resource_metadata(world: World) -> None:
    a = world.auth
    now = int(__import__("time").time())
    good = a.agent_token("alice")
    status, _, _ = post_mcp(world, good)
    assert status == 200
    metadata = f"{GATEWAY}/.well-known/oauth-protected-resource/mcp"
    cases = {
        "missing": None,
        "expired": a.agent_token(exp=now - 120, iat=now - 900),
        "not yet valid": a.agent_token(nbf=now + 600),
        "wrong issuer": a.issue({**claims_of(good), "iss": "https://evil.example", "jti": "x1"}),
        "wrong audience": a.agent_token(aud="https://whohttp.internal"),
        "alg none": alg_none(good),
        "tampered signature": tamper(good),
        "unknown kid": a.issue({**claims_of(good), "jti": "x2"}, kid="no-such-key"),
        "an API key nobody has": "not-a-key-0123456789",
    }
    for what, token in cases.items():
        status, body, headers = post_mcp(world, token)
        assert status == 401, f"{what}: {status} {body}"
        challenge = headers.get("WWW-Authenticate") or headers.get("www-authenticate") or ""
        assert f'resource_metadata="{metadata}"' in challenge, f"{what}: {challenge}"
        if token is not None:
            assert 'error="invalid_token"' in challenge, f"{what}: {challenge}"
    # Valid, but without the scope this gateway requires: 403.
    status, body, headers = post_mcp(world, a.agent_token(scope="*:*"))
    assert status == 403, body
    challenge = headers.get("WWW-Authenticate") or headers.get("www-authenticate") or ""
    assert 'error="insufficient_scope"' in challenge and 'scope="mcp:tools"' in challenge, challenge
    # A token for another audience is counted (it feeds the scope-mismatch gate).
    events = await eventually(
        lambda: _async(lambda: [e for e in world.dep.gate_events() if e["gate"] == "token_wrong_audience"]),
        what="a token_wrong_audience gate event",
    )
    assert len(events) == 1, events
    # The well-known documents.
    status, body = http_request(f"{world.gw.base}/.well-known/oauth-protected-resource/mcp", method="GET")
    assert status == 200 and json.loads(body)["resource"] == RESOURCE
    assert json.loads(body)["authorization_servers"] == [a.base]
    status, body = http_request(f"{world.gw.base}/.well-known/jwks.json", method="GET")
    keys = json.loads(body)["keys"]
    assert status == 200 and keys and all(k["kty"] == "OKP" and "d" not in k for k in keys)


async def _async(f: Any) -> Any:
    return f()


async def test_issuer_key_rotation(world: World) -> None:
    a = world.auth
    before = a.agent_token("alice")
    assert post_mcp(world, before)[0] == 200
    status, body = http_request(f"{a.base}/rotate?drop_old=1")
    assert status == 200, body
    # A token signed with the new key is accepted at once: the gateway fetches the keys again.
    after = a.agent_token("bob")
    assert post_mcp(world, after)[0] == 200
    # The gateway now knows only the new key: a token signed with the retired one is refused.
    # (`before` was validated earlier and stays trusted until it expires.)
    old_key_token = before  # same key as every pre-rotation token
    head = json.loads(base64.urlsafe_b64decode(old_key_token.split(".")[0] + "=="))
    forged_later = a.issue({**claims_of(before), "jti": "late"}, kid=head["kid"])
    assert post_mcp(world, forged_later)[0] == 401


async def test_upstreams_refuse_tokens_meant_for_others(world: World) -> None:
    token = world.auth.agent_token("alice")
    async with agent(world, token) as c:
        minted_for_who = (await call(c, "who__whoami"))["meta"]["io.mcp-warden/credential"]
    body = json.dumps(INIT).encode()
    for what, bearer in {
        "a gateway token for another upstream": minted_for_who,
        "the agent's token for the gateway": token,
    }.items():
        status, text = http_request(
            f"{world.whohttp.base}/mcp", body=INIT, bearer=bearer, headers=MCP_HEADERS
        )
        assert status == 401, f"{what}: {status} {text}"
    # And the gateway does not take its own upstream credentials as agent tokens.
    assert post_mcp(world, minted_for_who)[0] == 401
    assert body

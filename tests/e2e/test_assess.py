"""`mcp-warden assess`, end to end: the real binary on the shipped registry/ and policies/
(must pass the default threshold) and on a deliberately weak deployment (must exit 1, with
the fixes for what makes it weak first).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from harness import gateway_env, warden_bin

ROOT = Path(__file__).resolve().parents[2]

LAX = """version: v1
rules:
  - id: allow-all
    match: { labels: { mcp.server: "*" } }
    decision: ALLOW
"""


def assess(cwd: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run(
        [str(warden_bin()), "assess", "--json", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=gateway_env(),
        timeout=60,
    )
    assert done.returncode in (0, 1), f"exit {done.returncode}: {done.stderr}"
    return done.returncode, json.loads(done.stdout), done.stderr


def test_the_shipped_deployment_passes_the_default_threshold(tmp_path):
    # The repository root: registry/ (notes, pinned) and policies/ (the baseline), defaults
    # otherwise; there is no store there, so no audit data, and none is created.
    code, out, _ = assess(ROOT)
    scores = {r["id"]: r["score"] for r in out["risks"]}
    assert code == 0, json.dumps(out, indent=1)
    assert len(scores) == 7 and max(scores.values()) <= 7.0, scores
    assert out["audit"].startswith("no audit data"), out["audit"]
    assert not (ROOT / "warden.db").exists(), "assess must not create a store"
    # A threshold below the highest score fails the same deployment.
    code, out, _ = assess(ROOT, "--fail-above", "0.5")
    assert code == 1 and out["failed"], out


def test_a_weak_deployment_fails_with_its_fixes_first(tmp_path):
    (tmp_path / "registry").mkdir()
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "allow.yaml").write_text(LAX)
    # An HTTP upstream with no credential of its own, never pinned, behind an allow-all policy.
    (tmp_path / "registry" / "crm.toml").write_text(
        'url = "http://127.0.0.1:9/mcp"\ncredential = "none"\n\n'
        '[tools]\nsearch = "read"\nupdate_contact = "write"\ndelete_contact = "destructive"\n'
    )
    (tmp_path / "warden.toml").write_text(f'store = "sqlite://{tmp_path / "none.db"}"\n')
    code, out, _ = assess(tmp_path)
    assert code == 1, json.dumps(out, indent=1)
    scores = {r["id"]: r["score"] for r in out["risks"]}
    # Above the threshold: no credential of its own and anonymous callers (no detection either).
    # Far above the shipped deployment's, though the gates (on by default) still see them:
    # writes without approval, and an unpinned upstream.
    assert out["failed"] and scores["token_passthrough"] > 7.0, scores
    assert scores["prompt_injection"] >= 5.0 and scores["tool_poisoning"] >= 5.0, scores
    top = [(f["risk"], f["action"]) for f in out["fixes"][:4]]
    assert {risk for risk, _ in top} >= {"prompt_injection", "token_passthrough"}, top
    actions = " | ".join(a for _, a in top)
    assert "REQUIRE_APPROVAL" in actions and 'credential = "minted"' in actions, top
    pin = [f for f in out["fixes"] if "mcp-warden pin crm" in f["action"]]
    assert pin and pin[0]["location"].endswith("crm.lock.json"), out["fixes"]
    reductions = [f["reduction"] for f in out["fixes"]]
    assert reductions == sorted(reductions, reverse=True), reductions


def test_a_bad_policy_folder_is_an_error(tmp_path):
    (tmp_path / "registry").mkdir()
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text("version: v1\nrules: [{id: x, decision: MAYBE}]\n")
    done = subprocess.run(
        [str(warden_bin()), "assess"], capture_output=True, text=True, cwd=tmp_path, env=gateway_env(), timeout=60
    )
    assert done.returncode == 2 and "p.yaml" in done.stderr, (done.returncode, done.stderr)

#!/usr/bin/env bash
# Run the MCP conformance suite against THE GATEWAY fronting the conformance fixture with an
# empty prefix (so the suite's fixed names pass through unchanged), for both requirement sets,
# each held to its ratchet file tests/conformance/expected-failures-<REQUIREMENTS>.txt.
#
#   tests/conformance/gateway.sh [REQUIREMENTS...]   default: 2025-11-25 2026-07-28
#
# Uses the debug `mcp-warden` binary under $CARGO_TARGET_DIR (built if missing).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
sets=("$@")
[[ ${#sets[@]} -gt 0 ]] || sets=(2025-11-25 2026-07-28)

"$here/install.sh"
target="${CARGO_TARGET_DIR:-$root/target}"
bin="$target/debug/mcp-warden"
[[ -x "$bin" ]] || cargo build --quiet --manifest-path "$root/Cargo.toml" --bin mcp-warden

work="$(mktemp -d -t warden-conformance.XXXXXX)"
mkdir -p "$work/registry"
cat >"$work/registry/conformance.toml" <<TOML
command = ["mcp-warden", "fixture", "conformance"]
prefix = ""
TOML
cat >"$work/warden.toml" <<TOML
store = "sqlite://warden.db"
registry_dir = "registry"
TOML
# The gateway reads policies/ beside warden.toml and denies whatever no rule allows: the
# conformance suite exercises the protocol, so every call to the fixture is allowed.
mkdir -p "$work/policies"
cat >"$work/policies/allow-all.yaml" <<'YAML'
version: v1
rules:
  - id: allow-all
    match: { labels: { mcp.server: "*" } }
    decision: ALLOW
YAML

# Pin the fixture first, as an operator would: unpinned upstreams are never exposed.
"$bin" pin --config "$work/warden.toml" --by conformance >"$work/pin.log" 2>&1 || { cat "$work/pin.log" >&2; exit 1; }

log="$work/gateway.log"
"$bin" serve --http 127.0.0.1:0 --config "$work/warden.toml" 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

url=""
for _ in $(seq 300); do
    url="$(sed -n 's/^mcp-warden: listening on \(http:[^ ]*\)$/\1/p' "$log")"
    [[ -n "$url" ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
done
[[ -n "$url" ]] || { echo "gateway.sh: the gateway did not report its address" >&2; cat "$log" >&2; exit 1; }

status=0
for req in "${sets[@]}"; do
    "$here/run.sh" "$url" "$req" || status=1
done
exit $status

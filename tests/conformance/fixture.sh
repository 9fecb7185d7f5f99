#!/usr/bin/env bash
# Run the conformance suite directly against the project's conformance
# fixture (fixtures/servers, `warden-fixture conformance`) for both
# requirement sets: the baseline the gateway is compared with.
#
#   tests/conformance/fixture.sh [REQUIREMENTS...]   default: 2025-11-25 2026-07-28
#
# Builds the fixture (CARGO_TARGET_DIR is honoured), serves it over HTTP on a
# free loopback port, runs tests/conformance/run.sh for each set and stops it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
sets=("$@")
[[ ${#sets[@]} -gt 0 ]] || sets=(2025-11-25 2026-07-28)

"$here/install.sh"
cargo build --quiet --manifest-path "$root/Cargo.toml" -p warden-fixtures --bin warden-fixture
target="${CARGO_TARGET_DIR:-$root/target}"

log="$(mktemp -t warden-fixture.XXXXXX)"
"$target/debug/warden-fixture" conformance --http 127.0.0.1:0 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT

url=""
for _ in $(seq 100); do
    url="$(sed -n 's/^listening on \(http:[^ ]*\)$/\1/p' "$log")"
    [[ -n "$url" ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
done
[[ -n "$url" ]] || { echo "fixture.sh: the fixture did not report its address" >&2; cat "$log" >&2; exit 1; }

status=0
for req in "${sets[@]}"; do
    "$here/run.sh" "$url" "$req" || status=1
done
exit $status

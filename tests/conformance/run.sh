#!/usr/bin/env bash
# Run the MCP conformance suite's server scenarios for one requirement set
# against a running server, and hold the result to the ratchet file
# tests/conformance/expected-failures-<REQUIREMENTS>.txt.
#
#   tests/conformance/run.sh URL REQUIREMENTS
#     URL           the server's Streamable HTTP endpoint, e.g. http://127.0.0.1:8080/mcp
#     REQUIREMENTS  2025-11-25 or 2026-07-28
#
# Results go to $CONFORMANCE_OUT/<REQUIREMENTS> (default: the git-ignored
# .tools/conformance-results), the suite's own log to suite.log in there. Exit status 1 when a
# failure is not listed in the ratchet file or a listed one now passes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $# -ne 2 ]]; then
    sed -n '2,12p' "${BASH_SOURCE[0]}" >&2
    exit 2
fi
url="$1"
req="$2"
case "$req" in
    2025-11-25 | 2026-07-28) ;;
    *) echo "run.sh: unknown requirement set $req (2025-11-25 or 2026-07-28)" >&2; exit 2 ;;
esac
expected="$here/expected-failures-$req.txt"
[[ -f "$expected" ]] || { echo "run.sh: missing $expected" >&2; exit 2; }

eval "$("$here/install.sh" --print)" # sets node= and suite=
modules="${suite%/@modelcontextprotocol/*}"
requirements="$modules/@modelcontextprotocol/conformance/requirements/$req.yaml"

base="${CONFORMANCE_OUT:-$here/../../.tools/conformance-results}"
mkdir -p "$base"
out="$(cd "$base" && pwd)/$req"
rm -rf "$out"
mkdir -p "$out"

status=0
"$node" "$suite" server --url "$url" --requirements "$req" -o "$out" >"$out/suite.log" 2>&1 || status=$?
if [[ $status -ne 0 ]]; then
    echo "run.sh: the suite exited with status $status (see $out/suite.log)" >&2
fi
echo "results: $out"
"$node" "$here/compare.mjs" "$out" "$requirements" "$expected" "$req" "$modules"

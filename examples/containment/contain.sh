#!/usr/bin/env bash
# Contain an upstream through mcp-warden's admin HTTP API — the design's containment run:
#   1. disable the upstream (no more calls reach it),
#   2. revoke every credential issued for its audience,
#   3. force approval on every write (emergency write-approval mode).
# With several replicas on one PostgreSQL store, run it against any one of them: the others
# enforce each step at their next control poll (control.poll_sec, 1 s by default).
#
# Usage: contain.sh SERVER [AUDIENCE]
#   SERVER    the upstream's registry name (registry/SERVER.toml)
#   AUDIENCE  the audience whose credentials to revoke (default: SERVER, which stands for
#             the audience of that registry entry)
# Environment:
#   API        the admin API's base URL, e.g. http://127.0.0.1:8080/admin   (required)
#   ADMIN_KEY  the API key of a principal labelled `admin`                   (required)
#   REASON     recorded with the disable step (default: "containment by contain.sh")
#   CURL       the curl command (default: curl)
# Exit status: 0 when all three steps succeeded; 2 for a usage error; 1 when a step failed
# (the steps before it stay in effect; nothing is rolled back).
# Undo, once the incident is over:
#   curl -fsS -H "Authorization: Bearer $ADMIN_KEY" -X POST "$API/registry/SERVER/enable"
#   curl -fsS -H "Authorization: Bearer $ADMIN_KEY" -X POST "$API/policy/emergency-write-approval" -d '{"enabled":false}'
set -euo pipefail

usage() {
    sed -n '/^# Usage:/,/^# Exit status/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
}
die() { echo "contain.sh: $1" >&2; exit "${2:-1}"; }

[[ $# -ge 1 && $# -le 2 ]] || { usage; exit 2; }
case "$1" in -h | --help) usage; exit 0 ;; esac
SERVER="$1"
AUDIENCE="${2:-$SERVER}"
[[ "$SERVER" =~ ^[A-Za-z0-9_-]+$ ]] || die "SERVER must be a registry name ([A-Za-z0-9_-]+), got '$SERVER'" 2
[[ "$AUDIENCE" =~ ^[A-Za-z0-9_.:/-]+$ ]] || die "AUDIENCE has unexpected characters: '$AUDIENCE'" 2
[[ -n "${API:-}" ]] || die "set API to the admin API's base URL, e.g. API=http://127.0.0.1:8080/admin" 2
[[ -n "${ADMIN_KEY:-}" ]] || die "set ADMIN_KEY to the API key of a principal labelled admin" 2
REASON="${REASON:-containment by contain.sh}"
CURL="${CURL:-curl}"
command -v "$CURL" > /dev/null || die "$CURL is not installed" 2
API="${API%/}"

# json_string TEXT: TEXT as a JSON string literal (backslashes, quotes, control characters).
json_string() {
    local s="$1"
    s="${s//\\/\\\\}"; s="${s//\"/\\\"}"; s="${s//$'\n'/\\n}"; s="${s//$'\r'/\\r}"; s="${s//$'\t'/\\t}"
    printf '"%s"' "$s"
}

# step N WHAT PATH BODY: POST BODY to $API/PATH; print the gateway's message, or fail naming
# the step, the HTTP status and the gateway's error.
step() {
    local n="$1" what="$2" path="$3" body="$4" out status
    out="$(mktemp)"
    # The key goes through a header file on stdin, not the command line (ps would show it).
    if ! status="$(printf 'Authorization: Bearer %s\n' "$ADMIN_KEY" |
        "$CURL" -sS -o "$out" -w '%{http_code}' -X POST -H @- \
            -H 'Content-Type: application/json' --data "$body" "$API/$path")"; then
        rm -f "$out"
        die "step $n ($what): cannot reach $API/$path"
    fi
    local answer
    answer="$(cat "$out")"
    rm -f "$out"
    if [[ "$status" != 2?? ]]; then
        die "step $n ($what) failed: POST $API/$path answered HTTP $status: $answer"
    fi
    # The answer is JSON with a human-readable "message"; show it when we can pick it out.
    local message
    message="$(printf '%s' "$answer" | sed -n 's/.*"message":"\(\([^"\\]\|\\.\)*\)".*/\1/p')"
    echo "[$n/3] $what: ${message:-$answer}"
}

echo "containing '$SERVER' through $API"
step 1 "disable upstream $SERVER" "registry/$SERVER/disable" "{\"reason\":$(json_string "$REASON")}"
step 2 "revoke credentials for audience $AUDIENCE" "tokens/revoke" "{\"audience\":$(json_string "$AUDIENCE")}"
step 3 "emergency write-approval mode on" "policy/emergency-write-approval" '{"enabled":true}'
echo "done: '$SERVER' is disabled, its credentials are revoked, every write needs approval"

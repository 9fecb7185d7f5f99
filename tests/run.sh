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

step "PostgreSQL store tests (the store's unit tests again, on PostgreSQL)"
# The machine's PostgreSQL (trust auth, database `test`) unless MCPW_TEST_PG names another.
export MCPW_TEST_PG="${MCPW_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}"
pg_missing=""
if command -v psql >/dev/null 2>&1 && psql "$MCPW_TEST_PG" -qAtc 'SELECT 1' >/dev/null 2>&1; then
    # Test schemas of earlier runs (each test makes a fresh one) are dropped first.
    psql "$MCPW_TEST_PG" -qAt -c "SELECT 'DROP SCHEMA ' || nspname || ' CASCADE;' FROM pg_namespace WHERE nspname LIKE 't\_%'" \
        | psql "$MCPW_TEST_PG" -q >/dev/null || true
    psql "$MCPW_TEST_PG" -qAt -c "SELECT 'DROP DATABASE ' || quote_ident(datname) || ';' FROM pg_database WHERE datname LIKE 'warden\_t\_%'" \
        | psql "$MCPW_TEST_PG" -q >/dev/null || true
    if cargo nextest --version >/dev/null 2>&1; then
        MCPW_TEST_STORE=postgres cargo nextest run --bin mcp-warden --locked --no-fail-fast store::
    else
        MCPW_TEST_STORE=postgres cargo test --bin mcp-warden --locked --no-fail-fast store::
    fi
else
    pg_missing="no PostgreSQL reachable at $MCPW_TEST_PG (and psql)"
    export MCPW_SKIP_PG=1
    printf '\n!!! PostgreSQL tests NOT RUN: %s. Set MCPW_TEST_PG to a database this user may create schemas and databases in.\n' "$pg_missing"
fi

step "end-to-end tests (Python mcp SDK, third-party upstreams)"
bash tests/e2e/run.sh

step "MCP conformance suite against the gateway (2025-11-25 and 2026-07-28)"
bash tests/conformance/gateway.sh

if [ -n "$pg_missing" ]; then
    step "all tests passed, EXCEPT the PostgreSQL tests, which did not run: $pg_missing"
else
    step "all tests passed"
fi

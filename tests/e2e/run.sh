#!/usr/bin/env bash
# Run the end-to-end suite from the repository root: setup, then pytest (non-zero exit on failure).
# Extra arguments go to pytest, e.g. `tests/e2e/run.sh -k crash -x`; the twelve slowest tests are listed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
tests/e2e/setup.sh
exec .venv/bin/python -m pytest tests/e2e -q --durations=12 "$@"

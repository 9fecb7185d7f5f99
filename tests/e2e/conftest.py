"""pytest wiring for the end-to-end suite (async test modules set `pytestmark = pytest.mark.anyio`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import Deployment, warden_bin


def pytest_report_header() -> str:
    return f"mcp-warden binary: {warden_bin()}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def gateway_binary() -> Path:
    """Fail (not skip) every test when the gateway has not been built."""
    path = warden_bin()
    if not path.exists():
        pytest.fail(f"gateway binary {path} not found: run `cargo build` or set WARDEN_BIN", pytrace=False)
    return path


@pytest.fixture
def deploy(tmp_path: Path) -> Callable[..., Deployment]:
    """Make a deployment folder (warden.toml + registry/) under this test's tmp_path."""
    count = 0

    def make(upstreams: dict[str, dict[str, Any]], **kwargs: Any) -> Deployment:
        nonlocal count
        count += 1
        return Deployment(tmp_path / f"deploy{count}", upstreams, **kwargs)

    return make

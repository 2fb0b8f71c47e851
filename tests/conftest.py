"""Shared fixtures: every async test runs on asyncio via anyio's pytest plugin."""

from __future__ import annotations

import compileall
from pathlib import Path

import pytest

import batchsms


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile batchsms once, so the CLI subprocesses the tests start load bytecode: with
    PYTHONDONTWRITEBYTECODE set (as on CI's machine) each of them compiled every module
    again, about 0.1-0.2 s of CPU per subprocess."""
    compileall.compile_dir(Path(batchsms.__file__).parent, quiet=2)  # a read-only install: no harm


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

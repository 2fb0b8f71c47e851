"""Shared fixtures. Every async test runs on asyncio via anyio's pytest plugin.

The helpers the fixtures are built on are modules of their own, imported by the tests that need
them: `tests.processes` (batchsms as a child process), `tests.servers` (loopback servers, one
host), `tests.jsonl` (input and outcome files), `tests.properties` (hypothesis strategies),
`tests.sdk` (the official SDK as a client).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import ScriptedServer, scripted_server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests (the official SDK) honours proxy variables: make sure nothing leaves the
    machine."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    """A scripted SMS endpoint answering 200 unless scripted otherwise (`tests.servers`)."""
    with scripted_server() as server:
        yield server

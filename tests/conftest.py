"""Shared fixtures. Every async test runs on asyncio via anyio's pytest plugin.

The helpers the fixtures are built on are modules of their own, imported by the tests that need
them: `tests.processes` (batchsms as a child process, or in this process: the `cli` and `here`
fixtures), `tests.servers` (loopback servers, one host), `tests.jsonl` (input and outcome
files), `tests.properties` (hypothesis strategies), `tests.sdk` (the official SDK as a client).
"""

from __future__ import annotations

import compileall
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import batchsms

if TYPE_CHECKING:  # imported by the fixtures that use them: not in xdist's controller process
    from tests.processes import Here, InProcess
    from tests.servers import ScriptedServer


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile batchsms once, so the CLI subprocesses the tests start load bytecode: with
    PYTHONDONTWRITEBYTECODE set (as on CI's machine) each of them compiled every module
    again, about 0.1-0.2 s of CPU per subprocess."""
    compileall.compile_dir(Path(batchsms.__file__).parent, quiet=2)  # a read-only install: no harm


CLOSED_PORT = "http://127.0.0.1:9"
"""Where the tests' ECS metadata service is: a loopback port nothing listens on."""


@pytest.fixture(autouse=True)
def no_real_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never 169.254.169.254: the ECS metadata service of the credential chain (§6, source 5)
    is a closed loopback port, for the CLI's children (the environment) and for an `env` a test
    builds without it (the default)."""
    from batchsms.transport import sources

    monkeypatch.setenv("BATCHSMS_METADATA_ENDPOINT", CLOSED_PORT)
    monkeypatch.setattr(sources, "DEFAULT_METADATA_ENDPOINT", CLOSED_PORT)


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
    from tests.servers import scripted_server

    with scripted_server() as server:
        yield server


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]) -> InProcess:
    """`batchsms(*args)` called in this process (`tests.processes.InProcess`): same result,
    no interpreter start-up."""
    from tests.processes import InProcess

    return InProcess(monkeypatch, capfdbinary)


@pytest.fixture
def here(cli: InProcess) -> Here:
    """`cli` with text output, as `batchsms(..., text=True)`."""
    return partial(cli, text=True)

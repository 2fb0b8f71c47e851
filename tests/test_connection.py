"""The one set-up of a connection (transport/endpoint.py `resolve_connection`, client.py
`open_sms`) and the one assembly of a run (`Client._pipeline`) that `batchsms run` shares."""

from __future__ import annotations

import ssl
from pathlib import Path

import anyio
import pytest

from batchsms import errors as batchsms_errors
from batchsms.changes.guarded_put import WriteChecks
from batchsms.client import Client, open_sms
from batchsms.commands.run.ending import journal_failure
from batchsms.engine.build import EngineSettings
from batchsms.engine.feed import LoopLines, ThreadLines, line_source
from batchsms.engine.stats import RunStats
from batchsms.errors import JournalError, NoCredentialsError, UsageError
from batchsms.journal.outcomes import Outcome, Status
from batchsms.lines.bodies import Planned, Planner
from batchsms.lines.reader import InvalidLine, parse_line
from batchsms.simulator.server import running
from batchsms.transport.credentials import TokenCredentials
from batchsms.transport.endpoint import Connection, ConnectionOptions, resolve_connection

TOKEN_ENV = {"BATCHSMS_AUTH_TOKEN": "tok"}


def _resolve(options: ConnectionOptions, env: dict[str, str]) -> Connection:
    return anyio.run(resolve_connection, options, env)


def test_a_rehearsal_needs_no_endpoint_and_no_credentials() -> None:
    connection = _resolve(ConnectionOptions(simulate=True), {})
    assert connection == Connection(endpoint=None, auth=None, tls=True)


def test_a_rehearsal_with_credentials_names_their_source(tmp_path: Path) -> None:
    """What `run.started` says of a `--simulate` run's credentials: where they were found,
    from the one walk of the sources that found them; a given provider's own name."""
    token = tmp_path / "token"
    token.write_text("from-file\n")
    from_env = _resolve(ConnectionOptions(simulate=True), TOKEN_ENV)
    assert (from_env.auth is not None, from_env.source) == (True, "BATCHSMS_AUTH_TOKEN")
    from_file = _resolve(ConnectionOptions(simulate=True, token_file=token), TOKEN_ENV)
    assert from_file.source == f"--token-file {token}"
    given = _resolve(ConnectionOptions(simulate=True, credentials=TokenCredentials("t")), {})
    assert given.source == "given to Client"


def test_endpoint_then_credentials_then_tls_are_resolved_once(tmp_path: Path) -> None:
    """The sources the commands share: the region's URL, the token file before the
    environment, a CA bundle read into a context."""
    token = tmp_path / "token"
    token.write_text("from-file\n")
    connection = _resolve(ConnectionOptions(region="cn-north-4", token_file=token),
                                    {"BATCHSMS_AUTH_TOKEN": "from-env"})
    assert connection.endpoint == "https://sms.cn-north-4.myhuaweicloud.com"
    assert connection.auth is not None
    assert connection.auth.secrets() == ("from-file",)
    assert connection.tls is True


def test_explicit_credentials_are_used_as_given() -> None:
    connection = _resolve(ConnectionOptions(
        endpoint="http://127.0.0.1:9", credentials=TokenCredentials("given")), TOKEN_ENV)
    assert connection.auth is not None
    assert connection.auth.secrets() == ("given",)


def test_each_missing_or_wrong_piece_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no endpoint"):
        _resolve(ConnectionOptions(), TOKEN_ENV)
    with pytest.raises(NoCredentialsError):
        _resolve(ConnectionOptions(endpoint="http://127.0.0.1:9"), {})
    with pytest.raises(UsageError, match="--ca-bundle"):
        _resolve(ConnectionOptions(endpoint="http://127.0.0.1:9",
                                             ca_bundle=str(tmp_path / "none.pem")), TOKEN_ENV)


def test_a_ca_bundle_becomes_a_context(tmp_path: Path) -> None:
    import trustme

    bundle = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    connection = _resolve(ConnectionOptions(endpoint="https://example.test",
                                                      ca_bundle=str(bundle)), TOKEN_ENV)
    assert isinstance(connection.tls, ssl.SSLContext)


@pytest.mark.anyio
async def test_open_sms_starts_the_simulator_a_rehearsal_names() -> None:
    settings = EngineSettings(concurrency=1, timeout=5.0)
    async with open_sms(Connection(None, None), {}, settings) as sms:
        reply = await sms.request("GET", "/v3/tasks", query=(("limit", "1"),))
    assert reply.status == 200


class _Records:
    """An outcome sink in memory, as the journal is one on disk."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    def write(self, outcome: Outcome, *, durable: bool = False) -> None:
        self.outcomes.append(outcome)

    def flush(self) -> None:
        pass


@pytest.mark.anyio
async def test_the_commands_run_is_the_clients_pipeline() -> None:
    """`Client._for_command` over a resolved connection, `pipeline()` writing to a sink of the
    caller's with the caller's `RunStats` and callback: what `batchsms run` drives."""
    planner = Planner()
    lines: list[Planned | InvalidLine] = []
    for n, raw in enumerate((b'{"task_id": "a", "body": {"speed_limit": 1}}',
                             b'{"task_id": "b", "body": {"speedlimit": 1}}'), 1):
        line = parse_line(n, raw)
        assert line is not None
        lines.append(line if isinstance(line, InvalidLine) else planner.plan(line))
    records, stats = _Records(), RunStats()
    seen: list[Outcome] = []
    async with running(log_size=0) as sim:
        connection = Connection(sim.url, None)
        async with Client._for_command(connection, EngineSettings(rate=0), {}) as client:
            pipeline = client._pipeline(records, WriteChecks(), run_id="r1", stats=stats,
                                       on_outcome=seen.append)
            assert pipeline.stats is stats
            await pipeline.run(LoopLines(iter(lines)))
    assert sorted((o.line, o.status) for o in records.outcomes) == [
        (1, Status.SUCCEEDED), (2, Status.INVALID)]
    assert seen == records.outcomes
    assert {o.run_id for o in seen} == {"r1"}
    assert stats.requests == 1
    assert dict(stats.by_status) == {"succeeded": 1, "invalid": 1}


def test_line_source_follows_what_was_worked_out_once() -> None:
    assert isinstance(line_source(iter(()), regular=True), LoopLines)
    assert isinstance(line_source(iter(()), regular=False), ThreadLines)


def test_journal_failure_is_found_in_nested_groups_else_raised_again() -> None:
    error = JournalError("disk full")
    group = BaseExceptionGroup("outer", [BaseExceptionGroup("inner", [ValueError(), error])])
    assert journal_failure(group) is error
    other = ExceptionGroup("outer", [ValueError("not the journal")])
    with pytest.raises(ExceptionGroup) as raised:
        journal_failure(other)
    assert raised.value is other


def test_endpoint_and_region_together_the_region_names_the_project() -> None:
    connection = _resolve(ConnectionOptions(endpoint="https://sms.example.test",
                                            region="cn-north-4"), TOKEN_ENV)
    assert connection.endpoint == "https://sms.example.test"
    assert connection.access is not None
    assert dict(connection.access.lines())["credentials"] == "BATCHSMS_AUTH_TOKEN"


@pytest.mark.anyio
async def test_a_client_takes_a_credential_provider() -> None:
    from batchsms.transport.providers import StaticProvider

    provider = StaticProvider(TokenCredentials("from-provider"), "my vault")
    async with running() as sim, Client(sim.url, credentials=provider) as client:
        assert [o.status async for o in client.run([{"task_id": "t-1", "body": {"name": "n"}}])
                ] == ["succeeded"]
    assert sim.requests[-1].headers["X-Auth-Token"] == "***"
    with pytest.raises(batchsms_errors.CredentialsError, match="credential provider"):
        Client(sim.url, credentials=object())  # type: ignore[arg-type]

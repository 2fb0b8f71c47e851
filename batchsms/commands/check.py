"""`batchsms check`: resolve what a run would use, and prove it with one read (CONTRACT §4).

Place in the flow: the same set-up as `run` (transport/endpoint.py `resolve_connection`, then
client.py `open_sms`): the endpoint, the credentials of the chain (§6) and their source, the
project id (configured, or looked up in IAM by region), the proxy, and the clock's offset
against the service (learned from the read's `Date`). One line each, then one read: ListTasks
with `limit=1` (a 401 for the date, or on temporary credentials, tried once more by SmsClient as
in a run).

Exit 0 when the read succeeded; 2 when something is missing or unreachable (no endpoint, no
credentials, a source or IAM answering something unusable, an unknown project, the endpoint or
proxy not answering, any other answer); 3 when the service (or IAM) rejected the credentials.
`--json` prints one object instead of the lines. Never a secret: every value shown is a name,
a URL without its password, or a safe excerpt of an answer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import anyio
import orjson

from batchsms.client import open_sms
from batchsms.engine.build import EngineSettings, require_transport_features
from batchsms.errors import AbortedError, ExitCode, TransportError, UsageError
from batchsms.transport.endpoint import Connection, ConnectionOptions, resolve_connection

__all__ = ["CheckConfig", "main"]

LIST_PATH = "/v3/tasks"
READ = "read"


@dataclass(frozen=True, slots=True)
class CheckConfig:
    """What `check` was asked: run's endpoint, region, TLS and credential options."""

    endpoint: str | None = None
    region: str | None = None
    ca_bundle: str | None = None
    token_file: Path | None = None
    timeout: float = 30.0
    json: bool = False

    @property
    def connection(self) -> ConnectionOptions:
        return ConnectionOptions(endpoint=self.endpoint, region=self.region,
                                 ca_bundle=self.ca_bundle, token_file=self.token_file)


@dataclass(slots=True)
class _Report:
    """The lines resolved so far, and how it ended."""

    lines: list[tuple[str, str]]
    code: ExitCode = ExitCode.OK
    clock_offset: float | None = None

    def fail(self, code: ExitCode, what: str, why: str) -> None:
        self.code = code
        self.lines.append((what, f"FAILED: {why}"))


def main(config: CheckConfig, env: Mapping[str, str] | None = None,
         stdout: IO[str] | None = None) -> ExitCode:
    """`batchsms check`: the lines (or one JSON object) on stdout; the exit code."""
    env = os.environ if env is None else env
    out = stdout or sys.stdout
    report = _Report([])
    try:
        require_transport_features()
        connection = anyio.run(resolve_connection, config.connection, env)
    except AbortedError as exc:  # IAM rejected the credentials
        report.fail(ExitCode.ABORTED, "credentials", str(exc))
    except UsageError as exc:  # no endpoint, no credentials, a source or IAM unusable
        report.fail(ExitCode.USAGE, "set-up", str(exc))
    else:
        anyio.run(_prove, connection, env, config, report)
    _print(report, config.json, out)
    return report.code


async def _prove(connection: Connection, env: Mapping[str, str], config: CheckConfig,
                 report: _Report) -> None:
    assert connection.endpoint is not None
    assert connection.access is not None
    access = connection.access
    report.lines.append(("endpoint", connection.endpoint))
    settings = EngineSettings(concurrency=1, timeout=config.timeout)
    try:
        async with open_sms(connection, env, settings) as sms:
            reply = await sms.request("GET", LIST_PATH, query=(("limit", "1"), ("offset", "0")))
    except TransportError as exc:
        report.lines.extend(access.lines())
        report.fail(ExitCode.USAGE, READ, f"ListTasks limit 1: {exc}")
        return
    report.lines.extend(access.lines())
    report.clock_offset = access.skew.offset
    if reply.ok:
        report.lines.append((READ, f"ListTasks limit 1: HTTP {reply.status}"))
        return
    why = f"ListTasks limit 1: HTTP {reply.status}"
    if reply.error_code or reply.error_msg:
        why += f" {reply.error_code or ''}: {reply.error_msg or ''}".rstrip(": ")
    rejected = reply.status in (401, 403)
    report.fail(ExitCode.ABORTED if rejected else ExitCode.USAGE, READ,
                why + (" (the service rejected the credentials)" if rejected else ""))


def _print(report: _Report, as_json: bool, out: IO[str]) -> None:
    if as_json:
        fields: dict[str, object] = dict(report.lines)
        fields["clock_offset_s"] = (round(report.clock_offset)
                                    if report.clock_offset is not None else None)
        fields["ok"] = report.code is ExitCode.OK
        fields["exit"] = int(report.code)
        out.write(orjson.dumps(fields).decode() + "\n")
    else:
        width = max(len(what) for what, _ in report.lines)
        for what, value in report.lines:
            out.write(f"{what:<{width}}  {value}\n")
    out.flush()

"""`batchsms tasks`: select a fleet with ListTasks, as input envelopes for `run`.

Pages through `GET /v3/tasks` (`limit`/`offset`, filters `state`, `name`, `id`,
`enterprise_project_id`) through the same `Sender` as `run` (pace, retries, outage guard,
credentials gate: an untrusted certificate or three 401/403 exit 3),
and writes one `{"task_id": ..., "ref": <task name>}` per task. With `--op` each line names its
operation, and with `--rules` (speed-limit) or `--set` each carries that body: `tasks --op
speed-limit --rules '00:00-07:59=1000,...'` writes the speed-limit lines of a fleet-wide rules
change (`line_body` checks the body as `run` would). A listing that fails half-way must
never look like a smaller fleet: the command then exits non-zero, and `--out` is written to a
temporary file that replaces the target only when every page arrived.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
import orjson

from batchsms.client import open_sms
from batchsms.commands.descriptors import ensure_descriptors
from batchsms.commands.outputs import check_output
from batchsms.engine.build import EngineSettings, build_sender, require_transport_features
from batchsms.engine.events import log
from batchsms.engine.feedback import Answer
from batchsms.engine.numbers import check_sending
from batchsms.engine.sender import Request, Sender
from batchsms.engine.stopping import StopReason
from batchsms.errors import ExitCode, UsageError
from batchsms.lines.bodies import build_defaults, deep_merge, parse_set
from batchsms.lines.reader import SPEED_LIMIT
from batchsms.lines.speed_rules import rules_option, validate_speed_limit
from batchsms.transport.endpoint import Connection, ConnectionOptions, resolve_connection

LIST_PATH = "/v3/tasks"


class ListingFailed(Exception):  # noqa: N818 - a state, like StopIteration
    """A page could not be fetched within the retry budget."""

    def __init__(self, message: str, auth: bool = False) -> None:
        super().__init__(message)
        self.auth = auth


@dataclass(frozen=True, slots=True)
class TasksConfig:
    """Everything `tasks` was asked to do; `filters` by their ListTasks query names."""

    filters: Mapping[str, str]
    endpoint: str | None = None
    region: str | None = None
    out: Path | None = None
    page_size: int = 100
    rate: float = 10.0
    max_attempts: int = 5
    timeout: float = 30.0
    ca_bundle: str | None = None
    token_file: Path | None = None
    op: str | None = None  # written into each line when given
    body: Mapping[str, Any] | None = None  # written into each line when given (checked)

    def __post_init__(self) -> None:
        for name, value in self.filters.items():
            if not value.strip():  # sent as is, it would match nothing: an empty fleet
                raise UsageError(f"tasks: --{name.replace('_', '-')} is empty")
        if not 1 <= self.page_size <= 200:
            raise UsageError(f"--page-size must be 1 to 200, got {self.page_size}")
        check_sending(self.rate, self.max_attempts, self.timeout)

    @property
    def connection(self) -> ConnectionOptions:
        """Where to send and as whom, as asked (resolved as `run` resolves it)."""
        return ConnectionOptions(endpoint=self.endpoint, region=self.region,
                                 ca_bundle=self.ca_bundle, token_file=self.token_file)


async def iter_tasks(sender: Sender, config: TasksConfig) -> AsyncIterator[dict[str, Any]]:
    """Every task matching the filters, page by page; raises ListingFailed when a page fails."""
    offset = 0
    while True:
        query = (*config.filters.items(), ("limit", str(config.page_size)),
                 ("offset", str(offset)))
        result = await sender.send(Request("GET", LIST_PATH, query=query), {"offset": offset})
        if not result.succeeded or result.reply is None:
            if result.stopped is not None:
                why = f"{result.stop_message} (last: {result.error_msg})"
            else:
                no_answer = result.error_code in ("timeout", "connection")
                status = "" if no_answer else f"HTTP {result.http_status} "
                why = f"{status}{result.error_code or ''} {result.error_msg or ''}".strip()
            raise ListingFailed(f"ListTasks failed after {result.attempts} attempt(s): {why}",
                                auth=result.last is Answer.REJECTED
                                or result.stopped is StopReason.ABORTED)
        try:
            page = result.reply.json()
            tasks, count = page["tasks"], int(page["count"])  # type: ignore[index]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ListingFailed(f"ListTasks answered something unexpected: {exc}") from exc
        for task in tasks:
            yield task
        offset += len(tasks)
        if not tasks or offset >= count:
            return


async def _write(connection: Connection, env: Mapping[str, str], config: TasksConfig,
                 sink: IO[bytes]) -> int:
    written = 0
    # The same engine as `run`: pace, retries, outage guard, credentials gate.
    settings = EngineSettings(concurrency=1, rate=config.rate, burst=1.0,
                              max_attempts=config.max_attempts, timeout=config.timeout)
    async with open_sms(connection, env, settings) as client:
        async for task in iter_tasks(build_sender(client, settings), config):
            line: dict[str, Any] = {"task_id": task.get("id")}
            if config.op is not None:
                line["op"] = config.op
            line["ref"] = task.get("name")
            if config.body is not None:
                line["body"] = config.body
            sink.write(orjson.dumps(line) + b"\n")
            written += 1
    return written


def line_body(op: str | None, rules: str | None,
              sets: list[str]) -> Mapping[str, Any] | None:
    """The body `tasks` writes into each line: `--rules` (speed-limit lines only) or `--set`,
    checked as `run` checks a line of that op; None when neither is given. UsageError (exit 2)
    for a body that could never be sent, or a speed-limit fleet without one."""
    if rules is not None and sets:
        raise UsageError("tasks: give --rules or --set, not both")
    if rules is not None:
        if op != SPEED_LIMIT:
            raise UsageError("tasks: --rules writes speed-limit lines: add --op speed-limit")
        return rules_option(rules)
    if op == SPEED_LIMIT:
        if not sets:
            raise UsageError("tasks --op speed-limit: give the rules, --rules "
                             "'00:00-07:59=1000,...' or --set 'speed_limit=[...]'")
        body: dict[str, Any] = {}
        for assignment in sets:
            body = deep_merge(body, parse_set(assignment))
        clean, problems = validate_speed_limit(body)
        if problems:
            detail = "; ".join(f"{p.path}: {p.message}" for p in problems)
            raise UsageError(f"--set gives an invalid speed-limit body: {detail}")
        return clean
    return build_defaults(None, sets) or None


def main(config: TasksConfig, env: Mapping[str, str] | None = None,
         stdout: IO[bytes] | None = None, stderr: IO[str] | None = None,
         log_format: str = "console", quiet: bool = False) -> ExitCode:
    """`batchsms tasks`: check the output, resolve the connection as `run` does, list. With
    json logs (`log_format`), the end is a `tasks.finished` event (or `tasks.failed`), not text;
    `quiet`: no count at the end."""
    env = os.environ if env is None else env
    err = stderr or sys.stderr  # the one at call time (as `logs` does), not at import
    check_output("--out", config.out, [("--token-file", config.token_file),
                                       ("--ca-bundle", config.ca_bundle)])
    require_transport_features()
    connection = anyio.run(resolve_connection, config.connection, env)
    ensure_descriptors(1)
    try:
        if config.out is None:
            written = anyio.run(_write, connection, env, config, stdout or sys.stdout.buffer)
        else:
            written = _write_atomically(connection, env, config)
    except ListingFailed as exc:
        code = ExitCode.ABORTED if exc.auth else ExitCode.SOME_FAILED
        said = f"{exc}; no fleet file written" if config.out else str(exc)
        if log_format == "json":  # json logs stay JSON (--log-format)
            log.error("tasks.failed", error=said, exit_code=int(code))
        else:
            print(f"batchsms: {said}", file=err)
        return code
    if log_format == "json":
        log.info("tasks.finished", tasks=written, out=None if config.out is None
                 else str(config.out))
    elif not quiet:
        print(f"{written} tasks", file=err)
    return ExitCode.OK


def _write_atomically(connection: Connection, env: Mapping[str, str],
                      config: TasksConfig) -> int:
    assert config.out is not None
    directory = config.out.resolve().parent
    fd, tmp = tempfile.mkstemp(prefix=f".{config.out.name}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as sink:
            written: int = anyio.run(_write, connection, env, config, sink)
        os.replace(tmp, config.out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return written

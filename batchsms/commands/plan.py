"""`batchsms plan INPUT [run's options]`: what `run` would change, task by task; never writes.

Each line is validated as `run` would, its task read with ShowTask through the engine's
`Sender` (the run's credentials, pace, retries, slow start, auth abort), and compared field by
field (diff.py) with what it would set:

    line 1 ef3b9722-...-0001 (web-01): would change
      speed_limit: 100 -> 200
    line 2 ef3b9722-...-0002 (web-02): already as wanted
    line 3 ef3b9722-...-0003: not comparable (cannot be read back: use_ipv6)
    line 4 ef3b9722-...-0004: would fail: SMS.1801: task 'x' not found (HTTP 404)
    line 5 ef3b9722-...-0005: conflict
      speed_limit: expected 321, found 999
    5 lines: 1 would change, 1 already as wanted, 1 not comparable, 1 would fail, 1 conflict

A line with a readable change "would change" (its unreadable fields are listed too); a line
whose fields are all readable and equal is "already as wanted"; a line with no readable change
but a field ShowTask does not return is "not comparable"; an invalid line, or one whose task
cannot be read (404...), "would fail". A line whose `expect` does not hold is a "conflict":
`run` would skip it (`conflict`) and write nothing, so it changes nothing in the projection
below. The totals name conflicts only when there are some.

Several lines for one task: a later line is compared with the task as the earlier lines would
leave it, so `plan` says what `run --skip-unchanged` would do, line for line, but for tasks seen
again after `PROJECTED_TASKS` others (changes/preview.py says how and why).

`--json`: one object per input line on stdout, in input order: `line`, `task_id`, `ref`,
`verdict`, `changes` (path -> `{"from", "to"}`), `unchanged`, `unreadable`, and `error`
(`{"code", "message", "http_status"}`) only when the line would fail, `errors` (every problem)
for an invalid line, `conflicts` (path -> `{"expected", "found"}`) only for a conflict. The
totals go to stderr.

Progress: every `PROGRESS_EVERY` seconds a `plan.progress` event on stderr (lines planned, of
how many for a plain file, lines/s, ETA), so a long plan piped into a file is not silent;
`--quiet` drops it, `--log-format json` makes it (and every event) JSON.

Exit codes: 0 nothing would fail or conflict; 1 some line would fail (invalid, task not
readable) or conflict (`run` would exit 1 too: the line would be skipped); 2 could not start
(as `run`); 3 aborted (credentials rejected, as `run`).
"""

from __future__ import annotations

import os
import ssl
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import IO

import anyio

from batchsms.changes.preview import PlanEntry, PlanTotals, Verdict
from batchsms.client import Client
from batchsms.commands.config import RunConfig
from batchsms.commands.progress import count_lines
from batchsms.engine.events import log
from batchsms.errors import ExitCode
from batchsms.lines.bodies import Planned, checked_lines
from batchsms.lines.reader import InvalidLine
from batchsms.transport.endpoint import Connection, resolve_connection
from batchsms.transport.signing import Authenticator

PROGRESS_EVERY = 10.0
"""Seconds between `plan.progress` events."""


class _Progress:
    """`plan.progress` at most every `PROGRESS_EVERY` seconds, told as entries come."""

    def __init__(self, source: str, regular: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self._next = self._started + PROGRESS_EVERY
        self._total: int | None = None
        self._counted = False  # the input's lines are counted once, only if a line is due
        self._source = source
        self._regular = regular
        self.done = 0

    def __call__(self) -> None:
        self.done += 1
        now = self._clock()
        if now < self._next:
            return
        self._next = now + PROGRESS_EVERY
        if not self._counted:
            self._total, self._counted = count_lines(self._source, self._regular), True
        total = self._total
        rate = self.done / max(now - self._started, 1e-9)
        eta = round((total - self.done) / rate) if total is not None and total >= self.done \
            else None
        log.info("plan.progress", done=self.done, total=total, lines_per_s=round(rate, 2),
                 eta_s=eta)


async def plan_async(config: RunConfig, items: Iterator[Planned | InvalidLine], url: str,
                     auth: Authenticator | None, tls: ssl.SSLContext | bool,
                     emit: Callable[[PlanEntry], None]) -> str | None:
    """Plan `items` (`config.input` checked) against the endpoint at `url`; `emit` each entry
    in input order. Returns why reading stopped early (credentials rejected), or None."""
    return await _plan(config, items, Connection(url, auth, tls), {}, emit)


async def _plan(config: RunConfig, items: Iterator[Planned | InvalidLine],
                connection: Connection, env: Mapping[str, str],
                emit: Callable[[PlanEntry], None]) -> str | None:
    async with Client._for_command(connection, config.engine, env) as client:
        reader = client._reader()
        async for entry in client._plan_lines(items, reader):
            emit(entry)
        return reader.stopped


def run_plan(config: RunConfig, *, as_json: bool, env: Mapping[str, str] | None = None,
             stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> ExitCode:
    """`batchsms plan`: print the plan; the exit code (module docstring)."""
    env = os.environ if env is None else env
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    connection = anyio.run(resolve_connection, config.connection, env)
    items = checked_lines(config.input, config.defaults, default_op=config.op,
                          rules=config.rules)  # unreadable input: exit 2
    totals = PlanTotals()
    progress = _Progress(config.input, items.regular)

    def emit(entry: PlanEntry) -> None:
        totals.by_verdict[entry.verdict] += 1
        progress()
        out.write(entry.to_json().decode() if as_json else "\n".join(entry.text()) + "\n")

    stopped = anyio.run(_plan, config, items, connection, env, emit)
    out.flush()
    print(totals.line(), file=err if as_json else out)
    if stopped is not None:
        print(f"batchsms: plan stopped: {stopped}", file=err)
        return ExitCode.ABORTED
    failing = totals.by_verdict[Verdict.FAIL] + totals.by_verdict[Verdict.CONFLICT]
    return ExitCode.SOME_FAILED if failing else ExitCode.OK

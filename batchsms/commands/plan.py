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
leave it, as `run` sends them in file order: each earlier line's readable fields written into
the view where ShowTask shows them (`diff.applied`, the same `readable.READABLE` mapping the
comparison reads: `enterprise_project` is seen as `enterprise_project_id`). So `plan` says what
`run --skip-unchanged` would do, line for line. The projected views of the last
`PROJECTED_TASKS` tasks are kept (plus those of the batch being judged); a task seen again
after that is read again, and judged as it is, not as its earlier lines would leave it (the
one place `plan` and `run --skip-unchanged` can differ: memory stays flat).

`--json`: one object per input line on stdout, in input order: `line`, `task_id`, `ref`,
`verdict`, `changes` (path -> `{"from", "to"}`), `unchanged`, `unreadable`, and `error`
(`{"code", "message", "http_status"}`) only when the line would fail, `errors` (every problem)
for an invalid line, `conflicts` (path -> `{"expected", "found"}`) only for a conflict. The
totals go to stderr.

Exit codes: 0 nothing would fail or conflict; 1 some line would fail (invalid, task not
readable) or conflict (`run` would exit 1 too: the line would be skipped); 2 could not start
(as `run`); 3 aborted (credentials rejected, as `run`).
"""

from __future__ import annotations

import enum
import os
import ssl
import sys
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import anyio
import orjson

from batchsms.client import SmsClient
from batchsms.config import RunConfig
from batchsms.connection import endpoint_url, resolve_endpoint, run_credentials, tls_context
from batchsms.diff import Diff, applied, diff
from batchsms.engine.attempt import Request, Sender
from batchsms.engine.wiring import EngineSettings, build_sender
from batchsms.exitcodes import ExitCode
from batchsms.expect import conflicts, conflicts_json
from batchsms.expect import describe as describe_conflicts
from batchsms.look import Read, read_of
from batchsms.plan import Planned, checked_lines
from batchsms.records import InvalidLine
from batchsms.schema import Problem
from batchsms.signing import Authenticator

PROJECTED_TASKS = 4096


class Verdict(enum.StrEnum):
    CHANGE = "would change"
    AS_WANTED = "already as wanted"
    NOT_COMPARABLE = "not comparable"
    FAIL = "would fail"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class PlanEntry:
    """One input line's plan."""

    line: int
    task_id: str | None
    ref: str | None
    diff: Diff | None = None
    read: Read | None = None  # the failed read, when the task could not be read
    problems: tuple[Problem, ...] = ()
    conflict: Diff | None = None  # where the task differs from the line's `expect`

    @property
    def verdict(self) -> Verdict:
        if self.conflict is not None:
            return Verdict.CONFLICT
        if self.diff is None:
            return Verdict.FAIL
        if self.diff.changes:
            return Verdict.CHANGE
        return Verdict.NOT_COMPARABLE if self.diff.unreadable else Verdict.AS_WANTED

    def error(self) -> dict[str, Any] | None:
        if self.problems:
            first = self.problems[0]
            return {"code": "validation", "message": f"{first.path}: {first.message}",
                    "http_status": None}
        if self.read is not None:
            return {"code": self.read.error_code, "message": self.read.error_msg,
                    "http_status": self.read.http_status}
        return None

    def to_dict(self) -> dict[str, Any]:
        """The object `plan --json` prints for this line (module docstring)."""
        d = self.diff or Diff()
        data: dict[str, Any] = {
            "line": self.line, "task_id": self.task_id, "ref": self.ref,
            "verdict": self.verdict.value, "changes": d.changes_json(),
            "unchanged": list(d.unchanged), "unreadable": list(d.unreadable)}
        error = self.error()
        if error is not None:
            data["error"] = error
        if self.problems:
            data["errors"] = [p.as_dict() for p in self.problems]
        if self.conflict is not None:
            data["conflicts"] = conflicts_json(self.conflict)
        return data

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict()) + b"\n"

    def text(self) -> Iterator[str]:
        ref = f" ({self.ref})" if self.ref else ""
        head = f"line {self.line} {self.task_id or '?'}{ref}: {self.verdict.value}"
        if self.conflict is not None:
            yield head
            yield from (f"  {text}" for text in describe_conflicts(self.conflict))
            return
        d = self.diff
        if d is None:
            if self.problems:
                yield f"{head}: invalid"
                yield from (f"  {p.path}: {p.message}" for p in self.problems)
            else:
                assert self.read is not None
                yield f"{head}: {self.read.describe_error()}"
            return
        if d.changes or not d.unreadable:
            yield head
        else:
            yield f"{head} (cannot be read back: {', '.join(d.unreadable)})"
            return
        yield from (f"  {c.describe()}" for c in d.changes)
        if d.unreadable:
            yield f"  cannot be read back: {', '.join(d.unreadable)}"


class Reader(Protocol):
    """Reads one task (ShowTask); `stopped` says why reading gave up, once it has."""

    @property
    def stopped(self) -> str | None: ...

    async def read(self, task_id: str) -> Read: ...


@dataclass
class PlanTotals:
    by_verdict: Counter[Verdict] = field(default_factory=Counter)

    def line(self) -> str:
        total = self.by_verdict.total()
        return f"{total} lines: " + ", ".join(
            f"{self.by_verdict[v]} {v.value}" for v in Verdict
            if v is not Verdict.CONFLICT or self.by_verdict[v])


async def plan_entries(items: Iterator[Planned | InvalidLine]
                       | AsyncIterator[Planned | InvalidLine], reader: Reader, *,
                       concurrency: int,
                       keep: int | None = None) -> AsyncIterator[PlanEntry]:
    """Every line's plan, in input order; reads run `concurrency` at a time.

    Lines are taken a batch at a time. A task of the batch is taken out of the cache of
    projections (or read, when the cache does not have it) before any line of the batch is
    judged, and put back after the last one: the cache can only drop tasks no pending line
    needs. It holds at most `keep` (`PROJECTED_TASKS`) tasks between batches, the most recently
    used.
    """
    keep = PROJECTED_TASKS if keep is None else keep
    projected: OrderedDict[str, dict[str, Any] | Read] = OrderedDict()
    while True:
        window = await _window(items, concurrency * 2)
        if not window:
            return
        needed = {item.task_id for item in window if isinstance(item, Planned)}
        states: dict[str, dict[str, Any] | Read] = {
            task_id: projected.pop(task_id) for task_id in needed if task_id in projected}
        states.update(await _read_all(reader, needed - states.keys(), concurrency))
        for item in window:
            if isinstance(item, InvalidLine):
                yield PlanEntry(item.number, item.task_id, item.ref, problems=item.errors)
                continue
            state = states[item.task_id]
            if isinstance(state, Read):
                if not state.ok:
                    yield PlanEntry(item.number, item.task_id, item.ref, read=state)
                    continue
                state = state.view or {}
                states[item.task_id] = state
            body = orjson.loads(item.body)
            found = diff(body, state)
            if item.expect is not None and not found.as_wanted:
                # `run` writes nothing when it does not hold (and a task already as wanted
                # needs no write, whatever its expect)
                differs = conflicts(orjson.loads(item.expect), state)
                if differs.changes:  # the projection stays as it is
                    yield PlanEntry(item.number, item.task_id, item.ref, conflict=differs)
                    continue
            yield PlanEntry(item.number, item.task_id, item.ref, diff=found)
            states[item.task_id] = applied(state, body)
        for task_id in sorted(states, key=_last_use(window)):
            projected[task_id] = states[task_id]
        while len(projected) > keep:
            projected.popitem(last=False)


async def _window(items: Iterator[Planned | InvalidLine] | AsyncIterator[Planned | InvalidLine],
                  size: int) -> list[Planned | InvalidLine]:
    """The next `size` items (fewer at the end) of a file's lines or of the Python API's."""
    if isinstance(items, Iterator):
        return [item for _, item in zip(range(size), items, strict=False)]
    window: list[Planned | InvalidLine] = []
    while len(window) < size:
        try:
            window.append(await anext(items))
        except StopAsyncIteration:
            break
    return window


def _last_use(window: list[Planned | InvalidLine]) -> Callable[[str], int]:
    """Sort key: where a task's last line in `window` is (so the cache keeps file order)."""
    last = {item.task_id: i for i, item in enumerate(window) if isinstance(item, Planned)}
    return last.__getitem__


async def _read_all(reader: Reader, task_ids: set[str], concurrency: int) -> dict[str, Read]:
    found: dict[str, Read] = {}
    limit = anyio.CapacityLimiter(concurrency)

    async def one(task_id: str) -> None:
        async with limit:
            found[task_id] = await reader.read(task_id)

    async with anyio.create_task_group() as tg:
        for task_id in sorted(task_ids):
            tg.start_soon(one, task_id)
    return found


class SenderReader:
    """ShowTask through the engine's `Sender`: the run's pace, retries, outage guard, slow
    start and auth abort."""

    def __init__(self, sender: Sender) -> None:
        self._sender = sender

    @property
    def stopped(self) -> str | None:
        return self._sender.stop.message

    async def read(self, task_id: str) -> Read:
        result = await self._sender.send(Request.get_task(task_id), {"task_id": task_id})
        return read_of(result)


async def plan_async(config: RunConfig, items: Iterator[Planned | InvalidLine], url: str,
                     auth: Authenticator | None, tls: ssl.SSLContext | bool,
                     emit: Callable[[PlanEntry], None]) -> str | None:
    """Plan `items` (`config.input` checked) against the endpoint at `url`; `emit` each entry
    in input order. Returns why reading stopped early (credentials rejected), or None."""
    client = SmsClient(url, auth, concurrency=config.concurrency, timeout=config.timeout,
                       tls=tls)
    async with client:
        reader = SenderReader(build_sender(client, EngineSettings(
            concurrency=config.concurrency, rate=config.rate, burst=config.burst,
            max_attempts=config.max_attempts, max_outage=config.max_outage)))
        async for entry in plan_entries(items, reader, concurrency=config.concurrency):
            emit(entry)
        return reader.stopped


def run_plan(config: RunConfig, *, as_json: bool, env: Mapping[str, str] | None = None,
             stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> ExitCode:
    """`batchsms plan`: print the plan; the exit code (module docstring)."""
    env = os.environ if env is None else env
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    endpoint = None if config.simulate else resolve_endpoint(config.endpoint, config.region, env)
    auth = run_credentials(env, config.token_file, simulate=config.simulate)
    tls = tls_context(config.ca_bundle)
    items = checked_lines(config.input, config.defaults)  # unreadable input: exit 2
    totals = PlanTotals()

    def emit(entry: PlanEntry) -> None:
        totals.by_verdict[entry.verdict] += 1
        out.write(entry.to_json().decode() if as_json else "\n".join(entry.text()) + "\n")

    async def main() -> str | None:
        async with endpoint_url(env, endpoint) as url:
            return await plan_async(config, items, url, auth, tls, emit)

    stopped = anyio.run(main)
    out.flush()
    print(totals.line(), file=err if as_json else out)
    if stopped is not None:
        print(f"batchsms: plan stopped: {stopped}", file=err)
        return ExitCode.ABORTED
    failing = totals.by_verdict[Verdict.FAIL] + totals.by_verdict[Verdict.CONFLICT]
    return ExitCode.SOME_FAILED if failing else ExitCode.OK

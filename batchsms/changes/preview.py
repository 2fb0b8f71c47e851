"""Plan: what `run` would change, task by task, as `PlanEntry`s in input order; never writes.

Each line is judged against its task as read with ShowTask through the engine's `Sender` (the
run's credentials, pace, retries, slow start, auth abort), compared field by field
(`lines.diff`). Several lines for one task: a later line is compared with the task as the
earlier lines would leave it (`diff.applied`, the `readable.READABLE` mapping the comparison
reads), as `run` sends them in file order; so `plan` says what `run --skip-unchanged` would do,
line for line. The projected views of the last `PROJECTED_TASKS` tasks are kept (plus those of
the batch being judged); a task seen again after that is read again, and judged as it is (the one
place `plan` and `run --skip-unchanged` can differ: memory stays flat).

A speed-limit line (docs/reference.md §11) is judged against the task's rules as read with
ShowsSpeedLimits (`Reader.read_rules`), kept apart from the task's fields (its own projection
key): the rule list is one field, ``changes.speed_limit = {"from": [...], "to": [...]}``, compared
order-free and numbers by value (readback.rules_diff); a later line for the same task replaces
the whole list in the projection.

Used by `batchsms plan` (commands/plan.py) and the library's `Client.plan`.
"""


from __future__ import annotations

import enum
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import orjson

from batchsms.changes.readback import Read, read_of, read_rules_of, rules_diff
from batchsms.engine.sender import Request, Sender
from batchsms.lines.bodies import Planned
from batchsms.lines.diff import Diff, applied, diff
from batchsms.lines.expect import conflicts, conflicts_json
from batchsms.lines.expect import describe as describe_conflicts
from batchsms.lines.reader import SPEED_LIMIT, InvalidLine
from batchsms.lines.schema import Problem

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

    async def read_rules(self, task_id: str) -> Read: ...


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
        needed = {_key(item) for item in window if isinstance(item, Planned)}
        states: dict[str, dict[str, Any] | Read] = {
            task_id: projected.pop(task_id) for task_id in needed if task_id in projected}
        states.update(await _read_all(reader, needed - states.keys(), concurrency))
        for item in window:
            if isinstance(item, InvalidLine):
                yield PlanEntry(item.number, item.task_id, item.ref, problems=item.errors)
                continue
            key = _key(item)
            state = states[key]
            if isinstance(state, Read):
                if not state.ok:
                    yield PlanEntry(item.number, item.task_id, item.ref, read=state)
                    continue
                state = state.view or {}
                states[key] = state
            body = orjson.loads(item.body)
            rules = item.op == SPEED_LIMIT
            found = rules_diff(state["speed_limit"], body["speed_limit"]) if rules \
                else diff(body, state)
            if item.expect is not None and not found.as_wanted:
                # `run` writes nothing when it does not hold (and a task already as wanted
                # needs no write, whatever its expect)
                expect = orjson.loads(item.expect)
                differs = rules_diff(state["speed_limit"], expect["speed_limit"]) if rules \
                    else conflicts(expect, state)
                if differs.changes:  # the projection stays as it is
                    yield PlanEntry(item.number, item.task_id, item.ref, conflict=differs)
                    continue
            yield PlanEntry(item.number, item.task_id, item.ref, diff=found)
            states[key] = body if rules else applied(state, body)
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
    last = {_key(item): i for i, item in enumerate(window) if isinstance(item, Planned)}
    return last.__getitem__


_RULES_KEY = "\0" + SPEED_LIMIT


def _key(item: Planned) -> str:
    """What a line is judged against: its task's fields, or its task's rules (speed-limit)."""
    return item.task_id + _RULES_KEY if item.op == SPEED_LIMIT else item.task_id


async def _read_all(reader: Reader, keys: set[str], concurrency: int) -> dict[str, Read]:
    found: dict[str, Read] = {}
    limit = anyio.CapacityLimiter(concurrency)

    async def one(key: str) -> None:
        async with limit:
            if key.endswith(_RULES_KEY):
                found[key] = await reader.read_rules(key[:-len(_RULES_KEY)])
            else:
                found[key] = await reader.read(key)

    async with anyio.create_task_group() as tg:
        for key in sorted(keys):
            tg.start_soon(one, key)
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

    async def read_rules(self, task_id: str) -> Read:
        """ShowsSpeedLimits: the task's rules as ``{"speed_limit": [...]}``."""
        result = await self._sender.send(Request.get_speed(task_id), {"task_id": task_id})
        return read_rules_of(result)

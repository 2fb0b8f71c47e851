"""`run` with a look before and after each write: `--skip-unchanged`, `--undo-file`, `--verify`,
and a line's `expect`.

A line handler for the engine's pipeline (`engine.pipeline.LineHandler`). Its reads (ShowTask)
go through the same `Sender` as the write, so they share the pace (`--rate` counts them),
retries, outage guard, admission and credentials; and they happen while the line holds its
task (per-task order), so what is read before a write is what that write changes.

    GET before  (--skip-unchanged or --undo-file, or the line has `expect`)
      the task cannot be read      -> the line fails as the read did (no write)
      not as the line's `expect`   -> skipped, `conflict`, each difference in `error_msg`
                                      (no write; not done: the conflict stays to be looked at);
                                      but a task already as the line wants is `unchanged`
                                      (nothing would be written: the undo of a write that
                                      never reached the service)
      already as wanted, --skip-unchanged -> skipped, `unchanged` (no write; done, like a success)
      --undo-file                  -> `previous`: the current values of the fields it sets,
                                      appended to the side log with what the write sets
                                      (`wrote`), before the write (undo_log.py)
    PUT         -> the outcome of a plain run, with `previous`
    GET after   (--verify, once the write succeeded)
      differs                      -> failed, `verify_mismatch`, the difference in `error_msg`
      cannot be read back          -> failed as the read did, `maybe_applied` (the write took)

A speed-limit line (docs/reference.md §11) goes the same way (`_Op`: how a line of each operation
is read, compared and written): its reads are ShowsSpeedLimits (`GET .../speed-limit`), its write
UpdateSpeed (`POST`), and the rule list is compared whole (readback.rules_diff: order-free,
numbers by value) for `expect`, `--skip-unchanged` and `--verify`; `previous` is
``{"speed_limit": [...]}``, the whole list.

`line_handler` picks the handler of a run: with no check asked for, a line without `expect`
goes straight to the plain PUT (`put_line`), at no cost; a line with one, here.

Only lines that are already as wanted *and* set nothing unreadable are skipped: a line that
sets a field ShowTask does not return may change something, so it is sent.

`attempts` counts the line's writes (the PUT's tries), `reads` its reads (ShowTask before the
write, and after it with --verify), so a verified line is "1 attempt, 2 reads", not "3 attempts";
`http_status` and `request_id` are those of the last answer, `elapsed_ms` runs from the first
request of the line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from batchsms.changes.readback import (
    BAD_RULES,
    read_of,
    read_rules_of,
    rules_diff,
    verify_message,
)
from batchsms.changes.undo_log import PreviousLog
from batchsms.engine.pipeline import LineHandler, put_line
from batchsms.engine.sender import Request, Result, Sender
from batchsms.engine.stopping import StopReason
from batchsms.journal.outcomes import Outcome, Status, utc_now
from batchsms.journal.records import sent_outcome
from batchsms.lines.bodies import Planned
from batchsms.lines.diff import Diff, diff, previous, readable_part
from batchsms.lines.expect import CONFLICT, conflict_message
from batchsms.lines.reader import SPEED_LIMIT

UNCHANGED_MSG_MAX = 512


@dataclass(frozen=True, slots=True)
class WriteChecks:
    """Which looks around the write a run asked for."""

    skip_unchanged: bool = False
    capture: bool = False  # --undo-file: keep `previous` in each outcome
    verify: bool = False

    @property
    def any(self) -> bool:
        return self.skip_unchanged or self.capture or self.verify

    @property
    def read_before(self) -> bool:
        return self.skip_unchanged or self.capture


def _view(result: Result) -> dict[str, Any] | None:
    return read_of(result).view


def _elapsed(first: float | None, now: float) -> int | None:
    return None if first is None else int((now - first) * 1000)


SHOW_TASK_BAD = "ShowTask answered something that is not a JSON object"


def _read_failed(run_id: str, item: Planned, read: Result, now: float, when: str,
                 bad: str = SHOW_TASK_BAD) -> Outcome:
    """The outcome of a line whose read went wrong, as `sent_outcome` words a failed request;
    a 2xx answer that is not what was asked for is `bad_answer`, `bad` its message."""
    outcome = sent_outcome(run_id, item, read, now)._replace(attempts=0, reads=read.attempts)
    if outcome.status is Status.SUCCEEDED:  # a 2xx answer that is not a task view
        return outcome._replace(status=Status.FAILED, error_code="bad_answer",
                                error_msg=f"{when}: {bad}", maybe_applied=False)
    return outcome._replace(error_msg=f"{when}: {outcome.error_msg}", maybe_applied=False)


@dataclass(frozen=True, slots=True)
class Capture:
    """Where `--undo-file` keeps, before each write, what the task had and what the write sets
    (undo_log.py; undo.py makes the way back from it)."""

    log: PreviousLog


def _not_written(run_id: str, item: Planned, before: Result, now: float, code: str,
                 msg: str) -> Outcome:
    """A line that ends after its read, without a write: `skipped` with `code`."""
    return Outcome(run_id, item.number, item.task_id, item.ref, Status.SKIPPED,
                   http_status=before.http_status, reads=before.attempts, error_code=code,
                   error_msg=msg, request_id=before.request_id, body_sha256=item.sha256,
                   elapsed_ms=_elapsed(before.first_sent, now), finished_at=utc_now(),
                   op=item.op)


class _Op(NamedTuple):
    """How a line of one operation is read, compared and written (`checked_put`)."""

    read: Callable[[str], Request]  # the read of its task: ShowTask, ShowsSpeedLimits
    view: Callable[[Result], dict[str, Any] | None]  # what a read gave, None: it failed
    bad: str  # `error_msg` of a 2xx read that is not what was asked for
    diff: Callable[[dict[str, Any], dict[str, Any]], Diff]  # (body or expect, view)
    previous: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]  # (body, view)
    wrote: Callable[[dict[str, Any]], dict[str, Any]]  # what the task shows after the write


def _rules_view(result: Result) -> dict[str, Any] | None:
    return read_rules_of(result).view


def _rules_diff(body: dict[str, Any], view: dict[str, Any]) -> Diff:
    return rules_diff(view["speed_limit"], body["speed_limit"])


_UPDATE = _Op(Request.get_task, _view, SHOW_TASK_BAD, diff, previous, readable_part)
_SPEED = _Op(Request.get_speed, _rules_view, BAD_RULES, _rules_diff,
             lambda body, view: {"speed_limit": view["speed_limit"]}, lambda body: body)


def checked_put(run_id: str, checks: WriteChecks, capture: Capture | None = None) -> LineHandler:
    """The handler of `run` with `checks`: read, maybe skip, capture, write, maybe verify.
    `capture` is required when `checks.capture`."""
    assert capture is not None or not checks.capture

    async def handle(item: Planned, sender: Sender) -> Outcome:
        about = {"line": item.number, "task_id": item.task_id}
        op = _SPEED if item.op == SPEED_LIMIT else _UPDATE
        body = orjson.loads(item.body)
        first: float | None = None
        read_attempts = 0
        prior: dict[str, Any] | None = None
        if checks.read_before or item.expect is not None:
            before = await sender.send(op.read(item.task_id), about)
            view = op.view(before)
            if view is None:
                return _read_failed(run_id, item, before, sender.clock(),
                                    "reading the task before the write", op.bad)
            first, read_attempts = before.first_sent, before.attempts
            found = op.diff(body, view)
            if item.expect is not None:
                differs = op.diff(orjson.loads(item.expect), view)
                if differs.changes:
                    if found.as_wanted:  # nothing to write: no one's change is at stake
                        return _not_written(
                            run_id, item, before, sender.clock(), "unchanged",
                            ("already as wanted (so `expect` is not in the way): "
                             + ", ".join(found.unchanged))[:UNCHANGED_MSG_MAX])
                    return _not_written(run_id, item, before, sender.clock(), CONFLICT,
                                        conflict_message(differs))
            if checks.skip_unchanged and found.as_wanted:
                text = "already as wanted: " + ", ".join(found.unchanged)
                return _not_written(run_id, item, before, sender.clock(), "unchanged",
                                    text[:UNCHANGED_MSG_MAX])
            if capture is not None:
                prior = op.previous(body, view)
                if not capture.log.append(run_id, item, prior, op.wrote(body)):
                    why = f"the undo values could not be written: {capture.log.error}"
                    sender.stop.trigger(StopReason.BROKEN, why)
                    return _not_written(run_id, item, before, sender.clock(),
                                        StopReason.BROKEN.value, f"not sent: {why}")
        put = await sender.send(Request.write(item.op, item.task_id, item.body), about)
        first = first if first is not None else put.first_sent
        outcome = sent_outcome(run_id, item, put, sender.clock())._replace(
            previous=prior, reads=read_attempts,
            elapsed_ms=_elapsed(first, sender.clock()))
        if not (checks.verify and put.succeeded):
            return outcome
        after = await sender.send(op.read(item.task_id), about)
        now = sender.clock()
        reads = outcome.reads + after.attempts
        view = op.view(after)
        if view is None:
            failed = _read_failed(run_id, item, after, now,
                                  "written, but reading it back failed", op.bad)
            return failed._replace(attempts=outcome.attempts, reads=reads, previous=prior,
                                   elapsed_ms=_elapsed(first, now), maybe_applied=True,
                                   status=Status.FAILED,
                                   # the last answer received, if the read got none
                                   # (docs/reference.md §10)
                                   http_status=failed.http_status or outcome.http_status,
                                   request_id=failed.request_id or outcome.request_id)
        found = op.diff(body, view)
        checked = outcome._replace(reads=reads, http_status=after.http_status,
                                   request_id=after.request_id, elapsed_ms=_elapsed(first, now))
        if not found.changes:
            return checked
        return checked._replace(status=Status.FAILED, error_code="verify_mismatch",
                                error_msg=verify_message(found))

    return handle


def line_handler(run_id: str, checks: WriteChecks, capture: Capture | None = None,
                 ) -> LineHandler:
    """The handler of a `run`: `checked_put` when a check is asked for; otherwise the plain PUT
    for a line without `expect`, and `checked_put` (a read, then the write) for one with it."""
    checked = checked_put(run_id, checks, capture)
    if checks.any:
        return checked
    plain = put_line(run_id)

    def route(item: Planned, sender: Sender) -> Awaitable[Outcome]:
        # Not a coroutine itself: it hands back the chosen handler's, so a plain line pays one
        # attribute test and no extra frame.
        return plain(item, sender) if item.expect is None else checked(item, sender)

    return route

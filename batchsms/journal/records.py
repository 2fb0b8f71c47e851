"""Outcome records made from what happened to a line: the one place a line's end is worded.

    invalid_outcome   a line that broke a rule of docs/reference.md §1-2 (not sent)
    resumed_outcome   a line an earlier run did (`--resume`: skipped, `already_succeeded`)
    not_sent_outcome  a line read after the run stopped (skipped, the stop's reason)
    sent_outcome      a line whose request ended: from the engine's result (`SendEnd`)

The engine hands over what it found (engine/sender.py `Result`, read here through `SendEnd`,
so that this layer needs nothing of the engine's); the pipeline and the line handlers
(changes/guarded_put.py) write what these return. `sent_outcome` is on the hot path: a success
is made in one step.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol

from batchsms.journal.outcomes import Outcome, Status, utc_now
from batchsms.lines.bodies import Planned
from batchsms.lines.reader import InvalidLine

if TYPE_CHECKING:  # the HTTP stack is not imported for `validate`, which makes records too
    from batchsms.transport.client import Reply


class SendEnd(Protocol):
    """How a line's request ended, as its record needs it (engine/sender.py `Result`)."""

    @property
    def succeeded(self) -> bool: ...

    @property
    def reply(self) -> Reply | None: ...  # the last answer, or None when none came

    @property
    def attempts(self) -> int: ...

    @property
    def error_code(self) -> str | None: ...

    @property
    def error_msg(self) -> str | None: ...

    @property
    def maybe_applied(self) -> bool: ...

    @property
    def stopped(self) -> enum.StrEnum | None: ...  # why the run stopped meanwhile, if it did

    @property
    def stop_message(self) -> str | None: ...

    @property
    def first_sent(self) -> float | None: ...  # the sender's clock


def invalid_outcome(run_id: str, item: InvalidLine) -> Outcome:
    """The record of a line that was not sent: every problem, the first one in `error_msg`."""
    first = item.errors[0]
    more = f" (and {len(item.errors) - 1} more)" if len(item.errors) > 1 else ""
    return Outcome(run_id, item.number, item.task_id, item.ref, Status.INVALID,
                   error_code="validation", error_msg=f"{first.path}: {first.message}{more}",
                   errors=item.errors, finished_at=utc_now(), op=item.op)


def resumed_outcome(run_id: str, item: Planned) -> Outcome:
    """A line `--resume` finds done in an earlier run: skipped, not sent again."""
    return Outcome(run_id, item.number, item.task_id, item.ref, Status.SKIPPED,
                   error_code="already_succeeded", error_msg="done in an earlier run (--resume)",
                   body_sha256=item.sha256, finished_at=utc_now(), op=item.op)


def not_sent_outcome(run_id: str, item: Planned, reason: enum.StrEnum, message: str) -> Outcome:
    """A line read after the run stopped for `reason` (its value is the `error_code`)."""
    return Outcome(run_id, item.number, item.task_id, item.ref, Status.SKIPPED,
                   error_code=reason.value, error_msg=f"not sent: {message}",
                   body_sha256=item.sha256, finished_at=utc_now(), op=item.op)


def sent_outcome(run_id: str, item: Planned, result: SendEnd, now: float) -> Outcome:
    """The outcome of a line whose request ended as `result` (`now`: the sender's clock)."""
    elapsed = None if result.first_sent is None else int((now - result.first_sent) * 1000)
    reply = result.reply
    if result.succeeded:
        assert reply is not None  # a success is an answer
        return Outcome(run_id, item.number, item.task_id, item.ref, Status.SUCCEEDED,
                       http_status=reply.status, attempts=result.attempts,
                       request_id=reply.request_id, body_sha256=item.sha256,
                       elapsed_ms=elapsed, finished_at=utc_now(), op=item.op)
    code: str | None
    msg: str | None
    if result.stopped is not None and result.attempts == 0 and not result.maybe_applied:
        status, code = Status.SKIPPED, result.stopped.value
        msg = f"not sent: {result.stop_message}"
    elif result.stopped is not None:
        status, code = Status.FAILED, result.stopped.value
        msg = (f"stopped after {result.attempts} attempt(s) ({result.stop_message}); "
               f"last: {result.error_msg}")
    else:
        status, code, msg = Status.FAILED, result.error_code, result.error_msg
    return Outcome(run_id, item.number, item.task_id, item.ref, status,
                   http_status=None if reply is None else reply.status,
                   attempts=result.attempts, error_code=code, error_msg=msg,
                   request_id=None if reply is None else reply.request_id,
                   body_sha256=item.sha256,
                   elapsed_ms=elapsed, finished_at=utc_now(),
                   maybe_applied=result.maybe_applied, op=item.op)

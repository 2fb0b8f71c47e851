"""Reading a task around a write: a ShowTask answer -> a view, and what a view says of a line.

`plan` reads before it would write, `run --skip-unchanged` and `--undo-file` read before each
write, `--verify` reads after it. All of them get a `Read` per task (the view, or why there is
none, with the same error fields an outcome has) and compare it with the line (diff.py).

A ShowTask answer is untrusted like every answer: it is a view only if it parses as a JSON
object; anything else is a failed read (`error_code` `bad_answer`), never a task with no fields.

A speed-limit line (docs/reference.md §11) reads the task's rules instead (ShowsSpeedLimits,
`GET .../speed-limit`): `read_rules_of` gives a `Read` whose view is ``{"speed_limit": [...]}``
(speed_rules.rules_of_answer), or `bad_answer` when the answer is not that shape (never taken for
"no rules").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchsms.engine.sender import Result
from batchsms.lines.diff import Change, Diff, show
from batchsms.lines.speed_rules import rules_change, rules_of_answer
from batchsms.transport.client import Reply

VERIFY_MSG_MAX = 1024  # characters of `error_msg` a verify mismatch spends on the difference


@dataclass(frozen=True, slots=True)
class Read:
    """What reading one task gave: its view, or the error fields of the last answer."""

    view: dict[str, Any] | None
    attempts: int = 0
    http_status: int | None = None
    request_id: str | None = None
    error_code: str | None = None
    error_msg: str | None = None

    @property
    def ok(self) -> bool:
        return self.view is not None

    def describe_error(self) -> str:
        status = f" (HTTP {self.http_status})" if self.http_status is not None else ""
        return f"{self.error_code}: {self.error_msg}{status}"


def parse_view(reply: Reply) -> dict[str, Any] | None:
    """The ShowTask view in `reply` (known secrets cut out: `Reply.json`), or None when it is
    not a JSON object (or was too large to be read)."""
    try:
        data = reply.json()
    except ValueError:  # orjson's JSONDecodeError, AnswerTooLarge
        return None
    return data if isinstance(data, dict) else None


def read_of(result: Result) -> Read:
    """What a ShowTask request that ended as `result` says of the task."""
    if result.succeeded and result.reply is not None:
        view = parse_view(result.reply)
        if view is not None:
            return Read(view, result.attempts, result.http_status, result.request_id)
        return Read(None, result.attempts, result.http_status, result.request_id, "bad_answer",
                    "ShowTask answered something that is not a JSON object")
    if result.stopped is not None:
        return Read(None, result.attempts, result.http_status, result.request_id,
                    result.stopped.value, result.stop_message)
    return Read(None, result.attempts, result.http_status, result.request_id,
                result.error_code, result.error_msg)


BAD_RULES = ('ShowsSpeedLimits answered something that is not {"speed_limit": '
             '[object, ...]}')


def read_rules_of(result: Result) -> Read:
    """What a ShowsSpeedLimits request that ended as `result` says of the task's rules: a
    `Read` whose view is ``{"speed_limit": rules}``, or why there is none."""
    read = read_of(result)
    if read.view is None:
        if read.error_code == "bad_answer":
            return Read(None, read.attempts, read.http_status, read.request_id, "bad_answer",
                        BAD_RULES)
        return read
    rules = rules_of_answer(read.view)
    if rules is None:
        return Read(None, read.attempts, read.http_status, read.request_id, "bad_answer",
                    BAD_RULES)
    return Read({"speed_limit": rules}, read.attempts, read.http_status, read.request_id)


def rules_diff(current: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> Diff:
    """A rule list against the task's as a `Diff` of one field, ``speed_limit``, shown whole:
    one change from the current list to the wanted one, or unchanged (speed_rules.same_rules:
    order-free, numbers by value). `expect` conflicts use it too (`wanted`: the expected list).
    """
    if rules_change(current, wanted) is None:
        return Diff(unchanged=("speed_limit",))
    return Diff(changes=(Change("speed_limit", current, wanted),))


def verify_message(found: Diff) -> str:
    """`error_msg` of a `verify_mismatch`: what the task shows where the write asked otherwise."""
    parts = [f"{c.path}: sent {show(c.wanted)}, read back {show(c.current)}"
             for c in found.changes]
    text = "read back after the write differs: " + "; ".join(parts)
    if len(text) > VERIFY_MSG_MAX:
        text = text[:VERIFY_MSG_MAX - 3] + "..."
    return text

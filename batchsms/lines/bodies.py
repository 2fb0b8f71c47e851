"""Planning: a read `Line` -> the exact bytes to send (`Planned`), or an `InvalidLine`.

Bodies are layered `--patch`, then `--set`, then the line's own `body` (the most specific wins;
objects merge key by key, anything else is replaced), validated against the schema, and
serialised once as canonical JSON: sorted keys, no whitespace, UTF-8, nulls dropped. Those bytes
are what is hashed (`body_sha256`), signed and sent, so the same update always has the same hash.

A line's `expect` (expect.py) is checked here too, and kept as canonical JSON beside the body;
it is not part of the hash (a line is its task and its body), and `--set`/`--patch` do not
apply to it. A line with problems in both has all of them reported.

A ``"op": "speed-limit"`` line (UpdateSpeed, docs/reference.md §11) is checked here by
speed_rules.py's rules, body and `expect` alike, with every problem reported. `--set`/`--patch`
are PutTaskReq layers and do not apply to it; its default body is `--rules` (`rules`), used when
the line has none. A line without an ``op`` takes the run's (`run --op`, `default_op`). `Planned`
carries the operation (`op`), which the engine's handlers send by.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any, NamedTuple

import orjson

from batchsms.errors import UsageError
from batchsms.lines.expect import check_expect
from batchsms.lines.reader import (
    SPEED_LIMIT,
    UPDATE,
    InvalidLine,
    Line,
    is_regular_input,
    open_input,
    read_lines,
)
from batchsms.lines.schema import Problem, validate
from batchsms.lines.speed_rules import validate_speed_limit


class Planned(NamedTuple):
    """A line ready to send: its canonical body bytes and their SHA-256 (hex), its
    `expect` as canonical bytes (None when the line has none: no read before the write), and
    its operation (`op`: reader.UPDATE or reader.SPEED_LIMIT)."""

    number: int
    task_id: str
    ref: str | None
    body: bytes
    sha256: str
    expect: bytes | None = None
    op: str = UPDATE


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8 without escapes: the bytes that are hashed and sent."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` wins; nested objects merge key by key; arrays and scalars are replaced."""
    out = dict(base)
    for key, value in over.items():
        prior = out.get(key)
        if isinstance(prior, dict) and isinstance(value, dict):
            out[key] = deep_merge(prior, value)
        else:
            out[key] = value
    return out


def parse_set(assignment: str) -> dict[str, Any]:
    """`a.b=VALUE` -> {"a": {"b": value}}; VALUE is JSON when it parses, else a plain string."""
    field_path, sep, raw = assignment.partition("=")
    keys = field_path.split(".")
    if not sep or not all(keys):
        raise UsageError(f"--set {assignment!r}: expected FIELD=VALUE with a dotted FIELD, "
                         "e.g. speed_limit=200 or target_server.flavor=s6.large.2")
    try:
        value: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw
    for key in reversed(keys):
        value = {key: value}
    return dict(value)


def build_defaults(patch: Mapping[str, Any] | None, sets: Iterable[str]) -> dict[str, Any]:
    """The layer under every line's body; rejected at start-up if it could never be valid."""
    defaults: dict[str, Any] = dict(patch or {})
    for assignment in sets:
        defaults = deep_merge(defaults, parse_set(assignment))
    if defaults:
        _, problems = validate(defaults, path="defaults")
        if problems:
            detail = "; ".join(f"{p.path}: {p.message}" for p in problems)
            raise UsageError(f"--patch/--set give an invalid body: {detail}")
    return defaults


class _Verdict(NamedTuple):
    """What checking one body gave: the bytes to send and their hash, or the problems."""

    data: bytes
    sha256: str
    problems: tuple[Problem, ...]


_new_tuple = tuple.__new__
MEMO_SIZE = 4096  # distinct bodies remembered; a fleet-wide change repeats one body


class Planner:
    """Turns lines into Planned values with the run's defaults applied.

    Validation depends on the body alone, so the verdict for a body seen before is reused
    (keyed by its JSON bytes, bounded): a fleet-wide change checks, serialises and hashes its
    one body once, not once per line.
    """

    def __init__(self, defaults: Mapping[str, Any] | None = None, *,
                 default_op: str = UPDATE, rules: Mapping[str, Any] | None = None) -> None:
        self._defaults = dict(defaults or {})
        self._memo: dict[bytes, _Verdict] = {}  # UpdateTask bodies
        self._rules_memo: dict[bytes, _Verdict] = {}  # UpdateSpeed bodies
        self._default_op = default_op
        self._rules = None if rules is None else dict(rules)

    def plan(self, line: Line) -> Planned | InvalidLine:
        """The line's body layered on the defaults, checked, as the bytes to send."""
        number, task_id, ref, line_body, line_expect, op = line
        if op == SPEED_LIMIT or (op is None and self._default_op == SPEED_LIMIT):
            return self._speed_limit(line)
        if line_body is None:
            if not self._defaults:
                return InvalidLine(number, task_id, ref, (Problem(
                    "body", "required: the line has no body and no --set/--patch supplies one"),),
                    UPDATE)
            body: dict[str, Any] = self._defaults
        elif self._defaults:
            body = deep_merge(self._defaults, line_body)
        else:
            body = line_body
        # Self._verdict inlined: one call less is 4% of a small line's path (19 447 against
        # 20 161 instructions a line, bench_validate's small lines under cachegrind).
        try:
            key = orjson.dumps(body)
        except TypeError:  # nested deeper than orjson writes: the walker rejects it anyway
            verdict = _check_update(body)
        else:
            verdict = self._memo.get(key) or self._remember(self._memo, key, _check_update(body))
        if line_expect is not None:
            return self._with_expect(line, verdict, line_expect)
        if verdict.problems:
            return InvalidLine(number, task_id, ref, verdict.problems, UPDATE)
        # Built without the NamedTuple's Python-level __new__ (as its own _make does): 191 ns
        # instead of 423 ns, on a per-line path of ~2.5 µs for small lines (bench_validate).
        return _new_tuple(Planned, (number, task_id, ref, verdict.data, verdict.sha256, None,
                                    UPDATE))

    def _speed_limit(self, line: Line) -> Planned | InvalidLine:
        """A speed-limit line (its own body, else `--rules`) checked by speed_rules.py, its
        body's verdict remembered as an update body's is."""
        if line.body is None and self._rules is not None:
            line = line._replace(body=self._rules)
        data, sha256, expect, problems = check_speed_limit(
            line, lambda body: self._verdict(self._rules_memo, body, _check_rules))
        if problems:
            return InvalidLine(line.number, line.task_id, line.ref, problems, SPEED_LIMIT)
        return Planned(line.number, line.task_id, line.ref, data, sha256, expect, SPEED_LIMIT)

    @staticmethod
    def _with_expect(line: Line, verdict: _Verdict,
                     expect: dict[str, Any]) -> Planned | InvalidLine:
        clean, problems = check_expect(expect)
        if verdict.problems or problems:
            return InvalidLine(line.number, line.task_id, line.ref,
                               verdict.problems + problems, UPDATE)
        return Planned(line.number, line.task_id, line.ref, verdict.data, verdict.sha256,
                       canonical_json(clean), UPDATE)

    @staticmethod
    def _verdict(memo: dict[bytes, _Verdict], body: dict[str, Any],
                 check: Callable[[dict[str, Any]], _Verdict]) -> _Verdict:
        """`check(body)`, or what it gave for the same bytes before (bounded memo)."""
        try:
            key = orjson.dumps(body)
        except TypeError:  # nested deeper than orjson writes: the walker rejects it anyway
            return check(body)
        return memo.get(key) or Planner._remember(memo, key, check(body))

    @staticmethod
    def _remember(memo: dict[bytes, _Verdict], key: bytes, verdict: _Verdict) -> _Verdict:
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        memo[key] = verdict
        return verdict


def _checked(clean: dict[str, Any], problems: list[Problem]) -> _Verdict:
    if problems:
        return _Verdict(b"", "", tuple(problems))
    data = canonical_json(clean)
    return _Verdict(data, hashlib.sha256(data).hexdigest(), ())


def _check_update(body: dict[str, Any]) -> _Verdict:
    """An UpdateTask body (PutTaskReq) checked, as the bytes to send or the problems."""
    return _checked(*validate(body))


def _check_rules(body: dict[str, Any]) -> _Verdict:
    """An UpdateSpeed body checked, as the bytes to send or the problems."""
    return _checked(*validate_speed_limit(body))


def check_speed_limit(line: Line, check_body: Callable[[dict[str, Any]], _Verdict] = _check_rules,
                      ) -> tuple[bytes, str, bytes | None, tuple[Problem, ...]]:
    """A speed-limit line's canonical body bytes, their SHA-256, its canonical `expect` (or
    None), and every problem of body and expect (when there is one, the rest is empty).
    `check_body`: the body's verdict (the planner's remembers them)."""
    problems: tuple[Problem, ...] = ()
    data, sha256 = b"", ""
    if line.body is None:
        problems = (Problem("body", 'required: a speed-limit line carries its body, '
                            '{"speed_limit": [...]}'),)
    else:
        data, sha256, problems = check_body(line.body)
    expect: dict[str, Any] | None = None
    if line.expect is not None:
        expect, found = validate_speed_limit(line.expect, path="expect")
        problems += tuple(found)
    if problems:
        return b"", "", None, problems
    return data, sha256, None if expect is None else canonical_json(expect), ()


class CheckedLines(Iterator[Planned | InvalidLine]):
    """What `checked_lines` returns: its items, and `regular`, whether the input is a regular
    file (`reader.is_regular_input`: found once, when the input was opened). A stream (stdin,
    a FIFO) is read from a thread and its lines are not counted ahead."""

    def __init__(self, items: Iterator[Planned | InvalidLine], *, regular: bool) -> None:
        self._items = items
        self.regular = regular

    def __next__(self) -> Planned | InvalidLine:
        return next(self._items)

    def __iter__(self) -> Iterator[Planned | InvalidLine]:
        # A `for` loop over the items themselves (one shared iterator, so `next()` and `for`
        # still advance the same lines): no Python-level __next__ a line, 23 305 -> 22 705
        # instructions a line of inputs/ (cachegrind, the whole path of bench_validate.py).
        return self._items


def checked_lines(source: str, defaults: Mapping[str, Any], *, default_op: str = UPDATE,
                  rules: Mapping[str, Any] | None = None) -> CheckedLines:
    """Every non-blank line of `source`, read and planned: ready to send, or invalid with its
    problems. What `validate`, `run`, `plan` and `--undo-file` all read.

    The input is opened here, at once (not on first iteration), so an unreadable input raises
    `UsageError` before anything else is started or created.
    """
    stream = open_input(source)
    # `-` is read through a duplicate of its descriptor (reader.open_input): close that one.
    return CheckedLines(_planned(stream, Planner(defaults, default_op=default_op, rules=rules),
                                 close=stream is not getattr(sys.stdin, "buffer", None)),
                        regular=is_regular_input(stream))


def _planned(stream: IO[bytes], planner: Planner,
             close: bool) -> Iterator[Planned | InvalidLine]:
    plan = planner.plan
    try:
        for item in read_lines(stream):
            yield item if isinstance(item, InvalidLine) else plan(item)
    finally:
        if close:
            stream.close()

"""UpdateSpeed's body (the task's time-window speed-limit rules) as data, its checks, the
order-free comparison of two rule lists, and the `--rules` compact syntax.

Where it sits: beside schema.py, for lines with ``"op": "speed-limit"`` (docs/reference.md §11).
The body ``{"speed_limit": [rule, ...]}`` is two `ObjectSpec`s walked by schema.py's one walker,
so types, ranges, unknown keys (with their "did you mean" hint) and nulls behave exactly as for
UpdateTask. What the tables cannot say is a check on the object it belongs to: a rule's times are
``HH:MM`` (00:00-23:59, two digits each); across the rules, each window starts before it ends (a
window across midnight is two rules) and no two overlap (one may end where the next starts).

`same_rules` compares two lists as the service means them: order-free, by window, numbers by value
(20 == 20.0), absent == null. plan, `--skip-unchanged`, `--verify` and undo compare with it;
`rules_of_answer` reads a ShowsSpeedLimits answer (untrusted) into a list, `rules_change` is plan's
``changes.speed_limit``, `undo_line` the line that puts a task's previous rules back.

`parse_rules` reads the command line's compact form, ``00:00-07:59=1000,08:00-19:59=100@50``
(``START-END=SPEED[@THRESHOLD]``, comma-separated; ``''`` is the empty list: clear every rule).
A string that does not parse raises `UsageError` with the 1-based character position and what was
expected there; `rules_option` then checks the list with the same validator as a file's line, so a
mistake gives the same message wherever it was written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from batchsms.errors import UsageError
from batchsms.lines.schema import Check, Field, Kind, ObjectSpec, Problem, Rule, validate

__all__ = ["MAX_RULES", "SPEED_LIMIT", "SPEED_LIMIT_RULE", "canonical_rules", "parse_rules",
           "rules_change", "rules_of_answer", "rules_option", "same_rules", "undo_line",
           "validate_speed_limit"]

MAX_RULES = 5  # §11: 0-5 rules
_CLOCK_RE = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


def _minutes(value: object) -> int | None:
    """`HH:MM` -> minutes since midnight; None when it is not a valid time."""
    if type(value) is not str or not _CLOCK_RE.fullmatch(value):
        return None
    return int(value[:2]) * 60 + int(value[3:])


def _clock_check(key: str) -> Check:
    def check(rule: dict[str, Any], path: str, problems: list[Problem]) -> None:
        value = rule.get(key)
        if type(value) is str and _minutes(value) is None:
            problems.append(Problem(f"{path}.{key}", "must be a time HH:MM from 00:00 to 23:59, "
                                    f"two digits each, got {value!r}"))

    return check


def _check_windows(body: dict[str, Any], path: str, problems: list[Problem]) -> None:
    """Each window starts before it ends; no two overlap (touching is fine)."""
    rules = body.get("speed_limit")
    if type(rules) is not list:
        return
    windows: list[tuple[int, int, int]] = []  # (start, end, index) of the sound windows
    for i, rule in enumerate(rules):
        if type(rule) is not dict:
            continue
        start, end = rule.get("start"), rule.get("end")
        first, last = _minutes(start), _minutes(end)
        if first is None or last is None:
            continue  # the time itself is already reported
        at = f"{path}.speed_limit[{i}].end"
        if first == last:
            problems.append(Problem(at, f"must be after start ({start}): the window "
                                    f"{start}-{end} is empty"))
        elif last < first:
            problems.append(Problem(at, f"is before start ({start}): a window across "
                                    f"midnight must be split into two rules, {start}-23:59 "
                                    f"and 00:00-{end}"))
        else:
            windows.append((first, last, i))
    # Sorted by start, a window overlaps an earlier one exactly when it starts before the
    # furthest end seen so far: n log n, whatever a hostile line holds.
    windows.sort()
    reach: tuple[int, int] | None = None  # (end, index) of the window reaching furthest
    for first, last, i in windows:
        if reach is not None and first < reach[0]:
            j = reach[1]
            problems.append(Problem(
                f"{path}.speed_limit[{i}]",
                f"window {rules[i]['start']}-{rules[i]['end']} overlaps rule [{j}] "
                f"({rules[j]['start']}-{rules[j]['end']}): windows may touch (one ending where "
                "the next starts) but not overlap"))
        if reach is None or last > reach[0]:
            reach = (last, i)


# -- the body as data (SMS API reference, UpdateSpeed; docs/reference.md §11) -------------------

SPEED_LIMIT_RULE = ObjectSpec("SpeedLimitlJson", {  # the SDK's model name, its typo included
    "start": Field(Kind.STRING, max_len=255, required=True),
    "end": Field(Kind.STRING, max_len=255, required=True),
    "speed": Field(Kind.INTEGER, maximum=1000, required=True),
    "over_speed_threshold": Field(Kind.NUMBER, minimum=10, maximum=100),
}, checks=(Rule("start", _clock_check("start")), Rule("end", _clock_check("end"))))

SPEED_LIMIT = ObjectSpec("SpeedLimit", {
    "speed_limit": Field(Kind.ARRAY, max_len=MAX_RULES, spec=SPEED_LIMIT_RULE, required=True),
}, checks=(Rule("speed_limit", _check_windows),))


def validate_speed_limit(body: object,
                         path: str = "body") -> tuple[dict[str, Any], list[Problem]]:
    """Check an UpdateSpeed body; return (body without nulls, every problem found).

    `{"speed_limit": []}` is valid: it clears the task's rules. The body is fit to send only
    when the problem list is empty.
    """
    # schema.validate's "nothing to update" cannot happen: `speed_limit` is required
    return validate(body, path, SPEED_LIMIT)


# -- comparing rule lists -----------------------------------------------------------------------

CanonicalRule = tuple[tuple[str, object], ...]


def _canonical_value(value: object) -> object:
    if type(value) is int or type(value) is float:
        return float(value)  # numbers by value: 20 == 20.0 (a rule's are at most 1000)
    if type(value) is bool:
        return ("boolean", value)  # Python's True == 1.0: an answer's `true` is no speed 1
    return value


def canonical_rules(rules: Iterable[Mapping[str, Any]]) -> tuple[CanonicalRule, ...]:
    """A rule list as a sorted tuple of sorted (key, value) pairs: nulls dropped, numbers as
    floats, ordered by window. Two lists mean the same to the service iff these are equal."""
    canon = [tuple(sorted((key, _canonical_value(value)) for key, value in rule.items()
                          if value is not None)) for rule in rules]
    return tuple(sorted(canon, key=lambda rule: (str(dict(rule).get("start")),
                                                 str(dict(rule).get("end")), repr(rule))))


def same_rules(a: Iterable[Mapping[str, Any]], b: Iterable[Mapping[str, Any]]) -> bool:
    """Whether two rule lists are the same, order-free and numbers by value."""
    return canonical_rules(a) == canonical_rules(b)


def rules_of_answer(data: object) -> list[dict[str, Any]] | None:
    """A ShowsSpeedLimits answer (parsed JSON) as the task's rule list, nulls dropped; None when
    it is not ``{"speed_limit": [object, ...]}`` (a read that failed: never taken for "no
    rules"). A missing or null ``speed_limit`` is the empty list: a task with no rules."""
    if type(data) is not dict:
        return None
    rules = data.get("speed_limit")
    if rules is None:
        return []
    if type(rules) is not list or not all(type(rule) is dict for rule in rules):
        return None
    return [{k: v for k, v in rule.items() if v is not None} for rule in rules]


def rules_change(current: list[dict[str, Any]],
                 wanted: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]] | None:
    """plan's ``changes.speed_limit``: ``{"from": current, "to": wanted}``, or None when the
    two lists are the same (`same_rules`): the rule list is one field, shown whole."""
    return None if same_rules(current, wanted) else {"from": current, "to": wanted}


def undo_line(task_id: str, ref: str | None, previous: list[dict[str, Any]],
              written: list[dict[str, Any]]) -> dict[str, Any]:
    """The input line that puts a task's rules back: the whole previous list (an empty one
    clears them, so rules are always restorable), guarded by ``expect``, the list the run wrote
    (docs/reference.md §1)."""
    return {"task_id": task_id, "op": "speed-limit", "ref": ref,
            "body": {"speed_limit": previous}, "expect": {"speed_limit": written}}


# -- the --rules compact syntax -----------------------------------------------------------------

_NUMBER_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_TIME_RE = re.compile(r"[0-9]+:[0-9]+")


class ParsedRule(NamedTuple):
    """One rule of a `--rules` string, with the text it was read from (for messages)."""

    rule: dict[str, Any]
    text: str


class _Scanner:
    """A cursor over the `--rules` text; every error names the 1-based character position."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, expected: str) -> UsageError:
        rest = self.text[self.pos:]
        found = f"found {rest[0]!r}" if rest else "found the end of the text"
        return UsageError(f"--rules {self.text!r}: at character {self.pos + 1}: expected "
                          f"{expected}, {found}")

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def take(self, char: str) -> bool:
        self.skip_spaces()
        if self.text.startswith(char, self.pos):
            self.pos += 1
            return True
        return False

    def expect(self, char: str, expected: str) -> None:
        if not self.take(char):
            raise self.fail(expected)

    def token(self, pattern: re.Pattern[str], expected: str) -> str:
        self.skip_spaces()
        match = pattern.match(self.text, self.pos)
        if match is None:
            raise self.fail(expected)
        self.pos = match.end()
        return match.group()


def _number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def _parse(text: str) -> list[ParsedRule]:
    if not text.strip():
        return []
    scan = _Scanner(text)
    parsed: list[ParsedRule] = []
    while True:
        scan.skip_spaces()
        begin = scan.pos
        start = scan.token(_TIME_RE, "a start time HH:MM")
        scan.expect("-", "'-' between the start and the end time")
        end = scan.token(_TIME_RE, "an end time HH:MM")
        scan.expect("=", "'=' and the speed in Mbit/s after the window")
        rule: dict[str, Any] = {"start": start, "end": end,
                                "speed": _number(scan.token(_NUMBER_RE, "a speed in Mbit/s"))}
        then = "',' and the next rule, or the end"
        if scan.take("@"):
            rule["over_speed_threshold"] = _number(
                scan.token(_NUMBER_RE, "an over-speed threshold in percent after '@'"))
        else:
            then = "'@' and a threshold, " + then
        parsed.append(ParsedRule(rule, text[begin:scan.pos]))
        scan.skip_spaces()
        if scan.at_end():
            return parsed
        scan.expect(",", then)


def parse_rules(text: str) -> list[dict[str, Any]]:
    """`START-END=SPEED[@THRESHOLD],...` -> the rule list, unchecked ('' -> []: clear the
    rules). Spaces between tokens are allowed. `UsageError` (exit 2) with the position when the
    text does not parse."""
    return [item.rule for item in _parse(text)]


def rules_option(text: str) -> dict[str, Any]:
    """A `--rules` value as the UpdateSpeed body it means, checked as a line's body is:
    `UsageError` naming the rule and every problem when the list is not valid."""
    parsed = _parse(text)
    body, problems = validate_speed_limit({"speed_limit": [item.rule for item in parsed]})
    if problems:
        raise UsageError(f"--rules {text!r}: " + "; ".join(_located(p, parsed) for p in problems))
    return body


def _located(problem: Problem, parsed: list[ParsedRule]) -> str:
    """A problem with the rule's own text beside its path, e.g. `rule 2 (08:00-07:00=5)`."""
    match = re.match(r"body\.speed_limit\[(\d+)\]", problem.path)
    if match is None:
        return f"{problem.path}: {problem.message}"
    index = int(match.group(1))
    return f"rule {index + 1} ({parsed[index].text}): {problem.path}: {problem.message}"

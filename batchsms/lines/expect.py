"""The `expect` of an input line (docs/reference.md §1): what the task must show before the write.

A line may carry ``"expect": {...}``: values in the body's shape that the task must have when
its line is about to be sent. `run` reads the task first (ShowTask) and compares; any field that
differs makes the line `skipped` with `error_code` `conflict`, and nothing is written. Undo lines
carry the values the run wrote, so an undo never overwrites what someone changed after the run.

Checked here, once per line while planning (bodies.py), with the body's schema walker:

- types, lengths, ranges, enumerations and unknown fields at any depth, as for a body; problems
  are reported at ``expect.<field>``;
- ``migration_ip`` may be IPv4 or IPv6: ``use_ipv6`` cannot be read back, so it cannot be
  expected, and the task's address may be of either family;
- ``null`` is refused at any depth: in a body it means "absent, not sent", and in an expectation
  it could mean "not checked" or "has no value" -- a line leaves a field out to not check it;
- a field ShowTask does not return (readable.py) is refused: it "cannot be checked";
- an expect that checks nothing (``{}``, or only empty objects) is refused.

Compared with `diff.diff(expect, view)`, as `--verify` compares a body: objects field by field
(only the fields given), scalars as values, arrays whole (item by item, field by field).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any

from batchsms.lines.diff import READABLE_TREE, Diff, Tree, diff, show
from batchsms.lines.schema import PUT_TASK_REQ, Problem, Rule, validate

CONFLICT = "conflict"  # the outcome's error_code, and plan's verdict
CONFLICT_MSG_MAX = 1024  # characters of `error_msg` spent on the differences
CANNOT_BE_CHECKED = "cannot be checked: ShowTask does not return it"


def _either_ip(body: dict[str, Any], path: str, problems: list[Problem]) -> None:
    ip = body.get("migration_ip")
    if not isinstance(ip, str) or not ip:
        return
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        problems.append(Problem(f"{path}.migration_ip",
                                f"must be an IPv4 or an IPv6 address, got {ip!r}"))


EXPECT_SPEC = dataclasses.replace(PUT_TASK_REQ, checks=tuple(
    Rule(rule.key, _either_ip) if rule.key == "migration_ip" else rule
    for rule in PUT_TASK_REQ.checks))
"""PutTaskReq, with the one rule that reads an unreadable field (`use_ipv6`) relaxed."""


def _nulls(value: Any, path: str, skip: set[str]) -> Iterator[str]:
    """The paths of null object fields in `value`, at any depth, except in `skip` (already
    wrong) or under it. Null array items are the walker's: an item must be an object."""
    if path in skip:
        return
    if isinstance(value, dict):
        for key, inner in value.items():
            if inner is None:
                if f"{path}.{key}" not in skip:
                    yield f"{path}.{key}"
            else:
                yield from _nulls(inner, f"{path}.{key}", skip)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _nulls(item, f"{path}[{i}]", skip)


def _look(value: Mapping[str, Any], tree: Tree, path: str, unreadable: list[str]) -> int:
    """How many readable leaves `value` gives; each field ShowTask cannot return goes to
    `unreadable` (at the shallowest path). A value of the wrong type counts for nothing: the
    walker has said what is wrong with it."""
    leaves = 0
    for key, inner in value.items():
        sub = tree.get(key)
        if sub is None:
            unreadable.append(f"{path}.{key}")
        elif isinstance(sub, str):
            leaves += 1
        elif isinstance(inner, dict):
            leaves += _look(inner, sub, f"{path}.{key}", unreadable)
    return leaves


def check_expect(expect: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[Problem, ...]]:
    """`expect` checked (module docstring): (the values to compare, every problem found)."""
    clean, found = validate(dict(expect), path="expect", spec=EXPECT_SPEC)
    # The walker's "nothing to update" (at the path itself) is a body's rule; an expect's own
    # ("nothing to check") is below.
    problems = [p for p in found if p.path != "expect"]
    problems.extend(Problem(path, "null cannot be expected: leave the field out to not check "
                            "it (no update can make a field absent)")
                    for path in _nulls(expect, "expect", {p.path for p in problems}))
    unreadable: list[str] = []
    leaves = _look(clean, READABLE_TREE, "expect", unreadable)
    problems.extend(Problem(path, CANNOT_BE_CHECKED) for path in unreadable)
    if not problems and not leaves:
        problems.append(Problem("expect", "nothing to check: name at least one field and the "
                                "value the task must have"))
    return clean, tuple(problems)


def conflicts(expect: Mapping[str, Any], view: Mapping[str, Any]) -> Diff:
    """Where the task (`view`, a ShowTask answer) differs from `expect`: `changes` holds each
    difference, `current` what the task has, `wanted` what was expected."""
    return diff(expect, view)


def conflict_message(found: Diff) -> str:
    """`error_msg` of a `conflict`: each field as expected and as found."""
    text = "the task is not as expected (nothing written): " + "; ".join(describe(found))
    if len(text) > CONFLICT_MSG_MAX:
        text = text[:CONFLICT_MSG_MAX - 3] + "..."
    return text


def describe(found: Diff) -> Iterator[str]:
    """`speed_limit: expected 321, found 999`, one per difference."""
    for change in found.changes:
        yield f"{change.path}: expected {show(change.wanted)}, found {show(change.current)}"


def conflicts_json(found: Diff) -> dict[str, dict[str, Any]]:
    """Path -> `{"expected", "found"}`: plan's `--json`."""
    return {c.path: {"expected": c.wanted, "found": c.current} for c in found.changes}

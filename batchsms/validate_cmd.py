"""`batchsms validate`: read and check every line, no network.

Prints each problem as `line N: path: message`, then a one-line summary; with `--out`, writes one
outcome record per non-blank line (`valid` or `invalid`). Exit 0 when every line is valid, else 1.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from batchsms.outcomes import (
    Outcome,
    OutcomeWriter,
    Status,
    invalid_outcome,
    new_run_id,
    utc_now,
)
from batchsms.plan import Planned, Planner
from batchsms.records import InvalidLine, open_input, read_lines


def checked_lines(source: str, defaults: Mapping[str, Any]) -> Iterator[Planned | InvalidLine]:
    """Every non-blank line of `source`, planned: ready to send, or invalid with its problems.

    The input is opened here, at once (not on first iteration), so an unreadable input raises
    `UsageError` before anything else is started or created.
    """
    stream = open_input(source)
    # `-` is read through a duplicate of its descriptor (records.open_input): close that one.
    return _planned(stream, Planner(defaults),
                    close=stream is not getattr(sys.stdin, "buffer", None))


def _planned(stream: IO[bytes], planner: Planner,
             close: bool) -> Iterator[Planned | InvalidLine]:
    try:
        yield from read_lines(stream, planner.plan_fields)
    finally:
        if close:
            stream.close()


def format_problems(item: InvalidLine) -> Iterator[str]:
    for problem in item.errors:
        yield f"line {item.number}: {problem.path}: {problem.message}"


def run_validate(source: str, out: Path | None, defaults: Mapping[str, Any],
                 stdout: IO[str] | None = None) -> int:
    if stdout is None:  # looked up now, not at import: sys.stdout may have been replaced
        stdout = sys.stdout
    items = checked_lines(source, defaults)  # an unreadable input stops us before --out exists
    writer = OutcomeWriter(out) if out is not None else None
    run_id = new_run_id()
    valid = invalid = 0
    try:
        for item in items:
            if isinstance(item, InvalidLine):
                invalid += 1
                stdout.write("\n".join(format_problems(item)) + "\n")
                outcome = invalid_outcome(run_id, item)
            else:
                valid += 1
                outcome = Outcome(run_id, item.number, item.task_id, item.ref, Status.VALID,
                                  body_sha256=item.sha256, finished_at=utc_now())
            if writer is not None:
                writer.write(outcome)
    finally:
        if writer is not None:
            writer.close()
    total = valid + invalid
    stdout.write(f"{total} lines: {valid} valid, {invalid} invalid\n")
    stdout.flush()
    return 0 if invalid == 0 else 1

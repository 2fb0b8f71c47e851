"""`report --failed-to`: the lines not done, as an input file written atomically; `--input`
lines judged against the index (see the package docstring)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson

from batchsms.commands.report.index import Done, LineIndex, line_key
from batchsms.errors import UsageError
from batchsms.journal.outcomes import resume_key
from batchsms.lines.bodies import Planner
from batchsms.lines.reader import InvalidLine, iter_raw_lines, open_input, parse_line


@contextmanager
def atomic_output(path: Path, option: str = "--failed-to") -> Iterator[IO[bytes]]:
    """A file that appears at `path` whole, or not at all; `option` names it in an error."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(3).hex()}.tmp")
    try:
        with tmp.open("xb") as handle:
            yield handle
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # a read-only directory refuses this too
            tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {option} {str(path)!r}: {exc.strerror or exc}") \
            from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


class InputLine(NamedTuple):
    """A non-blank line of `--input` as `report` judges it."""

    number: int
    raw: bytes | None  # None when over the 1 MiB line limit
    key: bytes  # as the index keys its records: (task, body); an invalid line by its number
    task: int | None  # the task's hash; None for an invalid line (never sent, opens no task)


def _input_lines(source: str, defaults: Mapping[str, Any], op: str = "update",
                 rules: Mapping[str, Any] | None = None) -> Iterator[InputLine]:
    """Every non-blank line of `source`, planned as `run` plans it with the same defaults
    (`--set`/`--patch`, `--op`, `--rules`)."""
    planner = Planner(defaults, default_op=op, rules=rules)
    stream = open_input(source)
    try:
        for number, raw, _error in iter_raw_lines(stream):
            if raw is None:
                yield InputLine(number, None, line_key(number, None), None)
                continue
            parsed = parse_line(number, raw)
            if parsed is None:
                continue
            planned = parsed if isinstance(parsed, InvalidLine) else planner.plan(parsed)
            if isinstance(planned, InvalidLine):
                yield InputLine(number, raw, line_key(number, planned.task_id), None)
            else:
                key = resume_key(planned.task_id, planned.sha256, planned.op)
                yield InputLine(number, raw, key, hash(planned.task_id))
    finally:
        if source != "-":
            stream.close()


@dataclass
class Judged:
    """The lines as judged: how many, how many done, which records the figures take."""

    lines: int = 0
    done: int = 0
    no_record: int = 0
    written: int = 0
    missing: int = 0


def judge_input(source: str, defaults: Mapping[str, Any], index: LineIndex,
                 out: IO[bytes] | None, wanted: set[bytes], *, op: str = "update",
                 rules: Mapping[str, Any] | None = None) -> Judged:
    """Judge every line of `--input`; copy the not-done ones to `out`; fill `wanted` with the
    keys whose latest records the figures show.

    Per task, in file order, as `--resume` does: from a task's first line that is not done, its
    later lines are not done either (lines 300, 400, 300 with the second failed: the third's
    record is the first's, and re-running only the second would leave the task at 400), and
    they are copied too, so that the `--failed-to` file, run, leaves each task on its last line.
    Invalid lines are never sent and open no task."""
    judged = Judged()
    opened: set[int] = set()  # tasks with a line not done so far
    for line in _input_lines(source, defaults, op, rules):
        judged.lines += 1
        entry = index.get(line.key)
        if entry is None:
            judged.no_record += 1
        else:
            wanted.add(line.key)  # an invalid line's record too: the statuses add up
            if line.task is not None and entry.done is not Done.NOT_DONE \
                    and line.task not in opened:
                judged.done += 1
                continue
        if line.task is not None:
            opened.add(line.task)
        if out is not None:
            if line.raw is None:
                judged.missing += 1
            else:
                out.write(line.raw.rstrip(b"\r\n") + b"\n")
                judged.written += 1
    if judged.lines and not wanted and index.lines:
        raise UsageError(f"no line of --input {source!r} has a record in these outcomes: is "
                         "it the input of these runs, with the same --set/--patch?")
    return judged


@contextmanager
def no_output() -> Iterator[None]:
    yield None


def envelope_writer(out: IO[bytes]) -> Callable[[dict[str, Any]], None]:
    def write(record: dict[str, Any]) -> None:
        out.write(orjson.dumps({"task_id": record.get("task_id"), "ref": record.get("ref")})
                  + b"\n")
    return write

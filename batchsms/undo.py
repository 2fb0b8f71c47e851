"""The way back: outcome records that hold `previous` -> input lines that put each task back.

A run with undo capture keeps, in each line's outcome record, the task's values read just
before the write of the readable fields the line sets (`previous`, see diff.py). The journal
itself is then enough to roll back, after a crash and `--resume` too: `report --undo-to FILE`
and `run --undo-file FILE` both write `FILE` from it, as ordinary input for `batchsms run`.

- **Which records.** Those with `previous` whose write may have taken effect: `succeeded`;
  `failed` with `verify_mismatch` (the write was answered 2xx); `failed` with `maybe_applied`
  (no readable answer: restoring values read just before is harmless if it did not apply).
- **Order.** The reverse of the journal order (files as given, records in file order). Lines
  for one task are applied in file order, each after the previous one ended, so their records
  are in order of application, and the reversed lines leave each task as it was before the
  first of them.
- **Lines.** `{"task_id", "body": previous, "ref"}`. A field that had no value before (null in
  `previous`) cannot be restored by an update, which has no way to unset a field: it is left
  out and counted (`UndoSummary.lost`); a record with nothing left to restore gives no line.
- **Memory.** The lines are held until the end (they are written reversed): about the size of
  the undo file.

**Crash safety.** Records are written after their write; the values captured before it are
also kept in a side log (previous_log.py), and `report --undo-to` adds the entries a crash left
without a record.

Before a run with undo sends anything, `check_reversible` reads the whole input once: a line
that sets a field ShowTask does not return could not be undone, so the run is refused (exit 2,
naming the fields and lines) unless `--allow-irreversible`. Standard input cannot be read twice:
undo from `-` needs `--allow-irreversible`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from batchsms.diff import unreadable_paths, without_nulls
from batchsms.errors import UsageError
from batchsms.outcomes import Outcome, Status, iter_journal, resume_key
from batchsms.plan import MEMO_SIZE, checked_lines
from batchsms.records import InvalidLine


@dataclass(frozen=True, slots=True)
class UndoSummary:
    """What writing an undo file did: lines written, fields that could not be restored."""

    path: Path
    lines: int
    lost: int  # fields the task had no value for before the write: not restorable
    empty: int  # records with `previous` but nothing restorable: no line


def undoable(record: Mapping[str, Any]) -> bool:
    """The record holds `previous`, and its write may have taken effect."""
    if not isinstance(record.get("previous"), dict):
        return False
    status = record.get("status")
    if status == Status.SUCCEEDED:
        return True
    return status == Status.FAILED and (record.get("error_code") == "verify_mismatch"
                                        or record.get("maybe_applied") is True)


def null_paths(value: Any, prefix: str = "") -> Iterator[str]:
    """Dotted paths of the object fields that are null in `value` (arrays are not entered)."""
    if isinstance(value, dict):
        for key, sub in value.items():
            path = f"{prefix}{key}"
            if sub is None:
                yield path
            else:
                yield from null_paths(sub, f"{path}.")


def _prune(value: dict[str, Any]) -> dict[str, Any]:
    """Nulls dropped, then objects left empty by that dropped too (`{"clone_server": {}}`)."""
    out: dict[str, Any] = {}
    for key, sub in without_nulls(value).items():
        if isinstance(sub, dict):
            sub = _prune(sub)
            if not sub:
                continue
        out[key] = sub
    return out


def undo_line(record: Mapping[str, Any]) -> tuple[bytes | None, int]:
    """The input line restoring `record`'s previous values (None if none can be), and the
    number of fields that cannot be restored."""
    previous = record["previous"]
    lost = sum(1 for _ in null_paths(previous))
    body = _prune(previous)
    if not body:
        return None, lost
    line = {"task_id": record.get("task_id"), "body": body, "ref": record.get("ref")}
    return orjson.dumps(line, option=orjson.OPT_SORT_KEYS) + b"\n", lost


def for_run(records: Iterable[Mapping[str, Any]], run_id: str,
            resumed: set[bytes]) -> Iterator[Mapping[str, Any]]:
    """The records behind one run's changes: its own, and the earlier records of the lines it
    skipped as already done (`resumed`: their resume keys), so a `--resume` after a crash
    still yields the whole way back."""
    for record in records:
        if record.get("run_id") == run_id:
            yield record
        elif resumed and record.get("status") == Status.SUCCEEDED:
            task_id, sha = record.get("task_id"), record.get("body_sha256")
            if isinstance(task_id, str) and isinstance(sha, str) \
                    and resume_key(task_id, sha) in resumed:
                yield record


def write_undo(records: Iterable[Mapping[str, Any]], path: Path) -> UndoSummary:
    """Write the undo lines of `records` (in journal order) to `path`, reversed, atomically."""
    lines: list[bytes] = []
    lost = empty = 0
    for record in records:
        if not undoable(record):
            continue
        line, missing = undo_line(record)
        lost += missing
        if line is None:
            empty += 1
        else:
            lines.append(line)
    lines.reverse()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(3).hex()}.tmp")
    try:
        with tmp.open("xb") as handle:
            handle.writelines(lines)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write undo file {str(path)!r}: {exc.strerror or exc}") \
            from exc
    return UndoSummary(path, len(lines), lost, empty)


SHOWN_LINES = 3  # line numbers named per field in the refusal


def check_reversible(source: str, defaults: Mapping[str, Any]) -> None:
    """Refuse (UsageError) an input with a line that sets a field that cannot be read back."""
    if source == "-":
        raise UsageError("--undo-file checks the whole input before anything is sent, and "
                         "standard input cannot be read twice: give a file, or pass "
                         "--allow-irreversible")
    seen: dict[bytes, tuple[str, ...]] = {}  # a fleet-wide change repeats one body
    lines: dict[str, list[int]] = {}
    for item in checked_lines(source, defaults):
        if isinstance(item, InvalidLine):
            continue  # it will not be sent
        paths = seen.get(item.body)
        if paths is None:
            if len(seen) >= MEMO_SIZE:
                seen.clear()
            paths = seen[item.body] = unreadable_paths(orjson.loads(item.body))
        for path in paths:
            lines.setdefault(path, []).append(item.number)
    if lines:
        fields = "; ".join(
            f"{path} (line{'s' * (len(numbers) > 1)} "
            f"{', '.join(map(str, numbers[:SHOWN_LINES]))}"
            f"{f' and {len(numbers) - SHOWN_LINES} more' if len(numbers) > SHOWN_LINES else ''})"
            for path, numbers in sorted(lines.items()))
        raise UsageError(f"--undo-file: these fields cannot be read back (ShowTask does not "
                         f"return them), so their change could not be undone: {fields}. Remove "
                         "them, or pass --allow-irreversible to accept it")


class RunUndo:
    """`run --undo-file`: remembers the lines this run skipped as already done (`--resume`), and
    writes the file from the journal at the end (`for_run`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.resumed: set[bytes] = set()

    def on_outcome(self, outcome: Outcome) -> None:
        if outcome.error_code == "already_succeeded" and outcome.task_id is not None \
                and outcome.body_sha256 is not None:
            self.resumed.add(resume_key(outcome.task_id, outcome.body_sha256))

    def write(self, journal: Path, run_id: str) -> UndoSummary:
        return write_undo(for_run(iter_journal(journal), run_id, self.resumed), self.path)


def describe(summary: UndoSummary) -> str:
    """One line for stderr."""
    text = f"wrote {summary.lines} undo lines to {summary.path}"
    if summary.lost:
        text += (f"; {summary.lost} fields had no value before the change and cannot be "
                 "restored (an update cannot unset a field)")
    return text

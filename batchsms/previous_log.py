"""The side log of `--undo-file`: values captured before each write, safe from a crash.

A record is written when its line ends, after the write: a SIGKILL between a
write the service applied and its record would lose that line's `previous`, and a `--resume`
would then read the task *after* that write. So before each write, the captured values are also
appended (written through) to a side log beside the outcomes file, `.NAME.previous`
(`PreviousLog`). An entry whose line has no record in its run is an *orphan*: its write may
have been applied. `--resume` uses an orphan's values for the same task and body instead of
what it reads, and `report --undo-to` adds orphans as if their write had applied (restoring
values read just before a write that did not apply is harmless).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from batchsms.errors import UsageError
from batchsms.outcomes import Status, beside, ends_cut, iter_journal
from batchsms.plan import Planned


def previous_log_path(out: Path) -> Path:
    """The side log of captured values beside an outcomes file (the file it resolves to)."""
    return beside(out, "previous")


class PreviousLog:
    """Appends one entry per write about to be sent: the values captured for its line."""

    def __init__(self, out: Path) -> None:
        self.path = previous_log_path(out)
        self.error: str | None = None
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UsageError(f"cannot open {str(self.path)!r}: {exc.strerror}") from exc
        self._fresh_line = ends_cut(self.path)

    def append(self, run_id: str, item: Planned, previous: Mapping[str, Any]) -> bool:
        """Write the entry through; False (and `error` set) when it could not be written."""
        entry = orjson.dumps({"run_id": run_id, "line": item.number, "task_id": item.task_id,
                              "ref": item.ref, "body_sha256": item.sha256,
                              "previous": previous}) + b"\n"
        if self._fresh_line:
            entry = b"\n" + entry
        try:
            view = memoryview(entry)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            self.error = f"{self.path}: {exc.strerror or exc}"
            return False
        self._fresh_line = False
        return True

    def close(self) -> None:
        os.close(self._fd)


def orphans(out: Path) -> list[dict[str, Any]]:
    """Entries of the side log whose line has no record in its run, as undoable records
    (`failed`, `maybe_applied`), in log order."""
    log_path = previous_log_path(out)
    if not log_path.exists():
        return []
    entries = list(iter_journal_lines(log_path))
    runs = {e.get("run_id") for e in entries}
    ended: dict[str, bytearray] = {}
    for record in iter_journal(out):
        run_id, line = record.get("run_id"), record.get("line")
        if run_id in runs and isinstance(run_id, str) and type(line) is int and line > 0:
            seen = ended.setdefault(run_id, bytearray())
            if len(seen) < line:
                seen.extend(bytes(line - len(seen)))
            seen[line - 1] = 1
    found = []
    for entry in entries:
        run_id, line = entry.get("run_id"), entry.get("line")
        if not isinstance(run_id, str) or type(line) is not int or line < 1:
            continue
        seen = ended.get(run_id, bytearray())
        if line <= len(seen) and seen[line - 1]:
            continue
        found.append({**entry, "status": Status.FAILED.value, "maybe_applied": True})
    return found


def iter_journal_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Whole JSON objects of a side log; cut or garbled lines are skipped."""
    with path.open("rb") as handle:
        for chunk in handle:
            try:
                entry = orjson.loads(chunk)
            except orjson.JSONDecodeError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("previous"), dict):
                yield entry


def with_orphans(records: Iterable[Mapping[str, Any]],
                 found: list[dict[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """`records` (journal order) with the orphans put in order of application: a run's orphans
    after its last record (a line in flight when the run died was the last of its task in that
    run); those of a run with no record before the first record of any later run (run ids
    begin with their start time)."""
    waiting: dict[str, list[dict[str, Any]]] = {}
    for orphan in found:
        waiting.setdefault(orphan["run_id"], []).append(orphan)

    def before(run_id: str | None) -> Iterator[dict[str, Any]]:
        for earlier in sorted(r for r in waiting if run_id is None or r < run_id):
            yield from waiting.pop(earlier)

    current: str | None = None
    for record in records:
        run_id = record.get("run_id")
        if isinstance(run_id, str) and run_id != current:
            if current is not None:
                yield from waiting.pop(current, [])
            yield from before(run_id)
            current = run_id
        yield record
    if current is not None:
        yield from waiting.pop(current, [])
    yield from before(None)


def earlier_captures(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """`--resume`: the values captured before writes whose line never got a record, by
    (task_id, body_sha256): what the task had before a write that may have been applied."""
    return {(o["task_id"], o["body_sha256"]): o["previous"] for o in orphans(out)
            if isinstance(o.get("task_id"), str) and isinstance(o.get("body_sha256"), str)}

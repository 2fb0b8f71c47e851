"""The side log of `--undo-file`: what each write found and set, written before the write.

A record is written when its line ends, after the write: a SIGKILL between a write the service
applied and its record would lose what the task had before. So before each write, one entry is
appended (written through) to a side log beside the resolved outcomes file, `.NAME.previous`
(`PreviousLog`):

    {"run_id", "line", "task_id", "ref", "body_sha256", "previous", "wrote"}

`previous` is what the task had, read just before the write, of every readable field the line
sets (`diff.previous`: body-shaped, arrays whole, null where the task had no value); `wrote` is
the line's body limited to the same fields (`diff.readable_part`): what the task shows after the
write. The entry of a speed-limit line (docs/reference.md §11) also has ``"op": "speed-limit"``,
and its `previous` and `wrote` are ``{"speed_limit": [...]}``, the whole rule lists.

At the start of every run (with capture or not), one marker entry
`{"run_id", "run": true, "resume": <bool>, "capture": <bool>, "journal_offset": <bytes>}` says
where a run, and a sequence of runs, begins: in this log, and in the journal (its size when the
run started). A run started without `--resume` opens a sequence; `--resume` reads the journal
from the offset of the last such marker on (resume.py), and `run --undo-file` covers the
entries from that marker on (undo.py). So the two agree on what "this job" is.

The side log is the source of truth of undo (undo.py): the entries say what was there before,
the journal's records only say which writes may have been applied.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from batchsms.errors import UsageError
from batchsms.journal.outcomes import beside, ends_cut
from batchsms.lines.bodies import Planned
from batchsms.lines.reader import UPDATE


def previous_log_path(out: Path) -> Path:
    """The side log of captured values beside an outcomes file (the file it resolves to)."""
    return beside(out, "previous")


class PreviousLog:
    """Appends one entry per write about to be sent, and one marker per run."""

    def __init__(self, out: Path) -> None:
        self.path = previous_log_path(out)
        self.error: str | None = None
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UsageError(f"cannot open {str(self.path)!r}: {exc.strerror}") from exc
        self._fresh_line = ends_cut(self.path)

    def mark_run(self, run_id: str, *, resume: bool, capture: bool,
                 journal_offset: int) -> None:
        """The marker of a run's start; UsageError when it cannot be written (nothing sent)."""
        if not self._write({"run_id": run_id, "run": True, "resume": resume,
                            "capture": capture, "journal_offset": journal_offset}):
            raise UsageError(f"cannot write the side log: {self.error}")

    def append(self, run_id: str, item: Planned, previous: Mapping[str, Any],
               wrote: Mapping[str, Any]) -> bool:
        """Write the entry through; False (and `error` set) when it could not be written."""
        entry = {"run_id": run_id, "line": item.number, "task_id": item.task_id,
                 "ref": item.ref, "body_sha256": item.sha256, "previous": previous,
                 "wrote": wrote}
        if item.op != UPDATE:
            entry["op"] = item.op
        return self._write(entry)

    def _write(self, data: Mapping[str, Any]) -> bool:
        entry = orjson.dumps(data) + b"\n"
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


def iter_entries(path: Path, start: int = 0) -> Iterator[dict[str, Any]]:
    """The whole entries (markers included) of a side log from byte `start`; cut or garbled
    lines are skipped. A missing file has none."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    with handle:
        handle.seek(start)
        for chunk in handle:
            try:
                entry = orjson.loads(chunk)
            except orjson.JSONDecodeError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("run_id"), str):
                yield entry


def is_marker(entry: Mapping[str, Any]) -> bool:
    return entry.get("run") is True


def is_capture(entry: Mapping[str, Any]) -> bool:
    """An entry of a write: its line, task and the values found before."""
    line = entry.get("line")
    return type(line) is int and line > 0 and isinstance(entry.get("task_id"), str) \
        and isinstance(entry.get("previous"), dict)


def sequence_start(path: Path) -> int:
    """The byte offset of the last marker of a run that started without `--resume`: where the
    sequence of runs that the latest run belongs to begins (0 when there is none)."""
    return sequence_marker(path)[0]


def journal_start(out: Path) -> int:
    """Where `--resume` starts reading the journal `out`: its size when the last run started
    without `--resume` began (that run opened the sequence; what came before it is not this
    job's). 0 without such a marker (a side log of an older version, or none), and when the
    journal is shorter than that (it was replaced): every record is read then, which can only
    make more lines not done, never skip one wrongly."""
    marker = sequence_marker(previous_log_path(out))[1]
    offset = marker.get("journal_offset") if marker is not None else None
    if type(offset) is not int or offset < 0:
        return 0
    try:
        size = out.stat().st_size
    except OSError:
        return 0
    return offset if offset <= size else 0


def sequence_marker(path: Path) -> tuple[int, dict[str, Any] | None]:
    """The byte offset and the entry of the last marker of a run that started without
    `--resume` ((0, None) when there is none)."""
    start = offset = 0
    found: dict[str, Any] | None = None
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return 0, None
    except OSError as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    with handle:
        for chunk in handle:
            if b'"run":true' in chunk:
                try:
                    entry = orjson.loads(chunk)
                except orjson.JSONDecodeError:
                    entry = None
                if isinstance(entry, dict) and is_marker(entry) and entry.get("resume") is False:
                    start, found = offset, entry
            offset += len(chunk)
    return start, found


def uncaptured_runs(path: Path, start: int = 0) -> int:
    """How many runs whose markers lie in the side log from byte `start` on wrote without
    capture (no `--undo-file`): their writes cannot be undone from it."""
    return sum(1 for e in iter_entries(path, start) if is_marker(e) and e.get("capture") is False)

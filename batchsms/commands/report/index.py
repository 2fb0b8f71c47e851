"""`report`'s first pass: each line's latest record, as one packed int per line.

Keys and the rule for "latest" are in the package docstring. An entry is the ordinal of the
record (its place across all journals, in the order given) and its `Done` flag, packed into one
int (`ordinal << 2 | flag`): about 150 bytes a line with the 16-byte key, where a tuple per line
would add ~70. `LineIndex.get` unpacks it into a `Latest` with named fields.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from batchsms.journal.outcomes import DONE_SKIP_CODES, JournalScan, Status, iter_journal, resume_key


class Done(enum.IntEnum):
    """How far a line's latest record says it got."""

    SUCCEEDED = 1
    RESUMED = 2  # skipped as already_succeeded / unchanged: done, by an earlier send
    NOT_DONE = 3


_FLAG_BITS = 2  # an entry is (ordinal << _FLAG_BITS) | flag: one int per line
_FLAG_MASK = (1 << _FLAG_BITS) - 1


class Latest(NamedTuple):
    """A line's latest record: its ordinal across the journals, and how far it got."""

    ordinal: int
    done: Done


def done_of(record: dict[str, Any]) -> Done:
    status = record.get("status")
    if status == Status.SUCCEEDED:
        return Done.SUCCEEDED
    if status == Status.SKIPPED and record.get("error_code") in DONE_SKIP_CODES:
        return Done.RESUMED
    return Done.NOT_DONE


def record_key(record: dict[str, Any]) -> bytes | None:
    """What line a record is of: (task_id, op, body_sha256) as `--resume` keys it; a record with no
    body hash (invalid) by its line number and task id; None when it has neither."""
    task_id, sha = record.get("task_id"), record.get("body_sha256")
    if isinstance(task_id, str) and isinstance(sha, str):
        op = record.get("op")
        return resume_key(task_id, sha, op if isinstance(op, str) else None)
    line = record.get("line")
    if type(line) is not int or line < 1:
        return None
    return line_key(line, task_id)


def line_key(line: int, task_id: object) -> bytes:
    """The key of a line with no body (invalid): its number and its task id, if it has one."""
    return b"line\0%d\0" % line + (task_id.encode() if isinstance(task_id, str) else b"")


class LineIndex:
    """Per key: the ordinal of its latest record and its done-flag, packed in one int."""

    def __init__(self) -> None:
        self._entries: dict[bytes, int] = {}
        self.records = 0

    @property
    def lines(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> Latest | None:
        entry = self._entries.get(key)
        return None if entry is None else Latest(entry >> _FLAG_BITS, Done(entry & _FLAG_MASK))

    def add(self, ordinal: int, key: bytes, record: dict[str, Any]) -> None:
        """Take `record` (the journals' `ordinal`-th) as the key's latest, unless the rule of
        the module docstring keeps an earlier `succeeded`."""
        self.records += 1
        flag = done_of(record)
        old = self._entries.get(key)
        if flag is Done.RESUMED and old is not None and old & _FLAG_MASK == Done.SUCCEEDED:
            return
        self._entries[key] = (ordinal << _FLAG_BITS) | flag

    def retire(self, key: bytes) -> None:
        del self._entries[key]

    def done(self) -> int:
        """How many lines are done."""
        return sum(entry & _FLAG_MASK != Done.NOT_DONE for entry in self._entries.values())


@dataclass
class Journals:
    """The journals read in one fixed order, so both passes number records alike."""

    paths: list[Path]
    scan: JournalScan = field(default_factory=JournalScan)
    garbled: int = 0
    ends: list[int] = field(default_factory=list)  # records per file in the first pass
    runs: set[str] = field(default_factory=set)

    def records(self) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
        """(ordinal, key, record) for every usable record; the first call fixes `ends`."""
        first = not self.ends
        ordinal = 0
        for i, path in enumerate(self.paths):
            n = 0
            for record in iter_journal(path, self.scan if first else None):
                if not first and n >= self.ends[i]:
                    break  # appended while we read: not part of this report
                key = record_key(record)
                line = record.get("line")
                if key is None or type(line) is not int or line < 1:
                    self.garbled += first
                    continue
                if first:
                    run_id = record.get("run_id")
                    if isinstance(run_id, str):
                        self.runs.add(run_id)
                yield ordinal, key, record
                ordinal += 1
                n += 1
            if first:
                self.ends.append(n)


@dataclass
class Retirement:
    """Invalid lines (keyed by number) that a later run fixed: it sent the same task with a
    body. Memory only for the tasks of invalid lines."""

    runs: dict[str, int] = field(default_factory=dict)  # run id -> order of first appearance
    hashless: dict[bytes, tuple[str, int]] = field(default_factory=dict)  # key -> task, run
    sent: dict[str, int] = field(default_factory=dict)  # such a task -> last run with a body

    @classmethod
    def index(cls, journals: Journals, index: LineIndex) -> None:
        """The first pass: fill `index`, then retire the fixed invalid lines from it."""
        seen = cls()
        for ordinal, key, record in journals.records():
            index.add(ordinal, key, record)
            seen.add(key, record)
        for key, (task, run) in seen.hashless.items():
            if seen.sent.get(task, -1) > run:
                index.retire(key)

    def add(self, key: bytes, record: dict[str, Any]) -> None:
        task = record.get("task_id")
        if not isinstance(task, str):
            return
        run = self.runs.setdefault(str(record.get("run_id")), len(self.runs))
        if key.startswith(b"line\0"):
            self.hashless[key] = (task, run)
            self.sent.setdefault(task, -1)
        elif task in self.sent:
            self.sent[task] = max(self.sent[task], run)

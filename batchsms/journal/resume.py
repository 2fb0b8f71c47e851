"""`--resume`: which lines of this run earlier runs on the same `--out` already did.

The feed asks `ResumeRun.skips(item)` for every valid line, in file order; a skipped line gets a
`skipped`/`already_succeeded` record instead of being sent. The rule (README, "Resume and the
lock"):

- a line is (line number, task_id, op, body_sha256), what every record carries (a record
  without `op`, from before it existed, is an `update`'s);
- only the records of this run's *sequence* count: those written since the last run on this
  `--out` that started without `--resume` began (its marker in the side log holds the journal's
  size then: `changes.undo_log.journal_start`). A run without `--resume` sends every line, so what
  came before it says nothing of where a task is now -- a line done before it, then sent again
  by it and cut off by a kill, is not done;
- it is **done** when the latest record at its line number is of the same task and body and is
  `succeeded`, or `skipped` with an `error_code` of `outcomes.DONE_SKIP_CODES` (`unchanged`
  counts). Any other latest record, a record of another task or body (another input), or none:
  not done;
- a done line whose record is older than the done record of an earlier line of its task is
  not done: that earlier line was sent (again) after it, so the task no longer shows it (lines
  `300` then `100`, the task at 100: the second is `unchanged` while the first fails; a resume
  sends the first, and is killed before the second);
- per task, in file order, a done line is skipped only while every earlier valid line of its
  task in this run was skipped too: from a task's first line not done, that line and every later
  line of the task are sent again, so the task ends in the state its last line gives. Invalid
  lines are never sent and do not open a task.

Memory is flat per line: `ResumeIndex` is built by one streaming pass over the journal and
keeps, per line number, an 8-byte hash of the (task, op, body) of a done line (0: not done), plus a
Bloom filter (2 bytes per done line) of the tasks that have done lines; the per-run set of opened
tasks holds only tasks the filter lets through. Every inexactness (a hash collision, a filter
false positive) costs memory or a line sent again, never a line skipped wrongly -- except a
64-bit collision of two (task, body) pairs at the same line number. The hashes are Python's
(keyed per process): the index lives only in the process that built it.
"""

from __future__ import annotations

from array import array
from pathlib import Path

from batchsms.journal.outcomes import DONE_SKIP_CODES, JournalScan, Status, iter_journal
from batchsms.lines.bodies import Planned

MAX_LINE = 1 << 24
"""Records of line numbers above this (16.7 million) are ignored, so a garbled record cannot
make the index allocate gigabytes; such a line is not done, and is sent again."""

_BITS_PER_TASK = 16  # Bloom filter bits per done line; 2 probes: ~1.4 % false positives


def _pair(task_id: str, body_sha256: str, op: object = None) -> int:
    # a record without `op` (written before it existed) is an update's
    return hash((task_id, body_sha256, "update" if op is None else op))


class ResumeIndex:
    """The done lines of a journal, by line number; see the module docstring for the rule."""

    __slots__ = ("_filter", "_lines", "done_lines")

    def __init__(self, lines: array[int], tasks: array[int],
                 order: array[int] | None = None) -> None:
        """`lines[n]`: the (task, body) hash of line n if done, else 0; `tasks[n]`: its task's
        hash; `order[n]`: where its record is in the journal (tasks and order are only read
        here, to drop the lines done before an earlier line of their task, and to build the
        filter)."""
        done = sum(1 for slot in lines if slot)
        self._filter = seen = _Bloom(done)
        twice = _Bloom(done) if order is not None else None  # tasks with several done lines
        for slot, task in zip(lines, tasks, strict=True):
            if slot:
                if twice is not None and task in seen:
                    twice.add(task)
                seen.add(task)
        if twice is not None and order is not None:
            _drop_overtaken(lines, tasks, order, twice)
        self._lines = lines
        self.done_lines = sum(1 for slot in lines if slot)

    @classmethod
    def load(cls, path: Path, scan: JournalScan | None = None, start: int = 0) -> ResumeIndex:
        """One streaming pass over the journal at `path` from byte `start` (where the sequence
        of runs began: `changes.undo_log.journal_start`), cut lines counted in `scan`."""
        lines, tasks, order = array("q"), array("q"), array("q")
        succeeded, skipped = Status.SUCCEEDED.value, Status.SKIPPED.value
        for ordinal, record in enumerate(iter_journal(path, scan, start), 1):
            number = record.get("line")
            if type(number) is not int or not 1 <= number <= MAX_LINE:
                continue
            task_id, sha, status = record.get("task_id"), record.get("body_sha256"), \
                record.get("status")
            if isinstance(task_id, str) and isinstance(sha, str) and (
                    status == succeeded
                    or (status == skipped and record.get("error_code") in DONE_SKIP_CODES)):
                if number >= len(lines):
                    grow = bytes(8 * (number + 1 - len(lines)))
                    lines.frombytes(grow)
                    tasks.frombytes(grow)
                    order.frombytes(grow)
                lines[number] = _pair(task_id, sha, record.get("op"))
                tasks[number] = hash(task_id)
                order[number] = ordinal
            elif number < len(lines):  # the latest record of this line says: not done
                lines[number] = 0
                tasks[number] = 0
        return cls(lines, tasks, order)

    def done(self, number: int, task_id: str, body_sha256: str, op: str = "update") -> bool:
        """Whether line `number` of (task_id, op, body) is done, by the journal."""
        lines = self._lines
        if number >= len(lines) or number < 1:
            return False
        slot = lines[number]
        return slot != 0 and slot == _pair(task_id, body_sha256, op)

    def may_have_done_lines(self, task_hash: int) -> bool:
        """False only if no line of the task (by `hash(task_id)`) is done."""
        return task_hash in self._filter

    def run(self) -> ResumeRun:
        """A fresh per-run decision, for one pass over the input in file order."""
        return ResumeRun(self)


class _Bloom:
    """A Bloom filter of task hashes: 16 bits per item, 2 probes (~1.4 % false positives)."""

    __slots__ = ("_bits", "_bytes")

    def __init__(self, items: int) -> None:
        self._bits = max(64, _BITS_PER_TASK * items)
        self._bytes = bytearray((self._bits + 7) // 8)

    def add(self, task_hash: int) -> None:
        bits, bloom = self._bits, self._bytes
        for position in (task_hash % bits, (task_hash >> 32) % bits):
            bloom[position >> 3] |= 1 << (position & 7)

    def __contains__(self, task_hash: int) -> bool:
        bits, bloom = self._bits, self._bytes
        first, second = task_hash % bits, (task_hash >> 32) % bits
        return bool(bloom[first >> 3] & (1 << (first & 7))) and \
            bool(bloom[second >> 3] & (1 << (second & 7)))


def _drop_overtaken(lines: array[int], tasks: array[int], order: array[int],
                    several: _Bloom) -> None:
    """Mark not done each done line whose record is older than that of the task's previous done
    line (by line number): the earlier line was written after it. Only the lines of tasks
    that may have several done lines (`several`) are looked at, grouped by task with one sort:
    memory for them alone, for the time of the load."""
    candidates = array("q", (n for n in range(len(lines))
                             if lines[n] and tasks[n] in several))
    by_task = sorted(candidates, key=tasks.__getitem__)  # stable: line order within a task
    del candidates
    previous_task, previous_order = None, 0
    for number in by_task:
        task = tasks[number]
        if task == previous_task and order[number] < previous_order:
            lines[number] = 0  # and the later lines: the feed opens the task here
            continue
        previous_task, previous_order = task, order[number]


class ResumeRun:
    """One run's decisions: `skips(item)` for every valid line, in file order."""

    __slots__ = ("_any", "_index", "_opened")

    def __init__(self, index: ResumeIndex) -> None:
        self._index = index
        self._any = index.done_lines > 0
        # tasks that had a line sent (or not skipped) in this run, among those with done lines
        self._opened: set[int] = set()

    def skips(self, item: Planned) -> bool:
        """Whether `item` is skipped as `already_succeeded`; a line that is not opens its task,
        so that every later line of the task is sent too."""
        if not self._any:
            return False
        task = hash(item.task_id)
        index = self._index
        if not index.may_have_done_lines(task) or task in self._opened:
            return False
        if index.done(item.number, item.task_id, item.sha256, item.op):
            return True
        self._opened.add(task)
        return False

    @property
    def opened(self) -> int:
        """How many tasks with done lines were opened so far (for tests and logs)."""
        return len(self._opened)

"""The way back: the side log of `--undo-file` -> one input line per task that puts it back.

Before each write, a run with undo capture appends to the side log beside its journal what the
task had (`previous`) and what the line sets (`wrote`), both limited to the fields ShowTask can
read back (undo_log.py). `run --undo-file FILE` and `report --undo-to FILE` write `FILE`
from the side log, as ordinary input for `batchsms run`.

- **Which entries count.** Those whose write may have taken effect, as the journal tells:
  the record of the same run and line is `succeeded`, or `failed` with `verify_mismatch` (the
  write was answered 2xx) or `maybe_applied` (no readable answer), or there is no record at all
  (the run was killed with the write in flight). A record that proves nothing was applied (a
  refusal, a skip) drops its entry.
- **One line per task.** For each field, the value of the *earliest* counted entry that captured
  it: a later run that re-reads a value an earlier write already changed (a write whose answer
  was lost, a kill, a `--resume`) does not win. So the lines need no order, across runs or
  within one, and run ids are never compared. `expect` is what the *last* counted writes set
  (`wrote`, folded in side log order) for the fields of the undo body: running the undo file
  skips a task someone changed since (`conflict`, docs/reference.md §1) instead of overwriting it.
  Line: `{"task_id", "ref", "body": <values before>, "expect": <values written>}`.
- **Scope.** `run --undo-file`: the run's *sequence*, from the marker of the last run on the
  same `--out` that started without `--resume` (this run, unless it resumes) to the end.
  `report --undo-to`: every entry of the side logs beside the journals given, files in order.
- **Checked.** Each undo line's body (and `expect`) passes the schema (`schema.validate`); an
  IPv6 `migration_ip` gets `"use_ipv6": true`, without which it is refused. A task that cannot
  be put back whole is *named*, with why, in the summary (`UndoSummary.unrestorable`): a field
  that had no value before (an update cannot unset a field: the other fields are still
  restored), a body the schema refuses (no line). Never dropped without a word.
- **Memory.** Nothing is held whole. Passes over the side log and the journal: the first pass
  collects a hash per entry's task (8 bytes each) to find the tasks with several entries; the
  journal pass keeps a byte per line of the runs in scope (does its entry count); the last pass
  writes each task seen once at once and merges only the tasks with several entries.
- **Speed-limit rules** (docs/reference.md §11): the entries of speed-limit lines (``"op":
  "speed-limit"``) fold apart from the task's fields (`TaskRules`): the earliest `previous` list,
  the last `wrote` list, and the undo line is speed_rules.undo_line: the whole previous list (an
  empty one too: it clears the rules, so rules are always restorable), `expect` the list written.
- **Without a side log** (a journal written before side logs existed, or copied without it),
  the records that hold `previous` stand in for entries (no `expect`: they lack `wrote`).

Before a run with undo sends anything, `check_reversible` reads the whole input once: a line
that sets a field ShowTask does not return could not be undone, so the run is refused (exit 2,
naming the fields and lines) unless `--allow-irreversible`. Standard input cannot be read twice:
undo from `-` needs `--allow-irreversible`.
"""

from __future__ import annotations

import heapq
import os
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from batchsms.changes.undo_log import (
    is_capture,
    iter_entries,
    previous_log_path,
    sequence_start,
    uncaptured_runs,
)
from batchsms.errors import UsageError
from batchsms.journal.outcomes import Status, iter_journal
from batchsms.lines.bodies import MEMO_SIZE, checked_lines
from batchsms.lines.diff import READABLE_TREE, Tree, unreadable_paths
from batchsms.lines.reader import SPEED_LIMIT, InvalidLine
from batchsms.lines.schema import validate
from batchsms.lines.speed_rules import undo_line, validate_speed_limit

SHOWN_TASKS = 5  # tasks named in the summary
SORT_SLICE = 1 << 16  # task hashes sorted at once
MAX_LINE = 50_000_000  # a record claiming a later line is garbage: its entries count as unrecorded


@dataclass(frozen=True, slots=True)
class Unrestorable:
    """A task the undo file cannot put back whole, and why."""

    task_id: str
    why: str


@dataclass(frozen=True, slots=True)
class UndoSummary:
    """What writing an undo file did: lines written, the tasks that cannot be put back whole
    (`count`, the first few named)."""

    path: Path
    lines: int
    unrestorable: int = 0
    named: tuple[Unrestorable, ...] = ()
    uncaptured: int = 0  # runs in scope that wrote without --undo-file


@dataclass(frozen=True, slots=True)
class Source:
    """One side log from byte `start` on, and the journal whose records say which of its
    entries count. Without a side log, the journal's records with `previous` stand in."""

    journal: Path
    start: int = 0

    @property
    def log(self) -> Path:
        return previous_log_path(self.journal)


def for_run(journal: Path) -> Source:
    """`run --undo-file`: the sequence of runs the run that just ended on `journal` belongs to."""
    return Source(journal, sequence_start(previous_log_path(journal)))


def for_journals(journals: Iterable[Path]) -> list[Source]:
    """`report --undo-to`: every entry of each journal's side log, in the order given."""
    return [Source(path) for path in journals]


def undoable(record: Mapping[str, Any]) -> bool:
    """The record's write may have taken effect."""
    status = record.get("status")
    if status == Status.SUCCEEDED:
        return True
    return status == Status.FAILED and (record.get("error_code") == "verify_mismatch"
                                        or record.get("maybe_applied") is True)


# --- field values, flattened to the readable leaves (READABLE's body paths) -----------------

class _Unknown:
    """What a write set is not known (an entry without `wrote`)."""


UNKNOWN = _Unknown()


def flatten(value: Mapping[str, Any], tree: Tree = READABLE_TREE,
            prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(body path, value) of each readable leaf of a body-shaped object (arrays are leaves)."""
    for key, sub in value.items():
        node = tree.get(key)
        if node is None:
            continue
        if isinstance(node, str):
            yield f"{prefix}{key}", sub
        elif isinstance(sub, dict):
            yield from flatten(sub, node, f"{prefix}{key}.")


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The body-shaped object of (dotted path -> value)."""
    out: dict[str, Any] = {}
    for path, value in sorted(flat.items()):
        *parents, leaf = path.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


class TaskUndo:
    """One task's entries folded: the earliest value captured of each field, and what the last
    write of it set."""

    __slots__ = ("after", "before", "ref", "task_id")

    def __init__(self, task_id: str, ref: str | None) -> None:
        self.task_id = task_id
        self.ref = ref
        self.before: dict[str, Any] = {}
        self.after: dict[str, Any] = {}

    def add(self, entry: Mapping[str, Any]) -> None:
        wrote = entry.get("wrote")
        written = dict(flatten(wrote)) if isinstance(wrote, dict) else {}
        for path, value in flatten(entry["previous"]):
            self.before.setdefault(path, value)
            self.after[path] = written.get(path, UNKNOWN)

    def line(self) -> tuple[bytes | None, str | None]:
        """The undo line (None when nothing can be restored) and why the task cannot be put
        back whole (None when it can)."""
        why = []
        lost = sorted(path for path, value in self.before.items() if value is None)
        if lost:
            why.append(f"{', '.join(lost)} had no value before (an update cannot unset a "
                       "field)")
        kept = {path: value for path, value in self.before.items() if value is not None}
        if not kept:
            return None, "; ".join(why)
        body = unflatten(kept)
        expect = unflatten({path: value for path, value in self.after.items()
                            if path in kept and value is not UNKNOWN})
        refused = _refused(body, "body") or _refused(expect, "expect")
        if refused:
            return None, "; ".join([*why, f"the schema refuses the undo line: {refused}"])
        if _ipv6(body):
            body["use_ipv6"] = True  # without it, an IPv6 migration_ip is refused
        line: dict[str, Any] = {"task_id": self.task_id, "ref": self.ref, "body": body}
        if expect:
            line["expect"] = expect
        return orjson.dumps(line, option=orjson.OPT_SORT_KEYS) + b"\n", "; ".join(why) or None


class TaskRules:
    """One task's speed-limit entries folded: the earliest rule list captured, and the list the
    last write set (None when an entry did not say)."""

    __slots__ = ("after", "before", "ref", "task_id")

    def __init__(self, task_id: str, ref: str | None) -> None:
        self.task_id = task_id
        self.ref = ref
        self.before: list[dict[str, Any]] | None = None
        self.after: list[dict[str, Any]] | None = None

    def add(self, entry: Mapping[str, Any]) -> None:
        rules = entry["previous"].get("speed_limit")
        if self.before is None and isinstance(rules, list):
            self.before = rules
        wrote = entry.get("wrote")
        written = wrote.get("speed_limit") if isinstance(wrote, dict) else None
        self.after = written if isinstance(written, list) else None

    def line(self) -> tuple[bytes | None, str | None]:
        """The undo line: the whole previous list, guarded by the list written when known."""
        if self.before is None:
            return None, "its speed-limit rules were not captured as a list"
        line = undo_line(self.task_id, self.ref, self.before, self.after or [])
        if self.after is None:
            del line["expect"]
        for name in ("body", "expect"):
            if name in line:
                _, problems = validate_speed_limit(line[name], name)
                if problems:
                    refused = "; ".join(f"{p.path}: {p.message}" for p in problems)
                    return None, f"the undo line's rules are refused: {refused}"
        return orjson.dumps(line, option=orjson.OPT_SORT_KEYS) + b"\n", None


def _is_rules(entry: Mapping[str, Any]) -> bool:
    return entry.get("op") == SPEED_LIMIT


def _task_key(entry: Mapping[str, Any]) -> str:
    """Entries fold by task, and a task's rules apart from its fields."""
    task_id: str = entry["task_id"]
    return f"{task_id}\0{SPEED_LIMIT}" if _is_rules(entry) else task_id


def _ipv6(body: Mapping[str, Any]) -> bool:
    ip = body.get("migration_ip")
    return isinstance(ip, str) and ":" in ip


def _refused(body: dict[str, Any], name: str) -> str | None:
    """The schema's problems with an undo line's body-shaped object, or None (an empty
    `expect` is left out, not refused)."""
    if not body and name == "expect":
        return None
    checked = {**body, "use_ipv6": True} if _ipv6(body) else body
    _, problems = validate(checked, path=name)
    return "; ".join(f"{p.path}: {p.message}" for p in problems) or None


# --- the passes ------------------------------------------------------------------------------

def _captures(source: Source) -> Iterator[dict[str, Any]]:
    """The write entries of a source, from its start: the side log, or the journal's records
    with `previous` when there is no side log (those are already judged: `_counted`)."""
    if source.log.exists():
        yield from (e for e in iter_entries(source.log, source.start) if is_capture(e))
    else:
        yield from (r for r in iter_journal(source.journal) if is_capture(r) and undoable(r))


def _verdicts(source: Source, runs: set[str]) -> dict[str, bytearray]:
    """Per run in `runs`, a byte per line: 0 no record, 1 its write may have applied, 2 not."""
    found: dict[str, bytearray] = {}
    if not source.log.exists():
        return found
    for record in iter_journal(source.journal):
        run_id, line = record.get("run_id"), record.get("line")
        if run_id not in runs or type(line) is not int or not 0 < line <= MAX_LINE:
            continue
        seen = found.setdefault(str(run_id), bytearray())
        if len(seen) < line:
            seen.extend(bytes(line - len(seen)))
        seen[line - 1] = 1 if undoable(record) else 2
    return found


def _counts(entry: Mapping[str, Any], verdicts: Mapping[str, bytearray]) -> bool:
    seen = verdicts.get(entry["run_id"])
    line = entry["line"]
    return seen is None or line > len(seen) or seen[line - 1] != 2


def _several(sources: Sequence[Source]) -> tuple[set[int], list[set[str]]]:
    """The hashes of the tasks with several entries across `sources`, and each source's runs."""
    hashes = array("q")
    runs: list[set[str]] = []
    for source in sources:
        mine: set[str] = set()
        for entry in _captures(source):
            hashes.append(hash(_task_key(entry)))
            mine.add(entry["run_id"])
        runs.append(mine)
    # sorted in slices then merged: a sorted list of them all would be 40 bytes per entry
    slices = [array("q", sorted(hashes[i:i + SORT_SLICE]))
              for i in range(0, len(hashes), SORT_SLICE)]
    del hashes
    several: set[int] = set()
    previous: int | None = None
    for value in heapq.merge(*slices):
        if value == previous:
            several.add(value)
        previous = value
    return several, runs


def undo_lines(sources: Sequence[Source], handle: IO[bytes]) -> UndoSummary:
    """Write the undo lines of `sources` to `handle`; the summary (its path left empty)."""
    several, runs = _several(sources)
    merged: dict[str, TaskUndo | TaskRules] = {}
    lines = 0
    unrestorable: list[Unrestorable] = []
    count = 0

    def emit(task: TaskUndo | TaskRules) -> None:
        nonlocal lines, count
        line, why = task.line()
        if line is not None:
            handle.write(line)
            lines += 1
        if why is not None:
            count += 1
            if len(unrestorable) < SHOWN_TASKS:
                unrestorable.append(Unrestorable(task.task_id, why))

    for source, source_runs in zip(sources, runs, strict=True):
        verdicts = _verdicts(source, source_runs)
        for entry in _captures(source):
            if not _counts(entry, verdicts):
                continue
            task_id, key = entry["task_id"], _task_key(entry)
            ref = entry.get("ref") if isinstance(entry.get("ref"), str) else None
            fold = TaskRules if _is_rules(entry) else TaskUndo
            if hash(key) not in several:
                task: TaskUndo | TaskRules = fold(task_id, ref)
                task.add(entry)
                emit(task)
                continue
            task = merged.get(key) or merged.setdefault(key, fold(task_id, ref))
            task.add(entry)
    for task in merged.values():
        emit(task)
    uncaptured = sum(uncaptured_runs(source.log, source.start) for source in sources)
    return UndoSummary(Path(), lines, count, tuple(unrestorable), uncaptured)


def write_undo(sources: Sequence[Source], path: Path) -> UndoSummary:
    """Write the undo file of `sources` to `path`, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(3).hex()}.tmp")
    try:
        with tmp.open("xb") as handle:
            summary = undo_lines(sources, handle)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write undo file {str(path)!r}: {exc.strerror or exc}") \
            from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return UndoSummary(path, summary.lines, summary.unrestorable, summary.named,
                       summary.uncaptured)


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
        if isinstance(item, InvalidLine) or item.op == SPEED_LIMIT:
            continue  # it will not be sent; a task's rules are always read back whole
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


@dataclass(frozen=True, slots=True)
class RunUndo:
    """`run --undo-file FILE`: written at the end of the run, from its sequence (`for_run`)."""

    path: Path

    def write(self, journal: Path) -> UndoSummary:
        return write_undo([for_run(journal)], self.path)


def describe(summary: UndoSummary) -> str:
    """For stderr: the lines written, and the tasks that cannot be put back whole, named."""
    text = f"wrote {summary.lines} undo lines to {summary.path}"
    if summary.unrestorable:
        named = "; ".join(f"{u.task_id}: {u.why}" for u in summary.named)
        more = summary.unrestorable - len(summary.named)
        text += (f"; {summary.unrestorable} task{'s' * (summary.unrestorable > 1)} cannot be "
                 f"restored in full ({named}{f'; and {more} more' if more else ''})")
    if summary.uncaptured:
        text += (f"; {summary.uncaptured} run{'s' * (summary.uncaptured > 1)} on this --out "
                 "wrote without --undo-file: what they changed is not in it")
    return text

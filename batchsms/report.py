"""`batchsms report`: what outcomes journals say about each input line, across runs.

**A line across runs.** The `line` number is the line's place in its input, so records with the
same `line` in journals of runs of the same input are the same line (what `--resume` on one
`--out` assumes too). Each line's state is its *latest* record: the last whole record for that
`line` in file order, files taken in the order given (a later run appends later). One exception:
a `skipped`/`already_succeeded` or `unchanged` record (a later run passing over the line) does
not replace an earlier `succeeded` record of the line, so the figures show the send that did the
work. A record whose `task_id` differs from the line's earlier one is counted as a conflict
(outcomes of different inputs appended to one file) and reported.

**Memory.** Two streaming passes over the journals: the first finds each line's latest record
(13 bytes per input line in flat arrays: a million lines take about 13 MB), the second feeds only
those records to the figures. Cut or garbled lines (CONTRACT §10) are counted and reported.

**Done.** A line is done when its latest record is `succeeded`, or `skipped` with
`already_succeeded` or `unchanged` (`--skip-unchanged`: already as wanted). Every other line
(`failed`, `invalid`, `skipped` by `aborted`, `deadline` or `interrupted`: never sent) is not
done: it makes the exit code 1 and goes to `--failed-to`.

**Figures.** Latency percentiles are nearest-rank over the `elapsed_ms` of lines that were sent
(attempts > 0, whatever their status). "Failures" are `failed` and `invalid` lines, grouped by
(`error_code`, `error_msg`), each with its lowest line number as an example.

**`--failed-to FILE`** writes every not-done line as an input line, atomically (a temporary file
beside FILE, then a rename). With `--input ORIGINAL` (the input of those runs, gzip or not) the
original lines are copied byte for byte (line ending normalised to `\\n`), in input order, after
checking each one still holds the `task_id` its outcome names. Without it, an outcome carries no
body, so only envelopes `{"task_id", "ref"}` are written (for `run --set/--patch`), in the order
of their latest records. Line numbers of that file start again at 1: re-run it with its own
`--out`, or fix the original input and re-run it with `--resume` on the same `--out`.

**`--json`** prints one object with these keys: `files`, `records` (whole records read),
`cut_lines`, `runs` (distinct run ids), `lines` (distinct input lines), `task_id_conflicts`,
`done`, `not_done`, `by_status` (the four run statuses always present), `by_error_code`,
`latency_ms` (`lines`, `p50`, `p90`, `p99`, `max`; null without sent lines), `attempts`
(attempts as a string -> lines), `slowest` and `top_failures` (lists, at most `--top` items:
`line`, `task_id`, `ref`, `status`, `attempts`, `elapsed_ms` / `error_code`, `error_msg`,
`count`, `example_line`), and `failed_to` (null, or `path`, `source` = `input`|`envelopes`,
`lines` written, `missing` = not-done lines that could not be copied from `--input`).

**`--undo-to FILE`** writes the way back from the records that hold `previous` (runs with
`--undo-file`): see undo.py for which records, the order and what cannot be restored.

Exit codes: 0 every line done, 1 some line not done, 2 unreadable or unusable files (UsageError).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import os
import sys
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from batchsms.errors import UsageError
from batchsms.outcomes import DONE_SKIP_CODES, JournalScan, Status, iter_journal
from batchsms.previous_log import orphans, with_orphans
from batchsms.records import iter_raw_lines, open_input, parse_line
from batchsms.undo import describe as describe_undo
from batchsms.undo import write_undo

_ABSENT, _SUCCEEDED, _RESUMED, _NOT_DONE = 0, 1, 2, 3
_DENSE_FLOOR = 1 << 20  # line numbers up to this (or 4x the records seen) live in flat arrays
_RUN_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.INVALID, Status.SKIPPED)
_FAILURES = frozenset({Status.FAILED.value, Status.INVALID.value})


def _flag(record: dict[str, Any]) -> int:
    status = record.get("status")
    if status == Status.SUCCEEDED:
        return _SUCCEEDED
    if status == Status.SKIPPED and record.get("error_code") in DONE_SKIP_CODES:
        return _RESUMED
    return _NOT_DONE


def _crc(task_id: object) -> int:
    """A 32-bit fingerprint of a task id; 0 means "not known"."""
    return (zlib.crc32(task_id.encode()) or 1) if isinstance(task_id, str) else 0


class _LineIndex:
    """Per input line: the ordinal of its latest record, its done-flag, its task id's CRC.

    Line numbers are dense in a journal, so flat arrays indexed by `line - 1` hold them; a
    number far beyond the records seen (a filtered journal) goes to a dict until the arrays
    grow over it.
    """

    def __init__(self) -> None:
        self._ordinal = array("q")
        self._flag = bytearray()
        self._crc = array("I")
        self._far: dict[int, tuple[int, int, int]] = {}
        self.records = 0
        self.lines = 0
        self.conflicts = 0

    def get(self, line: int) -> tuple[int, int, int] | None:
        if line <= len(self._flag):
            i = line - 1
            return None if self._flag[i] == _ABSENT else \
                (self._ordinal[i], self._flag[i], self._crc[i])
        return self._far.get(line)

    def flag(self, line: int) -> int:
        entry = self.get(line)
        return _ABSENT if entry is None else entry[1]

    def add(self, ordinal: int, line: int, record: dict[str, Any]) -> None:
        """Take `record` (the journal's `ordinal`-th) as the line's latest, unless the rule of
        the module docstring keeps an earlier `succeeded`."""
        self.records += 1
        flag, crc = _flag(record), _crc(record.get("task_id"))
        old = self.get(line)
        if old is None:
            self.lines += 1
        else:
            if crc and old[2] and crc != old[2]:
                self.conflicts += 1
            if flag == _RESUMED and old[1] == _SUCCEEDED:
                return
            crc = crc or old[2]
        self._put(line, ordinal, flag, crc)

    def _put(self, line: int, ordinal: int, flag: int, crc: int) -> None:
        size = len(self._flag)
        bound = max(_DENSE_FLOOR, 4 * self.records)
        if size < line <= bound:
            self._grow(max(line, min(2 * size, bound)))
        if line <= len(self._flag):
            i = line - 1
            self._ordinal[i], self._flag[i], self._crc[i] = ordinal, flag, crc
        else:
            self._far[line] = (ordinal, flag, crc)

    def _grow(self, size: int) -> None:
        more = size - len(self._flag)
        self._ordinal.extend(array("q", [-1]) * more)
        self._flag.extend(bytes(more))
        self._crc.extend(array("I", [0]) * more)
        for line in [n for n in self._far if n <= size]:
            i = line - 1
            self._ordinal[i], self._flag[i], self._crc[i] = self._far.pop(line)


@dataclass
class _Journals:
    """The journals read in one fixed order, so both passes number records alike."""

    paths: list[Path]
    scan: JournalScan = field(default_factory=JournalScan)
    garbled: int = 0
    ends: list[int] = field(default_factory=list)  # records per file in the first pass
    runs: set[str] = field(default_factory=set)

    def records(self) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """(ordinal, line, record) for every usable record; the first call fixes `ends`."""
        first = not self.ends
        ordinal = 0
        for i, path in enumerate(self.paths):
            n = 0
            for record in iter_journal(path, self.scan if first else None):
                if not first and n >= self.ends[i]:
                    break  # appended while we read: not part of this report
                line = record.get("line")
                if type(line) is not int or line < 1:
                    self.garbled += first
                    continue
                if first:
                    run_id = record.get("run_id")
                    if isinstance(run_id, str):
                        self.runs.add(run_id)
                yield ordinal, line, record
                ordinal += 1
                n += 1
            if first:
                self.ends.append(n)


@dataclass
class _Figures:
    """Everything the report shows, fed with each line's latest record."""

    top: int
    by_status: Counter[str] = field(default_factory=Counter)
    by_error: Counter[str] = field(default_factory=Counter)
    latency: Counter[int] = field(default_factory=Counter)
    attempts: Counter[int] = field(default_factory=Counter)
    slowest: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)
    failures: dict[tuple[str | None, str | None], list[int]] = field(default_factory=dict)
    done: int = 0

    def add(self, line: int, record: dict[str, Any], done: bool) -> None:
        status = str(record.get("status"))
        self.by_status[status] += 1
        self.done += done
        code, msg = record.get("error_code"), record.get("error_msg")
        if isinstance(code, str):
            self.by_error[code] += 1
        attempts = record.get("attempts")
        attempts = attempts if type(attempts) is int else 0
        self.attempts[attempts] += 1
        elapsed = record.get("elapsed_ms")
        if attempts > 0 and type(elapsed) is int:
            self.latency[elapsed] += 1
            item = (elapsed, -line, _slow_entry(line, record, attempts, elapsed))
            if len(self.slowest) < self.top:
                heapq.heappush(self.slowest, item)
            elif self.top and item[:2] > self.slowest[0][:2]:
                heapq.heapreplace(self.slowest, item)
        if status in _FAILURES:
            key = (code if isinstance(code, str) else None, msg if isinstance(msg, str) else None)
            seen = self.failures.setdefault(key, [0, line])
            seen[0] += 1
            seen[1] = min(seen[1], line)


def _slow_entry(line: int, record: dict[str, Any], attempts: int, elapsed: int) -> dict[str, Any]:
    return {"line": line, "task_id": record.get("task_id"), "ref": record.get("ref"),
            "status": record.get("status"), "attempts": attempts, "elapsed_ms": elapsed}


def percentile(histogram: Counter[int], p: int) -> int | None:
    """Nearest-rank percentile of the values counted in `histogram`; None when it is empty."""
    total = histogram.total()
    if total == 0:
        return None
    rank = max(1, -(-total * p // 100))  # ceil(total * p / 100) in integers: exact ranks
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    raise AssertionError("unreachable: ranks never exceed the total")


@contextmanager
def _atomic_output(path: Path) -> Iterator[IO[bytes]]:
    """A file that appears at `path` whole, or not at all."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(3).hex()}.tmp")
    try:
        with tmp.open("xb") as handle:
            yield handle
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write --failed-to {str(path)!r}: {exc.strerror or exc}") \
            from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _copy_from_input(source: str, index: _LineIndex, out: IO[bytes]) -> int:
    """Copy every not-done line of `source` verbatim to `out`; the number copied."""
    stream = open_input(source)
    copied = 0
    try:
        for number, raw, _error in iter_raw_lines(stream):
            entry = index.get(number)
            if entry is None or entry[1] != _NOT_DONE or raw is None:
                continue
            parsed = parse_line(number, raw)
            crc = _crc(parsed.task_id if parsed is not None else None)
            if crc and entry[2] and crc != entry[2]:
                raise UsageError(f"line {number} of --input {source!r} does not hold the "
                                 "task_id its outcome names: is it the input of these runs?")
            out.write(raw.rstrip(b"\r\n") + b"\n")
            copied += 1
    finally:
        if source != "-":
            stream.close()
    return copied


def summarize(paths: Sequence[Path], *, top: int = 10, failed_to: Path | None = None,
              source: str | None = None) -> dict[str, Any]:
    """Read the journals (two passes) and return the report as the `--json` object."""
    journals = _Journals(list(paths))
    index = _LineIndex()
    for ordinal, line, record in journals.records():
        index.add(ordinal, line, record)
    if index.records == 0 and journals.scan.cut_lines + journals.garbled:
        names = ", ".join(map(str, paths))
        raise UsageError(f"no whole outcome record in {names}: is it an outcomes file?")
    figures = _Figures(top)
    failed: dict[str, Any] | None = None
    with _atomic_output(failed_to) if failed_to is not None else _no_output() as out:
        envelope = _envelope_writer(out) if out is not None and source is None else None
        written = 0
        for ordinal, line, record in journals.records():
            entry = index.get(line)
            if entry is None or entry[0] != ordinal:
                continue
            figures.add(line, record, entry[1] != _NOT_DONE)
            if envelope is not None and entry[1] == _NOT_DONE:
                envelope(record)
                written += 1
        if out is not None and source is not None:
            written = _copy_from_input(source, index, out)
    not_done = index.lines - figures.done
    if failed_to is not None:
        failed = {"path": str(failed_to), "source": "envelopes" if source is None else "input",
                  "lines": written, "missing": not_done - written}
    histogram = figures.latency
    return {
        "files": [str(p) for p in paths],
        "records": index.records,
        "cut_lines": journals.scan.cut_lines + journals.garbled,
        "runs": len(journals.runs),
        "lines": index.lines,
        "task_id_conflicts": index.conflicts,
        "done": figures.done,
        "not_done": not_done,
        "by_status": {**{s.value: 0 for s in _RUN_STATUSES}, **figures.by_status},
        "by_error_code": dict(sorted(figures.by_error.items(), key=lambda kv: (-kv[1], kv[0]))),
        "latency_ms": {"lines": histogram.total(), "p50": percentile(histogram, 50),
                       "p90": percentile(histogram, 90), "p99": percentile(histogram, 99),
                       "max": max(histogram, default=None)},
        "attempts": {str(k): v for k, v in sorted(figures.attempts.items())},
        "slowest": [entry for *_, entry in sorted(figures.slowest, key=lambda t: t[:2],
                                                  reverse=True)],
        "top_failures": [
            {"error_code": code, "error_msg": msg, "count": n, "example_line": example}
            for (code, msg), (n, example) in sorted(
                figures.failures.items(), key=lambda kv: (-kv[1][0], kv[1][1]))[:top]],
        "failed_to": failed,
    }


@contextmanager
def _no_output() -> Iterator[None]:
    yield None


def _envelope_writer(out: IO[bytes]) -> Callable[[dict[str, Any]], None]:
    def write(record: dict[str, Any]) -> None:
        out.write(orjson.dumps({"task_id": record.get("task_id"), "ref": record.get("ref")})
                  + b"\n")
    return write


def format_text(report: dict[str, Any]) -> Iterator[str]:
    """The report for people, one line at a time."""
    cut = report["cut_lines"]
    yield (f"{', '.join(report['files'])}: {report['records']} records, {report['runs']} runs, "
           f"{cut} cut line{'s' * (cut != 1)} skipped")
    statuses = ", ".join(f"{n} {s}" for s, n in report["by_status"].items())
    yield f"{report['lines']} lines (latest record each): {statuses}"
    yield f"done: {report['done']}, not done: {report['not_done']}"
    if report["task_id_conflicts"]:
        yield (f"warning: {report['task_id_conflicts']} records name another task_id than an "
               "earlier record of the same line: outcomes of different inputs in one file?")
    if report["by_error_code"]:
        yield "error codes:"
        yield from (f"  {n:>8}  {code}" for code, n in report["by_error_code"].items())
    lat = report["latency_ms"]
    if lat["lines"]:
        yield (f"latency of {lat['lines']} lines sent (ms): p50 {lat['p50']}, p90 {lat['p90']}, "
               f"p99 {lat['p99']}, max {lat['max']}")
    yield "attempts (attempts: lines): " + ", ".join(
        f"{k}: {v}" for k, v in report["attempts"].items())
    if report["slowest"]:
        yield "slowest:"
        yield from (f"  line {s['line']}  {s['task_id']}  {s['elapsed_ms']} ms  ({s['status']}, "
                    f"{s['attempts']} attempts)" for s in report["slowest"])
    if report["top_failures"]:
        yield "most common failures:"
        yield from (f"  {f['count']:>8}  {f['error_code']}  {f['error_msg']}  "
                    f"(e.g. line {f['example_line']})" for f in report["top_failures"])


def add_report_parser(subparsers: Any) -> None:
    """Add `report` to the CLI's subparsers."""
    p = subparsers.add_parser("report", help="summary of outcomes files, latest record per line")
    p.add_argument("outcomes", nargs="+", type=Path, metavar="OUTCOMES",
                   help="outcomes file(s), oldest first")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--top", type=int, default=10, help="slowest lines and failures shown [10]")
    p.add_argument("--failed-to", type=Path, metavar="FILE",
                   help="write the lines not done (failed, invalid, never sent) as an input file; "
                        "its line numbers start at 1, so re-run it with its own --out")
    p.add_argument("--input", metavar="ORIGINAL",
                   help="the runs' input (may be gzip): --failed-to copies its lines verbatim")
    p.add_argument("--undo-to", type=Path, metavar="FILE",
                   help="write input lines restoring the values recorded before each write "
                        "(runs with --undo-file), in reverse order of application")


def _checked(args: argparse.Namespace) -> list[Path]:
    if args.top < 0:
        raise UsageError(f"--top must be 0 or more, got {args.top}")
    if args.input is not None and args.failed_to is None:
        raise UsageError("--input is only used with --failed-to")
    paths: list[Path] = []
    for path in args.outcomes:
        if not path.is_file() or not os.access(path, os.R_OK):
            raise UsageError(f"cannot read outcomes {str(path)!r}")
        if path.resolve() not in {p.resolve() for p in paths}:
            paths.append(path)
    keep = {p.resolve() for p in paths}
    if args.input not in (None, "-"):
        keep.add(Path(args.input).resolve())
    for option, target in (("--failed-to", args.failed_to), ("--undo-to", args.undo_to)):
        if target is not None and target.resolve() in keep:
            raise UsageError(f"{option} {str(target)!r} would overwrite a file this report reads")
    if args.failed_to is not None and args.undo_to is not None \
            and args.failed_to.resolve() == args.undo_to.resolve():
        raise UsageError("--failed-to and --undo-to must be different files")
    return paths


def run_report(args: argparse.Namespace, *, stdout: IO[str] | None = None,
               stderr: IO[str] | None = None) -> int:
    """`batchsms report`: print the report; 0 when every line is done, else 1."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    paths = _checked(args)
    report = summarize(paths, top=args.top, failed_to=args.failed_to, source=args.input)
    if args.json:
        stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        stdout.write("\n".join(format_text(report)) + "\n")
    if args.undo_to is not None:
        records = itertools.chain.from_iterable(map(iter_journal, paths))
        found = [o for path in paths for o in orphans(path)]
        summary = write_undo(with_orphans(records, found), args.undo_to)
        print(describe_undo(summary), file=stderr)
    failed = report["failed_to"]
    if failed is not None:
        what = "original lines" if failed["source"] == "input" else \
            "envelopes without body (no --input given: re-run with --set/--patch)"
        print(f"wrote {failed['lines']} {what} to {failed['path']}", file=stderr)
        if failed["missing"]:
            print(f"warning: {failed['missing']} lines not done could not be copied from "
                  "--input (too long, or beyond its end: is it the input of these runs?)",
                  file=stderr)
    return 0 if report["not_done"] == 0 else 1

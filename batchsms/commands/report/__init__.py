"""`batchsms report`: what outcomes journals say about each line, across runs.

**What a line is.** The same as for `--resume`: a line is its task and its body, keyed by
(`task_id`, `body_sha256`), not by its line number, so an input that changes from night to night
(lines added, removed, reordered) is still judged right. A record without a body hash (an
`invalid` line: nothing was planned) is keyed by its line number and task id. Each line's state is
its *latest* record: the last whole record for that key in file order, files taken in the order
given (a later run appends later). One exception: a `skipped`/`already_succeeded` or
`unchanged` record (a later run passing over the line) does not replace an earlier `succeeded`
record, so the figures show the send that did the work. A line keyed by its number (invalid) is
retired when a later run has a record of the same task with a body: the line was fixed and sent.

**With `--input ORIGINAL`** (the runs' input, gzip or not, with the `--set`/`--patch` the runs
used), the lines are that file's non-blank lines: each is planned as `run` plans it, and it is
done only when the latest record of its (task, body) is; a line with no record at all (a crash,
a kill, a disk full cut the run short) is not done, and neither is a line that is invalid. When
not one line of the input has a record, the input (or its `--set`/`--patch`) is not the runs'
one: refused. Without `--input`, the lines are the keys the journals hold.

**Memory.** Two streaming passes over the journals: the first finds each key's latest record
(a dict of 16-byte keys: about 150 bytes per line), the second feeds only those records to the
figures. Cut or garbled lines (CONTRACT §10) are counted and reported.

**Done.** A line is done when its latest record is `succeeded`, or `skipped` with
`already_succeeded` or `unchanged` (`--skip-unchanged`: already as wanted). Every other line
(`failed`, `invalid`, `skipped` by `aborted`, `deadline` or `interrupted`: never sent; with
`--input`, no record) is not done: it makes the exit code 1 and goes to `--failed-to`.

**Figures.** Latency percentiles are nearest-rank over the `elapsed_ms` of lines that were sent
(attempts > 0, whatever their status). "Failures" are `failed` and `invalid` lines, grouped by
`error_code`, each group with the message and line number of its lowest-numbered line as an
example.

**`--failed-to FILE`** writes every not-done line as an input line, atomically (a temporary file
beside FILE, then a rename). With `--input` the original lines are copied byte for byte (line
ending normalised to `\\n`), in input order. Without it, an outcome carries no body, so only
envelopes `{"task_id", "ref"}` are written (for `run --set/--patch`), in the order of their
latest records. Because a line is its task and body, the file is re-run with the same `--out`
(and the same `--set`/`--patch`): its records then count for the lines of the original input.

**`--json`** prints one object with these keys: `files`, `records` (whole records read),
`cut_lines`, `runs` (distinct run ids), `lines`, `no_record` (lines of `--input` without a
record; 0 without `--input`), `done`, `not_done`, `by_status` (the four run statuses always
present), `by_error_code`, `latency_ms` (`lines`, `p50`, `p90`, `p99`, `max`; null without sent
lines), `attempts` (attempts as a string -> lines), `slowest` and `top_failures` (lists, at most
`--top` items: `line`, `task_id`, `ref`, `status`, `attempts`, `elapsed_ms` / `error_code`,
`error_msg` (an example), `count`, `example_line`), and `failed_to` (null, or `path`, `source` =
`input`|`envelopes`, `lines` written, `missing` = not-done lines that could not be copied).

**`--undo-to FILE`** writes the way back from the records that hold `previous` (runs with
`--undo-file`) and the side logs beside the journals: see undo.py for which records, the order
and what cannot be restored.

Exit codes: 0 every line done, 1 some line not done, 2 unreadable or unusable files (UsageError).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from batchsms.errors import UsageError
from batchsms.outcomes import DONE_SKIP_CODES, JournalScan, Status, iter_journal, resume_key
from batchsms.outputs import check_output
from batchsms.plan import Planner
from batchsms.previous_log import orphans, with_orphans
from batchsms.records import InvalidLine, iter_raw_lines, open_input, parse_line
from batchsms.undo import describe as describe_undo
from batchsms.undo import write_undo

_SUCCEEDED, _RESUMED, _NOT_DONE = 1, 2, 3
_FLAG_BITS = 2  # an index entry is (ordinal << _FLAG_BITS) | flag: one int per line
_RUN_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.INVALID, Status.SKIPPED)
_FAILURES = frozenset({Status.FAILED.value, Status.INVALID.value})


def _flag(record: dict[str, Any]) -> int:
    status = record.get("status")
    if status == Status.SUCCEEDED:
        return _SUCCEEDED
    if status == Status.SKIPPED and record.get("error_code") in DONE_SKIP_CODES:
        return _RESUMED
    return _NOT_DONE


def record_key(record: dict[str, Any]) -> bytes | None:
    """What line a record is of: (task_id, body_sha256) as `--resume` keys it; a record with no
    body hash (invalid) by its line number and task id; None when it has neither."""
    task_id, sha = record.get("task_id"), record.get("body_sha256")
    if isinstance(task_id, str) and isinstance(sha, str):
        return resume_key(task_id, sha)
    line = record.get("line")
    if type(line) is not int or line < 1:
        return None
    return b"line\0%d\0" % line + (task_id.encode() if isinstance(task_id, str) else b"")


class _LineIndex:
    """Per key: the ordinal of its latest record and its done-flag, packed in one int."""

    def __init__(self) -> None:
        self._entries: dict[bytes, int] = {}
        self.records = 0

    @property
    def lines(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> tuple[int, int] | None:
        entry = self._entries.get(key)
        return None if entry is None else (entry >> _FLAG_BITS, entry & 3)

    def add(self, ordinal: int, key: bytes, record: dict[str, Any]) -> None:
        """Take `record` (the journals' `ordinal`-th) as the key's latest, unless the rule of
        the module docstring keeps an earlier `succeeded`."""
        self.records += 1
        flag = _flag(record)
        old = self._entries.get(key)
        if flag == _RESUMED and old is not None and old & 3 == _SUCCEEDED:
            return
        self._entries[key] = (ordinal << _FLAG_BITS) | flag

    def retire(self, key: bytes) -> None:
        del self._entries[key]

    def latest(self) -> Iterator[tuple[bytes, int, int]]:
        for key, entry in self._entries.items():
            yield key, entry >> _FLAG_BITS, entry & 3


@dataclass
class _Journals:
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
class _Figures:
    """Everything the report shows, fed with each line's latest record."""

    top: int
    by_status: Counter[str] = field(default_factory=Counter)
    by_error: Counter[str] = field(default_factory=Counter)
    latency: Counter[int] = field(default_factory=Counter)
    attempts: Counter[int] = field(default_factory=Counter)
    slowest: list[tuple[int, int, int, dict[str, Any]]] = field(default_factory=list)
    # error_code -> [count, example line, example message]
    failures: dict[str | None, list[Any]] = field(default_factory=dict)

    def add(self, record: dict[str, Any]) -> None:
        line = record["line"]
        status = str(record.get("status"))
        self.by_status[status] += 1
        code, msg = record.get("error_code"), record.get("error_msg")
        if isinstance(code, str):
            self.by_error[code] += 1
        attempts = record.get("attempts")
        attempts = attempts if type(attempts) is int else 0
        self.attempts[attempts] += 1
        elapsed = record.get("elapsed_ms")
        if attempts > 0 and type(elapsed) is int:
            self.latency[elapsed] += 1
            # line numbers repeat across runs of changed inputs: the count breaks ties
            item = (elapsed, -line, -self.attempts.total(),
                    _slow_entry(line, record, attempts, elapsed))
            if len(self.slowest) < self.top:
                heapq.heappush(self.slowest, item)
            elif self.top and item[:3] > self.slowest[0][:3]:
                heapq.heapreplace(self.slowest, item)
        if status in _FAILURES:
            seen = self.failures.setdefault(code if isinstance(code, str) else None,
                                            [0, line, None])
            seen[0] += 1
            if line <= seen[1]:
                seen[1], seen[2] = line, msg if isinstance(msg, str) else None


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


@dataclass
class _Retirement:
    """Invalid lines (keyed by number) that a later run fixed: it sent the same task with a
    body. Memory only for the tasks of invalid lines."""

    runs: dict[str, int] = field(default_factory=dict)  # run id -> order of first appearance
    hashless: dict[bytes, tuple[str, int]] = field(default_factory=dict)  # key -> task, run
    sent: dict[str, int] = field(default_factory=dict)  # such a task -> last run with a body

    @classmethod
    def index(cls, journals: _Journals, index: _LineIndex) -> None:
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


@contextmanager
def _atomic_output(path: Path) -> Iterator[IO[bytes]]:
    """A file that appears at `path` whole, or not at all."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(3).hex()}.tmp")
    try:
        with tmp.open("xb") as handle:
            yield handle
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # a read-only directory refuses this too
            tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write --failed-to {str(path)!r}: {exc.strerror or exc}") \
            from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def _input_lines(source: str, defaults: Mapping[str, Any]
                 ) -> Iterator[tuple[int, bytes | None, bytes | None]]:
    """(number, raw bytes or None if too long, key or None if invalid) per non-blank line of
    `source`, planned as `run` plans it with the same defaults."""
    planner = Planner(defaults)
    stream = open_input(source)
    try:
        for number, raw, _error in iter_raw_lines(stream):
            if raw is None:
                yield number, None, None
                continue
            parsed = parse_line(number, raw)
            if parsed is None:
                continue
            planned = parsed if isinstance(parsed, InvalidLine) else planner.plan(parsed)
            yield number, raw, None if isinstance(planned, InvalidLine) else \
                resume_key(planned.task_id, planned.sha256)
    finally:
        if source != "-":
            stream.close()


@dataclass
class _Judged:
    """The lines as judged: how many, how many done, which records the figures take."""

    lines: int = 0
    done: int = 0
    no_record: int = 0
    written: int = 0
    missing: int = 0


def _judge_input(source: str, defaults: Mapping[str, Any], index: _LineIndex,
                 out: IO[bytes] | None, wanted: set[bytes]) -> _Judged:
    """Judge every line of `--input`; copy the not-done ones to `out`; fill `wanted` with the
    keys whose latest records the figures show."""
    judged = _Judged()
    for _number, raw, key in _input_lines(source, defaults):
        judged.lines += 1
        entry = None if key is None else index.get(key)
        if key is not None and entry is not None:
            wanted.add(key)
            if entry[1] != _NOT_DONE:
                judged.done += 1
                continue
        elif key is not None:
            judged.no_record += 1
        if out is not None:
            if raw is None:
                judged.missing += 1
            else:
                out.write(raw.rstrip(b"\r\n") + b"\n")
                judged.written += 1
    if judged.lines and not wanted and index.lines:
        raise UsageError(f"no line of --input {source!r} has a record in these outcomes: is "
                         "it the input of these runs, with the same --set/--patch?")
    return judged


def summarize(paths: Sequence[Path], *, top: int = 10, failed_to: Path | None = None,
              source: str | None = None,
              defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read the journals (two passes) and return the report as the `--json` object."""
    journals = _Journals(list(paths))
    index = _LineIndex()
    _Retirement.index(journals, index)
    if index.records == 0 and journals.scan.cut_lines + journals.garbled:
        names = ", ".join(map(str, paths))
        raise UsageError(f"no whole outcome record in {names}: is it an outcomes file?")
    figures = _Figures(top)
    judged = _Judged()
    with _atomic_output(failed_to) if failed_to is not None else _no_output() as out:
        wanted: set[bytes] | None = None
        if source is not None:
            wanted = set()
            judged = _judge_input(source, defaults or {}, index, out, wanted)
        else:
            judged.lines = index.lines
            judged.done = sum(flag != _NOT_DONE for _, _, flag in index.latest())
        envelope = _envelope_writer(out) if out is not None and source is None else None
        for ordinal, key, record in journals.records():
            entry = index.get(key)
            if entry is None or entry[0] != ordinal or (wanted is not None and
                                                        key not in wanted):
                continue
            figures.add(record)
            if envelope is not None and entry[1] == _NOT_DONE:
                envelope(record)
                judged.written += 1
    failed = None if failed_to is None else {
        "path": str(failed_to), "source": "envelopes" if source is None else "input",
        "lines": judged.written, "missing": judged.missing}
    histogram = figures.latency
    return {
        "files": [str(p) for p in paths],
        "records": index.records,
        "cut_lines": journals.scan.cut_lines + journals.garbled,
        "runs": len(journals.runs),
        "lines": judged.lines,
        "no_record": judged.no_record,
        "done": judged.done,
        "not_done": judged.lines - judged.done,
        "by_status": {**{s.value: 0 for s in _RUN_STATUSES}, **figures.by_status},
        "by_error_code": dict(sorted(figures.by_error.items(), key=lambda kv: (-kv[1], kv[0]))),
        "latency_ms": {"lines": histogram.total(), "p50": percentile(histogram, 50),
                       "p90": percentile(histogram, 90), "p99": percentile(histogram, 99),
                       "max": max(histogram, default=None)},
        "attempts": {str(k): v for k, v in sorted(figures.attempts.items())},
        "slowest": [entry for *_, entry in sorted(figures.slowest, key=lambda t: t[:3],
                                                  reverse=True)],
        "top_failures": [
            {"error_code": code, "error_msg": msg, "count": n, "example_line": example}
            for code, (n, example, msg) in sorted(
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
    no_record = f"; {report['no_record']} with no record" if report["no_record"] else ""
    yield f"{report['lines']} lines (latest record each): {statuses}{no_record}"
    yield f"done: {report['done']}, not done: {report['not_done']}"
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
        yield "most common failures (by error code, with an example):"
        yield from (f"  {f['count']:>8}  {f['error_code']}  e.g. line {f['example_line']}: "
                    f"{f['error_msg']}" for f in report["top_failures"])


@dataclass(frozen=True, slots=True)
class ReportConfig:
    """Everything `report` was asked to do (the CLI's options)."""

    outcomes: tuple[Path, ...]
    json: bool = False
    top: int = 10
    failed_to: Path | None = None
    input: str | None = None  # the runs' input, `--input ORIGINAL`
    undo_to: Path | None = None
    patch: str | None = None  # read by the CLI into `defaults`; named here to be checked
    defaults: Mapping[str, Any] = field(default_factory=dict)


def _checked(args: ReportConfig) -> list[Path]:
    if args.top < 0:
        raise UsageError(f"--top must be 0 or more, got {args.top}")
    paths: list[Path] = []
    for path in args.outcomes:
        if not path.is_file() or not os.access(path, os.R_OK):
            raise UsageError(f"cannot read outcomes {str(path)!r}")
        if path.resolve() not in {p.resolve() for p in paths}:
            paths.append(path)
    inputs = [*(("an outcomes file", p) for p in paths), ("--input", args.input),
              ("--patch", args.patch)]
    check_output("--failed-to", args.failed_to, inputs)
    check_output("--undo-to", args.undo_to, [*inputs, ("--failed-to", args.failed_to)])
    if args.undo_to is not None and args.failed_to is not None \
            and args.undo_to.resolve() == args.failed_to.resolve():
        raise UsageError("--failed-to and --undo-to must be different files")
    return paths


def run_report(args: ReportConfig, *, stdout: IO[str] | None = None,
               stderr: IO[str] | None = None) -> int:
    """`batchsms report`: print the report; 0 when every line is done, else 1."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    paths = _checked(args)
    report = summarize(paths, top=args.top, failed_to=args.failed_to, source=args.input,
                       defaults=args.defaults)
    if args.json:
        stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        stdout.write("\n".join(format_text(report)) + "\n")
    if args.undo_to is not None:
        records = itertools.chain.from_iterable(map(iter_journal, paths))
        found = [o for path in paths for o in orphans(path)]
        print(describe_undo(write_undo(with_orphans(records, found), args.undo_to)),
              file=stderr)
    failed = report["failed_to"]
    if failed is not None:
        what = "original lines" if failed["source"] == "input" else \
            "envelopes without body (no --input given: re-run with --set/--patch)"
        print(f"wrote {failed['lines']} {what} to {failed['path']}", file=stderr)
        if failed["missing"]:
            print(f"warning: {failed['missing']} lines not done could not be copied from "
                  "--input (longer than the 1 MiB line limit)", file=stderr)
    return 0 if report["not_done"] == 0 else 1

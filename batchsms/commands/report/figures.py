"""`report`'s figures, fed with each line's latest record, and the `--json` object they make
(the keys are listed in the package docstring). `gather` returns both: `--html` draws from the
figures what the object does not hold (outcomes over time, the lines not done by code with
examples), from the same second pass."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchsms.commands.report.failed import (
    Judged,
    atomic_output,
    envelope_writer,
    judge_input,
    no_output,
)
from batchsms.commands.report.index import Done, Journals, LineIndex, Retirement, done_of
from batchsms.commands.report.over_time import OverTime
from batchsms.errors import UsageError
from batchsms.journal.outcomes import Status

_RUN_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.INVALID, Status.SKIPPED)
_FAILURES = frozenset({Status.FAILED.value, Status.INVALID.value})
EXAMPLES = 3
"""Example lines kept per error code of the lines not done: the lowest-numbered."""


@dataclass
class Problem:
    """The lines not done with one error code: how many, by status, and a few examples."""

    count: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    # (-line, order, example): a max-heap on the line number, at most EXAMPLES long
    examples: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)

    def add(self, line: int, status: str, record: dict[str, Any], order: int) -> None:
        self.count += 1
        self.by_status[status] += 1
        full = len(self.examples) >= EXAMPLES
        if full and (-line, -order) <= self.examples[0][:2]:
            return
        item = (-line, -order, {"line": line, "task_id": record.get("task_id"),
                                "ref": record.get("ref"), "status": status,
                                "http_status": record.get("http_status"),
                                "error_msg": record.get("error_msg")})
        (heapq.heapreplace if full else heapq.heappush)(self.examples, item)

    def lowest(self) -> list[dict[str, Any]]:
        """The examples, lowest line first."""
        return [example for *_, example in sorted(self.examples, key=lambda t: t[:2],
                                                  reverse=True)]


@dataclass
class Figures:
    """Everything the report shows, fed with each line's latest record."""

    top: int
    by_status: Counter[str] = field(default_factory=Counter)
    by_error: Counter[str] = field(default_factory=Counter)
    latency: Counter[int] = field(default_factory=Counter)
    attempts: Counter[int] = field(default_factory=Counter)
    slowest: list[tuple[int, int, int, dict[str, Any]]] = field(default_factory=list)
    # error_code -> [count, example line, example message]
    failures: dict[str | None, list[Any]] = field(default_factory=dict)
    over_time: OverTime = field(default_factory=OverTime)
    problems: dict[str | None, Problem] = field(default_factory=dict)  # not done, by code

    def add(self, record: dict[str, Any]) -> None:
        line = record["line"]
        status = str(record.get("status"))
        self.by_status[status] += 1
        self.over_time.add(record.get("finished_at"), status)
        code, msg = record.get("error_code"), record.get("error_msg")
        if isinstance(code, str):
            self.by_error[code] += 1
        attempts = record.get("attempts")
        attempts = attempts if type(attempts) is int else 0
        self.attempts[attempts] += 1
        elapsed = record.get("elapsed_ms")
        reads = record.get("reads")  # a line that only read (skipped unchanged) took time too
        if (attempts > 0 or (type(reads) is int and reads > 0)) and type(elapsed) is int:
            self.latency[elapsed] += 1
            # line numbers repeat across runs of changed inputs: the count breaks ties
            item = (elapsed, -line, -self.attempts.total(),
                    _slow_entry(line, record, attempts, elapsed))
            if len(self.slowest) < self.top:
                heapq.heappush(self.slowest, item)
            elif self.top and item[:3] > self.slowest[0][:3]:
                heapq.heapreplace(self.slowest, item)
        if done_of(record) is Done.NOT_DONE:
            self.problems.setdefault(code if isinstance(code, str) else None, Problem()).add(
                line, status, record, self.attempts.total())
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


@dataclass(frozen=True, slots=True)
class Summary:
    """The report as the `--json` object, and the figures it was made from."""

    report: dict[str, Any]
    figures: Figures


def summarize(paths: Sequence[Path], *, top: int = 10, failed_to: Path | None = None,
              source: str | None = None,
              defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read the journals (two passes) and return the report as the `--json` object."""
    return gather(paths, top=top, failed_to=failed_to, source=source, defaults=defaults).report


def gather(paths: Sequence[Path], *, top: int = 10, failed_to: Path | None = None,
           source: str | None = None, defaults: Mapping[str, Any] | None = None,
           op: str = "update", rules: Mapping[str, Any] | None = None) -> Summary:
    """Read the journals (two passes): the `--json` object and the figures behind it; `--input`
    lines are planned with `defaults`, `op` and `rules` as the runs planned them."""
    journals = Journals(list(paths))
    index = LineIndex()
    Retirement.index(journals, index)
    if index.records == 0 and journals.scan.cut_lines + journals.garbled:
        names = ", ".join(map(str, paths))
        raise UsageError(f"no whole outcome record in {names}: is it an outcomes file?")
    figures = Figures(top)
    judged = Judged()
    with atomic_output(failed_to) if failed_to is not None else no_output() as out:
        wanted: set[bytes] | None = None
        if source is not None:
            wanted = set()
            judged = judge_input(source, defaults or {}, index, out, wanted, op=op,
                                 rules=rules)
        else:
            judged.lines = index.lines
            judged.done = index.done()
        envelope = envelope_writer(out) if out is not None and source is None else None
        for ordinal, key, record in journals.records():
            entry = index.get(key)
            if entry is None or entry.ordinal != ordinal or (wanted is not None and
                                                             key not in wanted):
                continue
            figures.add(record)
            if envelope is not None and entry.done is Done.NOT_DONE:
                envelope(record)
                judged.written += 1
    failed = None if failed_to is None else {
        "path": str(failed_to), "source": "envelopes" if source is None else "input",
        "lines": judged.written, "missing": judged.missing}
    histogram = figures.latency
    return Summary(figures=figures, report={
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
    })

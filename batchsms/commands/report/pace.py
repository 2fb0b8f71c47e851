"""`report --html --timeline FILE`: the pace against the service's answers, from the file
`run --timeline` wrote (one JSON object per second; docs/reference.md §9, §13).

Folded as it is read into at most `over_time.MAX_BUCKETS` columns per chart (`Bucket`),
whatever the run's length, so memory does not grow with it: the answers per second of each
column (2xx, 429, 4xx, 5xx, no answer) stacked, the columns where an outage held shaded, and
under it, on the same scale, the pace in force (the lowest rate of the column, red during an
outage; 0 = unlimited is shown as the highest seen). The x axis is the time since the run
started. Lines that are not such objects (a count not a whole number >= 0, a time or a rate
not finite and >= 0) are counted and left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from batchsms.commands.report.over_time import MAX_BUCKETS
from batchsms.commands.report.svg import SHADE, Column, column_chart, legend
from batchsms.errors import UsageError

ANSWERS = (("2xx", "#2e9d5b"), ("429", "#e69a28"), ("4xx", "#8a94a6"), ("5xx", "#d64541"),
           ("no_answer", "#5b6b8c"))
PACE = (("pace in force", "#4a78c2"), ("pace during an outage", "#d64541"))


@dataclass(frozen=True, slots=True)
class Second:
    """One line of the timeline, as read (only finite, non-negative numbers are)."""

    t: float
    answers: tuple[int, ...]
    rate: float
    outage: bool
    in_flight: int


@dataclass(slots=True)
class Bucket:
    """A column: a run of consecutive seconds, folded as they are read."""

    start: float  # where the line before its first ended (0 for the first): `t` ends a second
    end: float = 0.0
    seconds: int = 0
    answers: list[int] = field(default_factory=lambda: [0] * len(ANSWERS))
    lowest_rate: float = math.inf  # the lowest limited rate (> 0) in force
    unlimited: bool = False  # some second had no limit (rate 0)
    outage: bool = False
    in_flight: int = 0

    def add(self, second: Second) -> None:
        self.end = second.t
        self.seconds += 1
        for i, n in enumerate(second.answers):
            self.answers[i] += n
        if second.rate > 0:
            self.lowest_rate = min(self.lowest_rate, second.rate)
        else:
            self.unlimited = True
        self.outage = self.outage or second.outage
        self.in_flight = max(self.in_flight, second.in_flight)

    def rate(self, top: float) -> float:
        """The lowest pace in force; an unlimited second counts as `top`, the highest seen."""
        return min(self.lowest_rate, top) if self.unlimited else self.lowest_rate


@dataclass
class Timeline:
    """A `run --timeline` file folded into at most MAX_BUCKETS columns of equal seconds."""

    buckets: list[Bucket] = field(default_factory=list)
    seconds: int = 0
    top_rate: float = 0.0
    unreadable: int = 0


def read_timeline(path: Path) -> Timeline:
    """The file folded into columns, in memory bounded by MAX_BUCKETS however long the run:
    a first pass counts its lines (the seconds per column), a second folds that many. A file
    that cannot be read is exit 2."""
    timeline = Timeline()
    try:
        with path.open("rb") as f:
            lines = sum(1 for raw in f if raw.strip())
            size = max(1, -(-lines // MAX_BUCKETS))
            f.seek(0)
            read = 0
            for raw in f:
                if read == lines:
                    break  # a run still writing it: the lines counted are the chart
                if not raw.strip():
                    continue
                read += 1
                second = _second(raw)
                if second is None:
                    timeline.unreadable += 1
                    continue
                _fold(timeline, second, size)
    except OSError as exc:
        raise UsageError(f"cannot read --timeline {str(path)!r}: {exc.strerror}") from None
    return timeline


def _fold(timeline: Timeline, second: Second, size: int) -> None:
    buckets = timeline.buckets
    if not buckets or buckets[-1].seconds == size:
        buckets.append(Bucket(buckets[-1].end if buckets else 0.0))
    buckets[-1].add(second)
    timeline.seconds += 1
    timeline.top_rate = max(timeline.top_rate, second.rate)


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(value)
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(value)
    return float(value)


def _second(raw: bytes) -> Second | None:
    """A line as a `Second`; None when it is not one (not JSON, a key missing, a count that
    is not a whole number >= 0, a time or rate not finite and >= 0)."""
    try:
        data: Any = orjson.loads(raw)
        return Second(_number(data["t"]), tuple(_count(data.get(k, 0)) for k, _ in ANSWERS),
                      _number(data["rate"]), data.get("outage") is True,
                      _count(data.get("in_flight", 0)))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def since_start(seconds: float) -> str:
    """A time since the run started, as a label: `45s`, `12m05s`, `3h07m`, `4d03h`; precise
    enough that labels a seventh of the run apart differ."""
    whole = max(0, int(seconds))
    if whole < 100:
        return f"{whole}s"
    if whole < 2 * 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 2 * 86400:
        return f"{whole // 3600}h{whole // 60 % 60:02d}m"
    return f"{whole // 86400}d{whole // 3600 % 24:02d}h"


def section(timeline: Timeline) -> Iterator[str]:
    """The page's section: answers per second by class over the seconds of an outage shaded,
    then the pace in force on the same scale."""
    yield '<section id="timeline"><h2>Pace and answers (run --timeline)</h2>'
    if not timeline.buckets:
        yield '<p class="meta">The timeline holds no second.</p></section>'
        return
    buckets, top = timeline.buckets, timeline.top_rate
    every = -(-len(buckets) // 7)  # at most 7 labels: each one clear of the next
    answers, pace = [], []
    for n, b in enumerate(buckets):
        span = f"{since_start(b.start)} to {since_start(b.end)}"
        label = since_start(b.start) if n % every == 0 else ""
        total = sum(b.answers)
        answers.append(Column(
            [count / b.seconds for count in b.answers],
            f"{span}: " + (", ".join(f"{count:,} {name}" for count, (name, _) in
                                     zip(b.answers, ANSWERS, strict=True) if count) +
                           f" ({total / b.seconds:,.1f}/s)" if total else "nothing answered") +
            (", outage (only probes)" if b.outage else ""), label, b.outage))
        rate = b.rate(top)
        pace.append(Column([0 if b.outage else rate, rate if b.outage else 0],
                           f"{span}: {rate:,.4g} requests/s in force"
                           f"{', outage (only probes)' if b.outage else ''}, "
                           f"{b.in_flight:,} in flight at most", label, b.outage))
    scale = max(top, max(sum(c.values) for c in answers))
    yield column_chart("chart-answers", answers, ANSWERS, height=180, y_title="answers/s",
                       top=scale)
    yield legend([*ANSWERS, ("outage: only probes go", SHADE)])
    if top > 0:
        yield column_chart("chart-pace", pace, PACE, height=180, y_title="requests/s",
                           top=scale)
        yield legend(PACE)
    else:
        yield '<p class="meta">No pace was set (<code>--rate 0</code>): no pace chart.</p>'
    skipped = f" {timeline.unreadable:,} unreadable lines left out." if timeline.unreadable \
        else ""
    width = buckets[0].seconds
    per = "1 second" if width == 1 else f"{width:,} seconds"
    seconds = f"{timeline.seconds:,} second{'s' * (timeline.seconds != 1)}"
    yield (f'<p class="note">{seconds} since the run started, {per} per column; both charts '
           "share one scale. Answers: per second, by class. Pace: "
           "the lowest rate in force in the column, in red where an outage held (only probes "
           f"go).{skipped}</p></section>")

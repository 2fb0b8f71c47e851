"""`report --html --timeline FILE`: the pace against the service's answers, from the file
`run --timeline` wrote (one JSON object per second; docs/reference.md §9, §13).

Read in one pass into at most `over_time.MAX_BUCKETS` columns per chart, whatever the run's
length: the answers per column (2xx, 429, 4xx, 5xx, no answer) stacked, and the pace in force
(the lowest rate of the column; 0 = unlimited is shown as the highest seen) with the columns
where an outage held marked. Lines that are not such objects are counted and left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from batchsms.commands.report.over_time import MAX_BUCKETS
from batchsms.commands.report.svg import Column, column_chart, esc
from batchsms.errors import UsageError

ANSWERS = (("2xx", "#2e9d5b"), ("429", "#e69a28"), ("4xx", "#8a94a6"), ("5xx", "#d64541"),
           ("no_answer", "#5b6b8c"))


@dataclass
class Second:
    t: float
    answers: tuple[int, ...]
    rate: float
    outage: bool
    in_flight: int


@dataclass
class Timeline:
    seconds: list[Second] = field(default_factory=list)
    unreadable: int = 0


def read_timeline(path: Path) -> Timeline:
    """The seconds of a `run --timeline` file; a file that cannot be read is exit 2."""
    timeline = Timeline()
    try:
        with path.open("rb") as f:
            for raw in f:
                second = _second(raw)
                if second is None:
                    timeline.unreadable += raw.strip() != b""
                else:
                    timeline.seconds.append(second)
    except OSError as exc:
        raise UsageError(f"cannot read --timeline {str(path)!r}: {exc.strerror}") from None
    return timeline


def _second(raw: bytes) -> Second | None:
    try:
        data: Any = orjson.loads(raw)
        return Second(float(data["t"]), tuple(int(data.get(k, 0)) for k, _ in ANSWERS),
                      float(data["rate"]), bool(data.get("outage")),
                      int(data.get("in_flight", 0)))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def _buckets(seconds: list[Second]) -> list[list[Second]]:
    size = max(1, -(-len(seconds) // MAX_BUCKETS))
    return [seconds[i:i + size] for i in range(0, len(seconds), size)]


def section(timeline: Timeline) -> Iterator[str]:
    """The page's section: answers per column, then the pace in force."""
    yield '<section id="timeline"><h2>Pace and answers (run --timeline)</h2>'
    if not timeline.seconds:
        yield '<p class="meta">The timeline holds no second.</p></section>'
        return
    buckets = _buckets(timeline.seconds)
    width = len(buckets[0])
    every = max(1, len(buckets) // 6)
    answers = [Column([sum(s.answers[i] for s in b) for i in range(len(ANSWERS))],
                      f"t={b[0].t:.0f}s: " + ", ".join(
                          f"{sum(s.answers[i] for s in b):,} {name}"
                          for i, (name, _) in enumerate(ANSWERS)),
                      f"{b[0].t:.0f}s" if n % every == 0 else "")
               for n, b in enumerate(buckets)]
    yield column_chart("chart-answers", answers, ANSWERS, height=200, y_title="answers")
    yield '<p class="legend">' + "".join(
        f'<span class="key" style="background:{colour}"></span>{esc(name)} '
        for name, colour in ANSWERS) + "</p>"
    top = max((s.rate for s in timeline.seconds), default=0.0)
    pace = []
    for n, b in enumerate(buckets):
        rate = min((s.rate or top for s in b), default=0.0)
        outage = any(s.outage for s in b)
        pace.append(Column([0 if outage else round(rate), round(rate) if outage else 0],
                           f"t={b[0].t:.0f}s: {rate:g} requests/s in force"
                           f"{', outage (only probes)' if outage else ''}, "
                           f"{max(s.in_flight for s in b)} in flight at most",
                           f"{b[0].t:.0f}s" if n % every == 0 else ""))
    series = [("pace", "#4a78c2"), ("pace during an outage", "#d64541")]
    yield column_chart("chart-pace", pace, series, height=160, y_title="requests/s")
    skipped = f" {timeline.unreadable:,} unreadable lines left out." if timeline.unreadable \
        else ""
    yield (f'<p class="note">{len(timeline.seconds):,} seconds, {width} per column; the pace is '
           f"the lowest rate in force in the column (red: an outage held).{skipped}</p>"
           "</section>")

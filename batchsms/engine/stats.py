"""Run statistics: counts for the summary, the logs and the metrics file.

The sender counts requests, retries and HTTP statuses; the pipeline counts outcomes. Mutable on
purpose (counters), and owned by one run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class RunStats:
    """Counts for the summary, the logs and the metrics file."""

    by_status: Counter[str] = field(default_factory=Counter)
    by_error: Counter[str] = field(default_factory=Counter)
    by_http: Counter[int] = field(default_factory=Counter)
    requests: int = 0
    retries: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def duration(self) -> float:
        return (self.finished or time.monotonic()) - self.started


def summary_lines(stats: RunStats, stop_message: str | None) -> Iterator[str]:
    """The human summary printed at the end of a run."""
    total = sum(stats.by_status.values())
    parts = ", ".join(f"{n} {s}" for s, n in sorted(stats.by_status.items()))
    yield f"{total} lines: {parts or 'none'} in {stats.duration:.1f}s"
    rate = stats.requests / stats.duration if stats.duration > 0 else 0.0
    yield f"{stats.requests} requests ({stats.retries} retries), {rate:.1f} requests/s"
    for code, n in stats.by_error.most_common(10):
        yield f"  {code}: {n}"
    if stop_message:
        yield f"stopped early: {stop_message}"

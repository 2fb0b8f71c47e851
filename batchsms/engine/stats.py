"""Run statistics: counts for the summary, the logs and the metrics file.

The sender counts requests, retries and HTTP statuses; the pipeline counts outcomes. Mutable on
purpose (counters), and owned by one run.
"""

from __future__ import annotations

import time
from collections import Counter
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

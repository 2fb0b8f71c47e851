"""`report --html`'s outcomes over time: lines finished per time bucket, by status, in bounded
memory whatever the number of lines or the time they span.

A bucket is `width` seconds of UTC time, aligned on the epoch. When the buckets from the first
to the last would be more than `MAX_BUCKETS`, the width grows to the next step of `_WIDTHS` and
the buckets are merged: each step is a multiple of the one before, so a merged bucket holds
exactly what it would have held had that width been used from the start. Records arrive in any
order (files of several runs, completion order); a record whose `finished_at` is not an RFC 3339
time is counted apart (`untimed`), never guessed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

MAX_BUCKETS = 120
"""Columns of the chart at most: one every ~8 px at the page's width."""

# seconds; each divides the next, then doubling (two days, four days, ...)
_WIDTHS = (1, 2, 10, 30, 60, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400)


def epoch_second(value: object) -> int | None:
    """The UTC second of an RFC 3339 time with an offset; None for anything else."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None  # a local time of an unknown zone: not placed on the axis
    return int(when.timestamp() // 1)


def _next_width(width: int) -> int:
    for step in _WIDTHS:
        if step > width:
            return step
    return width * 2


@dataclass
class OverTime:
    """Lines per bucket of `width` seconds, by status (see the module docstring)."""

    width: int = 1
    buckets: dict[int, Counter[str]] = field(default_factory=dict)  # epoch second // width
    untimed: int = 0
    low: int = 0  # the first and last keys of `buckets` (when there are any)
    high: int = -1
    # the last time read, to its second: records come in bursts of the same second, and
    # parsing is most of this class's cost (a third of a report's second pass otherwise)
    _last: tuple[str, int] = ("", 0)

    def add(self, finished_at: object, status: str) -> None:
        second: int | None
        if isinstance(finished_at, str) and finished_at[:19] == self._last[0] \
                and finished_at.endswith("Z"):
            second = self._last[1]
        else:
            second = epoch_second(finished_at)
            if second is not None and isinstance(finished_at, str) \
                    and finished_at.endswith("Z"):
                self._last = (finished_at[:19], second)
        if second is None:
            self.untimed += 1
            return
        key = second // self.width
        counts = self.buckets.get(key)
        if counts is None:
            if not self.buckets:
                self.low = self.high = key
            self.low, self.high = min(self.low, key), max(self.high, key)
            counts = self.buckets[key] = Counter()
            while self.high - self.low >= MAX_BUCKETS:
                self._widen()
                counts = self.buckets[second // self.width]
        counts[status] += 1

    def _widen(self) -> None:
        width = _next_width(self.width)
        merged: dict[int, Counter[str]] = {}
        for key, counts in self.buckets.items():
            merged.setdefault(key * self.width // width, Counter()).update(counts)
        self.low, self.high = self.low * self.width // width, self.high * self.width // width
        self.width, self.buckets = width, merged

    def columns(self) -> list[tuple[int, Counter[str]]]:
        """(start, epoch seconds; counts) for every bucket from the first to the last, the
        empty ones included, so that a pause shows as a gap."""
        if not self.buckets:
            return []
        return [(key * self.width, self.buckets.get(key, Counter()))
                for key in range(self.low, self.high + 1)]

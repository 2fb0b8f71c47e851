"""Retry budget: retries at most a share of the traffic; a retry over budget waits, never fails.

The shape of Finagle's ``RetryBudget`` (and tower's ``retry::budget``): over a sliding window of
``TTL`` seconds, retries may be at most ``PERCENT`` of the first attempts, plus a floor of
``MIN_PER_SECOND`` retries a second (``MIN_PER_SECOND * TTL`` in the window), so that a run with
little traffic can still retry. The budget is relative to traffic and refills itself as the
window slides: a long run never drains it for good (botocore's absolute 500-token quota did, and
then failed lines the service would have accepted a second later).

A retry `try_spend` denies is deferred by the engine, not dropped: it asks again after
`wait_hint`, and first attempts go meanwhile. In a broad outage this is what keeps retries from
crowding out first attempts; the outage guard then reduces everything to probes.

The window is kept as ``SLOT``-second slots of counts, so memory and time per call are constant
at any request rate; a slot leaves the window whole, so the window is ``TTL`` to ``TTL + SLOT``
seconds long.
"""

from __future__ import annotations

import math
import time
from collections import deque

from batchsms.engine.bucket import Clock

TTL = 10.0
"""Seconds of traffic the budget looks back over (Finagle's default ``ttl``)."""

PERCENT = 0.2
"""Retries allowed per first attempt in the window (Finagle's ``percentCanRetry``)."""

MIN_PER_SECOND = 10.0
"""Retries a second allowed whatever the traffic (Finagle's ``minRetriesPerSec``): the tail of
a run, when every line has had its first attempt, still retries at 10/s at least."""

SLOT = 0.5
"""Width in seconds of the count slots the window is kept in."""


class RetryBudget:
    """How many retries the traffic of the recent past allows."""

    def __init__(self, *, clock: Clock = time.monotonic, ttl: float = TTL,
                 percent: float = PERCENT, min_per_second: float = MIN_PER_SECOND) -> None:
        if ttl <= 0 or percent < 0 or min_per_second < 0:
            raise ValueError("ttl must be > 0, percent and min_per_second >= 0")
        self._clock = clock
        self._ttl = ttl
        self._percent = percent
        self._reserve = min_per_second * ttl
        # [slot start, first attempts, retries], oldest first; the sums of the last two columns.
        self._slots: deque[list[float]] = deque()
        self._firsts = 0.0
        self._retries = 0.0

    def _slot(self, now: float) -> list[float]:
        """The current slot, after dropping the ones that left the window."""
        slots = self._slots
        while slots and slots[0][0] + SLOT <= now - self._ttl:
            _, firsts, retries = slots.popleft()
            self._firsts -= firsts
            self._retries -= retries
        start = math.floor(now / SLOT) * SLOT
        if not slots or slots[-1][0] < start:
            slots.append([start, 0.0, 0.0])
        return slots[-1]

    def _allowed(self) -> float:
        return self._reserve + self._percent * self._firsts

    def on_request(self, *, retry: bool) -> None:
        """A try left (a first attempt, or a retry that `try_spend` allowed)."""
        if not retry:
            now = self._clock()
            slots = self._slots
            # Within the current slot there is only a count to add (old slots leave the window
            # at the next `_slot`, which every reading of the sums calls first).
            slot = slots[-1] if slots and now < slots[-1][0] + SLOT else self._slot(now)
            slot[1] += 1
            self._firsts += 1

    def try_spend(self) -> bool:
        """May one retry go now? True takes the permission (counts the retry)."""
        slot = self._slot(self._clock())
        if self._retries + 1 > self._allowed():
            return False
        slot[2] += 1
        self._retries += 1
        return True

    def wait_hint(self) -> float:
        """Seconds after which `try_spend` may say yes again (0.0 when it would now).

        That is when the oldest slot holding retries leaves the window; first attempts sent
        meanwhile can make it sooner.
        """
        now = self._clock()
        self._slot(now)
        if self._retries + 1 <= self._allowed():
            return 0.0
        for start, _, retries in self._slots:
            if retries:
                return max(0.0, start + SLOT + self._ttl - now)
        return SLOT  # only reachable with a reserve below one retry and no traffic

"""The rate limiter: every HTTP attempt, retries included, passes here before it is sent.

- `TokenBucket`: the hard ceiling. It starts full (``burst`` tokens) and refills at ``rate``
  tokens a second, never above ``burst``, so in any window of ``t`` seconds at most
  ``rate*t + burst`` sends start, also across rate changes (the bound then uses the highest rate
  in force during the window). ``rate == 0`` means unlimited.
- `RateLimiter`: the bucket shared by every sending task; waiters are served in arrival order.
  Its rate is set from outside (`set_rate`): the engine's rate controller
  (``batchsms.engine.controller``, composed with this in ``batchsms.engine.pace``) moves it.
- `SendRateMeter`: the send rate actually achieved, smoothed over 0.5 s buckets (botocore's
  ``RateClocker``); the controller reads it when ``--rate 0`` gives it no rate of its own.

Time, sleep and nothing else come from outside (``clock``, ``sleep``), so tests drive a fake clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

import anyio

Clock = Callable[[], float]
"""Monotonic seconds, e.g. `time.monotonic`."""

Sleep = Callable[[float], Awaitable[None]]
"""Wait that many seconds, e.g. `anyio.sleep`."""

MEASURE_BUCKET = 0.5
"""Width in seconds of the send-rate measurement buckets."""

SMOOTHING = 0.8
"""Weight of the newest bucket in the smoothed send rate."""

# A float refill can land a hair under a whole token; treat that as a whole token rather than
# sleeping for a nanosecond again and again. The debt it leaves is repaid by the next refill.
_EPSILON = 1e-9


def check_rate(rate: float) -> float:
    """``rate`` as a float; ValueError unless it is finite and >= 0 (0 means unlimited)."""
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f"rate must be a finite number >= 0, got {rate!r}")
    return float(rate)


class TokenBucket:
    """A classic token bucket; ``rate == 0`` means unlimited."""

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        if not math.isfinite(burst) or burst < 1:
            raise ValueError(f"burst must be a finite number >= 1, got {burst!r}")
        self._rate = check_rate(rate)
        self._burst = float(burst)
        self._clock = clock
        self._tokens = self._burst
        self._last = clock()

    @property
    def rate(self) -> float:
        """Tokens per second; 0 means unlimited."""
        return self._rate

    @property
    def burst(self) -> float:
        """The most tokens the bucket holds."""
        return self._burst

    def _refill(self, now: float) -> None:
        # max(0, ...) so that a clock stepping backwards never drains the bucket.
        elapsed = max(0.0, now - self._last)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._last = max(self._last, now)

    def try_acquire(self) -> float:
        """Take a token and return 0.0, or return the seconds until one is available."""
        if self._rate == 0:
            return 0.0
        self._refill(self._clock())
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate

    def set_rate(self, new_rate: float) -> None:
        """Refill at the old rate up to now, then refill at ``new_rate`` (0 = unlimited)."""
        new_rate = check_rate(new_rate)
        now = self._clock()
        if self._rate == 0:
            # Leaving unlimited mode: start full, as a fresh bucket would. The cap at burst is
            # what keeps any window bounded, whatever rate was in force before.
            self._tokens = self._burst
            self._last = now
        else:
            self._refill(now)
        self._rate = new_rate


class SendRateMeter:
    """Smoothed send rate over fixed buckets of ``bucket`` seconds (botocore's ``RateClocker``)."""

    def __init__(self, *, bucket: float = MEASURE_BUCKET, smoothing: float = SMOOTHING) -> None:
        if bucket <= 0 or not 0 < smoothing <= 1:
            raise ValueError("bucket must be > 0 and smoothing in (0, 1]")
        self._width = bucket
        self._smoothing = smoothing
        self._rate = 0.0
        self._measured = False
        self._count = 0
        self._bucket_start: float | None = None
        self._bucket_end = -math.inf  # the current bucket's end (every send is counted here)
        self._first_send = 0.0

    @property
    def first_send(self) -> float | None:
        """When the first send was counted; None before it."""
        return None if self._bucket_start is None else self._first_send

    def record(self, now: float) -> None:
        """Count one send at ``now``."""
        if now < self._bucket_end:  # the common case: one more send in the current bucket
            self._count += 1
            return
        start = math.floor(now / self._width) * self._width
        if self._bucket_start is None:
            self._bucket_start = start
            self._first_send = now
        elif start > self._bucket_start:
            # Sends since the last boundary, spread over every bucket that passed (idle ones too).
            current = self._count / (start - self._bucket_start)
            if self._measured:
                self._rate = self._smoothing * current + (1 - self._smoothing) * self._rate
            else:
                self._rate = current
                self._measured = True
            self._count = 0
            self._bucket_start = start
        self._bucket_end = self._bucket_start + self._width
        self._count += 1

    def rate(self, now: float) -> float:
        """Requests/s measured so far (0.0 before any send).

        Before the first bucket has closed, the count is spread over at least one bucket width:
        an underestimate, which is the safe side for a limiter switching on.
        """
        if self._measured:
            return self._rate
        if self._bucket_start is None:
            return 0.0
        return self._count / max(now - self._first_send, self._width)


class RateLimiter:
    """The token bucket shared by every sending task; its rate is set by the caller."""

    def __init__(self, rate: float, burst: float = 1.0, *, clock: Clock = time.monotonic,
                 sleep: Sleep = anyio.sleep) -> None:
        self._sleep = sleep
        self._bucket = TokenBucket(rate, burst, clock)
        # Waiters queue on the lock (FIFO in anyio), so the bucket serves them in arrival order.
        self._lock = anyio.Lock()

    @property
    def current_rate(self) -> float:
        """Requests/s in force now; 0.0 means unlimited."""
        return self._bucket.rate

    def set_rate(self, rate: float) -> None:
        """From now on refill at ``rate`` (0 = unlimited); see `TokenBucket.set_rate`."""
        if rate != self._bucket.rate:
            self._bucket.set_rate(rate)

    def try_acquire_nowait(self) -> bool:
        """Take a token at once if one is free and nobody is queued; True if taken."""
        return not self._lock.locked() and self._bucket.try_acquire() <= 0

    async def acquire(self) -> None:
        """Wait until a request may start."""
        async with self._lock:
            while (wait := self._bucket.try_acquire()) > 0:
                await self._sleep(wait)

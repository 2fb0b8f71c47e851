"""The rate limiter: every HTTP attempt, retries included, passes here before it is sent.

Three small pieces, composed by `RateLimiter` (the shape of botocore's ``retries/`` package):

- `TokenBucket`: the hard ceiling. It starts full (``burst`` tokens) and refills at ``rate``
  tokens a second, never above ``burst``, so in any window of ``t`` seconds at most
  ``rate*t + burst`` sends start, also across rate changes (the bound then uses the highest rate
  in force during the window). ``rate == 0`` means unlimited.
- `SendRateMeter`: the send rate actually achieved, smoothed over 0.5 s buckets (botocore's
  ``RateClocker``).
- `AdaptiveRate`: the rate to use, moved by the service's answers (the AWS SDK "adaptive" retry
  mode, CUBIC as in botocore's ``throttling.py``). A throttle (HTTP 429) sets the rate to
  ``BETA = 0.5`` times ``min(current rate, measured send rate)`` -- at least halving it -- floored
  at ``MIN_RATE = 0.5`` req/s; successes then climb back along the CUBIC curve
  ``C*(t-K)**3 + W_max`` with ``C = 0.4``, never above the configured ``--rate``.
  With ``--rate 0`` the limiter is off until the first throttle; then it switches on at half the
  measured send rate and climbs without a fixed ceiling, but (botocore's rule) never above twice
  the send rate measured at that moment, so the rate only grows while the run really uses it.
  A fixed ceiling such as "the highest rate measured before the throttle" was rejected: a 429
  that arrives early, while the measurement is still rough, would cap the whole run low.

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

MIN_RATE = 0.5
"""Requests/s a throttled run never drops below (botocore's ``_MIN_RATE``)."""

BETA = 0.5
"""Multiplicative decrease on a throttle (botocore uses 0.7; the contract asks for halving)."""

SCALE = 0.4
"""CUBIC scale constant ``C`` (botocore's ``_SCALE_CONSTANT``)."""

MEASURE_BUCKET = 0.5
"""Width in seconds of the send-rate measurement buckets."""

SMOOTHING = 0.8
"""Weight of the newest bucket in the smoothed send rate."""

MAX_RATE_ADJUST_SCALE = 2.0
"""With ``--rate 0``, successes never lift the rate above this times the measured send rate."""

# A float refill can land a hair under a whole token; treat that as a whole token rather than
# sleeping for a nanosecond again and again. The debt it leaves is repaid by the next refill.
_EPSILON = 1e-9


def _check_rate(rate: float) -> float:
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f"rate must be a finite number >= 0, got {rate!r}")
    return float(rate)


class TokenBucket:
    """A classic token bucket; ``rate == 0`` means unlimited."""

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        if not math.isfinite(burst) or burst < 1:
            raise ValueError(f"burst must be a finite number >= 1, got {burst!r}")
        self._rate = _check_rate(rate)
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
        new_rate = _check_rate(new_rate)
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
        self._first_send = 0.0

    def record(self, now: float) -> None:
        """Count one send at ``now``."""
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


class AdaptiveRate:
    """The rate to send at, lowered by throttles and raised by successes (CUBIC).

    ``max_rate == 0`` means unlimited until the first throttle. ``rate`` is 0.0 while unlimited.
    """

    def __init__(
        self,
        max_rate: float,
        *,
        min_rate: float = MIN_RATE,
        beta: float = BETA,
        scale: float = SCALE,
        meter: SendRateMeter | None = None,
    ) -> None:
        self._max_rate = _check_rate(max_rate)
        if not 0 < beta <= 0.5:
            raise ValueError("beta must be in (0, 0.5]: a throttle at least halves the rate")
        if min_rate <= 0 or scale <= 0:
            raise ValueError("min_rate and scale must be > 0")
        self._beta = beta
        # A user asking for less than twice the floor still sees a throttle halve the rate.
        self._min_rate = min(min_rate, self._max_rate * beta) if self._max_rate else min_rate
        self._scale = scale
        self._meter = meter if meter is not None else SendRateMeter()
        self._rate = self._max_rate
        self._throttled = False
        self._w_max = 0.0
        self._k = 0.0
        self._last_throttle = 0.0

    @property
    def rate(self) -> float:
        """Requests/s to send at now; 0.0 means unlimited."""
        return self._rate

    @property
    def max_rate(self) -> float:
        """The configured ceiling; 0.0 means none."""
        return self._max_rate

    def measured_rate(self, now: float) -> float:
        """The send rate measured so far."""
        return self._meter.rate(now)

    def record_send(self, now: float) -> None:
        """Feed the send-rate measurement: one request left at ``now``."""
        self._meter.record(now)

    def on_throttle(self, now: float, sent_at: float | None = None) -> float:
        """The service said "too fast": at least halve the rate. Returns the new rate.

        ``sent_at`` is when the throttled request left. One sent before the last decrease
        answers a rate already given up, so it changes nothing: a burst of 429s for requests
        that were in flight together halves the rate once, not once per 429 (as TCP reacts
        once per window of losses).
        """
        if self._throttled and sent_at is not None and sent_at < self._last_throttle:
            return self._rate
        measured = self._meter.rate(now)
        if self._rate == 0:
            base = measured
        elif measured > 0:
            base = min(self._rate, measured)
        else:
            base = self._rate
        self._throttled = True
        # CUBIC: the rate at the failure is the plateau W_max; K is when the curve regains it.
        self._w_max = base
        self._k = (base * (1 - self._beta) / self._scale) ** (1 / 3)
        self._last_throttle = now
        self._rate = max(self._min_rate, base * self._beta)
        return self._rate

    def on_success(self, now: float) -> float:
        """A request succeeded: climb back along the CUBIC curve. Returns the new rate."""
        if not self._throttled:
            return self._rate
        dt = max(0.0, now - self._last_throttle)
        target = self._scale * (dt - self._k) ** 3 + self._w_max
        if self._max_rate:
            target = min(target, self._max_rate)
        else:
            measured = self._meter.rate(now)
            if measured > 0:
                target = min(target, MAX_RATE_ADJUST_SCALE * measured)
        # The curve only rises after a throttle; the clamp above must not turn a success into a
        # slowdown.
        self._rate = max(self._rate, self._min_rate, target)
        return self._rate


class RateLimiter:
    """The token bucket driven by the adaptive rate; shared by every sending task."""

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        *,
        adaptive: bool = True,
        min_rate: float = MIN_RATE,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._bucket = TokenBucket(rate, burst, clock)
        self._adaptive = AdaptiveRate(rate, min_rate=min_rate) if adaptive else None
        # Waiters queue on the lock (FIFO in anyio), so the bucket serves them in arrival order.
        self._lock = anyio.Lock()

    @property
    def current_rate(self) -> float:
        """Requests/s in force now; 0.0 means unlimited."""
        return self._bucket.rate

    def try_acquire_nowait(self) -> bool:
        """Take a token at once if one is free and nobody is queued; True if taken."""
        if self._lock.locked() or self._bucket.try_acquire() > 0:
            return False
        if self._adaptive is not None:
            self._adaptive.record_send(self._clock())
        return True

    async def acquire(self) -> None:
        """Wait until a request may start, and count it as sent."""
        async with self._lock:
            while (wait := self._bucket.try_acquire()) > 0:
                await self._sleep(wait)
        if self._adaptive is not None:
            self._adaptive.record_send(self._clock())

    def on_throttle(self, sent_at: float | None = None) -> None:
        """An answer was HTTP 429: slow down. `sent_at`: when that request left (this clock)."""
        if self._adaptive is not None:
            new_rate = self._adaptive.on_throttle(self._clock(), sent_at)
            if new_rate != self._bucket.rate:
                self._bucket.set_rate(new_rate)

    def on_success(self) -> None:
        """The last answer was a success: speed back up towards the configured rate."""
        if self._adaptive is not None:
            new_rate = self._adaptive.on_success(self._clock())
            if new_rate != self._bucket.rate:
                self._bucket.set_rate(new_rate)

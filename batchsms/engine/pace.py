"""Pace: every try, retries and reads included, passes one token bucket whose rate follows the
service's answers.

The bucket is `batchsms.engine.bucket.RateLimiter`; the rate it enforces is the `RateController`'s
(``engine/controller.py``: its docstring explains the design and every constant), fed here with
`Answer`s. Only OK and THROTTLED answers move the rate: FAILED (5xx, timeouts, connection
errors) says the service is in trouble, which the outage guard handles, and REJECTED/REFUSED say
nothing about pace.

A move of the rate is logged as `pace.changed` (lowered on 429s, raised on answers that came
back fine) when it is worth telling: a tenth or more away from the rate last told
(docs/reference.md §9), not at each of the controller's small steps.
"""

from __future__ import annotations

import time

import anyio

from batchsms.engine.bucket import Clock, RateLimiter, SendRateMeter, Sleep
from batchsms.engine.controller import RateController
from batchsms.engine.events import log
from batchsms.engine.feedback import Answer

TELL_SHARE = 0.1
"""`pace.changed` is logged when the rate moved this share away from the rate last told."""


class Pace:
    """The token bucket (`--rate`, `--burst`) and the controller that moves its rate."""

    def __init__(self, rate: float, burst: float = 1.0, *, clock: Clock = time.monotonic,
                 sleep: Sleep = anyio.sleep) -> None:
        self._clock = clock
        self._limiter = RateLimiter(rate, burst, clock=clock, sleep=sleep)
        self._meter = SendRateMeter()  # the controller reads it; every send is recorded here
        self._controller = RateController(rate, meter=self._meter)
        self._rate = self._limiter.current_rate  # what the bucket was last set to
        self._told = self._rate  # the rate `pace.changed` last told (at first: --rate)

    @property
    def current_rate(self) -> float:
        """Requests/s in force now; 0.0 means unlimited."""
        return self._limiter.current_rate

    def base_share(self, now: float) -> float:
        """The share of 429s the controller learnt are not ours (rule 3), faded to ``now``."""
        return self._controller.base_share(now)

    def try_acquire_nowait(self) -> bool:
        """Take a token at once if one is free and nobody is queued; True if taken (and
        counted as sent)."""
        if self._limiter.try_acquire_nowait():
            self._meter.record(self._clock())
            return True
        self._controller.held(self._clock())  # every wait for a token starts here (Sender)
        return False

    async def acquire(self) -> None:
        """Wait until a try may start, and count it as sent."""
        await self._limiter.acquire()
        self._meter.record(self._clock())

    def on_ok(self, sent_at: float) -> None:
        """A try sent at `sent_at` succeeded: `on_answer(Answer.OK, ...)` in one call."""
        rate = self._controller.on_success(self._clock(), sent_at)
        if rate != self._rate:  # mostly it did not move
            self._set_rate(rate, "the answers came back fine")

    def _set_rate(self, rate: float, reason: str) -> None:
        self._limiter.set_rate(rate)
        self._rate = rate
        told = self._told
        if abs(rate - told) >= TELL_SHARE * max(told, rate) or (rate == 0) != (told == 0):
            self._told = rate
            lowered = rate != 0 and (told == 0 or rate < told)
            log.info("pace.changed", rate=round(rate, 2), previous=round(told, 2),
                     change="lowered" if lowered else "raised", reason=reason)

    def on_answer(self, answer: Answer, *, sent_at: float) -> None:
        """One try's answer; `sent_at` is when it left (this object's clock)."""
        if answer is Answer.OK:
            rate = self._controller.on_success(self._clock(), sent_at)
            reason = "the answers came back fine"
        elif answer is Answer.THROTTLED:
            rate = self._controller.on_throttle(self._clock(), sent_at)
            reason = "the service answered 429 (too many requests)"
        else:
            return
        if rate != self._rate:
            self._set_rate(rate, reason)

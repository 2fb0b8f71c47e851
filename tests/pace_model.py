"""An offline, scripted service model: a discrete-event loop on a fake clock that drives `Pace`
(with a `RetryBudget` and an `OutageGuard`) against scripted services, so the pace targets are
asserted deterministically, with fixed randomness and no sockets.

The client side mimics the engine: one request in flight until the first answer (admission's
slow start), then ``concurrency`` at most; every try takes a
token from `Pace`; a retry waits its backoff (full jitter, base 0.5 s, cap 20 s) and then for the
budget; while the guard says "outage" only one probe is in flight, spaced by `probe_delay()`.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from dataclasses import dataclass, field

from batchsms.engine.budget import RetryBudget
from batchsms.engine.feedback import Answer
from batchsms.engine.outage import OutageGuard
from batchsms.engine.pace import Pace
from tests.clocks import FakeClock

TICK = 0.002
"""Seconds between polls of a bucket that has no token free."""


class Service:
    """Answers one try that arrives at time ``t``."""

    def answer(self, t: float) -> Answer:
        raise NotImplementedError


@dataclass
class QuotaBucket(Service):
    """A gateway token-bucket quota: ``rate``/s, ``burst`` tokens; rejected tries cost nothing."""

    rate: float
    burst: float
    tokens: float = -1.0
    last: float = 0.0

    def answer(self, t: float) -> Answer:
        if self.tokens < 0:
            self.tokens = self.burst
        self.tokens = min(self.burst, self.tokens + (t - self.last) * self.rate)
        self.last = t
        if self.tokens >= 1:
            self.tokens -= 1
            return Answer.OK
        return Answer.THROTTLED


@dataclass
class WindowAll(Service):
    """A sliding one-second window of ``limit`` arrivals that counts every arrival, even the
    rejected ones: sending above the limit makes almost everything fail."""

    limit: int
    window: float = 1.0
    arrivals: deque[float] = field(default_factory=deque)

    def answer(self, t: float) -> Answer:
        while self.arrivals and self.arrivals[0] <= t - self.window:
            self.arrivals.popleft()
        full = len(self.arrivals) >= self.limit
        self.arrivals.append(t)
        return Answer.THROTTLED if full else Answer.OK


@dataclass
class WindowAdmitted(Service):
    """A sliding one-second window of ``limit`` admitted requests (the simulator's
    ``--throttle-rate``): the rejected ones are not counted, so past the limit the first
    ``limit`` arrivals of each trailing second go through, at whatever pace they came."""

    limit: int
    window: float = 1.0
    admitted: deque[float] = field(default_factory=deque)

    def answer(self, t: float) -> Answer:
        while self.admitted and self.admitted[0] <= t - self.window:
            self.admitted.popleft()
        if len(self.admitted) >= self.limit:
            return Answer.THROTTLED
        self.admitted.append(t)
        return Answer.OK


@dataclass
class Random429(Service):
    """A share ``p`` of tries answered 429 at random, whatever the rate."""

    p: float
    rng: random.Random

    def answer(self, t: float) -> Answer:
        return Answer.THROTTLED if self.rng.random() < self.p else Answer.OK


@dataclass
class Failing(Service):
    """Between ``start`` and ``end``, a share ``p`` of tries fail (5xx/reset); else ``inner``."""

    inner: Service
    start: float
    end: float
    p: float
    rng: random.Random

    def answer(self, t: float) -> Answer:
        if self.start <= t < self.end and self.rng.random() < self.p:
            return Answer.FAILED
        return self.inner.answer(t)


@dataclass
class Foreign(Service):
    """``inner``, with a share ``p`` of tries answered 429 first whatever the rate: another
    client spending the same account's quota (those 429s cost ``inner`` nothing)."""

    inner: Service
    p: float
    rng: random.Random

    def answer(self, t: float) -> Answer:
        return Answer.THROTTLED if self.rng.random() < self.p else self.inner.answer(t)


class AllOK(Service):
    """A service with no limit."""

    def answer(self, t: float) -> Answer:
        return Answer.OK


@dataclass
class Result:
    """What one modelled run did."""

    lines: int
    done: int = 0
    failed: int = 0
    requests: int = 0
    throttled: int = 0
    elapsed: float = 0.0
    gave_up: bool = False
    sends: list[float] = field(default_factory=list)
    in_flight_in_outage: int = 0  # most tries in flight at once while the guard said outage
    base_share: float = 0.0  # the controller's learnt share of 429s "not ours", at the end

    @property
    def goodput(self) -> float:
        return self.done / self.elapsed

    @property
    def throttled_share(self) -> float:
        return self.throttled / self.requests

    def send_rate(self, start: float, end: float) -> float:
        """Tries per second that left between ``start`` and ``end``."""
        return sum(start <= t < end for t in self.sends) / (end - start)


def drive(service: Service, *, rate: float, lines: int, seed: int = 1, concurrency: int = 16,
          latency: float = 0.01, max_attempts: int = 5, horizon: float = 900.0,
          max_outage: float = 600.0, slow_start: float = 0.0,
          slow_latency: float = 0.33, retry_after: float = 0.0) -> Result:
    """Run ``lines`` lines against ``service`` until each succeeded or failed (or gave up).

    For the first ``slow_start`` seconds one try is in flight at a time and each takes
    ``slow_latency`` (a run still in slow start on a loaded machine: ~3 sends/s); then
    ``concurrency`` and ``latency``. ``retry_after`` is the lower bound a 429's ``Retry-After``
    puts under its retry's backoff (0: none)."""
    clock = FakeClock()
    pace = Pace(rate, 1.0, clock=clock, sleep=clock.sleep)
    budget = RetryBudget(clock=clock)
    guard = OutageGuard(max_outage=max_outage, clock=clock)
    rng = random.Random(seed)
    result = Result(lines)
    firsts = deque(range(lines))
    attempts = [0] * lines
    backoffs: list[tuple[float, int]] = []  # (ready at, line)
    deferred: deque[int] = deque()  # retries whose backoff is over, waiting for the budget
    events: list[tuple[float, int, str, int, float]] = []
    seq = itertools.count()
    in_flight = 0
    next_probe = 0.0
    wake_at = -1.0
    opened = False  # admission's slow start: one try in flight until the first answer

    def schedule(t: float, kind: str, line: int = -1, sent_at: float = 0.0) -> None:
        heapq.heappush(events, (t, next(seq), kind, line, sent_at))

    def wake(t: float) -> None:
        nonlocal wake_at
        if wake_at <= clock.now or t < wake_at:
            wake_at = t
            schedule(t, "wake")

    def pump() -> None:
        nonlocal in_flight, next_probe
        now = clock.now
        while backoffs and backoffs[0][0] <= now:
            deferred.append(heapq.heappop(backoffs)[1])
        while in_flight < (concurrency if opened and now >= slow_start else 1):
            if guard.in_outage and (in_flight or now < next_probe):
                if not in_flight:
                    wake(next_probe)
                return
            if not (deferred or firsts):
                if backoffs:
                    wake(backoffs[0][0])
                return
            if not pace.try_acquire_nowait():
                wake(now + TICK)
                return
            if deferred and budget.try_spend():
                line, retry = deferred.popleft(), True
            elif firsts:
                line, retry = firsts.popleft(), False
            else:
                wake(now + max(budget.wait_hint(), TICK))
                return
            budget.on_request(retry=retry)
            attempts[line] += 1
            in_flight += 1
            if guard.in_outage:
                next_probe = now + guard.probe_delay()
                result.in_flight_in_outage = max(result.in_flight_in_outage, in_flight)
            result.requests += 1
            result.sends.append(now)
            schedule(now + (slow_latency if now < slow_start else latency), "answer", line, now)

    pump()
    while events:
        t, _, kind, line, sent_at = heapq.heappop(events)
        clock.now = t
        if t > horizon:
            break
        if kind == "answer":
            in_flight -= 1
            opened = True
            answer = service.answer((sent_at + t) / 2)
            pace.on_answer(answer, sent_at=sent_at)
            guard.on_answer(answer)
            if answer is Answer.OK:
                result.done += 1
            else:
                result.throttled += answer is Answer.THROTTLED
                if attempts[line] >= max_attempts:
                    result.failed += 1
                else:
                    delay = min(20.0, 0.5 * 2 ** (attempts[line] - 1)) * rng.random()
                    if answer is Answer.THROTTLED:
                        delay = max(delay, retry_after)
                    heapq.heappush(backoffs, (t + delay, line))
            if result.done + result.failed == lines:
                result.elapsed = t
                result.base_share = pace.base_share(t)
                return result
            if guard.given_up:
                result.gave_up = True
                result.elapsed = t
                return result
        pump()
    result.elapsed = clock.now
    return result

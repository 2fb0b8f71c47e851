"""Admission: how many tries may be in flight now, as an explicit state.

    SLOW_START  one try in flight, until an answer that is not 401/403 (a wrong key must not
                be tried against 100 000 tasks: the gateway locks an AK after a few bad
                signatures). A 401/403 at ANY point comes back here.
    OPEN        up to --concurrency in flight.
    PROBING     the `OutageGuard` says the service is down: one probe at a time, spaced by
                `probe_delay()`; first attempts and retries alike wait. Back to OPEN (or
                SLOW_START) when the guard clears.
    STOPPING    the run stopped: nothing more enters.

Three 401/403 (or untrusted certificates) in a row abort the run, saying the credentials were
rejected; an outage longer than `--max-outage` aborts it, naming the outage and the option.

Each try that enters gets a ticket (a sequence number). An answer to a try that entered before
the gate closed on a 401/403 cannot reopen it: only an answer to a try sent after the closing
proves the key works again. So a revoked key costs at most 3 tries sent after the first
rejection, besides those already in flight.
"""

from __future__ import annotations

import enum
import functools
import time
from collections import deque

import anyio

from batchsms.engine.feedback import Answer
from batchsms.engine.outage import OutageGuard
from batchsms.engine.stopping import Stop, StopReason
from batchsms.limiter import Clock, Sleep

AUTH_ABORT_AFTER = 3
"""Rejections (401/403, untrusted certificate) in a row that abort the run."""


class _Waiter:
    """A try waiting for a place; `ticket` is set when a place is handed to it."""

    __slots__ = ("event", "ticket")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.ticket: int | None = None


class Gate(enum.Enum):
    SLOW_START = "slow_start"
    OPEN = "open"
    PROBING = "probing"
    STOPPING = "stopping"


class Admission:
    """The gate every try passes before it is sent; `enter` -> ticket, `leave` when answered."""

    def __init__(self, *, concurrency: int, outage: OutageGuard, stop: Stop,
                 clock: Clock = time.monotonic, sleep: Sleep = anyio.sleep) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self._concurrency = concurrency
        self._outage = outage
        self._stop = stop
        self._clock = clock
        self._sleep = sleep
        self._opened = False  # an answer that is not 401/403 arrived (since the last closing)
        self._in_flight = 0
        self._tickets = 0
        self._closed_at_ticket = 0  # tries with a lower ticket were sent before the closing
        self._rejections = 0
        self._next_probe = 0.0
        self._waiters: deque[_Waiter] = deque()  # FIFO: one is woken per place freed
        self._seen = Gate.SLOW_START

    @property
    def state(self) -> Gate:
        if self._stop.stopped is not None:
            return Gate.STOPPING
        if self._outage.in_outage:
            return Gate.PROBING
        return Gate.OPEN if self._opened else Gate.SLOW_START

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _may_enter(self, state: Gate, now: float) -> bool:
        if state is Gate.OPEN:
            return self._in_flight < self._concurrency
        if state is Gate.PROBING:
            return self._in_flight == 0 and now >= self._next_probe
        return self._in_flight == 0  # SLOW_START

    async def enter(self) -> int | None:
        """Wait for a place among the tries in flight; its ticket, or None if the run stopped.

        Waiters are served first come, first served: a place freed is handed to the oldest
        waiter (`_grant`), so a line never loses its turn to one that came later."""
        while True:
            self._check_outage()
            state = self.state
            if state is Gate.STOPPING:
                return None
            # One reading of the clock decides both whether the probe may go and how long to
            # wait for it: read twice, time passing in between (a loaded machine) made the
            # wait negative, and anyio.sleep raises ValueError on a negative delay.
            now = self._clock()
            if (not self._waiters or state is Gate.PROBING) and self._may_enter(state, now):
                return self._take(state)
            if state is Gate.PROBING and self._in_flight == 0:
                wait = max(0.0, self._next_probe - now)
                if not await self._stop.until(functools.partial(self._sleep, wait)):
                    return None
                continue
            waiter = _Waiter()
            self._waiters.append(waiter)
            try:
                woken = await self._stop.until(waiter.event.wait)
            finally:
                if not waiter.event.is_set():
                    self._waiters.remove(waiter)
            if waiter.ticket is not None:
                if woken:
                    return waiter.ticket
                self._in_flight -= 1  # granted as the run stopped: give the place back
            if not woken:
                return None

    def _take(self, state: Gate) -> int:
        if state is Gate.PROBING:
            self._next_probe = self._clock() + self._outage.probe_delay()
        self._in_flight += 1
        self._tickets += 1
        return self._tickets

    def admits(self, ticket: int) -> bool:
        """May the try holding `ticket` still go? Not if the gate closed on a 401/403 since it
        entered (it was waiting for the bucket): it must queue again, one at a time."""
        return self._opened or ticket >= self._closed_at_ticket

    def leave(self) -> None:
        """The try that entered is over (answered, failed, or never sent)."""
        self._in_flight -= 1
        if self._waiters:
            self._grant()

    def _grant(self) -> None:
        """Hand free places to the oldest waiters; while probing, wake one to time the probe."""
        state = self.state
        waiters = self._waiters
        if state is Gate.PROBING:
            if waiters and self._in_flight == 0:
                waiters.popleft().event.set()
            return
        now = self._clock()
        while waiters and state is not Gate.STOPPING and self._may_enter(state, now):
            waiter = waiters.popleft()
            waiter.ticket = self._take(state)
            waiter.event.set()

    def on_answer(self, answer: Answer, *, ticket: int, what: str = "",
                  heard: bool = True) -> None:
        """The answer to the try holding `ticket`; `what` describes it for an abort message.

        `heard` is False when no HTTP answer came back (timeout, connection error): that says
        nothing about the credentials, so it neither opens the gate nor resets the count.
        """
        if not heard and answer is not Answer.REJECTED:
            pass
        elif answer is Answer.REJECTED:
            self._rejections += 1
            if self._opened or ticket >= self._closed_at_ticket:
                self._opened = False  # back to one in flight
                self._closed_at_ticket = self._tickets + 1
            if self._rejections >= AUTH_ABORT_AFTER:
                self._stop.trigger(StopReason.ABORTED, (
                    f"the credentials were rejected ({what or 'HTTP 401/403'}) "
                    f"{self._rejections} times in a row: check the credentials, the "
                    "endpoint and --ca-bundle"))
        elif ticket >= self._closed_at_ticket:
            self._rejections = 0
            self._opened = True
        self._check_outage()
        state = self.state
        if state is not self._seen:  # the gate opened, closed, or an outage began or ended
            self._seen = state
            self._grant()

    def _check_outage(self) -> None:
        if self._outage.given_up:
            self._stop.trigger(StopReason.ABORTED, (
                f"the service has been failing for {self._outage.outage_for:.0f}s, longer "
                "than --max-outage: an outage that does not end"))

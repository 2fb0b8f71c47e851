"""Admission: how many tries may be in flight now, as an explicit state.

    SLOW_START  one try in flight, until an answer that is not 401/403 (a wrong key must not
                be tried against 100 000 tasks: the gateway locks an AK after a few bad
                signatures). A 401/403 at ANY point comes back here.
    OPEN        up to --concurrency in flight.
    PROBING     the `OutageGuard` says the service is down: one probe at a time, spaced by
                `probe_delay()`; first attempts and retries alike wait, in one queue. The
                probe is the queue's head; a line whose probe failed queues again at the
                back, so the probes visit the lines in turn. Back to OPEN (or SLOW_START)
                when the guard clears.
    STOPPING    the run stopped: nothing more enters.

Three 401/403 (or untrusted certificates) in a row abort the run, saying the credentials were
rejected; an outage longer than `--max-outage` aborts it, naming the outage and the option.

Each try that enters gets a ticket (a sequence number). An answer to a try that entered before
the gate closed on a 401/403 cannot reopen it: only an answer to a try sent after the closing
proves the key works again. So a revoked key costs at most 3 tries sent after the first
rejection, besides those already in flight.

The state is read from three sources, in this order, and nowhere else (`Admission.state`): the
run's `Stop` (STOPPING), the `OutageGuard` (PROBING), and `_Trust`, what the answers said of the
credentials (OPEN or SLOW_START). The fourth part is the places themselves: how many tries are
in flight and who waits for one; a place is taken in `_take` and given back in `leave`, only.
"""

from __future__ import annotations

import enum
import functools
import time
from collections import deque

import anyio

from batchsms.engine.bucket import Clock, Sleep
from batchsms.engine.feedback import Answer
from batchsms.engine.outage import OutageGuard
from batchsms.engine.stopping import Stop, StopReason

AUTH_ABORT_AFTER = 3
"""Rejections (401/403, untrusted certificate) in a row that abort the run."""


class _Waiter:
    """A try waiting for a place; `ticket` is set when a place is handed to it, `probe` when
    that place is the probe's (it must still wait for the probe's time)."""

    __slots__ = ("event", "probe", "ticket")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.ticket: int | None = None
        self.probe = False


class _Trust:
    """What the answers said of the credentials: open (up to --concurrency in flight) once an
    answer that is not 401/403 came to a try sent since the last closing; a 401/403 closes it
    (one in flight), and `rejections` in a row are counted for the abort."""

    __slots__ = ("closed_at_ticket", "opened", "rejections")

    def __init__(self) -> None:
        self.opened = False
        self.closed_at_ticket = 0  # tries with a lower ticket were sent before the closing
        self.rejections = 0

    def admits(self, ticket: int) -> bool:
        """Open, or `ticket` entered after the closing."""
        return self.opened or ticket >= self.closed_at_ticket

    def heard(self, ticket: int) -> None:
        """An HTTP answer that is not 401/403: the key works, if the try went after a closing."""
        if ticket >= self.closed_at_ticket:
            self.rejections = 0
            self.opened = True

    def rejected(self, ticket: int, next_ticket: int) -> int:
        """A 401/403 (or an untrusted certificate): close, unless the try entered before the
        gate closed already; the rejections in a row so far."""
        self.rejections += 1
        if self.admits(ticket):
            self.opened = False  # back to one in flight
            self.closed_at_ticket = next_ticket
        return self.rejections


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
        self._trust = _Trust()
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0  # changed by `_take` and `leave` only
        self._tickets = 0
        self._next_probe = 0.0
        self._waiters: deque[_Waiter] = deque()  # FIFO: one is woken per place freed
        self._seen = Gate.SLOW_START  # the state the places were last handed out in

    @property
    def state(self) -> Gate:
        if self._stop.stopped is not None:
            return Gate.STOPPING
        if self._outage.in_outage:
            return Gate.PROBING
        return Gate.OPEN if self._trust.opened else Gate.SLOW_START

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _may_enter(self, state: Gate) -> bool:
        if state is Gate.OPEN:
            return self._in_flight < self._concurrency
        return self._in_flight == 0  # SLOW_START, PROBING (the probe then waits for its time)

    def try_enter(self) -> int | None:
        """The common case, without waiting: a ticket when the gate is open, a place is free
        and nobody waits (no outage, no stop); None: `enter` decides."""
        if (self._trust.opened and self._in_flight < self._concurrency and not self._waiters
                and self._stop.stopped is None and not self._outage.in_outage):
            return self._take()
        return None

    async def enter(self) -> int | None:
        """Wait for a place among the tries in flight; its ticket, or None if the run stopped.

        Waiters are served first come, first served, in every state: a place freed is handed to
        the oldest waiter (`_grant`), and a try that arrives while others wait queues behind
        them. So a line never loses its turn to one that came later -- while probing, the line
        whose probe just failed comes back from its backoff to the back of the queue, and the
        probes visit the lines in turn instead of using up one line's attempts."""
        ticket = self.try_enter()
        if ticket is not None:
            return ticket
        self._check_outage()
        state = self.state
        if state is Gate.STOPPING:
            return None
        if not self._waiters and self._may_enter(state):
            ticket = self._take()
            return ticket if state is not Gate.PROBING or await self._probe_time() else None
        waiter = _Waiter()
        self._waiters.append(waiter)
        try:
            woken = await self._stop.until(waiter.event.wait)
        finally:
            if not waiter.event.is_set():
                self._waiters.remove(waiter)
        if waiter.ticket is None:  # only a stop wakes a waiter without a place
            return None
        if not woken:
            self.leave()  # granted as the run stopped: give the place back
            return None
        return waiter.ticket if not waiter.probe or await self._probe_time() else None

    async def _probe_time(self) -> bool:
        """The probe holds the one place while it waits for its time (so no other try can take
        it); False: the run stopped meanwhile (or the outage outlasted --max-outage), and the
        place is given back."""
        # One reading of the clock decides the wait: read twice, time passing in between (a
        # loaded machine) made it negative, and anyio.sleep raises ValueError on that.
        wait = max(0.0, self._next_probe - self._clock())
        if wait > 0 and not await self._stop.until(functools.partial(self._sleep, wait)):
            self.leave()
            return False
        self._check_outage()
        if self._stop.stopped is not None:
            self.leave()
            return False
        self._next_probe = self._clock() + self._outage.probe_delay()
        return True

    def _take(self) -> int:
        """A place in flight, and its ticket."""
        self._in_flight += 1
        self._tickets += 1
        return self._tickets

    def admits(self, ticket: int) -> bool:
        """May the try holding `ticket` still go? Not if the gate closed on a 401/403 since it
        entered (it was waiting for the bucket): it must queue again, one at a time."""
        return self._trust.admits(ticket)

    def leave(self) -> None:
        """The try that entered is over (answered, failed, or never sent): its place is free,
        for the oldest waiter if the state allows (none once the run stopped)."""
        self._in_flight -= 1
        if self._waiters:
            self._grant()

    def _grant(self) -> None:
        """Hand free places to the oldest waiters (while probing: the one place, to the head of
        the queue, which then waits for the probe's time holding it)."""
        state = self.state
        waiters = self._waiters
        while waiters and state is not Gate.STOPPING and self._may_enter(state):
            waiter = waiters.popleft()
            waiter.ticket = self._take()
            waiter.probe = state is Gate.PROBING
            waiter.event.set()

    def on_answer(self, answer: Answer, *, ticket: int, what: str = "",
                  heard: bool = True) -> None:
        """The answer to the try holding `ticket`; `what` describes it for an abort message.

        `heard` is False when no HTTP answer came back (timeout, connection error): that says
        nothing about the credentials, so it neither opens the gate nor resets the count.
        """
        trust = self._trust
        if answer is Answer.OK and self._seen is Gate.OPEN and ticket >= trust.closed_at_ticket:
            # The common case: open, and still open (an OK ends any outage, so no abort either).
            trust.heard(ticket)
            if self._stop.stopped is None and not self._outage.in_outage:
                return
        if answer is Answer.REJECTED:
            rejections = trust.rejected(ticket, next_ticket=self._tickets + 1)
            if rejections >= AUTH_ABORT_AFTER:
                self._stop.trigger(StopReason.ABORTED, (
                    f"the credentials were rejected ({what or 'HTTP 401/403'}) "
                    f"{rejections} times in a row: check the credentials, the "
                    "endpoint and --ca-bundle"))
        elif heard:
            trust.heard(ticket)
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

"""Stopping a run: one shared signal that every wait of the engine watches.

An abort, the deadline, an interrupt or a journal that cannot be written sets it once. From then
on no request starts, and every wait (the token bucket, admission, a backoff, a deferred retry,
the reader waiting for input) is woken at once, so each line still held gets its outcome and
no loop of the engine runs without a point where it sees the stop. Requests already in flight
are left to finish (an interrupt cancels them after its grace period, elsewhere).

`Deadline` is the one place `--deadline` is enforced: the sender asks it right before each
request, and its timer stops a run in which nothing is about to send (every line in a backoff).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from batchsms.engine.events import log


class StopReason(enum.StrEnum):
    """Why a run stopped early; the values are the `error_code` of lines it cut short."""

    ABORTED = "aborted"
    DEADLINE = "deadline"
    INTERRUPTED = "interrupted"
    BROKEN = "broken"  # the journal could not be written (exit 4): nothing more may be sent


@dataclass(frozen=True, slots=True)
class Stopped:
    """What stopped the run: the reason, a sentence for people, and the signal if any."""

    reason: StopReason
    message: str
    signum: int | None = None
    unreachable: bool = False  # the endpoint could not be reached before any answer: exit 2


class Stop:
    """The run's stop signal; `until(fn)` awaits `fn()` unless the run stops first."""

    def __init__(self) -> None:
        self.stopped: Stopped | None = None
        self._waiting: set[anyio.CancelScope] = set()
        self._event: anyio.Event | None = None  # made on first wait (in the loop)

    @property
    def reason(self) -> StopReason | None:
        return None if self.stopped is None else self.stopped.reason

    @property
    def message(self) -> str | None:
        return None if self.stopped is None else self.stopped.message

    def trigger(self, reason: StopReason, message: str, *, signum: int | None = None,
                unreachable: bool = False, **fields: object) -> bool:
        """Stop the run (the first call wins); True if this call stopped it. `fields` go in
        the stop's log event."""
        if self.stopped is not None:
            return False
        self.stopped = Stopped(reason, message, signum, unreachable)
        if reason is not StopReason.BROKEN:  # `run` says that one itself, once (exit 4)
            event = "run.deadline" if reason is StopReason.DEADLINE else f"run.{reason.value}"
            log.warning(event, reason=message, **fields)
        for scope in list(self._waiting):
            scope.cancel()
        if self._event is not None:
            self._event.set()
        return True

    async def wait(self) -> None:
        """Return once the run has stopped."""
        if self.stopped is not None:
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()

    async def until(self, fn: Callable[[], Awaitable[object]]) -> bool:
        """Await `fn()` unless the run stops first; False when it stopped."""
        if self.stopped is not None:
            return False
        with anyio.CancelScope() as scope:
            self._waiting.add(scope)
            try:
                await fn()
            finally:
                self._waiting.discard(scope)
        return not scope.cancelled_caught and self.stopped is None


class Deadline:
    """`--deadline`: the wall-clock moment after which no request starts (None: no deadline).

    `reached()` only tells; `stops()` stops the run once it is reached (the sender asks it right
    before each request, so no request starts late); `watch()` stops the run at the moment
    itself, for a run whose lines all wait (a backoff, an outage) and would not ask."""

    MESSAGE = "the --deadline passed"

    def __init__(self, at: float | None, stop: Stop, wall: Callable[[], float] = time.time) -> None:
        self.at = at
        self._stop = stop
        self._wall = wall

    def reached(self) -> bool:
        return self.at is not None and self._wall() >= self.at

    def stops(self) -> bool:
        """True, with the run stopped, once the deadline is reached."""
        if not self.reached():
            return False
        self._stop.trigger(StopReason.DEADLINE, self.MESSAGE)
        return True

    async def watch(self) -> None:
        """Stop the run when the deadline comes (returns at once without one)."""
        if self.at is None:
            return
        await anyio.sleep(max(0.0, self.at - self._wall()))
        self.stops()

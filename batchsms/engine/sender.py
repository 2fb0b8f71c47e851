"""One request with its retries -> a frozen `Result`: the only send loop of batchsms.

`run` (PUT per line), `tasks` (GET per page) and the line handlers of later commands all send
through a `Sender`, so every try, whatever it is for:

1. if it is a retry, asks the `RetryBudget`: a denied retry waits (deferred, first attempts go
   first) and asks again after `wait_hint()`; it is never dropped;
2. passes `Admission` (slow start / open / probing / stopping) and the `Pace` token bucket;
3. is sent, and its answer is fed to `Pace.on_answer`, the `OutageGuard` and `Admission`;
4. is retried after the backoff (Retry-After a lower bound) while `retry.decide` says so.

A request ends failed only when its attempts are used, the answer is not retryable, or the run
stops (abort, deadline, interrupt): then `Result.stopped` says so.

`attempts` counts requests that left the process (docs/reference.md §10). A try whose
`TransportError` has `sent=False` (connection refused, no descriptor, name not resolved) is
not counted and does not use up `--max-attempts`; the outage guard bounds how long such tries
go on.
`maybe_applied`: the request did not succeed, and one of its sent tries got no readable answer.
"""

from __future__ import annotations

import functools
import random as _random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

import anyio

from batchsms.engine.admission import Admission
from batchsms.engine.bucket import Clock, Sleep
from batchsms.engine.budget import RetryBudget
from batchsms.engine.events import log
from batchsms.engine.feedback import Answer, classify
from batchsms.engine.outage import OutageGuard
from batchsms.engine.pace import Pace
from batchsms.engine.retry import RetryPolicy, decide, parse_retry_after
from batchsms.engine.stats import RunStats
from batchsms.engine.stopping import Stop, StopReason
from batchsms.errors import TransportError
from batchsms.transport.client import Reply, task_path

MIN_DEFER = 0.01
"""Shortest wait of a deferred retry before it asks the budget again (a hint of 0 would spin)."""


class Client(Protocol):
    """What the engine needs of a transport: one request -> a `Reply`, or `TransportError`."""

    async def request(self, method: str, path: str, body: bytes = b"",
                      query: Sequence[tuple[str, str]] = ()) -> Reply: ...

    async def abort_in_flight(self) -> None: ...


class Request(NamedTuple):
    """One HTTP request to make, with retries: the same bytes every try. (A `NamedTuple`, as
    `Result`: one is made per line, and a frozen dataclass costs four times as much to make.)"""

    method: str
    path: str
    body: bytes = b""
    query: tuple[tuple[str, str], ...] = ()

    @classmethod
    def put_task(cls, task_id: str, body: bytes) -> Request:
        """UpdateTask: `PUT /v3/tasks/{task_id}` (the id percent-encoded as one segment)."""
        return cls("PUT", task_path(task_id), body)

    @classmethod
    def get_task(cls, task_id: str) -> Request:
        """ShowTask: `GET /v3/tasks/{task_id}`."""
        return cls("GET", task_path(task_id))


class Result(NamedTuple):
    """How one request ended, after all its tries (a `NamedTuple`: made per request)."""

    succeeded: bool
    reply: Reply | None  # the last HTTP answer (any status), or None if none came
    attempts: int  # requests that left the process
    error_code: str | None  # of the last try; None on success
    error_msg: str | None
    maybe_applied: bool
    stopped: StopReason | None  # the run stopped while the request still had tries to make
    stop_message: str | None
    first_sent: float | None  # the sender's clock
    last: Answer | None = None  # what the last try told (None: no try was made)

    @property
    def http_status(self) -> int | None:
        """The status of the last answer received (docs/reference.md §10), None if none came."""
        return None if self.reply is None else self.reply.status

    @property
    def request_id(self) -> str | None:
        """The request id of the last answer received."""
        return None if self.reply is None else self.reply.request_id

    @property
    def final(self) -> bool:
        """Ended on its own: succeeded, attempts used, or an answer not worth retrying."""
        return self.stopped is None


class _Tries:
    """What one request's tries have found so far (private to `Sender.send`)."""

    __slots__ = ("attempts", "error_code", "error_msg", "first_sent", "last", "maybe_applied",
                 "reply", "tries")

    def __init__(self) -> None:
        self.tries = 0  # every try that passed the bucket, sent or not
        self.attempts = 0
        self.reply: Reply | None = None
        self.error_code: str | None = None
        self.error_msg: str | None = None
        self.maybe_applied = False
        self.first_sent: float | None = None
        self.last: Answer | None = None


class Sender:
    """Sends `Request`s with retries through the run's pace, budget, outage guard and gate."""

    def __init__(self, *, client: Client, pace: Pace, budget: RetryBudget, outage: OutageGuard,
                 admission: Admission, policy: RetryPolicy, stop: Stop, stats: RunStats,
                 clock: Clock = time.monotonic, sleep: Sleep = anyio.sleep,
                 rng: Callable[[], float] = _random.random, deadline: float | None = None,
                 wall: Clock = time.time) -> None:
        self.client = client
        self.stop = stop
        self.stats = stats
        self.clock = clock
        self.pace = pace
        self._budget = budget
        self._outage = outage
        self._admission = admission
        self._policy = policy
        self._sleep = sleep
        self._rng = rng
        self._deadline = deadline
        self._wall = wall
        self._firsts_waiting = 0  # requests whose first try has not gone yet
        # Called when a request parks (backoff, deferred retry): the pipeline may start another
        # worker, so that parked lines do not keep first attempts from going.
        self.on_park: Callable[[], None] = lambda: None

    async def send(self, request: Request, about: Mapping[str, object] | None = None) -> Result:
        """Send `request` until it succeeds, cannot, or the run stops. `about` goes in logs.

        The common case -- the gate open, a token free, the first try answered 2xx -- goes
        without waiting, without `_Tries` and in this one coroutine; anything else continues
        in `_send` exactly where the lean path left it."""
        admission = self._admission
        ticket = admission.try_enter()  # the order of `_try`: admission, bucket, deadline
        if ticket is None:
            return await self._send(request, about, None)
        if not self.pace.try_acquire_nowait():
            admission.leave()  # nothing was awaited: no waiter to hand the place to
            return await self._send(request, about, None)
        if self._deadline is not None and self._wall() >= self._deadline:
            self.stop.trigger(StopReason.DEADLINE, "the --deadline passed")
            admission.leave()
            return self._result(_Tries(), stopped=True)
        self._budget.on_request(retry=False)
        sent_at = self.clock()
        try:
            answer: Reply | TransportError = await self.client.request(
                request.method, request.path, request.body, request.query)
        except TransportError as exc:
            answer = exc
        except BaseException:
            admission.leave()
            raise
        if isinstance(answer, Reply) and 200 <= answer.status < 300:  # Answer.OK
            try:
                stats = self.stats
                stats.requests += 1
                stats.by_http[answer.status] += 1
                self.pace.on_ok(sent_at)
                self._outage.on_answer(Answer.OK)
                admission.on_answer(Answer.OK, ticket=ticket)
            finally:
                admission.leave()
            return Result(True, answer, 1, None, None, False, None, None, sent_at, Answer.OK)
        t = _Tries()
        t.tries, t.first_sent = 1, sent_at
        return await self._send(request, about, (answer, sent_at, ticket), t)

    async def _send(self, request: Request, about: Mapping[str, object] | None,
                    sent: tuple[Reply | TransportError, float, int] | None,
                    t: _Tries | None = None) -> Result:
        """The general loop: `sent` is a first try already made (holding its place), if any."""
        if t is None:
            t = _Tries()
        stop = self.stop
        while True:
            if sent is None:
                if t.tries and not await self._retry_permit():
                    return self._result(t, stopped=True)
                sent = await self._try(request, t)
                if sent is None:
                    return self._result(t, stopped=True)
            answer, sent_at, ticket = sent
            sent = None
            try:  # the answer is fed to admission before the place is handed on
                delay = self._after_try(t, answer, sent_at, ticket)
            finally:
                self._admission.leave()
            if delay is None:
                return self._result(t, stopped=False)
            if delay < 0:  # dropped in flight by an interrupt: the answer is unknown
                return self._result(t, stopped=True)
            self.stats.retries += 1
            log.info("task.retry", **(about or {}), attempt=t.attempts,
                     http_status=None if isinstance(answer, TransportError) else answer.status,
                     error_code=t.error_code, delay=round(delay, 3),
                     **({} if not isinstance(answer, TransportError) or answer.sent
                        else {"sent": False}))
            self.on_park()
            if not await stop.until(functools.partial(self._sleep, delay)):
                return self._result(t, stopped=True)

    async def _try(self, request: Request, t: _Tries,
                   ) -> tuple[Reply | TransportError, float, int] | None:
        """One try through admission and the bucket: (answer, sent at, ticket), still holding
        its place in flight (the caller leaves); None: stopped."""
        stop, admission = self.stop, self._admission
        first = t.tries == 0  # a first attempt waiting for its turn: retries give way to it
        if first:
            self._firsts_waiting += 1
        try:
            while True:
                ticket = admission.try_enter()  # no coroutine while the gate is open
                if ticket is None:
                    ticket = await admission.enter()
                    if ticket is None:
                        return None
                holding = False
                try:
                    if not (self.pace.try_acquire_nowait()
                            or await stop.until(self.pace.acquire)):
                        return None
                    if not admission.admits(ticket):
                        continue  # the gate closed (a 401/403) while this waited: queue again
                    if self._deadline is not None and self._wall() >= self._deadline:
                        stop.trigger(StopReason.DEADLINE, "the --deadline passed")
                        return None
                    self._budget.on_request(retry=not first)
                    sent_at = self.clock()
                    if first:
                        t.first_sent = sent_at
                        self._firsts_waiting -= 1  # it goes now: no longer waiting
                        first = False
                    t.tries += 1
                    try:
                        answer: Reply | TransportError = await self.client.request(
                            request.method, request.path, request.body, request.query)
                    except TransportError as exc:
                        answer = exc
                    holding = True
                    return answer, sent_at, ticket
                finally:
                    if not holding:
                        admission.leave()
        finally:
            if first:  # stopped before it went
                self._firsts_waiting -= 1

    async def _retry_permit(self) -> bool:
        """Deferred, never dropped: while first attempts are waiting to go (for admission or
        the bucket), a retry the budget denies waits `wait_hint()` and asks again; with none
        waiting (the tail of a run, or every worker holding a retry) there is nothing to give
        way to, and it goes. False: the run stopped."""
        budget = self._budget
        while not budget.try_spend():
            if not self._firsts_waiting:
                break
            hint = max(budget.wait_hint(), MIN_DEFER)
            self.on_park()
            if not await self.stop.until(functools.partial(self._sleep, hint)):
                return False
        return True

    def _after_try(self, t: _Tries, answer: Reply | TransportError, sent_at: float,
                   ticket: int) -> float | None:
        """Feed the controllers and record the try; the delay before a retry, None when done,
        -1.0 when the try was cut by an interrupt."""
        stats = self.stats
        if isinstance(answer, TransportError):
            if answer.sent:
                t.attempts += 1
                stats.requests += 1
                t.maybe_applied = True
            t.error_code, t.error_msg = answer.code, str(answer)
            if self.stop.reason is StopReason.INTERRUPTED:
                return -1.0
            kind = t.last = classify(None, answer)
            self.pace.on_answer(kind, sent_at=sent_at)
            self._outage.on_answer(kind)
            self._admission.on_answer(kind, ticket=ticket, what=t.error_msg, heard=False)
            if not answer.retryable:
                return None
            status: int | None = None
            retry_after = None
        else:
            t.attempts += 1
            stats.requests += 1
            status = answer.status
            stats.by_http[status] += 1
            t.reply = answer
            kind = t.last = classify(status)
            self.pace.on_answer(kind, sent_at=sent_at)
            self._outage.on_answer(kind)
            if kind is Answer.OK:
                self._admission.on_answer(kind, ticket=ticket)
                t.error_code = t.error_msg = None
                return None
            t.error_code = answer.error_code or f"http_{status}"
            t.error_msg = answer.error_msg or f"HTTP {status}"
            self._admission.on_answer(kind, ticket=ticket, what=f"HTTP {status} {t.error_code}")
            retry_after = parse_retry_after(answer.retry_after, datetime.now(UTC))
        decision = decide(self._policy, t.attempts, status, status is None, retry_after,
                          self._rng, step=t.tries)
        return decision.delay if decision.retry else None

    def _result(self, t: _Tries, *, stopped: bool) -> Result:
        succeeded = t.reply is not None and t.reply.ok and t.error_code is None
        why = self.stop.stopped if stopped and not succeeded else None
        return Result(
            succeeded=succeeded, reply=t.reply, attempts=t.attempts,
            error_code=t.error_code, error_msg=t.error_msg,
            maybe_applied=t.maybe_applied and not succeeded,
            stopped=None if why is None else why.reason,
            stop_message=None if why is None else why.message, first_sent=t.first_sent,
            last=t.last)

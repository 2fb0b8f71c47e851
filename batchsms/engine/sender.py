"""One request with its retries -> a frozen `Result`: the only send loop of batchsms.

`run` (PUT or POST per line, by its op), `tasks` (GET per page) and the line handlers of later
commands all send through a `Sender`, so every try, whatever it is for:

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

The flow: `send` makes the first try, `_retry` the next ones after their delays; each try
(`_try`) holds its place in `Admission` from entering until its answer has been recorded and
fed back (`_after`), and says what comes next: a delay, or how the request `End`ed. The one
shortcut, for the common case, is at the top of `send`, with its figure.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import random as _random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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
from batchsms.engine.stopping import Deadline, Stop, StopReason
from batchsms.errors import CredentialsGoneError, TransportError
from batchsms.lines.reader import SPEED_LIMIT
from batchsms.transport.client import Reply, speed_limit_path, task_path

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

    @classmethod
    def update_speed(cls, task_id: str, body: bytes) -> Request:
        """UpdateSpeed: `POST /v3/tasks/{task_id}/speed-limit` (replaces the task's rules)."""
        return cls("POST", speed_limit_path(task_id), body)

    @classmethod
    def get_speed(cls, task_id: str) -> Request:
        """ShowsSpeedLimits: `GET /v3/tasks/{task_id}/speed-limit`."""
        return cls("GET", speed_limit_path(task_id))

    @classmethod
    def write(cls, op: str, task_id: str, body: bytes) -> Request:
        """The write of a line of operation `op` (lines/reader.py's UPDATE or SPEED_LIMIT)."""
        if op == SPEED_LIMIT:
            return cls.update_speed(task_id, body)
        return cls.put_task(task_id, body)


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


class End(enum.Enum):
    """How a request ended, when a try leaves it with no retry to wait for."""

    ANSWERED = "answered"  # succeeded, or an answer not worth retrying, or attempts used
    STOPPED = "stopped"  # the run stopped before the try went, or an interrupt cut it in flight


class Parking:
    """Who hears that a request parked (a backoff, a deferred retry): the pipeline, which may
    start another worker then, so that parked lines do not keep first attempts from going."""

    __slots__ = ("_listener",)

    def __init__(self) -> None:
        self._listener: Callable[[], None] | None = None

    def parked(self) -> None:
        if self._listener is not None:
            self._listener()

    @contextlib.contextmanager
    def listening(self, listener: Callable[[], None]) -> Iterator[None]:
        """`listener()` is called on each park until the block ends."""
        self._listener = listener
        try:
            yield
        finally:
            self._listener = None


class Sender:
    """Sends `Request`s with retries through the run's pace, budget, outage guard and gate."""

    def __init__(self, *, client: Client, pace: Pace, budget: RetryBudget, outage: OutageGuard,
                 admission: Admission, policy: RetryPolicy, stop: Stop, stats: RunStats,
                 clock: Clock = time.monotonic, sleep: Sleep = anyio.sleep,
                 rng: Callable[[], float] = _random.random, deadline: float | None = None,
                 wall: Clock = time.time, parking: Parking | None = None) -> None:
        self.client = client
        self.stop = stop
        self.stats = stats
        self.clock = clock
        self.pace = pace
        self.parking = parking if parking is not None else Parking()
        self._budget = budget
        self._outage = outage
        self._admission = admission
        self._policy = policy
        self._sleep = sleep
        self._rng = rng
        self.deadline = Deadline(deadline, stop, wall)
        self._firsts_waiting = 0  # requests whose first try has not gone yet

    @property
    def in_flight(self) -> int:
        """Tries holding a place in flight now (for `run --timeline`)."""
        return self._admission.in_flight

    @property
    def in_outage(self) -> bool:
        """Only probes go now: most recent tries failed (for `run --timeline`)."""
        return self._outage.in_outage

    async def send(self, request: Request, about: Mapping[str, object] | None = None) -> Result:
        """Send `request` until it succeeds, cannot, or the run stops. `about` goes in logs.

        The lean path, this module's one shortcut, is `_try` and `_after_reply` for the common
        case alone: the gate open, a token free, the first try answered 2xx, all in this
        coroutine without `_Tries`. It pays: bench/bench_engine.py under valgrind, 2000 vs
        7000 lines, counts ~144 000 instructions a line with it and ~159 000 without (10%;
        ~2% of a whole `run` request in bench/count_instructions.py). Any other case goes on
        through the general flow, `_try` then `_retry`, from where the lean path left it."""
        admission = self._admission
        # Past the deadline, `_try` says so in its order (admission, bucket, deadline); before
        # it, nothing is awaited from here to the send, so the order does not show.
        ticket = admission.try_enter() if not self.deadline.reached() else None
        if ticket is None:
            return await self._send(request, about)
        if not self.pace.try_acquire_nowait():
            admission.leave()  # nothing was awaited: no waiter to hand the place to
            return await self._send(request, about)
        self._budget.on_request(retry=False)
        sent_at = self.clock()
        try:
            try:
                answer: Reply | TransportError = await self.client.request(
                    request.method, request.path, request.body, request.query)
            except TransportError as exc:
                answer = exc
            if isinstance(answer, Reply) and 200 <= answer.status < 300:  # Answer.OK
                self._feed_ok(answer.status, sent_at, ticket)
                return Result(True, answer, 1, None, None, False, None, None, sent_at,
                              Answer.OK)
            t = _Tries()
            t.tries, t.first_sent = 1, sent_at
            then = self._after(t, answer, sent_at, ticket, about)
        finally:
            admission.leave()
        return await self._retry(request, t, about, then)

    async def _send(self, request: Request, about: Mapping[str, object] | None) -> Result:
        """The general flow: a first try, then retries while they are due."""
        t = _Tries()
        return await self._retry(request, t, about, await self._try(request, t, about))

    async def _retry(self, request: Request, t: _Tries, about: Mapping[str, object] | None,
                     then: float | End) -> Result:
        """Retry after each delay `then` until a try ends the request (or the run stops)."""
        while not isinstance(then, End):  # a delay: the try is to be retried after it
            self.parking.parked()
            if not (await self.stop.until(functools.partial(self._sleep, then))
                    and await self._retry_permit()):
                return self._result(t, stopped=True)
            then = await self._try(request, t, about)
        return self._result(t, stopped=then is End.STOPPED)

    async def _try(self, request: Request, t: _Tries,
                   about: Mapping[str, object] | None) -> float | End:
        """One try: through admission and the bucket, sent, and its answer fed back while it
        still holds its place in flight (so a place freed is handed on in the state the answer
        left). The delay before the next try, or how the request ended."""
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
                        return End.STOPPED
                try:
                    if not (self.pace.try_acquire_nowait()
                            or await stop.until(self.pace.acquire)):
                        return End.STOPPED
                    if not admission.admits(ticket):
                        continue  # the gate closed (a 401/403) while this waited: queue again
                    if self.deadline.stops():
                        return End.STOPPED
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
                    return self._after(t, answer, sent_at, ticket, about)
                finally:
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
            self.parking.parked()
            if not await self.stop.until(functools.partial(self._sleep, hint)):
                return False
        return True

    def _after(self, t: _Tries, answer: Reply | TransportError, sent_at: float, ticket: int,
               about: Mapping[str, object] | None) -> float | End:
        """Record the try's answer and feed it to the controllers (still holding its place);
        the delay before the next try, or how the request ended."""
        if isinstance(answer, TransportError):
            return self._after_error(t, answer, sent_at, ticket, about)
        return self._after_reply(t, answer, sent_at, ticket, about)

    def _after_reply(self, t: _Tries, reply: Reply, sent_at: float, ticket: int,
                     about: Mapping[str, object] | None) -> float | End:
        """An HTTP answer: counted, fed to pace, outage guard and admission, then judged."""
        t.attempts += 1
        t.reply = reply
        status = reply.status
        if 200 <= status < 300:  # Answer.OK, as `classify` says, without the call
            t.last = Answer.OK
            t.error_code = t.error_msg = None
            self._feed_ok(status, sent_at, ticket)
            return End.ANSWERED
        stats = self.stats
        stats.requests += 1
        stats.by_http[status] += 1
        kind = t.last = classify(status)
        self.pace.on_answer(kind, sent_at=sent_at)
        self._outage.on_answer(kind)
        t.error_code = reply.error_code or f"http_{status}"
        t.error_msg = reply.error_msg or f"HTTP {status}"
        self._admission.on_answer(kind, ticket=ticket, what=f"HTTP {status} {t.error_code}")
        retry_after = parse_retry_after(reply.retry_after, datetime.now(UTC))
        return self._retry_delay(t, status, retry_after, about)

    def _feed_ok(self, status: int, sent_at: float, ticket: int) -> None:
        """A 2xx answer, counted and fed to pace, outage guard and admission."""
        stats = self.stats
        stats.requests += 1
        stats.by_http[status] += 1
        self.pace.on_ok(sent_at)
        self._outage.on_answer(Answer.OK)
        self._admission.on_answer(Answer.OK, ticket=ticket)

    def _after_error(self, t: _Tries, error: TransportError, sent_at: float, ticket: int,
                     about: Mapping[str, object] | None) -> float | End:
        """No readable answer: counted if it left, fed to the controllers, then judged."""
        if error.sent:
            t.attempts += 1
            self.stats.requests += 1
            t.maybe_applied = True
        t.error_code, t.error_msg = error.code, str(error)
        if self.stop.reason is StopReason.INTERRUPTED:
            return End.STOPPED  # dropped in flight by an interrupt: the answer is unknown
        if isinstance(error, CredentialsGoneError):  # nothing may be signed any more: an auth abort
            self.stop.trigger(StopReason.ABORTED, str(error))
            return End.STOPPED
        kind = t.last = classify(None, error)
        if error.unreachable and not self.stats.by_http:
            return self._unreachable(error)
        self.pace.on_answer(kind, sent_at=sent_at)
        self._outage.on_answer(kind)
        self._admission.on_answer(kind, ticket=ticket, what=t.error_msg, heard=False)
        if not error.retryable:
            return End.ANSWERED
        return self._retry_delay(t, None, None, about, unsent=not error.sent)

    def _unreachable(self, error: TransportError) -> End:
        """The endpoint cannot be reached, and no answer has come in this run: the
        configuration, not an outage. The run stops at once (no --max-outage to wait out);
        this try's line ends failed with the cause (docs/reference.md §7, exit 2)."""
        self.stop.trigger(StopReason.ABORTED, (
            f"cannot reach the endpoint: {error}; no answer has come in this run, so this is "
            "the configuration (--endpoint/--region, DNS, the network, a proxy, --ca-bundle), "
            "not an outage"), unreachable=True)
        return End.ANSWERED

    def _retry_delay(self, t: _Tries, status: int | None, retry_after: float | None,
                     about: Mapping[str, object] | None, *, unsent: bool = False,
                     ) -> float | End:
        """`retry.decide` on the try just recorded: the backoff before the next, logged."""
        decision = decide(self._policy, t.attempts, status, status is None, retry_after,
                          self._rng, step=t.tries)
        if not decision.retry:
            return End.ANSWERED
        self.stats.retries += 1
        log.info("task.retry", **(about or {}), attempt=t.attempts, http_status=status,
                 error_code=t.error_code, delay=round(decision.delay, 3),
                 **({"sent": False} if unsent else {}))
        return decision.delay

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

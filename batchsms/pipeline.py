"""The run: planned lines -> rate-limited, retried PUTs -> exactly one outcome per line.

    feed (read + validate) --bounded stream--> N workers --> OutcomeWriter
                                                        | gate (slow start) + RateLimiter
                                                        | SmsClient, retry.decide

Guarantees, and where they are kept:
- one outcome per non-blank line: the feed writes invalid/skipped lines itself; a worker holds a
  line from dispatch until it writes its outcome; a stop never cancels a worker, it only wakes
  it (waits are cancelled at once, in-flight requests after a grace), so every held line still
  reaches the writer;
- per-task order: a task id is "busy" while one of its lines is held; later lines for it wait in
  `_pending` and are run by the same worker, in file order, after the previous one finishes;
- slow start and auth abort: the gate admits one request until an answer that is not 401/403;
  three 401/403 in a row before any success stop the run (CONTRACT §5);
- memory: the stream and the pending queues are bounded; the feed blocks when they are full.
"""

from __future__ import annotations

import enum
import functools
import random as _random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.lowlevel
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from batchsms.client import Reply, SmsClient
from batchsms.errors import TransportError
from batchsms.limiter import RateLimiter
from batchsms.outcomes import (
    Outcome,
    OutcomeWriter,
    Status,
    invalid_outcome,
    resume_key,
    utc_now,
)
from batchsms.plan import Planned
from batchsms.records import InvalidLine
from batchsms.retry import Reason, RetryPolicy, RetryQuota, decide, parse_retry_after

AUTH_STATUSES = frozenset({401, 403})
AUTH_ABORT_AFTER = 3
FAILURE_RATIO_MIN_LINES = 100
FEED_BATCH = 256
MAX_PENDING = 10_000

log = structlog.get_logger("batchsms")


class StopReason(enum.StrEnum):
    ABORTED = "aborted"
    DEADLINE = "deadline"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class SendOptions:
    """What the pipeline needs to know beyond its collaborators."""

    concurrency: int = 16
    abort_failure_ratio: float = 0.5
    deadline: float | None = None  # time.time() after which no request starts
    grace: float = 5.0  # seconds in-flight requests get after SIGINT/SIGTERM
    # Read and validate in a worker thread: for standard input, whose reads may block. A file
    # is read in the loop, a batch at a time (no thread hops, no contention for the GIL).
    read_in_thread: bool = False


@dataclass
class RunStats:
    """Counts for the summary, the logs and the metrics file."""

    by_status: Counter[str] = field(default_factory=Counter)
    by_error: Counter[str] = field(default_factory=Counter)
    by_http: Counter[int] = field(default_factory=Counter)
    requests: int = 0
    retries: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def duration(self) -> float:
        return (self.finished or time.monotonic()) - self.started


@dataclass(slots=True)
class _Held:
    """A line a worker holds: what its outcome will say so far."""

    item: Planned
    attempts: int = 0
    http_status: int | None = None
    request_id: str | None = None
    error_code: str | None = None
    error_msg: str | None = None
    first_send: float | None = None
    last_send: float = 0.0
    succeeded: bool = False
    retried_after_transport_error: bool = False
    cut_short: bool = False  # the run stopped while the line still had attempts to make


class Pipeline:
    """One run over one input; `run()` returns the stop reason, if any."""

    def __init__(self, *, run_id: str, client: SmsClient, limiter: RateLimiter,
                 policy: RetryPolicy, writer: OutcomeWriter, options: SendOptions,
                 resume_index: set[bytes] | None = None, quota: RetryQuota | None = None,
                 rng: Callable[[], float] = _random.random,
                 on_outcome: Callable[[Outcome], None] | None = None) -> None:
        self.run_id = run_id
        self.stats = RunStats()
        self.stop_reason: StopReason | None = None
        self.stop_message: str | None = None
        self._client = client
        self._limiter = limiter
        self._policy = policy
        self._quota = quota if quota is not None else RetryQuota()
        self._rng = rng
        self._writer = writer
        self._options = options
        self._resume = resume_index or set()
        self._on_outcome = on_outcome
        self._gate = anyio.CapacityLimiter(1)
        self._gate_open = False
        self._auth_failures = 0
        self._any_success = False
        self._sent_lines = 0
        self._failed_lines = 0
        self._busy: set[str] = set()
        self._pending: dict[str, deque[Planned]] = {}
        self._pending_count = 0
        self._pending_room = anyio.Event()
        self._waiting: set[anyio.CancelScope] = set()

    # -- stopping ---------------------------------------------------------------------------

    def stop(self, reason: StopReason, message: str) -> None:
        """No request starts from now on; every waiting line is woken to get its outcome."""
        if self.stop_reason is not None:
            return
        self.stop_reason, self.stop_message = reason, message
        log.warning(f"run.{reason.value}" if reason is not StopReason.DEADLINE
                    else "run.deadline", reason=message)
        for scope in list(self._waiting):
            scope.cancel()
        self._pending_room.set()

    async def cancel_in_flight(self) -> None:
        """After the grace period: end what is still in flight (its lines get `interrupted`)."""
        await self._client.abort_in_flight()

    async def _wait(self, fn: Callable[[], Awaitable[Any]]) -> bool:
        """Await `fn()` unless the run stops first; False when it stopped."""
        if self.stop_reason is not None:
            return False
        with anyio.CancelScope() as scope:
            self._waiting.add(scope)
            try:
                await fn()
            finally:
                self._waiting.discard(scope)
        return not scope.cancelled_caught and self.stop_reason is None

    # -- the run ----------------------------------------------------------------------------

    async def run(self, lines: Iterator[Planned | InvalidLine]) -> StopReason | None:
        send, receive = anyio.create_memory_object_stream[Planned](self._options.concurrency * 2)
        log.info("run.started", run_id=self.run_id, concurrency=self._options.concurrency,
                 rate=self._limiter.current_rate)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._flush_ticker)
                if self._options.deadline is not None:
                    tg.start_soon(self._deadline_timer, self._options.deadline)
                async with anyio.create_task_group() as workers:
                    for _ in range(self._options.concurrency):
                        workers.start_soon(self._worker, receive.clone())
                    receive.close()
                    async with send:
                        await self._feed(lines, send)
                tg.cancel_scope.cancel()
        finally:
            self.stats.finished = time.monotonic()
            self._writer.flush()
        return self.stop_reason

    async def _flush_ticker(self) -> None:
        while True:
            await anyio.sleep(1.0)
            self._writer.flush()

    async def _deadline_timer(self, deadline: float) -> None:
        await anyio.sleep(max(0.0, deadline - time.time()))
        self.stop(StopReason.DEADLINE, "the --deadline passed")

    async def _feed(self, lines: Iterator[Planned | InvalidLine],
                    send: MemoryObjectSendStream[Planned]) -> None:
        def next_batch() -> list[Planned | InvalidLine]:
            return [item for _, item in zip(range(FEED_BATCH), lines, strict=False)]

        while True:
            if self._options.read_in_thread:
                batch = await anyio.to_thread.run_sync(next_batch)
            else:
                batch = next_batch()
                await anyio.lowlevel.checkpoint()  # let the workers and the signals in
            if not batch:
                return
            for item in batch:
                if isinstance(item, InvalidLine):
                    self._record(invalid_outcome(self.run_id, item))
                elif self._resume and resume_key(item.task_id, item.sha256) in self._resume:
                    self._record(Outcome(self.run_id, item.number, item.task_id, item.ref,
                                         Status.SKIPPED, error_code="already_succeeded",
                                         error_msg="succeeded in an earlier run (--resume)",
                                         body_sha256=item.sha256, finished_at=utc_now()))
                elif self.stop_reason is not None:
                    self._record(self._outcome(_Held(item)))
                elif item.task_id in self._busy:
                    self._pending.setdefault(item.task_id, deque()).append(item)
                    self._pending_count += 1
                    while self._pending_count >= MAX_PENDING and self.stop_reason is None:
                        self._pending_room = anyio.Event()
                        await self._pending_room.wait()
                else:
                    self._busy.add(item.task_id)
                    try:  # no checkpoint per line while the workers keep up
                        send.send_nowait(item)
                    except anyio.WouldBlock:
                        await send.send(item)

    async def _worker(self, receive: MemoryObjectReceiveStream[Planned]) -> None:
        async with receive:
            while True:
                try:  # the common case, without a checkpoint: lines are waiting
                    item = receive.receive_nowait()
                except anyio.WouldBlock:
                    try:
                        item = await receive.receive()
                    except anyio.EndOfStream:
                        return
                except anyio.EndOfStream:
                    return
                next_item: Planned | None = item
                while next_item is not None:
                    self._record(self._outcome(await self._send_line(next_item)))
                    next_item = self._next_for(next_item.task_id)

    def _next_for(self, task_id: str) -> Planned | None:
        queue = self._pending.get(task_id)
        if not queue:
            self._busy.discard(task_id)
            return None
        item = queue.popleft()
        if not queue:
            del self._pending[task_id]
        self._pending_count -= 1
        self._pending_room.set()
        return item

    # -- one line ---------------------------------------------------------------------------

    async def _send_line(self, item: Planned) -> _Held:
        held = _Held(item)
        while True:
            held.cut_short = True  # until an attempt's answer says otherwise
            # The gate matters only during slow start: afterwards the number of workers
            # (--concurrency) is the bound, and the limiter need not be touched per request.
            gated = not self._gate_open
            if gated and not await self._acquire_slot():
                return held
            try:
                if self.stop_reason is not None or not (
                        self._limiter.try_acquire_nowait()
                        or await self._wait(self._limiter.acquire)):
                    return held
                if self._options.deadline is not None and time.time() >= self._options.deadline:
                    self.stop(StopReason.DEADLINE, "the --deadline passed")
                    return held
                reply = await self._attempt(held)
            finally:
                if gated:
                    self._gate.release()
            if isinstance(reply, TransportError) and self.stop_reason is StopReason.INTERRUPTED:
                # dropped by abort_in_flight (or lost while stopping): the answer is unknown
                held.error_code, held.error_msg = reply.code, str(reply)
                return held
            held.cut_short = False
            delay = self._after_attempt(held, reply)
            if delay is None:
                return held
            held.cut_short = True
            log.info("task.retry", line=item.number, task_id=item.task_id,
                     attempt=held.attempts, http_status=held.http_status,
                     error_code=held.error_code, delay=round(delay, 3))
            self.stats.retries += 1
            if not await self._wait(functools.partial(anyio.sleep, delay)):
                return held

    async def _acquire_slot(self) -> bool:
        """A place among the requests in flight (the gate), unless the run stops first."""
        if self.stop_reason is not None:
            return False
        try:
            self._gate.acquire_nowait()  # the common case, without a cancel scope
        except anyio.WouldBlock:
            return await self._wait(self._gate.acquire)
        return True

    async def _attempt(self, held: _Held) -> Reply | TransportError:
        """One request. After the grace period of an interrupt, `abort_in_flight` drops the
        connections, so a request still in flight ends here as a ConnectError (a cancel scope
        per request would cost more than the bare request path can afford)."""
        held.attempts += 1
        self.stats.requests += 1
        held.last_send = time.monotonic()  # the limiter's clock
        if held.first_send is None:
            held.first_send = held.last_send
        try:
            return await self._client.put_task(held.item.task_id, held.item.body)
        except TransportError as exc:
            return exc

    def _after_attempt(self, held: _Held, reply: Reply | TransportError) -> float | None:
        """Update the line and the run after one attempt; the delay before a retry, or None."""
        if isinstance(reply, TransportError):
            held.error_code, held.error_msg = reply.code, str(reply)
            if not reply.retryable:  # an untrusted certificate: as hopeless as a wrong key
                self._on_rejected(reply.code, str(reply))
                return None
            status, retry_after = None, None
        else:
            status = reply.status
            self.stats.by_http[status] += 1
            held.http_status, held.request_id = status, reply.request_id
            if reply.ok:
                held.succeeded = True
                held.error_code = held.error_msg = None
                self._on_answer(status)
                self._any_success = True
                self._quota.release(retried=held.attempts > 1,
                                    timeout=held.retried_after_transport_error)
                self._limiter.on_success()
                return None
            held.error_code = reply.error_code or f"http_{status}"
            held.error_msg = reply.error_msg or f"HTTP {status}"
            self._on_answer(status)
            if status == 429:
                self._limiter.on_throttle(sent_at=held.last_send)
            retry_after = parse_retry_after(reply.retry_after, datetime.now(UTC))
        decision = decide(self._policy, held.attempts, status, status is None, retry_after,
                          self._quota, self._rng)
        held.retried_after_transport_error = status is None
        if decision.reason is Reason.QUOTA_EXHAUSTED:
            held.error_msg = f"{held.error_msg} (retry budget exhausted)"
        return decision.delay if decision.retry else None

    def _on_answer(self, status: int) -> None:
        if status in AUTH_STATUSES and not self._any_success:
            self._on_rejected(f"HTTP {status}", "authentication rejected")
            return
        self._auth_failures = 0
        if not self._gate_open:
            self._gate_open = True
            self._gate.total_tokens = self._options.concurrency

    def _on_rejected(self, what: str, why: str) -> None:
        """Credentials or certificate refused: three in a row before any success stop the run."""
        if self._any_success:
            return
        self._auth_failures += 1
        if self._auth_failures >= AUTH_ABORT_AFTER:
            self.stop(StopReason.ABORTED, f"{why} ({what}) {self._auth_failures} times in a "
                      "row before any success: check the credentials, the endpoint and "
                      "--ca-bundle")

    # -- outcomes ---------------------------------------------------------------------------

    def _outcome(self, held: _Held) -> Outcome:
        item = held.item
        elapsed = None if held.first_send is None else \
            int((time.monotonic() - held.first_send) * 1000)
        if held.succeeded:
            status, code, msg = Status.SUCCEEDED, None, None
        elif held.attempts == 0:
            reason = self.stop_reason or StopReason.ABORTED
            status, code = Status.SKIPPED, reason.value
            msg = f"not sent: {self.stop_message}"
        else:
            status, code, msg = Status.FAILED, held.error_code, held.error_msg
            if self.stop_reason is not None and held.cut_short:
                code = self.stop_reason.value
                msg = f"stopped after {held.attempts} attempt(s) ({self.stop_message}); " \
                      f"last: {held.error_msg}"
        return Outcome(self.run_id, item.number, item.task_id, item.ref, status,
                       http_status=held.http_status, attempts=held.attempts, error_code=code,
                       error_msg=msg, request_id=held.request_id, body_sha256=item.sha256,
                       elapsed_ms=elapsed, finished_at=utc_now())

    def _record(self, outcome: Outcome) -> None:
        self._writer.write(outcome, durable=outcome.attempts > 0)
        stats = self.stats
        stats.by_status[outcome.status.value] += 1
        if outcome.error_code:
            stats.by_error[outcome.error_code] += 1
        if outcome.status is Status.FAILED:
            log.warning("task.failed", line=outcome.line, task_id=outcome.task_id,
                        http_status=outcome.http_status, error_code=outcome.error_code,
                        error_msg=outcome.error_msg, attempts=outcome.attempts)
        if outcome.status in (Status.SUCCEEDED, Status.FAILED):
            self._sent_lines += 1
            self._failed_lines += outcome.status is Status.FAILED
            self._check_failure_ratio()
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    def _check_failure_ratio(self) -> None:
        done, failed = self._sent_lines, self._failed_lines
        if done >= FAILURE_RATIO_MIN_LINES and failed / done > self._options.abort_failure_ratio:
            self.stop(StopReason.ABORTED, f"{failed} of {done} lines failed, more than "
                      f"--abort-failure-ratio {self._options.abort_failure_ratio:g}")

"""The run: planned lines -> a line handler per line, through one `Sender` -> one outcome each.

    feed (LineSource) --> TaskOrder --bounded stream--> workers --> handler(item, sender)
                                                                          --> OutcomeSink

- one outcome per line read: the feed writes invalid and resume-skipped lines itself (`--resume`
  asks `ResumeRun.skips` per valid line, in file order: batchsms/resume.py); a worker
  holds a line from dispatch until its outcome is written. A stop never cancels a worker, it
  wakes it (`Stop`), so every held line still reaches the writer;
- the stop reaches the reader too: after a stop the rest of a regular file is recorded as
  `skipped` (docs/reference.md §3), until `stop_reading()` (an interrupt's grace period ends, or a
  second signal); a stream (stdin, FIFO) is read no further, nor anything once the journal broke;
- per-task order (`TaskOrder`); memory flat: the stream, the pending queues and the threaded
  reader are bounded;
- the failure-ratio abort judges lines that ended `failed` on their own (attempts used, or an
  answer not worth retrying), not lines cut short by a stop;
- a journal write that fails (`JournalError`) stops the run at once and is raised by `run()`.

The handler is a seam: `run` sends the body by the line's op (`put_line`); other commands may
read before and after the write through the same `Sender`, sharing the pace, retries, task
order and credentials.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from batchsms.engine.bucket import Clock
from batchsms.engine.events import log
from batchsms.engine.feed import LineSource
from batchsms.engine.ordering import TaskOrder
from batchsms.engine.sender import Request, Sender
from batchsms.engine.stats import RunStats
from batchsms.engine.stopping import StopReason
from batchsms.errors import JournalError
from batchsms.journal.outcomes import Outcome, Status
from batchsms.journal.records import (
    invalid_outcome,
    not_sent_outcome,
    resumed_outcome,
    sent_outcome,
)
from batchsms.journal.resume import ResumeRun
from batchsms.lines.bodies import Planned
from batchsms.lines.reader import InvalidLine

FAILURE_RATIO_MIN_LINES = 100
MAX_WORKERS_PER_PLACE = 4
"""Lines held (sending, in backoff, or deferred) per place in flight, at most."""
_STOP_CODES = frozenset(reason.value for reason in StopReason)



class OutcomeSink(Protocol):
    """Where the pipeline records outcomes: the journal (`OutcomeWriter`) for the CLI, the
    iterator of `Client.run` for the Python API (client.py). `write` may raise `JournalError`."""

    def write(self, outcome: Outcome, *, durable: bool = False) -> None: ...

    def flush(self) -> None: ...


LineHandler = Callable[[Planned, Sender], Awaitable[Outcome]]
"""Handles one line through the run's sender and says how it ended."""


@dataclass(frozen=True, slots=True)
class SendOptions:
    """What the pipeline needs to know beyond its collaborators."""

    concurrency: int = 16
    abort_failure_ratio: float = 0.5


def put_line(run_id: str) -> LineHandler:
    """The default handler: send the line's body with retries, by its op: PUT (UpdateTask) or
    POST .../speed-limit (UpdateSpeed)."""
    async def handle(item: Planned, sender: Sender) -> Outcome:
        result = await sender.send(Request.write(item.op, item.task_id, item.body),
                                   {"line": item.number, "task_id": item.task_id})
        return sent_outcome(run_id, item, result, sender.clock())

    return handle


class _Workers:
    """The run's workers: one per place in flight at first, and one more each time a line parks
    (backoff, deferred retry) while the feed still sends lines (`one_more` listens to the
    sender's `Parking` only meanwhile), up to `MAX_WORKERS_PER_PLACE` per place, so that parked
    lines do not keep first attempts from going."""

    def __init__(self, pool: TaskGroup,
                 work: Callable[[MemoryObjectReceiveStream[Planned]], Coroutine[Any, Any, None]],
                 receive: MemoryObjectReceiveStream[Planned], concurrency: int) -> None:
        self._pool = pool
        self._work = work
        self._receive = receive
        self._count = 0
        self._most = concurrency * MAX_WORKERS_PER_PLACE
        for _ in range(concurrency):
            self._start()

    def _start(self) -> None:
        self._count += 1
        self._pool.start_soon(self._work, self._receive.clone())

    def one_more(self) -> None:
        """A line parked: lend its place to one more worker, if the pool may still grow."""
        if self._count < self._most:
            self._start()


class Pipeline:
    """One run over one input; `run()` returns how it stopped early, if it did."""

    def __init__(self, *, run_id: str, sender: Sender, writer: OutcomeSink,
                 options: SendOptions, resume: ResumeRun | None = None,
                 handler: LineHandler | None = None,
                 on_outcome: Callable[[Outcome], None] | None = None,
                 clock: Clock = time.monotonic) -> None:
        self.run_id = run_id
        self.sender = sender
        self.stop = sender.stop
        self.stats: RunStats = sender.stats
        self._writer = writer
        self._options = options
        self._resume = resume
        self._handler = handler if handler is not None else put_line(run_id)
        self._on_outcome = on_outcome
        self._clock = clock
        self._order: TaskOrder[Planned] = TaskOrder()
        self._done_lines = 0
        self._failed_lines = 0
        self._journal_error: JournalError | None = None
        self._reading_stopped = False

    @property
    def stop_message(self) -> str | None:
        return self.stop.message

    async def cancel_in_flight(self) -> None:
        """After the grace period of an interrupt: end what is in flight, read no more."""
        self.stop_reading()
        await self.sender.client.abort_in_flight()

    async def run(self, source: LineSource[Planned | InvalidLine],
                  about: Mapping[str, object] | None = None) -> StopReason | None:
        """Feed every line of `source` through the handler; raises `JournalError` if the
        outcomes could not be written. `about` goes in `run.started` (the CLI's endpoint,
        input, --out and credential source)."""
        # One worker per place in flight: at full speed no try waits for admission (its slow
        # path, a waiter per try, cost a fifth of the throughput with 4x the workers). A line
        # that parks (backoff, deferred retry) lends its place: one more worker starts, up to
        # MAX_WORKERS_PER_PLACE per place, so first attempts keep going meanwhile.
        concurrency = self._options.concurrency
        send, receive = anyio.create_memory_object_stream[Planned](concurrency)
        self.stats.started = self._clock()
        log.info("run.started", run_id=self.run_id, concurrency=concurrency,
                 rate=self.sender.pace.current_rate, **(about or {}))
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._flush_ticker)
                tg.start_soon(self.sender.deadline.watch)
                async with anyio.create_task_group() as pool, receive:
                    workers = _Workers(pool, self._worker, receive, concurrency)
                    with self.sender.parking.listening(workers.one_more):
                        async with send:
                            await self._feed(source, send)
                tg.cancel_scope.cancel()
        finally:
            source.close()
            self.stats.finished = self._clock()
            self._flush()
        if self._journal_error is not None:
            raise self._journal_error
        return self.stop.reason

    def _flush(self) -> None:
        try:
            self._writer.flush()
        except JournalError as exc:
            self._broken(exc)

    async def _flush_ticker(self) -> None:
        while True:
            await anyio.sleep(1.0)
            self._flush()

    def stop_reading(self) -> None:
        """Read no further input, whatever the stop (the end of an interrupt's grace period,
        or a second signal): the lines not read get no outcome."""
        self._reading_stopped = True

    def _reading_on(self, source: LineSource[Planned | InvalidLine]) -> bool:
        """After a stop, a regular file is read on only to record the rest as skipped (until
        `stop_reading()`); a stream, or a journal that cannot be written, is read no further."""
        reason = self.stop.reason
        if reason is None:
            return True
        return source.regular and reason is not StopReason.BROKEN and not self._reading_stopped

    async def _feed(self, source: LineSource[Planned | InvalidLine],
                    send: MemoryObjectSendStream[Planned]) -> None:
        stop, order, resume = self.stop, self._order, self._resume
        batch: list[Planned | InvalidLine] = []

        async def take() -> None:
            batch[:] = await source.take()

        while self._reading_on(source):
            if source.regular or stop.stopped is not None:
                await take()
            elif not await stop.until(take):
                return
            if not batch:
                return
            for item in batch:
                if not self._reading_on(source):
                    return
                if isinstance(item, InvalidLine):
                    self._record(invalid_outcome(self.run_id, item))
                elif resume is not None and resume.skips(item):
                    self._record(resumed_outcome(self.run_id, item))
                elif stop.stopped is not None:
                    self._record(self._not_sent(item))
                elif order.admit(item):
                    try:  # no checkpoint per line while the workers keep up
                        send.send_nowait(item)
                    except anyio.WouldBlock:
                        await send.send(item)
                elif order.full:
                    await stop.until(order.wait_for_room)

    def _not_sent(self, item: Planned) -> Outcome:
        stopped = self.stop.stopped
        assert stopped is not None
        return not_sent_outcome(self.run_id, item, stopped.reason, stopped.message)

    async def _worker(self, receive: MemoryObjectReceiveStream[Planned]) -> None:
        handler, sender, order = self._handler, self.sender, self._order
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
                    self._record(await handler(next_item, sender))
                    next_item = order.next_for(next_item.task_id)

    def _record(self, outcome: Outcome) -> None:
        if self._journal_error is not None:
            return  # nothing can be journaled any more; the run is stopping
        try:
            self._writer.write(outcome, durable=outcome.attempts > 0)
        except JournalError as exc:
            self._broken(exc)
            return
        stats = self.stats
        stats.by_status[outcome.status.value] += 1
        if outcome.error_code:
            stats.by_error[outcome.error_code] += 1
        if outcome.status is Status.FAILED:
            log.warning("task.failed", line=outcome.line, task_id=outcome.task_id,
                        http_status=outcome.http_status, error_code=outcome.error_code,
                        error_msg=outcome.error_msg, attempts=outcome.attempts)
        if outcome.status is Status.SUCCEEDED or (outcome.status is Status.FAILED
                                                  and outcome.error_code not in _STOP_CODES):
            self._done_lines += 1
            self._failed_lines += outcome.status is Status.FAILED
            self._check_failure_ratio()
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    def _broken(self, exc: JournalError) -> None:
        if self._journal_error is None:
            self._journal_error = exc
        self.stop.trigger(StopReason.BROKEN, f"the outcomes could not be written: {exc}")

    def _check_failure_ratio(self) -> None:
        done, failed = self._done_lines, self._failed_lines
        if done >= FAILURE_RATIO_MIN_LINES and failed / done > self._options.abort_failure_ratio:
            self.stop.trigger(StopReason.ABORTED, f"{failed} of {done} lines failed, more than "
                              f"--abort-failure-ratio {self._options.abort_failure_ratio:g}")

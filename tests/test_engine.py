"""The send engine alone: a fake client, a fake clock, fixed randomness; no sockets, no sleeps."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from structlog.testing import capture_logs

from batchsms.engine.admission import Admission, Gate, _Trust
from batchsms.engine.budget import RetryBudget
from batchsms.engine.feed import LoopLines, ThreadLines
from batchsms.engine.feedback import Answer
from batchsms.engine.ordering import TaskOrder
from batchsms.engine.outage import OutageGuard
from batchsms.engine.pace import Pace
from batchsms.engine.pipeline import Pipeline, SendOptions
from batchsms.engine.retry import RetryPolicy
from batchsms.engine.sender import Parking, Request, Result, Sender
from batchsms.engine.stats import RunStats
from batchsms.engine.stopping import Deadline, Stop, StopReason
from batchsms.errors import ConnectError, JournalError, RequestTimeout, TlsError, TransportError
from batchsms.journal.outcomes import Outcome
from batchsms.lines.bodies import Planned
from batchsms.lines.reader import InvalidLine
from batchsms.lines.schema import Problem
from batchsms.transport.client import Reply
from tests.clocks import FakeClock

pytestmark = pytest.mark.anyio


def reply(status: int, code: str | None = None, request_id: str | None = None) -> Reply:
    return Reply(status, request_id or f"req-{status}", code, None if code is None else "msg",
                 None, b"{}")


Action = Reply | TransportError


@dataclass
class FakeClient:
    """Answers from a script per path (then `default`); records every request and in-flight."""

    default: Action = field(default_factory=lambda: reply(200))
    scripts: dict[str, deque[Action]] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    hold: anyio.Event | None = None  # while set to an unset Event, requests stay in flight

    def script(self, path: str, *actions: Action) -> None:
        self.scripts.setdefault(path, deque()).extend(actions)

    async def request(self, method: str, path: str, body: bytes = b"",
                      query: Sequence[tuple[str, str]] = ()) -> Reply:
        self.sent.append(path)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await anyio.lowlevel.checkpoint()
            if self.hold is not None:
                await self.hold.wait()
            queue = self.scripts.get(path)
            action = queue.popleft() if queue else self.default
        finally:
            self.in_flight -= 1
        if isinstance(action, TransportError):
            raise action
        return action

    async def abort_in_flight(self) -> None:
        pass


class FakeOutage(OutageGuard):
    """An outage guard driven by the test, not by answers."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.gave_up = False
        self.answers: list[Answer] = []

    def on_answer(self, answer: Answer) -> None:
        self.answers.append(answer)

    @property
    def in_outage(self) -> bool:
        return self.down

    def probe_delay(self) -> float:
        return 2.0

    @property
    def outage_for(self) -> float:
        return 700.0 if self.gave_up else 0.0

    @property
    def given_up(self) -> bool:
        return self.gave_up


class StingyBudget(RetryBudget):
    """Denies the first `deny` retries, then allows all; the hint is fixed."""

    def __init__(self, deny: int) -> None:
        super().__init__()
        self.deny = deny
        self.asked = 0
        self.requests: list[bool] = []

    def on_request(self, *, retry: bool) -> None:
        self.requests.append(retry)

    def try_spend(self) -> bool:
        self.asked += 1
        if self.deny:
            self.deny -= 1
            return False
        return True

    def wait_hint(self) -> float:
        return 3.0


@dataclass
class Engine:
    client: FakeClient
    clock: FakeClock
    sender: Sender
    stop: Stop
    outage: OutageGuard
    admission: Admission


def engine(client: FakeClient | None = None, *, max_attempts: int = 5, concurrency: int = 4,
           budget: RetryBudget | None = None, outage: OutageGuard | None = None,
           clock: FakeClock | None = None) -> Engine:
    client = client or FakeClient()
    clock = clock or FakeClock()
    stop = Stop()
    outage = outage or OutageGuard(clock=clock)
    admission = Admission(concurrency=concurrency, outage=outage, stop=stop, clock=clock,
                          sleep=clock.sleep)
    sender = Sender(client=client, pace=Pace(0, 1, clock=clock, sleep=clock.sleep),
                    budget=budget or RetryBudget(clock=clock), outage=outage,
                    admission=admission, policy=RetryPolicy(max_attempts=max_attempts),
                    stop=stop, stats=RunStats(), clock=clock, sleep=clock.sleep,
                    rng=lambda: 1.0)
    return Engine(client, clock, sender, stop, outage, admission)


PUT = Request.put_task("t", b'{"speed_limit":1}')
PATH = PUT.path


# --- attempt: one request with its retries --------------------------------------------------


async def test_each_try_is_counted_and_backs_off_exactly() -> None:
    """503, 500, 502 then 200: 4 attempts, backoff 0.5, 1, 2 (random fixed at 1)."""
    e = engine()
    e.client.script(PATH, reply(503), reply(500), reply(502))
    result = await e.sender.send(PUT)
    assert result.succeeded
    assert result.attempts == 4
    assert result.http_status == 200
    assert e.clock.sleeps == [0.5, 1.0, 2.0]
    assert result.error_code is None
    assert not result.maybe_applied
    assert e.sender.stats.requests == 4
    assert e.sender.stats.retries == 3


async def test_retry_event_describes_its_own_attempt() -> None:
    """After a 504 then a connection error, attempt 2's event shows no status (issue 9)."""
    e = engine(max_attempts=3)
    e.client.script(PATH, reply(504, "SMS.504"), ConnectError("dropped"), reply(200))
    with capture_logs() as logs:
        result = await e.sender.send(PUT, {"line": 7})
    retries = [(x["attempt"], x["http_status"], x["error_code"], x["line"])
               for x in logs if x["event"] == "task.retry"]
    assert retries == [(1, 504, "SMS.504", 7), (2, None, "connection", 7)]
    assert result.succeeded


async def test_last_response_fields_survive_a_later_timeout() -> None:
    """CONTRACT §10: the outcome keeps the last *response*'s status and request id."""
    e = engine(max_attempts=2)
    e.client.script(PATH, reply(503, request_id="first"), RequestTimeout("no answer"))
    result = await e.sender.send(PUT)
    assert not result.succeeded
    assert result.final
    assert (result.http_status, result.request_id) == (503, "first")
    assert (result.error_code, result.attempts) == ("timeout", 2)
    assert result.maybe_applied  # the timed-out PUT may have been applied


async def test_tries_that_never_left_do_not_use_attempts() -> None:
    """Refused connections (sent=False) are retried but neither counted nor using attempts."""
    e = engine(max_attempts=1)
    refused = [ConnectError("refused", sent=False) for _ in range(4)]
    e.client.script(PATH, *refused, reply(200))
    result = await e.sender.send(PUT)
    assert result.succeeded
    assert result.attempts == 1
    assert e.sender.stats.requests == 1
    assert len(e.client.sent) == 5
    assert e.clock.sleeps == [0.5, 1.0, 2.0, 4.0]  # the backoff still grows


async def test_not_sent_failure_is_not_maybe_applied() -> None:
    """Refused then a 400: failed, and nothing of it can have been applied."""
    e = engine()
    e.client.script(PATH, ConnectError("refused", sent=False), reply(400, "SMS.0201"))
    result = await e.sender.send(PUT)
    assert (result.succeeded, result.attempts, result.maybe_applied) == (False, 1, False)
    assert result.error_code == "SMS.0201"


async def test_all_answers_read_is_not_maybe_applied() -> None:
    """Five 503s: failed with its attempts used, and certainly not applied."""
    e = engine()
    e.client.default = reply(503)
    result = await e.sender.send(PUT)
    assert (result.attempts, result.final, result.maybe_applied) == (5, True, False)


async def test_denied_retry_is_deferred_never_dropped() -> None:
    """First attempts are waiting; the budget says no twice: the retry waits wait_hint()
    twice, then goes and succeeds."""
    budget = StingyBudget(deny=2)
    e = engine(budget=budget)
    e.sender._firsts_waiting = 1  # as if another line's first attempt waited for its turn
    e.client.script(PATH, reply(503))
    result = await e.sender.send(PUT)
    assert result.succeeded
    assert result.attempts == 2
    assert e.clock.sleeps == [0.5, 3.0, 3.0]
    assert budget.requests == [False, True]  # the retry is told as a retry


async def test_denied_retry_goes_when_no_first_attempt_waits() -> None:
    """The tail of a run: nothing to give way to, so a denied retry is not held back."""
    budget = StingyBudget(deny=100)
    e = engine(budget=budget)
    e.client.script(PATH, reply(503), reply(503))
    result = await e.sender.send(PUT)
    assert result.succeeded
    assert e.clock.sleeps == [0.5, 1.0]


async def test_untrusted_certificate_is_not_retried() -> None:
    """An untrusted certificate is final at once (trying again cannot help)."""
    e = engine()
    e.client.default = TlsError("TLS certificate not trusted", sent=False)
    result = await e.sender.send(PUT)
    assert not result.succeeded
    assert result.final
    assert result.last is Answer.REJECTED
    assert len(e.client.sent) == 1


async def test_three_untrusted_certificates_abort() -> None:
    e = engine()
    e.client.default = TlsError("TLS certificate not trusted", sent=False)
    for _ in range(3):
        await e.sender.send(PUT)
    assert e.stop.reason is StopReason.ABORTED
    assert "credentials were rejected" in (e.stop.message or "")
    result = await e.sender.send(PUT)
    assert result.stopped is StopReason.ABORTED
    assert len(e.client.sent) == 3


async def test_stop_during_backoff_returns_at_once_with_the_tries_made() -> None:
    e = engine()
    e.client.default = reply(503)

    async def stop_soon() -> None:
        while not e.client.sent:
            await anyio.lowlevel.checkpoint()
        e.stop.trigger(StopReason.DEADLINE, "the --deadline passed")

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_soon)
        result = await e.sender.send(PUT)
    assert (result.attempts, result.stopped, result.final) == (1, StopReason.DEADLINE, False)


async def test_deadline_checked_before_each_send() -> None:
    e = engine()
    e.sender.deadline = Deadline(100.0, e.stop, wall=lambda: 100.0)
    result = await e.sender.send(PUT)
    assert result.attempts == 0
    assert result.stopped is StopReason.DEADLINE
    assert e.client.sent == []


# --- admission ------------------------------------------------------------------------------


async def test_slow_start_one_in_flight_until_an_answer() -> None:
    e = engine(concurrency=8)
    assert e.admission.state is Gate.SLOW_START
    results: list[Result] = []

    async def one(i: int) -> None:
        results.append(await e.sender.send(Request.put_task(f"t{i}", b"{}")))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(one, i)
    assert len(results) == 20
    assert all(r.succeeded for r in results)
    assert e.admission.state is Gate.OPEN
    assert 1 < e.client.max_in_flight <= 8  # the gate opened, and to concurrency at most


async def test_slow_start_holds_one_while_the_first_is_in_flight() -> None:
    client = FakeClient(hold=anyio.Event())
    e = engine(client, concurrency=8)
    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(e.sender.send, Request.put_task(f"t{i}", b"{}"))
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        assert client.in_flight == 1  # one alone until the first answer
        assert client.hold is not None
        client.hold.set()
    assert len(client.sent) == 5
    assert client.max_in_flight > 1  # the first answer opened the gate to the other four


async def test_revoked_key_costs_at_most_three_requests_after_the_first_401() -> None:
    """A key revoked mid-run: the gate closes at the first 401 (any point), 3 in a row abort."""

    @dataclass
    class Revoking(FakeClient):
        ok_left: int = 40
        first_401_seen_at: int | None = None  # requests sent when the first 401 came back

        async def request(self, method: str, path: str, body: bytes = b"",
                          query: Sequence[tuple[str, str]] = ()) -> Reply:
            self.sent.append(path)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            revoked = self.ok_left <= 0
            self.ok_left -= 1
            try:
                for _ in range(3):  # stay in flight a little: others overlap
                    await anyio.lowlevel.checkpoint()
            finally:
                self.in_flight -= 1
            if revoked:
                if self.first_401_seen_at is None:
                    self.first_401_seen_at = len(self.sent)
                return reply(401, "APIG.0301")
            return reply(200)

    client = Revoking()
    e = engine(client, concurrency=8)

    async def line(i: int) -> None:
        await e.sender.send(Request.put_task(f"t{i}", b"{}"))

    async with anyio.create_task_group() as tg:
        for i in range(300):
            tg.start_soon(line, i)
    assert e.stop.reason is StopReason.ABORTED
    assert "credentials were rejected" in (e.stop.message or "")
    assert "APIG.0301" in (e.stop.message or "")
    assert client.first_401_seen_at is not None
    after = len(client.sent) - client.first_401_seen_at
    assert after <= 3, (after, client.first_401_seen_at, len(client.sent))
    assert len(client.sent) < 60


async def test_a_401_after_successes_closes_the_gate_and_a_success_reopens_it() -> None:
    e = engine(concurrency=4)
    assert (await e.sender.send(PUT)).succeeded
    assert e.admission.state is Gate.OPEN
    e.client.script(PATH, reply(403, "SMS.9004"))
    result = await e.sender.send(PUT)
    assert result.http_status == 403
    assert result.final
    assert e.admission.state is Gate.SLOW_START
    assert (await e.sender.send(PUT)).succeeded
    assert e.admission.state is Gate.OPEN
    assert e.stop.reason is None


async def test_try_enter_only_when_open_free_and_nobody_waits() -> None:
    """The gate's no-wait path (no coroutine per try) never jumps a queue nor an outage."""
    outage = FakeOutage()
    stop = Stop()
    admission = Admission(concurrency=1, outage=outage, stop=stop)
    assert admission.try_enter() is None  # slow start: `enter` decides
    ticket = await admission.enter()
    assert ticket == 1
    admission.on_answer(Answer.OK, ticket=ticket)
    assert admission.try_enter() is None  # open, but the one place is taken
    async with anyio.create_task_group() as tg:
        tg.start_soon(admission.enter)  # queues for the place
        await _all_others_blocked()  # the waiter is queued now
        assert admission.try_enter() is None
        admission.leave()  # the place goes to the waiter, not to a newcomer
    assert admission.in_flight == 1
    admission.leave()
    assert admission.try_enter() == 3
    admission.leave()
    outage.down = True
    assert admission.try_enter() is None
    outage.down = False
    stop.trigger(StopReason.ABORTED, "test")
    assert admission.try_enter() is None


async def test_probing_sends_one_probe_at_a_time_spaced_by_probe_delay() -> None:
    """During an outage first attempts and retries alike wait; one probe per probe_delay()."""
    outage = FakeOutage()
    e = engine(outage=outage, concurrency=8)
    assert (await e.sender.send(PUT)).succeeded  # open the gate
    outage.down = True
    sent_at: list[float] = []
    others_in_flight: list[int] = []  # at each send during the outage

    @dataclass
    class Timing(FakeClient):
        async def request(self, method: str, path: str, body: bytes = b"",
                          query: Sequence[tuple[str, str]] = ()) -> Reply:
            sent_at.append(e.clock.now)
            if outage.down:
                others_in_flight.append(self.in_flight)
            if len(sent_at) >= 5:
                outage.down = False  # the service is back
            return await super().request(method, path, body, query)

    timing = Timing()
    e.sender.client = timing
    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(e.sender.send, Request.put_task(f"p{i}", b"{}"))
    assert others_in_flight == [0] * 5  # a probe goes alone
    first_five = sent_at[:5]
    assert all(b - a >= 2.0 for a, b in itertools.pairwise(first_five))
    assert len(timing.sent) == 12
    assert e.admission.state is Gate.OPEN


async def _all_others_blocked() -> None:
    """`anyio.wait_all_tasks_blocked` without its 0.1 s real sleeps per check."""
    me = asyncio.current_task()
    while True:
        await asyncio.sleep(0)
        if all(task is me or (task._fut_waiter is not None  # type: ignore[attr-defined]
                              and not task._fut_waiter.done())  # type: ignore[attr-defined]
               for task in asyncio.all_tasks()):
            return


class VirtualClock(FakeClock):
    """Time jumps to the next sleeper's deadline once every task is blocked (`drive`), so
    concurrent sleeps overlap as they do in real time. Sleepers due at the same moment are woken
    one at a time, the latest first when `lifo`: timers due together fire in no promised order."""

    def __init__(self, *, lifo: bool) -> None:
        super().__init__()
        self._due: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()
        self._sign = -1 if lifo else 1

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        event = anyio.Event()
        when = self.now + max(seconds, 0.0)
        heapq.heappush(self._due, (when, self._sign * next(self._order), event))
        await event.wait()

    async def drive(self) -> None:
        """Run beside the code under test; cancel it when that is done."""
        while True:
            await _all_others_blocked()
            if self._due:
                when, _, event = heapq.heappop(self._due)
                self.now = max(self.now, when)
                event.set()
            else:
                await anyio.lowlevel.checkpoint()


@pytest.mark.parametrize("lifo", [False, True], ids=["fifo_timers", "lifo_timers"])
async def test_probes_visit_the_lines_in_turn_during_an_outage(lifo: bool) -> None:
    """Issue 9 (a): a line whose probe failed goes to the back of the queue; it is not the next
    probe again. 4 lines, 3 attempts each, probes 2 s apart, and an outage of 8 probes: taken in
    turn every line fails exactly twice and then succeeds; a line picked again and again (it
    came out of its backoff and took the probe before the queue's head) used its 3 attempts."""
    clock = VirtualClock(lifo=lifo)
    outage = FakeOutage()  # probe_delay() == 2.0
    outage.down = True
    end = 15.0  # probes at 0, 2, ..., 14 fail; the one at 16 succeeds
    probes: list[tuple[float, str]] = []

    @dataclass
    class Down(FakeClient):
        async def request(self, method: str, path: str, body: bytes = b"",
                          query: Sequence[tuple[str, str]] = ()) -> Reply:
            probes.append((clock.now, path))
            outage.down = clock.now < end
            self.default = reply(503 if outage.down else 200)
            return await super().request(method, path, body, query)

    e = engine(Down(), outage=outage, max_attempts=3, concurrency=8, clock=clock)
    results: dict[str, Result] = {}

    async def send(task: str) -> None:
        results[task] = await e.sender.send(Request.put_task(task, b"{}"))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(clock.drive)
            async with anyio.create_task_group() as lines:
                for i in range(4):
                    lines.start_soon(send, f"p{i}")
            tg.cancel_scope.cancel()
    failed = [(t, path.rsplit("/", 1)[-1]) for t, path in probes if t < end]
    assert failed == [(2.0 * i, f"p{i % 4}") for i in range(8)]
    assert {task: (r.succeeded, r.attempts) for task, r in results.items()} == {
        f"p{i}": (True, 3) for i in range(4)}


async def test_probe_wait_is_never_negative_when_time_passes_between_readings() -> None:
    """The bench's rare exit 1 (ValueError from anyio.sleep in `Admission.enter`): the gate read
    the clock once to decide that the next probe could not go yet and again to compute the
    wait; on a loaded machine the second reading was past the probe time, the wait negative."""
    outage = FakeOutage()  # probe_delay() == 2.0
    outage.down = True
    clock = FakeClock()
    admission = Admission(concurrency=4, outage=outage, stop=Stop(), clock=clock,
                          sleep=clock.sleep)
    assert admission.state is Gate.PROBING
    assert await admission.enter() == 1  # the first probe, at 0.0: the next one at 2.0
    admission.leave()
    clock.now, clock.tick = 1.9, 0.2  # just before the next probe; 0.2 s per reading
    assert await admission.enter() == 2
    assert clock.sleeps == [pytest.approx(0.1)]  # one wait, the time left: never negative


async def test_outage_past_max_outage_aborts_naming_the_option() -> None:
    outage = FakeOutage()
    e = engine(outage=outage)
    outage.down = outage.gave_up = True
    result = await e.sender.send(PUT)
    assert result.stopped is StopReason.ABORTED
    assert result.attempts == 0
    assert "--max-outage" in (e.stop.message or "")
    assert "outage" in (e.stop.message or "")


# --- ordering -------------------------------------------------------------------------------


def item(number: int, task_id: str) -> Planned:
    return Planned(number, task_id, None, b'{"speed_limit":1}', "sha")


def test_task_order_keeps_file_order_and_frees_the_task() -> None:
    order: TaskOrder[Planned] = TaskOrder(max_pending=3)
    assert order.admit(item(1, "a"))
    assert order.admit(item(2, "b"))
    assert not order.admit(item(3, "a"))
    assert not order.admit(item(4, "a"))
    assert order.pending == 2
    assert not order.full
    assert not order.admit(item(5, "b"))
    assert order.full
    assert [order.next_for("a"), order.next_for("a")] == [item(3, "a"), item(4, "a")]
    assert order.next_for("a") is None
    assert order.admit(item(6, "a"))  # idle again
    assert order.pending == 1


# --- the pipeline ---------------------------------------------------------------------------


class ListWriter:
    """Collects outcomes; can be told to fail as a full disk would."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.outcomes: list[Outcome] = []
        self.fail_after = fail_after

    def write(self, outcome: Outcome, *, durable: bool = False) -> None:
        if self.fail_after is not None and len(self.outcomes) >= self.fail_after:
            raise JournalError("outcomes.jsonl: No space left on device")
        self.outcomes.append(outcome)

    def flush(self) -> None:
        if self.fail_after is not None and len(self.outcomes) >= self.fail_after:
            raise JournalError("outcomes.jsonl: No space left on device")


def lines(n: int, tasks: int | None = None) -> Iterator[Planned | InvalidLine]:
    for i in range(1, n + 1):
        yield item(i, f"t{i % tasks if tasks else i}")


def pipeline(e: Engine, writer: ListWriter, **options: Any) -> Pipeline:
    return Pipeline(run_id="r", sender=e.sender, writer=writer,  # type: ignore[arg-type]
                    options=SendOptions(concurrency=4, **options), clock=e.clock)


async def test_pipeline_one_outcome_per_line_in_task_order() -> None:
    e = engine()
    writer = ListWriter()
    await pipeline(e, writer).run(LoopLines(lines(60, tasks=7)))
    assert sorted(o.line for o in writer.outcomes) == list(range(1, 61))
    assert {o.status.value for o in writer.outcomes} == {"succeeded"}
    for task in {f"t{i % 7}" for i in range(1, 61)}:
        seen = [o.line for o in writer.outcomes if o.task_id == task]
        assert seen == sorted(seen)


async def test_journal_error_stops_at_once_and_propagates_as_itself() -> None:
    e = engine()
    writer = ListWriter(fail_after=5)
    with pytest.raises(JournalError, match="No space left"):
        await pipeline(e, writer).run(LoopLines(lines(500)))
    assert e.stop.reason is StopReason.BROKEN
    # Nothing starts after the failed write: only tries already admitted may finish.
    assert len(e.client.sent) <= 5 + 4 * 2


async def test_failure_ratio_judges_lines_that_used_their_attempts() -> None:
    e = engine(max_attempts=2)
    e.client.default = reply(404)
    writer = ListWriter()
    reason = await pipeline(e, writer, abort_failure_ratio=0.5).run(LoopLines(lines(400)))
    assert reason is StopReason.ABORTED
    assert "--abort-failure-ratio" in (e.stop.message or "")
    assert len(writer.outcomes) == 400  # the rest of a regular file: skipped, recorded


def endless_invalid() -> Iterator[Planned | InvalidLine]:
    n = 0
    while True:
        n += 1
        yield InvalidLine(n, None, None, (Problem("line", "not valid JSON"),))


class InterruptingWriter(ListWriter):
    """Interrupts the run once it has written `after` outcomes."""

    def __init__(self, stop: Stop, after: int) -> None:
        super().__init__()
        self.stop, self.after = stop, after

    def write(self, outcome: Outcome, *, durable: bool = False) -> None:
        super().write(outcome, durable=durable)
        if len(self.outcomes) == self.after:
            self.stop.trigger(StopReason.INTERRUPTED, "interrupted by SIGTERM", signum=15)


async def test_interrupt_stops_the_reader_of_an_endless_stream() -> None:
    """Every line invalid and no end: an interrupt stops a stream's reader at once."""
    e = engine()
    writer = InterruptingWriter(e.stop, after=1000)
    with anyio.fail_after(10):
        assert await pipeline(e, writer).run(ThreadLines(endless_invalid())) \
            is StopReason.INTERRUPTED
    assert len(writer.outcomes) < 1000 + 4 * 256


async def test_interrupt_reads_a_file_on_until_the_grace_ends() -> None:
    """A regular file is read on after an interrupt, its lines recorded (CONTRACT §3), until
    the grace period ends: even a file that never ends (a run reading its own outcomes)."""
    e = engine()
    writer = InterruptingWriter(e.stop, after=1000)
    run = pipeline(e, writer)

    async def grace() -> None:
        await e.stop.wait()
        await anyio.sleep(0.2)
        await run.cancel_in_flight()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(grace)
            assert await run.run(LoopLines(endless_invalid())) is StopReason.INTERRUPTED
    assert len(writer.outcomes) > 1000


async def test_abort_records_the_rest_of_a_file_as_skipped() -> None:
    e = engine()
    e.client.default = reply(401, "APIG.0301")
    writer = ListWriter()
    assert await pipeline(e, writer).run(LoopLines(lines(500))) is StopReason.ABORTED
    assert sorted(o.line for o in writer.outcomes) == list(range(1, 501))
    assert len(e.client.sent) == 3


def test_trust_reopens_only_on_an_answer_to_a_try_sent_after_the_closing() -> None:
    """Admission's credentials state alone: a 401/403 closes the gate; an answer to a try that
    entered before the closing neither reopens it nor moves the closing; one after it does."""
    trust = _Trust()
    trust.heard(1)
    assert trust.opened
    assert trust.rejected(2, next_ticket=5) == 1
    assert not trust.opened
    trust.heard(3)
    assert not trust.opened
    assert not trust.admits(4)
    assert trust.admits(5)
    assert trust.rejected(4, next_ticket=9) == 2  # counted, but the closing stays at 5
    assert trust.closed_at_ticket == 5
    trust.heard(5)
    assert trust.opened
    assert trust.rejections == 0


def test_parking_is_heard_only_while_listening() -> None:
    """The pipeline hears a line park only while it listens (while it feeds lines)."""
    parking, heard = Parking(), []
    parking.parked()
    with parking.listening(lambda: heard.append("parked")):
        parking.parked()
        parking.parked()
    parking.parked()
    assert heard == ["parked", "parked"]


async def test_the_deadline_stops_a_run_whose_lines_all_wait() -> None:
    """The deadline's timer stops the run at the moment itself, though no line asks (every one
    waits in a backoff): what `Pipeline.run` starts beside the workers."""
    e = engine()
    began = time.monotonic()
    e.sender.deadline = Deadline(10.0, e.stop, wall=lambda: 9.95 + time.monotonic() - began)
    with anyio.fail_after(5):
        await e.sender.deadline.watch()
    assert e.stop.reason is StopReason.DEADLINE
    assert Deadline(None, e.stop).reached() is False


async def test_an_unreachable_endpoint_before_any_answer_stops_at_once() -> None:
    """Refused, not resolved, TLS: before any answer came, the configuration (exit 2), no
    retries and no --max-outage to wait out; the line ends failed with the cause."""
    e = engine()
    e.client.default = ConnectError("cannot connect to 127.0.0.1:9: Connection refused; "
                                    "the request was not sent", sent=False, unreachable=True)
    result = await e.sender.send(PUT)
    assert result.final
    assert not result.succeeded
    assert (result.error_code, result.attempts) == ("connection", 0)
    assert e.stop.stopped is not None
    assert e.stop.stopped.unreachable
    assert e.stop.reason is StopReason.ABORTED
    assert "127.0.0.1:9" in (e.stop.message or "")
    assert "not an outage" in (e.stop.message or "")
    assert len(e.client.sent) == 1


async def test_an_unreachable_endpoint_after_an_answer_is_an_outage_as_before() -> None:
    e = engine(max_attempts=1)
    refused = [ConnectError("refused", sent=False, unreachable=True) for _ in range(3)]
    e.client.script(PATH, reply(200), *refused, reply(200))
    assert (await e.sender.send(PUT)).succeeded
    result = await e.sender.send(PUT)
    assert e.stop.stopped is None
    assert result.succeeded  # retried as before: unsent tries do not use attempts up
    assert len(e.client.sent) == 5

"""The Python API (docs/reference.md §12): `Client`, `validate` and `run_sync`, the library over
the engine.

Where it sits: at the top, below `commands/`. A `Client` opens what runs need once (the
connection resolved by transport/endpoint.py and opened by `open_sms`: the endpoint, or a
simulator started in this event loop; the credentials; one HTTP connection pool) and assembles
each run in one place, `Client._pipeline`: the line handler (changes/guarded_put.py) over a
sender and `Pipeline` (engine/build.py). `batchsms run` is the same `Client` (`_for_command`,
over the connection the command resolved before touching a file) and the same `pipeline()`,
writing to the journal instead of an iterator. What stays in `commands/` and never happens here:
signal handlers, process limits (RLIMIT_NOFILE), logging configuration, the progress bar, the
journal file and its lock, `--resume`, the undo side log, exit codes. So a `Client` works inside
a running event loop and in any thread.

    updates (iterable or async iterable of dicts)
      -> _Updates: numbered from 1, read and planned as input lines
      -> Pipeline (pace, retries, per-task order) -> _Sink -> bounded stream -> `async for`

Outcomes reach the caller through a bounded memory stream: while the caller does not take them,
the feed takes no more updates (backpressure), so memory stays flat whatever their number.
An abort ends the iteration with `AbortedError` after every update's outcome was yielded.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from itertools import islice
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from batchsms.changes.guarded_put import Capture, WriteChecks, line_handler
from batchsms.changes.preview import PlanEntry, SenderReader, plan_entries
from batchsms.engine.build import (
    EngineSettings,
    build_pipeline,
    build_sender,
    require_transport_features,
)
from batchsms.engine.feed import FEED_BATCH
from batchsms.engine.numbers import check_number, check_sending
from batchsms.engine.outage import DEFAULT_MAX_OUTAGE
from batchsms.engine.pipeline import OutcomeSink, Pipeline
from batchsms.engine.stats import RunStats
from batchsms.engine.stopping import Stopped
from batchsms.errors import (
    AbortedError,
    CredentialsError,
    EventLoopRunningError,
    UsageError,
)
from batchsms.journal.outcomes import Outcome, new_run_id
from batchsms.journal.resume import ResumeRun
from batchsms.lines.bodies import Planned, Planner
from batchsms.lines.reader import MAX_LINE_BYTES, OPS, UPDATE, InvalidLine, Line, parse_line
from batchsms.lines.schema import Problem
from batchsms.simulator import endpoint_url
from batchsms.transport.client import SmsClient
from batchsms.transport.credentials import AkSkCredentials, Credentials, TokenCredentials
from batchsms.transport.endpoint import Connection, ConnectionOptions, resolve_connection
from batchsms.transport.providers import CredentialProvider

__all__ = ["Client", "Update", "Updates", "run_sync", "validate"]

Update = Mapping[str, Any]
"""One input line as a dict (docs/reference.md §1): `task_id`, `body`, and optionally `ref`,
`expect`."""
Updates = Iterable[Update] | AsyncIterable[Update]

OUTCOME_BUFFER = 256
"""Outcomes waiting for the caller before the feed waits too."""


def _line_of(number: int, update: object) -> Line | InvalidLine:
    """An update read as the CLI reads a line of a file: the same checks, the same problems.

    It goes through its JSON bytes: what cannot be JSON (a set, bytes, a key that is not a
    string) is an invalid line, and the caller's dict is never held or changed."""
    if isinstance(update, Mapping) and not isinstance(update, dict):
        update = dict(update)
    try:
        raw = orjson.dumps(update)
    except TypeError as exc:  # orjson.JSONEncodeError is one
        return InvalidLine(number, *_ids(update), (Problem("line", f"not JSON: {exc}"),))
    if len(raw) > MAX_LINE_BYTES:
        return InvalidLine(number, *_ids(update), (Problem(
            "line", f"the update is {len(raw)} bytes as JSON, longer than the limit of "
            f"{MAX_LINE_BYTES} bytes"),))
    parsed = parse_line(number, raw)
    assert parsed is not None  # orjson never writes a blank line
    return parsed


def _ids(update: object) -> tuple[str | None, str | None]:
    if not isinstance(update, dict):
        return None, None
    task_id, ref = update.get("task_id"), update.get("ref")
    return (task_id if isinstance(task_id, str) else None, ref if isinstance(ref, str) else None)


def _planned(planner: Planner, number: int, update: object) -> Planned | InvalidLine:
    line = _line_of(number, update)
    return line if isinstance(line, InvalidLine) else planner.plan(line)


def validate(update: Update) -> list[Problem]:
    """Every problem of one input-line dict (docs/reference.md §1-2), each with `.path` and
    `.message`; [] when `run` would send it. No network."""
    item = _planned(Planner(), 1, update)
    return list(item.errors) if isinstance(item, InvalidLine) else []


class _Sink:
    """The pipeline's outcome writer for the API: each outcome into a bounded stream to the
    caller's `async for`; what does not fit waits in `_waiting` until the feed's next take
    (`drain`), which holds the feed back meanwhile. `_waiting` stays small: at most the lines
    held by the workers and one batch of the feed."""

    def __init__(self, send: MemoryObjectSendStream[Outcome]) -> None:
        self._send = send
        self._waiting: deque[Outcome] = deque()

    def write(self, outcome: Outcome, *, durable: bool = False) -> None:
        if not self._waiting:
            try:
                self._send.send_nowait(outcome)
            except anyio.WouldBlock:
                pass
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the caller stopped iterating: the run is being cancelled
            else:
                return
        self._waiting.append(outcome)

    def flush(self) -> None:
        pass  # nothing is buffered on the way to a file

    async def drain(self) -> None:
        """Hand every waiting outcome to the caller (waits while the caller does not take)."""
        while self._waiting:
            try:
                await self._send.send(self._waiting[0])
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._waiting.clear()
                return
            self._waiting.popleft()


class _Updates:
    """The pipeline's line source over the caller's updates: numbered from 1, planned, a batch
    at a time, after the caller has taken the outcomes waiting (`_Sink.drain`).

    An async iterable is read by `pump` (a task of the run) into a small stream, so `take()`
    returns what has arrived without waiting for a whole batch. `regular`: after an abort the
    rest is still read, and each update recorded as `skipped`: every update gets its outcome.
    """

    regular = True

    def __init__(self, updates: Updates, sink: _Sink, op: str | None = None) -> None:
        self._planner = Planner(default_op=op or UPDATE)
        self._sink = sink
        self._number = 0
        self._sync = None if isinstance(updates, AsyncIterable) else iter(updates)
        self._async = updates if isinstance(updates, AsyncIterable) else None
        self._error: Exception | None = None
        self._arrived: MemoryObjectReceiveStream[object] | None = None
        self._send: MemoryObjectSendStream[object] | None = None
        if self._async is not None:
            self._send, self._arrived = anyio.create_memory_object_stream[object](FEED_BATCH)

    @property
    def is_async(self) -> bool:
        return self._async is not None

    async def pump(self) -> None:
        """Read the async iterable into the stream `take()` reads (a task of the run)."""
        assert self._async is not None
        assert self._send is not None
        async with self._send:
            try:
                async for update in self._async:
                    await self._send.send(update)
            except Exception as exc:  # the caller's: raised by take(), as it is
                self._error = exc

    async def take(self) -> list[Planned | InvalidLine]:
        await self._sink.drain()
        if self._sync is not None:
            await anyio.lowlevel.checkpoint()  # let the workers in
            updates: list[object] = list(islice(self._sync, FEED_BATCH))
        else:
            assert self._arrived is not None
            try:
                updates = [await self._arrived.receive()]
            except anyio.EndOfStream:
                if self._error is not None:
                    raise self._error from None
                return []
            while len(updates) < FEED_BATCH:
                try:
                    updates.append(self._arrived.receive_nowait())
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
        first, self._number = self._number, self._number + len(updates)
        plan = self._planner
        return [_planned(plan, first + i, update) for i, update in enumerate(updates, 1)]

    def close(self) -> None:
        if self._arrived is not None:
            self._arrived.close()


@dataclass
class _Ending:
    """How a run ended, handed from the task that drove it to the caller's iterator."""

    stopped: Stopped | None = None
    error: BaseException | None = None


def _single(exc: BaseException) -> BaseException:
    """The one exception inside nested task-group groups, else the group itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class Client:
    """Sends updates to Huawei Cloud SMS: `async with Client(...) as client`, then
    `async for outcome in client.run(updates)` (docs/reference.md §12; README "Python API").

    `endpoint`, else `region`, else `BATCHSMS_ENDPOINT`; or `simulate=True`: a simulator
    started in this event loop for the client's life. `credentials`: a `TokenCredentials`, an
    `AkSkCredentials`, or a provider of them (transport/providers.py `CredentialProvider`: a
    `source`, `current()`, ...); None looks for them as the CLI does (docs/reference.md §6).
    Sending options mean what `run`'s do. Enter and leave it in the same task; it may run
    several `run`/`plan`.
    """

    def __init__(self, endpoint: str | None = None, *, region: str | None = None,
                 simulate: bool = False,
                 credentials: Credentials | CredentialProvider | None = None,
                 rate: float = 10.0, burst: float = 1, concurrency: int = 16,
                 max_attempts: int = 5, timeout: float = 30.0,
                 abort_failure_ratio: float = 0.5,
                 max_outage: float = DEFAULT_MAX_OUTAGE) -> None:
        if simulate and (endpoint or region):
            raise UsageError("give an endpoint or a region, or simulate=True, not both")
        if concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, got {concurrency}")
        check_sending(rate, max_attempts, timeout)
        check_number("burst", burst, burst >= 1, "at least 1")
        check_number("max_outage", max_outage, max_outage > 0, "more than 0")
        check_number("abort_failure_ratio", abort_failure_ratio,
                     0 <= abort_failure_ratio <= 1, "between 0 and 1")
        if credentials is not None:
            _check_credentials(credentials)
        self._setup(ConnectionOptions(endpoint, region, simulate, credentials=credentials),
                    EngineSettings(concurrency=concurrency, rate=rate, burst=burst,
                                   max_attempts=max_attempts, max_outage=max_outage,
                                   timeout=timeout, abort_failure_ratio=abort_failure_ratio))

    def _setup(self, options: ConnectionOptions, settings: EngineSettings,
               connection: Connection | None = None,
               env: Mapping[str, str] | None = None) -> None:
        self._options = options
        self._settings = settings
        self._connection = connection  # None: resolved from `options` when entered
        self._env = env  # None: os.environ when entered
        self._stack: AsyncExitStack | None = None
        self._sms: SmsClient | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    @classmethod
    def _for_command(cls, connection: Connection, settings: EngineSettings,
                     env: Mapping[str, str]) -> Client:
        """The commands' way in (`run`, `plan`): a connection they resolved before touching
        any file, and settings their config checked. Private: for `commands/`."""
        client = cls.__new__(cls)
        client._setup(ConnectionOptions(simulate=connection.endpoint is None), settings,
                      connection, env)
        return client

    def __repr__(self) -> str:
        options = self._options
        where = "simulate=True" if options.simulate else f"endpoint={options.endpoint!r}"
        return f"Client({where}, region={options.region!r}, credentials={options.credentials!r})"

    async def __aenter__(self) -> Client:
        if self._stack is not None:
            raise UsageError("this Client is already open")
        require_transport_features()
        env = os.environ if self._env is None else self._env
        connection = self._connection or await resolve_connection(self._options, env)
        async with AsyncExitStack() as opening:  # closes what opened if the rest fails
            self._sms = await opening.enter_async_context(
                open_sms(connection, env, self._settings))
            self._tg = await opening.enter_async_context(anyio.create_task_group())
            self._stack = opening.pop_all()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        if self._tg is not None:
            self._tg.cancel_scope.cancel()  # runs whose caller stopped iterating
        self._tg = self._sms = None
        # Not handed `exc`: a task group would wrap the caller's own exception in a group.
        # It propagates as it is (this returns None).
        await stack.aclose()

    def _open(self) -> tuple[SmsClient, anyio.abc.TaskGroup]:
        if self._sms is None or self._tg is None:
            raise UsageError("use the Client as an async context manager: "
                             "`async with batchsms.Client(...) as client:`")
        return self._sms, self._tg

    async def run(self, updates: Updates, *, op: str | None = None,
                  skip_unchanged: bool = False, verify: bool = False,
                  ) -> AsyncGenerator[Outcome, None]:
        """Send every update; yield each one's `Outcome` as it finishes (completion order).

        `updates`: input-line dicts, `line` being the 1-based position. An invalid one yields
        an `invalid` outcome with its problems; nothing is sent for it. `op` is `run --op`: the
        operation of updates that name none, "update" (None: the default) or "speed-limit"
        (UpdateSpeed, body ``{"speed_limit": [...]}``, docs/reference.md §11). `skip_unchanged` and
        `verify` are `run --skip-unchanged` and `run --verify`. Raises `AbortedError` after the
        last outcome when the run was aborted; an exception raised by `updates` ends the run
        and is raised as it is. Leaving the loop early stops the run (at once with
        `contextlib.aclosing`, else when the iterator is collected or the client closed).
        """
        _check_op(op)
        _check_updates(updates)
        _, tg = self._open()
        send, receive = anyio.create_memory_object_stream[Outcome](OUTCOME_BUFFER)
        sink = _Sink(send)
        source = _Updates(updates, sink, op)
        pipeline = self._pipeline(sink, WriteChecks(skip_unchanged=skip_unchanged, verify=verify))
        ending = _Ending()
        scope = anyio.CancelScope()

        async def drive() -> None:
            with scope:
                async with send:
                    try:
                        async with anyio.create_task_group() as reading:
                            if source.is_async:
                                reading.start_soon(source.pump)
                            await pipeline.run(source)
                            reading.cancel_scope.cancel()
                    except Exception as exc:  # raised in the caller's task, after the rest
                        ending.error = _single(exc)
                    ending.stopped = pipeline.stop.stopped
                    await sink.drain()

        tg.start_soon(drive)
        try:
            async with receive:
                async for outcome in receive:
                    yield outcome
        finally:
            scope.cancel()  # a no-op once the run ended; else the caller left the loop
        _raise_ending(ending)

    def _pipeline(self, writer: OutcomeSink, checks: WriteChecks, *, run_id: str | None = None,
                  stats: RunStats | None = None, resume: ResumeRun | None = None,
                  capture: Capture | None = None,
                  on_outcome: Callable[[Outcome], None] | None = None) -> Pipeline:
        """One run over this client's connection, outcomes to `writer`: the assembly `run`
        and `batchsms run` share. The rest is the CLI's: `stats` counted where it can read them
        when the journal breaks, `resume` (`--resume`), `capture` (`--undo-file`),
        `on_outcome` (progress). Private: for `commands/`."""
        sms, _ = self._open()
        run_id = new_run_id() if run_id is None else run_id
        return build_pipeline(sms, self._settings, run_id=run_id, writer=writer,
                              handler=line_handler(run_id, checks, capture), stats=stats,
                              resume=resume, on_outcome=on_outcome)

    async def plan(self, updates: Updates) -> AsyncGenerator[PlanEntry, None]:
        """What `run` would change, line by line, in input order (`batchsms plan`): each
        `PlanEntry` has `.verdict`, `.diff`, `.problems` and `.to_dict()` (`plan --json`'s
        object). Reads each task (ShowTask), writes nothing. Raises `AbortedError` after the
        last entry when reading was aborted (credentials rejected)."""
        _check_updates(updates)
        reader = self._reader()
        planner = Planner()
        items: Any
        if isinstance(updates, AsyncIterable):
            async def planned() -> AsyncIterator[Planned | InvalidLine]:
                number = 0
                async for update in updates:
                    number += 1
                    yield _planned(planner, number, update)
            items = planned()
        else:
            items = (_planned(planner, n, u) for n, u in enumerate(updates, 1))
        async for entry in self._plan_lines(items, reader):
            yield entry
        if reader.stopped is not None:
            raise AbortedError(f"plan stopped: {reader.stopped}")

    def _reader(self) -> SenderReader:
        """ShowTask through a sender of its own: this client's pace, retries and auth abort;
        `.stopped` says why reading stopped early. Private: for `commands/`."""
        sms, _ = self._open()
        return SenderReader(build_sender(sms, self._settings))

    def _plan_lines(self, items: Iterator[Planned | InvalidLine]
                    | AsyncIterator[Planned | InvalidLine],
                    reader: SenderReader) -> AsyncIterator[PlanEntry]:
        """`plan` over lines already read and planned (`batchsms plan` reads its input file)
        through `reader`. Private: for `commands/`."""
        return plan_entries(items, reader, concurrency=self._settings.concurrency)


@asynccontextmanager
async def open_sms(connection: Connection, env: Mapping[str, str],
                   settings: EngineSettings) -> AsyncIterator[SmsClient]:
    """The HTTP client of a resolved connection, after starting the simulator it names
    (`--simulate`; `env` says which credentials that simulator expects, if any), with the
    refresh of temporary credentials running beside it. Here, not in transport/, because this
    is the stage that may start a simulator; `run`, `plan`, `tasks`, `check` and `Client` all
    open their connection with it."""
    async with endpoint_url(env, connection.endpoint) as url, _sms_client(
            url, connection, settings) as sms:
        access = connection.access
        if access is None or not access.provider.temporary:
            yield sms
            return
        try:  # temporary credentials kept fresh in the background for the client's life
            async with anyio.create_task_group() as refreshing:
                refreshing.start_soon(access.provider.run)
                try:
                    yield sms
                finally:
                    refreshing.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # the caller's own exception, as it was raised
            raise _single(group) from None


def _sms_client(url: str, connection: Connection, settings: EngineSettings) -> SmsClient:
    """With what the chain resolved (proxy, clock, refreshing credentials) for a real endpoint;
    a rehearsal's simulator is reached directly."""
    if connection.access is None:
        return SmsClient(url, connection.auth, concurrency=settings.concurrency,
                         timeout=settings.timeout, tls=connection.tls)
    return SmsClient(url, connection.auth, concurrency=settings.concurrency,
                     timeout=settings.timeout, tls=connection.tls,
                     **connection.access.client_options())


def _raise_ending(ending: _Ending) -> None:
    if ending.error is not None:
        raise ending.error
    if ending.stopped is not None:
        raise AbortedError(f"run aborted: {ending.stopped.message}")


def _check_updates(updates: object) -> None:
    """One update, or JSONL text, where a collection of updates was meant: each key or
    character would be an invalid line."""
    if isinstance(updates, str | bytes | bytearray | Mapping):
        kind = "a mapping (one update?)" if isinstance(updates, Mapping) else "text"
        raise UsageError(f"updates must be an iterable or async iterable of update dicts, got "
                         f"{kind}: pass [update], or parse JSONL lines with json.loads first")


def _check_op(op: str | None) -> None:
    if op is not None and op not in OPS:
        raise UsageError(f"op={op!r}: must be 'update' (UpdateTask) or 'speed-limit' "
                         "(UpdateSpeed)")


def _check_credentials(credentials: object) -> None:
    if isinstance(credentials, TokenCredentials):
        if not credentials.token.strip():
            raise CredentialsError("the token is empty")
    elif isinstance(credentials, AkSkCredentials):
        if not (credentials.ak.strip() and credentials.sk.strip()):
            raise CredentialsError("an AK/SK needs both the ak and the sk")
    elif not all(callable(getattr(credentials, name, None))
                 for name in ("current", "secrets", "run", "force")):
        raise CredentialsError("credentials must be a batchsms.TokenCredentials, a "
                               "batchsms.AkSkCredentials or a credential provider, got "
                               f"{type(credentials).__name__}")


def run_sync(updates: Iterable[Update], endpoint: str | None = None, *,
             region: str | None = None, simulate: bool = False,
             credentials: Credentials | None = None, rate: float = 10.0, burst: float = 1,
             concurrency: int = 16, max_attempts: int = 5, timeout: float = 30.0,
             skip_unchanged: bool = False, verify: bool = False) -> list[Outcome]:
    """`Client.run` for a script without an event loop: every outcome, in completion order.

    Raises `EventLoopRunningError` where an event loop runs (use `Client` there), and
    `AbortedError` with every outcome in `.outcomes` when the run was aborted."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise EventLoopRunningError(
            "batchsms.run_sync cannot be called where an event loop is running (it would have "
            "to block that loop): use `async with batchsms.Client(...) as client:` and "
            "`async for outcome in client.run(updates)` instead")

    async def collect() -> list[Outcome]:
        outcomes: list[Outcome] = []
        async with Client(endpoint, region=region, simulate=simulate, credentials=credentials,
                          rate=rate, burst=burst, concurrency=concurrency,
                          max_attempts=max_attempts, timeout=timeout) as client:
            try:
                async for outcome in client.run(updates, skip_unchanged=skip_unchanged,
                                                verify=verify):
                    outcomes.append(outcome)  # noqa: PERF401 - kept when it aborts
            except AbortedError as exc:
                raise AbortedError(str(exc), outcomes=tuple(outcomes)) from None
        return outcomes

    return asyncio.run(collect())


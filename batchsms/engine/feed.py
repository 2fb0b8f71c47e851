"""Where the pipeline takes its lines from: on the event loop, or from a reader thread.

A regular file never blocks for long, so it is read on the loop a batch at a time (no thread
hops, no contention for the GIL), with a checkpoint between batches for the workers and the
signals. Anything else (standard input, a FIFO, `<(...)`) may pause for as long as its producer
likes: it is read by a daemon thread, and the loop takes whatever has arrived, without waiting
for a full batch, while requests in flight and signals go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

import anyio
import anyio.lowlevel

T = TypeVar("T")
FEED_BATCH = 256
"""Lines taken at a time."""


class LineSource(Protocol[T]):
    """A source of lines for the feed: `take()` -> the next lines, [] at the end."""

    @property
    def regular(self) -> bool:
        """A regular file: it ends, and reading on cannot block."""
        ...

    async def take(self) -> list[T]: ...

    def close(self) -> None: ...


class LoopLines(Generic[T]):
    """A regular file's lines, read on the loop a batch at a time."""

    regular = True

    def __init__(self, lines: Iterator[T]) -> None:
        self._lines = lines

    async def take(self) -> list[T]:
        await anyio.lowlevel.checkpoint()  # let the workers and the signals in
        return [item for _, item in zip(range(FEED_BATCH), self._lines, strict=False)]

    def close(self) -> None:
        pass


class ThreadLines(Generic[T]):
    """Lines read by a daemon thread; `take()` returns what has arrived (at least one line).

    At most `max_buffered` lines wait in memory: the thread blocks when they are not taken.
    A thread blocked in a read cannot be interrupted; it is a daemon, so it never holds the
    process up, and `close()` makes it stop at its next line.
    """

    regular = False

    def __init__(self, lines: Iterator[T], *, max_buffered: int = FEED_BATCH * 4) -> None:
        self._lines = lines
        self._max = max_buffered
        self._buffer: deque[T] = deque()
        self._cond = threading.Condition()
        self._done = False
        self._closed = False
        self._error: BaseException | None = None
        self._arrived: anyio.Event | None = None  # set by the thread when the loop waits
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._read, name="batchsms-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for item in self._lines:
                with self._cond:
                    while len(self._buffer) >= self._max and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        return
                    self._buffer.append(item)
                    self._notify()
        except BaseException as exc:  # handed to the loop, raised there
            self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._notify()

    def _notify(self) -> None:
        """Wake the loop if it waits (called with the condition held)."""
        event, self._arrived = self._arrived, None
        if event is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                self._loop.call_soon_threadsafe(event.set)

    async def take(self) -> list[T]:
        if self._thread is None:
            self._start()
        # A reader thread that keeps up always has lines ready: without this checkpoint the
        # feed would never yield, and neither the workers nor a signal would get a turn.
        await anyio.lowlevel.checkpoint()
        while True:
            with self._cond:
                if self._buffer:
                    n = min(len(self._buffer), FEED_BATCH)
                    batch = [self._buffer.popleft() for _ in range(n)]
                    self._cond.notify()
                    return batch
                if self._done:
                    if self._error is not None:
                        raise self._error
                    return []
                event = self._arrived = anyio.Event()
            await event.wait()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def line_source(lines: Iterator[T], *, regular: bool) -> LoopLines[T] | ThreadLines[T]:
    """The right reader for lines of an input that is a `regular` file or not (`CheckedLines`'s
    `regular`, as the reader found it)."""
    return LoopLines(lines) if regular else ThreadLines(lines)

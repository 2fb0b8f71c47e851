"""The simulator served from a background thread of a synchronous program.

For tests and benchmarks that drive a `batchsms` subprocess (or any synchronous client, such as
the official SDK) and still want the simulator's live counters.

`serve_in_thread(serve)` is the one way to host an async server (any async context manager)
on its own event loop in a daemon thread; the test suite's loopback servers use it too.
`simulator_in_thread` yields the simulator's handle alone. `simulator_thread` yields a
`SimThread`, whose `call(fn)` runs `fn()` on the simulator's own loop and returns its result:
the way to take a consistent snapshot of the live counters and request log, or to
`reconfigure` the faults, without racing the server's thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager, suppress
from dataclasses import dataclass
from typing import Generic, TypeVar

from batchsms.simulator.faults import FaultConfig
from batchsms.simulator.fleet import Fleet
from batchsms.simulator.server import SimulatorHandle, running

__all__ = ["Hosted", "SimThread", "serve_in_thread", "simulator_in_thread", "simulator_thread"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Hosted(Generic[T]):
    """What a server in a background thread yielded (`value`), and the loop serving it."""

    value: T
    loop: asyncio.AbstractEventLoop

    def call(self, fn: Callable[[], R], timeout: float = 30.0) -> R:
        """Run `fn()` on the server's loop (between two of its steps) and return the result."""
        async def job() -> R:
            return fn()

        return asyncio.run_coroutine_threadsafe(job(), self.loop).result(timeout)


@contextmanager
def serve_in_thread(serve: Callable[[], AbstractAsyncContextManager[T]],
                    start_timeout: float = 10.0) -> Iterator[Hosted[T]]:
    """Enter `serve()` on a new event loop in a daemon thread; yield what it yields; on exit,
    leave it on that loop and stop the thread. A failure to start, or to stop, is raised here."""
    box: list[T] = []
    failures: list[BaseException] = []
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        try:
            async with serve() as value:
                box.append(value)
                ready.set()
                await stop.wait()
        except BaseException as exc:  # handed to the caller's thread, raised there
            failures.append(exc)
        finally:
            ready.set()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        finally:  # here, not in the caller: a server slow to stop may outlive the join below
            loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(start_timeout):
        raise RuntimeError(f"the server did not start within {start_timeout:g} s")
    try:
        if failures:
            raise failures[0]
        yield Hosted(box[0], loop)
    finally:
        with suppress(RuntimeError):  # the loop is closed: the server has already stopped
            loop.call_soon_threadsafe(stop.set)
        thread.join(start_timeout)
    if failures:
        raise failures[0]


class SimThread(Hosted[SimulatorHandle]):
    """A simulator serving on `loop` in a background thread."""

    @property
    def handle(self) -> SimulatorHandle:
        return self.value


@contextmanager
def simulator_thread(faults: FaultConfig | None = None, log_size: int = 0, *,
                     fleet: Fleet | None = None) -> Iterator[SimThread]:
    with serve_in_thread(lambda: running(faults=faults, log_size=log_size, fleet=fleet)) as sim:
        yield SimThread(sim.value, sim.loop)


@contextmanager
def simulator_in_thread(faults: FaultConfig | None = None, log_size: int = 0, *,
                        fleet: Fleet | None = None) -> Iterator[SimulatorHandle]:
    """The handle alone, for callers that need no `call`."""
    with simulator_thread(faults, log_size, fleet=fleet) as sim:
        yield sim.handle

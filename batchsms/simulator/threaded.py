"""The simulator served from a background thread of a synchronous program.

For tests and benchmarks that drive a `batchsms` subprocess (or any synchronous client, such as
the official SDK) and still want the simulator's live counters.

`simulator_in_thread` yields the handle alone. `simulator_thread` yields a `SimThread`, whose
`call(fn)` runs `fn()` on the simulator's own loop and returns its result: the way to take a
consistent snapshot of the live counters and request log, or to `reconfigure` the faults,
without racing the server's thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from batchsms.simulator.faults import FaultConfig
from batchsms.simulator.fleet import Fleet
from batchsms.simulator.server import SimulatorHandle, running

__all__ = ["SimThread", "simulator_in_thread", "simulator_thread"]

T = TypeVar("T")


@dataclass(frozen=True)
class SimThread:
    """A simulator serving on `loop` in a background thread."""

    handle: SimulatorHandle
    loop: asyncio.AbstractEventLoop

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run `fn()` on the simulator's loop (between two of its steps) and return the result."""
        async def job() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(job(), self.loop).result(timeout)


@contextmanager
def simulator_thread(faults: FaultConfig | None = None, log_size: int = 0, *,
                     fleet: Fleet | None = None) -> Iterator[SimThread]:
    box: list[SimulatorHandle] = []
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with running(faults=faults, log_size=log_size, fleet=fleet) as handle:
            box.append(handle)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the simulator did not start within 10 s")
    try:
        yield SimThread(box[0], loop)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


@contextmanager
def simulator_in_thread(faults: FaultConfig | None = None, log_size: int = 0, *,
                        fleet: Fleet | None = None) -> Iterator[SimulatorHandle]:
    """The handle alone, for callers that need no `call`."""
    with simulator_thread(faults, log_size, fleet=fleet) as sim:
        yield sim.handle

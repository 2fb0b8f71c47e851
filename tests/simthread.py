"""The simulator served from a background thread, so a test can drive a `batchsms` subprocess
and still read the simulator's live counters."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from batchsms.simulator import running
from batchsms.simulator.faults import FaultConfig
from batchsms.simulator.server import SimulatorHandle


@contextmanager
def simulator_in_thread(faults: FaultConfig | None = None,
                        log_size: int = 0) -> Iterator[SimulatorHandle]:
    box: list[SimulatorHandle] = []
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with running(faults=faults, log_size=log_size) as handle:
            box.append(handle)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    assert ready.wait(10), "simulator did not start"
    try:
        yield box[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()

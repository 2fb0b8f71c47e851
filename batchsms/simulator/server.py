"""Starting and stopping a simulator inside the current asyncio loop.

`running()` is what tests and ``run --simulate`` use::

    async with running(fleet=Fleet.generate(100), faults=FaultConfig(fail_rate=0.1, seed=1)) as sim:
        ...  # send to sim.url; then look at sim.requests, sim.stats, sim.counts(task_id)

`Simulator` is the same thing as an object with ``start()``/``stop()``, for the command line,
which has to print its address and wait for a signal in between.

Outages of kind ``refuse`` are played here, not in the gateway: from the first request on, a
background task closes the listening socket at each such outage's start (and drops every open
connection: kept-alive ones included), then listens again on the same port when it ends. They
are scheduled from the configuration in force at the first request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from aiohttp import web

from batchsms.simulator.access import ExpectedCredentials
from batchsms.simulator.app import Received, SimulatorState, Stats, build_app, drop_transport
from batchsms.simulator.faults import FaultConfig, FaultInjector, OutageKind
from batchsms.simulator.fleet import Fleet, TaskCounts
from batchsms.simulator.metadata import MetadataState, metadata_app

__all__ = ["Simulator", "SimulatorHandle", "running"]

DEFAULT_LOG_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class SimulatorHandle:
    """A started simulator: where it listens, and what it has seen so far (live views)."""

    url: str  # http://HOST:PORT, no trailing slash
    host: str
    port: int
    tasks: Fleet  # the task store; tasks.counts maps task id -> TaskCounts
    requests: deque[Received]  # the most recent requests, oldest first (bounded)
    stats: Stats  # totals: received, applied, resets, by_status
    faults: FaultInjector  # faults.reconfigure(FaultConfig(...)) changes knobs while serving
    metadata_url: str | None = None  # the rehearsal endpoints of temporary credentials, if any

    def counts(self, task_id: str) -> TaskCounts:
        """Writes (PUT, UpdateSpeed POST) received and applied for this task id (zeros if none
        arrived)."""
        return self.tasks.counts.get(task_id) or TaskCounts()


class Simulator:
    """One aiohttp server on ``host:port`` (``port=0``: a free one), not yet started."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, fleet: Fleet | None = None,
                 faults: FaultConfig | None = None,
                 credentials: ExpectedCredentials | None = None,
                 log_size: int = DEFAULT_LOG_SIZE, shutdown_timeout: float = 1.0,
                 metadata: MetadataState | None = None, metadata_port: int = 0) -> None:
        """``metadata``: also serve the rehearsal endpoints of temporary credentials
        (metadata.py) on ``metadata_port`` (0: a free one; ``handle.metadata_url``), and
        accept the credentials they issue."""
        if log_size < 0:
            raise ValueError(f"log_size must be >= 0, got {log_size}")
        self._host = host
        self._port = port
        self._shutdown_timeout = shutdown_timeout
        self._requests: deque[Received] = deque(maxlen=log_size)
        self._state = SimulatorState(
            fleet=fleet if fleet is not None else Fleet.open(),
            faults=FaultInjector(faults if faults is not None else FaultConfig()),
            credentials=replace(credentials or ExpectedCredentials(), temporary=metadata)
            if metadata is not None else credentials or ExpectedCredentials(),
            log=self._requests if log_size else None,
        )
        self._metadata = metadata
        self._metadata_port = metadata_port
        self._metadata_runner: web.AppRunner | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._refusals: asyncio.Task[None] | None = None

    async def start(self) -> SimulatorHandle:
        """Bind and serve; returns once connections are accepted."""
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        runner = web.AppRunner(build_app(self._state), access_log=None,
                               shutdown_timeout=self._shutdown_timeout)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, backlog=1024)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._site = site
        port = self._port = int(runner.addresses[0][1])
        metadata_url = await self._start_metadata()
        self._refusals = asyncio.create_task(self._play_refusals(runner))
        host = f"[{self._host}]" if ":" in self._host else self._host
        return SimulatorHandle(
            url=f"http://{host}:{port}", host=self._host, port=port, tasks=self._state.fleet,
            requests=self._requests, stats=self._state.stats, faults=self._state.faults,
            metadata_url=metadata_url)

    async def _start_metadata(self) -> str | None:
        """The rehearsal endpoints on a port of their own (the SMS gateway's credential check
        must not stand in front of the services that hand out credentials)."""
        if self._metadata is None:
            return None
        runner = web.AppRunner(metadata_app(self._metadata), access_log=None,
                               shutdown_timeout=self._shutdown_timeout)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._metadata_port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._metadata_runner = runner
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{int(runner.addresses[0][1])}"

    async def stop(self) -> None:
        """Stop accepting, give in-flight requests ``shutdown_timeout`` s, then cancel them."""
        runner, self._runner = self._runner, None
        refusals, self._refusals = self._refusals, None
        if refusals is not None:
            refusals.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refusals
        if runner is not None:
            await runner.cleanup()
        metadata, self._metadata_runner = self._metadata_runner, None
        if metadata is not None:
            await metadata.cleanup()

    async def _play_refusals(self, runner: web.AppRunner) -> None:
        """Stop listening for each ``refuse`` outage, from the first request on."""
        state = self._state
        await state.first_request.wait()
        faults = state.faults
        origin, clock = faults.origin, faults.clock
        if origin is None:
            return
        outages = sorted((o for o in faults.config.outages if o.kind is OutageKind.REFUSE),
                         key=lambda o: o.start)
        for outage in outages:
            await asyncio.sleep(max(0.0, origin + outage.start - clock()))
            end = origin + outage.start + outage.duration
            if clock() >= end:
                continue
            site, self._site = self._site, None
            if site is not None:
                await site.stop()
            for transport in list(state.transports):
                if not transport.is_closing():
                    drop_transport(transport)
            state.transports.clear()
            await asyncio.sleep(max(0.0, end - clock()))
            site = web.TCPSite(runner, self._host, self._port, backlog=1024, reuse_address=True)
            await site.start()
            self._site = site


@asynccontextmanager
async def running(*, host: str = "127.0.0.1", port: int = 0, fleet: Fleet | None = None,
                  faults: FaultConfig | None = None,
                  credentials: ExpectedCredentials | None = None,
                  log_size: int = DEFAULT_LOG_SIZE,
                  metadata: MetadataState | None = None) -> AsyncIterator[SimulatorHandle]:
    """Serve in the current loop for the duration of the block.

    Defaults: loopback, a free port, an open fleet (every task id exists), no faults, no
    credential check (pass ``ExpectedCredentials.from_env(os.environ)`` to check them), and the
    last ``log_size`` requests kept in ``handle.requests`` (0: keep none, counters only), and
    no rehearsal endpoints of temporary credentials (``metadata``: serve them, metadata.py).
    """
    simulator = Simulator(host=host, port=port, fleet=fleet, faults=faults,
                          credentials=credentials, log_size=log_size, metadata=metadata)
    handle = await simulator.start()
    try:
        yield handle
    finally:
        await simulator.stop()

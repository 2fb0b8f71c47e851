"""A local Huawei Cloud SMS endpoint speaking the real API (docs/reference.md §8), for tests and
rehearsals.

Where it sits: the far end of the flow. ``run --simulate`` and every test that crosses HTTP send
their requests here instead of to Huawei Cloud; the official SDK cannot tell the difference for
UpdateTask, ShowTask, ListTasks, UpdateSpeed and ShowsSpeedLimits.

    fleet.py    the task store (open, generated or from a file), each task's speed-limit
                rules, and per-task write counts
    faults.py   seeded fault injection: latency, resets, throttles (window, quota, random),
                timed outages, 403s, 5xx, hangs, ignored fields
    views.py    ShowTask / ListTasks views: the official SDK's response models, field for field
    access.py   the credentials to expect, checked as the API gateway does
    app.py      the aiohttp application: gateway middleware + the five routes (UpdateTask,
                ShowTask, ListTasks, UpdateSpeed, ShowsSpeedLimits), error codes
    server.py   Simulator (start/stop) and running(), the async context manager
    cli.py      ``batchsms simulator`` options and main
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from batchsms.errors import UsageError

if TYPE_CHECKING:
    from batchsms.simulator.access import ExpectedCredentials
    from batchsms.simulator.app import Received, Stats
    from batchsms.simulator.faults import FaultConfig, FaultInjector, Outage, OutageKind
    from batchsms.simulator.fleet import Fleet, TaskCounts
    from batchsms.simulator.server import Simulator, SimulatorHandle, running

# Imported on first use: `batchsms --help` or `validate` must not pay for importing aiohttp.web.
_WHERE = {
    "ExpectedCredentials": "access",
    "Received": "app",
    "Stats": "app",
    "FaultConfig": "faults",
    "FaultInjector": "faults",
    "Outage": "faults",
    "OutageKind": "faults",
    "Fleet": "fleet",
    "TaskCounts": "fleet",
    "Simulator": "server",
    "SimulatorHandle": "server",
    "running": "server",
}

__all__ = [
    "ExpectedCredentials",
    "FaultConfig",
    "FaultInjector",
    "Fleet",
    "Outage",
    "OutageKind",
    "Received",
    "Simulator",
    "SimulatorHandle",
    "Stats",
    "TaskCounts",
    "endpoint_url",
    "running",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


@asynccontextmanager
async def endpoint_url(env: Mapping[str, str], endpoint: str | None) -> AsyncIterator[str]:
    """`endpoint`, or (None: `--simulate`) the URL of a simulator started for the run."""
    if endpoint is not None:
        yield endpoint
    else:
        from batchsms.simulator.access import ExpectedCredentials
        from batchsms.simulator.server import running

        try:  # a rehearsal checks credentials only when BATCHSMS_SIMULATOR_* ask it to
            expected = ExpectedCredentials.from_env(env)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        async with running(log_size=0, credentials=expected) as sim:
            yield sim.url

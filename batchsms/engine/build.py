"""The one place the engine's parts are put together (the way botocore wires `retries/`).

`build_sender`: the `Sender` with its pace, retry budget, outage guard, admission gate and retry
policy; `run`, `plan`, `tasks` and the library's `Client` all send through one, so a GET of
ListTasks and a PUT of UpdateTask are paced and retried alike. `build_pipeline`: a run's
`Pipeline` over such a sender, from the same `EngineSettings` (the deadline, the concurrency and
the abort ratio are given once, here, and reach the sender and the pipeline from one value);
`Client.run` and `batchsms run` both assemble their runs with it (client.py `Client._pipeline`).
"""

from __future__ import annotations

import inspect
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import anyio

from batchsms.engine.admission import Admission
from batchsms.engine.bucket import Clock, Sleep
from batchsms.engine.budget import RetryBudget
from batchsms.engine.outage import DEFAULT_MAX_OUTAGE, OutageGuard
from batchsms.engine.pace import Pace
from batchsms.engine.pipeline import LineHandler, OutcomeSink, Pipeline, SendOptions
from batchsms.engine.retry import RetryPolicy
from batchsms.engine.sender import Client, Sender
from batchsms.engine.stats import RunStats
from batchsms.engine.stopping import Stop
from batchsms.errors import UsageError
from batchsms.journal.outcomes import Outcome
from batchsms.journal.resume import ResumeRun

AIOHTTP_FLOOR = "3.12.11"
"""The oldest aiohttp batchsms runs on (pyproject.toml declares the same)."""


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """The options that shape sending (docs/reference.md §4), checked by the command that parsed
    them."""

    concurrency: int = 16
    rate: float = 10.0
    burst: float = 1.0
    max_attempts: int = 5
    max_outage: float = DEFAULT_MAX_OUTAGE
    deadline: float | None = None  # time.time() after which no request starts
    timeout: float = 30.0  # seconds per request (the transport's)
    abort_failure_ratio: float = 0.5


def build_sender(client: Client, settings: EngineSettings, *, stop: Stop | None = None,
                 stats: RunStats | None = None, clock: Clock = time.monotonic,
                 sleep: Sleep = anyio.sleep,
                 rng: Callable[[], float] = random.random) -> Sender:
    """A `Sender` with its pace, budget, outage guard and admission gate, on one clock."""
    stop = stop if stop is not None else Stop()
    outage = OutageGuard(max_outage=settings.max_outage, clock=clock)
    return Sender(
        client=client, pace=Pace(settings.rate, settings.burst, clock=clock, sleep=sleep),
        budget=RetryBudget(clock=clock), outage=outage,
        admission=Admission(concurrency=settings.concurrency, outage=outage, stop=stop,
                            clock=clock, sleep=sleep),
        policy=RetryPolicy(max_attempts=settings.max_attempts), stop=stop,
        stats=stats if stats is not None else RunStats(), clock=clock, sleep=sleep, rng=rng,
        deadline=settings.deadline)


def build_pipeline(client: Client, settings: EngineSettings, *, run_id: str,
                   writer: OutcomeSink, handler: LineHandler, stats: RunStats | None = None,
                   resume: ResumeRun | None = None,
                   on_outcome: Callable[[Outcome], None] | None = None) -> Pipeline:
    """A run's `Pipeline`: its own `Sender` (and `Stop`), `handler` per line, outcomes to
    `writer`. `resume` and `on_outcome` are the CLI's (`--resume`; progress, metrics)."""
    return Pipeline(
        run_id=run_id, sender=build_sender(client, settings, stats=stats), writer=writer,
        options=SendOptions(concurrency=settings.concurrency,
                            abort_failure_ratio=settings.abort_failure_ratio),
        resume=resume, handler=handler, on_outcome=on_outcome)


def require_transport_features() -> None:
    """Refuse to start (exit 2) on an aiohttp without what keeps `attempts` real.

    aiohttp silently re-sends an idempotent request (a PUT) once when a kept-alive connection
    drops; the switch that stops it, `ClientSession._retry_connection`, exists from 3.11, and
    `connector.close(abort_ssl=True)` (the end of SIGTERM's grace period) from 3.12.11.
    Without them a PUT could leave twice while the outcome says once.
    """
    have_switch = "_retry_connection" in getattr(aiohttp.ClientSession, "ATTRS", ())
    have_abort = "abort_ssl" in inspect.signature(aiohttp.BaseConnector.close).parameters
    if not (have_switch and have_abort):
        raise UsageError(f"aiohttp {aiohttp.__version__} is too old: batchsms needs aiohttp "
                         f">= {AIOHTTP_FLOOR} (to switch off its silent re-send of requests "
                         "and to cut connections after an interrupt); upgrade it")

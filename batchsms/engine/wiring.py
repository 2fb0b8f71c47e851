"""The one place the engine's parts are put together (the way botocore wires `retries/`).

`run` and `tasks` both call `build_sender`, so a GET of ListTasks and a PUT of UpdateTask pass
the same pace, retry budget, outage guard, admission gate and retry policy.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from batchsms.engine.admission import Admission
from batchsms.engine.attempt import Client, Sender
from batchsms.engine.budget import RetryBudget
from batchsms.engine.outage import DEFAULT_MAX_OUTAGE, OutageGuard
from batchsms.engine.pace import Pace
from batchsms.engine.stats import RunStats
from batchsms.engine.stopping import Stop
from batchsms.limiter import Clock, Sleep
from batchsms.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """The options that shape sending (CONTRACT §4), checked by the command that parsed them."""

    concurrency: int = 16
    rate: float = 10.0
    burst: float = 1.0
    max_attempts: int = 5
    max_outage: float = DEFAULT_MAX_OUTAGE
    deadline: float | None = None  # time.time() after which no request starts


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

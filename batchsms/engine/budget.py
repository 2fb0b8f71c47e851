"""Retry budget: retries at most a share of the traffic; a retry over budget waits, never fails.
(Interface; the sliding-window budget behind it is issue 9's to build.)"""

from __future__ import annotations

import time

from batchsms.limiter import Clock


class RetryBudget:
    """How many retries the traffic of the recent past allows."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock

    def on_request(self, *, retry: bool) -> None:
        """A try left (a first attempt, or a retry that `try_spend` allowed)."""

    def try_spend(self) -> bool:
        """May one retry go now? True takes the permission."""
        return True

    def wait_hint(self) -> float:
        """Seconds after which `try_spend` may say yes again (0.0 when it would now)."""
        return 0.0

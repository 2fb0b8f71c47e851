"""Fault injection for the simulator: what goes wrong with a request, decided when it arrives.

Every request draws the same five numbers from one ``random.Random(seed)``, whatever knobs are
set, so a given arrival order always meets the same faults: a sequential client sees exactly the
same answers on two runs with the same ``--seed``. The throttle is not random: it counts the
requests admitted in the trailing second (a sliding window on an injectable monotonic clock).

The gateway in front of the service applies them in this order (app.py), all before the body is
looked at, so a reset, a 429 or a 5xx never applies an update:

1. ``latency``: every request waits a uniform ``A``-``B`` ms before anything else happens;
2. ``reset_rate``: the connection is dropped (TCP RST) without a response;
3. authentication (401 ``APIG.0301``), see app.py;
4. ``throttle_rate``: when ``R`` requests were already admitted in the last second, 429
   ``APIG.0308`` (with ``Retry-After`` if ``retry_after`` is set); a 429 is not admitted, so a
   client sending ``2R``/s gets about half of its requests throttled;
5. ``fail_rate``: 500, 502, 503 or 504 (uniformly) with an error body;
6. ``hang_rate``: the answer is held back ``hang_ms`` more, then the request is served normally,
   as a slow backend would (a client that timed out meanwhile never learns it was applied).
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Decision", "FaultConfig", "FaultInjector", "parse_latency"]

FAIL_STATUSES = (500, 502, 503, 504)


def parse_latency(text: str) -> tuple[float, float]:
    """``"A"`` or ``"A-B"`` (milliseconds, A <= B) -> (A, B); ValueError when malformed."""
    low_text, sep, high_text = text.strip().partition("-")
    try:
        low = float(low_text)
        high = float(high_text) if sep else low
    except ValueError:
        raise ValueError(f"latency must be A or A-B in milliseconds, got {text!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high < low:
        raise ValueError(f"latency must be A or A-B with 0 <= A <= B, got {text!r}")
    return low, high


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """The knobs; all off by default. Rates are probabilities in [0, 1]."""

    seed: int | None = None
    fail_rate: float = 0.0
    reset_rate: float = 0.0
    hang_rate: float = 0.0
    hang_ms: float = 60_000.0
    throttle_rate: float | None = None  # requests admitted per trailing second; None = off
    retry_after: float | None = None  # seconds, sent on 429s when set
    latency_ms: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        _check_probability("fail_rate", self.fail_rate)
        _check_probability("reset_rate", self.reset_rate)
        _check_probability("hang_rate", self.hang_rate)
        if self.hang_ms < 0:
            raise ValueError(f"hang_ms must be >= 0, got {self.hang_ms}")
        if self.throttle_rate is not None and self.throttle_rate <= 0:
            raise ValueError(f"throttle_rate must be > 0, got {self.throttle_rate}")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError(f"retry_after must be >= 0, got {self.retry_after}")
        low, high = self.latency_ms
        if low < 0 or high < low:
            raise ValueError(f"latency_ms must be (A, B) with 0 <= A <= B, got {self.latency_ms}")


@dataclass(frozen=True, slots=True)
class Decision:
    """The random part of a request's fate, drawn at arrival."""

    delay_s: float  # latency before anything happens
    reset: bool
    fail_status: int | None  # a 5xx to answer instead of serving
    hang_s: float  # extra delay before serving


class FaultInjector:
    """Draws each request's `Decision` and runs the throttle window; one per server."""

    __slots__ = ("_clock", "_config", "_random", "_window")

    def __init__(self, config: FaultConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._random = random.Random(config.seed)
        self._clock = clock
        self._window: deque[float] = deque()

    @property
    def config(self) -> FaultConfig:
        return self._config

    def reconfigure(self, config: FaultConfig) -> None:
        """Switch knobs while serving (tests: "fail first, then recover"); restarts the seed."""
        self._config = config
        self._random = random.Random(config.seed)
        self._window.clear()

    def decide(self) -> Decision:
        """Draw this request's faults: always five numbers, so the sequence never shifts."""
        c = self._config
        r = self._random.random
        u_latency, u_reset, u_fail, u_status, u_hang = r(), r(), r(), r(), r()
        low, high = c.latency_ms
        fail = u_fail < c.fail_rate
        return Decision(
            delay_s=(low + (high - low) * u_latency) / 1000.0,
            reset=u_reset < c.reset_rate,
            fail_status=FAIL_STATUSES[int(u_status * len(FAIL_STATUSES))] if fail else None,
            hang_s=c.hang_ms / 1000.0 if u_hang < c.hang_rate else 0.0,
        )

    def admit(self) -> bool:
        """True if the throttle lets this request through now (and count it), else False."""
        limit = self._config.throttle_rate
        if limit is None:
            return True
        now = self._clock()
        window = self._window
        horizon = now - 1.0
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) >= limit:
            return False
        window.append(now)
        return True

"""Fault injection for the simulator: what goes wrong with a request, decided when it arrives.

Every request draws the same five numbers from one ``random.Random(seed)``, whatever knobs are
set, so a given arrival order always meets the same faults: a sequential client sees exactly the
same answers on two runs with the same ``--seed``. The faults added later (random 429s, partial
outages, 403s) draw three more numbers per request from a second stream seeded from the same
seed, so they never shift the first five; the faults after an update (``lose_rate``,
``late_rate``) draw two more from a third stream, for the same reason. The throttles are not
random: a sliding window and a token bucket, both on an injectable monotonic clock.

Timed outages (`Outage`) count their START from the **first request** the simulator receives
(not from start-up: a client's own start-up time does not eat into them).

The gateway in front of the service applies them in this order (app.py), all before the body is
looked at, so a reset, a 429, a 403 or a 5xx never applies an update:

1. ``latency``: every request waits a uniform ``A``-``B`` ms before anything else happens;
2. an outage of kind ``refuse`` or ``close`` in force: the connection is dropped (refuse: the
   listening socket is closed too, see server.py; close: closed without an answer);
   ``reset_rate``: the connection is dropped (TCP RST) without a response;
3. authentication (401 ``APIG.0301``), see app.py;
4. throttles, each a 429 ``APIG.0308`` (with ``Retry-After`` if ``retry_after`` is set):
   ``throttle_random`` (a share P whatever the rate), then ``throttle_rate`` (when ``R``
   requests were already counted in the trailing second; only admitted requests are counted,
   unless ``throttle_count_all``), then ``quota_rate`` (a token bucket of ``quota_rate`` tokens/s
   holding at most ``quota_burst``; a rejected request costs no token);
5. an outage with an HTTP status in force (for the share of requests it hits);
6. ``forbid_rate`` / ``forbid_from``: 403 ``SMS.9004`` (the reference page's permission error);
7. ``fail_rate``: 500, 502, 503 or 504 (uniformly) with an error body;
8. ``hang_rate``: the answer is held back ``hang_ms`` more, then the request is served normally,
   as a slow backend would (a client that timed out meanwhile never learns it was applied).

Two faults come *after* the route, and only for an update it applied (a PUT answered 200): the
write has landed, the answer is what goes wrong (the case a client must treat as "maybe
applied"):

9. ``lose_rate``: the connection is dropped (TCP RST) instead of the 200: the client sees a
   connection error for a write that was applied;
10. ``late_rate``: the 200 is held back ``late_ms`` (a client whose timeout is shorter gives up
    on a write that was applied; unlike ``hang_rate``, nothing lands after the client gave up).

``ignore_fields`` is not a gateway fault: the route answers 200 but does not apply those body
paths (a silently ignored field, for ``run --verify``).
"""

from __future__ import annotations

import enum
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "FaultConfig",
    "FaultInjector",
    "Injection",
    "Outage",
    "OutageKind",
    "parse_latency",
    "parse_outage",
]

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


class OutageKind(enum.Enum):
    """How the service is down during an `Outage`."""

    STATUS = "status"  # answered with an HTTP status (503 by default)
    REFUSE = "refuse"  # connections refused: not listening, kept-alive connections dropped
    CLOSE = "close"  # connections accepted, then closed without an answer


@dataclass(frozen=True, slots=True)
class Outage:
    """From ``start`` s after the first request, for ``duration`` s, ``share`` of requests fail."""

    start: float
    duration: float
    kind: OutageKind = OutageKind.STATUS
    status: int = 503  # for OutageKind.STATUS
    share: float = 1.0  # a partial outage hits only this share (not for REFUSE)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and self.start >= 0):
            raise ValueError(f"outage start must be >= 0 seconds, got {self.start}")
        if not (math.isfinite(self.duration) and self.duration > 0):
            raise ValueError(f"outage duration must be > 0 seconds, got {self.duration}")
        if not 400 <= self.status <= 599:
            raise ValueError(f"outage status must be 400 to 599, got {self.status}")
        _check_probability("outage share", self.share)
        if self.kind is OutageKind.REFUSE and self.share != 1.0:
            raise ValueError("a 'refuse' outage closes the listening socket: it cannot be partial")

    def covers(self, elapsed: float) -> bool:
        return self.start <= elapsed < self.start + self.duration


def parse_outage(text: str) -> Outage:
    """``START+DURATION[:KIND][@SHARE]`` -> `Outage`; ValueError when malformed.

    KIND is an HTTP status (4xx/5xx, default 503), ``refuse`` or ``close``; SHARE in [0, 1]
    (default 1) makes it partial. Examples: ``10+20``, ``10+20:503@0.3``, ``30+10:refuse``.
    """
    spec, _, share_text = text.strip().partition("@")
    window, _, kind_text = spec.partition(":")
    start_text, plus, duration_text = window.partition("+")
    bad = ValueError(f"outage must be START+DURATION[:STATUS|refuse|close][@SHARE], got {text!r}")
    if not plus:
        raise bad
    try:
        start, duration = float(start_text), float(duration_text)
        share = float(share_text) if share_text else 1.0
    except ValueError:
        raise bad from None
    kind_text = kind_text.strip().lower()
    if kind_text in ("", "503"):
        return Outage(start, duration, share=share)
    if kind_text in ("refuse", "close"):
        return Outage(start, duration, OutageKind(kind_text), share=share)
    if not (kind_text.isascii() and kind_text.isdigit()):
        raise bad
    return Outage(start, duration, status=int(kind_text), share=share)


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """The knobs; all off by default. Rates and shares are probabilities in [0, 1]."""

    seed: int | None = None
    fail_rate: float = 0.0
    reset_rate: float = 0.0
    hang_rate: float = 0.0
    hang_ms: float = 60_000.0
    throttle_rate: float | None = None  # requests counted per trailing second; None = off
    throttle_count_all: bool = False  # the window counts every arrival, 429s included
    throttle_random: float = 0.0  # share of requests answered 429 whatever the rate
    quota_rate: float | None = None  # token bucket refill, tokens/s; None = off
    quota_burst: float | None = None  # bucket size; None = one second's worth (>= 1)
    retry_after: float | None = None  # seconds, sent on 429s when set
    latency_ms: tuple[float, float] = (0.0, 0.0)
    outages: tuple[Outage, ...] = ()
    forbid_rate: float = 0.0  # share of requests answered 403 SMS.9004
    forbid_from: int | None = None  # every request from the N-th (1-based) on is 403 SMS.9004
    ignore_fields: tuple[str, ...] = ()  # dotted body paths answered 200 but not applied
    lose_rate: float = 0.0  # share of applied updates whose answer is dropped (reset)
    late_rate: float = 0.0  # share of applied updates whose answer is held `late_ms`
    late_ms: float = 60_000.0

    def __post_init__(self) -> None:
        for name in ("fail_rate", "reset_rate", "hang_rate", "throttle_random", "forbid_rate",
                     "lose_rate", "late_rate"):
            _check_probability(name, getattr(self, name))
        if self.hang_ms < 0:
            raise ValueError(f"hang_ms must be >= 0, got {self.hang_ms}")
        if not self.late_ms >= 0:
            raise ValueError(f"late_ms must be >= 0, got {self.late_ms}")
        if self.throttle_rate is not None and self.throttle_rate <= 0:
            raise ValueError(f"throttle_rate must be > 0, got {self.throttle_rate}")
        if self.quota_rate is not None and not self.quota_rate > 0:
            raise ValueError(f"quota_rate must be > 0, got {self.quota_rate}")
        if self.quota_burst is not None and not self.quota_burst >= 1:
            raise ValueError(f"quota_burst must be >= 1, got {self.quota_burst}")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError(f"retry_after must be >= 0, got {self.retry_after}")
        if self.forbid_from is not None and self.forbid_from < 1:
            raise ValueError(f"forbid_from must be >= 1, got {self.forbid_from}")
        low, high = self.latency_ms
        if low < 0 or high < low:
            raise ValueError(f"latency_ms must be (A, B) with 0 <= A <= B, got {self.latency_ms}")
        for path in self.ignore_fields:
            if not path or any(not part for part in path.split(".")):
                raise ValueError(f"ignore_fields: not a dotted path: {path!r}")

    @property
    def burst(self) -> float:
        """The token bucket's size (``quota_burst``, or one second's worth, at least 1)."""
        if self.quota_burst is not None:
            return self.quota_burst
        return max(1.0, self.quota_rate or 1.0)


@dataclass(frozen=True, slots=True)
class Injection:
    """The random part of a request's fate, drawn at arrival."""

    delay_s: float  # latency before anything happens
    reset: bool
    fail_status: int | None  # a 5xx to answer instead of serving
    hang_s: float  # extra delay before serving
    throttled: bool = False  # a rate-independent 429
    outage: Outage | None = None  # an outage in force that hits this request
    forbidden: bool = False  # 403 SMS.9004
    lose: bool = False  # an applied update's answer is dropped (reset)
    late_s: float = 0.0  # an applied update's answer is held this long


class FaultInjector:
    """Draws each request's `Injection` and runs the throttles; one per server."""

    __slots__ = ("_after", "_arrivals", "_clock", "_config", "_extra", "_origin", "_random",
                 "_tokens", "_tokens_at", "_window")

    def __init__(self, config: FaultConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._config = config
        self._window: deque[float] = deque()
        self._random = random.Random(config.seed)
        self._extra = random.Random(None if config.seed is None else f"extra:{config.seed}")
        self._after = random.Random(None if config.seed is None else f"after:{config.seed}")
        self._origin: float | None = None
        self._arrivals = 0
        self._tokens = config.burst
        self._tokens_at: float | None = None  # when the bucket was last refilled

    @property
    def config(self) -> FaultConfig:
        return self._config

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    @property
    def origin(self) -> float | None:
        """The clock reading at the first request (outages count from it); None before."""
        return self._origin

    def reconfigure(self, config: FaultConfig) -> None:
        """Switch knobs while serving (tests: "fail first, then recover").

        Restarts the seed, the throttles, the request count of ``forbid_from`` and the outages'
        origin (the next request is the new first one).
        """
        self._config = config
        self._random = random.Random(config.seed)
        self._extra = random.Random(None if config.seed is None else f"extra:{config.seed}")
        self._after = random.Random(None if config.seed is None else f"after:{config.seed}")
        self._window.clear()
        self._origin = None
        self._arrivals = 0
        self._tokens = config.burst
        self._tokens_at = None

    def decide(self) -> Injection:
        """Draw this request's faults: always five (+ three + two) numbers, so no sequence
        shifts."""
        c = self._config
        r = self._random.random
        u_latency, u_reset, u_fail, u_status, u_hang = r(), r(), r(), r(), r()
        x = self._extra.random
        u_throttle, u_outage, u_forbid = x(), x(), x()
        u_lose, u_late = self._after.random(), self._after.random()
        now = self._clock()
        if self._origin is None:
            self._origin = now
        self._arrivals += 1
        low, high = c.latency_ms
        fail = u_fail < c.fail_rate
        return Injection(
            delay_s=(low + (high - low) * u_latency) / 1000.0,
            reset=u_reset < c.reset_rate,
            fail_status=FAIL_STATUSES[int(u_status * len(FAIL_STATUSES))] if fail else None,
            hang_s=c.hang_ms / 1000.0 if u_hang < c.hang_rate else 0.0,
            throttled=u_throttle < c.throttle_random,
            outage=self._outage_at(now - self._origin, u_outage),
            forbidden=(u_forbid < c.forbid_rate
                       or (c.forbid_from is not None and self._arrivals >= c.forbid_from)),
            lose=u_lose < c.lose_rate,
            late_s=c.late_ms / 1000.0 if u_late < c.late_rate else 0.0,
        )

    def _outage_at(self, elapsed: float, u: float) -> Outage | None:
        for outage in self._config.outages:
            if outage.covers(elapsed) and u < outage.share:
                return outage
        return None

    def admit(self) -> bool:
        """True if the window and the bucket let this request through now (and count it)."""
        c = self._config
        now = self._clock()
        if c.throttle_rate is not None:
            window = self._window
            horizon = now - 1.0
            while window and window[0] <= horizon:
                window.popleft()
            if len(window) >= c.throttle_rate:
                if c.throttle_count_all:
                    window.append(now)
                return False
            window.append(now)
        if c.quota_rate is not None:
            since = 0.0 if self._tokens_at is None else now - self._tokens_at
            self._tokens = min(c.burst, self._tokens + since * c.quota_rate)
            self._tokens_at = now
            if self._tokens < 1.0 - 1e-9:  # float rounding of now - then
                return False
            self._tokens -= 1.0
        return True

    def throttle_limit(self) -> str:
        """The ``limit:...`` part of a 429's message, as the gateway words it."""
        c = self._config
        limit = c.throttle_rate if c.throttle_rate is not None else c.quota_rate
        return f"limit:{limit:g}, time:1 second" if limit is not None else "limit:shared quota"

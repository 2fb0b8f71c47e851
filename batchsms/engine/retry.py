"""Retry decisions: what is worth retrying and how long to wait (pure functions).

Small pure pieces (botocore's ``retries/standard.py`` split the same way):

- `is_retryable`: connection errors, timeouts and HTTP 429, 500, 502, 503, 504; nothing else.
- `backoff_delay`: exponential backoff with full jitter, ``random() * min(cap, base * 2**(n-1))``
  after failed attempt ``n`` (base 0.5 s, cap 20 s).
- `parse_retry_after`: a ``Retry-After`` header (delay-seconds or HTTP-date) as seconds from now,
  capped at `MAX_RETRY_AFTER` (300 s) so one header cannot park a line for hours; the wait used
  is ``max(backoff, retry_after)``: the header is a lower bound.
- No retry quota. botocore's absolute pot (500 tokens, 5 per retry, 10 after a timeout) is made
  for interactive calls, where failing fast beats waiting; a batch has time, and a retry the pot
  denied threw away a line the service would have accepted a second later. Retries are instead
  bounded by `--max-attempts`, paced by the token bucket, and held back (deferred, never
  dropped) by the traffic-relative `engine.budget.RetryBudget`.
- `decide`: the one function the sender calls after a failed attempt, returning a `Decision`.

Randomness is a constructor or call argument, so tests pin exact sequences.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses worth another attempt: throttling and transient server/gateway failures."""

MAX_RETRY_AFTER = 300.0
"""Longest ``Retry-After`` honoured, in seconds; longer values are clamped to it."""

# delay-seconds is 1*DIGIT (RFC 9110); a decimal fraction is accepted too, a sign is not.
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)

# 2.0**_MAX_EXPONENT is far above any sane cap/base ratio and far below float overflow.
_MAX_EXPONENT = 64


def is_retryable(status: int | None, transport_error: bool) -> bool:
    """True for a connection error or timeout, or one of `RETRYABLE_STATUSES`."""
    return transport_error or status in RETRYABLE_STATUSES


def backoff_delay(
    attempt: int,
    *,
    base: float = 0.5,
    cap: float = 20.0,
    random: Callable[[], float],
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based), with full jitter."""
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, _MAX_EXPONENT))
    return min(max(random(), 0.0), 1.0) * ceiling


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """A ``Retry-After`` value as seconds from ``now`` (0..`MAX_RETRY_AFTER`); None if unusable.

    Naive datetimes (``now``, or an HTTP-date with a ``-0000`` zone) are taken as UTC.
    """
    if value is None:
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        seconds = (_aware_utc(when) - _aware_utc(now)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _aware_utc(moment: datetime) -> datetime:
    """`moment` made *aware*: a naive one (an HTTP-date parses naive) is taken to be UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class Reason(StrEnum):
    """Why `decide` said what it said; the values appear in logs."""

    RETRY = "retry"
    NOT_RETRYABLE = "not_retryable"
    MAX_ATTEMPTS = "max_attempts"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts a line gets (first included) and the backoff shape."""

    max_attempts: int = 5
    base: float = 0.5
    cap: float = 20.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not (math.isfinite(self.base) and math.isfinite(self.cap)):
            raise ValueError("base and cap must be finite")
        if self.base < 0 or self.cap < 0:
            raise ValueError("base and cap must be >= 0")


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to retry, after how many seconds, and why."""

    retry: bool
    delay: float
    reason: Reason


def decide(
    policy: RetryPolicy,
    attempt: int,
    status: int | None,
    transport_error: bool,
    retry_after: float | None,
    random: Callable[[], float],
    *,
    step: int | None = None,
) -> Decision:
    """After ``attempt`` requests were sent (the last one failed): retry, and after how long?

    ``step`` is the backoff step, the number of tries so far (``attempt`` when omitted): a try
    that never left the process (connection refused) does not use up an attempt, but still
    backs off. The delay is the jittered backoff, raised to ``retry_after`` when the service
    asked for longer.
    """
    if not is_retryable(status, transport_error):
        return Decision(retry=False, delay=0.0, reason=Reason.NOT_RETRYABLE)
    if attempt >= policy.max_attempts:
        return Decision(retry=False, delay=0.0, reason=Reason.MAX_ATTEMPTS)
    delay = backoff_delay(max(step or attempt, 1), base=policy.base, cap=policy.cap,
                          random=random)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return Decision(retry=True, delay=delay, reason=Reason.RETRY)

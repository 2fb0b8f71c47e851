"""The service's clock against ours: the offset that corrects ``X-Sdk-Date``.

Place in the flow: client.py hands every answer's ``Date`` header to :meth:`ClockSkew.learn`;
signing asks :meth:`ClockSkew.now` for the time to put in ``X-Sdk-Date``; the engine asks
:func:`is_date_rejection` whether a 401 was the gateway refusing our date (it allows 15
minutes) rather than our key, to retry it once with the corrected time instead of counting it
toward the auth abort (docs/reference.md §6); :func:`classify_401` says which of the three
kinds of 401 (:class:`Rejection`) an answer is.

Rules: the offset is the answer's ``Date`` minus our clock at the answer's arrival (``Date``
has whole seconds, so offsets under :data:`THRESHOLD` are noise and left alone); beyond it
signatures use our clock plus the offset, and one warning (the ``warn`` callback, given the
offset in seconds, once per ClockSkew) says by how much. A missing or unparsable ``Date``
teaches nothing and breaks nothing. The clock is injectable (seconds since the epoch).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

__all__ = [
    "GATEWAY_TOLERANCE",
    "THRESHOLD",
    "ClockSkew",
    "Rejection",
    "classify_401",
    "is_date_rejection",
    "parse_http_date",
]

THRESHOLD = 60.0
"""Seconds of offset below which our clock is trusted as it is (CONTRACT §6: a minute)."""
GATEWAY_TOLERANCE = timedelta(minutes=15)
"""How far from its clock the gateway accepts an ``X-Sdk-Date`` (APIG.0301 beyond)."""
SDK_DATE_FORMAT = "%Y%m%dT%H%M%SZ"


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP ``Date`` header as an aware UTC datetime; None if missing or not a date."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # "-0000": UTC by RFC 5322
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class Rejection(enum.Enum):
    """What a 401 means for the run (docs/reference.md §6)."""

    DATE = "date"
    """Our X-Sdk-Date was refused: retry once with the corrected time; not an auth failure."""
    STALE = "stale"
    """Temporary credentials refused: refresh at once and retry once; not an auth failure."""
    KEY = "key"
    """The credentials themselves: counts toward the three-in-a-row auth abort."""


def classify_401(sdk_date: str | None, answer_date: str | None, *, temporary: bool,
                 retried: bool) -> Rejection:
    """What a 401 is: a date rejection first (a refresh would not help), then, under temporary
    credentials, stale ones; a request already retried once for either is a KEY failure (one
    retry each, never a loop)."""
    if retried:
        return Rejection.KEY
    if is_date_rejection(401, sdk_date, answer_date):
        return Rejection.DATE
    return Rejection.STALE if temporary else Rejection.KEY


def is_date_rejection(status: int, sdk_date: str | None, answer_date: str | None) -> bool:
    """Whether a 401 was for our date: the ``X-Sdk-Date`` sent was more than 15 minutes from
    the answer's ``Date``. False when either is missing or unreadable (then it is a 401)."""
    if status != 401 or not sdk_date:
        return False
    served = parse_http_date(answer_date)
    if served is None:
        return False
    try:
        sent = datetime.strptime(sdk_date.strip(), SDK_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return False
    return abs(served - sent) > GATEWAY_TOLERANCE


class ClockSkew:
    """What the service's ``Date`` headers say of our clock (module docstring)."""

    __slots__ = ("_clock", "_offset", "_seen", "_served", "_warn", "_warned")

    def __init__(self, clock: Callable[[], float] = time.time,
                 warn: Callable[[float], None] | None = None) -> None:
        self._clock = clock
        self._warn = warn
        self._offset = 0.0
        self._warned = False
        # The last Date header read and its time: it changes once a second, and email.utils'
        # parser was ~4% of `run`'s client time per request (cProfile, bench_run's token run).
        self._seen: str | None = None
        self._served = 0.0

    def __repr__(self) -> str:
        return f"ClockSkew(offset={self._offset:+.0f} s)"

    @property
    def offset(self) -> float:
        """Seconds to add to our clock for the service's time (0 while under the threshold)."""
        return self._offset

    def learn(self, date_header: str | None, received_at: float | None = None) -> float | None:
        """Take an answer's ``Date`` (arrived at ``received_at``, by default now); the measured
        offset, or None when the header told nothing."""
        if date_header is None or date_header != self._seen:
            parsed = parse_http_date(date_header)
            if parsed is None:
                return None
            self._seen, self._served = date_header, parsed.timestamp()
        arrived = self._clock() if received_at is None else received_at
        measured = self._served - arrived
        # Date has whole seconds: a measure within the threshold is our clock being right.
        self._offset = measured if abs(measured) > THRESHOLD else 0.0
        if self._offset and not self._warned:
            self._warned = True
            if self._warn is not None:
                self._warn(self._offset)
        return measured

    def service_time(self) -> float:
        """The service's time in seconds since the epoch: ours corrected by the offset learnt.
        Give it as the clock of refresh.py's Refresher, so that an ``expires_at`` (the
        source's time) is compared with the same clock even on a host whose clock drifted."""
        return self._clock() + self._offset

    def now(self) -> datetime:
        """The time to sign with: ours, corrected by the offset learnt."""
        return datetime.fromtimestamp(self.service_time(), UTC)

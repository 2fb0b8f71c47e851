"""What one try told the engine: the single signal every controller (pace, outage, auth) reads."""

from __future__ import annotations

import enum

from batchsms.engine.retry import RETRYABLE_STATUSES
from batchsms.errors import TransportError

AUTH_STATUSES = frozenset({401, 403})


class Answer(enum.Enum):
    """The kind of answer one try got."""

    OK = "ok"  # 2xx
    THROTTLED = "throttled"  # 429: the service (or its gateway) says "too fast"
    FAILED = "failed"  # 500/502/503/504, timeout, connection error: the service is in trouble
    REJECTED = "rejected"  # 401/403, or a TLS certificate not trusted: credentials/endpoint
    REFUSED = "refused"  # any other status (400, 404, 3xx): the service is fine, the line not


def classify(status: int | None, error: TransportError | None = None) -> Answer:
    """The `Answer` for a try that got HTTP `status`, or no answer (`error`)."""
    if status is None:
        if error is not None and not error.retryable:
            return Answer.REJECTED
        return Answer.FAILED
    if 200 <= status < 300:
        return Answer.OK
    if status == 429:
        return Answer.THROTTLED
    if status in AUTH_STATUSES:
        return Answer.REJECTED
    if status in RETRYABLE_STATUSES:
        return Answer.FAILED
    return Answer.REFUSED

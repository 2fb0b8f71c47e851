"""Outage guard: when most recent tries fail, probe instead of pushing; give up after a bound.

Every try's answer comes here. The service is *in an outage* when, among the last ``RECENT``
answers, at least ``MIN_FAILED`` and at least ``OUTAGE_SHARE`` of them are FAILED (5xx, timeout,
connection refused or reset) and the latest is too. ``MIN_FAILED`` is the minimum sample: ten
failures in a row at the start of a run are an outage, two are not. A partial outage of 30%
failures is not one: 18 failures among 20 answers then come with a probability of about 4e-8
per answer (at 100 req/s, once in three days; 16 of 20 would be once a minute).

The outage ends with the first answer that is not FAILED: a success, but also a 429 or a 4xx,
since any of them proves the service answers again (a circuit breaker's half-open probe that
came back). While it lasts the engine sends one probe at a time, ``probe_delay()`` apart: a tenth
of how long the outage has lasted, from ``PROBE_FIRST`` up to ``PROBE_CAP`` -- so at most about a
tenth of a short outage is lost to noticing its end, and a long one costs a request every few
seconds. ``outage_for`` counts seconds of continuous failure (from the first FAILED answer of the
current streak); past ``max_outage`` (``--max-outage``, default 600 s) the guard has ``given_up``
and the run aborts (exit 3).

An outage's start and end are logged (`outage.started`, `outage.ended` with how long it lasted:
docs/reference.md §9).
"""

from __future__ import annotations

import time
from collections import deque

from batchsms.engine.bucket import Clock
from batchsms.engine.events import log
from batchsms.engine.feedback import Answer

DEFAULT_MAX_OUTAGE = 600.0
"""Seconds of continuous failure after which the run aborts (exit 3): `--max-outage`."""

RECENT = 20
"""Answers the failure share is measured over."""

OUTAGE_SHARE = 0.9
"""Share of FAILED answers among the recent ones that makes an outage ("most recent tries")."""

MIN_FAILED = 10
"""FAILED answers needed, however few answers there are: the minimum sample."""

PROBE_FIRST = 0.5
"""Seconds between probes at the start of an outage."""

PROBE_CAP = 5.0
"""Longest wait between probes."""

PROBE_SHARE = 0.1
"""Between the two, the wait is this share of how long the outage has lasted."""


class OutageGuard:
    """Reads every answer; says whether the service is down and for how long."""

    def __init__(self, *, max_outage: float = DEFAULT_MAX_OUTAGE,
                 clock: Clock = time.monotonic) -> None:
        if not max_outage > 0:
            raise ValueError(f"max_outage must be > 0, got {max_outage!r}")
        self._clock = clock
        self._max_outage = max_outage
        self._recent: deque[bool] = deque(maxlen=RECENT)  # True: FAILED
        self._failed = 0
        self._failing_since: float | None = None  # first FAILED of the current streak
        self._in_outage = False

    def on_answer(self, answer: Answer) -> None:
        """One try's answer."""
        failed = answer is Answer.FAILED
        recent = self._recent
        if not failed and not self._failed:
            # The common case: nothing failed lately (so no streak, no outage), and one more
            # answer that did not fail changes only how many answers the window holds.
            if len(recent) < RECENT:
                recent.append(False)
            return
        if len(recent) == RECENT:
            self._failed -= recent[0]
        recent.append(failed)
        self._failed += failed
        if not failed:
            if self._in_outage:
                log.warning("outage.ended", lasted_s=round(self.outage_for, 1),
                            answer=answer.value)
            self._failing_since = None
            self._in_outage = False
            return
        if self._failing_since is None:
            self._failing_since = self._clock()
        if (not self._in_outage and self._failed >= MIN_FAILED
                and self._failed >= OUTAGE_SHARE * len(recent)):
            self._in_outage = True
            log.warning("outage.started", failed=self._failed, of=len(recent),
                        max_outage_s=self._max_outage,
                        note="only probes are sent until the service answers again")

    @property
    def in_outage(self) -> bool:
        """True while most recent tries fail: only probes should go."""
        return self._in_outage

    def probe_delay(self) -> float:
        """Seconds to wait between probes while in an outage."""
        return min(PROBE_CAP, max(PROBE_FIRST, PROBE_SHARE * self.outage_for))

    @property
    def outage_for(self) -> float:
        """Seconds since the current outage began; 0.0 when there is none."""
        if not self._in_outage or self._failing_since is None:
            return 0.0
        return max(0.0, self._clock() - self._failing_since)

    @property
    def given_up(self) -> bool:
        """The outage has lasted longer than `max_outage`: the run should abort (exit 3)."""
        return self.outage_for >= self._max_outage

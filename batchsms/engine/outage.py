"""Outage guard: when most recent tries fail, probe instead of pushing; give up after a bound.
(Interface; the detector behind it is issue 9's to build.)"""

from __future__ import annotations

import time

from batchsms.engine.feedback import Answer
from batchsms.limiter import Clock

DEFAULT_MAX_OUTAGE = 600.0
"""Seconds of continuous failure after which the run aborts (exit 3): `--max-outage`."""


class OutageGuard:
    """Reads every answer; says whether the service is down and for how long."""

    def __init__(self, *, max_outage: float = DEFAULT_MAX_OUTAGE,
                 clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._max_outage = max_outage

    def on_answer(self, answer: Answer) -> None:
        """One try's answer."""

    @property
    def in_outage(self) -> bool:
        """True while most recent tries fail: only probes should go."""
        return False

    def probe_delay(self) -> float:
        """Seconds to wait between probes while in an outage."""
        return 1.0

    @property
    def outage_for(self) -> float:
        """Seconds since the current outage began; 0.0 when there is none."""
        return 0.0

    @property
    def given_up(self) -> bool:
        """The outage has lasted longer than `max_outage`: the run should abort (exit 3)."""
        return False

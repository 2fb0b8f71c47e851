"""What `run` and `plan` were asked to do, checked: `RunConfig`, and the parsers of its durations.

The CLI builds one `RunConfig` from the options; `commands/run/` and `commands/plan.py` take it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path
from typing import Any

from batchsms.changes.guarded_put import WriteChecks
from batchsms.engine.build import EngineSettings
from batchsms.engine.numbers import check_number, check_sending
from batchsms.engine.outage import DEFAULT_MAX_OUTAGE
from batchsms.errors import UsageError
from batchsms.transport.endpoint import ConnectionOptions


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything `run` was asked to do, checked."""

    input: str
    out: Path = Path("outcomes.jsonl")
    endpoint: str | None = None
    region: str | None = None
    simulate: bool = False
    concurrency: int = 16
    rate: float = 10.0
    burst: float = 1.0
    max_attempts: int = 5
    timeout: float = 30.0
    ca_bundle: str | None = None
    dry_run: bool = False
    resume: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    abort_failure_ratio: float = 0.5
    deadline: float | None = None
    token_file: Path | None = None
    grace: float = 5.0
    progress: bool | None = None
    metrics_file: Path | None = None
    log_format: str = "console"  # as resolved by logs.configure: the summary follows it
    max_outage: float = DEFAULT_MAX_OUTAGE
    skip_unchanged: bool = False
    undo_file: Path | None = None
    allow_irreversible: bool = False
    verify: bool = False
    op: str = "update"  # `--op`: the operation of lines that name none (docs/reference.md §11)
    rules: Mapping[str, Any] | None = None  # `--rules`: a speed-limit line's default body
    allow_empty: bool = False  # an input with no lines is a success, not a refusal (exit 2)
    progress_interval: float = 60.0  # seconds between run.progress events (json logs); 0: none
    timeline: Path | None = None  # --timeline: one JSON object per second of the run

    @property
    def connection(self) -> ConnectionOptions:
        """Where to send and as whom, as asked (resolved by `transport.endpoint`)."""
        return ConnectionOptions(endpoint=self.endpoint, region=self.region,
                                 simulate=self.simulate, ca_bundle=self.ca_bundle,
                                 token_file=self.token_file)

    @property
    def engine(self) -> EngineSettings:
        """The options that shape sending, the deadline among them (engine/build.py)."""
        return EngineSettings(concurrency=self.concurrency, rate=self.rate, burst=self.burst,
                              max_attempts=self.max_attempts, max_outage=self.max_outage,
                              deadline=self.deadline, timeout=self.timeout,
                              abort_failure_ratio=self.abort_failure_ratio)

    @property
    def checks(self) -> WriteChecks:
        """The reads around each write that were asked for (changes/guarded_put.py)."""
        return WriteChecks(skip_unchanged=self.skip_unchanged,
                           capture=self.undo_file is not None, verify=self.verify)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UsageError(f"--concurrency must be at least 1, got {self.concurrency}")
        check_sending(self.rate, self.max_attempts, self.timeout)
        check_number("--burst", self.burst, self.burst >= 1, "at least 1")
        check_number("--grace", self.grace, self.grace >= 0, "0 or more")
        check_number("--progress-interval", self.progress_interval,
                     self.progress_interval >= 0, "0 or more")
        check_number("--max-outage", self.max_outage, self.max_outage > 0, "more than 0")
        if self.allow_irreversible and self.undo_file is None:
            raise UsageError("--allow-irreversible is only used with --undo-file")
        check_number("--abort-failure-ratio", self.abort_failure_ratio,
                     0 <= self.abort_failure_ratio <= 1, "between 0 and 1")
        if self.deadline is not None:
            check_number("--deadline", self.deadline, True, "a time")


_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(text: str, option: str) -> float:
    """Seconds, from `600`, `90.5`, `10m`, `1h30m` or `45s`: finite, more than 0."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        match = _DURATION.fullmatch(text)
        if not (match and any(match.groups())):
            raise UsageError(f"{option} {text!r}: give seconds (600) or a duration like 10m "
                             "or 1h30m") from None
        h, m, s = (int(g or 0) for g in match.groups())
        try:
            seconds = h * 3600.0 + m * 60.0 + s
        except OverflowError:  # more digits than a float holds
            seconds = math.inf
    if not 0 < seconds < math.inf:
        raise UsageError(f"{option} must be a finite number of seconds more than 0, "
                         f"got {text!r}")
    return seconds


def parse_deadline(text: str, now: datetime) -> float:
    """The deadline as epoch seconds, from `now` (an aware local datetime).

    `90m`, `2h`, `1h30m`, `45s`: that long from now. `05:00` or `05:00:30`: the next time the
    local clock shows it. An ISO date-time: that moment (local time if it has no offset).
    A moment the calendar cannot hold (`999999999h`, year 1) is refused (`UsageError`).
    """
    text = text.strip()
    try:
        return _deadline(text, now)
    except (OverflowError, ValueError):
        raise UsageError(f"--deadline {text!r} is out of range: it must fall between now and "
                         "the year 9999") from None


def _deadline(text: str, now: datetime) -> float:
    match = _DURATION.fullmatch(text)
    if match and any(match.groups()):
        h, m, s = (int(g or 0) for g in match.groups())
        if h == m == s == 0:
            raise UsageError(f"--deadline {text!r} is now: every line would be skipped")
        return (now + timedelta(hours=h, minutes=m, seconds=s)).timestamp()
    try:
        if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", text):
            clock = time_of_day.fromisoformat(text.zfill(len(text) + (text.index(":") == 1)))
            moment = now.replace(hour=clock.hour, minute=clock.minute, second=clock.second,
                                 microsecond=0)
            if moment <= now:
                moment += timedelta(days=1)
            return moment.timestamp()
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--deadline {text!r}: give a duration like 90m or 1h30m, a clock time "
                         "like 05:00, or an ISO time like 2026-11-28T05:30+08:00") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    if moment <= now:
        raise UsageError(f"--deadline {text!r} is in the past ({moment.isoformat()}): every "
                         "line would be skipped")
    return moment.timestamp()



"""What `run` logs so that a long unattended run tells its story (issue 23; docs/reference.md §9).

- `run.progress`, every `--progress-interval` seconds with JSON logs (a console has its bar):
  lines done by status, of how many (a plain file's lines, counted once), requests, retries,
  lines/s so far and the ETA at that rate;
- `task.invalid`, one per invalid line at debug level (`--verbose`), with its problems;
- `run.repeated_task_ids`, a warning at the end when task ids came back on later lines, the same
  notice `validate` gives (lines/repeats.py), seen in file order as the lines are read;
- `undo.written`, with JSON logs, where `--undo-file` was written and how many lines (a warning
  when some task cannot be restored whole); a console gets the same as one line of text.

The engine's own events (`outage.started`/`outage.ended`, `pace.changed`) are logged where they
happen (engine/outage.py, engine/pace.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TextIO

import anyio
import structlog

from batchsms.changes.undo import UndoSummary, describe
from batchsms.engine.stats import RunStats
from batchsms.lines.bodies import Planned
from batchsms.lines.reader import InvalidLine
from batchsms.lines.repeats import RepeatedIds

log = structlog.get_logger("batchsms")

DEFAULT_PROGRESS_INTERVAL = 60.0
"""Seconds between `run.progress` events (`--progress-interval`; 0: none)."""


def watched(lines: Iterator[Planned | InvalidLine],
            repeats: RepeatedIds) -> Iterator[Planned | InvalidLine]:
    """The same lines, in file order: each valid line's task id seen by `repeats`, each
    invalid line a `task.invalid` debug event."""
    see = repeats.see
    for item in lines:
        if isinstance(item, InvalidLine):
            log.debug("task.invalid", line=item.number, task_id=item.task_id,
                      errors=[f"{p.path}: {p.message}" for p in item.errors])
        else:
            see(item.task_id, item.number)
        yield item


def tell_repeats(repeats: RepeatedIds) -> None:
    """`run.repeated_task_ids`, when some task id was on more than one line."""
    fields = repeats.notice()
    if fields is not None:
        log.warning("run.repeated_task_ids", **fields)


def tell_undo(summary: UndoSummary, log_format: str, stderr: TextIO) -> None:
    """The undo file written: one `undo.written` event with JSON logs (stderr stays JSON only),
    else `describe`'s line of text."""
    if log_format != "json":
        print(describe(summary), file=stderr)
        return
    fields: dict[str, object] = {"file": str(summary.path), "lines": summary.lines,
                                 "unrestorable": summary.unrestorable,
                                 "uncaptured_runs": summary.uncaptured}
    if summary.named:
        fields["examples"] = [f"{u.task_id}: {u.why}" for u in summary.named]
    whole = not summary.unrestorable and not summary.uncaptured
    (log.info if whole else log.warning)("undo.written", **fields)


def progress_fields(stats: RunStats, total: int | None, now: float) -> dict[str, object]:
    """What one `run.progress` event says: done by status, of `total` (None: unknown), the
    rate so far and the ETA at that rate."""
    done = sum(stats.by_status.values())
    elapsed = max(now - stats.started, 1e-9)
    rate = done / elapsed
    fields: dict[str, object] = {
        "done": done, "total": total, **dict(stats.by_status), "requests": stats.requests,
        "retries": stats.retries, "lines_per_s": round(rate, 2),
        "elapsed_s": round(elapsed, 1)}
    if total is not None:
        fields["eta_s"] = round((total - done) / rate) if rate > 0 and total >= done else None
    return fields


async def progress_events(stats: RunStats, total: int | None, interval: float) -> None:
    """`run.progress` every `interval` seconds until cancelled."""
    while True:
        await anyio.sleep(interval)
        log.info("run.progress", **progress_fields(stats, total, time.monotonic()))

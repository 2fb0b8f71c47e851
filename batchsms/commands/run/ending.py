"""`run` at its end: the exit code, the summary (one event; lines on a console), the metrics
file (also after a refusal), and exit 4 when the journal broke."""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import structlog

from batchsms.commands.config import RunConfig
from batchsms.commands.metrics import write_metrics
from batchsms.commands.outputs import check_output
from batchsms.engine.stats import RunStats
from batchsms.engine.stopping import Stopped, StopReason
from batchsms.errors import ExitCode, JournalError, UsageError
from batchsms.journal.outcomes import DONE_SKIP_CODES, Status, journal_files

log = structlog.get_logger("batchsms")


def exit_code(stats: RunStats, stopped: Stopped | None) -> ExitCode:
    if stopped is not None and stopped.signum is not None:
        return ExitCode.interrupted_by(stopped.signum)
    if stopped is not None and stopped.unreachable:
        return ExitCode.USAGE  # the endpoint was never reached: the configuration (§7)
    if stopped is not None and stopped.reason is StopReason.ABORTED:
        return ExitCode.ABORTED
    bad = sum(n for s, n in stats.by_status.items() if s != Status.SUCCEEDED)
    done_skips = sum(stats.by_error.get(code, 0) for code in DONE_SKIP_CODES)
    return ExitCode.OK if bad == done_skips else ExitCode.SOME_FAILED


def journal_failure(exc: BaseException) -> JournalError:
    """The JournalError in `exc`, also when task groups wrapped it (at any depth); `exc`
    itself is raised again when it holds none. The one place a run digs into groups."""
    found = _journal_error(exc)
    if found is None:
        raise exc
    return found


def _journal_error(exc: BaseException) -> JournalError | None:
    if isinstance(exc, JournalError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _journal_error(inner)
            if found is not None:
                return found
    return None


def final_metrics(path: Path | None, stats: RunStats, code: int) -> None:
    """Write `--metrics-file` for a run that ended with `code`; a failure is only logged."""
    if path is None:
        return
    try:
        write_metrics(path, stats, code, time.time())
    except UsageError as exc:  # the run happened: keep its exit code, say what failed
        log.warning("metrics.write_failed", path=str(path), error=str(exc))


def summary_lines(stats: RunStats, stop_message: str | None) -> Iterator[str]:
    """The human summary printed at the end of a run (console logs only)."""
    total = sum(stats.by_status.values())
    parts = ", ".join(f"{n} {s}" for s, n in sorted(stats.by_status.items()))
    yield f"{total} lines: {parts or 'none'} in {stats.duration:.1f}s"
    rate = stats.requests / stats.duration if stats.duration > 0 else 0.0
    yield f"{stats.requests} requests ({stats.retries} retries), {rate:.1f} requests/s"
    for code, n in stats.by_error.most_common(10):
        yield f"  {code}: {n}"
    if stop_message:
        yield f"stopped early: {stop_message}"


def next_steps(config: RunConfig, code: int) -> str | None:
    """After an interrupt: how to finish the run and how to see what it did."""
    if code not in (ExitCode.SIGINT, ExitCode.SIGTERM):
        return None
    out = shlex.quote(str(config.out))
    return (f"to finish, run again with the same input, options and --out, adding --resume "
            f"(batchsms run {shlex.quote(str(config.input))} --out {out} --resume ...); "
            f"to see what was done: batchsms report {out}")


def log_summary(config: RunConfig, run_id: str, stats: RunStats, stop_message: str | None,
             code: int, stderr: TextIO) -> None:
    """`run.finished` as one event (all a json log gets), and the human lines on a console."""
    hint = next_steps(config, code)
    log.info("run.finished", run_id=run_id, exit_code=int(code),
             duration_s=round(stats.duration, 3), requests=stats.requests,
             retries=stats.retries, **dict(stats.by_status), errors=dict(stats.by_error),
             stopped=stop_message, **({"next": hint} if hint else {}))
    if config.log_format != "json":
        for text in summary_lines(stats, stop_message):
            print(text, file=stderr)
        if hint:
            print(hint, file=stderr)


def broken(config: RunConfig, run_id: str, error: JournalError, stats: RunStats,
            stderr: TextIO) -> ExitCode:
    """Exit 4: one line naming the file and the cause, the metrics file if it can be."""
    stats.finished = time.monotonic()
    message = f"{error}; sending stopped at once, exit 4"
    if config.log_format == "json":
        log.error("run.broken", run_id=run_id, error=message, exit_code=int(ExitCode.BROKEN))
    else:
        print(f"batchsms: {message}", file=stderr)
    final_metrics(config.metrics_file, stats, ExitCode.BROKEN)
    return ExitCode.BROKEN


def metrics_after_refusal(path: Path | None, inputs: list[tuple[str, Path | str | None]],
                          out: Path | None, code: int) -> None:
    """A run that could not start (exit 2, or 130 at start-up) still writes `--metrics-file`,
    so the exit-code alert fires; never when that path is unusable or one of the inputs."""
    if path is None:
        return
    try:
        check_output("--metrics-file", path, [*inputs, *journal_files(out)])
    except UsageError:
        return
    final_metrics(path, RunStats(), code)

"""`batchsms run`: the library's run (`Client._pipeline`) with what only the CLI adds around it.

    cli.py: inside `refusals` (starting.py: logs; a refusal is exit 2), the outputs checked
            (`check_run_outputs`, once), then options -> RunConfig (once), then run()
      run(): connection resolved, descriptors, --undo-file checked, --out locked
        _open_journal(): the resume index, the input (a whole-file mistake refused), the run's
                         marker in the side log, the writer                       -> _Journal
        _journaled(): _send(), the `Client` over the connection and its pipeline writing to
                      the journal, under signal handlers, with the progress bar; then _end()
      ending.py: the undo file, the exit code, the summary, the metrics (exit 4: journal broke,
                 found in task groups' exception groups by `journal_failure` alone)

Everything that can make a run fail to start (bad options, no credentials, unreadable input,
a locked `--out`) is checked before the first request and raised as `UsageError` (exit 2).
What the CLI adds and the library never does: signal handlers, RLIMIT_NOFILE, the journal file
and its lock, `--resume`, the undo side log, progress, metrics and exit codes
(docs/reference.md §7, §12).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, closing, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import anyio
import anyio.abc
import structlog

from batchsms.changes.guarded_put import Capture
from batchsms.changes.undo import RunUndo, check_reversible
from batchsms.changes.undo_log import PreviousLog, journal_start
from batchsms.client import Client
from batchsms.commands import progress
from batchsms.commands.config import RunConfig
from batchsms.commands.descriptors import ensure_descriptors
from batchsms.commands.run.ending import (
    broken,
    exit_code,
    final_metrics,
    journal_failure,
    log_summary,
)
from batchsms.commands.run.starting import (
    EMPTY_INPUT,
    RunStart,
    check_run_outputs,
    dry_run,
    log_deadline,
    refusals,
    refuse_whole_file_mistakes,
)
from batchsms.commands.run.story import progress_events, tell_repeats, tell_undo, watched
from batchsms.commands.run.timeline import Timeline, open_timeline
from batchsms.engine.build import require_transport_features
from batchsms.engine.feed import LineSource, line_source
from batchsms.engine.pipeline import Pipeline
from batchsms.engine.stats import RunStats
from batchsms.engine.stopping import Stop, StopReason
from batchsms.errors import ExitCode, JournalError
from batchsms.journal.outcomes import JournalScan, Outcome, OutcomeWriter, lock_outcomes, new_run_id
from batchsms.journal.resume import ResumeIndex, ResumeRun
from batchsms.lines.bodies import Planned, checked_lines
from batchsms.lines.reader import InvalidLine
from batchsms.lines.repeats import RepeatedIds
from batchsms.transport.endpoint import Connection, resolve_connection

__all__ = ["RunStart", "check_run_outputs", "refusals", "run"]

log = structlog.get_logger("batchsms")


@dataclass(frozen=True, slots=True)
class _Journal:
    """What the run writes and reads, opened once `--out` is locked; closed when it ends."""

    run_id: str
    source: LineSource[Planned | InvalidLine]
    resume: ResumeRun | None  # None: not --resume
    side: PreviousLog
    writer: OutcomeWriter
    capture: Capture | None  # None: not --undo-file
    repeats: RepeatedIds  # task ids seen on more than one line, told at the end (story.py)

    def close(self) -> None:
        try:
            self.writer.close()
        finally:
            self.side.close()


@dataclass(frozen=True, slots=True)
class RunContext:
    """What one run's event loop needs, handed to `anyio.run` as one value."""

    config: RunConfig
    env: Mapping[str, str]
    connection: Connection
    journal: _Journal
    undo: RunUndo | None  # None: not --undo-file
    stats: RunStats  # the run's one count, read also when the journal broke
    on_outcome: Callable[[Outcome], None] | None


async def _watch_signals(pipeline: Pipeline, grace: float, tg: anyio.abc.TaskGroup, *,
                         task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                         ) -> None:
    """First SIGINT/SIGTERM: stop, and cancel what is still in flight after `grace` seconds.

    A second signal cancels in-flight requests at once. `task_status.started()` is called once
    the handlers are installed: the caller reads no line before that."""
    async def after_grace() -> None:
        await anyio.sleep(grace)
        await pipeline.cancel_in_flight()

    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            if not pipeline.stop.trigger(StopReason.INTERRUPTED,
                                         f"interrupted by {signal.Signals(signum).name}",
                                         signum=signum, grace_s=grace):
                tg.start_soon(pipeline.cancel_in_flight)
                continue
            tg.start_soon(after_grace)


async def _run_async(ctx: RunContext) -> Stop:
    """The library's run, over the same `Client`, writing to the journal, under signals."""
    journal = ctx.journal
    with ExitStack() as stack:
        return await _run_in(ctx, journal, stack)


async def _run_in(ctx: RunContext, journal: _Journal, stack: ExitStack) -> Stop:
    """`_run_async` with `stack` holding what closes after the run (the timeline file)."""
    async with Client._for_command(ctx.connection, ctx.config.engine, ctx.env) as client:
        pipeline = client._pipeline(journal.writer, ctx.config.checks, run_id=journal.run_id,
                                   stats=ctx.stats, resume=journal.resume,
                                   capture=journal.capture, on_outcome=ctx.on_outcome)
        async with anyio.create_task_group() as tg:
            await tg.start(_watch_signals, pipeline, ctx.config.grace, tg)
            config = ctx.config
            if config.timeline is not None:
                sink = stack.enter_context(open_timeline(config.timeline))
                tg.start_soon(Timeline(pipeline.sender, sink).record)
            if config.log_format == "json" and config.progress_interval > 0:
                tg.start_soon(progress_events, ctx.stats,
                              progress.count_lines(config.input, ctx.journal.source.regular),
                              config.progress_interval)
            await pipeline.run(journal.source, _about(ctx))
            tg.cancel_scope.cancel()
    return pipeline.stop


def _about(ctx: RunContext) -> dict[str, object]:
    """What `run.started` says of the run beyond the engine: where it sends, what it reads and
    writes, and whose credentials (their source, never a secret); for a real endpoint also the
    project and proxy the chain resolved (`CloudAccess.lines`, as `check` shows them)."""
    config, connection = ctx.config, ctx.connection
    about: dict[str, object] = {
        "endpoint": connection.endpoint or "the built-in simulator (--simulate)",
        "input": str(config.input), "out": str(config.out)}
    if connection.access is not None:
        about.update((what, shown) for what, shown in connection.access.lines()
                     if what in ("credentials", "project", "proxy"))
    else:
        about["credentials"] = connection.source or "none (a rehearsal)"
    return about


def _loop_options() -> dict[str, bool]:
    """uvloop where it is installed (the `fast` extra): the same asyncio API, less CPU."""
    return {"use_uvloop": True} if importlib.util.find_spec("uvloop") is not None else {}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _open_journal(config: RunConfig, undo: RunUndo | None) -> _Journal:
    """Read what `--out` says (`--resume`), open the input, mark the run's start in the side
    log and open the writer; `--out` is locked. Refusals (exit 2) leave nothing open."""
    scan = JournalScan()
    resume = ResumeIndex.load(config.out, scan, journal_start(config.out)).run() \
        if config.resume else None
    if scan.cut_lines:
        log.warning("journal.cut_lines", path=str(config.out), count=scan.cut_lines,
                    note="records cut off by a crash were skipped")
    # Unreadable input or a whole-file mistake: exit 2, no --out. A stream (stdin, FIFO) is
    # not read ahead: its producer may pause, and nothing is read before the signal handlers
    # are in place (its lines are then judged one by one, as they come).
    repeats = RepeatedIds()
    checked = checked_lines(config.input, config.defaults, default_op=config.op,
                            rules=config.rules)
    lines: Iterator[Planned | InvalidLine] = watched(checked, repeats)
    regular = checked.regular
    if regular:
        lines = refuse_whole_file_mistakes(lines, allow_empty=config.allow_empty)
    log_deadline(config.deadline)
    run_id = new_run_id()
    # The marker opens the run (and, without --resume, a sequence): before anything is sent
    side = PreviousLog(config.out)
    try:
        side.mark_run(run_id, resume=config.resume, capture=undo is not None,
                      journal_offset=_size(config.out))
    except BaseException:
        side.close()
        raise
    return _Journal(run_id=run_id, source=line_source(lines, regular=regular), resume=resume,
                    side=side, writer=OutcomeWriter(config.out),
                    capture=None if undo is None else Capture(side), repeats=repeats)


def _progress(config: RunConfig, regular: bool, stderr: TextIO) -> AbstractContextManager[
        Callable[[Outcome], None] | None]:
    if progress.wanted(config.progress, stderr):
        return progress.progress_bar(config.input, regular, stderr)
    return nullcontext()


def _chain(*callbacks: Callable[[Outcome], None] | None) -> Callable[[Outcome], None] | None:
    """One callback calling each of `callbacks` given (None: none was)."""
    live = [c for c in callbacks if c is not None]
    if len(live) <= 1:
        return live[0] if live else None

    def each(outcome: Outcome) -> None:
        for callback in live:
            callback(outcome)

    return each


def _send(ctx: RunContext, stderr: TextIO) -> Stop:
    """The run on its event loop, the bar drawn meanwhile; the journal closed after it."""
    try:
        with _progress(ctx.config, ctx.journal.source.regular, stderr) as bar:
            shown = replace(ctx, on_outcome=_chain(ctx.on_outcome, bar))
            return anyio.run(_run_async, shown, backend_options=_loop_options())
    finally:
        ctx.journal.close()


def run(config: RunConfig, env: Mapping[str, str] | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        stderr: TextIO | None = None) -> ExitCode:
    """`batchsms run` with `config`, its outputs checked (`check_run_outputs`); the exit code
    (docs/reference.md §7)."""
    env = os.environ if env is None else env
    stderr = stderr or sys.stderr  # the one at call time (as `logs` does), not at import
    if config.dry_run:
        return dry_run(config, sys.stdout, stderr, env)
    # Everything that can refuse to start is checked before the lock and --out are touched.
    require_transport_features()
    connection = anyio.run(resolve_connection, config.connection, env)
    ensure_descriptors(config.concurrency * (2 if config.simulate else 1))  # sim: both ends
    undo = None
    if config.undo_file is not None:
        if not config.allow_irreversible:
            check_reversible(config.input, config.defaults)  # reads the input once: exit 2
        undo = RunUndo(config.undo_file)
    lock = lock_outcomes(config.out)  # the journal itself, by file: before it is read
    try:
        journal = _open_journal(config, undo)
    except BaseException:
        lock.close(unused=True)  # refused before writing: no --out left
        raise
    with closing(lock):
        return _journaled(RunContext(config=config, env=env, connection=connection,
                                     journal=journal, undo=undo, stats=RunStats(),
                                     on_outcome=on_outcome), stderr)


def _journaled(ctx: RunContext, stderr: TextIO) -> ExitCode:
    """The run once its journal is open: exit 4 when it broke, else how the run ended."""
    try:
        stop = _send(ctx, stderr)
    except (JournalError, BaseExceptionGroup) as exc:
        return broken(ctx.config, ctx.journal.run_id, journal_failure(exc), ctx.stats, stderr)
    return _end(ctx, stop, stderr)


def refuse_empty(config: RunConfig, stderr: TextIO) -> ExitCode:
    """A stream (stdin, a FIFO) that ended without a line, and no --allow-empty: exit 2, told
    as a refusal to start is (a regular file is refused before the run: starting.py)."""
    if config.log_format == "json":
        log.error("run.refused", error=EMPTY_INPUT, exit_code=int(ExitCode.USAGE))
    else:
        print(f"batchsms: {EMPTY_INPUT}", file=stderr)
    return ExitCode.USAGE


def _end(ctx: RunContext, stop: Stop, stderr: TextIO) -> ExitCode:
    """After a run that kept its journal: the undo file, the summary, the metrics."""
    config, journal, stats = ctx.config, ctx.journal, ctx.stats
    if journal.capture is not None and journal.capture.log.error is not None:
        return broken(config, journal.run_id, JournalError(
            f"the undo values could not be written: {journal.capture.log.error}"), stats,
            stderr)
    if ctx.undo is not None:
        tell_undo(ctx.undo.write(config.out), config.log_format, stderr)
    tell_repeats(journal.repeats)
    code = exit_code(stats, stop.stopped)
    if not sum(stats.by_status.values()) and stop.stopped is None and not config.allow_empty:
        code = refuse_empty(config, stderr)  # a stream that brought no line (a file: at start)
    log_summary(config, journal.run_id, stats, stop.message, code, stderr)
    final_metrics(config.metrics_file, stats, code)
    return code

"""`batchsms run`: wire config, credentials, client, engine and journal into one pipeline run.

Everything that can make a run fail to start (bad options, no credentials, unreadable input,
a locked `--out`) is checked here, before the first request, and raised as `UsageError`.
Exit codes follow docs/reference.md §7.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import anyio
import anyio.abc
import structlog

from batchsms.changes.guarded_put import Capture, line_handler
from batchsms.changes.undo import RunUndo, check_reversible
from batchsms.changes.undo import describe as describe_undo
from batchsms.changes.undo_log import PreviousLog, journal_start
from batchsms.client import open_sms
from batchsms.commands import logs, progress
from batchsms.commands.config import RunConfig
from batchsms.commands.descriptors import ensure_descriptors
from batchsms.commands.outputs import check_output
from batchsms.commands.run.ending import (
    broken,
    exit_code,
    final_metrics,
    journal_failure,
    log_summary,
    metrics_after_refusal,
    tally,
)
from batchsms.commands.run.starting import (
    check_run_outputs,
    dry_run,
    log_deadline,
    refuse_whole_file_mistakes,
    run_inputs,
)
from batchsms.engine.build import EngineSettings, build_sender, require_transport_features
from batchsms.engine.feed import is_regular, line_source
from batchsms.engine.pipeline import Pipeline, SendOptions
from batchsms.engine.stats import RunStats
from batchsms.engine.stopping import StopReason
from batchsms.errors import ExitCode, JournalError, UsageError
from batchsms.journal.outcomes import (
    JournalScan,
    Outcome,
    OutcomeWriter,
    lock_outcomes,
    new_run_id,
)
from batchsms.journal.resume import ResumeIndex, ResumeRun
from batchsms.lines.bodies import Planned, checked_lines
from batchsms.lines.reader import InvalidLine
from batchsms.transport.endpoint import Connection, resolve_connection

log = structlog.get_logger("batchsms")

@dataclass(frozen=True, slots=True)
class RunContext:
    """What one run's event loop needs, handed to `anyio.run` as one value."""

    config: RunConfig
    env: Mapping[str, str]
    connection: Connection
    writer: OutcomeWriter
    lines: Iterator[Planned | InvalidLine]
    resume: ResumeRun | None  # None: not --resume
    run_id: str
    on_outcome: Callable[[Outcome], None] | None
    capture: Capture | None = None


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


async def _run_async(ctx: RunContext) -> Pipeline:
    config = ctx.config
    async with open_sms(ctx.connection, ctx.env, config.engine) as client:
        sender = build_sender(client, EngineSettings(
            concurrency=config.concurrency, rate=config.rate, burst=config.burst,
            max_attempts=config.max_attempts, max_outage=config.max_outage,
            deadline=config.deadline))
        pipeline = Pipeline(
            run_id=ctx.run_id, sender=sender, writer=ctx.writer, resume=ctx.resume,
            options=SendOptions(concurrency=config.concurrency,
                                abort_failure_ratio=config.abort_failure_ratio,
                                deadline=config.deadline),
            on_outcome=ctx.on_outcome,
            handler=line_handler(ctx.run_id, config.checks, ctx.capture))
        async with anyio.create_task_group() as tg:
            await tg.start(_watch_signals, pipeline, config.grace, tg)
            await pipeline.run(line_source(config.input, ctx.lines))
            tg.cancel_scope.cancel()
    return pipeline


def _loop_options() -> dict[str, bool]:
    """uvloop where it is installed (the `fast` extra): the same asyncio API, less CPU."""
    return {"use_uvloop": True} if importlib.util.find_spec("uvloop") is not None else {}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _chain(*callbacks: Callable[[Outcome], None] | None) -> Callable[[Outcome], None]:
    live = [c for c in callbacks if c is not None]

    def call(outcome: Outcome) -> None:
        for callback in live:
            callback(outcome)

    return call


def run(config: RunConfig, env: Mapping[str, str] | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        stderr: TextIO | None = None) -> ExitCode:
    env = os.environ if env is None else env
    stderr = stderr or sys.stderr  # the one at call time (as `logs` does), not at import
    if config.dry_run:
        return dry_run(config, sys.stdout, stderr)
    # Everything that can refuse to start is checked before the lock and --out are touched.
    require_transport_features()
    check_run_outputs(config)
    connection = resolve_connection(config.connection, env)
    ensure_descriptors(config.concurrency * (2 if config.simulate else 1))  # sim: both ends
    undo = None
    if config.undo_file is not None:
        if not config.allow_irreversible:
            check_reversible(config.input, config.defaults)  # reads the input once: exit 2
        undo = RunUndo(config.undo_file)
    lock = lock_outcomes(config.out)  # the journal itself, by file: before it is read
    writer: OutcomeWriter | None = None
    try:
        scan = JournalScan()
        resume = ResumeIndex.load(config.out, scan, journal_start(config.out)).run() \
            if config.resume else None
        if scan.cut_lines:
            log.warning("journal.cut_lines", path=str(config.out), count=scan.cut_lines,
                        note="records cut off by a crash were skipped")
        # unreadable input or a whole-file mistake: exit 2, no --out. A stream (stdin, FIFO) is
        # not read ahead: its producer may pause, and nothing is read before the signal
        # handlers are in place (its lines are then judged one by one, as they come).
        lines = checked_lines(config.input, config.defaults)
        if is_regular(config.input):
            lines = refuse_whole_file_mistakes(lines)
        log_deadline(config.deadline)
        run_id = new_run_id()
        # The marker opens the run (and, without --resume, a sequence): before anything is sent
        side = PreviousLog(config.out)
        try:
            side.mark_run(run_id, resume=config.resume, capture=undo is not None,
                          journal_offset=_size(config.out))
        except UsageError:
            side.close()
            raise
        capture = None if undo is None else Capture(side)
        writer = OutcomeWriter(config.out)
        written = RunStats()
        on_outcome = _chain(on_outcome, tally(written))
        try:
            try:
                with ExitStack() as stack:
                    if progress.wanted(config.progress, stderr):
                        bar = stack.enter_context(progress.progress_bar(config.input, stderr))
                        on_outcome = _chain(on_outcome, bar)
                    pipeline = anyio.run(_run_async, RunContext(
                        config=config, env=env, connection=connection,
                        writer=writer, lines=lines, resume=resume, run_id=run_id,
                        on_outcome=on_outcome, capture=capture),
                        backend_options=_loop_options())
            finally:
                writer.close()
                side.close()
        except (JournalError, BaseExceptionGroup) as exc:
            error = journal_failure(exc)
            if error is None:
                raise
            return broken(config, run_id, error, written, stderr)
        stats = pipeline.stats
        if capture is not None and capture.log.error is not None:
            return broken(config, run_id, JournalError(
                f"the undo values could not be written: {capture.log.error}"), stats, stderr)
        if undo is not None:
            print(describe_undo(undo.write(config.out)), file=stderr)
        code = exit_code(stats, pipeline.stop.stopped)
        log_summary(config, run_id, stats, pipeline.stop_message, code, stderr)
        final_metrics(config.metrics_file, stats, code)
        return code
    finally:
        lock.close(unused=writer is None)  # refused before writing: no --out left


@dataclass(frozen=True, slots=True)
class RunStart:
    """What `run` is told before its options are checked: how to log, and where a refusal's
    metrics go. The `RunConfig` is built after logging is set up, so that a bad option is
    logged in the format asked for."""

    input: str
    out: Path
    log_format: str | None  # as asked; None: console on a terminal, else json
    quiet: bool = False
    dry_run: bool = False
    metrics_file: Path | None = None
    token_file: Path | None = None
    ca_bundle: str | None = None
    patch: str | None = None


def main(start: RunStart, config: Callable[[str], RunConfig]) -> ExitCode:
    """`batchsms run`: `config(log format chosen)` is the checked config; the exit code."""
    fmt = logs.configure(start.log_format, quiet=start.quiet)
    refused: ExitCode | None = None
    try:
        for option, output in (("--out", start.out), ("--metrics-file", start.metrics_file)):
            # run() checks the rest; the --patch file is known only here (--dry-run writes
            # neither)
            if not start.dry_run:
                check_output(option, output, [("--patch", start.patch)])
        return run(config(fmt))
    except UsageError as exc:
        refused = ExitCode.USAGE
        if start.log_format != "json":  # asked for, not just chosen because not a terminal
            raise
        # json logs stay JSON: the refusal is one event, not a line of text
        log.error("run.refused", error=str(exc), exit_code=int(refused))  # noqa: TRY400 - no trace
        return refused
    except KeyboardInterrupt:  # before the run's own signal handling was in place
        refused = ExitCode.SIGINT
        raise
    finally:
        if refused is not None and not start.dry_run:
            # the run did not get as far as writing it: an alert must still see this exit
            metrics_after_refusal(
                start.metrics_file,
                run_inputs(start.input, start.token_file, start.ca_bundle, start.patch),
                start.out, refused)



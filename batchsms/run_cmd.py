"""`batchsms run`: wire config, credentials, client, limiter and journal into one pipeline run.

Everything that can make a run fail to start (bad options, no credentials, unreadable input,
a locked `--out`) is checked here, before the first request, and raised as `UsageError`.
Exit codes follow CONTRACT §7.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path
from typing import IO, Any, TextIO

import anyio
import anyio.abc
import orjson
import structlog

from batchsms import progress
from batchsms.auth import Authenticator, authenticator, load_credentials
from batchsms.checked_write import Capture, WriteChecks, checked_put
from batchsms.client import SmsClient, resolve_endpoint, task_path, tls_context
from batchsms.descriptors import ensure_descriptors
from batchsms.engine.feed import is_regular, line_source
from batchsms.engine.outage import DEFAULT_MAX_OUTAGE
from batchsms.engine.pipeline import Pipeline, SendOptions
from batchsms.engine.stats import RunStats
from batchsms.engine.stopping import Stopped, StopReason
from batchsms.engine.wiring import EngineSettings, build_sender, require_transport_features
from batchsms.errors import JournalError, NoCredentialsError, UsageError
from batchsms.metrics import write_metrics
from batchsms.outcomes import (
    DONE_SKIP_CODES,
    JournalScan,
    Outcome,
    OutcomeWriter,
    Status,
    load_resume_index,
    lock_outcomes,
    new_run_id,
)
from batchsms.outputs import check_output
from batchsms.plan import Planned
from batchsms.previous_log import PreviousLog, earlier_captures
from batchsms.records import InvalidLine
from batchsms.undo import RunUndo, check_reversible
from batchsms.undo import describe as describe_undo
from batchsms.validate_cmd import checked_lines, format_problems

log = structlog.get_logger("batchsms")

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_ABORTED, EXIT_BROKEN = 0, 1, 2, 3, 4
LOOK_AHEAD = 100  # lines read before the run starts, to refuse a whole-file mistake


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

    @property
    def checks(self) -> WriteChecks:
        """The reads around each write that were asked for (checked_write.py)."""
        return WriteChecks(skip_unchanged=self.skip_unchanged,
                           capture=self.undo_file is not None, verify=self.verify)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UsageError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.rate < 0:
            raise UsageError(f"--rate must be 0 (unlimited) or more, got {self.rate:g}")
        if self.burst < 1:
            raise UsageError(f"--burst must be at least 1, got {self.burst:g}")
        if self.max_attempts < 1:
            raise UsageError(f"--max-attempts must be at least 1, got {self.max_attempts}")
        if self.timeout <= 0:
            raise UsageError(f"--timeout must be more than 0, got {self.timeout:g}")
        if not self.grace >= 0:
            raise UsageError(f"--grace must be 0 or more, got {self.grace:g}")
        if not self.max_outage > 0:
            raise UsageError(f"--max-outage must be more than 0, got {self.max_outage:g}")
        if self.allow_irreversible and self.undo_file is None:
            raise UsageError("--allow-irreversible is only used with --undo-file")
        if not 0 <= self.abort_failure_ratio <= 1:
            raise UsageError("--abort-failure-ratio must be between 0 and 1, "
                             f"got {self.abort_failure_ratio:g}")


_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(text: str, option: str) -> float:
    """Seconds, from `600`, `90.5`, `10m`, `1h30m` or `45s`."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        match = _DURATION.fullmatch(text)
        if not (match and any(match.groups())):
            raise UsageError(f"{option} {text!r}: give seconds (600) or a duration like 10m "
                             "or 1h30m") from None
        h, m, s = (int(g or 0) for g in match.groups())
        seconds = h * 3600.0 + m * 60.0 + s
    if not 0 < seconds < float("inf"):
        raise UsageError(f"{option} must be more than 0, got {text!r}")
    return seconds


def parse_deadline(text: str, now: datetime) -> float:
    """The deadline as epoch seconds, from `now` (an aware local datetime).

    `90m`, `2h`, `1h30m`, `45s`: that long from now. `05:00` or `05:00:30`: the next time the
    local clock shows it. An ISO date-time: that moment (local time if it has no offset).
    """
    text = text.strip()
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


def dry_run(config: RunConfig, stdout: IO[str], stderr: IO[str]) -> int:
    """Print what would be sent, one JSON object per valid line; no network, no secrets."""
    try:
        base = resolve_endpoint(config.endpoint, config.region, os.environ)
    except UsageError:
        base = "https://{endpoint}"
    invalid = 0
    for item in checked_lines(config.input, config.defaults):
        if isinstance(item, InvalidLine):
            invalid += 1
            stderr.write("\n".join(format_problems(item)) + "\n")
            continue
        stdout.write(orjson.dumps({
            "line": item.number, "method": "PUT", "url": base + task_path(item.task_id),
            "ref": item.ref, "body_sha256": item.sha256, "body": orjson.Fragment(item.body),
        }).decode() + "\n")
    stdout.flush()
    return EXIT_OK if invalid == 0 else EXIT_SOME_FAILED


def _credentials(config: RunConfig, env: Mapping[str, str]) -> Authenticator | None:
    try:
        return authenticator(load_credentials(env, token_file=config.token_file))
    except NoCredentialsError:
        if config.simulate:  # a rehearsal needs none unless the simulator asks for them
            return None
        raise


@asynccontextmanager
async def _endpoint(config: RunConfig, env: Mapping[str, str],
                    endpoint: str | None) -> AsyncIterator[str]:
    """`endpoint`, or with --simulate the URL of a simulator started for the run."""
    if endpoint is not None:
        yield endpoint
    else:
        from batchsms.simulator import running
        from batchsms.simulator.access import ExpectedCredentials

        try:  # a rehearsal checks credentials only when BATCHSMS_SIMULATOR_* ask it to
            expected = ExpectedCredentials.from_env(env)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        async with running(log_size=0, credentials=expected) as sim:
            yield sim.url


@dataclass(frozen=True, slots=True)
class RunContext:
    """What one run's event loop needs, handed to `anyio.run` as one value."""

    config: RunConfig
    env: Mapping[str, str]
    endpoint: str | None  # None: start the simulator (--simulate)
    auth: Authenticator | None
    tls: ssl.SSLContext | bool
    writer: OutcomeWriter
    lines: Iterator[Planned | InvalidLine]
    resume: set[bytes]
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
                                         signum=signum):
                tg.start_soon(pipeline.cancel_in_flight)
                continue
            tg.start_soon(after_grace)


async def _run_async(ctx: RunContext) -> Pipeline:
    config = ctx.config
    async with _endpoint(config, ctx.env, ctx.endpoint) as url:
        client = SmsClient(url, ctx.auth, concurrency=config.concurrency, timeout=config.timeout,
                           tls=ctx.tls)
        async with client:
            sender = build_sender(client, EngineSettings(
                concurrency=config.concurrency, rate=config.rate, burst=config.burst,
                max_attempts=config.max_attempts, max_outage=config.max_outage,
                deadline=config.deadline))
            pipeline = Pipeline(
                run_id=ctx.run_id, sender=sender, writer=ctx.writer, resume_index=ctx.resume,
                options=SendOptions(concurrency=config.concurrency,
                                    abort_failure_ratio=config.abort_failure_ratio,
                                    deadline=config.deadline),
                on_outcome=ctx.on_outcome,
                handler=checked_put(ctx.run_id, config.checks, ctx.capture)
                if config.checks.any else None)
            async with anyio.create_task_group() as tg:
                await tg.start(_watch_signals, pipeline, config.grace, tg)
                await pipeline.run(line_source(config.input, ctx.lines))
                tg.cancel_scope.cancel()
    return pipeline


def exit_code(stats: RunStats, stopped: Stopped | None) -> int:
    if stopped is not None and stopped.signum is not None:
        return 128 + stopped.signum
    if stopped is not None and stopped.reason is StopReason.ABORTED:
        return EXIT_ABORTED
    bad = sum(n for s, n in stats.by_status.items() if s != Status.SUCCEEDED)
    done_skips = sum(stats.by_error.get(code, 0) for code in DONE_SKIP_CODES)
    return EXIT_OK if bad == done_skips else EXIT_SOME_FAILED


def _loop_options() -> dict[str, Any]:
    """uvloop where it is installed (the `fast` extra): the same asyncio API, less CPU."""
    return {"use_uvloop": True} if importlib.util.find_spec("uvloop") is not None else {}


def _chain(*callbacks: Callable[[Outcome], None] | None) -> Callable[[Outcome], None]:
    live = [c for c in callbacks if c is not None]

    def call(outcome: Outcome) -> None:
        for callback in live:
            callback(outcome)

    return call


def check_run_outputs(config: RunConfig) -> None:
    """`--out` and `--metrics-file`: not an input, writable (CONTRACT §4), before anything."""
    inputs = run_inputs(config.input, config.token_file, config.ca_bundle)
    check_output("--out", config.out, inputs)
    check_output("--metrics-file", config.metrics_file, [*inputs, ("--out", config.out)])
    check_output("--undo-file", config.undo_file,
                 [*inputs, ("--out", config.out), ("--metrics-file", config.metrics_file)])


def run_inputs(source: str, token_file: Path | str | None,
               ca_bundle: Path | str | None,
               patch: Path | str | None = None) -> list[tuple[str, Path | str | None]]:
    """The files a run reads, as (what, path) pairs for `outputs.check_output`."""
    return [("the input", source), ("--patch", patch), ("--token-file", token_file),
            ("--ca-bundle", ca_bundle)]


def refuse_whole_file_mistakes(
        lines: Iterator[Planned | InvalidLine]) -> Iterator[Planned | InvalidLine]:
    """The same stream, after reading ahead up to `LOOK_AHEAD` lines: when every one of them is
    invalid, the file (or the options) is wrong as a whole, and the run refuses to start
    (exit 2) instead of writing a record per line. At most those lines are held."""
    head = list(itertools.islice(lines, LOOK_AHEAD))
    if not head or not all(isinstance(item, InvalidLine) for item in head):
        return itertools.chain(head, lines)
    invalid = [item for item in head if isinstance(item, InvalidLine)]
    raise UsageError(f"{_likely_cause(invalid)}; the first {len(invalid)} line"
                     f"{'s are' if len(invalid) > 1 else ' is'} all invalid, nothing was sent "
                     f"(first: {next(format_problems(invalid[0]))}; "
                     "`batchsms validate` lists every problem)")


def _likely_cause(head: list[InvalidLine]) -> str:
    # A first line that is not a JSON object: a JSON array (`[` alone, or the whole array on
    # one line), a CSV header, a pretty-printed object...
    if head[0].errors[0].path == "line":
        return "input must be JSON Lines: one object per line (not a JSON array, not CSV)"
    if all(any(p.path == "body" and "no body" in p.message for p in item.errors)
           for item in head):
        return "the lines have no body and no --set/--patch gives one"
    return "no line is valid: is this the right file?"


def _deadline_logged(deadline: float | None) -> None:
    if deadline is not None:
        moment = datetime.fromtimestamp(deadline).astimezone()
        log.info("run.deadline_at", deadline=moment.isoformat(timespec="seconds"),
                 in_s=round(deadline - time.time()))


def _journal_failure(exc: BaseException) -> JournalError | None:
    """The JournalError in `exc`, also when a task group wrapped it (in groups, at any depth)."""
    if isinstance(exc, JournalError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _journal_failure(inner)
            if found is not None:
                return found
    return None


def _tally(stats: RunStats) -> Callable[[Outcome], None]:
    """Counts the records written into `stats`: the figures left when the pipeline broke."""
    def count(outcome: Outcome) -> None:
        stats.by_status[outcome.status.value] += 1
        if outcome.error_code:
            stats.by_error[outcome.error_code] += 1
        if outcome.http_status is not None:
            stats.by_http[outcome.http_status] += 1
        stats.requests += outcome.attempts
        stats.retries += max(0, outcome.attempts - 1)
    return count


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


def _summary(config: RunConfig, run_id: str, stats: RunStats, stop_message: str | None,
             code: int, stderr: TextIO) -> None:
    """`run.finished` as one event (all a json log gets), and the human lines on a console."""
    log.info("run.finished", run_id=run_id, exit_code=code,
             duration_s=round(stats.duration, 3), requests=stats.requests,
             retries=stats.retries, **dict(stats.by_status), errors=dict(stats.by_error),
             stopped=stop_message)
    if config.log_format != "json":
        for text in summary_lines(stats, stop_message):
            print(text, file=stderr)


def _broken(config: RunConfig, run_id: str, error: JournalError, stats: RunStats,
            stderr: TextIO) -> int:
    """Exit 4: one line naming the file and the cause, the metrics file if it can be."""
    stats.finished = time.monotonic()
    message = f"{error}; sending stopped at once, exit 4"
    if config.log_format == "json":
        log.error("run.broken", run_id=run_id, error=message, exit_code=EXIT_BROKEN)
    else:
        print(f"batchsms: {message}", file=stderr)
    final_metrics(config.metrics_file, stats, EXIT_BROKEN)
    return EXIT_BROKEN


def run(config: RunConfig, env: Mapping[str, str] | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        stderr: TextIO = sys.stderr) -> int:
    env = os.environ if env is None else env
    if config.dry_run:
        return dry_run(config, sys.stdout, stderr)
    # Everything that can refuse to start is checked before the lock and --out are touched.
    require_transport_features()
    check_run_outputs(config)
    endpoint = None if config.simulate else resolve_endpoint(config.endpoint, config.region, env)
    auth = _credentials(config, env)
    tls = tls_context(config.ca_bundle)
    ensure_descriptors(config.concurrency * (2 if config.simulate else 1))  # sim: both ends
    undo = None
    if config.undo_file is not None:
        if not config.allow_irreversible:
            check_reversible(config.input, config.defaults)  # reads the input once: exit 2
        undo = RunUndo(config.undo_file)
        on_outcome = _chain(on_outcome, undo.on_outcome)
    lock = lock_outcomes(config.out)  # before --out is touched; the lock file lies beside it
    try:
        scan = JournalScan()
        resume = load_resume_index(config.out, scan) if config.resume else set()
        if scan.cut_lines:
            log.warning("journal.cut_lines", path=str(config.out), count=scan.cut_lines,
                        note="records cut off by a crash were skipped")
        # unreadable input or a whole-file mistake: exit 2, no --out. A stream (stdin, FIFO) is
        # not read ahead: its producer may pause, and nothing is read before the signal
        # handlers are in place (its lines are then judged one by one, as they come).
        lines = checked_lines(config.input, config.defaults)
        if is_regular(config.input):
            lines = refuse_whole_file_mistakes(lines)
        _deadline_logged(config.deadline)
        capture = None if undo is None else Capture(
            PreviousLog(config.out), earlier_captures(config.out) if config.resume else {})
        writer = OutcomeWriter(config.out)
        run_id = new_run_id()
        written = RunStats()
        on_outcome = _chain(on_outcome, _tally(written))
        try:
            try:
                with ExitStack() as stack:
                    if progress.wanted(config.progress, stderr):
                        bar = stack.enter_context(progress.progress_bar(config.input, stderr))
                        on_outcome = _chain(on_outcome, bar)
                    pipeline = anyio.run(_run_async, RunContext(
                        config=config, env=env, endpoint=endpoint, auth=auth, tls=tls,
                        writer=writer, lines=lines, resume=resume, run_id=run_id,
                        on_outcome=on_outcome, capture=capture),
                        backend_options=_loop_options())
            finally:
                writer.close()
                if capture is not None:
                    capture.log.close()
        except (JournalError, BaseExceptionGroup) as exc:
            error = _journal_failure(exc)
            if error is None:
                raise
            return _broken(config, run_id, error, written, stderr)
        stats = pipeline.stats
        if capture is not None and capture.log.error is not None:
            return _broken(config, run_id, JournalError(
                f"the undo values could not be written: {capture.log.error}"), stats, stderr)
        if undo is not None:
            print(describe_undo(undo.write(config.out, run_id)), file=stderr)
        code = exit_code(stats, pipeline.stop.stopped)
        _summary(config, run_id, stats, pipeline.stop_message, code, stderr)
        final_metrics(config.metrics_file, stats, code)
        return code
    finally:
        lock.close()


def metrics_after_refusal(path: Path | None, inputs: list[tuple[str, Path | str | None]],
                          out: Path | None, code: int) -> None:
    """A run that could not start (exit 2, or 130 at start-up) still writes `--metrics-file`,
    so the exit-code alert fires; never when that path is unusable or one of the inputs."""
    if path is None:
        return
    try:
        check_output("--metrics-file", path, [*inputs, ("--out", out)])
    except UsageError:
        return
    final_metrics(path, RunStats(), code)

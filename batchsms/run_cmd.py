"""`batchsms run`: wire config, credentials, client, limiter and journal into one pipeline run.

Everything that can make a run fail to start (bad options, no credentials, unreadable input,
a locked `--out`) is checked here, before the first request, and raised as `UsageError`.
Exit codes follow CONTRACT §7.
"""

from __future__ import annotations

import importlib.util
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
from batchsms.client import SmsClient, resolve_endpoint, task_path, tls_context
from batchsms.engine.feed import line_source
from batchsms.engine.outage import DEFAULT_MAX_OUTAGE
from batchsms.engine.pipeline import Pipeline, SendOptions
from batchsms.engine.stats import RunStats, summary_lines
from batchsms.engine.stopping import Stopped, StopReason
from batchsms.engine.wiring import EngineSettings, build_sender, require_transport_features
from batchsms.errors import NoCredentialsError, UsageError
from batchsms.metrics import check_metrics_path, write_metrics
from batchsms.outcomes import (
    JournalScan,
    Outcome,
    OutcomeWriter,
    Status,
    load_resume_index,
    lock_outcomes,
    new_run_id,
)
from batchsms.plan import Planned
from batchsms.records import InvalidLine
from batchsms.validate_cmd import checked_lines, format_problems

log = structlog.get_logger("batchsms")

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_ABORTED = 0, 1, 2, 3


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
    max_outage: float = DEFAULT_MAX_OUTAGE

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
        if not self.max_outage > 0:
            raise UsageError(f"--max-outage must be more than 0, got {self.max_outage:g}")
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
                on_outcome=ctx.on_outcome)
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
    return EXIT_OK if bad == stats.by_error.get("already_succeeded", 0) else EXIT_SOME_FAILED


def _loop_options() -> dict[str, Any]:
    """uvloop where it is installed (the `fast` extra): the same asyncio API, less CPU."""
    return {"use_uvloop": True} if importlib.util.find_spec("uvloop") is not None else {}


def _chain(*callbacks: Callable[[Outcome], None] | None) -> Callable[[Outcome], None]:
    live = [c for c in callbacks if c is not None]

    def call(outcome: Outcome) -> None:
        for callback in live:
            callback(outcome)

    return call


def run(config: RunConfig, env: Mapping[str, str] | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        stderr: TextIO = sys.stderr) -> int:
    env = os.environ if env is None else env
    if config.dry_run:
        return dry_run(config, sys.stdout, stderr)
    # Everything that can refuse to start is checked before the lock and --out are touched.
    require_transport_features()
    endpoint = None if config.simulate else resolve_endpoint(config.endpoint, config.region, env)
    auth = _credentials(config, env)
    if config.metrics_file is not None:
        check_metrics_path(config.metrics_file)
    tls = tls_context(config.ca_bundle)
    lock = lock_outcomes(config.out)  # before --out is touched; the lock file lies beside it
    try:
        scan = JournalScan()
        resume = load_resume_index(config.out, scan) if config.resume else set()
        if scan.cut_lines:
            log.warning("journal.cut_lines", path=str(config.out), count=scan.cut_lines,
                        note="records cut off by a crash were skipped")
        lines = checked_lines(config.input, config.defaults)  # unreadable: exit 2, no --out
        writer = OutcomeWriter(config.out)
        run_id = new_run_id()
        started = time.monotonic()
        try:
            with ExitStack() as stack:
                if progress.wanted(config.progress, stderr):
                    bar = stack.enter_context(progress.progress_bar(config.input, stderr))
                    on_outcome = _chain(on_outcome, bar)
                pipeline = anyio.run(_run_async, RunContext(
                    config=config, env=env, endpoint=endpoint, auth=auth, tls=tls,
                    writer=writer, lines=lines, resume=resume, run_id=run_id,
                    on_outcome=on_outcome), backend_options=_loop_options())
        finally:
            writer.close()
        stats = pipeline.stats
        log.info("run.finished", run_id=run_id, duration_s=round(time.monotonic() - started, 3),
                 requests=stats.requests, retries=stats.retries, **dict(stats.by_status))
        for text in summary_lines(stats, pipeline.stop_message):
            print(text, file=stderr)
        code = exit_code(stats, pipeline.stop.stopped)
        if config.metrics_file is not None:
            try:
                write_metrics(config.metrics_file, stats, code, time.time())
            except UsageError as exc:  # the run happened: keep its exit code, say what failed
                log.warning("metrics.write_failed", path=str(config.metrics_file), error=str(exc))
        return code
    finally:
        lock.close()

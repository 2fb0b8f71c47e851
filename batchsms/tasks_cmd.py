"""`batchsms tasks`: select a fleet with ListTasks, as input envelopes for `run`.

Pages through `GET /v3/tasks` (`limit`/`offset`, filters `state`, `name`, `id`,
`enterprise_project_id`) with the same credentials, token bucket and retry decision as `run`,
and writes one `{"task_id": ..., "ref": <task name>}` per task. A listing that fails half-way must
never look like a smaller fleet: the command then exits non-zero, and `--out` is written to a
temporary file that replaces the target only when every page arrived.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import anyio
import orjson

from batchsms.client import Reply, SmsClient, tls_context
from batchsms.descriptors import ensure_descriptors
from batchsms.errors import TransportError, UsageError
from batchsms.limiter import RateLimiter
from batchsms.retry import RetryPolicy, RetryQuota, decide, parse_retry_after

LIST_PATH = "/v3/tasks"
EXIT_OK, EXIT_FAILED, EXIT_AUTH = 0, 1, 3


class ListingFailed(Exception):  # noqa: N818 - a state, like StopIteration
    """A page could not be fetched within the retry budget."""

    def __init__(self, message: str, auth: bool = False) -> None:
        super().__init__(message)
        self.auth = auth


@dataclass(frozen=True, slots=True)
class TasksConfig:
    endpoint: str
    filters: Mapping[str, str]
    out: Path | None = None
    page_size: int = 100
    rate: float = 10.0
    max_attempts: int = 5
    timeout: float = 30.0
    ca_bundle: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= 200:
            raise UsageError(f"--page-size must be 1 to 200, got {self.page_size}")


async def fetch(client: SmsClient, limiter: RateLimiter, policy: RetryPolicy, quota: RetryQuota,
                path: str, query: list[tuple[str, str]]) -> Reply:
    """One GET with the run's retry rules; raises ListingFailed when it cannot succeed."""
    attempt = 0
    while True:
        await limiter.acquire()
        attempt += 1
        try:
            reply: Reply | TransportError = await client.request("GET", path, query=query)
        except TransportError as exc:
            reply = exc
        if isinstance(reply, Reply):
            if reply.ok:
                limiter.on_success()
                quota.release(retried=attempt > 1)
                return reply
            if reply.status == 429:
                limiter.on_throttle()
            status: int | None = reply.status
            why = f"HTTP {reply.status} {reply.error_code or ''} {reply.error_msg or ''}".strip()
            retry_after = parse_retry_after(reply.retry_after, datetime.now(UTC))
        else:
            status, why, retry_after = None, str(reply), None
        decision = decide(policy, attempt, status, status is None, retry_after, quota,
                          random.random)
        if not decision.retry:
            raise ListingFailed(f"ListTasks failed after {attempt} attempt(s): {why}",
                                auth=status in (401, 403))
        await anyio.sleep(decision.delay)


async def iter_tasks(client: SmsClient, config: TasksConfig) -> AsyncIterator[dict[str, Any]]:
    """Every task matching the filters, page by page."""
    limiter = RateLimiter(config.rate)
    policy, quota = RetryPolicy(max_attempts=config.max_attempts), RetryQuota()
    offset = 0
    while True:
        query = [*config.filters.items(), ("limit", str(config.page_size)),
                 ("offset", str(offset))]
        reply = await fetch(client, limiter, policy, quota, LIST_PATH, query)
        try:
            page = reply.json()
            tasks, count = page["tasks"], int(page["count"])  # type: ignore[index]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ListingFailed(f"ListTasks answered something unexpected: {exc}") from exc
        for task in tasks:
            yield task
        offset += len(tasks)
        if not tasks or offset >= count:
            return


async def _write(client_factory: Any, config: TasksConfig, sink: IO[bytes]) -> int:
    written = 0
    async with client_factory() as client:
        async for task in iter_tasks(client, config):
            sink.write(orjson.dumps({"task_id": task.get("id"), "ref": task.get("name")})
                       + b"\n")
            written += 1
    return written


def run_tasks(config: TasksConfig, auth: Any, stdout: IO[bytes] | None = None,
              stderr: IO[str] = sys.stderr) -> int:
    def client_factory() -> SmsClient:
        return SmsClient(config.endpoint, auth, concurrency=1, timeout=config.timeout, tls=tls)

    tls = tls_context(config.ca_bundle)
    ensure_descriptors(1)

    try:
        if config.out is None:
            written = anyio.run(_write, client_factory, config, stdout or sys.stdout.buffer)
        else:
            written = _write_atomically(client_factory, config)
    except ListingFailed as exc:
        print(f"batchsms: {exc}; no fleet file written" if config.out else f"batchsms: {exc}",
              file=stderr)
        return EXIT_AUTH if exc.auth else EXIT_FAILED
    print(f"{written} tasks", file=stderr)
    return EXIT_OK


def _write_atomically(client_factory: Any, config: TasksConfig) -> int:
    assert config.out is not None
    directory = config.out.resolve().parent
    fd, tmp = tempfile.mkstemp(prefix=f".{config.out.name}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as sink:
            written: int = anyio.run(_write, client_factory, config, sink)
        os.replace(tmp, config.out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return written

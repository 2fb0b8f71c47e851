"""Descriptors: make sure the process can hold the connections a command was asked for.

Run out of file descriptors half-way and every new connection fails with EMFILE, which looks
like a service outage (retries, then exit 3). So before the first request, `ensure_descriptors`
raises the soft `RLIMIT_NOFILE` towards the hard limit when the concurrency needs it, and refuses
(`UsageError`, exit 2, naming the numbers) a concurrency the process cannot hold.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

import structlog

from batchsms.errors import UsageError

log = structlog.get_logger("batchsms")

# Descriptors a run holds besides its connections: standard streams, the input, the outcomes
# file and its lock, the metrics file, the event loop's epoll and wake-up pipe, a resolver
# thread, TLS files, and an in-process simulator's listening socket. 64 covers them with room.
MARGIN = 64


@dataclass(frozen=True, slots=True)
class Descriptors:
    """The soft limit before and after the check, and how many the command needs."""

    needed: int
    soft_before: int
    soft: int


def ensure_descriptors(connections: int, *, option: str = "--concurrency") -> Descriptors:
    """Make room for `connections` sockets plus `MARGIN`, or raise UsageError saying why not."""
    needed = connections + MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if _unlimited(soft) or soft >= needed:
        return Descriptors(needed, soft, soft)
    ceiling = soft
    if _unlimited(hard) or hard >= needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        except (ValueError, OSError):
            pass  # e.g. above the kernel's nr_open: fall through to the refusal
        else:
            log.info("descriptors.raised", soft_before=soft, soft=needed, hard=_show(hard))
            return Descriptors(needed, soft, needed)
    else:
        ceiling = hard
    room = max(0, ceiling - MARGIN)
    raise UsageError(
        f"{option} {connections} needs about {needed} file descriptors ({connections} "
        f"connections + {MARGIN}), but this process may open at most {_show(soft)} "
        f"(ulimit -n; hard limit {_show(hard)}): lower {option} to {room} or less, or raise "
        "the limit (ulimit -n, LimitNOFILE= in systemd)")


def _unlimited(limit: int) -> bool:
    return limit == resource.RLIM_INFINITY


def _show(limit: int) -> str:
    return "unlimited" if _unlimited(limit) else str(limit)

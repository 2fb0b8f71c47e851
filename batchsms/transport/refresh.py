"""Temporary credentials kept fresh during a run, in the background, never used expired.

Place in the flow: providers.py wraps a temporary source (sources.py: pod identity, ECS
metadata) in a :class:`Refresher`; the signer asks it for :meth:`Refresher.current` at every
attempt, while :meth:`Refresher.run` (a task in the run's task group) fetches new credentials
before the old ones expire. The rules, from CONTRACT §6 and ``huaweicloudsdkcore``:

- **When** (:func:`refresh_at`): 40 minutes before expiry (the SDK's
  ``_DEFAULT_EXPIRATION_THRESHOLD_SECONDS``); credentials that live less than two hours are
  refreshed when a third of their life is left (40 minutes is more than a third of them, and a
  short life, 15 minutes say, would be refreshed at once and for ever).
- **Never expired**: :meth:`Refresher.current` raises
  :class:`~batchsms.errors.CredentialsExpiredError` instead of handing out credentials whose
  ``expires_at`` has passed.
- **Forced** (:meth:`Refresher.force`): a 401 on a request signed with temporary credentials
  refreshes at once; concurrent 401s on the same credentials share one fetch.
- **A failing source** is asked again with exponential backoff and full jitter
  (:func:`backoff`, base 1 s, cap 30 s: a refresh is one request every few minutes, so the
  engine's 0.5 s / 20 s of CONTRACT §5 would only crowd the source), never past the expiry of
  the current credentials; once they expire the failure is terminal: :attr:`Refresher.failure`
  is set, ``current`` raises it, and ``run`` returns.

Clock (seconds since the epoch), sleep and randomness are constructor arguments, so tests run
the schedule on a FakeClock.
"""

from __future__ import annotations

import contextlib
import math
import random as random_module
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import anyio

from batchsms.errors import CredentialsExpiredError, CredentialSourceError
from batchsms.transport.credentials import AkSkCredentials
from batchsms.transport.sources import TemporaryCredentials, TemporarySource

__all__ = ["AHEAD", "SHORT_LIFE", "Refresher", "backoff", "refresh_at"]

AHEAD = 40 * 60
"""Seconds before expiry the SDK refreshes."""
SHORT_LIFE = 2 * 60 * 60
"""Credentials living less than this are refreshed with a third of their life left."""
BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0


def refresh_at(obtained_at: float, expires_at: float) -> float:
    """When credentials obtained at ``obtained_at`` and expiring at ``expires_at`` are to be
    refreshed (module docstring)."""
    life = expires_at - obtained_at
    if life < SHORT_LIFE:
        return expires_at - max(life, 0.0) / 3
    return expires_at - AHEAD


def backoff(failures: int, random: Callable[[], float],
            base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait after the ``failures``-th failure in a row (1, 2, ...): full jitter."""
    return random() * min(cap, base * 2.0 ** min(failures - 1, 62))


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Refresher:
    """Current temporary credentials from one source, refreshed ahead of expiry (module
    docstring). Start with :meth:`start` (the first fetch: its error is the caller's, exit 2),
    then run :meth:`run` in the background for as long as credentials are needed."""

    def __init__(
        self,
        source: TemporarySource,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        random: Callable[[], float] = random_module.random,
    ) -> None:
        self._source = source
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._current: TemporaryCredentials | None = None
        self._due = -math.inf  # run() without start() fetches at once
        self._failures = 0
        self._last_error: str | None = None
        self._failure: CredentialsExpiredError | None = None
        self._lock = anyio.Lock()
        self.generation = 0
        """How many credentials the source has given (1 after ``start``)."""

    def __repr__(self) -> str:
        return f"Refresher({self._source.name!r}, generation={self.generation})"

    @property
    def source(self) -> str:
        return self._source.name

    @property
    def failure(self) -> CredentialsExpiredError | None:
        """The terminal failure, once the credentials expired with no new ones."""
        return self._failure

    @property
    def expires_at(self) -> float:
        """When the credentials held expire (infinity before the first fetch: nothing to lose)."""
        return self._current.expires_at if self._current else math.inf

    def current(self) -> AkSkCredentials:
        """The credentials to sign with now; CredentialsExpiredError if they expired."""
        held = self._current
        if held is None:
            raise CredentialSourceError(f"{self.source}: no credentials fetched yet")
        if self._clock() >= held.expires_at:
            raise self._expired(held)
        return held.credentials

    def secrets(self) -> tuple[str, ...]:
        """The secrets of the credentials held now (they change at each refresh)."""
        return self._current.credentials.secrets() if self._current else ()

    async def start(self) -> AkSkCredentials:
        """The first fetch; its CredentialSourceError is the caller's (nothing to fall back on)."""
        await self._fetch()
        return self.current()

    async def force(self, rejected: AkSkCredentials) -> AkSkCredentials:
        """New credentials now, because ``rejected`` got a 401; a fetch already made since
        ``rejected`` was handed out counts (concurrent 401s share it). Raises the source's
        CredentialSourceError when this fetch fails (the caller's request then fails as the
        401 it got); the background loop keeps retrying. While the source is in backoff after
        a failure, the failure is raised again without asking it."""
        async with self._lock:
            if self._current is not None and self._current.credentials is not rejected:
                return self.current()
            if self._failures and self._clock() < self._due:
                # The source failed a moment ago: a burst of 401s must not hammer it.
                raise CredentialSourceError(self._last_error or f"{self.source} failed")
            await self._fetch_noting_failure()
        return self.current()

    async def run(self) -> None:
        """Refresh ahead of expiry until cancelled, or until the credentials expired while the
        source kept failing (then :attr:`failure` is set and this returns)."""
        while self._failure is None:
            now = self._clock()
            held = self._current
            if held is not None and now >= held.expires_at:
                self._failure = self._expired(held)
                return
            wait = self._due - now
            if wait > 0:
                # Wake by expiry at the latest, to say so the moment the credentials lapse.
                await self._sleep(min(wait, self.expires_at - now))
                continue
            async with self._lock:
                if self._due > self._clock():  # a forced refresh came first
                    continue
                with contextlib.suppress(CredentialSourceError):  # noted; tried again at _due
                    await self._fetch_noting_failure()

    async def _fetch_noting_failure(self) -> None:
        try:
            await self._fetch()
        except CredentialSourceError as exc:
            self._failures += 1
            self._last_error = str(exc)
            now = self._clock()
            self._due = min(now + backoff(self._failures, self._random), self.expires_at)
            raise

    async def _fetch(self) -> None:
        obtained_at = self._clock()
        fresh = await self._source.fetch()
        self._current = fresh
        self._due = refresh_at(obtained_at, fresh.expires_at)
        self._failures = 0
        self._last_error = None
        self.generation += 1

    def _expired(self, held: TemporaryCredentials) -> CredentialsExpiredError:
        if self._failure is not None:
            return self._failure
        answer = self._last_error or "no refresh was tried in time"
        return CredentialsExpiredError(
            f"temporary credentials from {self.source} expired at {_stamp(held.expires_at)} "
            f"and no new ones came: {answer}")

"""Temporary credentials refreshed ahead of expiry, on a fake clock; one loopback rehearsal."""

from __future__ import annotations

from collections import deque

import anyio
import pytest

from batchsms.errors import CredentialsExpiredError, CredentialSourceError
from batchsms.simulator.metadata import MetadataState, metadata_app
from batchsms.transport.credentials import AkSkCredentials
from batchsms.transport.refresh import AHEAD, Refresher, backoff, refresh_at
from batchsms.transport.sources import MetadataSource, TemporaryCredentials
from tests.clocks import FakeClock
from tests.servers import serving

pytestmark = pytest.mark.anyio

T0 = 1_780_000_000.0
HOUR = 3600.0


class ScriptedSource:
    """Answers from a script, one per fetch: credentials living `life` seconds from the fetch,
    or an error message."""

    name = "scripted source"

    def __init__(self, clock: FakeClock, script: list[float | str]) -> None:
        self.clock = clock
        self.script = deque(script)
        self.fetched_at: list[float] = []

    async def fetch(self) -> TemporaryCredentials:
        self.fetched_at.append(self.clock.now)
        step = self.script.popleft() if self.script else "script ended"
        if isinstance(step, str):
            raise CredentialSourceError(f"{self.name} answered HTTP 500: {step}")
        n = len(self.fetched_at)
        return TemporaryCredentials(
            AkSkCredentials(f"AK{n:08d}", f"SK-secret-{n:08d}", security_token=f"ST-{n:08d}"),
            self.clock.now + step)


def _refresher(clock: FakeClock, source: ScriptedSource) -> Refresher:
    return Refresher(source, clock=clock, sleep=clock.sleep, random=lambda: 1.0)


async def _run_until(refresher: Refresher, generation: int) -> None:
    """Run the background refresh until the source has given `generation` credentials."""
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(refresher.run)
            while refresher.generation < generation:
                await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()


def test_refresh_at_follows_the_sdk_and_the_third_rule() -> None:
    assert refresh_at(T0, T0 + 6 * HOUR) == T0 + 6 * HOUR - AHEAD  # the SDK's 40 minutes
    assert refresh_at(T0, T0 + 2 * HOUR) == T0 + 2 * HOUR - AHEAD
    assert refresh_at(T0, T0 + 900) == T0 + 600  # a third of 15 minutes left
    assert refresh_at(T0, T0 + 9) == T0 + 6
    assert refresh_at(T0, T0 - 5) == T0 - 5  # already expired: now


def test_backoff_is_full_jitter_capped() -> None:
    assert [backoff(n, lambda: 1.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff(3, lambda: 0.5) == 2
    assert backoff(10_000, lambda: 1.0) == 30


async def test_refreshes_in_the_background_ahead_of_expiry() -> None:
    clock = FakeClock(T0)
    source = ScriptedSource(clock, [900, 900, 6 * HOUR])
    refresher = _refresher(clock, source)
    first = await refresher.start()
    await _run_until(refresher, generation=3)
    assert source.fetched_at == [T0, T0 + 600, T0 + 1200]
    assert refresher.current() is not first
    assert refresher.expires_at == T0 + 1200 + 6 * HOUR


async def test_never_hands_out_expired_credentials() -> None:
    clock = FakeClock(T0)
    refresher = _refresher(clock, ScriptedSource(clock, [60]))
    await refresher.start()
    clock.advance(59.9)
    assert refresher.current().ak == "AK00000001"
    clock.advance(0.1)
    with pytest.raises(CredentialsExpiredError, match="scripted source"):
        refresher.current()


async def test_a_failing_source_is_retried_with_backoff_until_expiry_then_terminal() -> None:
    clock = FakeClock(T0)
    source = ScriptedSource(clock, [90, "down", "down", "down", "down", "down", "down", "down"])
    refresher = _refresher(clock, source)
    await refresher.start()
    await refresher.run()  # returns once the credentials expired without new ones
    # due at T0+60 (a third of 90 s left), then 1, 2, 4, 8, 16 s later; the next (30 s)
    # would pass the expiry at T0+90: the wait stops there.
    assert source.fetched_at == [T0, T0 + 60, T0 + 61, T0 + 63, T0 + 67, T0 + 75]
    assert clock.now == T0 + 90
    failure = refresher.failure
    assert failure is not None
    assert "scripted source" in str(failure)
    assert "HTTP 500: down" in str(failure)
    assert "SK-secret" not in str(failure)
    with pytest.raises(CredentialsExpiredError) as caught:
        refresher.current()
    assert caught.value is failure


async def test_a_source_that_recovers_before_expiry_is_no_failure() -> None:
    clock = FakeClock(T0)
    source = ScriptedSource(clock, [90, "down", "down", 90])
    refresher = _refresher(clock, source)
    await refresher.start()
    await _run_until(refresher, generation=2)
    assert source.fetched_at == [T0, T0 + 60, T0 + 61, T0 + 63]
    assert refresher.failure is None
    assert refresher.current().ak == "AK00000004"


async def test_a_forced_refresh_is_immediate_and_shared() -> None:
    clock = FakeClock(T0)
    source = ScriptedSource(clock, [HOUR, HOUR, HOUR])
    refresher = _refresher(clock, source)
    rejected = await refresher.start()
    clock.advance(10)
    async with anyio.create_task_group() as tg:
        for _ in range(5):  # five 401s on the same credentials: one fetch
            tg.start_soon(refresher.force, rejected)
    assert source.fetched_at == [T0, T0 + 10]
    assert refresher.current() is not rejected


async def test_a_failed_forced_refresh_keeps_the_current_credentials() -> None:
    clock = FakeClock(T0)
    source = ScriptedSource(clock, [HOUR, "down"])
    refresher = _refresher(clock, source)
    held = await refresher.start()
    with pytest.raises(CredentialSourceError, match="down"):
        await refresher.force(held)
    assert refresher.current() is held
    with pytest.raises(CredentialSourceError, match="down"):  # in backoff: not asked again
        await refresher.force(held)
    assert source.fetched_at == [T0, T0]


async def test_the_first_fetch_failing_is_the_callers_error() -> None:
    clock = FakeClock(T0)
    refresher = _refresher(clock, ScriptedSource(clock, ["down"]))
    with pytest.raises(CredentialSourceError, match="down"):
        await refresher.start()
    with pytest.raises(CredentialSourceError, match="no credentials fetched yet"):
        refresher.current()


async def test_secrets_and_repr_show_no_secret() -> None:
    clock = FakeClock(T0)
    refresher = _refresher(clock, ScriptedSource(clock, [HOUR]))
    await refresher.start()
    assert set(refresher.secrets()) == {"AK00000001", "SK-secret-00000001", "ST-00000001"}
    assert "secret" not in repr(refresher)


async def test_rehearsal_through_changing_metadata_credentials() -> None:
    """Real clock, real loopback metadata service, credentials living 1.5 s: the refresher
    goes through several generations and never holds expired ones; when the service fails,
    the run's credentials end with them."""
    state = MetadataState(lifetime=1.5)
    async with serving(metadata_app(state)) as url:
        refresher = Refresher(MetadataSource(url))
        await refresher.start()
        seen = set()
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                tg.start_soon(refresher.run)
                while refresher.generation < 4:
                    seen.add(refresher.current().ak)  # never raises: refreshed in time
                    await anyio.sleep(0.05)
                state.failing = 503  # run() returns once the credentials held expire
    assert len(seen) >= 3
    assert set(seen) <= set(state.issued)
    assert "answered HTTP 503" in str(refresher.failure)
    assert f"ECS metadata ({url})" in str(refresher.failure)

"""The token bucket, the send-rate meter and the limiter, on a fake clock (the rate controller:
test_pace.py)."""

from __future__ import annotations

import math

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchsms.engine.bucket import RateLimiter, SendRateMeter, TokenBucket
from tests.clocks import FakeClock
from tests.properties import examples

EPS = 1e-6


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- TokenBucket ---------------------------------------------------------------------------


def test_bucket_starts_full_then_refills_at_rate() -> None:
    """A fresh bucket allows `burst` at once, then one token per 1/rate seconds."""
    clock = FakeClock(1000.0)
    bucket = TokenBucket(rate=2.0, burst=3.0, clock=clock)
    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_acquire() == pytest.approx(0.5)
    clock.advance(0.25)
    assert bucket.try_acquire() == pytest.approx(0.25)
    clock.advance(0.25)
    assert bucket.try_acquire() == 0.0


def test_bucket_wait_does_not_take_a_token() -> None:
    """Asking how long to wait leaves the bucket as it was."""
    clock = FakeClock(1000.0)
    bucket = TokenBucket(rate=1.0, burst=1.0, clock=clock)
    assert bucket.try_acquire() == 0.0
    assert bucket.try_acquire() == pytest.approx(1.0)
    assert bucket.try_acquire() == pytest.approx(1.0)
    clock.advance(1.0)
    assert bucket.try_acquire() == 0.0


def test_bucket_never_holds_more_than_burst() -> None:
    """A long idle period gives back at most `burst` tokens."""
    clock = FakeClock(1000.0)
    bucket = TokenBucket(rate=10.0, burst=2.0, clock=clock)
    clock.advance(3600)
    assert [bucket.try_acquire() == 0.0 for _ in range(3)] == [True, True, False]


def test_bucket_rate_zero_is_unlimited() -> None:
    """rate 0 never makes anyone wait."""
    bucket = TokenBucket(rate=0.0, burst=1.0, clock=FakeClock(1000.0))
    assert all(bucket.try_acquire() == 0.0 for _ in range(10_000))


def test_bucket_raising_the_rate_gives_no_extra_burst() -> None:
    """set_rate up after an idle spell still leaves at most `burst` tokens."""
    clock = FakeClock(1000.0)
    bucket = TokenBucket(rate=1.0, burst=2.0, clock=clock)
    clock.advance(100)
    bucket.set_rate(1000.0)
    assert [bucket.try_acquire() == 0.0 for _ in range(3)] == [True, True, False]


def test_bucket_set_rate_refills_at_old_rate_first() -> None:
    """Time before set_rate counts at the old rate, time after at the new one."""
    clock = FakeClock(1000.0)
    bucket = TokenBucket(rate=1.0, burst=1.0, clock=clock)
    assert bucket.try_acquire() == 0.0
    clock.advance(0.5)  # half a token at 1/s
    bucket.set_rate(0.25)
    assert bucket.try_acquire() == pytest.approx(2.0)  # the other half at 0.25/s


def test_bucket_leaving_unlimited_starts_full() -> None:
    """Switching on from rate 0 starts with `burst` tokens, like a fresh bucket."""
    clock = FakeClock(1000.0)
    bucket = TokenBucket(rate=0.0, burst=2.0, clock=clock)
    for _ in range(50):
        bucket.try_acquire()
    bucket.set_rate(1.0)
    assert [bucket.try_acquire() == 0.0 for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize(("rate", "burst"), [(-1.0, 1.0), (math.inf, 1.0), (1.0, 0.5), (1.0, -1)])
def test_bucket_rejects_bad_settings(rate: float, burst: float) -> None:
    """Negative or infinite rates and a burst below one token are refused."""
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst, clock=FakeClock(1000.0))


# An event is a pause, then either an acquisition attempt or a rate change.
_events = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=2.0, allow_nan=False),
        st.one_of(
            st.just(None),
            st.sampled_from([0.0, 0.5, 1.0, 3.0, 10.0, 50.0]),
        ),
    ),
    min_size=1,
    max_size=300,
)


@settings(max_examples=examples(300), deadline=None)
@given(
    initial=st.sampled_from([0.5, 1.0, 3.0, 10.0, 50.0]),
    burst=st.sampled_from([1.0, 1.5, 2.0, 5.0]),
    events=_events,
    greedy=st.booleans(),
)
def test_bucket_window_bound_holds_for_any_pattern(
    initial: float, burst: float, events: list[tuple[float, float | None]], greedy: bool
) -> None:
    """In every window of t seconds at most max_rate*t + burst acquisitions succeed."""
    clock = FakeClock(0.0)
    bucket = TokenBucket(rate=initial, burst=burst, clock=clock)
    rates = [initial]  # every rate put in force, in order
    # Each success: its time, and the index in `rates` of the rate in force when it happened.
    successes: list[tuple[float, int]] = []
    for pause, new_rate in events:
        clock.advance(pause)
        if new_rate is not None:
            bucket.set_rate(new_rate)
            rates.append(new_rate)
            continue
        wait = bucket.try_acquire()
        if wait == 0.0:
            successes.append((clock.now, len(rates) - 1))
        elif greedy:
            # Come back exactly when told: the densest legal pattern.
            assert wait > 0
            clock.advance(wait)
            if bucket.try_acquire() == 0.0:
                successes.append((clock.now, len(rates) - 1))

    for i, (start, first) in enumerate(successes):
        for j in range(i, len(successes)):
            end, last = successes[j]
            in_force = rates[first : last + 1]
            if 0.0 in in_force:
                continue  # unlimited somewhere in the window: no bound to check
            allowed = max(in_force) * (end - start) + burst
            assert j - i + 1 <= allowed + EPS, (start, end, j - i + 1, allowed)


@settings(max_examples=examples(100), deadline=None)
@given(rate=st.floats(min_value=0.1, max_value=500), burst=st.floats(min_value=1, max_value=20))
def test_bucket_greedy_caller_gets_exactly_the_rate(rate: float, burst: float) -> None:
    """A caller that always waits as told gets burst + rate*t tokens, not fewer."""
    clock = FakeClock(0.0)
    bucket = TokenBucket(rate=rate, burst=burst, clock=clock)
    taken = 0
    horizon = 200 / rate
    while clock.now <= horizon:
        wait = bucket.try_acquire()
        if wait == 0.0:
            taken += 1
        else:
            clock.advance(wait)
    expected = math.floor(burst + rate * horizon)
    assert expected - 1 <= taken <= expected + 1


# --- SendRateMeter -------------------------------------------------------------------------


def test_meter_measures_a_steady_rate() -> None:
    """Ten sends a second, for a few seconds, read as ten a second."""
    meter = SendRateMeter()
    now = 0.0
    for _ in range(50):
        meter.record(now)
        now += 0.1
    assert meter.rate(now) == pytest.approx(10.0, rel=0.05)


def test_meter_before_first_bucket_underestimates() -> None:
    """Sends within the first half second are spread over at least half a second."""
    meter = SendRateMeter()
    assert meter.rate(0.0) == 0.0
    for _ in range(16):
        meter.record(0.01)
    assert meter.rate(0.05) == pytest.approx(32.0)


# --- RateLimiter ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_limiter_paces_concurrent_callers() -> None:
    """Many tasks acquiring at once start at burst + rate*t, in arrival order."""
    clock = FakeClock(0.0)
    limiter = RateLimiter(rate=4.0, burst=2.0, clock=clock, sleep=clock.sleep)
    starts: list[tuple[int, float]] = []

    async def worker(n: int) -> None:
        await limiter.acquire()
        starts.append((n, clock.now))

    async with anyio.create_task_group() as tg:
        for n in range(10):
            tg.start_soon(worker, n)

    times = [t for _, t in starts]
    assert times == pytest.approx([0, 0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0])
    assert [n for n, _ in starts] == list(range(10))


@pytest.mark.anyio
async def test_limiter_unlimited_never_sleeps() -> None:
    """--rate 0: no caller ever waits."""
    clock = FakeClock(0.0)
    limiter = RateLimiter(rate=0.0, burst=1.0, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        await limiter.acquire()
    assert clock.sleeps == []
    assert limiter.current_rate == 0.0


@pytest.mark.anyio
async def test_limiter_keeps_its_rate_until_set_and_then_paces_at_the_new_one() -> None:
    """The limiter never moves its own rate (the controller does, through `set_rate`)."""
    clock = FakeClock(0.0)
    limiter = RateLimiter(rate=10.0, burst=1.0, clock=clock, sleep=clock.sleep)
    await limiter.acquire()
    assert limiter.current_rate == 10.0
    limiter.set_rate(2.0)
    await limiter.acquire()
    assert clock.sleeps == [pytest.approx(0.5)]
    assert limiter.current_rate == 2.0

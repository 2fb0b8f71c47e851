"""Each fault knob of the simulator, measured from a real client over loopback."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest

from batchsms.simulator import FaultConfig, FaultInjector, Fleet, SimulatorHandle, running
from batchsms.simulator.faults import parse_latency
from tests.clocks import FakeClock

pytestmark = pytest.mark.anyio

JSON = {"Content-Type": "application/json"}
BODY = orjson.dumps({"speed_limit": 100})


async def put_status(session: aiohttp.ClientSession, sim: SimulatorHandle, task_id: str) -> int:
    async with session.put(f"{sim.url}/v3/tasks/{task_id}", data=BODY, headers=JSON) as resp:
        body = await resp.json()
        if resp.status != 200:
            assert set(body) >= {"error_code", "error_msg"}
        return resp.status


async def test_throttle_answers_about_half_at_twice_the_rate() -> None:
    """3 s at 40 requests/s against --throttle-rate 20: roughly half get 429 APIG.0308."""
    rate, seconds = 40, 3.0
    faults = FaultConfig(throttle_rate=20, retry_after=1.5)
    async with running(faults=faults) as sim, aiohttp.ClientSession() as s:
        statuses: list[int] = []
        codes: set[str] = set()
        retry_after: set[str] = set()

        async def one(i: int, at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            async with s.put(f"{sim.url}/v3/tasks/t{i}", data=BODY, headers=JSON) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    codes.add((await resp.json())["error_code"])
                    retry_after.add(resp.headers["Retry-After"])

        start = time.monotonic()
        n = int(rate * seconds)
        await asyncio.gather(*(one(i, start + i / rate) for i in range(n)))
    throttled = statuses.count(429) / n
    assert 0.35 <= throttled <= 0.65, throttled
    assert set(statuses) == {200, 429}
    assert codes == {"APIG.0308"}
    assert retry_after == {"2"}  # seconds, rounded up
    assert sim.stats.applied == statuses.count(200)


async def test_below_the_throttle_rate_nothing_is_throttled() -> None:
    """A client well under the limit never sees a 429."""
    async with running(faults=FaultConfig(throttle_rate=50)) as sim, aiohttp.ClientSession() as s:
        statuses = [await put_status(s, sim, f"t{i}") for i in range(30)]
    assert statuses == [200] * 30


def test_throttle_window_slides() -> None:
    """R admitted per trailing second; 429s are not admitted, so they do not extend the window."""
    clock = FakeClock()
    injector = FaultInjector(FaultConfig(throttle_rate=2), clock=clock)
    assert [injector.admit(), injector.admit(), injector.admit()] == [True, True, False]
    clock.now = 0.5
    assert not injector.admit()
    clock.now = 1.0  # the first two leave the window
    assert [injector.admit(), injector.admit(), injector.admit()] == [True, True, False]


async def run_fail_rate(seed: int, n: int = 300) -> tuple[list[int], SimulatorHandle]:
    faults = FaultConfig(fail_rate=0.3, seed=seed)
    async with running(faults=faults, fleet=Fleet.open()) as sim, aiohttp.ClientSession() as s:
        statuses = [await put_status(s, sim, f"t{i % 7}") for i in range(n)]
    return statuses, sim


async def test_fail_rate_answers_that_share_with_5xx_repeatably() -> None:
    """--fail-rate 0.3 over 300 requests: about 30% 500/502/503/504; same seed, same answers."""
    statuses, sim = await run_fail_rate(seed=7)
    failed = [s for s in statuses if s >= 500]
    assert 0.2 <= len(failed) / len(statuses) <= 0.4
    assert set(failed) == {500, 502, 503, 504}
    assert set(statuses) - {500, 502, 503, 504} == {200}
    # Faulted requests count as received, never as applied.
    assert sum(sim.counts(f"t{i}").received for i in range(7)) == 300
    assert sum(sim.counts(f"t{i}").applied for i in range(7)) == statuses.count(200)
    again, _ = await run_fail_rate(seed=7)
    assert again == statuses
    other, _ = await run_fail_rate(seed=8)
    assert other != statuses


async def test_reset_drops_the_connection_without_a_response() -> None:
    """--reset-rate 1: the client gets a connection error, never an HTTP status; nothing applied."""
    async with running(faults=FaultConfig(reset_rate=1.0)) as sim, \
            aiohttp.ClientSession() as s:
        # aiohttp silently re-sends an idempotent request (PUT included) once after a reset or
        # disconnect, on fresh connections too; its own TestClient switches that off like this.
        # The simulator counts what arrives, so with the re-send on it would count 6 here.
        s._retry_connection = False
        for _ in range(3):
            with pytest.raises(aiohttp.ClientConnectionError):
                await put_status(s, sim, "t1")
        assert sim.stats.resets == 3
        assert sim.counts("t1").received == 3
        assert sim.counts("t1").applied == 0
        assert [r.status for r in sim.requests] == [None, None, None]
        assert not sim.stats.by_status


async def test_partial_reset_rate_mixes_resets_and_answers() -> None:
    """--reset-rate 0.5: about half the requests are dropped, the rest answered normally."""
    outcomes: list[str] = []
    async with running(faults=FaultConfig(reset_rate=0.5, seed=1)) as sim, \
            aiohttp.ClientSession() as s:
        s._retry_connection = False  # one request per call (see above)
        for i in range(60):
            try:
                outcomes.append(str(await put_status(s, sim, f"t{i}")))
            except aiohttp.ClientConnectionError:
                outcomes.append("reset")
        assert sim.stats.resets == outcomes.count("reset")
    assert 0.3 <= outcomes.count("reset") / 60 <= 0.7
    assert set(outcomes) == {"200", "reset"}


async def test_latency_delays_every_answer() -> None:
    """--latency-ms 150-200: every request takes at least 150 ms; requests wait concurrently."""
    faults = FaultConfig(latency_ms=(150.0, 200.0))
    async with running(faults=faults) as sim, aiohttp.ClientSession() as s:

        async def timed(i: int) -> float:
            start = time.monotonic()
            assert await put_status(s, sim, f"t{i}") == 200
            return time.monotonic() - start

        start = time.monotonic()
        elapsed = await asyncio.gather(*(timed(i) for i in range(8)))
        total = time.monotonic() - start
    assert min(elapsed) >= 0.15
    assert total < 1.0


async def test_hang_outlasts_a_client_timeout() -> None:
    """--hang-rate 1: no answer within the client's timeout; the attempt still counts."""
    faults = FaultConfig(hang_rate=1.0, hang_ms=5_000)
    timeout = aiohttp.ClientTimeout(total=0.3)
    async with running(faults=faults) as sim, aiohttp.ClientSession(timeout=timeout) as s:
        with pytest.raises(asyncio.TimeoutError):
            await put_status(s, sim, "t1")
        assert sim.counts("t1").received == 1
        assert sim.counts("t1").applied == 0


async def test_lose_applies_the_update_then_drops_the_answer() -> None:
    """--lose-rate 1: the write lands, the client sees a connection error instead of a 200; a
    read is answered as usual (only applied updates lose their answer)."""
    async with running(faults=FaultConfig(lose_rate=1.0)) as sim, aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientConnectionError):
            await put_status(s, sim, "t1")
        # aiohttp itself tries an idempotent PUT once more on a dropped connection
        received = sim.counts("t1").received
        assert received >= 1
        assert sim.counts("t1").applied == sim.stats.resets == received
        async with s.get(f"{sim.url}/v3/tasks/t1") as resp:
            assert resp.status == 200
            assert (await resp.json())["speed_limit"] == 100


async def test_late_applies_the_update_then_holds_the_answer() -> None:
    """--late-rate 1: the write lands at once, the 200 comes after the client's timeout."""
    faults = FaultConfig(late_rate=1.0, late_ms=5_000)
    timeout = aiohttp.ClientTimeout(total=0.3)
    async with running(faults=faults) as sim, aiohttp.ClientSession(timeout=timeout) as s:
        with pytest.raises(asyncio.TimeoutError):
            await put_status(s, sim, "t1")
        assert (sim.counts("t1").received, sim.counts("t1").applied) == (1, 1)


async def test_a_refused_update_keeps_its_answer_under_lose() -> None:
    """Only an applied update loses its answer: a 400 for a bad body still arrives."""
    async with running(faults=FaultConfig(lose_rate=1.0)) as sim, aiohttp.ClientSession() as s:
        async with s.put(f"{sim.url}/v3/tasks/t1", data=b'{"speed_limit": "x"}',
                         headers=JSON) as resp:
            assert resp.status == 400
        assert sim.counts("t1").applied == 0


async def test_faults_can_be_switched_while_serving() -> None:
    """handle.faults.reconfigure(): fail everything, then recover."""
    async with running(faults=FaultConfig(fail_rate=1.0)) as sim, aiohttp.ClientSession() as s:
        assert await put_status(s, sim, "t1") >= 500
        sim.faults.reconfigure(FaultConfig())
        assert await put_status(s, sim, "t1") == 200
        assert (sim.counts("t1").received, sim.counts("t1").applied) == (2, 1)


def test_same_seed_same_decisions_whatever_the_knobs() -> None:
    """Every request draws the same numbers, so one knob's faults do not shift another's."""
    plain = FaultInjector(FaultConfig(seed=5, fail_rate=0.5))
    busy = FaultInjector(FaultConfig(seed=5, fail_rate=0.5, reset_rate=0.1, hang_rate=0.1,
                                     latency_ms=(1.0, 9.0)))
    a = [plain.decide().fail_status for _ in range(200)]
    b = [busy.decide().fail_status for _ in range(200)]
    assert a == b
    after = FaultInjector(FaultConfig(seed=5, fail_rate=0.5, lose_rate=0.3, late_rate=0.3,
                                      throttle_random=0.2))
    drawn = [after.decide() for _ in range(200)]
    assert [d.fail_status for d in drawn] == a  # the knobs after an update shift nothing
    assert 20 < sum(d.lose for d in drawn) < 100
    assert 20 < sum(d.late_s > 0 for d in drawn) < 100


@pytest.mark.parametrize(("text", "expected"), [("5", (5.0, 5.0)), ("10-20", (10.0, 20.0)),
                                                (" 0-0 ", (0.0, 0.0))])
def test_parse_latency(text: str, expected: tuple[float, float]) -> None:
    """--latency-ms takes A or A-B."""
    assert parse_latency(text) == expected


@pytest.mark.parametrize("text", ["", "a", "20-10", "-5", "1-2-3", "nan"])
def test_parse_latency_rejects_nonsense(text: str) -> None:
    """Malformed or inverted ranges are refused."""
    with pytest.raises(ValueError, match="latency"):
        parse_latency(text)


@pytest.mark.parametrize("kwargs", [{"fail_rate": 1.5}, {"reset_rate": -0.1},
                                    {"throttle_rate": 0}, {"retry_after": -1},
                                    {"latency_ms": (5.0, 1.0)}, {"hang_ms": -1},
                                    {"lose_rate": 2.0}, {"late_rate": -1}, {"late_ms": -1}])
def test_fault_config_checks_its_knobs(kwargs: dict[str, object]) -> None:
    """Out-of-range knobs fail at construction."""
    with pytest.raises(ValueError, match="must be"):
        FaultConfig(**kwargs)  # type: ignore[arg-type]

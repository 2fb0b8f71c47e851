"""The simulator's kinds of trouble: quota, counting window, random 429s, outages, 403s, ignored
fields. Pure parts on a fake clock; what crosses HTTP against the real server on loopback."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest

from batchsms.simulator import FaultConfig, FaultInjector, Fleet, SimulatorHandle, running
from batchsms.simulator.faults import Outage, OutageKind, parse_outage
from tests.clocks import FakeClock

pytestmark = pytest.mark.anyio

JSON = {"Content-Type": "application/json"}
BODY = orjson.dumps({"speed_limit": 100})


async def put(session: aiohttp.ClientSession, sim: SimulatorHandle, task_id: str = "t",
              body: bytes = BODY) -> tuple[int, dict[str, object]]:
    async with session.put(f"{sim.url}/v3/tasks/{task_id}", data=body, headers=JSON) as resp:
        return resp.status, await resp.json()


# -- token bucket -------------------------------------------------------------------------------


def test_quota_bucket_spends_its_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock(100.0)
    injector = FaultInjector(FaultConfig(quota_rate=10, quota_burst=3), clock=clock)
    assert [injector.admit() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.1  # one token back
    assert [injector.admit(), injector.admit()] == [True, False]
    clock.now += 10.0  # refills up to the burst, no more
    assert [injector.admit() for _ in range(4)] == [True, True, True, False]


def test_quota_rejections_cost_nothing() -> None:
    """A client hammering the bucket still gets exactly rate x time through."""
    clock = FakeClock(100.0)
    injector = FaultInjector(FaultConfig(quota_rate=50, quota_burst=1), clock=clock)
    admitted = 0
    for _ in range(10_000):  # 10 s at 1 000 arrivals/s
        clock.now += 0.001
        admitted += injector.admit()
    assert 499 <= admitted <= 501


def test_quota_burst_defaults_to_one_second() -> None:
    assert FaultConfig(quota_rate=50).burst == 50
    assert FaultConfig(quota_rate=0.5).burst == 1


# -- sliding window counting every arrival ----------------------------------------------------


def test_window_counting_every_arrival_starves_a_client_above_the_limit() -> None:
    clock = FakeClock(100.0)
    counting = FaultInjector(FaultConfig(throttle_rate=10, throttle_count_all=True), clock=clock)
    lenient = FaultInjector(FaultConfig(throttle_rate=10), clock=clock)
    got = {"counting": 0, "lenient": 0}
    for _ in range(300):  # 3 s at 100/s
        clock.now += 0.01
        got["counting"] += counting.admit()
        got["lenient"] += lenient.admit()
    assert got["counting"] == 10  # the first second's 10, then the 429s keep the window full
    assert 29 <= got["lenient"] <= 31


def test_window_counting_every_arrival_admits_a_client_below_the_limit() -> None:
    clock = FakeClock(100.0)
    injector = FaultInjector(FaultConfig(throttle_rate=10, throttle_count_all=True), clock=clock)
    results = []
    for _ in range(50):  # 8/s
        clock.now += 0.125
        results.append(injector.admit())
    assert all(results)


# -- random 429s, outages, 403s: the decision --------------------------------------------------


def test_random_throttle_share_and_seeded() -> None:
    def draws(seed: int) -> list[bool]:
        injector = FaultInjector(FaultConfig(throttle_random=0.1, seed=seed))
        return [injector.decide().throttled for _ in range(5000)]

    first = draws(7)
    assert 0.08 <= sum(first) / len(first) <= 0.12
    assert draws(7) == first
    assert draws(8) != first


def test_new_faults_do_not_shift_the_old_sequence() -> None:
    """Adding random 429s, outages or 403s leaves the 5xx/reset/hang draws as they were."""
    old = FaultConfig(seed=3, fail_rate=0.3, reset_rate=0.1)
    new = FaultConfig(seed=3, fail_rate=0.3, reset_rate=0.1, throttle_random=0.5,
                      forbid_rate=0.5, outages=(Outage(0, 1, share=0.5),))
    a, b = FaultInjector(old), FaultInjector(new)
    for _ in range(200):
        da, db = a.decide(), b.decide()
        assert (da.fail_status, da.reset) == (db.fail_status, db.reset)


def test_outage_counts_from_the_first_request() -> None:
    clock = FakeClock(100.0)
    injector = FaultInjector(FaultConfig(outages=(Outage(10, 5),)), clock=clock)
    clock.now = 1000.0  # start-up time does not count
    assert injector.decide().outage is None
    seen = []
    for step in range(20):
        clock.now = 1000.0 + step + 0.5
        seen.append(injector.decide().outage is not None)
    assert seen == [False] * 10 + [True] * 5 + [False] * 5


def test_partial_outage_hits_its_share() -> None:
    clock = FakeClock(100.0)
    injector = FaultInjector(FaultConfig(seed=1, outages=(parse_outage("0+100:502@0.3"),)),
                             clock=clock)
    hits = [injector.decide().outage for _ in range(4000)]
    share = sum(h is not None for h in hits) / len(hits)
    assert 0.27 <= share <= 0.33
    assert {h.status for h in hits if h is not None} == {502}


def test_forbid_from_the_nth_request_on() -> None:
    injector = FaultInjector(FaultConfig(forbid_from=3))
    assert [injector.decide().forbidden for _ in range(5)] == [False, False, True, True, True]


@pytest.mark.parametrize(("text", "expected"), [
    ("10+20", Outage(10, 20)),
    ("10+20:503@0.3", Outage(10, 20, share=0.3)),
    ("0.5+2:500", Outage(0.5, 2, status=500)),
    ("30+10:refuse", Outage(30, 10, OutageKind.REFUSE)),
    ("30+10:CLOSE@0.5", Outage(30, 10, OutageKind.CLOSE, share=0.5)),
])
def test_parse_outage(text: str, expected: Outage) -> None:
    assert parse_outage(text) == expected


@pytest.mark.parametrize("text", ["10", "10+", "+5", "a+5", "10+0", "-1+5", "10+5:200",
                                  "10+5:boom", "10+5@1.5", "10+5:refuse@0.5"])
def test_parse_outage_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="outage"):
        parse_outage(text)


# -- over loopback ---------------------------------------------------------------------------------


async def test_random_429s_over_http_are_apig_0308_and_apply_nothing() -> None:
    faults = FaultConfig(throttle_random=0.5, seed=2, retry_after=1)
    async with running(faults=faults) as sim, aiohttp.ClientSession() as s:
        results = [await put(s, sim, f"t{i}") for i in range(60)]
    throttled = [body for status, body in results if status == 429]
    assert 15 <= len(throttled) <= 45
    assert {body["error_code"] for body in throttled} == {"APIG.0308"}
    assert sim.stats.applied == 60 - len(throttled)


async def test_quota_over_http() -> None:
    async with running(faults=FaultConfig(quota_rate=0.01, quota_burst=2)) as sim, \
            aiohttp.ClientSession() as s:
        statuses = [(await put(s, sim))[0] for _ in range(4)]
    assert statuses == [200, 200, 429, 429]


async def test_status_outage_answers_then_recovers() -> None:
    faults = FaultConfig(outages=(Outage(0, 0.5),))
    async with running(faults=faults) as sim, aiohttp.ClientSession() as s:
        status, body = await put(s, sim)
        await asyncio.sleep(0.6)
        after, _ = await put(s, sim)
    assert (status, body["error_code"], after) == (503, "SMS.9998", 200)
    assert sim.stats.applied == 1


async def test_close_outage_closes_without_an_answer() -> None:
    faults = FaultConfig(outages=(Outage(0, 0.5, OutageKind.CLOSE),))
    async with running(faults=faults) as sim, aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await put(s, sim)
        await asyncio.sleep(0.6)
        after, _ = await put(s, sim)
    assert after == 200
    assert sim.stats.applied == 1


async def test_refuse_outage_stops_listening_then_listens_again_on_the_same_port() -> None:
    faults = FaultConfig(outages=(Outage(0, 2.5, OutageKind.REFUSE),))
    async with running(faults=faults) as sim:
        async with aiohttp.ClientSession() as s:
            first = time.monotonic()
            with pytest.raises(aiohttp.ClientConnectionError):  # dropped: kept-alive or not
                await put(s, sim)
        refused = False
        for _ in range(100):
            try:
                _reader, writer = await asyncio.open_connection(sim.host, sim.port)
            except ConnectionRefusedError:
                refused = True
                break
            writer.close()
            await asyncio.sleep(0.02)
        assert refused
        await asyncio.sleep(max(0.0, first + 2.7 - time.monotonic()))
        async with aiohttp.ClientSession() as s:
            after, _ = await put(s, sim)
    assert after == 200
    assert sim.stats.applied == 1


async def test_refuse_outage_drops_kept_alive_connections() -> None:
    faults = FaultConfig(outages=(Outage(0.3, 30, OutageKind.REFUSE),))
    async with running(faults=faults) as sim, aiohttp.ClientSession() as s:
        assert (await put(s, sim))[0] == 200  # opens a kept-alive connection, starts the clock
        await asyncio.sleep(0.5)
        with pytest.raises(aiohttp.ClientConnectionError):
            await put(s, sim)


async def test_forbidden_is_table_14s_body() -> None:
    async with running(faults=FaultConfig(forbid_from=2)) as sim, aiohttp.ClientSession() as s:
        first, _ = await put(s, sim)
        status, body = await put(s, sim)
    assert (first, status) == (200, 403)
    assert body["error_code"] == "SMS.9004"
    assert set(body) >= {"error_msg", "encoded_authorization_message", "error_param", "details"}
    assert isinstance(body["error_param"], list)
    assert body["error_param"]
    assert body["details"] == [{"error_code": "SMS.9004", "error_msg": body["error_param"][0]}]
    assert sim.stats.applied == 1


async def test_ignored_field_is_answered_200_but_not_applied() -> None:
    fleet = Fleet.generate(1, seed=4)
    task_id = next(iter(fleet))
    before = fleet.show(task_id)
    assert before is not None
    faults = FaultConfig(ignore_fields=("speed_limit", "target_server.name"))
    body = orjson.dumps({"speed_limit": (before["speed_limit"] + 7) % 1000, "name": "renamed",
                         "target_server": {"name": "tgt-renamed"}})
    async with running(fleet=fleet, faults=faults) as sim, aiohttp.ClientSession() as s:
        status, _ = await put(s, sim, task_id, body)
    after = fleet.show(task_id)
    assert after is not None
    assert status == 200
    assert after["name"] == "renamed"
    assert after["speed_limit"] == before["speed_limit"]
    assert after["target_server"]["name"] == before["target_server"]["name"]


# -- refusals the service makes ------------------------------------------------------------------


async def test_clone_server_updates_only_in_the_states_table_3_allows() -> None:
    fleet = Fleet.generate(200, seed=6)
    by_state: dict[str, str] = {}
    for task_id in fleet:
        view = fleet.show(task_id)
        assert view is not None
        by_state.setdefault(view["source_server"]["state"], task_id)
    allowed = {"syncing", "stopping", "stopped", "finished", "error"} & by_state.keys()
    refused = {"waiting", "replicate", "deleting", "clearing", "cleared"} & by_state.keys()
    assert len(allowed) >= 4
    assert len(refused) >= 4
    clone = orjson.dumps({"clone_server": {"name": "clone-1"}})
    async with running(fleet=fleet) as sim, aiohttp.ClientSession() as s:
        answers = {state: await put(s, sim, by_state[state], clone)
                   for state in sorted(allowed | refused)}
        other = orjson.dumps({"clone_server": {}, "speed_limit": 10})
        others = [(await put(s, sim, by_state[state], other))[0] for state in sorted(refused)]
    for state in allowed:
        assert answers[state][0] == 200, state
        shown = fleet.show(by_state[state])
        assert shown is not None
        assert shown["clone_server"]["name"] == "clone-1"
    for state in refused:
        status, body = answers[state]
        assert (status, body["error_code"]) == (400, "SMS.1810"), state
        assert state in str(body["error_msg"])
        shown = fleet.show(by_state[state])
        assert shown is not None
        assert shown["clone_server"] == {}  # only the empty update of the last PUT applied
    assert others == [200] * len(refused)  # no clone_server change: nothing to refuse


@pytest.mark.parametrize("read_first", [False, True], ids=["unread", "read"])
async def test_the_clone_server_rule_holds_whether_or_not_the_task_was_read(
        read_first: bool) -> None:
    """Issue 18 item 11: on an open fleet (`run --simulate`, any id exists) a task is
    materialised by its first request. The refusal looked only at tasks already materialised,
    so an unread `cleared` task took the clone_server update (200) that a read one refused
    (400 SMS.1810). The rule now depends on the task's state alone, in both orders; and the
    state is the same whichever request materialised the task."""
    scratch = Fleet.open()
    by_state: dict[str, str] = {}
    for i in range(300):
        view = scratch.show(f"task-{i}")
        assert view is not None
        by_state.setdefault(view["source_server"]["state"], f"task-{i}")
    clone = orjson.dumps({"clone_server": {"name": "clone-1"}})
    fleet = Fleet.open()
    async with running(fleet=fleet) as sim, aiohttp.ClientSession() as s:
        answers = {}
        for state in ("cleared", "waiting", "syncing", "finished"):
            task_id = by_state[state]
            if read_first:
                async with s.get(f"{sim.url}/v3/tasks/{task_id}") as resp:
                    assert resp.status == 200
            answers[state] = await put(s, sim, task_id, clone)
    for state in ("cleared", "waiting"):
        status, body = answers[state]
        assert status == 400, (state, read_first, body)
        assert body["error_code"] == "SMS.1810"
    for state in ("syncing", "finished"):
        assert answers[state][0] == 200, (state, read_first)
    for state, task_id in by_state.items():
        if state in answers:  # materialised by a read or by the write: the same task
            shown, wanted = fleet.show(task_id), scratch.show(task_id)
            assert shown is not None
            assert wanted is not None
            if answers[state][0] == 200:
                wanted["clone_server"] = {"name": "clone-1"}
            assert shown == wanted

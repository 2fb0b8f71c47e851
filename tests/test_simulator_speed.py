"""The simulator's UpdateSpeed and ShowsSpeedLimits over loopback (docs/reference.md §8, §11):
shapes, refusals, auth, the PUT path's faults, rules kept per task and in fleet files, and the
official SDK's update_speed / shows_speed_limits against it."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdksms.v3 import (
    ShowsSpeedLimitsRequest,
    SpeedLimit,
    SpeedLimitlJson,
    UpdateSpeedRequest,
)

from batchsms.lines.bodies import canonical_json
from batchsms.lines.speed_rules import rules_of_answer, same_rules
from batchsms.simulator import ExpectedCredentials, FaultConfig, Fleet, SimulatorHandle, running
from batchsms.simulator.cli import main as simulator_main
from batchsms.transport.client import SmsClient, speed_limit_path
from batchsms.transport.credentials import AkSkCredentials
from batchsms.transport.signing import authenticator
from tests.jsonl import write_jsonl
from tests.processes import simulator_process
from tests.sdk import AK, SK, sdk_client

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("loopback_only")]

JSON = {"Content-Type": "application/json"}
TASK = "ef3b9722-07a0-40ae-89b0-889ee96d0001"
RULES = [{"start": "00:00", "end": "08:00", "speed": 20},
         {"start": "08:00", "end": "15:00", "speed": 50, "over_speed_threshold": 50.5},
         {"start": "15:00", "end": "23:59", "speed": 25}]


def rules_url(sim: SimulatorHandle, task_id: str = TASK) -> str:
    return f"{sim.url}/v3/tasks/{task_id}/speed-limit"


async def post(s: aiohttp.ClientSession, sim: SimulatorHandle, body: object,
               task_id: str = TASK, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with s.post(rules_url(sim, task_id), data=data,
                      headers=JSON if headers is None else headers) as resp:
        assert len(resp.headers["X-Request-Id"]) == 32
        return resp.status, await resp.json(content_type=None)


async def show(s: aiohttp.ClientSession, sim: SimulatorHandle,
               task_id: str = TASK, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with s.get(rules_url(sim, task_id), headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_post_replaces_the_rules_and_get_shows_them() -> None:
    """A task starts with no rules; a POST replaces them whole; an empty list clears them."""
    async with running() as sim, aiohttp.ClientSession() as s:
        assert await show(s, sim) == (200, {"speed_limit": []})
        assert await post(s, sim, {"speed_limit": RULES}) == (200, {})
        assert await show(s, sim) == (200, {"speed_limit": RULES})
        assert await post(s, sim, {"speed_limit": RULES[:1]}) == (200, {})
        assert await show(s, sim) == (200, {"speed_limit": RULES[:1]})
        assert await post(s, sim, {"speed_limit": []}) == (200, {})
        assert await show(s, sim) == (200, {"speed_limit": []})
        assert await show(s, sim, "another-task") == (200, {"speed_limit": []})
        assert (sim.counts(TASK).received, sim.counts(TASK).applied) == (3, 3)


async def test_rules_are_not_task_fields() -> None:
    """ShowTask's speed_limit stays the flat integer; UpdateTask leaves the rules alone."""
    async with running() as sim, aiohttp.ClientSession() as s:
        await post(s, sim, {"speed_limit": RULES})
        async with s.put(f"{sim.url}/v3/tasks/{TASK}", data=b'{"speed_limit": 7}',
                         headers=JSON) as resp:
            assert resp.status == 200
        async with s.get(f"{sim.url}/v3/tasks/{TASK}") as resp:
            task = await resp.json()
        assert task["speed_limit"] == 7
        assert "speed_limit_rules" not in task
        assert await show(s, sim) == (200, {"speed_limit": RULES})


async def test_a_body_the_service_refuses_is_400_with_every_path() -> None:
    """The validator's problems as an SMS error: SMS.0205, error_param and details by path;
    the rules stay as they were."""
    bad = {"speed_limit": [{"start": "22:00", "end": "06:00", "speed": 1001},
                           {"start": "8:00", "end": "09:00", "speed": 5, "x": 1}]}
    async with running() as sim, aiohttp.ClientSession() as s:
        await post(s, sim, {"speed_limit": RULES})
        status, error = await post(s, sim, bad)
        assert status == 400
        assert error["error_code"] == "SMS.0205"
        assert error["error_msg"].startswith("invalid request body: body.speed_limit[0].speed")
        assert error["error_param"] == [
            "body.speed_limit[0].speed", "body.speed_limit[1].x", "body.speed_limit[1].start",
            "body.speed_limit[0].end"]
        assert {d["error_code"] for d in error["details"]} == {"SMS.0205"}
        assert await show(s, sim) == (200, {"speed_limit": RULES})
        assert (sim.counts(TASK).received, sim.counts(TASK).applied) == (2, 1)


@pytest.mark.parametrize(("data", "headers", "status", "code"), [
    (b"{not json", JSON, 400, "SMS.0201"),
    (b'{"speed_limits": []}', JSON, 400, "SMS.0205"),
    (b"[]", JSON, 400, "SMS.0205"),
    (b'{"speed_limit": []}', {"Content-Type": "text/plain"}, 415, "SMS.0202"),
])
async def test_what_is_not_an_update_speed_body(data: bytes, headers: dict[str, str],
                                                status: int, code: str) -> None:
    """Not JSON, a typo at the top, not an object, not JSON's content type: the PUT's codes."""
    async with running() as sim, aiohttp.ClientSession() as s:
        answer = await post(s, sim, data, headers=headers)
        assert (answer[0], answer[1]["error_code"]) == (status, code)


async def test_an_unknown_task_is_404_and_a_long_id_400() -> None:
    """A fixed fleet: ids outside it are 404 SMS.1801 for GET and POST; 37 characters: 400."""
    fleet = Fleet.generate(2, seed=1)
    known = next(iter(fleet))
    async with running(fleet=fleet) as sim, aiohttp.ClientSession() as s:
        assert (await post(s, sim, {"speed_limit": RULES}, known))[0] == 200
        for answer in (await post(s, sim, {"speed_limit": []}, "nope"), await show(s, sim, "nope")):
            assert (answer[0], answer[1]["error_code"]) == (404, "SMS.1801")
        answer = await show(s, sim, "x" * 37)
        assert (answer[0], answer[1]["error_code"]) == (400, "SMS.0204")
        assert "nope" not in fleet


async def test_other_methods_are_405() -> None:
    """PUT or DELETE on the speed-limit path: 405 APIG.0101 with Allow, as for any route."""
    async with running() as sim, aiohttp.ClientSession() as s:
        for method in ("PUT", "DELETE"):
            async with s.request(method, rules_url(sim), data=b"{}", headers=JSON) as resp:
                assert resp.status == 405
                assert (await resp.json())["error_code"] == "APIG.0101"
                assert set(resp.headers["Allow"].split(",")) == {"GET", "POST"}


async def test_credentials_are_checked_as_for_put() -> None:
    """With a token expected: none is 401 APIG.0301 for GET and POST, the right one passes."""
    creds = ExpectedCredentials(token="tok-1")
    async with running(credentials=creds) as sim, aiohttp.ClientSession() as s:
        for answer in (await post(s, sim, {"speed_limit": []}), await show(s, sim)):
            assert (answer[0], answer[1]["error_code"]) == (401, "APIG.0301")
        assert await post(s, sim, {"speed_limit": RULES},
                          headers={**JSON, "X-Auth-Token": "tok-1"}) == (200, {})
        assert await show(s, sim, headers={"X-Auth-Token": "tok-1"}) == (200,
                                                                         {"speed_limit": RULES})


@pytest.mark.parametrize(("faults", "status"), [
    (FaultConfig(fail_rate=1.0), {500, 502, 503, 504}),
    (FaultConfig(throttle_random=1.0), {429}),
    (FaultConfig(forbid_rate=1.0), {403}),
])
async def test_gateway_faults_apply_to_update_speed(faults: FaultConfig, status: set[int]) -> None:
    """The gateway's faults answer UpdateSpeed as they answer UpdateTask: nothing applied."""
    async with running(faults=faults) as sim, aiohttp.ClientSession() as s:
        answer = await post(s, sim, {"speed_limit": RULES})
        assert answer[0] in status
        assert (sim.counts(TASK).received, sim.counts(TASK).applied) == (1, 0)
        sim.faults.reconfigure(FaultConfig())
        assert await show(s, sim) == (200, {"speed_limit": []})


async def test_lose_applies_the_rules_then_drops_the_answer() -> None:
    """--lose-rate 1: the rules land, the client sees a connection error; a read still
    answers."""
    async with running(faults=FaultConfig(lose_rate=1.0)) as sim, aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientConnectionError):
            await post(s, sim, {"speed_limit": RULES})
        assert sim.counts(TASK).applied == sim.counts(TASK).received == 1  # POST: no re-send
        assert await show(s, sim) == (200, {"speed_limit": RULES})


async def test_late_and_hang_hold_the_answer() -> None:
    """--late-rate: applied, answered after the timeout; --hang-rate: not applied, no answer."""
    timeout = aiohttp.ClientTimeout(total=0.3)
    late = FaultConfig(late_rate=1.0, late_ms=5_000)
    async with running(faults=late) as sim, aiohttp.ClientSession(timeout=timeout) as s:
        with pytest.raises(asyncio.TimeoutError):
            await post(s, sim, {"speed_limit": RULES})
        assert sim.counts(TASK).applied == 1
    hang = FaultConfig(hang_rate=1.0, hang_ms=5_000)
    async with running(faults=hang) as sim, aiohttp.ClientSession(timeout=timeout) as s:
        with pytest.raises(asyncio.TimeoutError):
            await post(s, sim, {"speed_limit": RULES})
        assert (sim.counts(TASK).received, sim.counts(TASK).applied) == (1, 0)


# -- fleet files --------------------------------------------------------------------------------

def test_a_fleet_file_carries_rules_and_is_written_back(tmp_path: Path) -> None:
    """`speed_limit_rules` in a --fleet line: the task's rules; write_jsonl keeps them."""
    path = write_jsonl(tmp_path / "fleet.jsonl", [
        {"id": "t1", "speed_limit": 100, "speed_limit_rules": RULES},
        {"id": "t2", "speed_limit_rules": []},
        {"id": "t3"},
    ])
    fleet = Fleet.from_jsonl(path)
    assert [fleet.rules(t) for t in ("t1", "t2", "t3", "t4")] == [RULES, [], [], None]
    assert fleet.set_rules("t3", RULES[:1])
    assert not fleet.set_rules("t4", [])
    out = tmp_path / "after.jsonl"
    fleet.write_jsonl(out)
    again = Fleet.from_jsonl(out)
    assert list(again) == ["t1", "t2", "t3"]
    assert [again.rules(t) for t in again] == [RULES, [], RULES[:1]]
    assert again.show("t1") == fleet.show("t1")
    assert "speed_limit_rules" not in (again.stored("t1") or {})


def test_a_fleet_file_with_bad_rules_is_refused(tmp_path: Path) -> None:
    """Rules the service would refuse cannot be in a fleet either: the line and the path."""
    path = write_jsonl(tmp_path / "fleet.jsonl", [
        {"id": "t1"},
        {"id": "t2", "speed_limit_rules": [{"start": "9:00", "end": "10:00", "speed": 1}]}])
    with pytest.raises(ValueError, match=r"fleet.jsonl:2: speed_limit_rules\[0\]\.start: must "
                       r"be a time HH:MM"):
        Fleet.from_jsonl(path)


def test_rules_are_not_aliased() -> None:
    """What set_rules took and what rules() gave can change without changing the store."""
    fleet = Fleet.open()
    given = [dict(RULES[0])]
    fleet.set_rules("t", given)
    given[0]["speed"] = 999
    shown = fleet.rules("t")
    assert shown == [RULES[0]]
    assert shown is not None
    shown[0]["speed"] = 998
    assert fleet.rules("t") == [RULES[0]]


# -- the official SDK ---------------------------------------------------------------------------

async def in_thread(call: Callable[[], Any]) -> Any:
    """The SDK is synchronous (requests): run it off the loop that serves the simulator."""
    return await anyio.to_thread.run_sync(call)


async def test_sdk_update_speed_then_shows_speed_limits() -> None:
    """update_speed then shows_speed_limits with AK/SK: the SDK's models round-trip."""
    async with running(credentials=ExpectedCredentials(ak=AK, sk=SK)) as sim:
        client = sdk_client(sim)
        body = SpeedLimit(speed_limit=[SpeedLimitlJson(**rule) for rule in RULES])
        updated = await in_thread(lambda: client.update_speed(
            UpdateSpeedRequest(task_id=TASK, body=body)))
        assert updated.status_code == 200
        shown = await in_thread(lambda: client.shows_speed_limits(
            ShowsSpeedLimitsRequest(task_id=TASK)))
        assert [r.to_dict() for r in shown.speed_limit] == [
            {"over_speed_threshold": None, **rule} for rule in RULES]
        post = sim.requests[0]
        assert (post.method, post.path) == ("POST", f"/v3/tasks/{TASK}/speed-limit")
        assert post.headers["Authorization"].startswith("SDK-HMAC-SHA256 Access=" + AK)
        cleared = await in_thread(lambda: client.update_speed(
            UpdateSpeedRequest(task_id=TASK, body=SpeedLimit(speed_limit=[]))))
        assert cleared.status_code == 200
        shown = await in_thread(lambda: client.shows_speed_limits(
            ShowsSpeedLimitsRequest(task_id=TASK)))
        assert shown.speed_limit == []


async def test_sdk_sees_a_refusal_as_a_client_error() -> None:
    """A window across midnight: the SDK raises ClientRequestException with the SMS code."""
    async with running(credentials=ExpectedCredentials(ak=AK, sk=SK)) as sim:
        client = sdk_client(sim)
        body = SpeedLimit(speed_limit=[SpeedLimitlJson(start="22:00", end="06:00", speed=5)])
        with pytest.raises(ClientRequestException) as caught:
            await in_thread(lambda: client.update_speed(
                UpdateSpeedRequest(task_id=TASK, body=body)))
        assert (caught.value.status_code, caught.value.error_code) == (400, "SMS.0205")
        assert "split into two rules" in caught.value.error_msg


async def test_batchsms_transport_signs_update_speed() -> None:
    """The project's own client, AK/SK-signed: POST and GET on speed_limit_path pass the
    simulator's signature check, an id needing percent-encoding included; the GET's answer
    reads back as the rules written."""
    creds = AkSkCredentials(AK, SK, project_id="0123456789abcdef0123456789abcdef")
    body = canonical_json({"speed_limit": RULES})
    async with running(credentials=ExpectedCredentials(ak=AK, sk=SK)) as sim, \
            SmsClient(sim.url, authenticator(creds), concurrency=1, timeout=5) as client:
        for task_id in (TASK, "a b/中"):
            wrote = await client.request("POST", speed_limit_path(task_id), body)
            assert (wrote.status, wrote.json()) == (200, {})
            read = await client.request("GET", speed_limit_path(task_id))
            rules = rules_of_answer(read.json())
            assert rules is not None
            assert same_rules(rules, RULES)
        assert sim.requests[0].path == f"/v3/tasks/{TASK}/speed-limit"
        assert sim.requests[2].path == "/v3/tasks/a%20b%2F%E4%B8%AD/speed-limit"


def test_the_simulator_command_serves_a_fleet_files_rules(tmp_path: Path) -> None:
    """`python -m batchsms.simulator --fleet FILE`: the file's rules are served."""
    path = write_jsonl(tmp_path / "fleet.jsonl", [{"id": "t1", "speed_limit_rules": RULES}])
    with simulator_process("--fleet", str(path), module="batchsms.simulator", text=True) as sim:
        with urllib.request.urlopen(f"{sim.url}/v3/tasks/t1/speed-limit", timeout=5) as resp:
            assert json.loads(resp.read()) == {"speed_limit": RULES}
        sim.process.terminate()
        sim.process.communicate(timeout=5)


def test_the_simulator_command_refuses_a_fleet_with_bad_rules(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rules the service would refuse in a --fleet file: exit 2, the line and the path."""
    path = write_jsonl(tmp_path / "fleet.jsonl", [
        {"id": "t1", "speed_limit_rules": [{"start": "00:00", "end": "24:00", "speed": 1}]}])
    assert simulator_main(["--port", "0", "--fleet", str(path)]) == 2
    err = capsys.readouterr().err
    assert "fleet.jsonl:1: speed_limit_rules[0].end: must be a time HH:MM" in err

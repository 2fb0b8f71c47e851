"""The simulator over loopback sockets: routes, validation, fleets, listing, auth, request log."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from yarl import URL

from batchsms.simulator import ExpectedCredentials, Fleet, SimulatorHandle, running
from batchsms.simulator.fleet import STATES
from batchsms.simulator.threaded import serve_in_thread, simulator_thread
from batchsms.transport.credentials import AkSkCredentials
from batchsms.transport.signing import Signer

pytestmark = pytest.mark.anyio

JSON = {"Content-Type": "application/json"}
TASK = "ef3b9722-07a0-40ae-89b0-889ee96d0001"
WITH_TOKEN = {**JSON, "X-Auth-Token": "tok-123"}


def task_url(sim: SimulatorHandle, task_id: str) -> URL:
    return URL(f"{sim.url}/v3/tasks/{quote(task_id, safe='')}", encoded=True)


async def put(session: aiohttp.ClientSession, sim: SimulatorHandle, task_id: str,
              body: object, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with session.put(task_url(sim, task_id), data=data,
                           headers=JSON if headers is None else headers) as resp:
        assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-Id"])
        return resp.status, await resp.json(content_type=None)


async def get(session: aiohttp.ClientSession, url: URL | str) -> tuple[int, Any]:
    async with session.get(url) as resp:
        assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-Id"])
        return resp.status, await resp.json(content_type=None)


async def test_put_applies_body_and_show_returns_it() -> None:
    """A valid PUT answers {"id"}, deep-merges into the task, and ShowTask shows the result."""
    async with running() as sim, aiohttp.ClientSession() as s:
        status, before = await get(s, task_url(sim, TASK))
        assert status == 200
        for key in ("id", "name", "type", "state", "speed_limit", "migration_ip", "region_id",
                    "project_id", "enterprise_project_id", "target_server"):
            assert key in before
        status, answer = await put(s, sim, TASK, {"speed_limit": 200, "migration_ip": None,
                                                  "target_server": {"os_type": "LINUX"}})
        assert (status, answer) == (200, {"id": TASK})
        status, after = await get(s, task_url(sim, TASK))
        assert after["speed_limit"] == 200
        assert after["migration_ip"] == before["migration_ip"]  # null means "absent"
        assert after["target_server"]["os_type"] == "LINUX"
        assert after["target_server"]["id"] == before["target_server"]["id"]  # merged, not replaced
        assert sim.counts(TASK).received == 1
        assert sim.counts(TASK).applied == 1
        assert sim.stats.applied == 1


async def test_percent_encoded_task_id_is_stored_decoded() -> None:
    """The path's task id is percent-decoded: '/', '%', spaces and Chinese survive a round trip."""
    task_id = "a/b c%d 中"
    async with running() as sim, aiohttp.ClientSession() as s:
        assert await put(s, sim, task_id, {"speed_limit": 7}) == (200, {"id": task_id})
        status, shown = await get(s, task_url(sim, task_id))
        assert (status, shown["id"], shown["speed_limit"]) == (200, task_id, 7)
        assert sim.requests[0].path == "/v3/tasks/a%2Fb%20c%25d%20%E4%B8%AD"
        assert sim.requests[0].task_id == task_id


async def test_task_id_longer_than_36_characters_is_rejected() -> None:
    """task_id is 1-36 characters (Table 1)."""
    async with running() as sim, aiohttp.ClientSession() as s:
        status, error = await put(s, sim, "x" * 37, {"speed_limit": 1})
        assert status == 400
        assert error["error_code"] == "SMS.0204"
        assert await put(s, sim, "x" * 36, {"speed_limit": 1}) == (200, {"id": "x" * 36})


async def test_invalid_body_is_rejected_naming_every_field() -> None:
    """A body breaking the schema gets 400 SMS.0205 naming each offending path; nothing applied."""
    body = {"speedlimit": 1, "target_server": {"disks": [{"partition_style": "XYZ"}]}}
    async with running() as sim, aiohttp.ClientSession() as s:
        status, error = await put(s, sim, TASK, body)
        assert status == 400
        assert error["error_code"] == "SMS.0205"
        assert "body.speedlimit" in error["error_msg"]
        assert "body.target_server.disks[0].partition_style" in error["error_msg"]
        assert error["error_param"] == ["body.speedlimit",
                                        "body.target_server.disks[0].partition_style"]
        assert len(error["details"]) == 2
        assert sim.counts(TASK).received == 1
        assert sim.counts(TASK).applied == 0


async def test_long_error_messages_are_capped_at_255_characters() -> None:
    """Table 14 caps error_msg at 255 characters; error_param keeps at most 20 paths."""
    body = {f"unknown_{i}": i for i in range(30)}
    async with running() as sim, aiohttp.ClientSession() as s:
        status, error = await put(s, sim, TASK, body)
        assert status == 400
        assert len(error["error_msg"]) <= 255
        assert "body.unknown_0" in error["error_msg"]
        assert len(error["error_param"]) == 20


@pytest.mark.parametrize("body", [{}, {"speed_limit": None}])
async def test_nothing_to_update_is_rejected(body: dict[str, Any]) -> None:
    """A body with no field left to send is a 400."""
    async with running() as sim, aiohttp.ClientSession() as s:
        status, error = await put(s, sim, TASK, body)
        assert status == 400
        assert "nothing to update" in error["error_msg"]


@pytest.mark.parametrize("headers", [{"Content-Type": "text/plain"}, {}])
async def test_put_requires_a_json_content_type(headers: dict[str, str]) -> None:
    """PUT with another (or no) Content-Type gets 415 SMS.0202."""
    async with running() as sim, aiohttp.ClientSession() as s:
        status, error = await put(s, sim, TASK, {"speed_limit": 1}, headers=headers)
        assert status == 415
        assert error["error_code"] == "SMS.0202"
        assert sim.counts(TASK).applied == 0


async def test_json_content_type_with_charset_is_accepted() -> None:
    """Parameters on the media type are fine."""
    async with running() as sim, aiohttp.ClientSession() as s:
        headers = {"Content-Type": "application/json;charset=UTF-8"}
        assert await put(s, sim, TASK, {"speed_limit": 1}, headers=headers) == (200, {"id": TASK})


async def test_malformed_json_is_rejected() -> None:
    """A body that is not JSON gets 400 SMS.0201."""
    async with running() as sim, aiohttp.ClientSession() as s:
        status, error = await put(s, sim, TASK, b'{"speed_limit": ')
        assert status == 400
        assert error["error_code"] == "SMS.0201"


async def test_unknown_task_gets_404_when_serving_a_fleet() -> None:
    """With a fleet, an id outside it is 404 SMS.1801 for PUT and GET; ids inside work."""
    fleet = Fleet.generate(5, seed=1)
    known = next(iter(fleet))
    async with running(fleet=fleet) as sim, aiohttp.ClientSession() as s:
        status, error = await put(s, sim, TASK, {"speed_limit": 1})
        assert status == 404
        assert error["error_code"] == "SMS.1801"
        assert TASK in error["error_msg"]
        status, error = await get(s, task_url(sim, TASK))
        assert (status, error["error_code"]) == (404, "SMS.1801")
        assert await put(s, sim, known, {"speed_limit": 1}) == (200, {"id": known})
        assert sim.counts(TASK).received == 1
        assert sim.counts(TASK).applied == 0
        assert len(fleet) == 5


def test_generated_fleet_is_deterministic_and_varied() -> None:
    """Same seed, same ids and contents; another seed, other ids; states vary across the fleet."""
    a, b, c = Fleet.generate(60, seed=3), Fleet.generate(60, seed=3), Fleet.generate(60, seed=4)
    assert list(a) == list(b)
    assert set(a).isdisjoint(c)
    ids = list(a)
    assert all(len(t) == 36 for t in ids)
    views = [a.show(t) for t in ids]
    assert views == [b.show(t) for t in ids]
    assert len({v["state"] for v in views if v}) >= 5
    assert len({v["speed_limit"] for v in views if v}) >= 3
    assert len({v["name"] for v in views if v}) >= 30


def test_fleet_file_serves_exactly_its_tasks(tmp_path: Path) -> None:
    """--fleet: the file's fields win over synthesized ones; other ids do not exist."""
    path = tmp_path / "fleet.jsonl"
    path.write_text('{"id": "t1", "name": "web-01", "state": "RUNNING", "speed_limit": 5}\n'
                    "\n"
                    '{"id": "t2", "target_server": {"os_type": "LINUX"}}\n', encoding="utf-8")
    fleet = Fleet.from_jsonl(path)
    assert list(fleet) == ["t1", "t2"]
    t1 = fleet.show("t1")
    assert t1 is not None
    assert (t1["name"], t1["state"], t1["speed_limit"]) == ("web-01", "RUNNING", 5)
    t2 = fleet.show("t2")
    assert t2 is not None
    assert t2["target_server"]["os_type"] == "LINUX"
    assert "id" in t2["target_server"]
    assert fleet.show("t3") is None
    assert not fleet.apply("t3", {"speed_limit": 1})


@pytest.mark.parametrize(("text", "message"), [
    ('{"id": "t1"}\nnot json\n', "fleet.jsonl:2: not valid JSON"),
    ('{"name": "x"}\n', "fleet.jsonl:1: a task object with a string 'id'"),
    ('{"id": "t1"}\n{"id": "t1"}\n', "fleet.jsonl:2: task id 't1' appears twice"),
])
def test_bad_fleet_file_names_the_line(tmp_path: Path, text: str, message: str) -> None:
    """An unusable fleet line is an error naming the file and line."""
    path = tmp_path / "fleet.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(message)):
        Fleet.from_jsonl(path)


async def test_list_tasks_pages_and_filters() -> None:
    """ListTasks: count is every match, tasks the page; state/name/id/enterprise filters match."""
    fleet = Fleet.generate(25, seed=1)
    ids = list(fleet)
    views = [fleet.show(t) for t in ids]
    async with running(fleet=fleet) as sim, aiohttp.ClientSession() as s:
        status, page = await get(s, f"{sim.url}/v3/tasks")
        assert status == 200
        assert page["count"] == 25
        assert [t["id"] for t in page["tasks"]] == ids  # default limit (100) covers them all
        _, page = await get(s, f"{sim.url}/v3/tasks?limit=10&offset=20")
        assert page["count"] == 25
        assert [t["id"] for t in page["tasks"]] == ids[20:]
        _, page = await get(s, f"{sim.url}/v3/tasks?limit=0")
        assert (page["count"], page["tasks"]) == (25, [])

        state = views[0]["state"]  # type: ignore[index]
        _, page = await get(s, f"{sim.url}/v3/tasks?state={state}")
        expected = [v["id"] for v in views if v and v["state"] == state]
        assert page["count"] == len(expected)
        assert [t["id"] for t in page["tasks"]] == expected

        name = views[3]["name"]  # type: ignore[index]
        _, page = await get(s, f"{sim.url}/v3/tasks?name={name}")
        assert ids[3] in [t["id"] for t in page["tasks"]]
        assert all(t["name"] == name for t in page["tasks"])

        _, page = await get(s, f"{sim.url}/v3/tasks?id={ids[7]}")
        assert (page["count"], [t["id"] for t in page["tasks"]]) == (1, [ids[7]])
        _, page = await get(s, f"{sim.url}/v3/tasks?id=nope")
        assert (page["count"], page["tasks"]) == (0, [])

        project = views[0]["enterprise_project_id"]  # type: ignore[index]
        _, page = await get(s, f"{sim.url}/v3/tasks?enterprise_project_id={project}&limit=200")
        assert page["count"] == sum(1 for v in views if v and
                                    v["enterprise_project_id"] == project)


async def test_list_reflects_updates_and_open_fleet_lists_used_tasks() -> None:
    """An open fleet lists the tasks it has seen; updates show in the listing and its filters."""
    async with running() as sim, aiohttp.ClientSession() as s:
        _, page = await get(s, f"{sim.url}/v3/tasks")
        assert page == {"count": 0, "tasks": []}
        await put(s, sim, "t1", {"name": "renamed", "enterprise_project": "ep-1"})
        await put(s, sim, "t2", {"speed_limit": 3})
        _, page = await get(s, f"{sim.url}/v3/tasks?name=renamed")
        assert [t["id"] for t in page["tasks"]] == ["t1"]
        _, page = await get(s, f"{sim.url}/v3/tasks?enterprise_project_id=ep-1")
        assert [t["id"] for t in page["tasks"]] == ["t1"]
        _, page = await get(s, f"{sim.url}/v3/tasks")
        assert page["count"] == 2


@pytest.mark.parametrize("query", ["limit=201", "limit=-1", "limit=abc", "offset=65536",
                                   "state=PAUSED"])
async def test_list_tasks_rejects_bad_query(query: str) -> None:
    """Out-of-range paging and unknown states are 400 SMS.0203."""
    async with running() as sim, aiohttp.ClientSession() as s:
        status, error = await get(s, f"{sim.url}/v3/tasks?{query}")
        assert (status, error["error_code"]) == (400, "SMS.0203")


def test_states_are_the_list_enumeration() -> None:
    """The fleet's states are exactly ListTasks' enumeration."""
    assert "RUNNING" in STATES
    assert "MIGRATE_SUCCESS" in STATES
    assert len(STATES) == 10


async def test_unknown_routes_and_methods_get_gateway_errors() -> None:
    """No such API: 404 APIG.0101; wrong method: 405 with Allow; both JSON with X-Request-Id."""
    async with running() as sim, aiohttp.ClientSession() as s:
        status, error = await get(s, f"{sim.url}/v2/tasks")
        assert (status, error["error_code"]) == (404, "APIG.0101")
        async with s.delete(task_url(sim, TASK)) as resp:
            assert resp.status == 405
            assert "X-Request-Id" in resp.headers
            assert "PUT" in resp.headers["Allow"]
            assert (await resp.json())["error_code"] == "APIG.0101"


async def test_request_ids_are_unique() -> None:
    """Every answer carries its own X-Request-Id, also recorded in the log."""
    async with running() as sim, aiohttp.ClientSession() as s:
        for _ in range(5):
            await get(s, task_url(sim, TASK))
        ids = {r.request_id for r in sim.requests}
        assert len(ids) == 5


async def test_request_log_records_requests_with_secrets_redacted() -> None:
    """handle.requests: method, raw path, decoded id, headers (tokens redacted), body, status."""
    creds = ExpectedCredentials(token="s3cret-token")
    async with running(credentials=creds) as sim, aiohttp.ClientSession() as s:
        headers = {**JSON, "X-Auth-Token": "s3cret-token"}
        await put(s, sim, TASK, {"speed_limit": 9}, headers=headers)
        record = sim.requests[-1]
        assert (record.method, record.task_id, record.status) == ("PUT", TASK, 200)
        assert record.path == f"/v3/tasks/{TASK}"
        assert orjson.loads(record.body) == {"speed_limit": 9}
        assert record.headers["X-Auth-Token"] == "***"
        assert record.headers["Content-Type"] == "application/json"
        assert sim.stats.by_status[200] == 1


async def test_request_log_can_be_switched_off_and_is_bounded() -> None:
    """log_size=0 keeps counters only; a positive log_size keeps the latest requests."""
    async with running(log_size=0) as sim, aiohttp.ClientSession() as s:
        await put(s, sim, TASK, {"speed_limit": 1})
        assert len(sim.requests) == 0
        assert sim.stats.received == 1
    async with running(log_size=3) as sim, aiohttp.ClientSession() as s:
        for i in range(5):
            await put(s, sim, f"t{i}", {"speed_limit": 1})
        assert [r.task_id for r in sim.requests] == ["t2", "t3", "t4"]


# -- authentication -------------------------------------------------------------------------

AK, SK = "SIMULATORAK0001", "simulator-secret-key"


def signed(sim: SimulatorHandle, method: str, path: str, query: list[tuple[str, str]],
           body: bytes, sk: str = SK, now: datetime | None = None) -> dict[str, str]:
    signer = Signer(AkSkCredentials(ak=AK, sk=sk, project_id="p" * 32))
    headers = {"Content-Type": "application/json"} if body else {}
    return signer.headers_for(method, f"{sim.host}:{sim.port}", path, query, headers, body,
                              now or datetime.now(UTC))


async def test_signed_requests_pass_and_bad_signatures_get_401() -> None:
    """AK/SK: a correct signature passes; a wrong SK, a stale X-Sdk-Date or none gets 401."""
    creds = ExpectedCredentials(ak=AK, sk=SK)
    path = f"/v3/tasks/{quote('a b', safe='')}"
    body = b'{"speed_limit":42}'
    async with running(credentials=creds) as sim, aiohttp.ClientSession() as s:
        url = URL(f"{sim.url}{path}", encoded=True)
        async with s.put(url, data=body, headers=signed(sim, "PUT", path, [], body)) as resp:
            assert resp.status == 200

        query = [("limit", "5"), ("name", "a b")]
        list_url = URL(f"{sim.url}/v3/tasks?limit=5&name=a%20b", encoded=True)
        headers = signed(sim, "GET", "/v3/tasks", query, b"")
        async with s.get(list_url, headers=headers) as resp:
            assert resp.status == 200

        stale = datetime.now(UTC) - timedelta(minutes=20)
        for headers in (signed(sim, "PUT", path, [], body, sk="wrong-secret"),
                        signed(sim, "PUT", path, [], body, now=stale),
                        JSON):
            async with s.put(url, data=body, headers=headers) as resp:
                error = await resp.json()
                assert resp.status == 401
                assert error["error_code"] == "APIG.0301"
                assert error["error_msg"].startswith("Incorrect IAM authentication information")
                assert SK not in error["error_msg"]
                assert "wrong-secret" not in error["error_msg"]
        assert sim.counts("a b").received == 4
        assert sim.counts("a b").applied == 1


async def test_a_body_changed_after_signing_is_rejected() -> None:
    """The signature covers the payload."""
    creds = ExpectedCredentials(ak=AK, sk=SK)
    path = f"/v3/tasks/{TASK}"
    async with running(credentials=creds) as sim, aiohttp.ClientSession() as s:
        headers = signed(sim, "PUT", path, [], b'{"speed_limit":1}')
        async with s.put(f"{sim.url}{path}", data=b'{"speed_limit":2}', headers=headers) as resp:
            assert resp.status == 401


async def test_token_authentication() -> None:
    """X-Auth-Token: the right token passes, a wrong one or a signature-less request does not."""
    creds = ExpectedCredentials(token="tok-123")
    async with running(credentials=creds) as sim, aiohttp.ClientSession() as s:
        ok = await put(s, sim, TASK, {"speed_limit": 1}, headers=WITH_TOKEN)
        assert ok == (200, {"id": TASK})
        status, error = await put(s, sim, TASK, {"speed_limit": 1},
                                  headers={**JSON, "X-Auth-Token": "tok-124"})
        assert (status, error["error_code"]) == (401, "APIG.0301")
        assert "tok-12" not in error["error_msg"]
        status, _ = await get(s, f"{sim.url}/v3/tasks")
        assert status == 401


async def test_either_configured_credential_is_accepted() -> None:
    """With AK/SK and a token configured, a request may use either."""
    creds = ExpectedCredentials(ak=AK, sk=SK, token="tok-123")
    path = f"/v3/tasks/{TASK}"
    async with running(credentials=creds) as sim, aiohttp.ClientSession() as s:
        body = b'{"speed_limit":1}'
        async with s.put(f"{sim.url}{path}", data=body,
                         headers=signed(sim, "PUT", path, [], body)) as resp:
            assert resp.status == 200
        ok = await put(s, sim, TASK, {"speed_limit": 1}, headers=WITH_TOKEN)
        assert ok[0] == 200


def test_expected_credentials_come_from_the_environment() -> None:
    """BATCHSMS_SIMULATOR_* variables; none set means no check; AK without SK is an error."""
    env = {"BATCHSMS_SIMULATOR_AK": "ak", "BATCHSMS_SIMULATOR_SK": "sk"}
    creds = ExpectedCredentials.from_env(env)
    assert (creds.ak, creds.sk, creds.token, creds.configured) == ("ak", "sk", None, True)
    assert "sk" not in repr(creds).replace("aksk", "")
    assert not ExpectedCredentials.from_env({}).configured
    assert ExpectedCredentials.from_env({"BATCHSMS_SIMULATOR_TOKEN": "t"}).token == "t"
    with pytest.raises(ValueError, match="BATCHSMS_SIMULATOR_SK"):
        ExpectedCredentials.from_env({"BATCHSMS_SIMULATOR_AK": "ak"})


async def test_oversized_body_gets_413() -> None:
    """A body over the simulator's 8 MiB cap is refused with an error body, not applied."""
    async with running() as sim, aiohttp.ClientSession() as s:
        body = io.BytesIO(b'{"name": "' + b"x" * (9 * 1024 * 1024) + b'"}')
        async with s.put(task_url(sim, TASK), data=body, headers=JSON) as resp:
            assert resp.status == 413
            assert (await resp.json())["error_code"] == "SMS.0206"
        assert sim.counts(TASK).applied == 0


# -- served from a background thread --------------------------------------------------------------


def test_a_server_in_a_thread_serves_then_stops_and_closes_its_loop() -> None:
    """`simulator_thread`: the handle is live, `call` runs on the server's loop, and on exit
    the loop is closed (a loop left open leaks its sockets into a later test)."""
    with simulator_thread() as sim:
        assert sim.call(lambda: sim.handle.url) == sim.handle.url
        assert not sim.loop.is_closed()
    assert sim.loop.is_closed()


def test_a_server_in_a_thread_slower_to_stop_than_the_join_still_closes_its_loop() -> None:
    """A handler still hanging delays the stop past the caller's join: the loop is closed by
    its own thread once the server has stopped."""
    @asynccontextmanager
    async def slow_to_stop() -> AsyncIterator[str]:
        yield "serving"
        await asyncio.sleep(0.3)

    with serve_in_thread(slow_to_stop, start_timeout=0.01) as hosted:
        pass
    deadline = time.monotonic() + 30
    while not hosted.loop.is_closed():
        assert time.monotonic() < deadline, "the loop was never closed"
        time.sleep(0.01)


def test_a_server_in_a_thread_that_fails_to_start_or_stop_raises_in_the_caller() -> None:
    """A failure on the server's loop is raised where the server is used, not lost in the
    thread."""
    @asynccontextmanager
    async def broken(where: str) -> AsyncIterator[str]:
        if where == "start":
            raise OSError("address in use")
        yield "serving"
        raise OSError("cleanup failed")

    with pytest.raises(OSError, match="address in use"), serve_in_thread(lambda: broken("start")):
        pass
    with pytest.raises(OSError, match="cleanup failed"), \
            serve_in_thread(lambda: broken("stop")) as hosted:
        assert hosted.value == "serving"


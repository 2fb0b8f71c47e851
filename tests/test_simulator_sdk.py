"""The official Huawei Cloud SDK (huaweicloudsdksms) as the simulator's client, over loopback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdksms.v3 import (
    ListTasksRequest,
    PutTaskReq,
    ShowTaskRequest,
    SmsClient,
    UpdateTaskRequest,
)

from batchsms.simulator import ExpectedCredentials, Fleet, SimulatorHandle, running

pytestmark = pytest.mark.anyio

AK, SK = "SDKTESTAK000001", "sdk-test-secret-key"
PROJECT_ID = "0123456789abcdef0123456789abcdef"  # given, so the SDK never asks IAM for one
TASK = "ef3b9722-07a0-40ae-89b0-889ee96d0001"


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests honours proxy variables: make sure nothing leaves the machine."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def sdk_client(sim: SimulatorHandle, sk: str = SK) -> Any:
    config = HttpConfig.get_default_config()
    config.timeout = (3, 10)
    credentials = BasicCredentials(AK, sk, PROJECT_ID)
    return (SmsClient.new_builder().with_credentials(credentials).with_endpoints([sim.url])
            .with_http_config(config).build())


async def in_thread(call: Callable[[], Any]) -> Any:
    """The SDK is synchronous (requests): run it off the loop that serves the simulator."""
    return await anyio.to_thread.run_sync(call)


async def test_sdk_update_then_show_sees_the_new_speed_limit() -> None:
    """update_task then show_task with AK/SK: both succeed and show the new speed_limit."""
    creds = ExpectedCredentials(ak=AK, sk=SK)
    async with running(credentials=creds) as sim:
        client = sdk_client(sim)
        body = PutTaskReq(speed_limit=321, name="web-01")
        updated = await in_thread(lambda: client.update_task(
            UpdateTaskRequest(task_id=TASK, body=body)))
        assert updated.id == TASK
        assert updated.status_code == 200
        shown = await in_thread(lambda: client.show_task(ShowTaskRequest(task_id=TASK)))
        assert (shown.id, shown.speed_limit, shown.name) == (TASK, 321, "web-01")
        assert shown.target_server.os_type in ("WINDOWS", "LINUX")
        assert sim.counts(TASK).received == 1
        assert sim.counts(TASK).applied == 1
        put = sim.requests[0]
        assert put.headers["Authorization"].startswith("SDK-HMAC-SHA256 Access=SDKTESTAK000001")
        assert put.headers["X-Project-Id"] == PROJECT_ID


async def test_sdk_task_id_with_reserved_characters_round_trips() -> None:
    """The SDK's percent-encoding of the path and its signature agree with the simulator."""
    task_id = "a b/中"
    creds = ExpectedCredentials(ak=AK, sk=SK)
    async with running(credentials=creds) as sim:
        client = sdk_client(sim)
        updated = await in_thread(lambda: client.update_task(
            UpdateTaskRequest(task_id=task_id, body=PutTaskReq(speed_limit=5))))
        assert updated.id == task_id
        shown = await in_thread(lambda: client.show_task(ShowTaskRequest(task_id=task_id)))
        assert shown.speed_limit == 5


async def test_sdk_list_tasks_pages_and_filters() -> None:
    """list_tasks with a signed query string: count and page as asked."""
    fleet = Fleet.generate(12, seed=2)
    ids = list(fleet)
    async with running(fleet=fleet, credentials=ExpectedCredentials(ak=AK, sk=SK)) as sim:
        client = sdk_client(sim)
        page = await in_thread(lambda: client.list_tasks(ListTasksRequest(limit=5, offset=10)))
        assert page.count == 12
        assert [t.id for t in page.tasks] == ids[10:]
        one = await in_thread(lambda: client.list_tasks(ListTasksRequest(id=ids[3])))
        assert [t.id for t in one.tasks] == [ids[3]]


async def test_sdk_with_a_wrong_sk_gets_401() -> None:
    """A wrong SK: the SDK raises ClientRequestException 401 APIG.0301, and nothing is applied."""
    async with running(credentials=ExpectedCredentials(ak=AK, sk=SK)) as sim:
        client = sdk_client(sim, sk="not-the-secret")
        with pytest.raises(ClientRequestException) as info:
            await in_thread(lambda: client.update_task(
                UpdateTaskRequest(task_id=TASK, body=PutTaskReq(speed_limit=1))))
        assert info.value.status_code == 401
        assert info.value.error_code == "APIG.0301"
        assert len(info.value.request_id) == 32
        assert sim.counts(TASK).applied == 0


async def test_sdk_sees_validation_errors_and_unknown_tasks() -> None:
    """The SDK parses the simulator's 400 and 404 bodies into error_code / error_msg."""
    async with running(fleet=Fleet.generate(1, seed=3),
                       credentials=ExpectedCredentials(ak=AK, sk=SK)) as sim:
        client = sdk_client(sim)
        with pytest.raises(ClientRequestException) as info:
            await in_thread(lambda: client.update_task(
                UpdateTaskRequest(task_id=TASK, body=PutTaskReq(speed_limit=5000))))
        assert (info.value.status_code, info.value.error_code) == (400, "SMS.0205")
        assert "body.speed_limit" in info.value.error_msg
        with pytest.raises(ClientRequestException) as info:
            await in_thread(lambda: client.show_task(ShowTaskRequest(task_id=TASK)))
        assert (info.value.status_code, info.value.error_code) == (404, "SMS.1801")

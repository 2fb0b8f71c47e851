"""The official Huawei Cloud SDK (huaweicloudsdksms) as the simulator's client, over loopback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import huaweicloudsdksms.v3 as sms_models
import orjson
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdksms.v3 import (
    ListTasksRequest,
    PutTaskReq,
    ShowTaskRequest,
    ShowTaskResponse,
    TasksResponseBody,
    UpdateTaskRequest,
)

from batchsms.lines.readable import READABLE, show_path
from batchsms.lines.schema import validate
from batchsms.simulator import ExpectedCredentials, Fleet, running
from batchsms.simulator.views import LIST_ITEM, SHOW_TASK
from tests.sdk import AK, PROJECT_ID, SK, sdk_client

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("loopback_only")]

TASK = "ef3b9722-07a0-40ae-89b0-889ee96d0001"


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


# -- the views are the SDK's models -------------------------------------------------------------

_SCALARS = {"str": str, "int": int, "float": float, "bool": bool}


def model_spec(model: type) -> dict[str, Any]:
    """The SDK model as a views.py spec, from its ``openapi_types``, recursively."""
    spec: dict[str, Any] = {}
    for name, kind in model.openapi_types.items():  # type: ignore[attr-defined]
        inner = kind[5:-1] if kind.startswith("list[") else kind
        nested: Any = inner if inner in _SCALARS else model_spec(getattr(sms_models, inner))
        spec[name] = [nested] if kind.startswith("list[") else nested
    return spec


def test_show_task_view_is_the_sdk_show_task_response() -> None:
    assert model_spec(ShowTaskResponse) == SHOW_TASK


def test_list_item_view_is_the_sdk_tasks_response_body() -> None:
    assert model_spec(TasksResponseBody) == LIST_ITEM


def leaves(spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted leaf paths (scalars and arrays) -> their spec."""
    out: dict[str, Any] = {}
    for name, value in spec.items():
        if isinstance(value, dict):
            out |= leaves(value, f"{prefix}{name}.")
        else:
            out[f"{prefix}{name}"] = value
    return out


def test_readable_is_what_show_task_reads_back_of_put_task_req() -> None:
    """READABLE = the leaves PutTaskReq and ShowTaskResponse share with one type, + the rename."""
    body, shown = leaves(model_spec(PutTaskReq)), leaves(model_spec(ShowTaskResponse))
    shared = {path: path for path, spec in body.items() if shown.get(path) == spec}
    assert dict(READABLE) == shared | {"enterprise_project": "enterprise_project_id"}
    assert body["enterprise_project"] == shown["enterprise_project_id"] == "str"
    for path in ("use_ipv6", "exist_server", "snapshot_ids", "target_disk_ids",
                 "target_server.networks", "target_server.btrfs_list", "image_disk_id"):
        assert show_path(path) is None, path


def check_types(value: Any, spec: Any, path: str) -> None:
    """Every field of a JSON answer is one the spec has, with its type (None allowed)."""
    if value is None:
        return
    if isinstance(spec, str):
        wanted = _SCALARS[spec]
        ok = isinstance(value, wanted) and not (wanted is not bool and isinstance(value, bool))
        if wanted is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        assert ok, f"{path}: {value!r} is not {spec}"
    elif isinstance(spec, list):
        assert isinstance(value, list), path
        for i, item in enumerate(value):
            check_types(item, spec[0], f"{path}[{i}]")
    else:
        assert isinstance(value, dict), path
        unknown = set(value) - set(spec)
        assert not unknown, f"{path}: fields the SDK model lacks: {sorted(unknown)}"
        for key, item in value.items():
            check_types(item, spec[key], f"{path}.{key}")


def as_json(parsed: Any) -> Any:
    """An SDK model object back to plain JSON values, through its openapi_types only."""
    if isinstance(parsed, list):
        return [as_json(item) for item in parsed]
    types = getattr(parsed, "openapi_types", None)
    if types is None:
        return parsed
    return {name: as_json(getattr(parsed, name)) for name in types}


def same_content(raw: Any, parsed: Any, path: str) -> None:
    """What the SDK parsed equals what was sent, field by field: nothing dropped or mangled."""
    if isinstance(raw, dict):
        assert isinstance(parsed, dict), path
        for key, value in raw.items():
            same_content(value, parsed.get(key), f"{path}.{key}")
    elif isinstance(raw, list):
        assert isinstance(parsed, list), path
        assert len(raw) == len(parsed), path
        for i, (a, b) in enumerate(zip(raw, parsed, strict=True)):
            same_content(a, b, f"{path}[{i}]")
    else:
        assert raw == parsed, f"{path}: {raw!r} -> {parsed!r}"
        assert type(raw) is type(parsed), f"{path}: {raw!r} -> {parsed!r}"


RICH_UPDATE = {
    "name": "db-rich", "speed_limit": 77, "use_ipv6": True, "exist_server": True,
    "target_disk_ids": "d1,d2", "snapshot_ids": "s1", "enterprise_project": "ep-1",
    "image_disk_id": "img-top",
    "target_server": {
        "name": "db-rich-target", "hostname": "h", "cpu_quantity": 4,
        "networks": [{"name": "eth0", "ip": "10.0.0.5", "netmask": "255.255.255.0",
                      "gateway": "10.0.0.1", "mac": "fa:16:3e:00:00:01"}],
        "btrfs_list": [{"name": "btrfs-root", "label": "root", "uuid": "u-1", "device": "/dev/sdb",
                        "size": 10, "nodesize": 1, "sectorsize": 1, "data_profile": "single",
                        "system_profile": "single", "metadata_profile": "dup",
                        "global_reserve1": "1", "g_vol_used_size": 1, "default_subvolid": "5",
                        "default_subvol_name": "root", "default_subvol_mountpath": "/",
                        "subvolumn": []}],
        "disks": [{"id": 1, "device_use": "OS", "disk_id": "disk-1", "name": "/dev/vda",
                   "size": 42949672960, "used_size": 1024, "physical_volumes": []}],
    },
}


async def test_sdk_show_and_list_parse_every_field_with_its_type() -> None:
    """ShowTask/ListTasks through the SDK: only model fields, model types, nothing mangled;
    update-only fields are applied but not shown, readable ones show their new values."""
    fleet = Fleet.generate(40, seed=5)
    ids = list(fleet)
    clean, problems = validate(RICH_UPDATE)
    assert problems == []
    assert fleet.apply(ids[0], clean)  # as a PUT would (the PUT path is tested above)
    async with running(fleet=fleet, credentials=ExpectedCredentials(ak=AK, sk=SK)) as sim:
        client = sdk_client(sim)
        for task_id in ids:
            shown = await in_thread(lambda t=task_id: client.show_task(ShowTaskRequest(task_id=t)))
            raw = orjson.loads(shown.raw_content)
            check_types(raw, SHOW_TASK, "ShowTask")
            same_content(raw, as_json(shown), "ShowTask")
            assert raw.keys() == SHOW_TASK.keys()  # every field of the model, too
        page = await in_thread(lambda: client.list_tasks(ListTasksRequest(limit=200)))
        raw_page = orjson.loads(page.raw_content)
        assert raw_page["count"] == 40
        for i, item in enumerate(raw_page["tasks"]):
            check_types(item, LIST_ITEM, f"ListTasks[{i}]")
            assert item.keys() == LIST_ITEM.keys()
        same_content(raw_page, as_json(page), "ListTasks")
        rich = await in_thread(lambda: client.show_task(ShowTaskRequest(task_id=ids[0])))
    assert (rich.name, rich.speed_limit, rich.enterprise_project_id) == ("db-rich", 77, "ep-1")
    assert rich.target_server.name == "db-rich-target"
    assert rich.target_server.btrfs_list == ["btrfs-root"]
    assert rich.target_server.disks[0].disk_id == "disk-1"
    raw_rich = orjson.loads(rich.raw_content)
    for hidden in ("use_ipv6", "exist_server", "target_disk_ids", "snapshot_ids",
                   "enterprise_project", "image_disk_id"):
        assert hidden not in raw_rich
    assert "networks" not in raw_rich["target_server"]
    stored = fleet.stored(ids[0])
    assert stored is not None
    assert stored["use_ipv6"] is True  # applied, just not readable
    assert stored["target_server"]["networks"][0]["mac"] == "fa:16:3e:00:00:01"


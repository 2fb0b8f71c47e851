"""What ShowTask and ListTasks answer: the official SDK's response models, field for field.

A view is a *spec*: an object maps each field the model has to its spec; a scalar spec is the
model's Python type name (``"str"``, ``"int"``, ``"float"``, ``"bool"``); ``[spec]`` is a list
of it. `SHOW_TASK` is ``ShowTaskResponse`` (with ``SourceServerResponse``, ``TaskTargetServer``,
``TargetDisk``, ``VolumeGroups``, ``CloneServer``, ``SubTask``, ``NetworkCheckInfoRequestBody``);
`LIST_ITEM` is ``TasksResponseBody``, one item of ``ListTasksResponse.tasks``. The tests walk the
installed SDK's ``openapi_types`` and require these specs to be exactly those models.

`project` cuts a stored task (everything it was created with and every update applied to it)
down to a view: fields the model lacks are left out (UpdateTask-only fields such as
``use_ipv6`` or ``target_server.networks`` are stored but never shown); a value whose type is not
the model's is left out too (the simulator never answers what the SDK would mangle), except
that an object where the model has a string is shown as its ``name`` (``btrfs_list``: UpdateTask
takes file-system objects, ShowTask lists their names).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["LIST_ITEM", "SHOW_TASK", "Spec", "project"]

Spec = str | list[Any] | dict[str, Any]

_LOGICAL_VOLUME: Final = {
    "block_count": "int", "block_size": "int", "file_system": "str", "inode_size": "int",
    "inode_nums": "int", "device_use": "str", "mount_point": "str", "name": "str", "size": "int",
    "used_size": "int", "free_size": "int"}
_VOLUME_GROUP: Final = {"components": "str", "free_size": "int",
                        "logical_volumes": [_LOGICAL_VOLUME], "name": "str", "size": "int"}
_PHYSICAL_VOLUME: Final = {
    "id": "int", "device_use": "str", "file_system": "str", "index": "int",
    "mount_point": "str", "name": "str", "size": "int", "used_size": "int", "uuid": "str",
    "relation_name": "str", "free_size": "int"}
_DISK: Final = {
    "id": "int", "device_use": "str", "disk_id": "str", "name": "str",
    "physical_volumes": [_PHYSICAL_VOLUME], "size": "int", "used_size": "int",
    "disk_index": "str", "os_disk": "bool", "partition_style": "str", "relation_name": "str"}
_NETWORK_CHECK: Final = {
    "domain_connectivity": "bool", "destination_connectivity": "bool", "network_delay": "float",
    "network_jitter": "float", "migration_speed": "float", "loss_percentage": "float",
    "cpu_usage": "float", "mem_usage": "float", "evaluation_result": "str"}
_USAGE: Final = {
    "total_cpu_usage": "float", "agent_cpu_usage": "float", "total_mem_usage": "float",
    "agent_mem_usage": "float", "total_disk_io": "float", "agent_disk_io": "float"}
_SERVER_IDENTITY: Final = {"id": "str", "ip": "str", "name": "str", "os_type": "str",
                           "os_version": "str"}

SHOW_TASK: Final[dict[str, Any]] = {
    "name": "str", "type": "str", "os_type": "str", "id": "str", "priority": "int",
    "speed_limit": "int", "region_id": "str", "start_target_server": "bool",
    "enterprise_project_id": "str", "migration_ip": "str", "region_name": "str",
    "project_name": "str", "project_id": "str", "vm_template_id": "str",
    "source_server": {**_SERVER_IDENTITY, "oem_system": "bool", "state": "str",
                      "migration_cycle": "str"},
    "target_server": {
        "id": "str", "vm_id": "str", "name": "str", "ip": "str", "os_type": "str",
        "os_version": "str", "system_dir": "str", "disks": [_DISK],
        "volume_groups": [_VOLUME_GROUP], "btrfs_list": ["str"], "image_disk_id": "str",
        "cutovered_snapshot_ids": "str"},
    "state": "str", "estimate_complete_time": "int", "connected": "bool", "create_date": "int",
    "start_date": "int", "finish_date": "int", "migrate_speed": "float",
    "compress_rate": "float", "error_json": "str", "total_time": "int", "float_ip": "str",
    "remain_seconds": "int", "target_snapshot_id": "str",
    "clone_server": {"vm_id": "str", "name": "str", "clone_error": "str", "clone_state": "str",
                     "error_msg": "str"},
    "sub_tasks": [{"id": "int", "name": "str", "progress": "int", "start_date": "int",
                   "end_date": "int", "migrate_speed": "float", "user_op": "str",
                   "process_trace": "str"}],
    "network_check_info": _NETWORK_CHECK,
    **_USAGE,
    "need_migration_test": "bool", "subtask_info": "str",
}

LIST_ITEM: Final[dict[str, Any]] = {
    "id": "str", "name": "str", "type": "str", "os_type": "str", "state": "str",
    "estimate_complete_time": "int", "create_date": "int", "priority": "int",
    "speed_limit": "int", "migrate_speed": "float", "compress_rate": "float",
    "start_target_server": "bool", "error_json": "str", "total_time": "int",
    "migration_ip": "str",
    "sub_tasks": [{"id": "int", "name": "str", "progress": "int", "start_date": "int",
                   "end_date": "int", "process_trace": "str"}],
    "source_server": {**_SERVER_IDENTITY, "oem_system": "bool", "state": "str"},
    "enterprise_project_id": "str",
    "target_server": {"id": "str", "vm_id": "str", "name": "str", "ip": "str", "os_type": "str",
                      "os_version": "str"},
    "log_collect_status": "str",
    "clone_server": {"vm_id": "str", "name": "str"},
    "syncing": "bool",
    "network_check_info": _NETWORK_CHECK,
    "special_config": [{"config_key": "str", "config_value": "str", "config_status": "str"}],
    **_USAGE,
    "need_migration_test": "bool", "subtask_info": "str",
}

_MISSING = object()


def _scalar(value: object, kind: str) -> object:
    if value is None:
        return None
    if kind == "bool":
        return value if isinstance(value, bool) else _MISSING
    if kind == "int":
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISSING
    if kind == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok else _MISSING  # type: ignore[arg-type]
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return value["name"]
    return _MISSING


def _value(value: object, spec: Spec) -> object:
    if isinstance(spec, str):
        return _scalar(value, spec)
    if value is None:
        return None
    if isinstance(spec, list):
        if not isinstance(value, list):
            return _MISSING
        items = (_value(item, spec[0]) for item in value)
        return [item for item in items if item is not _MISSING]
    if not isinstance(value, Mapping):
        return _MISSING
    return project(value, spec)


def project(task: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``task`` that ``spec`` has, with its types, in the model's order."""
    view: dict[str, Any] = {}
    for key, field_spec in spec.items():
        if key in task:
            value = _value(task[key], field_spec)
            if value is not _MISSING:
                view[key] = value
    return view

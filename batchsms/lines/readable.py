"""Which UpdateTask body fields ShowTask can read back, and where: data for plan, verify, undo.

`READABLE` maps each readable leaf path of an UpdateTask body (``PutTaskReq``, dotted; a leaf is
a scalar or an array, since arrays are replaced whole) to the path where the official SDK's
``ShowTaskResponse`` has the same value. It is the exact intersection of the two SDK models
(same path, same type; tests/test_simulator_sdk.py derives it from the installed SDK), plus the
one field the two name differently: UpdateTask's ``enterprise_project`` is ShowTask's
``enterprise_project_id``.

Everything else a body can set is *not readable*: ShowTask never returns it (``use_ipv6``,
``exist_server``, ``snapshot_ids``, ``target_disk_ids``, ``target_server.networks``...), or
returns it with another type (``target_server.btrfs_list``: objects in, names out), or at
another place (the top-level ``image_disk_id`` and ``cutovered_snapshot_ids``; ShowTask has only
``target_server``'s). Such a field's current value cannot be known, so it is never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

__all__ = ["READABLE", "is_readable", "show_path"]

_SAME: Final = (
    "name", "type", "region_id", "region_name", "migration_ip", "speed_limit",
    "project_name", "project_id", "vm_template_id",
    "target_server.id", "target_server.ip", "target_server.name", "target_server.os_type",
    "target_server.os_version", "target_server.system_dir", "target_server.volume_groups",
    "target_server.vm_id", "target_server.disks", "target_server.image_disk_id",
    "target_server.cutovered_snapshot_ids",
    "clone_server.vm_id", "clone_server.name", "clone_server.clone_error",
    "clone_server.clone_state", "clone_server.error_msg",
)

READABLE: Final[Mapping[str, str]] = MappingProxyType(
    {path: path for path in _SAME} | {"enterprise_project": "enterprise_project_id"})


def show_path(body_path: str) -> str | None:
    """Where ShowTask has this body leaf path's value, or None when it cannot be read back."""
    return READABLE.get(body_path)


def is_readable(body_path: str) -> bool:
    return body_path in READABLE

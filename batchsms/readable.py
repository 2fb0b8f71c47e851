"""Which UpdateTask fields ShowTask reads back: the ground `plan`, `--verify` and undo stand on.

A PutTaskReq field is *readable* when the official SDK's ShowTask view (`ShowTaskResponse`, its
`TaskTargetServer` and `CloneServer`) has a field of the same name and the same type at the same
place. Only those can be compared with what a line sets, captured before a write, or checked
after one; every other field is *unreadable*, and is reported as such, never guessed.

`READABLE` mirrors the request body's shape: an object whose fields are merged by an update
(the body itself, `target_server`, `clone_server`) maps to its readable fields; `WHOLE` marks a
value compared and restored as a whole (a scalar, or an array: an update replaces an array).

Read off huaweicloudsdksms' models; `tests/test_readable.py` derives the same set from them
independently. Left out, and why:

- top level: `exist_server`, `use_ipv6`, `use_public_ip`, `target_disk_ids`, `snapshot_ids`,
  `cutovered_snapshot_ids`, `image_disk_id` (ShowTask has none of them), `enterprise_project`
  (ShowTask has `enterprise_project_id`: another name, not assumed to be the same value);
- `target_server`: `hostname`, `firmware`, `cpu_quantity`, `memory`, `networks`, `domain_id`,
  `has_rsync`, `paravirtualization`, `raw_devices`, `driver_files`, `system_services`,
  `account_rights`, `boot_loader`, `flavor`, `snapshot_ids` (not in `TaskTargetServer`), and
  `btrfs_list` (objects in the request, `list[str]` in the view: not comparable).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final

WHOLE: Final = True
"""A readable value, compared and restored as a whole."""

Readable = Mapping[str, "bool | Readable"]

TARGET_SERVER: Readable = {  # TaskTargetServer
    "id": WHOLE,
    "vm_id": WHOLE,
    "name": WHOLE,
    "ip": WHOLE,
    "os_type": WHOLE,
    "os_version": WHOLE,
    "system_dir": WHOLE,
    "disks": WHOLE,  # list[TargetDisk]: the request's model, every field read back
    "volume_groups": WHOLE,  # list[VolumeGroups]: likewise
    "image_disk_id": WHOLE,
    "cutovered_snapshot_ids": WHOLE,
}

CLONE_SERVER: Readable = {  # CloneServer: the same model in the request and the view
    "vm_id": WHOLE,
    "name": WHOLE,
    "clone_error": WHOLE,
    "clone_state": WHOLE,
    "error_msg": WHOLE,
}

READABLE: Readable = {  # ShowTaskResponse
    "name": WHOLE,
    "type": WHOLE,
    "region_id": WHOLE,
    "region_name": WHOLE,
    "migration_ip": WHOLE,
    "speed_limit": WHOLE,
    "project_name": WHOLE,
    "project_id": WHOLE,
    "vm_template_id": WHOLE,
    "target_server": TARGET_SERVER,
    "clone_server": CLONE_SERVER,
}


def readable_paths(spec: Readable = READABLE, prefix: str = "") -> Iterator[str]:
    """Every readable value as a dotted path (`target_server.disks`), in table order."""
    for key, sub in spec.items():
        path = f"{prefix}{key}"
        if isinstance(sub, Mapping):
            yield from readable_paths(sub, f"{path}.")
        else:
            yield path

"""The UpdateTask body (PutTaskReq) as data, and the one walker that checks it.

Tables 3-12 of the reference page become one `ObjectSpec` each below; every field is one line.
`validate()` walks any JSON value against `PUT_TASK_REQ`, collects *every* problem with its path
(``body.target_server.disks[0].partition_style``), drops nulls, and returns the body to send.
The same function serves `validate`, `run`, `--dry-run` and the simulator.

Rules beyond type/length/range/enum (docs/reference.md §2) are object-level checks attached to the
spec they belong to (`ObjectSpec.checks`), so the walker stays generic.

Size (~450 lines): the tables are data, one line per field of the reference page; the walker
itself is short. Splitting the tables from the walker would put one idea in two places.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

INT32_MAX = 2_147_483_647
INT64_MAX = 9_223_372_036_854_775_807


class Problem(NamedTuple):
    """One thing wrong with an input line: where, and what."""

    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class Kind(enum.Enum):
    STRING = "String"
    INTEGER = "Integer"
    LONG = "Long"
    BOOLEAN = "Boolean"
    NUMBER = "Number"  # a JSON number, integer or not (UpdateSpeed's over_speed_threshold)
    OBJECT = "object"
    ARRAY = "array"


@dataclass(frozen=True, slots=True)
class Field:
    """One row of a table: JSON type and limits. Arrays hold objects of `spec`.

    `min_len`/`max_len` bound a string's characters or an array's items; `minimum`/`maximum`
    bound an Integer, Long or Number. Limits that do not apply to the kind stay 0. A `required`
    field missing (or null) from its object is a problem; PutTaskReq has none (an update sets
    what it names), UpdateSpeed's rules do (lines/speed_rules.py).
    """

    kind: Kind
    min_len: int = 0
    max_len: int = 0
    minimum: int = 0
    maximum: int = 0
    choices: frozenset[str] | None = None
    spec: ObjectSpec | None = None
    required: bool = False


Check = Callable[[dict[str, Any], str, list[Problem]], None]


class Rule(NamedTuple):
    """A cross-field rule: `check` runs on an object once its fields are checked, when `key`
    is present in it (so an update that does not touch `key` pays nothing for the rule)."""

    key: str
    check: Check


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """One table: its fields, and the cross-field rules that apply to an object of it."""

    name: str
    fields: Mapping[str, Field]
    checks: tuple[Rule, ...] = field(default=())
    required: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        # kept beside the fields, so the walker's loop over a table with none costs nothing
        object.__setattr__(self, "required",
                           tuple(key for key, f in self.fields.items() if f.required))


# -- table-building shorthands: each keeps a table row on one line ------------------------------


def string(max_len: int, min_len: int = 0, choices: tuple[str, ...] | None = None) -> Field:
    return Field(Kind.STRING, min_len=min_len, max_len=max_len,
                 choices=frozenset(choices) if choices else None)


def integer(maximum: int = INT32_MAX, minimum: int = 0) -> Field:
    return Field(Kind.INTEGER, minimum=minimum, maximum=maximum)


def long(maximum: int = INT64_MAX, minimum: int = 0) -> Field:
    return Field(Kind.LONG, minimum=minimum, maximum=maximum)


BOOLEAN = Field(Kind.BOOLEAN)


def obj(spec: ObjectSpec) -> Field:
    return Field(Kind.OBJECT, spec=spec)


def array(spec: ObjectSpec, max_items: int = 65535, min_items: int = 0) -> Field:
    return Field(Kind.ARRAY, min_len=min_items, max_len=max_items, spec=spec)


DEVICE_USE = ("NORMAL", "OS", "BOOT")

# -- cross-field rules (docs/reference.md §2) ----------------------------------------------

_NAME_RE = re.compile(r"[\u4e00-\u9fa5_\-0-9A-Za-z]+")


def _check_task_name(body: dict[str, Any], path: str, problems: list[Problem]) -> None:
    name = body.get("name")
    if isinstance(name, str) and name and not _NAME_RE.fullmatch(name):
        bad = sorted({c for c in name if not _NAME_RE.fullmatch(c)})
        problems.append(Problem(f"{path}.name",
                                "only Chinese characters (U+4E00-U+9FA5), '_', '-', ASCII digits "
                                f"and letters are allowed; found {''.join(bad)!r}"))


def _check_migration_ip(body: dict[str, Any], path: str, problems: list[Problem]) -> None:
    ip = body.get("migration_ip")
    if not isinstance(ip, str) or not ip:
        return
    use_ipv6 = body.get("use_ipv6") is True
    try:
        (ipaddress.IPv6Address if use_ipv6 else ipaddress.IPv4Address)(ip)
    except ValueError:
        want = "an IPv6 address (use_ipv6 is true)" if use_ipv6 else \
            "an IPv4 address (use_ipv6 is not true)"
        problems.append(Problem(f"{path}.migration_ip", f"must be {want}, got {ip!r}"))


def _id_list_check(key: str, sep: str, max_item: int | None) -> Check:
    label = "space" if sep == " " else repr(sep)

    def check(body: dict[str, Any], path: str, problems: list[Problem]) -> None:
        value = body.get(key)
        if not isinstance(value, str) or not value:
            return
        for i, item in enumerate(value.split(sep)):
            if not item:
                problems.append(Problem(f"{path}.{key}",
                                        f"ID {i + 1} is empty ({label}-separated list)"))
            elif max_item is not None and len(item) > max_item:
                problems.append(Problem(f"{path}.{key}",
                                        f"ID {i + 1} is {len(item)} characters, at most "
                                        f"{max_item} allowed"))

    return check


def _check_macs(server: dict[str, Any], path: str, problems: list[Problem]) -> None:
    """`mac` on every network (the SDK's NetWork model requires the key), non-empty on the
    first (the reference page: 列表中第一个Mac地址必须非空)."""
    networks = server.get("networks")
    if not isinstance(networks, list):
        return
    for i, network in enumerate(networks):
        if not isinstance(network, dict):
            continue
        mac = network.get("mac")
        if i == 0 and (mac is None or mac == ""):
            problems.append(Problem(f"{path}.networks[0].mac",
                                    "the first network's MAC address must be non-empty"))
        elif mac is None:
            problems.append(Problem(f"{path}.networks[{i}].mac",
                                    "required on every network (it may be empty after the "
                                    "first)"))


# -- Tables 3-12 --------------------------------------------------------------------------------

BTRFS_SUBVOLUMN = ObjectSpec("BtrfsSubvolumn", {  # Table 6
    "uuid": string(255),
    "is_snapshot": string(255),
    "subvol_id": string(255),
    "parent_id": string(255),
    "subvol_name": string(255),
    "subvol_mount_path": string(255),
})

BTRFS_FILE_SYSTEM = ObjectSpec("BtrfsFileSystem", {  # Table 5
    "name": string(255),
    "label": string(255),
    "uuid": string(255),
    "device": string(255),
    "size": long(),
    "nodesize": long(),
    "sectorsize": integer(),
    "data_profile": string(255),
    "system_profile": string(255),
    "metadata_profile": string(255),
    "global_reserve1": string(255),
    "g_vol_used_size": long(),
    "default_subvolid": string(255),
    "default_subvol_name": string(255),
    "default_subvol_mountpath": string(255),
    "subvolumn": array(BTRFS_SUBVOLUMN),
})

NETWORK = ObjectSpec("NetWork", {  # Table 7
    "name": string(255),
    "ip": string(255),
    "ipv6": string(255),
    "netmask": string(255),
    "gateway": string(255),
    "mtu": integer(),
    "mac": string(255),
    "id": string(255),
})

LOGICAL_VOLUMES = ObjectSpec("LogicalVolumes", {  # Table 9
    "block_count": integer(),
    "block_size": long(1_048_576),
    "file_system": string(255),
    "inode_size": integer(),
    "inode_nums": long(),
    "device_use": string(255),  # "no strong constraint": common values only, not an enum
    "mount_point": string(256),
    "name": string(1024),
    "size": long(),
    "used_size": long(),
    "free_size": long(),
})

VOLUME_GROUPS = ObjectSpec("VolumeGroups", {  # Table 8
    "components": string(255),
    "free_size": long(),
    "logical_volumes": array(LOGICAL_VOLUMES, max_items=50),
    "name": string(255),
    "size": long(),
})

TARGET_PHYSICAL_VOLUMES = ObjectSpec("TargetPhysicalVolumes", {  # Table 11
    "id": long(),
    "device_use": string(255, choices=DEVICE_USE),
    "file_system": string(255),
    "index": integer(),
    "mount_point": string(255),
    "name": string(255),
    "size": long(),
    "used_size": long(),
    "uuid": string(255),
    "relation_name": string(255),
    "free_size": long(),
})

TARGET_DISK = ObjectSpec("TargetDisk", {  # Table 10
    "id": long(),
    "device_use": string(255, choices=DEVICE_USE),
    "disk_id": string(255),
    "name": string(255),
    "physical_volumes": array(TARGET_PHYSICAL_VOLUMES),
    "size": long(),
    "used_size": long(),
    "disk_index": string(255),
    "os_disk": BOOLEAN,
    "partition_style": string(255, choices=("MBR", "GPT")),
    "relation_name": string(255),
})

TARGET_SERVER = ObjectSpec("TargetServer", {  # Table 4
    "id": string(255),
    "ip": string(255),
    "name": string(255),
    "hostname": string(255),
    "os_type": string(255, choices=("WINDOWS", "LINUX")),
    "os_version": string(255),
    "firmware": string(255, choices=("BIOS", "UEFI")),
    "cpu_quantity": integer(65535),
    "memory": long(),
    "btrfs_list": array(BTRFS_FILE_SYSTEM),
    "networks": array(NETWORK),
    "domain_id": string(255),
    "has_rsync": BOOLEAN,
    "paravirtualization": BOOLEAN,
    "raw_devices": string(255),
    "driver_files": BOOLEAN,
    "system_services": BOOLEAN,
    "account_rights": BOOLEAN,
    "boot_loader": string(255, choices=("GRUB", "LILO")),
    "system_dir": string(255),
    "volume_groups": array(VOLUME_GROUPS),
    "vm_id": string(255),
    "flavor": string(255),
    "disks": array(TARGET_DISK),
    "image_disk_id": string(255),
    "snapshot_ids": string(255),
    "cutovered_snapshot_ids": string(255),
}, checks=(Rule("networks", _check_macs),))

CLONE_SERVER = ObjectSpec("CloneServer", {  # Table 12
    "vm_id": string(255),
    "name": string(255),
    "clone_error": string(255),
    "clone_state": string(255, choices=("NOT_READY", "READY", "PREPARING", "CREATING", "ERROR",
                                        "FINISHED")),
    "error_msg": string(1024),
})

PUT_TASK_REQ = ObjectSpec("PutTaskReq", {  # Table 3
    "name": string(64, min_len=1),
    "type": string(255, choices=("MIGRATE_FILE", "MIGRATE_BLOCK")),
    "region_id": string(255),
    "region_name": string(255),
    "exist_server": BOOLEAN,
    "migration_ip": string(255),
    "use_ipv6": BOOLEAN,
    "use_public_ip": BOOLEAN,
    "speed_limit": integer(1000),
    "project_name": string(255),
    "project_id": string(255),
    "enterprise_project": string(36),
    "image_disk_id": string(255),
    "vm_template_id": string(100),
    "target_disk_ids": string(16384),
    "snapshot_ids": string(1024),
    "cutovered_snapshot_ids": string(1024),
    "target_server": obj(TARGET_SERVER),
    "clone_server": obj(CLONE_SERVER),
}, checks=(Rule("name", _check_task_name), Rule("migration_ip", _check_migration_ip),
           Rule("target_disk_ids", _id_list_check("target_disk_ids", " ", 255)),
           Rule("snapshot_ids", _id_list_check("snapshot_ids", ";", None))))


# -- the walker ---------------------------------------------------------------------------------

def describe(value: object) -> str:
    """A JSON value's type in words, for messages: "a boolean", "null", "an array"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value.is_integer() and abs(value) >= 2**63:
            # orjson reads integers beyond 64 bits as floats: say what the user wrote
            return "an integer outside the 64-bit range"
        return "a number with a fraction or exponent"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _scalar_problem(f: Field, value: object) -> str | None:
    """Why a non-null value does not fit a String/Integer/Long/Boolean field; None if it fits."""
    kind = f.kind
    if kind is Kind.STRING:
        if type(value) is not str:
            return f"must be a string, got {describe(value)}"
        if f.choices is not None:
            if value in f.choices:
                return None
            return f"must be one of {', '.join(sorted(f.choices))}; got {value!r}"
        if f.min_len <= len(value) <= f.max_len:
            return None
        return f"must be {f.min_len} to {f.max_len} characters, got {len(value)}"
    if kind is Kind.BOOLEAN:
        return None if type(value) is bool else f"must be true or false, got {describe(value)}"
    if kind is Kind.NUMBER:
        if type(value) is not int and type(value) is not float:
            return f"must be a number, got {describe(value)}"
        if f.minimum <= value <= f.maximum:
            return None
        return f"must be between {f.minimum} and {f.maximum}, got {value}"
    # Integer or Long: `type(...) is int` keeps out booleans, floats such as 1.0, and strings
    if type(value) is not int:
        return f"must be an integer ({kind.value}), got {describe(value)}"
    if f.minimum <= value <= f.maximum:
        return None
    return f"must be between {f.minimum} and {f.maximum}, got {value}"


def _check_nested(f: Field, value: object, path: str, problems: list[Problem]) -> object:
    """Check an object or array field at `path`; return the value to send."""
    spec = f.spec
    assert spec is not None
    if f.kind is Kind.OBJECT:
        if type(value) is not dict:
            problems.append(Problem(path, f"must be an object ({spec.name}), "
                                    f"got {describe(value)}"))
            return value
        return _walk(spec, value, path, problems)
    if type(value) is not list:
        problems.append(Problem(path, f"must be an array of {spec.name} objects, "
                                f"got {describe(value)}"))
        return value
    if not f.min_len <= len(value) <= f.max_len:
        problems.append(Problem(path, f"must have {f.min_len} to {f.max_len} items, "
                                f"got {len(value)}"))
    items: list[object] = []
    for i, item in enumerate(value):
        item_path = f"{path}[{i}]"
        if type(item) is not dict:  # a null item too: items are objects (docs/reference.md §10)
            problems.append(Problem(item_path, f"must be an object ({spec.name}), "
                                    f"got {describe(item)}"))
            items.append(item)
        else:
            items.append(_walk(spec, item, item_path, problems))
    return items


def _walk(spec: ObjectSpec, data: dict[str, Any], path: str,
          problems: list[Problem]) -> dict[str, Any]:
    fields = spec.fields
    out: dict[str, Any] = {}
    for key, value in data.items():
        f = fields.get(key)
        if f is None:
            # checked before the null test: a typo must never pass, even with a null value
            problems.append(Problem(f"{path}.{key}", _unknown(spec, key)))
        elif value is None:  # null means "absent": dropped, as the official SDKs do
            continue
        elif f.spec is None:
            message = _scalar_problem(f, value)
            if message is not None:
                problems.append(Problem(f"{path}.{key}", message))
            out[key] = value
        else:
            out[key] = _check_nested(f, value, f"{path}.{key}", problems)
    if spec.required:
        problems.extend(Problem(f"{path}.{key}", f"required in every {spec.name}")
                        for key in spec.required if key not in out)
    for rule in spec.checks:
        if rule.key in out:
            rule.check(out, path, problems)
    return out


def _unknown(spec: ObjectSpec, key: str) -> str:
    msg = f"unknown field {key!r} (not in {spec.name})"
    close = difflib.get_close_matches(key, spec.fields, n=1, cutoff=0.75)
    return f"{msg}; did you mean {close[0]!r}?" if close else msg


def validate(body: object, path: str = "body",
             spec: ObjectSpec = PUT_TASK_REQ) -> tuple[dict[str, Any], list[Problem]]:
    """Check `body` against `spec`; return (body without nulls, every problem found).

    The body is fit to send only when the problem list is empty.
    """
    problems: list[Problem] = []
    if type(body) is not dict:
        problems.append(Problem(path, f"must be an object ({spec.name}), got {describe(body)}"))
        return {}, problems
    out = _walk(spec, body, path, problems)
    if not out and not problems:
        problems.append(Problem(path, "nothing to update: the body has no field left to send"))
    return out, problems

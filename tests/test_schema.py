"""The UpdateTask body schema: its tables equal a transcription of Tables 3-12 of the reference
page, field by field; the walker is checked once per kind of rule, then the cross-field rules."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings

from batchsms.lines import schema
from batchsms.lines.bodies import canonical_json
from batchsms.lines.reader import Line, parse_line
from batchsms.lines.schema import (
    INT32_MAX,
    INT64_MAX,
    PUT_TASK_REQ,
    Field,
    Kind,
    ObjectSpec,
    validate,
)
from tests.properties import BOUNDED, any_values, check_body, examples, from_spec, json_values

# -- an independent transcription of Tables 3-12 (000_f58e3cbd141f1d2b.txt) --------------------
# ("S", min, max) String length · ("E", values) enumeration · ("I", min, max) Integer ·
# ("L", min, max) Long · ("B",) Boolean · ("O", table) object · ("A", table, min, max) array
S255 = ("S", 0, 255)
L64 = ("L", 0, 9223372036854775807)
I32 = ("I", 0, 2147483647)
B = ("B",)
DEVICE_USE = ("E", ("NORMAL", "OS", "BOOT"))

TABLES: dict[str, dict[str, tuple[Any, ...]]] = {
    "PutTaskReq": {  # Table 3
        "name": ("S", 1, 64),
        "type": ("E", ("MIGRATE_FILE", "MIGRATE_BLOCK")),
        "region_id": S255, "region_name": S255, "exist_server": B,
        "migration_ip": S255, "use_ipv6": B, "use_public_ip": B,
        "speed_limit": ("I", 0, 1000),
        "project_name": S255, "project_id": S255,
        "enterprise_project": ("S", 0, 36),
        "image_disk_id": S255,
        "vm_template_id": ("S", 0, 100),
        "target_disk_ids": ("S", 0, 16384),
        "snapshot_ids": ("S", 0, 1024),
        "cutovered_snapshot_ids": ("S", 0, 1024),
        "target_server": ("O", "TargetServer"),
        "clone_server": ("O", "CloneServer"),
    },
    "TargetServer": {  # Table 4
        "id": S255, "ip": S255, "name": S255, "hostname": S255,
        "os_type": ("E", ("WINDOWS", "LINUX")),
        "os_version": S255,
        "firmware": ("E", ("BIOS", "UEFI")),
        "cpu_quantity": ("I", 0, 65535),
        "memory": L64,
        "btrfs_list": ("A", "BtrfsFileSystem", 0, 65535),
        "networks": ("A", "NetWork", 0, 65535),
        "domain_id": S255, "has_rsync": B, "paravirtualization": B, "raw_devices": S255,
        "driver_files": B, "system_services": B, "account_rights": B,
        "boot_loader": ("E", ("GRUB", "LILO")),
        "system_dir": S255,
        "volume_groups": ("A", "VolumeGroups", 0, 65535),
        "vm_id": S255, "flavor": S255,
        "disks": ("A", "TargetDisk", 0, 65535),
        "image_disk_id": S255, "snapshot_ids": S255, "cutovered_snapshot_ids": S255,
    },
    "BtrfsFileSystem": {  # Table 5
        "name": S255, "label": S255, "uuid": S255, "device": S255,
        "size": L64, "nodesize": L64, "sectorsize": I32,
        "data_profile": S255, "system_profile": S255, "metadata_profile": S255,
        "global_reserve1": S255, "g_vol_used_size": L64,
        "default_subvolid": S255, "default_subvol_name": S255, "default_subvol_mountpath": S255,
        "subvolumn": ("A", "BtrfsSubvolumn", 0, 65535),
    },
    "BtrfsSubvolumn": {  # Table 6
        "uuid": S255, "is_snapshot": S255, "subvol_id": S255, "parent_id": S255,
        "subvol_name": S255, "subvol_mount_path": S255,
    },
    "NetWork": {  # Table 7
        "name": S255, "ip": S255, "ipv6": S255, "netmask": S255, "gateway": S255,
        "mtu": I32, "mac": S255, "id": S255,
    },
    "VolumeGroups": {  # Table 8
        "components": S255, "free_size": L64,
        "logical_volumes": ("A", "LogicalVolumes", 0, 50),
        "name": S255, "size": L64,
    },
    "LogicalVolumes": {  # Table 9
        "block_count": I32, "block_size": ("L", 0, 1048576), "file_system": S255,
        "inode_size": I32, "inode_nums": L64,
        "device_use": S255,  # "无强约束": common values listed, not an enumeration
        "mount_point": ("S", 0, 256), "name": ("S", 0, 1024),
        "size": L64, "used_size": L64, "free_size": L64,
    },
    "TargetDisk": {  # Table 10
        "id": L64, "device_use": DEVICE_USE, "disk_id": S255, "name": S255,
        "physical_volumes": ("A", "TargetPhysicalVolumes", 0, 65535),
        "size": L64, "used_size": L64, "disk_index": S255, "os_disk": B,
        "partition_style": ("E", ("MBR", "GPT")),
        "relation_name": S255,
    },
    "TargetPhysicalVolumes": {  # Table 11
        "id": L64, "device_use": DEVICE_USE, "file_system": S255, "index": I32,
        "mount_point": S255, "name": S255, "size": L64, "used_size": L64, "uuid": S255,
        "relation_name": S255, "free_size": L64,
    },
    "CloneServer": {  # Table 12
        "vm_id": S255, "name": S255, "clone_error": S255,
        "clone_state": ("E", ("NOT_READY", "READY", "PREPARING", "CREATING", "ERROR", "FINISHED")),
        "error_msg": ("S", 0, 1024),
    },
}

MAC = "fa:16:3e:00:00:01"

# Where an object of each table sits in a body: wrap(obj) -> body, and the path of obj.
# NetWork and TargetPhysicalVolumes sit at index 1, after a sibling, to test item paths.
HOSTS: dict[str, tuple[Callable[[Any], dict[str, Any]], str]] = {
    "PutTaskReq": (lambda o: o, "body"),
    "TargetServer": (lambda o: {"target_server": o}, "body.target_server"),
    "CloneServer": (lambda o: {"clone_server": o}, "body.clone_server"),
    "BtrfsFileSystem": (lambda o: {"target_server": {"btrfs_list": [o]}},
                        "body.target_server.btrfs_list[0]"),
    "BtrfsSubvolumn": (lambda o: {"target_server": {"btrfs_list": [{"subvolumn": [o]}]}},
                       "body.target_server.btrfs_list[0].subvolumn[0]"),
    "NetWork": (lambda o: {"target_server": {"networks": [{"mac": MAC}, {"mac": "", **o}]}},
                "body.target_server.networks[1]"),
    "VolumeGroups": (lambda o: {"target_server": {"volume_groups": [o]}},
                     "body.target_server.volume_groups[0]"),
    "LogicalVolumes": (lambda o: {"target_server": {"volume_groups": [{"logical_volumes": [o]}]}},
                       "body.target_server.volume_groups[0].logical_volumes[0]"),
    "TargetDisk": (lambda o: {"target_server": {"disks": [o]}}, "body.target_server.disks[0]"),
    "TargetPhysicalVolumes": (
        lambda o: {"target_server": {"disks": [{"physical_volumes": [{}, o]}]}},
        "body.target_server.disks[0].physical_volumes[1]"),
}


def all_specs() -> dict[str, ObjectSpec]:
    """Every table reachable from PutTaskReq, by walking the schema (not by listing it)."""
    found: dict[str, ObjectSpec] = {}
    todo = [schema.PUT_TASK_REQ]
    while todo:
        spec = todo.pop()
        if spec.name in found:
            continue
        found[spec.name] = spec
        todo.extend(f.spec for f in spec.fields.values() if f.spec is not None)
    return found


def as_row(f: Field) -> tuple[Any, ...]:
    """A schema Field in the transcription's notation."""
    if f.kind is Kind.STRING:
        if f.choices is not None:
            return ("E", f.choices)
        return ("S", f.min_len, f.max_len)
    if f.kind is Kind.INTEGER:
        return ("I", f.minimum, f.maximum)
    if f.kind is Kind.LONG:
        return ("L", f.minimum, f.maximum)
    if f.kind is Kind.BOOLEAN:
        return ("B",)
    assert f.spec is not None
    if f.kind is Kind.OBJECT:
        return ("O", f.spec.name)
    return ("A", f.spec.name, f.min_len, f.max_len)


def normalised(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return ("E", frozenset(row[1])) if row[0] == "E" else row


# -- the schema is exactly the tables -----------------------------------------------------------


def test_schema_has_exactly_the_tables() -> None:
    """Tables 3-12 and nothing else are reachable from PutTaskReq."""
    assert set(all_specs()) == set(TABLES)


@pytest.mark.parametrize("table", sorted(TABLES))
def test_table_fields_match_the_reference_page(table: str) -> None:
    """Each table's field names, types and limits equal the transcription."""
    spec = all_specs()[table]
    assert set(spec.fields) == set(TABLES[table])
    for name, f in spec.fields.items():
        assert as_row(f) == normalised(TABLES[table][name]), f"{table}.{name}"


def test_integer_and_long_bounds() -> None:
    """Integer is 32-bit, Long 64-bit, as the tables give them."""
    assert INT32_MAX == 2**31 - 1
    assert INT64_MAX == 2**63 - 1


# -- per kind of rule: one accepted and one rejected case through the walker --------------------
# The tables are data (checked above against the transcription), the walker is one function:
# each of its branches is exercised once here, on a real field of that kind, at its real limits.


def id_list(n: int, sep: str, item: int = 200) -> str:
    """n characters of sep-separated IDs, none empty, none over `item` characters."""
    text = (("i" * (item - 1) + sep) * (n // item + 1))[:n]
    return text[:-1] + "i" if text.endswith(sep) else text


STRING_TYPES: tuple[object, ...] = (1, 1.5, True, [], {})
NUMBER_TYPES: tuple[object, ...] = (True, False, 1.0, 1000.0, "100", "", [], {})

# (table, field, rule, value, accepted)
RULES: list[tuple[str, str, str, object, bool]] = [
    # String: characters (not bytes, not UTF-16 units) between min and max length
    ("CloneServer", "error_msg", "min", "", True),
    ("CloneServer", "error_msg", "max", "中" * 1024, True),
    ("CloneServer", "error_msg", "max ascii", "a" * 1024, True),
    ("CloneServer", "error_msg", "max astral", "\U0001f600" * 1024, True),
    ("CloneServer", "error_msg", "max+1", "中" * 1025, False),
    ("PutTaskReq", "name", "min", "中", True),
    ("PutTaskReq", "name", "min-1", "", False),
    ("PutTaskReq", "name", "max", "中" * 64, True),
    ("PutTaskReq", "name", "max+1", "中" * 65, False),
    # the length rule beside a cross-field rule: the longest valid ID lists pass, one more fails
    ("PutTaskReq", "target_disk_ids", "max", id_list(16384, " "), True),
    ("PutTaskReq", "target_disk_ids", "max+1", id_list(16385, " "), False),
    ("PutTaskReq", "snapshot_ids", "max", id_list(1024, ";"), True),
    ("PutTaskReq", "snapshot_ids", "max+1", id_list(1025, ";"), False),
    *[("TargetServer", "hostname", f"type {bad!r}", bad, False) for bad in STRING_TYPES],
    # enumeration: exact, case-sensitive, no padding; the type is checked first
    ("TargetDisk", "partition_style", "enum MBR", "MBR", True),
    ("TargetDisk", "partition_style", "enum GPT", "GPT", True),
    ("TargetDisk", "partition_style", "enum lower", "mbr", False),
    ("TargetDisk", "partition_style", "enum padded", " MBR", False),
    ("TargetDisk", "partition_style", "enum empty", "", False),
    *[("TargetDisk", "partition_style", f"type {bad!r}", bad, False) for bad in STRING_TYPES],
    # Integer and Long: an int (not a bool, not a float such as 1.0, not a string) in range
    ("PutTaskReq", "speed_limit", "min", 0, True),
    ("PutTaskReq", "speed_limit", "max", 1000, True),
    ("PutTaskReq", "speed_limit", "min-1", -1, False),
    ("PutTaskReq", "speed_limit", "max+1", 1001, False),
    *[("PutTaskReq", "speed_limit", f"type {bad!r}", bad, False) for bad in NUMBER_TYPES],
    ("LogicalVolumes", "block_size", "max", 1_048_576, True),
    ("LogicalVolumes", "block_size", "max+1", 1_048_577, False),
    ("TargetServer", "memory", "max", INT64_MAX, True),
    ("TargetServer", "memory", "max+1", INT64_MAX + 1, False),
    ("TargetServer", "memory", "min-1", -1, False),
    ("TargetServer", "memory", "type 2**63 as a float", float(INT64_MAX), False),
    *[("TargetServer", "memory", f"type {bad!r}", bad, False) for bad in NUMBER_TYPES],
    # Boolean: true or false, nothing truthy
    ("PutTaskReq", "use_ipv6", "true", True, True),
    ("PutTaskReq", "use_ipv6", "false", False, True),
    *[("PutTaskReq", "use_ipv6", f"type {bad!r}", bad, False)
      for bad in (0, 1, "true", "false", [], {})],
    # object
    ("PutTaskReq", "clone_server", "empty object", {}, True),
    *[("PutTaskReq", "clone_server", f"type {bad!r}", bad, False) for bad in ([], "x", 1, True)],
    # array of objects (its item count: test_array_item_count_* below)
    ("TargetServer", "disks", "empty", [], True),
    *[("TargetServer", "disks", f"type {bad!r}", bad, False) for bad in ({}, "x", 1, True)],
]


@pytest.mark.parametrize(("table", "field", "rule", "value", "accepted"), RULES,
                         ids=[f"{t}.{f}-{r}-{'ok' if a else 'bad'}" for t, f, r, _, a in RULES])
def test_field_rule(table: str, field: str, rule: str, value: object, accepted: bool) -> None:
    """One field, one rule: the value is accepted, or rejected with exactly one problem there."""
    wrap, path = HOSTS[table]
    body = wrap({field: value})
    clean, problems = validate(body)
    if accepted:
        assert problems == []
        assert clean == body
    else:
        assert [p.path for p in problems] == [f"{path}.{field}"], problems
        assert problems[0].message


def test_every_kind_of_rule_is_exercised_both_ways() -> None:
    """Each kind of field in the tables has an accepted and a rejected case above."""
    kinds = {row[0] for rows in TABLES.values() for row in rows.values()}
    covered = {(TABLES[t][f][0], a) for t, f, _, _, a in RULES}
    assert covered == {(kind, accepted) for kind in kinds for accepted in (True, False)}


ITEM = ObjectSpec("Item", {"n": Field(Kind.INTEGER, maximum=9)})
ONE_TO_THREE = ObjectSpec("Bounded", {"items": Field(Kind.ARRAY, min_len=1, max_len=3, spec=ITEM)})


@pytest.mark.parametrize(("count", "ok"), [(0, False), (1, True), (3, True), (4, False)])
def test_array_item_count_bounds(count: int, ok: bool) -> None:
    """The walker's min/max item rule, on a small synthetic table: the limits are inclusive."""
    _, problems = validate({"items": [{"n": 1}] * count}, spec=ONE_TO_THREE)
    expected = [] if ok else [("body.items", f"must have 1 to 3 items, got {count}")]
    assert [(p.path, p.message) for p in problems] == expected


def test_array_item_count_at_the_tables_limit() -> None:
    """The tables' 65535-item arrays: the limit passes, one more item is the one problem."""
    wrap, path = HOSTS["TargetServer"]
    items: list[dict[str, Any]] = [{}] * 65535
    assert validate(wrap({"disks": items}))[1] == []
    _, problems = validate(wrap({"disks": [*items, {}]}))
    assert [(p.path, p.message) for p in problems] == [
        (f"{path}.disks", "must have 0 to 65535 items, got 65536")]


@pytest.mark.parametrize("table", sorted(TABLES))
def test_null_is_dropped_for_every_field(table: str) -> None:
    """null means absent, for every field: nothing to check, nothing sent."""
    wrap, _ = HOSTS[table]
    # (a null `mac` of a later network is a missing required key: test_mac_key_required...)
    body = wrap(dict.fromkeys(f for f in TABLES[table] if (table, f) != ("NetWork", "mac")))
    clean, problems = validate({**body, "speed_limit": 1})
    assert problems == []
    expected = {} if table == "PutTaskReq" else wrap({})
    assert clean == {**expected, "speed_limit": 1}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_unknown_field_at_every_depth(table: str) -> None:
    """An unknown field is named with its full path, in every table."""
    wrap, path = HOSTS[table]
    _, problems = validate(wrap({"bogus": 1}))
    assert [p.path for p in problems] == [f"{path}.bogus"]
    assert "unknown field 'bogus'" in problems[0].message
    assert table in problems[0].message


@pytest.mark.parametrize("table", sorted(TABLES))
def test_unknown_field_with_null_value_is_still_an_error(table: str) -> None:
    """A typo must not pass silently even when its value is null."""
    wrap, path = HOSTS[table]
    _, problems = validate({**wrap({"speedlimit": None}), "use_ipv6": False}
                           if table != "PutTaskReq" else {"speedlimit": None, "use_ipv6": False})
    assert [p.path for p in problems] == [f"{path}.speedlimit"]


def test_typo_suggests_the_field() -> None:
    """`speedlimit` is rejected and points at `speed_limit`."""
    _, problems = validate({"speedlimit": 200})
    assert problems[0].path == "body.speedlimit"
    assert "did you mean 'speed_limit'" in problems[0].message


def test_logical_volumes_max_50() -> None:
    """LogicalVolumes is the one array bounded at 50 items."""
    wrap, path = HOSTS["VolumeGroups"]
    assert validate(wrap({"logical_volumes": [{}] * 50}))[1] == []
    _, problems = validate(wrap({"logical_volumes": [{}] * 51}))
    assert [(p.path, p.message) for p in problems] == [
        (f"{path}.logical_volumes", "must have 0 to 50 items, got 51")]


def test_huge_integers() -> None:
    """Integers past 64 bits, and Long values past Integer, are judged by the right bound."""
    assert validate({"target_server": {"cpu_quantity": 65536}})[1][0].path == \
        "body.target_server.cpu_quantity"
    assert validate({"target_server": {"memory": INT32_MAX + 1}})[1] == []
    assert validate({"target_server": {"btrfs_list": [{"sectorsize": INT32_MAX + 1}]}})[1]
    assert validate({"speed_limit": 2**70})[1][0].message == \
        "must be between 0 and 1000, got 1180591620717411303424"
    assert validate({"speed_limit": -1})[1][0].path == "body.speed_limit"


def test_integer_beyond_64_bits_is_named_as_such() -> None:
    """orjson reads an integer past 64 bits as a float: the message says what the user wrote."""
    line = parse_line(1, b'{"task_id": "t", "body": {"target_server": {"memory": '
                         b'18446744073709551616}}}')
    assert isinstance(line, Line)
    _, problems = validate(line.body)
    assert problems[0].path == "body.target_server.memory"
    assert "outside the 64-bit range" in problems[0].message
    _, problems = validate({"speed_limit": 1.5})
    assert "fraction or exponent" in problems[0].message


def test_messages_name_the_problem() -> None:
    """Messages say what was expected and what was found."""
    _, problems = validate({"speed_limit": True, "type": "migrate_file", "name": "x" * 65,
                            "use_ipv6": 1, "target_server": []})
    assert [p.as_dict() for p in problems] == [
        {"path": "body.speed_limit", "message": "must be an integer (Integer), got a boolean"},
        {"path": "body.type", "message": "must be one of MIGRATE_BLOCK, MIGRATE_FILE; "
                                         "got 'migrate_file'"},
        {"path": "body.name", "message": "must be 1 to 64 characters, got 65"},
        {"path": "body.use_ipv6", "message": "must be true or false, got an integer"},
        {"path": "body.target_server", "message": "must be an object (TargetServer), "
                                                  "got an array"},
    ]
    assert validate({"speed_limit": 1.0})[1][0].message == \
        "must be an integer (Integer), got a number with a fraction or exponent"
    assert validate({"speed_limit": "100"})[1][0].message == \
        "must be an integer (Integer), got a string"


# -- cross-field rules (CONTRACT §2) -----------------------------------------------------------


@pytest.mark.parametrize(("name", "ok"), [
    ("MigrationTask", True),
    ("迁移任务_web-01", True),
    ("\u4e00", True),
    ("\u9fa5", True),
    ("0123456789", True),
    ("AZaz_-", True),
    ("中" * 64, True),
    ("\u9fa6", False),   # just past the range
    ("\u4dff", False),   # just before it
    ("１２３", False),    # full-width digits
    ("Ａ", False),        # full-width letter
    ("٣", False),         # Arabic-Indic digit: \d would take it
    ("é", False),
    ("a b", False),
    ("a.b", False),
    ("\U0001f600", False),
    ("tab\t", False),
])
def test_name_charset(name: str, ok: bool) -> None:
    """name: Chinese U+4E00-U+9FA5, '_', '-', ASCII digits and letters only."""
    _, problems = validate({"name": name})
    if ok:
        assert problems == []
    else:
        assert [p.path for p in problems] == ["body.name"]
        assert "only Chinese characters" in problems[0].message


def test_name_length_and_charset_both_reported() -> None:
    """A name that is too long and has a bad character gets both problems."""
    _, problems = validate({"name": "é" * 65})
    assert [p.path for p in problems] == ["body.name", "body.name"]
    assert validate({"name": ""})[1][0].message == "must be 1 to 64 characters, got 0"


@pytest.mark.parametrize(("body", "ok"), [
    ({"migration_ip": "192.0.2.10"}, True),
    ({"migration_ip": "192.0.2.10", "use_ipv6": False}, True),
    ({"migration_ip": "192.0.2.10", "use_ipv6": None}, True),
    ({"migration_ip": "192.0.2.10", "use_ipv6": True}, False),
    ({"migration_ip": "2001:db8::1", "use_ipv6": True}, True),
    ({"migration_ip": "2001:db8::1"}, False),
    ({"migration_ip": "2001:db8::1", "use_ipv6": False}, False),
    ({"migration_ip": "", "use_ipv6": True}, True),
    ({"migration_ip": ""}, True),
    ({"migration_ip": None, "use_ipv6": True}, True),
    ({"migration_ip": "256.1.1.1"}, False),
    ({"migration_ip": "1.2.3"}, False),
    ({"migration_ip": " 192.0.2.10"}, False),
    ({"migration_ip": "host.example.com"}, False),
    ({"migration_ip": "::ffff:192.0.2.1", "use_ipv6": True}, True),
])
def test_migration_ip_against_use_ipv6(body: dict[str, Any], ok: bool) -> None:
    """migration_ip, when non-empty: IPv6 if use_ipv6 is true, else IPv4."""
    _, problems = validate(body)
    if ok:
        assert problems == []
    else:
        assert [p.path for p in problems] == ["body.migration_ip"]


def test_migration_ip_too_long() -> None:
    """A 256-character migration_ip breaks the length rule (and is no address)."""
    _, problems = validate({"migration_ip": "1" * 256})
    assert {p.path for p in problems} == {"body.migration_ip"}
    assert any("255 characters" in p.message for p in problems)


@pytest.mark.parametrize(("value", "ok"), [
    ("vol-1", True),
    ("vol-1 vol-2 vol-3", True),
    ("x" * 255, True),
    ("a " + "x" * 255, True),
    ("x" * 256, False),
    ("a " + "x" * 256 + " b", False),
    ("a  b", False),   # an empty ID between two spaces
    ("a ", False),
    ("", True),
])
def test_target_disk_ids(value: str, ok: bool) -> None:
    """target_disk_ids: space-separated, each ID 1-255 characters."""
    _, problems = validate({"target_disk_ids": value, "speed_limit": 1})
    if ok:
        assert problems == []
    else:
        assert [p.path for p in problems] == ["body.target_disk_ids"]


@pytest.mark.parametrize(("value", "ok"), [
    ("snap-1", True),
    ("snap-1;snap-2", True),
    ("x" * 300, True),  # no per-ID bound, only the field's 1024
    ("snap-1;;snap-2", False),
    (";snap-1", False),
    ("snap-1 snap-2", True),  # spaces are part of an ID here
])
def test_snapshot_ids(value: str, ok: bool) -> None:
    """snapshot_ids: ';'-separated, no empty ID."""
    _, problems = validate({"snapshot_ids": value})
    if ok:
        assert problems == []
    else:
        assert [p.path for p in problems] == ["body.snapshot_ids"]


def test_target_server_snapshot_ids_are_not_split() -> None:
    """The splitting rule is Table 3's; Table 4's snapshot_ids is a plain string."""
    assert validate({"target_server": {"snapshot_ids": "a;;b"}})[1] == []


@pytest.mark.parametrize(("networks", "ok"), [
    ([], True),
    ([{"mac": MAC}], True),
    ([{"mac": MAC}, {"name": "eth1", "mac": ""}], True),
    ([{"mac": MAC}, {"mac": ""}], True),
    ([{"name": "eth0"}], False),
    ([{"mac": ""}], False),
    ([{"mac": None}], False),
    ([{}], False),
    ([{"mac": ""}, {"mac": MAC}], False),
])
def test_first_network_mac(networks: list[Any], ok: bool) -> None:
    """networks[0].mac must be non-empty when networks is non-empty; missing counts as empty."""
    _, problems = validate({"target_server": {"networks": networks}})
    if ok:
        assert problems == []
    else:
        assert [p.path for p in problems] == ["body.target_server.networks[0].mac"]


@pytest.mark.parametrize("later", [{"name": "eth1"}, {"mac": None}])
def test_mac_key_required_on_every_network(later: dict[str, Any]) -> None:
    """The SDK's NetWork model requires `mac` on every entry; after the first it may be ""."""
    _, problems = validate({"target_server": {"networks": [{"mac": MAC}, later, {"mac": ""}]}})
    assert [p.path for p in problems] == ["body.target_server.networks[1].mac"]


@pytest.mark.parametrize("body", [{}, {"speed_limit": None},
                                  dict.fromkeys(TABLES["PutTaskReq"])])
def test_nothing_to_update(body: dict[str, Any]) -> None:
    """A body with no field left to send is an error at `body`."""
    clean, problems = validate(body)
    assert clean == {}
    assert [p.path for p in problems] == ["body"]
    assert "nothing to update" in problems[0].message


def test_nested_empty_object_is_allowed() -> None:
    """Only the top level can be "nothing to update"; a nested {} is sent as is."""
    assert validate({"target_server": {}}) == ({"target_server": {}}, [])
    assert validate({"clone_server": {"name": None}}) == ({"clone_server": {}}, [])


@pytest.mark.parametrize("body", [[], "x", 1, None, True, 1.5])
def test_body_must_be_an_object(body: object) -> None:
    """A body that is not an object is one problem at `body`."""
    assert [p.path for p in validate(body)[1]] == ["body"]


def test_null_array_item_is_an_error() -> None:
    """Array items are objects; a null item is not dropped but reported."""
    _, problems = validate({"target_server": {"disks": [{}, None],
                                              "btrfs_list": [{"subvolumn": [None, 3]}]}})
    assert [(p.path, p.message) for p in problems] == [
        ("body.target_server.disks[1]", "must be an object (TargetDisk), got null"),
        ("body.target_server.btrfs_list[0].subvolumn[0]",
         "must be an object (BtrfsSubvolumn), got null"),
        ("body.target_server.btrfs_list[0].subvolumn[1]",
         "must be an object (BtrfsSubvolumn), got an integer"),
    ]


def test_nested_path_is_exact() -> None:
    """Problems deep in the tree carry the full path with indexes."""
    body = {"target_server": {"disks": [{}, {"physical_volumes": [
        {"device_use": "OS"}, {"device_use": "os"}]}]}}
    _, problems = validate(body)
    assert [p.path for p in problems] == [
        "body.target_server.disks[1].physical_volumes[1].device_use"]


def test_all_problems_of_a_body_are_reported() -> None:
    """A body with five distinct problems gets five, in document order."""
    body = {
        "speedlimit": 1,
        "speed_limit": 1001,
        "target_server": {"os_type": "linux",
                          "disks": [{"physical_volumes": [{}, {"index": -1}]}]},
        "clone_server": {"clone_state": ""},
    }
    _, problems = validate(body)
    assert [p.path for p in problems] == [
        "body.speedlimit",
        "body.speed_limit",
        "body.target_server.os_type",
        "body.target_server.disks[0].physical_volumes[1].index",
        "body.clone_server.clone_state",
    ]


def test_cross_field_problems_come_with_the_field_problems() -> None:
    """Rule problems (name, migration_ip, mac) are reported beside type/range problems."""
    body = {"name": "web 01", "migration_ip": "::1", "speed_limit": -1,
            "target_server": {"networks": [{"mtu": "1500"}]}}
    _, problems = validate(body)
    assert sorted(p.path for p in problems) == sorted([
        "body.name", "body.migration_ip", "body.speed_limit",
        "body.target_server.networks[0].mtu", "body.target_server.networks[0].mac"])


def test_clean_body_drops_nulls_at_every_depth() -> None:
    """The body to send has no null anywhere."""
    body = {"speed_limit": 5, "clone_server": None,
            "target_server": {"vm_id": None, "disks": [{"name": None, "physical_volumes": [
                {"uuid": None, "index": 2}]}]}}
    clean, problems = validate(body)
    assert problems == []
    assert clean == {"speed_limit": 5, "target_server": {"disks": [{"physical_volumes": [
        {"index": 2}]}]}}


def test_validate_does_not_modify_its_input() -> None:
    """The input body is left as it was."""
    body = {"speed_limit": 5, "target_server": {"vm_id": None}}
    snapshot = json.dumps(body)
    validate(body)
    assert json.dumps(body) == snapshot


# -- properties: any body gives problems under `body`, or round-trips ---------------------------


@settings(BOUNDED, max_examples=examples(400))
@given(from_spec(PUT_TASK_REQ) | any_values)
def test_any_body_gives_problems_under_body_or_round_trips(body: object) -> None:
    check_body(body)


@settings(BOUNDED, max_examples=examples(300))
@given(from_spec(PUT_TASK_REQ))
def test_bodies_from_the_tables_round_trip_when_accepted(body: dict[str, Any]) -> None:
    if check_body(body):  # the same body with its keys in another order: the same bytes
        reordered = dict(reversed(list(body.items())))
        assert canonical_json(validate(reordered)[0]) == canonical_json(validate(body)[0])


@settings(BOUNDED, max_examples=examples(150))
@given(json_values)
def test_any_json_at_every_nested_place_gives_problems_there_or_round_trips(value: object) -> None:
    """Any JSON value where an object, an array or an array's item belongs."""
    for body in ({"target_server": value}, {"target_server": {"disks": [value]}},
                 {"target_server": {"networks": value}},
                 {"target_server": {"volume_groups": [{"logical_volumes": value}]}}):
        check_body(body)


# -- the reference page's own example request --------------------------------------------------

# Copied verbatim from the "请求示例" of the reference page.
SEED_EXAMPLE = r'''{
  "name" : "MigrationTask",
  "type" : "MIGRATE_BLOCK",
  "os_type" : "WINDOWS",
  "state" : "RUNNING",
  "estimate_complete_time" : null,
  "create_date" : 1598435778000,
  "start_date" : 1598435784000,
  "finish_date" : null,
  "priority" : 1,
  "speed_limit" : 0,
  "migrate_speed" : 0.0,
  "start_target_server" : true,
  "error_json" : "",
  "total_time" : 115,
  "float_ip" : null,
  "migration_ip" : null,
  "vm_template_id" : "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxx0001",
  "region_name" : "region name",
  "region_id" : "region id",
  "project_name" : "project name",
  "project_id" : "xxxxxxxxxxxxxxxxxxxxxxxx00000001",
  "sub_tasks" : [ {
    "id" : 7278,
    "name" : "CREATE_CLOUD_SERVER",
    "progress" : 0,
    "start_date" : 1598435802000,
    "end_date" : null,
    "user_op" : "REPLICATE"
  }, {
    "id" : 7279,
    "name" : "SSL_CONFIG",
    "progress" : 0,
    "start_date" : null,
    "end_date" : null,
    "user_op" : "REPLICATE"
  }, {
    "id" : 7280,
    "name" : "ATTACH_AGENT_IMAGE",
    "progress" : 0,
    "start_date" : null,
    "end_date" : null,
    "user_op" : "REPLICATE"
  }, {
    "id" : 7281,
    "name" : "FORMAT_DISK_WINDOWS",
    "progress" : 0,
    "start_date" : null,
    "end_date" : null,
    "user_op" : "REPLICATE"
  }, {
    "id" : 7282,
    "name" : "MIGRATE_WINDOWS_BLOCK",
    "progress" : 0,
    "start_date" : null,
    "end_date" : null,
    "user_op" : "REPLICATE"
  } ],
  "source_server" : {
    "id" : "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxx0001",
    "ip" : "192.168.0.154",
    "name" : "name-win16",
    "os_type" : "WINDOWS",
    "os_version" : "WINDOWS2016_64BIT",
    "agent_version" : "1.2.0",
    "oem_system" : false,
    "state" : "initialize",
    "migration_cycle" : "replicating"
  },
  "target_server" : {
    "id" : "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxx0001",
    "vm_id" : "",
    "name" : "",
    "ip" : null,
    "os_type" : "WINDOWS",
    "os_version" : "WINDOWS2016_64BIT",
    "system_dir" : "Y:\\Windows\\System32",
    "disks" : [ {
      "id" : 88008,
      "name" : "Disk 1",
      "relation_name" : null,
      "disk_id" : "0",
      "partition_style" : "MBR",
      "size" : 42949672960,
      "used_size" : 42947575808,
      "device_use" : "OS",
      "os_disk" : true,
      "physical_volumes" : [ {
        "id" : 135055,
        "uuid" : "\\\\?\\Volume{586b7157-0000-0000-0000-100000000000}\\",
        "index" : 1,
        "name" : "Z:",
        "relation_name" : null,
        "device_use" : "BOOT",
        "file_system" : "NTFS",
        "mount_point" : null,
        "size" : 524288000,
        "used_size" : 410275840,
        "free_size" : 114012160
      }, {
        "id" : 135056,
        "uuid" : "\\\\?\\Volume{586b7157-0000-0000-0000-501f00000000}\\",
        "index" : 2,
        "name" : "Y:",
        "relation_name" : null,
        "device_use" : "OS",
        "file_system" : "NTFS",
        "mount_point" : null,
        "size" : 42423287808,
        "used_size" : 23170301952,
        "free_size" : 19252985856
      } ],
      "disk_index" : "0"
    } ],
    "volume_groups" : [ ],
    "image_disk_id" : null,
    "cutovered_snapshot_ids" : null
  },
  "clone_server" : null
}'''

# Table 3 does not list these: read-only task fields of the response model.
NOT_IN_TABLE_3 = {"os_type", "state", "estimate_complete_time", "create_date", "start_date",
                  "finish_date", "priority", "migrate_speed", "start_target_server",
                  "error_json", "total_time", "float_ip", "sub_tasks", "source_server"}


def test_reference_example_is_rejected_exactly_for_fields_not_in_table_3() -> None:
    """Every field outside Table 3 is named (null ones too), and nothing else is reported."""
    body = json.loads(SEED_EXAMPLE)
    _, problems = validate(body)
    assert sorted(p.path for p in problems) == sorted(f"body.{k}" for k in NOT_IN_TABLE_3)
    assert all("unknown field" in p.message for p in problems)
    assert set(body) - set(TABLES["PutTaskReq"]) == NOT_IN_TABLE_3


def test_reference_example_is_accepted_without_those_fields() -> None:
    """Without the read-only fields the example is valid, and its nulls are dropped."""
    body = {k: v for k, v in json.loads(SEED_EXAMPLE).items() if k not in NOT_IN_TABLE_3}
    clean, problems = validate(body)
    assert problems == []
    assert "migration_ip" not in clean
    assert "clone_server" not in clean
    assert "ip" not in clean["target_server"]
    assert "mount_point" not in clean["target_server"]["disks"][0]["physical_volumes"][0]
    assert clean["target_server"]["disks"][0]["physical_volumes"][1]["uuid"] == \
        "\\\\?\\Volume{586b7157-0000-0000-0000-501f00000000}\\"

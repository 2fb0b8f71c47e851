"""Planning: body layering (--patch < --set < line), canonical bytes and their SHA-256."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchsms.errors import UsageError
from batchsms.lines.bodies import (
    Planned,
    Planner,
    build_defaults,
    canonical_json,
    deep_merge,
    parse_set,
)
from batchsms.lines.reader import InvalidLine, Line
from batchsms.lines.schema import PUT_TASK_REQ, validate
from tests.properties import BOUNDED, any_values, check_body, examples, from_spec

TID = "ef3b9722-07a0-40ae-89b0-889ee96d0001"


def plan(body: dict[str, Any] | None, defaults: dict[str, Any] | None = None) -> Planned:
    result = Planner(defaults).plan(Line(4, TID, "r", body))
    assert isinstance(result, Planned), result
    return result


# -- canonical bytes ----------------------------------------------------------------------------


def test_canonical_bytes() -> None:
    """Sorted keys at every depth, no spaces, non-ASCII as UTF-8, nulls dropped."""
    body = {"target_server": {"vm_id": "v", "name": None, "disks": [{"size": 1, "name": "盘"}]},
            "speed_limit": 200, "name": "迁移", "clone_server": None}
    planned = plan(body)
    expected = ('{"name":"迁移","speed_limit":200,'
                '"target_server":{"disks":[{"name":"盘","size":1}],"vm_id":"v"}}').encode()
    assert planned.body == expected
    assert planned.sha256 == hashlib.sha256(expected).hexdigest()
    assert (planned.number, planned.task_id, planned.ref) == (4, TID, "r")


def test_canonical_json_matches_a_reference_serialiser() -> None:
    """Same bytes as json.dumps(sort_keys, compact separators, ensure_ascii=False)."""
    value = {"b": [{"z": 1, "a": "é\u2028\"\\"}], "a": {"d": True, "c": "中"}, "A": 2**63 - 1}
    reference = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(value) == reference.encode()


def test_sha256_is_stable() -> None:
    """Key order, whitespace and nulls in the input do not change the hash."""
    a = plan({"speed_limit": 1, "target_server": {"flavor": "f", "vm_id": "v"}})
    b = plan(orjson.loads(b'{ "target_server" : {"vm_id":"v", "flavor":"f", "ip": null},'
                          b' "speed_limit" : 1, "clone_server": null }'))
    assert a.body == b.body
    assert a.sha256 == b.sha256
    # a fixed value: the same update has the same hash across runs and versions
    assert plan({"speed_limit": 200}).sha256 == hashlib.sha256(b'{"speed_limit":200}').hexdigest()


@settings(max_examples=examples(100), deadline=None)
@given(st.dictionaries(st.sampled_from(["speed_limit", "name", "region_id", "use_ipv6"]),
                       st.none() | st.integers(0, 1000) | st.text(alphabet="ab中_", min_size=1,
                                                                   max_size=5) | st.booleans()))
def test_canonical_is_independent_of_key_order(body: dict[str, Any]) -> None:
    """Reversing key order never changes the outcome of planning."""
    planner = Planner()
    one = planner.plan(Line(1, TID, None, body))
    two = planner.plan(Line(1, TID, None, dict(reversed(body.items()))))
    assert type(one) is type(two)
    if isinstance(one, Planned) and isinstance(two, Planned):
        assert one.body == two.body
        assert one.sha256 == two.sha256


# -- --set parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(("assignment", "expected"), [
    ("speed_limit=200", {"speed_limit": 200}),
    ("speed_limit=\"200\"", {"speed_limit": "200"}),
    ("use_ipv6=true", {"use_ipv6": True}),
    ("name=web-01", {"name": "web-01"}),
    ("name=", {"name": ""}),
    ("clone_server=null", {"clone_server": None}),
    ("migration_ip=10.0.0.1", {"migration_ip": "10.0.0.1"}),
    ("region_id=a=b", {"region_id": "a=b"}),
    ("target_server.flavor=s6.large.2", {"target_server": {"flavor": "s6.large.2"}}),
    ("target_server.networks=[{\"mac\": \"m\"}]", {"target_server": {"networks": [{"mac": "m"}]}}),
    ("a.b.c=1.5", {"a": {"b": {"c": 1.5}}}),
    ("name=迁移", {"name": "迁移"}),
])
def test_parse_set(assignment: str, expected: dict[str, Any]) -> None:
    """VALUE is JSON when it parses, else the string as given; FIELD is dotted."""
    assert parse_set(assignment) == expected


@pytest.mark.parametrize("assignment", ["speed_limit", "", "=1", ".a=1", "a.=1", "a..b=1",
                                        "target_server.=x"])
def test_parse_set_bad_forms(assignment: str) -> None:
    """Anything but FIELD=VALUE with a non-empty dotted FIELD is a usage error."""
    with pytest.raises(UsageError, match="expected FIELD=VALUE"):
        parse_set(assignment)


# -- layering -----------------------------------------------------------------------------------


def test_deep_merge() -> None:
    """Objects merge key by key; arrays and scalars are replaced; inputs are left alone."""
    base = {"a": 1, "t": {"x": 1, "y": [1, 2]}, "n": {"k": 1}}
    over = {"b": 2, "t": {"y": [3], "z": 3}, "n": 5}
    merged = deep_merge(base, over)
    assert merged == {"a": 1, "b": 2, "t": {"x": 1, "y": [3], "z": 3}, "n": 5}
    assert base == {"a": 1, "t": {"x": 1, "y": [1, 2]}, "n": {"k": 1}}


def test_precedence_patch_then_set_then_line() -> None:
    """--patch < --set < the line's own body, merged deeply."""
    patch = {"speed_limit": 10, "region_id": "patch",
             "target_server": {"flavor": "patch", "vm_id": "patch", "os_type": "LINUX"}}
    defaults = build_defaults(patch, ["speed_limit=20", "target_server.flavor=set",
                                      "target_server.vm_id=set"])
    assert defaults == {"speed_limit": 20, "region_id": "patch",
                        "target_server": {"flavor": "set", "vm_id": "set", "os_type": "LINUX"}}
    planned = plan({"speed_limit": 30, "target_server": {"vm_id": "line"}}, defaults)
    assert orjson.loads(planned.body) == {
        "speed_limit": 30, "region_id": "patch",
        "target_server": {"flavor": "set", "vm_id": "line", "os_type": "LINUX"}}


def test_later_set_wins() -> None:
    """Of two --set for one field, the later wins."""
    assert build_defaults(None, ["speed_limit=1", "speed_limit=2"]) == {"speed_limit": 2}


def test_line_without_body_takes_the_defaults() -> None:
    """A line with no body is sent the defaults; with an empty body too."""
    defaults = build_defaults(None, ["speed_limit=100"])
    assert plan(None, defaults).body == b'{"speed_limit":100}'
    assert plan({}, defaults).body == b'{"speed_limit":100}'


def test_line_without_body_and_defaults_is_invalid() -> None:
    """No body and no --set/--patch: invalid, with the problem at `body`."""
    result = Planner().plan(Line(7, TID, "r", None))
    assert isinstance(result, InvalidLine)
    assert (result.number, result.task_id, result.ref) == (7, TID, "r")
    assert [p.path for p in result.errors] == ["body"]
    assert Planner({}).plan(Line(7, TID, None, None)).errors[0].path == "body"  # type: ignore[union-attr]


def test_invalid_merged_body_reports_line_problems() -> None:
    """Problems of the merged body are reported under `body`, all of them."""
    defaults = build_defaults(None, ["speed_limit=100"])
    result = Planner(defaults).plan(Line(2, TID, None, {"speedlimit": 5, "type": "x"}))
    assert isinstance(result, InvalidLine)
    assert [p.path for p in result.errors] == ["body.speedlimit", "body.type"]


def test_line_overrides_defaults() -> None:
    """A line's value replaces a default; a line null removes it (merge-patch semantics)."""
    defaults = build_defaults(None, ["speed_limit=100", "region_id=r"])
    assert plan({"speed_limit": 5}, defaults).body == b'{"region_id":"r","speed_limit":5}'
    assert plan({"speed_limit": None}, defaults).body == b'{"region_id":"r"}'


@pytest.mark.parametrize(("patch", "sets", "where"), [
    (None, ["speed_limit=5000"], "defaults.speed_limit"),
    (None, ["speedlimit=5"], "defaults.speedlimit"),
    (None, ["speed_limit=\"100\""], "defaults.speed_limit"),
    (None, ["target_server.os_type=linux"], "defaults.target_server.os_type"),
    ({"state": "RUNNING"}, [], "defaults.state"),
    ({"speed_limit": None}, [], "defaults"),  # nothing to update
    ({"target_server": {"networks": [{"name": "eth0"}]}}, [], "defaults.target_server"),
])
def test_invalid_defaults_are_a_usage_error(patch: dict[str, Any] | None, sets: list[str],
                                            where: str) -> None:
    """--patch/--set that could never be valid stop the run before it starts."""
    with pytest.raises(UsageError, match="--patch/--set give an invalid body") as info:
        build_defaults(patch, sets)
    assert where in str(info.value)


def test_no_defaults() -> None:
    """No --patch and no --set: no defaults, nothing validated."""
    assert build_defaults(None, []) == {}
    assert build_defaults({}, []) == {}


def test_repeated_bodies_reuse_the_verdict_and_the_memo_stays_bounded() -> None:
    from batchsms.lines import bodies as plan_module
    from batchsms.lines.bodies import MEMO_SIZE, Planner
    from batchsms.lines.reader import InvalidLine, Line

    planner = Planner({"speed_limit": 200})
    first = planner.plan(Line(1, "a", None, None))
    second = planner.plan(Line(2, "b", "r", None))
    assert not isinstance(first, InvalidLine)
    assert not isinstance(second, InvalidLine)
    assert (second.number, second.task_id, second.ref) == (2, "b", "r")
    assert second.body == first.body == b'{"speed_limit":200}'
    assert second.sha256 == first.sha256

    bad = Planner()
    one = bad.plan(Line(1, "a", None, {"speedlimit": 1}))
    two = bad.plan(Line(2, "b", None, {"speedlimit": 1}))
    assert isinstance(one, InvalidLine)
    assert isinstance(two, InvalidLine)
    assert two.number == 2
    assert one.errors == two.errors

    # Same JSON bytes must mean the same verdict: 1 and 1.0 and true are different keys.
    typed = Planner()
    assert not isinstance(typed.plan(Line(1, "a", None, {"speed_limit": 1})), InvalidLine)
    assert isinstance(typed.plan(Line(2, "a", None, {"speed_limit": 1.0})), InvalidLine)
    assert isinstance(typed.plan(Line(3, "a", None, {"speed_limit": True})), InvalidLine)

    many = Planner()
    for i in range(MEMO_SIZE + 10):
        many.plan(Line(i + 1, "t", None, {"name": f"n{i}"}))
    assert len(many._memo) <= MEMO_SIZE
    assert plan_module.MEMO_SIZE == MEMO_SIZE


def test_body_nested_deeper_than_orjson_writes_is_reported_not_raised() -> None:
    from batchsms.lines.bodies import Planner
    from batchsms.lines.reader import InvalidLine, Line

    deep: object = {}
    for _ in range(600):
        deep = [deep]
    result = Planner().plan(Line(1, "t", None, {"target_server": {"disks": deep}}))
    assert isinstance(result, InvalidLine)
    assert result.errors[0].path == "body.target_server.disks[0]"


@settings(BOUNDED, max_examples=examples(200))
@given(from_spec(PUT_TASK_REQ), from_spec(PUT_TASK_REQ) | any_values)
def test_planner_sends_the_merged_body_canonically(defaults: dict[str, Any],
                                                   body: object) -> None:
    """--patch/--set under a line's own body: what is sent is validate(merge) in canonical form."""
    if validate(defaults, path="defaults")[1] or not isinstance(body, dict):
        return
    planned = Planner(defaults).plan(Line(7, "t-1", "r", body))
    clean, problems = validate(deep_merge(defaults, body))
    if problems:
        assert isinstance(planned, InvalidLine)
        assert list(planned.errors) == problems
    else:
        assert isinstance(planned, Planned)
        assert planned.body == canonical_json(clean)
        assert planned.sha256 == hashlib.sha256(planned.body).hexdigest()
        check_body(orjson.loads(planned.body))

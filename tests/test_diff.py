"""Field-level differences between a line's body and a ShowTask view, and `previous` capture."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from batchsms.lines.diff import Change, Diff, applied, diff, previous, same, show, unreadable_paths
from batchsms.lines.schema import PUT_TASK_REQ, validate
from tests.properties import BOUNDED, from_spec

VIEW: dict[str, Any] = {
    "id": "t1", "name": "web-01", "speed_limit": 100, "migration_ip": "192.168.1.2",
    "state": "READY", "vm_template_id": None,
    "target_server": {
        "id": "ts1", "name": "web-01-target", "ip": None, "os_type": "LINUX",
        "disks": [{"name": "/dev/vda", "size": 10, "device_use": "OS", "physical_volumes": [
            {"name": "/dev/vda1", "size": 5, "mount_point": "/"}]}],
        "btrfs_list": [],
    },
    "clone_server": None,
}


def test_scalar_change_and_unchanged() -> None:
    """A new speed_limit is a change; a name already as wanted is unchanged."""
    d = diff({"speed_limit": 200, "name": "web-01"}, VIEW)
    assert d == Diff(changes=(Change("speed_limit", 100, 200),), unchanged=("name",))
    assert d.changes_json() == {"speed_limit": {"from": 100, "to": 200}}
    assert d.changes[0].describe() == "speed_limit: 100 -> 200"
    assert not d.as_wanted


def test_already_as_wanted() -> None:
    """Every field equal: nothing would change, and it can be told."""
    d = diff({"speed_limit": 100, "target_server": {"os_type": "LINUX"}}, VIEW)
    assert d.as_wanted
    assert d.unchanged == ("speed_limit", "target_server.os_type")


def test_unreadable_fields_are_listed_never_compared() -> None:
    """Update-only fields are unreadable at the shallowest path the line sets."""
    body = {"use_ipv6": True, "snapshot_ids": "a;b", "exist_server": False,
            "target_server": {"networks": [{"mac": "aa"}], "flavor": "s6", "name": "x"}}
    d = diff(body, VIEW)
    assert d.unreadable == ("exist_server", "snapshot_ids", "target_server.flavor",
                            "target_server.networks", "use_ipv6")
    assert d.changes == (Change("target_server.name", "web-01-target", "x"),)
    assert not d.comparable
    assert unreadable_paths(body) == d.unreadable


def test_null_in_view_is_absent() -> None:
    """A null or missing view field is `None` now; setting it is a change from null."""
    d = diff({"vm_template_id": "tpl", "target_server": {"ip": "10.0.0.1"},
              "clone_server": {"name": "c1"}}, VIEW)
    assert d.changes == (Change("clone_server.name", None, "c1"),
                         Change("target_server.ip", None, "10.0.0.1"),
                         Change("vm_template_id", None, "tpl"))


def test_array_items_compared_by_index_with_replace_semantics() -> None:
    """Same length: leaves by index; a field the line's item leaves out goes to null."""
    disks = [{"name": "/dev/vda", "size": 20, "device_use": "OS", "physical_volumes": [
        {"name": "/dev/vda1", "size": 5, "mount_point": "/boot"}]}]
    d = diff({"target_server": {"disks": disks}}, VIEW)
    assert d.changes == (
        Change("target_server.disks[0].physical_volumes[0].mount_point", "/", "/boot"),
        Change("target_server.disks[0].size", 10, 20))
    d = diff({"target_server": {"disks": [{"name": "/dev/vda", "size": 10}]}}, VIEW)
    assert [c.path for c in d.changes] == ["target_server.disks[0].device_use",
                                           "target_server.disks[0].physical_volumes"]
    assert d.changes[0].wanted is None


def test_array_of_another_length_is_one_change() -> None:
    """Two disks where the task has one: one change at the array's path."""
    disks = [{"name": "/dev/vda"}, {"name": "/dev/vdb"}]
    d = diff({"target_server": {"disks": disks}}, VIEW)
    assert d.changes == (Change("target_server.disks", VIEW["target_server"]["disks"], disks),)


def test_equal_arrays_are_unchanged() -> None:
    """An array equal to the view's (nulls in the view ignored) is one unchanged path."""
    view = {"target_server": {"volume_groups": [{"name": "vg0", "size": 1, "components": None}]}}
    d = diff({"target_server": {"volume_groups": [{"name": "vg0", "size": 1}]}}, view)
    assert d == Diff(unchanged=("target_server.volume_groups",))


def test_json_equality_keeps_booleans_apart() -> None:
    """true is not 1, 1 is 1.0, objects ignore key order, lists do not."""
    assert not same(True, 1)
    assert not same(0, False)
    assert same(1, 1.0)
    assert same({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert not same([1, 2], [2, 1])
    assert not same({"a": 1}, [1])
    d = diff({"target_server": {"disks": [{"os_disk": True}]}},
             {"target_server": {"disks": [{"os_disk": 1}]}})
    assert d.changes == (Change("target_server.disks[0].os_disk", 1, True),)


def test_previous_holds_current_values_of_readable_fields() -> None:
    """Body-shaped; arrays whole without nulls; None where absent; unreadable left out."""
    body = {"speed_limit": 200, "name": "web-01", "use_ipv6": True, "vm_template_id": "tpl",
            "target_server": {"disks": [{"size": 20}], "ip": "10.0.0.1", "networks": []}}
    assert previous(body, VIEW) == {
        "name": "web-01", "speed_limit": 100, "vm_template_id": None,
        "target_server": {"disks": VIEW["target_server"]["disks"], "ip": None}}
    assert previous({"use_ipv6": True}, VIEW) == {}
    assert previous({"clone_server": {"name": "c"}}, VIEW) == {"clone_server": {"name": None}}


def test_show_is_json_like() -> None:
    """Values print as JSON would: null, true, quoted strings."""
    assert show(None) == "null"
    assert show(True) == "true"
    assert show('a"b') == '"a\\"b"'
    assert show([1, {"a": None}]) == '[1, {"a": null}]'


def test_a_renamed_field_is_read_where_show_task_has_it() -> None:
    """UpdateTask's enterprise_project is ShowTask's enterprise_project_id."""
    view = {"enterprise_project_id": "ep-1"}
    assert diff({"enterprise_project": "ep-2"}, view).changes == (
        Change("enterprise_project", "ep-1", "ep-2"),)
    assert diff({"enterprise_project": "ep-1"}, view).as_wanted
    assert previous({"enterprise_project": "ep-2"}, view) == {"enterprise_project": "ep-1"}


def test_applied_writes_each_readable_field_where_show_task_shows_it() -> None:
    """The view after an update: `enterprise_project` lands on `enterprise_project_id`,
    merged objects merge, arrays replace, unreadable fields change nothing shown, and the view
    given is left as it was."""
    view = {**VIEW, "enterprise_project_id": "0"}
    before = orjson.dumps(view)
    body = {"enterprise_project": "ep-2", "use_ipv6": True, "speed_limit": 5,
            "target_server": {"name": "t", "disks": [{"name": "/dev/vdb", "size": 1}],
                              "networks": [{"name": "n"}]},
            "clone_server": {"name": "c"}}
    after = applied(view, body)
    assert orjson.dumps(view) == before
    assert after["enterprise_project_id"] == "ep-2"
    assert "enterprise_project" not in after
    assert "use_ipv6" not in after
    assert after["speed_limit"] == 5
    assert after["target_server"] == {**VIEW["target_server"], "name": "t",
                                      "disks": [{"name": "/dev/vdb", "size": 1}]}
    assert after["clone_server"] == {"name": "c"}
    assert diff(body, after).changes == ()


@BOUNDED
@given(from_spec(PUT_TASK_REQ), st.sampled_from([VIEW, {}, {"enterprise_project_id": "x"}]))
def test_a_body_applied_is_as_wanted_where_readable(raw: dict[str, Any],
                                                   view: dict[str, Any]) -> None:
    """For any valid body: once applied, the comparison finds nothing readable to change, and
    the fields it cannot read are still the ones it cannot read."""
    body, problems = validate(raw)
    if problems:
        return
    found = diff(body, applied(view, body))
    assert found.changes == ()
    assert found.unreadable == diff(body, view).unreadable

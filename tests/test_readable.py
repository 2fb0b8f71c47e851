"""The readable set, derived independently from the official SDK's request and view models."""

from __future__ import annotations

from typing import Any

from huaweicloudsdksms.v3 import model

from batchsms.readable import READABLE, readable_paths
from batchsms.schema import PUT_TASK_REQ, Field, Kind, ObjectSpec


def _model(type_name: str) -> Any:
    return getattr(model, type_name, None)


def _sdk_readable(request: str, view: str, prefix: str = "") -> set[str]:
    """Paths of `request` that `view` has with the same type; objects (not lists) recurse."""
    req_types, view_types = _model(request).openapi_types, _model(view).openapi_types
    found: set[str] = set()
    for name, req_type in req_types.items():
        view_type = view_types.get(name)
        if view_type is None:
            continue
        path = f"{prefix}{name}"
        nested_req, nested_view = _model(req_type), _model(view_type)
        if nested_req is not None and nested_view is not None:
            found |= _sdk_readable(req_type, view_type, f"{path}.")
        elif req_type == view_type:
            found.add(path)
    return found


def test_readable_set_is_what_the_sdk_view_reads_back() -> None:
    """Every readable path, and no other, exists in ShowTaskResponse with the request's type."""
    assert set(readable_paths()) == _sdk_readable("PutTaskReq", "ShowTaskResponse")


def test_known_update_only_fields_are_not_readable() -> None:
    """The fields the issue names as absent from the real view are not in the readable set."""
    paths = set(readable_paths())
    for path in ("use_ipv6", "snapshot_ids", "target_disk_ids", "exist_server",
                 "enterprise_project", "target_server.networks", "target_server.btrfs_list"):
        assert path not in paths


def _schema_paths(spec: ObjectSpec, readable: Any, prefix: str = "") -> None:
    for key, sub in readable.items():
        field: Field | None = spec.fields.get(key)
        assert field is not None, f"{prefix}{key} is not a PutTaskReq field"
        if isinstance(sub, dict):
            assert field.kind is Kind.OBJECT
            assert field.spec is not None
            _schema_paths(field.spec, sub, f"{prefix}{key}.")
        else:
            assert field.kind is not Kind.OBJECT, f"{prefix}{key}: an object read whole"


def test_readable_set_names_fields_of_the_schema() -> None:
    """Every readable path is a field of the project's schema, objects where it recurses."""
    _schema_paths(PUT_TASK_REQ, READABLE)

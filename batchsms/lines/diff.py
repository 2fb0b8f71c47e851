"""What a line would change on a task: its validated body against the task's ShowTask view.

Pure functions, no I/O; `plan`, `run --skip-unchanged`, `--verify` and undo capture use them.

How the body is compared (the reference page is silent on the service's merge rules; these are
what the official SDK's models and the simulator imply, and what a rollback needs):

- Objects that an update merges (the body, `target_server`, `clone_server`) are compared field
  by field, only the fields the line sets: a field the line leaves out is not touched.
- A readable scalar is compared as a value; `null` in the view means "absent".
- An array is replaced as a whole by an update. When the view's array has the same length,
  items are compared **by index**, field by field, down to nested arrays, so a change shows as
  `target_server.disks[0].size: 10 -> 20`; a field the view's item has and the line's item
  leaves out shows as a change to `null` (the whole item is replaced). Arrays of different
  lengths are one change at the array's path.
- A field ShowTask does not return (`readable.READABLE`) is *unreadable*: listed at the
  shallowest path the line sets (`target_server.networks`), never compared, never guessed. A
  readable field is compared with the view's value where `READABLE` says ShowTask has it
  (`enterprise_project` with `enterprise_project_id`).

`applied()` is the other direction: the view as ShowTask would show it once a body is applied,
each readable field the body sets written at the place `READABLE` gives (the body's
`enterprise_project` becomes the view's `enterprise_project_id`), so what `diff` compares next
is what a read would find. `plan` projects a task through the earlier lines of its task with it.

`previous()` is the body-shaped record of the current values of every readable field a line
sets (arrays whole; `null` where the task has no value, which no update can restore), and what
an undo line is built from; `readable_part()` is the line's own values of the same fields (what
the task shows once the write applied: an undo line's `expect`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from batchsms.lines.readable import READABLE


@dataclass(frozen=True, slots=True)
class Change:
    """One value that differs: where, what the task has now, what the line wants."""

    path: str
    current: Any
    wanted: Any

    def describe(self) -> str:
        return f"{self.path}: {show(self.current)} -> {show(self.wanted)}"


@dataclass(frozen=True, slots=True)
class Diff:
    """A line against a task: what would change, what is already as wanted, what cannot be
    read back. Paths are in body order (keys sorted at each level)."""

    changes: tuple[Change, ...] = ()
    unchanged: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()

    @property
    def comparable(self) -> bool:
        """Every field the line sets can be compared."""
        return not self.unreadable

    @property
    def as_wanted(self) -> bool:
        """Nothing would change, as far as can be told, and everything can be told."""
        return not self.changes and not self.unreadable

    def changes_json(self) -> dict[str, dict[str, Any]]:
        return {c.path: {"from": c.current, "to": c.wanted} for c in self.changes}


def show(value: Any) -> str:
    """A value for people: JSON-like, `null` for absent, strings quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(map(show, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{show(k)}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def without_nulls(value: Any) -> Any:
    """`value` with every null object field dropped, at any depth (null means absent)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def same(a: Any, b: Any) -> bool:
    """JSON equality: `true` is not `1`, `1` is `1.0`, objects ignore key order."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    return bool(a == b)


Tree = Mapping[str, "str | Tree"]
"""`READABLE` as the body's shape: an object an update merges maps to its readable fields; a
leaf maps to the dotted path of its value in the ShowTask view."""


def _tree(readable: Mapping[str, str]) -> Tree:
    root: dict[str, Any] = {}
    for body_path, show_path in readable.items():
        *parents, leaf = body_path.split(".")
        node = root
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = show_path
    return root


READABLE_TREE = _tree(READABLE)


def _lookup(view: Mapping[str, Any], show_path: str) -> Any:
    """The view's value at a dotted path, nulls dropped; None when absent."""
    value: Any = view
    for key in show_path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return without_nulls(value)


class _Walk:
    """Accumulates one comparison."""

    def __init__(self, view: Mapping[str, Any]) -> None:
        self.view = view
        self.changes: list[Change] = []
        self.unchanged: list[str] = []
        self.unreadable: list[str] = []

    def merged(self, tree: Tree, body: Mapping[str, Any], prefix: str) -> None:
        for key in sorted(body):
            path = f"{prefix}{key}"
            sub = tree.get(key)
            if sub is None:
                self.unreadable.append(path)
            elif not isinstance(sub, str):
                self.merged(sub, body[key], f"{path}.")
            else:
                current, wanted = _lookup(self.view, sub), body[key]
                if same(current, wanted):
                    self.unchanged.append(path)
                else:
                    self.replaced(path, current, wanted)

    def replaced(self, path: str, current: Any, wanted: Any) -> None:
        """`wanted` replaces `current` whole: list the leaves that differ."""
        if isinstance(current, dict) and isinstance(wanted, dict):
            for key in sorted(current.keys() | wanted.keys()):
                a, b = current.get(key), wanted.get(key)
                if not same(a, b):
                    self.replaced(f"{path}.{key}", a, b)
        elif isinstance(current, list) and isinstance(wanted, list) \
                and len(current) == len(wanted):
            for i, (a, b) in enumerate(zip(current, wanted, strict=True)):
                if not same(a, b):
                    self.replaced(f"{path}[{i}]", a, b)
        else:
            self.changes.append(Change(path, current, wanted))


def diff(body: Mapping[str, Any], view: Mapping[str, Any]) -> Diff:
    """`body` (validated, nulls dropped) against `view` (a ShowTask answer)."""
    walk = _Walk(view)
    walk.merged(READABLE_TREE, body, "")
    return Diff(tuple(walk.changes), tuple(walk.unchanged), tuple(walk.unreadable))


def applied(view: Mapping[str, Any], body: Mapping[str, Any],
            tree: Tree = READABLE_TREE) -> dict[str, Any]:
    """`view` as ShowTask would show it once `body` (validated, nulls dropped) is applied.

    Each readable field `body` sets is written where `READABLE` says ShowTask has it (arrays
    and scalars replace, the objects an update merges are merged field by field); a field
    ShowTask cannot read back changes nothing a read shows. `view` is not modified: the objects
    on the way to a written value are copied.
    """
    out = dict(view)
    for key in sorted(body):
        sub = tree.get(key)
        if sub is None:
            continue
        if isinstance(sub, str):
            _put(out, sub, body[key])
        else:
            out = applied(out, body[key], sub)
    return out


def _put(view: dict[str, Any], show_path: str, value: Any) -> None:
    """Set `value` at the dotted `show_path` of `view`, copying (or creating) each object on
    the way there so that no object shared with another view is changed."""
    *parents, leaf = show_path.split(".")
    node = view
    for key in parents:
        child = node.get(key)
        node[key] = child = dict(child) if isinstance(child, dict) else {}
        node = child
    node[leaf] = value


def unreadable_paths(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The paths of `body` that ShowTask cannot read back (no view needed)."""
    return diff(body, {}).unreadable


def previous(body: Mapping[str, Any], view: Mapping[str, Any],
             tree: Tree = READABLE_TREE) -> dict[str, Any]:
    """The view's current values of every readable field `body` sets, shaped like a body.

    Arrays are taken whole (an update replaces them); `None` where the task has no value.
    """
    return _readable(body, tree, lambda _part, _key, view_path: _lookup(view, view_path))


def readable_part(body: Mapping[str, Any], tree: Tree = READABLE_TREE) -> dict[str, Any]:
    """`body` limited to the fields `previous()` captures: its readable fields, arrays whole."""
    return _readable(body, tree, lambda part, key, _view_path: part[key])


def _readable(body: Mapping[str, Any], tree: Tree,
              leaf: Callable[[Mapping[str, Any], str, str], Any]) -> dict[str, Any]:
    """`body`'s readable fields, shaped like a body, each leaf's value given by
    `leaf(the object holding it, its key, its path in the view)`; objects left empty dropped."""
    out: dict[str, Any] = {}
    for key in sorted(body):
        sub = tree.get(key)
        if sub is None:
            continue
        if isinstance(sub, str):
            out[key] = leaf(body, key, sub)
        elif isinstance(body[key], dict):
            inner = _readable(body[key], sub, leaf)
            if inner:
                out[key] = inner
    return out

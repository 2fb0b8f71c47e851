"""The house by stage (issue 19): no flat module beyond the few named, no import circle, and
no stage package importing a higher one.

Read from the source with `ast`, so a lazy import inside a function counts as much as one at
the top. Imports under `if TYPE_CHECKING:` are left out: they never run (errors.py names
`Outcome` for the type of `AbortedError.outcomes` that way)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "batchsms"

FLAT = {"__init__", "__main__", "cli", "errors", "client"}
"""The only modules allowed directly in batchsms/."""

LEVELS = {  # lower imports nothing higher; errors is below every stage
    "errors": 0, "lines": 1, "transport": 2, "journal": 3, "engine": 4, "changes": 5,
    "simulator": 6, "client": 7, "commands": 8, "cli": 9, "__main__": 10, "__init__": 10,
}


def _unit(module: str) -> str:
    """The stage a dotted module name under batchsms belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, module: str | None = None) -> set[str]:
    """The batchsms modules `path` (the module `module`, by default its own name) imports when
    it runs. The package uses absolute imports only (ruff's TID252 would say otherwise)."""
    module = module or _module_of(path)
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for stmt in node.orelse:
                visit(stmt)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("batchsms"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("batchsms"):
            base = node.module or ""
            if base == "batchsms" and [a.name for a in node.names] == ["__version__"]:
                pass  # the version string: __init__ imports nothing to give it
            else:
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names
                             if f"{base}.{a.name}" in MODULES)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(module)
    return found


SOURCES = {_module_of(p): p for p in sorted(PACKAGE.rglob("*.py"))}
MODULES = set(SOURCES)


@cache
def imports_of(module: str) -> frozenset[str]:
    """What `module` imports, read when a test asks (not at collection: each of the suite's
    workers collects this file, and reading every module took ~0.65 s of CPU)."""
    return frozenset(_imports(SOURCES[module], module))


def test_no_flat_module_beyond_the_named_few() -> None:
    flat = {p.stem for p in PACKAGE.glob("*.py")}
    assert flat <= FLAT, f"flat modules to move into a stage package: {sorted(flat - FLAT)}"


def test_every_package_is_a_known_stage() -> None:
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages <= set(LEVELS), f"packages with no level in LEVELS: {packages - set(LEVELS)}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_import(module: str) -> None:
    level = LEVELS[_unit(module)]
    upward = sorted(m for m in imports_of(module)
                    if _unit(m) != _unit(module) and LEVELS[_unit(m)] > level)
    assert not upward, f"{module} (level {level}) imports higher stages: {upward}"


def test_no_import_circle() -> None:
    """Between modules (not only stages): a depth-first search for a back edge."""
    graph = {m: {d for d in imports_of(m) if d in MODULES} for m in MODULES}
    # a module importing its own package's __init__ (a re-export) is not a circle
    for module, deps in graph.items():
        deps.difference_update({module.rsplit(".", 1)[0]} if "." in module else set())
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                raise AssertionError("import circle: " + " -> ".join(
                    [*path[path.index(dep):], dep]))
            if dep not in state:
                visit(dep)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The walker finds a lazy import inside a function and a submodule imported by name, and
    skips what only TYPE_CHECKING imports: a module written so fails the tests above."""
    source = tmp_path / "fake.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from batchsms.commands import run\n"
                      "from batchsms.transport import untrusted\n"
                      "def f():\n    from batchsms.client import Client\n")
    found = _imports(source, "batchsms.changes.fake")
    assert found == {"batchsms.transport", "batchsms.transport.untrusted", "batchsms.client"}
    upward = [m for m in found if LEVELS[_unit(m)] > LEVELS["changes"]]
    assert upward == ["batchsms.client"]
    assert "batchsms.simulator.server" in imports_of("batchsms.simulator")
    assert "batchsms.journal.outcomes" not in imports_of("batchsms.errors")

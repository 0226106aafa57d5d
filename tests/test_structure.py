"""The core's shape holds: no import cycles in ``hub/``, the engine's modules stay small, and
no module reaches into another's private names.

These read the source (AST), so they see function-level imports too: an import hidden in a
function is still a dependency, only a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hub

ROOT = Path(__file__).resolve().parents[1]
HUB = ROOT / "hub"
ENGINE_MAX_LINES = 420  # "none over ~400 lines": one job per module


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def hub_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(HUB.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (never executed)."""
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        if _type_checking_only(node):
            todo += node.orelse
        else:
            todo += ast.iter_child_nodes(node)
    return found


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """The hub modules ``name`` imports (module level or in a function), each with a line."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def known(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    found: dict[str, int] = {}
    for node in runtime_nodes(ast.parse(path.read_text())):
        targets: list[str | None] = []
        if isinstance(node, ast.Import):
            targets = [known(a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            # `from hub import cli` imports the submodule; `from hub import mask`, the package
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else known(base)
                for a in node.names
            ]
        for target in targets:
            if target and target != name and target.split(".")[0] == "hub":
                found.setdefault(target, node.lineno)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    modules = hub_modules()
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    # the public API imports its exports on first access (PEP 562): edges the AST cannot see
    for target in set(hub._LAZY.values()):
        graph["hub"].setdefault(target, 0)
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, …, a]``, or ``None``."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    return (
        " -> ".join(
            f"{a} (line {graph[a][b]})" if graph[a][b] else f"{a} (lazy export)"
            for a, b in zip(cycle, cycle[1:], strict=False)
        )
        + f" -> {cycle[-1]}"
    )


def test_the_hub_package_has_no_import_cycle():
    graph = import_graph()
    assert {"hub.app", "hub.cli", "hub.engine", "hub.engine.journeys"} <= set(graph)
    assert "hub.engine.journeys" in graph["hub.engine"], "the walk sees the engine's parts"
    assert "hub.cli" in graph["hub.app"], "the walk sees function-level imports"
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {describe(cycle, graph)}"


def test_the_cycle_finder_names_a_cycle_through_a_function_level_import(tmp_path):
    (tmp_path / "a.py").write_text("import hub.b\n")
    (tmp_path / "b.py").write_text("def f():\n    from hub import a\n")
    modules = {"hub.a": tmp_path / "a.py", "hub.b": tmp_path / "b.py"}
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    cycle = find_cycle(graph)
    assert cycle == ["hub.a", "hub.b", "hub.a"]
    assert describe(cycle, graph) == "hub.a (line 1) -> hub.b (line 2) -> hub.a"


def test_type_checking_imports_are_not_dependencies(tmp_path):
    (tmp_path / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import hub.b\nelse:\n"
        "    import hub.c\n"
    )
    modules = {"hub.a": tmp_path / "a.py", "hub.b": tmp_path / "a.py", "hub.c": tmp_path / "a.py"}
    assert imported_modules("hub.a", tmp_path / "a.py", modules) == {"hub.c": 5}


def test_every_engine_module_is_small_and_says_why_it_exists():
    engine = sorted((HUB / "engine").glob("*.py"))
    assert len(engine) >= 8, "the engine is a package of small modules"
    for path in engine:
        text = path.read_text()
        lines = len(text.splitlines())
        assert lines <= ENGINE_MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines"
        assert len(ast.get_docstring(ast.parse(text)) or "") > 40, f"{path.name}: docstring"


# ------------------------------------------------------------------ private names


def private_definitions() -> dict[str, set[str]]:
    """``_name`` → the hub modules that define it (functions, classes, methods, attributes
    assigned at module or class level)."""
    defined: dict[str, set[str]] = {}
    for name, path in hub_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                names += [t.attr for t in node.targets if isinstance(t, ast.Attribute)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            for n in names:
                if _private(n):
                    defined.setdefault(n, set()).add(name)
    return defined


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_reaches(name: str, path: Path, defined: dict[str, set[str]]) -> list[tuple[int, str]]:
    """(line, what) wherever ``name`` imports or uses a private name another module defines:
    ``from hub.x import _y``, ``x._y`` on a module, ``obj._y()`` on another module's object."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hub"):
            found += [
                (node.lineno, f"imports {node.module}.{a.name}")
                for a in node.names
                if _private(a.name)
            ]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            elsewhere = defined.get(node.attr, set()) - {name}
            if elsewhere and name not in defined.get(node.attr, set()):
                found.append((node.lineno, f".{node.attr} of {', '.join(sorted(elsewhere))}"))
    return found


def test_no_hub_module_reaches_into_another_modules_private_names():
    defined = private_definitions()
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for name, path in hub_modules().items()
        for line, what in private_reaches(name, path, defined)
    ]
    assert wrong == []


def test_the_private_name_check_sees_a_call_across_modules(tmp_path):
    (tmp_path / "a.py").write_text("class E:\n    def _choose(self):\n        pass\n")
    (tmp_path / "b.py").write_text("from hub.a import _x\n\ndef f(engine):\n    engine._choose()\n")
    defined = {"_choose": {"hub.a"}}
    assert private_reaches("hub.b", tmp_path / "b.py", defined) == [
        (1, "imports hub.a._x"),
        (4, "._choose of hub.a"),
    ]

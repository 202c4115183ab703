"""The package's import order, read from the source (every import statement, including those
inside functions and under ``TYPE_CHECKING``): a layer never imports one above it, and no
module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "gnnbackdoor"

#: Bottom to top (docs/architecture.md draws the same order). Modules outside these folders
#: (``errors``, ``registry``, ``settings``, ``utils/``, the package's ``__init__``) are shared
#: below every layer.
LAYERS = [
    "datasets",
    "models",
    "contracts",
    "attacks",
    "defenses",
    "metrics",
    "experiments",
    "cli",
    "service",
    "__main__",
]
TOP = {"cli": 7, "service": 7, "__main__": 7}
SHARED = -1


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) < 2:
        return SHARED
    top = parts[1]
    if top in TOP:
        return TOP[top]
    return LAYERS.index(top) if top in LAYERS else SHARED


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``module`` imports (``from pkg import name`` counts as importing
    ``pkg.name`` when that is a module, else ``pkg``)."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t if t in known else base for t in targets]
        else:
            continue
        out.update(t for t in targets if t.split(".")[0] == "gnnbackdoor")
    return {t for t in out if t in known and t != module}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_every_module_has_a_layer(graph):
    shared = {"gnnbackdoor", "gnnbackdoor.errors", "gnnbackdoor.registry", "gnnbackdoor.settings"}
    for module in graph:
        assert (
            layer(module) != SHARED or module in shared or module.startswith("gnnbackdoor.utils")
        ), module


def test_no_layer_imports_one_above_it(graph):
    upward = [
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if layer(target) > layer(module)
    ]
    assert not upward, "\n".join(sorted(upward))


def test_no_lower_layer_imports_experiments(graph):
    lower = ("datasets", "models", "contracts", "attacks", "defenses", "metrics")
    offenders = [
        f"{m} -> {t}"
        for m, targets in graph.items()
        if m.split(".")[1:2] and m.split(".")[1] in lower
        for t in targets
        if t.startswith("gnnbackdoor.experiments")
    ]
    assert not offenders


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` by depth-first search for a back edge, or ``None``. Parent
    packages are not followed: importing ``a.b`` runs ``a/__init__`` first, which is not a
    dependency of ``a.b``'s code."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_checker_sees_an_upward_import(tmp_path):
    """The check can fail: a models/ module importing experiments/ is flagged."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from gnnbackdoor.experiments import pipelines\n")
    known = {"gnnbackdoor.experiments", "gnnbackdoor.experiments.pipelines"}
    found = imports("gnnbackdoor.models.bad", bad, known)
    assert found == {"gnnbackdoor.experiments.pipelines"}
    assert layer("gnnbackdoor.experiments.pipelines") > layer("gnnbackdoor.models.bad")

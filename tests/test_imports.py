"""The package's imports form no cycle (read statically from the source)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("saga", "adapters")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[_module_name(path)] = path
    return found


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports, including those imported only for typing."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                stem = base[: len(base) - (node.level - 1)]
                prefix = ".".join(stem + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
        for dotted in targets:
            # the longest known module the name refers to (a module, or a name in one)
            target = dotted
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target not in own:  # its own packages are already importing
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    known = _modules()
    graph = {name: _imports(name, path, known) for name, path in known.items()}
    # importing a.b.c runs a/__init__ and a/b/__init__ first (unless the importer is inside them)
    for name, deps in graph.items():
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        for dep in list(deps):
            parts = dep.split(".")
            parents = {".".join(parts[:i]) for i in range(1, len(parts))}
            deps.update(p for p in parents - own if p in known)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state and (found := visit(dep)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    graph = _graph()
    assert "saga.store" in graph and graph["saga"], "the walk found the package's modules"
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_cycle_is_found_when_there_is_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


ABOVE_THE_STORE = ("saga.inspection", "saga._engine", "saga.operators", "saga.cli", "saga.ui",
                   "saga.telemetry", "saga.simulate", "saga.testing", "saga.coordinator")


def test_the_store_imports_nothing_above_it() -> None:
    known = _modules()
    store = {name: path for name, path in known.items() if name.startswith("saga.store")}
    assert "saga.store.reads" in store and "saga.store.postgres.store" in store
    upward = sorted(
        (name, target)
        for name, path in store.items()
        for target in _imports(name, path, known)
        if target.startswith(ABOVE_THE_STORE)
    )
    assert upward == [], "imports running up from the store: " + ", ".join(f"{a} -> {b}" for a, b in upward)

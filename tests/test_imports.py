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


# -- layers ----------------------------------------------------------------------------------------

CORE = ("saga.errors", "saga.clock", "saga.codec", "saga.text", "saga.policies", "saga.definition",
        "saga.calls", "saga.events", "saga.state", "saga.attempts", "saga.timespec")

RANKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("the pure core", CORE),
    ("keys and masks, which know nothing of the log", ("saga.secrets",)),
    ("the stores", ("saga.store",)),
    # sealing carries a saga's values across the log (the stored rows it redacts included);
    # telemetry is the hooks the engine and the adapters report through
    ("the shell's hooks", ("saga.secrets.sealing", "saga.telemetry")),
    ("the engine", ("saga._engine",)),
    # the coordinator offers the operators' actions as methods, so it sits beside them
    ("reading and acting", ("saga.inspection", "saga.operators", "saga.coordinator")),
    ("the tools", ("saga.simulate", "saga.testing", "adapters")),
    ("on top", ("saga.cli", "saga.ui")),
)
"""Each layer of the package, lowest first: a module imports its own layer or those below.
``saga`` itself, the public façade, may import anything; ``adapters`` is ``saga.adapters``."""

FACADE = "saga"

ADAPTERS_MAY_IMPORT = (*CORE, FACADE, "saga.telemetry")
"""Besides one another, the adapters import what a user's own adapter could (the public names
and the core), and the telemetry hooks their calls are traced through."""


def _rank(module: str, ranks: tuple[tuple[str, tuple[str, ...]], ...] = RANKS) -> int | None:
    """The layer of ``module``: that of the longest prefix named in ``ranks``."""
    best: tuple[int, int] | None = None  # (length of the prefix, layer)
    for layer, (_, prefixes) in enumerate(ranks):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                    best is None or len(prefix) > best[0]):
                best = (len(prefix), layer)
    return None if best is None else best[1]


def _upward(graph: dict[str, set[str]],
            ranks: tuple[tuple[str, tuple[str, ...]], ...] = RANKS) -> list[str]:
    """Every import that runs up the layers (or out of what the adapters may use), as
    ``importer -> imported``; a module in no layer is named too."""
    found: list[str] = []
    for module in sorted(graph):
        if module == FACADE:
            continue
        rank = _rank(module, ranks)
        if rank is None:
            found.append(f"{module} is in no layer")
            continue
        for dep in sorted(graph[module]):
            if module.startswith("adapters"):
                if not (dep.startswith("adapters") or dep in ADAPTERS_MAY_IMPORT):
                    found.append(f"{module} -> {dep} (an adapter uses the public names and the core)")
                continue
            dep_rank = _rank(dep, ranks)
            if dep == FACADE or dep_rank is None or dep_rank > rank:
                found.append(f"{module} -> {dep}")
    return found


def _facade_reaches() -> list[str]:
    """Modules inside saga that take a name from the façade (``from saga import Coordinator``):
    the façade imports them, so the name may not be there yet."""
    known = _modules()
    found: list[str] = []
    for name, path in sorted(known.items()):
        if name == FACADE or not name.startswith("saga."):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == FACADE:
                found += [f"{name} -> saga.{a.name}" for a in node.names
                          if f"saga.{a.name}" not in known]
    return found


def test_no_import_runs_up_the_layers() -> None:
    graph = _graph()
    assert all(_rank(m) is not None for m in ("saga.store.postgres.store", "saga.cli.__main__",
                                              "adapters.http", "saga.secrets.masking"))
    assert _upward(graph) == []
    assert _facade_reaches() == []


def test_an_import_up_the_layers_is_found() -> None:
    ranks = (("low", ("p.low",)), ("high", ("p.high",)))
    graph = {"p.low.a": {"p.high.b", "p.low.c"}, "p.low.c": set(), "p.high.b": {"p.low.a"},
             "p.other": set(), FACADE: {"p.high.b"}}
    assert _upward(graph, ranks) == ["p.low.a -> p.high.b", "p.other is in no layer"]
    assert _upward({"adapters.x": {"saga.store", "saga.errors", "adapters.y"}}) == [
        "adapters.x -> saga.store (an adapter uses the public names and the core)"]


# -- size and shape --------------------------------------------------------------------------------

MAX_LINES = 400
MAX_TOP_MODULES = 15
SHIPPED = ("saga", "adapters", "migrations")


def test_no_module_is_over_400_lines() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines())
             for package in SHIPPED for p in (ROOT / package).rglob("*.py")}
    assert len(sizes) > 50, "the walk found the package's modules"
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}


def test_the_package_top_holds_few_modules() -> None:
    top = sorted(p.name for p in (ROOT / "saga").glob("*.py"))
    assert "__init__.py" in top and len(top) <= MAX_TOP_MODULES, top


def test_every_package_says_in_its_first_line_what_lives_there() -> None:
    """A package's docstring opens with one line that stands alone: a sentence that ends there."""
    inits = sorted(p for package in SHIPPED for p in (ROOT / package).rglob("__init__.py"))
    assert len(inits) >= 10
    unsaid: dict[str, str | None] = {}
    for path in inits:
        doc = ast.get_docstring(ast.parse(path.read_text()), clean=True)
        first = doc.splitlines()[0] if doc else ""
        if not (first.endswith(".") and len(first.split()) >= 3):
            unsaid[str(path.relative_to(ROOT))] = first or None
    assert unsaid == {}

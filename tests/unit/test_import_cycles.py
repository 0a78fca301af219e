"""The code's shape: no import cycle (lazy, TYPE_CHECKING and function-level imports count), imports point
one way (mcp_server → orchestrator → backends), and no module grows past 400 lines.

The graph is read from the source with ``ast``, not by importing: an import inside a function or under
``if TYPE_CHECKING:`` is an edge like any other. Importing ``a.b.c`` first runs ``a/__init__.py`` and
``a/b/__init__.py``, so those are edges too, except for the packages that enclose the importing module
(they are already being imported when it runs).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestrator", "mcp_server")
MAX_LINES = 400

# What backends and the store may import from the rest of orchestrator: leaf modules that import nothing
# of orchestrator but each other. Everything else (use-cases, the platform) builds on them, never the reverse.
LEAVES = {
    "orchestrator.dnsnames",
    "orchestrator.errors",
    "orchestrator.labels",
    "orchestrator.models",
    "orchestrator.settings",
    "orchestrator.settings_ingress",
    "orchestrator.settings_nomad",
}
STORE_MAY_IMPORT = LEAVES | {"orchestrator.secrets"}
# The faces' libraries: the core knows nothing of MCP or HTTP servers.
FACE_LIBRARIES = {"mcp", "mcp_types", "starlette", "uvicorn"}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _package_of(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _imported(module: str) -> Iterator[tuple[str, int]]:
    """Every name ``module`` imports (absolute, possibly a third-party one), with its line."""
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = _package_of(module).split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            yield base, node.lineno
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def _own(name: str) -> str | None:
    """The module of ours that importing ``name`` runs (the longest known prefix), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _edges(module: str) -> dict[str, int]:
    """The modules of ours that importing ``module`` makes Python run, each with the line that asks for it."""
    edges: dict[str, int] = {}
    enclosing = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    for name, line in _imported(module):
        target = _own(name)
        if target is None:
            continue
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            step = ".".join(parts[:i])
            if step != module and step not in enclosing and step in MODULES:
                edges.setdefault(step, line)
    return edges


GRAPH = {module: _edges(module) for module in MODULES}


def _cycles() -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return [_path_back(sorted(c)[0], c) for c in components]


def _path_back(start: str, component: set[str]) -> list[str]:
    """A shortest path from ``start`` back to itself inside ``component``."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(GRAPH[v]):
                if w == start:
                    return [*paths[v], start]
                if w in component and w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle back to {start}")


def _show(cycle: list[str]) -> str:
    steps = [f"{a} (line {GRAPH[a][b]}) -> {b}" for a, b in zip(cycle, cycle[1:], strict=False)]
    return "\n    ".join(steps)


def test_the_import_graph_has_no_cycle() -> None:
    cycles = _cycles()
    assert not cycles, "import cycles:\n  " + "\n  ".join(_show(c) for c in cycles)


def test_the_walk_sees_lazy_and_type_checking_imports() -> None:
    """The walk itself: an import inside a function and one under TYPE_CHECKING are both edges."""
    assert "orchestrator.backends.docker" in GRAPH["orchestrator.platform"]  # imported inside make_backend
    assert "orchestrator.settings" in GRAPH["orchestrator.backends.nomad.backend"]  # under TYPE_CHECKING


def test_the_core_imports_nothing_of_the_faces() -> None:
    wrong = [
        f"{module} (line {line}) imports {name}"
        for module in MODULES
        if module.startswith("orchestrator")
        for name, line in _imported(module)
        if name.startswith("mcp_server") or name.split(".")[0] in FACE_LIBRARIES
    ]
    assert not wrong, "\n".join(wrong)


def _reaches_outside(prefix: str, allowed: set[str]) -> list[str]:
    return [
        f"{module} (line {line}) imports {target}"
        for module in MODULES
        if module == prefix or module.startswith(prefix + ".")
        for target, line in GRAPH[module].items()
        if target.startswith("orchestrator.")
        and not (target == prefix or target.startswith(prefix + "."))
        and target not in allowed
    ]


def test_backends_and_the_store_import_only_leaf_modules() -> None:
    wrong = _reaches_outside("orchestrator.backends", LEAVES) + _reaches_outside("orchestrator.store", STORE_MAY_IMPORT)
    wrong += [w for leaf in sorted(LEAVES) for w in _reaches_outside(leaf, LEAVES)]
    assert not wrong, "\n".join(wrong)


def test_no_module_is_over_400_lines() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"

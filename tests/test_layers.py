"""The layer rules of docs/architecture.md, read from the code with `ast`: who may import whom, and no cycles.

Every import counts, at module level or inside a function: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pixquery"

LEAVES = ("pixquery.errors", "pixquery.paths", "pixquery.fsutil", "pixquery.progress", "pixquery.options",
          "pixquery.layout")
LAYERS: dict[str, tuple[str, ...]] = {
    # layer: module prefixes
    "leaves": LEAVES,
    "media": ("pixquery.media",),
    "models": ("pixquery.models",),
    "store": ("pixquery.store",),
    "indexing": ("pixquery.indexing", "pixquery.scale"),
    "query": ("pixquery.query",),
    "organize": ("pixquery.organize",),
    "facade": ("pixquery.api",),
    "faces": ("pixquery.cli", "pixquery.server", "pixquery.__main__"),
    "tools": ("pixquery.demo", "pixquery.synth", "pixquery.eval"),
}
ALLOWED: dict[str, set[str]] = {
    # layer: the layers it may import (itself included)
    "leaves": {"leaves"},
    "media": {"leaves", "media"},
    "models": {"leaves", "media", "models"},
    "store": {"leaves", "store"},
    "indexing": {"leaves", "media", "models", "store", "indexing"},
    "query": {"leaves", "media", "models", "store", "query"},
    "organize": {"leaves", "media", "models", "store", "query", "organize"},
    "facade": {"leaves", "media", "models", "store", "indexing", "query", "organize", "facade"},
    "faces": {"leaves", "facade", "faces"},
    "tools": {"leaves", "media", "models", "store", "indexing", "query", "organize", "facade", "faces", "tools"},
}
FACE_EXCEPTIONS: dict[str, tuple[str, ...]] = {
    # The faces build queries from the plain data types of the query spec and its JSON form.
    "pixquery.cli": ("pixquery.query.spec", "pixquery.query.jsonspec"),
    "pixquery.server": ("pixquery.query.spec", "pixquery.query.jsonspec"),
}
TOOL_COMMANDS = "pixquery.cli.tools"
"""The CLI's tool commands may import the tools (demo, synth, eval); nothing else in the product may."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The pixquery modules `path` imports (a `from package import module` counts as the module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names} & modules
            found.update(submodules or {target})
    return {m for m in found if m in modules and m != name}


def layer_of(module: str) -> str:
    """The layer of a module; every module must have one (a new top-level module is placed in LAYERS)."""
    if module == "pixquery":  # the package root re-exports the facade, lazily
        return "facade"
    matches = [(layer, prefix) for layer, prefixes in LAYERS.items() for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} belongs to no layer: place it in tests/test_layers.py LAYERS"
    return max(matches, key=lambda item: len(item[1]))[0]


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(paths)) for name, path in paths.items()}


def test_every_import_follows_the_layer_rules() -> None:
    broken = []
    for module, deps in graph().items():
        layer = layer_of(module)
        for dep in sorted(deps):
            dep_layer = layer_of(dep)
            if dep_layer in ALLOWED[layer]:
                continue
            if layer == "faces" and any(
                module.startswith(face) and dep in allowed for face, allowed in FACE_EXCEPTIONS.items()
            ):
                continue
            if module == TOOL_COMMANDS and dep_layer == "tools":
                continue
            broken.append(f"{module} ({layer}) imports {dep} ({dep_layer})")
    assert not broken, "layer rules broken:\n" + "\n".join(broken)


def test_no_import_cycles() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(edges[node]):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_shapesworld_in_product_paths() -> None:
    tools = {"tools"}
    leaks = [f"{m} imports {d}" for m, deps in graph().items() if layer_of(m) not in tools
             and not m.startswith(TOOL_COMMANDS) for d in deps if d.startswith(("pixquery.synth", "pixquery.eval"))]
    assert not leaks, leaks

"""The models layer imports only the leaves below it, and nothing of the test world (ShapesWorld).

Read with `ast`, imports inside functions included: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

MODELS = Path(__file__).resolve().parents[1] / "pixquery" / "models"
ALLOWED = ("pixquery.models", "pixquery.errors", "pixquery.paths", "pixquery.fsutil", "pixquery.media")
"""What models may import of pixquery: itself, the leaves, and media (to read files)."""


def pixquery_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                raise AssertionError(f"{path.name}:{node.lineno} uses a relative import")
            found.append((node.lineno, node.module))
            # `from pixquery import synth` names the module in the alias
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names if node.module == "pixquery"]
    return [(line, name) for line, name in found if name == "pixquery" or name.startswith("pixquery.")]


def test_models_import_only_leaves_and_media() -> None:
    files = sorted(MODELS.glob("*.py"))
    assert len(files) > 10
    bad = [
        f"{path.name}:{line} imports {name}"
        for path in files
        for line, name in pixquery_imports(path)
        if name != "pixquery" and not any(name == ok or name.startswith(ok + ".") for ok in ALLOWED)
    ]
    assert not bad, bad


def test_no_shapesworld_under_models() -> None:
    """The parity gate's probes are real photos and photo queries that ship with the package, not ShapesWorld."""
    bad = [
        f"{path.name}:{line} imports {name}"
        for path in sorted(MODELS.glob("*.py"))
        for line, name in pixquery_imports(path)
        if name.startswith(("pixquery.synth", "pixquery.eval")) or name in ("pixquery.synth", "pixquery.eval")
    ]
    assert not bad, bad
    text = "\n".join(path.read_text(encoding="utf-8") for path in MODELS.glob("*.py"))
    assert "render_scene" not in text and "sample_scene" not in text

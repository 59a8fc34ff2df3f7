"""The base install (no extras) indexes and searches with ONNX models and never imports torch.

CI runs this folder in a second virtual environment that has only `pip install pixquery`; a model exported
beforehand in the full environment arrives through PIXQUERY_TEST_ONNX_DIR. In the full environment these
tests still run, each in a fresh subprocess, and check the same absence of heavy modules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "open_clip", "sentence_transformers")


def _onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("PIXQUERY_TEST_ONNX_DIR")
    if given:
        return Path(given)
    pytest.importorskip("torch", reason="no exported model was handed over and torch is not here to export one")
    from pixquery.models.export import export_onnx

    return export_onnx("random:tiny", tmp_path_factory.mktemp("onnx") / "tiny")


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _onnx_dir(tmp_path_factory)


def _run_python(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_index_and_search_with_onnx_never_imports_torch(onnx_dir: Path, tmp_path: Path, photos_dir: Path) -> None:
    result = _run_python(
        f"""
        import json, sys
        from pixquery import Library
        lib = Library.open({str(tmp_path / "idx")!r}, model="onnx:{onnx_dir}")
        report = lib.index([{str(photos_dir)!r}])
        hits = lib.search(text="a cat", k=3)
        image_hits = lib.search(images=[{str(photos_dir / "flat" / "cat.jpg")!r}], k=1)
        print(json.dumps({{"embedded": report.embed.embedded, "hits": len(hits),
                          "self_first": image_hits[0].path.endswith("cat.jpg"),
                          "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
        """
    )
    assert result == {"embedded": 38, "hits": 3, "self_first": True, "heavy": []}


def _mini_shipped() -> bool:
    from pixquery.models.mini import SHIPPED_DIR

    return (SHIPPED_DIR / "visual" / "model.onnx").exists()


@pytest.mark.skipif(not _mini_shipped(), reason="no trained mini model is shipped in pixquery/data/mini yet")
def test_shipped_mini_model_runs_torch_free(tmp_path: Path) -> None:
    result = _run_python(
        f"""
        import json, sys
        from PIL import Image
        from pixquery.models.registry import load_encoder
        enc = load_encoder("mini")
        v = enc.encode_texts(["a red circle"])
        w = enc.encode_images([Image.new("RGB", (64, 64), "red")])
        print(json.dumps({{"dims": [v.shape[1], w.shape[1]], "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
        """
    )
    assert result["heavy"] == [] and result["dims"][0] == result["dims"][1] > 0


def test_cli_search_is_torch_free(onnx_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    from PIL import Image

    for i, colour in enumerate(("red", "green", "blue")):
        Image.new("RGB", (48, 48), colour).save(folder / f"{i}.png")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cli = [sys.executable, "-m", "pixquery"]
    subprocess.run([*cli, "index", str(folder), "--index", str(tmp_path / "idx"), "--model", f"onnx:{onnx_dir}",
                    "--json"], check=True, capture_output=True, env=env)
    out = subprocess.run([*cli, "search", "red", "--index", str(tmp_path / "idx"), "--json", "-k", "3"],
                         check=True, capture_output=True, text=True, env=env)
    assert len(json.loads(out.stdout)) == 3
    probe = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pixquery", "search", "red", "--index", str(tmp_path / "idx"),
         "--json"], capture_output=True, text=True, env=env,
    )
    imported = {line.split("|")[-1].strip().split(".")[0] for line in probe.stderr.splitlines() if "|" in line}
    assert not imported & set(HEAVY)


def test_conse_indexes_and_finds_real_photos_without_torch(tmp_path: Path, photos_dir: Path) -> None:
    """`conse` runs from the files the package ships: nothing exported, downloaded or built, no torch."""
    cache = tmp_path / "cache"
    env = {**os.environ, "PIXQUERY_CACHE": str(cache)}
    code = f"""
        import json, sys
        from pathlib import Path
        from pixquery import Library
        lib = Library.open({str(tmp_path / "idx")!r}, model="conse")
        report = lib.index([{str(photos_dir / "nested")!r}])
        cats = [Path(h.path).parent.name for h in lib.search(text="a cat", k=5)]
        books = Path(lib.search(text="books on a shelf", k=1)[0].path).name
        print(json.dumps({{"embedded": report.embed.embedded, "cats": cats, "books": books,
                          "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
        """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"embedded": 13, "cats": ["cats"] * 5, "books": "books.jpg", "heavy": []}
    assert not (cache / "conse").exists()  # nothing exported or embedded at run time: it all ships

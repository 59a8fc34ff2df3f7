"""`pixquery demo`: offline, meaningful, reused when nothing changed, rebuilt when its photos or model change, and
owned by the installation it demonstrates."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pixquery import demo

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    proc = subprocess.run([sys.executable, "-m", "pixquery", *args], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc


def first_hit(output: str, title: str) -> str:
    """The file on the first row of the result table titled `title`."""
    block = output.split(title, 1)[1]
    row = next(line for line in block.splitlines() if re.match(r"\s*1\s*│", line))
    return row.split("│")[2].strip()


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo") / "demo"


def test_demo_runs_offline_and_answers_right(demo_dir: Path) -> None:
    out = run_cli("demo", "--dir", str(demo_dir), "--n", "50").stdout
    assert "ShapesWorld: 68 scenes indexed with mini (68 embedded now)" in out
    assert "Real photos: 21 photos indexed with conse (21 embedded now)" in out
    assert any(word in first_hit(out, 'text: "a cat"') for word in ("cat", "kitty"))  # a kitty is a cat
    assert first_hit(out, 'text: "books on a shelf"') == "books.jpg"
    assert first_hit(out, "image: [cat.jpg]") == "cat.jpg"
    # Where conse falls short the demo says so in the title, and the shortfall it names is what the table shows.
    words = " ".join(out.split())  # titles wrap at the table's width
    assert "no ImageNet class is a chess piece" in words and "chess" not in first_hit(out, 'text: "chess pieces"')
    assert "conse knows classes, not changes" in words
    assert first_hit(out, 'composed: [cat.jpg] + "a bird"') == "cat.jpg"
    record = json.loads((demo_dir / demo.RECORD_FILE).read_text())
    assert record["package"] == str(demo.PACKAGE_DIR) and set(record["parts"]) == {"shapesworld", "photos"}
    assert record["parts"]["photos"]["photos_sha256"] == demo.photos_fingerprint(demo.DEMO_PHOTOS)


def test_running_it_again_reuses_both_indexes(demo_dir: Path) -> None:
    out = run_cli("demo", "--dir", str(demo_dir), "--n", "50").stdout
    assert "(68 embedded now)" not in out and "ShapesWorld: 68 scenes indexed with mini (0 embedded now)" in out
    assert "Real photos: 21 photos indexed with conse (0 embedded now)" in out


def test_changed_photos_rebuild_the_photo_index(demo_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(demo.DEMO_PHOTOS, photos)
    (photos / "tree.jpg").unlink()
    monkeypatch.setattr(demo, "DEMO_PHOTOS", photos)
    demo.run_demo(demo_dir, n=50, photos=True)
    out = capsys.readouterr().out
    # Rebuilt from the new folder alone: 20 photos, none twice, none from the old folder.
    assert "Real photos: 20 photos indexed with conse (20 embedded now)" in out
    assert "ShapesWorld: 68 scenes indexed with mini (0 embedded now)" in out  # the other part is untouched
    from pixquery.api import Library

    with Library.open(demo_dir / "index-photos") as lib:
        assert lib.roots() == [str(photos)]


def test_a_changed_model_rebuilds_its_part(demo_dir: Path, monkeypatch, capsys) -> None:
    real_probe = demo.model_probe

    def other_model(encoder):  # the same spec, other weights: its probe vectors differ
        return [x + 0.01 for x in real_probe(encoder)] if encoder.name.startswith("mini") else real_probe(encoder)

    monkeypatch.setattr(demo, "model_probe", other_model)
    demo.run_demo(demo_dir, n=50, photos=False)
    assert "ShapesWorld: 68 scenes indexed with mini (68 embedded now)" in capsys.readouterr().out


def test_each_installation_has_its_own_demo(monkeypatch) -> None:
    first = demo.default_demo_dir()
    assert first.name == demo.installation_key() and demo.__version__ in first.name
    monkeypatch.setattr(demo, "PACKAGE_DIR", Path("/elsewhere/another/checkout/pixquery"))
    assert demo.default_demo_dir() != first and demo.default_demo_dir().parent == first.parent

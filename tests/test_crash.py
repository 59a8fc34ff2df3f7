"""A real indexing process killed with SIGKILL at random moments still leaves an index equal to a clean run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pixquery import Library
from tests.conftest import write_jpegs

MODEL = "random:tiny"


def _index_cmd(folder: Path, index: Path) -> list[str]:
    return [sys.executable, "-m", "pixquery", "index", str(folder), "--index", str(index), "--model", MODEL,
            "--batch-size", "8", "--json"]


def _snapshot(index: Path) -> dict[str, np.ndarray]:
    with Library.open(index) as lib:
        rows = {r.id: r for r in lib.catalog.all_files()}
        assert all(r.status == "indexed" for r in rows.values())
        ids = lib.store.ids()
        assert sorted(ids.tolist()) == sorted(rows)
        vectors = lib.store.get(ids)
        return {rows[int(i)].path: v for i, v in zip(ids, vectors, strict=True)}


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    write_jpegs(folder, 160, size=160)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    clean = tmp_path / "clean"
    subprocess.run(_index_cmd(folder, clean), check=True, env=env, capture_output=True)
    expected = _snapshot(clean)

    crashed = tmp_path / "crashed"
    rng = np.random.default_rng(7)
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen(_index_cmd(folder, crashed), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(float(rng.uniform(0.3, 4.0)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 3, "the indexing runs finished before they could be killed; make the data set larger"
    final = subprocess.run(_index_cmd(folder, crashed), check=True, env=env, capture_output=True, text=True)
    json.loads(final.stdout)  # the resumed run reports normally

    got = _snapshot(crashed)
    assert set(got) == set(expected)
    for path, vector in expected.items():
        assert float(vector @ got[path]) > 0.9999, path
    manifest = json.loads((crashed / "vectors" / "manifest.json").read_text())
    # Every committed row is live: nothing was embedded and stored twice.
    assert manifest["rows"] - len(manifest["dead"]) == len(expected) == 160

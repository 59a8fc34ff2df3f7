"""The repository stands on its own: a clone with nothing beside it runs the tests that read photos and models,
and none of them skips for a missing file.

The clone is of the committed HEAD, into an empty folder (no ../shared, no caches: PIXQUERY_CACHE is empty). It runs
a representative part of the suite rather than all of it (the whole suite takes ~7 minutes on 2 cores): every
module that reads the photo tree or the shipped models, in its fastest form. The full suite runs on the same
generated photos in CI anyway (tests/conftest.py::photos_dir).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

REPRESENTATIVE = [
    "tests/test_media.py",
    "tests/test_indexing.py::test_index_real_photos_reports_the_non_image",
    "tests/test_cli.py::test_index_search_info_roundtrip",
    "tests/test_cli.py::test_reports_go_to_stdout_and_progress_to_stderr",
    "tests/test_conse.py::test_text_query_ranks_a_matching_photo_first",
    "tests/test_organize_dedup.py",
    "tests/test_demo.py::test_demo_runs_offline_and_answers_right",
    "tests/torch_free",
]
"""Every kind of test that once needed ../shared/photos or a model export, from a fresh clone."""


@pytest.mark.slow
def test_a_clone_with_nothing_beside_it_runs_without_skipping_for_missing_files(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    empty = tmp_path / "empty"
    empty.mkdir()
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(empty / "pixquery")], check=True)
    clone = empty / "pixquery"
    assert sorted(p.name for p in empty.iterdir()) == ["pixquery"]  # nothing beside it: no ../shared
    env = {**os.environ, "PYTHONPATH": str(clone), "PIXQUERY_CACHE": str(tmp_path / "cache"),
           "PIXQUERY_INDEX": str(tmp_path / "default-index")}
    where = subprocess.run([sys.executable, "-c", "import pixquery; print(pixquery.__file__)"], cwd=clone, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(clone)  # the clone's own code runs, not this checkout's
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--timeout", "900",
         *REPRESENTATIVE],
        cwd=clone, env=env, capture_output=True, text=True,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert re.search(r"\d+ passed", output), output[-2000:]
    skips = [line for line in output.splitlines() if line.startswith("SKIPPED")]
    missing = [line for line in skips if re.search(r"not present|shared|missing|no such file", line, re.I)]
    assert missing == [], missing

"""The README's examples, run as written: the Python example, and every command of the tour that runs offline with
the shipped models (the ones that download a model, need an extra's server or a cluster, or install are left to
their own tests). They run on the package's demo photos, in a home folder of their own."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pixquery.demo import DEMO_PHOTOS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

NOT_OFFLINE = ("immich:", ".pixquery-clip", "pip install", "serve", "ray://", "/data/products", "/mnt/")
"""Tour lines left out here: a download (and a search of what it indexed), an install, a server that runs until
stopped (tests/test_server_api.py), a Ray cluster, and folders of the reader's own."""


def fenced(language: str, after: str) -> str:
    """The first ```language block after the heading or text `after`."""
    match = re.search(rf"```{language}\n(.*?)```", README.split(after, 1)[1], re.S)
    assert match, f"no {language} block after {after!r} in README.md"
    return match.group(1)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home folder holding ~/Pictures (the demo photos, the birds under 2024/) and the tour's holiday.jpg."""
    pictures = tmp_path / "home" / "Pictures"
    shutil.copytree(DEMO_PHOTOS, pictures)
    (pictures / "2024").mkdir()
    for bird in ("duck.jpg", "magpie.jpg", "parrot-and-flowers.jpg"):
        (pictures / bird).rename(pictures / "2024" / bird)
    shutil.copy(DEMO_PHOTOS / "boats on a lake.jpg", tmp_path / "home" / "holiday.jpg")
    return tmp_path / "home"


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXQUERY_")}
    return {**env, "HOME": str(home), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "COLUMNS": "200",
            "PIXQUERY_NO_SERVER": "1"}


def test_the_python_example_finds_the_parrots(home: Path) -> None:
    code = fenced("python", "From Python")
    shutil.copytree(DEMO_PHOTOS, home / "photos")
    proc = subprocess.run([sys.executable, "-c", code], cwd=home, env=environment(home), capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 5 and all(re.match(r"-?\d\.\d{3} /", line) for line in lines), proc.stdout
    assert [("parrot" in line) for line in lines[:2]] == [True, True], proc.stdout
    assert proc.stderr == ""  # no progress bar, no warning: conse fits photos


def test_the_tour_runs_offline_on_photos(home: Path) -> None:
    tour = [line.split("  #")[0].strip() for line in fenced("bash", "## A short tour").splitlines()]
    commands = [line for line in tour if line.startswith("pixquery ") and not any(s in line for s in NOT_OFFLINE)]
    assert len(commands) >= 6, commands  # index, four searches, info
    outputs = {}
    for command in commands:
        args = [arg.replace("~", str(home)) for arg in shlex.split(command)[1:]]
        proc = subprocess.run([sys.executable, "-m", "pixquery", *args], cwd=home, env=environment(home),
                              capture_output=True, text=True)
        assert proc.returncode == 0, (command, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stdout, (command, proc.stderr)
        outputs[command] = proc.stdout
    assert next(iter(outputs.values())).startswith("21 embedded")  # the index line comes first
    more_like = next(out for command, out in outputs.items() if "--image holiday.jpg -k 20" in command)
    assert "boats on a lake.jpg" in more_like.splitlines()[2]  # the same photo, first
    info = next(out for command, out in outputs.items() if command == "pixquery info")
    assert "conse" in info and "21" in info

"""A cold `pixquery search`: a new process that imports only what a text query needs and opens only the text
tower (from its fast-loading copy); a running server answers plain text searches instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pixquery.api import Library
from pixquery.cli.commands import _is_plain, spec_from_args
from pixquery.cli.main import build_parser
from pixquery.layout import IndexLayout
from pixquery.query.spec import QuerySpec, WeightedText
from tests.conftest import write_jpegs

ROOT = Path(__file__).resolve().parents[1]

HEAVY = ("torch", "faiss", "fastapi", "matplotlib", "sklearn", "transformers", "open_clip")
"""Packages a text query must never import."""

# Runs an entry point in a fresh interpreter, recording every onnxruntime session it opens and, at exit,
# which modules were imported.
PROBE = """
import atexit, json, sys
import onnxruntime as ort

opened = []
class Recording(ort.InferenceSession):
    def __init__(self, path_or_bytes, *args, **kwargs):
        opened.append(str(path_or_bytes))
        super().__init__(path_or_bytes, *args, **kwargs)
ort.InferenceSession = Recording

@atexit.register
def report():
    modules = sorted({name.split(".")[0] for name in sys.modules})
    plugins = sorted(name for name in sys.modules if name.startswith("PIL.") and name.endswith("ImagePlugin"))
    sys.stderr.write("PROBE " + json.dumps({"sessions": opened, "modules": modules, "plugins": plugins}) + "\\n")

sys.argv = ["pixquery", *sys.argv[1:]]
from pixquery.cli.main import main
main()
"""


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of 30 images built with random:tiny exported to ONNX, stored at int8."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from pixquery.models.export import export_onnx

    base = tmp_path_factory.mktemp("cold")
    model = export_onnx("random:tiny", base / "model")
    write_jpegs(base / "photos", 30)
    with Library.open(base / "index", model=f"onnx:{model}", precision="int8") as lib:
        lib.index([base / "photos"])
        lib.search("warm up")  # builds the text tower's fast-loading copy once, as the first query would
    return base / "index"


def run_probe(*args: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PIXQUERY_PRECISION", None)
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("PROBE ")]
    assert lines, proc.stderr
    return proc, json.loads(lines[-1][len("PROBE ") :])


def test_cold_search_imports_and_opens_only_what_a_text_query_needs(tiny_index: Path) -> None:
    proc, probe = run_probe("search", "a red car", "--index", str(tiny_index), "-k", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)
    assert len(hits) == 5 and all(Path(h["path"]).name.startswith("img_") for h in hits)
    assert not set(HEAVY) & set(probe["modules"]), probe["modules"]
    assert not {"typer", "click", "pydantic", "rich"} & set(probe["modules"])  # no CLI framework, no bars
    assert probe["plugins"] == []  # no image decoder plugins for a text query
    # one session: the int8 text tower's fast-loading copy, never the image tower
    assert len(probe["sessions"]) == 1, probe["sessions"]
    assert probe["sessions"][0].endswith(".ready.onnx") and "int8" in probe["sessions"][0]
    assert not any("visual" in path for path in probe["sessions"])


def test_other_commands_open_only_what_they_need(tiny_index: Path) -> None:
    proc, _ = run_probe("search", "a red car", "--index", str(tiny_index), "-k", "3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("img_") == 3 and "score" in proc.stdout
    proc, probe = run_probe("info", "--index", str(tiny_index), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["vectors"] == 30
    assert probe["sessions"] == []  # `info` needs no model at all
    proc, _ = run_probe("search", "a red car", "--index", str(tiny_index / "missing"))
    assert proc.returncode == 1 and "no index" in proc.stderr


def test_a_plain_text_search_is_told_by_the_parsers_own_defaults() -> None:
    parser = build_parser()
    plain = parser.parse_args(["search", "a dog", "-k", "5", "--index", "/x", "--json"])
    assert _is_plain(plain)
    for argv in (
        ["search", "a dog", "--image", "x.jpg"],  # example images
        ["search", "a dog", "--precision", "int8"],  # a checked precision: answered locally
        ["search", "a dog", "--cutoff", "auto"],
        ["search", "a dog", "--method", "sum"],
        ["search", "--image", "x.jpg"],
    ):
        assert not _is_plain(parser.parse_args(argv)), argv


def test_the_served_query_is_the_query_a_local_search_runs() -> None:
    args = build_parser().parse_args(["search", "a red car", "-k", "7"])
    local = spec_from_args(args)
    assert local == QuerySpec(texts=[WeightedText("a red car")], k=7).validate()
    from pixquery.query.jsonspec import spec_from_dict

    assert spec_from_dict({"texts": [{"text": args.text}], "k": args.top}) == local  # what the beacon path sends


def test_cold_search_asks_a_running_server_and_falls_back_without_one(tiny_index: Path) -> None:
    pytest.importorskip("fastapi")
    from pixquery.server.app import create_app
    from pixquery.server.beacon import remove_beacon, write_beacon
    from pixquery.server.run import BackgroundServer

    local, local_probe = run_probe("search", "a red car", "--index", str(tiny_index), "-k", "5", "--json")
    assert local.returncode == 0 and len(local_probe["sessions"]) == 1
    with BackgroundServer(create_app(tiny_index)) as server:
        write_beacon(tiny_index, server.url, token_required=False)
        try:
            served, probe = run_probe("search", "a red car", "--index", str(tiny_index), "-k", "5", "--json")
            table, _ = run_probe("search", "a red car", "--index", str(tiny_index), "-k", "3")
        finally:
            remove_beacon(tiny_index)
    assert served.returncode == 0, served.stderr
    assert probe["sessions"] == []  # the served path opens no model
    served_hits, local_hits = json.loads(served.stdout), json.loads(local.stdout)
    assert [h["id"] for h in served_hits] == [h["id"] for h in local_hits]
    assert served_hits == local_hits  # same fields and scores as a local search prints
    assert table.stdout.count("img_") == 3 and "score" in table.stdout
    assert not IndexLayout(tiny_index).beacon.exists()

    # A beacon left by a dead server, or one that needs a token, is ignored: the query runs locally.
    IndexLayout(tiny_index).beacon.write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": 2**22 + 12345,
                                                      "token_required": False}))
    try:
        again, probe = run_probe("search", "a red car", "--index", str(tiny_index), "-k", "5", "--json")
    finally:
        IndexLayout(tiny_index).beacon.unlink()
    assert again.returncode == 0 and len(probe["sessions"]) == 1
    assert [h["id"] for h in json.loads(again.stdout)] == [h["id"] for h in local_hits]

"""A cold `pixquery search`: a new process that imports only what a text query needs and opens only the text
tower (from its fast-loading copy), through the quick entry point and through the full CLI alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pixquery.api import Library
from pixquery.quick import SEARCH_DEFAULTS, parse_search, query_spec
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

entry = sys.argv[1]
sys.argv = ["pixquery", *sys.argv[2:]]
if entry == "quick":
    from pixquery.quick import main
else:
    from pixquery.cli import main
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


def run_probe(entry: str, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PIXQUERY_PRECISION", None)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, entry, *args], capture_output=True, text=True, env=env, timeout=120
    )
    lines = [line for line in proc.stderr.splitlines() if line.startswith("PROBE ")]
    assert lines, proc.stderr
    return proc, json.loads(lines[-1][len("PROBE ") :])


@pytest.mark.parametrize("entry", ["quick", "cli"])
def test_cold_search_imports_and_opens_only_what_a_text_query_needs(tiny_index: Path, entry: str) -> None:
    proc, probe = run_probe(entry, "search", "a red car", "--index", str(tiny_index), "-k", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)
    assert len(hits) == 5 and all(Path(h["path"]).name.startswith("img_") for h in hits)
    assert not set(HEAVY) & set(probe["modules"]), probe["modules"]
    assert probe["plugins"] == []  # no image decoder plugins for a text query
    # one session: the int8 text tower's fast-loading copy, never the image tower
    assert len(probe["sessions"]) == 1, probe["sessions"]
    assert probe["sessions"][0].endswith("textual-int8.ready.onnx")
    assert not any("visual" in path for path in probe["sessions"])
    if entry == "quick":
        assert not {"typer", "pydantic", "rich"} & set(probe["modules"])  # the CLI framework stays unloaded


def test_quick_entry_prints_the_clis_table_and_hands_other_commands_over(tiny_index: Path) -> None:
    proc, probe = run_probe("quick", "search", "a red car", "--index", str(tiny_index), "-k", "3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("img_") == 3 and "score" in proc.stdout
    proc, probe = run_probe("quick", "info", "--index", str(tiny_index), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["vectors"] == 30
    assert probe["sessions"] == []  # `info` needs no model at all
    proc, _ = run_probe("quick", "search", "a red car", "--index", str(tiny_index / "missing"))
    assert proc.returncode == 1 and "no index" in proc.stderr


def test_parse_search_takes_only_plain_text_searches() -> None:
    args = parse_search(["search", "a dog", "-k", "5", "--index", "/x", "--precision", "int8", "--json"])
    assert args is not None and (args.text, args.top, args.index, args.precision, args.json_out) == (
        "a dog", 5, "/x", "int8", True
    )
    for argv in (
        ["index", "photos"],
        ["search", "a dog", "--image", "x.jpg"],  # example images: the full CLI
        ["search", "a dog", "--help"],
        ["search", "a dog", "-k", "0"],  # invalid: the CLI reports it
        ["search", "a dog", "--ind", "/x"],  # abbreviations are not options to the CLI either
        ["search"],
        [],
    ):
        assert parse_search(argv) is None, argv


def test_quick_search_builds_the_clis_query() -> None:
    import inspect

    from pixquery import cli

    defaults = {name: p.default for name, p in inspect.signature(cli.search).parameters.items()}
    assert {key: defaults[key] for key in SEARCH_DEFAULTS} == SEARCH_DEFAULTS
    # every other flag defaults to "not given"
    others = set(defaults) - set(SEARCH_DEFAULTS) - {"text", "k", "index", "model", "precision", "json_out"}
    assert all(defaults[name] in (None, False) for name in others), {n: defaults[n] for n in others}
    args = parse_search(["search", "a red car", "-k", "7"])
    assert args is not None
    spec = query_spec(args)
    assert [t.text for t in spec.texts] == ["a red car"] and spec.k == 7 and not spec.images


def test_plain_spec_json_is_the_clis_query() -> None:
    from pixquery.query.jsonspec import spec_from_dict
    from pixquery.quick import plain_spec_json

    args = parse_search(["search", "a red car", "-k", "7"])
    assert args is not None
    assert spec_from_dict(plain_spec_json(args)) == query_spec(args)


def test_cold_search_asks_a_running_server_and_falls_back_without_one(tiny_index: Path) -> None:
    pytest.importorskip("fastapi")
    from pixquery.server.app import create_app
    from pixquery.server.beacon import BEACON_FILE, remove_beacon, write_beacon
    from pixquery.server.run import BackgroundServer

    local, local_probe = run_probe("quick", "search", "a red car", "--index", str(tiny_index), "-k", "5", "--json")
    assert local.returncode == 0 and len(local_probe["sessions"]) == 1
    with BackgroundServer(create_app(tiny_index)) as server:
        write_beacon(tiny_index, server.url, token_required=False)
        try:
            served, probe = run_probe("quick", "search", "a red car", "--index", str(tiny_index), "-k", "5", "--json")
            table, _ = run_probe("quick", "search", "a red car", "--index", str(tiny_index), "-k", "3")
        finally:
            remove_beacon(tiny_index)
    assert served.returncode == 0, served.stderr
    assert probe["sessions"] == []  # the served path opens no model
    served_hits, local_hits = json.loads(served.stdout), json.loads(local.stdout)
    assert [h["id"] for h in served_hits] == [h["id"] for h in local_hits]
    assert served_hits == local_hits  # same fields and scores as a local search prints
    assert table.stdout.count("img_") == 3 and "score" in table.stdout
    assert not (tiny_index / BEACON_FILE).exists()

    # A beacon left by a dead server, or one that needs a token, is ignored: the query runs locally.
    (tiny_index / BEACON_FILE).write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": 2**22 + 12345,
                                                      "token_required": False}))
    try:
        again, probe = run_probe("quick", "search", "a red car", "--index", str(tiny_index), "-k", "5", "--json")
    finally:
        (tiny_index / BEACON_FILE).unlink()
    assert again.returncode == 0 and len(probe["sessions"]) == 1
    assert [h["id"] for h in json.loads(again.stdout)] == [h["id"] for h in local_hits]

"""The command line as a user runs it: index, search (table and JSON), info, --help, --version; every error in
one line with nothing left behind; reports on stdout, progress and diagnostics on stderr; Ctrl-C and resuming."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_jpegs
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "pixquery", *args], capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"pixquery {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def test_index_search_info_roundtrip(tmp_path: Path, photos_dir: Path) -> None:
    idx = str(tmp_path / "idx")
    report = json.loads(run("index", str(photos_dir), "--index", idx, "--model", "random:tiny", "--json").stdout)
    assert report["embedded"] == 38
    hits = json.loads(run("search", "a cat", "--index", idx, "-k", "5", "--json").stdout)
    assert len(hits) == 5 and {"id", "path", "score"} <= set(hits[0])
    image = str(photos_dir / "flat" / "cat.jpg")
    by_image = json.loads(run("search", "--image", image, "--index", idx, "-k", "1", "--json").stdout)
    assert by_image[0]["path"].endswith("cat.jpg")
    table = run("search", "a cat", "--index", idx, "-k", "3").stdout
    assert "score" in table and "path" in table
    info = json.loads(run("info", "--index", idx, "--json").stdout)
    assert info["indexed"] == 38 and any(s["path"].endswith("not-an-image.txt") for s in info["skipped"])
    human = run("info", "--index", idx)
    assert "not-an-image.txt" in human.stdout and "random:tiny" in human.stdout  # a report: stdout, not stderr


def test_errors_are_one_clear_line(tmp_path: Path, photos_dir: Path) -> None:
    proc = run("search", "a cat", "--index", str(tmp_path / "none"), check=False)
    assert proc.returncode == 1 and "no index at" in proc.stderr and "Traceback" not in proc.stderr
    idx = str(tmp_path / "idx")
    run("index", str(photos_dir / "heic"), "--index", idx, "--model", "random:tiny", "--json")
    proc = run("index", str(photos_dir / "heic"), "--index", idx, "--model", "mini", check=False)
    assert proc.returncode == 1 and "built with model 'random:tiny'" in proc.stderr
    proc = run("search", "--index", idx, check=False)
    assert proc.returncode == 2 and "give a text" in proc.stderr
    proc = run("search", "--image", str(tmp_path / "missing.jpg"), "--index", idx, check=False)
    assert proc.returncode != 0 and "missing.jpg" in proc.stderr and "Traceback" not in proc.stderr


def test_offline_model_download_names_the_files(tmp_path: Path) -> None:
    env_cache = {"PIXQUERY_OFFLINE": "1", "PIXQUERY_CACHE": str(tmp_path / "cache")}
    os.environ.update(env_cache)
    try:
        proc = run("index", str(tmp_path), "--index", str(tmp_path / "idx"), "--model", "immich:ViT-B-32__openai",
                   check=False)
    finally:
        for key in env_cache:
            os.environ.pop(key)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "ViT-B-32__openai" in proc.stderr and "offline" in proc.stderr.lower()


def test_help_teaches() -> None:
    out = run("--help").stdout
    for command in ("index", "search", "info", "export-onnx"):
        assert command in out
    assert "--model" in run("index", "--help").stdout


def test_search_flags_compose_negate_filter(tmp_path: Path, photos_dir: Path) -> None:
    idx = str(tmp_path / "idx")
    run("index", str(photos_dir), "--index", idx, "--model", "random:tiny", "--json")
    cat = str(photos_dir / "flat" / "cat.jpg")
    composed = json.loads(run("search", "make it black", "--image", cat, "--method", "weighted", "--alpha", "0.3",
                              "--not", "a dog", "--index", idx, "-k", "4", "--json").stdout)
    assert len(composed) == 4
    nested = str(photos_dir / "nested" / "cats")
    only_cats = json.loads(run("search", "a cat", "--folder", nested, "--index", idx, "-k", "10", "--json").stdout)
    assert len(only_cats) == 5 and all(h["path"].startswith(nested) for h in only_cats)
    jpgs = json.loads(run("search", "a cat", "--ext", "png", "--index", idx, "-k", "10", "--json").stdout)
    assert jpgs and all(h["path"].lower().endswith(".png") for h in jpgs)
    proc = run("search", "a cat", "--method", "nonsense", "--index", idx, check=False)
    assert proc.returncode == 1 and "nonsense" in proc.stderr and "Traceback" not in proc.stderr


def test_index_store_option_creates_and_refuses_switching(tmp_path: Path, photos_dir: Path) -> None:
    idx = str(tmp_path / "idx")
    run("index", str(photos_dir / "flat"), "--index", idx, "--model", "random:tiny", "--store", "faiss-hnsw",
        "--json")
    info = json.loads(run("info", "--index", idx, "--json").stdout)
    assert info["store"] == "faiss-hnsw" and info["store_info"]["kind"] == "faiss-hnsw"
    proc = run("index", str(photos_dir / "flat"), "--index", idx, "--store", "flat", check=False)
    assert proc.returncode == 2 and "pixquery reindex --store flat" in proc.stderr
    hits = json.loads(run("search", "--image", str(photos_dir / "flat" / "cat.jpg"), "--index", idx, "-k", "1",
                          "--json").stdout)
    assert hits[0]["path"].endswith("cat.jpg")


def test_ray_flag_without_address_means_local() -> None:
    from pixquery.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["index", "p", "--ray"]).ray == "local"
    assert parser.parse_args(["index", "p", "--ray", "--ray-actors", "1"]).ray == "local"
    assert parser.parse_args(["index", "p", "--ray", "auto"]).ray == "auto"
    assert parser.parse_args(["index", "p"]).ray is None


# --- what a newcomer meets: versions, help, every error in one line, streams, interruption ---------------------


def one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    """The command failed with `code` and said why in one line on stderr: no traceback, no usage, no stdout."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and "usage:" not in proc.stderr and proc.stdout == ""
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_version() -> None:
    from pixquery import __version__

    proc = run("--version")
    assert proc.stdout.strip() == f"pixquery {__version__}" and proc.stderr == ""
    # The module itself is runnable too (it once did nothing at all, silently).
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    module = subprocess.run([sys.executable, "-m", "pixquery.cli.main", "--version"], capture_output=True, text=True,
                            env=env)
    assert module.returncode == 0 and module.stdout.strip() == f"pixquery {__version__}"


def test_help_is_shown_as_written() -> None:
    assert "(needs pixquery[torch])" in " ".join(run("train-mini", "--help").stdout.split())
    tag = " ".join(run("tag", "--help").stdout.split())
    assert '{"label": ["description", ...]}' in tag  # brackets and braces survive (no markup engine)
    top = run("--help").stdout
    assert "pixquery demo" in top and "train-mini" in top and "[torch]" in top


def test_search_without_a_query_is_one_line_without_usage(tmp_path: Path) -> None:
    one_line_error(run("search", "--index", str(tmp_path / "idx"), check=False), 2, "give a text")


def test_index_of_a_missing_path_leaves_nothing_behind(tmp_path: Path) -> None:
    idx = tmp_path / "idx"
    proc = run("index", str(tmp_path / "no" / "such" / "path"), "--index", str(idx), "--model", "mini", check=False)
    one_line_error(proc, 1, "no such file or folder", "no/such/path")
    assert not idx.exists()


@pytest.mark.parametrize(("model", "suggestion"), [("minii", "mini"), ("conse:lite3", "conse:lite2"),
                                                   ("consee", "conse")])
def test_a_model_typo_suggests_the_name_and_leaves_nothing_behind(tmp_path: Path, model: str, suggestion: str) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (32, 32), "red").save(photos / "red.png")
    idx = tmp_path / "idx"
    proc = run("index", str(photos), "--index", str(idx), "--model", model, check=False)
    one_line_error(proc, 1, f"Did you mean {suggestion!r}?")
    assert not idx.exists()  # no folder, no index.lock


def test_the_facade_suggests_too(tmp_path: Path) -> None:
    from pixquery.api import Library
    from pixquery.models.base import ModelError

    with pytest.raises(ModelError, match="Did you mean 'mini'"), Library.open(tmp_path / "idx", model="Minii") as lib:
        lib.index([tmp_path])
    assert not (tmp_path / "idx").exists()


def test_an_index_folder_that_cannot_be_used_is_refused_in_one_line(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (32, 32), "red").save(photos / "red.png")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    one_line_error(run("index", str(photos), "--index", str(a_file / "idx"), "--model", "mini", check=False), 1,
                   "Not a directory")
    one_line_error(run("index", str(photos), "--index", str(a_file), "--model", "mini", check=False), 1,
                   "is a file, not an index directory")
    # A folder that is not an index (here: the photos themselves) never gets pixquery's files mixed into it.
    before = sorted(p.name for p in photos.iterdir())
    one_line_error(run("index", str(photos), "--index", str(photos), "--model", "mini", check=False), 2,
                   "is not an index and is not empty")
    assert sorted(p.name for p in photos.iterdir()) == before


def test_an_empty_folder_gives_a_hint_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = run("index", str(tmp_path / "empty"), "--index", str(tmp_path / "idx"), "--model", "mini")
    assert proc.stdout.startswith("0 embedded") and "no images found under" in proc.stderr
    assert "no images" not in proc.stdout
    documents = tmp_path / "documents"  # no image either: the files are listed as skipped, and the hint is given
    documents.mkdir()
    (documents / "notes.txt").write_text("notes")
    (documents / "README.md").write_text("# read me")
    proc = run("index", str(documents), "--index", str(tmp_path / "idx2"), "--model", "mini")
    assert "skipped (2):" in proc.stdout and "notes.txt: not an image file extension" in proc.stdout
    assert f"no images found under {documents}" in proc.stderr
    large = tmp_path / "large"  # an image too large to index is an image: its reason, not "no images found"
    large.mkdir()
    Image.new("RGB", (2000, 1000), "red").save(large / "wide.png")
    proc = run("index", str(large), "--index", str(tmp_path / "idx3"), "--model", "mini", "--max-megapixels", "1")
    assert "wide.png" in proc.stdout and "no images found" not in proc.stderr


def test_reports_go_to_stdout_and_progress_to_stderr(tmp_path: Path, photos_dir: Path) -> None:
    idx = str(tmp_path / "idx")
    indexed = run("index", str(photos_dir / "nested"), "--index", idx, "--model", "conse")
    assert indexed.stdout.startswith("13 embedded") and "embedded" not in indexed.stderr.replace("Embedding", "")
    for args, needle in [(("info",), "conse"), (("search", "a cat", "-k", "2"), "score"),
                         (("duplicates",), "pixquery deletes nothing"), (("tag", "--labels", "cat,bee"), "cat"),
                         (("cluster", "--k", "2"), "("), (("info", "--json"), '"indexed": 13')]:
        proc = run(*args, "--index", idx)
        assert needle in proc.stdout, (args, proc.stdout, proc.stderr)
        assert needle not in proc.stderr, (args, proc.stderr)
    (tmp_path / "info.txt").write_text(run("info", "--index", idx).stdout)
    assert "conse" in (tmp_path / "info.txt").read_text()  # `pixquery info > f` keeps the report


def _indexed_rows(index: Path) -> int:
    try:
        with sqlite3.connect(f"file:{index / 'catalog.sqlite'}?mode=ro", uri=True) as connection:
            return connection.execute("SELECT COUNT(*) FROM files WHERE status = 'indexed'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_ctrl_c_says_how_to_resume_and_the_rerun_counts_right(tmp_path: Path) -> None:
    write_jpegs(tmp_path / "photos", 96, size=64)
    idx = tmp_path / "idx"
    command = [sys.executable, "-m", "pixquery", "index", str(tmp_path / "photos"), "--index", str(idx), "--model",
               "conse", "--batch-size", "8"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while _indexed_rows(idx) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err and out == ""
    resume = "interrupted: what was embedded is saved; run the same command again to resume"
    assert err.strip().splitlines()[-1] == resume
    done = _indexed_rows(idx)
    assert 8 <= done < 96
    again = run(*command[3:])
    assert again.stdout.startswith(f"{96 - done} embedded")
    assert f"{96 - done} of them resumed from an interrupted run, {done} unchanged" in again.stdout
    assert run(*command[3:]).stdout.startswith("0 embedded (0.0 images/s), 96 unchanged")


def test_serve_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    idx = str(tmp_path / "idx")
    run("index", str(tmp_path / "empty"), "--index", idx, "--model", "mini")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run("serve", "--index", idx, "--port", str(port), check=False)
    one_line_error(proc, 1, f"port {port} is busy", "--port")
    bad = run("serve", "--index", idx, "--port", "70000", check=False)
    assert bad.returncode == 2 and "between 1 and 65535" in bad.stderr and "Traceback" not in bad.stderr


def test_an_unreachable_hub_is_one_line_saying_where_to_put_the_files(tmp_path: Path) -> None:
    """The hub's own message spans lines; the user still gets one line (here the hub is a closed local port)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"),
           "PIXQUERY_CACHE": str(tmp_path / "cache")}
    env.pop("HF_HUB_OFFLINE", None)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (32, 32), "red").save(photos / "red.png")
    idx = tmp_path / "idx"
    proc = subprocess.run([sys.executable, "-m", "pixquery", "index", str(photos), "--index", str(idx), "--model",
                           "immich:ViT-B-32__laion2b_s34b_b79k"], capture_output=True, text=True, env=env)
    one_line_error(proc, 1, "could not download", "Put the files of", str(tmp_path / "cache"))
    assert not idx.exists()


def test_loading_a_transformers_checkpoint_prints_no_bar(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    code = (
        "import sys\n"
        "from test_models_registry import save_hf_checkpoint\n"
        f"checkpoint = save_hf_checkpoint('tiny', __import__('pathlib').Path({str(tmp_path / 'tiny')!r}))\n"
        "sys.stderr.write('--load--\\n'); sys.stderr.flush()\n"
        "from pixquery.models.registry import load_encoder\n"
        "load_encoder(str(checkpoint))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    after = proc.stderr.split("--load--\n", 1)[1]
    assert "Loading weights" not in after and "it/s" not in after, after


def test_a_missing_extra_is_named_in_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """As in a base install: the server, faiss and Ray are extras. Modules that fail to import stand in for them."""
    blocked = tmp_path / "blocked"
    for module in ("uvicorn", "faiss", "ray"):
        (blocked / module).mkdir(parents=True)
        (blocked / module / "__init__.py").write_text(
            f"raise ModuleNotFoundError('No module named {module}', name={module!r})\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked), str(ROOT)])}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pixquery", *args], capture_output=True, text=True, env=env)

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (32, 32), "red").save(photos / "red.png")
    one_line_error(cli("serve", "--index", str(tmp_path / "any")), 1, 'pip install "pixquery[serve]"')
    for flags in (("--store", "faiss-hnsw"), ("--ray",)):
        idx = tmp_path / f"idx{len(flags)}"
        proc = cli("index", str(photos), "--index", str(idx), "--model", "mini", *flags)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].endswith('pip install "pixquery[scale]"')
        assert not idx.exists()  # the new index it could not finish is not left behind

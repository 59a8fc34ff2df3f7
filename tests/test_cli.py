"""The command line as a user runs it: index, search (table and JSON), info, clear errors, --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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

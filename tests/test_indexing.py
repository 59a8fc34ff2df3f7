"""Indexing as a user sees it: incremental, follows moves and deletions, refuses a mismatched model, locks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pixquery import Library
from pixquery.errors import IndexFormatError, IndexLockedError, ModelMismatchError
from pixquery.store.lock import IndexLock
from tests.conftest import write_jpegs

MODEL = "random:tiny"


def test_index_real_photos_reports_the_non_image(tmp_path: Path, photos_dir: Path) -> None:
    with Library.open(tmp_path / "idx", model=MODEL) as lib:
        report = lib.index([photos_dir]).to_dict()
        info = lib.info()
    assert report["embedded"] == 38 and report["failed"] == 0
    skipped = {Path(s["path"]).name: s["reason"] for s in info["skipped"]}
    assert "not-an-image.txt" in skipped and "not an image" in skipped["not-an-image.txt"]
    assert info["indexed"] == info["vectors"] == 38 and info["model"] == MODEL


def test_second_run_embeds_nothing(tmp_path: Path, jpeg_folder: Path) -> None:
    with Library.open(tmp_path / "idx", model=MODEL) as lib:
        assert lib.index([jpeg_folder]).embed.embedded == 24
        again = lib.index([jpeg_folder])
    assert again.embed.embedded == 0 and again.sync.unchanged == 24


def test_changed_deleted_and_moved_files(tmp_path: Path, jpeg_folder: Path) -> None:
    lib = Library.open(tmp_path / "idx", model=MODEL)
    lib.index([jpeg_folder])
    moved_from = jpeg_folder / "img_0003.jpg"
    old_row = lib.catalog.by_path(str(moved_from))
    old_vector = lib.store.get(np.array([old_row.id]))
    (jpeg_folder / "sub").mkdir()
    shutil.move(moved_from, jpeg_folder / "sub" / "renamed.jpg")
    (jpeg_folder / "img_0005.jpg").unlink()
    write_jpegs(tmp_path / "other", 1, seed=99)
    shutil.copy(tmp_path / "other" / "img_0000.jpg", jpeg_folder / "img_0007.jpg")  # new content, same path
    report = lib.index([jpeg_folder])
    assert (report.sync.moved, report.sync.deleted, report.sync.changed, report.embed.embedded) == (1, 1, 1, 1)
    moved_row = lib.catalog.by_path(str(jpeg_folder / "sub" / "renamed.jpg"))
    assert moved_row.id == old_row.id  # same row, same vector: not embedded again
    assert np.array_equal(lib.store.get(np.array([moved_row.id])), old_vector)
    assert lib.catalog.by_path(str(jpeg_folder / "img_0005.jpg")) is None
    assert lib.store.count() == 23 and lib.info()["indexed"] == 23
    lib.close()


def test_touched_but_unchanged_file_is_not_reembedded(tmp_path: Path, jpeg_folder: Path) -> None:
    with Library.open(tmp_path / "idx", model=MODEL) as lib:
        lib.index([jpeg_folder])
        os.utime(jpeg_folder / "img_0001.jpg", (1e9, 1e9))
        assert lib.index([jpeg_folder]).embed.embedded == 0


def test_corrupt_files_are_recorded_and_fixed_files_reindexed(tmp_path: Path, jpeg_folder: Path) -> None:
    (jpeg_folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    with Library.open(tmp_path / "idx", model=MODEL) as lib:
        report = lib.index([jpeg_folder])
        assert report.embed.failed == 1
        errors = lib.info()["errors"]
        assert [Path(e["path"]).name for e in errors] == ["broken.jpg"] and errors[0]["reason"]
        shutil.copy(jpeg_folder / "img_0000.jpg", jpeg_folder / "broken.jpg")
        assert lib.index([jpeg_folder]).embed.embedded == 1
        assert lib.info()["errors"] == []


def test_empty_folder_gives_an_empty_index(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with Library.open(tmp_path / "idx", model=MODEL) as lib:
        assert lib.index([tmp_path / "empty"]).embed.embedded == 0
        assert lib.search(text="anything", k=5) == []


def test_other_model_is_refused(tmp_path: Path, jpeg_folder: Path) -> None:
    Library.open(tmp_path / "idx", model=MODEL).index([jpeg_folder])
    with pytest.raises(ModelMismatchError, match="built with model 'random:tiny', not 'mini'"):
        Library.open(tmp_path / "idx", model="mini")


def test_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="no index at"):
        Library.open(tmp_path / "nothing").search(text="cat")


def test_second_indexer_gets_index_is_locked(tmp_path: Path, jpeg_folder: Path) -> None:
    (tmp_path / "idx").mkdir()
    with IndexLock(tmp_path / "idx"), pytest.raises(IndexLockedError, match="index is locked"):
        Library.open(tmp_path / "idx", model=MODEL).index([jpeg_folder])


def test_search_by_text_and_image(tmp_path: Path, jpeg_folder: Path) -> None:
    with Library.open(tmp_path / "idx", model=MODEL) as lib:
        lib.index([jpeg_folder])
        by_image = lib.search(images=[jpeg_folder / "img_0004.jpg"], k=3)
        assert by_image[0].path.endswith("img_0004.jpg") and by_image[0].score == pytest.approx(1.0, abs=1e-3)
        hits = lib.search(text="a photo", k=5)
        assert len(hits) == 5 and all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))


def test_a_chmod_is_rehashed_once_and_the_file_still_served(tmp_path: Path, jpeg_folder: Path) -> None:
    """A chmod moves only the inode's change time: the next run reads the file again (the row must describe the file
    as it is, since serving checks it), finds the same content and embeds nothing."""
    with Library.open(tmp_path / "idx", model=MODEL) as lib:
        lib.index([jpeg_folder])
        path = jpeg_folder / "img_0002.jpg"
        row = lib.catalog.by_path(str(path))
        path.chmod(0o600)
        again = lib.index([jpeg_folder])
        assert again.embed.embedded == 0 and again.sync.changed == 0 and again.sync.unchanged == 24
        assert lib.catalog.by_path(str(path)).ctime_ns == path.stat().st_ctime_ns != row.ctime_ns
        with lib.open_file(row.id) as (handle, _):
            assert handle.read() == path.read_bytes()


def test_a_file_indexed_twice_by_an_older_run_is_kept_once(tmp_path: Path, jpeg_folder: Path) -> None:
    """An index built when links to one file were indexed twice: the next run keeps one row (the file's own path)
    and drops the other with its vector, embedding nothing."""
    outside = tmp_path / "outside"
    write_jpegs(outside, 1, seed=5)
    (jpeg_folder / "link.jpg").symlink_to(outside / "img_0000.jpg")
    with Library.open(tmp_path / "idx", model=MODEL) as lib:
        lib.index([jpeg_folder])
        # What an older pixquery left: a second row for the same file, reached through a folder link.
        (jpeg_folder / "linked").symlink_to(outside, target_is_directory=True)
        row = lib.catalog.by_path(str(jpeg_folder / "link.jpg"))
        twin = str(jpeg_folder / "linked" / "img_0000.jpg")
        twin_id = lib.catalog.insert(twin, str(jpeg_folder / "linked"), "jpg", row.size, row.mtime_ns,
                                     row.content_hash, row.device, row.inode, row.ctime_ns)
        lib.catalog.mark_indexed(twin_id, {})
        lib.catalog.commit()
        report = lib.index([jpeg_folder])
        assert report.embed.embedded == 0 and report.sync.deleted == 1
        assert lib.catalog.by_path(twin) is None and lib.catalog.by_path(str(jpeg_folder / "link.jpg")) is not None
        assert any("same file as" in s["reason"] for s in report.to_dict()["skipped"])

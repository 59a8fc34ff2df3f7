"""Ingestion: every real format users have decodes; every bad file is reported with a reason, never fatal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from pixquery.media.decode import ImageDecodeError, open_image, open_image_with_metadata
from pixquery.media.discover import discover


def test_every_shared_photo_decodes_and_the_text_file_is_skipped_with_a_reason(photos_dir: Path) -> None:
    found = discover([photos_dir])
    names = {p.name for p in found.files}
    assert {"bee.heic", "duck.jp2", "tree.webp", "bee_animated.gif", "chess-knight.tiff", "magpie.pbm",
            "鳥鳥.png", "black cat sleeping on a chair.JPG"} <= names
    assert len(found.files) == 38
    reasons = {Path(s.path).name: s.reason for s in found.skipped}
    assert "not an image" in reasons["not-an-image.txt"]
    for path in found.files:
        image, meta = open_image_with_metadata(path)
        assert image.mode == "RGB" and image.width > 0 and meta["width"] > 0


def test_heic_decodes_like_its_jpeg_twin(photos_dir: Path) -> None:
    heic = open_image(photos_dir / "heic" / "bee.heic")
    jpeg = open_image(photos_dir / "heic" / "bee.jpg")
    assert heic.size == jpeg.size


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (20, 10), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert open_image(tmp_path / "anim.gif").getpixel((5, 5))[0] > 200


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), "white")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    image.save(tmp_path / "rot.jpg", exif=exif)
    assert open_image(tmp_path / "rot.jpg").size == (20, 40)


def test_exif_date_camera_and_gps_are_read(tmp_path: Path) -> None:
    image = Image.new("RGB", (32, 32), "white")
    exif = image.getexif()
    exif[0x010F] = "Fujifilm"
    exif[0x0110] = "X100V"
    exif.get_ifd(0x8769)[0x9003] = "2023:07:14 18:02:11"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 51.0, 29.0), "E", (2.0, 17.0, 40.0)
    image.save(tmp_path / "meta.jpg", exif=exif)
    _, meta = open_image_with_metadata(tmp_path / "meta.jpg")
    assert meta["taken_at"] == "2023-07-14T18:02:11"
    assert (meta["camera_make"], meta["camera_model"]) == ("Fujifilm", "X100V")
    assert meta["gps_lat"] == pytest.approx(48.858, abs=1e-3) and meta["gps_lon"] == pytest.approx(2.2944, abs=1e-3)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", "not an image"),
        ("text.png", b"hello, I am not a PNG", "not an image"),
        ("truncated.jpg", None, "corrupt or truncated"),
    ],
)
def test_bad_files_raise_a_reason(tmp_path: Path, name: str, content: bytes | None, reason: str) -> None:
    path = tmp_path / name
    if content is None:
        Image.new("RGB", (256, 256), "red").save(path, quality=90)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=reason):
        open_image(path)


def test_huge_image_is_refused_before_decoding(tmp_path: Path) -> None:
    Image.new("L", (4000, 3000)).save(tmp_path / "big.png")
    with pytest.raises(ImageDecodeError, match=r"too large to process \(12.0 MP\).*--max-megapixels"):
        open_image(tmp_path / "big.png", max_megapixels=10)
    assert open_image(tmp_path / "big.png", max_megapixels=None).size == (4000, 3000)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files whatever their mode")
def test_unreadable_file_gives_permission_reason(tmp_path: Path) -> None:
    path = tmp_path / "secret.jpg"
    Image.new("RGB", (8, 8)).save(path)
    path.chmod(0)
    with pytest.raises(ImageDecodeError, match="permission denied"):
        open_image(path)


def test_discovery_rules(tmp_path: Path) -> None:
    for rel in ("a/one.JPG", "a/two.Png", "a/.hidden/three.jpg", ".dot/four.jpg", "b/notes.txt", "b/five.webp"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a")  # a symlink loop
    (tmp_path / "b" / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    found = discover([tmp_path])
    rel = sorted(str(p.relative_to(tmp_path)) for p in found.files)
    assert rel == ["a/one.JPG", "a/two.Png", "b/five.webp"]
    reasons = {Path(s.path).name: s.reason for s in found.skipped}
    assert reasons["dangling.jpg"] == "broken symbolic link"
    assert "notes.txt" in reasons
    assert len(discover([tmp_path], hidden=True).files) == 5
    assert [p.name for p in discover([tmp_path], exclude=["*/a/*"]).files] == ["five.webp"]
    assert [p.name for p in discover([tmp_path], include=["*.webp"]).files] == ["five.webp"]


def test_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        discover([tmp_path / "missing"])


def test_empty_folder_finds_nothing(tmp_path: Path) -> None:
    found = discover([tmp_path])
    assert found.files == [] and found.skipped == []


def test_discovery_never_reads_and_reports_every_odd_entry(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "real.png")
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    (tmp_path / "self.jpg").symlink_to("self.jpg")
    os.link(tmp_path / "real.png", tmp_path / "hardlink.png")  # the same file under another name: listed once
    (tmp_path / "folder-link").symlink_to(tmp_path, target_is_directory=True)
    found = discover([tmp_path])
    assert [p.name for p in found.files] == ["hardlink.png"]  # its own path, first by name
    reasons = {Path(s.path).name: s.reason for s in found.skipped}
    assert "named pipe" in reasons["pipe.jpg"] and "character device" in reasons["zero.jpg"]
    assert "symbolic link loop" in reasons["self.jpg"]
    assert "same file as" in reasons["real.png"] and "already scanned" in reasons["folder-link"]
    assert found.duplicates == {str(tmp_path / "real.png"): str(tmp_path / "hardlink.png")}
    assert found.stats[str(tmp_path / "hardlink.png")].st_size > 0
    not_followed = discover([tmp_path], follow_symlinks=False)
    assert "not followed" in {Path(s.path).name: s.reason for s in not_followed.skipped}["folder-link"]


def test_a_root_that_is_a_fifo_or_a_loop_is_a_skip(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "loop.jpg").symlink_to("loop.jpg")
    found = discover([tmp_path / "pipe.jpg", tmp_path / "loop.jpg"])
    assert found.files == [] and len(found.skipped) == 2

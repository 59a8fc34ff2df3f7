"""The test photos, generated: the same tree of real photos in many formats that the tests have always read,
built from the photos the package ships (pixquery/data/demo_photos and extra_photos), with Pillow and pillow-heif.

Nothing outside the repository is needed: a clone with nothing beside it runs every test that reads photos.
The tree (file names say what each photo shows, as in the rclip end-to-end images they come from):

    README.md                    (not an image: reported as skipped)
    flat/       every format in one folder: JPEG with upper- and lower-case extensions (.jpg .JPG .jpeg), PNG,
                WebP, animated GIF (two frames), GIF, TIFF, BMP, JPEG 2000, PNM/PBM/PGM/PPM, names with spaces,
                and not-an-image.txt
    nested/     the same kind of photos in sub-folders: cats/, cameras/, misc/, misc/bees/
    heic/       bee.heic and bee.jpg, the same photo in two formats
    unicode/    鳥鳥.png, a name that is not ASCII

38 image files in all, 39 files that are not hidden (and the README). Kept free of torch imports: the
torch-free test run loads it too.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from PIL import Image

IMAGE_COUNT = 38
"""Image files in the tree (every format pixquery reads; the README and the .txt are not images)."""

# flat/: name in the tree -> (shipped photo, how to write it). "copy" keeps the shipped JPEG byte for byte.
FLAT: dict[str, tuple[str, str]] = {
    "bee.jpg": ("bee.jpg", "copy"),
    "bee_animated.gif": ("bee.jpg", "animated-gif"),
    "black cat at night.jpg": ("black cat at night.jpg", "copy"),
    "black cat sleeping on a chair.JPG": ("black cat sleeping on a chair.jpg", "copy"),
    "black kitty.jpeg": ("black kitty.jpg", "copy"),
    "boats on a lake.png": ("boats on a lake.jpg", "PNG"),
    "books.jpg": ("books.jpg", "copy"),
    "cake.jpg": ("cake.jpg", "copy"),
    "camera lens.jpg": ("camera lens.jpg", "copy"),
    "camera.jpg": ("camera.jpg", "copy"),
    "cat.jpg": ("cat.jpg", "copy"),
    "cautious cat.jpg": ("cautious cat.jpg", "copy"),
    "chess-knight.tiff": ("chess-knight.jpg", "TIFF"),
    "chess-pawns.bmp": ("chess-pawns.jpg", "BMP"),
    "chess-queen.gif": ("chess-queen.jpg", "GIF"),
    "chessboard with rocks.JPG": ("chessboard with rocks.jpg", "copy"),
    "duck.jp2": ("duck.jpg", "JPEG2000"),
    "kookaburras.pnm": ("kookaburras.jpg", "PPM"),
    "magpie.pbm": ("magpie.jpg", "PBM"),
    "parrot-and-flowers.pgm": ("parrot-and-flowers.jpg", "PGM"),
    "parrot-looks-into-the-camera.ppm": ("parrot-looks-into-the-camera.jpg", "PPM"),
    "tree.webp": ("tree.jpg", "WEBP"),
}
NESTED: dict[str, str] = {  # nested/ path -> the flat/ file it repeats
    "cake.jpg": "cake.jpg",
    "chessboard with rocks.JPG": "chessboard with rocks.JPG",
    "cameras/camera lens.jpg": "camera lens.jpg",
    "cameras/camera.jpg": "camera.jpg",
    "cats/black cat at night.jpg": "black cat at night.jpg",
    "cats/black cat sleeping on a chair.JPG": "black cat sleeping on a chair.JPG",
    "cats/black kitty.jpeg": "black kitty.jpeg",
    "cats/cat.jpg": "cat.jpg",
    "cats/cautious cat.jpg": "cautious cat.jpg",
    "misc/boats on a lake.png": "boats on a lake.png",
    "misc/books.jpg": "books.jpg",
    "misc/tree.webp": "tree.webp",
    "misc/bees/bee.jpg": "bee.jpg",
}
README = """\
# Test photos (generated)

Real photographs in many formats, written by tests/photo_tree.py from the photos pixquery ships
(pixquery/data/demo_photos, pixquery/data/extra_photos). Source: the end-to-end test images of the MIT-licensed
rclip project (github.com/yurijmikhalevich/rclip, tests/e2e/, commit 2a23e2b7); see ATTRIBUTION.md there.
"""


def shipped_photo(name: str) -> Path:
    """A photo the package ships, by file name (demo_photos first, then extra_photos)."""
    data = Path(str(resources.files("pixquery").joinpath("data")))
    for folder in ("demo_photos", "extra_photos"):
        path = data / folder / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"pixquery ships no photo named {name!r}")


def _write(source: Path, dest: Path, how: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if how == "copy":
        shutil.copyfile(source, dest)
        return
    with Image.open(source) as opened:
        image = opened.convert("RGB")
    if how == "animated-gif":
        # Two frames, as the original: the bee, then another photo (decoders must take the first).
        with Image.open(shipped_photo("boats on a lake.jpg")) as other:
            second = other.convert("RGB").resize((200, 133))
        first = image.resize((200, 133))
        first.save(dest, "GIF", save_all=True, append_images=[second], loop=0, duration=500)
    elif how == "PBM":
        image.convert("1").save(dest, "PPM")  # Pillow writes mode 1 as P1/P4, i.e. PBM
    elif how == "PGM":
        image.convert("L").save(dest, "PPM")
    elif how == "GIF":
        image.convert("P", palette=Image.Palette.ADAPTIVE).save(dest, "GIF")
    else:
        image.save(dest, how)


def make_photo_tree(root: Path) -> Path:
    """Write the test photo tree under `root` (created; must not exist or be empty) and return `root`."""
    import pillow_heif

    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(README, encoding="utf-8")
    flat = root / "flat"
    for name, (source, how) in FLAT.items():
        _write(shipped_photo(source), flat / name, how)
    (flat / "not-an-image.txt").write_text("this is definitely not an image\n", encoding="utf-8")
    for name, original in NESTED.items():
        dest = root / "nested" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(flat / original, dest)
    heic = root / "heic"
    heic.mkdir()
    shutil.copyfile(shipped_photo("bee.jpg"), heic / "bee.jpg")
    with Image.open(shipped_photo("bee.jpg")) as bee:
        pillow_heif.from_pillow(bee.convert("RGB")).save(heic / "bee.heic", quality=80)
    unicode = root / "unicode"
    unicode.mkdir()
    with Image.open(shipped_photo("ibis.jpg")) as ibis:
        ibis.convert("RGB").save(unicode / "鳥鳥.png", "PNG")
    return root

"""Find image files under folders: case-insensitive extensions, hidden folders skipped, symlink loops safe."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = frozenset(
    {
        "jpg", "jpeg", "jpe", "jfif", "png", "webp", "gif", "tif", "tiff", "bmp", "dib",
        "jp2", "j2k", "jpx", "jpf", "pbm", "pgm", "ppm", "pnm", "pam", "heic", "heif", "avif",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Skipped:
    """A path discovery could not use, and why."""

    path: str
    reason: str


@dataclass
class Discovery:
    """The result of walking some folders."""

    files: list[Path]
    skipped: list[Skipped]
    roots: list[Path]


def _matches(path: str, patterns: Iterable[str]) -> bool:
    name = os.path.basename(path)
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in patterns)


def discover(
    roots: Iterable[str | Path],
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    hidden: bool = False,
    follow_symlinks: bool = True,
    extensions: frozenset[str] = IMAGE_EXTENSIONS,
) -> Discovery:
    """Walk `roots` (folders or single files) and return image files sorted by path, plus what was skipped.

    `include`/`exclude` are glob patterns matched against the full path or the file name. Symlinked folders are
    followed once each (by real path), so a link loop cannot recurse forever. Broken links are reported.
    """
    include, exclude = list(include), list(exclude)
    files: list[Path] = []
    skipped: list[Skipped] = []
    seen_dirs: set[str] = set()
    seen_files: set[str] = set()
    resolved_roots = []

    def consider(path: str) -> None:
        ext = path.rsplit(".", 1)[-1].lower() if "." in os.path.basename(path) else ""
        if ext not in extensions:
            skipped.append(Skipped(path, f"not an image file extension ({ext or 'none'})"))
            return
        if include and not _matches(path, include):
            return
        if exclude and _matches(path, exclude):
            return
        if not os.path.exists(path):
            skipped.append(Skipped(path, "broken symbolic link"))
            return
        real = os.path.realpath(path)
        if real in seen_files and os.path.islink(path):
            return  # the same file reached through a link: index it once
        seen_files.add(real)
        files.append(Path(path))

    def walk(top: str) -> None:
        # An explicit stack instead of recursion: deep trees cannot hit Python's recursion limit.
        stack = [top]
        while stack:
            directory = stack.pop()
            real = os.path.realpath(directory)
            if real in seen_dirs:
                continue  # already walked (a symlink loop or two links to one folder)
            seen_dirs.add(real)
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except PermissionError:
                skipped.append(Skipped(directory, "permission denied: folder not readable"))
                continue
            except OSError as exc:
                skipped.append(Skipped(directory, f"folder not readable ({exc.strerror})"))
                continue
            subdirs = []
            for entry in entries:
                if not hidden and entry.name.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir(follow_symlinks=follow_symlinks)
                except OSError:
                    is_dir = False
                if is_dir:
                    if not (exclude and _matches(entry.path, exclude)):
                        subdirs.append(entry.path)
                elif entry.is_file(follow_symlinks=True) or entry.is_symlink():
                    consider(entry.path)
            stack.extend(reversed(subdirs))

    for root in roots:
        root_path = Path(os.path.abspath(os.path.expanduser(root)))
        resolved_roots.append(root_path)
        if root_path.is_dir():
            walk(str(root_path))
        elif root_path.is_file():
            consider(str(root_path))
        elif root_path.is_symlink():
            skipped.append(Skipped(str(root_path), "broken symbolic link"))
        else:
            raise FileNotFoundError(f"no such file or folder: {root}")
    # Only seen_files de-duplicates links; a file listed twice through two roots is kept once.
    unique = sorted(dict.fromkeys(files), key=str)
    return Discovery(files=unique, skipped=skipped, roots=resolved_roots)

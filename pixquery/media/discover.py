"""Find image files under folders: case-insensitive extensions, hidden folders skipped, nothing ever fatal.

A disk can hold anything, so every entry is looked at without reading it and judged on its own: a named pipe, a
socket or a device (also behind a symbolic link, e.g. a link to /dev/zero), a symbolic link loop, a broken link, a
file that vanishes or cannot be read is reported as skipped with the reason, and the walk goes on. Only regular
files are returned. Folders are walked once each (by device and inode), real folders before folders reached
through links, so a link loop cannot recurse and a file is listed under its own path when it has one. One file
reached by several paths (a file link and a folder link to it, hard links) is listed once.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pixquery.media.files import NOT_AN_IMAGE, kind_of, reason_of

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
    stats: dict[str, os.stat_result] = field(default_factory=dict)
    """The stat of each file in `files` (by its path as a string), taken when it was found."""
    duplicates: dict[str, str] = field(default_factory=dict)
    """Paths left out as another path of a listed file (a link, a hard link): path -> the path listed."""


@dataclass(frozen=True)
class _Candidate:
    path: str
    stat: os.stat_result
    via_link: bool
    """Reached through a symbolic link (the entry itself, or a linked folder above it)."""


def _matches(path: str, patterns: Iterable[str]) -> bool:
    name = os.path.basename(path)
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in patterns)


def extension(path: str) -> str:
    """The lower-case extension of a path's file name, without the dot ("" when it has none)."""
    name = os.path.basename(path)
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


class _Walk:
    """One discovery run: the walk's state and its rules."""

    def __init__(
        self, include: list[str], exclude: list[str], hidden: bool, follow_symlinks: bool, extensions: frozenset[str]
    ) -> None:
        self.include, self.exclude, self.hidden = include, exclude, hidden
        self.follow_symlinks, self.extensions = follow_symlinks, extensions
        self.candidates: list[_Candidate] = []
        self.skipped: list[Skipped] = []
        self.seen_dirs: dict[tuple[int, int], str] = {}
        # Real folders are walked first, folders reached through a link only afterwards: a folder (and the files
        # in it) is then listed under its own path whenever it has one inside the roots.
        self.real: list[tuple[str, bool]] = []
        self.linked: list[str] = []
        self.duplicates: dict[str, str] = {}

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append(Skipped(path, reason))

    # --- files --------------------------------------------------------------------------------------------
    def wanted(self, path: str) -> bool:
        """Whether a file name passes the extension and include/exclude rules (reporting a wrong extension)."""
        ext = extension(path)
        if ext not in self.extensions:
            self.skip(path, f"{NOT_AN_IMAGE} file extension ({ext or 'none'})")
            return False
        if self.include and not _matches(path, self.include):
            return False
        return not (self.exclude and _matches(path, self.exclude))

    def file(self, path: str, st: os.stat_result, is_link: bool, via_link: bool) -> None:
        """A non-folder entry whose (followed) stat is known."""
        if not self.wanted(path):
            return
        if not stat.S_ISREG(st.st_mode):
            through = ", reached through a symbolic link" if is_link else ""
            self.skip(path, f"it is {kind_of(st.st_mode)}{through}, not an image file: never read")
            return
        self.candidates.append(_Candidate(path, st, via_link or is_link))

    def unstattable(self, path: str, exc: OSError, is_link: bool) -> None:
        """An entry whose stat failed: a link loop, a broken link, a file gone or not accessible."""
        if exc.errno == errno.ELOOP:
            self.skip(path, reason_of(exc))  # reported whatever its name: it may have been meant as a folder
        elif self.wanted(path):
            broken = is_link and exc.errno in (errno.ENOENT, errno.ENOTDIR)
            self.skip(path, "broken symbolic link" if broken else reason_of(exc))

    # --- folders ------------------------------------------------------------------------------------------
    def enter(self, directory: str, via_link: bool) -> list[os.DirEntry[str]] | None:
        """The sorted entries of a folder not walked yet, or None (already walked, or unreadable: reported)."""
        try:
            st = os.stat(directory)
            key = (st.st_dev, st.st_ino)
            if key in self.seen_dirs:
                if via_link:
                    self.skip(directory, f"a link to a folder already scanned ({self.seen_dirs[key]})")
                return None
            self.seen_dirs[key] = directory
            with os.scandir(directory) as scan:
                return sorted(scan, key=lambda e: e.name)
        except PermissionError:
            self.skip(directory, "permission denied: folder not readable")
        except OSError as exc:
            self.skip(directory, f"folder not readable ({reason_of(exc)})")
        return None

    def entry(self, entry: os.DirEntry[str], via_link: bool) -> None:
        """Judge one folder entry without reading it: a folder to walk, a file to consider, or a skip."""
        if not self.hidden and entry.name.startswith("."):
            return
        path = entry.path
        try:
            is_link = entry.is_symlink()
        except OSError:
            is_link = False
        try:
            if not is_link and entry.is_dir(follow_symlinks=False):
                if not (self.exclude and _matches(path, self.exclude)):
                    self.real.append((path, via_link))
                return
            if not is_link and extension(path) not in self.extensions:
                self.wanted(path)  # reports the extension without a stat
                return
            st = os.stat(path)  # follows a link; a loop raises ELOOP
        except OSError as exc:
            self.unstattable(path, exc, is_link)
            return
        if stat.S_ISDIR(st.st_mode):  # a link to a folder
            if not self.follow_symlinks:
                self.skip(path, "a symbolic link to a folder (links to folders are not followed)")
            elif not (self.exclude and _matches(path, self.exclude)):
                self.linked.append(path)
            return
        self.file(path, st, is_link, via_link)

    def walk(self, top: str) -> None:
        # Explicit stacks instead of recursion: deep trees cannot hit Python's recursion limit.
        self.real.append((top, False))
        while self.real or self.linked:
            if self.real:
                directory, via_link = self.real.pop()
            else:
                directory, via_link = self.linked.pop(), True
            entries = self.enter(directory, via_link)
            if entries is None:
                continue
            mark_real, mark_linked = len(self.real), len(self.linked)
            for entry in entries:
                self.entry(entry, via_link)
            # Popped from the end: reverse what was added so folders are walked in name order.
            self.real[mark_real:] = reversed(self.real[mark_real:])
            self.linked[mark_linked:] = reversed(self.linked[mark_linked:])

    def root(self, root: str | Path) -> Path:
        """Walk one root (a folder or a single file); a root that does not exist at all raises."""
        path = Path(os.path.abspath(os.path.expanduser(root)))
        text = str(path)
        if not os.path.lexists(text):
            raise FileNotFoundError(f"no such file or folder: {root}")
        try:
            st = os.stat(text)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self.skip(text, reason_of(exc))
            else:
                broken = os.path.islink(text) and exc.errno in (errno.ENOENT, errno.ENOTDIR)
                self.skip(text, "broken symbolic link" if broken else reason_of(exc))
            return path
        if stat.S_ISDIR(st.st_mode):
            if (st.st_dev, st.st_ino) not in self.seen_dirs:  # a root listed twice, or inside another: once
                self.walk(text)
        else:
            self.file(text, st, os.path.islink(text), False)
        return path

    def unique_files(self) -> tuple[list[Path], dict[str, os.stat_result]]:
        """The candidates with one path per file (device and inode): its own path before one through a link,
        then the first by name; the others are reported."""
        chosen: dict[tuple[int, int], _Candidate] = {}
        for cand in sorted(self.candidates, key=lambda c: (c.via_link, c.path)):
            key = (cand.stat.st_dev, cand.stat.st_ino)
            if key in chosen:
                if chosen[key].path != cand.path:
                    self.skip(cand.path, f"the same file as {chosen[key].path}: indexed once")
                    self.duplicates[cand.path] = chosen[key].path
                continue
            chosen[key] = cand
        files = sorted(chosen.values(), key=lambda c: c.path)
        return [Path(c.path) for c in files], {c.path: c.stat for c in files}


def discover(
    roots: Iterable[str | Path],
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    hidden: bool = False,
    follow_symlinks: bool = True,
    extensions: frozenset[str] = IMAGE_EXTENSIONS,
) -> Discovery:
    """Walk `roots` (folders or single files) and return the regular image files sorted by path, with what was
    skipped and why (see the module docstring). Nothing is opened or read.

    `include`/`exclude` are glob patterns matched against the full path or the file name. A root that does not
    exist raises `FileNotFoundError`; anything inside the roots is at worst a skipped entry.
    """
    walk = _Walk(list(include), list(exclude), hidden, follow_symlinks, extensions)
    resolved = [walk.root(root) for root in roots]
    files, stats = walk.unique_files()
    return Discovery(files=files, skipped=walk.skipped, roots=resolved, stats=stats, duplicates=walk.duplicates)

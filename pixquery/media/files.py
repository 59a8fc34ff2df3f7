"""Opening a user's file: regular files only, never blocking, and knowing which file it is.

Every read of a user's file goes through `open_regular`: hashing at discovery, decoding for the model, thumbnails,
serving an original. It opens without blocking (a FIFO named photo.jpg would otherwise hang the reader forever),
checks the opened descriptor is a regular file (not a FIFO, socket, device or folder), and only then reads.
`FileIdentity` is what the catalog remembers of a file (size, mtime, device, inode and ctime), so a later reader can
tell the very file it indexed from one swapped in at the same path (`open_same`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from typing import BinaryIO

from pixquery.errors import PixqueryError

HASH_CHUNK = 1 << 20
NOT_AN_IMAGE = "not an image"
"""How the reason of a file that is no image at all begins, whether discovery says it (a wrong extension) or the
decoder does (a format Pillow cannot read). Every other reason (corrupt or truncated data, too many pixels, a broken
link, a FIFO) is a file that should have been readable: reports count the two apart (`is_not_an_image`)."""


def is_not_an_image(reason: str) -> bool:
    """Whether a skip or error reason says the file is no image at all (see `NOT_AN_IMAGE`)."""
    return reason.startswith(NOT_AN_IMAGE)

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class UnreadableFile(PixqueryError):
    """A file cannot be read as a regular file; the message is the reason shown to the user."""


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words ("a named pipe (FIFO)", "a device", ...)."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def reason_of(exc: OSError) -> str:
    """A user-facing reason for an OSError raised while opening or reading a file."""
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop (following the link leads back to it)"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return "the file no longer exists (or is a broken link)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied: the file is not readable by this user"
    if exc.errno == errno.ENAMETOOLONG:
        return "the file name is too long for this system"
    return f"cannot read it ({exc.strerror or exc})"


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open `path` for reading if it is a regular file (following links), else raise `UnreadableFile` saying why.

    The open itself never blocks: O_NONBLOCK makes a FIFO with no writer open at once, and the type is checked on
    the opened descriptor (not the name), so a file swapped for a FIFO after a check cannot slip through.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise UnreadableFile(reason_of(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnreadableFile(f"it is {kind_of(mode)}, not an image file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@dataclass(frozen=True)
class FileIdentity:
    """What identifies one version of one file: its size and modification time, the device and inode, and the inode's
    change time (which no one can set: a file swapped in at a recycled inode with a forged mtime still differs).
    A catalog row written by an older pixquery may lack the last three (None: not compared)."""

    size: int
    mtime_ns: int
    device: int | None = None
    inode: int | None = None
    ctime_ns: int | None = None

    @classmethod
    def of(cls, handle: BinaryIO) -> FileIdentity:
        st = os.fstat(handle.fileno())
        return cls(st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, st.st_ctime_ns)


def hash_handle(handle: BinaryIO) -> str:
    """blake2b-128 of an open file's bytes from where it stands (detects moves and real content changes)."""
    digest = hashlib.blake2b(digest_size=16)
    while chunk := handle.read(HASH_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


class FileChanged(UnreadableFile):
    """The file at a path is not the one expected: replaced by another, or its content changed."""


def open_same(path: str | os.PathLike[str], expected: FileIdentity, content_hash: str) -> BinaryIO:
    """Open `path` only if it is still the file `expected` describes (as the catalog recorded it when indexing).

    Checked on the opened descriptor (`open_regular`: a regular file, never blocking): the same device and inode,
    size and modification time; where only the times moved (a `touch`, a `chmod`, a copy back), the same content
    hash. Raises `FileChanged` saying what changed, or `UnreadableFile` (gone, not a regular file, not readable).
    """
    handle = open_regular(path)
    try:
        ident = FileIdentity.of(handle)
        if expected.inode is not None and (ident.device, ident.inode) != (expected.device, expected.inode):
            raise FileChanged("was replaced by another file")
        if ident.size != expected.size:
            raise FileChanged("changed")
        if ident.mtime_ns != expected.mtime_ns or expected.ctime_ns not in (None, ident.ctime_ns):
            if hash_handle(handle) != content_hash:
                raise FileChanged("changed")
            handle.seek(0)
        return handle
    except BaseException:
        handle.close()
        raise


def hash_file(path: str | os.PathLike[str]) -> tuple[str, FileIdentity]:
    """(content hash, identity) of a regular file, read through one descriptor (so both describe the same file)."""
    with open_regular(path) as handle:
        identity = FileIdentity.of(handle)
        return hash_handle(handle), identity

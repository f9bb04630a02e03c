"""Open a file under the logdir for the Lesson tab to read: never a file outside it, never anything but a regular
file, and never an open that blocks.

The logdir is opened as the user named it; from there every folder on the way and the file itself are opened
relative to the folder before (`openat`) without following a symbolic link (O_NOFOLLOW), so a link swapped in
anywhere on the way, at any moment, makes the open fail instead of leading outside. The file is opened with
O_NONBLOCK (a FIFO or a device swapped in opens at once instead of waiting for a writer) and is checked on the
opened descriptor (fstat), so nothing can change between the check and the read: what is read is the inode that
was checked, through /proc/self/fd/N, which reopens that very inode whatever happens to the name meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

_FOLDER = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_FILE = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class NotRegularFile(OSError):
    """The name holds a folder, a FIFO, a socket or a device: never read."""


def open_under(root: Path, parts: tuple[str, ...], name: str) -> int:
    """A read-only descriptor of root/parts.../name, a regular file reached without following any symbolic link
    below `root`. OSError (ELOOP for a link, ENOENT, ...) or NotRegularFile otherwise."""
    folder = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        for part in parts:
            if part in ("", ".", "..") or "/" in part:
                raise OSError(2, "not a plain folder name", part)
            try:
                inner = os.open(part, _FOLDER, dir_fd=folder)
            except NotADirectoryError:   # O_DIRECTORY meets a link before O_NOFOLLOW does: say which it was
                if stat.S_ISLNK(os.stat(part, dir_fd=folder, follow_symlinks=False).st_mode):
                    raise OSError(errno.ELOOP, "a symbolic link", part) from None
                raise
            os.close(folder)
            folder = inner
        fd = os.open(name, _FILE, dir_fd=folder)
    finally:
        os.close(folder)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"{name} is not a regular file ({_kind(mode)})")
    except BaseException:
        os.close(fd)
        raise
    return fd


def readable_path(fd: int) -> str:
    """A path that opens the inode behind `fd` (Linux's /proc/self/fd; /dev/fd elsewhere)."""
    proc = f"/proc/self/fd/{fd}"
    return proc if os.path.exists(proc) else f"/dev/fd/{fd}"


def identity(st: os.stat_result) -> tuple:
    """What a cached reading of a file is keyed by: an atomic replace (a new inode), a rewrite in place (size,
    mtime) or a change of its status (ctime) each give another key."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


@contextlib.contextmanager
def opened(root: Path, parts: tuple[str, ...], name: str):
    """(descriptor, its fstat, a path that reads that very inode) of a regular file under `root`; closed after."""
    fd = open_under(root, parts, name)
    try:
        yield fd, os.fstat(fd), readable_path(fd)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return what
    return "not a plain file"

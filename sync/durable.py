"""Durable small-file writes: the one directory fsync every durable rename in cunlink ends
with, and the one private atomic write (keys, certificates, configuration).

Writing a file, fsyncing it and renaming it into place is only durable once the directory
entry itself is on disk: without this, a power cut can leave the old name (or none).
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Put `data` at `path` with `mode` from the first byte (never briefly readable by others)
    via tmp + fsync + rename + directory fsync: a crash leaves the old file or the new one.

    `mode` is set with fchmod too: O_CREAT's mode is masked by the umask, and a stale tmp
    file keeps its own. Raises OSError (the tmp file is removed)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:  # os.write may write less than asked (a disk filling up)
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)

"""The one fsync of a directory that every durable rename in cunlink ends with.

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

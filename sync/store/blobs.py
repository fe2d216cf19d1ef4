"""Material blobs as files named by their SHA-256, and the disk-space floor.

A blob is written to a temporary name in the blob directory, fsync'd, renamed to its hash, and
the directory is fsync'd: after a crash a blob either exists whole under its name or not at all
(a leftover `.tmp-*` file is an orphan, removed by `cleanup_orphans`). Same content, same name:
storing a file twice is harmless.

Synchronous functions; `Store` runs them off the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from sync.durable import fsync_dir
from sync.store.errors import DiskFloorError, StoreError

TMP_PREFIX = ".tmp-"
COPY_CHUNK = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobRef:
    """A stored blob: its lower-case hex SHA-256, size in bytes and file."""

    sha256: str
    size: int
    path: Path


def blob_path(blob_dir: Path, sha256: str) -> Path:
    if not _HEX64.fullmatch(sha256):
        raise StoreError(
            f"not a blob name: {sha256!r}; expected 64 lower-case hex digits (a SHA-256)"
        )
    return blob_dir / sha256


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged writer can still use on `directory`'s filesystem."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def check_floor(directory: Path, *, floor_bytes: int, needed_bytes: int, what: str) -> None:
    """Raise DiskFloorError if writing `needed_bytes` would leave less than the floor."""
    if floor_bytes <= 0:
        return
    free = free_bytes(directory)
    if free - needed_bytes < floor_bytes:
        raise DiskFloorError(
            f"refusing {what}: {free} bytes free on the filesystem of {directory}, "
            f"{needed_bytes} needed, and the configured floor (store.disk_floor_mb) is "
            f"{floor_bytes} bytes. Accepted cases are kept and still replicate; new materials "
            "are accepted again once space is freed (delivered sealed copies are removed when "
            "the county acknowledges them) or the floor is lowered",
            free_bytes=free, floor_bytes=floor_bytes, needed_bytes=needed_bytes,
        )



def _touch(path: Path) -> None:
    """Refresh a blob's time when it is stored again: an old orphan about to be named by a new
    case must not look abandoned to the sweep (its grace runs from this moment)."""
    os.utime(path)


def write_blob(blob_dir: Path, src: Path) -> BlobRef:
    """Copy `src` into the blob directory under its SHA-256 (tmp + fsync + rename + dir fsync)."""
    tmp = blob_dir / f"{TMP_PREFIX}{secrets.token_hex(8)}"
    digest = hashlib.sha256()
    size = 0
    try:
        with open(src, "rb") as fin, open(tmp, "xb") as fout:
            while chunk := fin.read(COPY_CHUNK):
                digest.update(chunk)
                fout.write(chunk)
                size += len(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        sha = digest.hexdigest()
        final = blob_dir / sha
        if final.exists():
            tmp.unlink()  # same content already stored whole
            _touch(final)
        else:
            os.replace(tmp, final)
            fsync_dir(blob_dir)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if exc.errno == errno.ENOSPC:
            raise DiskFloorError(
                f"disk full while storing material {src.name} in {blob_dir}; nothing of it was "
                "kept. Free space on that filesystem, then add the material again",
                free_bytes=0, floor_bytes=0, needed_bytes=size,
            ) from exc
        raise StoreError(f"could not store material {src} in {blob_dir}: {exc}") from exc
    return BlobRef(sha256=sha, size=size, path=final)


def _sha256_of(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(COPY_CHUNK):
            digest.update(chunk)
            size += len(chunk)
        os.fsync(fh.fileno())
    return digest.hexdigest(), size


def adopt_blob(blob_dir: Path, src: Path, sha256: str) -> BlobRef:
    """Rename `src` into the blob directory as `sha256` once its content is checked."""
    final = blob_path(blob_dir, sha256)
    try:
        actual, size = _sha256_of(src)
        if actual != sha256:
            raise StoreError(
                f"refusing to store {src} as blob {sha256}: its content hashes to {actual}"
            )
        if final.exists():
            src.unlink()
            _touch(final)
        else:
            try:
                os.replace(src, final)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                # Another filesystem: copy (tmp + fsync + rename), then drop the source.
                write_blob(blob_dir, src)
                src.unlink()
            fsync_dir(blob_dir)
    except OSError as exc:
        raise StoreError(f"could not move {src} into the blob store {blob_dir}: {exc}") from exc
    return BlobRef(sha256=sha256, size=size, path=final)


def remove_orphans(
    directory: Path,
    *,
    keep: Collection[str],
    grace_s: float,
    blob_names_only: bool,
) -> int:
    """Delete files in `directory` not named in `keep` and untouched for `grace_s` seconds.

    The grace period protects files another process (the CLI while the daemon runs) has
    written but not yet committed a reference to.
    """
    if not directory.is_dir():
        return 0
    cutoff = time.time() - grace_s
    removed = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if not entry.is_file(follow_symlinks=False):
                continue
            name = entry.name
            is_tmp = name.startswith(TMP_PREFIX)
            if not is_tmp and (name in keep or (blob_names_only and not _HEX64.fullmatch(name))):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            removed += 1
    return removed

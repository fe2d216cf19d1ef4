"""Partially received packages on the hub, on disk, so that no received chunk is lost.

Each transfer is two files under the hub's ``incoming/`` directory: ``<id>.part`` holds the
bytes at their offsets, ``<id>.meta`` (JSON) the sender, kind, size and the ranges held. A
chunk's bytes are written and fsync'd before the range that covers them is recorded (meta is
replaced with fsync + rename), so after a crash the meta never claims bytes the part file lacks.

Several hub workers share one subscription and may receive chunks of the same package; an
exclusive ``flock`` on ``<id>.lock`` serialises their read-modify-write of the meta file, and a
non-blocking one on ``<id>.commit`` lets only one of them open and commit a complete package.
The other calls block (fsync), so the worker runs them in a thread.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from protocols import wire
from sync.durable import fsync_dir


class AssemblyError(Exception):
    """A chunk the hub cannot take; the subclass says why."""


class NoRoom(AssemblyError):
    """Taking the package would eat into the disk space kept in reserve. `permanent`: it is
    larger than the whole disk; otherwise the disk is only full for now."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Inconsistent(AssemblyError):
    """A chunk that contradicts what is already held for its package."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Partial:
    package_id: bytes
    sender: str
    kind: int
    size: int
    ranges: wire.Ranges

    @property
    def complete(self) -> bool:
        return self.ranges == ((0, self.size),)

    @property
    def missing(self) -> wire.Ranges:
        return wire.missing_ranges(self.ranges, self.size)


class Assembly:
    def __init__(self, directory: Path, *, min_free_bytes: int = 64 * 1024 * 1024) -> None:
        self._dir = directory
        self._min_free = min_free_bytes
        directory.mkdir(parents=True, exist_ok=True)

    def part_path(self, package_id: bytes) -> Path:
        return self._dir / f"{package_id.hex()}.part"

    def _meta_path(self, package_id: bytes) -> Path:
        return self._dir / f"{package_id.hex()}.meta"

    @contextmanager
    def _locked(self, package_id: bytes) -> Iterator[None]:
        with (self._dir / f"{package_id.hex()}.lock").open("a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def claim(self, package_id: bytes) -> Iterator[bool]:
        """Whether this worker may commit the package now: False while another worker holds
        the claim (it will acknowledge). Non-blocking, so it is safe on the event loop."""
        path = self._dir / f"{package_id.hex()}.commit"
        with path.open("a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                # Unlinked while still held: a worker that opens the name afterwards gets a
                # fresh file and finds the package in the inbox.
                path.unlink(missing_ok=True)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def get(self, package_id: bytes) -> Partial | None:
        try:
            raw = json.loads(self._meta_path(package_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return Partial(package_id=package_id, sender=raw["sender"], kind=raw["kind"],
                       size=raw["size"], ranges=tuple((a, b) for a, b in raw["ranges"]))

    def receive(self, chunk: wire.Chunk, *, sender: str) -> Partial:
        """Store one chunk durably; returns what is held afterwards."""
        pid = chunk.package_id
        with self._locked(pid):
            partial = self.get(pid)
            if partial is None:
                usage = shutil.disk_usage(self._dir)
                if usage.free - chunk.size < self._min_free:
                    raise NoRoom(
                        f"not enough disk for a {chunk.size}-byte package from {sender} "
                        f"({usage.free} bytes free, {self._min_free} kept in reserve)",
                        # larger than the whole disk: it will never fit, unlike a disk that is
                        # full for now
                        permanent=chunk.size > usage.total - self._min_free)
                partial = Partial(package_id=pid, sender=sender, kind=int(chunk.kind),
                                  size=chunk.size, ranges=())
            elif (partial.sender, partial.kind, partial.size) != (
                    sender, int(chunk.kind), chunk.size):
                raise Inconsistent(
                    f"chunk of package {pid.hex()} disagrees with earlier chunks "
                    f"(sender/kind/size {sender}/{int(chunk.kind)}/{chunk.size} vs "
                    f"{partial.sender}/{partial.kind}/{partial.size})")
            end = chunk.offset + len(chunk.data)
            if wire.covered(_clip(partial.ranges, chunk.offset, end)) == end - chunk.offset:
                return partial  # a duplicate: already held
            fd = os.open(self.part_path(pid), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                os.pwrite(fd, chunk.data, chunk.offset)
                os.fsync(fd)
            finally:
                os.close(fd)
            partial = Partial(package_id=pid, sender=sender, kind=partial.kind, size=partial.size,
                              ranges=wire.add_range(partial.ranges, chunk.offset, end))
            self._write_meta(partial)
            return partial

    def _write_meta(self, partial: Partial) -> None:
        path = self._meta_path(partial.package_id)
        tmp = path.with_suffix(".meta.tmp")
        data = json.dumps({"sender": partial.sender, "kind": partial.kind, "size": partial.size,
                           "ranges": [list(r) for r in partial.ranges]})
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(self._dir)

    def discard(self, package_id: bytes) -> None:
        """Forget a transfer once its package is committed (or rejected for good)."""
        with self._locked(package_id):
            for suffix in (".meta", ".part", ".meta.tmp"):
                (self._dir / f"{package_id.hex()}{suffix}").unlink(missing_ok=True)
        (self._dir / f"{package_id.hex()}.lock").unlink(missing_ok=True)

    def discard_stale(self, *, max_age_s: float, kinds: frozenset[int] | None = None,
                      now: float | None = None) -> list[Partial]:
        """Forget transfers (of ``kinds``, or any) no chunk has reached for ``max_age_s``:
        a bundle whose station restarted is never finished (its members travel again), and
        a package held at the station for months need not pin disk here. Returns them."""
        now = time.time() if now is None else now
        gone = []
        for partial in self.pending():
            if kinds is not None and partial.kind not in kinds:
                continue
            try:
                touched = self._meta_path(partial.package_id).stat().st_mtime
            except FileNotFoundError:
                continue
            if now - touched > max_age_s:
                self.discard(partial.package_id)
                gone.append(partial)
        return gone

    def pending(self) -> list[Partial]:
        out = []
        for meta in sorted(self._dir.glob("*.meta")):
            partial = self.get(bytes.fromhex(meta.stem))
            if partial is not None:
                out.append(partial)
        return out


def _clip(ranges: wire.Ranges, start: int, end: int) -> wire.Ranges:
    return tuple((max(a, start), min(b, end)) for a, b in ranges if a < end and start < b)

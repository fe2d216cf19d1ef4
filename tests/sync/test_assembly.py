"""Partial transfers on the hub survive restarts, refuse contradictions, ignore duplicates."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from protocols.wire import Chunk, PackageKind
from sync.assembly import Assembly, AssemblyError

PID = bytes(range(16))


def chunk(data: bytes, offset: int, size: int) -> Chunk:
    return Chunk(package_id=PID, kind=PackageKind.BLOB, size=size, offset=offset, data=data)


def test_chunks_in_any_order_assemble_and_survive_a_restart(tmp_path: Path) -> None:
    payload = os.urandom(10_000)
    pieces = [(o, payload[o:o + 3000]) for o in range(0, 10_000, 3000)]
    first = Assembly(tmp_path)
    for offset, data in reversed(pieces[1:]):
        partial = first.receive(chunk(data, offset, len(payload)), sender="ST001")
    assert not partial.complete
    assert partial.missing == ((0, 3000),)
    again = Assembly(tmp_path)  # a hub restart: a new object over the same directory
    held = again.get(PID)
    assert held is not None and held.missing == ((0, 3000),)
    done = again.receive(chunk(pieces[0][1], 0, len(payload)), sender="ST001")
    assert done.complete
    assert again.part_path(PID).read_bytes() == payload
    assert [p.package_id for p in again.pending()] == [PID]
    again.discard(PID)
    assert again.get(PID) is None and not again.part_path(PID).exists()


def test_duplicate_chunk_changes_nothing(tmp_path: Path) -> None:
    assembly = Assembly(tmp_path)
    one = assembly.receive(chunk(b"a" * 10, 0, 20), sender="ST001")
    two = assembly.receive(chunk(b"a" * 10, 0, 20), sender="ST001")
    assert one == two


def test_a_chunk_that_contradicts_earlier_ones_is_refused(tmp_path: Path) -> None:
    assembly = Assembly(tmp_path)
    assembly.receive(chunk(b"a" * 10, 0, 20), sender="ST001")
    with pytest.raises(AssemblyError, match="disagrees"):
        assembly.receive(chunk(b"b" * 10, 10, 30), sender="ST001")
    with pytest.raises(AssemblyError, match="disagrees"):
        assembly.receive(chunk(b"b" * 10, 10, 20), sender="ST002")


def test_no_room_is_refused_before_writing(tmp_path: Path) -> None:
    assembly = Assembly(tmp_path, min_free_bytes=2**62)
    with pytest.raises(AssemblyError, match="not enough disk"):
        assembly.receive(chunk(b"a" * 10, 0, 20), sender="ST001")
    assert list(tmp_path.glob("*.part")) == []


def test_a_full_disk_for_now_and_a_package_larger_than_the_disk_are_told_apart(
    tmp_path: Path,
) -> None:
    import shutil

    from sync.assembly import NoRoom

    usage = shutil.disk_usage(tmp_path)
    # Reserve all but 1 KiB of what is free: a 2 KiB package does not fit today, but would
    # on an emptier disk, so the hub must not refuse it for good (no Reject: stations retry).
    full_now = Assembly(tmp_path / "a", min_free_bytes=usage.free - 1024)
    with pytest.raises(NoRoom) as now:
        full_now.receive(chunk(b"x" * 100, 0, 2048), sender="ST001")
    assert now.value.permanent is False
    # A package larger than the whole disk less its reserve can never fit: refused for good.
    small_disk = Assembly(tmp_path / "b", min_free_bytes=usage.total - 1024)
    with pytest.raises(NoRoom) as never:
        small_disk.receive(chunk(b"x" * 100, 0, 2048), sender="ST001")
    assert never.value.permanent is True


def test_stale_partials_are_dropped_by_kind_and_age(tmp_path: Path) -> None:
    assembly = Assembly(tmp_path, min_free_bytes=0)
    bundle_id, blob_id = b"B" * 16, b"L" * 16
    assembly.receive(Chunk(package_id=bundle_id, kind=PackageKind.BUNDLE, size=10, offset=0,
                           data=b"12345"), sender="ST001")
    assembly.receive(Chunk(package_id=blob_id, kind=PackageKind.BLOB, size=10, offset=0,
                           data=b"12345"), sender="ST001")
    now = (tmp_path / f"{bundle_id.hex()}.meta").stat().st_mtime
    bundles = frozenset({int(PackageKind.BUNDLE)})
    assert assembly.discard_stale(max_age_s=100, kinds=bundles, now=now + 50) == []
    gone = assembly.discard_stale(max_age_s=100, kinds=bundles, now=now + 150)
    assert [p.package_id for p in gone] == [bundle_id]  # the blob is not a bundle: kept
    assert assembly.get(bundle_id) is None and assembly.get(blob_id) is not None
    assert not list(tmp_path.glob(f"{bundle_id.hex()}.*"))
    assert [p.package_id for p in assembly.discard_stale(max_age_s=100, now=now + 150)] == [
        blob_id]
    assert list(tmp_path.iterdir()) == []

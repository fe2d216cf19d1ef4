"""Sealing and opening blob containers from file to file: atomic results, bounded memory."""

from __future__ import annotations

import hashlib
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.envelope import (
    BlobManifest,
    ChunkOutOfOrder,
    DecryptionFailed,
    MalformedEnvelope,
    ReplayedPackage,
    Suite,
    TruncatedEnvelope,
    UnexpectedSender,
    container_prefix_length,
)
from sync.blobfile import BlobFileError, SealedBlobInfo, open_file, seal_file
from tests.protocols.test_envelope_vectors import HUB, STATION, peers_of

PID = bytes(range(200, 216))
T0 = 1763805600000
PEERS = peers_of(STATION)


def never(_: bytes) -> bool:
    return False


def write(path: Path, size: int) -> bytes:
    data = hashlib.shake_256(size.to_bytes(8, "big")).digest(size) if size else b""
    path.write_bytes(data)
    return data


def seal(src: Path, dst: Path, chunk_size: int = 1024, **kw: Suite) -> SealedBlobInfo:
    return seal_file(
        src, dst, sender=STATION, recipient=HUB.public(), package_id=PID, created_ms=T0,
        chunk_size=chunk_size, **kw,
    )  # fmt: skip


def unseal(src: Path, dst: Path, expected_sender: str | None = "ST001") -> BlobManifest:
    return open_file(src, dst, me=HUB, peers=PEERS, expected_sender=expected_sender, seen=never)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 3584])
def test_round_trip_at_chunk_boundaries(tmp_path: Path, size: int) -> None:
    data = write(tmp_path / "scan.jpg", size)
    info = seal(tmp_path / "scan.jpg", tmp_path / "scan.sealed")
    assert info == SealedBlobInfo(
        package_id=PID,
        size=size,
        digest=hashlib.sha256(data).digest(),
        sealed_size=(tmp_path / "scan.sealed").stat().st_size,
    )
    manifest = unseal(tmp_path / "scan.sealed", tmp_path / "out.jpg")
    assert (tmp_path / "out.jpg").read_bytes() == data
    assert manifest.size == size and manifest.sender == "ST001"
    assert leftovers(tmp_path) == ["out.jpg", "scan.jpg", "scan.sealed"]


def test_chacha20_suite_round_trips(tmp_path: Path) -> None:
    data = write(tmp_path / "a", 5000)
    seal(tmp_path / "a", tmp_path / "a.sealed", suite=Suite.X25519_SHA256_CHACHA20POLY1305)
    unseal(tmp_path / "a.sealed", tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == data


def test_sealed_file_is_header_then_chunks(tmp_path: Path) -> None:
    write(tmp_path / "a", 2500)
    info = seal(tmp_path / "a", tmp_path / "a.sealed")
    sealed = (tmp_path / "a.sealed").read_bytes()
    prefix = container_prefix_length(sealed[:8])
    assert len(sealed) == info.sealed_size == prefix + 2500 + 3 * 16


def _fail_to_open(tmp_path: Path, sealed: bytes, error: type[Exception], **kw: str) -> None:
    (tmp_path / "bad.sealed").write_bytes(sealed)
    with pytest.raises(error):
        unseal(tmp_path / "bad.sealed", tmp_path / "out", **kw)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "out.tmp").exists()


def _sealed(tmp_path: Path, size: int = 4096) -> bytes:
    write(tmp_path / "src", size)
    seal(tmp_path / "src", tmp_path / "src.sealed")
    return (tmp_path / "src.sealed").read_bytes()


def test_truncated_container_leaves_no_output(tmp_path: Path) -> None:
    _fail_to_open(tmp_path, _sealed(tmp_path)[:-1], TruncatedEnvelope)


def test_container_cut_inside_the_header_leaves_no_output(tmp_path: Path) -> None:
    _fail_to_open(tmp_path, _sealed(tmp_path)[:100], TruncatedEnvelope)


def test_trailing_bytes_leave_no_output(tmp_path: Path) -> None:
    _fail_to_open(tmp_path, _sealed(tmp_path) + b"\x00", MalformedEnvelope)


def test_corrupted_last_chunk_leaves_no_output(tmp_path: Path) -> None:
    sealed = bytearray(_sealed(tmp_path))
    sealed[-5] ^= 0x40
    _fail_to_open(tmp_path, bytes(sealed), DecryptionFailed)


def test_reordered_chunks_leave_no_output(tmp_path: Path) -> None:
    sealed = _sealed(tmp_path)
    prefix = container_prefix_length(sealed[:8])
    c = [sealed[prefix + i * 1040 : prefix + (i + 1) * 1040] for i in range(4)]
    _fail_to_open(tmp_path, sealed[:prefix] + c[0] + c[2] + c[1] + c[3], ChunkOutOfOrder)


def test_wrong_sender_leaves_no_output(tmp_path: Path) -> None:
    _fail_to_open(tmp_path, _sealed(tmp_path), UnexpectedSender, expected_sender="ST002")


def test_replayed_blob_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s").write_bytes(_sealed(tmp_path))
    with pytest.raises(ReplayedPackage):
        open_file(
            tmp_path / "s", tmp_path / "o", me=HUB, peers=PEERS, expected_sender=None,
            seen=lambda pid: pid == PID,
        )  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_missing_source_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(BlobFileError, match=r"cannot read .*nope"):
        seal(tmp_path / "nope", tmp_path / "x.sealed")
    with pytest.raises(BlobFileError, match=r"cannot read .*nope"):
        unseal(tmp_path / "nope", tmp_path / "x")
    assert leftovers(tmp_path) == []


def test_unwritable_destination_names_the_file(tmp_path: Path) -> None:
    write(tmp_path / "a", 10)
    with pytest.raises(BlobFileError, match=r"cannot create .*missing-dir"):
        seal(tmp_path / "a", tmp_path / "missing-dir" / "a.sealed")


def test_existing_destination_and_stale_temporary_are_replaced(tmp_path: Path) -> None:
    data = write(tmp_path / "a", 3000)
    (tmp_path / "out").write_bytes(b"old content")
    (tmp_path / "out.tmp").write_bytes(b"left by a crash" * 1000)
    seal(tmp_path / "a", tmp_path / "a.sealed")
    unseal(tmp_path / "a.sealed", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
    assert leftovers(tmp_path) == ["a", "a.sealed", "out"]


def test_memory_stays_bounded_by_the_chunk_not_the_blob(tmp_path: Path) -> None:
    size = 24 * 1024 * 1024
    with (tmp_path / "big").open("wb") as f:
        block = bytes(range(256)) * 4096
        for _ in range(size // len(block)):
            f.write(block)
    tracemalloc.start()
    try:
        seal(tmp_path / "big", tmp_path / "big.sealed", chunk_size=65536)
        _, seal_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        unseal(tmp_path / "big.sealed", tmp_path / "big.out")
        _, open_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A 1 MiB hashing buffer plus a chunk or two; nothing near the 24 MiB blob.
    assert seal_peak < 3 * 1024 * 1024, seal_peak
    assert open_peak < 3 * 1024 * 1024, open_peak
    assert (tmp_path / "big.out").stat().st_size == size


@settings(max_examples=25, deadline=None)
@given(size=st.integers(0, 5000), chunk_size=st.integers(1024, 2100))
def test_any_size_and_chunk_size_round_trip_through_files(size: int, chunk_size: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        data = write(tmp / "src", size)
        info = seal(tmp / "src", tmp / "sealed", chunk_size=chunk_size)
        assert info.sealed_size == (tmp / "sealed").stat().st_size
        unseal(tmp / "sealed", tmp / "out")
        assert (tmp / "out").read_bytes() == data

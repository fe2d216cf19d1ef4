"""Seal and open blob containers from file to file, one chunk in memory at a time.

The envelope itself is pure (protocols.envelope); this module adds the file discipline the
design asks for: the result is written to `<dst>.tmp`, fsync'd, renamed over `dst`, and the
directory fsync'd, so a crash leaves either the whole result or none of it. On any error the
temporary file is removed and `dst` is not created.

Errors: envelope errors (the container is bad) pass through unchanged, so callers can tell a
hostile or damaged package apart from a local problem; local I/O problems raise BlobFileError.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from protocols.envelope import (
    MAX_BLOB_SIZE,
    BlobManifest,
    BlobOpener,
    BlobSealer,
    LocalIdentity,
    MalformedEnvelope,
    PeerIdentity,
    Suite,
    TruncatedEnvelope,
    chunk_span,
    container_prefix_length,
)
from sync.durable import fsync_dir

# Reads while hashing are this size whatever the chunk size: large enough for sequential disk
# throughput, small enough to keep memory flat.
_HASH_READ = 1024 * 1024


class BlobFileError(Exception):
    """A local file could not be read, written or renamed (the message names the path)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedBlobInfo:
    """What seal_file produced: the plaintext's size and SHA-256, and the container's size."""

    package_id: bytes
    size: int
    digest: bytes
    sealed_size: int

    def __post_init__(self) -> None:
        if len(self.package_id) != 16 or len(self.digest) != 32:
            raise BlobFileError("SealedBlobInfo: package_id must be 16 bytes, digest 32 bytes")
        if self.size < 0 or self.sealed_size < self.size:
            raise BlobFileError(
                f"SealedBlobInfo: sizes must satisfy 0 <= size <= sealed_size, got "
                f"size={self.size}, sealed_size={self.sealed_size}"
            )


def _tmp_path(dst: Path) -> Path:
    return dst.with_name(dst.name + ".tmp")



@contextmanager
def _atomic_output(dst: Path) -> Iterator[BinaryIO]:
    """Yield `<dst>.tmp` for writing; on success fsync + rename + fsync dir, else remove it."""
    tmp = _tmp_path(dst)
    try:
        out = tmp.open("wb")
    except OSError as exc:
        raise BlobFileError(f"cannot create {tmp}: {exc.strerror or exc}") from exc
    try:
        with out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dst)
        fsync_dir(dst.parent)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise BlobFileError(f"cannot write {dst}: {exc.strerror or exc}") from exc
        raise


def _open_source(src: Path) -> BinaryIO:
    try:
        return src.open("rb")
    except OSError as exc:
        raise BlobFileError(f"cannot read {src}: {exc.strerror or exc}") from exc


def _hash_file(src: Path) -> tuple[int, bytes]:
    """(size, SHA-256) of `src`, refusing anything over the envelope's size bound."""
    h = hashlib.sha256()
    size = 0
    with _open_source(src) as f:
        try:
            while block := f.read(_HASH_READ):
                size += len(block)
                if size > MAX_BLOB_SIZE:
                    raise BlobFileError(
                        f"{src}: larger than {MAX_BLOB_SIZE} bytes, the bound for one blob; "
                        "split the material"
                    )
                h.update(block)
        except OSError as exc:
            raise BlobFileError(f"cannot read {src}: {exc.strerror or exc}") from exc
    return size, h.digest()


def seal_file(
    src: Path,
    dst: Path,
    *,
    sender: LocalIdentity,
    recipient: PeerIdentity,
    package_id: bytes,
    created_ms: int,
    chunk_size: int = 65536,
    suite: Suite = Suite.X25519_SHA256_AES256GCM,
) -> SealedBlobInfo:
    """Seal `src` for `recipient` into the container file `dst`.

    Pass 1 hashes `src` (the manifest's digest is signed before any chunk is written); pass 2
    seals it chunk by chunk, hashing again, and refuses the result if `src` changed in between.
    """
    size, digest = _hash_file(src)
    sealer = BlobSealer(
        sender=sender,
        recipient=recipient,
        package_id=package_id,
        created_ms=created_ms,
        size=size,
        digest=digest,
        chunk_size=chunk_size,
        suite=suite,
    )
    manifest = sealer.manifest
    header = sealer.header()
    again = hashlib.sha256()
    with _open_source(src) as f, _atomic_output(dst) as out:
        out.write(header)
        for index in range(manifest.chunk_count):
            try:
                plaintext = f.read(manifest.plaintext_length(index))
            except OSError as exc:
                raise BlobFileError(f"cannot read {src}: {exc.strerror or exc}") from exc
            if len(plaintext) != manifest.plaintext_length(index) or (
                index == manifest.chunk_count - 1 and f.read(1)
            ):
                raise BlobFileError(f"{src} changed size while it was being sealed; seal again")
            again.update(plaintext)
            out.write(sealer.seal_chunk(index, plaintext))
        if again.digest() != digest:
            raise BlobFileError(f"{src} changed content while it was being sealed; seal again")
    return SealedBlobInfo(
        package_id=package_id,
        size=size,
        digest=digest,
        sealed_size=len(header) + manifest.chunks_length,
    )


def _read_exactly(f: BinaryIO, n: int, src: Path, what: str) -> bytes:
    try:
        data = f.read(n)
    except OSError as exc:
        raise BlobFileError(f"cannot read {src}: {exc.strerror or exc}") from exc
    if len(data) != n:
        raise TruncatedEnvelope(f"{src}: container ends inside {what}; the transfer is incomplete")
    return data


def open_file(
    src: Path,
    dst: Path,
    *,
    me: LocalIdentity,
    peers: Mapping[bytes, PeerIdentity],
    expected_sender: str | None,
    seen: Callable[[bytes], bool],
) -> BlobManifest:
    """Verify and decrypt the container `src` into `dst`; return the signed manifest.

    Every chunk and then the whole digest are checked before `dst` appears.
    """
    with _open_source(src) as f:
        first = _read_exactly(f, 8, src, "its first 8 bytes")
        prefix_len = container_prefix_length(first)
        prefix = first + _read_exactly(f, prefix_len - 8, src, "the header")
        opener = BlobOpener.from_header(
            prefix, me=me, peers=peers, expected_sender=expected_sender, seen=seen
        )
        manifest = opener.manifest
        expected = prefix_len + manifest.chunks_length
        actual = os.fstat(f.fileno()).st_size
        # Checked up front so a short or padded file fails before any decryption work.
        if actual < expected:
            raise TruncatedEnvelope(
                f"{src}: {actual} bytes, the manifest makes the container {expected}: "
                "the transfer is incomplete"
            )
        if actual > expected:
            raise MalformedEnvelope(
                f"{src}: {actual - expected} bytes after the last chunk of the container"
            )
        h = hashlib.sha256()
        with _atomic_output(dst) as out:
            for index in range(manifest.chunk_count):
                _, length = chunk_span(manifest, index)
                ciphertext = _read_exactly(f, length, src, f"chunk {index}")
                plaintext = opener.open_chunk(index, ciphertext)
                h.update(plaintext)
                out.write(plaintext)
            manifest.check_digest(h.digest())
    return manifest

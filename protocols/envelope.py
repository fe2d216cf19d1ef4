"""The sealed envelope: sign-then-encrypt packages between a station and its county hub.

Two kinds, told apart by their first 4 bytes:

- a sealed **event batch** (`MAGIC_BATCH`, this module): one frame whose HPKE plaintext is a
  signed msgpack array naming sender, recipient, package id, suite and creation time, plus the
  payload (at most 1 MiB);
- a sealed **blob container** (`MAGIC_BLOB`, envelope_blob): a frame carrying a signed manifest
  and a content key, then fixed-size AEAD chunks.

This module is the public surface: import everything from `protocols.envelope`. The byte layout
is docs/protocol.md; the common frame and errors live in envelope_core, blobs in envelope_blob.

Pure: bytes in, typed values out. No I/O, no clock (the caller passes `created_ms`), and no
randomness except the crypto library's own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from protocols.envelope_blob import (
    BLOB_TAG,
    CONTENT_KEY_LEN,
    MAX_BLOB_HEADER,
    MAX_BLOB_SIZE,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    BlobManifest,
    BlobOpener,
    BlobSealer,
    chunk_span,
    container_prefix_length,
    expected_chunk_count,
)
from protocols.envelope_core import (
    KEY_ID_LEN,
    LENGTH_FIELD_END,
    MAGIC_BATCH,
    MAGIC_BLOB,
    PACKAGE_ID_LEN,
    PROTOCOL_VERSION,
    BadSignature,
    ChunkOutOfOrder,
    DecryptionFailed,
    DigestMismatch,
    EnvelopeArgumentError,
    EnvelopeError,
    LocalIdentity,
    MalformedEnvelope,
    OuterHeader,
    PeerIdentity,
    ReplayedPackage,
    Suite,
    TruncatedEnvelope,
    UnexpectedSender,
    UnknownKeyId,
    UnsupportedSuite,
    UnsupportedVersion,
    WrongRecipient,
    check_created_ms,
    check_inner_common,
    check_package_id,
    key_id,
    open_frame,
    pack,
    parse_outer,
    seal_frame,
    unpack_signed,
)

__all__ = [
    "BATCH_TAG",
    "BLOB_TAG",
    "CONTENT_KEY_LEN",
    "KEY_ID_LEN",
    "MAGIC_BATCH",
    "MAGIC_BLOB",
    "MAX_BATCH_PACKAGE",
    "MAX_BATCH_PAYLOAD",
    "MAX_BLOB_HEADER",
    "MAX_BLOB_SIZE",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "PACKAGE_ID_LEN",
    "PROTOCOL_VERSION",
    "BadSignature",
    "BlobManifest",
    "BlobOpener",
    "BlobSealer",
    "ChunkOutOfOrder",
    "DecryptionFailed",
    "DigestMismatch",
    "EnvelopeArgumentError",
    "EnvelopeError",
    "LocalIdentity",
    "MalformedEnvelope",
    "OpenedBatch",
    "OuterHeader",
    "PeerIdentity",
    "ReplayedPackage",
    "Suite",
    "TruncatedEnvelope",
    "UnexpectedSender",
    "UnknownKeyId",
    "UnsupportedSuite",
    "UnsupportedVersion",
    "WrongRecipient",
    "chunk_span",
    "container_prefix_length",
    "encode_batch_signed",
    "expected_chunk_count",
    "key_id",
    "open_batch",
    "package_kind",
    "peek_header",
    "seal_batch",
]

BATCH_TAG = "cunlink.batch"
MAX_BATCH_PAYLOAD = 1024 * 1024
# Frame, HPKE and signature overhead is under 300 bytes; the bound is checked before parsing.
MAX_BATCH_PACKAGE = MAX_BATCH_PAYLOAD + 4096
_BATCH_FIELDS = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenedBatch:
    """An authentic, decrypted event batch addressed to us."""

    sender: str
    recipient: str
    package_id: bytes
    created_ms: int
    suite: Suite
    payload: bytes


def package_kind(first_4_bytes: bytes) -> Literal["batch", "blob"]:
    """Which envelope kind a byte string starts with (raises MalformedEnvelope for neither)."""
    if first_4_bytes[:4] == MAGIC_BATCH:
        return "batch"
    if first_4_bytes[:4] == MAGIC_BLOB:
        return "blob"
    raise MalformedEnvelope(
        f"not a cunlink package: first bytes {first_4_bytes[:4]!r}, expected {MAGIC_BATCH!r} "
        f"(event batch) or {MAGIC_BLOB!r} (blob container)"
    )


def peek_header(data: bytes) -> OuterHeader:
    """The routing fields of a batch or blob container, UNAUTHENTICATED (for routing and logs).

    Trust nothing here until open_batch / BlobOpener.from_header has succeeded.
    """
    return parse_outer(data, MAGIC_BATCH if package_kind(data[:4]) == "batch" else MAGIC_BLOB)


def encode_batch_signed(
    payload: bytes,
    *,
    sender: LocalIdentity,
    recipient: PeerIdentity,
    package_id: bytes,
    created_ms: int,
    suite: Suite,
) -> bytes:
    """The batch's signed content (docs/protocol.md 3.2), before signature and encryption."""
    if not isinstance(payload, bytes) or len(payload) > MAX_BATCH_PAYLOAD:
        raise EnvelopeArgumentError(
            f"payload: expected at most {MAX_BATCH_PAYLOAD} bytes, got "
            f"{len(payload) if isinstance(payload, bytes) else type(payload).__name__}: "
            "split the events over several batches"
        )
    if not isinstance(suite, Suite):
        raise EnvelopeArgumentError(f"suite: expected a Suite, got {suite!r}")
    return pack([
        BATCH_TAG, PROTOCOL_VERSION, int(suite), sender.id, recipient.id,
        check_package_id(package_id), check_created_ms(created_ms), sender.signing_key_id,
        recipient.encryption_key_id, payload,
    ])  # fmt: skip


def seal_batch(
    payload: bytes,
    *,
    sender: LocalIdentity,
    recipient: PeerIdentity,
    package_id: bytes,
    created_ms: int,
    suite: Suite = Suite.X25519_SHA256_AES256GCM,
) -> bytes:
    """Sign `payload` as `sender` for `recipient`, then HPKE-encrypt it to `recipient`."""
    signed = encode_batch_signed(
        payload,
        sender=sender,
        recipient=recipient,
        package_id=package_id,
        created_ms=created_ms,
        suite=suite,
    )
    return seal_frame(
        magic=MAGIC_BATCH,
        suite=suite,
        sender=sender.id,
        sender_key_id=sender.signing_key_id,
        recipient=recipient,
        package_id=package_id,
        plaintext=signed + sender.signing_key.sign(signed),
    )


def open_batch(
    data: bytes,
    *,
    me: LocalIdentity,
    peers: Mapping[bytes, PeerIdentity],
    expected_sender: str | None,
    seen: Callable[[bytes], bool],
) -> OpenedBatch:
    """Check, decrypt and verify a sealed batch addressed to `me`.

    `peers` maps signing key ids to enrolled identities. `expected_sender` is who the transport
    says sent it (topic / mTLS id), or None to accept any enrolled peer. `seen(package_id)` is
    asked only once the package is proven authentic; True raises ReplayedPackage.
    """
    if len(data) > MAX_BATCH_PACKAGE:
        raise MalformedEnvelope(
            f"sealed batch of {len(data)} bytes exceeds the {MAX_BATCH_PACKAGE}-byte bound"
        )
    outer = parse_outer(data, MAGIC_BATCH)
    total = LENGTH_FIELD_END + outer.length
    if len(data) < total:
        raise TruncatedEnvelope(
            f"sealed batch {outer.package_id.hex()}: {len(data)} bytes, its header declares "
            f"{total}: the transfer was cut short"
        )
    if len(data) > total:
        raise MalformedEnvelope(
            f"sealed batch {outer.package_id.hex()}: {len(data) - total} bytes after its end"
        )
    peer, signed = open_frame(data, outer, me=me, peers=peers, expected_sender=expected_sender)
    inner = unpack_signed(
        signed, max_bin_len=MAX_BATCH_PAYLOAD, fields=_BATCH_FIELDS, what="sealed batch"
    )
    created_ms = check_inner_common(inner, tag=BATCH_TAG, outer=outer, me=me, peer=peer)
    payload = inner[9]
    if not isinstance(payload, bytes):
        raise MalformedEnvelope(f"sealed batch {outer.package_id.hex()}: payload is not bytes")
    if seen(outer.package_id):
        raise ReplayedPackage(
            f"sealed batch {outer.package_id.hex()} from {peer.id!r} was already received: "
            "acknowledge it again, do not apply it twice"
        )
    return OpenedBatch(
        sender=peer.id,
        recipient=me.id,
        package_id=outer.package_id,
        created_ms=created_ms,
        suite=outer.suite,
        payload=payload,
    )

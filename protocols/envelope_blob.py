"""Sealed blobs: a scanned material of up to 2 GiB, sealed and opened one chunk at a time.

The container is `MAGIC_BLOB | header_len u32 | header | chunk 0 | chunk 1 | ...`. The header is
the common frame (envelope_core) whose HPKE plaintext is a signed manifest carrying a random
content key; each chunk is AEAD(content key, nonce = index, AAD = package id || index || last).
A chunk is verified on its own, so a transfer can check and keep chunks as they arrive, in any
order; the signed chunk count and the last-flag catch truncation, the index in nonce and AAD
catches reordering, and the per-package key catches splicing. See docs/protocol.md section 4.

Pure: the caller feeds chunks; memory is one chunk, whatever the blob's size.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from protocols.envelope_core import (
    AEAD_TAG_LEN,
    LENGTH_FIELD_END,
    MAGIC_BLOB,
    MIN_FRAME_LENGTH,
    PROTOCOL_VERSION,
    ChunkOutOfOrder,
    DecryptionFailed,
    DigestMismatch,
    EnvelopeArgumentError,
    LocalIdentity,
    MalformedEnvelope,
    PeerIdentity,
    ReplayedPackage,
    Suite,
    TruncatedEnvelope,
    check_created_ms,
    check_id,
    check_inner_common,
    check_package_id,
    open_frame,
    pack,
    parse_outer,
    seal_frame,
    unpack_signed,
)

BLOB_TAG = "cunlink.blob"
MAX_BLOB_SIZE = 2 * 1024**3  # 2 GiB: scanned materials are tens of MB; this bounds chunk_count
MIN_CHUNK_SIZE = 1024
MAX_CHUNK_SIZE = 1024 * 1024
MAX_BLOB_HEADER = 4096  # header_len bound, checked before anything else is read
CONTENT_KEY_LEN = 32
DIGEST_LEN = 32
# Reordering is diagnosed by trying the neighbours of a chunk that fails; bounded so a flood of
# forged chunks costs at most this many AEAD attempts each.
REORDER_WINDOW = 8

_U32 = struct.Struct(">I")
_AAD = struct.Struct(">16sIB")
_NONCE_PAD = bytes(8)
_MANIFEST_FIELDS = 14


def expected_chunk_count(size: int, chunk_size: int) -> int:
    """Chunks in a blob: ceil(size / chunk_size), and one empty chunk for an empty blob."""
    return max(1, -(-size // chunk_size))


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobManifest:
    """What the sender signed about a blob (the content key stays inside the opener)."""

    package_id: bytes
    sender: str
    recipient: str
    created_ms: int
    suite: Suite
    size: int
    chunk_size: int
    chunk_count: int
    digest: bytes  # SHA-256 of the plaintext

    def __post_init__(self) -> None:
        check_package_id(self.package_id)
        check_id(self.sender, "BlobManifest.sender")
        check_id(self.recipient, "BlobManifest.recipient")
        check_created_ms(self.created_ms)
        if not isinstance(self.suite, Suite):
            raise EnvelopeArgumentError(f"BlobManifest.suite: expected a Suite, got {self.suite!r}")
        if type(self.size) is not int or not 0 <= self.size <= MAX_BLOB_SIZE:
            raise EnvelopeArgumentError(
                f"BlobManifest.size: expected 0..{MAX_BLOB_SIZE} bytes, got {self.size!r}"
            )
        if type(self.chunk_size) is not int or not (
            MIN_CHUNK_SIZE <= self.chunk_size <= MAX_CHUNK_SIZE
        ):
            raise EnvelopeArgumentError(
                f"BlobManifest.chunk_size: expected {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE} bytes, "
                f"got {self.chunk_size!r}"
            )
        want = expected_chunk_count(self.size, self.chunk_size)
        if self.chunk_count != want:
            raise EnvelopeArgumentError(
                f"BlobManifest.chunk_count: {self.size} bytes in chunks of {self.chunk_size} "
                f"make {want} chunks, got {self.chunk_count!r}"
            )
        if not isinstance(self.digest, bytes) or len(self.digest) != DIGEST_LEN:
            raise EnvelopeArgumentError("BlobManifest.digest: expected 32 bytes of SHA-256")

    def plaintext_length(self, index: int) -> int:
        """Plaintext bytes in chunk `index` (every chunk is full except the last)."""
        self._check_index(index)
        if index < self.chunk_count - 1:
            return self.chunk_size
        return self.size - (self.chunk_count - 1) * self.chunk_size

    def check_digest(self, digest: bytes) -> None:
        """Raise DigestMismatch unless `digest` (SHA-256 of all opened chunks) is the signed one."""
        if digest != self.digest:
            raise DigestMismatch(
                f"blob {self.package_id.hex()}: opened content has SHA-256 {digest.hex()}, the "
                f"sender signed {self.digest.hex()}: the sender sealed inconsistent data"
            )

    @property
    def chunks_length(self) -> int:
        """Bytes of the chunk area: the plaintext plus one tag per chunk."""
        return self.size + self.chunk_count * AEAD_TAG_LEN

    def _check_index(self, index: int) -> None:
        if type(index) is not int or not 0 <= index < self.chunk_count:
            raise ChunkOutOfOrder(
                f"blob {self.package_id.hex()}: chunk index {index!r} is outside "
                f"0..{self.chunk_count - 1}"
            )


def chunk_span(manifest: BlobManifest, index: int) -> tuple[int, int]:
    """(offset from the start of the chunk area, length) of ciphertext chunk `index`."""
    length = manifest.plaintext_length(index) + AEAD_TAG_LEN
    return index * (manifest.chunk_size + AEAD_TAG_LEN), length


def container_prefix_length(first_8_bytes: bytes) -> int:
    """Bytes before chunk 0 (8 + header_len), from the container's first 8 bytes."""
    if len(first_8_bytes) < LENGTH_FIELD_END and MAGIC_BLOB.startswith(first_8_bytes[:4]):
        raise TruncatedEnvelope(f"blob container: need its first 8 bytes, got {len(first_8_bytes)}")
    if first_8_bytes[:4] != MAGIC_BLOB:
        raise MalformedEnvelope(
            f"blob container: expected magic {MAGIC_BLOB!r}, found {first_8_bytes[:4]!r}"
        )
    header_len = int(_U32.unpack_from(first_8_bytes, 4)[0])
    if not MIN_FRAME_LENGTH <= header_len <= MAX_BLOB_HEADER:
        raise MalformedEnvelope(
            f"blob container: header_len {header_len} is outside "
            f"{MIN_FRAME_LENGTH}..{MAX_BLOB_HEADER}"
        )
    return LENGTH_FIELD_END + header_len


def _count_or_invalid(size: object, chunk_size: object) -> int:
    """The chunk count, or -1 so BlobManifest reports which of size / chunk_size is wrong."""
    if type(size) is int and type(chunk_size) is int and chunk_size > 0:
        return expected_chunk_count(size, chunk_size)
    return -1


def _aead(suite: Suite, key: bytes) -> AESGCM | ChaCha20Poly1305:
    if suite is Suite.X25519_SHA256_CHACHA20POLY1305:
        return ChaCha20Poly1305(key)
    return AESGCM(key)


def chunk_nonce_and_aad(package_id: bytes, index: int, last: bool) -> tuple[bytes, bytes]:
    """(nonce, AAD) of chunk `index`: 8 zero bytes || u32 index; package id || u32 index || last.

    The nonce is unique per chunk and the key per package, so no (key, nonce) pair repeats.
    """
    nonce = _NONCE_PAD + _U32.pack(index)
    return nonce, _AAD.pack(package_id, index, 1 if last else 0)


def encode_manifest(
    manifest: BlobManifest, *, sender_kid: bytes, recipient_kid: bytes, content_key: bytes
) -> bytes:
    """The signed manifest bytes (docs/protocol.md 4.2)."""
    return pack([
        BLOB_TAG, PROTOCOL_VERSION, int(manifest.suite), manifest.sender, manifest.recipient,
        manifest.package_id, manifest.created_ms, sender_kid, recipient_kid, manifest.size,
        manifest.chunk_size, manifest.chunk_count, manifest.digest, content_key,
    ])  # fmt: skip


class BlobSealer:
    """Seals one blob: `header()` is the container prefix, then `seal_chunk(i, ...)` in any order.

    `content_key` exists for test vectors only; leave it None so a fresh random key is drawn.
    """

    __slots__ = ("_aead", "_header", "_sealed", "manifest")

    def __init__(
        self,
        *,
        sender: LocalIdentity,
        recipient: PeerIdentity,
        package_id: bytes,
        created_ms: int,
        size: int,
        digest: bytes,
        chunk_size: int,
        suite: Suite = Suite.X25519_SHA256_AES256GCM,
        content_key: bytes | None = None,
    ) -> None:
        self.manifest = BlobManifest(
            package_id=package_id, sender=sender.id, recipient=recipient.id,
            created_ms=created_ms, suite=suite, size=size, chunk_size=chunk_size,
            chunk_count=_count_or_invalid(size, chunk_size),
            digest=digest,
        )  # fmt: skip
        # randomness from the crypto library, never from the caller (protocols/ does no I/O)
        key = AESGCM.generate_key(bit_length=256) if content_key is None else content_key
        if len(key) != CONTENT_KEY_LEN:
            raise EnvelopeArgumentError(f"content_key: expected {CONTENT_KEY_LEN} bytes")
        self._aead = _aead(suite, key)
        self._sealed = bytearray((self.manifest.chunk_count + 7) // 8)  # one bit per chunk
        signed = encode_manifest(
            self.manifest,
            sender_kid=sender.signing_key_id,
            recipient_kid=recipient.encryption_key_id,
            content_key=key,
        )
        self._header = seal_frame(
            magic=MAGIC_BLOB,
            suite=suite,
            sender=sender.id,
            sender_key_id=sender.signing_key_id,
            recipient=recipient,
            package_id=package_id,
            plaintext=signed + sender.signing_key.sign(signed),
        )

    def header(self) -> bytes:
        """The container prefix: MAGIC_BLOB | header_len | header (all bytes before chunk 0)."""
        return self._header

    def seal_chunk(self, index: int, plaintext: bytes) -> bytes:
        want = self.manifest.plaintext_length(index)
        if len(plaintext) != want:
            raise EnvelopeArgumentError(
                f"blob {self.manifest.package_id.hex()}: chunk {index} must hold {want} bytes, "
                f"got {len(plaintext)} (did the source change while sealing?)"
            )
        byte, bit = divmod(index, 8)
        if self._sealed[byte] & (1 << bit):
            # Same key and nonce over possibly different bytes would break AES-GCM outright.
            raise EnvelopeArgumentError(
                f"blob {self.manifest.package_id.hex()}: chunk {index} was sealed already; "
                "re-read it from the container, or seal the blob again as a new package"
            )
        self._sealed[byte] |= 1 << bit
        last = index == self.manifest.chunk_count - 1
        nonce, aad = chunk_nonce_and_aad(self.manifest.package_id, index, last)
        return self._aead.encrypt(nonce, plaintext, aad)


class BlobOpener:
    """Verifies a blob's header, then opens its chunks one by one (any order)."""

    __slots__ = ("_aead", "manifest")

    def __init__(self, manifest: BlobManifest, content_key: bytes) -> None:
        self.manifest = manifest
        self._aead = _aead(manifest.suite, content_key)

    @classmethod
    def from_header(
        cls,
        header: bytes,
        *,
        me: LocalIdentity,
        peers: Mapping[bytes, PeerIdentity],
        expected_sender: str | None,
        seen: Callable[[bytes], bool],
    ) -> BlobOpener:
        """Verify the container prefix (exactly `container_prefix_length` bytes) and open it."""
        prefix_len = container_prefix_length(header[:LENGTH_FIELD_END])
        if len(header) < prefix_len:
            raise TruncatedEnvelope(
                f"blob header: {len(header)} bytes, the container prefix declares {prefix_len}"
            )
        if len(header) > prefix_len:
            raise MalformedEnvelope(
                f"blob header: {len(header)} bytes given, the prefix is {prefix_len}: pass "
                "exactly container_prefix_length(first 8 bytes) bytes"
            )
        outer = parse_outer(header, MAGIC_BLOB)
        peer, signed = open_frame(
            header, outer, me=me, peers=peers, expected_sender=expected_sender
        )
        inner = unpack_signed(
            signed, max_bin_len=DIGEST_LEN, fields=_MANIFEST_FIELDS, what="blob manifest"
        )
        created_ms = check_inner_common(inner, tag=BLOB_TAG, outer=outer, me=me, peer=peer)
        size, chunk_size, chunk_count, digest, content_key = inner[9:]
        if not isinstance(content_key, bytes) or len(content_key) != CONTENT_KEY_LEN:
            raise MalformedEnvelope(f"blob {outer.package_id.hex()}: bad content key field")
        try:
            manifest = BlobManifest(
                package_id=outer.package_id, sender=peer.id, recipient=me.id,
                created_ms=created_ms, suite=outer.suite, size=size, chunk_size=chunk_size,
                chunk_count=chunk_count, digest=digest,
            )  # fmt: skip
        except EnvelopeArgumentError as exc:
            raise MalformedEnvelope(f"blob {outer.package_id.hex()}: manifest: {exc}") from None
        if seen(outer.package_id):
            raise ReplayedPackage(
                f"blob {outer.package_id.hex()} from {peer.id!r} was already received"
            )
        return cls(manifest, content_key)

    def open_chunk(self, index: int, ciphertext: bytes) -> bytes:
        """Verify and decrypt chunk `index`; raise an envelope error if it is not that chunk."""
        m = self.manifest
        offset, want = chunk_span(m, index)
        if len(ciphertext) < want:
            raise TruncatedEnvelope(
                f"blob {m.package_id.hex()}: chunk {index} has {len(ciphertext)} bytes, "
                f"expected {want}"
            )
        if len(ciphertext) > want:
            raise MalformedEnvelope(
                f"blob {m.package_id.hex()}: chunk {index} has {len(ciphertext)} bytes, "
                f"expected {want}"
            )
        try:
            return self._decrypt(index, ciphertext)
        except InvalidTag:
            pass
        found = self._find_elsewhere(index, ciphertext)
        if found is not None:
            raise ChunkOutOfOrder(
                f"blob {m.package_id.hex()}: chunk {found} sits at index {index} "
                f"(byte {offset} of the chunk area): chunks were reordered"
            )
        raise DecryptionFailed(
            f"blob {m.package_id.hex()}: chunk {index} failed authentication: altered in "
            "transit, or taken from another package; fetch it again"
        )

    def _decrypt(self, index: int, ciphertext: bytes) -> bytes:
        nonce, aad = chunk_nonce_and_aad(
            self.manifest.package_id, index, index == self.manifest.chunk_count - 1
        )
        return self._aead.decrypt(nonce, ciphertext, aad)

    def _find_elsewhere(self, index: int, ciphertext: bytes) -> int | None:
        """The index this chunk really has, if it is a nearby chunk of this same blob."""
        m = self.manifest
        nearby = range(max(0, index - REORDER_WINDOW), min(m.chunk_count, index + REORDER_WINDOW))
        candidates = [j for j in nearby if j != index]
        if m.chunk_count - 1 not in candidates and m.chunk_count - 1 != index:
            candidates.append(m.chunk_count - 1)
        for j in candidates:
            if m.plaintext_length(j) + AEAD_TAG_LEN != len(ciphertext):
                continue
            try:
                self._decrypt(j, ciphertext)
            except InvalidTag:
                continue
            return j
        return None

"""Sealed blobs in memory: chunk boundaries, reordering, splicing, truncation, bit flips."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.envelope import (
    MAGIC_BLOB,
    MAX_BLOB_HEADER,
    MAX_BLOB_SIZE,
    BadSignature,
    BlobManifest,
    BlobOpener,
    BlobSealer,
    ChunkOutOfOrder,
    DecryptionFailed,
    DigestMismatch,
    EnvelopeArgumentError,
    EnvelopeError,
    MalformedEnvelope,
    ReplayedPackage,
    Suite,
    TruncatedEnvelope,
    UnexpectedSender,
    UnknownKeyId,
    WrongRecipient,
    chunk_span,
    container_prefix_length,
    expected_chunk_count,
    package_kind,
)
from protocols.envelope_core import pack, seal_frame
from tests.protocols.test_envelope_batch import OTHER
from tests.protocols.test_envelope_vectors import HUB, STATION, peers_of

PID = bytes(range(100, 116))
T0 = 1763805600000
PEERS = peers_of(STATION, OTHER)


def never(_: bytes) -> bool:
    return False


def content(size: int) -> bytes:
    return hashlib.shake_256(size.to_bytes(8, "big")).digest(size) if size else b""


def seal(
    data: bytes,
    chunk_size: int = 1024,
    *,
    suite: Suite = Suite.X25519_SHA256_AES256GCM,
    package_id: bytes = PID,
    digest: bytes | None = None,
) -> tuple[bytes, list[bytes]]:
    """(container prefix, ciphertext chunks) of `data`, sealed from ST001 to the hub."""
    sealer = BlobSealer(
        sender=STATION, recipient=HUB.public(), package_id=package_id, created_ms=T0,
        size=len(data), digest=hashlib.sha256(data).digest() if digest is None else digest,
        chunk_size=chunk_size, suite=suite,
    )  # fmt: skip
    m = sealer.manifest
    chunks = [
        sealer.seal_chunk(i, data[i * chunk_size : (i + 1) * chunk_size])
        for i in range(m.chunk_count)
    ]
    return sealer.header(), chunks


def opener(
    header: bytes, *, expected_sender: str | None = "ST001", seen: Callable[[bytes], bool] = never
) -> BlobOpener:
    return BlobOpener.from_header(
        header, me=HUB, peers=PEERS, expected_sender=expected_sender, seen=seen
    )


def open_container(data: bytes, verified: BlobOpener | None = None) -> tuple[BlobManifest, bytes]:
    """What sync.blobfile.open_file does, in memory: prefix, size check, chunks, digest.

    `verified` skips re-verifying a header already opened (damage tests on the chunk area).
    """
    prefix_len = container_prefix_length(data[:8])
    if len(data) < prefix_len:
        raise TruncatedEnvelope("container ends inside the header")
    o = opener(data[:prefix_len]) if verified is None else verified
    m = o.manifest
    area = data[prefix_len:]
    if len(area) < m.chunks_length:
        raise TruncatedEnvelope("container ends inside the chunks")
    if len(area) > m.chunks_length:
        raise MalformedEnvelope("trailing bytes")
    out = b""
    for i in range(m.chunk_count):
        offset, length = chunk_span(m, i)
        out += o.open_chunk(i, area[offset : offset + length])
    m.check_digest(hashlib.sha256(out).digest())
    return m, out


# --- round trips and layout --------------------------------------------------------------------


@pytest.mark.parametrize("suite", list(Suite))
def test_round_trip_in_reverse_chunk_order(suite: Suite) -> None:
    data = content(5000)
    header, chunks = seal(data, suite=suite)
    o = opener(header)
    assert o.manifest.suite is suite and o.manifest.chunk_count == 5
    opened = {i: o.open_chunk(i, chunks[i]) for i in reversed(range(5))}
    assert b"".join(opened[i] for i in range(5)) == data


def test_container_layout_matches_the_spec() -> None:
    data = content(3000)
    header, chunks = seal(data)
    container = header + b"".join(chunks)
    assert package_kind(container[:4]) == "blob"
    assert container_prefix_length(container[:8]) == len(header)
    m, out = open_container(container)
    assert out == data
    assert [len(c) for c in chunks] == [1040, 1040, 968]
    assert [chunk_span(m, i) for i in range(3)] == [(0, 1040), (1040, 1040), (2080, 968)]
    assert len(container) == len(header) + m.size + 16 * m.chunk_count


def test_empty_blob_has_one_empty_chunk() -> None:
    header, chunks = seal(b"")
    assert [len(c) for c in chunks] == [16]
    m, out = open_container(header + chunks[0])
    assert (m.size, m.chunk_count, out) == (0, 1, b"")


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 6000), chunk_size=st.integers(1024, 1600), data=st.data())
def test_any_size_and_chunk_boundary_round_trips(
    size: int, chunk_size: int, data: st.DataObject
) -> None:
    plaintext = data.draw(st.binary(min_size=size, max_size=size))
    header, chunks = seal(plaintext, chunk_size)
    m, out = open_container(header + b"".join(chunks))
    assert out == plaintext
    assert m.chunk_count == expected_chunk_count(size, chunk_size) == len(chunks)
    spans = [chunk_span(m, i) for i in range(m.chunk_count)]
    assert [length for _, length in spans] == [len(c) for c in chunks]
    assert all(a[0] + a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert sum(length for _, length in spans) == m.chunks_length


# --- chunk failures ----------------------------------------------------------------------------


def test_chunk_out_of_order_when_chunks_are_swapped() -> None:
    header, chunks = seal(content(4096))
    o = opener(header)
    with pytest.raises(ChunkOutOfOrder, match="chunk 2 sits at index 1"):
        o.open_chunk(1, chunks[2])


def test_chunk_out_of_order_when_the_full_last_chunk_moves() -> None:
    header, chunks = seal(content(4096))  # 4 full chunks: the last one has the same size
    with pytest.raises(ChunkOutOfOrder, match="chunk 3 sits at index 0"):
        opener(header).open_chunk(0, chunks[3])


def test_chunk_out_of_order_when_the_index_is_outside_the_blob() -> None:
    header, chunks = seal(content(2000))
    with pytest.raises(ChunkOutOfOrder, match=r"outside 0\.\.1"):
        opener(header).open_chunk(2, chunks[1])


def test_chunk_spliced_from_another_package_fails_decryption() -> None:
    header, _ = seal(content(2048))
    _, foreign = seal(content(2048), package_id=bytes(16))
    with pytest.raises(DecryptionFailed, match="another package"):
        opener(header).open_chunk(0, foreign[0])


def test_truncated_chunk() -> None:
    header, chunks = seal(content(1500))
    with pytest.raises(TruncatedEnvelope, match="expected 492"):
        opener(header).open_chunk(1, chunks[1][:-1])


def test_oversized_chunk_is_malformed() -> None:
    header, chunks = seal(content(1500))
    with pytest.raises(MalformedEnvelope, match="expected 1040"):
        opener(header).open_chunk(0, chunks[0] + b"\x00")


def test_container_cut_at_a_chunk_boundary_is_truncated() -> None:
    header, chunks = seal(content(3072))
    with pytest.raises(TruncatedEnvelope):
        open_container(header + b"".join(chunks[:2]))


def test_digest_mismatch_when_the_sender_signed_another_digest() -> None:
    header, chunks = seal(content(1500), digest=bytes(32))
    with pytest.raises(DigestMismatch, match="inconsistent"):
        open_container(header + b"".join(chunks))
    assert issubclass(DigestMismatch, MalformedEnvelope)


# --- header failures ---------------------------------------------------------------------------


def test_header_wrong_recipient() -> None:
    sealer = BlobSealer(
        sender=STATION, recipient=OTHER.public(), package_id=PID, created_ms=T0, size=0,
        digest=hashlib.sha256(b"").digest(), chunk_size=1024,
    )  # fmt: skip
    with pytest.raises(WrongRecipient):
        opener(sealer.header())


def test_header_unexpected_sender() -> None:
    header, _ = seal(b"x")
    with pytest.raises(UnexpectedSender):
        opener(header, expected_sender="ST002")


def test_header_unknown_key_id() -> None:
    header, _ = seal(b"x")
    with pytest.raises(UnknownKeyId):
        BlobOpener.from_header(
            header, me=HUB, peers=peers_of(OTHER), expected_sender=None, seen=never
        )


def test_header_replayed_package() -> None:
    header, _ = seal(b"x")
    with pytest.raises(ReplayedPackage, match="already received"):
        opener(header, seen=lambda pid: pid == PID)


def _forged_header(manifest: list[object], *, signer: object = None) -> bytes:
    signed = pack(manifest)
    key = STATION.signing_key if signer is None else OTHER.signing_key
    return seal_frame(
        magic=MAGIC_BLOB, suite=Suite.X25519_SHA256_AES256GCM, sender="ST001",
        sender_key_id=STATION.signing_key_id, recipient=HUB.public(), package_id=PID,
        plaintext=signed + key.sign(signed),
    )  # fmt: skip


def _manifest(**changes: object) -> list[object]:
    fields: dict[str, object] = {
        "tag": "cunlink.blob", "version": 1, "suite": 1, "sender": "ST001",
        "recipient": "hub-0571", "package_id": PID, "created_ms": T0,
        "skid": STATION.signing_key_id, "rkid": HUB.encryption_key_id, "size": 10,
        "chunk_size": 1024, "chunk_count": 1, "digest": bytes(32), "key": bytes(32),
    }  # fmt: skip
    fields.update(changes)
    return list(fields.values())


def test_forged_header_layout_is_accepted_when_consistent() -> None:
    assert opener(_forged_header(_manifest())).manifest.size == 10  # the helpers are faithful


def test_header_bad_signature() -> None:
    with pytest.raises(BadSignature):
        opener(_forged_header(_manifest(), signer="other"))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"chunk_count": 2}, "chunk_count"),
        ({"chunk_size": 512}, "chunk_size"),
        ({"size": MAX_BLOB_SIZE + 1}, "size"),
        ({"key": b"short"}, "content key"),
        ({"digest": "not bytes"}, "digest"),
    ],
)
def test_header_malformed_manifest(changes: dict[str, object], match: str) -> None:
    with pytest.raises(MalformedEnvelope, match=match):
        opener(_forged_header(_manifest(**changes)))


def test_header_len_over_the_bound_is_refused_from_the_first_8_bytes() -> None:
    first = MAGIC_BLOB + (MAX_BLOB_HEADER + 1).to_bytes(4, "big")
    with pytest.raises(MalformedEnvelope, match="outside"):
        container_prefix_length(first)
    with pytest.raises(MalformedEnvelope, match="outside"):
        container_prefix_length(MAGIC_BLOB + (20).to_bytes(4, "big"))


def test_header_with_extra_bytes_is_malformed() -> None:
    header, chunks = seal(b"abc")
    with pytest.raises(MalformedEnvelope, match="pass exactly"):
        opener(header + chunks[0])


# --- sealing arguments -------------------------------------------------------------------------


def test_sealer_refuses_a_chunk_of_the_wrong_length() -> None:
    sealer = BlobSealer(
        sender=STATION, recipient=HUB.public(), package_id=PID, created_ms=T0, size=2000,
        digest=bytes(32), chunk_size=1024,
    )  # fmt: skip
    with pytest.raises(EnvelopeArgumentError, match="must hold 976 bytes"):
        sealer.seal_chunk(1, bytes(1024))


def test_sealer_refuses_to_seal_a_chunk_twice() -> None:
    sealer = BlobSealer(
        sender=STATION, recipient=HUB.public(), package_id=PID, created_ms=T0, size=2000,
        digest=bytes(32), chunk_size=1024,
    )  # fmt: skip
    sealer.seal_chunk(0, bytes(1024))
    with pytest.raises(EnvelopeArgumentError, match="chunk 0 was sealed already"):
        sealer.seal_chunk(0, b"\x01" * 1024)  # same nonce, other bytes: must never happen
    assert len(sealer.seal_chunk(1, bytes(976))) == 992


@pytest.mark.parametrize(
    ("size", "chunk_size", "match"),
    [(MAX_BLOB_SIZE + 1, 65536, "size"), (10, 1023, "chunk_size"), (10, 0, "chunk_size")],
)
def test_sealer_refuses_out_of_bound_sizes(size: int, chunk_size: int, match: str) -> None:
    with pytest.raises(EnvelopeArgumentError, match=match):
        BlobSealer(
            sender=STATION, recipient=HUB.public(), package_id=PID, created_ms=T0, size=size,
            digest=bytes(32), chunk_size=chunk_size,
        )  # fmt: skip


# --- exhaustive damage -------------------------------------------------------------------------


def test_every_truncation_of_a_container_is_reported_as_truncated() -> None:
    header, chunks = seal(content(1100))
    container = header + b"".join(chunks)
    verified = opener(header)
    for cut in range(len(container)):
        with pytest.raises(TruncatedEnvelope):
            open_container(container[:cut], verified if cut >= len(header) else None)


def test_every_single_bit_flip_of_a_container_fails_with_an_envelope_error() -> None:
    header, chunks = seal(content(1100))
    container = header + b"".join(chunks)
    verified = opener(header)
    kinds: set[str] = set()
    for bit in range(len(container) * 8):
        damaged = bytearray(container)
        damaged[bit // 8] ^= 1 << (bit % 8)
        try:
            # A flip in the chunk area leaves the header intact: reuse its verified opener.
            open_container(bytes(damaged), verified if bit >= len(header) * 8 else None)
        except EnvelopeError as exc:
            assert type(exc) not in (EnvelopeError, EnvelopeArgumentError), exc
            kinds.add(type(exc).__name__)
        else:
            pytest.fail(f"bit {bit} flipped and the container still opened")
    assert {"MalformedEnvelope", "TruncatedEnvelope", "DecryptionFailed"} <= kinds

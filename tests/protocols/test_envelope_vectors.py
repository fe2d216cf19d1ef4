"""docs/protocol.md and the code agree on every byte the spec's test vectors pin.

Each vector in the spec is an HTML comment naming it followed by a ```hex block. Deterministic
parts (keys, key ids, frame headers, HPKE info, signed content, signatures, chunk ciphertexts)
are recomputed here and compared; the sealed packages (HPKE's ephemeral key is random) are
opened with the fixed keys and checked down to their decrypted bytes.

`python -m tests.protocols.test_envelope_vectors` prints every vector block, with freshly
sealed packages, for pasting into the spec.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from protocols.envelope import (
    BlobManifest,
    BlobOpener,
    BlobSealer,
    LocalIdentity,
    PeerIdentity,
    Suite,
    chunk_span,
    container_prefix_length,
    encode_batch_signed,
    open_batch,
    seal_batch,
)
from protocols.envelope_blob import chunk_nonce_and_aad, encode_manifest
from protocols.envelope_core import hpke_info, hpke_suite, parse_outer

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
_VECTOR_RE = re.compile(r"<!-- vector: (\S+) -->\s*```hex\n(.*?)```", re.DOTALL)


def seed(label: str) -> bytes:
    """A fixed 32-byte private key: SHA-256 of "cunlink test vector: " + label."""
    return hashlib.sha256(b"cunlink test vector: " + label.encode("ascii")).digest()


STATION = LocalIdentity(
    id="ST001",
    signing_key=Ed25519PrivateKey.from_private_bytes(seed("ST001 signing")),
    encryption_key=X25519PrivateKey.from_private_bytes(seed("ST001 encryption")),
)
HUB = LocalIdentity(
    id="hub-0571",
    signing_key=Ed25519PrivateKey.from_private_bytes(seed("hub-0571 signing")),
    encryption_key=X25519PrivateKey.from_private_bytes(seed("hub-0571 encryption")),
)
PACKAGE_ID = bytes.fromhex("01936f3e2a407c1d8e5f0a1b2c3d4e5f")
BLOB_PACKAGE_ID = bytes.fromhex("01936f3e2a407c1d8e5f0a1b2c3d4e60")
CREATED_MS = 1763805600000  # 2025-11-22T10:00:00Z
BATCH_PAYLOAD = b"cunlink test vector: event batch payload"
BLOB_PLAINTEXT = bytes(i % 256 for i in range(1030))
BLOB_CHUNK_SIZE = 1024
CONTENT_KEY = seed("blob content key")


def peers_of(*identities: LocalIdentity) -> dict[bytes, PeerIdentity]:
    return {i.signing_key_id: i.public() for i in identities}


def never_seen(_: bytes) -> bool:
    return False


def _enc_start(frame: bytes) -> int:
    return 43 + frame[42]


def _blob_sealer() -> BlobSealer:
    return BlobSealer(
        sender=STATION,
        recipient=HUB.public(),
        package_id=BLOB_PACKAGE_ID,
        created_ms=CREATED_MS,
        size=len(BLOB_PLAINTEXT),
        digest=hashlib.sha256(BLOB_PLAINTEXT).digest(),
        chunk_size=BLOB_CHUNK_SIZE,
        content_key=CONTENT_KEY,
    )


def deterministic_vectors() -> dict[str, bytes]:
    """Every byte string the spec pins that does not depend on HPKE's randomness."""
    v: dict[str, bytes] = {}
    for who in (STATION, HUB):
        v[f"keys.{who.id}.signing_public"] = who.signing_key.public_key().public_bytes_raw()
        v[f"keys.{who.id}.signing_key_id"] = who.signing_key_id
        v[f"keys.{who.id}.encryption_public"] = who.encryption_key.public_key().public_bytes_raw()
        v[f"keys.{who.id}.encryption_key_id"] = who.encryption_key_id
    signed = encode_batch_signed(
        BATCH_PAYLOAD,
        sender=STATION,
        recipient=HUB.public(),
        package_id=PACKAGE_ID,
        created_ms=CREATED_MS,
        suite=Suite.X25519_SHA256_AES256GCM,
    )
    sealed = seal_batch(
        BATCH_PAYLOAD,
        sender=STATION,
        recipient=HUB.public(),
        package_id=PACKAGE_ID,
        created_ms=CREATED_MS,
    )
    v["batch.frame_header"] = sealed[: _enc_start(sealed)]
    v["batch.info"] = hpke_info(v["batch.frame_header"], HUB.id)
    v["batch.signed"] = signed
    v["batch.signature"] = STATION.signing_key.sign(signed)

    sealer = _blob_sealer()
    header = sealer.header()
    manifest_bytes = encode_manifest(
        sealer.manifest,
        sender_kid=STATION.signing_key_id,
        recipient_kid=HUB.encryption_key_id,
        content_key=CONTENT_KEY,
    )
    chunk0 = sealer.seal_chunk(0, BLOB_PLAINTEXT[:BLOB_CHUNK_SIZE])
    v["blob.digest"] = sealer.manifest.digest
    v["blob.content_key"] = CONTENT_KEY
    v["blob.frame_header"] = header[: _enc_start(header)]
    v["blob.info"] = hpke_info(v["blob.frame_header"], HUB.id)
    v["blob.signed"] = manifest_bytes
    v["blob.signature"] = STATION.signing_key.sign(manifest_bytes)
    v["blob.chunk0.nonce"], v["blob.chunk0.aad"] = chunk_nonce_and_aad(BLOB_PACKAGE_ID, 0, False)
    v["blob.chunk0.sha256"] = hashlib.sha256(chunk0).digest()
    v["blob.chunk1.nonce"], v["blob.chunk1.aad"] = chunk_nonce_and_aad(BLOB_PACKAGE_ID, 1, True)
    v["blob.chunk1"] = sealer.seal_chunk(1, BLOB_PLAINTEXT[BLOB_CHUNK_SIZE:])
    return v


def sealed_vectors() -> dict[str, bytes]:
    """Fresh sealed packages (random HPKE ephemeral key): the spec holds one of each."""
    sealer = _blob_sealer()
    chunks = [
        sealer.seal_chunk(i, BLOB_PLAINTEXT[i * BLOB_CHUNK_SIZE : (i + 1) * BLOB_CHUNK_SIZE])
        for i in range(sealer.manifest.chunk_count)
    ]
    return {
        "batch.sealed": seal_batch(
            BATCH_PAYLOAD,
            sender=STATION,
            recipient=HUB.public(),
            package_id=PACKAGE_ID,
            created_ms=CREATED_MS,
        ),
        "batch.sealed_chacha20": seal_batch(
            BATCH_PAYLOAD,
            sender=STATION,
            recipient=HUB.public(),
            package_id=PACKAGE_ID,
            created_ms=CREATED_MS,
            suite=Suite.X25519_SHA256_CHACHA20POLY1305,
        ),
        "blob.container": sealer.header() + b"".join(chunks),
    }


def doc_vectors() -> dict[str, bytes]:
    text = DOC.read_text(encoding="utf-8")
    found: dict[str, bytes] = {}
    for name, body in _VECTOR_RE.findall(text):
        assert name not in found, f"docs/protocol.md: vector {name} appears twice"
        found[name] = bytes.fromhex("".join(body.split()))
    return found


DETERMINISTIC = deterministic_vectors()


def test_fixed_private_keys_are_the_documented_seeds() -> None:
    text = DOC.read_text(encoding="utf-8")
    for label in ("ST001 signing", "ST001 encryption", "hub-0571 signing", "hub-0571 encryption"):
        assert f'"cunlink test vector: {label}"' in text
    assert STATION.signing_key.private_bytes_raw() == seed("ST001 signing")


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_pinned_vector_matches_the_code(name: str) -> None:
    doc = doc_vectors()
    assert name in doc, f"docs/protocol.md lacks vector {name}"
    assert doc[name].hex() == DETERMINISTIC[name].hex()


def test_doc_holds_only_known_vectors() -> None:
    from tests.protocols.test_bundle import BUNDLE_VECTORS  # section 7, checked there

    known = set(DETERMINISTIC) | set(sealed_vectors()) | set(BUNDLE_VECTORS)
    assert set(doc_vectors()) == known


@pytest.mark.parametrize(
    ("name", "suite"),
    [
        ("batch.sealed", Suite.X25519_SHA256_AES256GCM),
        ("batch.sealed_chacha20", Suite.X25519_SHA256_CHACHA20POLY1305),
    ],
)
def test_sealed_batch_vector_opens_to_the_pinned_content(name: str, suite: Suite) -> None:
    sealed = doc_vectors()[name]
    opened = open_batch(
        sealed, me=HUB, peers=peers_of(STATION), expected_sender="ST001", seen=never_seen
    )
    assert (opened.sender, opened.recipient, opened.package_id) == ("ST001", "hub-0571", PACKAGE_ID)
    assert (opened.created_ms, opened.suite, opened.payload) == (CREATED_MS, suite, BATCH_PAYLOAD)
    # Below the API: the HPKE plaintext is exactly the pinned signed content and signature.
    enc_start = _enc_start(sealed)
    frame = sealed[:enc_start]
    assert parse_outer(sealed, b"CLBA").suite is suite
    plaintext = hpke_suite(suite).decrypt(
        sealed[enc_start:], HUB.encryption_key, info=hpke_info(frame, HUB.id)
    )
    signed = encode_batch_signed(
        BATCH_PAYLOAD,
        sender=STATION,
        recipient=HUB.public(),
        package_id=PACKAGE_ID,
        created_ms=CREATED_MS,
        suite=suite,
    )
    assert plaintext == signed + STATION.signing_key.sign(signed)
    if suite is Suite.X25519_SHA256_AES256GCM:
        assert frame == DETERMINISTIC["batch.frame_header"]
        assert plaintext == DETERMINISTIC["batch.signed"] + DETERMINISTIC["batch.signature"]


def test_sealed_blob_vector_opens_to_the_pinned_content() -> None:
    container = doc_vectors()["blob.container"]
    prefix_len = container_prefix_length(container[:8])
    header, chunks = container[:prefix_len], container[prefix_len:]
    assert header[: _enc_start(header)] == DETERMINISTIC["blob.frame_header"]
    plaintext = hpke_suite(Suite.X25519_SHA256_AES256GCM).decrypt(
        header[_enc_start(header) :],
        HUB.encryption_key,
        info=DETERMINISTIC["blob.info"],
    )
    assert plaintext == DETERMINISTIC["blob.signed"] + DETERMINISTIC["blob.signature"]
    opener = BlobOpener.from_header(
        header, me=HUB, peers=peers_of(STATION), expected_sender="ST001", seen=never_seen
    )
    assert opener.manifest == BlobManifest(
        package_id=BLOB_PACKAGE_ID,
        sender="ST001",
        recipient="hub-0571",
        created_ms=CREATED_MS,
        suite=Suite.X25519_SHA256_AES256GCM,
        size=1030,
        chunk_size=1024,
        chunk_count=2,
        digest=DETERMINISTIC["blob.digest"],
    )
    opened = b""
    for index in range(2):
        offset, length = chunk_span(opener.manifest, index)
        opened += opener.open_chunk(index, chunks[offset : offset + length])
    assert opened == BLOB_PLAINTEXT
    assert len(chunks) == 1040 + 22
    assert hashlib.sha256(chunks[:1040]).digest() == DETERMINISTIC["blob.chunk0.sha256"]
    assert chunks[1040:] == DETERMINISTIC["blob.chunk1"]


def _print_vectors() -> None:
    for name, value in {**DETERMINISTIC, **sealed_vectors()}.items():
        hexed = value.hex()
        lines = [hexed[i : i + 64] for i in range(0, len(hexed), 64)] or [""]
        print(f"<!-- vector: {name} -->\n```hex\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    _print_vectors()

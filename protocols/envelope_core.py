"""The sealed envelope's common core: constants, errors, identities, the outer frame, HPKE.

Both envelope kinds (an event batch, a blob's header) share one frame: a 4-byte magic, a length,
an unencrypted routing header, then HPKE (RFC 9180, base mode) over `signed || signature`.
The routing header is bound twice: its bytes are part of HPKE's `info`, and the signed content
repeats every field. docs/protocol.md sections 1-3 give the byte layout; this module and the spec
agree byte for byte (tests/protocols/test_envelope_vectors.py checks the spec's vectors).

Pure: no I/O, no clock; randomness comes only from the crypto library (HPKE's ephemeral key).
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgpack
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

PROTOCOL_VERSION: int = 1
MAGIC_BATCH = b"CLBA"
MAGIC_BLOB = b"CLBL"
KEY_ID_LEN = 8
PACKAGE_ID_LEN = 16
MAX_ID_LEN = 64
SIGNATURE_LEN = 64
HPKE_ENC_LEN = 32  # X25519 ephemeral public key
AEAD_TAG_LEN = 16
INFO_LABEL = b"cunlink-envelope"
MAX_CREATED_MS = 2**63 - 1

# The frame: magic(4) | length u32 | version u8 | suite u8 | recipient key id(8) |
# sender key id(8) | package id(16) | sender id length u8 | sender id.
_FRAME_FIXED = struct.Struct(">4sIBB8s8s16sB")
FRAME_FIXED_LEN = _FRAME_FIXED.size  # 43
LENGTH_FIELD_END = 8  # the declared length counts the bytes after offset 8
# The smallest declared length that can hold a sealed content: a 1-byte sender id, enc, tag,
# signature and at least one byte signed.
MIN_FRAME_LENGTH = FRAME_FIXED_LEN - LENGTH_FIELD_END + 1 + 32 + 16 + 64 + 1

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class Suite(IntEnum):
    """Which algorithms seal a package. Values are wire bytes; new suites never reuse one."""

    X25519_SHA256_AES256GCM = 1  # default
    X25519_SHA256_CHACHA20POLY1305 = 2  # CPUs without AES instructions
    # room for a national SM2/SM3/SM4 suite later, no format break


_HPKE_AEAD = {
    Suite.X25519_SHA256_AES256GCM: hpke.AEAD.AES_256_GCM,
    Suite.X25519_SHA256_CHACHA20POLY1305: hpke.AEAD.CHACHA20_POLY1305,
}


def hpke_suite(suite: Suite) -> hpke.Suite:
    """The HPKE suite (KEM 0x0020, KDF 0x0001, AEAD 0x0002 or 0x0003) behind an envelope suite."""
    return hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, _HPKE_AEAD[suite])


# --- errors ------------------------------------------------------------------------------------


class EnvelopeError(Exception):
    """Base of every error this module family raises; a sealed package is never half-trusted."""


class EnvelopeArgumentError(EnvelopeError, ValueError):
    """The local caller passed a value the envelope cannot carry (our bug, not the peer's)."""


class MalformedEnvelope(EnvelopeError):
    """The bytes do not follow the format (bad magic, bad field, wrong sizes, trailing bytes)."""


class DigestMismatch(MalformedEnvelope):
    """Every chunk authenticated, yet the whole differs from the signed digest (sender's fault)."""


class UnsupportedVersion(EnvelopeError):
    """The package was sealed with a protocol version this build does not speak."""


class UnsupportedSuite(EnvelopeError):
    """The package names a cipher suite this build does not implement."""


class UnknownKeyId(EnvelopeError):
    """The sender's signing key id is not enrolled here (unknown peer, or a rotated key)."""


class BadSignature(EnvelopeError):
    """The signature does not verify under the enrolled key of the named sender."""


class WrongRecipient(EnvelopeError):
    """The package was sealed for another identity (or for a key this identity no longer holds)."""


class UnexpectedSender(EnvelopeError):
    """The sender differs from the one expected (topic / mTLS identity) or from its enrollment."""


class TruncatedEnvelope(EnvelopeError):
    """The bytes end before the package or container does."""


class ChunkOutOfOrder(EnvelopeError):
    """A blob chunk sits at the wrong index, or the index is outside the blob."""


class ReplayedPackage(EnvelopeError):
    """An authentic package whose id the caller has already seen (safe to acknowledge again)."""


class DecryptionFailed(EnvelopeError):
    """Authenticated decryption failed: bytes altered in transit, or spliced from elsewhere."""


# --- identities --------------------------------------------------------------------------------


def key_id(raw_public_key: bytes) -> bytes:
    """The 8-byte key id: the first 8 bytes of SHA-256 over the raw 32-byte public key."""
    return hashlib.sha256(raw_public_key).digest()[:KEY_ID_LEN]


def check_id(value: object, what: str) -> str:
    """Return `value` if it is a valid station/hub id, else raise EnvelopeArgumentError."""
    if not isinstance(value, str) or _ID_RE.fullmatch(value) is None:
        raise EnvelopeArgumentError(
            f"{what}: expected an id of 1-{MAX_ID_LEN} characters from A-Z a-z 0-9 . _ - "
            f"starting with a letter or digit, got {value!r}"
        )
    return value


def check_package_id(value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != PACKAGE_ID_LEN:
        raise EnvelopeArgumentError(
            f"package_id: expected {PACKAGE_ID_LEN} bytes (uuid.UUID(...).bytes), got {value!r}"
        )
    return value


def check_created_ms(value: object) -> int:
    if type(value) is not int or not 0 <= value <= MAX_CREATED_MS:
        raise EnvelopeArgumentError(
            f"created_ms: expected milliseconds since the Unix epoch (0..2**63-1), got {value!r}"
        )
    return value


def _raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes_raw()


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerIdentity:
    """The public half of a station or hub: what the other side enrolls."""

    id: str
    signing_public: Ed25519PublicKey
    encryption_public: X25519PublicKey

    def __post_init__(self) -> None:
        check_id(self.id, "PeerIdentity.id")
        if not isinstance(self.signing_public, Ed25519PublicKey):
            raise EnvelopeArgumentError("PeerIdentity.signing_public: expected an Ed25519 key")
        if not isinstance(self.encryption_public, X25519PublicKey):
            raise EnvelopeArgumentError("PeerIdentity.encryption_public: expected an X25519 key")

    @property
    def signing_key_id(self) -> bytes:
        return key_id(_raw_public(self.signing_public))

    @property
    def encryption_key_id(self) -> bytes:
        return key_id(_raw_public(self.encryption_public))


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalIdentity:
    """This process's own id and private keys (loaded by gateway.keys)."""

    id: str
    signing_key: Ed25519PrivateKey
    encryption_key: X25519PrivateKey

    def __post_init__(self) -> None:
        check_id(self.id, "LocalIdentity.id")
        if not isinstance(self.signing_key, Ed25519PrivateKey):
            raise EnvelopeArgumentError("LocalIdentity.signing_key: expected an Ed25519 key")
        if not isinstance(self.encryption_key, X25519PrivateKey):
            raise EnvelopeArgumentError("LocalIdentity.encryption_key: expected an X25519 key")

    def public(self) -> PeerIdentity:
        return PeerIdentity(
            id=self.id,
            signing_public=self.signing_key.public_key(),
            encryption_public=self.encryption_key.public_key(),
        )

    @property
    def signing_key_id(self) -> bytes:
        return key_id(_raw_public(self.signing_key.public_key()))

    @property
    def encryption_key_id(self) -> bytes:
        return key_id(_raw_public(self.encryption_key.public_key()))


# --- the outer frame ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OuterHeader:
    """The unencrypted routing fields. UNAUTHENTICATED until the package is opened."""

    magic: bytes
    length: int
    version: int
    suite: Suite
    recipient_key_id: bytes
    sender_key_id: bytes
    package_id: bytes
    sender: str

    @property
    def encoded_length(self) -> int:
        """Bytes from the magic to the end of the sender id (where HPKE's `enc` starts)."""
        return FRAME_FIXED_LEN + len(self.sender)


def encode_outer(
    *,
    magic: bytes,
    length: int,
    suite: Suite,
    recipient_key_id: bytes,
    sender_key_id: bytes,
    package_id: bytes,
    sender: str,
) -> bytes:
    sender_bytes = check_id(sender, "sender").encode("ascii")
    return (
        _FRAME_FIXED.pack(
            magic,
            length,
            PROTOCOL_VERSION,
            suite,
            recipient_key_id,
            sender_key_id,
            check_package_id(package_id),
            len(sender_bytes),
        )
        + sender_bytes
    )


def _describe_magic(found: bytes) -> str:
    kinds = {MAGIC_BATCH: "a sealed event batch", MAGIC_BLOB: "a sealed blob container"}
    return kinds.get(found, f"not a cunlink package (first bytes {found.hex()})")


def parse_outer(data: bytes, magic: bytes) -> OuterHeader:
    """Parse the frame's routing header, checking magic, version and suite in that order.

    Only the header is examined; the caller checks the declared length against what it holds.
    """
    if len(data) < 4 and magic.startswith(data):
        raise TruncatedEnvelope(f"package ends after {len(data)} bytes, inside the 4-byte magic")
    if data[:4] != magic:
        raise MalformedEnvelope(
            f"expected magic {magic!r} ({_describe_magic(magic)}), "
            f"found {data[:4]!r}: {_describe_magic(data[:4])}"
        )
    if len(data) < 9:
        raise TruncatedEnvelope(f"package ends after {len(data)} bytes, inside the frame header")
    if data[8] != PROTOCOL_VERSION:
        raise UnsupportedVersion(
            f"package uses protocol version {data[8]}, this build speaks {PROTOCOL_VERSION}: "
            "upgrade cunlink on this side"
        )
    if len(data) < FRAME_FIXED_LEN:
        raise TruncatedEnvelope(f"package ends after {len(data)} bytes, inside the frame header")
    _, length, version, suite_byte, rkid, skid, package_id, id_len = _FRAME_FIXED.unpack_from(data)
    try:
        suite = Suite(suite_byte)
    except ValueError:
        raise UnsupportedSuite(
            f"package uses cipher suite {suite_byte}, this build implements "
            f"{', '.join(f'{s.value} ({s.name})' for s in Suite)}"
        ) from None
    if len(data) < FRAME_FIXED_LEN + id_len:
        raise TruncatedEnvelope(f"package ends after {len(data)} bytes, inside the sender id")
    raw_sender = data[FRAME_FIXED_LEN : FRAME_FIXED_LEN + id_len]
    try:
        sender = check_id(raw_sender.decode("ascii"), "sender id")
    except (UnicodeDecodeError, EnvelopeArgumentError):
        raise MalformedEnvelope(f"frame header: invalid sender id {raw_sender!r}") from None
    return OuterHeader(
        magic=magic,
        length=length,
        version=version,
        suite=suite,
        recipient_key_id=rkid,
        sender_key_id=skid,
        package_id=package_id,
        sender=sender,
    )


def hpke_info(frame_prefix: bytes, recipient: str) -> bytes:
    """HPKE `info`: label || every frame byte before `enc` || u8 len || recipient id.

    Binding the whole routing header (version, suite, key ids, package id, sender) and the
    recipient id means no unencrypted byte can be changed without decryption failing.
    """
    rid = recipient.encode("ascii")
    return INFO_LABEL + frame_prefix + bytes([len(rid)]) + rid


def seal_frame(
    *,
    magic: bytes,
    suite: Suite,
    sender: str,
    sender_key_id: bytes,
    recipient: PeerIdentity,
    package_id: bytes,
    plaintext: bytes,
) -> bytes:
    """The frame up to the end of the HPKE ciphertext: header || enc || AEAD(plaintext)."""
    sender_len = len(check_id(sender, "sender"))
    length = FRAME_FIXED_LEN - LENGTH_FIELD_END + sender_len + HPKE_ENC_LEN
    length += len(plaintext) + AEAD_TAG_LEN
    prefix = encode_outer(
        magic=magic,
        length=length,
        suite=suite,
        recipient_key_id=recipient.encryption_key_id,
        sender_key_id=sender_key_id,
        package_id=package_id,
        sender=sender,
    )
    sealed = hpke_suite(suite).encrypt(
        plaintext, recipient.encryption_public, info=hpke_info(prefix, recipient.id)
    )
    frame = prefix + sealed
    assert len(frame) == LENGTH_FIELD_END + length, "HPKE output size differs from RFC 9180"
    return frame


def open_frame(
    data: bytes,
    outer: OuterHeader,
    *,
    me: LocalIdentity,
    peers: Mapping[bytes, PeerIdentity],
    expected_sender: str | None,
) -> tuple[PeerIdentity, bytes]:
    """Route, decrypt and verify one frame; return (the sender's peer entry, the signed bytes).

    `data` is exactly the frame (LENGTH_FIELD_END + outer.length bytes). Cheap checks run first
    so a stray or hostile package costs no public-key operation.
    """
    if outer.recipient_key_id != me.encryption_key_id:
        raise WrongRecipient(
            f"package {outer.package_id.hex()} is sealed to encryption key id "
            f"{outer.recipient_key_id.hex()}, but {me.id!r} holds {me.encryption_key_id.hex()}: "
            "it was meant for another identity, or for a key replaced since"
        )
    if expected_sender is not None and outer.sender != expected_sender:
        raise UnexpectedSender(
            f"package {outer.package_id.hex()} names sender {outer.sender!r}, "
            f"but it arrived from {expected_sender!r}"
        )
    peer = peers.get(outer.sender_key_id)
    if peer is None:
        raise UnknownKeyId(
            f"package {outer.package_id.hex()} from {outer.sender!r} is signed with key id "
            f"{outer.sender_key_id.hex()}, which is not enrolled here: import that sender's "
            "current enrollment file"
        )
    if peer.id != outer.sender:
        raise UnexpectedSender(
            f"package {outer.package_id.hex()} names sender {outer.sender!r}, but its signing "
            f"key id {outer.sender_key_id.hex()} is enrolled for {peer.id!r}"
        )
    enc_start = outer.encoded_length
    minimum = enc_start + HPKE_ENC_LEN + AEAD_TAG_LEN + SIGNATURE_LEN + 1
    if len(data) < minimum:
        raise MalformedEnvelope(
            f"package {outer.package_id.hex()}: {len(data)} bytes is too short to hold a "
            f"sealed content (at least {minimum})"
        )
    info = hpke_info(data[:enc_start], me.id)
    try:
        plaintext = hpke_suite(outer.suite).decrypt(data[enc_start:], me.encryption_key, info=info)
    except InvalidTag:
        raise DecryptionFailed(
            f"package {outer.package_id.hex()} from {outer.sender!r} failed authenticated "
            "decryption: it was altered in transit or sealed with other header fields"
        ) from None
    signed, signature = plaintext[:-SIGNATURE_LEN], plaintext[-SIGNATURE_LEN:]
    try:
        peer.signing_public.verify(signature, signed)
    except InvalidSignature:
        raise BadSignature(
            f"package {outer.package_id.hex()}: signature does not verify under the enrolled "
            f"key {outer.sender_key_id.hex()} of {peer.id!r}"
        ) from None
    return peer, signed


# --- the signed content ------------------------------------------------------------------------


def pack(value: list[Any]) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def unpack_signed(signed: bytes, *, max_bin_len: int, fields: int, what: str) -> list[Any]:
    """Unpack the signed msgpack array with a limit on every length, before allocating."""
    try:
        value = msgpack.unpackb(
            signed,
            raw=False,
            use_list=True,
            max_bin_len=max_bin_len,
            max_str_len=MAX_ID_LEN,
            max_array_len=fields,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, msgpack.UnpackException) as exc:
        raise MalformedEnvelope(f"{what}: signed content is not valid msgpack: {exc}") from None
    if not isinstance(value, list) or len(value) != fields:
        raise MalformedEnvelope(f"{what}: signed content must be a {fields}-element array")
    return value


def check_inner_common(
    inner: list[Any], *, tag: str, outer: OuterHeader, me: LocalIdentity, peer: PeerIdentity
) -> int:
    """Check fields 0-8, shared by both kinds, against the frame; return created_ms."""
    what = f"package {outer.package_id.hex()}"
    expected = (tag, PROTOCOL_VERSION, int(outer.suite))
    if tuple(inner[:3]) != expected or type(inner[1]) is not int or type(inner[2]) is not int:
        raise MalformedEnvelope(
            f"{what}: signed content starts with {inner[:3]!r}, expected {list(expected)!r}"
        )
    sender, recipient, package_id, created_ms, skid, rkid = inner[3:9]
    if sender != peer.id:
        raise UnexpectedSender(
            f"{what}: signed content names sender {sender!r}, but it is signed by {peer.id!r}"
        )
    if recipient != me.id:
        raise WrongRecipient(
            f"{what}: signed for recipient {recipient!r}, but this is {me.id!r} "
            "(someone re-encrypted another identity's package)"
        )
    if package_id != outer.package_id or skid != outer.sender_key_id:
        raise MalformedEnvelope(f"{what}: signed package id or sender key id differs from frame")
    if rkid != outer.recipient_key_id:
        raise MalformedEnvelope(f"{what}: signed recipient key id differs from frame")
    try:
        return check_created_ms(created_ms)
    except EnvelopeArgumentError as exc:
        raise MalformedEnvelope(f"{what}: {exc}") from None
